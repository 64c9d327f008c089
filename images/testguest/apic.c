/* xAPIC and IOAPIC access. x2APIC is not used: it may be unavailable. */
#include "apic.h"
#include "idt.h"

#define LAPIC_ID        0x020
#define LAPIC_TPR       0x080
#define LAPIC_EOI       0x0b0
#define LAPIC_SVR       0x0f0
#define LAPIC_ICR_LO    0x300
#define LAPIC_ICR_HI    0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_ICR 0x380
#define LAPIC_TIMER_CCR 0x390
#define LAPIC_TIMER_DCR 0x3e0

#define SVR_ENABLE          (1u << 8)
#define LVT_MASKED          (1u << 16)
#define LVT_TIMER_PERIODIC  (1u << 17)
#define ICR_DELIVERY_PENDING (1u << 12)
#define ICR_LEVEL_ASSERT    (1u << 14)
#define ICR_DM_INIT         (5u << 8)
#define ICR_DM_STARTUP      (6u << 8)
#define ICR_DEST_SELF       (1u << 18)
#define ICR_DEST_ALL_BUT_SELF (3u << 18)

#define IOAPIC_REGSEL 0x00
#define IOAPIC_WIN    0x10
#define IOAPIC_REG_VER 0x01
#define IOAPIC_REG_REDTBL(n) (0x10 + 2 * (n))

static inline u32 lapic_read(u32 reg) { return mmio_read32(GUEST_LAPIC_BASE + reg); }
static inline void lapic_write(u32 reg, u32 v) { mmio_write32(GUEST_LAPIC_BASE + reg, v); }

static void spurious_handler(struct int_frame *f)
{
	/* Spurious interrupts need no EOI (SDM vol. 3 §10.9). */
}

void lapic_init(void)
{
	idt_set_handler(VEC_SPURIOUS, spurious_handler);
	lapic_write(LAPIC_TPR, 0);
	lapic_write(LAPIC_SVR, SVR_ENABLE | VEC_SPURIOUS);
}

u32 lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

void lapic_eoi(void)
{
	lapic_write(LAPIC_EOI, 0);
}

/* Divide configuration encoding: bits 3,1,0 (SDM vol. 3 Figure 10-10). */
static u32 divide_code(u32 divide)
{
	static const u8 codes[] = { 0xb, 0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xa };  /* 1..128 */
	unsigned log = 0;

	while (log < 7 && (1u << log) < divide)
		log++;
	return codes[log];
}

static void lapic_timer_start(u8 vector, u32 count, u32 divide, u32 mode)
{
	lapic_write(LAPIC_TIMER_DCR, divide_code(divide));
	lapic_write(LAPIC_LVT_TIMER, vector | mode);
	lapic_write(LAPIC_TIMER_ICR, count);
}

void lapic_timer_periodic(u8 vector, u32 count, u32 divide)
{
	lapic_timer_start(vector, count, divide, LVT_TIMER_PERIODIC);
}

void lapic_timer_oneshot(u8 vector, u32 count, u32 divide)
{
	lapic_timer_start(vector, count, divide, 0);
}

void lapic_timer_stop(void)
{
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
	lapic_write(LAPIC_TIMER_ICR, 0);
}

u32 lapic_timer_current(void)
{
	return lapic_read(LAPIC_TIMER_CCR);
}

static void icr_send(u32 dest, u32 lo)
{
	while (lapic_read(LAPIC_ICR_LO) & ICR_DELIVERY_PENDING)
		cpu_relax();
	lapic_write(LAPIC_ICR_HI, dest << 24);
	lapic_write(LAPIC_ICR_LO, lo);   /* writing the low half sends */
}

void lapic_send_ipi(u32 apic_id, u8 vector)
{
	icr_send(apic_id, vector);
}

void lapic_send_self_ipi(u8 vector)
{
	icr_send(0, ICR_DEST_SELF | vector);
}

void lapic_send_init_all_but_self(void)
{
	icr_send(0, ICR_DEST_ALL_BUT_SELF | ICR_LEVEL_ASSERT | ICR_DM_INIT);
}

void lapic_send_sipi_all_but_self(u8 page)
{
	icr_send(0, ICR_DEST_ALL_BUT_SELF | ICR_LEVEL_ASSERT | ICR_DM_STARTUP | page);
}

static u32 ioapic_read(u32 reg)
{
	mmio_write32(GUEST_IOAPIC_BASE + IOAPIC_REGSEL, reg);
	return mmio_read32(GUEST_IOAPIC_BASE + IOAPIC_WIN);
}

static void ioapic_write(u32 reg, u32 v)
{
	mmio_write32(GUEST_IOAPIC_BASE + IOAPIC_REGSEL, reg);
	mmio_write32(GUEST_IOAPIC_BASE + IOAPIC_WIN, v);
}

u32 ioapic_pins(void)
{
	return ((ioapic_read(IOAPIC_REG_VER) >> 16) & 0xff) + 1;
}

void ioapic_route(u32 gsi, u8 vector, u32 apic_id, u32 flags)
{
	/* Mask while the high half (destination) changes, then write the low half. */
	ioapic_write(IOAPIC_REG_REDTBL(gsi), IOAPIC_MASKED);
	ioapic_write(IOAPIC_REG_REDTBL(gsi) + 1, apic_id << 24);
	ioapic_write(IOAPIC_REG_REDTBL(gsi), vector | flags);
}

void ioapic_mask(u32 gsi, bool masked)
{
	u32 lo = ioapic_read(IOAPIC_REG_REDTBL(gsi));

	lo = masked ? (lo | IOAPIC_MASKED) : (lo & ~IOAPIC_MASKED);
	ioapic_write(IOAPIC_REG_REDTBL(gsi), lo);
}
