/* Interrupt entry stubs: one 16-byte stub per vector at ISR_BASE + 16*v,
 * each pushing a dummy error code where the CPU does not (SDM vol. 3 §6.13)
 * and the vector, then a common path that saves registers and calls
 * interrupt_dispatch(struct int_frame *).
 *
 * The stubs sit at a fixed address (link.ld puts .text.isr first, at 1 MiB)
 * so the assembler can build the whole IDT as static data: booting costs one
 * lidt instead of a loop over the gates. */
#include "layout_guest.h"

	.section .text.isr, "ax"
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 256
	.balign 16
	.if !(vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30)
	push $0
	.endif
	push $vec
	jmp isr_common
	.set vec, vec + 1
	.endr

isr_common:
	push %rax
	push %rcx
	push %rdx
	push %rbx
	push %rbp
	push %rsi
	push %rdi
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	cld
	mov %rsp, %rdi
	call interrupt_dispatch
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rdi
	pop %rsi
	pop %rbp
	pop %rbx
	pop %rdx
	pop %rcx
	pop %rax
	add $16, %rsp
	iretq

/* 64-bit interrupt gates (SDM vol. 3 §6.14.1): present, DPL 0, type 0xE. */
	.section .data.idt, "aw"
	.balign 16
	.globl idt_table
idt_table:
	.set vec, 0
	.rept 256
	.word (ISR_BASE + vec * 16) & 0xffff
	.word GDT_CODE64
	.byte 0, 0x8e
	.word ((ISR_BASE + vec * 16) >> 16) & 0xffff
	.long 0
	.long 0
	.set vec, vec + 1
	.endr

	.section .note.GNU-stack, "", @progbits
