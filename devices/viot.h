/* ACPI VIOT (Virtual I/O Translation Table, ACPI 6.4+ §5.2.30; revision 0):
 * tells the guest which virtio-iommu PCI function translates which PCI
 * endpoints. Linux binds virtio-iommu to endpoints only through this table
 * (or a device tree) on x86.
 *
 * Layout built here:
 *   ACPI header (36) | node count u16 | node offset u16 | reserved[8]
 *   node 0: virtio-pci IOMMU (type 3, 16 bytes): segment, BDF of the IOMMU
 *   nodes 1..n: PCI range (type 1, 24 bytes): endpoint_start, segment
 *     start/end, BDF start/end, output node = offset of node 0
 * Endpoint IDs equal the PCI requester ID (endpoint_start = BDF start), which
 * is what the virtio-iommu device uses as its endpoint number. */
#ifndef DEVICES_VIOT_H
#define DEVICES_VIOT_H

#include <stddef.h>
#include <stdint.h>

#define VIOT_HEADER_SIZE      48
#define VIOT_NODE_PCI_RANGE   1
#define VIOT_NODE_MMIO        2
#define VIOT_NODE_VIRTIO_PCI  3
#define VIOT_NODE_VIRTIO_MMIO 4
#define VIOT_PCI_RANGE_SIZE   24
#define VIOT_VIRTIO_PCI_SIZE  16
#define VIOT_MAX_ENDPOINTS    256

/* PCI requester ID: bus << 8 | device << 3 | function. */
static inline uint16_t viot_bdf(unsigned bus, unsigned dev, unsigned fn)
{
	return (uint16_t)((bus & 0xff) << 8 | (dev & 0x1f) << 3 | (fn & 7));
}

struct viot_config {
	uint16_t iommu_segment;
	uint16_t iommu_bdf;
	unsigned nr_endpoints;
	uint16_t endpoint_bdf[VIOT_MAX_ENDPOINTS]; /* segment = iommu_segment */
};

/* Build the table into a malloc'd blob (checksum set). Consecutive BDFs are
 * merged into one PCI range node. -EINVAL if an endpoint is the IOMMU itself,
 * appears twice, or there are none/too many. */
int viot_build(const struct viot_config *cfg, uint8_t **blob, size_t *len);

#endif
