/* Kernel VFIO back end (Documentation/driver-api/vfio.rst and
 * include/uapi/linux/{vfio,iommufd}.h).
 *
 * type1:   container = open(/dev/vfio/vfio); GET_API_VERSION == VFIO_API_VERSION;
 *          CHECK_EXTENSION(TYPE1v2); group N from the iommu_group symlink;
 *          open(/dev/vfio/N); GROUP_GET_STATUS must say VIABLE (every device
 *          of the group bound to vfio-pci); GROUP_SET_CONTAINER; SET_IOMMU;
 *          GROUP_GET_DEVICE_FD("BDF" or "BDF vf_token=UUID").
 * iommufd: iommufd = open(/dev/iommu); IOMMU_IOAS_ALLOC; vfioN from
 *          sysfs vfio-dev/; open(/dev/vfio/devices/vfioN);
 *          VFIO_DEVICE_BIND_IOMMUFD (+ token); VFIO_DEVICE_ATTACH_IOMMUFD_PT(ioas).
 * Both:    VFIO_DEVICE_GET_INFO, then region/IRQ info, DMA map/unmap on demand.
 * Replies are checked as if they could lie: region/IRQ counts are capped,
 * capability chains bounds-checked. */
#include <ctype.h>
#include <pthread.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfio/vfio_kernel.h"
#include "vfio/vfio_uapi.h"
#include "vmm/log.h"

#define VFIO_REGION_INFO_MAX 4096   /* largest region-info reply we accept */

struct vfio_kernel {
	struct vfio_backend be;
	const struct vfio_sys_ops *sys;
	void *so;                       /* sys opaque */
	enum vfio_kernel_mode mode;
	int container_fd, group_fd;     /* type1 */
	int iommufd;                    /* iommufd */
	uint32_t ioas_id, devid;
	int device_fd;
	struct vfio_device_info info;
	/* Region info does not change while the device is open: cached so a
	 * trapped BAR access costs one pread/pwrite, not two more ioctls. */
	pthread_mutex_t cache_lock;
	bool region_valid[VFIO_MAX_REGIONS];
	struct vfio_region region[VFIO_MAX_REGIONS];
};

#define to_vk(b) ((struct vfio_kernel *)(b))

/* ---- the real system calls ---- */

static int sys_open(void *o, const char *path, int flags) { return open(path, flags); }
static int sys_ioctl(void *o, int fd, unsigned long req, void *arg) { return ioctl(fd, req, arg); }
static int sys_close(void *o, int fd) { return close(fd); }
static void *sys_mmap(void *o, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}
static ssize_t sys_pread(void *o, int fd, void *buf, size_t len, off_t off)
{
	return pread(fd, buf, len, off);
}
static ssize_t sys_pwrite(void *o, int fd, const void *buf, size_t len, off_t off)
{
	return pwrite(fd, buf, len, off);
}
static ssize_t sys_readlink(void *o, const char *path, char *buf, size_t len)
{
	return readlink(path, buf, len);
}
static int sys_first_dirent(void *o, const char *path, char *name, size_t len)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int ret = -ENOENT;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		ret = snprintf(name, len, "%s", e->d_name) >= (int)len ? -ENAMETOOLONG : 0;
		break;
	}
	closedir(d);
	return ret;
}

const struct vfio_sys_ops vfio_sys_real = {
	.open = sys_open, .ioctl = sys_ioctl, .close = sys_close, .mmap = sys_mmap,
	.pread = sys_pread, .pwrite = sys_pwrite, .readlink = sys_readlink,
	.first_dirent = sys_first_dirent,
};

/* ---- helpers ---- */

static int vk_ioctl(struct vfio_kernel *vk, int fd, unsigned long req, void *arg, const char *what)
{
	int ret = vk->sys->ioctl(vk->so, fd, req, arg);

	if (ret < 0) {
		ret = -errno ? -errno : -EIO;
		log_err(vk->be.name, "%s failed: %s", what, strerror_safe(-ret));
	}
	return ret;
}

