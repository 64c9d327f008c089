/* ACPI tables (vmm/acpi.c) and the AML emitter (vmm/acpi_aml.c).
 * The tables are walked from the RSDP the way an OS does, and the DSDT is
 * decoded by a small independent AML parser below so names, packages and
 * resource templates are checked structurally, not by byte offsets alone. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/acpi.h"
#include "vmm/acpi_aml.h"
#include "vmm/layout.h"
#include "vmm/mem.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

struct tables {
	struct guest_mem mem;
	uint64_t rsdp;
	unsigned n;
	const uint8_t *t[16];
};

/* Validate one table the way Linux's acpi_tb_verify_temp_table does. */
static const uint8_t *get_table(struct tables *tb, uint64_t gpa)
{
	const uint8_t *h = mem_gpa_to_hva(&tb->mem, gpa, ACPI_HEADER_SIZE);
	uint32_t len;

	cr_assert_not_null(h, "table at 0x%llx not in RAM", (unsigned long long)gpa);
	cr_assert_geq(gpa, LAYOUT_ACPI_START);
	len = rd32(h + 4);
	cr_assert_geq(len, ACPI_HEADER_SIZE);
	cr_assert_leq(gpa + len, LAYOUT_ACPI_END, "%.4s overruns the ACPI window", (const char *)h);
	cr_assert_eq(sum8(h, len), 0, "%.4s checksum", (const char *)h);
	if (!memcmp(h, "XSDT", 4) || !memcmp(h, "FACP", 4) || !memcmp(h, "APIC", 4) ||
	    !memcmp(h, "MCFG", 4) || !memcmp(h, "DSDT", 4)) {
		cr_assert_eq(memcmp(h + 10, "VMM   ", 6), 0);
		cr_assert_eq(memcmp(h + 28, "VMM ", 4), 0);
	}
	return h;
}

static void walk(struct tables *tb, const struct acpi_config *cfg, uint64_t size)
{
	const uint8_t *r, *x;
	unsigned n;

	memset(tb, 0, sizeof(*tb));
	cr_assert_eq(mem_init(&tb->mem, size), 0);
	cr_assert_eq(acpi_build(&tb->mem, cfg, &tb->rsdp), 0);
	cr_assert_eq(tb->rsdp % 16, 0);
	cr_assert(tb->rsdp >= LAYOUT_ACPI_START && tb->rsdp < LAYOUT_ACPI_END);
	r = mem_gpa_to_hva(&tb->mem, tb->rsdp, ACPI_RSDP_SIZE);
	cr_assert_not_null(r);
	cr_assert_eq(memcmp(r, "RSD PTR ", 8), 0);
	cr_assert_eq(sum8(r, 20), 0, "RSDP checksum");
	cr_assert_eq(sum8(r, 36), 0, "RSDP extended checksum");
	cr_assert_eq(r[15], 2, "revision");
	cr_assert_eq(rd32(r + 16), 0, "no RSDT");
	cr_assert_eq(rd32(r + 20), 36, "length");
	cr_assert_eq(r[33] | r[34] | r[35], 0, "reserved");

	x = get_table(tb, rd64(r + 24));
	cr_assert_eq(memcmp(x, "XSDT", 4), 0);
	cr_assert_eq(x[8], 1);
	cr_assert_eq((rd32(x + 4) - ACPI_HEADER_SIZE) % 8, 0);
	n = (rd32(x + 4) - ACPI_HEADER_SIZE) / 8;
	cr_assert_leq(n, 16);
	for (unsigned i = 0; i < n; i++)
		tb->t[i] = get_table(tb, rd64(x + ACPI_HEADER_SIZE + 8 * i));
	tb->n = n;
}

static const uint8_t *find(struct tables *tb, const char *sig)
{
	const uint8_t *found = NULL;

	for (unsigned i = 0; i < tb->n; i++)
		if (memcmp(tb->t[i], sig, 4) == 0) {
			cr_assert_null(found, "two %s tables", sig);
			found = tb->t[i];
		}
	return found;
}

/* ---- independent AML decoder for the subset the DSDT uses ---- */

struct aml_named {
	char path[64];
	const uint8_t *val, *end;     /* the DataRefObject's bytes */
};

struct aml_db {
	unsigned n;
	struct aml_named o[64];
	unsigned devices, scopes;
};

static bool pkglen(const uint8_t **p, const uint8_t *end, const uint8_t **pkg_end)
{
	const uint8_t *s = *p;
	unsigned follow;
	uint32_t len;

	if (s >= end)
		return false;
	follow = s[0] >> 6;
	if (follow == 0) {
		len = s[0] & 0x3f;
	} else {
		if (s[0] & 0x30)
			return false; /* bits 5-4 must be zero in the multi-byte form */
		if ((size_t)(end - s) < follow + 1)
			return false;
		len = s[0] & 0x0f;
		for (unsigned i = 0; i < follow; i++)
			len |= (uint32_t)s[1 + i] << (4 + 8 * i);
	}
	if (len > (size_t)(end - s) || len < follow + 1)
		return false;
	*pkg_end = s + len;
	*p = s + follow + 1;
	return true;
}

static bool namestring(const uint8_t **p, const uint8_t *end, const char *scope, char *out, size_t outlen)
{
	const uint8_t *s = *p;
	unsigned nseg = 1;
	bool root = false;
	char buf[64] = "";

	if (s < end && *s == '\\') {
		root = true;
		s++;
	}
	if (s >= end)
		return false;
	if (*s == 0x2e) {
		nseg = 2;
		s++;
	} else if (*s == 0x2f) {
		if (s + 1 >= end)
			return false;
		nseg = s[1];
		s += 2;
	}
	if ((size_t)(end - s) < 4 * nseg)
		return false;
	snprintf(buf, sizeof(buf), "%s", root ? "\\" : scope);
	for (unsigned i = 0; i < nseg; i++) {
		size_t l = strlen(buf);

		if (l + 6 > sizeof(buf))
			return false;
		if (l > 1 || (l == 1 && buf[0] != '\\'))
			buf[l++] = '.';
		memcpy(buf + l, s + 4 * i, 4);
		buf[l + 4] = '\0';
	}
	snprintf(out, outlen, "%s", buf);
	*p = s + 4 * nseg;
	return true;
}

