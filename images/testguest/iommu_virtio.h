/* Guest side for the virtio-iommu scenarios: a minimal polled virtio 1.x
 * PCI driver (virtio 1.2 §4.1 modern transport, §2.7 split queues), a
 * virtio-iommu driver (§5.13) and just enough virtio-net TX to make a
 * device behind the IOMMU do DMA through translated addresses.
 * Everything is polled (no interrupts): the guest runs emulated. */
#ifndef TESTGUEST_IOMMU_VIRTIO_H
#define TESTGUEST_IOMMU_VIRTIO_H

#include "guest.h"
#include "pci.h"

#define VQ_SIZE 8

struct gvirtio {
	struct pci_dev pci;
	u64 common, notify, device;   /* MMIO addresses of the config structures */
	u32 notify_mult;
	u64 features;                 /* negotiated */
};

struct gvq_desc { u64 addr; u32 len; u16 flags; u16 next; } __attribute__((packed));

struct gvq {
	u16 index, size, avail_idx, last_used;
	volatile struct gvq_desc *desc;   /* ring memory, guest-physical = virtual */
	volatile u16 *avail;              /* flags, idx, ring[size], used_event */
	volatile u32 *used;               /* flags|idx, then {id, len} pairs */
	u64 ring_gpa;                     /* one page: desc +0, avail +0x200, used +0x400 */
	u64 ring_dma;                     /* what the device is told (GPA or IOVA) */
	u64 notify_addr;
};

#define GVQ_F_NEXT  1
#define GVQ_F_WRITE 2

struct gbuf {
	u64 addr;     /* device address (GPA or IOVA) */
	u32 len;
	bool write;   /* device-writable */
};

/* Find the nth function with @device_id, reset it, negotiate @want (VERSION_1
 * is added), set FEATURES_OK. 0 or -1. */
int gvirtio_init(struct gvirtio *v, u16 device_id, unsigned nth, u64 want);
/* Queue @index with its ring page at @ring_gpa, given to the device as
 * @ring_dma (an IOVA when the device is behind the IOMMU). */
int gvq_setup(struct gvirtio *v, struct gvq *q, u16 index, u64 ring_gpa, u64 ring_dma);
void gvirtio_driver_ok(struct gvirtio *v);
u8 gvirtio_status(struct gvirtio *v);
void gvirtio_reset(struct gvirtio *v);
/* Post a chain and notify; returns the head. */
u16 gvq_submit(struct gvq *q, const struct gbuf *bufs, unsigned n);
/* Post without notifying (gvq_kick later). */
u16 gvq_post(struct gvq *q, const struct gbuf *bufs, unsigned n);
void gvq_kick(struct gvq *q);
/* Wait up to @timeout_us for the next used element; its length in *len.
 * 0 on success, -1 on timeout. */
int gvq_wait(struct gvq *q, u32 *len, u64 timeout_us);
u16 gvq_used_idx(struct gvq *q);

/* ---- virtio-iommu driver ---- */
struct giommu {
	struct gvirtio v;
	struct gvq req, evt;
	u8 *req_buf, *out_buf, *evt_buf;   /* one page each */
	u64 page_size_mask, input_start, input_end;
	u32 domain_start, domain_end, probe_size;
};

int giommu_init(struct giommu *io);
/* Requests; return the status byte (0 = OK) or -1 if the device used the
 * buffer without writing (used length 0) or did not answer. */
int giommu_attach(struct giommu *io, u32 domain, u32 ep);
int giommu_detach(struct giommu *io, u32 domain, u32 ep);
int giommu_map(struct giommu *io, u32 domain, u64 va, u64 size, u64 pa, u32 flags);
int giommu_unmap(struct giommu *io, u32 domain, u64 va, u64 size);
/* PROBE: properties are left in io->out_buf. */
int giommu_probe(struct giommu *io, u32 ep);
/* Wait for a fault event; fills reason/flags/endpoint/address. 0 or -1. */
int giommu_wait_fault(struct giommu *io, u8 *reason, u32 *flags, u32 *ep, u64 *addr,
		      u64 timeout_us);

#define GIOMMU_MAP_R 1
#define GIOMMU_MAP_W 2

/* VIOT (ACPI): the endpoint ID of PCI function @bdf behind the virtio-iommu
 * at @iommu_bdf, or -1 if the table does not say so. */
long viot_endpoint(u16 iommu_bdf, u16 bdf);

static inline u16 gpci_bdf(const struct pci_dev *d)
{
	return (u16)(d->bus << 8 | d->dev << 3 | d->fn);
}

#endif