static void vk_close(struct vfio_kernel *vk, int *fd)
{
	if (*fd >= 0)
		vk->sys->close(vk->so, *fd);
	*fd = -1;
}

bool vfio_bdf_valid(const char *s)
{
	unsigned dom, bus, dev, fn;
	char tail;

	if (!s || strlen(s) != 12)
		return false;
	if (sscanf(s, "%4x:%2x:%2x.%1x%c", &dom, &bus, &dev, &fn, &tail) != 4)
		return false;
	for (int i = 0; i < 12; i++)
		if (i != 4 && i != 7 && i != 10 && !isxdigit((unsigned char)s[i]))
			return false;
	return s[4] == ':' && s[7] == ':' && s[10] == '.' && dev < 32 && fn < 8;
}

int vfio_uuid_parse(const char *s, uint8_t out[16])
{
	static const int dash[] = { 8, 13, 18, 23 };
	unsigned n = 0;

	if (!s || strlen(s) != 36)
		return -EINVAL;
	for (int i = 0, d = 0; i < 36;) {
		if (d < 4 && i == dash[d]) {
			if (s[i] != '-')
				return -EINVAL;
			i++, d++;
			continue;
		}
		if (!isxdigit((unsigned char)s[i]) || !isxdigit((unsigned char)s[i + 1]))
			return -EINVAL;
		char hex[3] = { s[i], s[i + 1], 0 };
		out[n++] = (uint8_t)strtoul(hex, NULL, 16);
		i += 2;
	}
	return n == 16 ? 0 : -EINVAL;
}

/* ---- type1 container/group flow ---- */

static int vk_group_number(struct vfio_kernel *vk, const char *bdf, unsigned *group)
{
	char path[128], link[256];
	const char *base;
	char *end;
	ssize_t n;

	snprintf(path, sizeof(path), VFIO_SYSFS_GROUP_FMT, bdf);
	n = vk->sys->readlink(vk->so, path, link, sizeof(link) - 1);
	if (n < 0) {
		int ret = -errno ? -errno : -ENOENT;

		log_err(vk->be.name, "%s: no IOMMU group (%s); is the IOMMU enabled?", path,
			strerror_safe(-ret));
		return ret;
	}
	link[n] = 0;
	base = strrchr(link, '/');
	base = base ? base + 1 : link;
	errno = 0;
	unsigned long g = strtoul(base, &end, 10);
	if (!*base || *end || errno || g > 0xffffff) {
		log_err(vk->be.name, "%s -> '%s' is not an IOMMU group", path, link);
		return -EINVAL;
	}
	*group = (unsigned)g;
	return 0;
}

static int vk_open_path(struct vfio_kernel *vk, const char *path, int *fd)
{
	*fd = vk->sys->open(vk->so, path, O_RDWR | O_CLOEXEC);
	if (*fd < 0) {
		int ret = -errno ? -errno : -ENOENT;

		log_err(vk->be.name, "open %s: %s", path, strerror_safe(-ret));
		return ret;
	}
	return 0;
}

static int vk_type1_container(struct vfio_kernel *vk)
{
	int ret = vk_open_path(vk, VFIO_CONTAINER_PATH, &vk->container_fd);

	if (ret)
		return ret;
	ret = vk_ioctl(vk, vk->container_fd, VFIO_GET_API_VERSION, NULL, "VFIO_GET_API_VERSION");
	if (ret < 0)
		return ret;
	if (ret != VFIO_API_VERSION) {
		log_err(vk->be.name, "VFIO API version %d, expected %d", ret, VFIO_API_VERSION);
		return -EPROTONOSUPPORT;
	}
	ret = vk_ioctl(vk, vk->container_fd, VFIO_CHECK_EXTENSION,
		       (void *)(uintptr_t)VFIO_TYPE1v2_IOMMU, "VFIO_CHECK_EXTENSION");
	if (ret < 0)
		return ret;
	if (ret == 0) {
		log_err(vk->be.name, "the container does not support the type1v2 IOMMU");
		return -EOPNOTSUPP;
	}
	return 0;
}

