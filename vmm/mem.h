/* Guest RAM: one memfd, mapped MAP_SHARED once, split into at most two
 * guest-physical regions around the MMIO gap (see layout.h).
 *
 * Every guest-physical access by the VMM goes through mem_gpa_to_hva(), which
 * fails unless [gpa, gpa+len) lies entirely inside one RAM region. Every write
 * the VMM makes into guest RAM is recorded with mem_mark_dirty(): KVM's dirty
 * log only sees writes made by the guest. */
#ifndef VMM_MEM_H
#define VMM_MEM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEM_PAGE_SIZE 4096ULL
#define MEM_MAX_REGIONS 2

struct mem_region {
	uint64_t gpa;        /* guest-physical start */
	uint64_t size;       /* bytes */
	uint64_t offset;     /* offset into the memfd / host mapping */
	uint8_t *hva;        /* host address of gpa */
};

struct guest_mem {
	int fd;                       /* memfd; -1 when memory is not fd-backed */
	uint8_t *base;                /* host mapping of the whole memfd */
	uint64_t size;                /* total RAM bytes */
	unsigned nr_regions;
	struct mem_region regions[MEM_MAX_REGIONS];
	/* One bit per 4 KiB page of RAM (indexed by offset in the memfd),
	 * set when the VMM itself writes guest memory. */
	_Atomic uint64_t *vmm_dirty;
	uint64_t nr_pages;
};

/* Create memfd-backed RAM of @size bytes (multiple of 4 KiB, > 0). */
int mem_init(struct guest_mem *mem, uint64_t size);
/* Build the region table for an existing mapping (used by mem_init, restore and tests);
 * advises the mapping as guest RAM (no core dumps, huge pages where allowed). */
int mem_init_from_mapping(struct guest_mem *mem, int fd, uint8_t *base, uint64_t size);
void mem_destroy(struct guest_mem *mem);

/* Checked translation: NULL unless [gpa, gpa+len) is inside one RAM region. len may be 0. */
void *mem_gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* The RAM region holding all of [gpa, gpa+len), or NULL: for callers that
 * cache a translation for a whole range (the virtio core's DMA cache). */
const struct mem_region *mem_region_of(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* Offset of @gpa in the memfd, or -1 if @gpa is not RAM. */
int64_t mem_gpa_to_offset(const struct guest_mem *mem, uint64_t gpa);
bool mem_is_ram(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Copy helpers: return 0 or -EFAULT. Writes mark pages dirty. */
int mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len);
int mem_write(struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len);
int mem_fill(struct guest_mem *mem, uint64_t gpa, int byte, uint64_t len);
/* Make [gpa, gpa+len) read as zero. Whole pages of memfd-backed RAM are
 * punched out (FALLOC_FL_PUNCH_HOLE) rather than written: on fresh RAM they
 * are holes already, and writing zeroes would allocate each page for nothing. */
int mem_zero(struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Record a VMM write to [gpa, gpa+len); ignores ranges outside RAM. */
void mem_mark_dirty(struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* Atomically fetch-and-clear 64 pages' worth of the VMM dirty bitmap. */
uint64_t mem_take_dirty_word(struct guest_mem *mem, uint64_t word);

#endif
