/* Virtio 1.x device core: device status and feature negotiation, split
 * virtqueues (virtio 1.2 §2.7) with INDIRECT_DESC and EVENT_IDX, and the DMA
 * hook for VIRTIO_F_ACCESS_PLATFORM. Transport-independent; virtio_pci.h is
 * the PCI transport.
 *
 * How a device uses it (see virtio_net.c):
 *
 *   virtio_device_init(&vdev, "net0", mem, VIRTIO_ID_NET, nr_queues, 256, &my_ops, me);
 *   vdev.host_features |= my feature bits;        // core adds VERSION_1, INDIRECT, EVENT_IDX
 *   virtio_pci_init(&vp, &vdev, pci_bus, ...);    // transport: caps, BAR, MSI-X, kick fds
 *   ... each queue has vq->kick_fd (an eventfd the transport signals through
 *       an ioeventfd or on a trapped notify write): watch it in the event loop.
 *
 *   On a kick, with vdev->lock held:
 *     while ((r = virtq_pop(vq, elem)) > 0) {
 *         if (r == VIRTQ_FAULT) { virtq_push(vq, elem, 0); continue; }   // request failed
 *         use elem->iov; virtq_push(vq, elem, written);
 *     }
 *     if (r < 0) the device is already marked NEEDS_RESET; stop.
 *     virtq_notify(vq);                         // interrupt unless suppressed (EVENT_IDX)
 *
 * Validation (every descriptor, every time): ring and buffer addresses go
 * through virtio_dma_map() (checked gpa translation), zero lengths, chains
 * longer than the queue size or the indirect table (this also catches loops),
 * next indices out of range, readable-after-writable, INDIRECT without the
 * feature, INDIRECT together with NEXT, nested INDIRECT, indirect table length
 * not a multiple of 16, avail index running ahead by more than the queue size.
 * Any violation calls virtio_device_set_broken(): status gets NEEDS_RESET
 * (§2.1.2), the first reason is logged once, a configuration interrupt is sent
 * if DRIVER_OK was set, and the device processes nothing more until the driver
 * resets it. Nothing else in the VMM is affected.
 *
 * DMA (for virtio-iommu): EVERY guest address the core touches (rings,
 * indirect tables, buffers) goes through virtio_dma_map(). With no translate
 * hook, or ACCESS_PLATFORM not negotiated, addresses are guest-physical. With
 * virtio_device_set_dma_translate(), the hook maps IOVA -> GPA first. Ring
 * pointers are cached when a queue is enabled: after an IOMMU mapping change,
 * call virtio_device_remap_rings(). Every VMM write into guest memory marks
 * the pages dirty (mem_mark_dirty on the translated GPA).
 *
 * Translation faults (the hook refuses an IOVA: unmapped, or read-only for a
 * device write) are not driver errors of the virtqueue: the guest's IOMMU
 * driver decides what a device may reach, and a fault is how it is enforced.
 * So a fault on a request's buffer or indirect table fails that request
 * only: virtq_pop() returns VIRTQ_FAULT with elem->head set and no buffers,
 * the device returns the chain with used length 0 without touching its
 * memory, and the queue keeps running (the hook has reported the fault, for
 * virtio-iommu on its event queue). A fault on a ring (descriptor table,
 * driver or device area, at queue enable or re-translation) is different:
 * the device can neither fetch nor return any request on that queue, and
 * there is no used element to fail one through, so the device goes
 * NEEDS_RESET (virtio 1.2 §2.1.2: "the device has experienced an error from
 * which it can't recover"). A translated address outside guest RAM stays a
 * driver error (NEEDS_RESET) like an untranslated one.
 *
 * Locking: vdev->lock serializes the transport (vCPU threads writing common
 * config) against queue processing (event loop). Queue functions below
 * expect the caller to hold it. Lock order: vdev->lock before the PCI MSI-X lock. */
#ifndef DEVICES_VIRTIO_H
#define DEVICES_VIRTIO_H

