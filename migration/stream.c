/* Framed migration stream: see stream.h for the wire format. */
#include "migration/stream.h"

#include <cpuid.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vmm/log.h"

const char *mig_frame_name(unsigned type)
{
	switch (type) {
	case MIG_HELLO:    return "HELLO";
	case MIG_CONFIG:   return "CONFIG";
	case MIG_PAGES:    return "PAGES";
	case MIG_STATE:    return "STATE";
	case MIG_DONE:     return "DONE";
	case MIG_ACK:      return "ACK";
	case MIG_ERROR:    return "ERROR";
	case MIG_LANE_END: return "LANE_END";
	case MIG_MEMFD:    return "MEMFD";
	case MIG_NETFDS:   return "NETFDS";
	case MIG_COMMIT:   return "COMMIT";
	case MIG_SYNC:     return "SYNC";
	}
	return "unknown";
}

size_t mig_frame_max_len(unsigned type)
{
	switch (type) {
	case MIG_HELLO:    return MIG_HELLO_SIZE;
	case MIG_CONFIG:   return MIG_CONFIG_MAX;
	case MIG_PAGES:    return 8 + MIG_PAGES_PER_FRAME * (8 + MIG_PAGE_SIZE);
	case MIG_STATE:    return 64u << 20;          /* STATE_MAX_SIZE */
	case MIG_DONE:     return 4;
	case MIG_ACK:      return 0;
	case MIG_ERROR:    return MIG_ERROR_MAX;
	case MIG_LANE_END: return 0;
	case MIG_MEMFD:    return 8;
	case MIG_NETFDS:   return MIG_NETFDS_SIZE;
	case MIG_COMMIT:   return 0;
	case MIG_SYNC:     return 8;
	}
	return 0;
}

/* ------------------------------------------------------------ CRC32C */

/* CRC32C (iSCSI polynomial, reflected 0x82f63b78): SSE4.2 has an instruction
 * for it (the host VMM may use it; only the test guest must not). One chain
 * of crc32q runs at its latency, 8 bytes per 3 cycles: slower than the copy
 * it guards. So blocks of 3 x CRC_LANE bytes are checksummed as three
 * independent chains (the instruction's throughput is one per cycle) and
 * joined: for a linear CRC without pre/post inversion,
 *	crc(s, A || B) = crc(crc(s, A), 0^|B|) ^ crc(0, B),
 * and crc(x, 0^CRC_LANE) is linear in x: four 256-entry tables (crc_shift)
 * built once from the instruction itself. */
#define CRC_LANE 4096u

static uint32_t crc_shift[4][256];
static pthread_once_t crc_shift_once = PTHREAD_ONCE_INIT;

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;

	while (len && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
		len--;
	}
	while (len >= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}

/* crc(x, CRC_LANE zero bytes) for x = each single bit, then per byte lane. */
__attribute__((target("sse4.2"))) static void crc_shift_init(void)
{
	static const uint8_t zero[CRC_LANE];
	uint32_t bit[32];

	for (unsigned i = 0; i < 32; i++)
		bit[i] = crc32c_hw(1u << i, zero, CRC_LANE);
	for (unsigned k = 0; k < 4; k++)
		for (unsigned b = 0; b < 256; b++) {
			uint32_t v = 0;

			for (unsigned i = 0; i < 8; i++)
				if (b & (1u << i))
					v ^= bit[8 * k + i];
			crc_shift[k][b] = v;
		}
}

