/* Internal to virtio-net: the io_uring data path (virtio_net_io.c) and what
 * it shares with the device model (virtio_net.c). Everything here runs with
 * vdev.lock held: the ring's SQ and CQ have one user at a time. */
#ifndef DEVICES_VIRTIO_NET_IO_H
#define DEVICES_VIRTIO_NET_IO_H

#include "devices/virtio_net.h"

/* io_uring user_data: kind in bits 32-39, queue (KICK) or pair in bits
 * 16-31, TX slot in bits 0-15. */
enum net_tag { NET_TAG_KICK = 1, NET_TAG_TX, NET_TAG_RX, NET_TAG_RX_POLL, NET_TAG_CANCEL };

static inline uint64_t net_tag(enum net_tag kind, unsigned idx, unsigned slot)
{
	return ((uint64_t)kind << 32) | ((uint64_t)(idx & 0xffff) << 16) | (slot & 0xffff);
}

static inline bool net_has(const struct virtio_net *net, unsigned bit)
{
	return virtio_has_feature(&net->vdev, bit);
}

/* The data path is held (restore) or quiesced (pause): nothing is started. */
static inline bool net_data_stopped(const struct virtio_net *net)
{
	return net->held || net->quiesced;
}

/* Set up (virtio_net_init) and tear down (uninit) the ring and the
 * per-pair in-flight bookkeeping; exit drains first. */
int net_io_init(struct virtio_net *net);
void net_io_exit(struct virtio_net *net);
/* Arm the multishot poll on queue @q's kick eventfd. */
int net_io_arm_kick(struct virtio_net *net, unsigned q);
/* Handle every completion the ring holds: TX used entries written, RX
 * frames delivered, kicks noted in net->kicked, ended polls re-armed. */
void net_io_reap(struct virtio_net *net);
/* Submit every prepared SQE. */
int net_io_submit(struct virtio_net *net);
/* Publish TX used entries and send the interrupts the driver asked for. */
void net_io_publish(struct virtio_net *net);
/* The DMA translation changed (IOMMU unmap): take back the reads posted on
 * addresses translated before, and post again only once a frame is there,
 * so the new translation decides (a fault, if the buffer is gone). */
void net_io_dma_changed(struct virtio_net *net);

/* Whether writes to back-end @fd can wait for room (and so must be linked
 * to keep their order): false only for a TAP queue whose send buffer is
 * unlimited (the TAP default), which takes every write at once. */
bool net_io_tx_may_park(int fd);

/* virtio_net.c: signal a queue's kick eventfd so the event loop looks at it. */
void net_kick_self(struct virtqueue *vq);

#endif
