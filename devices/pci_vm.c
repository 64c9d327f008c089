/* PCI <-> KVM glue: the only PCI file that knows struct vm. */
#include "devices/pci_vm.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "migration/state.h"
#include "vmm/acpi.h"
#include "vmm/layout.h"
#include "vmm/log.h"
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

/* The bus's own state: the latched CONFIG_ADDRESS and the host bridge's
 * config space. Devices on the bus save their own config spaces. */
static int pci_vm_bus_save(struct device *dev, struct state_node *node)
{
	struct pci_vm_bus *b = (struct pci_vm_bus *)dev;
	int ret;

	pthread_mutex_lock(&b->bus.lock);
	ret = state_set_version(node, 1);
	if (!ret)
		ret = state_put_u32(node, "cf8", b->bus.cf8);
	if (!ret)
		ret = state_put_bytes(node, "host-bridge-config", b->bus.host_bridge.cfg, PCI_CFG_SIZE);
	pthread_mutex_unlock(&b->bus.lock);
	return ret;
}

/* Only the bits a guest may write are taken from the snapshot, so a hostile
 * file cannot change the bridge's identity or capability layout. */
static int pci_vm_bus_load(struct device *dev, const struct state_node *node)
{
	struct pci_vm_bus *b = (struct pci_vm_bus *)dev;
	struct pci_device *hb = &b->bus.host_bridge;
	uint8_t cfg[PCI_CFG_SIZE];
	uint32_t cf8;
	int ret;

	ret = state_node_version(node, 1, 1, NULL);
	if (!ret)
		ret = state_get_u32(node, "cf8", &cf8);
	if (!ret)
		ret = state_get_bytes(node, "host-bridge-config", cfg, sizeof(cfg));
	if (ret)
		return ret;
	pthread_mutex_lock(&b->bus.lock);
	b->bus.cf8 = cf8;
	for (size_t i = 0; i < PCI_CFG_SIZE; i++)
		hb->cfg[i] = (uint8_t)((hb->cfg[i] & ~hb->wmask[i]) | (cfg[i] & hb->wmask[i]));
	pthread_mutex_unlock(&b->bus.lock);
	return 0;
}

static const struct device_ops pci_vm_bus_ops = {
	.type = "pci-host",
	.destroy = pci_vm_bus_destroy,
	.save = pci_vm_bus_save,
	.load = pci_vm_bus_load,
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
	acpi->nr_pci_irqs = 0;
	for (unsigned s = 0; bus && s < PCI_MAX_SLOTS; s++) {
		const struct pci_device *d = bus->slots[s];
		unsigned pin = d ? d->cfg[PCI_INTERRUPT_PIN] : 0;   /* 1 = INTA# */

		/* Only pins the VMM wired to a GSI: the _PRT describes that wiring. */
		if (pin < 1 || pin > 4 || d->intx_gsi < 0)
			continue;
		if (acpi_config_add_pci_irq(acpi, s, pin - 1, (uint32_t)d->intx_gsi))
			log_warn(d->name, "INTx on GSI %d cannot be described in ACPI", d->intx_gsi);
	}
}
