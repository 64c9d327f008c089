/* Kernel loaders (vmm/boot.c): synthetic PVH ELF, vmlinux ELF and bzImage
 * images loaded into real guest_mem, every field the guest reads checked
 * against the PVH ABI and Linux Documentation/arch/x86/boot.rst, and hostile
 * inputs that must fail with a specific message. No /dev/kvm needed. */
#include <criterion/criterion.h>

#include <asm/bootparam.h>
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/boot.h"
#include "vmm/layout.h"
#include "vmm/mem.h"
#include "vmm/pvh.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/* ---- synthetic ELF builder ---- */

struct tseg {
	uint32_t type;
	uint64_t paddr, vaddr;
	const void *data;
	uint64_t filesz, memsz;
};

struct timg {
	uint8_t *buf;
	size_t len;
};

/* ELF64 (or ELF32 when !is64) executable: header, program headers, then each
 * segment's file data in order. */
static struct timg build_elf(bool is64, uint64_t entry, const struct tseg *segs, unsigned n)
{
	size_t ehsz = is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
	size_t phsz = is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	size_t off = ehsz + phsz * n, total = off;
	struct timg img;

	for (unsigned i = 0; i < n; i++)
		total += segs[i].data ? segs[i].filesz : 0;
	img.buf = calloc(1, total);
	img.len = total;
	cr_assert_not_null(img.buf);
	if (is64) {
		Elf64_Ehdr eh = { .e_type = ET_EXEC, .e_machine = EM_X86_64, .e_version = EV_CURRENT,
				  .e_entry = entry, .e_phoff = ehsz, .e_ehsize = (uint16_t)ehsz,
				  .e_phentsize = (uint16_t)phsz, .e_phnum = (uint16_t)n };
		memcpy(eh.e_ident, ELFMAG, SELFMAG);
		eh.e_ident[EI_CLASS] = ELFCLASS64;
		eh.e_ident[EI_DATA] = ELFDATA2LSB;
		eh.e_ident[EI_VERSION] = EV_CURRENT;
		memcpy(img.buf, &eh, sizeof(eh));
	} else {
		Elf32_Ehdr eh = { .e_type = ET_EXEC, .e_machine = EM_386, .e_version = EV_CURRENT,
				  .e_entry = (uint32_t)entry, .e_phoff = (uint32_t)ehsz, .e_ehsize = (uint16_t)ehsz,
				  .e_phentsize = (uint16_t)phsz, .e_phnum = (uint16_t)n };
		memcpy(eh.e_ident, ELFMAG, SELFMAG);
		eh.e_ident[EI_CLASS] = ELFCLASS32;
		eh.e_ident[EI_DATA] = ELFDATA2LSB;
		eh.e_ident[EI_VERSION] = EV_CURRENT;
		memcpy(img.buf, &eh, sizeof(eh));
	}
	for (unsigned i = 0; i < n; i++) {
		const struct tseg *s = &segs[i];
		uint64_t data_off = s->data ? off : 0;

		if (is64) {
			Elf64_Phdr ph = { .p_type = s->type, .p_offset = data_off, .p_vaddr = s->vaddr,
					  .p_paddr = s->paddr, .p_filesz = s->filesz, .p_memsz = s->memsz,
					  .p_flags = PF_R | PF_X, .p_align = 0x1000 };
			memcpy(img.buf + ehsz + i * phsz, &ph, sizeof(ph));
		} else {
			Elf32_Phdr ph = { .p_type = s->type, .p_offset = (uint32_t)data_off,
					  .p_vaddr = (uint32_t)s->vaddr, .p_paddr = (uint32_t)s->paddr,
					  .p_filesz = (uint32_t)s->filesz, .p_memsz = (uint32_t)s->memsz,
					  .p_flags = PF_R | PF_X, .p_align = 0x1000 };
			memcpy(img.buf + ehsz + i * phsz, &ph, sizeof(ph));
		}
		if (s->data) {
			memcpy(img.buf + off, s->data, s->filesz);
			off += s->filesz;
		}
	}
	return img;
}

/* A PT_NOTE payload: an unrelated note first (so the walk has to skip one),
 * then Xen PHYS32_ENTRY with a @descsz-byte descriptor. */
static size_t build_pvh_note(uint8_t *buf, uint64_t entry, uint32_t descsz)
{
	uint32_t w[3];
	size_t off = 0;

	w[0] = 4; w[1] = 4; w[2] = 1; /* "GNU" ABI tag-like note, 4-byte desc */
	memcpy(buf + off, w, 12); off += 12;
	memcpy(buf + off, "GNU", 4); off += 4;
	memset(buf + off, 0x11, 4); off += 4;
	w[0] = 4; w[1] = descsz; w[2] = XEN_ELFNOTE_PHYS32_ENTRY;
	memcpy(buf + off, w, 12); off += 12;
	memcpy(buf + off, "Xen", 4); off += 4;
	memcpy(buf + off, &entry, descsz);
	off += (descsz + 3) & ~3u;
	return off;
}

static uint8_t text[0x300];

/* The standard test kernel: text+data at 1 MiB with .bss (memsz > filesz),
 * a note segment, entry at 1 MiB + 0x40. */
static struct timg build_pvh_kernel(bool is64, uint32_t descsz)
{
	static uint8_t note[64];
	size_t nlen = build_pvh_note(note, LAYOUT_KERNEL_START + 0x40, descsz);

	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = (uint8_t)(i * 7 + 1);
	struct tseg segs[] = {
		{ PT_LOAD, LAYOUT_KERNEL_START, LAYOUT_KERNEL_START, text, sizeof(text), 0x5000 },
		{ PT_NOTE, 0, 0, note, nlen, 0 },
	};
	return build_elf(is64, LAYOUT_KERNEL_START, segs, 2);
}

struct fixture {
	struct guest_mem mem;
	char err[256];
};

static void fx_init(struct fixture *fx, uint64_t size)
{
	memset(fx, 0, sizeof(*fx));
	cr_assert_eq(mem_init(&fx->mem, size), 0);
}

static int fx_load(struct fixture *fx, const struct timg *k, const void *initrd, size_t ilen,
		   const char *cmdline, struct boot_entry *out)
{
	struct boot_input in = { .kernel = k->buf, .kernel_len = k->len, .initrd = initrd,
				 .initrd_len = ilen, .cmdline = cmdline, .rsdp_gpa = LAYOUT_ACPI_START };

	return boot_load(&fx->mem, &in, out, fx->err, sizeof(fx->err));
}

static void *gpa(struct fixture *fx, uint64_t addr, uint64_t len)
{
	void *p = mem_gpa_to_hva(&fx->mem, addr, len);

	cr_assert_not_null(p, "gpa 0x%llx+0x%llx not RAM", (unsigned long long)addr, (unsigned long long)len);
	return p;
}

struct mm { uint64_t addr, size; uint32_t type; };

static void check_pvh_memmap(struct fixture *fx, const struct hvm_start_info *si, const struct mm *want, unsigned n)
{
	const struct hvm_memmap_table_entry *e;

	cr_assert_eq(si->memmap_paddr, LAYOUT_PVH_MEMMAP);
	cr_assert_eq(si->memmap_entries, n);
	e = gpa(fx, si->memmap_paddr, n * sizeof(*e));
	for (unsigned i = 0; i < n; i++) {
		cr_expect_eq(e[i].addr, want[i].addr, "entry %u addr 0x%llx", i, (unsigned long long)e[i].addr);
		cr_expect_eq(e[i].size, want[i].size, "entry %u size 0x%llx", i, (unsigned long long)e[i].size);
		cr_expect_eq(e[i].type, want[i].type, "entry %u type", i);
		cr_expect_eq(e[i].reserved, 0);
	}
}

/* ---- PVH ---- */

