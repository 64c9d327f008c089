/* PCI <-> KVM glue: the only PCI file that knows struct vm. */
#include "devices/pci_vm.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "vmm/acpi.h"
#include "vmm/layout.h"
#include "vmm/vm.h"

static int pci_vm_msi_route_add(void *opaque, uint64_t addr, uint32_t data, unsigned *gsi)
{
	return vm_msi_route_add(opaque, addr, data, gsi);
}

static int pci_vm_msi_route_update(void *opaque, unsigned gsi, uint64_t addr, uint32_t data)
{
	return vm_msi_route_update(opaque, gsi, addr, data);
}

static int pci_vm_irqfd(void *opaque, int fd, unsigned gsi, bool assign)
{
	return vm_irqfd(opaque, fd, gsi, assign);
}

static int pci_vm_ioeventfd(void *opaque, int fd, uint64_t addr, uint32_t len, bool pio,
			    bool assign)
{
	return vm_ioeventfd(opaque, fd, addr, len, pio, assign);
}

const struct pci_irq_ops pci_vm_irq_ops = {
	.msi_route_add = pci_vm_msi_route_add,
	.msi_route_update = pci_vm_msi_route_update,
	.irqfd = pci_vm_irqfd,
	.ioeventfd = pci_vm_ioeventfd,
};

struct pci_vm_bus {
	struct device dev;
	struct pci_bus bus;
	bool attached;
};

static void pci_vm_bus_destroy(struct device *dev)
{
	struct pci_vm_bus *b = (struct pci_vm_bus *)dev;

	pci_bus_destroy(&b->bus);
	if (dev->vm)
		dev->vm->pci = NULL;
	free(b);
}

static const struct device_ops pci_vm_bus_ops = {
	.type = "pci-host",
	.destroy = pci_vm_bus_destroy,
};

int pci_vm_create(struct vm *vm)
{
	struct pci_vm_bus *b = calloc(1, sizeof(*b));
	int ret;

	if (!b)
		return -ENOMEM;
	ret = pci_bus_init(&b->bus, &vm->mmio, &vm->pio, LAYOUT_PCI_ECAM, &pci_vm_irq_ops, vm);
	if (ret) {
		free(b);
		return ret;
	}
	vm->pci = &b->bus;
	return 0;
}

void pci_vm_attach(struct vm *vm)
{
	struct pci_vm_bus *b;

	if (!vm->pci)
		return;
	b = (struct pci_vm_bus *)((char *)vm->pci - offsetof(struct pci_vm_bus, bus));
	if (!b->attached) {
		vm_add_device(vm, &b->dev, &pci_vm_bus_ops, "pci0");
		b->attached = true;
	}
}

void pci_vm_acpi_config(const struct pci_bus *bus, struct acpi_config *acpi)
{
	acpi->pci = bus != NULL;
	acpi->pci_ecam_base = bus ? bus->ecam_base : 0;
	acpi->pci_bus_start = 0;
	acpi->pci_bus_end = 0;   /* one bus: ECAM covers bus 0 only */
}