#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/log.h"
#include "vmm/mem.h"

#define VIRTQ_MAX_SIZE       256     /* queue size we offer; also the longest chain */
#define VIRTIO_NO_VECTOR     0xffff
#define VIRTIO_MAX_QUEUES    64
#define VIRTIO_ISR_QUEUE     0x1     /* ISR status bits (§4.1.4.5) */
#define VIRTIO_ISR_CONFIG    0x2

struct virtio_device;

/* One popped descriptor chain: device-readable segments first (out), then
 * device-writable (in). gpa[] holds each segment's guest-physical address
 * after DMA translation, for dirty marking. */
struct virtq_elem {
	uint16_t head;
	uint16_t out_num, in_num;
	uint32_t out_len, in_len;    /* total bytes */
	struct iovec iov[VIRTQ_MAX_SIZE];
	uint64_t gpa[VIRTQ_MAX_SIZE];
};

/* Serializable per-queue state (what migration saves). */
struct virtq_state {
	uint16_t size;               /* negotiated */
	uint16_t msix_vector;
	bool enabled;
	uint64_t desc_addr, avail_addr, used_addr;   /* as the driver wrote them (DMA addresses) */
	uint16_t last_avail_idx, used_idx;
	uint16_t signalled_used;
	bool signalled_used_valid;
};

struct virtqueue {
	struct virtio_device *vdev;
	unsigned index;
	uint16_t max_size;
	struct virtq_state st;
	/* Host pointers to the rings, valid while st.enabled. */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint64_t used_gpa;            /* translated, for dirty marking */
	int kick_fd;                  /* eventfd signalled by guest notifications */
	/* Avail index of a chain that already faulted (and was reported) but
	 * was given back with virtq_unpop(): popping it again fails it without
	 * translating (and reporting) again. Forgotten once a later chain is popped. */
	uint16_t fault_idx;
	bool fault_idx_valid;
	/* Counters. */
	uint64_t pops, notifies, suppressed, faults;
};

struct virtio_device_ops {
	/* Device-specific config space (virtio 1.2 §4.1.4.6 region). */
	void (*get_config)(struct virtio_device *vdev, uint32_t off, void *data, uint32_t len);
	void (*set_config)(struct virtio_device *vdev, uint32_t off, const void *data, uint32_t len);
	/* Driver set FEATURES_OK with vdev->st.guest_features; return 0 to accept. Optional. */
	int (*features_ok)(struct virtio_device *vdev);
	/* Driver set DRIVER_OK: start processing. Called with vdev->lock held. */
	void (*driver_ok)(struct virtio_device *vdev);
	/* Device reset: stop processing, drop back-end state. vdev->lock held. */
	void (*reset)(struct virtio_device *vdev);
	/* Optional: the DMA translation changed (virtio_device_remap_rings(),
	 * e.g. an IOMMU UNMAP): buffer addresses translated earlier and still
	 * held (I/O in flight) must not be used anymore. vdev->lock held. */
	void (*dma_changed)(struct virtio_device *vdev);
};

struct virtio_transport_ops {
	/* Raise interrupt @vector (VIRTIO_NO_VECTOR: none configured). */
	int (*notify)(void *opaque, uint16_t vector);
};

/* A DMA translation hook's answer: IOVAs [start, last] map linearly to
 * gpa.. with access @perm (VIRTIO_DMA_READ/WRITE), for as long as the hook's
 * generation counter (virtio_device_set_dma_translate) equals @gen. It must
 * contain the range that was asked for. */
struct virtio_dma_range {
	uint64_t start, last;
	uint64_t gpa;                 /* guest-physical address of start */
	uint64_t gen;
	uint32_t perm;
};
#define VIRTIO_DMA_READ  1u
#define VIRTIO_DMA_WRITE 2u

/* 0 and *r; -EFAULT: refused (translation fault, reported by the hook);
 * other -errno: bad request (zero length, wrap). */
