/* IDT setup and interrupt dispatch (SDM vol. 3 §6.14: 64-bit gates). */
#include "idt.h"

extern const u8 isr_stubs[];
#define ISR_STUB_SIZE 16
#define GATE_INTERRUPT_PRESENT 0x8e   /* P=1, DPL=0, type 0xE (64-bit interrupt gate) */

struct idt_gate {
	u16 offset_lo;
	u16 selector;
	u8 ist;
	u8 type_attr;
	u16 offset_mid;
	u32 offset_hi;
	u32 zero;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));
static int_handler_t handlers[256];
static u8 next_free_vector = 0x30;

static const char *const exception_names[32] = {
	"#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
	"#BR bound", "#UD invalid opcode", "#NM no FPU", "#DF double fault", "coproc overrun",
	"#TS invalid TSS", "#NP segment not present", "#SS stack fault", "#GP general protection",
	"#PF page fault", "reserved", "#MF x87 error", "#AC alignment", "#MC machine check",
	"#XM SIMD", "#VE virtualization", "#CP control protection",
};

static void gate_set(u8 vector)
{
	u64 addr = (u64)(uintptr_t)(isr_stubs + (u64)vector * ISR_STUB_SIZE);
	struct idt_gate *g = &idt[vector];

	g->offset_lo = (u16)addr;
	g->selector = GDT_CODE64;
	g->ist = 0;
	g->offset_mid = (u16)(addr >> 16);
	g->offset_hi = (u32)(addr >> 32);
	g->zero = 0;
	barrier();
	g->type_attr = GATE_INTERRUPT_PRESENT;
}

void idt_load(void)
{
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) ptr = { sizeof(idt) - 1, (u64)(uintptr_t)idt };

	__asm__ volatile("lidt %0" ::"m"(ptr));
}

void idt_init(void)
{
	/* Only the 32 exception gates now; device vectors get their gate when a
	 * handler is installed (an empty gate raises #NP, which is reported). */
	for (unsigned v = 0; v < 32; v++)
		gate_set((u8)v);
	idt_load();
}

int idt_set_handler(u8 vector, int_handler_t fn)
{
	handlers[vector] = fn;
	gate_set(vector);
	return 0;
}

u8 idt_alloc_vector(void)
{
	u8 v = __atomic_fetch_add(&next_free_vector, 1, __ATOMIC_RELAXED);

	return v >= 0x30 && v < 0xff ? v : 0;
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
