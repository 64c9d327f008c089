/* virtio-net device model: feature negotiation, config space, RX/TX/ctrl
 * queues, io_uring-driven event handling. See virtio_net.h. */
#include "devices/virtio_net.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <linux/if_tun.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include "devices/pci_vm.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define NET_RX_BUDGET      256
#define NET_RX_MAX_IOV     1024      /* IOV_MAX */
#define NET_ETH_OVERHEAD   (14 + 4)  /* Ethernet header + one VLAN tag */
#define NET_GSO_MAX_FRAME  (65535 + 14 + 4)
#define NET_CTRL_QUEUE_SIZE 64

/* io_uring user_data: kind in the high 32 bits, index in the low. */
enum net_tag { NET_TAG_KICK = 1, NET_TAG_TAP = 2 };
#define NET_TAG(kind, idx) (((uint64_t)(kind) << 32) | (uint32_t)(idx))

static struct virtio_net *to_net(struct virtio_device *vdev) { return vdev->opaque; }

static unsigned ctrl_queue_index(const struct virtio_net *net) { return 2 * net->nr_pairs; }

static bool net_has(const struct virtio_net *net, unsigned bit)
{
	return virtio_has_feature(&net->vdev, bit);
}

/* ---- features and config space (§5.1.3, §5.1.4) ------------------------------- */

static uint64_t net_offered_features(const struct virtio_net *net)
{
	uint64_t f = (1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_STATUS) |
		     (1ULL << VIRTIO_NET_F_MTU) | (1ULL << VIRTIO_NET_F_MRG_RXBUF) |
		     (1ULL << VIRTIO_NET_F_CTRL_VQ) | (1ULL << VIRTIO_NET_F_GUEST_ANNOUNCE);
	unsigned t = net->tun_offloads;

	if (net->nr_pairs > 1)
		f |= 1ULL << VIRTIO_NET_F_MQ;
	if (t & TUN_F_CSUM)
		f |= (1ULL << VIRTIO_NET_F_CSUM) | (1ULL << VIRTIO_NET_F_GUEST_CSUM);
	if (t & TUN_F_TSO4)
		f |= (1ULL << VIRTIO_NET_F_HOST_TSO4) | (1ULL << VIRTIO_NET_F_GUEST_TSO4);
	if (t & TUN_F_TSO6)
		f |= (1ULL << VIRTIO_NET_F_HOST_TSO6) | (1ULL << VIRTIO_NET_F_GUEST_TSO6);
	if (t & TUN_F_TSO_ECN)
		f |= (1ULL << VIRTIO_NET_F_HOST_ECN) | (1ULL << VIRTIO_NET_F_GUEST_ECN);
	if (t & TUN_F_UFO)
		f |= (1ULL << VIRTIO_NET_F_HOST_UFO) | (1ULL << VIRTIO_NET_F_GUEST_UFO);
	return f;
}

/* §5.1.3.1: feature dependencies the driver must respect. */
static int net_features_ok(struct virtio_device *vdev)
{
	struct virtio_net *net = to_net(vdev);
	static const struct { unsigned feature, needs, needs_alt; } deps[] = {
		{ VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_CSUM },
		{ VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_CSUM },
		{ VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6 },
		{ VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_CSUM },
		{ VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_CSUM },
		{ VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_CSUM },
		{ VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6 },
		{ VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_CSUM },
		{ VIRTIO_NET_F_GUEST_ANNOUNCE, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_CTRL_VQ },
		{ VIRTIO_NET_F_MQ, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_CTRL_VQ },
	};

	for (unsigned i = 0; i < sizeof(deps) / sizeof(deps[0]); i++) {
		if (net_has(net, deps[i].feature) && !net_has(net, deps[i].needs) &&
		    !net_has(net, deps[i].needs_alt)) {
			log_warn(net->dev.name, "driver accepted feature %u without %u: refusing FEATURES_OK",
				 deps[i].feature, deps[i].needs);
			return -EINVAL;
		}
	}
	return 0;
}

static void net_get_config(struct virtio_device *vdev, uint32_t off, void *data, uint32_t len)
{
	struct virtio_net *net = to_net(vdev);
	struct virtio_net_config c;

	memset(&c, 0, sizeof(c));
	memcpy(c.mac, net->st.mac, 6);
	c.status = net->st.status;
	c.max_virtqueue_pairs = (uint16_t)net->nr_pairs;
	c.mtu = net->mtu;
	c.speed = 0xffffffff;   /* unknown (SPEED_DUPLEX is not offered) */
	c.duplex = 0xff;
	if (off >= sizeof(c))
		return;
	memcpy(data, (uint8_t *)&c + off, len < sizeof(c) - off ? len : sizeof(c) - off);
}

static void net_set_config(struct virtio_device *vdev, uint32_t off, const void *data, uint32_t len)
{
	/* Modern devices have a read-only config space (§5.1.4.1: mac is
	 * driver-writable only for legacy devices). */
}

/* ---- back-end queue steering -------------------------------------------------- */

/* §5.1.6.5.5: only the first active_pairs RX queues get frames. Detach the
 * other TAP queues so the kernel does not steer flows to them. */
