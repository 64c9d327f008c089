/* Binding of the PCI core to a struct vm: MSI routes, irqfds and ioeventfds
 * go to KVM through the vm_* helpers, and the ACPI description follows the bus. */
#ifndef DEVICES_PCI_VM_H
#define DEVICES_PCI_VM_H

#include "devices/pci.h"

struct vm;
struct acpi_config;

extern const struct pci_irq_ops pci_vm_irq_ops;   /* opaque = struct vm * */

/* Create the root bus of @vm (ECAM at LAYOUT_PCI_ECAM) and set vm->pci.
 * Call pci_vm_attach() after the last PCI device was created: it adds the
 * bus to the VM's device list, so it is destroyed after its devices. */
int pci_vm_create(struct vm *vm);
void pci_vm_attach(struct vm *vm);
/* Fill the PCI fields of the ACPI configuration (DSDT PNP0A08 + MCFG), and
 * the _PRT routes: one per function whose Interrupt Pin the VMM wired to an
 * IOAPIC GSI (pci_device.intx_gsi). Call after the devices exist. */
void pci_vm_acpi_config(const struct pci_bus *bus, struct acpi_config *acpi);

#endif
