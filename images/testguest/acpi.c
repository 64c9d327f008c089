/* RSDP -> XSDT/RSDT -> MADT walk. */
#include "acpi.h"

struct rsdp {
	char signature[8];
	u8 checksum;
	char oem_id[6];
	u8 revision;
	u32 rsdt;
	u32 length;
	u64 xsdt;
	u8 ext_checksum;
	u8 reserved[3];
} __attribute__((packed));

#define MADT_LAPIC   0
#define MADT_X2APIC  9
#define MADT_ENABLED        (1u << 0)
#define MADT_ONLINE_CAPABLE (1u << 1)

static bool checksum_ok(const void *p, u32 len)
{
	const u8 *b = p;
	u8 sum = 0;

	for (u32 i = 0; i < len; i++)
		sum += b[i];
	return sum == 0;
}

u64 acpi_rsdp(bool scan)
{
	const struct hvm_start_info *si = start_info();

	if (si && si->rsdp_paddr)
		return si->rsdp_paddr;
	if (!scan)
		return 0;
	/* ACPI 6.4 §5.2.5.1: on 16-byte boundaries in the BIOS area. */
	for (u64 a = 0xe0000; a < 0x100000; a += 16)
		if (memcmp((const void *)a, "RSD PTR ", 8) == 0 && checksum_ok((const void *)a, 20))
			return a;
	return 0;
}

const struct acpi_header *acpi_find_table(const char sig[4], bool scan)
{
	u64 addr = acpi_rsdp(scan);

	if (!addr)
		return NULL;
	const struct rsdp *r = (const struct rsdp *)addr;
	if (memcmp(r->signature, "RSD PTR ", 8) != 0 || !checksum_ok(r, 20))
		return NULL;

	bool x = r->revision >= 2 && r->xsdt;
	u64 root_addr = x ? r->xsdt : r->rsdt;
	if (!root_addr || root_addr >= GUEST_MMIO_GAP_START)
		return NULL;
	const struct acpi_header *root = (const struct acpi_header *)root_addr;
	if (root->length < sizeof(*root) || !checksum_ok(root, root->length))
		return NULL;

	u32 entry_size = x ? 8 : 4;
	u32 n = (root->length - sizeof(*root)) / entry_size;
	const u8 *entries = (const u8 *)(root + 1);
	for (u32 i = 0; i < n; i++) {
		u64 t = 0;
		memcpy(&t, entries + i * entry_size, entry_size);
		if (!t || t >= GUEST_MMIO_GAP_START)
			continue;
		const struct acpi_header *h = (const struct acpi_header *)t;
		if (memcmp(h->signature, sig, 4) == 0 && checksum_ok(h, h->length))
			return h;
	}
	return NULL;
}

u32 acpi_madt_cpus(u32 *ids, u32 max, bool scan)
{
	const struct acpi_header *madt = acpi_find_table("APIC", scan);
	u32 count = 0;

	if (!madt)
		return 0;
	/* Header, then local APIC address (u32) and flags (u32), then entries. */
	const u8 *p = (const u8 *)madt + sizeof(*madt) + 8;
	const u8 *end = (const u8 *)madt + madt->length;
	while (p + 2 <= end && p[1] >= 2 && p + p[1] <= end) {
		u32 id = 0, flags = 0;
		bool cpu = false;
		if (p[0] == MADT_LAPIC && p[1] >= 8) {
			id = p[3];
			memcpy(&flags, p + 4, 4);
			cpu = true;
		} else if (p[0] == MADT_X2APIC && p[1] >= 16) {
			memcpy(&id, p + 4, 4);
			memcpy(&flags, p + 8, 4);
			cpu = true;
		}
		if (cpu && (flags & (MADT_ENABLED | MADT_ONLINE_CAPABLE))) {
			if (ids && count < max)
				ids[count] = id;
			count++;
		}
		p += p[1];
	}
	return count;
}