static bool integer(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	const uint8_t *s = *p;
	unsigned n;

	if (s >= end)
		return false;
	switch (*s) {
	case 0x00: *v = 0; *p = s + 1; return true;
	case 0x01: *v = 1; *p = s + 1; return true;
	case 0xff: *v = ~0ULL; *p = s + 1; return true;
	case 0x0a: n = 1; break;
	case 0x0b: n = 2; break;
	case 0x0c: n = 4; break;
	case 0x0e: n = 8; break;
	default: return false;
	}
	if ((size_t)(end - s) < n + 1)
		return false;
	*v = 0;
	for (unsigned i = 0; i < n; i++)
		*v |= (uint64_t)s[1 + i] << (8 * i);
	*p = s + 1 + n;
	return true;
}

static bool dataobj(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *s = *p, *pe;
	uint64_t v;

	if (integer(p, end, &v))
		return true;
	if (s >= end)
		return false;
	if (*s == 0x0d) {
		const uint8_t *z = memchr(s + 1, 0, (size_t)(end - s - 1));
		if (!z)
			return false;
		*p = z + 1;
		return true;
	}
	if (*s == 0x12) { /* Package */
		s++;
		if (!pkglen(&s, end, &pe) || s >= pe)
			return false;
		unsigned nel = *s++;
		for (unsigned i = 0; i < nel; i++)
			if (!dataobj(&s, pe))
				return false;
		if (s != pe)
			return false;
		*p = pe;
		return true;
	}
	if (*s == 0x11) { /* Buffer */
		s++;
		if (!pkglen(&s, end, &pe) || !integer(&s, pe, &v))
			return false;
		if (v != (uint64_t)(pe - s))
			return false;
		*p = pe;
		return true;
	}
	return false;
}

static bool termlist(struct aml_db *db, const uint8_t *p, const uint8_t *end, const char *scope)
{
	while (p < end) {
		char path[64];
		const uint8_t *pe;

		if (*p == 0x08) { /* Name */
			p++;
			if (!namestring(&p, end, scope, path, sizeof(path)) || db->n == 64)
				return false;
			struct aml_named *o = &db->o[db->n++];
			snprintf(o->path, sizeof(o->path), "%s", path);
			o->val = p;
			if (!dataobj(&p, end))
				return false;
			o->end = p;
		} else if (*p == 0x10 || (*p == 0x5b && p + 1 < end && p[1] == 0x82)) {
			bool dev = *p == 0x5b;

			p += dev ? 2 : 1;
			if (!pkglen(&p, end, &pe) || !namestring(&p, pe, scope, path, sizeof(path)))
				return false;
			if (dev)
				db->devices++;
			else
				db->scopes++;
			if (!termlist(db, p, pe, path))
				return false;
			p = pe;
		} else {
			return false;
		}
	}
	return p == end;
}

static const struct aml_named *lookup(const struct aml_db *db, const char *path)
{
	for (unsigned i = 0; i < db->n; i++)
		if (strcmp(db->o[i].path, path) == 0)
			return &db->o[i];
	return NULL;
}

static uint64_t lookup_int(const struct aml_db *db, const char *path)
{
	const struct aml_named *o = lookup(db, path);
	const uint8_t *p;
	uint64_t v;

	cr_assert_not_null(o, "%s missing", path);
	p = o->val;
	cr_assert(integer(&p, o->end, &v), "%s is not an integer", path);
	return v;
}

/* A _CRS buffer's contents, descriptor by descriptor. */
struct res {
	unsigned n;
	struct { uint8_t tag; const uint8_t *d; size_t len; } r[16];
};

static void parse_crs(const struct aml_db *db, const char *path, struct res *res)
{
	const struct aml_named *o = lookup(db, path);
	const uint8_t *p, *pe;
	uint64_t size;
	bool ended = false;

	cr_assert_not_null(o, "%s missing", path);
	p = o->val;
	cr_assert_eq(*p, 0x11, "%s is not a buffer", path);
	p++;
	cr_assert(pkglen(&p, o->end, &pe));
	cr_assert(integer(&p, pe, &size));
	memset(res, 0, sizeof(*res));
	while (p < pe) {
		size_t hl, dl;
		uint8_t tag;

		cr_assert(!ended, "descriptor after the end tag");
		if (*p & 0x80) {
			tag = *p;
			cr_assert_geq(pe - p, 3);
			dl = rd16(p + 1);
			hl = 3;
		} else {
			tag = (uint8_t)((*p >> 3) & 0xf);
			dl = *p & 7;
			hl = 1;
		}
		cr_assert_leq(hl + dl, (size_t)(pe - p), "descriptor past the buffer");
		cr_assert_lt(res->n, 16);
		res->r[res->n].tag = tag;
		res->r[res->n].d = p + hl;
		res->r[res->n].len = dl;
		res->n++;
		if (tag == 0x0f) /* End Tag */
			ended = true;
		p += hl + dl;
	}
	cr_assert(ended, "%s: no end tag", path);
}

static void parse_dsdt(struct tables *tb, struct aml_db *db)
{
	const uint8_t *fadt = find(tb, "FACP");
	const uint8_t *d;

	cr_assert_not_null(fadt);
	d = get_table(tb, rd64(fadt + 140));
	cr_assert_eq(memcmp(d, "DSDT", 4), 0);
	cr_assert_eq(d[8], 2, "DSDT revision 2: 64-bit integers");
	memset(db, 0, sizeof(*db));
	cr_assert(termlist(db, d + ACPI_HEADER_SIZE, d + rd32(d + 4), "\\"), "DSDT AML is malformed");
}

/* ---- tests ---- */

static const struct acpi_config cfg_pci = {
	.nr_cpus = 2, .pci = true, .pci_ecam_base = LAYOUT_PCI_ECAM, .pci_bus_start = 0, .pci_bus_end = 0,
};

Test(acpi, rsdp_xsdt_and_table_set)
{
	struct tables tb;
	struct acpi_config cfg = { .nr_cpus = 1 };

	walk(&tb, &cfg, 64ULL << 20);
	cr_assert_eq(tb.rsdp, LAYOUT_ACPI_START);
	cr_assert_eq(tb.n, 2);
	cr_assert_not_null(find(&tb, "FACP"));
	cr_assert_not_null(find(&tb, "APIC"));
	cr_assert_null(find(&tb, "MCFG"));
	mem_destroy(&tb.mem);

	walk(&tb, &cfg_pci, 64ULL << 20);
	cr_assert_eq(tb.n, 3);
	cr_assert_not_null(find(&tb, "MCFG"));
	mem_destroy(&tb.mem);
}

