/* One connection of an outgoing migration and its page batcher.
 *
 * Pages are copied into a frame buffer (a snapshot of the page at copy time:
 * the checksum must match what is sent, and the guest keeps writing), the
 * frame is checksummed and handed to io_uring; the next frame is filled while
 * the previous one is on the wire. At most one send is in flight per lane, so
 * frames never interleave on the socket. A page always travels on the same
 * lane (lane = page / 64 % lanes), so a newer copy can never overtake an older one. */
#ifndef MIGRATION_MIGRATE_LANE_H
#define MIGRATION_MIGRATE_LANE_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "migration/stream.h"

#define LANE_NR_BUFS 2

struct mig_lane {
	struct mig_stream s;
	struct io_uring ring;
	bool ring_ok;
	uint8_t *buf[LANE_NR_BUFS];
	unsigned cur;                /* buffer being filled */
	size_t fill;                 /* bytes used in buf[cur], header included */
	unsigned count;              /* pages in buf[cur] */
	bool inflight;               /* buf[cur ^ 1] is being sent */
	size_t inflight_len, inflight_done;
	uint64_t pages, zero_pages;
};

int lane_init(struct mig_lane *l, int fd);
void lane_destroy(struct mig_lane *l);
/* Queue one page: @data (4096 bytes) or NULL for a zero page. */
int lane_add_page(struct mig_lane *l, uint64_t offset, const void *data);
/* Copy the page at @src into the batch; if the copy is all zeroes, either
 * drop it (@skip_zero: the destination's RAM is still zero there) or send a
 * zero entry. Returns 0 or -errno. */
int lane_copy_page(struct mig_lane *l, uint64_t offset, const uint8_t *src, bool skip_zero);
/* Send what is batched and wait until everything is on the wire. */
int lane_flush(struct mig_lane *l);

#endif