Test(boot_pvh, loads_segments_start_info_memmap_initrd_256m)
{
	struct fixture fx;
	struct boot_entry e;
	struct timg k = build_pvh_kernel(true, 4);
	static uint8_t initrd[10000];
	const char *cmd = "console=ttyS0 test=hello";

	for (size_t i = 0; i < sizeof(initrd); i++)
		initrd[i] = (uint8_t)(i ^ 0x5a);
	fx_init(&fx, 256 * MiB);
	/* Stale bytes where .bss goes: the loader must zero them. */
	memset(gpa(&fx, LAYOUT_KERNEL_START, 0x5000), 0xaa, 0x5000);

	cr_assert_eq(fx_load(&fx, &k, initrd, sizeof(initrd), cmd, &e), 0, "%s", fx.err);
	cr_assert_eq(e.mode, BOOT_MODE_PVH);
	cr_assert_eq(e.entry, LAYOUT_KERNEL_START + 0x40);
	cr_assert_eq(e.boot_info_gpa, LAYOUT_BOOT_INFO);
	cr_assert_eq(e.kernel_start, LAYOUT_KERNEL_START);
	cr_assert_eq(e.kernel_end, LAYOUT_KERNEL_START + 0x5000);

	/* Segment: file bytes, then zeros up to memsz. */
	cr_assert_eq(memcmp(gpa(&fx, LAYOUT_KERNEL_START, sizeof(text)), text, sizeof(text)), 0);
	uint8_t *bss = gpa(&fx, LAYOUT_KERNEL_START + sizeof(text), 0x5000 - sizeof(text));
	for (size_t i = 0; i < 0x5000 - sizeof(text); i++)
		cr_assert_eq(bss[i], 0, "bss byte %zu not zeroed", i);
	/* The byte after memsz was not touched. */
	cr_assert_eq(*(uint8_t *)gpa(&fx, LAYOUT_KERNEL_START + 0x5000, 1), 0);

	const struct hvm_start_info *si = gpa(&fx, LAYOUT_BOOT_INFO, sizeof(*si));
	cr_assert_eq(si->magic, 0x336ec578u);
	cr_assert_eq(si->version, 1);
	cr_assert_eq(si->flags, 0);
	cr_assert_eq(si->rsdp_paddr, LAYOUT_ACPI_START);
	cr_assert_eq(si->cmdline_paddr, LAYOUT_CMDLINE);
	cr_assert_str_eq((const char *)gpa(&fx, si->cmdline_paddr, strlen(cmd) + 1), cmd);
	cr_assert_eq(si->reserved, 0);

	struct mm want[] = {
		{ 0, 0x9fc00, 1 }, { 0x9fc00, 0x100000 - 0x9fc00, 2 }, { 0x100000, 256 * MiB - 0x100000, 1 },
	};
	check_pvh_memmap(&fx, si, want, 3);

	cr_assert_eq(si->nr_modules, 1);
	cr_assert_eq(si->modlist_paddr, BOOT_PVH_MODLIST);
	const struct hvm_modlist_entry *mod = gpa(&fx, si->modlist_paddr, sizeof(*mod));
	cr_assert_eq(mod->paddr, e.initrd_gpa);
	cr_assert_eq(mod->size, sizeof(initrd));
	cr_assert_eq(mod->cmdline_paddr, 0);
	cr_assert_eq(mod->reserved, 0);
	/* As high as possible, page aligned, wholly in RAM, contents intact. */
	cr_assert_eq(e.initrd_gpa % 4096, 0);
	cr_assert_eq(e.initrd_size, sizeof(initrd));
	cr_assert_leq(e.initrd_gpa + sizeof(initrd), 256 * MiB);
	cr_assert_gt(e.initrd_gpa + sizeof(initrd) + 4096, 256 * MiB);
	cr_assert_geq(e.initrd_gpa, e.kernel_end);
	cr_assert_eq(memcmp(gpa(&fx, e.initrd_gpa, sizeof(initrd)), initrd, sizeof(initrd)), 0);

	/* Every VMM write is dirty-tracked: the kernel page and boot info page. */
	uint64_t w0 = mem_take_dirty_word(&fx.mem, 0);
	cr_assert(w0 & (1ULL << (LAYOUT_BOOT_INFO / 4096)));
	cr_assert(w0 & (1ULL << (LAYOUT_PVH_MEMMAP / 4096)));
	cr_assert(w0 & (1ULL << (LAYOUT_CMDLINE / 4096)));
	cr_assert(mem_take_dirty_word(&fx.mem, LAYOUT_KERNEL_START / 4096 / 64) &
		  (1ULL << ((LAYOUT_KERNEL_START / 4096) % 64)));
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_pvh, memmap_above_4g_has_two_ram_regions)
{
	struct fixture fx;
	struct boot_entry e;
	struct timg k = build_pvh_kernel(true, 4);
	static uint8_t initrd[5000];
	const uint64_t size = 4 * GiB + 512 * MiB;

	fx_init(&fx, size);
	cr_assert_eq(fx_load(&fx, &k, initrd, sizeof(initrd), NULL, &e), 0, "%s", fx.err);
	const struct hvm_start_info *si = gpa(&fx, LAYOUT_BOOT_INFO, sizeof(*si));
	struct mm want[] = {
		{ 0, 0x9fc00, 1 },
		{ 0x9fc00, 0x100000 - 0x9fc00, 2 },
		{ 0x100000, LAYOUT_MMIO_GAP_START - 0x100000, 1 },
		{ LAYOUT_HIGH_RAM_START, size - LAYOUT_MMIO_GAP_START, 1 },
	};
	check_pvh_memmap(&fx, si, want, 4);
	/* PVH starts in 32-bit mode: the initrd stays below the MMIO gap. */
	cr_assert_lt(e.initrd_gpa + e.initrd_size, LAYOUT_MMIO_GAP_START + 1);
	cr_assert_gt(e.initrd_gpa, LAYOUT_MMIO_GAP_START - 2 * 4096 - sizeof(initrd));
	/* No cmdline: an empty string, still a valid pointer. */
	cr_assert_eq(si->cmdline_paddr, LAYOUT_CMDLINE);
	cr_assert_eq(*(char *)gpa(&fx, LAYOUT_CMDLINE, 1), '\0');
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_pvh, no_initrd_means_no_modules)
{
	struct fixture fx;
	struct boot_entry e;
	struct timg k = build_pvh_kernel(true, 4);

	fx_init(&fx, 64 * MiB);
	cr_assert_eq(fx_load(&fx, &k, NULL, 0, "x", &e), 0, "%s", fx.err);
	const struct hvm_start_info *si = gpa(&fx, LAYOUT_BOOT_INFO, sizeof(*si));
	cr_assert_eq(si->nr_modules, 0);
	cr_assert_eq(si->modlist_paddr, 0);
	cr_assert_eq(e.initrd_gpa, 0);
	cr_assert_eq(e.initrd_size, 0);
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_pvh, elf32_and_8_byte_note)
{
	struct fixture fx;
	struct boot_entry e;
	struct timg k32 = build_pvh_kernel(false, 4), k8 = build_pvh_kernel(true, 8);

	fx_init(&fx, 32 * MiB);
	cr_assert_eq(fx_load(&fx, &k32, NULL, 0, NULL, &e), 0, "%s", fx.err);
	cr_assert_eq(e.mode, BOOT_MODE_PVH);
	cr_assert_eq(e.entry, LAYOUT_KERNEL_START + 0x40);
	cr_assert_eq(memcmp(gpa(&fx, LAYOUT_KERNEL_START, sizeof(text)), text, sizeof(text)), 0);
	cr_assert_eq(fx_load(&fx, &k8, NULL, 0, NULL, &e), 0, "%s", fx.err);
	cr_assert_eq(e.mode, BOOT_MODE_PVH);
	cr_assert_eq(e.entry, LAYOUT_KERNEL_START + 0x40);
	free(k32.buf);
	free(k8.buf);
	mem_destroy(&fx.mem);
}

