/* vCPU and in-kernel VM state through a real /dev/kvm: set distinctive state
 * on one VM, save it into a tree, load it into a fresh VM, compare. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "migration/state.h"
#include "migration/vcpu_state.h"
#include "migration/vm_state.h"

struct kvm_vm {
	int kvm, vm, vcpu;
	struct vcpu_state_caps caps;
};

static bool kvm_open_vm(struct kvm_vm *k)
{
	struct kvm_cpuid2 *cpuid;

	k->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->kvm < 0)
		return false;
	k->vm = ioctl(k->kvm, KVM_CREATE_VM, 0);
	cr_assert_geq(k->vm, 0);
	cr_assert_eq(ioctl(k->vm, KVM_SET_TSS_ADDR, 0xfffbd000), 0);
	cr_assert_eq(ioctl(k->vm, KVM_CREATE_IRQCHIP, 0), 0);
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	cr_assert_eq(ioctl(k->vm, KVM_CREATE_PIT2, &pit), 0);
	k->vcpu = ioctl(k->vm, KVM_CREATE_VCPU, 0);
	cr_assert_geq(k->vcpu, 0);
	cpuid = calloc(1, sizeof(*cpuid) + 256 * sizeof(struct kvm_cpuid_entry2));
	cpuid->nent = 256;
	cr_assert_eq(ioctl(k->kvm, KVM_GET_SUPPORTED_CPUID, cpuid), 0);
	cr_assert_eq(ioctl(k->vcpu, KVM_SET_CPUID2, cpuid), 0);
	free(cpuid);
	cr_assert_eq(vcpu_state_caps_init(&k->caps, k->kvm, k->vm), 0);
	return true;
}

static void kvm_close_vm(struct kvm_vm *k)
{
	vcpu_state_caps_free(&k->caps);
	close(k->vcpu);
	close(k->vm);
	close(k->kvm);
}

static uint64_t msr_get(int vcpu, uint32_t index)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e; } m = { .h.nmsrs = 1, .e.index = index };

	cr_assert_eq(ioctl(vcpu, KVM_GET_MSRS, &m), 1, "MSR 0x%x", index);
	return m.e.data;
}

static void msr_set(int vcpu, uint32_t index, uint64_t v)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e; } m = { .h.nmsrs = 1, .e = { .index = index, .data = v } };

	cr_assert_eq(ioctl(vcpu, KVM_SET_MSRS, &m), 1, "MSR 0x%x", index);
}

static const uint32_t test_msrs[] = { 0x174 /* SYSENTER_CS */, 0x176 /* SYSENTER_EIP */,
				      0xc0000081 /* STAR */, 0xc0000082 /* LSTAR */,
				      0xc0000102 /* KERNEL_GS_BASE */ };
static const uint64_t test_vals[] = { 0x10, 0xffffffff81234567ULL, 0x0023001000000000ULL,
				      0xffffffff81000000ULL, 0xffff888012345000ULL };

static void set_distinctive(struct kvm_vm *k)
{
	struct kvm_regs regs = { 0 };
	struct kvm_sregs sregs;
	struct kvm_lapic_state lapic;
	struct kvm_debugregs dbg;

	for (int i = 0; i < 16; i++)
		((uint64_t *)&regs)[i] = 0x1111111111111111ULL * (uint64_t)(i + 1);
	regs.rip = 0x100234;
	regs.rflags = 0x202;
	cr_assert_eq(ioctl(k->vcpu, KVM_SET_REGS, &regs), 0);
	cr_assert_eq(ioctl(k->vcpu, KVM_GET_SREGS, &sregs), 0);
	sregs.cs.selector = 0x10;
	sregs.cs.base = 0x12340;
	sregs.ds.base = 0x5670;
	sregs.cr2 = 0xdeadb000;
	sregs.gdt.base = 0x6000;
	sregs.gdt.limit = 0x2f;
	cr_assert_eq(ioctl(k->vcpu, KVM_SET_SREGS, &sregs), 0);
	for (size_t i = 0; i < sizeof(test_msrs) / sizeof(test_msrs[0]); i++)
		msr_set(k->vcpu, test_msrs[i], test_vals[i]);
	cr_assert_eq(ioctl(k->vcpu, KVM_GET_LAPIC, &lapic), 0);
	*(uint32_t *)&lapic.regs[0x80] = 0x20;        /* TPR */
	*(uint32_t *)&lapic.regs[0x350] = 0x0001073a; /* LVT LINT0: masked, vector 0x3a */
	cr_assert_eq(ioctl(k->vcpu, KVM_SET_LAPIC, &lapic), 0);
	cr_assert_eq(ioctl(k->vcpu, KVM_GET_DEBUGREGS, &dbg), 0);
	dbg.db[0] = 0x401000;
	dbg.db[3] = 0x402000;
	cr_assert_eq(ioctl(k->vcpu, KVM_SET_DEBUGREGS, &dbg), 0);
}

