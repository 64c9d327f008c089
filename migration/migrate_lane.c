/* Page batching and io_uring sending for one migration connection. */
#include "migration/migrate_lane.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm/log.h"

#define LANE_BUF_SIZE (MIG_HDR_SIZE + 8 + MIG_PAGES_PER_FRAME * (8 + MIG_PAGE_SIZE))
#define LANE_PAYLOAD_START (MIG_HDR_SIZE + 8)

int lane_init(struct mig_lane *l, int fd)
{
	memset(l, 0, sizeof(*l));
	mig_stream_init(&l->s, fd);
	for (unsigned i = 0; i < LANE_NR_BUFS; i++) {
		l->buf[i] = malloc(LANE_BUF_SIZE);
		if (!l->buf[i]) {
			lane_destroy(l);
			return -ENOMEM;
		}
	}
	/* io_uring is an optimization: without it (old kernel, seccomp) send() does. */
	l->ring_ok = io_uring_queue_init(4, &l->ring, 0) == 0;
	if (!l->ring_ok)
		log_debug("migrate", "io_uring unavailable, sending synchronously");
	l->fill = LANE_PAYLOAD_START;
	return 0;
}

void lane_destroy(struct mig_lane *l)
{
	if (l->ring_ok)
		io_uring_queue_exit(&l->ring);
	l->ring_ok = false;
	for (unsigned i = 0; i < LANE_NR_BUFS; i++) {
		free(l->buf[i]);
		l->buf[i] = NULL;
	}
	mig_stream_close(&l->s);
}

static int lane_submit(struct mig_lane *l, const uint8_t *p, size_t len)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_send(sqe, l->s.fd, p, len, MSG_NOSIGNAL | MSG_WAITALL);
	int r = io_uring_submit(&l->ring);
	return r < 0 ? r : 0;
}

/* Wait for the in-flight buffer to be fully sent (resubmitting after short sends). */
static int lane_wait(struct mig_lane *l)
{
	const uint8_t *base = l->buf[l->cur ^ 1];

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
		l->inflight_done += (size_t)r;
		l->s.bytes_sent += (uint64_t)r;
		if (l->inflight_done == l->inflight_len) {
			l->inflight = false;
			break;
		}
		r = lane_submit(l, base + l->inflight_done, l->inflight_len - l->inflight_done);
		if (r < 0) {
			l->inflight = false;
			return r;
		}
	}
	return 0;
}

static int send_sync(struct mig_lane *l, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t w = send(l->s.fd, p, len, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			int r = -errno;
			snprintf(l->s.err, sizeof(l->s.err), "send failed: %s", strerror_safe(errno));
			return r;
		}
		l->s.bytes_sent += (uint64_t)w;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Close the current batch as a PAGES frame and put it on the wire. */
static int lane_ship(struct mig_lane *l)
{
	uint8_t *b = l->buf[l->cur];
	size_t len = l->fill;
	int r;

	if (!l->count)
		return 0;
	mig_put_u32(b + MIG_HDR_SIZE, l->count);
	mig_put_u32(b + MIG_HDR_SIZE + 4, 0);
	mig_frame_header(b, MIG_PAGES, b + MIG_HDR_SIZE, len - MIG_HDR_SIZE);
	l->count = 0;
	l->fill = LANE_PAYLOAD_START;
	if (!l->ring_ok)
		return send_sync(l, b, len);
	r = lane_wait(l); /* one send in flight at a time: frames never interleave */
	if (r)
		return r;
	r = lane_submit(l, b, len);
	if (r)
		return r;
	l->inflight = true;
	l->inflight_len = len;
	l->inflight_done = 0;
	l->cur ^= 1;
	return 0;
}

int lane_add_page(struct mig_lane *l, uint64_t offset, const void *data)
{
	uint8_t *b = l->buf[l->cur];

	mig_put_u64(b + l->fill, offset | (data ? 0 : MIG_PAGE_ZERO));
	l->fill += 8;
	if (data) {
		memcpy(b + l->fill, data, MIG_PAGE_SIZE);
		l->fill += MIG_PAGE_SIZE;
		l->pages++;
	} else {
		l->zero_pages++;
	}
	if (++l->count == MIG_PAGES_PER_FRAME)
		return lane_ship(l);
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

int lane_copy_page(struct mig_lane *l, uint64_t offset, const uint8_t *src, bool skip_zero)
{
	uint8_t *b = l->buf[l->cur];
	uint8_t *dst = b + l->fill + 8;

	/* Judge the copy, not the live page: the guest may be writing it. */
	memcpy(dst, src, MIG_PAGE_SIZE);
	if (page_is_zero(dst)) {
		if (skip_zero) {
			l->zero_pages++;
			return 0;
		}
		return lane_add_page(l, offset, NULL);
	}
	mig_put_u64(b + l->fill, offset);
	l->fill += 8 + MIG_PAGE_SIZE;
	l->pages++;
	if (++l->count == MIG_PAGES_PER_FRAME)
		return lane_ship(l);
	return 0;
}

int lane_flush(struct mig_lane *l)
{
	int r = lane_ship(l);

	if (r)
		return r;
	return l->ring_ok ? lane_wait(l) : 0;
}
