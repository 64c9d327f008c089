/* Just enough ACPI to count CPUs (ACPI 6.4 §5.2.5 RSDP, §5.2.12 MADT) and to
 * route PCI INTx (§6.2.13 _PRT in the DSDT). */
#ifndef TESTGUEST_ACPI_H
#define TESTGUEST_ACPI_H

#include "guest.h"

struct acpi_header {
	char signature[4];
	u32 length;
	u8 revision;
	u8 checksum;
	char oem_id[6];
	char oem_table_id[8];
	u32 oem_revision;
	u32 creator_id;
	u32 creator_revision;
} __attribute__((packed));

/* The RSDP from hvm_start_info, or (if @scan) found in 0xe0000-0xfffff. */
u64 acpi_rsdp(bool scan);
/* A table by signature through the XSDT (or RSDT); checksum verified. */
const struct acpi_header *acpi_find_table(const char sig[4], bool scan);
/* Enabled (or online-capable) processor entries in the MADT; 0 if no MADT.
 * Stores up to @max APIC ids in @ids (may be NULL). */
u32 acpi_madt_cpus(u32 *ids, u32 max, bool scan);
/* The GSI the DSDT's _PRT routes INTx @pin (0 = INTA#) of device @slot on
 * the root bus to, as an OS would read it; -1 without a DSDT, a _PRT or an
 * entry. Decodes the form our VMM emits (Package(4) entries, Source Zero). */
int acpi_prt_gsi(u8 slot, u8 pin, bool scan);

#endif
