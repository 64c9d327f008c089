/* Per-CPU blocks reached through GS base (MSR 0xc0000101). */
#include "smp.h"

#define MSR_GS_BASE 0xc0000101

struct cpu_local cpu_locals[MAX_CPUS];
u32 cpus_online = 1;

static void percpu_set(u32 index)
{
	struct cpu_local *c = &cpu_locals[index];

	c->self = c;
	c->index = index;
	wrmsr(MSR_GS_BASE, (u64)(uintptr_t)c);
}

void percpu_init_bsp(void)
{
	percpu_set(0);
}

void percpu_init_ap(u32 index);
void percpu_init_ap(u32 index)
{
	percpu_set(index);
}

u32 cpu_index(void)
{
	u32 i;

	__asm__ volatile("movl %%gs:%c1, %0" : "=r"(i) : "i"(__builtin_offsetof(struct cpu_local, index)));
	return i;
}

u32 cpu_count(void)
{
	return __atomic_load_n(&cpus_online, __ATOMIC_ACQUIRE);
}
