/* irq: LAPIC timer interrupts and a self-IPI arrive through the IDT.
 * Parameters: ticks=N (default 10), period_us=P (default 1000). */
#include "apic.h"
#include "idt.h"

#define VEC_TIMER 0x40
#define VEC_SELF  0x41
/* KVM's LAPIC timer counts at 1 GHz (APIC_BUS_CYCLE_NS = 1); the measured
 * rate is printed so other platforms can be checked too. */
#define LAPIC_COUNTS_PER_US 1000

static volatile u32 timer_ticks;
static volatile u32 self_ipis;

static void timer_handler(struct int_frame *f)
{
	timer_ticks++;
	lapic_eoi();
}

static void self_ipi_handler(struct int_frame *f)
{
	self_ipis++;
	lapic_eoi();
}

static bool wait_until(volatile u32 *counter, u32 target, u64 timeout_us)
{
	u64 deadline = rdtsc() + timeout_us * (tsc_hz() / 1000000);

	while (*counter < target) {
		if ((long long)(rdtsc() - deadline) >= 0)
			return false;
		irq_enable_and_halt();
	}
	return true;
}

static void irq(void)
{
	u32 want = (u32)param_u64("ticks", 10);
	u64 period_us = param_u64("period_us", 1000);

	tsc_hz();
	lapic_init();
	idt_set_handler(VEC_TIMER, timer_handler);
	idt_set_handler(VEC_SELF, self_ipi_handler);
	irq_enable();

	lapic_send_self_ipi(VEC_SELF);
	if (!wait_until(&self_ipis, 1, 1000000))
		fail("self-IPI on vector 0x%x never arrived", VEC_SELF);

	u64 t0 = time_us();
	lapic_timer_periodic(VEC_TIMER, (u32)(period_us * LAPIC_COUNTS_PER_US / 16), 16);
	bool ok = wait_until(&timer_ticks, want, period_us * want * 20 + 2000000);
	lapic_timer_stop();
	u64 elapsed = time_us() - t0;
	irq_disable();
	if (!ok)
		fail("%u of %u LAPIC timer ticks in %lu us", timer_ticks, want, (unsigned long)elapsed);
	guest_printf("irq: %u timer ticks in %lu us, self-IPI ok\n", timer_ticks,
		     (unsigned long)elapsed);
}
SCENARIO("irq", irq);
