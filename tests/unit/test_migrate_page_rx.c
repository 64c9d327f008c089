/* The destination's page receiver (page_rx.c), without a VM: frames from the
 * source's own lane code land byte for byte in both modes, zero pages become
 * holes, and hostile frames are refused with RAM left as it was (in write
 * mode even a frame whose checksum fails never reaches RAM). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migration/migrate_lane.h"
#include "migration/page_rx.h"
#include "migration/stream.h"

#define RAM_SIZE (4u << 20)
#define PG MIG_PAGE_SIZE

struct ram {
	int fd;
	uint8_t *base;
	struct page_ram view;
	uint64_t *reserved;
};

static void ram_open(struct ram *r, int fd, enum page_rx_mode mode, unsigned lanes)
{
	r->fd = fd;
	cr_assert_eq(ftruncate(fd, RAM_SIZE), 0);
	r->base = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(r->base, MAP_FAILED);
	r->reserved = mode == PAGE_RX_IN_PLACE ? calloc(RAM_SIZE / PG / 64 + 1, 8) : NULL;
	r->view = (struct page_ram){ .base = r->base, .size = RAM_SIZE, .fd = fd, .mode = mode, .nr_lanes = lanes,
				     .reserved = r->reserved };
}

static void ram_new(struct ram *r, enum page_rx_mode mode, unsigned lanes)
{
	int fd = memfd_create("page-rx-test", 0);

	cr_assert_geq(fd, 0);
	ram_open(r, fd, mode, lanes);
}

static void ram_close(struct ram *r)
{
	munmap(r->base, RAM_SIZE);
	close(r->fd);
	free(r->reserved);
}

static bool ram_is_zero(const struct ram *r)
{
	for (size_t i = 0; i < RAM_SIZE; i++)
		if (r->base[i])
			return false;
	return true;
}

/* Source RAM: a pattern, with every 5th page zero. */
static uint8_t *source_pages(void)
{
	uint8_t *src = malloc(RAM_SIZE);

	cr_assert_not_null(src);
	for (size_t off = 0; off < RAM_SIZE; off += 8)
		*(uint64_t *)(src + off) = off / PG % 5 ? off * 0x9e3779b97f4a7c15ull | 1 : 0;
	return src;
}

struct sender {
	int fd;
	const uint8_t *src;
	bool stable;                 /* as for a paused VM (lane_set_stable) */
	int ret;
};

/* Every page of @src over one lane, zero pages as zero entries. */
static void *send_all(void *arg)
{
	struct sender *snd = arg;
	struct mig_lane l;
	int r = lane_init(&l, snd->fd);

	if (!r && snd->stable)
		lane_set_stable(&l);
	for (size_t off = 0; !r && off < RAM_SIZE; off += PG)
		r = lane_copy_page(&l, off, snd->src + off, false) < 0;
	snd->ret = r ? -EIO : lane_flush(&l);
	l.s.fd = -1;
	lane_destroy(&l);
	return NULL;
}

static int receive_frame(struct mig_stream *s, struct page_rx *rx, const struct ram *r)
{
	struct mig_rx f;
	int ret = mig_recv_begin(s, &f, MIG_TYPE_BIT(MIG_PAGES));

	return ret ? ret : page_rx_frame(rx, s, &f, &r->view);
}

