/* vfio-user-nic: the test VF as a vfio-user device server (server side of
 * QEMU docs/interop/vfio-user.rst). One client, one thread.
 *
 *   vfio-user-nic --socket PATH | --fd N  [--dma-msg] [--exit-after N] [--lie WHAT]
 *
 * --dma-msg      never map the client's memory: reach it with DMA_READ/WRITE
 * --exit-after N exit abruptly after N commands (crash simulation)
 * --die-after-ms T  exit abruptly T ms after the client connected
 * --tap NAME     the wire is TAP device NAME (created, brought up) instead of
 *                a loopback: TX frames go out there, frames read from it are
 *                received (asynchronously: DMA and the RX vector outside any
 *                client request)
 * --lie WHAT     misbehave for client robustness tests:
 *                device-info (absurd region count), reply-id (wrong ids),
 *                short-read (REGION_READ reply without data), bad-json,
 *                region-fd (mmappable region without an fd),
 *                no-window-check (with --dma-msg: ask the client for any IOVA),
 *                short-fd (BAR2's mmap offset points past the end of its fd)
 * VFNIC_DEBUG=1 in the environment traces INTx assert/unmask on stderr.
 * The server refuses any device DMA outside the windows the client mapped:
 * that is the device side of an IOMMU fault (counted in DMA_FAULTS). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/vfio.h>

#include "tests/vfio-user-nic/nic.h"
#include "vmm/unix_listen.h"
#include "vfio/vfio_user_proto.h"

#define SRV_MAX_WINDOWS 256
#define SRV_MAX_FDS     8
#define SRV_NUM_REGIONS VFIO_PCI_NUM_REGIONS
#define SRV_NUM_IRQS    VFIO_PCI_NUM_IRQS
#define SRV_MAX_PARKED  64       /* pipelined client commands held across one DMA */
#define SRV_TIMEOUT_MS  5000     /* rest of a started message, or a DMA reply */
#define SRV_RX_BATCH    32       /* TAP frames per turn: the socket is not starved */

struct dma_window {
	uint64_t iova, size;
	uint32_t flags;
	uint8_t *map;          /* NULL: reach it with DMA_READ/WRITE */
};

/* A client command that crossed one of our DMA messages. The spec allows it
 * twice over (docs/interop/vfio-user.rst, "Command Concurrency"): messages
 * from the server may sit between a client request and its reply, and the
 * client may pipeline several requests without waiting for replies. */
struct parked_cmd {
	struct parked_cmd *next;
	struct vfio_user_hdr hdr;
	size_t len;
	int fds[SRV_MAX_FDS];
	unsigned nfds;
	uint8_t data[];
};

struct server {
	int sock;
	struct nic nic;
	bool dma_msg;
	const char *lie;
	long exit_after, handled;
	struct dma_window win[SRV_MAX_WINDOWS];
	unsigned nwin;
	int msix_fds[VFNIC_NR_VECTORS];
	/* INTx, VFIO semantics: level, automasked when asserted, unmasked by the
	 * client (UNMASK eventfd = KVM's resample fd, or SET_IRQS ACTION_UNMASK). */
	int intx_fd, intx_unmask_fd;
	bool intx_masked;
	int bar2_fd;
	uint8_t *bar2;
	uint16_t next_id;
	uint32_t client_max_xfer;
	uint8_t *buf, *out;
	/* DMA messages have their own buffers: they happen in the middle of a
	 * command whose buffers are live. Client commands that arrive while we
	 * wait for a DMA reply are parked, in arrival order, and handled before
	 * anything new is read from the socket (see srv_park()). */
	uint8_t *dma_out, *dma_in;
	struct parked_cmd *parked, **parked_tail;
	unsigned nparked;
	bool broken;                      /* the client broke the protocol: exit */
	int tap_fd;                       /* --tap: the wire; -1 = loopback */
};

static bool lying(const struct server *s, const char *what)
{
	return s->lie && !strcmp(s->lie, what);
}

/* ---- device DMA ---- */

static struct dma_window *srv_window(struct server *s, uint64_t iova, uint64_t len)
{
	for (unsigned i = 0; i < s->nwin; i++) {
		struct dma_window *w = &s->win[i];

		if (iova >= w->iova && len <= w->size && iova - w->iova <= w->size - len)
			return w;
	}
	return NULL;
}

