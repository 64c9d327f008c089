#include "vmm/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/layout.h"
#include "vmm/log.h"

int mem_init_from_mapping(struct guest_mem *mem, int fd, uint8_t *base, uint64_t size)
{
	uint64_t low = size < LAYOUT_MMIO_GAP_START ? size : LAYOUT_MMIO_GAP_START;

	/* Guest RAM is no use in a core dump and would make dumps huge. */
	madvise(base, size, MADV_DONTDUMP);
	/* Transparent huge pages where the host allows them for this kind of
	 * memory (a memfd needs /sys/kernel/mm/transparent_hugepage/shmem_enabled
	 * at "advise" or "within_size"; elsewhere this is a no-op). Measured on a
	 * nested (PVM) host: a fresh 4 KiB memfd page costs ~10 us to fault in
	 * and its first access from this process another ~3.7 us; with huge
	 * pages 0.3 and 0.03 us (docs/migration.md, "Destination RAM"). */
	madvise(base, size, MADV_HUGEPAGE);
	memset(mem, 0, sizeof(*mem));
	mem->fd = fd;
	mem->base = base;
	mem->size = size;
	mem->regions[0] = (struct mem_region){ .gpa = 0, .size = low, .offset = 0, .hva = base };
	mem->nr_regions = 1;
	if (size > low) {
		mem->regions[1] = (struct mem_region){
			.gpa = LAYOUT_HIGH_RAM_START, .size = size - low, .offset = low, .hva = base + low,
		};
		mem->nr_regions = 2;
	}
	mem->nr_pages = size / MEM_PAGE_SIZE;
	mem->vmm_dirty = calloc((mem->nr_pages + 63) / 64, sizeof(uint64_t));
	if (!mem->vmm_dirty)
		return -ENOMEM;
	return 0;
}

int mem_init(struct guest_mem *mem, uint64_t size)
{
	uint8_t *base;
	int fd, ret;

	if (size == 0 || size % MEM_PAGE_SIZE) {
		log_err("memory", "size %llu is not a positive multiple of 4 KiB", (unsigned long long)size);
		return -EINVAL;
	}
	fd = memfd_create("vmm-guest-ram", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		ret = -errno;
		goto err_close;
	}
	base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (base == MAP_FAILED) {
		ret = -errno;
		goto err_close;
	}
	ret = mem_init_from_mapping(mem, fd, base, size);
	if (ret)
		goto err_unmap;
	return 0;

err_unmap:
	munmap(base, size);
err_close:
	close(fd);
	log_err("memory", "cannot allocate %llu MiB of guest RAM: %s",
		(unsigned long long)(size >> 20), strerror_safe(-ret));
	return ret;
}

void mem_destroy(struct guest_mem *mem)
{
	if (mem->base)
		munmap(mem->base, mem->size);
	if (mem->fd >= 0)
		close(mem->fd);
	free((void *)mem->vmm_dirty);
	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
}

static const struct mem_region *mem_find(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->regions[i];

		/* Written to avoid overflow: gpa - r->gpa is only computed once gpa >= r->gpa. */
		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa)) {
			if (len == 0 && gpa - r->gpa == r->size)
				continue; /* an empty range at the very end belongs to no region */
			return r;
		}
	}
	return NULL;
}

void *mem_gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const struct mem_region *r = mem_find(mem, gpa, len);

	return r ? r->hva + (gpa - r->gpa) : NULL;
}

const struct mem_region *mem_region_of(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	return mem_find(mem, gpa, len);
}

int64_t mem_gpa_to_offset(const struct guest_mem *mem, uint64_t gpa)
{
	const struct mem_region *r = mem_find(mem, gpa, 1);

	return r ? (int64_t)(r->offset + (gpa - r->gpa)) : -1;
}

bool mem_is_ram(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	return mem_find(mem, gpa, len) != NULL;
}

int mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len)
{
	const void *src = mem_gpa_to_hva(mem, gpa, len);

	if (!src)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

int mem_write(struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	void *dst = mem_gpa_to_hva(mem, gpa, len);

	if (!dst)
		return -EFAULT;
	memcpy(dst, src, len);
	mem_mark_dirty(mem, gpa, len);
	return 0;
}

int mem_fill(struct guest_mem *mem, uint64_t gpa, int byte, uint64_t len)
{
	void *dst = mem_gpa_to_hva(mem, gpa, len);

	if (!dst)
		return -EFAULT;
	memset(dst, byte, len);
	mem_mark_dirty(mem, gpa, len);
	return 0;
}

int mem_zero(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const struct mem_region *r = mem_find(mem, gpa, len);
	uint64_t off, first, last;
	uint8_t *hva;

	if (!r)
		return -EFAULT;
	if (len == 0)
		return 0;
	hva = r->hva + (gpa - r->gpa);
	off = r->offset + (gpa - r->gpa);
	first = (off + MEM_PAGE_SIZE - 1) & ~(MEM_PAGE_SIZE - 1);  /* whole pages: [first, last) */
	last = (off + len) & ~(MEM_PAGE_SIZE - 1);
	if (mem->fd < 0 || first >= last ||
	    fallocate(mem->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)first, (off_t)(last - first)) < 0) {
		memset(hva, 0, len);
	} else {
		memset(hva, 0, first - off);
		memset(hva + (last - off), 0, off + len - last);
	}
	mem_mark_dirty(mem, gpa, len);
	return 0;
}

void mem_mark_dirty(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const struct mem_region *r;
	uint64_t first, last;

	if (len == 0 || !mem->vmm_dirty)
		return;
	r = mem_find(mem, gpa, len);
	if (!r)
		return;
	first = (r->offset + (gpa - r->gpa)) / MEM_PAGE_SIZE;
	last = (r->offset + (gpa - r->gpa) + len - 1) / MEM_PAGE_SIZE;
	for (uint64_t p = first; p <= last; p++)
		atomic_fetch_or_explicit(&mem->vmm_dirty[p / 64], 1ULL << (p % 64), memory_order_relaxed);
}

uint64_t mem_take_dirty_word(struct guest_mem *mem, uint64_t word)
{
	if (word >= (mem->nr_pages + 63) / 64)
		return 0;
	/* A locked exchange per word of a mostly clean bitmap costs ~30 us per
	 * GiB; a bit set after this load is simply taken by the next call. */
	if (!atomic_load_explicit(&mem->vmm_dirty[word], memory_order_relaxed))
		return 0;
	return atomic_exchange_explicit(&mem->vmm_dirty[word], 0, memory_order_acq_rel);
}
