/* Virtio 1.x modern PCI transport (virtio 1.2 §4.1).
 *
 * One 64-bit memory BAR (BAR 4) holds every structure:
 *   0x0000 common configuration   (VIRTIO_PCI_CAP_COMMON_CFG)
 *   0x1000 ISR status             (VIRTIO_PCI_CAP_ISR_CFG, read clears)
 *   0x2000 device configuration   (VIRTIO_PCI_CAP_DEVICE_CFG)
 *   0x3000 notifications          (VIRTIO_PCI_CAP_NOTIFY_CFG, queue i at +4*i)
 *   0x4000 MSI-X table, 0x6000 MSI-X PBA
 * plus the VIRTIO_PCI_CAP_PCI_CFG window in config space (§4.1.4.9).
 *
 * Notifications: each queue's notify address gets a KVM ioeventfd on the
 * queue's kick_fd (2-byte writes), re-registered when the BAR moves; a write
 * KVM does not match (other width) is trapped and signals the same eventfd.
 * Interrupts: MSI-X only (config vector + one per queue), through irqfds.
 *
 * Usage: embed struct virtio_pci next to your struct virtio_device, then
 *   virtio_pci_init(&vp, &vdev, bus, 0x1040 + VIRTIO_ID_xxx, class_code);
 *   virtio_pci_destroy(&vp) on teardown. */
#ifndef DEVICES_VIRTIO_PCI_H
#define DEVICES_VIRTIO_PCI_H

#include "devices/pci.h"
#include "devices/virtio.h"

#define VIRTIO_PCI_VENDOR       0x1af4
#define VIRTIO_PCI_DEVICE_BASE  0x1040      /* + virtio device id (§4.1.2.1) */
#define VIRTIO_PCI_BAR          4
#define VIRTIO_PCI_BAR_SIZE     0x8000
#define VIRTIO_PCI_COMMON_OFF   0x0000
#define VIRTIO_PCI_ISR_OFF      0x1000
#define VIRTIO_PCI_DEVICE_OFF   0x2000
#define VIRTIO_PCI_NOTIFY_OFF   0x3000
#define VIRTIO_PCI_NOTIFY_MULT  4
#define VIRTIO_PCI_MSIX_TABLE   0x4000
#define VIRTIO_PCI_MSIX_PBA     0x6000
#define VIRTIO_PCI_REGION_SIZE  0x1000

struct virtio_pci {
	struct pci_device pci;
	struct virtio_device *vdev;
	uint16_t pci_cfg_cap;          /* offset of the VIRTIO_PCI_CAP_PCI_CFG capability */
	uint64_t notify_base;          /* guest address of the notify region while mapped */
	bool ioeventfds_on;
	uint64_t kicks_trapped;        /* notify writes that reached us instead of KVM */
};

int virtio_pci_init(struct virtio_pci *vp, struct virtio_device *vdev, struct pci_bus *bus,
		    uint16_t pci_device_id, uint32_t class_code);
void virtio_pci_destroy(struct virtio_pci *vp);

/* Direct BAR access, for tests and the PCI_CFG window. */
void virtio_pci_bar_read(struct virtio_pci *vp, uint64_t off, void *data, uint32_t len);
void virtio_pci_bar_write(struct virtio_pci *vp, uint64_t off, const void *data, uint32_t len);

#endif
