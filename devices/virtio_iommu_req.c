/* virtio-iommu request parsing and execution (virtio 1.2 §5.13.6). */
#include "devices/virtio_iommu_req.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	put_le16(p, (uint16_t)v);
	put_le16(p + 2, (uint16_t)(v >> 16));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

static bool all_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return false;
	return true;
}

static size_t req_size(uint8_t type)
{
	switch (type) {
	case VIRTIO_IOMMU_T_ATTACH: return VIOMMU_ATTACH_SIZE;
	case VIRTIO_IOMMU_T_DETACH: return VIOMMU_DETACH_SIZE;
	case VIRTIO_IOMMU_T_MAP:    return VIOMMU_MAP_SIZE;
	case VIRTIO_IOMMU_T_UNMAP:  return VIOMMU_UNMAP_SIZE;
	case VIRTIO_IOMMU_T_PROBE:  return VIOMMU_PROBE_SIZE;
	default:                    return 0;
	}
}

int viommu_req_parse(const void *in, size_t in_len, struct viommu_req *req)
{
	const uint8_t *b = in;
	size_t need;

	memset(req, 0, sizeof(*req));
	if (in_len < VIOMMU_HEAD_SIZE)
		return -EMSGSIZE;
	/* §5.13.6.2: the device MUST ignore head.reserved. */
	req->type = b[0];
	need = req_size(req->type);
	if (!need)
		return -EOPNOTSUPP;
	/* A longer readable part is tolerated (future extensions append). */
	if (in_len < need)
		return -EMSGSIZE;
	switch (req->type) {
	case VIRTIO_IOMMU_T_ATTACH:
		req->domain = get_le32(b + 4);
		req->endpoint = get_le32(b + 8);
		req->flags = get_le32(b + 12);
		/* §5.13.6.3.2: reserved non-zero MUST be rejected with S_INVAL. */
		if (!all_zero(b + 16, 4))
			return -EINVAL;
		break;
	case VIRTIO_IOMMU_T_DETACH:
		/* §5.13.6.4.2: the device MUST ignore reserved. */
		req->domain = get_le32(b + 4);
		req->endpoint = get_le32(b + 8);
		break;
	case VIRTIO_IOMMU_T_MAP:
		req->domain = get_le32(b + 4);
		req->virt_start = get_le64(b + 8);
		req->virt_end = get_le64(b + 16);
		req->phys_start = get_le64(b + 24);
		req->flags = get_le32(b + 32);
		break;
	case VIRTIO_IOMMU_T_UNMAP:
		req->domain = get_le32(b + 4);
		req->virt_start = get_le64(b + 8);
		req->virt_end = get_le64(b + 16);
		/* §5.13.6.6.2: reserved non-zero MAY be S_INVAL; we reject
		 * without unmapping, so a confused driver learns early. */
		if (!all_zero(b + 24, 4))
			return -EINVAL;
		break;
	case VIRTIO_IOMMU_T_PROBE:
		/* §5.13.6.7.2: the device MUST ignore reserved. */
		req->endpoint = get_le32(b + 4);
		break;
	}
	return 0;
}

uint8_t viommu_errno_to_status(int err)
{
	switch (err) {
	case 0:           return VIRTIO_IOMMU_S_OK;
	case -EINVAL:     return VIRTIO_IOMMU_S_INVAL;
	case -ERANGE:     return VIRTIO_IOMMU_S_RANGE;
	case -ENOENT:     return VIRTIO_IOMMU_S_NOENT;
	case -ENOMEM:     return VIRTIO_IOMMU_S_NOMEM;
	case -EOPNOTSUPP: return VIRTIO_IOMMU_S_UNSUPP;
	case -EFAULT:     return VIRTIO_IOMMU_S_FAULT;
	case -EIO:        return VIRTIO_IOMMU_S_IOERR;
	default:          return VIRTIO_IOMMU_S_DEVERR;
	}
}

static bool has_feature(const struct viommu_ctx *ctx, unsigned bit)
{
	return ctx->features & (1ULL << bit);
}

/* PROBE (§5.13.6.7): fill @props (probe_size bytes) with one RESV_MEM
 * property per reserved region, zero the rest. */
static int probe_fill(const struct viommu_ctx *ctx, uint32_t endpoint, uint8_t *props)
{
	const struct iommu_params *p = &ctx->io->params;
	size_t off = 0;
	unsigned i;

	if (!iommu_endpoint_find(ctx->io, endpoint))
		return -ENOENT;
	memset(props, 0, ctx->probe_size);
	for (i = 0; i < p->nr_resv && off + VIOMMU_RESV_MEM_SIZE <= ctx->probe_size; i++) {
		uint8_t *q = props + off;

		put_le16(q, VIRTIO_IOMMU_PROBE_T_RESV_MEM);
		/* length excludes the 4-byte property header (§5.13.6.7.2). */
		put_le16(q + 2, VIOMMU_RESV_MEM_SIZE - 4);
		q[4] = p->resv[i].subtype;
		put_le64(q + 8, p->resv[i].start);
		put_le64(q + 16, p->resv[i].end);
		off += VIOMMU_RESV_MEM_SIZE;
	}
	return 0;
}