Test(acpi, fadt_is_hardware_reduced_with_sleep_and_reset_registers)
{
	struct tables tb;
	const uint8_t *f;

	walk(&tb, &cfg_pci, 64ULL << 20);
	f = find(&tb, "FACP");
	cr_assert_eq(rd32(f + 4), 276, "ACPI 6 FADT length");
	cr_assert_eq(f[8], 6, "major revision");
	cr_assert_eq(f[131], 4, "minor revision");
	uint32_t flags = rd32(f + 112);
	cr_assert(flags & (1u << 20), "HW_REDUCED_ACPI");
	cr_assert(flags & (1u << 10), "RESET_REG_SUP");
	cr_assert_eq(rd32(f + 36), 0, "no FACS");
	cr_assert_eq(rd64(f + 132), 0, "no X_FACS");
	cr_assert_eq(rd16(f + 46), 0, "no SCI");
	cr_assert_eq(rd32(f + 48), 0, "no SMI_CMD");
	cr_assert_eq(rd32(f + 56) | rd32(f + 64) | rd32(f + 76) | rd32(f + 80), 0, "no PM blocks");
	for (unsigned off = 148; off < 244; off++)
		cr_assert_eq(f[off], 0, "X_PM/GPE GAS byte %u must be empty", off);
	uint16_t boot = rd16(f + 109);
	cr_assert_eq(boot & (1u << 3), 0, "MSI must not be marked unsupported");
	cr_assert(boot & (1u << 5), "CMOS RTC not present");
	/* DSDT pointers agree. */
	cr_assert_eq(rd32(f + 40), rd64(f + 140));
	cr_assert_neq(rd64(f + 140), 0);

	struct { unsigned off; uint16_t port; } gas[] = {
		{ 116, PORT_ACPI_RESET }, { 244, PORT_ACPI_SLEEP_CTL }, { 256, PORT_ACPI_SLEEP_STS },
	};
	for (int i = 0; i < 3; i++) {
		const uint8_t *g = f + gas[i].off;

		cr_assert_eq(g[0], 1, "system I/O");
		cr_assert_eq(g[1], 8, "8 bits");
		cr_assert_eq(g[2], 0, "offset 0");
		cr_assert_eq(g[3], 1, "byte access");
		cr_assert_eq(rd64(g + 4), gas[i].port);
	}
	cr_assert_eq(f[128], ACPI_RESET_VALUE);
	cr_assert_eq(rd64(f + 268), ACPI_FADT_HYPERVISOR_ID);
	cr_assert_eq(memcmp(f + 268, "VMM", 3), 0);
	mem_destroy(&tb.mem);
}

static void check_madt(unsigned cpus)
{
	struct tables tb;
	struct acpi_config cfg = { .nr_cpus = cpus };
	const uint8_t *m, *p, *end;
	unsigned lapics = 0, ioapics = 0, isos = 0, entries = 0;

	walk(&tb, &cfg, 64ULL << 20);
	m = find(&tb, "APIC");
	cr_assert_not_null(m);
	cr_assert_eq(m[8], 5);
	cr_assert_eq(rd32(m + 36), 0xfee00000u);
	cr_assert_eq(rd32(m + 40), 1, "PCAT_COMPAT");
	end = m + rd32(m + 4);
	for (p = m + 44; p < end; p += p[1]) {
		cr_assert_geq(p[1], 2);
		cr_assert_leq(p + p[1], end);
		entries++;
		switch (p[0]) {
		case 0:
			cr_assert_eq(p[1], 8);
			cr_assert_eq(p[2], lapics, "UID in order");
			cr_assert_eq(p[3], lapics, "APIC id = vCPU index");
			cr_assert_eq(rd32(p + 4), 1, "enabled");
			lapics++;
			break;
		case 1:
			cr_assert_eq(p[1], 12);
			cr_assert_eq(p[2], cpus, "IOAPIC id after the LAPIC ids");
			cr_assert_eq(rd32(p + 4), 0xfec00000u);
			cr_assert_eq(rd32(p + 8), 0, "GSI base");
			ioapics++;
			break;
		case 2:
			cr_assert_eq(p[1], 10);
			cr_assert_eq(p[2], 0, "ISA");
			cr_assert_eq(p[3], 0, "IRQ0");
			cr_assert_eq(rd32(p + 4), 2, "GSI2");
			cr_assert_eq(rd16(p + 8) & 0xc, 0x4, "edge");
			cr_assert_eq(rd16(p + 8) & 0x3, 0x1, "active high");
			isos++;
			break;
		default:
			cr_assert_fail("unexpected MADT entry type %u", p[0]);
		}
	}
	cr_assert_eq(p, end);
	cr_assert_eq(lapics, cpus);
	cr_assert_eq(ioapics, 1);
	cr_assert_eq(isos, 1);
	cr_assert_eq(entries, cpus + 2);
	mem_destroy(&tb.mem);
}

Test(acpi, madt_1_cpu) { check_madt(1); }
Test(acpi, madt_2_cpus) { check_madt(2); }
Test(acpi, madt_64_cpus) { check_madt(64); }
Test(acpi, madt_254_cpus) { check_madt(254); }

Test(acpi, mcfg_fields)
{
	struct tables tb;
	struct acpi_config cfg = cfg_pci;
	const uint8_t *m;

	cfg.pci_bus_start = 0;
	cfg.pci_bus_end = 255;
	walk(&tb, &cfg, 64ULL << 20);
	m = find(&tb, "MCFG");
	cr_assert_eq(rd32(m + 4), 60);
	cr_assert_eq(m[8], 1);
	cr_assert_eq(rd64(m + 36), 0, "reserved");
	cr_assert_eq(rd64(m + 44), LAYOUT_PCI_ECAM);
	cr_assert_eq(rd16(m + 52), 0, "segment");
	cr_assert_eq(m[54], 0);
	cr_assert_eq(m[55], 255);
	cr_assert_eq(rd32(m + 56), 0);
	mem_destroy(&tb.mem);
}

/* Named object @path must be a Package whose PkgLength ends exactly where
 * the object does; *p is left at its first element, *pe at its end.
 * Returns NumElements. */
