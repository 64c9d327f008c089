/* virtio-net device model: feature negotiation, config space, the control
 * queue, lifecycle and event handling; the RX/TX data path is in
 * virtio_net_io.c. See virtio_net.h. */
#include "devices/virtio_net_io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <linux/if_tun.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "devices/pci_vm.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define NET_CTRL_QUEUE_SIZE 64

static struct virtio_net *to_net(struct virtio_device *vdev) { return vdev->opaque; }

static unsigned ctrl_queue_index(const struct virtio_net *net) { return 2 * net->nr_pairs; }

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

void net_kick_self(struct virtqueue *vq)
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

/* Forget what the data path knew about the queues (reset, load): the
 * caller has drained it. */
static void net_forget_queues(struct virtio_net *net)
{
	for (unsigned i = 0; i < net->nr_pairs; i++) {
		struct net_queue_pair *qp = &net->qp[i];

		qp->rx_blocked = qp->rx_ready = qp->tx_stalled = qp->backend_gone = false;
		qp->rx_error_run = 0;
	}
	memset(net->kicked, 0, sizeof(net->kicked));
}

void virtio_net_backend_sync(struct virtio_net *net)
{
	pthread_mutex_lock(&net->vdev.lock);
	net->held = true;
	net_forget_queues(net);
	net_apply_active_pairs(net);
	net_apply_offloads(net, net->vdev.st.status & VIRTIO_CONFIG_S_DRIVER_OK);
	pthread_mutex_unlock(&net->vdev.lock);
}

void virtio_net_restore_done(struct virtio_net *net)
{
	bool running;

	pthread_mutex_lock(&net->vdev.lock);
	net->held = false;
	running = net->vdev.st.status & VIRTIO_CONFIG_S_DRIVER_OK;
	pthread_mutex_unlock(&net->vdev.lock);
	if (!running)
		return;
	for (unsigned i = 0; i < net->vdev.nr_queues; i++)
		net_kick_self(&net->vdev.vqs[i]);
	virtio_net_announce(net);   /* -EOPNOTSUPP without GUEST_ANNOUNCE: fine */
}

static void net_reset(struct virtio_device *vdev)
{
	struct virtio_net *net = to_net(vdev);

	/* The driver may free its buffers once the reset is seen (§2.4): no
	 * read may write into them, no used entry may follow. */
	virtio_net_drain(net, true);
	net_forget_queues(net);
	net->st.status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
	net->st.active_pairs = 1;
}

static void net_dma_changed(struct virtio_device *vdev)
{
	net_io_dma_changed(to_net(vdev));
}

static const struct virtio_device_ops virtio_net_vdev_ops = {
	.get_config = net_get_config,
	.set_config = net_set_config,
	.features_ok = net_features_ok,
	.driver_ok = net_driver_ok,
	.reset = net_reset,
	.dma_changed = net_dma_changed,
};

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
		/* A read posted on a queue about to be detached would fail: take
		 * every posted read back first (the active ones are posted again). */
		virtio_net_drain(net, false);
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

	if (net_data_stopped(net))
		return 0;
	while ((r = virtq_pop(vq, e)) > 0) {
		uint8_t hdr[2], ack;

		if (r == VIRTQ_FAULT) {
			/* IOMMU refused the command or ack buffer: no ack written. */
			net->ctrl_errors++;
			virtq_push(vq, e, 0);
			n++;
			continue;
		}
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

/* The virtio-net @d is, or NULL for another kind of device. */
static struct virtio_net *dev_as_net(struct device *d)
{
	if (!d->ops || !d->ops->type || strcmp(d->ops->type, "virtio-net"))
		return NULL;
	return (struct virtio_net *)((char *)d - offsetof(struct virtio_net, dev));
}

int virtio_net_restore_done_all(struct vm *vm)
{
	int n = 0;

	for (struct device *d = vm->devices; d; d = d->next) {
		struct virtio_net *net = dev_as_net(d);

		if (net) {
			virtio_net_restore_done(net);
			n++;
		}
	}
	return n;
}

int virtio_net_announce_all(struct vm *vm)
{
	int n = 0;

	for (struct device *d = vm->devices; d; d = d->next) {
		struct virtio_net *net = dev_as_net(d);

		if (net && virtio_net_announce(net) == 0)
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
		net->qp[i].fd = fds[i];   /* ours from here on, closed by uninit */
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
		qp->tx_link = net_io_tx_may_park(qp->fd);
		qp->rx_elems = calloc(VIRTIO_NET_RX_ELEMS, sizeof(*qp->rx_elems));
		qp->tx_elem = malloc(sizeof(*qp->tx_elem));
		if (!qp->rx_elems || !qp->tx_elem) {
			ret = -ENOMEM;
			goto err;
		}
	}
	ret = net_io_init(net);
	if (ret)
		goto err;
	return 0;
err:
	virtio_net_uninit(net);
	return ret;
}

void virtio_net_uninit(struct virtio_net *net)
{
	net_io_exit(net);   /* nothing in flight before the fds and buffers go */
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

/* ---- pause ------------------------------------------------------------------------------- */

void virtio_net_quiesce(struct virtio_net *net, bool on)
{
	bool running;

	pthread_mutex_lock(&net->vdev.lock);
	net->quiesced = on;
	if (on)
		virtio_net_drain(net, false);
	running = net->vdev.st.status & VIRTIO_CONFIG_S_DRIVER_OK;
	pthread_mutex_unlock(&net->vdev.lock);
	/* Kicks that came meanwhile were dropped, and drained reads are
	 * posted again: look at every queue. */
	if (!on && running)
		for (unsigned i = 0; i < net->vdev.nr_queues; i++)
			net_kick_self(&net->vdev.vqs[i]);
}

/* ---- event handling ------------------------------------------------------------------------ */

static void net_drain_eventfd(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) == sizeof(v))
		;
}

