/* Kernel loaders for x86_64 guests: PVH ELF, Linux vmlinux ELF and bzImage.
 *
 * Everything here treats the kernel and initrd as hostile input: every
 * offset and length read from a file is checked against the file size before
 * use, and every guest-physical range is checked against RAM through
 * mem_gpa_to_hva()/mem_write(). Errors come back as -errno plus one line
 * in @err naming the problem.
 *
 * References: Xen public/arch-x86/hvm/start_info.h and docs/misc/pvh.pandoc
 * (PVH), Linux Documentation/arch/x86/boot.rst (boot protocol 2.15),
 * System V gABI (ELF). */
#include "vmm/boot.h"

#include <asm/bootparam.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "vmm/layout.h"
#include "vmm/log.h"
#include "vmm/pvh.h"

#define BOOT_E820_RAM       1
#define BOOT_E820_RESERVED  2

#define BZ_HDR_OFFSET       0x1f1     /* struct setup_header inside the image */
#define BZ_BOOT_FLAG        0xaa55
#define BZ_HDRS_MAGIC       0x53726448 /* "HdrS" */
#define BZ_MIN_VERSION      0x020c     /* 2.12: xloadflags / XLF_KERNEL_64 */
#define BZ_STARTUP_64       0x200      /* 64-bit entry offset in the protected-mode part */
#define BZ_LOADER_UNDEFINED 0xff       /* type_of_loader for loaders without an assigned id */
#define BZ_DEFAULT_INITRD_MAX 0x37ffffffu
#define BOOT_INITRD_ALIGN   0x1000ULL

struct boot_memmap {
	unsigned nr;
	struct { uint64_t addr, size; uint32_t type; } e[BOOT_PVH_MEMMAP_MAX];
};

/* One PT_LOAD or PT_NOTE program header, widened from ELF32 or ELF64. */
struct elf_seg {
	uint32_t type;
	uint64_t offset, vaddr, paddr, filesz, memsz;
};

struct elf_file {
	const uint8_t *data;
	size_t len;
	bool is64;
	uint64_t entry, phoff;
	unsigned phnum, phentsize;
};

static int boot_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int boot_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

/* "256 MiB" or "640 KiB": memory sizes as a user would have typed them. */
static void boot_format_size(uint64_t bytes, char *buf, size_t len)
{
	if (bytes % (1ULL << 20) == 0)
		snprintf(buf, len, "%llu MiB", (unsigned long long)(bytes >> 20));
	else
		snprintf(buf, len, "%llu KiB", (unsigned long long)(bytes >> 10));
}

static uint64_t boot_low_ram_end(const struct guest_mem *mem)
{
	return mem->nr_regions ? mem->regions[0].gpa + mem->regions[0].size : 0;
}

/* [gpa, gpa+len) lies in RAM, computed without overflow. */
static bool boot_range_in_ram(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	return mem_gpa_to_hva(mem, gpa, len) != NULL;
}

/* ---- memory map ---- */

static void memmap_add(struct boot_memmap *m, uint64_t addr, uint64_t size, uint32_t type)
{
	if (size == 0 || m->nr >= BOOT_PVH_MEMMAP_MAX)
		return;
	m->e[m->nr].addr = addr;
	m->e[m->nr].size = size;
	m->e[m->nr].type = type;
	m->nr++;
}

/* RAM below the EBDA, the legacy hole 0x9fc00-0xfffff reserved (EBDA, VGA,
 * option ROMs, BIOS; our ACPI tables live there), RAM from 1 MiB to the MMIO
 * gap, and RAM above 4 GiB. The MMIO gap itself is not listed. */
static void boot_build_memmap(const struct guest_mem *mem, struct boot_memmap *m)
{
	uint64_t low_end = boot_low_ram_end(mem);

	memset(m, 0, sizeof(*m));
	memmap_add(m, 0, low_end < LAYOUT_EBDA_START ? low_end : LAYOUT_EBDA_START, BOOT_E820_RAM);
	memmap_add(m, LAYOUT_EBDA_START, LAYOUT_KERNEL_START - LAYOUT_EBDA_START, BOOT_E820_RESERVED);
	if (low_end > LAYOUT_KERNEL_START)
		memmap_add(m, LAYOUT_KERNEL_START, low_end - LAYOUT_KERNEL_START, BOOT_E820_RAM);
	for (unsigned i = 1; i < mem->nr_regions; i++)
		memmap_add(m, mem->regions[i].gpa, mem->regions[i].size, BOOT_E820_RAM);
}

/* ---- command line and initrd ---- */