/* The regions the guest's AP trampoline and the kernel's low-memory users may
 * take (task brief: 0x10000-0x1ffff and 0x30000-0x9efff) stay untouched. */
Test(boot_pvh, leaves_trampoline_area_free)
{
	struct fixture fx;
	struct boot_entry e;
	struct kvm_regs regs;
	struct kvm_sregs sregs = { 0 };
	struct timg k = build_pvh_kernel(true, 4);
	static uint8_t initrd[100];

	fx_init(&fx, 64 * MiB);
	cr_assert_eq(fx_load(&fx, &k, initrd, sizeof(initrd), "abc", &e), 0, "%s", fx.err);
	cr_assert_eq(boot_setup_bsp(&fx.mem, &e, &regs, &sregs), 0);
	e.mode = BOOT_MODE_LINUX64;
	cr_assert_eq(boot_setup_bsp(&fx.mem, &e, &regs, &sregs), 0);
	const uint8_t *a = gpa(&fx, 0x10000, 0x10000), *b = gpa(&fx, 0x30000, 0x9f000 - 0x30000);
	for (size_t i = 0; i < 0x10000; i++)
		cr_assert_eq(a[i], 0, "byte at 0x%zx written", 0x10000 + i);
	for (size_t i = 0; i < 0x9f000 - 0x30000; i++)
		cr_assert_eq(b[i], 0, "byte at 0x%zx written", 0x30000 + i);
	free(k.buf);
	mem_destroy(&fx.mem);
}

/* ---- boot_setup_bsp ---- */

static void check_flat(const struct kvm_segment *s, uint16_t sel, uint8_t type)
{
	cr_expect_eq(s->base, 0);
	cr_expect_eq(s->limit, 0xffffffffu);
	cr_expect_eq(s->selector, sel);
	cr_expect_eq(s->type, type);
	cr_expect_eq(s->present, 1);
	cr_expect_eq(s->dpl, 0);
	cr_expect_eq(s->s, 1);
	cr_expect_eq(s->g, 1);
	cr_expect_eq(s->unusable, 0);
}

Test(boot_bsp, pvh_is_flat_32bit_protected_mode)
{
	struct fixture fx;
	struct boot_entry e = { .mode = BOOT_MODE_PVH, .entry = 0x100040, .boot_info_gpa = LAYOUT_BOOT_INFO };
	struct kvm_regs regs;
	/* KVM's reset state: CR0 = CD|NW|ET. */
	struct kvm_sregs sregs = { .cr0 = 0x60000010, .cr4 = 0x20, .efer = 0x500 };

	fx_init(&fx, 16 * MiB);
	memset(&regs, 0xcc, sizeof(regs));
	cr_assert_eq(boot_setup_bsp(&fx.mem, &e, &regs, &sregs), 0);
	cr_assert_eq(regs.rip, 0x100040);
	cr_assert_eq(regs.rbx, LAYOUT_BOOT_INFO);
	cr_assert_eq(regs.rflags, 2);
	cr_assert_eq(regs.rsi, 0);
	cr_assert_eq(regs.rax, 0);
	check_flat(&sregs.cs, BOOT_GDT_CS, 11);
	cr_assert_eq(sregs.cs.db, 1);
	cr_assert_eq(sregs.cs.l, 0);
	const struct kvm_segment *ds[] = { &sregs.ds, &sregs.es, &sregs.fs, &sregs.gs, &sregs.ss };
	for (int i = 0; i < 5; i++) {
		check_flat(ds[i], BOOT_GDT_DS, 3);
		cr_assert_eq(ds[i]->db, 1);
	}
	cr_assert_eq(sregs.tr.selector, BOOT_GDT_TSS);
	cr_assert_eq(sregs.tr.type, 11);
	cr_assert_eq(sregs.tr.limit, 0x67);
	cr_assert_eq(sregs.tr.present, 1);
	cr_assert_eq(sregs.tr.s, 0);
	cr_assert_eq(sregs.cr0 & 1, 1, "PE");
	cr_assert_eq(sregs.cr0 & (1ULL << 31), 0, "PG must be off");
	cr_assert_eq(sregs.cr0 & (3ULL << 29), 0, "CD/NW cleared");
	cr_assert_eq(sregs.cr4, 0);
	cr_assert_eq(sregs.efer, 0);
	cr_assert_eq(sregs.gdt.base, LAYOUT_GDT);
	cr_assert_eq(sregs.gdt.limit, BOOT_GDT_ENTRIES * 8 - 1);

	const uint64_t *gdt = gpa(&fx, LAYOUT_GDT, BOOT_GDT_ENTRIES * 8);
	cr_assert_eq(gdt[0], 0);
	cr_assert_eq(gdt[BOOT_GDT_CS / 8], 0x00cf9b000000ffffULL);
	cr_assert_eq(gdt[BOOT_GDT_DS / 8], 0x00cf93000000ffffULL);
	cr_assert_eq(gdt[BOOT_GDT_TSS / 8], 0x00008b0000000067ULL);
	mem_destroy(&fx.mem);
}

Test(boot_bsp, linux64_is_long_mode_with_identity_map)
{
	struct fixture fx;
	struct boot_entry e = { .mode = BOOT_MODE_LINUX64, .entry = 0x100200, .boot_info_gpa = LAYOUT_BOOT_INFO };
	struct kvm_regs regs;
	struct kvm_sregs sregs = { .cr0 = 0x60000010 };

	fx_init(&fx, 16 * MiB);
	cr_assert_eq(boot_setup_bsp(&fx.mem, &e, &regs, &sregs), 0);
	cr_assert_eq(regs.rip, 0x100200);
	cr_assert_eq(regs.rsi, LAYOUT_BOOT_INFO);
	cr_assert_eq(regs.rbx, 0);
	cr_assert_eq(regs.rflags, 2);
	check_flat(&sregs.cs, BOOT_GDT_CS, 11);
	cr_assert_eq(sregs.cs.l, 1);
	cr_assert_eq(sregs.cs.db, 0, "L=1 requires D=0");
	check_flat(&sregs.ds, BOOT_GDT_DS, 3);
	check_flat(&sregs.ss, BOOT_GDT_DS, 3);
	cr_assert_eq(sregs.cr0 & 0x80000001, 0x80000001, "PE|PG");
	cr_assert_eq(sregs.cr0 & (3ULL << 29), 0);
	cr_assert_eq(sregs.cr4 & 0x20, 0x20, "PAE");
	cr_assert_eq(sregs.efer & 0x500, 0x500, "LME|LMA");
	cr_assert_eq(sregs.cr3, LAYOUT_PAGE_TABLES);

	const uint64_t *gdt = gpa(&fx, LAYOUT_GDT, BOOT_GDT_ENTRIES * 8);
	cr_assert_eq(gdt[BOOT_GDT_CS / 8], 0x00af9b000000ffffULL);
	cr_assert_eq(gdt[BOOT_GDT_DS / 8], 0x00cf93000000ffffULL);

	const uint64_t *pml4 = gpa(&fx, BOOT_PT_PML4, 4096), *pdpt = gpa(&fx, BOOT_PT_PDPT, 4096);
	cr_assert_eq(pml4[0], BOOT_PT_PDPT | 3);
	for (int i = 1; i < 512; i++)
		cr_assert_eq(pml4[i], 0);
	for (int i = 0; i < 512; i++)
		cr_assert_eq(pdpt[i], i < 4 ? (BOOT_PT_PD + i * 0x1000ULL) | 3 : 0, "pdpt[%d]", i);
	/* Walk: every 2 MiB page of the first 4 GiB maps to itself. */
	for (uint64_t va = 0; va < 4 * GiB; va += 2 * MiB) {
		uint64_t pdpte = pdpt[(va >> 30) & 511];
		const uint64_t *pd = gpa(&fx, pdpte & ~0xfffULL, 4096);
		uint64_t pde = pd[(va >> 21) & 511];

		cr_assert_eq(pde & 0x83, 0x83, "present/rw/ps at 0x%llx", (unsigned long long)va);
		cr_assert_eq(pde & ~0xfffULL, va);
	}
	cr_assert_leq(BOOT_PT_PD + BOOT_PT_NR_PD * 0x1000ULL, LAYOUT_PAGE_TABLES_END);
	mem_destroy(&fx.mem);
}

