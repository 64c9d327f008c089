/* ACPI tables for x86 guests (ACPI 6.4): RSDP, XSDT, FADT (hardware-reduced),
 * DSDT, MADT, MCFG and tables built elsewhere (VIOT).
 *
 * Everything is assembled in a host buffer the size of the ACPI window
 * (LAYOUT_ACPI_START..LAYOUT_ACPI_END) and copied into guest RAM with one
 * mem_write(), so a failure leaves no half-written tables behind. */
#include "vmm/acpi.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/kvm.h>

#include "vmm/acpi_aml.h"
#include "vmm/layout.h"
#include "vmm/log.h"

#define ACPI_TABLE_ALIGN 16
#define ACPI_WINDOW_SIZE (LAYOUT_ACPI_END - LAYOUT_ACPI_START)

/* Header revisions we emit (ACPI 6.4 §5.2.8 XSDT 1, §5.2.11.1 DSDT 2 =
 * 64-bit AML integers, §5.2.12 MADT 5; PCI Firmware 3.2 §4.1.2 MCFG 1). */
#define ACPI_XSDT_REVISION 1
#define ACPI_DSDT_REVISION 2
#define ACPI_MADT_REVISION 5
#define ACPI_MCFG_REVISION 1
#define ACPI_RSDP_REVISION 2

/* MADT (§5.2.12) */
#define MADT_PCAT_COMPAT       1u
#define MADT_TYPE_LAPIC        0
#define MADT_TYPE_IOAPIC       1
#define MADT_TYPE_ISO          2
#define MADT_LAPIC_ENABLED     1u
/* MPS INTI flags: polarity 01 active high, trigger 01 edge (§5.2.12.5). */
#define MADT_INTI_EDGE_HIGH    0x0005

/* GAS (§5.2.3.2) */
#define GAS_SPACE_SYSTEM_IO 1
#define GAS_ACCESS_BYTE     1

struct acpi_buf {
	uint8_t *b;
	size_t used;
};

uint8_t acpi_checksum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint8_t sum = 0;

	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return sum;
}

static void put8(uint8_t *p, size_t off, uint8_t v) { p[off] = v; }

