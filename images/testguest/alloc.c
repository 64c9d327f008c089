/* Page-aligned bump allocator above the image, and lazy mappings above 4 GiB. */
#include "guest.h"

extern u8 __image_end[];
extern u64 pdpt[512];

#define PDE_2M (0x1 | 0x2 | 0x80)     /* present, writable, 2 MiB page */
#define GIB (1ULL << 30)

static u64 heap_next;
static u64 heap_limit;
static struct spinlock heap_lock;

/* The heap lives in the RAM range that holds the image (from the memory map;
 * without one, assume 16 MiB, the least any test gives a guest). */
static void heap_init(void)
{
	u32 n;
	const struct hvm_memmap_entry *e = memmap(&n);
	u64 start = ALIGN_UP((u64)(uintptr_t)__image_end, PAGE_SIZE);

	heap_next = start;
	heap_limit = 16ULL << 20;
	for (u32 i = 0; i < n; i++)
		if (e[i].type == E820_RAM && e[i].addr <= start && e[i].addr + e[i].size > start)
			heap_limit = (e[i].addr + e[i].size) & ~(PAGE_SIZE - 1);
}

void *page_alloc_nozero(u64 pages);
void *page_alloc_nozero(u64 pages)
{
	void *p = NULL;

	spin_lock(&heap_lock);
	if (!heap_next)
		heap_init();
	if (pages && pages <= (heap_limit - heap_next) / PAGE_SIZE) {
		p = (void *)heap_next;
		heap_next += pages * PAGE_SIZE;
	}
	spin_unlock(&heap_lock);
	return p;
}

void *page_alloc(u64 pages)
{
	void *p = page_alloc_nozero(pages);

	if (p)
		memset(p, 0, pages * PAGE_SIZE);
	return p;
}

u64 heap_top(void)
{
	spin_lock(&heap_lock);
	if (!heap_next)
		heap_init();
	u64 top = heap_next;
	spin_unlock(&heap_lock);
	return top;
}

int map_high_ram(u64 end)
{
	u64 last_gib = (end + GIB - 1) / GIB;

	if (last_gib > 512)
		return -1;
	for (u64 g = 4; g < last_gib; g++) {
		if (pdpt[g])
			continue;
		u64 *pd = page_alloc_nozero(1);
		if (!pd)
			return -1;
		for (u64 i = 0; i < 512; i++)
			pd[i] = (g * GIB + i * (2ULL << 20)) | PDE_2M;
		__atomic_store_n(&pdpt[g], (u64)(uintptr_t)pd | 0x3, __ATOMIC_RELEASE);
	}
	/* Not-present entries are never cached (SDM vol. 3 §4.10.2.3), so no flush. */
	return 0;
}