static void net_apply_active_pairs(struct virtio_net *net)
{
	if (net->nr_pairs < 2)
		return;
	for (unsigned i = 0; i < net->nr_pairs; i++) {
		int ret = net_tap_set_queue_active(net->qp[i].fd, i < net->st.active_pairs);

		if (ret && ret != -EINVAL)
			log_warn(net->dev.name, "TUNSETQUEUE on queue %u: %s", i, strerror_safe(-ret));
	}
}

static void net_apply_offloads(struct virtio_net *net, bool on)
{
	unsigned t = 0;

	if (!net->tun_offloads)
		return;
	if (on && net_has(net, VIRTIO_NET_F_GUEST_CSUM)) {
		t |= TUN_F_CSUM;
		if (net_has(net, VIRTIO_NET_F_GUEST_TSO4))
			t |= TUN_F_TSO4;
		if (net_has(net, VIRTIO_NET_F_GUEST_TSO6))
			t |= TUN_F_TSO6;
		if (net_has(net, VIRTIO_NET_F_GUEST_ECN))
			t |= TUN_F_TSO_ECN;
		if (net_has(net, VIRTIO_NET_F_GUEST_UFO))
			t |= TUN_F_UFO;
	}
	t &= net->tun_offloads;
	for (unsigned i = 0; i < net->nr_pairs; i++) {
		int ret = net_tap_set_offloads(net->qp[i].fd, t);

		if (ret)
			log_warn(net->dev.name, "TUNSETOFFLOAD 0x%x: %s", t, strerror_safe(-ret));
	}
}