static int boot_write_cmdline(struct guest_mem *mem, const char *cmdline, uint64_t limit,
			      char *err, size_t errlen)
{
	const char *s = cmdline ? cmdline : "";
	size_t len = strnlen(s, LAYOUT_CMDLINE_MAX);

	/* @limit counts bytes without the NUL, like setup_header.cmdline_size. */
	if (len >= LAYOUT_CMDLINE_MAX || len > limit)
		return boot_fail(err, errlen, -E2BIG,
				 "cmdline: too long (%zu%s bytes, limit %llu)", len,
				 len >= LAYOUT_CMDLINE_MAX ? "+" : "", (unsigned long long)limit);
	if (mem_write(mem, LAYOUT_CMDLINE, s, len) || mem_fill(mem, LAYOUT_CMDLINE + len, 0, 1))
		return boot_fail(err, errlen, -ENOMEM,
				 "cmdline: 0x%llx is not in guest RAM", (unsigned long long)LAYOUT_CMDLINE);
	return 0;
}

/* Place the initrd as high as possible below @top (exclusive), page aligned,
 * and above @floor (the end of the kernel's memory), as Linux boot.rst
 * recommends ("as high as possible"). */
static int boot_load_initrd(struct guest_mem *mem, const struct boot_input *in, uint64_t floor,
			    uint64_t top, struct boot_entry *out, char *err, size_t errlen)
{
	uint64_t addr;

	out->initrd_gpa = out->initrd_size = 0;
	if (!in->initrd || in->initrd_len == 0)
		return 0;
	floor = (floor + BOOT_INITRD_ALIGN - 1) & ~(BOOT_INITRD_ALIGN - 1);
	if (top < floor || in->initrd_len > top - floor)
		return boot_fail(err, errlen, -ENOMEM,
				 "initrd: does not fit below 0x%llx (%zu bytes; free RAM 0x%llx-0x%llx after the kernel)",
				 (unsigned long long)top, in->initrd_len, (unsigned long long)floor,
				 (unsigned long long)(top > floor ? top : floor));
	addr = (top - in->initrd_len) & ~(BOOT_INITRD_ALIGN - 1);
	if (mem_write(mem, addr, in->initrd, in->initrd_len))
		return boot_fail(err, errlen, -ENOMEM, "initrd: 0x%llx-0x%llx is not in guest RAM",
				 (unsigned long long)addr, (unsigned long long)(addr + in->initrd_len));
	out->initrd_gpa = addr;
	out->initrd_size = in->initrd_len;
	return 0;
}

/* ---- ELF ---- */

/* The ELF header fields we use; the 32- and 64-bit layouts differ only in widths. */
struct elf_ehdr {
	unsigned type, machine, phnum, phentsize;
	uint64_t entry, phoff;
};

static void elf_read_ehdr(const struct elf_file *f, struct elf_ehdr *h)
{
	if (f->is64) {
		Elf64_Ehdr eh;

		memcpy(&eh, f->data, sizeof(eh));
		*h = (struct elf_ehdr){ eh.e_type, eh.e_machine, eh.e_phnum, eh.e_phentsize, eh.e_entry, eh.e_phoff };
	} else {
		Elf32_Ehdr eh;

		memcpy(&eh, f->data, sizeof(eh));
		*h = (struct elf_ehdr){ eh.e_type, eh.e_machine, eh.e_phnum, eh.e_phentsize, eh.e_entry, eh.e_phoff };
	}
}

static int elf_parse_header(struct elf_file *f, const uint8_t *data, size_t len, char *err,
			    size_t errlen)
{
	struct elf_ehdr h;
	size_t ehsize, phsize;

	memset(f, 0, sizeof(*f));
	f->data = data;
	f->len = len;
	if (len < EI_NIDENT)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: truncated ELF (%zu bytes, no ELF identification)", len);
	if (data[EI_CLASS] != ELFCLASS64 && data[EI_CLASS] != ELFCLASS32)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: unsupported ELF class %u", data[EI_CLASS]);
	if (data[EI_DATA] != ELFDATA2LSB)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: ELF is not little-endian (EI_DATA %u)", data[EI_DATA]);
	if (data[EI_VERSION] != EV_CURRENT)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: unsupported ELF version %u", data[EI_VERSION]);
	f->is64 = data[EI_CLASS] == ELFCLASS64;

	ehsize = f->is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
	phsize = f->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	if (len < ehsize)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: truncated ELF (header is %zu bytes, file %zu)",
				 ehsize, len);
	elf_read_ehdr(f, &h);
	if (h.machine != (f->is64 ? EM_X86_64 : EM_386))
		return boot_fail(err, errlen, -ENOEXEC,
				 f->is64 ? "kernel: ELF machine %u is not x86-64" : "kernel: 32-bit ELF machine %u is not i386",
				 h.machine);
	if (h.type != ET_EXEC)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: ELF type %u is not an executable (ET_EXEC)", h.type);
	f->entry = h.entry;
	f->phoff = h.phoff;
	f->phnum = h.phnum;
	f->phentsize = h.phentsize;
	if (f->phentsize != phsize)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: bad ELF program header size %u (want %zu)",
				 f->phentsize, phsize);
	/* PN_XNUM would move the real count into section 0; kernels never need it. */
	if (f->phnum == 0 || f->phnum >= PN_XNUM)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: ELF has %u program headers", f->phnum);
	if (f->phoff > len || (uint64_t)f->phnum * f->phentsize > len - f->phoff)
		return boot_fail(err, errlen, -ENOEXEC,
				 "kernel: truncated ELF (program headers past end of file: %u x %u at 0x%llx, file %zu bytes)",
				 f->phnum, f->phentsize, (unsigned long long)f->phoff, len);
	return 0;
}

