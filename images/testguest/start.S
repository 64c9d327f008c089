/* PVH entry, long-mode switch, static identity page tables and the AP
 * start-up trampoline.
 *
 * Entry state (Xen PVH ABI, xen/include/public/arch-x86/hvm/start_info.h):
 * 32-bit protected mode, paging off, flat segments, %ebx = guest-physical
 * address of struct hvm_start_info. Everything needed for long mode is static
 * data so the boot path has no loops (guests run emulated here). */
#include "layout_guest.h"

#define MSR_EFER        0xc0000080
#define EFER_LME        (1 << 8)
#define CR0_PE          (1 << 0)
#define CR0_PG          (1 << 31)
#define CR4_PAE         (1 << 5)

/* Page-table entry bits (Intel SDM vol. 3 §4.5). */
#define PTE_P           0x001
#define PTE_RW          0x002
#define PTE_PWT         0x008
#define PTE_PCD         0x010
#define PTE_PS          0x080

/* ---- Xen PVH note: XEN_ELFNOTE_PHYS32_ENTRY (18), name "Xen" ---- */
	.pushsection .note.Xen, "a", @note
	.balign 4
	.long 4                 /* namesz */
	.long 4                 /* descsz */
	.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.long pvh_entry
	.balign 4
	.popsection

	.section .text.boot, "ax"
	.code32
	.globl pvh_entry
pvh_entry:
	cli
	cld
	mov %ebx, %esi                  /* keep hvm_start_info */
	lgdt gdt_ptr
	mov $pml4, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $CR4_PAE, %eax
	mov %eax, %cr4
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov %cr0, %eax
	or $(CR0_PG | CR0_PE), %eax
	mov %eax, %cr0
	ljmp $GDT_CODE64, $bsp_long_entry

	.code64
bsp_long_entry:
	mov $GDT_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	mov $bsp_stack_top, %rsp
	mov %esi, %edi                  /* zero-extends: rdi = start info gpa */
	xor %ebp, %ebp
	call guest_main
1:	cli
	hlt
	jmp 1b

/* Application processors arrive here from the trampoline, in long mode on
 * our page tables and GDT. Each takes the next index and its stack from the
 * area smp_start() allocated. */
	.globl ap_long_entry
ap_long_entry:
	mov $GDT_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	mov $1, %edi
	lock xadd %edi, ap_next_index(%rip)
	cmp $MAX_CPUS, %edi             /* no stack for more: park this AP */
	jae 1f
	mov %edi, %eax
	inc %eax
	imul ap_stack_size(%rip), %rax
	add ap_stack_base(%rip), %rax
	mov %rax, %rsp
	xor %ebp, %ebp
	call ap_main
1:	cli
	hlt
	jmp 1b

/* ---- AP trampoline: copied to TRAMPOLINE_ADDR (below 1 MiB, page aligned)
 * by smp_start(); the SIPI vector is TRAMPOLINE_ADDR >> 12. The AP starts in
 * real mode with CS = vector << 8, IP = 0 (SDM vol. 3 §9.4.4). ---- */
#define TRAMP(sym) (TRAMPOLINE_ADDR + ((sym) - ap_trampoline_start))
	.globl ap_trampoline_start, ap_trampoline_end
	.code16
ap_trampoline_start:
	cli
	cld
	mov %cs, %ax
	mov %ax, %ds
	lgdtl (tramp_gdt_ptr - ap_trampoline_start)
	mov %cr0, %eax
	or $CR0_PE, %eax
	mov %eax, %cr0
	ljmpl $GDT_CODE32, $TRAMP(ap_tramp32)
	.code32
ap_tramp32:
	mov $GDT_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov $pml4, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $CR4_PAE, %eax
	mov %eax, %cr4
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov %cr0, %eax
	or $(CR0_PG | CR0_PE), %eax
	mov %eax, %cr0
	ljmp $GDT_CODE64, $ap_long_entry
	.balign 4
tramp_gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt
ap_trampoline_end:

/* ---- GDT: null, 64-bit code, data, 32-bit code (trampoline) ---- */
	.section .rodata
	.balign 16
	.globl gdt, gdt_ptr
gdt:
	.quad 0
	.quad 0x00af9a000000ffff        /* GDT_CODE64: L=1, D=0 */
	.quad 0x00cf92000000ffff        /* GDT_DATA:   flat 4 GiB, writable */
	.quad 0x00cf9a000000ffff        /* GDT_CODE32: flat 4 GiB, D=1 */
gdt_end:
	.balign 4
	.word 0
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

/* ---- Identity map of the first 4 GiB with 2 MiB pages, built by the
 * assembler: PML4 -> one PDPT -> four page directories. The 3-4 GiB
 * directory (MMIO gap: PCI BARs, ECAM, IOAPIC, LAPIC) is uncached.
 * pdpt[4..] is filled lazily by map_high_ram() for RAM above 4 GiB. ---- */
	.section .data.pagetables, "aw"
	.balign 4096
	.globl pml4, pdpt
pml4:
	.quad pdpt + (PTE_P | PTE_RW)
	.fill 511, 8, 0
pdpt:
	.quad pd_0 + (PTE_P | PTE_RW)
	.quad pd_0 + 0x1000 + (PTE_P | PTE_RW)
	.quad pd_0 + 0x2000 + (PTE_P | PTE_RW)
	.quad pd_0 + 0x3000 + (PTE_P | PTE_RW)
	.fill 508, 8, 0
pd_0:
	.set addr, 0
	.rept 1536
	.quad addr | (PTE_P | PTE_RW | PTE_PS)
	.set addr, addr + 0x200000
	.endr
	.rept 512
	.quad addr | (PTE_P | PTE_RW | PTE_PS | PTE_PCD | PTE_PWT)
	.set addr, addr + 0x200000
	.endr

	.data
	.balign 8
	.globl ap_next_index, ap_stack_base, ap_stack_size
ap_next_index:  .long 1             /* BSP is index 0 */
	.long 0
ap_stack_base:  .quad 0
ap_stack_size:  .quad 0

	.bss
	.balign 16
bsp_stack:
	.skip BSP_STACK_SIZE
bsp_stack_top:

	.section .note.GNU-stack, "", @progbits
