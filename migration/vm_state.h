/* VM-wide in-kernel state: PIC master/slave and IOAPIC (KVM_GET_IRQCHIP),
 * PIT (KVM_GET_PIT2) and kvmclock (KVM_GET_CLOCK).
 *
 * Nodes (children of the root, version 1 each):
 *   /irqchip   pic-master, pic-slave (struct kvm_pic_state), ioapic (struct kvm_ioapic_state)
 *   /pit       state (struct kvm_pit_state2)          -- only when the VM has a PIT
 *   /clock     clock (u64 ns), flags (u32, informational)
 * Loading sets the clock back to the saved value, so guest time continues
 * where it stopped instead of jumping by the time spent on disk. */
#ifndef MIGRATION_VM_STATE_H
#define MIGRATION_VM_STATE_H

#include <linux/kvm.h>
#include <stdbool.h>

struct state_node;

#define VM_STATE_VERSION 1

struct vm_kstate {
	bool has_irqchip;
	struct kvm_pic_state pic[2];
	struct kvm_ioapic_state ioapic;
	bool has_pit;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

int vm_kstate_read(int vm_fd, bool irqchip, bool pit, struct vm_kstate *s);
int vm_kstate_save(const struct vm_kstate *s, struct state_node *root);
int vm_kstate_parse(const struct state_node *root, struct vm_kstate *s);
int vm_kstate_write(int vm_fd, const struct vm_kstate *s);

#endif