static unsigned package_open(const struct aml_db *db, const char *path, const uint8_t **p,
			     const uint8_t **pe)
{
	const struct aml_named *o = lookup(db, path);

	cr_assert_not_null(o, "%s missing", path);
	*p = o->val;
	cr_assert_eq(*(*p)++, 0x12, "%s is a Package", path);
	cr_assert(pkglen(p, o->end, pe));
	cr_assert_eq(*pe, o->end, "%s: PkgLength ends exactly at the end of the object", path);
	return *(*p)++;
}

static void check_s5(const struct aml_db *db)
{
	const uint8_t *p, *pe;
	uint64_t v;

	cr_assert_eq(package_open(db, "\\_S5_", &p, &pe), 4, "four elements");
	cr_assert(integer(&p, pe, &v));
	cr_assert_eq(v, ACPI_S5_TYPE, "SLP_TYPa");
	cr_assert(integer(&p, pe, &v));
	cr_assert_eq(v, ACPI_S5_TYPE, "SLP_TYPb");
	cr_assert(integer(&p, pe, &v));
	cr_assert(integer(&p, pe, &v));
	cr_assert_eq(p, pe);
}

static void check_com1(const struct aml_db *db)
{
	struct res r;

	cr_assert_eq(lookup_int(db, "\\_SB_.COM1._HID"), aml_eisaid_value("PNP0501"));
	parse_crs(db, "\\_SB_.COM1._CRS", &r);
	cr_assert_eq(r.n, 3);
	cr_assert_eq(r.r[0].tag, 0x08, "I/O port descriptor");
	cr_assert_eq(r.r[0].len, 7);
	cr_assert_eq(r.r[0].d[0], 1, "16-bit decode");
	cr_assert_eq(rd16(r.r[0].d + 1), 0x3f8);
	cr_assert_eq(rd16(r.r[0].d + 3), 0x3f8);
	cr_assert_eq(r.r[0].d[6], 8);
	cr_assert_eq(r.r[1].tag, 0x04, "IRQ descriptor");
	cr_assert_eq(rd16(r.r[1].d), 1u << 4);
	cr_assert_eq(r.r[2].tag, 0x0f);
}

Test(acpi, dsdt_without_pci)
{
	struct tables tb;
	struct acpi_config cfg = { .nr_cpus = 1 };
	struct aml_db db;

	walk(&tb, &cfg, 64ULL << 20);
	parse_dsdt(&tb, &db);
	check_s5(&db);
	check_com1(&db);
	cr_assert_null(lookup(&db, "\\_SB_.PCI0._HID"));
	cr_assert_eq(db.devices, 1);
	cr_assert_eq(db.scopes, 1);
	mem_destroy(&tb.mem);
}

Test(acpi, dsdt_pci_host_bridge)
{
	struct tables tb;
	struct acpi_config cfg = cfg_pci;
	struct aml_db db;
	struct res r;

	cfg.pci_bus_end = 7;
	cfg.pci_mmio64_base = 0x8000000000ULL;
	cfg.pci_mmio64_size = 0x4000000000ULL;
	walk(&tb, &cfg, 64ULL << 20);
	parse_dsdt(&tb, &db);
	check_s5(&db);
	check_com1(&db);
	cr_assert_eq(db.devices, 3);
	cr_assert_eq(lookup_int(&db, "\\_SB_.PCI0._HID"), 0x080ad041, "EisaId(PNP0A08)");
	cr_assert_eq(lookup_int(&db, "\\_SB_.PCI0._CID"), 0x030ad041, "EisaId(PNP0A03)");
	cr_assert_eq(lookup_int(&db, "\\_SB_.PCI0._SEG"), 0);
	cr_assert_eq(lookup_int(&db, "\\_SB_.PCI0._BBN"), 0);
	cr_assert_eq(lookup_int(&db, "\\_SB_.PCI0._UID"), 0);
	cr_assert_null(lookup(&db, "\\_SB_.PCI0._PRT"), "no INTx routed: no _PRT");

	parse_crs(&db, "\\_SB_.PCI0._CRS", &r);
	cr_assert_eq(r.n, 7);
	/* Bus numbers 0-7. */
	cr_assert_eq(r.r[0].tag, 0x88);
	cr_assert_eq(r.r[0].len, 13);
	cr_assert_eq(r.r[0].d[0], 2, "bus number range");
	cr_assert_eq(r.r[0].d[1], 0x0c, "producer, min/max fixed");
	cr_assert_eq(rd16(r.r[0].d + 5), 0);
	cr_assert_eq(rd16(r.r[0].d + 7), 7);
	cr_assert_eq(rd16(r.r[0].d + 11), 8, "length");
	/* Config ports. */
	cr_assert_eq(r.r[1].tag, 0x08);
	cr_assert_eq(rd16(r.r[1].d + 1), 0xcf8);
	cr_assert_eq(r.r[1].d[6], 8);
	/* I/O windows around the config ports. */
	cr_assert_eq(r.r[2].tag, 0x88);
	cr_assert_eq(r.r[2].d[0], 1);
	cr_assert_eq(rd16(r.r[2].d + 5), 0);
	cr_assert_eq(rd16(r.r[2].d + 7), 0xcf7);
	cr_assert_eq(rd16(r.r[2].d + 11), 0xcf8);
	cr_assert_eq(r.r[3].d[0], 1);
	cr_assert_eq(rd16(r.r[3].d + 5), 0xd00);
	cr_assert_eq(rd16(r.r[3].d + 7), 0xffff);
	cr_assert_eq(rd16(r.r[3].d + 11), 0xf300);
	/* 32-bit MMIO window. */
	cr_assert_eq(r.r[4].tag, 0x87);
	cr_assert_eq(r.r[4].len, 23);
	cr_assert_eq(r.r[4].d[0], 0, "memory");
	cr_assert_eq(r.r[4].d[2] & 1, 1, "read-write");
	cr_assert_eq(rd32(r.r[4].d + 7), LAYOUT_PCI_MMIO32_START);
	cr_assert_eq(rd32(r.r[4].d + 11), LAYOUT_PCI_MMIO32_END - 1);
	cr_assert_eq(rd32(r.r[4].d + 19), LAYOUT_PCI_MMIO32_END - LAYOUT_PCI_MMIO32_START);
	/* The window must not cover the ECAM, IOAPIC or LAPIC. */
	cr_assert_leq(LAYOUT_PCI_MMIO32_END, LAYOUT_PCI_ECAM);
	/* 64-bit window. */
	cr_assert_eq(r.r[5].tag, 0x8a);
	cr_assert_eq(r.r[5].len, 43);
	cr_assert_eq(rd64(r.r[5].d + 11), 0x8000000000ULL);
	cr_assert_eq(rd64(r.r[5].d + 19), 0xbfffffffffULL);
	cr_assert_eq(rd64(r.r[5].d + 35), 0x4000000000ULL);
	cr_assert_eq(r.r[6].tag, 0x0f);

	/* ECAM reserved by a motherboard resource device, as Linux requires. */
	cr_assert_eq(lookup_int(&db, "\\_SB_.MRES._HID"), aml_eisaid_value("PNP0C02"));
	parse_crs(&db, "\\_SB_.MRES._CRS", &r);
	cr_assert_eq(r.r[0].tag, 0x86);
	cr_assert_eq(rd32(r.r[0].d + 1), LAYOUT_PCI_ECAM);
	cr_assert_eq(rd32(r.r[0].d + 5), 8u << 20, "8 buses x 1 MiB");
	mem_destroy(&tb.mem);
}

