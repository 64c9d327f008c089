/* smp: every vCPU checks in. The expected count comes from the MADT (via
 * the RSDP in hvm_start_info) or the cpus=N parameter; if both exist they
 * must agree. */
#include "acpi.h"
#include "apic.h"
#include "smp.h"

extern struct cpu_local cpu_locals[MAX_CPUS];

static void smp_ap_checkin(u32 index)
{
	/* ap_main already counted this CPU in; nothing more to do. */
}

static void smp(void)
{
	u32 madt = acpi_madt_cpus(NULL, 0, false);
	u32 cpus_param = (u32)param_u64("cpus", 0);
	u32 expected = smp_expected_cpus();

	if (madt && cpus_param && madt != cpus_param)
		fail("MADT lists %u CPUs but cpus=%u", madt, cpus_param);
	if (expected > MAX_CPUS)
		fail("%u CPUs expected, the guest supports %u", expected, MAX_CPUS);

	u32 online = smp_start(smp_ap_checkin, expected, param_u64("timeout_ms", 3000) * 1000);
	if (online != expected)
		fail("%u of %u CPUs checked in", online, expected);

	/* Every CPU must have a distinct APIC id. */
	for (u32 i = 0; i < online; i++)
		for (u32 j = i + 1; j < online; j++)
			if (cpu_locals[i].apic_id == cpu_locals[j].apic_id)
				fail("CPUs %u and %u share APIC id %u", i, j, cpu_locals[i].apic_id);
	guest_printf("smp: %u CPUs checked in (expected from %s)\n", online,
		     madt ? "MADT" : cpus_param ? "cpus=" : "default");
}
SCENARIO("smp", smp);