/* Keep a client command that arrived while we wait for a DMA reply. We cannot
 * handle it here: the device model is in the middle of the DMA. The client
 * answers our DMA while it waits for its own replies (it must not stall), so
 * the wait ends and the main loop handles the parked commands in order. */
static int srv_park(struct server *s, const struct vfio_user_hdr *h, const uint8_t *data,
		    size_t len, const int *fds, unsigned nfds)
{
	struct parked_cmd *p;

	if (s->nparked >= SRV_MAX_PARKED) {
		fprintf(stderr, "vfio-user-nic: client pipelined more than %d commands across "
				"one DMA message\n", SRV_MAX_PARKED);
		s->broken = true;
		return -EPROTO;
	}
	p = malloc(sizeof(*p) + len);
	if (!p) {
		s->broken = true;
		return -ENOMEM;
	}
	p->next = NULL;
	p->hdr = *h;
	p->len = len;
	p->nfds = nfds;
	memcpy(p->fds, fds, nfds * sizeof(int));
	memcpy(p->data, data, len);
	*s->parked_tail = p;
	s->parked_tail = &p->next;
	s->nparked++;
	return 0;
}

/* The oldest parked command, its payload in s->buf (idle between commands). */
static void srv_unpark(struct server *s, struct vfio_user_hdr *h, size_t *len, int *fds,
		       unsigned *nfds)
{
	struct parked_cmd *p = s->parked;

	s->parked = p->next;
	if (!s->parked)
		s->parked_tail = &s->parked;
	s->nparked--;
	*h = p->hdr;
	*len = p->len;
	*nfds = p->nfds;
	memcpy(fds, p->fds, p->nfds * sizeof(int));
	memcpy(s->buf, p->data, p->len);
	free(p);
}

/* DMA_READ/WRITE to the client; its reply comes back on the same socket,
 * possibly after client commands (parked). */
static int srv_dma_msg(struct server *s, uint64_t iova, void *buf, uint32_t len, bool write)
{
	struct vfio_user_dma_rw rw = { .address = iova, .count = len };
	struct vfio_user_hdr h = { .msg_id = s->next_id++,
				   .command = write ? VFIO_USER_DMA_WRITE : VFIO_USER_DMA_READ };
	struct vfio_user_hdr r;
	size_t rlen;
	int ret;

	if (s->broken)
		return -EPIPE;
	memcpy(s->dma_out, &rw, sizeof(rw));
	if (write)
		memcpy(s->dma_out + sizeof(rw), buf, len);
	h.msg_size = (uint32_t)(sizeof(h) + sizeof(rw) + (write ? len : 0));
	ret = vfio_user_send(s->sock, &h, s->dma_out, h.msg_size - sizeof(h), NULL, 0);
	if (ret)
		return ret;
	for (;;) {
		int fds[SRV_MAX_FDS];
		unsigned nfds = SRV_MAX_FDS;

		ret = vfio_user_recv(s->sock, &r, s->dma_in, VFIO_USER_MAX_MSG, &rlen, fds, &nfds,
				     SRV_TIMEOUT_MS);
		if (ret)
			return ret;
		if ((r.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_COMMAND) {
			ret = srv_park(s, &r, s->dma_in, rlen, fds, nfds);
			if (!ret)
				continue;
		}
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		if (ret)
			return ret;
		break;
	}
	if ((r.flags & VFIO_USER_F_TYPE_MASK) != VFIO_USER_F_REPLY || r.msg_id != h.msg_id)
		return -EPROTO;
	if (r.flags & VFIO_USER_F_ERROR)
		return -EFAULT;
	if (!write) {
		if (rlen != sizeof(rw) + len)
			return -EPROTO;
		memcpy(buf, s->dma_in + sizeof(rw), len);
	}
	return 0;
}

static int srv_dma(void *opaque, uint64_t iova, void *buf, uint32_t len, bool write)
{
	struct server *s = opaque;
	struct dma_window *w = srv_window(s, iova, len);

	/* Lie: skip our own window check and ask the client anyway. */
	if (!w && s->dma_msg && lying(s, "no-window-check"))
		return srv_dma_msg(s, iova, buf, len, write) ? -EFAULT : 0;
	if (!w || !(w->flags & (write ? VFIO_USER_DMA_F_WRITE : VFIO_USER_DMA_F_READ)))
		return -EFAULT;
	if (w->map) {
		if (write)
			memcpy(w->map + (iova - w->iova), buf, len);
		else
			memcpy(buf, w->map + (iova - w->iova), len);
		return 0;
	}
	for (uint32_t done = 0; done < len;) {
		uint32_t chunk = len - done < s->client_max_xfer ? len - done : s->client_max_xfer;
		int ret = srv_dma_msg(s, iova + done, (uint8_t *)buf + done, chunk, write);

		if (ret)
			return ret == -EFAULT ? ret : -EFAULT;
		done += chunk;
	}
	return 0;
}

static void srv_signal(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0)
		perror("vfio-user-nic: irq eventfd");
}