Test(acpi, extra_tables_linked_and_checksummed)
{
	struct tables tb;
	uint8_t viot[48], oem[40];
	struct acpi_config cfg = cfg_pci;
	const uint8_t *t;

	memset(viot, 0x5a, sizeof(viot));
	memcpy(viot, "VIOT", 4);
	viot[4] = sizeof(viot); viot[5] = viot[6] = viot[7] = 0;
	viot[9] = 0x77; /* wrong checksum: acpi_build fixes it */
	memset(oem, 0, sizeof(oem));
	memcpy(oem, "OEMX", 4);
	oem[4] = sizeof(oem);
	/* The second table is appended: both are linked, in order. */
	cr_assert_eq(acpi_config_add_table(&cfg, viot, sizeof(viot)), 0);
	cr_assert_eq(acpi_config_add_table(&cfg, oem, sizeof(oem)), 0);
	cr_assert_eq(cfg.nr_extra, 2);
	walk(&tb, &cfg, 64ULL << 20);
	cr_assert_eq(tb.n, 5);
	/* XSDT order: FADT, MADT, MCFG, then the extra tables as added. */
	cr_assert_eq(memcmp(tb.t[3], "VIOT", 4), 0);
	cr_assert_eq(memcmp(tb.t[4], "OEMX", 4), 0);
	t = find(&tb, "VIOT");
	cr_assert_not_null(t);
	cr_assert_eq(rd32(t + 4), sizeof(viot));
	cr_assert_eq(memcmp(t + 10, viot + 10, sizeof(viot) - 10), 0, "bytes copied verbatim");
	cr_assert_not_null(find(&tb, "OEMX"));
	/* The caller's buffer is not modified. */
	cr_assert_eq(viot[9], 0x77);
	mem_destroy(&tb.mem);
}

Test(acpi, extra_table_list_is_bounded)
{
	struct acpi_config cfg = cfg_pci;
	uint8_t t[ACPI_HEADER_SIZE] = "OEMT";

	for (unsigned i = 0; i < ACPI_MAX_EXTRA_TABLES; i++)
		cr_assert_eq(acpi_config_add_table(&cfg, t, sizeof(t)), 0);
	cr_assert_eq(acpi_config_add_table(&cfg, t, sizeof(t)), -ENOSPC);
	cr_assert_eq(cfg.nr_extra, ACPI_MAX_EXTRA_TABLES);
	cr_assert_eq(acpi_config_add_table(&cfg, NULL, 40), -EINVAL);
}

/* The DSDT of @cfg, for byte-level checks. */
static const uint8_t *dsdt_bytes(struct tables *tb, size_t *len)
{
	const uint8_t *d = get_table(tb, rd64(find(tb, "FACP") + 140));

	*len = rd32(d + 4);
	return d;
}

/* PCI0._PRT decoded with the independent parser: n Package(4) entries of
 * integers, each package's PkgLength and element count checked. */
static unsigned parse_prt(const struct aml_db *db, struct acpi_pci_irq *out, unsigned max)
{
	const uint8_t *p, *pe;
	unsigned n = package_open(db, "\\_SB_.PCI0._PRT", &p, &pe);

	cr_assert_leq(n, max);
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *ie;
		uint64_t v[4];

		cr_assert_eq(*p++, 0x12, "entry %u is a Package", i);
		cr_assert(pkglen(&p, pe, &ie));
		cr_assert_eq(*p++, 4, "entry %u: Package(4)", i);
		for (unsigned k = 0; k < 4; k++)
			cr_assert(integer(&p, ie, &v[k]), "entry %u field %u: an integer", i, k);
		cr_assert_eq(p, ie, "entry %u: PkgLength covers exactly its 4 elements", i);
		cr_assert_eq(v[0] & 0xffff, 0xffff, "entry %u: any function", i);
		cr_assert_eq(v[2], 0, "entry %u: Source Zero = a global interrupt", i);
		out[i] = (struct acpi_pci_irq){ .slot = (uint8_t)(v[0] >> 16), .pin = (uint8_t)v[1],
						.gsi = (uint32_t)v[3] };
		cr_assert_eq(v[0] >> 16, out[i].slot, "entry %u: device number fits", i);
	}
	cr_assert_eq(p, pe);
	return n;
}

Test(acpi, dsdt_prt_routes_each_wired_pin)
{
	static const struct acpi_pci_irq want[] = {
		{ 3, 0, 16 }, { 4, 0, 17 }, { 4, 1, 20 }, { 31, 3, 23 }, { 0, 0, 21 },
	};
	struct acpi_pci_irq got[8];
	struct acpi_config cfg = cfg_pci;
	struct tables tb;
	struct aml_db db;
	unsigned n;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert_eq(acpi_config_add_pci_irq(&cfg, want[i].slot, want[i].pin, want[i].gsi), 0);
	walk(&tb, &cfg, 64ULL << 20);        /* every table: length and checksum */
	parse_dsdt(&tb, &db);                /* the whole AML, PkgLengths included */
	check_s5(&db);
	n = parse_prt(&db, got, 8);
	cr_assert_eq(n, sizeof(want) / sizeof(want[0]));
	for (unsigned i = 0; i < n; i++) {
		cr_expect_eq(got[i].slot, want[i].slot, "entry %u", i);
		cr_expect_eq(got[i].pin, want[i].pin, "entry %u", i);
		cr_expect_eq(got[i].gsi, want[i].gsi, "entry %u", i);
	}
	mem_destroy(&tb.mem);
}

