/* virtio-net state save/load (devices/virtio_net_state.c) without a guest or
 * a TAP: two devices on their own PCI buses (interrupt plumbing mocked), each
 * with SOCK_SEQPACKET socketpairs standing in for its TAP queues (as in
 * test_virtio_net.c). A driven device is saved, its RAM copied, and loaded
 * into a fresh one, which must carry on mid-traffic; hostile trees are
 * refused with a message naming the node and leave the target untouched. */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/pci_regs.h>
#include <linux/virtio_net.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/pci.h"
#include "devices/virtio_net.h"
#include "devices/virtio_net_state.h"
#include "devices/virtio_pci.h"
#include "migration/state.h"
#include "vmm/bus.h"
#include "vmm/layout.h"

#define RAM        (4u << 20)
#define QSZ        16
#define PAIRS      2
#define NR_QUEUES  (2 * PAIRS + 1)
#define RING(q)    (0x10000 + (q) * 0x3000)   /* desc, +0x1000 avail, +0x2000 used */
#define BUF(q, i)  (0x100000 + (q) * 0x40000 + (i) * 0x1000)

static int m_route_add(void *o, uint64_t a, uint32_t d, unsigned *gsi) { *gsi = 24; return 0; }
static int m_route_update(void *o, unsigned g, uint64_t a, uint32_t d) { return 0; }
static int m_irqfd(void *o, int fd, unsigned g, bool assign) { return 0; }
static int m_ioeventfd(void *o, int fd, uint64_t a, uint32_t l, bool pio, bool assign) { return 0; }
static const struct pci_irq_ops mock_irq = {
	.msi_route_add = m_route_add, .msi_route_update = m_route_update,
	.irqfd = m_irqfd, .ioeventfd = m_ioeventfd,
};

/* One "VM": RAM, buses, a virtio-net on PCI with PAIRS back-end sockets. */
struct rig {
	struct guest_mem mem;
	struct bus mmio, pio;
	struct pci_bus pbus;
	struct virtio_net *net;
	int peer[PAIRS];
};

static struct rig src, dst;

#define FEATURES ((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_NET_F_MAC) | \
		  (1ULL << VIRTIO_NET_F_MRG_RXBUF) | (1ULL << VIRTIO_NET_F_CTRL_VQ) | \
		  (1ULL << VIRTIO_NET_F_STATUS) | (1ULL << VIRTIO_NET_F_GUEST_ANNOUNCE) | \
		  (1ULL << VIRTIO_NET_F_MQ))

static void rig_init(struct rig *r, uint8_t mac_last)
{
	struct net_config cfg = { .backend = NET_TAP, .mac = { 0x52, 0x54, 0, 1, 2, mac_last },
				  .has_mac = true };
	int fds[PAIRS];

	memset(r, 0, sizeof(*r));
	cr_assert_eq(mem_init(&r->mem, RAM), 0);
	cr_assert_eq(bus_init(&r->mmio, "mmio"), 0);
	cr_assert_eq(bus_init(&r->pio, "pio"), 0);
	cr_assert_eq(pci_bus_init(&r->pbus, &r->mmio, &r->pio, LAYOUT_PCI_ECAM, &mock_irq, NULL), 0);
	for (unsigned i = 0; i < PAIRS; i++) {
		int sv[2];

		cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
		fds[i] = sv[0];
		r->peer[i] = sv[1];
	}
	r->net = calloc(1, sizeof(*r->net));
	cr_assert_not_null(r->net);
	cr_assert_eq(virtio_net_init(r->net, "net0", &r->mem, &cfg, fds, PAIRS, 0), 0);
	cr_assert_eq(virtio_pci_init(&r->net->vp, &r->net->vdev, &r->pbus, 0x1041, 0x020000), 0);
	r->net->pci_attached = true;
}

static void rig_fini(struct rig *r)
{
	if (r->net) {
		virtio_pci_destroy(&r->net->vp);
		virtio_net_uninit(r->net);
		free(r->net);
		r->net = NULL;
	}
	for (unsigned i = 0; i < PAIRS; i++)
		if (r->peer[i] > 0)
			close(r->peer[i]);
	pci_bus_destroy(&r->pbus);
	bus_destroy(&r->mmio);
	bus_destroy(&r->pio);
	mem_destroy(&r->mem);
}

