/* State of a virtio-pci function (the virtio-iommu's own transport) in the
 * state tree: PCI configuration space, MSI-X vectors, virtio common state
 * and every queue. Nothing here is IOMMU-specific: it works on any struct
 * virtio_pci and can move next to virtio_pci.c when other virtio devices
 * need it.
 *
 *   <node>/pci        version, config (4 KiB), msix (5 x u32 per vector:
 *                     addr_lo, addr_hi, data, ctrl, pending)
 *   <node>/virtio     version, features, dfselect, gfselect, status,
 *                     config-generation, config-vector, queue-select, isr,
 *                     broken
 *   <node>/virtio/queue@N  size, vector, enabled, desc, avail, used,
 *                     last-avail, used-idx, signalled-used, signalled-valid
 *
 * Load parses and checks everything first, then replays the configuration
 * space through the PCI core's own write path (so write masks apply and BAR
 * moves / MSI-X enables have their usual effects), rewrites the MSI-X table
 * through the table emulation, and re-enables the queues (their rings are
 * translated and bounds-checked again). */
#ifndef DEVICES_VIRTIO_IOMMU_TRANSPORT_H
#define DEVICES_VIRTIO_IOMMU_TRANSPORT_H

#include "devices/virtio_pci.h"
#include "migration/state.h"

int viommu_transport_save(struct virtio_pci *vp, struct state_node *node);
int viommu_transport_load(struct virtio_pci *vp, const struct state_node *node);

#endif