static int vk_type1_group(struct vfio_kernel *vk, const char *bdf)
{
	struct vfio_group_status st = { .argsz = sizeof(st) };
	char path[64];
	unsigned group;
	int ret;

	ret = vk_group_number(vk, bdf, &group);
	if (ret)
		return ret;
	snprintf(path, sizeof(path), "/dev/vfio/%u", group);
	ret = vk_open_path(vk, path, &vk->group_fd);
	if (ret)
		return ret;
	ret = vk_ioctl(vk, vk->group_fd, VFIO_GROUP_GET_STATUS, &st, "VFIO_GROUP_GET_STATUS");
	if (ret < 0)
		return ret;
	if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		log_err(vk->be.name,
			"IOMMU group %u is not viable: bind every device in it to vfio-pci", group);
		return -EBUSY;
	}
	ret = vk_ioctl(vk, vk->group_fd, VFIO_GROUP_SET_CONTAINER, &vk->container_fd,
		       "VFIO_GROUP_SET_CONTAINER");
	if (ret < 0)
		return ret;
	ret = vk_ioctl(vk, vk->container_fd, VFIO_SET_IOMMU, (void *)(uintptr_t)VFIO_TYPE1v2_IOMMU,
		       "VFIO_SET_IOMMU");
	return ret < 0 ? ret : 0;
}

static int vk_type1_device(struct vfio_kernel *vk, const char *bdf, const char *token)
{
	char name[128];
	int ret;

	/* vfio-pci takes the VF token inside the device name (vfio_pci_core.c). */
	if (token)
		snprintf(name, sizeof(name), "%s vf_token=%s", bdf, token);
	else
		snprintf(name, sizeof(name), "%s", bdf);
	ret = vk_ioctl(vk, vk->group_fd, VFIO_GROUP_GET_DEVICE_FD, name, "VFIO_GROUP_GET_DEVICE_FD");
	if (ret < 0)
		return ret;
	vk->device_fd = ret;
	return 0;
}

static int vk_open_type1(struct vfio_kernel *vk, const struct vfio_kernel_opts *o)
{
	int ret = vk_type1_container(vk);

	if (!ret)
		ret = vk_type1_group(vk, o->bdf);
	if (!ret)
		ret = vk_type1_device(vk, o->bdf, o->vf_token);
	return ret;
}

/* ---- iommufd cdev flow ---- */

static int vk_iommufd_ioas(struct vfio_kernel *vk)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	int ret = vk_open_path(vk, IOMMUFD_PATH, &vk->iommufd);

	if (ret)
		return ret;
	ret = vk_ioctl(vk, vk->iommufd, IOMMU_IOAS_ALLOC, &a, "IOMMU_IOAS_ALLOC");
	if (ret < 0)
		return ret;
	vk->ioas_id = a.out_ioas_id;
	return 0;
}

