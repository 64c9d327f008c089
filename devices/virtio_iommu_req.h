/* virtio-iommu requests (virtio 1.2 §5.13.6): wire layout, parsing and
 * execution against struct iommu, independent of the virtqueue. The device
 * gathers a request's device-readable bytes and the size of its
 * device-writable part, calls viommu_req_handle(), and copies the writable
 * bytes it produced back into the descriptor chain.
 *
 * Every field is little endian on the wire; the parser reads bytes, so it
 * never depends on host endianness or alignment. */
#ifndef DEVICES_VIRTIO_IOMMU_REQ_H
#define DEVICES_VIRTIO_IOMMU_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "devices/iommu_map.h"

#define VIRTIO_ID_IOMMU 23

/* Feature bits (§5.13.3). */
#define VIRTIO_IOMMU_F_INPUT_RANGE   0
#define VIRTIO_IOMMU_F_DOMAIN_RANGE  1
#define VIRTIO_IOMMU_F_MAP_UNMAP     2
#define VIRTIO_IOMMU_F_BYPASS        3
#define VIRTIO_IOMMU_F_PROBE         4
#define VIRTIO_IOMMU_F_MMIO          5
#define VIRTIO_IOMMU_F_BYPASS_CONFIG 6

/* Request types and status codes (§5.13.6). */
#define VIRTIO_IOMMU_T_ATTACH 1
#define VIRTIO_IOMMU_T_DETACH 2
#define VIRTIO_IOMMU_T_MAP    3
#define VIRTIO_IOMMU_T_UNMAP  4
#define VIRTIO_IOMMU_T_PROBE  5

#define VIRTIO_IOMMU_S_OK     0
#define VIRTIO_IOMMU_S_IOERR  1
#define VIRTIO_IOMMU_S_UNSUPP 2
#define VIRTIO_IOMMU_S_DEVERR 3
#define VIRTIO_IOMMU_S_INVAL  4
#define VIRTIO_IOMMU_S_RANGE  5
#define VIRTIO_IOMMU_S_NOENT  6
#define VIRTIO_IOMMU_S_FAULT  7
#define VIRTIO_IOMMU_S_NOMEM  8

#define VIRTIO_IOMMU_PROBE_T_RESV_MEM 1

/* Wire sizes of the device-readable parts (head included, tail excluded). */
#define VIOMMU_HEAD_SIZE     4
#define VIOMMU_TAIL_SIZE     4
#define VIOMMU_ATTACH_SIZE   20   /* head, domain, endpoint, flags, reserved[4] */
#define VIOMMU_DETACH_SIZE   20   /* head, domain, endpoint, reserved[8] */
#define VIOMMU_MAP_SIZE      36   /* head, domain, virt_start, virt_end, phys_start, flags */
#define VIOMMU_UNMAP_SIZE    28   /* head, domain, virt_start, virt_end, reserved[4] */
#define VIOMMU_PROBE_SIZE    72   /* head, endpoint, reserved[64] */
#define VIOMMU_RESV_MEM_SIZE 24   /* property header 4 + subtype, reserved[3], start, end */
#define VIOMMU_FAULT_SIZE    24   /* struct virtio_iommu_fault */
#define VIOMMU_CONFIG_SIZE   40   /* struct virtio_iommu_config */

/* This device's probe_size: room for every RESV_MEM property and more. */
#define VIOMMU_PROBE_PROPS_SIZE 512

struct viommu_req {
	uint8_t type;
	uint32_t domain, endpoint, flags;
	uint64_t virt_start, virt_end, phys_start;
};

/* What the device does with the buffers after parsing/handling. */
enum viommu_verdict {
	VIOMMU_REPLY,   /* write status (and properties); used length set */
	VIOMMU_DROP,    /* return the buffers unwritten, used length 0 */
};

/* Parse the device-readable bytes. Returns 0 with @req filled, or
 *   -EMSGSIZE   readable part shorter than the request type needs;
 *   -EINVAL     a reserved field the spec says to reject is non-zero;
 *   -EOPNOTSUPP unknown type (the device must not write the buffer).
 * @in_len shorter than the head is -EMSGSIZE with req->type = 0. */
int viommu_req_parse(const void *in, size_t in_len, struct viommu_req *req);

/* Negotiated state the handler needs. */
struct viommu_ctx {
	struct iommu *io;
	uint64_t features;              /* negotiated feature bits */
	uint32_t probe_size;            /* as in the config space */
};

/* Parse and execute one request. @out/@out_len is the device-writable part
 * (properties for PROBE, then the 4-byte tail). On VIOMMU_REPLY, @out holds
 * what must be copied back and *@used its length; *@status the status written.
 * On VIOMMU_DROP nothing was written and *@used is 0. */
enum viommu_verdict viommu_req_handle(const struct viommu_ctx *ctx, const void *in, size_t in_len,
				      void *out, size_t out_len, size_t *used, uint8_t *status);

/* Negative errno from iommu_map.h -> VIRTIO_IOMMU_S_*. */
uint8_t viommu_errno_to_status(int err);

/* Fill the 40-byte device configuration (§5.13.4) from @io's parameters. */
void viommu_config_fill(const struct iommu *io, uint32_t probe_size, uint8_t cfg[VIOMMU_CONFIG_SIZE]);
/* Encode a fault report (§5.13.6.9) into 24 bytes. */
void viommu_fault_encode(const struct iommu_fault *f, uint8_t buf[VIOMMU_FAULT_SIZE]);

#endif
