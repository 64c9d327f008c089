/* x86 vCPU state through the KVM vCPU ioctls (Documentation/virt/kvm/api.rst §4). */
#include "migration/vcpu_state.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migration/state.h"
#include "vmm/kvm.h"
#include "vmm/log.h"

#define MSR_IA32_TSC_DEADLINE 0x6e0

int vcpu_state_caps_init(struct vcpu_state_caps *caps, int kvm_fd, int vm_fd)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	int ret;

	memset(caps, 0, sizeof(*caps));
	ret = __kvm_ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (ret > 0) {
		caps->xsave2 = true;
		caps->xsave_size = (size_t)ret;
	} else if (__kvm_ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0) {
		caps->xsave_size = sizeof(struct kvm_xsave);
	}
	if (caps->xsave_size > VCPU_STATE_XSAVE_MAX) {
		log_err("vcpu-state", "XSAVE area of %zu bytes is beyond what we save", caps->xsave_size);
		return -E2BIG;
	}
	caps->xcrs = __kvm_ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;

	/* First call with nmsrs = 0 fails with E2BIG and tells the count. */
	if (__kvm_ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return kvm_ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe);
	if (probe.nmsrs > VCPU_STATE_MAX_MSRS)
		probe.nmsrs = VCPU_STATE_MAX_MSRS;
	caps->msr_list = calloc(1, sizeof(*caps->msr_list) + probe.nmsrs * sizeof(uint32_t));
	if (!caps->msr_list)
		return -ENOMEM;
	caps->msr_list->nmsrs = probe.nmsrs;
	ret = kvm_ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, caps->msr_list);
	if (ret < 0) {
		vcpu_state_caps_free(caps);
		return ret;
	}
	return 0;
}

/* What KVM_CAP_XSAVE2 and KVM_GET_MSR_INDEX_LIST report is host-wide (the
 * XSAVE2 size follows the host's supported XCR0), so one query serves every
 * VM of the process. Asked once, ahead of any pause: on a virtualized host
 * these ioctls cost tens of microseconds of migration downtime. */
int vcpu_state_caps_get(int kvm_fd, int vm_fd, const struct vcpu_state_caps **out)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static struct vcpu_state_caps cached;
	static bool valid;
	int ret = 0;

	pthread_mutex_lock(&lock);
	if (!valid) {
		ret = vcpu_state_caps_init(&cached, kvm_fd, vm_fd);
		valid = ret == 0;
	}
	pthread_mutex_unlock(&lock);
	*out = valid ? &cached : NULL;
	return ret;
}

void vcpu_state_caps_free(struct vcpu_state_caps *caps)
{
	free(caps->msr_list);
	caps->msr_list = NULL;
}

void vcpu_state_free(struct vcpu_state *s)
{
	free(s->xsave);
	free(s->msrs);
	s->xsave = NULL;
	s->msrs = NULL;
}

static struct kvm_msrs *msrs_alloc(size_t n)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(struct kvm_msr_entry));

	if (m)
		m->nmsrs = (uint32_t)n;
	return m;
}

/* KVM_GET_MSRS stops at the first MSR it cannot read and returns how many it
 * read: keep those, skip the one that failed, go on. Some listed MSRs are not
 * readable on a given host/CPUID (e.g. PMU or feature-gated ones). */
static int read_msrs(const struct kvm_msr_list *list, int vcpu_fd, struct kvm_msrs **out)
{
	size_t n = list ? list->nmsrs : 0, kept = 0;
	struct kvm_msrs *all = msrs_alloc(n), *batch = msrs_alloc(n);
	int ret = 0;

	if (!all || !batch) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n;) {
		int got;

		batch->nmsrs = (uint32_t)(n - i);
		for (size_t j = i; j < n; j++)
			batch->entries[j - i] = (struct kvm_msr_entry){ .index = list->indices[j] };
		got = __kvm_ioctl(vcpu_fd, KVM_GET_MSRS, batch);
		if (got < 0) {
			ret = kvm_ioctl(vcpu_fd, KVM_GET_MSRS, batch);
			goto out;
		}
		for (int j = 0; j < got; j++)
			all->entries[kept++] = batch->entries[j];
		i += (size_t)got + 1; /* entry i+got failed (or i+got == n) */
	}
	all->nmsrs = (uint32_t)kept;
	*out = all;
	all = NULL;