/* Assert INTx unless it is masked (it stays pending in IRQ_STATUS). */
static void srv_intx_assert(struct server *s)
{
	if (s->intx_fd < 0 || s->intx_masked)
		return;
	s->intx_masked = true;
	if (getenv("VFNIC_DEBUG"))
		fprintf(stderr, "vfio-user-nic: INTx assert (status 0x%x)\n", s->nic.st.irq_status);
	srv_signal(s->intx_fd);
}

static void srv_intx_unmask(struct server *s)
{
	if (getenv("VFNIC_DEBUG"))
		fprintf(stderr, "vfio-user-nic: INTx unmask (status 0x%x)\n", s->nic.st.irq_status);
	s->intx_masked = false;
	if (s->nic.st.irq_status)
		srv_intx_assert(s);   /* level: still pending, assert again */
}

/* MSI-X when the client configured vectors, INTx otherwise (one type at a time). */
static void srv_irq(void *opaque, unsigned vector)
{
	struct server *s = opaque;
	bool msix = false;

	for (unsigned v = 0; v < VFNIC_NR_VECTORS; v++)
		msix |= s->msix_fds[v] >= 0;
	if (msix) {
		if (vector < VFNIC_NR_VECTORS && s->msix_fds[vector] >= 0)
			srv_signal(s->msix_fds[vector]);
	} else {
		srv_intx_assert(s);
	}
}

/* ---- the wire ---- */

static void srv_wire_tx(void *opaque, const uint8_t *frame, uint32_t len)
{
	struct server *s = opaque;

	if (write(s->tap_fd, frame, len) < 0 && errno != EAGAIN)
		perror("vfio-user-nic: tap write");
}

static int srv_tap_open(const char *name)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK), sk;

	if (fd < 0 || strlen(name) >= IFNAMSIZ)
		return -1;
	strcpy(ifr.ifr_name, name);
	if (ioctl(fd, TUNSETIFF, &ifr)) {
		close(fd);
		return -1;
	}
	/* Bring the link up so the host side sees our frames. */
	sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sk >= 0 && !ioctl(sk, SIOCGIFFLAGS, &ifr)) {
		ifr.ifr_flags |= IFF_UP;
		ioctl(sk, SIOCSIFFLAGS, &ifr);
	}
	if (sk >= 0)
		close(sk);
	return fd;
}

static void srv_tap_rx(struct server *s)
{
	uint8_t frame[VFNIC_MAX_FRAME];
	ssize_t n;

	for (int i = 0; i < SRV_RX_BATCH && (n = read(s->tap_fd, frame, sizeof(frame))) > 0; i++)
		nic_wire_rx(&s->nic, frame, (uint32_t)n);
}

/* ---- commands ---- */

