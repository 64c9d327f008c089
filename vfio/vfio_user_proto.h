/* vfio-user wire format (QEMU docs/interop/vfio-user.rst, protocol 0.1):
 * every message is a 16-byte header + payload, host endian, over a UNIX
 * stream socket; file descriptors travel as SCM_RIGHTS with the header.
 * Shared by our client (vfio_user.c) and the test device server
 * (tests/vfio-user-nic/). */
#ifndef VFIO_VFIO_USER_PROTO_H
#define VFIO_VFIO_USER_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define VFIO_USER_MAJOR 0
#define VFIO_USER_MINOR 1

enum vfio_user_command {
	VFIO_USER_VERSION = 1,
	VFIO_USER_DMA_MAP = 2,
	VFIO_USER_DMA_UNMAP = 3,
	VFIO_USER_DEVICE_GET_INFO = 4,
	VFIO_USER_DEVICE_GET_REGION_INFO = 5,
	VFIO_USER_DEVICE_GET_REGION_IO_FDS = 6,
	VFIO_USER_DEVICE_GET_IRQ_INFO = 7,
	VFIO_USER_DEVICE_SET_IRQS = 8,
	VFIO_USER_REGION_READ = 9,
	VFIO_USER_REGION_WRITE = 10,
	VFIO_USER_DMA_READ = 11,
	VFIO_USER_DMA_WRITE = 12,
	VFIO_USER_DEVICE_RESET = 13,
	VFIO_USER_REGION_WRITE_MULTI = 15,
	VFIO_USER_DEVICE_FEATURE = 16,
	VFIO_USER_MAX_COMMAND = 18,
};

struct vfio_user_hdr {
	uint16_t msg_id;
	uint16_t command;
	uint32_t msg_size;      /* header included */
	uint32_t flags;
	uint32_t error_no;
};

#define VFIO_USER_F_TYPE_MASK  0xf
#define VFIO_USER_F_COMMAND    0x0
#define VFIO_USER_F_REPLY      0x1
#define VFIO_USER_F_NO_REPLY   (1u << 4)
#define VFIO_USER_F_ERROR      (1u << 5)

struct vfio_user_version {
	uint16_t major, minor;
	/* followed by optional NUL-terminated JSON capabilities */
};

struct vfio_user_dma_map {
	uint32_t argsz, flags;
	uint64_t offset, address, size;
};
#define VFIO_USER_DMA_F_READ  (1u << 0)
#define VFIO_USER_DMA_F_WRITE (1u << 1)

struct vfio_user_dma_unmap {
	uint32_t argsz, flags;
	uint64_t address, size;
};

struct vfio_user_region_rw {
	uint64_t offset;
	uint32_t region, count;
	/* data follows */
};

struct vfio_user_dma_rw {
	uint64_t address, count;
	/* data follows */
};

#define VFIO_USER_DEFAULT_MAX_XFER  (1u << 20)
#define VFIO_USER_DEFAULT_MAX_FDS   1
#define VFIO_USER_MAX_FDS           16        /* we never accept more per message */
#define VFIO_USER_MAX_MSG           (VFIO_USER_DEFAULT_MAX_XFER + 64)

/* Send one message; @fds (nfds <= VFIO_USER_MAX_FDS) ride on the header.
 * Never raises SIGPIPE. 0, -EPIPE/-ECONNRESET if the peer is gone. */
int vfio_user_send(int sock, const struct vfio_user_hdr *hdr, const void *payload, size_t len,
		   const int *fds, unsigned nfds);
/* Receive one message into @hdr and @buf (capacity @cap). *len = payload
 * bytes. Received fds go to @fds (up to *nfds; extra ones are closed) and
 * *nfds is updated. Waits at most @timeout_ms for each chunk (-1 forever).
 * -ECONNRESET if the peer closed, -ETIMEDOUT, -EPROTO for a malformed header,
 * -EMSGSIZE if the payload exceeds @cap (the stream is then unusable). */
int vfio_user_recv(int sock, struct vfio_user_hdr *hdr, void *buf, size_t cap, size_t *len,
		   int *fds, unsigned *nfds, int timeout_ms);
/* Build and send a reply (or an error reply if err != 0) to @req. */
int vfio_user_reply(int sock, const struct vfio_user_hdr *req, int err, const void *payload,
		    size_t len, const int *fds, unsigned nfds);
const char *vfio_user_command_name(unsigned cmd);

#endif
