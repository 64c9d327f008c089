/* The destination's side of the page stream: one PAGES frame (stream.h) at a
 * time into guest RAM, on the connection that owns its pages.
 *
 * Two ways for the data to reach RAM:
 *
 * - PAGE_RX_WRITE (any RAM file that takes write(): a memfd, a tmpfs file).
 *   The frame's data is received into a buffer of its own, its checksum
 *   verified there, and written to the RAM file with pwrite(). Nothing in
 *   this process touches guest RAM through its mapping: the kernel copies
 *   into the file's pages, allocating fresh ones without clearing them first
 *   (the write fills them) and without a page fault; a full file system is
 *   an ENOSPC from pwrite, never a SIGBUS; and a frame whose checksum fails
 *   never reaches RAM. Measured without a VM (make bench-migrate-stream, on
 *   a host that is itself a VM): 1973-2890 MiB/s into a fresh memfd against
 *   195-232 received in place; 2378-3110 into prefaulted RAM against 613-653.
 * - PAGE_RX_IN_PLACE (no fd, or hugetlbfs, which has no write()). The data is
 *   received straight into guest RAM; runs new to the file are fallocate()d
 *   first so that a full file system fails with ENOSPC instead of SIGBUS,
 *   and a populate helper (populate.h) may fault them in from the far end.
 *
 * Zero pages become holes (punched, so they take no memory) or are cleared. */
#ifndef MIGRATION_PAGE_RX_H
#define MIGRATION_PAGE_RX_H

#include <stdint.h>
#include <sys/uio.h>

#include "migration/populate.h"
#include "migration/stream.h"

enum page_rx_mode {
	PAGE_RX_WRITE,
	PAGE_RX_IN_PLACE,
};

/* Guest RAM as the receivers see it; shared by all connections. */
struct page_ram {
	uint8_t *base;
	uint64_t size;
	int fd;                       /* the RAM file, or -1 */
	enum page_rx_mode mode;
	unsigned nr_lanes;            /* a page belongs to connection page / 64 % nr_lanes */
	/* In place: pages known to have memory in the RAM file (a frame's
	 * fallocate, or the whole prefault), so data sent again for them needs
	 * no fallocate (a fifth of the time of receiving a page held already).
	 * A page's bit is only touched by the connection that owns it. NULL:
	 * not tracked. */
	uint64_t *reserved;
};

/* One connection's receiver. */
struct page_rx {
	unsigned index;               /* the connection */
	uint64_t pages, zero_pages;
	struct populate_helper *populate; /* in place: posted each frame's new runs (may be unstarted) */
	uint8_t *buf;                 /* write mode: one frame's data */
	uint64_t entries[MIG_PAGES_PER_FRAME];
	struct iovec iov[MIG_PAGES_PER_FRAME];   /* the frame's data runs, at their place in RAM */
	struct iovec fresh[MIG_PAGES_PER_FRAME]; /* in place: of those, the runs new to RAM */
};

/* How RAM backed by @fd (-1: anonymous) takes pages. */
enum page_rx_mode page_rx_mode_for(int fd);

/* -ENOMEM if the write mode's buffer cannot be had. */
int page_rx_init(struct page_rx *rx, unsigned index, enum page_rx_mode mode);
void page_rx_destroy(struct page_rx *rx);

/* Receive the PAGES frame whose header mig_recv_begin() read into @f. On
 * failure, -errno with the reason in s->err (an entry outside RAM or on
 * the wrong connection, lengths that do not add up, a checksum mismatch,
 * the RAM file full, ...). */
int page_rx_frame(struct page_rx *rx, struct mig_stream *s, struct mig_rx *f, const struct page_ram *ram);

#endif
