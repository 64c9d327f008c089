/* The newer Linux uAPI definitions this project needs that Debian 12's
 * linux-libc-dev (6.1) lacks: iommufd (include/uapi/linux/iommufd.h, 6.2+),
 * VFIO device cdev binding (include/uapi/linux/vfio.h, 6.6+, VF token 6.17+)
 * and the migration PRE_COPY states (6.2+). Each is guarded so a newer header
 * wins when present. Numbers and layouts follow the kernel's uAPI exactly. */
#ifndef VFIO_VFIO_UAPI_H
#define VFIO_VFIO_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/vfio.h>

/* ---- iommufd (include/uapi/linux/iommufd.h) ---- */
#ifndef IOMMUFD_TYPE
#define IOMMUFD_TYPE (';')
#define IOMMUFD_CMD_BASE 0x80
#define IOMMUFD_CMD_DESTROY          (IOMMUFD_CMD_BASE + 0)
#define IOMMUFD_CMD_IOAS_ALLOC       (IOMMUFD_CMD_BASE + 1)
#define IOMMUFD_CMD_IOAS_ALLOW_IOVAS (IOMMUFD_CMD_BASE + 2)
#define IOMMUFD_CMD_IOAS_COPY        (IOMMUFD_CMD_BASE + 3)
#define IOMMUFD_CMD_IOAS_IOVA_RANGES (IOMMUFD_CMD_BASE + 4)
#define IOMMUFD_CMD_IOAS_MAP         (IOMMUFD_CMD_BASE + 5)
#define IOMMUFD_CMD_IOAS_UNMAP       (IOMMUFD_CMD_BASE + 6)

struct iommu_destroy {
	__u32 size;
	__u32 id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)

struct iommu_ioas_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)

enum iommufd_ioas_map_flags {
	IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,
	IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,
	IOMMU_IOAS_MAP_READABLE = 1 << 2,
};

struct iommu_ioas_map {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__u32 __reserved;
	__aligned_u64 user_va;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)

struct iommu_ioas_unmap {
	__u32 size;
	__u32 ioas_id;
	__aligned_u64 iova;
	__aligned_u64 length;
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP)
#endif /* IOMMUFD_TYPE */

/* ---- VFIO device cdev + iommufd binding (include/uapi/linux/vfio.h) ---- */
#ifndef VFIO_DEVICE_BIND_IOMMUFD
/* token_uuid_ptr and VFIO_DEVICE_BIND_FLAG_TOKEN arrived later (6.17); an
 * older kernel accepts the larger argsz as long as flags is 0. */
struct vfio_device_bind_iommufd {
	__u32 argsz;
	__u32 flags;
	__s32 iommufd;
	__u32 out_devid;
	__aligned_u64 token_uuid_ptr;
};
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
#endif
#ifndef VFIO_DEVICE_BIND_FLAG_TOKEN
#define VFIO_DEVICE_BIND_FLAG_TOKEN (1 << 0)
#endif

#ifndef VFIO_DEVICE_ATTACH_IOMMUFD_PT
struct vfio_device_attach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
	__u32 pt_id;
	__u32 pasid;          /* with VFIO_DEVICE_ATTACH_PASID only */
};
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)

struct vfio_device_detach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
	__u32 pasid;
	__u32 reserved;
};
#define VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 20)
#endif

/* Device cdevs: /dev/vfio/devices/vfioN, named by
 * /sys/bus/pci/devices/<BDF>/vfio-dev/vfioN. */
#define VFIO_CDEV_DIR        "/dev/vfio/devices"
#define VFIO_SYSFS_CDEV_FMT  "/sys/bus/pci/devices/%s/vfio-dev"
#define VFIO_SYSFS_GROUP_FMT "/sys/bus/pci/devices/%s/iommu_group"
#define VFIO_CONTAINER_PATH  "/dev/vfio/vfio"
#define IOMMUFD_PATH         "/dev/iommu"

/* ---- Migration v2 PRE_COPY (6.2) ---- */
#ifndef VFIO_MIGRATION_PRE_COPY
#define VFIO_MIGRATION_PRE_COPY (1 << 2)
/* enum vfio_device_mig_state continues after RUNNING_P2P (5). */
#define VFIO_DEVICE_STATE_PRE_COPY     6
#define VFIO_DEVICE_STATE_PRE_COPY_P2P 7

struct vfio_precopy_info {
	__u32 argsz;
	__u32 flags;
	__aligned_u64 initial_bytes;
	__aligned_u64 dirty_bytes;
};
#define VFIO_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
#endif

#endif
