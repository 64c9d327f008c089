/* One vfio-pci device model, two back ends. The device model (vfio_pci.c)
 * talks to a device only through this ops table:
 *   - kernel VFIO (vfio_kernel.c): type1 container/group or iommufd cdev;
 *   - vfio-user (vfio_user.c): a device server on a UNIX socket.
 * Structures mirror <linux/vfio.h> (region, IRQ and device info) so both back
 * ends fill them the same way. Every function returns 0 or a negative errno;
 * a back end whose device is gone returns -ENODEV/-EPIPE and never blocks. */
#ifndef VFIO_VFIO_BACKEND_H
#define VFIO_VFIO_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VFIO_MAX_REGIONS  16   /* vfio-pci has 9 (+ device specific); more is a lie */
#define VFIO_MAX_IRQS     8    /* vfio-pci has 5 */
#define VFIO_MAX_SPARSE   8    /* sparse mmap areas kept per region */
#define VFIO_MAX_IRQ_COUNT 2048

struct vfio_dev_info {
	uint32_t flags;          /* VFIO_DEVICE_FLAGS_* */
	uint32_t num_regions;
	uint32_t num_irqs;
};

struct vfio_sparse_area {
	uint64_t offset, size;   /* relative to the region start */
};

struct vfio_region {
	uint32_t index;
	uint32_t flags;          /* VFIO_REGION_INFO_FLAG_* */
	uint64_t size;
	uint64_t offset;         /* mmap()/pread() offset in mmap_fd */
	int mmap_fd;             /* -1 if not mappable; owned by the back end */
	/* Areas that may be mmapped. With FLAG_MMAP and no sparse capability the
	 * whole region is one area; with the capability exactly those listed. */
	unsigned nr_sparse;
	struct vfio_sparse_area sparse[VFIO_MAX_SPARSE];
};

struct vfio_irq {
	uint32_t index;
	uint32_t flags;          /* VFIO_IRQ_INFO_* */
	uint32_t count;
};

/* A DMA window: [iova, iova+size) of device addresses backed by guest memory
 * at host address hva, which is also offset fd_offset in the memfd fd. */
struct vfio_dma {
	uint64_t iova, size;
	void *hva;
	int fd;
	uint64_t fd_offset;
	uint64_t gpa;            /* for DMA_READ/WRITE service and info */
	bool read, write;        /* device may read / write */
};

struct vfio_backend;

struct vfio_backend_ops {
	const char *kind;        /* "vfio", "vfio-user" */
	int (*device_info)(struct vfio_backend *be, struct vfio_dev_info *info);
	int (*region_info)(struct vfio_backend *be, uint32_t index, struct vfio_region *out);
	int (*region_read)(struct vfio_backend *be, uint32_t index, uint64_t off, void *buf,
			   uint32_t len);
	int (*region_write)(struct vfio_backend *be, uint32_t index, uint64_t off, const void *buf,
			    uint32_t len);
	/* Map [off, off+len) of a region (a sparse area or the whole region). */
	int (*region_mmap)(struct vfio_backend *be, const struct vfio_region *r, uint64_t off,
			   uint64_t len, void **out);
	int (*irq_info)(struct vfio_backend *be, uint32_t index, struct vfio_irq *out);
	/* VFIO_IRQ_SET_*: with DATA_EVENTFD @fds has @count entries (-1 = none). */
	int (*set_irqs)(struct vfio_backend *be, uint32_t index, uint32_t start, uint32_t count,
			uint32_t flags, const int *fds);
	int (*dma_map)(struct vfio_backend *be, const struct vfio_dma *dma);
	int (*dma_unmap)(struct vfio_backend *be, uint64_t iova, uint64_t size);
	int (*reset)(struct vfio_backend *be);
	/* VFIO_DEVICE_FEATURE: @data is the payload after (argsz, flags). */
	int (*device_feature)(struct vfio_backend *be, uint32_t flags, void *data, uint32_t len);
	void (*destroy)(struct vfio_backend *be);
};

struct vfio_backend {
	const struct vfio_backend_ops *ops;
	char name[32];           /* log prefix */
};

/* Convenience wrappers so callers read naturally. */
static inline int vfio_be_region_read(struct vfio_backend *be, uint32_t i, uint64_t off, void *b,
				      uint32_t len)
{
	return be->ops->region_read(be, i, off, b, len);
}
static inline int vfio_be_region_write(struct vfio_backend *be, uint32_t i, uint64_t off,
				       const void *b, uint32_t len)
{
	return be->ops->region_write(be, i, off, b, len);
}
static inline void vfio_be_destroy(struct vfio_backend *be)
{
	if (be)
		be->ops->destroy(be);
}

/* Parse the VFIO capability chain of a region info reply (@buf, @argsz bytes,
 * starting at @cap_offset) into r->sparse. Every offset is bounds-checked;
 * loops and overlapping headers are rejected with -EPROTO. Shared by both
 * back ends (vfio_region.c). */
int vfio_region_parse_caps(struct vfio_region *r, const void *buf, uint32_t argsz,
			   uint32_t cap_offset);
/* Check a region's sanity (size, sparse areas inside it). -EPROTO if it lies. */
int vfio_region_validate(const struct vfio_region *r);

#endif
