/* The virtio-iommu device (virtio 1.2 §5.13) on the virtio-pci transport.
 *
 *   requestq (0): ATTACH/DETACH/MAP/UNMAP/PROBE, handled by viommu_req_handle()
 *                 on struct iommu (iommu_map.h);
 *   eventq   (1): fault reports (§5.13.6.9) for translation faults of the
 *                 devices behind it.
 * Features offered: INPUT_RANGE, DOMAIN_RANGE, MAP_UNMAP, PROBE, BYPASS_CONFIG
 * (+ the core's VERSION_1, INDIRECT_DESC, EVENT_IDX). 4 KiB granule; the MSI
 * window 0xfee00000-0xfeefffff is reported by PROBE as RESV_MEM/MSI.
 *
 * Devices behind it: virtio_iommu_add_endpoint() registers a virtio device
 * (its PCI requester ID is the endpoint ID, as the VIOT table says) and installs
 * the virtio core's DMA hook, so once the driver negotiates
 * VIRTIO_F_ACCESS_PLATFORM every ring and buffer address of that device goes
 * IOVA -> GPA with permission checks: through the device's own DMA cache
 * (virtio.h), and on a miss through iommu_translate_ep_range(), whose
 * answer carries the generation (io.gen) that keeps the cached copy valid. A fault
 * fails the access (the core never touches guest memory for it) and is queued
 * for the event queue; the event loop delivers it. A fault on a request's
 * buffer fails that request only; a fault on a ring makes the device
 * NEEDS_RESET (see "Translation faults" in virtio.h).
 *
 * UNMAP is in effect before its request completes: iommu_unmap() invalidates
 * every cached translation before returning, and the device re-translates the
 * cached ring pointers of every device behind it (virtio_device_remap_rings)
 * before it pushes the used element.
 *
 * Locking: the device's vdev.lock, then a client's vdev.lock (remap), then the
 * iommu lock; the fault queue has its own lock taken last, so a client can
 * report a fault while holding its own vdev.lock. */
#ifndef DEVICES_VIRTIO_IOMMU_H
#define DEVICES_VIRTIO_IOMMU_H

#include <pthread.h>
#include <stdint.h>

#include "devices/iommu_map.h"
#include "devices/virtio.h"
#include "devices/virtio_iommu_req.h"

#define VIOMMU_QUEUE_SIZE     64
#define VIOMMU_MAX_CLIENTS    32
#define VIOMMU_PENDING_FAULTS 64

struct virtio_iommu;
struct state_node;
struct cJSON;

struct viommu_client {
	struct virtio_iommu *viommu;
	struct virtio_device *vdev;        /* the translated device; NULL for an external one */
	/* External endpoints (VFIO passthrough, vfio_pci.c) do their own DMA:
	 * sync() is called after every successful ATTACH/DETACH/MAP/UNMAP and
	 * after a reset, before the request completes, to mirror the endpoint's
	 * domain into the device's DMA context. */
	void (*sync)(void *opaque);
	void *sync_opaque;
	struct iommu_endpoint *ep;
	uint16_t bdf;
};

struct virtio_iommu {
	struct iommu io;
	struct virtio_device vdev;
	struct guest_mem *mem;
	unsigned nr_clients;
	struct viommu_client clients[VIOMMU_MAX_CLIENTS];
	/* Faults waiting for an event buffer; a ring of pending reports. */
	pthread_mutex_t fault_lock;
	struct iommu_fault pending[VIOMMU_PENDING_FAULTS];
	unsigned pending_head, pending_count;
	int fault_fd;                       /* eventfd: faults queued */
	/* Counters. */
	uint64_t requests, bad_requests, events_sent, faults_dropped;
};

/* Create the device model (queues, config) over @mem; @p NULL = defaults. */
int virtio_iommu_init(struct virtio_iommu *v, struct guest_mem *mem, const struct iommu_params *p);
/* Put an endpoint that does its own DMA (VFIO) behind the IOMMU: endpoint ID
 * @bdf, @sync(@opaque) called whenever the translation state changes. */
int virtio_iommu_add_external(struct virtio_iommu *v, uint16_t bdf, void (*sync)(void *opaque),
			      void *opaque);
void virtio_iommu_destroy(struct virtio_iommu *v);

/* Put virtio device @client (PCI requester ID @bdf) behind the IOMMU. Call
 * before the guest runs. Offers VIRTIO_F_ACCESS_PLATFORM on @client. */
int virtio_iommu_add_endpoint(struct virtio_iommu *v, struct virtio_device *client, uint16_t bdf);

/* Queue processing; take v->vdev.lock themselves. Called by the event loop
 * on the queues' kick fds and on fault_fd; callable directly in tests. */
void virtio_iommu_process_requests(struct virtio_iommu *v);
void virtio_iommu_flush_faults(struct virtio_iommu *v);
/* Queue a fault report (any thread, any lock held). */
void virtio_iommu_report_fault(struct virtio_iommu *v, const struct iommu_fault *f);

/* vm.info summary: domains, endpoints (attached domain), mapping counts. */
void virtio_iommu_info(struct virtio_iommu *v, struct cJSON *obj);

/* State: the iommu tree (virtio_iommu_state.h) under @node/iommu. The virtio
 * transport state is saved by its owner alongside. */
int virtio_iommu_save(struct virtio_iommu *v, struct state_node *node);
int virtio_iommu_load(struct virtio_iommu *v, const struct state_node *node);

#endif
