/* vfio-user client back end: the device lives in a server process reached
 * over a UNIX socket (QEMU docs/interop/vfio-user.rst). Guest RAM is shared
 * with DMA_MAP (the guest memfd via SCM_RIGHTS); servers that cannot map it
 * ask with DMA_READ/DMA_WRITE, which we serve from guest memory through the
 * checked translation of the DMA window table.
 *
 * Every reply is bounds-checked; every wait has a timeout. A server that
 * closes the socket, times out or sends garbage marks the back end dead: from
 * then on every call fails fast with -EPIPE, and the device model reports the
 * device gone while the VM keeps running. */
#ifndef VFIO_VFIO_USER_H
#define VFIO_VFIO_USER_H

#include <stdbool.h>

#include "vfio/vfio_backend.h"

struct guest_mem;

struct vfio_user_opts {
	const char *socket_path;       /* connect here, or */
	int fd;                        /* an already connected socket (-1 = none); taken over */
	struct guest_mem *mem;         /* serves DMA_READ/WRITE; may be NULL (then refused) */
	int timeout_ms;                /* per reply; 0 = 5000 */
	const char *name;              /* log prefix; NULL = "vfio-user" */
};

int vfio_user_open(const struct vfio_user_opts *opts, struct vfio_backend **out);
/* The socket, for the event loop: when readable call vfio_user_service(). */
int vfio_user_socket(struct vfio_backend *be);
/* Serve requests the server sent on its own (DMA_READ/WRITE); non-blocking.
 * Returns 0, or -EPIPE once the server is gone. */
int vfio_user_service(struct vfio_backend *be);
bool vfio_user_alive(struct vfio_backend *be);
/* Negotiated limits and counters (for info). */
struct vfio_user_stats {
	uint32_t max_xfer, max_fds, server_minor;
	uint64_t requests, dma_reads, dma_writes, dma_refused;
};
void vfio_user_get_stats(struct vfio_backend *be, struct vfio_user_stats *st);
bool vfio_user_is(const struct vfio_backend *be);

#endif