/* One route, byte for byte as ACPI 6.4 §20.2 encodes it (what iasl makes of
 * Name (_PRT, Package () { Package () { 0x0003FFFF, 0, Zero, 16 } })). */
Test(acpi, dsdt_prt_bytes)
{
	static const uint8_t want[] = {
		0x08, '_', 'P', 'R', 'T',          /* NameOp _PRT */
		0x12, 0x0e, 0x01,                  /* PackageOp, PkgLength 14, 1 element */
		0x12, 0x0b, 0x04,                  /* PackageOp, PkgLength 11, 4 elements */
		0x0c, 0xff, 0xff, 0x03, 0x00,      /* DWordConst 0x0003FFFF */
		0x00,                              /* ZeroOp: INTA# */
		0x00,                              /* ZeroOp: no link device */
		0x0a, 0x10,                        /* BytePrefix 16 */
	};
	struct acpi_config cfg = cfg_pci;
	struct tables tb;
	const uint8_t *d;
	size_t len;

	cr_assert_eq(acpi_config_add_pci_irq(&cfg, 3, 0, 16), 0);
	walk(&tb, &cfg, 64ULL << 20);
	d = dsdt_bytes(&tb, &len);
	cr_assert_not_null(memmem(d, len, want, sizeof(want)), "_PRT bytes not found in the DSDT");
	mem_destroy(&tb.mem);
}

/* Every slot and pin routed: 128 entries need the 2-byte PkgLength form for
 * the outer package; the DSDT still decodes end to end. */
Test(acpi, dsdt_prt_full_table)
{
	struct acpi_pci_irq got[ACPI_MAX_PCI_IRQS];
	struct acpi_config cfg = cfg_pci;
	struct tables tb;
	struct aml_db db;

	for (unsigned s = 0; s < ACPI_PCI_SLOTS; s++)
		for (unsigned pin = 0; pin < 4; pin++)
			cr_assert_eq(acpi_config_add_pci_irq(&cfg, s, pin, 16 + (s + pin) % 8), 0);
	cr_assert_eq(acpi_config_add_pci_irq(&cfg, 0, 0, 16), -EEXIST);
	walk(&tb, &cfg, 64ULL << 20);
	parse_dsdt(&tb, &db);
	cr_assert_eq(parse_prt(&db, got, ACPI_MAX_PCI_IRQS), ACPI_MAX_PCI_IRQS);
	for (unsigned i = 0; i < ACPI_MAX_PCI_IRQS; i++)
		cr_expect_eq(got[i].gsi, 16 + (got[i].slot + got[i].pin) % 8, "entry %u", i);
	mem_destroy(&tb.mem);
}

Test(acpi, prt_routes_are_validated)
{
	struct guest_mem mem;
	struct acpi_config cfg = cfg_pci;
	uint64_t rsdp = 0;

	cr_assert_eq(acpi_config_add_pci_irq(&cfg, 32, 0, 16), -EINVAL, "slot");
	cr_assert_eq(acpi_config_add_pci_irq(&cfg, 256 + 3, 0, 16), -EINVAL, "slot wrap");
	cr_assert_eq(acpi_config_add_pci_irq(&cfg, 3, 4, 16), -EINVAL, "pin");
	cr_assert_eq(acpi_config_add_pci_irq(&cfg, 3, 0, 24), -EINVAL, "not an IOAPIC input");
	cr_assert_eq(acpi_config_add_pci_irq(&cfg, 3, 0, 16), 0);
	cr_assert_eq(acpi_config_add_pci_irq(&cfg, 3, 0, 17), -EEXIST, "pin routed twice");
	cr_assert_eq(cfg.nr_pci_irqs, 1);
	cr_assert_eq(mem_init(&mem, 16ULL << 20), 0);
	/* Filled in directly: acpi_build checks the same. */
	cfg.pci_irqs[1] = (struct acpi_pci_irq){ 3, 0, 18 };
	cfg.nr_pci_irqs = 2;
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL, "duplicate");
	cfg.pci_irqs[1] = (struct acpi_pci_irq){ 40, 0, 18 };
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL, "slot 40");
	cfg.pci_irqs[1] = (struct acpi_pci_irq){ 5, 0, 99 };
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL, "GSI 99");
	cfg.nr_pci_irqs = 1;
	cfg.pci = false;
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL, "routes without a PCI bus");
	cr_assert_eq(rsdp, 0);
	cfg.pci = true;
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), 0);
	mem_destroy(&mem);
}

Test(acpi, bad_configs_are_rejected)
{
	struct guest_mem mem;
	uint64_t rsdp = 0;
	struct acpi_config cfg;
	uint8_t small[20] = "VIOT", bad_len[40] = "VIOT";
	const struct acpi_extra_table xs = { small, sizeof(small) }, xl = { bad_len, sizeof(bad_len) };
	const struct acpi_extra_table xn = { NULL, 40 };

	bad_len[4] = 41;
	cr_assert_eq(mem_init(&mem, 16ULL << 20), 0);
	cfg = (struct acpi_config){ .nr_cpus = 0 };
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cfg.nr_cpus = 255;
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cfg = cfg_pci;
	cfg.pci_bus_start = 5;
	cfg.pci_bus_end = 4;
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cfg = cfg_pci;
	cfg.pci_ecam_base = 0xe0001000;
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cfg = cfg_pci;
	cfg.pci_ecam_base = 0xfff00000;
	cfg.pci_bus_end = 1;
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL, "ECAM past 4 GiB");
	cfg = cfg_pci;
	cfg.pci_mmio64_base = 0x1000;
	cfg.pci_mmio64_size = 0x1000;
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cfg = cfg_pci;
	cfg.extra[0] = xs;
	cfg.nr_extra = 1;
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cfg.extra[0] = xl;
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cfg.extra[0] = xn;
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cfg.nr_extra = ACPI_MAX_EXTRA_TABLES + 1;
	cfg.extra[0] = xs;
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cr_assert_eq(rsdp, 0, "no RSDP reported on failure");
	mem_destroy(&mem);

	/* Guest RAM ending inside the ACPI window. */
	cr_assert_eq(mem_init(&mem, 0xf0000), 0);
	cfg = cfg_pci;
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -EFAULT);
	mem_destroy(&mem);
}

