/* IDT setup and interrupt dispatch (SDM vol. 3 §6.14: 64-bit gates). */
#include "idt.h"

#define VEC_SPURIOUS_RESERVED 0xff   /* apic.h VEC_SPURIOUS */

/* The gates are static data (isr.S); only the handler pointers change. */
extern const u8 idt_table[256 * 16];
static int_handler_t handlers[256];
/* Built-in scenarios use fixed vectors in 0x40-0x5f; hand out from 0x80. */
static u32 next_free_vector = 0x80;

static const char *const exception_names[32] = {
	"#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
	"#BR bound", "#UD invalid opcode", "#NM no FPU", "#DF double fault", "coproc overrun",
	"#TS invalid TSS", "#NP segment not present", "#SS stack fault", "#GP general protection",
	"#PF page fault", "reserved", "#MF x87 error", "#AC alignment", "#MC machine check",
	"#XM SIMD", "#VE virtualization", "#CP control protection",
};

void idt_load(void)
{
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) ptr = { sizeof(idt_table) - 1, (u64)(uintptr_t)idt_table };

	__asm__ volatile("lidt %0" ::"m"(ptr));
}

void idt_init(void)
{
	idt_load();
}

int idt_set_handler(u8 vector, int_handler_t fn)
{
	__atomic_store_n(&handlers[vector], fn, __ATOMIC_RELEASE);
	return 0;
}

u8 idt_alloc_vector(void)
{
	u32 v = __atomic_fetch_add(&next_free_vector, 1, __ATOMIC_RELAXED);

	return v < VEC_SPURIOUS_RESERVED ? (u8)v : 0;
}

static void exception_report(const struct int_frame *f)
{
	const char *name = f->vector < 32 && exception_names[f->vector] ? exception_names[f->vector]
									 : "interrupt";
	u64 cr2 = 0;

	if (f->vector == 14)
		__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	fail("exception %lu (%s) error=0x%lx rip=0x%lx rsp=0x%lx cr2=0x%lx cpu=%u",
	     (unsigned long)f->vector, name, (unsigned long)f->error, (unsigned long)f->rip,
	     (unsigned long)f->rsp, (unsigned long)cr2, cpu_index());
}

void interrupt_dispatch(struct int_frame *f);
void interrupt_dispatch(struct int_frame *f)
{
	int_handler_t h = handlers[f->vector & 0xff];

	if (h) {
		h(f);
		return;
	}
	if (f->vector < 32)
		exception_report(f);
	fail("unexpected interrupt vector 0x%lx rip=0x%lx cpu=%u", (unsigned long)f->vector,
	     (unsigned long)f->rip, cpu_index());
}
