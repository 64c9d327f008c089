/* The migration stream over a socketpair: golden bytes, round trips, and a
 * hostile receiver (truncation, bit flips, oversize, unknown types, peer errors). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/stream.h"

static void pair(struct mig_stream *a, struct mig_stream *b)
{
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	mig_stream_init(a, sv[0]);
	mig_stream_init(b, sv[1]);
	b->recv_timeout_ms = 2000;
	a->recv_timeout_ms = 2000;
}

static void write_raw(int fd, const void *p, size_t n)
{
	cr_assert_eq(write(fd, p, n), (ssize_t)n);
}

/* Bitwise CRC32C, the definition: the reference for the fast one. */
static uint32_t crc32c_ref(uint32_t crc, const uint8_t *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return ~crc;
}

/* The three-chain path (blocks of 12 KiB) and its joins agree with the
 * definition at every length around the block size, any alignment, and
 * when chained across arbitrary splits. */
Test(migrate_stream, crc32c_fast_paths_match_the_definition)
{
	size_t max = 3 * 3 * 4096 + 64;
	uint8_t *buf = malloc(max + 8);
	uint32_t seed = 12345;

	cr_assert_not_null(buf);
	for (size_t i = 0; i < max + 8; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (uint8_t)(seed >> 16);
	}
	static const size_t lens[] = { 0, 1, 7, 8, 4095, 12287, 12288, 12289, 12288 + 4096, 24575, 24576,
				       24577, 36863, 36864, 36864 + 64 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (size_t off = 0; off < 8; off += 3) {
			uint32_t want = crc32c_ref(0, buf + off, lens[i]);

			cr_assert_eq(mig_crc32c(0, buf + off, lens[i]), want, "len %zu off %zu", lens[i], off);
			for (size_t cut = 0; cut <= lens[i]; cut += lens[i] / 5 + 1)
				cr_assert_eq(mig_crc32c(mig_crc32c(0, buf + off, cut), buf + off + cut, lens[i] - cut),
					     want, "len %zu off %zu cut %zu", lens[i], off, cut);
		}
	}
	free(buf);
}

