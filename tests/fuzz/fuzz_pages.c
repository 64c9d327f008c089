/* libFuzzer target for the destination's page receiver: any byte string, as
 * a source would send it, goes through frame header checks (mig_recv_begin)
 * and page_rx_frame() into a small RAM memfd, frame after frame until the
 * bytes run out or one is refused. The first byte picks the mode (written or
 * in place) and the number of connections (the lane check). Nothing may
 * crash, leak, touch memory outside RAM, or count a refused frame's pages.
 * (That a refused frame leaves RAM alone in write mode is a unit test.) */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/page_rx.h"
#include "migration/stream.h"

#define RAM_SIZE (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
	int fd;
	uint8_t *base;
	uint64_t reserved[RAM_SIZE / 4096 / 64 + 1];
} ram = { .fd = -1 };

static void ram_setup(void)
{
	if (ram.fd >= 0)
		return;
	ram.fd = memfd_create("fuzz-pages", MFD_CLOEXEC);
	if (ram.fd < 0 || ftruncate(ram.fd, RAM_SIZE) < 0)
		abort();
	ram.base = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram.fd, 0);
	if (ram.base == MAP_FAILED)
		abort();
}

/* Feed @data from another thread: a frame may be larger than the socket buffer. */
struct feeder {
	int fd;
	const uint8_t *data;
	size_t size;
};

static void *feed(void *arg)
{
	struct feeder *f = arg;

	for (size_t off = 0; off < f->size;) {
		ssize_t w = send(f->fd, f->data + off, f->size - off, MSG_NOSIGNAL);

		if (w <= 0)
			break;   /* the receiver gave up */
		off += (size_t)w;
	}
	shutdown(f->fd, SHUT_WR);
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct page_ram view;
	struct page_rx rx;
	struct mig_stream s;
	struct feeder f;
	pthread_t t;
	int sv[2];

	if (size < 1)
		return 0;
	ram_setup();
	enum page_rx_mode mode = data[0] & 1 ? PAGE_RX_IN_PLACE : PAGE_RX_WRITE;
	unsigned lanes = 1 + (data[0] >> 1) % 3;
	view = (struct page_ram){ .base = ram.base, .size = RAM_SIZE, .fd = ram.fd, .mode = mode,
				  .nr_lanes = lanes, .reserved = mode == PAGE_RX_IN_PLACE ? ram.reserved : NULL };
	if (page_rx_init(&rx, (data[0] >> 3) % lanes, mode))
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	f = (struct feeder){ .fd = sv[0], .data = data + 1, .size = size - 1 };
	if (pthread_create(&t, NULL, feed, &f))
		abort();
	mig_stream_init(&s, sv[1]);
	s.recv_timeout_ms = 2000;   /* the feeder always ends with a shutdown */
	for (;;) {
		struct mig_rx frame;
		uint64_t pages = rx.pages + rx.zero_pages;

		if (mig_recv_begin(&s, &frame, MIG_TYPE_BIT(MIG_PAGES)))
			break;
		if (frame.type != MIG_PAGES)
			break;
		if (page_rx_frame(&rx, &s, &frame, &view)) {
			if (rx.pages + rx.zero_pages != pages)
				abort();   /* a refused frame was counted */
			break;
		}
	}
	shutdown(sv[1], SHUT_RDWR);
	pthread_join(t, NULL);
	close(sv[0]);
	mig_stream_close(&s);   /* closes sv[1], frees what an ERROR frame's payload took */
	page_rx_destroy(&rx);
	return 0;
}