/* Program header @i, already bounds-checked by elf_parse_header(). */
static void elf_get_seg(const struct elf_file *f, unsigned i, struct elf_seg *s)
{
	const uint8_t *p = f->data + f->phoff + (uint64_t)i * f->phentsize;

	if (f->is64) {
		Elf64_Phdr ph;

		memcpy(&ph, p, sizeof(ph));
		*s = (struct elf_seg){ ph.p_type, ph.p_offset, ph.p_vaddr, ph.p_paddr, ph.p_filesz, ph.p_memsz };
	} else {
		Elf32_Phdr ph;

		memcpy(&ph, p, sizeof(ph));
		*s = (struct elf_seg){ ph.p_type, ph.p_offset, ph.p_vaddr, ph.p_paddr, ph.p_filesz, ph.p_memsz };
	}
}

static int elf_check_seg_file(const struct elf_file *f, unsigned i, const struct elf_seg *s,
			      char *err, size_t errlen)
{
	if (s->offset > f->len || s->filesz > f->len - s->offset)
		return boot_fail(err, errlen, -ENOEXEC,
				 "kernel: truncated ELF (segment %u data 0x%llx+0x%llx past end of file, %zu bytes)",
				 i, (unsigned long long)s->offset, (unsigned long long)s->filesz, f->len);
	return 0;
}

/* Check that a PT_LOAD segment lands in RAM above the VMM's boot data. */
static int elf_check_load(const struct guest_mem *mem, unsigned i, const struct elf_seg *s,
			  char *err, size_t errlen)
{
	uint64_t end = s->paddr + s->memsz;
	char size[32];

	if (s->filesz > s->memsz)
		return boot_fail(err, errlen, -ENOEXEC,
				 "kernel: segment %u has p_filesz 0x%llx > p_memsz 0x%llx", i,
				 (unsigned long long)s->filesz, (unsigned long long)s->memsz);
	if (end < s->paddr) /* wrapped */
		return boot_fail(err, errlen, -ENOEXEC,
				 "kernel: segment %u at 0x%llx with size 0x%llx wraps the address space", i,
				 (unsigned long long)s->paddr, (unsigned long long)s->memsz);
	/* Everything below 1 MiB belongs to the VMM (GDT, boot info, page
	 * tables, cmdline, ACPI) and to the guest's AP trampoline. */
	if (s->paddr < LAYOUT_KERNEL_START)
		return boot_fail(err, errlen, -ENOEXEC,
				 "kernel: segment 0x%llx - 0x%llx overlaps the VMM boot data below 1 MiB",
				 (unsigned long long)s->paddr, (unsigned long long)end);
	if (!boot_range_in_ram(mem, s->paddr, s->memsz)) {
		boot_format_size(mem->size, size, sizeof(size));
		return boot_fail(err, errlen, -ENOEXEC,
				 "kernel: segment 0x%llx - 0x%llx is outside guest RAM (%s)",
				 (unsigned long long)s->paddr, (unsigned long long)end, size);
	}
	return 0;
}

/* Validate every program header and compute the loaded extent. Nothing is
 * written to guest RAM until the whole file has passed. */
static int elf_check_all(const struct guest_mem *mem, const struct elf_file *f, uint64_t *start,
			 uint64_t *end, char *err, size_t errlen)
{
	bool any = false;
	struct elf_seg s;
	int ret;

	*start = UINT64_MAX;
	*end = 0;
	for (unsigned i = 0; i < f->phnum; i++) {
		elf_get_seg(f, i, &s);
		if (s.type != PT_LOAD && s.type != PT_NOTE)
			continue;
		ret = elf_check_seg_file(f, i, &s, err, errlen);
		if (ret)
			return ret;
		if (s.type != PT_LOAD || s.memsz == 0)
			continue;
		ret = elf_check_load(mem, i, &s, err, errlen);
		if (ret)
			return ret;
		any = true;
		if (s.paddr < *start)
			*start = s.paddr;
		if (s.paddr + s.memsz > *end)
			*end = s.paddr + s.memsz;
	}
	if (!any)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: ELF has no loadable segments");
	return 0;
}