static int vk_iommufd_device(struct vfio_kernel *vk, const char *bdf, const char *token)
{
	char dir[128], name[64], path[160];
	uint8_t uuid[16];
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at) };
	int ret;

	snprintf(dir, sizeof(dir), VFIO_SYSFS_CDEV_FMT, bdf);
	ret = vk->sys->first_dirent(vk->so, dir, name, sizeof(name));
	if (ret) {
		log_err(vk->be.name, "%s: no VFIO device cdev (%s); is %s bound to vfio-pci?", dir,
			strerror_safe(-ret), bdf);
		return ret;
	}
	if (strncmp(name, "vfio", 4) || strchr(name, '/')) {
		log_err(vk->be.name, "%s: unexpected entry '%s'", dir, name);
		return -EINVAL;
	}
	snprintf(path, sizeof(path), VFIO_CDEV_DIR "/%s", name);
	ret = vk_open_path(vk, path, &vk->device_fd);
	if (ret)
		return ret;
	bind.iommufd = vk->iommufd;
	if (token) {
		ret = vfio_uuid_parse(token, uuid);
		if (ret) {
			log_err(vk->be.name, "vf_token '%s' is not a UUID", token);
			return ret;
		}
		bind.flags |= VFIO_DEVICE_BIND_FLAG_TOKEN;
		bind.token_uuid_ptr = (uintptr_t)uuid;
	}
	ret = vk_ioctl(vk, vk->device_fd, VFIO_DEVICE_BIND_IOMMUFD, &bind,
		       "VFIO_DEVICE_BIND_IOMMUFD");
	if (ret < 0)
		return ret;
	vk->devid = bind.out_devid;
	at.pt_id = vk->ioas_id;
	ret = vk_ioctl(vk, vk->device_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at,
		       "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
	return ret < 0 ? ret : 0;
}

static int vk_open_iommufd(struct vfio_kernel *vk, const struct vfio_kernel_opts *o)
{
	int ret = vk_iommufd_ioas(vk);

	if (!ret)
		ret = vk_iommufd_device(vk, o->bdf, o->vf_token);
	return ret;
}

/* ---- device info ---- */

static int vk_get_device_info(struct vfio_kernel *vk)
{
	struct vfio_device_info *i = &vk->info;
	int ret;

	memset(i, 0, sizeof(*i));
	i->argsz = sizeof(*i);
	ret = vk_ioctl(vk, vk->device_fd, VFIO_DEVICE_GET_INFO, i, "VFIO_DEVICE_GET_INFO");
	if (ret < 0)
		return ret;
	if (!(i->flags & VFIO_DEVICE_FLAGS_PCI)) {
		log_err(vk->be.name, "not a PCI device (flags 0x%x)", i->flags);
		return -ENODEV;
	}
	if (i->num_regions > VFIO_MAX_REGIONS || i->num_irqs > VFIO_MAX_IRQS ||
	    i->num_regions <= VFIO_PCI_CONFIG_REGION_INDEX) {
		log_err(vk->be.name, "implausible device info: %u regions, %u irqs", i->num_regions,
			i->num_irqs);
		return -EPROTO;
	}
	return 0;
}

static void vk_destroy(struct vfio_backend *be)
{
	struct vfio_kernel *vk = to_vk(be);

	vk_close(vk, &vk->device_fd);
	vk_close(vk, &vk->group_fd);
	vk_close(vk, &vk->container_fd);
	vk_close(vk, &vk->iommufd);
	pthread_mutex_destroy(&vk->cache_lock);
	free(vk);
}

static const struct vfio_backend_ops vfio_kernel_ops;

int vfio_kernel_open(const struct vfio_kernel_opts *o, struct vfio_backend **out)
{
	struct vfio_kernel *vk;
	int ret;

	if (!o || !vfio_bdf_valid(o->bdf)) {
		log_err("vfio", "'%s' is not a PCI address (DDDD:BB:DD.F)", o && o->bdf ? o->bdf : "");
		return -EINVAL;
	}
	vk = calloc(1, sizeof(*vk));
	if (!vk)
		return -ENOMEM;
	vk->be.ops = &vfio_kernel_ops;
	snprintf(vk->be.name, sizeof(vk->be.name), "vfio %s", o->bdf);
	vk->sys = o->sys ? o->sys : &vfio_sys_real;
	vk->so = o->sys_opaque;
	vk->mode = o->mode;
	vk->container_fd = vk->group_fd = vk->iommufd = vk->device_fd = -1;
	pthread_mutex_init(&vk->cache_lock, NULL);

	ret = o->mode == VFIO_MODE_IOMMUFD ? vk_open_iommufd(vk, o) : vk_open_type1(vk, o);
	if (!ret)
		ret = vk_get_device_info(vk);
	if (ret) {
		vk_destroy(&vk->be);
		return ret;
	}
	*out = &vk->be;
	return 0;
}

