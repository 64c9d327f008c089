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

/* ---- DSDT: PCI interrupt routing (ACPI 6.4 §6.2.13 _PRT) ---- */

/* PkgLength (§20.2.4): sets *end past the package, returns the byte after
 * the encoding, or NULL if it does not fit in [p, lim). */
static const u8 *aml_pkg(const u8 *p, const u8 *lim, const u8 **end)
{
	u32 follow, len;

	if (p >= lim)
		return NULL;
	follow = p[0] >> 6;
	len = follow ? p[0] & 0x0f : p[0] & 0x3f;
	if ((u64)(lim - p) < follow + 1)
		return NULL;
	for (u32 i = 0; i < follow; i++)
		len |= (u32)p[1 + i] << (4 + 8 * i);
	if (len < follow + 1 || len > (u64)(lim - p))
		return NULL;
	*end = p + len;
	return p + follow + 1;
}

/* An integer (§20.2.3: ZeroOp, OneOp, Byte/Word/DWord/QWord prefix). */
static const u8 *aml_int(const u8 *p, const u8 *lim, u64 *v)
{
	static const u8 size[] = { [0x0a] = 1, [0x0b] = 2, [0x0c] = 4, [0x0e] = 8 };
	u32 n;

	if (p >= lim)
		return NULL;
	if (p[0] == 0x00 || p[0] == 0x01) {
		*v = p[0];
		return p + 1;
	}
	n = p[0] < sizeof(size) ? size[p[0]] : 0;
	if (!n || (u64)(lim - p) < n + 1)
		return NULL;
	*v = 0;
	for (u32 i = 0; i < n; i++)
		*v |= (u64)p[1 + i] << (8 * i);
	return p + 1 + n;
}

/* The DSDT through the FADT (X_DSDT at 140, else DSDT at 40). */
static const struct acpi_header *acpi_dsdt(bool scan)
{
	const struct acpi_header *fadt = acpi_find_table("FACP", scan);
	u64 addr = 0;

	if (!fadt)
		return NULL;
	if (fadt->length >= 148)
		memcpy(&addr, (const u8 *)fadt + 140, 8);
	if (!addr && fadt->length >= 44)
		memcpy(&addr, (const u8 *)fadt + 40, 4);
	if (!addr || addr >= GUEST_MMIO_GAP_START)
		return NULL;
	const struct acpi_header *d = (const struct acpi_header *)addr;
	if (memcmp(d->signature, "DSDT", 4) || d->length < sizeof(*d) || !checksum_ok(d, d->length))
		return NULL;
	return d;
}

int acpi_prt_gsi(u8 slot, u8 pin, bool scan)
{
	static const u8 name[] = { 0x08, '_', 'P', 'R', 'T', 0x12 };   /* Name(_PRT, Package */
	const struct acpi_header *dsdt = acpi_dsdt(scan);

	if (!dsdt)
		return -1;
	const u8 *p = (const u8 *)(dsdt + 1), *lim = (const u8 *)dsdt + dsdt->length, *end;
	while (p + sizeof(name) <= lim && memcmp(p, name, sizeof(name)))
		p++;
	if (p + sizeof(name) > lim)
		return -1;
	p = aml_pkg(p + sizeof(name), lim, &end);
	if (!p || p >= end)
		return -1;
	u32 n = *p++;
	for (u32 i = 0; i < n; i++) {
		const u8 *ie;
		u64 v[4];

		if (p >= end || *p != 0x12)
			return -1;
		p = aml_pkg(p + 1, end, &ie);
		if (!p || p >= ie || *p++ != 4)
			return -1;
		for (u32 k = 0; k < 4 && p; k++)
			p = aml_int(p, ie, &v[k]);
		if (!p || p != ie)
			return -1;
		/* Address: device in the high word, 0xFFFF = every function. */
		if (v[0] >> 16 == slot && (v[0] & 0xffff) == 0xffff && v[1] == pin && v[2] == 0)
			return v[3] < 256 ? (int)v[3] : -1;
	}
	return -1;
}