static uint32_t crc_shift_lane(uint32_t x)
{
	return crc_shift[0][x & 0xff] ^ crc_shift[1][(x >> 8) & 0xff] ^ crc_shift[2][(x >> 16) & 0xff] ^
	       crc_shift[3][x >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw3(uint32_t crc, const uint8_t *p, size_t len)
{
	pthread_once(&crc_shift_once, crc_shift_init);
	while (len >= 3 * CRC_LANE) {
		uint64_t a = crc, b = 0, c = 0;

		for (size_t i = 0; i < CRC_LANE; i += 8) {
			uint64_t x, y, z;

			memcpy(&x, p + i, 8);
			memcpy(&y, p + CRC_LANE + i, 8);
			memcpy(&z, p + 2 * CRC_LANE + i, 8);
			a = __builtin_ia32_crc32di(a, x);
			b = __builtin_ia32_crc32di(b, y);
			c = __builtin_ia32_crc32di(c, z);
		}
		crc = crc_shift_lane(crc_shift_lane((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
		p += 3 * CRC_LANE;
		len -= 3 * CRC_LANE;
	}
	return crc32c_hw(crc, p, len);
}

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return crc;
}

/* SSE4.2 is CPUID.1:ECX bit 20, asked on first use. __builtin_cpu_supports
 * would link libgcc's start-up constructor into the binary: a dozen CPUID
 * instructions in every vmm process, snapshot or not, and each CPUID traps
 * to the hypervisor (about 4 us under nested virtualization). */
static bool have_sse42(void)
{
	static int cached = -1;
	int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);

	if (v < 0) {
		unsigned eax, ebx, ecx = 0, edx;

		v = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_SSE4_2);
		__atomic_store_n(&cached, v, __ATOMIC_RELAXED);
	}
	return v;
}

/* Chainable: mig_crc32c(mig_crc32c(0, a, n), b, m) == mig_crc32c(0, a||b, n+m). */
uint32_t mig_crc32c(uint32_t crc, const void *data, size_t len)
{
	crc = ~crc;
	if (have_sse42())
		crc = crc32c_hw3(crc, data, len);
	else
		crc = crc32c_sw(crc, data, len);
	return ~crc;
}

/* ------------------------------------------------------------ frames */

void mig_stream_init(struct mig_stream *s, int fd)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
}

void mig_stream_close(struct mig_stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	free(s->buf);
	s->buf = NULL;
	s->buf_size = 0;
}

static void hdr_encode(uint8_t hdr[MIG_HDR_SIZE], unsigned type, size_t len, uint32_t crc)
{
	mig_put_u32(hdr, MIG_MAGIC);
	hdr[4] = (uint8_t)type;
	hdr[5] = (uint8_t)(type >> 8);
	hdr[6] = hdr[7] = 0;
	mig_put_u32(hdr + 8, (uint32_t)len);
	mig_put_u32(hdr + 12, crc);
}

/* The frame CRC covers the header (crc field zero), then the payload. */
void mig_frame_header(uint8_t hdr[MIG_HDR_SIZE], unsigned type, const void *payload, size_t len)
{
	struct iovec iov = { (void *)payload, len };

	mig_frame_header_iov(hdr, type, &iov, 1);
}

void mig_frame_header_iov(uint8_t hdr[MIG_HDR_SIZE], unsigned type, const struct iovec *iov, unsigned n)
{
	size_t len = 0;
	uint32_t crc;

	for (unsigned i = 0; i < n; i++)
		len += iov[i].iov_len;
	hdr_encode(hdr, type, len, 0);
	crc = mig_crc32c(0, hdr, MIG_HDR_SIZE);
	for (unsigned i = 0; i < n; i++)
		crc = mig_crc32c(crc, iov[i].iov_base, iov[i].iov_len);
	mig_put_u32(hdr + 12, crc);
}

static int send_iov(struct mig_stream *s, struct iovec *iov, int n, const int *fds, unsigned nr_fds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * MIG_MAX_FDS)];
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)n };
	bool fd_pending = nr_fds > 0;

	if (nr_fds > MIG_MAX_FDS)
		return -EINVAL;
	while (msg.msg_iovlen) {
		ssize_t w;

		if (fd_pending) {
			struct cmsghdr *c;

			/* The fds travel with the first byte of the frame. */
			memset(cbuf, 0, sizeof(cbuf));
			msg.msg_control = cbuf;
			msg.msg_controllen = CMSG_SPACE(sizeof(int) * nr_fds);
			c = CMSG_FIRSTHDR(&msg);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * nr_fds);
			memcpy(CMSG_DATA(c), fds, sizeof(int) * nr_fds);
		} else {
			msg.msg_control = NULL;
			msg.msg_controllen = 0;
		}
		w = sendmsg(s->fd, &msg, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			int ret = -errno;
			snprintf(s->err, sizeof(s->err), "send failed: %s", strerror_safe(errno));
			return ret;
		}
		fd_pending = false;
		s->bytes_sent += (uint64_t)w;
		while (msg.msg_iovlen && (size_t)w >= msg.msg_iov->iov_len) {
			w -= (ssize_t)msg.msg_iov->iov_len;
			msg.msg_iov++;
			msg.msg_iovlen--;
		}
		if (msg.msg_iovlen) {
			msg.msg_iov->iov_base = (uint8_t *)msg.msg_iov->iov_base + w;
			msg.msg_iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int send_frame(struct mig_stream *s, unsigned type, const void *payload, size_t len, const int *fds,
		      unsigned nr_fds)
{
	uint8_t hdr[MIG_HDR_SIZE];
	struct iovec iov[2] = { { hdr, MIG_HDR_SIZE }, { (void *)payload, len } };

	if (len > UINT32_MAX)
		return -EMSGSIZE;
	mig_frame_header(hdr, type, payload, len);
	return send_iov(s, iov, len ? 2 : 1, fds, nr_fds);
}

int mig_send_iov(struct mig_stream *s, struct iovec *iov, unsigned n)
{
	return send_iov(s, iov, (int)n, NULL, 0);
}

int mig_send(struct mig_stream *s, unsigned type, const void *payload, size_t len)
{
	return send_frame(s, type, payload, len, NULL, 0);
}

int mig_send_fd(struct mig_stream *s, unsigned type, const void *payload, size_t len, int fd)
{
	return send_frame(s, type, payload, len, &fd, 1);
}

int mig_send_fds(struct mig_stream *s, unsigned type, const void *payload, size_t len, const int *fds,
		 unsigned nr_fds)
{
	return send_frame(s, type, payload, len, fds, nr_fds);
}

void mig_send_error(struct mig_stream *s, const char *fmt, ...)
{
	char msg[MIG_ERROR_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	if (s->fd >= 0)
		send_frame(s, MIG_ERROR, msg, (size_t)n, NULL, 0);
}

static int wait_readable(struct mig_stream *s)
{
	struct pollfd p = { .fd = s->fd, .events = POLLIN };
	int r;

	if (s->recv_timeout_ms <= 0)
		return 0;
	do
		r = poll(&p, 1, s->recv_timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0) {
		snprintf(s->err, sizeof(s->err), "the peer sent nothing for %d ms", s->recv_timeout_ms);
		return -ETIMEDOUT;
	}
	return 0;
}

/* Where received fds go: up to MIG_MAX_FDS, the rest closed and counted. */
struct fd_sink {
	int *fds;
	unsigned nr, dropped;
};

static void take_fds(struct msghdr *msg, struct fd_sink *sink)
{
	if (msg->msg_flags & MSG_CTRUNC)
		sink->dropped++;   /* the kernel closed what did not fit */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (sink->nr < MIG_MAX_FDS) {
				sink->fds[sink->nr++] = fd;
			} else {
				close(fd);
				sink->dropped++;
			}
		}
	}
}