typedef int (*virtio_dma_translate_fn)(void *opaque, uint64_t iova, uint64_t len, bool write,
				       struct virtio_dma_range *r);

/* The device side of translation (like a PCIe device's ATS cache): recent
 * answers of the hook, IOVA -> host address, direct-mapped by IOVA page.
 * Private to the device and used under vdev->lock only, so a hit is a few
 * plain loads and compares: no lock, no atomic besides the load of the
 * hook's generation that validates it. */
#define VIRTIO_DMA_CACHE_SIZE 256
struct virtio_dma_cache_entry {
	uint64_t start, last;         /* IOVA range, inclusive */
	uint64_t gen;
	uint8_t *hva;                 /* host address of start */
	uint64_t gpa;                 /* guest-physical address of start */
	uint32_t perm;                /* VIRTIO_DMA_*; 0 = empty */
};

/* Serializable common state. */
struct virtio_common_state {
	uint64_t guest_features;
	uint32_t device_feature_select, driver_feature_select;
	uint8_t status;
	uint8_t config_generation;
	uint16_t config_vector;
	uint16_t queue_select;
};

struct virtio_device {
	char name[32];                /* log prefix */
	struct guest_mem *mem;
	uint32_t device_id;           /* VIRTIO_ID_* */
	uint64_t host_features;       /* offered */
	const struct virtio_device_ops *ops;
	void *opaque;                 /* the device model */
	const struct virtio_transport_ops *transport;
	void *transport_opaque;
	virtio_dma_translate_fn dma_translate;
	void *dma_opaque;
	const _Atomic uint64_t *dma_gen;  /* bumped by the hook's owner on every change */
	struct virtio_dma_cache_entry *dma_cache;   /* VIRTIO_DMA_CACHE_SIZE, with the hook */
	uint64_t dma_cache_hits, dma_cache_misses;
	pthread_mutex_t lock;
	struct virtio_common_state st;
	_Atomic uint8_t isr;          /* bit 0 queue interrupt, bit 1 config change */
	struct log_ratelimit fault_log;   /* translation fault messages */
	bool broken;                  /* NEEDS_RESET set; cleared by reset */
	/* The VM is paused (migration, snapshot): no queue work at all. Kept
	 * across device resets; only virtio_device_quiesce() changes it. */
	bool quiesced;
	char broken_reason[128];
	unsigned nr_queues;
	struct virtqueue *vqs;
	uint64_t resets, broken_count;
};

int virtio_device_init(struct virtio_device *vdev, const char *name, struct guest_mem *mem,
		       uint32_t device_id, unsigned nr_queues, uint16_t queue_size,
		       const struct virtio_device_ops *ops, void *opaque);
void virtio_device_destroy(struct virtio_device *vdev);   /* closes kick fds */

static inline bool virtio_has_feature(const struct virtio_device *vdev, unsigned bit)
{
	return (vdev->st.guest_features >> bit) & 1;
}

/* Device reset (driver wrote 0 to device_status, or VM reset). Lock held. */
void virtio_device_reset(struct virtio_device *vdev);
/* Driver wrote device_status. Lock held. */
void virtio_device_set_status(struct virtio_device *vdev, uint8_t status);
/* Driver wrote a 32-bit half of the driver features. Lock held. */
void virtio_device_set_guest_features(struct virtio_device *vdev, unsigned word, uint32_t val);
/* Enable the selected queue: check size/alignment, map rings. Lock held. */
int virtq_enable(struct virtqueue *vq);
/* Re-translate ring addresses of enabled queues (after an IOMMU change) and
 * tell the device (ops->dma_changed). Lock held. */