static int elf_load_segments(struct guest_mem *mem, const struct elf_file *f, char *err, size_t errlen)
{
	struct elf_seg s;

	for (unsigned i = 0; i < f->phnum; i++) {
		elf_get_seg(f, i, &s);
		if (s.type != PT_LOAD || s.memsz == 0)
			continue;
		/* memsz beyond filesz is .bss: zero it, RAM may hold an older image. */
		if (mem_write(mem, s.paddr, f->data + s.offset, s.filesz) ||
		    mem_zero(mem, s.paddr + s.filesz, s.memsz - s.filesz))
			return boot_fail(err, errlen, -EFAULT, "kernel: cannot write segment %u", i);
	}
	return 0;
}

/* Look for the Xen PHYS32_ENTRY note in the PT_NOTE segments. Returns 1 and
 * the entry when found, 0 when absent, -errno on a malformed note. */
static int elf_find_pvh_entry(const struct elf_file *f, uint64_t *entry, char *err, size_t errlen)
{
	struct elf_seg s;

	for (unsigned i = 0; i < f->phnum; i++) {
		uint64_t off, end;

		elf_get_seg(f, i, &s);
		if (s.type != PT_NOTE)
			continue;
		off = s.offset;
		end = s.offset + s.filesz; /* checked against the file by elf_check_all */
		/* gABI: 4-byte words namesz, descsz, type; name and desc each padded to 4. */
		while (end - off >= 12) {
			uint32_t namesz, descsz, type;
			uint64_t name_off, desc_off, next;

			memcpy(&namesz, f->data + off, 4);
			memcpy(&descsz, f->data + off + 4, 4);
			memcpy(&type, f->data + off + 8, 4);
			name_off = off + 12;
			desc_off = name_off + (((uint64_t)namesz + 3) & ~3ULL);
			next = desc_off + (((uint64_t)descsz + 3) & ~3ULL);
			if (desc_off > end || descsz > end - desc_off)
				return boot_fail(err, errlen, -ENOEXEC,
						 "kernel: truncated ELF note in segment %u at offset 0x%llx", i,
						 (unsigned long long)off);
			if (namesz == 4 && memcmp(f->data + name_off, "Xen", 4) == 0 &&
			    type == XEN_ELFNOTE_PHYS32_ENTRY) {
				uint64_t v = 0;

				if (descsz != 4 && descsz != 8)
					return boot_fail(err, errlen, -ENOEXEC,
							 "kernel: PVH entry note has %u-byte descriptor (want 4 or 8)", descsz);
				memcpy(&v, f->data + desc_off, descsz);
				*entry = v;
				return 1;
			}
			if (next >= end)
				break;
			off = next;
		}
	}
	return 0;
}

/* ---- PVH ---- */

static int pvh_write_start_info(struct guest_mem *mem, const struct boot_input *in,
				const struct boot_entry *e, char *err, size_t errlen)
{
	struct hvm_memmap_table_entry mm[BOOT_PVH_MEMMAP_MAX];
	struct hvm_start_info si = {
		.magic = XEN_HVM_START_MAGIC_VALUE,
		.version = 1,
		.cmdline_paddr = LAYOUT_CMDLINE,
		.rsdp_paddr = in->rsdp_gpa,
		.memmap_paddr = LAYOUT_PVH_MEMMAP,
	};
	struct hvm_modlist_entry mod = { .paddr = e->initrd_gpa, .size = e->initrd_size };
	struct boot_memmap map;

	boot_build_memmap(mem, &map);
	memset(mm, 0, sizeof(mm));
	for (unsigned i = 0; i < map.nr; i++) {
		mm[i].addr = map.e[i].addr;
		mm[i].size = map.e[i].size;
		mm[i].type = map.e[i].type;
	}
	si.memmap_entries = map.nr;
	if (e->initrd_size) {
		si.nr_modules = 1;
		si.modlist_paddr = BOOT_PVH_MODLIST;
	}
	if (mem_write(mem, LAYOUT_BOOT_INFO, &si, sizeof(si)) ||
	    mem_write(mem, LAYOUT_PVH_MEMMAP, mm, sizeof(mm[0]) * map.nr) ||
	    mem_write(mem, BOOT_PVH_MODLIST, &mod, sizeof(mod)))
		return boot_fail(err, errlen, -EFAULT, "boot: cannot write hvm_start_info");
	return 0;
}

/* ---- Linux boot_params ---- */

