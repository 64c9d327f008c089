/* Loading a guest kernel into RAM and describing the boot CPU's entry state.
 * Pure functions over struct guest_mem and KVM register structs, so every
 * field can be unit-tested without /dev/kvm.
 *
 * Formats: PVH ELF (Xen PVH note, 32-bit entry, hvm_start_info), uncompressed
 * Linux vmlinux ELF and bzImage (Linux 64-bit boot protocol, boot_params). */
#ifndef VMM_BOOT_H
#define VMM_BOOT_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/layout.h"
#include "vmm/mem.h"

/* GDT the VMM writes at LAYOUT_GDT. Linux's boot protocol names 0x10 and
 * 0x18 (__BOOT_CS/__BOOT_DS); PVH only asks for flat segments, so both
 * modes share the layout and only the code descriptor's L/D bits differ. */
#define BOOT_GDT_CS        0x10
#define BOOT_GDT_DS        0x18
#define BOOT_GDT_TSS       0x20
#define BOOT_GDT_ENTRIES   5

/* PVH module list, in the LAYOUT_PVH_MEMMAP page after the memory map. */
#define BOOT_PVH_MODLIST   (LAYOUT_PVH_MEMMAP + 0x800)
#define BOOT_PVH_MEMMAP_MAX 16

/* Identity map for Linux 64-bit entry: 4 GiB with 2 MiB pages. */
#define BOOT_PT_PML4       LAYOUT_PAGE_TABLES
#define BOOT_PT_PDPT       (LAYOUT_PAGE_TABLES + 0x1000)
#define BOOT_PT_PD         (LAYOUT_PAGE_TABLES + 0x2000)
#define BOOT_PT_NR_PD      4

enum boot_mode {
	BOOT_MODE_PVH,       /* 32-bit protected mode, paging off, ebx = hvm_start_info */
	BOOT_MODE_LINUX64,   /* long mode, identity paging, rsi = boot_params */
};

struct boot_input {
	const uint8_t *kernel;
	size_t kernel_len;
	const uint8_t *initrd;   /* may be NULL */
	size_t initrd_len;
	const char *cmdline;     /* may be NULL */
	uint64_t rsdp_gpa;       /* ACPI RSDP, already written (0 = none) */
};

struct boot_entry {
	enum boot_mode mode;
	uint64_t entry;          /* guest-physical entry point */
	uint64_t boot_info_gpa;  /* hvm_start_info (PVH) or boot_params (Linux) */
	uint64_t kernel_start, kernel_end;   /* loaded image extent, for messages and tests */
	uint64_t initrd_gpa, initrd_size;
};

/* Detect the format and load kernel, initrd and cmdline; build hvm_start_info
 * or boot_params with the memory map. On error return -errno and write a
 * one-line reason (e.g. "kernel: truncated ELF program header") to @err. */
int boot_load(struct guest_mem *mem, const struct boot_input *in, struct boot_entry *out,
	      char *err, size_t errlen);

/* Registers for the boot CPU per the entry mode; writes the GDT (and, for
 * Linux 64-bit, identity page tables) into guest RAM. @sregs must come from
 * KVM_GET_SREGS so fields we do not set keep KVM's values. */
int boot_setup_bsp(struct guest_mem *mem, const struct boot_entry *e, struct kvm_regs *regs,
		   struct kvm_sregs *sregs);

#endif