Test(acpi, extra_table_too_big_for_window)
{
	struct guest_mem mem;
	uint64_t rsdp = 0;
	size_t len = 120 * 1024;
	uint8_t *big = calloc(1, len);
	struct acpi_config cfg = cfg_pci;

	memcpy(big, "BIGT", 4);
	big[4] = (uint8_t)len; big[5] = (uint8_t)(len >> 8); big[6] = (uint8_t)(len >> 16);
	cr_assert_eq(acpi_config_add_table(&cfg, big, len), 0);
	cr_assert_eq(mem_init(&mem, 16ULL << 20), 0);
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), 0, "one fits");
	cr_assert_eq(acpi_config_add_table(&cfg, big, len), 0);
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), -ENOSPC);
	free(big);
	mem_destroy(&mem);
}

Test(acpi, rebuild_clears_old_tables_and_marks_dirty)
{
	struct guest_mem mem;
	uint64_t rsdp;
	struct acpi_config cfg = cfg_pci;
	uint8_t *w;

	cr_assert_eq(mem_init(&mem, 16ULL << 20), 0);
	w = mem_gpa_to_hva(&mem, LAYOUT_ACPI_END - 16, 16);
	memset(w, 0xab, 16);
	cr_assert_eq(acpi_build(&mem, &cfg, &rsdp), 0);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(w[i], 0);
	/* Pages 0xe0-0xff: bits 32-63 of dirty word 3. */
	cr_assert_eq(LAYOUT_ACPI_START / 4096, 3 * 64 + 32);
	cr_assert_eq(mem_take_dirty_word(&mem, 3), 0xffffffff00000000ULL);
	mem_destroy(&mem);
}

/* ---- AML emitter encodings ---- */

Test(aml, pkglen_forms)
{
	uint8_t b[4];

	/* One byte: total (content + 1) up to 63. */
	cr_assert_eq(aml_pkglen_encode(b, 0), 1);
	cr_assert_eq(b[0], 1);
	cr_assert_eq(aml_pkglen_encode(b, 62), 1);
	cr_assert_eq(b[0], 63);
	/* Two bytes: total 65 = 0x41 -> lead 0x41 & 0xf | 1 << 6, then 0x04. */
	cr_assert_eq(aml_pkglen_encode(b, 63), 2);
	cr_assert_eq(b[0], 0x41);
	cr_assert_eq(b[1], 0x04);
	cr_assert_eq(aml_pkglen_encode(b, 0xfff - 2), 2);
	cr_assert_eq(b[0], 0x4f);
	cr_assert_eq(b[1], 0xff);
	/* Three bytes. */
	cr_assert_eq(aml_pkglen_encode(b, 0xfff - 1), 3);
	cr_assert_eq(b[0], 0x80 | 0x1, "total 0x1001");
	cr_assert_eq(b[1], 0x00);
	cr_assert_eq(b[2], 0x01);
	cr_assert_eq(aml_pkglen_encode(b, 0xfffff - 3), 3);
	cr_assert_eq(b[0], 0x8f);
	cr_assert_eq(b[1], 0xff);
	cr_assert_eq(b[2], 0xff);
	/* Four bytes. */
	cr_assert_eq(aml_pkglen_encode(b, 0xfffff - 2), 4);
	cr_assert_eq(b[0], 0xc0 | 0x1, "total 0x100001");
	cr_assert_eq(b[1], 0x00);
	cr_assert_eq(b[2], 0x00);
	cr_assert_eq(b[3], 0x01);
	cr_assert_eq(aml_pkglen_encode(b, AML_PKGLEN_MAX - 4), 4);
	cr_assert_eq(b[0], 0xcf);
	cr_assert_eq(b[3], 0xff);
	cr_assert_eq(aml_pkglen_encode(b, AML_PKGLEN_MAX - 3), 0, "too large");
	/* Round trip through the independent decoder at every form boundary. */
	size_t sizes[] = { 0, 1, 61, 62, 63, 64, 0xffd, 0xffe, 0xfff, 0xffffc, 0xffffd, 0x123456 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		static uint8_t buf[0x200000];
		unsigned n = aml_pkglen_encode(buf, sizes[i]);
		const uint8_t *p = buf, *pe;

		cr_assert_neq(n, 0);
		cr_assert(pkglen(&p, buf + n + sizes[i], &pe));
		cr_assert_eq(p, buf + n);
		cr_assert_eq(pe, buf + n + sizes[i], "size %zu", sizes[i]);
	}
}

static void expect_bytes(struct aml *a, const uint8_t *want, size_t n)
{
	cr_assert(aml_ok(a));
	if (a->len != n || memcmp(a->buf, want, n)) {
		for (size_t i = 0; i < a->len; i++)
			fprintf(stderr, "%02x%s", a->buf[i], i + 1 == a->len ? "\n" : " ");
	}
	cr_assert_eq(a->len, n, "length %zu, want %zu", a->len, n);
	cr_assert_eq(memcmp(a->buf, want, n), 0);
	aml_free(a);
	aml_init(a);
}

Test(aml, integer_prefixes)
{
	struct aml a;

	aml_init(&a);
	aml_integer(&a, 0);
	expect_bytes(&a, (uint8_t[]){ 0x00 }, 1);
	aml_integer(&a, 1);
	expect_bytes(&a, (uint8_t[]){ 0x01 }, 1);
	aml_integer(&a, ~0ULL);
	expect_bytes(&a, (uint8_t[]){ 0xff }, 1);
	aml_integer(&a, 2);
	expect_bytes(&a, (uint8_t[]){ 0x0a, 0x02 }, 2);
	aml_integer(&a, 0xff);
	expect_bytes(&a, (uint8_t[]){ 0x0a, 0xff }, 2);
	aml_integer(&a, 0x100);
	expect_bytes(&a, (uint8_t[]){ 0x0b, 0x00, 0x01 }, 3);
	aml_integer(&a, 0x10000);
	expect_bytes(&a, (uint8_t[]){ 0x0c, 0x00, 0x00, 0x01, 0x00 }, 5);
	aml_integer(&a, 0xffffffff);
	expect_bytes(&a, (uint8_t[]){ 0x0c, 0xff, 0xff, 0xff, 0xff }, 5);
	aml_integer(&a, 0x100000000ULL);
	expect_bytes(&a, (uint8_t[]){ 0x0e, 0, 0, 0, 0, 1, 0, 0, 0 }, 9);
	aml_free(&a);
}