static void net_kick_self(struct virtqueue *vq)
{
	uint64_t one = 1;

	if (write(vq->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn(vq->vdev->name, "self kick: %s", strerror_safe(errno));
}

static void net_driver_ok(struct virtio_device *vdev)
{
	struct virtio_net *net = to_net(vdev);

	net->st.active_pairs = 1;   /* §5.1.6.5.5: until VQ_PAIRS_SET, one pair */
	net_apply_active_pairs(net);
	net_apply_offloads(net, true);
	/* Buffers may have been posted before DRIVER_OK: look at every queue. */
	for (unsigned i = 0; i < vdev->nr_queues; i++)
		net_kick_self(&vdev->vqs[i]);
}

void virtio_net_backend_sync(struct virtio_net *net)
{
	pthread_mutex_lock(&net->vdev.lock);
	net->vdev.quiesced = true;
	for (unsigned i = 0; i < net->nr_pairs; i++)
		net->qp[i].rx_blocked = false;
	net_apply_active_pairs(net);
	net_apply_offloads(net, net->vdev.st.status & VIRTIO_CONFIG_S_DRIVER_OK);
	pthread_mutex_unlock(&net->vdev.lock);
}

void virtio_net_restore_done(struct virtio_net *net)
{
	virtio_net_announce(net);   /* -EOPNOTSUPP without GUEST_ANNOUNCE: fine */
}

void virtio_net_quiesce(struct virtio_net *net, bool on)
{
	bool running;

	virtio_device_quiesce(&net->vdev, on);
	if (on)
		return;
	pthread_mutex_lock(&net->vdev.lock);
	running = net->vdev.st.status & VIRTIO_CONFIG_S_DRIVER_OK;
	pthread_mutex_unlock(&net->vdev.lock);
	/* Kicks and TAP wake-ups consumed while quiesced went unanswered, and
	 * buffers or frames posted before a snapshot were never looked at: look
	 * at every queue once (a kick reaches the TAP side through RX). */
	if (running)
		for (unsigned i = 0; i < net->vdev.nr_queues; i++)
			net_kick_self(&net->vdev.vqs[i]);
}

static void net_reset(struct virtio_device *vdev)
{
	struct virtio_net *net = to_net(vdev);

	for (unsigned i = 0; i < net->nr_pairs; i++)
		net->qp[i].rx_blocked = false;
	net->st.status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
	net->st.active_pairs = 1;
}

static const struct virtio_device_ops virtio_net_vdev_ops = {
	.get_config = net_get_config,
	.set_config = net_set_config,
	.features_ok = net_features_ok,
	.driver_ok = net_driver_ok,
	.reset = net_reset,
};

/* ---- TX (§5.1.6.2) --------------------------------------------------------------- */

/* Copy and sanitize the driver's header: offload requests are honoured only
 * if the matching feature was negotiated. Returns false to drop the frame. */
static bool net_tx_header(struct virtio_net *net, struct virtio_net_hdr_mrg_rxbuf *h)
{
	uint8_t gso = h->hdr.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;

	h->num_buffers = 0;
	if (!net_has(net, VIRTIO_NET_F_CSUM))
		h->hdr.flags &= (uint8_t)~VIRTIO_NET_HDR_F_NEEDS_CSUM;
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_NONE:
		return true;
	case VIRTIO_NET_HDR_GSO_TCPV4:
		return net_has(net, VIRTIO_NET_F_HOST_TSO4);
	case VIRTIO_NET_HDR_GSO_TCPV6:
		return net_has(net, VIRTIO_NET_F_HOST_TSO6);
	case VIRTIO_NET_HDR_GSO_UDP:
		return net_has(net, VIRTIO_NET_F_HOST_UFO);
	default:
		return false;
	}
}

/* Send one popped chain to the back end. Returns 0, or -EINVAL when the
 * chain violates the spec (device is then broken). */
static int net_tx_one(struct net_queue_pair *qp, const struct virtq_elem *e)
{
	struct virtio_net *net = qp->net;
	struct virtio_net_hdr_mrg_rxbuf hdr;
	struct iovec iov[VIRTQ_MAX_SIZE + 1];
	unsigned n = 1;
	size_t skip = VIRTIO_NET_HDR_LEN;
	ssize_t w;

	/* §5.1.6.2: TX buffers are device-readable and start with the header. */
	if (e->in_num || e->out_len < VIRTIO_NET_HDR_LEN) {
		virtio_device_set_broken(&net->vdev, "tx%u: chain %u has %s", qp->index, e->head,
					 e->in_num ? "device-writable buffers" : "no room for the header");
		return -EINVAL;
	}
	iov_to_buf(e->iov, e->out_num, 0, &hdr, sizeof(hdr));
	if (!net_tx_header(net, &hdr)) {
		qp->tx_errors++;
		return 0;
	}
	iov[0] = (struct iovec){ .iov_base = &hdr, .iov_len = sizeof(hdr) };
	for (unsigned i = 0; i < e->out_num; i++) {
		size_t len = e->iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		iov[n++] = (struct iovec){ .iov_base = (uint8_t *)e->iov[i].iov_base + skip,
					   .iov_len = len - skip };
		skip = 0;
	}
	w = writev(qp->fd, iov, (int)n);
	if (w < 0) {
		/* The TAP drops (EAGAIN) or rejects (EINVAL: bad GSO) the frame, like a NIC would. */
		qp->tx_errors++;
		return 0;
	}
	qp->tx_frames++;
	qp->tx_bytes += e->out_len - VIRTIO_NET_HDR_LEN;
	return 0;
}

int virtio_net_tx_process(struct net_queue_pair *qp, bool *more)
{
	struct virtqueue *vq = qp->txq;
	uint16_t batch = 0;
	int frames = 0, r = 0;

	*more = false;
	if (qp->net->vdev.quiesced)
		return 0;
	virtq_set_notification(vq, false);
	for (;;) {
		if (frames >= VIRTIO_NET_TX_BUDGET) {
			*more = virtq_avail_count(vq) != 0;
			break;
		}
		r = virtq_pop(vq, qp->tx_elem);
		if (r < 0)
			break;
		if (r == 0) {
			/* Drained: ask for a kick, and look again in case one raced us. */
			if (virtq_set_notification(vq, true))
				continue;
			break;
		}
		r = net_tx_one(qp, qp->tx_elem);
		if (r < 0)
			break;
		virtq_fill(vq, qp->tx_elem, 0, batch++);
		frames++;
	}
	if (batch) {
		virtq_flush(vq, batch);
		virtq_notify(vq);
		qp->tx_batches++;
	}
	return r < 0 ? r : frames;
}

/* ---- RX (§5.1.6.3, §5.1.6.4) -------------------------------------------------------- */

/* Largest frame (with header) the TAP may hand us. */
static size_t net_rx_max_frame(const struct virtio_net *net)
{
	bool gso = net_has(net, VIRTIO_NET_F_GUEST_TSO4) || net_has(net, VIRTIO_NET_F_GUEST_TSO6) ||
		   net_has(net, VIRTIO_NET_F_GUEST_UFO);

	return VIRTIO_NET_HDR_LEN + (gso ? NET_GSO_MAX_FRAME : net->mtu + NET_ETH_OVERHEAD);
}

/* Pop RX chains until they can hold @need bytes. Returns the number popped,
 * or -errno if the driver broke the spec. *cap gets their total size. */
static int net_rx_gather(struct net_queue_pair *qp, size_t need, size_t *cap)
{
	struct virtio_net *net = qp->net;
	bool mrg = net_has(net, VIRTIO_NET_F_MRG_RXBUF);
	int k = 0;

	*cap = 0;
	while (k < VIRTIO_NET_RX_ELEMS && *cap < need) {
		struct virtq_elem *e = &qp->rx_elems[k];
		int r = virtq_pop(qp->rxq, e);

		if (r < 0)
			return r;
		if (r == 0)
			break;
		k++;
		/* §5.1.6.3: RX buffers are device-writable and hold at least the header. */
		if (e->out_num || e->in_len < VIRTIO_NET_HDR_LEN) {
			virtio_device_set_broken(&net->vdev, "rx%u: chain %u is %s", qp->index, e->head,
						 e->out_num ? "device-readable" : "smaller than the header");
			return -EINVAL;
		}
		*cap += e->in_len;
		if (!mrg)
			break;
	}
	return k;
}

/* Receive one frame into the gathered chains. Returns 1 if a frame was
 * delivered, 0 if the back end is empty, -errno on a read error. */
static int net_rx_one(struct net_queue_pair *qp, int k)
{
	struct virtqueue *vq = qp->rxq;
	struct iovec iov[NET_RX_MAX_IOV];
	unsigned n = 0;
	ssize_t got;
	size_t rem;
	uint16_t used = 0, nbuf;

	for (int i = 0; i < k && n < NET_RX_MAX_IOV; i++) {
		const struct virtq_elem *e = &qp->rx_elems[i];

		for (unsigned s = 0; s < e->in_num && n < NET_RX_MAX_IOV; s++)
			iov[n++] = e->iov[e->out_num + s];
	}
	got = readv(qp->fd, iov, (int)n);
	if (got < 0)
		return errno == EAGAIN ? 0 : -errno;
	if ((size_t)got < VIRTIO_NET_HDR_LEN) {
		qp->rx_errors++;
		virtq_unpop(vq, (uint16_t)k);
		return 1;
	}
	/* §5.1.6.4: num_buffers tells the driver how many chains the frame
	 * spans. Written before virtq_fill() marks the pages dirty. */
	rem = (size_t)got;
	for (int i = 0; i < k && rem; i++) {
		rem -= rem < qp->rx_elems[i].in_len ? rem : qp->rx_elems[i].in_len;
		used++;
	}
	nbuf = used;
	iov_from_buf(&qp->rx_elems[0].iov[qp->rx_elems[0].out_num], qp->rx_elems[0].in_num,
		     offsetof(struct virtio_net_hdr_mrg_rxbuf, num_buffers), &nbuf, sizeof(nbuf));
	rem = (size_t)got;
	for (uint16_t i = 0; i < used; i++) {
		uint32_t len = rem < qp->rx_elems[i].in_len ? (uint32_t)rem : qp->rx_elems[i].in_len;

		virtq_fill(vq, &qp->rx_elems[i], len, i);
		rem -= len;
	}
	virtq_unpop(vq, (uint16_t)(k - used));
	virtq_flush(vq, used);
	qp->rx_frames++;
	qp->rx_bytes += (size_t)got - VIRTIO_NET_HDR_LEN;
	return 1;
}

int virtio_net_rx_process(struct net_queue_pair *qp)
{
	struct virtio_net *net = qp->net;
	struct virtqueue *vq = qp->rxq;
	size_t need = net_rx_max_frame(net), cap;
	int frames = 0, ret = 0;

	if (qp->index >= net->st.active_pairs || net->vdev.quiesced)
		return 0;
	qp->rx_blocked = false;
	while (frames < NET_RX_BUDGET) {
		int k = net_rx_gather(qp, need, &cap);

		if (k < 0) {
			ret = k;
			break;
		}
		/* Too little room for a full-size frame and nothing more posted:
		 * wait for buffers rather than truncate (unless the guest has
		 * already posted all it can). */
		if (k == 0 || (cap < need && k < VIRTIO_NET_RX_ELEMS &&
			       cap < (size_t)VIRTIO_NET_HDR_LEN + net->mtu + NET_ETH_OVERHEAD)) {
			virtq_unpop(vq, (uint16_t)k);
			if (virtq_set_notification(vq, true))
				continue;
			qp->rx_blocked = true;
			qp->rx_no_buffers++;
			break;
		}
		ret = net_rx_one(qp, k);
		if (ret <= 0) {
			virtq_unpop(vq, (uint16_t)k);
			if (ret < 0) {
				qp->rx_errors++;
				log_warn(net->dev.name, "rx%u read: %s", qp->index, strerror_safe(-ret));
			}
			ret = 0;
			break;
		}
		ret = 0;
		frames++;
	}
	if (frames)
		virtq_notify(vq);
	if (frames >= NET_RX_BUDGET)
		net_kick_self(vq);   /* more may be waiting: come back after others ran */
	return ret < 0 ? ret : frames;
}

/* ---- control queue (§5.1.6.5) -------------------------------------------------------- */

static uint8_t net_ctrl_command(struct virtio_net *net, const struct virtq_elem *e, uint8_t cls,
				uint8_t cmd)
{
	uint16_t pairs;

	switch (cls) {
	case VIRTIO_NET_CTRL_MQ:
		if (cmd != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET || !net_has(net, VIRTIO_NET_F_MQ) ||
		    iov_to_buf(e->iov, e->out_num, 2, &pairs, 2) != 2 || pairs < 1 ||
		    pairs > net->nr_pairs)
			return VIRTIO_NET_ERR;
		net->st.active_pairs = pairs;
		net_apply_active_pairs(net);
		for (unsigned i = 0; i < pairs; i++)
			net_kick_self(net->qp[i].rxq);
		return VIRTIO_NET_OK;
	case VIRTIO_NET_CTRL_ANNOUNCE:
		if (cmd != VIRTIO_NET_CTRL_ANNOUNCE_ACK || !net_has(net, VIRTIO_NET_F_GUEST_ANNOUNCE))
			return VIRTIO_NET_ERR;
		net->st.status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
		return VIRTIO_NET_OK;
	default:
		return VIRTIO_NET_ERR;
	}
}

int virtio_net_ctrl_process(struct virtio_net *net)
{
	struct virtqueue *vq = &net->vdev.vqs[ctrl_queue_index(net)];
	struct virtq_elem *e = net->ctrl_elem;
	int r, n = 0;

	if (net->vdev.quiesced)
		return 0;
	while ((r = virtq_pop(vq, e)) > 0) {
		uint8_t hdr[2], ack;

		/* §5.1.6.5: class+command readable, then one writable ack byte. */
		if (e->out_len < 2 || e->in_len < 1) {
			virtio_device_set_broken(&net->vdev, "ctrl: malformed command chain %u", e->head);
			return -EINVAL;
		}
		iov_to_buf(e->iov, e->out_num, 0, hdr, 2);
		ack = net_ctrl_command(net, e, hdr[0], hdr[1]);
		net->ctrl_cmds++;
		if (ack != VIRTIO_NET_OK)
			net->ctrl_errors++;
		iov_from_buf(&e->iov[e->out_num], e->in_num, 0, &ack, 1);
		virtq_push(vq, e, 1);
		n++;
	}
	if (n)
		virtq_notify(vq);
	virtq_set_notification(vq, true);
	return r < 0 ? r : n;
}

int virtio_net_announce(struct virtio_net *net)
{
	int ret = 0;

	pthread_mutex_lock(&net->vdev.lock);
	if (!net_has(net, VIRTIO_NET_F_GUEST_ANNOUNCE) ||
	    !(net->vdev.st.status & VIRTIO_CONFIG_S_DRIVER_OK)) {
		ret = -EOPNOTSUPP;
	} else {
		net->st.status |= VIRTIO_NET_S_ANNOUNCE;
		net->announces++;
		virtio_device_config_changed(&net->vdev);
	}
	pthread_mutex_unlock(&net->vdev.lock);
	return ret;
}

int virtio_net_restore_done_all(struct vm *vm)
{
	int n = 0;

	for (struct device *d = vm->devices; d; d = d->next) {
		if (d->ops && d->ops->type && !strcmp(d->ops->type, "virtio-net")) {
			virtio_net_restore_done((struct virtio_net *)((char *)d - offsetof(struct virtio_net, dev)));
			n++;
		}
	}
	return n;
}

int virtio_net_announce_all(struct vm *vm)
{
	int n = 0;

	for (struct device *d = vm->devices; d; d = d->next) {
		if (d->ops && d->ops->type && !strcmp(d->ops->type, "virtio-net") &&
		    virtio_net_announce((struct virtio_net *)((char *)d - offsetof(struct virtio_net, dev))) == 0)
			n++;
	}
	return n;
}

/* ---- construction without PCI ------------------------------------------------------------- */

int virtio_net_init(struct virtio_net *net, const char *name, struct guest_mem *mem,
		    const struct net_config *cfg, const int *fds, unsigned nr_pairs,
		    unsigned tun_offloads)
{
	int ret;

	if (nr_pairs == 0 || nr_pairs > VIRTIO_NET_MAX_PAIRS)
		return -EINVAL;
	net->cfg = *cfg;
	net->nr_pairs = nr_pairs;
	net->mtu = VIRTIO_NET_DEFAULT_MTU;
	net->tun_offloads = tun_offloads;
	net->st.status = VIRTIO_NET_S_LINK_UP;
	net->st.active_pairs = 1;
	memcpy(net->st.mac, cfg->mac, 6);
	snprintf(net->dev.name, sizeof(net->dev.name), "%s", name);
	net->qp = calloc(nr_pairs, sizeof(*net->qp));
	net->ctrl_elem = malloc(sizeof(*net->ctrl_elem));
	if (!net->qp || !net->ctrl_elem) {
		ret = -ENOMEM;
		goto err;
	}
	for (unsigned i = 0; i < nr_pairs; i++)
		net->qp[i].fd = -1;
	ret = virtio_device_init(&net->vdev, name, mem, VIRTIO_ID_NET, 2 * nr_pairs + 1,
				 VIRTIO_NET_QUEUE_SIZE, &virtio_net_vdev_ops, net);
	if (ret)
		goto err;
	net->vdev.vqs[ctrl_queue_index(net)].max_size = NET_CTRL_QUEUE_SIZE;
	net->vdev.vqs[ctrl_queue_index(net)].st.size = NET_CTRL_QUEUE_SIZE;
	net->vdev.host_features |= net_offered_features(net);
	for (unsigned i = 0; i < nr_pairs; i++) {
		struct net_queue_pair *qp = &net->qp[i];

		qp->net = net;
		qp->index = i;
		qp->rxq = &net->vdev.vqs[2 * i];
		qp->txq = &net->vdev.vqs[2 * i + 1];
		qp->rx_elems = calloc(VIRTIO_NET_RX_ELEMS, sizeof(*qp->rx_elems));
		qp->tx_elem = malloc(sizeof(*qp->tx_elem));
		if (!qp->rx_elems || !qp->tx_elem) {
			ret = -ENOMEM;
			goto err;
		}
		qp->fd = fds[i];
	}
	return 0;
err:
	virtio_net_uninit(net);
	return ret;
}

void virtio_net_uninit(struct virtio_net *net)
{
	if (net->qp) {
		for (unsigned i = 0; i < net->nr_pairs; i++) {
			if (net->qp[i].fd >= 0)
				close(net->qp[i].fd);
			free(net->qp[i].rx_elems);
			free(net->qp[i].tx_elem);
		}
		free(net->qp);
		net->qp = NULL;
	}
	free(net->ctrl_elem);
	net->ctrl_elem = NULL;
	virtio_device_destroy(&net->vdev);
}

/* ---- event handling ------------------------------------------------------------------------ */

static int net_arm_poll(struct virtio_net *net, int fd, uint64_t tag)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&net->ring);

	if (!sqe) {
		io_uring_submit(&net->ring);
		sqe = io_uring_get_sqe(&net->ring);
		if (!sqe)
			return -EBUSY;
	}
	io_uring_prep_poll_multishot(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, tag);
	return 0;
}

