/* Network scenarios over the virtio-net device (vnet.c, net.c).
 *   net-echo       answer ARP/ping, echo UDP, until a UDP datagram "stop"
 *                  (params: ip=A.B.C.D/N)
 * All take event_idx=1 to negotiate VIRTIO_RING_F_EVENT_IDX; net-echo takes
 * mq=1 to negotiate CTRL_VQ + MQ and receive on two RX queues.
 *   net-tx-flood   send count=N frames of size=B bytes (default 20000 x 64)
 *                  to dst=A.B.C.D as fast as the ring allows, report the count
 *   net-bad-desc   post malformed chains; each must put the device in
 *                  NEEDS_RESET; then a reset device must send again. */
#include "vnet.h"

#define WANT_FEATURES (VNET_F_VERSION_1 | VNET_F_MAC | VNET_F_STATUS | VNET_F_MRG_RXBUF)

static struct vnet dev;

static void setup(struct netif *nif, u64 want)
{
	const char *ip = param_get("ip");
	int r;

	if (param_u64("event_idx", 0))
		want |= VNET_F_EVENT_IDX;
	if (param_u64("mq", 0))
		want |= VNET_F_CTRL_VQ | VNET_F_MQ;
	if (!ip)
		ip = "10.0.2.15/24";
	if (!net_parse_ip(ip, &nif->ip, &nif->mask))
		fail("ip=%s is not A.B.C.D/N", ip);
	r = vnet_init(&dev, want);
	if (r)
		fail("virtio-net init failed at step %d (status 0x%x)", -r, dev.common ? vnet_status(&dev) : 0);
	nif->dev = &dev;
	memcpy(nif->mac, dev.mac, 6);
	guest_printf("net: ready mac=%02x:%02x:%02x:%02x:%02x:%02x ip=%u.%u.%u.%u features=0x%lx pairs=%u\n",
		     dev.mac[0], dev.mac[1], dev.mac[2], dev.mac[3], dev.mac[4], dev.mac[5],
		     nif->ip >> 24, (nif->ip >> 16) & 0xff, (nif->ip >> 8) & 0xff, nif->ip & 0xff,
		     (unsigned long)dev.features, dev.pairs);
}

static void net_echo(void)
{
	struct netif nif = { 0 };
	u8 *f;
	u32 len;

	setup(&nif, WANT_FEATURES);
	while (!nif.stop) {
		while (!nif.stop && (f = vnet_recv(&dev, &len))) {
			if (len)
				net_input(&nif, f, len);
			vnet_rx_done(&dev);
		}
		if (!nif.stop)
			vnet_wait_rx(&dev);
	}
	/* Let the last echo (the reply to "stop") leave before exiting. */
	for (int i = 0; i < 1000 && dev.tx_free < dev.tx.size; i++) {
		vnet_tx_reclaim(&dev);
		cpu_relax();
	}
	pass_with("rx=%lu tx=%lu icmp=%lu udp=%lu arp=%lu rxq0=%lu rxq1=%lu", (unsigned long)nif.rx_frames,
		  (unsigned long)nif.tx_frames, (unsigned long)nif.icmp_echo,
		  (unsigned long)nif.udp_echo, (unsigned long)nif.arp_replies,
		  (unsigned long)dev.rx_per_queue[0], (unsigned long)dev.rx_per_queue[1]);
}
SCENARIO("net-echo", net_echo);

static void net_tx_flood(void)
{
	static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	struct netif nif = { 0 };
	u32 count = (u32)param_u64("count", 20000), size = (u32)param_u64("size", 64), sent = 0;
	u32 dst = 0x0a000202, mask;
	const char *d = param_get("dst");
	u8 *buf = page_alloc(1);
	u64 t0, us;

	if (size < 60 || size > 1514)
		fail("size=%u: frames are 60..1514 bytes", size);
	if (d && !net_parse_ip(d, &dst, &mask))
		fail("dst=%s is not an address", d);
	setup(&nif, WANT_FEATURES);
	memset(buf, 0, VNET_HDR_LEN);
	net_build_udp(&nif, buf + VNET_HDR_LEN, size, bcast, dst, 9, 9);
	t0 = time_us();
	while (sent < count) {
		u32 n = vnet_send_same(&dev, (u64)buf, size + VNET_HDR_LEN, count - sent);

		sent += n;
		if (!n)
			cpu_relax();
	}
	while (dev.tx_free < dev.tx.size)
		vnet_tx_reclaim(&dev);
	us = time_us() - t0;
	pass_with("sent=%u size=%u us=%lu", sent, size, (unsigned long)us);
}
SCENARIO("net-tx-flood", net_tx_flood);