Test(aml, names_strings_eisaid)
{
	struct aml a;

	aml_init(&a);
	aml_name_string(&a, "_S5");
	expect_bytes(&a, (const uint8_t *)"_S5_", 4);
	aml_name_string(&a, "\\_SB_");
	expect_bytes(&a, (const uint8_t *)"\\_SB_", 5);
	aml_name_string(&a, "\\_SB.PCI0");
	expect_bytes(&a, (const uint8_t *)"\\\x2e_SB_PCI0", 10);
	aml_name_string(&a, "\\_SB.PCI0.S08");
	expect_bytes(&a, (const uint8_t *)"\\\x2f\x03_SB_PCI0S08_", 15);
	aml_name_string(&a, "^^FOO");
	expect_bytes(&a, (const uint8_t *)"^^FOO_", 6);
	aml_name_string(&a, "\\");
	expect_bytes(&a, (const uint8_t *)"\\\0", 2);
	aml_string(&a, "ab");
	expect_bytes(&a, (const uint8_t *)"\x0d" "ab\0", 4);
	aml_eisaid(&a, "PNP0A03");
	expect_bytes(&a, (uint8_t[]){ 0x0c, 0x41, 0xd0, 0x0a, 0x03 }, 5);
	cr_assert_eq(aml_eisaid_value("PNP0501"), 0x0105d041);
	cr_assert_eq(aml_eisaid_value("PNP0C02"), 0x020cd041);

	/* Invalid inputs fail the emitter instead of producing bad AML. */
	const char *bad[] = { "TOOLONG", "1ABC", "a", ".", "\\_SB..X", "AB.", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		aml_init(&a);
		aml_name_string(&a, bad[i]);
		if (i == sizeof(bad) / sizeof(bad[0]) - 1) {
			/* "" is the NullName: valid. */
			cr_assert(aml_ok(&a));
		} else {
			cr_assert(!aml_ok(&a), "'%s' accepted", bad[i]);
		}
		aml_free(&a);
	}
	aml_init(&a);
	aml_eisaid(&a, "pnp0a03");
	cr_assert(!aml_ok(&a));
	aml_free(&a);
	aml_init(&a);
	aml_string(&a, "\xc3\xa9");
	cr_assert(!aml_ok(&a));
	aml_free(&a);
}

Test(aml, scope_device_method_package_buffer)
{
	struct aml a;
	size_t s, d, m, p;
	uint8_t data[3] = { 1, 2, 3 };

	aml_init(&a);
	s = aml_scope_begin(&a, "\\_SB_");
	d = aml_device_begin(&a, "DEV0");
	m = aml_method_begin(&a, "_STA", 0, false);
	aml_return(&a);
	aml_integer(&a, 0x0f);
	aml_end(&a, m);
	aml_name(&a, "PKG0");
	p = aml_package_begin(&a, 2);
	aml_integer(&a, 1);
	aml_buffer(&a, data, 3);
	aml_end(&a, p);
	aml_end(&a, d);
	aml_end(&a, s);
	const uint8_t want[] = {
		/* Each PkgLength counts its own byte plus what follows it. */
		0x10, 0x27, '\\', '_', 'S', 'B', '_',
		0x5b, 0x82, 0x1f, 'D', 'E', 'V', '0',
		0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f,
		0x08, 'P', 'K', 'G', '0',
		0x12, 0x0a, 0x02, 0x01,
		0x11, 0x06, 0x0a, 0x03, 1, 2, 3,
	};
	expect_bytes(&a, want, sizeof(want));

	/* Serialized method with 7 args, and an over-long arg count. */
	m = aml_method_begin(&a, "M", 7, true);
	aml_end(&a, m);
	expect_bytes(&a, (uint8_t[]){ 0x14, 0x06, 'M', '_', '_', '_', 0x0f }, 7);
	aml_method_begin(&a, "M", 8, false);
	cr_assert(!aml_ok(&a));
	aml_free(&a);

	/* A large package switches to a 2-byte PkgLength. */
	aml_init(&a);
	p = aml_package_begin(&a, 100);
	for (int i = 0; i < 100; i++)
		aml_integer(&a, 0);
	aml_end(&a, p);
	cr_assert(aml_ok(&a));
	cr_assert_eq(a.len, 1 + 2 + 1 + 100);
	const uint8_t *q = a.buf + 1, *qe;
	cr_assert(pkglen(&q, a.buf + a.len, &qe));
	cr_assert_eq(qe, a.buf + a.len);
	aml_free(&a);
}

Test(aml, resource_descriptors)
{
	struct aml a;

	aml_init(&a);
	aml_res_io(&a, 0x3f8, 0x3f8, 1, 8);
	expect_bytes(&a, (uint8_t[]){ 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08 }, 8);
	aml_res_irq_noflags(&a, 1u << 4);
	expect_bytes(&a, (uint8_t[]){ 0x22, 0x10, 0x00 }, 3);
	aml_res_mem32_fixed(&a, 0xe0000000, 0x100000, true);
	expect_bytes(&a, (uint8_t[]){ 0x86, 0x09, 0x00, 0x01, 0, 0, 0, 0xe0, 0, 0, 0x10, 0 }, 12);
	aml_res_word_bus(&a, 0, 0xff);
	expect_bytes(&a, (uint8_t[]){ 0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0x01 }, 16);
	aml_res_dword_mem(&a, 0xc0000000, 0xdfffffff, false);
	expect_bytes(&a, (uint8_t[]){ 0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0,
				      0, 0, 0, 0xc0, 0xff, 0xff, 0xff, 0xdf, 0, 0, 0, 0, 0, 0, 0, 0x20 }, 26);
	aml_res_qword_mem(&a, 0x100000000ULL, 0x1ffffffffULL, true);
	cr_assert_eq(a.len, 46);
	cr_assert_eq(a.buf[0], 0x8a);
	cr_assert_eq(rd16(a.buf + 1), 43);
	cr_assert_eq(a.buf[5], 0x07);
	cr_assert_eq(rd64(a.buf + 38), 0x100000000ULL);
	aml_free(&a);
	aml_init(&a);
	aml_res_end(&a);
	expect_bytes(&a, (uint8_t[]){ 0x79, 0x00 }, 2);
	aml_res_word_io(&a, 5, 4);
	cr_assert(!aml_ok(&a), "empty range rejected");
	aml_free(&a);
}