static int net_tag_fd(struct virtio_net *net, uint64_t tag)
{
	unsigned idx = (uint32_t)tag;

	if ((tag >> 32) == NET_TAG_KICK)
		return idx < net->vdev.nr_queues ? net->vdev.vqs[idx].kick_fd : -1;
	return idx < net->nr_pairs ? net->qp[idx].fd : -1;
}

static void net_drain_eventfd(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) == sizeof(v))
		;
}

/* What one batch of completions asks us to do. */
struct net_work {
	bool queue[VIRTIO_MAX_QUEUES];
	bool tap[VIRTIO_NET_MAX_PAIRS];
};

static void net_process(struct virtio_net *net, const struct net_work *w)
{
	struct virtio_device *vdev = &net->vdev;

	pthread_mutex_lock(&vdev->lock);
	for (unsigned i = 0; i < net->nr_pairs && !vdev->broken && !vdev->quiesced; i++) {
		struct net_queue_pair *qp = &net->qp[i];
		bool more = false;

		if (w->queue[2 * i + 1]) {
			virtio_net_tx_process(qp, &more);
			if (more)
				net_kick_self(qp->txq);   /* yield, then continue */
		}
		if (w->queue[2 * i] || (w->tap[i] && !qp->rx_blocked) ||
		    (w->tap[i] && virtq_avail_count(qp->rxq)))
			virtio_net_rx_process(qp);
	}
	if (w->queue[ctrl_queue_index(net)] && !vdev->broken && !vdev->quiesced)
		virtio_net_ctrl_process(net);
	pthread_mutex_unlock(&vdev->lock);
}

