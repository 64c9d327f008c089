/* idle: halt with interrupts on (LAPIC timer ticking), forever or for
 * seconds=N, then pass. A guest for tests that pause, snapshot, stop or kill
 * a VM that is doing nothing in particular. */
#include "apic.h"
#include "idt.h"

#define VEC_IDLE_TIMER 0x48
#define IDLE_PERIOD_COUNTS (10000000 / 16)   /* 10 ms at KVM's 1 GHz, divide 16 */

static volatile u64 idle_ticks;

static void idle_tick(struct int_frame *f)
{
	idle_ticks++;
	lapic_eoi();
}

static void idle(void)
{
	u64 seconds = param_u64("seconds", 0);
	u64 end = seconds ? rdtsc() + seconds * tsc_hz() : 0;

	lapic_init();
	idt_set_handler(VEC_IDLE_TIMER, idle_tick);
	lapic_timer_periodic(VEC_IDLE_TIMER, IDLE_PERIOD_COUNTS, 16);
	guest_printf("idle: running\n");
	for (;;) {
		irq_enable_and_halt();
		if (end && (long long)(rdtsc() - end) >= 0)
			break;
	}
	irq_disable();
	guest_printf("idle: %lu ticks\n", (unsigned long)idle_ticks);
}
SCENARIO("idle", idle);