Test(boot_bsp, rejects_unknown_mode_and_tiny_ram)
{
	struct fixture fx;
	struct boot_entry e = { .mode = (enum boot_mode)7 };
	struct kvm_regs regs;
	struct kvm_sregs sregs = { 0 };

	fx_init(&fx, 16 * 4096); /* 64 KiB: GDT fits, page tables end at 64 KiB */
	cr_assert_eq(boot_setup_bsp(&fx.mem, &e, &regs, &sregs), -EINVAL);
	mem_destroy(&fx.mem);
	fx_init(&fx, 8 * 4096); /* 32 KiB: no room for page tables */
	e.mode = BOOT_MODE_LINUX64;
	cr_assert_eq(boot_setup_bsp(&fx.mem, &e, &regs, &sregs), -EFAULT);
	mem_destroy(&fx.mem);
}

/* ---- Linux vmlinux ELF ---- */

static void check_e820(const struct boot_params *bp, const struct mm *want, unsigned n)
{
	cr_assert_eq(bp->e820_entries, n);
	for (unsigned i = 0; i < n; i++) {
		cr_expect_eq(bp->e820_table[i].addr, want[i].addr, "e820[%u].addr", i);
		cr_expect_eq(bp->e820_table[i].size, want[i].size, "e820[%u].size", i);
		cr_expect_eq(bp->e820_table[i].type, want[i].type, "e820[%u].type", i);
	}
	for (unsigned i = n; i < E820_MAX_ENTRIES_ZEROPAGE; i++)
		cr_expect_eq(bp->e820_table[i].size, 0);
}