static void setup(void)
{
	rig_init(&src, 0x11);
	rig_init(&dst, 0x22);
}

static void teardown(void)
{
	rig_fini(&src);
	rig_fini(&dst);
}

TestSuite(virtio_net_state, .init = setup, .fini = teardown);

static void *gpa(struct rig *r, uint64_t a, size_t len) { return mem_gpa_to_hva(&r->mem, a, len); }
static struct vring_avail *avail(struct rig *r, unsigned q) { return gpa(r, RING(q) + 0x1000, 64); }
static struct vring_used *used(struct rig *r, unsigned q) { return gpa(r, RING(q) + 0x2000, 256); }

static void post(struct rig *r, unsigned q, uint16_t head)
{
	struct vring_avail *a = avail(r, q);

	a->ring[a->idx % QSZ] = head;
	a->idx++;
}

static void post_rx_buffer(struct rig *r, unsigned q, uint16_t d)
{
	struct vring_desc *desc = gpa(r, RING(q) + 16ULL * d, 16);

	*desc = (struct vring_desc){ BUF(q, d), 2048, VRING_DESC_F_WRITE, 0 };
	post(r, q, d);
}

static void post_tx_frame(struct rig *r, unsigned q, uint16_t d, const char *text)
{
	struct vring_desc *desc = gpa(r, RING(q) + 16ULL * d, 16);
	uint8_t *b = gpa(r, BUF(q, d), 4096);
	size_t len = strlen(text);

	memset(b, 0, VIRTIO_NET_HDR_LEN);
	memcpy(b + VIRTIO_NET_HDR_LEN, text, len);
	*desc = (struct vring_desc){ BUF(q, d), (uint32_t)(VIRTIO_NET_HDR_LEN + len), 0, 0 };
	post(r, q, d);
}

static int tx(struct rig *r, unsigned pair)
{
	bool more;
	int n;

	pthread_mutex_lock(&r->net->vdev.lock);
	n = virtio_net_tx_process(&r->net->qp[pair], &more);
	pthread_mutex_unlock(&r->net->vdev.lock);
	return n;
}

static int rx(struct rig *r, unsigned pair)
{
	int n;

	pthread_mutex_lock(&r->net->vdev.lock);
	n = virtio_net_rx_process(&r->net->qp[pair]);
	pthread_mutex_unlock(&r->net->vdev.lock);
	return n;
}

/* A driver's initialization (virtio 1.2 §3.1.1) with MSI-X, both pairs in
 * use, some traffic, and RX buffers posted but not yet used. */
