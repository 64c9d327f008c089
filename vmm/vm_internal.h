/* Functions shared between the files of vmm/ that implement struct vm. */
#ifndef VMM_VM_INTERNAL_H
#define VMM_VM_INTERNAL_H

#include "vmm/vm.h"

/* Exit statuses the VMM itself chooses (the guest's own debug-exit values
 * are passed through unchanged). */
#define VM_EXIT_STATUS_VMM_ERROR   125   /* the VMM could not run the VM */
#define VM_EXIT_STATUS_GUEST_CRASH 126   /* triple fault, emulation failure */

int irq_init(struct vm *vm);
void irq_destroy(struct vm *vm);

int vcpu_signal_setup(void);
int vcpu_init(struct vm *vm, struct vcpu *vcpu, unsigned id);
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_setup_boot(struct vcpu *vcpu);
void *vcpu_thread(void *arg);
void vcpu_kick(struct vcpu *vcpu);

/* Coalesced port writes (vmm/coalesced.c). */
void vm_coalesced_setup_ring(struct vm *vm, struct vcpu *vcpu);
void vm_coalesced_destroy(struct vm *vm);

int vm_create_devices(struct vm *vm, char *err, size_t errlen);
struct acpi_config;
/* Fill the device-dependent parts of the ACPI description (PCI, extra tables). */
void vm_describe_acpi(struct vm *vm, struct acpi_config *acpi);

#endif