static void bp_fill_e820(const struct guest_mem *mem, struct boot_params *bp)
{
	struct boot_memmap map;

	boot_build_memmap(mem, &map);
	for (unsigned i = 0; i < map.nr; i++) {
		bp->e820_table[i].addr = map.e[i].addr;
		bp->e820_table[i].size = map.e[i].size;
		bp->e820_table[i].type = map.e[i].type;
	}
	bp->e820_entries = (uint8_t)map.nr;
}

/* Fields every Linux 64-bit entry needs, whether the header came from a
 * bzImage or was made up for a vmlinux ELF (boot.rst "64-bit boot protocol"). */
static void bp_fill_common(const struct guest_mem *mem, const struct boot_input *in,
			   const struct boot_entry *e, struct boot_params *bp)
{
	bp->hdr.type_of_loader = BZ_LOADER_UNDEFINED;
	bp->hdr.cmd_line_ptr = (uint32_t)LAYOUT_CMDLINE;
	bp->ext_cmd_line_ptr = 0;
	bp->hdr.ramdisk_image = (uint32_t)e->initrd_gpa;
	bp->hdr.ramdisk_size = (uint32_t)e->initrd_size;
	bp->ext_ramdisk_image = (uint32_t)(e->initrd_gpa >> 32);
	bp->ext_ramdisk_size = (uint32_t)(e->initrd_size >> 32);
	bp->hdr.setup_data = 0;
	bp->hdr.hardware_subarch = X86_SUBARCH_PC;
	bp->acpi_rsdp_addr = in->rsdp_gpa;
	bp_fill_e820(mem, bp);
}

static int bp_write(struct guest_mem *mem, const struct boot_params *bp, char *err, size_t errlen)
{
	if (mem_write(mem, LAYOUT_BOOT_INFO, bp, sizeof(*bp)))
		return boot_fail(err, errlen, -EFAULT, "boot: cannot write boot_params");
	return 0;
}

/* Physical entry for a vmlinux: e_entry is normally already physical
 * (phys_startup_64); accept a virtual one inside a segment too. */
static int elf_entry_to_phys(const struct elf_file *f, uint64_t *phys, char *err, size_t errlen)
{
	struct elf_seg s;

	for (unsigned i = 0; i < f->phnum; i++) {
		elf_get_seg(f, i, &s);
		if (s.type == PT_LOAD && f->entry >= s.paddr && f->entry - s.paddr < s.memsz) {
			*phys = f->entry;
			return 0;
		}
	}
	for (unsigned i = 0; i < f->phnum; i++) {
		elf_get_seg(f, i, &s);
		if (s.type == PT_LOAD && f->entry >= s.vaddr && f->entry - s.vaddr < s.memsz) {
			*phys = f->entry - s.vaddr + s.paddr;
			return 0;
		}
	}
	return boot_fail(err, errlen, -ENOEXEC, "kernel: entry point 0x%llx is not inside any loaded segment",
			 (unsigned long long)f->entry);
}

static int boot_load_elf(struct guest_mem *mem, const struct boot_input *in, struct boot_entry *out,
			 char *err, size_t errlen)
{
	struct elf_file f;
	uint64_t start, end, pvh_entry = 0;
	int ret, has_pvh;

	ret = elf_parse_header(&f, in->kernel, in->kernel_len, err, errlen);
	if (ret)
		return ret;
	ret = elf_check_all(mem, &f, &start, &end, err, errlen);
	if (ret)
		return ret;
	has_pvh = elf_find_pvh_entry(&f, &pvh_entry, err, errlen);
	if (has_pvh < 0)
		return has_pvh;
	out->kernel_start = start;
	out->kernel_end = end;
	out->boot_info_gpa = LAYOUT_BOOT_INFO;
	if (has_pvh) {
		/* PVH starts in 32-bit mode: the entry must be below 4 GiB and loaded. */
		if (pvh_entry < start || pvh_entry >= end)
			return boot_fail(err, errlen, -ENOEXEC,
					 "kernel: PVH entry 0x%llx is outside the loaded image 0x%llx - 0x%llx",
					 (unsigned long long)pvh_entry, (unsigned long long)start,
					 (unsigned long long)end);
		if (pvh_entry > UINT32_MAX)
			return boot_fail(err, errlen, -ENOEXEC,
					 "kernel: PVH entry 0x%llx is above 4 GiB (32-bit entry)",
					 (unsigned long long)pvh_entry);
		out->mode = BOOT_MODE_PVH;
		out->entry = pvh_entry;
	} else {
		if (!f.is64)
			return boot_fail(err, errlen, -ENOEXEC,
					 "kernel: 32-bit ELF without a PVH note (Xen PHYS32_ENTRY) cannot be booted");
		ret = elf_entry_to_phys(&f, &out->entry, err, errlen);
		if (ret)
			return ret;
		out->mode = BOOT_MODE_LINUX64;
	}

	ret = boot_write_cmdline(mem, in->cmdline, LAYOUT_CMDLINE_MAX - 1, err, errlen);
	if (ret)
		return ret;
	ret = boot_load_initrd(mem, in, end, boot_low_ram_end(mem), out, err, errlen);
	if (ret)
		return ret;
	ret = elf_load_segments(mem, &f, err, errlen);
	if (ret)
		return ret;
	if (out->mode == BOOT_MODE_PVH)
		return pvh_write_start_info(mem, in, out, err, errlen);

	{
		struct boot_params bp;

		/* No setup header in a vmlinux: give the kernel the minimum a
		 * bzImage would have carried (boot.rst; Firecracker does the same). */
		memset(&bp, 0, sizeof(bp));
		bp.hdr.boot_flag = BZ_BOOT_FLAG;
		bp.hdr.header = BZ_HDRS_MAGIC;
		bp.hdr.version = 0x020f;
		bp.hdr.loadflags = LOADED_HIGH;
		bp.hdr.kernel_alignment = 0x1000000;
		bp.hdr.cmdline_size = (uint32_t)(LAYOUT_CMDLINE_MAX - 1);
		bp.hdr.initrd_addr_max = 0xffffffffu;
		bp_fill_common(mem, in, out, &bp);
		return bp_write(mem, &bp, err, errlen);
	}
}