static void net_ring_ready(void *opaque, uint32_t events)
{
	struct virtio_net *net = opaque;
	struct net_work w;
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	bool rearm = false;

	memset(&w, 0, sizeof(w));
	io_uring_for_each_cqe(&net->ring, head, cqe) {
		uint64_t tag = io_uring_cqe_get_data64(cqe);
		unsigned idx = (uint32_t)tag;

		seen++;
		if ((tag >> 32) == NET_TAG_KICK && idx < net->vdev.nr_queues)
			w.queue[idx] = true;
		else if ((tag >> 32) == NET_TAG_TAP && idx < net->nr_pairs)
			w.tap[idx] = true;
		/* A back end that reports an error or hangup (TAP deleted) is not
		 * polled again: re-arming would complete at once, forever. */
		if ((tag >> 32) == NET_TAG_TAP &&
		    (cqe->res < 0 || (cqe->res & (POLLERR | POLLHUP | POLLNVAL)))) {
			if (!(cqe->flags & IORING_CQE_F_MORE))
				log_err(net->dev.name, "back end of queue pair %u is gone", idx);
			continue;
		}
		/* A multishot poll without F_MORE has ended: arm it again. */
		if (!(cqe->flags & IORING_CQE_F_MORE) && cqe->res != -ECANCELED) {
			int fd = net_tag_fd(net, tag);

			if (fd >= 0 && net_arm_poll(net, fd, tag) == 0)
				rearm = true;
		}
	}
	io_uring_cq_advance(&net->ring, seen);
	for (unsigned i = 0; i < net->vdev.nr_queues; i++)
		if (w.queue[i])
			net_drain_eventfd(net->vdev.vqs[i].kick_fd);
	net_process(net, &w);
	if (rearm)
		io_uring_submit(&net->ring);
}

