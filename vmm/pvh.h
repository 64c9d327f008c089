/* Xen PVH boot ABI: the ELF note that names the 32-bit entry point and the
 * start-of-day structures the loader hands the guest in %ebx.
 * Not part of the Linux uAPI headers, so defined here from Xen's
 * public/elfnote.h and public/arch-x86/hvm/start_info.h (version 1). */
#ifndef VMM_PVH_H
#define VMM_PVH_H

#include <stdint.h>

/* ELF note of owner "Xen": physical address of the 32-bit PVH entry. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

#define XEN_HVM_START_MAGIC_VALUE 0x336ec578u

/* Memory map entry types (same values as E820). */
#define XEN_HVM_MEMMAP_TYPE_RAM       1
#define XEN_HVM_MEMMAP_TYPE_RESERVED  2
#define XEN_HVM_MEMMAP_TYPE_ACPI      3
#define XEN_HVM_MEMMAP_TYPE_NVS       4
#define XEN_HVM_MEMMAP_TYPE_UNUSABLE  5

struct hvm_start_info {
	uint32_t magic;           /* XEN_HVM_START_MAGIC_VALUE */
	uint32_t version;         /* 1: the memmap fields below are valid */
	uint32_t flags;           /* SIF_xxx, 0 for an unprivileged guest */
	uint32_t nr_modules;
	uint64_t modlist_paddr;   /* array of struct hvm_modlist_entry */
	uint64_t cmdline_paddr;   /* NUL-terminated ASCII */
	uint64_t rsdp_paddr;      /* ACPI RSDP, 0 if none */
	/* Version 1 and newer. */
	uint64_t memmap_paddr;    /* array of struct hvm_memmap_table_entry */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info ABI size");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry ABI size");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry ABI size");

#endif