out:
	free(all);
	free(batch);
	return ret;
}

int vcpu_state_read(const struct vcpu_state_caps *caps, int vcpu_fd, struct vcpu_state *s)
{
	int ret;

	memset(s, 0, sizeof(*s));
	if ((ret = kvm_ioctl(vcpu_fd, KVM_GET_REGS, &s->regs)) < 0 ||
	    (ret = kvm_ioctl(vcpu_fd, KVM_GET_SREGS, &s->sregs)) < 0)
		goto fail;
	if (caps->xsave_size) {
		s->xsave_size = caps->xsave_size;
		s->xsave = calloc(1, s->xsave_size);
		if (!s->xsave) {
			ret = -ENOMEM;
			goto fail;
		}
		ret = caps->xsave2 ? kvm_ioctl(vcpu_fd, KVM_GET_XSAVE2, s->xsave)
				   : kvm_ioctl(vcpu_fd, KVM_GET_XSAVE, s->xsave);
	} else {
		ret = kvm_ioctl(vcpu_fd, KVM_GET_FPU, &s->fpu);
	}
	if (ret < 0)
		goto fail;
	s->has_xcrs = caps->xcrs;
	if (s->has_xcrs && (ret = kvm_ioctl(vcpu_fd, KVM_GET_XCRS, &s->xcrs)) < 0)
		goto fail;
	if ((ret = read_msrs(caps->msr_list, vcpu_fd, &s->msrs)) < 0)
		goto fail;
	if ((ret = kvm_ioctl(vcpu_fd, KVM_GET_LAPIC, &s->lapic)) < 0 ||
	    (ret = kvm_ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &s->events)) < 0 ||
	    (ret = kvm_ioctl(vcpu_fd, KVM_GET_MP_STATE, &s->mp_state)) < 0 ||
	    (ret = kvm_ioctl(vcpu_fd, KVM_GET_DEBUGREGS, &s->debugregs)) < 0)
		goto fail;
	return 0;
fail:
	vcpu_state_free(s);
	return ret;
}

static int write_msrs(int vcpu_fd, const struct kvm_msrs *msrs, bool (*want)(uint32_t index))
{
	struct kvm_msrs *batch = msrs_alloc(msrs->nmsrs);
	int ret = 0, done;

	if (!batch)
		return -ENOMEM;
	batch->nmsrs = 0;
	for (uint32_t i = 0; i < msrs->nmsrs; i++)
		if (want(msrs->entries[i].index))
			batch->entries[batch->nmsrs++] = msrs->entries[i];
	done = __kvm_ioctl(vcpu_fd, KVM_SET_MSRS, batch);
	if (done < 0) {
		ret = kvm_ioctl(vcpu_fd, KVM_SET_MSRS, batch);
	} else if ((uint32_t)done < batch->nmsrs) {
		log_err("vcpu-state", "KVM refused MSR 0x%x = 0x%llx", batch->entries[done].index,
			(unsigned long long)batch->entries[done].data);
		ret = -EINVAL;
	}
	free(batch);
	return ret;
}

static bool msr_not_deadline(uint32_t index) { return index != MSR_IA32_TSC_DEADLINE; }
static bool msr_is_deadline(uint32_t index) { return index == MSR_IA32_TSC_DEADLINE; }

/* Order follows what KVM needs (and QEMU's kvm_arch_put_registers does):
 * sregs carry the APIC base, so they precede the LAPIC; the TSC deadline is
 * only accepted once the LAPIC timer is in deadline mode; vCPU events (pending
 * exceptions/NMIs/SIPIs) and the MP state come last. */
