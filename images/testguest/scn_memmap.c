/* memmap: the PVH memory map matches --memory (parameter memory=MIB):
 * RAM below the 3 GiB MMIO gap, the rest from 4 GiB, nothing in the gap,
 * no overlaps, the image inside RAM, and the last page of each RAM range
 * above 1 MiB readable and writable. */
#include "guest.h"

extern u8 __image_start[], __image_end[];

#define MIB (1ULL << 20)

static const char *type_name(u32 t)
{
	switch (t) {
	case 1: return "ram";
	case 2: return "reserved";
	case 3: return "acpi";
	case 4: return "nvs";
	default: return "other";
	}
}

static void check_entries(const struct hvm_memmap_entry *e, u32 n)
{
	for (u32 i = 0; i < n; i++) {
		u64 a = e[i].addr, end = e[i].addr + e[i].size;
		if (!e[i].size)
			continue;   /* QEMU's PVH map may end with an empty entry */
		guest_printf("memmap: [0x%lx-0x%lx) %s\n", (unsigned long)a, (unsigned long)end,
			     type_name(e[i].type));
		if (end < a)
			fail("entry %u has a bad size", i);
		if (e[i].type != E820_RAM)
			continue;
		if (a < GUEST_HIGH_RAM_START && end > GUEST_MMIO_GAP_START)
			fail("RAM entry %u overlaps the MMIO gap", i);
		for (u32 j = 0; j < i; j++) {
			if (e[j].type != E820_RAM)
				continue;
			if (a < e[j].addr + e[j].size && e[j].addr < end)
				fail("RAM entries %u and %u overlap", j, i);
		}
	}
}

static bool image_in_ram(const struct hvm_memmap_entry *e, u32 n)
{
	u64 s = (u64)(uintptr_t)__image_start, t = (u64)(uintptr_t)__image_end;

	for (u32 i = 0; i < n; i++)
		if (e[i].type == E820_RAM && e[i].addr <= s && e[i].addr + e[i].size >= t)
			return true;
	return false;
}

static void touch_last_pages(const struct hvm_memmap_entry *e, u32 n)
{
	for (u32 i = 0; i < n; i++) {
		if (e[i].type != E820_RAM || e[i].addr < MIB)
			continue;
		volatile u64 *w = (volatile u64 *)(e[i].addr + e[i].size - 8);
		u64 old = *w, probe = 0x5a5a000000000000ULL ^ (u64)(uintptr_t)w;
		*w = probe;
		if (*w != probe)
			fail("RAM at 0x%lx does not keep a write", (unsigned long)(uintptr_t)w);
		*w = old;
	}
}

static void memmap_check(void)
{
	u32 n;
	const struct hvm_memmap_entry *e = memmap(&n);

	if (!e || !n)
		fail("no memory map in hvm_start_info (version %u)",
		     start_info() ? start_info()->version : 0);
	check_entries(e, n);
	if (!image_in_ram(e, n))
		fail("the image is not inside a RAM entry");

	u64 total = 0, top = ram_top();
	for (u32 i = 0; i < n; i++)
		if (e[i].type == E820_RAM)
			total += e[i].size;

	u64 mib = param_u64("memory", 0);
	if (mib) {
		u64 bytes = mib * MIB;
		u64 expect_top = bytes <= GUEST_MMIO_GAP_START
					 ? bytes
					 : GUEST_HIGH_RAM_START + (bytes - GUEST_MMIO_GAP_START);
		if (top != expect_top)
			fail("RAM ends at 0x%lx, expected 0x%lx for memory=%lu", (unsigned long)top,
			     (unsigned long)expect_top, (unsigned long)mib);
		/* Everything is RAM except what sits below 1 MiB (EBDA, BIOS area). */
		if (total > bytes || total < bytes - MIB)
			fail("%lu bytes of RAM listed, expected %lu (less at most 1 MiB)",
			     (unsigned long)total, (unsigned long)bytes);
	}
	if (top > GUEST_HIGH_RAM_START && map_high_ram(top) != 0)
		fail("cannot map RAM up to 0x%lx", (unsigned long)top);
	touch_last_pages(e, n);
	guest_printf("memmap: %u entries, %lu MiB RAM, top 0x%lx\n", n,
		     (unsigned long)(total / MIB), (unsigned long)top);
}
SCENARIO("memmap", memmap_check);
