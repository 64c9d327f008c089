/* vfio-user message framing over a UNIX stream socket (see vfio_user_proto.h). */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vfio/vfio_user_proto.h"

const char *vfio_user_command_name(unsigned cmd)
{
	static const char *const names[] = {
		[VFIO_USER_VERSION] = "VERSION",
		[VFIO_USER_DMA_MAP] = "DMA_MAP",
		[VFIO_USER_DMA_UNMAP] = "DMA_UNMAP",
		[VFIO_USER_DEVICE_GET_INFO] = "DEVICE_GET_INFO",
		[VFIO_USER_DEVICE_GET_REGION_INFO] = "DEVICE_GET_REGION_INFO",
		[VFIO_USER_DEVICE_GET_REGION_IO_FDS] = "DEVICE_GET_REGION_IO_FDS",
		[VFIO_USER_DEVICE_GET_IRQ_INFO] = "DEVICE_GET_IRQ_INFO",
		[VFIO_USER_DEVICE_SET_IRQS] = "DEVICE_SET_IRQS",
		[VFIO_USER_REGION_READ] = "REGION_READ",
		[VFIO_USER_REGION_WRITE] = "REGION_WRITE",
		[VFIO_USER_DMA_READ] = "DMA_READ",
		[VFIO_USER_DMA_WRITE] = "DMA_WRITE",
		[VFIO_USER_DEVICE_RESET] = "DEVICE_RESET",
		[VFIO_USER_REGION_WRITE_MULTI] = "REGION_WRITE_MULTI",
		[VFIO_USER_DEVICE_FEATURE] = "DEVICE_FEATURE",
	};
	if (cmd < sizeof(names) / sizeof(names[0]) && names[cmd])
		return names[cmd];
	return "UNKNOWN";
}

int vfio_user_send(int sock, const struct vfio_user_hdr *hdr, const void *payload, size_t len,
		   const int *fds, unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VFIO_USER_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov[2] = {
		{ .iov_base = (void *)hdr, .iov_len = sizeof(*hdr) },
		{ .iov_base = (void *)payload, .iov_len = len },
	};
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	size_t total = sizeof(*hdr) + len, sent = 0;

	if (nfds > VFIO_USER_MAX_FDS)
		return -EINVAL;
	if (nfds) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	while (sent < total) {
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EPIPE || errno == ECONNRESET ? -errno : -errno;
		}
		sent += (size_t)n;
		/* Fds went with the first byte; advance the iovecs past what was sent. */
		mh.msg_control = NULL;
		mh.msg_controllen = 0;
		while (mh.msg_iovlen && (size_t)n >= mh.msg_iov[0].iov_len) {
			n -= (ssize_t)mh.msg_iov[0].iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen) {
			mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + n;
			mh.msg_iov[0].iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int vfio_user_wait(int sock, int timeout_ms)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	int r;

	do {
		r = poll(&p, 1, timeout_ms);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

static void vfio_user_take_fds(struct msghdr *mh, int *fds, unsigned *nfds)
{
	unsigned cap = nfds ? *nfds : 0, got = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		unsigned n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int tmp[VFIO_USER_MAX_FDS + 8];

		if (n > sizeof(tmp) / sizeof(tmp[0]))
			n = sizeof(tmp) / sizeof(tmp[0]);
		memcpy(tmp, CMSG_DATA(c), n * sizeof(int));
		for (unsigned i = 0; i < n; i++) {
			if (got < cap)
				fds[got++] = tmp[i];
			else
				close(tmp[i]);   /* more than the caller accepts */
		}
	}
	if (nfds)
		*nfds = got;
}

static int vfio_user_read_all(int sock, void *buf, size_t len, int timeout_ms)
{
	size_t done = 0;

	while (done < len) {
		int ret = vfio_user_wait(sock, timeout_ms);

		if (ret)
			return ret;
		ssize_t n = recv(sock, (char *)buf + done, len - done, MSG_DONTWAIT);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

int vfio_user_recv(int sock, struct vfio_user_hdr *hdr, void *buf, size_t cap, size_t *len,
		   int *fds, unsigned *nfds, int timeout_ms)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * (VFIO_USER_MAX_FDS + 8))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = hdr, .iov_len = sizeof(*hdr) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	ssize_t n;
	int ret;

	if (nfds && !fds)
		*nfds = 0;
	ret = vfio_user_wait(sock, timeout_ms);
	if (ret)
		return ret;
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n == 0)
		return -ECONNRESET;
	if (n < 0)
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	vfio_user_take_fds(&mh, fds, nfds);
	if ((size_t)n < sizeof(*hdr)) {
		ret = vfio_user_read_all(sock, (char *)hdr + n, sizeof(*hdr) - (size_t)n, timeout_ms);
		if (ret)
			goto close_fds;
	}
	if (hdr->msg_size < sizeof(*hdr)) {
		ret = -EPROTO;
		goto close_fds;
	}
	*len = hdr->msg_size - sizeof(*hdr);
	if (*len > cap) {
		ret = -EMSGSIZE;
		goto close_fds;
	}
	ret = vfio_user_read_all(sock, buf, *len, timeout_ms);
	if (!ret)
		return 0;
close_fds:
	for (unsigned i = 0; nfds && i < *nfds; i++)
		close(fds[i]);
	if (nfds)
		*nfds = 0;
	return ret;
}

int vfio_user_reply(int sock, const struct vfio_user_hdr *req, int err, const void *payload,
		    size_t len, const int *fds, unsigned nfds)
{
	struct vfio_user_hdr h = {
		.msg_id = req->msg_id, .command = req->command, .flags = VFIO_USER_F_REPLY,
	};

	if (err) {
		h.flags |= VFIO_USER_F_ERROR;
		h.error_no = (uint32_t)(err < 0 ? -err : err);
		len = 0;
		nfds = 0;
	}
	h.msg_size = (uint32_t)(sizeof(h) + len);
	return vfio_user_send(sock, &h, payload, len, fds, nfds);
}
