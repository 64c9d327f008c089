/* ACPI tables for x86 guests (ACPI 6.x): RSDP, XSDT, FADT (hardware-reduced),
 * DSDT, MADT, and MCFG once PCI exists. Written into guest RAM at
 * LAYOUT_ACPI_START. Power-off and reset go through the FADT sleep control and
 * reset registers at the ports in layout.h. */
#ifndef VMM_ACPI_H
#define VMM_ACPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/mem.h"

/* A table built elsewhere (e.g. VIOT): a complete ACPI table whose header
 * already holds its signature and length; acpi_build copies it, fills in the
 * checksum and links it from the XSDT. */
struct acpi_extra_table {
	const void *data;
	size_t len;
};

/* One PCI interrupt route for the DSDT's _PRT (ACPI 6.4 §6.2.13): INTx pin
 * @pin (0 = INTA# .. 3 = INTD#) of device @slot on the root bus is wired to
 * IOAPIC input @gsi. */
struct acpi_pci_irq {
	uint8_t slot, pin;
	uint32_t gsi;
};

#define ACPI_MAX_EXTRA_TABLES 8
#define ACPI_PCI_SLOTS        32
#define ACPI_MAX_PCI_IRQS     (ACPI_PCI_SLOTS * 4)
#define ACPI_MAX_CPUS         254   /* MADT IOAPIC id (= nr_cpus) is one byte */

struct acpi_config {
	unsigned nr_cpus;          /* LAPIC ids 0..nr_cpus-1 */
	bool pci;                  /* describe the PCI root bus (DSDT PNP0A08) and MCFG */
	uint64_t pci_ecam_base;    /* ECAM address of bus 0 (MCFG base), e.g. LAYOUT_PCI_ECAM */
	uint8_t pci_bus_start, pci_bus_end;
	uint64_t pci_mmio64_base;  /* optional 64-bit BAR window above RAM; size 0 = none */
	uint64_t pci_mmio64_size;
	/* INTx routes of the root bus's functions: PCI0._PRT (with pci only). */
	struct acpi_pci_irq pci_irqs[ACPI_MAX_PCI_IRQS];
	unsigned nr_pci_irqs;
	/* Tables built elsewhere, in XSDT order; add with acpi_config_add_table(). */
	struct acpi_extra_table extra[ACPI_MAX_EXTRA_TABLES];
	unsigned nr_extra;
};

/* Append @data (@len bytes, a complete table; kept by reference until
 * acpi_build) to @cfg's extra tables. 0, or -ENOSPC when all
 * ACPI_MAX_EXTRA_TABLES are taken (-EINVAL for no data). */
int acpi_config_add_table(struct acpi_config *cfg, const void *data, size_t len);

/* Append an INTx route. -EINVAL for a slot, pin or GSI out of range (GSIs
 * are inputs of the one IOAPIC, 0..KVM_IOAPIC_NUM_PINS-1), -EEXIST for a
 * pin already routed, -ENOSPC when full. */
int acpi_config_add_pci_irq(struct acpi_config *cfg, unsigned slot, unsigned pin, uint32_t gsi);

/* Signature-independent pieces, shared with the tests and other table builders. */
#define ACPI_HEADER_SIZE      36
#define ACPI_RSDP_SIZE        36
#define ACPI_OEM_ID           "VMM   "     /* 6 bytes */
#define ACPI_OEM_TABLE_ID     "VMM     "   /* 8 bytes */
#define ACPI_CREATOR_ID       "VMM "       /* 4 bytes */

/* FADT fields (ACPI 6.4 §5.2.9, Table 5.9). */
#define ACPI_FADT_SIZE        276
#define ACPI_FADT_REVISION    6
#define ACPI_FADT_MINOR       4
#define ACPI_FADT_F_PWR_BUTTON      (1u << 4)
#define ACPI_FADT_F_SLP_BUTTON      (1u << 5)
#define ACPI_FADT_F_RESET_REG_SUP   (1u << 10)
#define ACPI_FADT_F_HW_REDUCED_ACPI (1u << 20)
#define ACPI_FADT_BOOT_VGA_NOT_PRESENT  (1u << 2)
#define ACPI_FADT_BOOT_CMOS_RTC_NOT_PRESENT (1u << 5)
#define ACPI_FADT_HYPERVISOR_ID  0x00000000004d4d56ULL  /* "VMM" */

/* Sum of @len bytes, mod 256: an ACPI table is valid when this is 0. */
uint8_t acpi_checksum(const void *data, size_t len);

/* Build all tables; on success store the RSDP's guest-physical address. */
int acpi_build(struct guest_mem *mem, const struct acpi_config *cfg, uint64_t *rsdp_gpa);

#endif
