/* virtio-net data path without a guest or a TAP: a SOCK_SEQPACKET socketpair
 * stands in for the TAP fd (one datagram = one frame with its vnet header). */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/virtio_net.h"
#include "devices/virtio_net_config.h"

#define RAM        (4u << 20)
#define QSZ        16
#define RING(q)    (0x10000 + (q) * 0x3000)   /* desc, +0x1000 avail, +0x2000 used */
#define BUF(q, i)  (0x100000 + (q) * 0x40000 + (i) * 0x1000)

static struct guest_mem mem;
static struct virtio_net net;
static int peer;

static struct vring_desc *desc(unsigned q, unsigned i)
{
	return mem_gpa_to_hva(&mem, RING(q) + 16ULL * i, 16);
}
static struct vring_avail *avail(unsigned q) { return mem_gpa_to_hva(&mem, RING(q) + 0x1000, 64); }
static struct vring_used *used(unsigned q) { return mem_gpa_to_hva(&mem, RING(q) + 0x2000, 256); }
static uint8_t *buf(unsigned q, unsigned i) { return mem_gpa_to_hva(&mem, BUF(q, i), 0x1000); }

static void post(unsigned q, uint16_t head)
{
	struct vring_avail *a = avail(q);

	a->ring[a->idx % QSZ] = head;
	a->idx++;
}

