/* PCI <-> KVM glue: the only PCI file that knows struct vm. */
#include "devices/pci_vm.h"

#include <errno.h>
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

int pci_vm_create(struct vm *vm, struct pci_bus **out)
{
	struct pci_bus *bus = calloc(1, sizeof(*bus));
	int ret;

	if (!bus)
		return -ENOMEM;
	ret = pci_bus_init(bus, &vm->mmio, &vm->pio, LAYOUT_PCI_ECAM, &pci_vm_irq_ops, vm);
	if (ret) {
		free(bus);
		return ret;
	}
	*out = bus;
	return 0;
}

void pci_vm_destroy(struct pci_bus *bus)
{
	if (!bus)
		return;
	pci_bus_destroy(bus);
	free(bus);
}

void pci_vm_acpi_config(const struct pci_bus *bus, struct acpi_config *acpi)
{
	acpi->pci = bus != NULL;
	acpi->pci_ecam_base = bus ? bus->ecam_base : 0;
	acpi->pci_bus_start = 0;
	acpi->pci_bus_end = 0;   /* one bus: ECAM covers bus 0 only */
}
