/* Guest memory: the checked gpa -> hva translation and VMM dirty tracking. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "vmm/layout.h"
#include "vmm/mem.h"

Test(mem, small_guest_has_one_region)
{
	struct guest_mem mem;

	cr_assert_eq(mem_init(&mem, 16 << 20), 0);
	cr_assert_eq(mem.nr_regions, 1);
	cr_assert_eq(mem.regions[0].gpa, 0);
	cr_assert_eq(mem.regions[0].size, 16 << 20);
	cr_assert_geq(mem.fd, 0);
	mem_destroy(&mem);
}

Test(mem, translation_is_bounds_checked)
{
	struct guest_mem mem;
	uint64_t size = 16 << 20;

	cr_assert_eq(mem_init(&mem, size), 0);
	cr_assert_eq(mem_gpa_to_hva(&mem, 0, 1), mem.base);
	cr_assert_eq(mem_gpa_to_hva(&mem, size - 8, 8), mem.base + size - 8);
	cr_assert_null(mem_gpa_to_hva(&mem, size - 8, 9), "range crossing the end of RAM");
	cr_assert_null(mem_gpa_to_hva(&mem, size, 1), "first byte past RAM");
	cr_assert_null(mem_gpa_to_hva(&mem, 0, size + 1));
	cr_assert_null(mem_gpa_to_hva(&mem, UINT64_MAX, 2), "wrapping range");
	cr_assert_null(mem_gpa_to_hva(&mem, 4096, UINT64_MAX), "huge length");
	cr_assert_null(mem_gpa_to_hva(&mem, LAYOUT_LAPIC, 4), "MMIO is not RAM");
	cr_assert_eq(mem_gpa_to_offset(&mem, 4096), 4096);
	cr_assert_eq(mem_gpa_to_offset(&mem, size), -1);
	mem_destroy(&mem);
}

Test(mem, large_guest_splits_around_the_mmio_gap)
{
	struct guest_mem mem;
	uint64_t size = 4ULL << 30;   /* 4 GiB: 3 GiB low + 1 GiB high; sparse memfd */
	uint64_t high = size - LAYOUT_MMIO_GAP_START;
	uint8_t *p;

	cr_assert_eq(mem_init(&mem, size), 0);
	cr_assert_eq(mem.nr_regions, 2);
	cr_assert_eq(mem.regions[0].size, LAYOUT_MMIO_GAP_START);
	cr_assert_eq(mem.regions[1].gpa, LAYOUT_HIGH_RAM_START);
	cr_assert_eq(mem.regions[1].size, high);
	cr_assert_null(mem_gpa_to_hva(&mem, LAYOUT_MMIO_GAP_START - 4, 8), "range into the gap");
	cr_assert_null(mem_gpa_to_hva(&mem, LAYOUT_MMIO_GAP_START, 1));
	p = mem_gpa_to_hva(&mem, LAYOUT_HIGH_RAM_START, 4096);
	cr_assert_eq(p, mem.base + LAYOUT_MMIO_GAP_START);
	cr_assert_null(mem_gpa_to_hva(&mem, LAYOUT_HIGH_RAM_START + high - 4, 8));
	cr_assert_eq(mem_gpa_to_offset(&mem, LAYOUT_HIGH_RAM_START + 8), (int64_t)LAYOUT_MMIO_GAP_START + 8);
	mem_destroy(&mem);
}

Test(mem, vmm_writes_mark_pages_dirty)
{
	struct guest_mem mem;
	uint8_t buf[8192] = { 1 };

	cr_assert_eq(mem_init(&mem, 1 << 20), 0);
	cr_assert_eq(mem_take_dirty_word(&mem, 0), 0);
	cr_assert_eq(mem_write(&mem, 4096 - 1, buf, 2), 0);          /* pages 0 and 1 */
	cr_assert_eq(mem_write(&mem, 5 * 4096, buf, sizeof(buf)), 0); /* pages 5 and 6 */
	cr_assert_eq(mem_take_dirty_word(&mem, 0), 0x63);
	cr_assert_eq(mem_take_dirty_word(&mem, 0), 0, "taking the word clears it");
	cr_assert_eq(mem_write(&mem, (1 << 20) - 4, buf, 8), -EFAULT);
	cr_assert_eq(mem_take_dirty_word(&mem, 3), 0, "failed write marks nothing");
	cr_assert_eq(mem_take_dirty_word(&mem, 1000), 0, "out-of-range word");
	mem_destroy(&mem);
}

/* mem_zero: partial pages are written, whole pages punched out of the memfd
 * (they stop being resident), the whole range is marked dirty. */
static void check_zero(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	uint8_t *p = mem->base;

	memset(p, 0x5a, 16 * 4096);
	cr_assert_eq(mem_zero(mem, gpa, len), 0);
	for (uint64_t i = 0; i < 16 * 4096; i++)
		cr_assert_eq(p[i], i >= gpa && i < gpa + len ? 0 : 0x5a, "byte 0x%llx after zeroing 0x%llx+0x%llx",
			     (unsigned long long)i, (unsigned long long)gpa, (unsigned long long)len);
}

Test(mem, zero_punches_whole_pages_and_marks_dirty)
{
	struct guest_mem mem;
	unsigned char vec[16];
	uint64_t dirty;

	cr_assert_eq(mem_init(&mem, 1 << 20), 0);
	check_zero(&mem, 100, 10);                 /* inside one page */
	check_zero(&mem, 4096, 4096);              /* exactly one page */
	check_zero(&mem, 4000, 3 * 4096 + 200);    /* head, three whole pages, tail */
	check_zero(&mem, 0, 16 * 4096);
	mem_take_dirty_word(&mem, 0);
	memset(mem.base, 0x5a, 16 * 4096);
	cr_assert_eq(mem_zero(&mem, 4000, 3 * 4096 + 200), 0);
	cr_assert_eq(mincore(mem.base, 16 * 4096, vec), 0);
	cr_assert(vec[0] & 1, "page with the head stays");
	cr_assert_eq(vec[1] & 1, 0, "whole page punched");
	cr_assert_eq(vec[3] & 1, 0, "whole page punched");
	cr_assert(vec[4] & 1, "page with the tail stays");
	dirty = mem_take_dirty_word(&mem, 0);
	cr_assert_eq(dirty, 0x1f, "pages 0-4 dirty: 0x%llx", (unsigned long long)dirty);
	cr_assert_eq(mem_zero(&mem, (1 << 20) - 4, 8), -EFAULT);
	cr_assert_eq(mem_zero(&mem, 0, 0), 0);
	mem_destroy(&mem);
}

Test(mem, zero_without_fd_writes_zeroes)
{
	struct guest_mem mem;
	uint8_t *base = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(base, MAP_FAILED);
	cr_assert_eq(mem_init_from_mapping(&mem, -1, base, 1 << 20), 0);
	check_zero(&mem, 4000, 3 * 4096 + 200);
	free((void *)mem.vmm_dirty);
	munmap(base, 1 << 20);
}

Test(mem, rejects_bad_sizes)
{
	struct guest_mem mem;

	cr_assert_eq(mem_init(&mem, 0), -EINVAL);
	cr_assert_eq(mem_init(&mem, 4097), -EINVAL);
}
