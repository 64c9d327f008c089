/* Interrupt routing: ISA lines through the in-kernel PIC + IOAPIC, and MSI
 * routes (GSI >= 24) for PCI devices, delivered through irqfd. KVM replaces the
 * whole routing table on every KVM_SET_GSI_ROUTING, so we keep our copy,
 * starting with the default PIC/IOAPIC entries KVM installs with the irqchip. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/kvm.h"
#include "vmm/vm.h"

#define IRQ_IOAPIC_PINS 24
#define IRQ_MAX_ROUTES  1024

static int irq_commit_locked(struct vm *vm)
{
	return kvm_ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, vm->routing);
}

static struct kvm_irq_routing_entry *irq_new_entry_locked(struct vm *vm)
{
	if (vm->routing->nr >= IRQ_MAX_ROUTES)
		return NULL;
	return &vm->routing->entries[vm->routing->nr++];
}

/* The table KVM_CREATE_IRQCHIP installs: GSI 0-15 on both PICs (except the
 * cascade, GSI 2) and GSI 0-23 on the IOAPIC, pin = GSI. */
int irq_init(struct vm *vm)
{
	struct kvm_irq_routing_entry *e;

	vm->routing = calloc(1, sizeof(*vm->routing) + IRQ_MAX_ROUTES * sizeof(vm->routing->entries[0]));
	if (!vm->routing)
		return -ENOMEM;
	pthread_mutex_init(&vm->irq_lock, NULL);
	for (unsigned gsi = 0; gsi < 16; gsi++) {
		if (gsi == 2)
			continue;
		e = irq_new_entry_locked(vm);
		e->gsi = gsi;
		e->type = KVM_IRQ_ROUTING_IRQCHIP;
		e->u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
		e->u.irqchip.pin = gsi % 8;
	}
	for (unsigned gsi = 0; gsi < IRQ_IOAPIC_PINS; gsi++) {
		e = irq_new_entry_locked(vm);
		e->gsi = gsi;
		e->type = KVM_IRQ_ROUTING_IRQCHIP;
		e->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		e->u.irqchip.pin = gsi;
	}
	vm->next_gsi = IRQ_IOAPIC_PINS;
	/* Not committed: KVM_CREATE_IRQCHIP installed the same table, and every
	 * KVM_SET_GSI_ROUTING waits for an SRCU grace period (milliseconds). */
	return 0;
}

void irq_destroy(struct vm *vm)
{
	if (vm->routing) {
		free(vm->routing);
		vm->routing = NULL;
		pthread_mutex_destroy(&vm->irq_lock);
	}
}

int vm_irq_line(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level };

	return kvm_ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq);
}

int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = {
		.address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32), .data = data,
	};
	int ret = kvm_ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi);

	return ret < 0 ? ret : 0;
}

int vm_msi_route_add(struct vm *vm, uint64_t addr, uint32_t data, unsigned *gsi)
{
	struct kvm_irq_routing_entry *e;
	int ret;

	pthread_mutex_lock(&vm->irq_lock);
	e = irq_new_entry_locked(vm);
	if (!e) {
		ret = -ENOSPC;
		goto out;
	}
	memset(e, 0, sizeof(*e));
	e->gsi = vm->next_gsi;
	e->type = KVM_IRQ_ROUTING_MSI;
	e->u.msi.address_lo = (uint32_t)addr;
	e->u.msi.address_hi = (uint32_t)(addr >> 32);
	e->u.msi.data = data;
	ret = irq_commit_locked(vm);
	if (ret < 0) {
		vm->routing->nr--;
		goto out;
	}
	*gsi = vm->next_gsi++;
	ret = 0;
out:
	pthread_mutex_unlock(&vm->irq_lock);
	return ret;
}

int vm_msi_route_update(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&vm->irq_lock);
	for (unsigned i = 0; i < vm->routing->nr; i++) {
		struct kvm_irq_routing_entry *e = &vm->routing->entries[i];

		if (e->gsi != gsi || e->type != KVM_IRQ_ROUTING_MSI)
			continue;
		if (e->u.msi.address_lo == (uint32_t)addr && e->u.msi.address_hi == (uint32_t)(addr >> 32) &&
		    e->u.msi.data == data) {
			ret = 0; /* unchanged: skip the ioctl, it rebuilds KVM's whole table */
			break;
		}
		e->u.msi.address_lo = (uint32_t)addr;
		e->u.msi.address_hi = (uint32_t)(addr >> 32);
		e->u.msi.data = data;
		ret = irq_commit_locked(vm);
		break;
	}
	pthread_mutex_unlock(&vm->irq_lock);
	return ret < 0 ? ret : 0;
}

int vm_irqfd(struct vm *vm, int fd, unsigned gsi, bool assign)
{
	struct kvm_irqfd irqfd = {
		.fd = (uint32_t)fd, .gsi = gsi, .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
	};

	return kvm_ioctl(vm->vm_fd, KVM_IRQFD, &irqfd);
}

int vm_ioeventfd(struct vm *vm, int fd, uint64_t addr, uint32_t len, bool pio, bool assign)
{
	struct kvm_ioeventfd ev = {
		.addr = addr, .len = len, .fd = fd,
		.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};

	return kvm_ioctl(vm->vm_fd, KVM_IOEVENTFD, &ev);
}
