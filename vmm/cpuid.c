/* CPUID for each vCPU: what KVM supports on this host, with the hypervisor
 * bit and leaves set and the topology (APIC ids) made consistent with the
 * MADT the guest will read. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/cpuid.h"
#include "vmm/kvm.h"

int cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out)
{
	for (unsigned nent = 128; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
		int ret;

		if (!c)
			return -ENOMEM;
		c->nent = nent;
		ret = __kvm_ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c);
		if (ret == 0) {
			*out = c;
			return 0;
		}
		ret = -errno;
		free(c);
		if (ret != -E2BIG) {
			log_err("kvm", "KVM_GET_SUPPORTED_CPUID failed: %s", strerror_safe(-ret));
			return ret;
		}
	}
	return -E2BIG;
}

enum { PREFETCH_PENDING, PREFETCH_BY_THREAD, PREFETCH_BY_CALLER };

struct cpuid_prefetch {
	int fd;                      /* the thread's own /dev/kvm fd */
	int who;                     /* PREFETCH_*, claimed once with a CAS */
	int refs;                    /* thread + caller; the last one frees */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;                   /* the thread's result is in */
	int ret;
	struct kvm_cpuid2 *cpuid;
};

#define CPUID_PREFETCH_STACK (64 * 1024)

static bool prefetch_claim(struct cpuid_prefetch *p, int who)
{
	int expected = PREFETCH_PENDING;

	return __atomic_compare_exchange_n(&p->who, &expected, who, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_ACQUIRE);
}

static void prefetch_put(struct cpuid_prefetch *p)
{
	if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL))
		return;
	close(p->fd);
	free(p->cpuid);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

static void *prefetch_thread(void *arg)
{
	struct cpuid_prefetch *p = arg;

	if (prefetch_claim(p, PREFETCH_BY_THREAD)) {
		struct kvm_cpuid2 *c = NULL;
		int ret = cpuid_get_supported(p->fd, &c);

		pthread_mutex_lock(&p->lock);
		p->ret = ret;
		p->cpuid = c;
		p->done = true;
		pthread_cond_signal(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
	prefetch_put(p);
	return NULL;
}

struct cpuid_prefetch *cpuid_prefetch_start(int kvm_fd)
{
	struct cpuid_prefetch *p = calloc(1, sizeof(*p));
	pthread_attr_t attr;
	pthread_t thread;
	int ret;

	if (!p)
		return NULL;
	p->fd = fcntl(kvm_fd, F_DUPFD_CLOEXEC, 0);
	if (p->fd < 0) {
		free(p);
		return NULL;
	}
	p->who = PREFETCH_PENDING;
	p->refs = 2;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, CPUID_PREFETCH_STACK);
	ret = pthread_create(&thread, &attr, prefetch_thread, p);
	pthread_attr_destroy(&attr);
	if (ret) {
		p->refs = 1;
		prefetch_put(p);
		return NULL;
	}
	return p;
}

int cpuid_prefetch_take(struct cpuid_prefetch *p, int kvm_fd, struct kvm_cpuid2 **out)
{
	int ret;

	if (!p)
		return cpuid_get_supported(kvm_fd, out);
	if (prefetch_claim(p, PREFETCH_BY_CALLER)) {
		ret = cpuid_get_supported(kvm_fd, out);
	} else {
		pthread_mutex_lock(&p->lock);
		while (!p->done)
			pthread_cond_wait(&p->cond, &p->lock);
		ret = p->ret;
		*out = p->cpuid;
		p->cpuid = NULL;
		pthread_mutex_unlock(&p->lock);
	}
	prefetch_put(p);
	return ret;
}

void cpuid_prefetch_drop(struct cpuid_prefetch *p)
{
	if (!p)
		return;
	/* Unclaimed: the thread will find it taken and only let go. Claimed by
	 * the thread: it finishes on its own fd, and the last put frees. */
	prefetch_claim(p, PREFETCH_BY_CALLER);
	prefetch_put(p);
}

static unsigned cpuid_order(unsigned n)
{
	unsigned shift = 0;

	while ((1u << shift) < n)
		shift++;
	return shift;
}

void cpuid_patch_for_vcpu(struct kvm_cpuid2 *c, unsigned apic_id, unsigned nr_cpus)
{
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 0x1:
			/* EBX[31:24] initial APIC id, [23:16] logical processors per package. */
			e->ebx = (e->ebx & 0x0000ffff) | (apic_id << 24) | ((nr_cpus & 0xff) << 16);
			e->ecx |= CPUID_1_ECX_HYPERVISOR;
			if (nr_cpus > 1)
				e->edx |= CPUID_1_EDX_HTT;
			break;
		case 0xb:
		case 0x1f:
			/* Extended topology (Intel SDM Vol. 2A, CPUID leaf 0BH): one thread
			 * per core, all vCPUs cores of one package. */
			e->edx = apic_id;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;       /* level type SMT */
			} else if (e->index == 1) {
				e->eax = cpuid_order(nr_cpus);
				e->ebx = nr_cpus;
				e->ecx = (2u << 8) | 1;       /* level type core */
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		case 0x40000000:
			/* KVM paravirt signature; max hypervisor leaf. */
			e->eax = 0x40000001;
			memcpy(&e->ebx, "KVMK", 4);
			memcpy(&e->ecx, "VMKV", 4);
			memcpy(&e->edx, "M\0\0\0", 4);
			break;
		default:
			break;
		}
	}
}
