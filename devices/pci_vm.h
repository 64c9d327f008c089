/* Binding of the PCI core to a struct vm: MSI routes, irqfds and ioeventfds
 * go to KVM through the vm_* helpers, and the ACPI description follows the bus. */
#ifndef DEVICES_PCI_VM_H
#define DEVICES_PCI_VM_H

#include "devices/pci.h"

struct vm;
struct acpi_config;

extern const struct pci_irq_ops pci_vm_irq_ops;   /* opaque = struct vm * */

/* Allocate and register the root bus of @vm (ECAM at LAYOUT_PCI_ECAM). */
int pci_vm_create(struct vm *vm, struct pci_bus **out);
void pci_vm_destroy(struct pci_bus *bus);
/* Fill the PCI fields of the ACPI configuration (DSDT PNP0A08 + MCFG). */
void pci_vm_acpi_config(const struct pci_bus *bus, struct acpi_config *acpi);

#endif