static void drive(struct rig *r)
{
	struct pci_device *d = &r->net->vp.pci;
	struct virtio_device *vd = &r->net->vdev;
	uint8_t got[256];

	pci_bus_config_write(&r->pbus, d->slot, 0, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	pci_bus_config_write(&r->pbus, d->slot, 0, d->msix.cap_off + 2, 0x8000, 2);   /* MSI-X enable */
	for (unsigned v = 0; v < 3; v++) {
		uint32_t lo = 0xfee00000, data = 0x40 + v, ctrl = 0;

		pci_msix_mmio_write(d, d->msix.bar, d->msix.table_off + 16 * v, &lo, 4);
		pci_msix_mmio_write(d, d->msix.bar, d->msix.table_off + 16 * v + 8, &data, 4);
		pci_msix_mmio_write(d, d->msix.bar, d->msix.table_off + 16 * v + 12, &ctrl, 4);
	}
	pthread_mutex_lock(&vd->lock);
	virtio_device_set_status(vd, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_device_set_guest_features(vd, 0, (uint32_t)FEATURES);
	virtio_device_set_guest_features(vd, 1, (uint32_t)(FEATURES >> 32));
	virtio_device_set_status(vd, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				     VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert(vd->st.status & VIRTIO_CONFIG_S_FEATURES_OK, "features refused");
	vd->st.config_vector = 0;
	for (unsigned q = 0; q < NR_QUEUES; q++) {
		struct virtqueue *vq = &vd->vqs[q];

		memset(gpa(r, RING(q), 0x3000), 0, 0x3000);
		vq->st.size = QSZ;
		vq->st.desc_addr = RING(q);
		vq->st.avail_addr = RING(q) + 0x1000;
		vq->st.used_addr = RING(q) + 0x2000;
		vq->st.msix_vector = (uint16_t)(1 + q % 2);
		cr_assert_eq(virtq_enable(vq), 0);
	}
	virtio_device_set_status(vd, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	/* As VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 2 would (§5.1.6.5.5). */
	r->net->st.active_pairs = 2;
	pthread_mutex_unlock(&vd->lock);

	/* Traffic: three frames out on tx0, one in on rx0, so the indices move. */
	for (uint16_t i = 0; i < 3; i++) {
		post_tx_frame(r, 1, i, "before");
		cr_assert_eq(tx(r, 0), 1);
		cr_assert_eq(recv(r->peer[0], got, sizeof(got), 0), VIRTIO_NET_HDR_LEN + 6);
	}
	post_rx_buffer(r, 0, 0);
	memset(got, 0, VIRTIO_NET_HDR_LEN);
	memcpy(got + VIRTIO_NET_HDR_LEN, "in-1", 4);
	cr_assert_eq(send(r->peer[0], got, VIRTIO_NET_HDR_LEN + 4, 0), VIRTIO_NET_HDR_LEN + 4);
	cr_assert_eq(rx(r, 0), 1);
	cr_assert_eq(used(r, 0)->idx, 1);
	/* Posted, not used yet: the restored device must fill these. */
	post_rx_buffer(r, 0, 1);
	post_rx_buffer(r, 0, 2);
	/* A fresh MAC the target's configuration does not have. */
	pthread_mutex_lock(&vd->lock);
	r->net->st.mac[5] = 0x99;
	r->net->st.status |= VIRTIO_NET_S_ANNOUNCE;
	pthread_mutex_unlock(&vd->lock);
}

static struct state_node *wchild(struct state_node *n, const char *name)
{
	for (struct state_node *c = n->children; c; c = c->next)
		if (!strcmp(c->name, name))
			return c;
	cr_assert_fail("no node '%s' under '%s'", name, n->name);
	return NULL;
}

typedef void (*mutate_fn)(struct state_node *dev);

/* Save src (mutated by @mutate, if any), serialize, open as hostile input. */
static struct state_tree *save_reopen(mutate_fn mutate, struct state_node *out)
{
	struct state_tree *t = state_tree_new(), *rt;
	struct state_node *n, root;
	char err[256];
	void *blob;
	size_t len;

	cr_assert_not_null(t);
	n = state_add_node(state_tree_root(t), "net0", 1);
	cr_assert_not_null(n);
	cr_assert_eq(virtio_net_state_save(src.net, n), 0, "%s", state_error(t));
	if (mutate)
		mutate(n);
	cr_assert_eq(state_tree_finish(t, &blob, &len), 0, "%s", state_error(t));
	state_tree_free(t);
	cr_assert_eq(state_tree_open(&rt, blob, len, err, sizeof(err)), 0, "%s", err);
	free(blob);
	cr_assert_eq(state_root(rt, &root), 0);
	cr_assert_eq(state_child(&root, "net0", out), 0);
	return rt;
}

/* What a snapshot carries besides the device: guest RAM. */
static void copy_ram(void)
{
	memcpy(dst.mem.base, src.mem.base, RAM);
}

Test(virtio_net_state, round_trip_mid_traffic)
{
	struct virtio_device *a = &src.net->vdev, *b = &dst.net->vdev;
	struct state_node n;
	struct state_tree *t;
	uint8_t frame[64], got[256];

	drive(&src);
	t = save_reopen(NULL, &n);
	copy_ram();
	cr_assert_eq(virtio_net_state_load(dst.net, &n), 0, "%s", state_error(t));
	state_tree_free(t);

	/* Virtio common state, queues, MSI-X, config space. */
	cr_assert_eq(b->st.status, a->st.status);
	cr_assert(b->st.status & VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert_eq(b->st.guest_features, FEATURES);
	cr_assert_eq(b->st.config_vector, 0);
	for (unsigned q = 0; q < NR_QUEUES; q++) {
		cr_assert(b->vqs[q].st.enabled, "queue %u", q);
		cr_assert_not_null(b->vqs[q].desc, "queue %u rings mapped again", q);
		cr_assert_eq(b->vqs[q].st.size, QSZ);
		cr_assert_eq(b->vqs[q].st.desc_addr, RING(q));
		cr_assert_eq(b->vqs[q].st.msix_vector, 1 + q % 2);
		cr_assert_eq(b->vqs[q].st.last_avail_idx, a->vqs[q].st.last_avail_idx, "queue %u", q);
		cr_assert_eq(b->vqs[q].st.used_idx, a->vqs[q].st.used_idx, "queue %u", q);
	}
	cr_assert_eq(b->vqs[1].st.last_avail_idx, 3);
	cr_assert_eq(b->vqs[0].st.used_idx, 1);
	cr_assert_eq(pci_cfg_get16(&dst.net->vp.pci, PCI_COMMAND) & 0x6, 0x6);
	cr_assert(dst.net->vp.pci.msix.enabled);
	cr_assert_eq(dst.net->vp.pci.msix.vec[2].data, 0x42);
	/* Device state: MAC from the state (not the target's config), status, pairs. */
	cr_assert_eq(memcmp(dst.net->st.mac, src.net->st.mac, 6), 0);
	cr_assert_eq(dst.net->st.mac[5], 0x99);
	cr_assert_eq(dst.net->st.status, VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
	cr_assert_eq(dst.net->st.active_pairs, 2);
	cr_assert(dst.net->held, "data path held until the VM is restored");
	virtio_net_restore_done(dst.net);
	cr_assert_not(dst.net->held);
	cr_assert_eq(dst.net->announces, 1, "GUEST_ANNOUNCE requested after restore");

	/* Mid-traffic: a frame lands in a buffer posted before the snapshot ... */
	memset(frame, 0, sizeof(frame));
	memcpy(frame + VIRTIO_NET_HDR_LEN, "after", 5);
	cr_assert_eq(send(dst.peer[0], frame, VIRTIO_NET_HDR_LEN + 5, 0), VIRTIO_NET_HDR_LEN + 5);
	cr_assert_eq(rx(&dst, 0), 1);
	cr_assert_eq(used(&dst, 0)->idx, 2);
	cr_assert_eq(used(&dst, 0)->ring[1].id, 1, "the next posted buffer, not a used one");
	cr_assert_eq(memcmp((uint8_t *)gpa(&dst, BUF(0, 1), 64) + VIRTIO_NET_HDR_LEN, "after", 5), 0);
	/* ... and TX continues from the saved index. */
	post_tx_frame(&dst, 1, 3, "resumed");
	cr_assert_eq(tx(&dst, 0), 1);
	cr_assert_eq(recv(dst.peer[0], got, sizeof(got), 0), VIRTIO_NET_HDR_LEN + 7);
	cr_assert_eq(memcmp(got + VIRTIO_NET_HDR_LEN, "resumed", 7), 0);
	cr_assert_eq(used(&dst, 1)->idx, 4);
	/* The second pair is active too (saved VQ_PAIRS_SET). */
	post_rx_buffer(&dst, 2, 0);
	cr_assert_eq(send(dst.peer[1], frame, VIRTIO_NET_HDR_LEN + 5, 0), VIRTIO_NET_HDR_LEN + 5);
	cr_assert_eq(rx(&dst, 1), 1);
}

/* The read posted ahead holds popped RX chains: the saved state must count
 * them as available, and the source goes on receiving after the save. */
Test(virtio_net_state, save_with_a_read_posted_is_exact)
{
	struct state_node n;
	struct state_tree *t;
	uint8_t frame[64];

	drive(&src);
	cr_assert_eq(rx(&src, 0), 0);
	cr_assert_eq(src.net->qp[0].rx_inflight, 1, "a read is posted on buffer 1");
	cr_assert_eq(src.net->vdev.vqs[0].st.last_avail_idx, 2);
	t = save_reopen(NULL, &n);
	copy_ram();
	cr_assert_eq(virtio_net_state_load(dst.net, &n), 0, "%s", state_error(t));
	state_tree_free(t);
	cr_assert_eq(dst.net->vdev.vqs[0].st.last_avail_idx, 1, "buffer 1 saved as available");
	virtio_net_restore_done(dst.net);
	/* Both sides deliver the next frame into buffer 1. */
	memset(frame, 0, sizeof(frame));
	memcpy(frame + VIRTIO_NET_HDR_LEN, "next", 4);
	for (int side = 0; side < 2; side++) {
		struct rig *r = side ? &dst : &src;

		cr_assert_eq(send(r->peer[0], frame, VIRTIO_NET_HDR_LEN + 4, 0), VIRTIO_NET_HDR_LEN + 4);
		cr_assert_eq(rx(r, 0), 1, "side %d", side);
		cr_assert_eq(used(r, 0)->ring[1].id, 1, "side %d", side);
		cr_assert_eq(memcmp((uint8_t *)gpa(r, BUF(0, 1), 64) + VIRTIO_NET_HDR_LEN, "next", 4), 0);
	}
}

/* A migration pauses the device while its back end pushes back: the writes
 * the save's drain cancels are saved as available, not lost, and leave from
 * the destination after the frames the source sent, in order. */
Test(virtio_net_state, save_with_writes_waiting_sends_them_at_the_destination)
{
	static char text[2001];
	static uint8_t got[4096];
	const uint16_t first = 3, frames = 8;
	struct state_node n;
	struct state_tree *t;
	int sndbuf = 4096;
	uint16_t seen = 0;

	drive(&src);
	cr_assert_eq(setsockopt(src.net->qp[0].fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
	memset(text, 'x', sizeof(text) - 1);
	for (uint16_t i = 0; i < frames; i++) {
		text[0] = (char)('a' + i);
		post_tx_frame(&src, 1, (uint16_t)(first + i), text);
	}
	cr_assert_eq(tx(&src, 0), frames);
	cr_assert_gt(src.net->inflight, 0, "the socket cannot take them all");
	t = save_reopen(NULL, &n);
	cr_assert_eq(src.net->qp[0].tx_errors, 0, "the pause dropped a frame");
	copy_ram();
	cr_assert_eq(virtio_net_state_load(dst.net, &n), 0, "%s", state_error(t));
	state_tree_free(t);
	cr_assert_eq(dst.net->vdev.vqs[1].st.last_avail_idx, src.net->vdev.vqs[1].st.used_idx);
	virtio_net_restore_done(dst.net);
	/* What the source sent before the pause, then the rest from the destination. */
	while (recv(src.peer[0], got, sizeof(got), MSG_DONTWAIT) > 0) {
		cr_assert_eq(got[VIRTIO_NET_HDR_LEN], 'a' + seen, "frame %u", seen);
		seen++;
	}
	cr_assert_lt(seen, frames);
	cr_assert_eq(tx(&dst, 0), frames - seen);
	while (recv(dst.peer[0], got, sizeof(got), MSG_DONTWAIT) > 0) {
		cr_assert_eq(got[VIRTIO_NET_HDR_LEN], 'a' + seen, "frame %u", seen);
		seen++;
	}
	cr_assert_eq(seen, frames, "every frame left once");
	cr_assert_eq(used(&dst, 1)->idx, first + frames);
}

Test(virtio_net_state, save_needs_pci)
{
	struct state_tree *t = state_tree_new();
	struct state_node *n = state_add_node(state_tree_root(t), "net0", 1);

	src.net->pci_attached = false;
	cr_assert_eq(virtio_net_state_save(src.net, n), -EOPNOTSUPP);
	src.net->pci_attached = true;
	state_tree_free(t);
}

/* The target must be exactly as created. */
static void assert_untouched(void)
{
	struct virtio_device *b = &dst.net->vdev;

	cr_assert_eq(b->st.status, 0, "nothing applied");
	cr_assert_eq(b->st.guest_features, 0);
	for (unsigned q = 0; q < NR_QUEUES; q++)
		cr_assert_not(b->vqs[q].st.enabled, "queue %u", q);
	cr_assert_eq(pci_cfg_get16(&dst.net->vp.pci, PCI_COMMAND) & 0x6, 0);
	cr_assert_not(dst.net->vp.pci.msix.enabled);
	cr_assert_eq(dst.net->st.mac[5], 0x22);
	cr_assert_eq(dst.net->st.status, VIRTIO_NET_S_LINK_UP);
	cr_assert_eq(dst.net->st.active_pairs, 1);
	cr_assert_not(dst.net->held);
}

static void expect_refused(mutate_fn mutate, const char *where, const char *what)
{
	struct state_node n;
	struct state_tree *t;
	const char *e;

	drive(&src);
	t = save_reopen(mutate, &n);
	copy_ram();
	cr_assert_eq(virtio_net_state_load(dst.net, &n), -EINVAL);
	e = state_error(t);
	cr_assert(strstr(e, where) && strstr(e, what), "expected '%s' and '%s' in: %s", where, what, e);
	cr_assert_null(strchr(e, '\n'), "one line: %s", e);
	state_tree_free(t);
	assert_untouched();
}

static struct state_node *virtio_node(struct state_node *dev)
{
	return wchild(wchild(dev, "transport"), "virtio");
}

static void bad_version(struct state_node *dev) { state_set_version(dev, 7); }
static void short_mac(struct state_node *dev)
{
	static const uint8_t mac[5] = { 0x52, 0x54, 0, 1, 2 };

	state_put_bytes(wchild(dev, "net"), "mac", mac, sizeof(mac));
}
static void queue_out_of_range(struct state_node *dev)
{
	struct state_node *q = state_add_node(virtio_node(dev), "queue@9", 1);

	state_put_u32(q, "size", 16);
}
static void index_too_big(struct state_node *dev)
{
	state_put_u32(wchild(virtio_node(dev), "queue@1"), "last-avail", 0x10000);
}
static void queue_too_big(struct state_node *dev)
{
	state_put_u32(wchild(virtio_node(dev), "queue@0"), "size", 512);
}
static void features_not_offered(struct state_node *dev)
{
	/* tun_offloads is 0 here: no GUEST_TSO4 on offer. */
	state_put_u64(virtio_node(dev), "features", FEATURES | (1ULL << VIRTIO_NET_F_GUEST_TSO4));
}
static void vector_out_of_range(struct state_node *dev)
{
	state_put_u32(wchild(virtio_node(dev), "queue@3"), "vector", 200);
}
static void too_many_active_pairs(struct state_node *dev)
{
	state_put_u32(wchild(dev, "net"), "active-pairs", 3);
}
static void other_queue_layout(struct state_node *dev)
{
	state_put_u32(wchild(dev, "net"), "queue-pairs", 1);
}
static void announce_without_feature(struct state_node *dev)
{
	state_put_u64(virtio_node(dev), "features", FEATURES & ~(1ULL << VIRTIO_NET_F_GUEST_ANNOUNCE));
}
static void no_net_node(struct state_node *dev)
{
	struct state_node *n = wchild(dev, "net");

	free(n->name);
	n->name = strdup("nett");
}

Test(virtio_net_state, hostile_bad_version)
{
	expect_refused(bad_version, "/net0", "version 7 not supported");
}
Test(virtio_net_state, hostile_truncated_property)
{
	expect_refused(short_mac, "/net0/net", "'mac'");
}
Test(virtio_net_state, hostile_queue_out_of_range)
{
	expect_refused(queue_out_of_range, "queue@9", "no such queue");
}
Test(virtio_net_state, hostile_index_out_of_range)
{
	expect_refused(index_too_big, "queue@1", "last-avail");
}
Test(virtio_net_state, hostile_queue_bigger_than_max)
{
	expect_refused(queue_too_big, "queue@0", "size");
}
Test(virtio_net_state, hostile_features_not_offered)
{
	expect_refused(features_not_offered, "/net0/transport/virtio", "not offered");
}
Test(virtio_net_state, hostile_msix_vector_out_of_range)
{
	expect_refused(vector_out_of_range, "queue@3", "vector 200");
}
Test(virtio_net_state, hostile_more_active_pairs_than_configured)
{
	expect_refused(too_many_active_pairs, "/net0/net", "active-pairs 3");
}
Test(virtio_net_state, hostile_other_queue_layout)
{
	expect_refused(other_queue_layout, "/net0/net", "queue-pairs 1");
}
Test(virtio_net_state, hostile_announce_without_feature)
{
	expect_refused(announce_without_feature, "/net0/net", "GUEST_ANNOUNCE");
}
Test(virtio_net_state, hostile_missing_node)
{
	expect_refused(no_net_node, "/net0", "net");
}