int virtio_device_remap_rings(struct virtio_device *vdev);
/* Mark the device NEEDS_RESET (driver violated the spec). Lock held. */
void virtio_device_set_broken(struct virtio_device *vdev, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Send a configuration change interrupt (e.g. link status, announce). Lock held. */
void virtio_device_config_changed(struct virtio_device *vdev);
/* Install (@fn non-NULL) or remove the DMA translation hook. @gen is the
 * owner's generation counter: the owner bumps it before any change of the
 * translation takes effect (returns), which invalidates the device's DMA
 * cache. Offers VIRTIO_F_ACCESS_PLATFORM. 0 or -ENOMEM. */
int virtio_device_set_dma_translate(struct virtio_device *vdev, virtio_dma_translate_fn fn,
				    void *opaque, const _Atomic uint64_t *gen);

/* Stop (@on) or restart queue processing while the VM is paused: with the
 * flag set, virtq_pop() finds nothing and virtq_set_notification() writes
 * nothing, so the device cannot write guest RAM (or consume back-end data on
 * the guest's behalf). Takes vdev->lock: queue work runs entirely under it,
 * so when this returns no work is in flight. Kicks that arrive meanwhile are
 * the device's to look at again after restarting. */
void virtio_device_quiesce(struct virtio_device *vdev, bool on);

/* The one gate for guest addresses: translate (IOVA->GPA if the hook is set
 * and ACCESS_PLATFORM negotiated; the DMA cache first), check [addr,
 * addr+len) is RAM, return the host pointer (NULL on failure); *gpa
 * (optional) gets the guest-physical address. vdev->lock held. */
void *virtio_dma_map(struct virtio_device *vdev, uint64_t addr, uint64_t len, bool write,
		     uint64_t *gpa);

/* Queue processing (vdev->lock held). */
#define VIRTQ_FAULT 2
/* 1: a chain was popped into @elem; 0: queue empty (or not running, or
 * quiesced); -errno:
 * the chain was malformed and the device is now broken; VIRTQ_FAULT: a chain
 * was popped but the IOMMU refused one of its buffers (or its indirect
 * table): the request fails. elem->head is set, elem has no buffers; the
 * caller returns it (virtq_fill/virtq_push with length 0), or gives it back
 * with virtq_unpop() (it then fails again without a second fault report).
 * Counted in vq->faults and logged (rate-limited). */
int virtq_pop(struct virtqueue *vq, struct virtq_elem *elem);
/* Give back the last @n popped chains unused (e.g. RX buffers we did not fill). */
void virtq_unpop(struct virtqueue *vq, uint16_t n);
/* Write a used element at used_idx + @pos without publishing it; marks the
 * first @len bytes of the chain's writable buffers dirty. */
void virtq_fill(struct virtqueue *vq, const struct virtq_elem *elem, uint32_t len, uint16_t pos);
/* The same for a chain known by its head, whose buffers the device did not
 * write (TX: @len 0); marks only the used entry dirty. */
void virtq_fill_head(struct virtqueue *vq, uint16_t head, uint32_t len, uint16_t pos);
/* Publish @count filled elements (store-release of used->idx). */
void virtq_flush(struct virtqueue *vq, uint16_t count);
static inline void virtq_push(struct virtqueue *vq, const struct virtq_elem *elem, uint32_t len)
{
	virtq_fill(vq, elem, len, 0);
	virtq_flush(vq, 1);
}
/* Number of available chains not yet popped (0 if not running). */
uint16_t virtq_avail_count(struct virtqueue *vq);
/* Ask for (or suppress) driver notifications. With EVENT_IDX writes
 * avail_event = last_avail_idx (§2.7.10). Returns true if buffers arrived
 * meanwhile, so the caller must poll again rather than sleep. */
bool virtq_set_notification(struct virtqueue *vq, bool enable);
/* Does the driver want an interrupt for what we used since the last one? (§2.7.7.2) */
bool virtq_should_notify(struct virtqueue *vq);
/* Interrupt the driver if it wants one. */
void virtq_notify(struct virtqueue *vq);
/* vring_need_event() from the spec: exposed for tests. */
static inline bool virtq_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old_idx);
}

/* iovec helpers: copy to/from a chain's segments, starting at byte @skip. */
size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t skip, const void *buf, size_t len);
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len);

#endif
