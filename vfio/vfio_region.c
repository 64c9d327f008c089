/* Region-info helpers shared by both back ends: the capability chain
 * (struct vfio_info_cap_header, linux/vfio.h) and sanity checks. Replies come
 * from the kernel or from a vfio-user server we do not trust, so every offset
 * is checked against the reply size before it is dereferenced. */
#include <errno.h>
#include <string.h>

#include "vfio/vfio_backend.h"
#include "vfio/vfio_uapi.h"

#define VFIO_MAX_CAPS 32   /* a longer chain is a loop or a lie */

static int vfio_region_take_sparse(struct vfio_region *r, const uint8_t *buf, uint32_t argsz,
				   uint32_t off)
{
	struct vfio_region_info_cap_sparse_mmap sp;
	uint64_t areas_end;

	if ((uint64_t)off + sizeof(sp) > argsz)
		return -EPROTO;
	memcpy(&sp, buf + off, sizeof(sp));
	areas_end = (uint64_t)off + sizeof(sp) +
		    (uint64_t)sp.nr_areas * sizeof(struct vfio_region_sparse_mmap_area);
	if (areas_end > argsz)
		return -EPROTO;
	if (sp.nr_areas > VFIO_MAX_SPARSE)
		return -E2BIG;
	r->nr_sparse = sp.nr_areas;
	for (uint32_t i = 0; i < sp.nr_areas; i++) {
		struct vfio_region_sparse_mmap_area a;

		memcpy(&a, buf + off + sizeof(sp) + i * sizeof(a), sizeof(a));
		r->sparse[i].offset = a.offset;
		r->sparse[i].size = a.size;
	}
	return 0;
}

int vfio_region_parse_caps(struct vfio_region *r, const void *buf, uint32_t argsz,
			   uint32_t cap_offset)
{
	const uint8_t *p = buf;
	uint32_t off = cap_offset;
	bool saw_sparse = false;

	for (unsigned n = 0; off; n++) {
		struct vfio_info_cap_header h;
		int ret;

		/* Capabilities live after the fixed struct, 4-byte aligned, in bounds. */
		if (n >= VFIO_MAX_CAPS || off < sizeof(struct vfio_region_info) || (off & 3) ||
		    (uint64_t)off + sizeof(h) > argsz)
			return -EPROTO;
		memcpy(&h, p + off, sizeof(h));
		if (h.next && h.next <= off)
			return -EPROTO;   /* chains only move forward: no loops */
		if (h.id == VFIO_REGION_INFO_CAP_SPARSE_MMAP && !saw_sparse) {
			ret = vfio_region_take_sparse(r, p, argsz, off);
			if (ret)
				return ret;
			saw_sparse = true;
		}
		off = h.next;
	}
	return 0;
}

int vfio_region_validate(const struct vfio_region *r)
{
	if (r->nr_sparse > VFIO_MAX_SPARSE)
		return -EPROTO;
	for (unsigned i = 0; i < r->nr_sparse; i++) {
		const struct vfio_sparse_area *a = &r->sparse[i];

		if (!a->size || a->offset > r->size || a->size > r->size - a->offset)
			return -EPROTO;
	}
	if (r->offset + r->size < r->offset)
		return -EPROTO;
	return 0;
}
