/* AP start-up: INIT-SIPI-SIPI (SDM vol. 3 §9.4.4, "MP initialization
 * protocol") through the xAPIC ICR, broadcast to all but self. */
#include "smp.h"
#include "acpi.h"
#include "apic.h"
#include "idt.h"

extern const u8 ap_trampoline_start[], ap_trampoline_end[];
extern u32 ap_next_index;
extern u64 ap_stack_base, ap_stack_size;
extern struct cpu_local cpu_locals[MAX_CPUS];
extern u32 cpus_online;
void percpu_init_ap(u32 index);
void *page_alloc_nozero(u64 pages);

static void (*volatile ap_entry_fn)(u32 index);
static bool bsp_lapic_ready;

void ap_main(u32 index);
void ap_main(u32 index)
{
	percpu_init_ap(index);
	idt_load();
	lapic_init();
	cpu_locals[index].apic_id = lapic_id();
	__atomic_add_fetch(&cpus_online, 1, __ATOMIC_RELEASE);
	if (ap_entry_fn)
		ap_entry_fn(index);
	for (;;)
		irq_enable_and_halt();
}

u32 smp_expected_cpus(void)
{
	u32 n = acpi_madt_cpus(NULL, 0, false);

	if (n)
		return n;
	n = (u32)param_u64("cpus", 0);
	if (n)
		return n;
	n = acpi_madt_cpus(NULL, 0, true);   /* RSDP not passed: scan the BIOS area */
	return n ? n : 1;
}

static bool wait_for_cpus(u32 expected, u64 deadline_tsc)
{
	while (cpu_count() < expected) {
		if ((long long)(rdtsc() - deadline_tsc) >= 0)
			return false;
		cpu_relax();
	}
	return true;
}

u32 smp_start(void (*fn)(u32 index), u32 expected, u64 timeout_us)
{
	if (!bsp_lapic_ready) {
		lapic_init();
		cpu_locals[0].apic_id = lapic_id();
		bsp_lapic_ready = true;
	}
	if (expected > MAX_CPUS)
		expected = MAX_CPUS;
	if (expected <= 1 || cpu_count() > 1)
		return cpu_count();

	void *stacks = page_alloc_nozero(MAX_CPUS * AP_STACK_SIZE / PAGE_SIZE);
	if (!stacks)
		return cpu_count();
	ap_stack_size = AP_STACK_SIZE;
	ap_stack_base = (u64)(uintptr_t)stacks;
	ap_entry_fn = fn;
	memcpy((void *)TRAMPOLINE_ADDR, ap_trampoline_start,
	       (size_t)(ap_trampoline_end - ap_trampoline_start));
	__atomic_thread_fence(__ATOMIC_SEQ_CST);

	u64 hz = tsc_hz();
	u64 deadline = rdtsc() + timeout_us * (hz / 1000000);
	lapic_send_init_all_but_self();
	udelay(10000);                                  /* INIT settle, 10 ms */
	lapic_send_sipi_all_but_self(TRAMPOLINE_ADDR >> 12);
	/* A second SIPI only if someone is missing after a while; CPUs already
	 * running ignore it. */
	if (!wait_for_cpus(expected, rdtsc() + 20 * (hz / 1000)))
		lapic_send_sipi_all_but_self(TRAMPOLINE_ADDR >> 12);
	wait_for_cpus(expected, deadline);
	return cpu_count();
}