static void put16(uint8_t *p, size_t off, uint16_t v)
{
	p[off] = (uint8_t)v;
	p[off + 1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, size_t off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[off + i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, size_t off, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[off + i] = (uint8_t)(v >> (8 * i));
}

/* Carve @len bytes (16-byte aligned) out of the window; returns the offset
 * or -ENOSPC. */
static int64_t acpi_alloc(struct acpi_buf *ab, size_t len, const char *what)
{
	size_t off = (ab->used + ACPI_TABLE_ALIGN - 1) & ~(size_t)(ACPI_TABLE_ALIGN - 1);

	if (off > ACPI_WINDOW_SIZE || len > ACPI_WINDOW_SIZE - off) {
		log_err("acpi", "%s (%zu bytes) does not fit in the %llu KiB ACPI window", what, len,
			(unsigned long long)(ACPI_WINDOW_SIZE >> 10));
		return -ENOSPC;
	}
	ab->used = off + len;
	return (int64_t)off;
}

static uint64_t acpi_gpa(size_t off)
{
	return LAYOUT_ACPI_START + off;
}

/* §5.2.6 System Description Table Header. */
static void acpi_header(uint8_t *t, const char sig[4], uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put32(t, 4, len);
	put8(t, 8, rev);
	put8(t, 9, 0);
	memcpy(t + 10, ACPI_OEM_ID, 6);
	memcpy(t + 16, ACPI_OEM_TABLE_ID, 8);
	put32(t, 24, 1);
	memcpy(t + 28, ACPI_CREATOR_ID, 4);
	put32(t, 32, 1);
}

static void acpi_finish(uint8_t *t, uint32_t len)
{
	t[9] = 0;
	t[9] = (uint8_t)(0 - acpi_checksum(t, len));
}

/* ---- DSDT ---- */

static void dsdt_s5(struct aml *a)
{
	size_t pkg;

	/* \_S5_: SLP_TYPa, SLP_TYPb, reserved, reserved (§7.4.2). Linux writes
	 * SLP_TYPa << 2 | SLP_EN (bit 5) to SLEEP_CONTROL_REG to power off. */
	aml_name(a, "_S5_");
	pkg = aml_package_begin(a, 4);
	aml_integer(a, ACPI_S5_TYPE);
	aml_integer(a, ACPI_S5_TYPE);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_end(a, pkg);
}

static void dsdt_crs(struct aml *a, const struct aml *res)
{
	aml_name(a, "_CRS");
	if (!aml_ok(res)) {
		a->failed = true;
		return;
	}
	aml_buffer(a, res->buf, res->len);
}

static void dsdt_com1(struct aml *a)
{
	struct aml res;
	size_t dev;

	aml_init(&res);
	aml_res_io(&res, PORT_COM1, PORT_COM1, 1, 8);
	aml_res_irq_noflags(&res, 1u << IRQ_COM1);
	aml_res_end(&res);

	dev = aml_device_begin(a, "COM1");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0501");
	aml_name(a, "_UID");
	aml_integer(a, 0);
	dsdt_crs(a, &res);
	aml_end(a, dev);
	aml_free(&res);
}

/* _PRT (ACPI 6.4 §6.2.13): one Package(4) per routed pin:
 *   Address      _ADR form, device in the high word, 0xFFFF = any function;
 *   Pin          0..3 = INTA#..INTD#;
 *   Source       Zero: no link device, the interrupt is a global one;
 *   Source Index the GSI (IOAPIC input).
 * With no link device the OS programs the pin level-triggered, active-low
 * (§6.2.13 and PCI's INTx semantics). KVM's IOAPIC ignores the polarity bit,
 * so the irqfd's "asserted" is seen as asserted either way. */
static void dsdt_prt(struct aml *a, const struct acpi_config *cfg)
{
	size_t prt;

	aml_name(a, "_PRT");
	prt = aml_package_begin(a, (uint8_t)cfg->nr_pci_irqs);
	for (unsigned i = 0; i < cfg->nr_pci_irqs; i++) {
		const struct acpi_pci_irq *e = &cfg->pci_irqs[i];
		size_t pkg = aml_package_begin(a, 4);

		aml_integer(a, (uint32_t)e->slot << 16 | 0xffff);
		aml_integer(a, e->pin);
		aml_integer(a, 0);
		aml_integer(a, e->gsi);
		aml_end(a, pkg);
	}
	aml_end(a, prt);
}

/* PCI host bridge (PCI Firmware 3.2 §4.1; ACPI 6.4 §6.1, §6.2.2, §6.5.5/6). */
static void dsdt_pci0(struct aml *a, const struct acpi_config *cfg)
{
	struct aml res;
	size_t dev;

	aml_init(&res);
	aml_res_word_bus(&res, cfg->pci_bus_start, cfg->pci_bus_end);
	aml_res_io(&res, PORT_PCI_CONFIG_ADDR, PORT_PCI_CONFIG_ADDR, 1, 8);
	aml_res_word_io(&res, 0x0000, PORT_PCI_CONFIG_ADDR - 1);
	aml_res_word_io(&res, 0x0d00, 0xffff);
	aml_res_dword_mem(&res, (uint32_t)LAYOUT_PCI_MMIO32_START, (uint32_t)(LAYOUT_PCI_MMIO32_END - 1), false);
	if (cfg->pci_mmio64_size)
		aml_res_qword_mem(&res, cfg->pci_mmio64_base, cfg->pci_mmio64_base + cfg->pci_mmio64_size - 1, true);
	aml_res_end(&res);

	dev = aml_device_begin(a, "PCI0");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0A08");   /* PCI Express root bridge */
	aml_name(a, "_CID");
	aml_eisaid(a, "PNP0A03");   /* compatible: PCI root bridge */
	aml_name(a, "_SEG");
	aml_integer(a, 0);
	aml_name(a, "_BBN");
	aml_integer(a, cfg->pci_bus_start);
	aml_name(a, "_UID");
	aml_integer(a, 0);
	dsdt_crs(a, &res);
	if (cfg->nr_pci_irqs)
		dsdt_prt(a, cfg);
	aml_end(a, dev);
	aml_free(&res);
}

/* Linux only trusts MCFG's ECAM range when it is reserved in the E820 map or
 * by a motherboard resource device (PNP0C02) — arch/x86/pci/mmconfig-shared.c. */
static void dsdt_ecam_reservation(struct aml *a, uint64_t base, uint64_t size)
{
	struct aml res;
	size_t dev;

	aml_init(&res);
	aml_res_mem32_fixed(&res, (uint32_t)base, (uint32_t)size, false);
	aml_res_end(&res);

	dev = aml_device_begin(a, "MRES");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0C02");
	aml_name(a, "_UID");
	aml_integer(a, 1);
	dsdt_crs(a, &res);
	aml_end(a, dev);
	aml_free(&res);
}

static uint64_t ecam_start(const struct acpi_config *cfg)
{
	return cfg->pci_ecam_base + ((uint64_t)cfg->pci_bus_start << 20);
}

static uint64_t ecam_size(const struct acpi_config *cfg)
{
	return ((uint64_t)cfg->pci_bus_end - cfg->pci_bus_start + 1) << 20;
}

static int dsdt_build(struct aml *a, const struct acpi_config *cfg)
{
	size_t sb;

	dsdt_s5(a);
	sb = aml_scope_begin(a, "\\_SB_");
	dsdt_com1(a);
	if (cfg->pci) {
		dsdt_pci0(a, cfg);
		dsdt_ecam_reservation(a, ecam_start(cfg), ecam_size(cfg));
	}
	aml_end(a, sb);
	if (!aml_ok(a)) {
		log_err("acpi", "cannot build the DSDT AML");
		return -ENOMEM;
	}
	return 0;
}

static int64_t acpi_add_dsdt(struct acpi_buf *ab, const struct acpi_config *cfg)
{
	struct aml a;
	int64_t off;
	int ret;

	aml_init(&a);
	ret = dsdt_build(&a, cfg);
	if (ret) {
		aml_free(&a);
		return ret;
	}
	off = acpi_alloc(ab, ACPI_HEADER_SIZE + a.len, "DSDT");
	if (off >= 0) {
		uint8_t *t = ab->b + off;
		uint32_t len = (uint32_t)(ACPI_HEADER_SIZE + a.len);

		acpi_header(t, "DSDT", len, ACPI_DSDT_REVISION);
		memcpy(t + ACPI_HEADER_SIZE, a.buf, a.len);
		acpi_finish(t, len);
	}
	aml_free(&a);
	return off;
}

/* ---- FADT ---- */

static void gas_io8(uint8_t *p, size_t off, uint16_t port)
{
	put8(p, off, GAS_SPACE_SYSTEM_IO);
	put8(p, off + 1, 8);            /* register bit width */
	put8(p, off + 2, 0);            /* bit offset */
	put8(p, off + 3, GAS_ACCESS_BYTE);
	put64(p, off + 4, port);
}

static int64_t acpi_add_fadt(struct acpi_buf *ab, uint64_t dsdt_gpa)
{
	int64_t off = acpi_alloc(ab, ACPI_FADT_SIZE, "FADT");
	uint8_t *t;

	if (off < 0)
		return off;
	t = ab->b + off;
	acpi_header(t, "FACP", ACPI_FADT_SIZE, ACPI_FADT_REVISION);
	/* Hardware-reduced (§4.1): no FACS, no SCI, no PM1/GPE blocks; power
	 * off and reset go through the sleep and reset registers below. */
	put32(t, 40, (uint32_t)dsdt_gpa);          /* DSDT (32-bit copy) */
	put16(t, 109, ACPI_FADT_BOOT_VGA_NOT_PRESENT | ACPI_FADT_BOOT_CMOS_RTC_NOT_PRESENT);
	put32(t, 112, ACPI_FADT_F_HW_REDUCED_ACPI | ACPI_FADT_F_RESET_REG_SUP |
		      ACPI_FADT_F_PWR_BUTTON | ACPI_FADT_F_SLP_BUTTON);
	gas_io8(t, 116, PORT_ACPI_RESET);          /* RESET_REG */
	put8(t, 128, ACPI_RESET_VALUE);            /* RESET_VALUE */
	put8(t, 131, ACPI_FADT_MINOR);             /* FADT Minor Version */
	put64(t, 140, dsdt_gpa);                   /* X_DSDT */
	gas_io8(t, 244, PORT_ACPI_SLEEP_CTL);      /* SLEEP_CONTROL_REG */
	gas_io8(t, 256, PORT_ACPI_SLEEP_STS);      /* SLEEP_STATUS_REG */
	put64(t, 268, ACPI_FADT_HYPERVISOR_ID);    /* Hypervisor Vendor Identity */
	acpi_finish(t, ACPI_FADT_SIZE);
	return off;
}

/* ---- MADT ---- */

static int64_t acpi_add_madt(struct acpi_buf *ab, const struct acpi_config *cfg)
{
	size_t len = 44 + 8 * (size_t)cfg->nr_cpus + 12 + 10;
	int64_t off = acpi_alloc(ab, len, "MADT");
	uint8_t *t;
	size_t p = 44;

	if (off < 0)
		return off;
	t = ab->b + off;
	acpi_header(t, "APIC", (uint32_t)len, ACPI_MADT_REVISION);
	put32(t, 36, (uint32_t)LAYOUT_LAPIC);
	put32(t, 40, MADT_PCAT_COMPAT);           /* dual 8259s present: Linux masks them */
	for (unsigned i = 0; i < cfg->nr_cpus; i++, p += 8) {
		put8(t, p, MADT_TYPE_LAPIC);
		put8(t, p + 1, 8);
		put8(t, p + 2, (uint8_t)i);         /* ACPI processor UID */
		put8(t, p + 3, (uint8_t)i);         /* APIC id: KVM vCPU i has APIC id i */
		put32(t, p + 4, MADT_LAPIC_ENABLED);
	}
	put8(t, p, MADT_TYPE_IOAPIC);
	put8(t, p + 1, 12);
	put8(t, p + 2, (uint8_t)cfg->nr_cpus);    /* IOAPIC id after the LAPIC ids */
	put8(t, p + 3, 0);
	put32(t, p + 4, (uint32_t)LAYOUT_IOAPIC);
	put32(t, p + 8, 0);                       /* GSI base */
	p += 12;
	/* The PIT's IRQ0 arrives on IOAPIC pin 2 (KVM's in-kernel IOAPIC wiring). */
	put8(t, p, MADT_TYPE_ISO);
	put8(t, p + 1, 10);
	put8(t, p + 2, 0);                        /* bus: ISA */
	put8(t, p + 3, 0);                        /* source IRQ */
	put32(t, p + 4, 2);                       /* GSI */
	put16(t, p + 8, MADT_INTI_EDGE_HIGH);
	acpi_finish(t, (uint32_t)len);
	return off;
}

/* ---- MCFG (PCI Firmware Specification 3.2 §4.1.2) ---- */

static int64_t acpi_add_mcfg(struct acpi_buf *ab, const struct acpi_config *cfg)
{
	const size_t len = ACPI_HEADER_SIZE + 8 + 16;
	int64_t off = acpi_alloc(ab, len, "MCFG");
	uint8_t *t;

	if (off < 0)
		return off;
	t = ab->b + off;
	acpi_header(t, "MCFG", (uint32_t)len, ACPI_MCFG_REVISION);
	/* 8 reserved bytes, then one allocation: base for bus 0, segment, buses. */
	put64(t, 44, cfg->pci_ecam_base);
	put16(t, 52, 0);
	put8(t, 54, cfg->pci_bus_start);
	put8(t, 55, cfg->pci_bus_end);
	put32(t, 56, 0);
	acpi_finish(t, (uint32_t)len);
	return off;
}

/* ---- extra tables, XSDT, RSDP ---- */

static int64_t acpi_add_extra(struct acpi_buf *ab, const struct acpi_extra_table *x, unsigned i)
{
	uint32_t hdr_len;
	int64_t off;

	if (!x->data || x->len < ACPI_HEADER_SIZE || x->len > ACPI_WINDOW_SIZE) {
		log_err("acpi", "extra table %u: %zu bytes is not an ACPI table", i, x->len);
		return -EINVAL;
	}
	memcpy(&hdr_len, (const uint8_t *)x->data + 4, 4);
	if (hdr_len != x->len) {
		log_err("acpi", "extra table %u (%.4s): header length %u != %zu bytes given", i,
			(const char *)x->data, hdr_len, x->len);
		return -EINVAL;
	}
	off = acpi_alloc(ab, x->len, "extra table");
	if (off < 0)
		return off;
	memcpy(ab->b + off, x->data, x->len);
	acpi_finish(ab->b + off, (uint32_t)x->len);
	return off;
}

int acpi_config_add_table(struct acpi_config *cfg, const void *data, size_t len)
{
	if (!data || !len)
		return -EINVAL;
	if (cfg->nr_extra >= ACPI_MAX_EXTRA_TABLES)
		return -ENOSPC;
	cfg->extra[cfg->nr_extra++] = (struct acpi_extra_table){ .data = data, .len = len };
	return 0;
}

/* @e is valid and not among the @n routes at @list. */
static int pci_irq_check(const struct acpi_pci_irq *list, unsigned n, const struct acpi_pci_irq *e)
{
	if (e->slot >= ACPI_PCI_SLOTS || e->pin > 3 || e->gsi >= KVM_IOAPIC_NUM_PINS)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (list[i].slot == e->slot && list[i].pin == e->pin)
			return -EEXIST;
	return 0;
}

int acpi_config_add_pci_irq(struct acpi_config *cfg, unsigned slot, unsigned pin, uint32_t gsi)
{
	struct acpi_pci_irq e = { .slot = (uint8_t)slot, .pin = (uint8_t)pin, .gsi = gsi };
	int ret;

	if (slot >= ACPI_PCI_SLOTS || pin > 3)
		return -EINVAL;
	ret = pci_irq_check(cfg->pci_irqs, cfg->nr_pci_irqs, &e);
	if (ret)
		return ret;
	if (cfg->nr_pci_irqs >= ACPI_MAX_PCI_IRQS)
		return -ENOSPC;
	cfg->pci_irqs[cfg->nr_pci_irqs++] = e;
	return 0;
}

static int64_t acpi_add_xsdt(struct acpi_buf *ab, const uint64_t *entries, unsigned n)
{
	size_t len = ACPI_HEADER_SIZE + 8 * (size_t)n;
	int64_t off = acpi_alloc(ab, len, "XSDT");
	uint8_t *t;

	if (off < 0)
		return off;
	t = ab->b + off;
	acpi_header(t, "XSDT", (uint32_t)len, ACPI_XSDT_REVISION);
	for (unsigned i = 0; i < n; i++)
		put64(t, ACPI_HEADER_SIZE + 8 * i, entries[i]);
	acpi_finish(t, (uint32_t)len);
	return off;
}

/* §5.2.5.3: checksum over the ACPI 1.0 part (20 bytes), extended checksum
 * over the whole structure. */
static void acpi_fill_rsdp(uint8_t *r, uint64_t xsdt_gpa)
{
	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, ACPI_OEM_ID, 6);
	put8(r, 15, ACPI_RSDP_REVISION);
	put32(r, 16, 0);                          /* no RSDT: XSDT only */
	put32(r, 20, ACPI_RSDP_SIZE);
	put64(r, 24, xsdt_gpa);
	r[8] = 0;
	r[8] = (uint8_t)(0 - acpi_checksum(r, 20));
	r[32] = 0;
	r[32] = (uint8_t)(0 - acpi_checksum(r, ACPI_RSDP_SIZE));
}

static int acpi_check_config(const struct acpi_config *cfg)
{
	if (cfg->nr_cpus == 0 || cfg->nr_cpus > ACPI_MAX_CPUS) {
		log_err("acpi", "%u CPUs: the MADT supports 1 to %u", cfg->nr_cpus, ACPI_MAX_CPUS);
		return -EINVAL;
	}
	if (cfg->nr_extra > ACPI_MAX_EXTRA_TABLES) {
		log_err("acpi", "%u extra tables: at most %u", cfg->nr_extra, ACPI_MAX_EXTRA_TABLES);
		return -EINVAL;
	}
	if (cfg->nr_pci_irqs && (!cfg->pci || cfg->nr_pci_irqs > ACPI_MAX_PCI_IRQS)) {
		log_err("acpi", "%u PCI interrupt routes: at most %u, and only with PCI",
			cfg->nr_pci_irqs, ACPI_MAX_PCI_IRQS);
		return -EINVAL;
	}
	for (unsigned i = 0; i < cfg->nr_pci_irqs; i++) {
		const struct acpi_pci_irq *e = &cfg->pci_irqs[i];

		if (pci_irq_check(cfg->pci_irqs, i, e)) {
			log_err("acpi", "PCI interrupt route %u (slot %u pin %u -> GSI %u) is invalid "
				"or repeated", i, e->slot, e->pin, e->gsi);
			return -EINVAL;
		}
	}
	if (!cfg->pci)
		return 0;
	if (cfg->pci_bus_end < cfg->pci_bus_start) {
		log_err("acpi", "PCI bus range %u-%u is empty", cfg->pci_bus_start, cfg->pci_bus_end);
		return -EINVAL;
	}
	if (cfg->pci_ecam_base % (1ULL << 20) || ecam_start(cfg) + ecam_size(cfg) > (1ULL << 32)) {
		log_err("acpi", "ECAM at 0x%llx for buses %u-%u must be 1 MiB aligned and below 4 GiB",
			(unsigned long long)cfg->pci_ecam_base, cfg->pci_bus_start, cfg->pci_bus_end);
		return -EINVAL;
	}
	if (cfg->pci_mmio64_size &&
	    (cfg->pci_mmio64_base < LAYOUT_HIGH_RAM_START ||
	     cfg->pci_mmio64_base + cfg->pci_mmio64_size - 1 < cfg->pci_mmio64_base)) {
		log_err("acpi", "64-bit PCI window 0x%llx+0x%llx is invalid",
			(unsigned long long)cfg->pci_mmio64_base, (unsigned long long)cfg->pci_mmio64_size);
		return -EINVAL;
	}
	return 0;
}

int acpi_build(struct guest_mem *mem, const struct acpi_config *cfg, uint64_t *rsdp_gpa)
{
	uint64_t xsdt_entries[3 + ACPI_MAX_EXTRA_TABLES];
	struct acpi_buf ab = { 0 };
	int64_t rsdp, dsdt, off;
	unsigned n = 0;
	int ret;

	ret = acpi_check_config(cfg);
	if (ret)
		return ret;
	ab.b = calloc(1, ACPI_WINDOW_SIZE);
	if (!ab.b)
		return -ENOMEM;
	/* RSDP first, 16-byte aligned at the window start, where a legacy scan
	 * of 0xe0000-0xfffff finds it too (§5.2.5.1). */
	rsdp = acpi_alloc(&ab, ACPI_RSDP_SIZE, "RSDP");
	dsdt = acpi_add_dsdt(&ab, cfg);
	if (dsdt < 0) {
		ret = (int)dsdt;
		goto out;
	}
	off = acpi_add_fadt(&ab, acpi_gpa((size_t)dsdt));
	if (off < 0)
		goto fail_off;
	xsdt_entries[n++] = acpi_gpa((size_t)off);
	off = acpi_add_madt(&ab, cfg);
	if (off < 0)
		goto fail_off;
	xsdt_entries[n++] = acpi_gpa((size_t)off);
	if (cfg->pci) {
		off = acpi_add_mcfg(&ab, cfg);
		if (off < 0)
			goto fail_off;
		xsdt_entries[n++] = acpi_gpa((size_t)off);
	}
	for (unsigned i = 0; i < cfg->nr_extra; i++) {
		off = acpi_add_extra(&ab, &cfg->extra[i], i);
		if (off < 0)
			goto fail_off;
		xsdt_entries[n++] = acpi_gpa((size_t)off);
	}
	off = acpi_add_xsdt(&ab, xsdt_entries, n);
	if (off < 0)
		goto fail_off;
	acpi_fill_rsdp(ab.b + rsdp, acpi_gpa((size_t)off));

	/* The tables, then zeroes for the rest of the window so tables from an
	 * earlier build leave no trace (the tables take a few KiB of 128). */
	if (mem_write(mem, LAYOUT_ACPI_START, ab.b, ab.used) ||
	    mem_zero(mem, LAYOUT_ACPI_START + ab.used, ACPI_WINDOW_SIZE - ab.used)) {
		log_err("acpi", "ACPI window 0x%llx-0x%llx is not in guest RAM",
			(unsigned long long)LAYOUT_ACPI_START, (unsigned long long)LAYOUT_ACPI_END);
		ret = -EFAULT;
		goto out;
	}
	*rsdp_gpa = acpi_gpa((size_t)rsdp);
	ret = 0;
	goto out;

fail_off:
	ret = (int)off;
out:
	free(ab.b);
	return ret;
}
