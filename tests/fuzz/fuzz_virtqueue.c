/* libFuzzer target for the virtqueue parser and the virtio-net data path:
 * the input becomes guest memory (descriptor tables, rings, indirect tables,
 * headers) plus a small header choosing features, queue size and ring
 * addresses. TX, RX and control queues are processed against a socketpair
 * standing in for the TAP, which the header can make push back (a small
 * send buffer the peer does not always read) while pauses drain the device:
 * the linked TX batches and the writes given back (virtio_net_io.c) meet a
 * hostile driver too. Whatever the input, nothing may crash, hang, leak or
 * touch memory outside guest RAM; a bad chain may only mark NEEDS_RESET. */
#include <linux/virtio_net.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/virtio_net.h"

#define RAM_SIZE  (1u << 20)
#define DATA_MAX  (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_hdr {
	uint32_t features_lo;     /* driver features (masked by what is offered) */
	uint16_t qsize[3];        /* rx, tx, ctrl */
	uint32_t ring[3][3];      /* desc, avail, used per queue */
	uint8_t frames;           /* frames the "TAP" sends before RX runs */
	uint8_t rounds;           /* bits 0-1: rounds - 1; FUZZ_* below */
} __attribute__((packed));

#define FUZZ_PUSHBACK  0x04       /* the "TAP" takes 8 KiB at most in flight */
#define FUZZ_PAUSE     0x08       /* each round drains the device, as a pause does */
#define FUZZ_NO_READ   0x10       /* the peer reads only after the last round */

static struct guest_mem mem;
static bool mem_ready;

static void drain(int fd)
{
	uint8_t buf[2048];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct net_config cfg = { .backend = NET_TAP, .mac = { 0x52, 0x54, 0, 0, 0, 1 } };
	struct fuzz_hdr h;
	struct virtio_net net;
	uint8_t frame[1530];
	int sv[2];

	if (size < sizeof(h))
		return 0;
	if (!mem_ready) {
		if (mem_init(&mem, RAM_SIZE))
			abort();
		mem_ready = true;
	}
	memcpy(&h, data, sizeof(h));
	data += sizeof(h);
	size -= sizeof(h);
	memset(mem.base, 0, DATA_MAX);
	memcpy(mem.base, data, size < DATA_MAX ? size : DATA_MAX);

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv))
		return 0;
	memset(&net, 0, sizeof(net));
	if (virtio_net_init(&net, "fuzz-net", &mem, &cfg, &sv[0], 1, 0)) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	pthread_mutex_lock(&net.vdev.lock);
	virtio_device_set_status(&net.vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_device_set_guest_features(&net.vdev, 0, h.features_lo);
	virtio_device_set_guest_features(&net.vdev, 1, 1);   /* VERSION_1 */
	virtio_device_set_status(&net.vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					    VIRTIO_CONFIG_S_FEATURES_OK);
	for (unsigned q = 0; q < 3; q++) {
		struct virtqueue *vq = &net.vdev.vqs[q];

		vq->st.size = h.qsize[q];
		/* Mostly inside RAM, sometimes past it. */
		vq->st.desc_addr = h.ring[q][0] % (RAM_SIZE + 0x10000);
		vq->st.avail_addr = h.ring[q][1] % (RAM_SIZE + 0x10000);
		vq->st.used_addr = h.ring[q][2] % (RAM_SIZE + 0x10000);
		virtq_enable(vq);
	}
	virtio_device_set_status(&net.vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					    VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	memset(frame, 0x5a, sizeof(frame));
	for (unsigned i = 0; i < (h.frames & 7u); i++)
		send(sv[1], frame, 60 + (i * 211) % (sizeof(frame) - 60), MSG_DONTWAIT);
	if (h.rounds & FUZZ_PUSHBACK) {
		int sndbuf = 4096;

		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	}
	for (unsigned r = 0; r < 1u + (h.rounds & 3u); r++) {
		bool more;

		virtio_net_tx_process(&net.qp[0], &more);
		if (h.rounds & FUZZ_PAUSE)
			virtio_net_drain(&net, false);
		if (!(h.rounds & FUZZ_NO_READ))
			drain(sv[1]);
		virtio_net_rx_process(&net.qp[0]);
		virtio_net_ctrl_process(&net);
	}
	pthread_mutex_unlock(&net.vdev.lock);
	virtio_net_uninit(&net);
	close(sv[1]);
	return 0;
}
