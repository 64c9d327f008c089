/* Kernel VFIO back end: a PCI function bound to vfio-pci, reached through
 *   - the type1 flow: /dev/vfio/vfio container + /dev/vfio/<group>, or
 *   - the iommufd flow: /dev/iommu + IOAS + /dev/vfio/devices/vfioN cdev.
 * Every open/ioctl/mmap/pread/pwrite/readlink goes through struct
 * vfio_sys_ops, so unit tests substitute a recording mock (there is no VFIO
 * on the build machines; this back end is verified against that mock). */
#ifndef VFIO_VFIO_KERNEL_H
#define VFIO_VFIO_KERNEL_H

#include <stddef.h>
#include <sys/types.h>

#include "vfio/vfio_backend.h"

struct vfio_sys_ops {
	int (*open)(void *opaque, const char *path, int flags);
	/* Returns the ioctl result or -1 with errno set, like ioctl(2). */
	int (*ioctl)(void *opaque, int fd, unsigned long req, void *arg);
	int (*close)(void *opaque, int fd);
	void *(*mmap)(void *opaque, void *addr, size_t len, int prot, int flags, int fd, off_t off);
	ssize_t (*pread)(void *opaque, int fd, void *buf, size_t len, off_t off);
	ssize_t (*pwrite)(void *opaque, int fd, const void *buf, size_t len, off_t off);
	ssize_t (*readlink)(void *opaque, const char *path, char *buf, size_t len);
	/* First entry (not "." or "..") of directory @path into @name; -errno. */
	int (*first_dirent)(void *opaque, const char *path, char *name, size_t len);
};

/* The real system calls. */
extern const struct vfio_sys_ops vfio_sys_real;

enum vfio_kernel_mode { VFIO_MODE_TYPE1, VFIO_MODE_IOMMUFD };

struct vfio_kernel_opts {
	const char *bdf;                  /* "0000:03:00.1" */
	enum vfio_kernel_mode mode;
	const char *vf_token;             /* UUID string or NULL */
	const struct vfio_sys_ops *sys;   /* NULL = vfio_sys_real */
	void *sys_opaque;
};

/* Open the device and its DMA context (container or IOAS). */
int vfio_kernel_open(const struct vfio_kernel_opts *opts, struct vfio_backend **out);

/* Parse "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" into 16 bytes. -EINVAL if malformed. */
int vfio_uuid_parse(const char *s, uint8_t out[16]);
/* Check a PCI address "DDDD:BB:DD.F". */
bool vfio_bdf_valid(const char *bdf);

#endif