Test(migrate_stream, crc32c_check_value)
{
	/* The CRC-32C check value from the catalogue (RFC 3720 §B.4 polynomial). */
	cr_assert_eq(mig_crc32c(0, "123456789", 9), 0xe3069283u);
	/* Chaining equals one pass. */
	cr_assert_eq(mig_crc32c(mig_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
}

Test(migrate_stream, golden_error_frame)
{
	static const uint8_t golden[] = { 0x56, 0x4d, 0x4d, 0x46, 0x07, 0x00, 0x00, 0x00, 0x02, 0x00,
					  0x00, 0x00, 0xea, 0x57, 0xab, 0xbf, 'h',  'i' };
	struct mig_stream a, b;
	uint8_t got[sizeof(golden)];

	pair(&a, &b);
	cr_assert_eq(mig_send(&a, MIG_ERROR, "hi", 2), 0);
	cr_assert_eq(read(b.fd, got, sizeof(got)), (ssize_t)sizeof(got));
	cr_assert_arr_eq(got, golden, sizeof(golden));
	/* And the same bytes decode as a peer error carrying the text. */
	struct mig_frame f;
	write_raw(a.fd, golden, sizeof(golden));
	cr_assert_eq(mig_recv(&b, &f, MIG_TYPE_BIT(MIG_ACK)), -ECONNABORTED);
	cr_assert_str_eq(b.err, "peer: hi");
	mig_stream_close(&a);
	mig_stream_close(&b);
}

Test(migrate_stream, round_trip_and_type_gate)
{
	struct mig_stream a, b;
	struct mig_frame f;
	uint8_t payload[1000];

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	pair(&a, &b);
	cr_assert_eq(mig_send(&a, MIG_CONFIG, payload, sizeof(payload)), 0);
	cr_assert_eq(mig_send(&a, MIG_DONE, NULL, 0), 0);
	cr_assert_eq(mig_recv(&b, &f, MIG_TYPE_BIT(MIG_CONFIG)), 0);
	cr_assert_eq(f.type, MIG_CONFIG);
	cr_assert_eq(f.len, sizeof(payload));
	cr_assert_arr_eq(f.data, payload, sizeof(payload));
	/* DONE is not allowed here: refused with a message naming it. */
	cr_assert_eq(mig_recv(&b, &f, MIG_TYPE_BIT(MIG_STATE)), -EPROTO);
	cr_assert(strstr(b.err, "unexpected DONE"), "%s", b.err);
	mig_stream_close(&a);
	mig_stream_close(&b);
}

/* Flip every bit of a small frame in turn: each must be refused, never accepted. */
Test(migrate_stream, every_bit_flip_is_refused)
{
	uint8_t frame[MIG_HDR_SIZE + 24], bad[sizeof(frame)];
	uint8_t payload[24];

	memset(payload, 0x5a, sizeof(payload));
	mig_frame_header(frame, MIG_CONFIG, payload, sizeof(payload));
	memcpy(frame + MIG_HDR_SIZE, payload, sizeof(payload));
	for (size_t bit = 0; bit < sizeof(frame) * 8; bit++) {
		struct mig_stream a, b;
		struct mig_frame f;
		int ret;

		pair(&a, &b);
		b.recv_timeout_ms = 200; /* a flipped length may wait for bytes that never come */
		memcpy(bad, frame, sizeof(frame));
		bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		write_raw(a.fd, bad, sizeof(bad));
		shutdown(a.fd, SHUT_WR);
		ret = mig_recv(&b, &f, ~0u);
		cr_assert(ret < 0, "bit %zu flipped but the frame was accepted", bit);
		cr_assert(b.err[0], "bit %zu: refusal without a message", bit);
		mig_stream_close(&a);
		mig_stream_close(&b);
	}
}

Test(migrate_stream, truncation_at_every_length)
{
	uint8_t frame[MIG_HDR_SIZE + 40], payload[40];

	memset(payload, 0x33, sizeof(payload));
	mig_frame_header(frame, MIG_STATE, payload, sizeof(payload));
	memcpy(frame + MIG_HDR_SIZE, payload, sizeof(payload));
	for (size_t cut = 0; cut < sizeof(frame); cut++) {
		struct mig_stream a, b;
		struct mig_frame f;

		pair(&a, &b);
		if (cut)
			write_raw(a.fd, frame, cut);
		shutdown(a.fd, SHUT_WR);
		int ret = mig_recv(&b, &f, ~0u);
		cr_assert(ret == -ECONNRESET || ret == -EPROTO, "cut at %zu: %d", cut, ret);
		if (cut > MIG_HDR_SIZE)
			cr_assert(strstr(b.err, "truncated STATE"), "cut %zu: %s", cut, b.err);
		mig_stream_close(&a);
		mig_stream_close(&b);
	}
}

Test(migrate_stream, oversize_unknown_and_flags_refused_before_reading_payload)
{
	struct mig_stream a, b;
	struct mig_frame f;
	uint8_t hdr[MIG_HDR_SIZE];

	pair(&a, &b);
	/* A HELLO claiming 1 GiB: refused from the header alone. */
	mig_put_u32(hdr, MIG_MAGIC);
	hdr[4] = MIG_HELLO; hdr[5] = 0; hdr[6] = hdr[7] = 0;
	mig_put_u32(hdr + 8, 1u << 30);
	mig_put_u32(hdr + 12, 0);
	write_raw(a.fd, hdr, sizeof(hdr));
	cr_assert_eq(mig_recv(&b, &f, ~0u), -EPROTO);
	cr_assert(strstr(b.err, "exceeds the limit"), "%s", b.err);

	hdr[4] = 200;
	mig_put_u32(hdr + 8, 0);
	write_raw(a.fd, hdr, sizeof(hdr));
	cr_assert_eq(mig_recv(&b, &f, ~0u), -EPROTO);
	cr_assert(strstr(b.err, "unknown frame type 200"), "%s", b.err);

	hdr[4] = MIG_DONE;
	hdr[6] = 1;
	write_raw(a.fd, hdr, sizeof(hdr));
	cr_assert_eq(mig_recv(&b, &f, ~0u), -EPROTO);
	cr_assert(strstr(b.err, "reserved flags"), "%s", b.err);

	write_raw(a.fd, "GET / HTTP/1.1\r\n", 16);
	cr_assert_eq(mig_recv(&b, &f, ~0u), -EPROTO);
	cr_assert(strstr(b.err, "bad frame magic"), "%s", b.err);
	mig_stream_close(&a);
	mig_stream_close(&b);
}

Test(migrate_stream, receive_timeout)
{
	struct mig_stream a, b;
	struct mig_frame f;

	pair(&a, &b);
	b.recv_timeout_ms = 50;
	cr_assert_eq(mig_recv(&b, &f, ~0u), -ETIMEDOUT);
	mig_stream_close(&a);
	mig_stream_close(&b);
}

Test(migrate_stream, hello_checks)
{
	struct mig_hello h = { .version = MIG_VERSION, .features = MIG_FEAT_LOCAL, .page_size = 4096,
			       .lanes = 2, .mem_size = 64 << 20, .lane_index = 1, .session = 77 };
	struct mig_hello out;
	uint8_t buf[MIG_HELLO_SIZE];
	char err[128];

	mig_hello_encode(&h, buf);
	cr_assert_eq(mig_hello_decode(buf, sizeof(buf), &out, err, sizeof(err)), 0);
	cr_assert_eq(memcmp(&h, &out, sizeof(h)), 0);
	cr_assert_eq(mig_hello_decode(buf, sizeof(buf) - 1, &out, err, sizeof(err)), -EPROTO);

	struct { size_t off; uint32_t v; const char *msg; } cases[] = {
		{ 0, 1, "format version 1" }, { 4, 0x80, "unknown features" },
		{ 8, 65536, "page size 65536" }, { 12, 0, "out of range" }, { 12, 99, "out of range" },
		{ 24, 2, "lane 2 of 2" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mig_hello_encode(&h, buf);
		mig_put_u32(buf + cases[i].off, cases[i].v);
		cr_assert_eq(mig_hello_decode(buf, sizeof(buf), &out, err, sizeof(err)), -EPROTO);
		cr_assert(strstr(err, cases[i].msg), "case %zu: %s", i, err);
	}
	mig_hello_encode(&h, buf);
	mig_put_u64(buf + 16, 4097);
	cr_assert_eq(mig_hello_decode(buf, sizeof(buf), &out, err, sizeof(err)), -EPROTO);
}

Test(migrate_stream, fd_passing)
{
	struct mig_stream a, b;
	struct mig_frame f;
	uint8_t size[8];
	int mfd = memfd_create("t", MFD_CLOEXEC);

	cr_assert_geq(mfd, 0);
	cr_assert_eq(ftruncate(mfd, 8192), 0);
	pair(&a, &b);
	mig_put_u64(size, 8192);
	cr_assert_eq(mig_send_fd(&a, MIG_MEMFD, size, 8, mfd), 0);
	cr_assert_eq(mig_recv(&b, &f, MIG_TYPE_BIT(MIG_MEMFD)), 0);
	cr_assert_eq(f.nr_fds, 1);
	cr_assert_eq(lseek(f.fds[0], 0, SEEK_END), 8192);
	close(f.fds[0]);
	/* A MEMFD frame without an fd is refused. */
	cr_assert_eq(mig_send(&a, MIG_MEMFD, size, 8), 0);
	cr_assert_eq(mig_recv(&b, &f, MIG_TYPE_BIT(MIG_MEMFD)), -EPROTO);
	close(mfd);
	mig_stream_close(&a);
	mig_stream_close(&b);
}

static unsigned open_fds(void)
{
	unsigned n = 0;

	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

/* NETFDS: several fds in one frame, in order; the sender keeps its own. Fds
 * where none belong, too many, or a count the frame type forbids are
 * refused, and whatever came is closed (no fd leaks into the receiver). */
Test(migrate_stream, several_fds_and_refusals)
{
	struct mig_stream a, b;
	struct mig_frame f;
	uint8_t payload[MIG_NETFDS_SIZE] = { 0 };
	int fds[MIG_MAX_FDS + 1];
	unsigned before;

	for (unsigned i = 0; i <= MIG_MAX_FDS; i++) {
		fds[i] = memfd_create("q", MFD_CLOEXEC);
		cr_assert_geq(fds[i], 0);
		cr_assert_eq(ftruncate(fds[i], 4096 * (i + 1)), 0);
	}
	pair(&a, &b);
	cr_assert_eq(mig_send_fds(&a, MIG_NETFDS, payload, sizeof(payload), fds, 3), 0);
	cr_assert_eq(mig_recv(&b, &f, MIG_TYPE_BIT(MIG_NETFDS)), 0);
	cr_assert_eq(f.type, MIG_NETFDS);
	cr_assert_eq(f.nr_fds, 3);
	for (unsigned i = 0; i < 3; i++) {
		cr_assert_neq(f.fds[i], fds[i], "a new reference, not the sender's number");
		cr_assert_eq(lseek(f.fds[i], 0, SEEK_END), 4096 * (i + 1), "fd %u out of order", i);
	}
	mig_frame_close_fds(&f);
	cr_assert_eq(lseek(fds[0], 0, SEEK_END), 4096, "the sender still owns its fd");

	before = open_fds();
	/* An fd on a frame that carries none. */
	cr_assert_eq(mig_send_fd(&a, MIG_CONFIG, "{}", 2, fds[0]), 0);
	cr_assert_eq(mig_recv(&b, &f, MIG_TYPE_BIT(MIG_CONFIG) | MIG_TYPE_BIT(MIG_NETFDS)), -EPROTO);
	cr_assert(strstr(b.err, "CONFIG frame with 1 file descriptor"), "%s", b.err);
	/* MEMFD with two. */
	cr_assert_eq(mig_send_fds(&a, MIG_MEMFD, payload, 8, fds, 2), 0);
	cr_assert_eq(mig_recv(&b, &f, MIG_TYPE_BIT(MIG_MEMFD)), -EPROTO);
	/* NETFDS without any. */
	cr_assert_eq(mig_send(&a, MIG_NETFDS, payload, sizeof(payload)), 0);
	cr_assert_eq(mig_recv(&b, &f, MIG_TYPE_BIT(MIG_NETFDS)), -EPROTO);
	/* More than a frame may carry: the sender refuses to build it. */
	cr_assert_eq(mig_send_fds(&a, MIG_NETFDS, payload, sizeof(payload), fds, MIG_MAX_FDS + 1), -EINVAL);
	/* An fd-carrying frame where it is not expected: the kernel drops the fds. */
	cr_assert_eq(mig_send_fds(&a, MIG_NETFDS, payload, sizeof(payload), fds, 4), 0);
	cr_assert_eq(mig_recv(&b, &f, MIG_TYPE_BIT(MIG_CONFIG)), -EPROTO);
	cr_assert_eq(open_fds(), before, "refused frames leaked fds");
	for (unsigned i = 0; i <= MIG_MAX_FDS; i++)
		close(fds[i]);
	mig_stream_close(&a);
	mig_stream_close(&b);
}