static int srv_version(struct server *s, const struct vfio_user_hdr *h, size_t len)
{
	struct vfio_user_version v;
	char out[256];
	int n;

	if (len < sizeof(v))
		return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
	memcpy(&v, s->buf, sizeof(v));
	if (v.major != VFIO_USER_MAJOR)
		return vfio_user_reply(s->sock, h, ENOTSUP, NULL, 0, NULL, 0);
	if (len > sizeof(v) && memchr(s->buf + sizeof(v), 0, len - sizeof(v))) {
		cJSON *root = cJSON_Parse((char *)s->buf + sizeof(v));
		cJSON *caps = cJSON_GetObjectItemCaseSensitive(root, "capabilities");
		cJSON *mx = cJSON_GetObjectItemCaseSensitive(caps, "max_data_xfer_size");

		if (cJSON_IsNumber(mx) && mx->valuedouble >= 512 &&
		    mx->valuedouble <= VFIO_USER_DEFAULT_MAX_XFER)
			s->client_max_xfer = (uint32_t)mx->valuedouble;
		cJSON_Delete(root);
	}
	v.minor = VFIO_USER_MINOR;
	memcpy(out, &v, sizeof(v));
	if (lying(s, "bad-json"))
		n = snprintf(out + sizeof(v), sizeof(out) - sizeof(v), "{\"capabilities\":[}");
	else
		n = snprintf(out + sizeof(v), sizeof(out) - sizeof(v),
			     "{\"capabilities\":{\"max_msg_fds\":%d,\"max_data_xfer_size\":%u}}",
			     SRV_MAX_FDS, VFIO_USER_DEFAULT_MAX_XFER);
	return vfio_user_reply(s->sock, h, 0, out, sizeof(v) + (size_t)n + 1, NULL, 0);
}

static int srv_dma_map(struct server *s, const struct vfio_user_hdr *h, size_t len, int *fds,
		       unsigned nfds)
{
	struct vfio_user_dma_map m;
	struct dma_window *w;

	if (len != sizeof(m) || nfds > 1)
		return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
	memcpy(&m, s->buf, sizeof(m));
	if (!m.size || m.address + m.size < m.address)
		return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
	for (unsigned i = 0; i < s->nwin; i++)
		if (m.address < s->win[i].iova + s->win[i].size &&
		    s->win[i].iova < m.address + m.size)
			return vfio_user_reply(s->sock, h, EEXIST, NULL, 0, NULL, 0);
	if (s->nwin >= SRV_MAX_WINDOWS)
		return vfio_user_reply(s->sock, h, ENOSPC, NULL, 0, NULL, 0);
	w = &s->win[s->nwin];
	*w = (struct dma_window){ .iova = m.address, .size = m.size, .flags = m.flags };
	if (nfds && !s->dma_msg) {
		int prot = (m.flags & VFIO_USER_DMA_F_READ ? PROT_READ : 0) |
			   (m.flags & VFIO_USER_DMA_F_WRITE ? PROT_WRITE : 0);
		void *p = mmap(NULL, m.size, prot ? prot : PROT_NONE, MAP_SHARED, fds[0],
			       (off_t)m.offset);

		if (p == MAP_FAILED)
			return vfio_user_reply(s->sock, h, errno, NULL, 0, NULL, 0);
		w->map = p;
	}
	s->nwin++;
	return vfio_user_reply(s->sock, h, 0, NULL, 0, NULL, 0);
}

static int srv_dma_unmap(struct server *s, const struct vfio_user_hdr *h, size_t len)
{
	struct vfio_user_dma_unmap u;

	if (len < sizeof(u))
		return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
	memcpy(&u, s->buf, sizeof(u));
	for (unsigned i = 0; i < s->nwin; i++) {
		if (s->win[i].iova == u.address && s->win[i].size == u.size) {
			if (s->win[i].map)
				munmap(s->win[i].map, s->win[i].size);
			s->win[i] = s->win[--s->nwin];
			return vfio_user_reply(s->sock, h, 0, &u, sizeof(u), NULL, 0);
		}
	}
	return vfio_user_reply(s->sock, h, ENOENT, NULL, 0, NULL, 0);
}

static int srv_device_info(struct server *s, const struct vfio_user_hdr *h)
{
	struct vfio_device_info di = {
		.argsz = sizeof(di), .flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET,
		.num_regions = lying(s, "device-info") ? 100000 : SRV_NUM_REGIONS,
		.num_irqs = SRV_NUM_IRQS,
	};
	return vfio_user_reply(s->sock, h, 0, &di, 16, NULL, 0);
}

static uint64_t srv_region_size(uint32_t index)
{
	switch (index) {
	case VFIO_PCI_BAR0_REGION_INDEX: return VFNIC_BAR0_SIZE;
	case VFIO_PCI_BAR2_REGION_INDEX: return VFNIC_BAR2_SIZE;
	case VFIO_PCI_CONFIG_REGION_INDEX: return VFNIC_CFG_SIZE;
	default: return 0;
	}
}

