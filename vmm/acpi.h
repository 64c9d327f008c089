/* ACPI tables for x86 guests (ACPI 6.x): RSDP, XSDT, FADT (hardware-reduced),
 * DSDT, MADT, and MCFG once PCI exists. Written into guest RAM at
 * LAYOUT_ACPI_START. Power-off and reset go through the FADT sleep control and
 * reset registers at the ports in layout.h. */
#ifndef VMM_ACPI_H
#define VMM_ACPI_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/mem.h"

struct acpi_config {
	unsigned nr_cpus;          /* LAPIC ids 0..nr_cpus-1 */
	bool pci;                  /* describe the PCI root bus (DSDT PNP0A08) and MCFG */
	uint64_t pci_ecam_base;
	uint8_t pci_bus_start, pci_bus_end;
};

/* Build all tables; on success store the RSDP's guest-physical address. */
int acpi_build(struct guest_mem *mem, const struct acpi_config *cfg, uint64_t *rsdp_gpa);

#endif
