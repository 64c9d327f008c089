/* ACPI VIOT bytes, field by field against ACPI 6.4 §5.2.30 (VIOT revision 0). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices/viot.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }

static uint8_t checksum(const uint8_t *t, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *t++;
	return s;
}

Test(iommu_viot, one_iommu_two_ranges)
{
	struct viot_config cfg = {
		.iommu_segment = 0, .iommu_bdf = viot_bdf(0, 3, 0), .nr_endpoints = 3,
		/* Out of order on purpose: 00:05.0, 00:04.0 merge; 00:07.0 stands alone. */
		.endpoint_bdf = { viot_bdf(0, 5, 0), viot_bdf(0, 7, 0), viot_bdf(0, 4, 7) + 1 },
	};
	uint8_t *t;
	size_t len;

	cr_assert_eq(viot_bdf(0, 4, 7) + 1, viot_bdf(0, 5, 0));
	/* 00:04.7+1 == 00:05.0 duplicates the first entry: rejected. */
	cr_assert_eq(viot_build(&cfg, &t, &len), -EINVAL);
	cfg.endpoint_bdf[2] = viot_bdf(0, 4, 7);
	cr_assert_eq(viot_build(&cfg, &t, &len), 0);

	/* ACPI header (§5.2.6). */
	cr_assert_eq(len, 48 + 16 + 2 * 24);
	cr_assert(memcmp(t, "VIOT", 4) == 0);
	cr_assert_eq(rd32(t + 4), len);
	cr_assert_eq(t[8], 0, "revision");
	cr_assert_eq(checksum(t, len), 0);
	cr_assert(memcmp(t + 10, "VMMVMM", 6) == 0);
	/* VIOT fields. */
	cr_assert_eq(rd16(t + 36), 3, "node count");
	cr_assert_eq(rd16(t + 38), 48, "node offset");
	for (int i = 40; i < 48; i++)
		cr_assert_eq(t[i], 0, "reserved");
	/* virtio-pci IOMMU node. */
	const uint8_t *n = t + 48;
	cr_assert_eq(n[0], VIOT_NODE_VIRTIO_PCI);
	cr_assert_eq(n[1], 0);
	cr_assert_eq(rd16(n + 2), 16);
	cr_assert_eq(rd16(n + 4), 0, "segment");
	cr_assert_eq(rd16(n + 6), 0x18, "BDF 00:03.0");
	for (int i = 8; i < 16; i++)
		cr_assert_eq(n[i], 0);
	/* PCI range 00:04.7-00:05.0 (0x27-0x28). */
	n = t + 64;
	cr_assert_eq(n[0], VIOT_NODE_PCI_RANGE);
	cr_assert_eq(n[1], 0);
	cr_assert_eq(rd16(n + 2), 24);
	cr_assert_eq(rd32(n + 4), 0x27, "endpoint start == BDF start");
	cr_assert_eq(rd16(n + 8), 0);
	cr_assert_eq(rd16(n + 10), 0);
	cr_assert_eq(rd16(n + 12), 0x27);
	cr_assert_eq(rd16(n + 14), 0x28);
	cr_assert_eq(rd16(n + 16), 48, "output node = IOMMU node offset");
	for (int i = 18; i < 24; i++)
		cr_assert_eq(n[i], 0);
	/* PCI range 00:07.0 alone. */
	n = t + 88;
	cr_assert_eq(n[0], VIOT_NODE_PCI_RANGE);
	cr_assert_eq(rd32(n + 4), 0x38);
	cr_assert_eq(rd16(n + 12), 0x38);
	cr_assert_eq(rd16(n + 14), 0x38);
	cr_assert_eq(rd16(n + 16), 48);
	free(t);
}

Test(iommu_viot, segment_and_errors)
{
	struct viot_config cfg = { .iommu_segment = 2, .iommu_bdf = viot_bdf(1, 0, 0),
				   .nr_endpoints = 1, .endpoint_bdf = { viot_bdf(1, 2, 0) } };
	uint8_t *t;
	size_t len;

	cr_assert_eq(viot_build(&cfg, &t, &len), 0);
	cr_assert_eq(rd16(t + 48 + 4), 2);
	cr_assert_eq(rd16(t + 48 + 6), 0x100);
	cr_assert_eq(rd16(t + 64 + 8), 2);
	cr_assert_eq(rd16(t + 64 + 10), 2);
	cr_assert_eq(rd16(t + 64 + 12), 0x110);
	cr_assert_eq(checksum(t, len), 0);
	free(t);
	cfg.nr_endpoints = 0;
	cr_assert_eq(viot_build(&cfg, &t, &len), -EINVAL);
	cfg.nr_endpoints = VIOT_MAX_ENDPOINTS + 1;
	cr_assert_eq(viot_build(&cfg, &t, &len), -EINVAL);
	cfg.nr_endpoints = 1;
	cfg.endpoint_bdf[0] = cfg.iommu_bdf;   /* the IOMMU behind itself */
	cr_assert_eq(viot_build(&cfg, &t, &len), -EINVAL);
}