/* ---- bzImage ---- */

static int bz_check_header(const struct setup_header *h, size_t hdr_len, char *err, size_t errlen)
{
	if (h->boot_flag != BZ_BOOT_FLAG)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: bzImage boot_flag is 0x%04x, not 0xaa55", h->boot_flag);
	if (h->version < BZ_MIN_VERSION)
		return boot_fail(err, errlen, -ENOEXEC,
				 "kernel: bzImage boot protocol %u.%02u is too old (need 2.12 or newer)",
				 h->version >> 8, h->version & 0xff);
	/* A 2.12+ header reaches xloadflags unless the jump byte at 0x201 lies. */
	if (hdr_len < offsetof(struct setup_header, xloadflags) + 2)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: bzImage setup header too short (%zu bytes)", hdr_len);
	if (!(h->loadflags & LOADED_HIGH))
		return boot_fail(err, errlen, -ENOEXEC, "kernel: zImage (loads low) is not supported, need a bzImage");
	if (!(h->xloadflags & XLF_KERNEL_64))
		return boot_fail(err, errlen, -ENOEXEC, "kernel: bzImage has no 64-bit entry point (XLF_KERNEL_64 not set)");
	return 0;
}

/* Where the protected-mode kernel goes: its preferred address when it is
 * relocatable and that address works here, else the classic 1 MiB. */
static uint64_t bz_choose_load_addr(const struct guest_mem *mem, const struct setup_header *h,
				    uint64_t need)
{
	uint64_t pref = h->pref_address;
	uint64_t align = h->kernel_alignment;

	if (h->relocatable_kernel && pref >= LAYOUT_KERNEL_START && pref < LAYOUT_MMIO_GAP_START &&
	    (align == 0 || (align & (align - 1)) || pref % align == 0) &&
	    boot_range_in_ram(mem, pref, need))
		return pref;
	return LAYOUT_KERNEL_START;
}

static int boot_load_bzimage(struct guest_mem *mem, const struct boot_input *in,
			     struct boot_entry *out, char *err, size_t errlen)
{
	const uint8_t *k = in->kernel;
	struct setup_header h;
	struct boot_params bp;
	size_t hdr_len, setup_len, pm_len;
	uint64_t load, run, need, initrd_top, initrd_max;
	unsigned setup_sects;
	char size[32];
	int ret;

	/* boot.rst: the header ends at 0x202 + the byte at 0x201 (jump offset). */
	if (in->kernel_len < 0x202 + 4 + 2)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: truncated bzImage (%zu bytes, no setup header)", in->kernel_len);
	hdr_len = 0x202 + k[0x201] - BZ_HDR_OFFSET;
	if (hdr_len > sizeof(h))
		hdr_len = sizeof(h);
	if (BZ_HDR_OFFSET + hdr_len > in->kernel_len)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: truncated bzImage (setup header past end of file)");
	memset(&h, 0, sizeof(h));
	memcpy(&h, k + BZ_HDR_OFFSET, hdr_len);
	ret = bz_check_header(&h, hdr_len, err, errlen);
	if (ret)
		return ret;

