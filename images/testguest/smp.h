/* Per-CPU data and bringing up the application processors. */
#ifndef TESTGUEST_SMP_H
#define TESTGUEST_SMP_H

#include "guest.h"

/* Reached through %gs (GS base = &cpu_local[i]); keep 'self' first. */
struct cpu_local {
	struct cpu_local *self;
	u32 index;
	u32 apic_id;
};

void percpu_init_bsp(void);

/* Number of vCPUs the platform has: the MADT's enabled LAPIC/x2APIC entries
 * (via hvm_start_info.rsdp_paddr), else the "cpus=N" parameter, else 1. */
u32 smp_expected_cpus(void);

/* Wake every AP with INIT-SIPI-SIPI (broadcast, all excluding self). Each AP
 * sets up long mode, the IDT, its LAPIC, then calls @fn(index) on its own
 * stack; @fn may return (the AP then halts with interrupts on). Waits up to
 * @timeout_us for @expected - 1 APs to check in; returns the number of CPUs
 * running (BSP included). */
u32 smp_start(void (*fn)(u32 index), u32 expected, u64 timeout_us);

#endif