static int srv_region_info(struct server *s, const struct vfio_user_hdr *h, size_t len)
{
	struct vfio_region_info ri;
	uint8_t out[sizeof(ri) + sizeof(struct vfio_region_info_cap_sparse_mmap) +
		    sizeof(struct vfio_region_sparse_mmap_area)];
	uint32_t need = sizeof(ri), have;

	if (len < sizeof(ri))
		return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
	memcpy(&ri, s->buf, sizeof(ri));
	have = ri.argsz;
	if (ri.index >= SRV_NUM_REGIONS)
		return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
	ri.size = srv_region_size(ri.index);
	ri.offset = 0;
	ri.cap_offset = 0;
	ri.flags = ri.size ? VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE : 0;
	if (ri.index == VFIO_PCI_BAR2_REGION_INDEX) {
		/* Only the first page is mappable: a sparse mmap capability. */
		ri.flags |= VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS;
		need = sizeof(out);
		if (have >= need) {
			struct vfio_region_info_cap_sparse_mmap sp = {
				.header = { .id = VFIO_REGION_INFO_CAP_SPARSE_MMAP, .version = 1 },
				.nr_areas = 1,
			};
			struct vfio_region_sparse_mmap_area a = { .offset = 0, .size = 4096 };

			ri.cap_offset = sizeof(ri);
			memcpy(out + sizeof(ri), &sp, sizeof(sp));
			memcpy(out + sizeof(ri) + sizeof(sp), &a, sizeof(a));
		}
	}
	ri.argsz = need;
	if (lying(s, "short-fd"))
		ri.offset = VFNIC_BAR2_SIZE;   /* the memfd ends there */
	memcpy(out, &ri, sizeof(ri));
	bool send_fd = (ri.flags & VFIO_REGION_INFO_FLAG_MMAP) && !lying(s, "region-fd");
	return vfio_user_reply(s->sock, h, 0, out, have >= need ? need : sizeof(ri),
			       send_fd ? &s->bar2_fd : NULL, send_fd ? 1 : 0);
}

static int srv_irq_info(struct server *s, const struct vfio_user_hdr *h, size_t len)
{
	struct vfio_irq_info ii;

	if (len < sizeof(ii))
		return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
	memcpy(&ii, s->buf, sizeof(ii));
	if (ii.index >= SRV_NUM_IRQS)
		return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
	ii.argsz = sizeof(ii);
	ii.flags = VFIO_IRQ_INFO_EVENTFD;
	switch (ii.index) {
	case VFIO_PCI_INTX_IRQ_INDEX:
		ii.count = 1;
		ii.flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
		break;
	case VFIO_PCI_MSIX_IRQ_INDEX:
		ii.count = VFNIC_NR_VECTORS;
		ii.flags |= VFIO_IRQ_INFO_NORESIZE;
		break;
	default:
		ii.count = 0;
	}
	return vfio_user_reply(s->sock, h, 0, &ii, sizeof(ii), NULL, 0);
}

static void srv_set_fd(int *slot, int fd)
{
	if (*slot >= 0)
		close(*slot);
	*slot = fd;
}