static void *save_tree(struct kvm_vm *k, size_t *len)
{
	struct state_tree *t = state_tree_new();
	struct state_node *vcpus = state_add_node(state_tree_root(t), "vcpus", 1);
	struct state_node *cpu = state_add_node(vcpus, "cpu@0", 1);
	struct vm_kstate ks;
	void *blob;

	cr_assert_eq(vcpu_save(&k->caps, k->vcpu, cpu), 0, "%s", state_error(t));
	cr_assert_eq(vm_kstate_read(k->vm, true, true, &ks), 0);
	cr_assert_eq(vm_kstate_save(&ks, state_tree_root(t)), 0);
	cr_assert_eq(state_tree_finish(t, &blob, len), 0, "%s", state_error(t));
	state_tree_free(t);
	return blob;
}

static int load_tree(struct kvm_vm *k, const void *blob, size_t len, char *err, size_t errlen)
{
	struct state_tree *t;
	struct state_node root, vcpus, cpu;
	struct vcpu_state vs;
	struct vm_kstate ks;
	int ret = state_tree_open(&t, blob, len, err, errlen);

	if (ret)
		return ret;
	state_root(t, &root);
	ret = state_child(&root, "vcpus", &vcpus);
	if (!ret)
		ret = state_child(&vcpus, "cpu@0", &cpu);
	if (!ret)
		ret = vcpu_state_parse(&k->caps, &cpu, &vs);
	if (!ret) {
		ret = vm_kstate_parse(&root, &ks);
		if (ret)
			vcpu_state_free(&vs);
	}
	if (ret) {
		snprintf(err, errlen, "%s", state_error(t));
		state_tree_free(t);
		return ret;
	}
	/* Everything parsed: only now touch KVM. */
	ret = vm_kstate_write(k->vm, &ks);
	if (!ret)
		ret = vcpu_state_write(k->vcpu, &vs);
	vcpu_state_free(&vs);
	state_tree_free(t);
	return ret;
}

Test(state_kvm, vcpu_and_vm_round_trip)
{
	struct kvm_vm a, b;
	struct kvm_regs ra, rb;
	struct kvm_sregs sa, sb;
	struct kvm_lapic_state la, lb;
	struct kvm_debugregs da, db;
	struct kvm_clock_data ca, cb;
	struct kvm_irqchip ia = { .chip_id = KVM_IRQCHIP_IOAPIC }, ib = { .chip_id = KVM_IRQCHIP_IOAPIC };
	char err[STATE_ERR_MAX] = "";
	size_t len;
	void *blob;

	if (!kvm_open_vm(&a))
		cr_skip_test("no /dev/kvm");
	set_distinctive(&a);
	/* A distinctive IOAPIC redirection entry and guest clock. */
	cr_assert_eq(ioctl(a.vm, KVM_GET_IRQCHIP, &ia), 0);
	ia.chip.ioapic.redirtbl[5].bits = 0x000000000000a035ULL;
	cr_assert_eq(ioctl(a.vm, KVM_SET_IRQCHIP, &ia), 0);
	ca = (struct kvm_clock_data){ .clock = 123456789000ULL };
	cr_assert_eq(ioctl(a.vm, KVM_SET_CLOCK, &ca), 0);

	blob = save_tree(&a, &len);
	cr_assert(kvm_open_vm(&b));
	cr_assert_eq(load_tree(&b, blob, len, err, sizeof(err)), 0, "%s", err);

	cr_assert_eq(ioctl(a.vcpu, KVM_GET_REGS, &ra), 0);
	cr_assert_eq(ioctl(b.vcpu, KVM_GET_REGS, &rb), 0);
	cr_assert_eq(memcmp(&ra, &rb, sizeof(ra)), 0);
	cr_assert_eq(rb.r15, 0x1111111111111111ULL * 16);
	cr_assert_eq(ioctl(a.vcpu, KVM_GET_SREGS, &sa), 0);
	cr_assert_eq(ioctl(b.vcpu, KVM_GET_SREGS, &sb), 0);
	cr_assert_eq(sb.cs.base, 0x12340);
	cr_assert_eq(sb.cr2, 0xdeadb000);
	cr_assert_eq(memcmp(&sa, &sb, sizeof(sa)), 0);
	for (size_t i = 0; i < sizeof(test_msrs) / sizeof(test_msrs[0]); i++)
		cr_assert_eq(msr_get(b.vcpu, test_msrs[i]), test_vals[i], "MSR 0x%x", test_msrs[i]);
	cr_assert_eq(ioctl(a.vcpu, KVM_GET_LAPIC, &la), 0);
	cr_assert_eq(ioctl(b.vcpu, KVM_GET_LAPIC, &lb), 0);
	cr_assert_eq(*(uint32_t *)&lb.regs[0x80], 0x20);
	cr_assert_eq(*(uint32_t *)&lb.regs[0x350], 0x0001073a);
	cr_assert_eq(ioctl(b.vcpu, KVM_GET_DEBUGREGS, &db), 0);
	cr_assert_eq(ioctl(a.vcpu, KVM_GET_DEBUGREGS, &da), 0);
	cr_assert_eq(db.db[0], 0x401000);
	cr_assert_eq(db.db[3], da.db[3]);
	cr_assert_eq(ioctl(b.vm, KVM_GET_IRQCHIP, &ib), 0);
	cr_assert_eq(ib.chip.ioapic.redirtbl[5].bits, 0xa035ULL);
	/* The clock continues from the saved value: no jump by host time. */
	cr_assert_eq(ioctl(b.vm, KVM_GET_CLOCK, &cb), 0);
	cr_assert_geq(cb.clock, 123456789000ULL);
	cr_assert_lt(cb.clock, 123456789000ULL + 5000000000ULL, "clock jumped to %llu",
		     (unsigned long long)cb.clock);
	free(blob);
	kvm_close_vm(&a);
	kvm_close_vm(&b);
}