/* ---- ops ---- */

static int vk_device_info(struct vfio_backend *be, struct vfio_dev_info *info)
{
	struct vfio_kernel *vk = to_vk(be);

	info->flags = vk->info.flags;
	info->num_regions = vk->info.num_regions;
	info->num_irqs = vk->info.num_irqs;
	return 0;
}

static int vk_region_info(struct vfio_backend *be, uint32_t index, struct vfio_region *out)
{
	struct vfio_kernel *vk = to_vk(be);
	struct vfio_region_info *ri;
	uint32_t argsz = sizeof(*ri);
	int ret;

	if (index >= vk->info.num_regions)
		return -EINVAL;
	/* First call sizes the capability chain, second fetches it (vfio.h). */
	for (int attempt = 0; attempt < 2; attempt++) {
		ri = calloc(1, argsz);
		if (!ri)
			return -ENOMEM;
		ri->argsz = argsz;
		ri->index = index;
		ret = vk_ioctl(vk, vk->device_fd, VFIO_DEVICE_GET_REGION_INFO, ri,
			       "VFIO_DEVICE_GET_REGION_INFO");
		if (ret < 0)
			goto out;
		if (ri->argsz <= argsz || attempt)
			break;
		if (ri->argsz > VFIO_REGION_INFO_MAX) {
			log_err(be->name, "region %u: info of %u bytes is implausible", index,
				ri->argsz);
			ret = -EPROTO;
			goto out;
		}
		argsz = ri->argsz;
		free(ri);
	}
	memset(out, 0, sizeof(*out));
	out->index = index;
	out->flags = ri->flags;
	out->size = ri->size;
	out->offset = ri->offset;
	out->mmap_fd = (ri->flags & VFIO_REGION_INFO_FLAG_MMAP) ? vk->device_fd : -1;
	ret = 0;
	if ((ri->flags & VFIO_REGION_INFO_FLAG_CAPS) && ri->cap_offset)
		ret = vfio_region_parse_caps(out, ri, argsz < ri->argsz ? argsz : ri->argsz,
					     ri->cap_offset);
	if (!ret && (ri->flags & VFIO_REGION_INFO_FLAG_MMAP) && !out->nr_sparse && out->size) {
		out->nr_sparse = 1;
		out->sparse[0].offset = 0;
		out->sparse[0].size = out->size;
	}
	if (!ret)
		ret = vfio_region_validate(out);
	if (ret)
		log_err(be->name, "region %u: malformed region info", index);
out:
	free(ri);
	return ret;
}

static int vk_region_cached(struct vfio_kernel *vk, uint32_t index, struct vfio_region *r)
{
	int ret = 0;

	if (index >= vk->info.num_regions)
		return -EINVAL;
	pthread_mutex_lock(&vk->cache_lock);
	if (!vk->region_valid[index]) {
		ret = vk_region_info(&vk->be, index, &vk->region[index]);
		vk->region_valid[index] = !ret;
	}
	if (!ret)
		*r = vk->region[index];
	pthread_mutex_unlock(&vk->cache_lock);
	return ret;
}

static int vk_region_rw(struct vfio_kernel *vk, uint32_t index, uint64_t off, void *buf,
			uint32_t len, bool write)
{
	struct vfio_region r;
	ssize_t n;
	int ret = vk_region_cached(vk, index, &r);

	if (ret)
		return ret;
	if (off > r.size || len > r.size - off)
		return -ERANGE;
	if (write)
		n = vk->sys->pwrite(vk->so, vk->device_fd, buf, len, (off_t)(r.offset + off));
	else
		n = vk->sys->pread(vk->so, vk->device_fd, buf, len, (off_t)(r.offset + off));
	if (n < 0)
		return -errno ? -errno : -EIO;
	return (uint32_t)n == len ? 0 : -EIO;
}