static int srv_set_irqs(struct server *s, const struct vfio_user_hdr *h, size_t len, int *fds,
			unsigned *nfds)
{
	struct vfio_irq_set is;

	if (len < sizeof(is))
		return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
	memcpy(&is, s->buf, sizeof(is));
	if (is.index == VFIO_PCI_MSIX_IRQ_INDEX && (is.flags & VFIO_IRQ_SET_ACTION_TRIGGER)) {
		if (is.start > VFNIC_NR_VECTORS || is.count > VFNIC_NR_VECTORS - is.start)
			return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
		if ((is.flags & VFIO_IRQ_SET_DATA_EVENTFD) && *nfds && *nfds != is.count)
			return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
		if (!is.count && (is.flags & VFIO_IRQ_SET_DATA_NONE)) {
			for (unsigned v = 0; v < VFNIC_NR_VECTORS; v++)
				srv_set_fd(&s->msix_fds[v], -1);
		}
		for (uint32_t i = 0; i < is.count; i++) {
			if (is.flags & VFIO_IRQ_SET_DATA_EVENTFD)
				srv_set_fd(&s->msix_fds[is.start + i], *nfds ? fds[i] : -1);
			else
				srv_irq(s, is.start + i);   /* DATA_NONE trigger */
		}
		if (is.flags & VFIO_IRQ_SET_DATA_EVENTFD)
			*nfds = 0;   /* kept */
	} else if (is.index == VFIO_PCI_INTX_IRQ_INDEX) {
		int *slot = (is.flags & VFIO_IRQ_SET_ACTION_UNMASK) ? &s->intx_unmask_fd : &s->intx_fd;

		if (is.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
			if (is.start != 0 || is.count != 1)
				return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
			srv_set_fd(slot, *nfds ? fds[0] : -1);
			for (unsigned i = 1; i < *nfds; i++)
				close(fds[i]);
			*nfds = 0;   /* fds[0] kept */
			if (slot == &s->intx_fd)
				s->intx_masked = false;
		} else if ((is.flags & VFIO_IRQ_SET_ACTION_TRIGGER) && !is.count) {
			srv_set_fd(&s->intx_fd, -1);   /* INTx disabled */
			srv_set_fd(&s->intx_unmask_fd, -1);
		} else if (is.flags & VFIO_IRQ_SET_ACTION_UNMASK) {
			srv_intx_unmask(s);
		} else if (is.flags & VFIO_IRQ_SET_ACTION_MASK) {
			s->intx_masked = true;
		}
	}
	return vfio_user_reply(s->sock, h, 0, NULL, 0, NULL, 0);
}

static int srv_region_rw(struct server *s, const struct vfio_user_hdr *h, size_t len)
{
	struct vfio_user_region_rw rw;
	bool write = h->command == VFIO_USER_REGION_WRITE;
	uint64_t size;

	if (len < sizeof(rw))
		return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
	memcpy(&rw, s->buf, sizeof(rw));
	size = srv_region_size(rw.region);
	if (!rw.count || rw.count > VFIO_USER_DEFAULT_MAX_XFER || rw.offset > size ||
	    rw.count > size - rw.offset || (write && len != sizeof(rw) + rw.count))
		return vfio_user_reply(s->sock, h, EINVAL, NULL, 0, NULL, 0);
	uint8_t *data = write ? s->buf + sizeof(rw) : s->out + sizeof(rw);

	switch (rw.region) {
	case VFIO_PCI_BAR0_REGION_INDEX:
		if (rw.count != 4 || (rw.offset & 3)) {
			if (!write)
				memset(data, 0, rw.count);
			break;
		}
		if (write) {
			uint32_t v;
			memcpy(&v, data, 4);
			nic_bar0_write(&s->nic, (uint32_t)rw.offset, v);
		} else {
			uint32_t v = nic_bar0_read(&s->nic, (uint32_t)rw.offset);
			memcpy(data, &v, 4);
		}
		break;
	case VFIO_PCI_BAR2_REGION_INDEX:
		s->nic.bar2_traps++;
		if (write)
			memcpy(s->bar2 + rw.offset, data, rw.count);
		else
			memcpy(data, s->bar2 + rw.offset, rw.count);
		break;
	case VFIO_PCI_CONFIG_REGION_INDEX:
		if (write)
			nic_config_write(&s->nic, (uint32_t)rw.offset, data, rw.count);
		else
			nic_config_read(&s->nic, (uint32_t)rw.offset, data, rw.count);
		break;
	}
	memcpy(s->out, &rw, sizeof(rw));
	if (!write && lying(s, "short-read"))
		return vfio_user_reply(s->sock, h, 0, s->out, sizeof(rw), NULL, 0);
	return vfio_user_reply(s->sock, h, 0, s->out, sizeof(rw) + (write ? 0 : rw.count), NULL, 0);
}