static int net_ring_setup(struct virtio_net *net)
{
	int ret = io_uring_queue_init(128, &net->ring, 0);

	if (ret)
		return ret;
	net->ring_ready = true;
	for (unsigned i = 0; i < net->vdev.nr_queues && !ret; i++)
		ret = net_arm_poll(net, net->vdev.vqs[i].kick_fd, NET_TAG(NET_TAG_KICK, i));
	for (unsigned i = 0; i < net->nr_pairs && !ret; i++)
		ret = net_arm_poll(net, net->qp[i].fd, NET_TAG(NET_TAG_TAP, i));
	if (ret)
		return ret;
	ret = io_uring_submit(&net->ring);
	return ret < 0 ? ret : 0;
}

/* ---- struct device glue ---------------------------------------------------------------------- */

static struct virtio_net *dev_to_net(struct device *dev)
{
	return (struct virtio_net *)((char *)dev - offsetof(struct virtio_net, dev));
}

static void virtio_net_dev_reset(struct device *dev)
{
	struct virtio_net *net = dev_to_net(dev);

	pthread_mutex_lock(&net->vdev.lock);
	virtio_device_reset(&net->vdev);
	pthread_mutex_unlock(&net->vdev.lock);
	if (net->pci_attached)
		pci_device_reset(&net->vp.pci);
}