Test(state_kvm, hostile_vcpu_node_refused_before_touching_kvm)
{
	struct kvm_vm a, b;
	struct kvm_regs before, after;
	struct state_tree *t;
	struct state_node *cpu;
	char err[STATE_ERR_MAX] = "";
	size_t len;
	void *blob;
	uint8_t small[100] = { 0 };

	if (!kvm_open_vm(&a))
		cr_skip_test("no /dev/kvm");
	/* A cpu node whose lapic is short: the loader names it and KVM is untouched. */
	t = state_tree_new();
	cpu = state_add_node(state_add_node(state_tree_root(t), "vcpus", 1), "cpu@0", 1);
	cr_assert_eq(vcpu_save(&a.caps, a.vcpu, cpu), 0);
	state_put_bytes(cpu, "lapic", small, sizeof(small));
	{
		struct vm_kstate ks;
		cr_assert_eq(vm_kstate_read(a.vm, true, true, &ks), 0);
		cr_assert_eq(vm_kstate_save(&ks, state_tree_root(t)), 0);
	}
	cr_assert_eq(state_tree_finish(t, &blob, &len), 0);
	state_tree_free(t);

	cr_assert(kvm_open_vm(&b));
	before = (struct kvm_regs){ .rip = 0x4242, .rflags = 2 };
	cr_assert_eq(ioctl(b.vcpu, KVM_SET_REGS, &before), 0);
	cr_assert_eq(load_tree(&b, blob, len, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "state: /vcpus/cpu@0: property 'lapic' has 100 bytes, expected 1024");
	cr_assert_eq(ioctl(b.vcpu, KVM_GET_REGS, &after), 0);
	cr_assert_eq(after.rip, 0x4242, "regs were half-applied");
	free(blob);
	kvm_close_vm(&a);
	kvm_close_vm(&b);
}

/* Guest TSC continuity: the saved IA32_TSC is written back, so the restored
 * guest's TSC continues from the snapshot instead of jumping by the host time
 * in between. PVM hosts ignore guest TSC writes (guest TSC = host TSC): skipped. */
Test(state_kvm, tsc_continues_from_saved_value)
{
	struct kvm_vm a, b;
	const uint64_t x = 1000000000ULL; /* far below any host TSC after boot */
	char err[STATE_ERR_MAX] = "";
	size_t len;
	void *blob;
	uint64_t t;

	if (!kvm_open_vm(&a))
		cr_skip_test("no /dev/kvm");
	msr_set(a.vcpu, 0x10, x);
	if (msr_get(a.vcpu, 0x10) > x + 1000000000ULL) {
		kvm_close_vm(&a);
		cr_skip_test("this host ignores guest TSC writes (PVM); TSC continuity cannot be shown here");
	}
	blob = save_tree(&a, &len);
	usleep(200000);
	cr_assert(kvm_open_vm(&b));
	cr_assert_eq(load_tree(&b, blob, len, err, sizeof(err)), 0, "%s", err);
	t = msr_get(b.vcpu, 0x10);
	cr_assert_geq(t, x);
	cr_assert_lt(t, x + 150000000ULL, "TSC jumped to %llu (saved about %llu)", (unsigned long long)t,
		     (unsigned long long)x);
	free(blob);
	kvm_close_vm(&a);
	kvm_close_vm(&b);
}