static int srv_dispatch(struct server *s, struct vfio_user_hdr *h, size_t len, int *fds,
			unsigned *nfds)
{
	if (lying(s, "reply-id") && h->command != VFIO_USER_VERSION)
		h->msg_id ^= 0x5a5a;
	switch (h->command) {
	case VFIO_USER_VERSION: return srv_version(s, h, len);
	case VFIO_USER_DMA_MAP: return srv_dma_map(s, h, len, fds, *nfds);
	case VFIO_USER_DMA_UNMAP: return srv_dma_unmap(s, h, len);
	case VFIO_USER_DEVICE_GET_INFO: return srv_device_info(s, h);
	case VFIO_USER_DEVICE_GET_REGION_INFO: return srv_region_info(s, h, len);
	case VFIO_USER_DEVICE_GET_IRQ_INFO: return srv_irq_info(s, h, len);
	case VFIO_USER_DEVICE_SET_IRQS: return srv_set_irqs(s, h, len, fds, nfds);
	case VFIO_USER_REGION_READ:
	case VFIO_USER_REGION_WRITE: return srv_region_rw(s, h, len);
	case VFIO_USER_DEVICE_RESET:
		nic_reset(&s->nic);
		return vfio_user_reply(s->sock, h, 0, NULL, 0, NULL, 0);
	default:
		return vfio_user_reply(s->sock, h, ENOSYS, NULL, 0, NULL, 0);
	}
}

/* The socket appears only once it listens (unix_listen): a client that
 * waits for the file and connects at once is never refused. */
static int srv_listen(const char *path)
{
	static const struct unix_listen_opts opts = { .backlog = 1, .mode = 0600 };
	char err[256];
	int l, c;

	l = unix_listen(path, &opts, err, sizeof(err));
	if (l < 0) {
		fprintf(stderr, "vfio-user-nic: %s\n", err);
		return -1;
	}
	c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	close(l);
	unlink(path);
	return c;
}

static int srv_init(struct server *s)
{
	struct nic_env env = { .dma = srv_dma, .irq = srv_irq, .opaque = s,
			       .wire_tx = s->tap_fd >= 0 ? srv_wire_tx : NULL };

	s->msix_fds[0] = s->msix_fds[1] = s->intx_fd = s->intx_unmask_fd = -1;
	s->client_max_xfer = VFIO_USER_DEFAULT_MAX_XFER;
	s->buf = malloc(VFIO_USER_MAX_MSG);
	s->out = malloc(VFIO_USER_MAX_MSG);
	s->dma_out = malloc(VFIO_USER_MAX_MSG);
	s->dma_in = malloc(VFIO_USER_MAX_MSG);
	s->parked_tail = &s->parked;
	if (!s->dma_out || !s->dma_in)
		return -1;
	s->bar2_fd = memfd_create("vfio-user-nic-bar2", MFD_CLOEXEC);
	if (!s->buf || !s->out || s->bar2_fd < 0 || ftruncate(s->bar2_fd, VFNIC_BAR2_SIZE))
		return -1;
	s->bar2 = mmap(NULL, VFNIC_BAR2_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, s->bar2_fd, 0);
	if (s->bar2 == MAP_FAILED)
		return -1;
	nic_init(&s->nic, &env, s->bar2);
	return 0;
}

/* Handle one client command (payload in s->buf). 0, or -1 to stop (reported). */
static int srv_handle(struct server *s, struct vfio_user_hdr *h, size_t len, int *fds,
		      unsigned nfds)
{
	int ret = srv_dispatch(s, h, len, fds, &nfds);

	/* Whatever a handler did not keep (it zeroes nfds then) is closed:
	 * DMA_MAP fds are mmapped already or unused in --dma-msg mode. */
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	if (ret) {
		fprintf(stderr, "vfio-user-nic: send: %s\n", strerror(-ret));
		return -1;
	}
	if (s->exit_after && ++s->handled >= s->exit_after)
		_exit(3);   /* crash simulation: no goodbye */
	return 0;
}

/* Read and handle one command; poll() found the socket readable just now.
 * 0, 1 when the client went away (the normal end), -1 on error. */