Test(boot_vmlinux, elf_without_note_boots_linux64)
{
	struct fixture fx;
	struct boot_entry e;
	static uint8_t initrd[8192];
	/* vmlinux style: virtual link address, physical load at 16 MiB, entry physical. */
	struct tseg segs[] = {
		{ PT_LOAD, 16 * MiB, 0xffffffff81000000ULL, text, sizeof(text), 0x10000 },
	};
	struct timg k = build_elf(true, 16 * MiB + 0x30, segs, 1);
	const char *cmd = "console=ttyS0 root=/dev/vda";

	fx_init(&fx, 128 * MiB);
	cr_assert_eq(fx_load(&fx, &k, initrd, sizeof(initrd), cmd, &e), 0, "%s", fx.err);
	cr_assert_eq(e.mode, BOOT_MODE_LINUX64);
	cr_assert_eq(e.entry, 16 * MiB + 0x30);
	cr_assert_eq(e.boot_info_gpa, LAYOUT_BOOT_INFO);
	cr_assert_eq(memcmp(gpa(&fx, 16 * MiB, sizeof(text)), text, sizeof(text)), 0);

	const struct boot_params *bp = gpa(&fx, LAYOUT_BOOT_INFO, sizeof(*bp));
	cr_assert_eq(bp->hdr.boot_flag, 0xaa55);
	cr_assert_eq(bp->hdr.header, 0x53726448);
	cr_assert_eq(bp->hdr.type_of_loader, 0xff);
	cr_assert_eq(bp->hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	cr_assert_eq(bp->ext_cmd_line_ptr, 0);
	cr_assert_str_eq((const char *)gpa(&fx, LAYOUT_CMDLINE, strlen(cmd) + 1), cmd);
	cr_assert_eq(bp->hdr.ramdisk_image, e.initrd_gpa);
	cr_assert_eq(bp->hdr.ramdisk_size, sizeof(initrd));
	cr_assert_eq(bp->ext_ramdisk_image, 0);
	cr_assert_eq(bp->acpi_rsdp_addr, LAYOUT_ACPI_START);
	cr_assert_eq(bp->hdr.setup_data, 0);
	cr_assert_eq(bp->hdr.kernel_alignment, 0x1000000);
	cr_assert_eq(bp->hdr.loadflags & LOADED_HIGH, LOADED_HIGH);
	cr_assert_eq(e.initrd_gpa % 4096, 0);
	cr_assert_eq(e.initrd_gpa + sizeof(initrd), 128 * MiB);
	struct mm want[] = { { 0, 0x9fc00, 1 }, { 0x9fc00, 0x60400, 2 }, { 0x100000, 127 * MiB, 1 } };
	check_e820(bp, want, 3);
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_vmlinux, virtual_entry_converted_to_physical)
{
	struct fixture fx;
	struct boot_entry e;
	struct tseg segs[] = {
		{ PT_LOAD, 2 * MiB, 0xffffffff80200000ULL, text, sizeof(text), sizeof(text) },
	};
	struct timg k = build_elf(true, 0xffffffff80200100ULL, segs, 1);

	fx_init(&fx, 16 * MiB);
	cr_assert_eq(fx_load(&fx, &k, NULL, 0, NULL, &e), 0, "%s", fx.err);
	cr_assert_eq(e.entry, 2 * MiB + 0x100);
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_vmlinux, e820_above_4g)
{
	struct fixture fx;
	struct boot_entry e;
	struct tseg segs[] = { { PT_LOAD, 16 * MiB, 16 * MiB, text, sizeof(text), sizeof(text) } };
	struct timg k = build_elf(true, 16 * MiB, segs, 1);
	const uint64_t size = 6 * GiB;

	fx_init(&fx, size);
	cr_assert_eq(fx_load(&fx, &k, NULL, 0, NULL, &e), 0, "%s", fx.err);
	const struct boot_params *bp = gpa(&fx, LAYOUT_BOOT_INFO, sizeof(*bp));
	struct mm want[] = { { 0, 0x9fc00, 1 }, { 0x9fc00, 0x60400, 2 },
			     { 0x100000, LAYOUT_MMIO_GAP_START - 0x100000, 1 },
			     { LAYOUT_HIGH_RAM_START, size - LAYOUT_MMIO_GAP_START, 1 } };
	check_e820(bp, want, 4);
	free(k.buf);
	mem_destroy(&fx.mem);
}

/* ---- bzImage ---- */

struct bz_opts {
	uint16_t version, xloadflags, boot_flag;
	uint8_t loadflags, setup_sects, relocatable;
	uint32_t init_size, initrd_addr_max, cmdline_size, kernel_alignment;
	uint64_t pref_address;
	size_t pm_len;
};

static struct bz_opts bz_default(void)
{
	return (struct bz_opts){ .version = 0x020f, .xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
				 .boot_flag = 0xaa55, .loadflags = LOADED_HIGH, .setup_sects = 3,
				 .relocatable = 1, .init_size = 0x800000, .initrd_addr_max = 0x7fffffff,
				 .cmdline_size = 2047, .kernel_alignment = 0x200000,
				 .pref_address = 0x1000000, .pm_len = 0x3000 };
}

/* A bzImage as the kernel's build lays it out: boot sector with the setup
 * header at 0x1f1, setup sectors, then the protected-mode kernel. */
static struct timg build_bz(const struct bz_opts *o)
{
	unsigned sects = o->setup_sects ? o->setup_sects : 4;
	size_t setup = (size_t)(sects + 1) * 512;
	struct timg img = { .len = setup + o->pm_len };
	struct setup_header h;

	img.buf = calloc(1, img.len);
	cr_assert_not_null(img.buf);
	for (size_t i = 0; i < o->pm_len; i++)
		img.buf[setup + i] = (uint8_t)(i * 13 + 5);
	memset(&h, 0, sizeof(h));
	h.setup_sects = o->setup_sects;
	h.syssize = (uint32_t)(o->pm_len / 16);
	h.vid_mode = 0xffff;
	h.boot_flag = o->boot_flag;
	/* jump: short jmp over the header; its offset byte is at 0x201. */
	h.jump = (uint16_t)(0xeb | ((0x26c - 0x202) << 8));
	h.header = 0x53726448;
	h.version = o->version;
	h.kernel_version = 0x1234;
	h.loadflags = o->loadflags;
	h.code32_start = 0x100000;
	h.initrd_addr_max = o->initrd_addr_max;
	h.kernel_alignment = o->kernel_alignment;
	h.relocatable_kernel = o->relocatable;
	h.min_alignment = 21;
	h.xloadflags = o->xloadflags;
	h.cmdline_size = o->cmdline_size;
	h.pref_address = o->pref_address;
	h.init_size = o->init_size;
	h.handover_offset = 0x190;
	h.kernel_info_offset = 0x4321;
	memcpy(img.buf + 0x1f1, &h, sizeof(h));
	return img;
}

Test(boot_bzimage, loads_at_pref_address_and_fills_boot_params)
{
	struct fixture fx;
	struct boot_entry e;
	struct bz_opts o = bz_default();
	struct timg k = build_bz(&o);
	static uint8_t initrd[3 * 4096 + 17];
	const char *cmd = "console=ttyS0 quiet";

	fx_init(&fx, 256 * MiB);
	/* Stale garbage in the zero page must not survive. */
	memset(gpa(&fx, LAYOUT_BOOT_INFO, 4096), 0xee, 4096);
	cr_assert_eq(fx_load(&fx, &k, initrd, sizeof(initrd), cmd, &e), 0, "%s", fx.err);
	cr_assert_eq(e.mode, BOOT_MODE_LINUX64);
	cr_assert_eq(e.kernel_start, 0x1000000);
	cr_assert_eq(e.entry, 0x1000000 + 0x200, "startup_64");
	cr_assert_eq(memcmp(gpa(&fx, 0x1000000, o.pm_len), k.buf + 4 * 512, o.pm_len), 0);

	const struct boot_params *bp = gpa(&fx, LAYOUT_BOOT_INFO, sizeof(*bp));
	struct setup_header want;
	memcpy(&want, k.buf + 0x1f1, sizeof(want));
	/* Fields copied from the image. */
	cr_assert_eq(bp->hdr.setup_sects, 3);
	cr_assert_eq(bp->hdr.boot_flag, 0xaa55);
	cr_assert_eq(bp->hdr.header, 0x53726448);
	cr_assert_eq(bp->hdr.version, 0x020f);
	cr_assert_eq(bp->hdr.kernel_version, 0x1234);
	cr_assert_eq(bp->hdr.vid_mode, 0xffff);
	cr_assert_eq(bp->hdr.syssize, want.syssize);
	cr_assert_eq(bp->hdr.xloadflags, want.xloadflags);
	cr_assert_eq(bp->hdr.kernel_alignment, 0x200000);
	cr_assert_eq(bp->hdr.relocatable_kernel, 1);
	cr_assert_eq(bp->hdr.min_alignment, 21);
	cr_assert_eq(bp->hdr.pref_address, 0x1000000);
	cr_assert_eq(bp->hdr.init_size, 0x800000);
	cr_assert_eq(bp->hdr.handover_offset, 0x190);
	cr_assert_eq(bp->hdr.kernel_info_offset, 0x4321);
	cr_assert_eq(bp->hdr.initrd_addr_max, 0x7fffffff);
	cr_assert_eq(bp->hdr.cmdline_size, 2047);
	cr_assert_eq(bp->hdr.loadflags & LOADED_HIGH, LOADED_HIGH);
	/* Fields the loader writes. */
	cr_assert_eq(bp->hdr.type_of_loader, 0xff);
	cr_assert_eq(bp->hdr.code32_start, 0x1000000);
	cr_assert_eq(bp->hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	cr_assert_str_eq((const char *)gpa(&fx, LAYOUT_CMDLINE, strlen(cmd) + 1), cmd);
	cr_assert_eq(bp->hdr.ramdisk_image, e.initrd_gpa);
	cr_assert_eq(bp->hdr.ramdisk_size, sizeof(initrd));
	cr_assert_eq(bp->hdr.setup_data, 0);
	cr_assert_eq(bp->acpi_rsdp_addr, LAYOUT_ACPI_START);
	cr_assert_eq(bp->sentinel, 0, "zero page cleared before the header copy");
	cr_assert_eq(bp->_pad9[0], 0);
	struct mm map[] = { { 0, 0x9fc00, 1 }, { 0x9fc00, 0x60400, 2 }, { 0x100000, 255 * MiB, 1 } };
	check_e820(bp, map, 3);

	cr_assert_eq(e.initrd_gpa % 4096, 0);
	cr_assert_leq(e.initrd_gpa + sizeof(initrd), 256 * MiB);
	cr_assert_gt(e.initrd_gpa + sizeof(initrd) + 4096, 256 * MiB);
	cr_assert_eq(memcmp(gpa(&fx, e.initrd_gpa, sizeof(initrd)), initrd, sizeof(initrd)), 0);
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_bzimage, non_relocatable_loads_at_1m_and_initrd_respects_addr_max)
{
	struct fixture fx;
	struct boot_entry e;
	struct bz_opts o = bz_default();
	static uint8_t initrd[4096 * 4];

	o.relocatable = 0;
	o.initrd_addr_max = 0x2ffffff; /* 48 MiB - 1 */
	o.setup_sects = 0;             /* means 4 */
	struct timg k = build_bz(&o);

	fx_init(&fx, 256 * MiB);
	cr_assert_eq(fx_load(&fx, &k, initrd, sizeof(initrd), NULL, &e), 0, "%s", fx.err);
	cr_assert_eq(e.kernel_start, LAYOUT_KERNEL_START);
	cr_assert_eq(e.entry, LAYOUT_KERNEL_START + 0x200);
	cr_assert_eq(memcmp(gpa(&fx, LAYOUT_KERNEL_START, o.pm_len), k.buf + 5 * 512, o.pm_len), 0);
	cr_assert_eq(e.initrd_gpa + sizeof(initrd), 48 * MiB);
	const struct boot_params *bp = gpa(&fx, LAYOUT_BOOT_INFO, sizeof(*bp));
	cr_assert_eq(bp->hdr.code32_start, LAYOUT_KERNEL_START);
	cr_assert_eq(bp->hdr.ramdisk_image, 48 * MiB - sizeof(initrd));
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_bzimage, bad_pref_address_falls_back_to_1m)
{
	struct fixture fx;
	struct boot_entry e;
	struct bz_opts o = bz_default();
	static uint8_t initrd[4096];

	o.pref_address = 0x80000; /* below 1 MiB: would clobber boot data */
	struct timg k = build_bz(&o);

	fx_init(&fx, 64 * MiB);
	cr_assert_eq(fx_load(&fx, &k, initrd, sizeof(initrd), NULL, &e), 0, "%s", fx.err);
	cr_assert_eq(e.kernel_start, LAYOUT_KERNEL_START);
	cr_assert_eq(e.kernel_end, LAYOUT_KERNEL_START + o.init_size);
	free(k.buf);

	o = bz_default();
	o.pref_address = 0x1100000; /* not a multiple of kernel_alignment (2 MiB) */
	k = build_bz(&o);
	cr_assert_eq(fx_load(&fx, &k, NULL, 0, NULL, &e), 0, "%s", fx.err);
	cr_assert_eq(e.kernel_start, LAYOUT_KERNEL_START);
	/* It still decompresses at pref_address: that range is the kernel's. */
	cr_assert_eq(e.kernel_end, 0x1100000 + o.init_size);
	free(k.buf);
	mem_destroy(&fx.mem);
}

/* A kernel loaded low still runs at pref_address (LOAD_PHYSICAL_ADDR):
 * the initrd goes above pref_address + init_size, and RAM must reach it. */
Test(boot_bzimage, init_size_at_pref_address_bounds_initrd_and_ram)
{
	struct fixture fx;
	struct boot_entry e;
	struct bz_opts o = bz_default();
	uint8_t *initrd = calloc(1, 8 * MiB);

	o.relocatable = 0;
	struct timg k = build_bz(&o);
	fx_init(&fx, 32 * MiB);
	/* 16 MiB + 8 MiB init_size leaves 8 MiB: an 8 MiB initrd just fits. */
	cr_assert_eq(fx_load(&fx, &k, initrd, 8 * MiB, NULL, &e), 0, "%s", fx.err);
	cr_assert_eq(e.kernel_end, 24 * MiB);
	cr_assert_eq(e.initrd_gpa, 24 * MiB);
	cr_assert_eq(fx_load(&fx, &k, initrd, 8 * MiB + 1, NULL, &e), -ENOMEM);
	cr_assert_not_null(strstr(fx.err, "initrd: does not fit below 0x2000000"), "%s", fx.err);
	mem_destroy(&fx.mem);

	fx_init(&fx, 20 * MiB);
	cr_assert_eq(fx_load(&fx, &k, NULL, 0, NULL, &e), -ENOMEM);
	cr_assert_not_null(strstr(fx.err, "needs RAM at 0x1000000 - 0x1800000 (init_size) but guest RAM is 20 MiB (memory too small)"),
			   "%s", fx.err);
	free(initrd);
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_bzimage, initrd_above_4g_ram_stays_below_gap)
{
	struct fixture fx;
	struct boot_entry e;
	struct bz_opts o = bz_default();
	struct timg k = build_bz(&o);
	static uint8_t initrd[4096];

	o.initrd_addr_max = 0xffffffff;
	free(k.buf);
	k = build_bz(&o);
	fx_init(&fx, 5 * GiB);
	cr_assert_eq(fx_load(&fx, &k, initrd, sizeof(initrd), NULL, &e), 0, "%s", fx.err);
	cr_assert_eq(e.initrd_gpa + sizeof(initrd), LAYOUT_MMIO_GAP_START);
	const struct boot_params *bp = gpa(&fx, LAYOUT_BOOT_INFO, sizeof(*bp));
	cr_assert_eq(bp->e820_entries, 4);
	cr_assert_eq(bp->e820_table[3].addr, LAYOUT_HIGH_RAM_START);
	cr_assert_eq(bp->e820_table[3].size, 5 * GiB - LAYOUT_MMIO_GAP_START);
	free(k.buf);
	mem_destroy(&fx.mem);
}

/* ---- hostile input ---- */

static void expect_fail(struct fixture *fx, const struct timg *k, const char *substr)
{
	struct boot_entry e;
	int ret = fx_load(fx, k, NULL, 0, NULL, &e);

	cr_assert_lt(ret, 0, "expected failure with '%s'", substr);
	cr_assert_not_null(strstr(fx->err, substr), "error '%s' lacks '%s'", fx->err, substr);
	cr_assert_null(strchr(fx->err, '\n'), "one line");
}

Test(boot_hostile, bad_magic_and_empty)
{
	struct fixture fx;
	uint8_t junk[4096] = { 'M', 'Z' };
	struct timg k = { junk, sizeof(junk) };

	fx_init(&fx, 16 * MiB);
	expect_fail(&fx, &k, "not an ELF or bzImage (bad magic)");
	k.len = 0;
	expect_fail(&fx, &k, "empty");
	k.buf = NULL;
	expect_fail(&fx, &k, "empty");
	mem_destroy(&fx.mem);
}

Test(boot_hostile, elf_truncated_at_every_byte)
{
	struct fixture fx;
	struct timg k = build_pvh_kernel(true, 4);
	struct boot_entry e;

	fx_init(&fx, 16 * MiB);
	/* Every proper prefix fails cleanly (the last byte belongs to the note). */
	for (size_t len = 0; len < k.len; len++) {
		uint8_t *copy = malloc(len ? len : 1);
		struct timg t = { copy, len };

		memcpy(copy, k.buf, len);
		cr_assert_lt(fx_load(&fx, &t, NULL, 0, NULL, &e), 0, "prefix %zu accepted", len);
		cr_assert_neq(fx.err[0], '\0');
		free(copy);
	}
	cr_assert_eq(fx_load(&fx, &k, NULL, 0, NULL, &e), 0, "%s", fx.err);
	/* Specific messages at the boundaries. */
	k.len = 40;
	expect_fail(&fx, &k, "truncated ELF");
	k.len = sizeof(Elf64_Ehdr) + 10;
	expect_fail(&fx, &k, "program headers past end of file");
	k.len = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr) + 5;
	expect_fail(&fx, &k, "past end of file");
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_hostile, elf_bad_identification)
{
	struct fixture fx;
	struct timg k = build_pvh_kernel(true, 4);

	fx_init(&fx, 16 * MiB);
	k.buf[EI_CLASS] = 7;
	expect_fail(&fx, &k, "unsupported ELF class 7");
	k.buf[EI_CLASS] = ELFCLASS64;
	k.buf[EI_DATA] = ELFDATA2MSB;
	expect_fail(&fx, &k, "not little-endian");
	k.buf[EI_DATA] = ELFDATA2LSB;
	k.buf[EI_VERSION] = 0;
	expect_fail(&fx, &k, "ELF version");
	k.buf[EI_VERSION] = EV_CURRENT;
	((Elf64_Ehdr *)k.buf)->e_machine = EM_AARCH64;
	expect_fail(&fx, &k, "not x86-64");
	((Elf64_Ehdr *)k.buf)->e_machine = EM_X86_64;
	((Elf64_Ehdr *)k.buf)->e_type = ET_DYN;
	expect_fail(&fx, &k, "not an executable");
	((Elf64_Ehdr *)k.buf)->e_type = ET_EXEC;
	((Elf64_Ehdr *)k.buf)->e_phentsize = 32;
	expect_fail(&fx, &k, "program header size 32");
	((Elf64_Ehdr *)k.buf)->e_phentsize = sizeof(Elf64_Phdr);
	((Elf64_Ehdr *)k.buf)->e_phnum = 0;
	expect_fail(&fx, &k, "0 program headers");
	((Elf64_Ehdr *)k.buf)->e_phnum = 0xfffe;
	expect_fail(&fx, &k, "program headers past end of file");
	((Elf64_Ehdr *)k.buf)->e_phnum = 0xffff;
	expect_fail(&fx, &k, "65535 program headers");
	((Elf64_Ehdr *)k.buf)->e_phnum = 2;
	((Elf64_Ehdr *)k.buf)->e_phoff = ~0ULL - 8;
	expect_fail(&fx, &k, "program headers past end of file");
	free(k.buf);

	k = build_pvh_kernel(false, 4);
	((Elf32_Ehdr *)k.buf)->e_machine = EM_X86_64;
	expect_fail(&fx, &k, "not i386");
	free(k.buf);
	mem_destroy(&fx.mem);
}

static Elf64_Phdr *phdr(struct timg *k, unsigned i)
{
	return (Elf64_Phdr *)(k->buf + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
}

Test(boot_hostile, elf_bad_segments)
{
	struct fixture fx;
	struct timg k = build_pvh_kernel(true, 4);
	Elf64_Phdr *p = phdr(&k, 0), *n = phdr(&k, 1), save = *p;

	fx_init(&fx, 256 * MiB);
	p->p_memsz = p->p_filesz - 1;
	expect_fail(&fx, &k, "p_filesz 0x300 > p_memsz 0x2ff");
	*p = save;
	p->p_offset = k.len - 10;
	expect_fail(&fx, &k, "segment 0 data");
	p->p_offset = ~0ULL;
	expect_fail(&fx, &k, "past end of file");
	*p = save;
	p->p_paddr = 256 * MiB - 0x1000;
	expect_fail(&fx, &k, "segment 0xffff000 - 0x10004000 is outside guest RAM (256 MiB)");
	p->p_paddr = 0x80000;
	expect_fail(&fx, &k, "overlaps the VMM boot data below 1 MiB");
	p->p_paddr = ~0ULL - 0x100;
	expect_fail(&fx, &k, "wraps");
	p->p_paddr = LAYOUT_MMIO_GAP_START;
	expect_fail(&fx, &k, "outside guest RAM");
	*p = save;
	p->p_type = PT_NULL;
	expect_fail(&fx, &k, "no loadable segments");
	*p = save;
	/* Malformed notes. */
	uint32_t *note = (uint32_t *)(k.buf + n->p_offset + 20); /* second note header */
	note[1] = 0x7fffffff;
	expect_fail(&fx, &k, "truncated ELF note");
	note[1] = 2;
	expect_fail(&fx, &k, "2-byte descriptor");
	note[1] = 4;
	/* PVH entry outside the image. */
	uint32_t *entry = (uint32_t *)(k.buf + n->p_offset + 36);
	*entry = 0x100000 + 0x5000;
	expect_fail(&fx, &k, "PVH entry 0x105000 is outside the loaded image");
	*entry = 0x100040;
	struct boot_entry e;
	cr_assert_eq(fx_load(&fx, &k, NULL, 0, NULL, &e), 0, "%s", fx.err);
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_hostile, pvh_entry_above_4g)
{
	struct fixture fx;
	static uint8_t note[64];
	size_t nlen = build_pvh_note(note, LAYOUT_HIGH_RAM_START + 0x40, 8);
	struct tseg segs[] = {
		{ PT_LOAD, LAYOUT_HIGH_RAM_START, LAYOUT_HIGH_RAM_START, text, sizeof(text), sizeof(text) },
		{ PT_NOTE, 0, 0, note, nlen, 0 },
	};
	struct timg k = build_elf(true, 0, segs, 2);

	fx_init(&fx, 4 * GiB);
	expect_fail(&fx, &k, "PVH entry 0x100000040 is above 4 GiB");
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_hostile, vmlinux_entry_and_elf32_without_note)
{
	struct fixture fx;
	struct tseg segs[] = { { PT_LOAD, 16 * MiB, 16 * MiB, text, sizeof(text), sizeof(text) } };
	struct timg k = build_elf(true, 0x1234, segs, 1);
	struct timg k32 = build_elf(false, 16 * MiB, segs, 1);

	fx_init(&fx, 64 * MiB);
	expect_fail(&fx, &k, "entry point 0x1234 is not inside any loaded segment");
	expect_fail(&fx, &k32, "32-bit ELF without a PVH note");
	free(k.buf);
	free(k32.buf);
	mem_destroy(&fx.mem);
}

Test(boot_hostile, memory_too_small)
{
	struct fixture fx;
	struct timg k = build_pvh_kernel(true, 4);

	fx_init(&fx, 512 * 1024);
	expect_fail(&fx, &k, "guest RAM (512 KiB) is too small");
	mem_destroy(&fx.mem);
	fx_init(&fx, 1 * MiB + 0x2000);
	expect_fail(&fx, &k, "outside guest RAM (1032 KiB)");
	mem_destroy(&fx.mem);
	free(k.buf);
}

Test(boot_hostile, cmdline_too_long)
{
	struct fixture fx;
	struct boot_entry e;
	struct timg k = build_pvh_kernel(true, 4);
	char *cmd = malloc(LAYOUT_CMDLINE_MAX + 10);

	fx_init(&fx, 16 * MiB);
	memset(cmd, 'a', LAYOUT_CMDLINE_MAX + 9);
	cmd[LAYOUT_CMDLINE_MAX + 9] = '\0';
	cr_assert_eq(fx_load(&fx, &k, NULL, 0, cmd, &e), -E2BIG);
	cr_assert_not_null(strstr(fx.err, "cmdline: too long"), "%s", fx.err);
	/* The longest that fits: 64 KiB - 1 plus the NUL. */
	cmd[LAYOUT_CMDLINE_MAX - 1] = '\0';
	cr_assert_eq(fx_load(&fx, &k, NULL, 0, cmd, &e), 0, "%s", fx.err);
	cr_assert_eq(*(char *)gpa(&fx, LAYOUT_CMDLINE + LAYOUT_CMDLINE_MAX - 1, 1), '\0');
	free(cmd);
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_hostile, initrd_too_big)
{
	struct fixture fx;
	struct boot_entry e;
	struct timg k = build_pvh_kernel(true, 4);
	size_t ilen = 3 * MiB;
	uint8_t *initrd = calloc(1, ilen);

	fx_init(&fx, 4 * MiB);
	cr_assert_eq(fx_load(&fx, &k, initrd, ilen, NULL, &e), -ENOMEM);
	cr_assert_not_null(strstr(fx.err, "initrd: does not fit below 0x400000"), "%s", fx.err);
	cr_assert_eq(fx_load(&fx, &k, initrd, 2 * MiB, NULL, &e), 0, "%s", fx.err);
	cr_assert_geq(e.initrd_gpa, e.kernel_end);
	free(initrd);
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_hostile, bzimage_bad_headers)
{
	struct fixture fx;
	struct bz_opts o;
	struct timg k;

	fx_init(&fx, 64 * MiB);
	o = bz_default();
	o.version = 0x020b;
	k = build_bz(&o);
	expect_fail(&fx, &k, "boot protocol 2.11 is too old (need 2.12 or newer)");
	free(k.buf);
	o = bz_default();
	o.xloadflags = 0;
	k = build_bz(&o);
	expect_fail(&fx, &k, "no 64-bit entry point (XLF_KERNEL_64 not set)");
	free(k.buf);
	o = bz_default();
	o.boot_flag = 0x1234;
	k = build_bz(&o);
	expect_fail(&fx, &k, "boot_flag is 0x1234");
	free(k.buf);
	o = bz_default();
	o.loadflags = 0;
	k = build_bz(&o);
	expect_fail(&fx, &k, "zImage");
	free(k.buf);
	o = bz_default();
	o.setup_sects = 200; /* setup larger than the file */
	o.pm_len = 0;
	k = build_bz(&o);
	k.len = 201 * 512 - 1;
	expect_fail(&fx, &k, "no protected-mode part");
	free(k.buf);
	o = bz_default();
	o.init_size = 0x10000000; /* 256 MiB in a 64 MiB guest */
	k = build_bz(&o);
	expect_fail(&fx, &k, "memory too small");
	free(k.buf);
	/* Jump byte claiming a header shorter than xloadflags. */
	o = bz_default();
	k = build_bz(&o);
	k.buf[0x201] = 0x10;
	expect_fail(&fx, &k, "setup header too short");
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_hostile, bzimage_truncated_at_every_header_byte)
{
	struct fixture fx;
	struct bz_opts o = bz_default();
	struct timg k = build_bz(&o);
	struct boot_entry e;
	size_t setup = 4 * 512;

	fx_init(&fx, 64 * MiB);
	for (size_t len = 0; len <= setup; len++) {
		uint8_t *copy = malloc(len ? len : 1);
		struct timg t = { copy, len };

		memcpy(copy, k.buf, len);
		cr_assert_lt(fx_load(&fx, &t, NULL, 0, NULL, &e), 0, "prefix %zu accepted", len);
		cr_assert_neq(fx.err[0], '\0');
		free(copy);
	}
	free(k.buf);
	mem_destroy(&fx.mem);
}

Test(boot_hostile, bzimage_cmdline_over_cmdline_size)
{
	struct fixture fx;
	struct boot_entry e;
	struct bz_opts o = bz_default();
	char cmd[64];

	o.cmdline_size = 16;
	struct timg k = build_bz(&o);
	fx_init(&fx, 64 * MiB);
	memset(cmd, 'b', sizeof(cmd) - 1);
	cmd[sizeof(cmd) - 1] = '\0';
	cr_assert_eq(fx_load(&fx, &k, NULL, 0, cmd, &e), -E2BIG);
	cr_assert_not_null(strstr(fx.err, "limit 16"), "%s", fx.err);
	cmd[16] = '\0';
	cr_assert_eq(fx_load(&fx, &k, NULL, 0, cmd, &e), 0, "%s", fx.err);
	free(k.buf);
	mem_destroy(&fx.mem);
}

/* Random corruption of a valid image never crashes (ASan pass checks memory). */
Test(boot_hostile, random_byte_flips)
{
	struct fixture fx;
	struct boot_entry e;
	struct timg k = build_pvh_kernel(true, 4);
	struct bz_opts o = bz_default();
	struct timg b = build_bz(&o);
	unsigned seed = 12345;

	fx_init(&fx, 32 * MiB);
	for (int iter = 0; iter < 3000; iter++) {
		struct timg *src = iter & 1 ? &b : &k;
		size_t span = src == &b ? 0x280 : src->len;
		uint8_t *copy = malloc(src->len);
		struct timg t = { copy, src->len };

		memcpy(copy, src->buf, src->len);
		for (int f = 0; f < 1 + iter % 4; f++) {
			seed = seed * 1103515245 + 12345;
			copy[(seed >> 8) % span] ^= (uint8_t)(1u << ((seed >> 4) % 8));
		}
		int ret = fx_load(&fx, &t, NULL, 0, NULL, &e);
		if (ret < 0)
			cr_assert_neq(fx.err[0], '\0');
		free(copy);
	}
	free(k.buf);
	free(b.buf);
	mem_destroy(&fx.mem);
}

/* Notes with names of every padding length before the Xen note, plus
 * several PT_LOAD segments (text, data with .bss, an empty one) and a
 * second PT_NOTE without the Xen note. */
Test(boot_pvh, note_padding_and_multiple_segments)
{
	struct fixture fx;
	struct boot_entry e;
	static uint8_t notes[256], other[32], data[100];
	size_t off = 0;
	uint32_t entry = 0x200010;

	for (uint32_t namesz = 0; namesz <= 8; namesz++) {
		uint32_t hdr[3] = { namesz, 3, 7 };

		memcpy(notes + off, hdr, 12);
		off += 12;
		memset(notes + off, 'N', namesz);
		off += (namesz + 3) & ~3u;
		memset(notes + off, 0xee, 3);
		off += 4;
	}
	/* "Xen" with a misleading type first, then the real one. */
	uint32_t wrong[3] = { 4, 4, XEN_ELFNOTE_PHYS32_ENTRY + 1 };
	memcpy(notes + off, wrong, 12);
	memcpy(notes + off + 12, "Xen", 4);
	memset(notes + off + 16, 0x99, 4);
	off += 20;
	uint32_t xen[3] = { 4, 4, XEN_ELFNOTE_PHYS32_ENTRY };
	memcpy(notes + off, xen, 12);
	memcpy(notes + off + 12, "Xen", 4);
	memcpy(notes + off + 16, &entry, 4);
	off += 20;
	uint32_t gnu[3] = { 4, 16, 3 };
	memcpy(other, gnu, 12);
	memcpy(other + 12, "GNU", 4);

	memset(data, 0x42, sizeof(data));
	struct tseg segs[] = {
		{ PT_NOTE, 0, 0, other, 32, 0 },
		{ PT_LOAD, 0x200000, 0x200000, text, sizeof(text), sizeof(text) },
		{ PT_LOAD, 0x300000, 0x300000, NULL, 0, 0 },
		{ PT_LOAD, 0x400000, 0x400000, data, sizeof(data), 0x3000 },
		{ PT_NOTE, 0, 0, notes, off, 0 },
	};
	struct timg k = build_elf(true, 0, segs, 5);

	fx_init(&fx, 16 * MiB);
	cr_assert_eq(fx_load(&fx, &k, NULL, 0, NULL, &e), 0, "%s", fx.err);
	cr_assert_eq(e.mode, BOOT_MODE_PVH);
	cr_assert_eq(e.entry, 0x200010);
	cr_assert_eq(e.kernel_start, 0x200000);
	cr_assert_eq(e.kernel_end, 0x403000);
	cr_assert_eq(memcmp(gpa(&fx, 0x200000, sizeof(text)), text, sizeof(text)), 0);
	cr_assert_eq(memcmp(gpa(&fx, 0x400000, sizeof(data)), data, sizeof(data)), 0);
	cr_assert_eq(*(uint8_t *)gpa(&fx, 0x400000 + sizeof(data), 1), 0);
	free(k.buf);
	mem_destroy(&fx.mem);
}

/* A newer kernel's header may extend past our struct setup_header: the copy
 * is clamped to what we know, and the loader's fields still land. */
Test(boot_bzimage, header_longer_than_known_is_clamped)
{
	struct fixture fx;
	struct boot_entry e;
	struct bz_opts o = bz_default();
	struct timg k = build_bz(&o);

	k.buf[0x201] = 0xff; /* header claims to end at 0x301 */
	memset(k.buf + 0x1f1 + sizeof(struct setup_header), 0x77, 0x301 - 0x1f1 - sizeof(struct setup_header));
	fx_init(&fx, 64 * MiB);
	cr_assert_eq(fx_load(&fx, &k, NULL, 0, "x", &e), 0, "%s", fx.err);
	const uint8_t *bp = gpa(&fx, LAYOUT_BOOT_INFO, 4096);
	const struct boot_params *p = (const struct boot_params *)bp;
	cr_assert_eq(p->hdr.type_of_loader, 0xff);
	cr_assert_eq(p->hdr.kernel_info_offset, 0x4321);
	/* Nothing past the known header was copied into the zero page. */
	for (size_t i = 0x1f1 + sizeof(struct setup_header); i < 0x290; i++)
		cr_assert_eq(bp[i], 0, "byte 0x%zx", i);
	free(k.buf);
	mem_destroy(&fx.mem);
}

/* Memory sizes at the edges of the MMIO gap. */
Test(boot_pvh, memmap_at_gap_boundaries)
{
	struct fixture fx;
	struct boot_entry e;
	struct timg k = build_pvh_kernel(true, 4);
	const uint64_t sizes[] = { LAYOUT_MMIO_GAP_START, LAYOUT_MMIO_GAP_START + 4096, 2 * MiB };

	for (int i = 0; i < 3; i++) {
		fx_init(&fx, sizes[i]);
		cr_assert_eq(fx_load(&fx, &k, NULL, 0, NULL, &e), 0, "%s", fx.err);
		const struct hvm_start_info *si = gpa(&fx, LAYOUT_BOOT_INFO, sizeof(*si));
		uint64_t low = sizes[i] < LAYOUT_MMIO_GAP_START ? sizes[i] : LAYOUT_MMIO_GAP_START;
		struct mm want[] = {
			{ 0, 0x9fc00, 1 }, { 0x9fc00, 0x60400, 2 }, { 0x100000, low - 0x100000, 1 },
			{ LAYOUT_HIGH_RAM_START, 4096, 1 },
		};
		check_pvh_memmap(&fx, si, want, sizes[i] > LAYOUT_MMIO_GAP_START ? 4 : 3);
		mem_destroy(&fx.mem);
	}
	free(k.buf);
}