/* Fill @iov exactly (and take the fds that come with the bytes, if @sink).
 * @iov is used up: its entries are advanced as bytes arrive. */
static int recv_iov(struct mig_stream *s, struct iovec *iov, unsigned n, struct fd_sink *sink)
{
	while (n && !iov->iov_len) {
		iov++;
		n--;
	}
	while (n) {
		char cbuf[CMSG_SPACE(sizeof(int) * MIG_MAX_FDS)];
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = n };
		ssize_t r;
		int ret = wait_readable(s);

		if (ret)
			return ret;
		if (sink) {
			msg.msg_control = cbuf;
			msg.msg_controllen = sizeof(cbuf);
		}
		r = recvmsg(s->fd, &msg, MSG_CMSG_CLOEXEC);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			snprintf(s->err, sizeof(s->err), "receive failed: %s", strerror_safe(errno));
			return ret;
		}
		if (r == 0) {
			snprintf(s->err, sizeof(s->err), "the peer closed the connection");
			return -ECONNRESET;
		}
		if (sink)
			take_fds(&msg, sink);
		s->bytes_received += (uint64_t)r;
		while (n && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

static int recv_exact(struct mig_stream *s, void *buf, size_t len, struct fd_sink *sink)
{
	struct iovec iov = { buf, len };

	return recv_iov(s, &iov, 1, sink);
}

static int proto_error(struct mig_stream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int proto_error(struct mig_stream *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	return -EPROTO;
}

static int ensure_buf(struct mig_stream *s, size_t len)
{
	if (len <= s->buf_size)
		return 0;
	uint8_t *b = realloc(s->buf, len);
	if (!b)
		return -ENOMEM;
	s->buf = b;
	s->buf_size = len;
	return 0;
}

/* Decode and check a received header: magic, flags, type, the type's length
 * limit, and that the type is expected (ERROR always is). */
static int check_header(struct mig_stream *s, uint8_t hdr[MIG_HDR_SIZE], uint32_t allowed, struct mig_rx *rx)
{
	unsigned type = (unsigned)hdr[4] | (unsigned)hdr[5] << 8;
	uint32_t len = mig_get_u32(hdr + 8);

	if (mig_get_u32(hdr) != MIG_MAGIC)
		return proto_error(s, "bad frame magic 0x%08x (not a vmm migration stream?)", mig_get_u32(hdr));
	if (hdr[6] || hdr[7])
		return proto_error(s, "%s frame: reserved flags 0x%02x%02x set", mig_frame_name(type), hdr[7],
				   hdr[6]);
	if (type == 0 || type > MIG_FRAME_TYPE_MAX)
		return proto_error(s, "unknown frame type %u", type);
	if (len > mig_frame_max_len(type))
		return proto_error(s, "%s frame of %u bytes exceeds the limit of %zu", mig_frame_name(type), len,
				   mig_frame_max_len(type));
	if (type != MIG_ERROR && !(allowed & MIG_TYPE_BIT(type)))
		return proto_error(s, "unexpected %s frame", mig_frame_name(type));
	rx->type = type;
	rx->len = rx->left = len;
	rx->crc_want = mig_get_u32(hdr + 12);
	mig_put_u32(hdr + 12, 0);
	rx->crc = mig_crc32c(0, hdr, MIG_HDR_SIZE);
	return 0;
}

int mig_recv_part(struct mig_stream *s, struct mig_rx *rx, const struct iovec *iov, unsigned n)
{
	struct iovec left[MIG_RX_MAX_IOV];
	size_t total = 0;
	int ret;

	if (n > MIG_RX_MAX_IOV)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (total > rx->left)
		return proto_error(s, "%s frame of %u bytes is shorter than its contents", mig_frame_name(rx->type),
				   rx->len);
	memcpy(left, iov, n * sizeof(*iov));
	ret = recv_iov(s, left, n, NULL);
	if (ret) {
		if (ret == -ECONNRESET)
			proto_error(s, "truncated %s frame: the peer closed the connection", mig_frame_name(rx->type));
		return ret;
	}
	for (unsigned i = 0; i < n; i++)
		rx->crc = mig_crc32c(rx->crc, iov[i].iov_base, iov[i].iov_len);
	rx->left -= (uint32_t)total;
	return 0;
}

int mig_recv_end(struct mig_stream *s, struct mig_rx *rx)
{
	if (rx->left)
		return proto_error(s, "%s frame: %u bytes left over", mig_frame_name(rx->type), rx->left);
	if (rx->crc != rx->crc_want)
		return proto_error(s, "%s frame: checksum mismatch (got 0x%08x, computed 0x%08x)",
				   mig_frame_name(rx->type), rx->crc_want, rx->crc);
	return 0;
}

/* The whole payload into s->buf, checked. An ERROR frame becomes -ECONNABORTED. */
static int recv_payload(struct mig_stream *s, struct mig_rx *rx)
{
	struct iovec iov;
	int ret = ensure_buf(s, rx->len ? rx->len : 1);

	if (ret) {
		snprintf(s->err, sizeof(s->err), "no memory for a %u-byte frame", rx->len);
		return ret;
	}
	iov = (struct iovec){ s->buf, rx->len };
	ret = mig_recv_part(s, rx, &iov, 1);
	if (!ret)
		ret = mig_recv_end(s, rx);
	if (!ret && rx->type == MIG_ERROR) {
		snprintf(s->err, sizeof(s->err), "peer: %.*s", (int)rx->len, (const char *)s->buf);
		ret = -ECONNABORTED;
	}
	return ret;
}

int mig_recv_begin(struct mig_stream *s, struct mig_rx *rx, uint32_t allowed)
{
	uint8_t hdr[MIG_HDR_SIZE];
	int ret;

	memset(rx, 0, sizeof(*rx));
	ret = recv_exact(s, hdr, MIG_HDR_SIZE, NULL);
	if (!ret)
		ret = check_header(s, hdr, allowed & ~MIG_FD_TYPES, rx);
	if (!ret && rx->type == MIG_ERROR)
		ret = recv_payload(s, rx);
	return ret;
}

int mig_recv_whole(struct mig_stream *s, struct mig_rx *rx, struct mig_frame *f)
{
	int ret;

	memset(f, 0, sizeof(*f));
	if (rx->left != rx->len)
		return -EINVAL;
	ret = recv_payload(s, rx);
	if (ret)
		return ret;
	f->type = rx->type;
	f->data = s->buf;
	f->len = rx->len;
	return 0;
}

void mig_frame_close_fds(struct mig_frame *f)
{
	for (unsigned i = 0; i < f->nr_fds; i++)
		if (f->fds[i] >= 0)
			close(f->fds[i]);
	f->nr_fds = 0;
}

/* The fd count a frame of @type must bring (checked before it is returned). */
static int check_fds(struct mig_stream *s, unsigned type, unsigned nr, unsigned dropped)
{
	bool fd_type = MIG_FD_TYPES & MIG_TYPE_BIT(type);

	if (dropped)
		return proto_error(s, "%s frame with more than %u file descriptors", mig_frame_name(type),
				   MIG_MAX_FDS);
	if (!fd_type && nr)
		return proto_error(s, "%s frame with %u file descriptor(s) attached", mig_frame_name(type), nr);
	if (fd_type && (nr == 0 || (type == MIG_MEMFD && nr != 1)))
		return proto_error(s, "%s frame with %u file descriptors", mig_frame_name(type), nr);
	return 0;
}

int mig_recv(struct mig_stream *s, struct mig_frame *f, uint32_t allowed)
{
	uint8_t hdr[MIG_HDR_SIZE];
	struct fd_sink sink = { .fds = f->fds };
	struct mig_rx rx;
	int ret;

	memset(f, 0, sizeof(*f));
	ret = recv_exact(s, hdr, MIG_HDR_SIZE, (allowed & MIG_FD_TYPES) ? &sink : NULL);
	f->nr_fds = sink.nr;
	if (!ret)
		ret = check_header(s, hdr, allowed, &rx);
	if (!ret)
		ret = recv_payload(s, &rx);
	if (!ret)
		ret = check_fds(s, rx.type, sink.nr, sink.dropped);
	if (ret) {
		mig_frame_close_fds(f);
		return ret;
	}
	f->type = rx.type;
	f->data = s->buf;
	f->len = rx.len;
	return 0;
}

/* ------------------------------------------------------------ HELLO */

void mig_hello_encode(const struct mig_hello *h, uint8_t out[MIG_HELLO_SIZE])
{
	mig_put_u32(out, h->version);
	mig_put_u32(out + 4, h->features);
	mig_put_u32(out + 8, h->page_size);
	mig_put_u32(out + 12, h->lanes);
	mig_put_u64(out + 16, h->mem_size);
	mig_put_u32(out + 24, h->lane_index);
	mig_put_u32(out + 28, h->session);
}

int mig_hello_decode(const uint8_t *data, size_t len, struct mig_hello *h, char *err, size_t errlen)
{
	if (len != MIG_HELLO_SIZE) {
		snprintf(err, errlen, "HELLO of %zu bytes, expected %d", len, MIG_HELLO_SIZE);
		return -EPROTO;
	}
	h->version = mig_get_u32(data);
	h->features = mig_get_u32(data + 4);
	h->page_size = mig_get_u32(data + 8);
	h->lanes = mig_get_u32(data + 12);
	h->mem_size = mig_get_u64(data + 16);
	h->lane_index = mig_get_u32(data + 24);
	h->session = mig_get_u32(data + 28);
	if (h->version != MIG_VERSION) {
		snprintf(err, errlen, "stream format version %u is not supported (this vmm speaks %u)",
			 h->version, MIG_VERSION);
		return -EPROTO;
	}
	if (h->features & ~MIG_FEATURES_KNOWN) {
		snprintf(err, errlen, "unknown features 0x%x requested", h->features & ~MIG_FEATURES_KNOWN);
		return -EPROTO;
	}
	if (h->page_size != MIG_PAGE_SIZE) {
		snprintf(err, errlen, "page size %u is not supported (only %u)", h->page_size, MIG_PAGE_SIZE);
		return -EPROTO;
	}
	if (h->lanes < 1 || h->lanes > MIG_MAX_LANES || h->lane_index >= h->lanes) {
		snprintf(err, errlen, "lane %u of %u is out of range (1..%u connections)", h->lane_index,
			 h->lanes, MIG_MAX_LANES);
		return -EPROTO;
	}
	if (h->mem_size == 0 || h->mem_size % MIG_PAGE_SIZE || h->mem_size > (1ULL << 46)) {
		snprintf(err, errlen, "RAM size %llu is not a plausible multiple of %u",
			 (unsigned long long)h->mem_size, MIG_PAGE_SIZE);
		return -EPROTO;
	}
	return 0;
}
