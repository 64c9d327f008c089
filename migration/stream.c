/* Framed migration stream: see stream.h for the wire format. */
#include "migration/stream.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
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
	}
	return 0;
}

/* ------------------------------------------------------------ CRC32C */

/* CRC32C (iSCSI polynomial, reflected 0x82f63b78): SSE4.2 has an instruction
 * for it, which keeps checksumming far below the cost of the copy. */
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

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return crc;
}

/* Chainable: mig_crc32c(mig_crc32c(0, a, n), b, m) == mig_crc32c(0, a||b, n+m). */
uint32_t mig_crc32c(uint32_t crc, const void *data, size_t len)
{
	crc = ~crc;
	if (__builtin_cpu_supports("sse4.2"))
		crc = crc32c_hw(crc, data, len);
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
	uint32_t crc;

	hdr_encode(hdr, type, len, 0);
	crc = mig_crc32c(0, hdr, MIG_HDR_SIZE);
	crc = mig_crc32c(crc, payload, len);
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

/* Read exactly @len bytes (and the fds that come with them, if @sink). */
static int recv_exact(struct mig_stream *s, void *buf, size_t len, struct fd_sink *sink)
{
	uint8_t *p = buf;

	while (len) {
		char cbuf[CMSG_SPACE(sizeof(int) * MIG_MAX_FDS)];
		struct iovec iov = { p, len };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
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
		p += r;
		len -= (size_t)r;
	}
	return 0;
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
	unsigned type;
	uint32_t len, crc, want;
	struct fd_sink sink = { .fds = f->fds };
	int ret;

	memset(f, 0, sizeof(*f));
	ret = recv_exact(s, hdr, MIG_HDR_SIZE, (allowed & MIG_FD_TYPES) ? &sink : NULL);
	f->nr_fds = sink.nr;
	if (ret)
		goto fail;
	type = (unsigned)hdr[4] | (unsigned)hdr[5] << 8;
	len = mig_get_u32(hdr + 8);
	crc = mig_get_u32(hdr + 12);
	ret = -EPROTO;
	if (mig_get_u32(hdr) != MIG_MAGIC) {
		proto_error(s, "bad frame magic 0x%08x (not a vmm migration stream?)", mig_get_u32(hdr));
		goto fail;
	}
	if (hdr[6] || hdr[7]) {
		proto_error(s, "%s frame: reserved flags 0x%02x%02x set", mig_frame_name(type), hdr[7], hdr[6]);
		goto fail;
	}
	if (type == 0 || type > MIG_FRAME_TYPE_MAX) {
		proto_error(s, "unknown frame type %u", type);
		goto fail;
	}
	if (len > mig_frame_max_len(type)) {
		proto_error(s, "%s frame of %u bytes exceeds the limit of %zu", mig_frame_name(type), len,
			    mig_frame_max_len(type));
		goto fail;
	}
	if (type != MIG_ERROR && !(allowed & MIG_TYPE_BIT(type))) {
		proto_error(s, "unexpected %s frame", mig_frame_name(type));
		goto fail;
	}
	ret = ensure_buf(s, len ? len : 1);
	if (ret) {
		snprintf(s->err, sizeof(s->err), "no memory for a %u-byte frame", len);
		goto fail;
	}
	ret = recv_exact(s, s->buf, len, NULL);
	if (ret) {
		if (ret == -ECONNRESET)
			proto_error(s, "truncated %s frame: the peer closed the connection", mig_frame_name(type));
		goto fail;
	}
	mig_put_u32(hdr + 12, 0);
	want = mig_crc32c(mig_crc32c(0, hdr, MIG_HDR_SIZE), s->buf, len);
	if (want != crc) {
		ret = proto_error(s, "%s frame: checksum mismatch (got 0x%08x, computed 0x%08x)",
				  mig_frame_name(type), crc, want);
		goto fail;
	}
	if (type == MIG_ERROR) {
		snprintf(s->err, sizeof(s->err), "peer: %.*s", (int)len, (const char *)s->buf);
		ret = -ECONNABORTED;
		goto fail;
	}
	ret = check_fds(s, type, sink.nr, sink.dropped);
	if (ret)
		goto fail;
	f->type = type;
	f->data = s->buf;
	f->len = len;
	return 0;
fail:
	mig_frame_close_fds(f);
	return ret;
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