static void virtio_net_dev_quiesce(struct device *dev)
{
	virtio_net_quiesce(dev_to_net(dev), true);
}

static void virtio_net_dev_unquiesce(struct device *dev)
{
	virtio_net_quiesce(dev_to_net(dev), false);
}

static void virtio_net_free(struct virtio_net *net)
{
	if (net->ring_in_loop && net->vm)
		evl_del_fd(&net->vm->loop, net->ring.ring_fd);
	if (net->ring_ready)
		io_uring_queue_exit(&net->ring);
	if (net->pci_attached)
		virtio_pci_destroy(&net->vp);
	virtio_net_uninit(net);
	free(net);
}

static void virtio_net_dev_destroy(struct device *dev)
{
	struct virtio_net *net = dev_to_net(dev);

	/* vm_destroy has stopped and freed the event loop already. */
	net->ring_in_loop = false;
	virtio_net_free(net);
}

static void virtio_net_dev_info(struct device *dev, struct cJSON *obj)
{
	struct virtio_net *net = dev_to_net(dev);
	char mac[18];

	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", net->st.mac[0], net->st.mac[1],
		 net->st.mac[2], net->st.mac[3], net->st.mac[4], net->st.mac[5]);
	cJSON_AddStringToObject(obj, "backend", net->cfg.backend == NET_TAP ? "tap" : "macvtap");
	cJSON_AddStringToObject(obj, "ifname", net->cfg.ifname);
	cJSON_AddStringToObject(obj, "mac", mac);
	cJSON_AddNumberToObject(obj, "queue_pairs", net->nr_pairs);
	cJSON_AddNumberToObject(obj, "pci_slot", net->vp.pci.slot);
	cJSON_AddNumberToObject(obj, "status", net->vdev.st.status);
	cJSON_AddBoolToObject(obj, "needs_reset", net->vdev.broken);
}

static void virtio_net_dev_counters(struct device *dev, struct cJSON *obj)
{
	struct virtio_net *net = dev_to_net(dev);
	uint64_t c[8] = { 0 };

	for (unsigned i = 0; i < net->nr_pairs; i++) {
		const struct net_queue_pair *qp = &net->qp[i];

		c[0] += qp->rx_frames, c[1] += qp->rx_bytes, c[2] += qp->rx_no_buffers;
		c[3] += qp->rx_errors, c[4] += qp->tx_frames, c[5] += qp->tx_bytes;
		c[6] += qp->tx_errors, c[7] += qp->tx_batches;
	}
	cJSON_AddNumberToObject(obj, "rx_frames", (double)c[0]);
	cJSON_AddNumberToObject(obj, "rx_bytes", (double)c[1]);
	cJSON_AddNumberToObject(obj, "rx_no_buffers", (double)c[2]);
	cJSON_AddNumberToObject(obj, "rx_errors", (double)c[3]);
	cJSON_AddNumberToObject(obj, "tx_frames", (double)c[4]);
	cJSON_AddNumberToObject(obj, "tx_bytes", (double)c[5]);
	cJSON_AddNumberToObject(obj, "tx_errors", (double)c[6]);
	cJSON_AddNumberToObject(obj, "tx_batches", (double)c[7]);
	cJSON_AddNumberToObject(obj, "resets", (double)net->vdev.resets);
	cJSON_AddNumberToObject(obj, "needs_reset_events", (double)net->vdev.broken_count);
}

static const struct device_ops virtio_net_dev_ops = {
	.type = "virtio-net",
	.reset = virtio_net_dev_reset,
	.destroy = virtio_net_dev_destroy,
	.save = virtio_net_dev_save,         /* virtio_net_state.c */
	.load = virtio_net_dev_load,
	.info = virtio_net_dev_info,
	.counters = virtio_net_dev_counters,
	.quiesce = virtio_net_dev_quiesce,
	.unquiesce = virtio_net_dev_unquiesce,
};

int virtio_net_backend_fds(struct vm *vm, unsigned idx, int *fds, unsigned max, unsigned *tun_offloads)
{
	char name[16];

	snprintf(name, sizeof(name), "net%u", idx);
	for (struct device *d = vm->devices; d; d = d->next) {
		struct virtio_net *net;

		if (!d->ops || !d->ops->type || strcmp(d->ops->type, "virtio-net") || strcmp(d->name, name))
			continue;
		net = dev_to_net(d);
		if (net->nr_pairs > max)
			return -E2BIG;
		for (unsigned i = 0; i < net->nr_pairs; i++)
			fds[i] = net->qp[i].fd;
		*tun_offloads = net->tun_offloads;
		return (int)net->nr_pairs;
	}
	return -ENOENT;
}

_Static_assert(VIRTIO_NET_MAX_PAIRS <= VM_INHERIT_MAX_FDS, "a NIC's queues must fit an inherit entry");