static int srv_receive(struct server *s)
{
	struct vfio_user_hdr h;
	int fds[SRV_MAX_FDS];
	unsigned nfds = SRV_MAX_FDS;
	size_t len;
	int ret = vfio_user_recv(s->sock, &h, s->buf, VFIO_USER_MAX_MSG, &len, fds, &nfds,
				 SRV_TIMEOUT_MS);

	if (ret == -ECONNRESET)
		return 1;
	if (ret) {
		fprintf(stderr, "vfio-user-nic: receive: %s\n", strerror(-ret));
		return -1;
	}
	if ((h.flags & VFIO_USER_F_TYPE_MASK) != VFIO_USER_F_COMMAND) {
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		fprintf(stderr, "vfio-user-nic: unexpected reply id %u\n", h.msg_id);
		return -1;
	}
	return srv_handle(s, &h, len, fds, nfds);
}

static bool srv_fd_ready(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* The main loop; returns the exit status. Parked commands first, in order,
 * before anything new is read. Then the socket, while poll()'s answer for it
 * is fresh: the TAP path sends DMA messages and parks whatever the client
 * sent meanwhile, so after it the socket may hold nothing. (Reading the
 * socket after the TAP on a stale POLLIN once blocked us in recv() while the
 * client waited for the reply to the command we had just parked.) */
static int srv_run(struct server *s)
{
	for (;;) {
		struct pollfd pf[3] = { { .fd = s->sock, .events = POLLIN },
					{ .fd = s->intx_unmask_fd, .events = POLLIN },
					{ .fd = s->tap_fd, .events = POLLIN } };
		int ret;

		if (s->broken)
			return 1;
		if (s->parked) {
			struct vfio_user_hdr h;
			int fds[SRV_MAX_FDS];
			unsigned nfds;
			size_t len;

			srv_unpark(s, &h, &len, fds, &nfds);
			if (srv_handle(s, &h, len, fds, nfds))
				return 1;
			continue;
		}
		if (poll(pf, 3, -1) < 0)
			continue;   /* EINTR; negative fds are ignored by poll */
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ret = srv_receive(s);
			if (ret)
				return ret > 0 ? 0 : 1;
		}
		/* That command may have replaced the unmask eventfd: ask again. */
		if (s->intx_unmask_fd >= 0 && srv_fd_ready(s->intx_unmask_fd)) {
			uint64_t n;

			if (read(s->intx_unmask_fd, &n, sizeof(n)) == sizeof(n))
				srv_intx_unmask(s);   /* the guest EOI'd INTx */
		}
		if (s->tap_fd >= 0 && (pf[2].revents & POLLIN))
			srv_tap_rx(s);
	}
}

static void srv_die(int sig)
{
	_exit(3);   /* crash simulation: no goodbye, fds closed by the kernel */
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' }, { "fd", required_argument, NULL, 'f' },
		{ "dma-msg", no_argument, NULL, 'd' },     { "exit-after", required_argument, NULL, 'x' },
		{ "lie", required_argument, NULL, 'l' },   { "die-after-ms", required_argument, NULL, 't' },
		{ "tap", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	struct server s = { .sock = -1, .tap_fd = -1 };
	const char *tap = NULL;
	const char *path = NULL;
	long die_ms = 0;
	int c;

	signal(SIGPIPE, SIG_IGN);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': path = optarg; break;
		case 'f': s.sock = atoi(optarg); break;
		case 'd': s.dma_msg = true; break;
		case 'x': s.exit_after = atol(optarg); break;
		case 'l': s.lie = optarg; break;
		case 't': die_ms = atol(optarg); break;
		case 'T': tap = optarg; break;
		default:
			fprintf(stderr, "usage: %s --socket PATH | --fd N [--dma-msg] [--exit-after N] "
					"[--die-after-ms T] [--tap NAME] [--lie WHAT]\n", argv[0]);
			return 2;
		}
	}
	if (tap) {
		s.tap_fd = srv_tap_open(tap);
		if (s.tap_fd < 0) {
			perror("vfio-user-nic: tap");
			return 1;
		}
	}
	if (srv_init(&s)) {
		perror("vfio-user-nic: init");
		return 1;
	}
	if (path)
		s.sock = srv_listen(path);
	if (s.sock < 0) {
		fprintf(stderr, "vfio-user-nic: no client socket\n");
		return 2;
	}
	if (die_ms > 0) {
		struct itimerval it = { .it_value = { die_ms / 1000, (die_ms % 1000) * 1000 } };

		signal(SIGALRM, srv_die);
		setitimer(ITIMER_REAL, &it, NULL);
	}
	return srv_run(&s);
}