static int execute(const struct viommu_ctx *ctx, const struct viommu_req *req, uint8_t *props)
{
	uint32_t flags = req->flags;

	switch (req->type) {
	case VIRTIO_IOMMU_T_ATTACH:
		/* The BYPASS flag exists only with BYPASS_CONFIG (§5.13.6.3). */
		if ((flags & IOMMU_ATTACH_F_BYPASS) && !has_feature(ctx, VIRTIO_IOMMU_F_BYPASS_CONFIG))
			return -EINVAL;
		return iommu_attach(ctx->io, req->domain, req->endpoint, flags);
	case VIRTIO_IOMMU_T_DETACH:
		return iommu_detach(ctx->io, req->domain, req->endpoint);
	case VIRTIO_IOMMU_T_MAP:
		if (!has_feature(ctx, VIRTIO_IOMMU_F_MAP_UNMAP))
			return -EOPNOTSUPP;
		return iommu_map(ctx->io, req->domain, req->virt_start, req->virt_end,
				 req->phys_start, flags);
	case VIRTIO_IOMMU_T_UNMAP:
		if (!has_feature(ctx, VIRTIO_IOMMU_F_MAP_UNMAP))
			return -EOPNOTSUPP;
		return iommu_unmap(ctx->io, req->domain, req->virt_start, req->virt_end);
	case VIRTIO_IOMMU_T_PROBE:
		return probe_fill(ctx, req->endpoint, props);
	}
	return -EOPNOTSUPP;
}

enum viommu_verdict viommu_req_handle(const struct viommu_ctx *ctx, const void *in, size_t in_len,
				      void *out, size_t out_len, size_t *used, uint8_t *status)
{
	struct viommu_req req;
	uint8_t *o = out, *tail;
	int r;

	*used = 0;
	*status = 0;
	/* Without room for the tail the status cannot be written (§5.13.6). */
	if (out_len < VIOMMU_TAIL_SIZE)
		return VIOMMU_DROP;
	r = viommu_req_parse(in, in_len, &req);
	/* §5.13.6.2: unknown type -> do not write, used length 0. So is a
	 * PROBE when the feature was not negotiated (§5.13.6.7.2). */
	if (r == -EOPNOTSUPP)
		return VIOMMU_DROP;
	if (req.type == VIRTIO_IOMMU_T_PROBE && !has_feature(ctx, VIRTIO_IOMMU_F_PROBE))
		return VIOMMU_DROP;
	/* Short requests, bad reserved fields: S_INVAL in the tail. */
	if (r == -EMSGSIZE)
		r = -EINVAL;
	/* Everything we return is defined: properties not written are zero
	 * (§5.13.6.7.2) and so is tail.reserved (§5.13.6.2). */
	memset(o, 0, out_len);
	/* §5.13.6.7.2: a properties list smaller than probe_size gets S_INVAL
	 * and no property. */
	if (!r && req.type == VIRTIO_IOMMU_T_PROBE && out_len - VIOMMU_TAIL_SIZE < ctx->probe_size)
		r = -EINVAL;
	if (!r)
		r = execute(ctx, &req, o);
	if (r && req.type == VIRTIO_IOMMU_T_PROBE)
		memset(o, 0, out_len);
	/* The tail ends the device-writable part, after the properties. */
	tail = o + out_len - VIOMMU_TAIL_SIZE;
	*status = viommu_errno_to_status(r);
	tail[0] = *status;
	*used = out_len;
	return VIOMMU_REPLY;
}

void viommu_config_fill(const struct iommu *io, uint32_t probe_size, uint8_t cfg[VIOMMU_CONFIG_SIZE])
{
	const struct iommu_params *p = &io->params;

	memset(cfg, 0, VIOMMU_CONFIG_SIZE);
	put_le64(cfg + 0, p->page_size_mask);
	put_le64(cfg + 8, p->input_start);
	put_le64(cfg + 16, p->input_end);
	put_le32(cfg + 24, p->domain_start);
	put_le32(cfg + 28, p->domain_end);
	put_le32(cfg + 32, probe_size);
	cfg[36] = atomic_load(&((struct iommu *)io)->bypass) ? 1 : 0;
}

void viommu_fault_encode(const struct iommu_fault *f, uint8_t buf[VIOMMU_FAULT_SIZE])
{
	memset(buf, 0, VIOMMU_FAULT_SIZE);
	buf[0] = f->reason;
	put_le32(buf + 4, f->flags);
	put_le32(buf + 8, f->endpoint);
	put_le64(buf + 16, f->address);
}
