/* One connection of an outgoing migration and its page batcher.
 *
 * A PAGES frame is built in a slot: the header and the entries in a small
 * buffer, the page data copied into the slot's data buffer: a snapshot of
 * the page at copy time, so the checksum matches what is sent while the
 * guest keeps writing. Once the VM is paused for good (lane_set_stable) a
 * page is judged zero or not in guest RAM itself, and only data is copied.
 * Why not send from guest RAM in place once it is stable (one copy less):
 * it was tried (until 2026-12-05) and was no faster even where reads cost
 * nothing extra, and half as fast where they do: on a host that is itself a
 * VM with shadow paging, the first read of each guest page traps, once from
 * user mode (the zero check) and once more from the kernel's copy in
 * send(); the copy leaves the kernel a buffer it has read before
 * (make bench-migrate-stream, "cold source" cases, docs/migration.md).
 * The frame is checksummed and handed to io_uring as one sendmsg;
 * the next frame fills the other slot while it is on the wire. At most one
 * send is in flight per lane, so frames never interleave on the socket. A
 * page always travels on the same lane (lane = page / 64 % lanes), so a
 * newer copy can never overtake an older one. */
#ifndef MIGRATION_MIGRATE_LANE_H
#define MIGRATION_MIGRATE_LANE_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "migration/stream.h"

#define LANE_NR_SLOTS 2
#define LANE_META_SIZE (MIG_HDR_SIZE + 8 + MIG_PAGES_PER_FRAME * 8)

struct lane_slot {
	uint8_t meta[LANE_META_SIZE];   /* header, count, reserved, entries */
	uint8_t *data;                  /* the frame's page data, copied */
	struct iovec iov[2];            /* when shipped: meta, then the data (if any) */
	unsigned count, nr_data;        /* entries; pages with data */
	struct msghdr msg;              /* the in-flight send (iov advanced on short sends) */
	size_t len, done;
};

struct mig_lane {
	struct mig_stream s;
	struct io_uring ring;
	bool ring_ok;
	bool stable;                 /* guest RAM cannot change: judge pages in place */
	struct lane_slot slot[LANE_NR_SLOTS];
	unsigned cur;                /* slot being filled */
	bool inflight;               /* slot[cur ^ 1] is being sent */
	uint64_t pages, zero_pages;
};

int lane_init(struct mig_lane *l, int fd);
void lane_destroy(struct mig_lane *l);
/* From now on pages are judged zero or not in guest RAM itself (no copy of
 * zero pages): only once the VM is paused and its devices quiesced until
 * the migration ends. */
void lane_set_stable(struct mig_lane *l);
/* Queue the page at @src (RAM offset @offset). If it is all zeroes, either
 * drop it (@skip_zero: the destination's RAM is still zero there) or send a
 * zero entry. Returns 1 if the page's data was queued, 0 if it was zero
 * (sent as such or dropped), or -errno. */
int lane_copy_page(struct mig_lane *l, uint64_t offset, const uint8_t *src, bool skip_zero);
/* Send what is batched and wait until everything is on the wire. */
int lane_flush(struct mig_lane *l);

#endif
