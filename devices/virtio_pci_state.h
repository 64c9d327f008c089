/* State of a virtio-pci function in the state tree: PCI configuration
 * space, MSI-X vectors, virtio common state and every queue. Generic over
 * any struct virtio_pci (used by virtio-iommu and virtio-net); the device's
 * own state lives next to it in the device's node.
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
#ifndef DEVICES_VIRTIO_PCI_STATE_H
#define DEVICES_VIRTIO_PCI_STATE_H

#include "devices/virtio_pci.h"
#include "migration/state.h"

int virtio_pci_state_save(struct virtio_pci *vp, struct state_node *node);
int virtio_pci_state_load(struct virtio_pci *vp, const struct state_node *node);

/* Load in two steps, for devices whose own state must be validated too
 * before anything changes (all-or-nothing): parse+check into an opaque
 * object, then apply it (or just free it). apply() may still fail if a
 * queue's rings are not accessible (guest memory checked again). */
struct virtio_pci_parsed;
int virtio_pci_state_parse(struct virtio_pci *vp, const struct state_node *node,
			   struct virtio_pci_parsed **out);
int virtio_pci_state_apply(struct virtio_pci *vp, const struct virtio_pci_parsed *p);
void virtio_pci_parsed_free(struct virtio_pci_parsed *p);
/* Parsed values a device may want to cross-check before applying. */
uint64_t virtio_pci_parsed_features(const struct virtio_pci_parsed *p);
uint8_t virtio_pci_parsed_status(const struct virtio_pci_parsed *p);

#endif
