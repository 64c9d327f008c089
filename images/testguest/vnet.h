/* A small virtio-net driver for the test guest (virtio 1.2 §4.1 modern PCI,
 * §2.7 split queues, §5.1 net) and just enough networking to be a peer:
 * ARP, IPv4, ICMP echo, UDP. Kept tiny: the guest runs emulated here. */
#ifndef TESTGUEST_VNET_H
#define TESTGUEST_VNET_H

#include "guest.h"
#include "pci.h"

#define VNET_QSZ      64
#define VNET_TX_QSZ   256   /* a flood posts a whole ring per kick: the bigger, the fewer round trips */
#define VNET_BUF_SIZE 2048
#define VNET_HDR_LEN  12

/* Feature bits we may ask for. */
#define VNET_F_MAC        (1ULL << 5)
#define VNET_F_MRG_RXBUF  (1ULL << 15)
#define VNET_F_STATUS     (1ULL << 16)
#define VNET_F_CTRL_VQ    (1ULL << 17)
#define VNET_F_MQ         (1ULL << 22)
#define VNET_F_INDIRECT   (1ULL << 28)
#define VNET_F_EVENT_IDX  (1ULL << 29)
#define VNET_F_VERSION_1  (1ULL << 32)

#define VIRTIO_S_ACK          1
#define VIRTIO_S_DRIVER       2
#define VIRTIO_S_DRIVER_OK    4
#define VIRTIO_S_FEATURES_OK  8
#define VIRTIO_S_NEEDS_RESET  0x40

#define VQ_DESC_F_NEXT     1
#define VQ_DESC_F_WRITE    2
#define VQ_DESC_F_INDIRECT 4

struct vq_desc { u64 addr; u32 len; u16 flags; u16 next; };
struct vq_used_elem { u32 id; u32 len; };

struct vnet_queue {
	u16 index, size;
	struct vq_desc *desc;
	volatile u16 *avail;          /* flags, idx, ring[size], used_event */
	volatile u16 *used_hdr;       /* flags, idx */
	volatile struct vq_used_elem *used;
	u16 avail_idx, last_used;
	u64 notify;                   /* MMIO address of this queue's notifier */
	u8 *bufs;                     /* size * VNET_BUF_SIZE */
};

struct vnet {
	struct pci_dev pci;
	struct msix msix;
	u64 common, isr, device, notify_base;
	u32 notify_mult;
	u64 features;
	u8 mac[6];
	struct vnet_queue rx, tx;
	/* With MQ: a second RX queue (pair 1) and the control queue. */
	struct vnet_queue rx1, ctrl;
	u16 pairs;                    /* RX queues in use: 1 or 2 */
	struct vnet_queue *cur;       /* queue of the frame vnet_recv returned */
	u64 rx_per_queue[2];
	u8 rx_vector;
	volatile u32 rx_irqs;
	u32 tx_free;                  /* descriptors not in flight */
	/* vnet_send_same's template: every TX descriptor points at this buffer
	 * and avail slot i holds i (len 0: no template, write per frame). */
	u64 tx_same_gpa;
	u32 tx_same_len;
};

/* Find and initialize the device (reset, negotiate @want & offered, rings,
 * MSI-X, DRIVER_OK, RX buffers posted). With CTRL_VQ and MQ negotiated and a
 * device offering 2+ pairs, also brings up rx1 and switches to 2 pairs with
 * VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET. Returns 0 or a negative step number. */
int vnet_init(struct vnet *v, u64 want);
/* Device status register. */
u8 vnet_status(struct vnet *v);
void vnet_reset(struct vnet *v);
/* Queue a frame (without the virtio header) for TX; reclaims finished
 * buffers first. Returns 0, or -1 if the ring is full. */
int vnet_send(struct vnet *v, const void *frame, u32 len);
/* Post @n descriptors from the TX ring that all point at one prepared
 * buffer (header included) of @len bytes: the flood path. Returns how many
 * were posted (0 when the ring is full); notifies once. The first call on
 * an idle ring writes every descriptor and avail slot once; later calls with
 * the same buffer only move avail->idx (no per-frame stores). */
u32 vnet_send_same(struct vnet *v, u64 buf_gpa, u32 len, u32 n);
/* Reclaim completed TX descriptors; returns how many. */
u32 vnet_tx_reclaim(struct vnet *v);
/* Next received frame (without header) or NULL; give it back with vnet_rx_done. */
u8 *vnet_recv(struct vnet *v, u32 *len);
void vnet_rx_done(struct vnet *v);
/* Publish a raw chain on queue @q (for malformed-descriptor tests): the
 * caller already wrote the descriptors; @head is put in the avail ring. */
void vnet_post_raw(struct vnet *v, struct vnet_queue *q, u16 head);
void vnet_notify(struct vnet *v, struct vnet_queue *q);
/* Halt until an RX interrupt arrives (or any interrupt). */
void vnet_wait_rx(struct vnet *v);

/* ---- the tiny IP stack (net.c) ---- */
struct netif {
	struct vnet *dev;
	u8 mac[6];
	u32 ip, mask;                  /* host byte order */
	u64 rx_frames, tx_frames, icmp_echo, udp_echo, arp_replies;
	bool stop;                     /* a UDP "stop" datagram arrived */
};
/* Parse "a.b.c.d/len" (the ip= parameter). */
bool net_parse_ip(const char *s, u32 *ip, u32 *mask);
/* Handle one received frame: answer ARP, ICMP echo, echo UDP. */
void net_input(struct netif *nif, const u8 *frame, u32 len);
/* Build an Ethernet/IPv4/UDP frame of @frame_len bytes (>= 42) into @buf. */
u32 net_build_udp(const struct netif *nif, u8 *buf, u32 frame_len, const u8 dst_mac[6],
		  u32 dst_ip, u16 sport, u16 dport);
u16 net_csum(const void *data, u32 len, u32 sum);

#endif
