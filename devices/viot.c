/* ACPI VIOT builder (ACPI 6.4 §5.2.30). See viot.h. */
#include "devices/viot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/log.h"

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static int cmp_u16(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

/* Sort the endpoint BDFs and count the runs of consecutive values. */
static int sorted_endpoints(const struct viot_config *cfg, uint16_t *bdf, unsigned *nr_ranges)
{
	unsigned i;

	if (!cfg->nr_endpoints || cfg->nr_endpoints > VIOT_MAX_ENDPOINTS)
		return -EINVAL;
	memcpy(bdf, cfg->endpoint_bdf, cfg->nr_endpoints * sizeof(*bdf));
	qsort(bdf, cfg->nr_endpoints, sizeof(*bdf), cmp_u16);
	*nr_ranges = 1;
	for (i = 0; i < cfg->nr_endpoints; i++) {
		/* The IOMMU cannot translate its own DMA (Linux refuses it too). */
		if (bdf[i] == cfg->iommu_bdf)
			return -EINVAL;
		if (i && bdf[i] == bdf[i - 1])
			return -EINVAL;
		if (i && bdf[i] != bdf[i - 1] + 1)
			(*nr_ranges)++;
	}
	return 0;
}

static void acpi_header(uint8_t *t, uint32_t len)
{
	memcpy(t, "VIOT", 4);
	put32(t + 4, len);
	t[8] = 0;                        /* revision 0 (ACPI 6.4 Table 5.178) */
	memcpy(t + 10, "VMMVMM", 6);     /* OEM ID */
	memcpy(t + 16, "VMMVIOT ", 8);   /* OEM table ID */
	put32(t + 24, 1);                /* OEM revision */
	memcpy(t + 28, "VMM ", 4);       /* creator ID */
	put32(t + 32, 1);                /* creator revision */
}

static uint8_t *pci_range_node(uint8_t *p, uint16_t seg, uint16_t first, uint16_t last,
			       uint16_t output_node)
{
	p[0] = VIOT_NODE_PCI_RANGE;
	put16(p + 2, VIOT_PCI_RANGE_SIZE);
	put32(p + 4, first);             /* endpoint ID of bdf_start: IDs == BDFs */
	put16(p + 8, seg);               /* segment start */
	put16(p + 10, seg);              /* segment end */
	put16(p + 12, first);            /* BDF start */
	put16(p + 14, last);             /* BDF end */
	put16(p + 16, output_node);      /* offset of the IOMMU node */
	return p + VIOT_PCI_RANGE_SIZE;
}

int viot_build(const struct viot_config *cfg, uint8_t **blob, size_t *len)
{
	uint16_t bdf[VIOT_MAX_ENDPOINTS];
	unsigned nr_ranges, i, first;
	uint8_t *t, *p, sum = 0;
	size_t size;
	int r;

	r = sorted_endpoints(cfg, bdf, &nr_ranges);
	if (r) {
		log_err("viot", "invalid endpoint list (%u endpoints)", cfg->nr_endpoints);
		return r;
	}
	size = VIOT_HEADER_SIZE + VIOT_VIRTIO_PCI_SIZE + (size_t)nr_ranges * VIOT_PCI_RANGE_SIZE;
	t = calloc(1, size);
	if (!t)
		return -ENOMEM;
	acpi_header(t, (uint32_t)size);
	put16(t + 36, (uint16_t)(1 + nr_ranges));   /* node count */
	put16(t + 38, VIOT_HEADER_SIZE);             /* offset of the first node */
	/* The IOMMU node first, so every range can point at a fixed offset. */
	p = t + VIOT_HEADER_SIZE;
	p[0] = VIOT_NODE_VIRTIO_PCI;
	put16(p + 2, VIOT_VIRTIO_PCI_SIZE);
	put16(p + 4, cfg->iommu_segment);
	put16(p + 6, cfg->iommu_bdf);
	p += VIOT_VIRTIO_PCI_SIZE;
	for (i = 1, first = 0; i <= cfg->nr_endpoints; i++) {
		if (i < cfg->nr_endpoints && bdf[i] == bdf[i - 1] + 1)
			continue;
		p = pci_range_node(p, cfg->iommu_segment, bdf[first], bdf[i - 1], VIOT_HEADER_SIZE);
		first = i;
	}
	/* ACPI 6.4 §5.2.6: all bytes, checksum included, sum to zero. */
	for (i = 0; i < size; i++)
		sum += t[i];
	t[9] = (uint8_t)(0 - sum);
	*blob = t;
	*len = size;
	return 0;
}