static void lands_every_page(enum page_rx_mode mode, bool stable)
{
	uint8_t *src = source_pages();
	struct ram r;
	struct page_rx rx;
	struct mig_stream s;
	int sv[2];
	pthread_t t;

	ram_new(&r, mode, 1);
	cr_assert_eq(page_rx_init(&rx, 0, mode), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct sender snd = { .fd = sv[0], .src = src, .stable = stable };
	cr_assert_eq(pthread_create(&t, NULL, send_all, &snd), 0);
	mig_stream_init(&s, sv[1]);
	while (rx.pages + rx.zero_pages < RAM_SIZE / PG)
		cr_assert_eq(receive_frame(&s, &rx, &r), 0, "%s", s.err);
	pthread_join(t, NULL);
	cr_assert_eq(snd.ret, 0);
	cr_assert_eq(rx.zero_pages, (RAM_SIZE / PG + 4) / 5);
	/* A zero page takes no memory (looked at before reading RAM through
	 * the mapping: a read fault on a hole in a memfd allocates a page). */
	cr_assert_eq(lseek(r.fd, 0, SEEK_HOLE), 0, "zero page 0 is not a hole");
	cr_assert_eq(memcmp(r.base, src, RAM_SIZE), 0, "RAM differs from the source");
	close(sv[0]);
	mig_stream_close(&s);
	page_rx_destroy(&rx);
	ram_close(&r);
	free(src);
}

Test(page_rx, write_mode_lands_every_page)
{
	lands_every_page(PAGE_RX_WRITE, false);
}

/* The final pass of a paused VM: zero pages judged in RAM, data copied. */
Test(page_rx, write_mode_lands_every_page_of_a_paused_source)
{
	lands_every_page(PAGE_RX_WRITE, true);
}

Test(page_rx, in_place_mode_lands_every_page)
{
	lands_every_page(PAGE_RX_IN_PLACE, false);
}

Test(page_rx, a_memfd_is_written_and_no_fd_is_received_in_place)
{
	int fd = memfd_create("page-rx-mode", 0);

	cr_assert_eq(page_rx_mode_for(fd), PAGE_RX_WRITE);
	cr_assert_eq(page_rx_mode_for(-1), PAGE_RX_IN_PLACE);
	close(fd);
}

/* A hand-made PAGES frame: @n entries, data (@fill) for those without the
 * zero flag; @crc_delta spoils the checksum, @len_delta the length field. */
static void send_frame(int fd, const uint64_t *entries, unsigned n, uint8_t fill, uint32_t crc_delta, int len_delta)
{
	size_t data = 0;
	uint8_t hdr[MIG_HDR_SIZE], head[8], ent[8 * 16];
	static uint8_t pages[16 * PG];

	cr_assert_leq(n, 16);
	for (unsigned i = 0; i < n; i++) {
		mig_put_u64(ent + 8 * i, entries[i]);
		data += entries[i] & MIG_PAGE_ZERO ? 0 : PG;
	}
	memset(pages, fill, data);
	mig_put_u32(head, n);
	mig_put_u32(head + 4, 0);
	struct iovec iov[4] = { { hdr, sizeof(hdr) }, { head, 8 }, { ent, 8 * n }, { pages, data } };
	mig_frame_header_iov(hdr, MIG_PAGES, iov + 1, 3);
	mig_put_u32(hdr + 8, (uint32_t)((int)mig_get_u32(hdr + 8) + len_delta));
	mig_put_u32(hdr + 12, mig_get_u32(hdr + 12) + crc_delta);
	cr_assert_eq(writev(fd, iov, 4), (ssize_t)(sizeof(hdr) + 8 + 8 * n + data));
}

struct refusal {
	enum page_rx_mode mode;
	unsigned lanes, index;
	uint64_t entries[4];
	unsigned n;
	uint32_t crc_delta;
	int len_delta;
	const char *says;
	bool ram_must_stay_zero;
};

static void refused(const struct refusal *c)
{
	struct ram r;
	struct page_rx rx;
	struct mig_stream s;
	int sv[2];

	ram_new(&r, c->mode, c->lanes);
	cr_assert_eq(page_rx_init(&rx, c->index, c->mode), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	send_frame(sv[0], c->entries, c->n, 0xaa, c->crc_delta, c->len_delta);
	shutdown(sv[0], SHUT_WR);
	mig_stream_init(&s, sv[1]);
	int ret = receive_frame(&s, &rx, &r);
	cr_assert_lt(ret, 0, "a bad frame was taken");
	cr_assert(strstr(s.err, c->says), "error '%s' does not say '%s'", s.err, c->says);
	if (c->ram_must_stay_zero)
		cr_assert(ram_is_zero(&r), "a refused frame changed RAM");
	cr_assert_eq(rx.pages, 0);
	close(sv[0]);
	mig_stream_close(&s);
	page_rx_destroy(&rx);
	ram_close(&r);
}

Test(page_rx, a_checksum_mismatch_never_reaches_ram_in_write_mode)
{
	refused(&(struct refusal){ .mode = PAGE_RX_WRITE, .lanes = 1, .entries = { 0, PG, 5 * PG }, .n = 3,
				   .crc_delta = 1, .says = "checksum mismatch", .ram_must_stay_zero = true });
}

Test(page_rx, a_checksum_mismatch_is_refused_in_place)
{
	refused(&(struct refusal){ .mode = PAGE_RX_IN_PLACE, .lanes = 1, .entries = { 0, PG }, .n = 2,
				   .crc_delta = 1, .says = "checksum mismatch" });
}

Test(page_rx, a_page_on_the_wrong_connection_is_refused)
{
	/* Page 64 is in bitmap word 1: connection 1 of 2. */
	refused(&(struct refusal){ .mode = PAGE_RX_WRITE, .lanes = 2, .index = 0, .entries = { 64 * PG }, .n = 1,
				   .says = "page 0x40000 came on connection 0; it belongs on connection 1",
				   .ram_must_stay_zero = true });
}

Test(page_rx, a_page_outside_ram_is_refused)
{
	refused(&(struct refusal){ .mode = PAGE_RX_WRITE, .lanes = 1, .entries = { RAM_SIZE }, .n = 1,
				   .says = "outside RAM", .ram_must_stay_zero = true });
}

Test(page_rx, unknown_entry_flags_are_refused)
{
	refused(&(struct refusal){ .mode = PAGE_RX_WRITE, .lanes = 1, .entries = { PG | 2 }, .n = 1,
				   .says = "unknown flags", .ram_must_stay_zero = true });
}

Test(page_rx, a_length_that_does_not_match_the_entries_is_refused)
{
	/* The header claims a page less than the entries need. */
	refused(&(struct refusal){ .mode = PAGE_RX_WRITE, .lanes = 1, .entries = { 0, PG }, .n = 2,
				   .len_delta = -(int)PG, .says = "for 2 entries with 2 pages of data",
				   .ram_must_stay_zero = true });
}

/* A page sent as data and then as zero ends up a hole reading zero. */
Test(page_rx, a_page_zeroed_later_becomes_a_hole)
{
	struct ram r;
	struct page_rx rx;
	struct mig_stream s;
	int sv[2];

	ram_new(&r, PAGE_RX_WRITE, 1);
	cr_assert_eq(page_rx_init(&rx, 0, PAGE_RX_WRITE), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	mig_stream_init(&s, sv[1]);
	send_frame(sv[0], (uint64_t[]){ 3 * PG, 4 * PG }, 2, 0x5a, 0, 0);
	cr_assert_eq(receive_frame(&s, &rx, &r), 0, "%s", s.err);
	cr_assert_eq(r.base[3 * PG], 0x5a);
	cr_assert_eq(lseek(r.fd, 3 * PG, SEEK_DATA), 3 * PG);
	send_frame(sv[0], (uint64_t[]){ 3 * PG | MIG_PAGE_ZERO }, 1, 0, 0, 0);
	cr_assert_eq(receive_frame(&s, &rx, &r), 0, "%s", s.err);
	cr_assert_eq(lseek(r.fd, 3 * PG, SEEK_HOLE), 3 * PG, "the zeroed page still takes memory");
	cr_assert_eq(r.base[3 * PG], 0);
	cr_assert_eq(r.base[4 * PG], 0x5a);
	cr_assert_eq(rx.pages, 2);
	cr_assert_eq(rx.zero_pages, 1);
	close(sv[0]);
	mig_stream_close(&s);
	page_rx_destroy(&rx);
	ram_close(&r);
}

/* RAM in a full file system: write mode says so (no SIGBUS). */
Test(page_rx, a_full_ram_file_system_is_an_error)
{
	char dir[] = "/tmp/vmm-page-rx-XXXXXX", path[64];
	struct ram r;
	struct page_rx rx;
	struct mig_stream s;
	int sv[2], ret;

	cr_assert_not_null(mkdtemp(dir));
	if (mount("tmpfs", dir, "tmpfs", 0, "size=64k")) {
		rmdir(dir);
		cr_skip_test("cannot mount a tmpfs here (not root?)");
	}
	snprintf(path, sizeof(path), "%s/ram", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	ram_open(&r, fd, page_rx_mode_for(fd), 1);
	cr_assert_eq(r.view.mode, PAGE_RX_WRITE);
	cr_assert_eq(page_rx_init(&rx, 0, PAGE_RX_WRITE), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	mig_stream_init(&s, sv[1]);
	uint64_t e[16];
	for (unsigned i = 0; i < 16; i++)
		e[i] = (uint64_t)i * PG;
	send_frame(sv[0], e, 16, 0x77, 0, 0);   /* 64 KiB: fills the file system */
	ret = receive_frame(&s, &rx, &r);
	if (!ret) {
		for (unsigned i = 0; i < 16; i++)
			e[i] = (uint64_t)(16 + i) * PG;
		send_frame(sv[0], e, 16, 0x77, 0, 0);
		ret = receive_frame(&s, &rx, &r);
	}
	cr_assert_eq(ret, -ENOSPC, "%d: %s", ret, s.err);
	cr_assert(strstr(s.err, "storing guest RAM failed: No space left on device"), "%s", s.err);
	close(sv[0]);
	mig_stream_close(&s);
	page_rx_destroy(&rx);
	ram_close(&r);
	umount2(dir, MNT_DETACH);
	rmdir(dir);
}
