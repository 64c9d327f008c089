/* The virtio-net TX path on the device side, with the IOMMU on vs off:
 * a 256-entry queue of 2-descriptor chains (12-byte virtio-net header +
 * 256-byte frame). Two devices under test:
 *   core: the device pops each chain through the virtio core (every
 *         descriptor address goes through virtio_dma_map -> IOVA
 *         translation when the IOMMU is on), copies the frame out and pushes
 *         the used element: the translation-sensitive part alone;
 *   net:  virtio-net's own TX path (virtio_net_tx_process), each frame
 *         written to /dev/null instead of a TAP: what a guest's TX costs.
 * The guest side refills the ring between batches (not timed). Included by
 * iommu_bench.c only. */
#ifndef BENCH_IOMMU_TX_PATH_H
#define BENCH_IOMMU_TX_PATH_H

#include <fcntl.h>
#include <unistd.h>

#include "devices/virtio.h"
#include "devices/virtio_iommu.h"
#include "devices/virtio_net.h"

#define TX_QSZ     256
#define TX_FRAME   256
#define TX_HDR     12
#define TX_ROUNDS  2000
#define TX_RING_GPA 0x100000ULL
#define TX_BUF_GPA  0x200000ULL     /* one 4 KiB slot per descriptor chain */
#define TX_IOVA_OFF 0x40000000ULL   /* IOVA = GPA + offset when translated */

#define TX_CHAINS  (TX_QSZ / 2)
#define TX_MAX_SETS 4

struct tx_result {
	double fps_off, fps_on;            /* buffers in 128 pages: fits the translation cache */
	double fps_off_miss, fps_on_miss;  /* buffers rotate over 512 pages: 2x the cache */
	double fps_off_net, fps_on_net;    /* virtio-net's own TX path, frames written to /dev/null */
	unsigned frame_bytes;
};

struct tx_bench {
	struct guest_mem mem;
	struct virtio_device vdev;
	struct virtio_net net;            /* real_net: the device under test is net.vdev */
	bool real_net;
	struct virtio_iommu viommu;
	uint64_t addr_off;              /* 0 (identity) or TX_IOVA_OFF */
	uint16_t avail_idx;
	unsigned nr_sets;               /* buffer page sets the rounds rotate over */
};

static int tx_notify(void *opaque, uint16_t vector)
{
	return 0;
}

static const struct virtio_transport_ops tx_transport = { .notify = tx_notify };

static uint64_t tx_desc_gpa(void) { return TX_RING_GPA; }
static uint64_t tx_avail_gpa(void) { return TX_RING_GPA + 16 * TX_QSZ; }
static uint64_t tx_used_gpa(void) { return TX_RING_GPA + 0x2000; }

/* Guest driver side: chains i -> i + 128, buffers in page set @set. */
static void tx_fill_descs(struct tx_bench *b, unsigned set)
{
	struct vring_desc *d = mem_gpa_to_hva(&b->mem, tx_desc_gpa(), 16 * TX_QSZ);

	for (unsigned i = 0; i < TX_QSZ / 2; i++) {
		uint64_t slot = TX_BUF_GPA + 4096ULL * (set * TX_CHAINS + i) + b->addr_off;

		d[i] = (struct vring_desc){ .addr = slot, .len = TX_HDR, .flags = VRING_DESC_F_NEXT,
					    .next = (uint16_t)(i + TX_QSZ / 2) };
		d[i + TX_QSZ / 2] = (struct vring_desc){ .addr = slot + 64, .len = TX_FRAME };
	}
}

static void tx_refill(struct tx_bench *b)
{
	struct vring_avail *a = mem_gpa_to_hva(&b->mem, tx_avail_gpa(), 4 + 2 * TX_QSZ + 2);

	for (unsigned i = 0; i < TX_QSZ / 2; i++)
		a->ring[(b->avail_idx + i) % TX_QSZ] = (uint16_t)i;
	b->avail_idx += TX_QSZ / 2;
	__atomic_store_n(&a->idx, b->avail_idx, __ATOMIC_RELEASE);
}

