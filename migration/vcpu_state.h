/* Complete x86 vCPU state: regs, sregs, FPU/XSAVE, XCRs, MSRs, LAPIC, vCPU
 * events, MP state, debug registers.
 *
 * Three steps each way, so nothing is half-applied on restore:
 *   save:  vcpu_state_read()  (KVM -> struct)   then vcpu_state_save()  (struct -> tree)
 *   load:  vcpu_state_parse() (tree -> struct, all checks) then vcpu_state_write() (struct -> KVM)
 * vcpu_save()/vcpu_load() chain them for the common case.
 *
 * Node layout (`/vcpus/cpu@N`, version 1):
 *   regs       u64[18]  rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags (struct kvm_regs order)
 *   sregs      bytes    struct kvm_sregs
 *   xsave      bytes    4096..KVM_CAP_XSAVE2 size (or `fpu`: struct kvm_fpu without XSAVE)
 *   xcrs       bytes    struct kvm_xcrs (when KVM_CAP_XCRS)
 *   msr-index  u32[n]   every MSR of KVM_GET_MSR_INDEX_LIST that KVM_GET_MSRS could read
 *   msr-value  u64[n]
 *   lapic      bytes    struct kvm_lapic_state
 *   events     bytes    struct kvm_vcpu_events
 *   mp-state   u32
 *   debugregs  bytes    struct kvm_debugregs */
#ifndef MIGRATION_VCPU_STATE_H
#define MIGRATION_VCPU_STATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>

struct state_node;

#define VCPU_STATE_VERSION 1
#define VCPU_STATE_MAX_MSRS 1024
#define VCPU_STATE_XSAVE_MIN 4096
#define VCPU_STATE_XSAVE_MAX (1u << 20)

struct vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave *xsave;       /* NULL: use fpu */
	size_t xsave_size;             /* bytes in *xsave (the KVM ABI size) */
	struct kvm_fpu fpu;
	bool has_xcrs;
	struct kvm_xcrs xcrs;
	struct kvm_msrs *msrs;         /* nmsrs entries */
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_debugregs debugregs;
};

/* Host capabilities needed to read/write vCPU state; one per VM. */
struct vcpu_state_caps {
	size_t xsave_size;             /* 0: no XSAVE, use KVM_GET_FPU */
	bool xsave2;                   /* KVM_GET_XSAVE2 available */
	bool xcrs;
	struct kvm_msr_list *msr_list; /* KVM_GET_MSR_INDEX_LIST */
};

int vcpu_state_caps_init(struct vcpu_state_caps *caps, int kvm_fd, int vm_fd);
void vcpu_state_caps_free(struct vcpu_state_caps *caps);
/* The process-wide copy (never freed): the first call queries KVM. */
int vcpu_state_caps_get(int kvm_fd, int vm_fd, const struct vcpu_state_caps **out);

int vcpu_state_read(const struct vcpu_state_caps *caps, int vcpu_fd, struct vcpu_state *s);
int vcpu_state_write(int vcpu_fd, const struct vcpu_state *s);
int vcpu_state_save(const struct vcpu_state *s, struct state_node *node);
/* Every length, count and enum checked; xsave padded to @caps->xsave_size. */
int vcpu_state_parse(const struct vcpu_state_caps *caps, const struct state_node *node,
		     struct vcpu_state *s);
void vcpu_state_free(struct vcpu_state *s);

int vcpu_save(const struct vcpu_state_caps *caps, int vcpu_fd, struct state_node *node);

#endif