/* ---- net-bad-desc ---- */

static bool wait_needs_reset(void)
{
	u64 deadline = time_us() + 3000000;

	while (time_us() < deadline) {
		if (vnet_status(&dev) & VIRTIO_S_NEEDS_RESET)
			return true;
		udelay(1000);
	}
	return false;
}

static void set_desc(struct vq_desc *d, u64 addr, u32 len, u16 flags, u16 next)
{
	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

enum bad_case { BAD_LOOP, BAD_OUT_OF_RAM, BAD_ZERO_LEN, BAD_NESTED_INDIRECT, BAD_NEXT_RANGE,
		BAD_TX_WRITABLE, BAD_ORDER, BAD_COUNT };
static const char *const bad_names[BAD_COUNT] = {
	"loop", "out-of-ram", "zero-length", "nested-indirect", "next-out-of-range",
	"tx-writable", "readable-after-writable",
};

static void post_bad(enum bad_case c, u8 *scratch)
{
	struct vnet_queue *q = &dev.tx;
	struct vq_desc *d = q->desc, *itab = (struct vq_desc *)scratch;
	u64 buf = (u64)q->bufs;

	memset((void *)buf, 0, 64);
	switch (c) {
	case BAD_LOOP:
		set_desc(&d[0], buf, 64, VQ_DESC_F_NEXT, 1);
		set_desc(&d[1], buf, 64, VQ_DESC_F_NEXT, 0);
		break;
	case BAD_OUT_OF_RAM:
		set_desc(&d[0], 1ULL << 46, 64, 0, 0);
		break;
	case BAD_ZERO_LEN:
		set_desc(&d[0], buf, 0, 0, 0);
		break;
	case BAD_NESTED_INDIRECT:
		set_desc(&itab[0], (u64)(itab + 8), 16, VQ_DESC_F_INDIRECT, 0);
		set_desc(&itab[8], buf, 64, 0, 0);
		set_desc(&d[0], (u64)itab, 16, VQ_DESC_F_INDIRECT, 0);
		break;
	case BAD_NEXT_RANGE:
		set_desc(&d[0], buf, 64, VQ_DESC_F_NEXT, 200);
		break;
	case BAD_TX_WRITABLE:
		set_desc(&d[0], buf, 64, VQ_DESC_F_WRITE, 0);
		break;
	case BAD_ORDER:
		set_desc(&d[0], buf, 64, VQ_DESC_F_WRITE | VQ_DESC_F_NEXT, 1);
		set_desc(&d[1], buf, 64, 0, 0);
		break;
	default:
		break;
	}
	vnet_post_raw(&dev, q, 0);
	vnet_notify(&dev, q);
}

static void net_bad_desc(void)
{
	static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	struct netif nif = { 0 };
	u8 *scratch = page_alloc(1), frame[64];
	u64 deadline;

	for (int c = 0; c < BAD_COUNT; c++) {
		setup(&nif, WANT_FEATURES | VNET_F_INDIRECT);
		if (!(dev.features & VNET_F_INDIRECT))
			fail("device did not offer INDIRECT_DESC");
		post_bad((enum bad_case)c, scratch);
		if (!wait_needs_reset())
			fail("%s chain: device status 0x%x, no NEEDS_RESET", bad_names[c], vnet_status(&dev));
		guest_printf("net-bad-desc: %s -> NEEDS_RESET\n", bad_names[c]);
	}
	/* After a reset the device must work again. */
	setup(&nif, WANT_FEATURES);
	net_build_udp(&nif, frame, sizeof(frame), bcast, 0x0a000202, 9, 9);
	if (vnet_send(&dev, frame, sizeof(frame)))
		fail("TX ring full after reset");
	deadline = time_us() + 3000000;
	while (dev.tx_free < dev.tx.size && time_us() < deadline) {
		vnet_tx_reclaim(&dev);
		udelay(1000);
	}
	if (dev.tx_free < dev.tx.size)
		fail("frame not completed after reset (status 0x%x)", vnet_status(&dev));
	if (vnet_status(&dev) & VIRTIO_S_NEEDS_RESET)
		fail("device still NEEDS_RESET after reset");
	pass_with("cases=%d", BAD_COUNT);
}
SCENARIO("net-bad-desc", net_bad_desc);