/* The device under test: a bare virtio device (core path only) or a real
 * virtio-net writing each frame to /dev/null (its whole TX path). */
static struct virtio_device *tx_dev(struct tx_bench *b)
{
	return b->real_net ? &b->net.vdev : &b->vdev;
}

static struct virtqueue *tx_vq(struct tx_bench *b)
{
	return b->real_net ? b->net.qp[0].txq : &b->vdev.vqs[0];
}

static int tx_create_device(struct tx_bench *b)
{
	struct net_config cfg;
	int fd;

	if (!b->real_net)
		return virtio_device_init(&b->vdev, "tx-bench", &b->mem, 1, 1, TX_QSZ, NULL, NULL);
	memset(&cfg, 0, sizeof(cfg));
	cfg.queues = 1;
	fd = open("/dev/null", O_WRONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -1;
	return virtio_net_init(&b->net, "tx-bench", &b->mem, &cfg, &fd, 1, 0);
}

static int tx_setup(struct tx_bench *b, bool iommu, unsigned nr_sets, bool real_net)
{
	uint64_t f = (1ULL << VIRTIO_F_VERSION_1) | (iommu ? 1ULL << VIRTIO_F_ACCESS_PLATFORM : 0);
	struct virtio_device *dev;
	struct virtqueue *vq;

	memset(b, 0, sizeof(*b));
	b->nr_sets = nr_sets;
	b->real_net = real_net;
	if (mem_init(&b->mem, 16u << 20) || tx_create_device(b) ||
	    virtio_iommu_init(&b->viommu, &b->mem, NULL))
		return -1;
	dev = tx_dev(b);
	dev->transport = &tx_transport;
	if (iommu) {
		/* The driver maps its rings and buffers at IOVA = GPA + 1 GiB. */
		if (virtio_iommu_add_endpoint(&b->viommu, dev, 0x10) ||
		    iommu_attach(&b->viommu.io, 1, 0x10, 0) ||
		    iommu_map(&b->viommu.io, 1, TX_RING_GPA + TX_IOVA_OFF,
			      TX_RING_GPA + TX_IOVA_OFF + 0x2fff, TX_RING_GPA,
			      IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE))
			return -1;
		/* One mapping per buffer page, like a streaming DMA map per packet. */
		for (unsigned i = 0; i < TX_CHAINS * nr_sets; i++)
			if (iommu_map(&b->viommu.io, 1, TX_BUF_GPA + TX_IOVA_OFF + 4096ULL * i,
				      TX_BUF_GPA + TX_IOVA_OFF + 4096ULL * i + 4095,
				      TX_BUF_GPA + 4096ULL * i, IOMMU_MAP_F_READ))
				return -1;
		b->addr_off = TX_IOVA_OFF;
	}
	vq = tx_vq(b);
	pthread_mutex_lock(&dev->lock);
	virtio_device_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_device_set_guest_features(dev, 0, (uint32_t)f);
	virtio_device_set_guest_features(dev, 1, (uint32_t)(f >> 32));
	virtio_device_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					  VIRTIO_CONFIG_S_FEATURES_OK);
	vq->st.size = TX_QSZ;
	vq->st.desc_addr = tx_desc_gpa() + b->addr_off;
	vq->st.avail_addr = tx_avail_gpa() + b->addr_off;
	vq->st.used_addr = tx_used_gpa() + b->addr_off;
	vq->st.msix_vector = VIRTIO_NO_VECTOR;
	if (virtq_enable(vq)) {
		pthread_mutex_unlock(&dev->lock);
		return -1;
	}
	virtio_device_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					  VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

static void tx_teardown(struct tx_bench *b)
{
	virtio_iommu_destroy(&b->viommu);
	if (b->real_net)
		virtio_net_uninit(&b->net);
	else
		virtio_device_destroy(&b->vdev);
	mem_destroy(&b->mem);
}

/* One timed batch: every posted chain through the device. Returns the
 * frames done, or -1 if the device broke. */
static long tx_batch(struct tx_bench *b, struct virtq_elem *elem, unsigned round, double *t)
{
	struct virtio_device *dev = tx_dev(b);
	struct virtqueue *vq = tx_vq(b);
	uint8_t frame[TX_HDR + TX_FRAME];
	uint64_t sum = 0;
	long frames = 0;
	bool more;
	double t0;
	int r;

	tx_fill_descs(b, round % b->nr_sets);
	tx_refill(b);
	t0 = now_s();
	pthread_mutex_lock(&dev->lock);
	if (b->real_net) {
		do {
			r = virtio_net_tx_process(&b->net.qp[0], &more);
			frames += r > 0 ? r : 0;
		} while (r >= 0 && more);
	} else {
		while ((r = virtq_pop(vq, elem)) == 1) {
			size_t n = iov_to_buf(elem->iov, elem->out_num, 0, frame, sizeof(frame));

			sum += frame[n - 1];
			virtq_push(vq, elem, 0);
			frames++;
		}
		if (r == VIRTQ_FAULT)
			r = -EFAULT;        /* every buffer is mapped: a fault is a bug */
	}
	pthread_mutex_unlock(&dev->lock);
	*t += now_s() - t0;
	__asm__ volatile("" : : "r"(sum));
	return r < 0 || dev->broken ? -1 : frames;
}

/* IOMMU off and on side by side: batches alternate between the two devices,
 * so both see the same machine noise (the build machines are shared). */
static int tx_pair(unsigned nr_sets, bool real_net, double *fps_off, double *fps_on)
{
	static struct tx_bench off, on;
	static struct virtq_elem elem;
	double t_off = 0, t_on = 0;
	long f_off = 0, f_on = 0, n;
	int ret = -1;

	if (tx_setup(&off, false, nr_sets, real_net) || tx_setup(&on, true, nr_sets, real_net))
		goto out;
	for (unsigned round = 0; round < TX_ROUNDS; round++) {
		n = tx_batch(&off, &elem, round, &t_off);
		if (n < 0)
			goto out;
		f_off += n;
		n = tx_batch(&on, &elem, round, &t_on);
		if (n < 0)
			goto out;
		f_on += n;
	}
	*fps_off = (double)f_off / t_off;
	*fps_on = (double)f_on / t_on;
	ret = 0;
out:
	tx_teardown(&off);
	tx_teardown(&on);
	return ret;
}

static int cmp_ratio(const void *a, const void *b)
{
	const double *x = a, *y = b;
	double rx = x[1] / x[0], ry = y[1] / y[0];

	return rx < ry ? -1 : rx > ry;
}

/* 7 side-by-side pairs per working-set size; report the pair with the median
 * on/off ratio (not the best one: that would pick noise). */
static int tx_path_bench(struct tx_result *res)
{
	double hit[7][2], miss[7][2], net[7][2];

	memset(res, 0, sizeof(*res));
	res->frame_bytes = TX_FRAME;
	for (int i = 0; i < 7; i++)
		if (tx_pair(1, false, &hit[i][0], &hit[i][1]) ||
		    tx_pair(TX_MAX_SETS, false, &miss[i][0], &miss[i][1]) ||
		    tx_pair(1, true, &net[i][0], &net[i][1]))
			return -1;
	qsort(hit, 7, sizeof(hit[0]), cmp_ratio);
	qsort(miss, 7, sizeof(miss[0]), cmp_ratio);
	qsort(net, 7, sizeof(net[0]), cmp_ratio);
	res->fps_off_net = net[3][0];
	res->fps_on_net = net[3][1];
	res->fps_off = hit[3][0];
	res->fps_on = hit[3][1];
	res->fps_off_miss = miss[3][0];
	res->fps_on_miss = miss[3][1];
	return 0;
}

#endif