static int vk_region_read(struct vfio_backend *be, uint32_t index, uint64_t off, void *buf,
			  uint32_t len)
{
	return vk_region_rw(to_vk(be), index, off, buf, len, false);
}

static int vk_region_write(struct vfio_backend *be, uint32_t index, uint64_t off,
			   const void *buf, uint32_t len)
{
	return vk_region_rw(to_vk(be), index, off, (void *)buf, len, true);
}

static int vk_region_mmap(struct vfio_backend *be, const struct vfio_region *r, uint64_t off,
			  uint64_t len, void **out)
{
	struct vfio_kernel *vk = to_vk(be);
	int prot = 0;
	void *p;

	if (!(r->flags & VFIO_REGION_INFO_FLAG_MMAP) || off > r->size || len > r->size - off || !len)
		return -EINVAL;
	if (r->flags & VFIO_REGION_INFO_FLAG_READ)
		prot |= PROT_READ;
	if (r->flags & VFIO_REGION_INFO_FLAG_WRITE)
		prot |= PROT_WRITE;
	p = vk->sys->mmap(vk->so, NULL, len, prot, MAP_SHARED, vk->device_fd,
			  (off_t)(r->offset + off));
	if (p == MAP_FAILED)
		return -errno ? -errno : -ENOMEM;
	*out = p;
	return 0;
}

static int vk_irq_info(struct vfio_backend *be, uint32_t index, struct vfio_irq *out)
{
	struct vfio_kernel *vk = to_vk(be);
	struct vfio_irq_info ii = { .argsz = sizeof(ii), .index = index };
	int ret;

	if (index >= vk->info.num_irqs)
		return -EINVAL;
	ret = vk_ioctl(vk, vk->device_fd, VFIO_DEVICE_GET_IRQ_INFO, &ii, "VFIO_DEVICE_GET_IRQ_INFO");
	if (ret < 0)
		return ret;
	if (ii.count > VFIO_MAX_IRQ_COUNT) {
		log_err(be->name, "irq index %u: %u vectors is implausible", index, ii.count);
		return -EPROTO;
	}
	out->index = index;
	out->flags = ii.flags;
	out->count = ii.count;
	return 0;
}

static int vk_set_irqs(struct vfio_backend *be, uint32_t index, uint32_t start, uint32_t count,
		       uint32_t flags, const int *fds)
{
	struct vfio_kernel *vk = to_vk(be);
	size_t data = (flags & VFIO_IRQ_SET_DATA_EVENTFD) ? count * sizeof(int32_t) : 0;
	struct vfio_irq_set *s;
	int ret;

	if (count > VFIO_MAX_IRQ_COUNT)
		return -EINVAL;
	s = calloc(1, sizeof(*s) + data);
	if (!s)
		return -ENOMEM;
	s->argsz = sizeof(*s) + data;
	s->flags = flags;
	s->index = index;
	s->start = start;
	s->count = count;
	if (data)
		for (uint32_t i = 0; i < count; i++)
			((int32_t *)s->data)[i] = fds[i];
	ret = vk_ioctl(vk, vk->device_fd, VFIO_DEVICE_SET_IRQS, s, "VFIO_DEVICE_SET_IRQS");
	free(s);
	return ret < 0 ? ret : 0;
}

