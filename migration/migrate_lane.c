/* Page batching and io_uring sending for one migration connection. */
#include "migration/migrate_lane.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/log.h"

#define LANE_DATA_SIZE ((size_t)MIG_PAGES_PER_FRAME * MIG_PAGE_SIZE)
#define LANE_ENTRIES (MIG_HDR_SIZE + 8)

static void slot_reset(struct lane_slot *sl)
{
	sl->count = sl->nr_data = 0;
}

int lane_init(struct mig_lane *l, int fd)
{
	memset(l, 0, sizeof(*l));
	mig_stream_init(&l->s, fd);
	for (unsigned i = 0; i < LANE_NR_SLOTS; i++) {
		l->slot[i].data = malloc(LANE_DATA_SIZE);
		if (!l->slot[i].data) {
			lane_destroy(l);
			return -ENOMEM;
		}
		slot_reset(&l->slot[i]);
	}
	/* io_uring is an optimization: without it (old kernel, seccomp) sendmsg() does. */
	l->ring_ok = io_uring_queue_init(4, &l->ring, 0) == 0;
	if (!l->ring_ok)
		log_debug("migrate", "io_uring unavailable, sending synchronously");
	return 0;
}

void lane_destroy(struct mig_lane *l)
{
	if (l->ring_ok)
		io_uring_queue_exit(&l->ring);
	l->ring_ok = false;
	for (unsigned i = 0; i < LANE_NR_SLOTS; i++) {
		free(l->slot[i].data);
		l->slot[i].data = NULL;
	}
	mig_stream_close(&l->s);
}

void lane_set_stable(struct mig_lane *l)
{
	l->stable = true;
}

static int lane_submit(struct mig_lane *l, struct lane_slot *sl)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_sendmsg(sqe, l->s.fd, &sl->msg, MSG_NOSIGNAL | MSG_WAITALL);
	int r = io_uring_submit(&l->ring);
	return r < 0 ? r : 0;
}

/* Skip @n sent bytes of @sl's iov (after a short send). */
static void slot_advance(struct lane_slot *sl, size_t n)
{
	while (sl->msg.msg_iovlen && n >= sl->msg.msg_iov->iov_len) {
		n -= sl->msg.msg_iov->iov_len;
		sl->msg.msg_iov++;
		sl->msg.msg_iovlen--;
	}
	if (sl->msg.msg_iovlen) {
		sl->msg.msg_iov->iov_base = (uint8_t *)sl->msg.msg_iov->iov_base + n;
		sl->msg.msg_iov->iov_len -= n;
	}
}

/* Wait for the in-flight slot to be fully sent (resubmitting after short sends). */
static int lane_wait(struct mig_lane *l)
{
	struct lane_slot *sl = &l->slot[l->cur ^ 1];

	while (l->inflight) {
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe(&l->ring, &cqe);

		if (r == -EINTR)
			continue;
		if (r < 0)
			return r;
		r = cqe->res;
		io_uring_cqe_seen(&l->ring, cqe);
		if (r <= 0) {
			r = r ? r : -EPIPE;
			snprintf(l->s.err, sizeof(l->s.err), "send failed: %s", strerror_safe(-r));
			l->inflight = false;
			return r;
		}
		sl->done += (size_t)r;
		l->s.bytes_sent += (uint64_t)r;
		if (sl->done == sl->len) {
			l->inflight = false;
			break;
		}
		slot_advance(sl, (size_t)r);
		r = lane_submit(l, sl);
		if (r < 0) {
			l->inflight = false;
			return r;
		}
	}
	return 0;
}

/* Close the current batch as a PAGES frame and put it on the wire. */
static int lane_ship(struct mig_lane *l)
{
	struct lane_slot *sl = &l->slot[l->cur];
	unsigned nr_iov = sl->nr_data ? 2 : 1;
	int r;

	if (!sl->count)
		return 0;
	mig_put_u32(sl->meta + MIG_HDR_SIZE, sl->count);
	mig_put_u32(sl->meta + MIG_HDR_SIZE + 4, 0);
	/* The payload is iov[0] past the header, then the copied pages. */
	sl->iov[0] = (struct iovec){ sl->meta + MIG_HDR_SIZE, 8 + 8 * (size_t)sl->count };
	sl->iov[1] = (struct iovec){ sl->data, (size_t)sl->nr_data * MIG_PAGE_SIZE };
	mig_frame_header_iov(sl->meta, MIG_PAGES, sl->iov, nr_iov);
	sl->iov[0] = (struct iovec){ sl->meta, LANE_ENTRIES + 8 * (size_t)sl->count };
	sl->len = sl->iov[0].iov_len + sl->iov[1].iov_len;
	sl->done = 0;
	sl->msg = (struct msghdr){ .msg_iov = sl->iov, .msg_iovlen = nr_iov };
	if (!l->ring_ok) {
		r = mig_send_iov(&l->s, sl->iov, nr_iov);
		slot_reset(sl);
		return r;
	}
	r = lane_wait(l); /* one send in flight at a time: frames never interleave */
	if (r)
		return r;
	r = lane_submit(l, sl);
	if (r)
		return r;
	l->inflight = true;
	l->cur ^= 1;
	slot_reset(&l->slot[l->cur]);
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (unsigned i = 0; i < MIG_PAGE_SIZE / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

/* Copy the page's data into the slot, after the pages before it; returns the copy. */
static const uint8_t *slot_add_data(struct lane_slot *sl, const uint8_t *src)
{
	uint8_t *dst = sl->data + (size_t)sl->nr_data++ * MIG_PAGE_SIZE;

	memcpy(dst, src, MIG_PAGE_SIZE);
	return dst;
}

int lane_copy_page(struct mig_lane *l, uint64_t offset, const uint8_t *src, bool skip_zero)
{
	struct lane_slot *sl = &l->slot[l->cur];
	bool zero;

	if (l->stable) {
		/* Guest RAM cannot change: judge the page itself, copy only data. */
		zero = page_is_zero(src);
		if (!zero)
			slot_add_data(sl, src);
	} else {
		/* Judge the copy, not the live page: the guest may be writing it. */
		zero = page_is_zero(slot_add_data(sl, src));
		if (zero)
			sl->nr_data--;
	}
	if (zero) {
		l->zero_pages++;
		if (skip_zero)
			return 0;
	} else {
		l->pages++;
	}
	mig_put_u64(sl->meta + LANE_ENTRIES + 8 * (size_t)sl->count, offset | (zero ? MIG_PAGE_ZERO : 0));
	if (++sl->count == MIG_PAGES_PER_FRAME) {
		int r = lane_ship(l);

		if (r)
			return r;
	}
	return !zero;
}

int lane_flush(struct mig_lane *l)
{
	int r = lane_ship(l);

	if (r)
		return r;
	return l->ring_ok ? lane_wait(l) : 0;
}