/* Live update: take over the queue fds the previous process handed over,
 * after checking each is a queue of the configured interface. The offloads
 * come from the previous process too: probing would change the TAP's
 * offload settings under it before the hand-over is committed. */
static int net_take_inherited(struct vm_inherit_net *inh, const struct net_config *cfg, unsigned *nr,
			      int *fds, unsigned *offloads, char *err, size_t errlen)
{
	const unsigned known = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO;

	if (inh->nr_fds > VIRTIO_NET_MAX_PAIRS) {
		snprintf(err, errlen, "net: %u queue fds handed over for '%s' (at most %d)", inh->nr_fds,
			 cfg->ifname, VIRTIO_NET_MAX_PAIRS);
		return -EINVAL;
	}
	for (unsigned i = 0; i < inh->nr_fds; i++) {
		int ret = net_backend_check_fd(inh->fds[i], cfg->ifname, err, errlen);

		if (ret)
			return ret;
	}
	for (unsigned i = 0; i < inh->nr_fds; i++) {
		fds[i] = inh->fds[i];
		inh->fds[i] = -1;
	}
	*nr = inh->nr_fds;
	*offloads = inh->tun_offloads & known;
	return 0;
}

int virtio_net_create(struct vm *vm, const struct net_config *cfg, unsigned idx, char *err,
		      size_t errlen)
{
	struct vm_inherit_net *inh = vm->inherit && idx < CONFIG_MAX_NETS ? &vm->inherit->nets[idx] : NULL;
	bool inherited = inh && inh->nr_fds;
	unsigned offloads = 0;
	unsigned nr = cfg->queues ? cfg->queues : vm->nr_vcpus;
	int fds[VIRTIO_NET_MAX_PAIRS];
	struct net_config c = *cfg;
	uint8_t link_mac[6] = { 0 };
	struct virtio_net *net;
	char name[16];
	int ret;

	if (!vm->pci) {
		snprintf(err, errlen, "net: no PCI bus");
		return -ENODEV;
	}
	snprintf(name, sizeof(name), "net%u", idx);
	if (nr > VIRTIO_NET_MAX_PAIRS)
		nr = VIRTIO_NET_MAX_PAIRS;
	if (inherited) {
		ret = net_take_inherited(inh, cfg, &nr, fds, &offloads, err, errlen);
	} else if (cfg->backend == NET_TAP) {
		ret = net_tap_open(cfg->ifname, &nr, cfg->queues != 0, fds, err, errlen);
		offloads = ret ? 0 : net_tap_probe_offloads(fds[0]);
	} else {
		ret = net_macvtap_open(cfg->ifname, &nr, cfg->queues != 0, fds, link_mac, err, errlen);
		offloads = ret ? 0 : net_tap_probe_offloads(fds[0]);
	}
	if (ret)
		return ret;
	if (!c.has_mac) {
		/* macvtap filters on its link's address; otherwise a locally
		 * administered address (52:54:00 like QEMU) unique per process. */
		if (link_mac[0] | link_mac[1] | link_mac[2] | link_mac[3] | link_mac[4] | link_mac[5]) {
			memcpy(c.mac, link_mac, 6);
		} else {
			pid_t pid = getpid();
			uint8_t gen[6] = { 0x52, 0x54, 0x00, (uint8_t)(pid >> 8), (uint8_t)pid, (uint8_t)idx };

			memcpy(c.mac, gen, 6);
		}
		c.has_mac = true;
	}
	net = calloc(1, sizeof(*net));
	if (!net) {
		for (unsigned i = 0; i < nr; i++)
			close(fds[i]);
		return -ENOMEM;
	}
	net->vm = vm;
	ret = virtio_net_init(net, name, &vm->mem, &c, fds, nr, offloads);
	if (ret) {
		free(net);   /* init closed the fds */
		snprintf(err, errlen, "%s: cannot create the device: %s", name, strerror_safe(-ret));
		return ret;
	}
	ret = virtio_pci_init(&net->vp, &net->vdev, vm->pci, VIRTIO_PCI_DEVICE_BASE + VIRTIO_ID_NET,
			      0x020000 /* network controller, Ethernet */);
	if (ret)
		goto fail;
	net->pci_attached = true;
	ret = net_ring_setup(net);
	if (ret)
		goto fail;
	ret = evl_add_fd(&vm->loop, net->ring.ring_fd, EPOLLIN, net_ring_ready, net);
	if (ret)
		goto fail;
	net->ring_in_loop = true;
	vm_add_device(vm, &net->dev, &virtio_net_dev_ops, name);
	log_info(name, "%s '%s'%s, %u queue pair%s, mac %02x:%02x:%02x:%02x:%02x:%02x, PCI 00:%02x.0",
		 cfg->backend == NET_TAP ? "TAP" : "macvtap", cfg->ifname,
		 inherited ? " (handed over)" : "", nr, nr > 1 ? "s" : "",
		 c.mac[0], c.mac[1], c.mac[2], c.mac[3], c.mac[4], c.mac[5], net->vp.pci.slot);
	return 0;
fail:
	snprintf(err, errlen, "%s: cannot set up the device: %s", name, strerror_safe(-ret));
	virtio_net_free(net);
	return ret;
}