static void start(uint64_t features)
{
	struct virtio_device *vdev = &net.vdev;

	pthread_mutex_lock(&vdev->lock);
	virtio_device_reset(vdev);
	virtio_device_set_status(vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_device_set_guest_features(vdev, 0, (uint32_t)features);
	virtio_device_set_guest_features(vdev, 1, (uint32_t)(features >> 32));
	virtio_device_set_status(vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				       VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert(vdev->st.status & VIRTIO_CONFIG_S_FEATURES_OK, "features refused");
	for (unsigned q = 0; q < vdev->nr_queues; q++) {
		struct virtqueue *vq = &vdev->vqs[q];

		memset(mem_gpa_to_hva(&mem, RING(q), 0x3000), 0, 0x3000);
		vq->st.size = QSZ;
		vq->st.desc_addr = RING(q);
		vq->st.avail_addr = RING(q) + 0x1000;
		vq->st.used_addr = RING(q) + 0x2000;
		cr_assert_eq(virtq_enable(vq), 0);
	}
	virtio_device_set_status(vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	pthread_mutex_unlock(&vdev->lock);
}

#define BASE_FEATURES ((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_NET_F_MAC) | \
		       (1ULL << VIRTIO_NET_F_MRG_RXBUF) | (1ULL << VIRTIO_NET_F_CTRL_VQ) | \
		       (1ULL << VIRTIO_NET_F_STATUS) | (1ULL << VIRTIO_NET_F_GUEST_ANNOUNCE))

static void setup(void)
{
	struct net_config cfg = { .backend = NET_TAP, .mac = { 0x52, 0x54, 0, 1, 2, 3 }, .has_mac = true };
	int sv[2];

	cr_assert_eq(mem_init(&mem, RAM), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	peer = sv[1];
	memset(&net, 0, sizeof(net));
	cr_assert_eq(virtio_net_init(&net, "tnet", &mem, &cfg, &sv[0], 1, 0), 0);
	start(BASE_FEATURES);
}

static void teardown(void)
{
	virtio_net_uninit(&net);
	close(peer);
	mem_destroy(&mem);
}

TestSuite(virtio_net, .init = setup, .fini = teardown);

static int tx(bool *more)
{
	int r;

	pthread_mutex_lock(&net.vdev.lock);
	r = virtio_net_tx_process(&net.qp[0], more);
	pthread_mutex_unlock(&net.vdev.lock);
	return r;
}

static int rx(void)
{
	int r;

	pthread_mutex_lock(&net.vdev.lock);
	r = virtio_net_rx_process(&net.qp[0]);
	pthread_mutex_unlock(&net.vdev.lock);
	return r;
}

/* TX queue is 1: header in one descriptor, payload in the next. */
static void post_tx_frame(uint16_t d, const struct virtio_net_hdr_mrg_rxbuf *h, const void *payload,
			  uint32_t len)
{
	memcpy(buf(1, d), h, sizeof(*h));
	memcpy(buf(1, d + 1), payload, len);
	*desc(1, d) = (struct vring_desc){ BUF(1, d), sizeof(*h), VRING_DESC_F_NEXT, (uint16_t)(d + 1) };
	*desc(1, d + 1) = (struct vring_desc){ BUF(1, d + 1), len, 0, 0 };
	post(1, d);
}

Test(virtio_net, tx_frame_reaches_backend_zero_copy)
{
	struct virtio_net_hdr_mrg_rxbuf h = { 0 };
	uint8_t payload[60], got[256];
	bool more;

	for (unsigned i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	post_tx_frame(0, &h, payload, sizeof(payload));
	cr_assert_eq(tx(&more), 1);
	cr_assert(!more);
	cr_assert_eq(recv(peer, got, sizeof(got), 0), 12 + 60);
	cr_assert_eq(memcmp(got + 12, payload, 60), 0);
	cr_assert_eq(used(1)->idx, 1);
	cr_assert_eq(used(1)->ring[0].id, 0);
	cr_assert_eq(net.qp[0].tx_frames, 1);
}

Test(virtio_net, tx_offload_requests_need_features)
{
	struct virtio_net_hdr_mrg_rxbuf h = { 0 };
	uint8_t payload[60] = { 1 }, got[256];
	bool more;

	/* NEEDS_CSUM without VIRTIO_NET_F_CSUM: cleared before the TAP sees it. */
	h.hdr.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	post_tx_frame(0, &h, payload, sizeof(payload));
	/* GSO without HOST_TSO4: the frame is dropped, the chain still completes. */
	h.hdr.flags = 0;
	h.hdr.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	post_tx_frame(2, &h, payload, sizeof(payload));
	cr_assert_eq(tx(&more), 2);
	cr_assert_eq(recv(peer, got, sizeof(got), 0), 72);
	cr_assert_eq(((struct virtio_net_hdr_mrg_rxbuf *)got)->hdr.flags, 0);
	cr_assert_eq(recv(peer, got, sizeof(got), 0), -1, "GSO frame must be dropped");
	cr_assert_eq(net.qp[0].tx_errors, 1);
	cr_assert_eq(used(1)->idx, 2);
}

Test(virtio_net, tx_writable_buffer_needs_reset)
{
	bool more;

	*desc(1, 0) = (struct vring_desc){ BUF(1, 0), 64, VRING_DESC_F_WRITE, 0 };
	post(1, 0);
	cr_assert_lt(tx(&more), 0);
	cr_assert(net.vdev.broken);
	cr_assert(net.vdev.st.status & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_eq(tx(&more), 0, "a broken device does nothing");
}

Test(virtio_net, tx_short_header_needs_reset)
{
	bool more;

	*desc(1, 0) = (struct vring_desc){ BUF(1, 0), 8, 0, 0 };
	post(1, 0);
	cr_assert_lt(tx(&more), 0);
	cr_assert(net.vdev.broken);
}

Test(virtio_net, tx_budget_yields)
{
	struct virtio_net_hdr_mrg_rxbuf h = { 0 };
	uint8_t payload[60] = { 0 }, got[128];
	bool more;
	int total = 0, r;

	/* More frames than the queue holds, refilled as they complete. */
	for (int round = 0; round < 40; round++) {
		for (uint16_t d = 0; d < QSZ; d += 2)
			post_tx_frame(d, &h, payload, sizeof(payload));
		r = tx(&more);
		cr_assert_eq(r, QSZ / 2);
		total += r;
		while (recv(peer, got, sizeof(got), 0) > 0)
			;
	}
	cr_assert_eq(total, 40 * QSZ / 2);
	cr_assert_eq(net.qp[0].tx_frames, (uint64_t)total);
}

/* RX queue 0: post @n single-descriptor buffers of @size bytes. */
static void post_rx(unsigned n, uint32_t size)
{
	for (uint16_t i = 0; i < n; i++) {
		*desc(0, i) = (struct vring_desc){ BUF(0, i), size, VRING_DESC_F_WRITE, 0 };
		post(0, i);
	}
}

Test(virtio_net, rx_mergeable_buffers_and_dirty_pages)
{
	uint8_t frame[12 + 1488];
	struct virtio_net_hdr_mrg_rxbuf *h;

	memset(frame, 0, 12);
	for (unsigned i = 12; i < sizeof(frame); i++)
		frame[i] = (uint8_t)i;
	post_rx(4, 1024);
	for (uint64_t w = 0; w < (mem.nr_pages + 63) / 64; w++)
		mem_take_dirty_word(&mem, w);
	cr_assert_eq(send(peer, frame, sizeof(frame), 0), (ssize_t)sizeof(frame));
	cr_assert_eq(rx(), 1);
	cr_assert_eq(used(0)->idx, 2, "1500-byte frame spans two 1 KiB buffers");
	cr_assert_eq(used(0)->ring[0].len, 1024);
	cr_assert_eq(used(0)->ring[1].len, sizeof(frame) - 1024);
	h = (struct virtio_net_hdr_mrg_rxbuf *)buf(0, 0);
	cr_assert_eq(h->num_buffers, 2);
	cr_assert_eq(memcmp(buf(0, 0) + 12, frame + 12, 1024 - 12), 0);
	cr_assert_eq(memcmp(buf(0, 1), frame + 1024, sizeof(frame) - 1024), 0);
	/* The two unused buffers went back: the next frame starts at buffer 2. */
	cr_assert_eq(virtq_avail_count(net.qp[0].rxq), 2);
	/* VMM writes into guest RAM are in the dirty bitmap. */
	uint64_t p0 = BUF(0, 0) / 4096, pu = (RING(0) + 0x2000) / 4096;
	cr_assert(mem_take_dirty_word(&mem, p0 / 64) & (1ULL << (p0 % 64)));
	cr_assert(mem_take_dirty_word(&mem, pu / 64) & (1ULL << (pu % 64)));
}

Test(virtio_net, rx_waits_for_buffers)
{
	uint8_t frame[12 + 60] = { 0 };

	cr_assert_eq(send(peer, frame, sizeof(frame), 0), (ssize_t)sizeof(frame));
	cr_assert_eq(rx(), 0);
	cr_assert(net.qp[0].rx_blocked);
	post_rx(2, 2048);
	cr_assert_eq(rx(), 1);
	cr_assert(!net.qp[0].rx_blocked);
	cr_assert_eq(used(0)->ring[0].len, sizeof(frame));
	cr_assert_eq(rx(), 0, "back end empty");
}

Test(virtio_net, rx_device_readable_buffer_needs_reset)
{
	uint8_t frame[72] = { 0 };

	*desc(0, 0) = (struct vring_desc){ BUF(0, 0), 2048, 0, 0 };
	post(0, 0);
	send(peer, frame, sizeof(frame), 0);
	cr_assert_lt(rx(), 0);
	cr_assert(net.vdev.broken);
}

/* Control queue is 2: class, command, data readable; ack writable. */
static uint8_t ctrl(uint8_t cls, uint8_t cmd, const void *data, uint32_t len)
{
	static uint16_t d;
	uint8_t *b = buf(2, 0);

	b[0] = cls;
	b[1] = cmd;
	if (len)
		memcpy(b + 2, data, len);
	b[0x800] = 0xee;
	*desc(2, d) = (struct vring_desc){ BUF(2, 0), 2 + len, VRING_DESC_F_NEXT, (uint16_t)((d + 1) % QSZ) };
	*desc(2, (d + 1) % QSZ) = (struct vring_desc){ BUF(2, 0) + 0x800, 1, VRING_DESC_F_WRITE, 0 };
	post(2, d);
	d = (uint16_t)((d + 2) % QSZ);
	pthread_mutex_lock(&net.vdev.lock);
	cr_assert_eq(virtio_net_ctrl_process(&net), 1);
	pthread_mutex_unlock(&net.vdev.lock);
	return b[0x800];
}

Test(virtio_net, ctrl_announce_and_mq)
{
	uint16_t pairs = 1;

	cr_assert_eq(virtio_net_announce(&net), 0);
	cr_assert(net.st.status & VIRTIO_NET_S_ANNOUNCE);
	cr_assert(atomic_load(&net.vdev.isr) & VIRTIO_ISR_CONFIG);
	cr_assert_eq(ctrl(VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, NULL, 0), VIRTIO_NET_OK);
	cr_assert_eq(net.st.status & VIRTIO_NET_S_ANNOUNCE, 0);
	/* MQ was not offered (one pair): refused. Unknown classes too. */
	cr_assert_eq(ctrl(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2), VIRTIO_NET_ERR);
	cr_assert_eq(ctrl(0x77, 0, NULL, 0), VIRTIO_NET_ERR);
	cr_assert_eq(net.ctrl_errors, 2);
}

Test(virtio_net, config_space)
{
	struct virtio_net_config c;

	memset(&c, 0xaa, sizeof(c));
	net.vdev.ops->get_config(&net.vdev, 0, &c, sizeof(c));
	cr_assert_eq(memcmp(c.mac, "\x52\x54\x00\x01\x02\x03", 6), 0);
	cr_assert_eq(c.status, VIRTIO_NET_S_LINK_UP);
	cr_assert_eq(c.max_virtqueue_pairs, 1);
	cr_assert_eq(c.mtu, 1500);
	/* Reads past the end do not overflow. */
	uint8_t b[4] = { 9, 9, 9, 9 };
	net.vdev.ops->get_config(&net.vdev, 0x100, b, 4);
	cr_assert_eq(b[0], 9);
}

Test(virtio_net, features_dependencies_enforced)
{
	/* Offer offloads as if the TAP accepted them, then ask for TSO without CSUM. */
	net.vdev.host_features |= (1ULL << VIRTIO_NET_F_GUEST_TSO4) | (1ULL << VIRTIO_NET_F_GUEST_CSUM);
	pthread_mutex_lock(&net.vdev.lock);
	virtio_device_reset(&net.vdev);
	virtio_device_set_guest_features(&net.vdev, 0, (1u << VIRTIO_NET_F_GUEST_TSO4));
	virtio_device_set_guest_features(&net.vdev, 1, 1);   /* VERSION_1 */
	virtio_device_set_status(&net.vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					    VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert_eq(net.vdev.st.status & VIRTIO_CONFIG_S_FEATURES_OK, 0);
	pthread_mutex_unlock(&net.vdev.lock);
}

/* A paused VM (migration, snapshot): with the device quiesced, neither
 * pending TX chains, nor a frame waiting in the back end with RX buffers
 * posted, nor a control command make it touch guest RAM or the back end;
 * restarting looks at every queue and everything flows. */
Test(virtio_net, quiesced_device_writes_no_guest_ram)
{
	struct virtio_net_hdr_mrg_rxbuf h = { 0 };
	uint8_t frame[12 + 60] = { 0 }, payload[60], got[256], *copy;
	uint64_t dirty = 0, kick;
	bool more;

	memset(payload, 0x5a, sizeof(payload));
	post_tx_frame(0, &h, payload, sizeof(payload));
	post_rx(2, 2048);
	buf(2, 0)[0] = VIRTIO_NET_CTRL_ANNOUNCE;
	buf(2, 0)[1] = VIRTIO_NET_CTRL_ANNOUNCE_ACK;
	*desc(2, 0) = (struct vring_desc){ BUF(2, 0), 2, VRING_DESC_F_NEXT, 1 };
	*desc(2, 1) = (struct vring_desc){ BUF(2, 0) + 0x800, 1, VRING_DESC_F_WRITE, 0 };
	post(2, 0);
	cr_assert_eq(send(peer, frame, sizeof(frame), 0), (ssize_t)sizeof(frame));

	virtio_net_quiesce(&net, true);
	for (unsigned q = 0; q < net.vdev.nr_queues; q++)
		while (read(net.vdev.vqs[q].kick_fd, &kick, sizeof(kick)) > 0)
			;
	for (uint64_t w = 0; w < (mem.nr_pages + 63) / 64; w++)
		mem_take_dirty_word(&mem, w);
	copy = malloc(RAM);
	cr_assert_not_null(copy);
	memcpy(copy, mem.base, RAM);
	cr_assert_eq(tx(&more), 0);
	cr_assert_eq(rx(), 0);
	pthread_mutex_lock(&net.vdev.lock);
	cr_assert_eq(virtio_net_ctrl_process(&net), 0);
	pthread_mutex_unlock(&net.vdev.lock);
	cr_assert_eq(memcmp(copy, mem.base, RAM), 0, "guest RAM written while quiesced");
	for (uint64_t w = 0; w < (mem.nr_pages + 63) / 64; w++)
		dirty |= mem_take_dirty_word(&mem, w);
	cr_assert_eq(dirty, 0, "pages marked dirty while quiesced");
	cr_assert_eq(recv(peer, got, sizeof(got), 0), -1, "TX reached the back end while quiesced");
	cr_assert_eq(recv(net.qp[0].fd, got, sizeof(got), MSG_PEEK), (ssize_t)sizeof(frame),
		     "the frame waits in the back end");
	cr_assert_not(net.qp[0].rx_blocked);
	cr_assert_eq(net.qp[0].rx_no_buffers, 0);
	free(copy);

	virtio_net_quiesce(&net, false);
	for (unsigned q = 0; q < net.vdev.nr_queues; q++)
		cr_assert_eq(read(net.vdev.vqs[q].kick_fd, &kick, sizeof(kick)), 8,
			     "queue %u is looked at again after the restart", q);
	cr_assert_eq(tx(&more), 1);
	cr_assert_eq(recv(peer, got, sizeof(got), 0), 12 + 60);
	cr_assert_eq(rx(), 1);
	cr_assert_eq(used(0)->ring[0].len, sizeof(frame));
	pthread_mutex_lock(&net.vdev.lock);
	cr_assert_eq(virtio_net_ctrl_process(&net), 1);
	pthread_mutex_unlock(&net.vdev.lock);
	cr_assert_eq(buf(2, 0)[0x800], VIRTIO_NET_OK);
}

/* ---- --net parsing ---- */

Test(net_config, parses_tap_and_macvtap)
{
	struct vm_config cfg;
	char err[256];

	config_init(&cfg);
	cr_assert_eq(config_parse_net(&cfg, "tap=tap0", err, sizeof(err)), 0);
	cr_assert_eq(config_parse_net(&cfg, "tap=t1,mac=52:54:00:AB:cd:ef,queues=4", err, sizeof(err)), 0);
	cr_assert_eq(config_parse_net(&cfg, "macvtap=mvt0,iommu=on", err, sizeof(err)), 0);
	cr_assert_eq(cfg.nr_nets, 3);
	cr_assert_str_eq(cfg.nets[0].ifname, "tap0");
	cr_assert(!cfg.nets[0].has_mac);
	cr_assert_eq(cfg.nets[0].queues, 0);
	cr_assert(cfg.nets[1].has_mac);
	cr_assert_eq(cfg.nets[1].mac[3], 0xab);
	cr_assert_eq(cfg.nets[1].queues, 4);
	cr_assert_eq(cfg.nets[2].backend, NET_MACVTAP);
	cr_assert(cfg.nets[2].iommu);
	config_free(&cfg);
}

Test(net_config, rejects_bad_values_with_one_line)
{
	static const char *const bad[] = {
		"", "tap=", "mac=52:54:00:00:00:01", "tap=x,mac=01:00:5e:00:00:01",
		"tap=x,mac=00:00:00:00:00:00", "tap=x,mac=52:54:00:00:00", "tap=x,mac=zz:54:00:00:00:01",
		"tap=x,queues=0", "tap=x,queues=99", "tap=x,queues=2x", "tap=x,colour=red",
		"tap=waytoolonginterfacename", "tap=x,iommu=maybe", "tap=x,novalue", "bridge=br0",
	};
	struct vm_config cfg;
	char err[256];

	config_init(&cfg);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		cr_assert_eq(config_parse_net(&cfg, bad[i], err, sizeof(err)), -EINVAL, "accepted '%s'", bad[i]);
		cr_assert(err[0] && !strchr(err, '\n'), "no one-line error for '%s'", bad[i]);
	}
	cr_assert_eq(cfg.nr_nets, 0);
	for (int i = 0; i < CONFIG_MAX_NETS; i++)
		cr_assert_eq(config_parse_net(&cfg, "tap=t", err, sizeof(err)), 0);
	cr_assert_eq(config_parse_net(&cfg, "tap=t", err, sizeof(err)), -E2BIG);
	config_free(&cfg);
}

Test(net_config, tap_open_errors)
{
	int fds[2];
	unsigned n = 1;
	char err[256];

	cr_assert_eq(net_tap_open("vmm-no-such0", &n, false, fds, err, sizeof(err)), -ENODEV);
	cr_assert_not_null(strstr(err, "does not exist"));
	cr_assert_eq(net_tap_open("lo", &n, false, fds, err, sizeof(err)), -ENODEV);
	cr_assert_not_null(strstr(err, "not a TAP"));
	cr_assert_eq(net_macvtap_open("lo", &n, false, fds, (uint8_t[6]){ 0 }, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "not a macvtap"));
}
