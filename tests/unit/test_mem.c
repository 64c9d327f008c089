/* Guest memory: the checked gpa -> hva translation and VMM dirty tracking. */
#include <criterion/criterion.h>
#include <errno.h>

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

Test(mem, rejects_bad_sizes)
{
	struct guest_mem mem;

	cr_assert_eq(mem_init(&mem, 0), -EINVAL);
	cr_assert_eq(mem_init(&mem, 4097), -EINVAL);
}
