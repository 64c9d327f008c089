#ifndef VMM_CPUID_H
#define VMM_CPUID_H

#include <linux/kvm.h>

#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT        (1u << 28)

/* Fetch KVM_GET_SUPPORTED_CPUID, growing the buffer until it fits. */
int cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out);
/* KVM_GET_SUPPORTED_CPUID costs about 0.3 ms where each host CPUID traps to
 * a hypervisor below us (nested KVM, PVM), a tenth of a whole `vmm run`.
 * cpuid_prefetch_start() runs it on a short-lived thread with its own dup of
 * @kvm_fd while the caller creates the VM; NULL if the thread cannot start.
 * cpuid_prefetch_take() returns that result, or fetches it in the caller when
 * the thread has not begun yet (so a busy machine never makes us wait for the
 * thread to be scheduled); NULL @p fetches in the caller. Both take and drop
 * consume @p; drop discards the result. */
struct cpuid_prefetch;
struct cpuid_prefetch *cpuid_prefetch_start(int kvm_fd);
int cpuid_prefetch_take(struct cpuid_prefetch *p, int kvm_fd, struct kvm_cpuid2 **out);
void cpuid_prefetch_drop(struct cpuid_prefetch *p);
/* Set APIC id / topology / hypervisor leaves for one vCPU (in place). */
void cpuid_patch_for_vcpu(struct kvm_cpuid2 *c, unsigned apic_id, unsigned nr_cpus);

#endif