/* Take the kick of queue @q, if there is one. */
static bool net_take_kick(struct virtio_net *net, unsigned q)
{
	if (!net->kicked[q])
		return false;
	net->kicked[q] = false;
	net_drain_eventfd(net->vdev.vqs[q].kick_fd);
	return true;
}

/* Act on the kicks and completions seen (lock held). Processing can note
 * more (a completion freeing TX slots, a read completing at once); after a
 * few rounds what is left goes through the kick eventfds again, so one busy
 * device does not hold the event loop. */
static void net_process(struct virtio_net *net)
{
	struct virtio_device *vdev = &net->vdev;
	unsigned ctrl = ctrl_queue_index(net);

	for (int round = 0; round < 4; round++) {
		bool any = false;

		for (unsigned i = 0; i < net->nr_pairs; i++) {
			struct net_queue_pair *qp = &net->qp[i];
			bool more = false, tx = net_take_kick(net, 2 * i + 1);
			bool rx = net_take_kick(net, 2 * i) || qp->rx_ready;

			if (vdev->broken || net_data_stopped(net))
				continue;   /* reset, restore_done or quiesce(off) looks again */
			if (tx) {
				virtio_net_tx_process(qp, &more);
				if (more)
					net_kick_self(qp->txq);   /* yield, then continue */
			}
			if (rx)
				virtio_net_rx_process(qp);
			any |= tx || rx;
		}
		if (net_take_kick(net, ctrl) && !vdev->broken && !net_data_stopped(net)) {
			virtio_net_ctrl_process(net);
			any = true;
		}
		if (!any)
			return;
	}
	for (unsigned q = 0; q < vdev->nr_queues; q++)
		if (net->kicked[q] || (q < 2 * net->nr_pairs && !(q & 1) && net->qp[q / 2].rx_ready))
			net_kick_self(&vdev->vqs[q]);
}

static void net_ring_ready(void *opaque, uint32_t events)
{
	struct virtio_net *net = opaque;

	pthread_mutex_lock(&net->vdev.lock);
	net_io_reap(net);
	net_process(net);
	net_io_publish(net);
	net_io_submit(net);   /* re-armed kick polls */
	pthread_mutex_unlock(&net->vdev.lock);
}

static int net_ring_setup(struct virtio_net *net)
{
	int ret = 0;

	pthread_mutex_lock(&net->vdev.lock);
	for (unsigned i = 0; i < net->vdev.nr_queues && !ret; i++)
		ret = net_io_arm_kick(net, i);
	if (!ret)
		ret = net_io_submit(net);
	pthread_mutex_unlock(&net->vdev.lock);
	return ret;
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
	uint64_t c[11] = { 0 };

	for (unsigned i = 0; i < net->nr_pairs; i++) {
		const struct net_queue_pair *qp = &net->qp[i];

		c[0] += qp->rx_frames, c[1] += qp->rx_bytes, c[2] += qp->rx_no_buffers;
		c[3] += qp->rx_errors, c[4] += qp->tx_frames, c[5] += qp->tx_bytes;
		c[6] += qp->tx_errors, c[7] += qp->tx_batches;
		c[8] += qp->rx_faults, c[9] += qp->tx_faults, c[10] += qp->tx_given_back;
	}
	cJSON_AddNumberToObject(obj, "rx_frames", (double)c[0]);
	cJSON_AddNumberToObject(obj, "rx_bytes", (double)c[1]);
	cJSON_AddNumberToObject(obj, "rx_no_buffers", (double)c[2]);
	cJSON_AddNumberToObject(obj, "rx_errors", (double)c[3]);
	cJSON_AddNumberToObject(obj, "tx_frames", (double)c[4]);
	cJSON_AddNumberToObject(obj, "tx_bytes", (double)c[5]);
	cJSON_AddNumberToObject(obj, "tx_errors", (double)c[6]);
	cJSON_AddNumberToObject(obj, "tx_batches", (double)c[7]);
	cJSON_AddNumberToObject(obj, "tx_given_back", (double)c[10]);
	cJSON_AddNumberToObject(obj, "rx_iommu_faults", (double)c[8]);
	cJSON_AddNumberToObject(obj, "tx_iommu_faults", (double)c[9]);
	/* Behind a vIOMMU: the device's DMA cache (virtio.h). */
	cJSON_AddNumberToObject(obj, "dma_cache_hits", (double)net->vdev.dma_cache_hits);
	cJSON_AddNumberToObject(obj, "dma_cache_misses", (double)net->vdev.dma_cache_misses);
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
