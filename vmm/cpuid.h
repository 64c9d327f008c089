#ifndef VMM_CPUID_H
#define VMM_CPUID_H

#include <linux/kvm.h>

#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT        (1u << 28)

/* Fetch KVM_GET_SUPPORTED_CPUID, growing the buffer until it fits. It costs
 * about 0.3 ms where each host CPUID traps to a hypervisor below us (nested
 * KVM, PVM): vm_create runs it as a background step (vmm/bgjob.h). */
int cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out);
/* Set APIC id / topology / hypervisor leaves for one vCPU (in place). */
void cpuid_patch_for_vcpu(struct kvm_cpuid2 *c, unsigned apic_id, unsigned nr_cpus);

#endif
