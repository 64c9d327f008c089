/* Interrupt descriptor table, handler registration, exception reporting. */
#ifndef TESTGUEST_IDT_H
#define TESTGUEST_IDT_H

#include "guest.h"

/* Saved state, lowest address first (pushed by isr.S and the CPU). */
struct int_frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8;
	u64 rdi, rsi, rbp, rbx, rdx, rcx, rax;
	u64 vector, error;
	u64 rip, cs, rflags, rsp, ss;
};

typedef void (*int_handler_t)(struct int_frame *f);

/* Vectors 0-31 are exceptions; unhandled ones print vector, error code and
 * RIP, then FAIL. Vectors 32-255 are free for devices; an interrupt on a
 * vector without a handler is reported and FAILs too. */
#define VEC_FIRST_FREE 0x20

void idt_init(void);        /* BSP: lidt of the static table */
void idt_load(void);        /* APs: lidt only */
/* Install @fn for @vector (any CPU sees it; NULL removes it). Returns 0. */
int idt_set_handler(u8 vector, int_handler_t fn);
/* A vector nobody else got from here (0x80-0xfe; built-in scenarios use
 * fixed vectors in 0x40-0x5f), or 0 when none is left. */
u8 idt_alloc_vector(void);

#endif