int vcpu_state_write(int vcpu_fd, const struct vcpu_state *s)
{
	int ret;

	if ((ret = kvm_ioctl(vcpu_fd, KVM_SET_REGS, &s->regs)) < 0)
		return ret;
	ret = s->xsave ? kvm_ioctl(vcpu_fd, KVM_SET_XSAVE, s->xsave)
		       : kvm_ioctl(vcpu_fd, KVM_SET_FPU, &s->fpu);
	if (ret < 0)
		return ret;
	if (s->has_xcrs && (ret = kvm_ioctl(vcpu_fd, KVM_SET_XCRS, &s->xcrs)) < 0)
		return ret;
	if ((ret = kvm_ioctl(vcpu_fd, KVM_SET_SREGS, &s->sregs)) < 0)
		return ret;
	if (s->msrs && (ret = write_msrs(vcpu_fd, s->msrs, msr_not_deadline)) < 0)
		return ret;
	if ((ret = kvm_ioctl(vcpu_fd, KVM_SET_LAPIC, &s->lapic)) < 0)
		return ret;
	if (s->msrs && (ret = write_msrs(vcpu_fd, s->msrs, msr_is_deadline)) < 0)
		return ret;
	if ((ret = kvm_ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &s->events)) < 0 ||
	    (ret = kvm_ioctl(vcpu_fd, KVM_SET_MP_STATE, &s->mp_state)) < 0 ||
	    (ret = kvm_ioctl(vcpu_fd, KVM_SET_DEBUGREGS, &s->debugregs)) < 0)
		return ret;
	return 0;
}

static void regs_to_array(const struct kvm_regs *r, uint64_t a[18])
{
	const uint64_t v[18] = { r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rsp, r->rbp,
				 r->r8,  r->r9,  r->r10, r->r11, r->r12, r->r13, r->r14, r->r15,
				 r->rip, r->rflags };

	memcpy(a, v, sizeof(v));
}

static void regs_from_array(struct kvm_regs *r, const uint64_t a[18])
{
	*r = (struct kvm_regs){
		.rax = a[0], .rbx = a[1], .rcx = a[2], .rdx = a[3], .rsi = a[4], .rdi = a[5],
		.rsp = a[6], .rbp = a[7], .r8 = a[8], .r9 = a[9], .r10 = a[10], .r11 = a[11],
		.r12 = a[12], .r13 = a[13], .r14 = a[14], .r15 = a[15], .rip = a[16], .rflags = a[17],
	};
}

int vcpu_state_save(const struct vcpu_state *s, struct state_node *n)
{
	uint64_t regs[18];
	int ret = 0;

	regs_to_array(&s->regs, regs);
	ret |= state_set_version(n, VCPU_STATE_VERSION);
	ret |= state_put_u64_array(n, "regs", regs, 18);
	ret |= state_put_bytes(n, "sregs", &s->sregs, sizeof(s->sregs));
	if (s->xsave)
		ret |= state_put_bytes(n, "xsave", s->xsave, s->xsave_size);
	else
		ret |= state_put_bytes(n, "fpu", &s->fpu, sizeof(s->fpu));
	if (s->has_xcrs)
		ret |= state_put_bytes(n, "xcrs", &s->xcrs, sizeof(s->xcrs));
	if (s->msrs) {
		uint32_t *idx = malloc((s->msrs->nmsrs + 1) * sizeof(*idx));
		uint64_t *val = malloc((s->msrs->nmsrs + 1) * sizeof(*val));

		if (idx && val) {
			for (uint32_t i = 0; i < s->msrs->nmsrs; i++) {
				idx[i] = s->msrs->entries[i].index;
				val[i] = s->msrs->entries[i].data;
			}
			ret |= state_put_u32_array(n, "msr-index", idx, s->msrs->nmsrs);
			ret |= state_put_u64_array(n, "msr-value", val, s->msrs->nmsrs);
		} else {
			ret |= -ENOMEM;
		}
		free(idx);
		free(val);
	}
	ret |= state_put_bytes(n, "lapic", &s->lapic, sizeof(s->lapic));
	ret |= state_put_bytes(n, "events", &s->events, sizeof(s->events));
	ret |= state_put_u32(n, "mp-state", s->mp_state.mp_state);
	ret |= state_put_bytes(n, "debugregs", &s->debugregs, sizeof(s->debugregs));
	return ret ? -EINVAL : 0;
}

static int parse_xsave(const struct vcpu_state_caps *caps, const struct state_node *n,
		       struct vcpu_state *s)
{
	const void *data;
	size_t len;