	setup_sects = h.setup_sects ? h.setup_sects : 4;
	setup_len = (size_t)(setup_sects + 1) * 512;
	if (setup_len >= in->kernel_len)
		return boot_fail(err, errlen, -ENOEXEC,
				 "kernel: truncated bzImage (setup is %zu bytes, file %zu, no protected-mode part)",
				 setup_len, in->kernel_len);
	pm_len = in->kernel_len - setup_len;
	/* init_size: memory from the load address the kernel needs before it
	 * has read the memory map (decompression buffer included). */
	need = h.init_size > pm_len ? h.init_size : pm_len;
	load = bz_choose_load_addr(mem, &h, need);
	/* The decompressor runs the kernel at max(load aligned up to
	 * kernel_alignment, LOAD_PHYSICAL_ADDR = pref_address) and needs
	 * init_size bytes there (arch/x86/boot/compressed/head_64.S). */
	run = load;
	if (h.pref_address > run && h.pref_address < LAYOUT_MMIO_GAP_START)
		run = h.pref_address;
	if (!boot_range_in_ram(mem, load, pm_len) || !boot_range_in_ram(mem, run, need)) {
		boot_format_size(mem->size, size, sizeof(size));
		return boot_fail(err, errlen, -ENOMEM,
				 "kernel: bzImage needs RAM at 0x%llx - 0x%llx (init_size) but guest RAM is %s (memory too small)",
				 (unsigned long long)run, (unsigned long long)(run + need), size);
	}
	out->mode = BOOT_MODE_LINUX64;
	out->entry = load + BZ_STARTUP_64;
	out->boot_info_gpa = LAYOUT_BOOT_INFO;
	out->kernel_start = load;
	out->kernel_end = run + need; /* the initrd must stay clear of all of it */

	ret = boot_write_cmdline(mem, in->cmdline, h.cmdline_size ? h.cmdline_size : 255, err, errlen);
	if (ret)
		return ret;
	initrd_max = h.initrd_addr_max ? h.initrd_addr_max : BZ_DEFAULT_INITRD_MAX;
	initrd_top = boot_low_ram_end(mem);
	if (initrd_max + 1 < initrd_top)
		initrd_top = initrd_max + 1;
	ret = boot_load_initrd(mem, in, out->kernel_end, initrd_top, out, err, errlen);
	if (ret)
		return ret;
	if (mem_write(mem, load, k + setup_len, pm_len))
		return boot_fail(err, errlen, -EFAULT, "kernel: cannot write the protected-mode kernel");

	/* boot.rst: copy the setup header into a zeroed boot_params, then
	 * fill in the loader's fields. */
	memset(&bp, 0, sizeof(bp));
	memcpy(&bp.hdr, &h, hdr_len);
	bp.hdr.code32_start = (uint32_t)load;
	if (!bp.hdr.cmdline_size)
		bp.hdr.cmdline_size = 255;
	bp_fill_common(mem, in, out, &bp);
	return bp_write(mem, &bp, err, errlen);
}

/* ---- entry points ---- */

int boot_load(struct guest_mem *mem, const struct boot_input *in, struct boot_entry *out,
	      char *err, size_t errlen)
{
	char size[32];

	if (err && errlen)
		err[0] = '\0';
	memset(out, 0, sizeof(*out));
	if (!in->kernel || in->kernel_len == 0)
		return boot_fail(err, errlen, -ENOEXEC, "kernel: empty file");
	if (in->initrd_len && !in->initrd)
		return boot_fail(err, errlen, -EINVAL, "initrd: no data");
	/* The boot data below 1 MiB and a kernel above it must both fit. */
	if (!boot_range_in_ram(mem, 0, LAYOUT_KERNEL_START + MEM_PAGE_SIZE)) {
		boot_format_size(mem->size, size, sizeof(size));
		return boot_fail(err, errlen, -ENOMEM,
				 "memory: guest RAM (%s) is too small to boot (need more than 1 MiB)", size);
	}
	if (in->kernel_len >= SELFMAG && memcmp(in->kernel, ELFMAG, SELFMAG) == 0)
		return boot_load_elf(mem, in, out, err, errlen);
	if (in->kernel_len >= 0x206 && memcmp(in->kernel + 0x202, "HdrS", 4) == 0)
		return boot_load_bzimage(mem, in, out, err, errlen);
	return boot_fail(err, errlen, -ENOEXEC, "kernel: not an ELF or bzImage (bad magic)");
}

/* Flat 4 GiB descriptors (Intel SDM Vol. 3 §3.4.5). */
#define GDT_CODE64  0x00af9b000000ffffULL  /* G, L, P, DPL0, S, execute/read, accessed */
#define GDT_CODE32  0x00cf9b000000ffffULL  /* G, D/B, P, DPL0, S, execute/read, accessed */
#define GDT_DATA    0x00cf93000000ffffULL  /* G, D/B, P, DPL0, S, read/write, accessed */
#define GDT_TSS     0x00008b0000000067ULL  /* P, busy 32/64-bit TSS, base 0, limit 0x67 */