static int vk_dma_map(struct vfio_backend *be, const struct vfio_dma *d)
{
	struct vfio_kernel *vk = to_vk(be);
	int ret;

	if (vk->mode == VFIO_MODE_IOMMUFD) {
		struct iommu_ioas_map m = {
			.size = sizeof(m), .ioas_id = vk->ioas_id, .flags = IOMMU_IOAS_MAP_FIXED_IOVA,
			.user_va = (uintptr_t)d->hva, .length = d->size, .iova = d->iova,
		};
		if (d->read)
			m.flags |= IOMMU_IOAS_MAP_READABLE;
		if (d->write)
			m.flags |= IOMMU_IOAS_MAP_WRITEABLE;
		ret = vk_ioctl(vk, vk->iommufd, IOMMU_IOAS_MAP, &m, "IOMMU_IOAS_MAP");
	} else {
		struct vfio_iommu_type1_dma_map m = {
			.argsz = sizeof(m), .vaddr = (uintptr_t)d->hva, .iova = d->iova, .size = d->size,
		};
		if (d->read)
			m.flags |= VFIO_DMA_MAP_FLAG_READ;
		if (d->write)
			m.flags |= VFIO_DMA_MAP_FLAG_WRITE;
		ret = vk_ioctl(vk, vk->container_fd, VFIO_IOMMU_MAP_DMA, &m, "VFIO_IOMMU_MAP_DMA");
	}
	return ret < 0 ? ret : 0;
}

static int vk_dma_unmap(struct vfio_backend *be, uint64_t iova, uint64_t size)
{
	struct vfio_kernel *vk = to_vk(be);
	int ret;

	if (vk->mode == VFIO_MODE_IOMMUFD) {
		struct iommu_ioas_unmap u = {
			.size = sizeof(u), .ioas_id = vk->ioas_id, .iova = iova, .length = size,
		};
		ret = vk_ioctl(vk, vk->iommufd, IOMMU_IOAS_UNMAP, &u, "IOMMU_IOAS_UNMAP");
	} else {
		struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .iova = iova, .size = size };

		ret = vk_ioctl(vk, vk->container_fd, VFIO_IOMMU_UNMAP_DMA, &u, "VFIO_IOMMU_UNMAP_DMA");
		if (ret >= 0 && u.size != size) {
			log_err(be->name, "unmap of [0x%llx,+0x%llx) removed 0x%llx bytes",
				(unsigned long long)iova, (unsigned long long)size,
				(unsigned long long)u.size);
			return -EIO;
		}
	}
	return ret < 0 ? ret : 0;
}

static int vk_reset(struct vfio_backend *be)
{
	struct vfio_kernel *vk = to_vk(be);

	if (!(vk->info.flags & VFIO_DEVICE_FLAGS_RESET))
		return -EOPNOTSUPP;
	int ret = vk_ioctl(vk, vk->device_fd, VFIO_DEVICE_RESET, NULL, "VFIO_DEVICE_RESET");
	return ret < 0 ? ret : 0;
}

static int vk_device_feature(struct vfio_backend *be, uint32_t flags, void *data, uint32_t len)
{
	struct vfio_kernel *vk = to_vk(be);
	struct vfio_device_feature *f;
	int ret;

	if (len > 65536)
		return -EINVAL;
	f = calloc(1, sizeof(*f) + len);
	if (!f)
		return -ENOMEM;
	f->argsz = sizeof(*f) + len;
	f->flags = flags;
	if (len)
		memcpy(f->data, data, len);
	ret = vk_ioctl(vk, vk->device_fd, VFIO_DEVICE_FEATURE, f, "VFIO_DEVICE_FEATURE");
	if (ret >= 0 && len)
		memcpy(data, f->data, len);
	free(f);
	return ret < 0 ? ret : 0;
}

static const struct vfio_backend_ops vfio_kernel_ops = {
	.kind = "vfio",
	.device_info = vk_device_info,
	.region_info = vk_region_info,
	.region_read = vk_region_read,
	.region_write = vk_region_write,
	.region_mmap = vk_region_mmap,
	.irq_info = vk_irq_info,
	.set_irqs = vk_set_irqs,
	.dma_map = vk_dma_map,
	.dma_unmap = vk_dma_unmap,
	.reset = vk_reset,
	.device_feature = vk_device_feature,
	.destroy = vk_destroy,
};