	if (!caps->xsave_size)
		return state_get_bytes(n, "fpu", &s->fpu, sizeof(s->fpu));
	if (state_get_raw(n, "xsave", &data, &len))
		return -EINVAL;
	/* A smaller area from a host without dynamic features is fine (the
	 * XSAVE header's XSTATE_BV says which components are present); a larger
	 * one holds components this host cannot load. */
	if (len < VCPU_STATE_XSAVE_MIN || len > caps->xsave_size)
		return state_fail(n, "property 'xsave' has %zu bytes, expected %u..%zu", len,
				  VCPU_STATE_XSAVE_MIN, caps->xsave_size);
	s->xsave = calloc(1, caps->xsave_size);
	if (!s->xsave)
		return -ENOMEM;
	memcpy(s->xsave, data, len);
	s->xsave_size = caps->xsave_size;
	return 0;
}

static int parse_msrs(const struct state_node *n, struct vcpu_state *s)
{
	uint32_t *idx = malloc(VCPU_STATE_MAX_MSRS * sizeof(*idx));
	uint64_t *val = malloc(VCPU_STATE_MAX_MSRS * sizeof(*val));
	size_t ni, nv;
	int ret = -EINVAL;

	if (!idx || !val) {
		ret = -ENOMEM;
		goto out;
	}
	if (state_get_u32_array(n, "msr-index", idx, VCPU_STATE_MAX_MSRS, &ni) ||
	    state_get_u64_array(n, "msr-value", val, VCPU_STATE_MAX_MSRS, &nv))
		goto out;
	if (ni != nv) {
		state_fail(n, "property 'msr-value' has %zu entries, expected %zu (as 'msr-index')", nv, ni);
		goto out;
	}
	s->msrs = msrs_alloc(ni);
	if (!s->msrs) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < ni; i++)
		s->msrs->entries[i] = (struct kvm_msr_entry){ .index = idx[i], .data = val[i] };
	ret = 0;
out:
	free(idx);
	free(val);
	return ret;
}

int vcpu_state_parse(const struct vcpu_state_caps *caps, const struct state_node *n,
		     struct vcpu_state *s)
{
	uint64_t regs[18];
	size_t count;
	int ret;

	memset(s, 0, sizeof(*s));
	if (state_node_version(n, 1, VCPU_STATE_VERSION, NULL) ||
	    state_get_u64_array(n, "regs", regs, 18, &count))
		return -EINVAL;
	if (count != 18)
		return state_fail(n, "property 'regs' has %zu entries, expected 18", count);
	regs_from_array(&s->regs, regs);
	ret = state_get_bytes(n, "sregs", &s->sregs, sizeof(s->sregs));
	if (!ret)
		ret = parse_xsave(caps, n, s);
	s->has_xcrs = caps->xcrs && state_has(n, "xcrs");
	if (!ret && s->has_xcrs)
		ret = state_get_bytes(n, "xcrs", &s->xcrs, sizeof(s->xcrs));
	if (!ret && s->has_xcrs && s->xcrs.nr_xcrs > KVM_MAX_XCRS)
		ret = state_fail(n, "property 'xcrs' holds %u registers, at most %d", s->xcrs.nr_xcrs,
				 KVM_MAX_XCRS);
	if (!ret)
		ret = parse_msrs(n, s);
	if (!ret)
		ret = state_get_bytes(n, "lapic", &s->lapic, sizeof(s->lapic));
	if (!ret)
		ret = state_get_bytes(n, "events", &s->events, sizeof(s->events));
	if (!ret)
		ret = state_get_u32_range(n, "mp-state", KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_SIPI_RECEIVED,
					  &s->mp_state.mp_state);
	if (!ret)
		ret = state_get_bytes(n, "debugregs", &s->debugregs, sizeof(s->debugregs));
	if (ret)
		vcpu_state_free(s);
	return ret;
}

int vcpu_save(const struct vcpu_state_caps *caps, int vcpu_fd, struct state_node *node)
{
	struct vcpu_state s;
	int ret = vcpu_state_read(caps, vcpu_fd, &s);

	if (ret)
		return ret;
	ret = vcpu_state_save(&s, node);
	vcpu_state_free(&s);
	return ret;
}