static struct kvm_segment boot_seg_from_gdt(uint16_t sel, uint64_t d)
{
	struct kvm_segment s = {
		.base = (uint32_t)(((d >> 16) & 0xffffff) | ((d >> 56) << 24)),
		.limit = (uint32_t)((d & 0xffff) | (((d >> 48) & 0xf) << 16)),
		.selector = sel,
		.type = (d >> 40) & 0xf,
		.s = (d >> 44) & 1,
		.dpl = (d >> 45) & 3,
		.present = (d >> 47) & 1,
		.avl = (d >> 52) & 1,
		.l = (d >> 53) & 1,
		.db = (d >> 54) & 1,
		.g = (d >> 55) & 1,
	};

	if (s.g)
		s.limit = (s.limit << 12) | 0xfff;
	return s;
}

static int boot_write_page_tables(struct guest_mem *mem)
{
	uint64_t pml4[512] = { 0 }, pdpt[512] = { 0 }, pd[512];

	pml4[0] = BOOT_PT_PDPT | 0x3; /* present, writable */
	for (unsigned i = 0; i < BOOT_PT_NR_PD; i++) {
		pdpt[i] = (BOOT_PT_PD + i * 0x1000ULL) | 0x3;
		for (unsigned j = 0; j < 512; j++)
			pd[j] = (((uint64_t)i << 30) | ((uint64_t)j << 21)) | 0x83; /* P, RW, PS (2 MiB) */
		if (mem_write(mem, BOOT_PT_PD + i * 0x1000ULL, pd, sizeof(pd)))
			return -EFAULT;
	}
	if (mem_write(mem, BOOT_PT_PML4, pml4, sizeof(pml4)) || mem_write(mem, BOOT_PT_PDPT, pdpt, sizeof(pdpt)))
		return -EFAULT;
	return 0;
}

int boot_setup_bsp(struct guest_mem *mem, const struct boot_entry *e, struct kvm_regs *regs,
		   struct kvm_sregs *sregs)
{
	const bool lm = e->mode == BOOT_MODE_LINUX64;
	uint64_t gdt[BOOT_GDT_ENTRIES] = {
		[BOOT_GDT_CS / 8] = lm ? GDT_CODE64 : GDT_CODE32,
		[BOOT_GDT_DS / 8] = GDT_DATA,
		[BOOT_GDT_TSS / 8] = GDT_TSS,
	};
	struct kvm_segment data = boot_seg_from_gdt(BOOT_GDT_DS, GDT_DATA);

	if (e->mode != BOOT_MODE_PVH && e->mode != BOOT_MODE_LINUX64) {
		log_err("boot", "unknown boot mode %d", (int)e->mode);
		return -EINVAL;
	}
	if (mem_write(mem, LAYOUT_GDT, gdt, sizeof(gdt))) {
		log_err("boot", "GDT at 0x%llx is not in guest RAM", (unsigned long long)LAYOUT_GDT);
		return -EFAULT;
	}
	sregs->gdt.base = LAYOUT_GDT;
	sregs->gdt.limit = sizeof(gdt) - 1;
	/* No IDT until the guest installs one; an interrupt now is a triple fault either way. */
	sregs->idt.base = 0;
	sregs->idt.limit = 0;
	sregs->cs = boot_seg_from_gdt(BOOT_GDT_CS, gdt[BOOT_GDT_CS / 8]);
	sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
	sregs->tr = boot_seg_from_gdt(BOOT_GDT_TSS, GDT_TSS);

	/* Clear CD/NW (KVM's reset value sets them) so caches behave normally. */
	sregs->cr0 &= ~((1ULL << 30) | (1ULL << 29) | (1ULL << 31));
	sregs->cr0 |= 1ULL /* PE */ | (1ULL << 4) /* ET */;
	if (lm) {
		int ret = boot_write_page_tables(mem);

		if (ret) {
			log_err("boot", "page tables at 0x%llx are not in guest RAM",
				(unsigned long long)LAYOUT_PAGE_TABLES);
			return ret;
		}
		sregs->cr3 = BOOT_PT_PML4;
		sregs->cr4 = 1ULL << 5; /* PAE */
		sregs->cr0 |= 1ULL << 31; /* PG */
		sregs->efer = (1ULL << 8) | (1ULL << 10); /* LME | LMA */
	} else {
		/* PVH: 32-bit protected mode, paging off (Xen docs/misc/pvh.pandoc). */
		sregs->cr3 = 0;
		sregs->cr4 = 0;
		sregs->efer = 0;
	}

	memset(regs, 0, sizeof(*regs));
	regs->rflags = 0x2; /* reserved bit 1; interrupts off */
	regs->rip = e->entry;
	if (lm)
		regs->rsi = e->boot_info_gpa;
	else
		regs->rbx = e->boot_info_gpa;
	return 0;
}
