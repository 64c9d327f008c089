/* Kernel VFIO back end against a recording mock of the syscall layer: there
 * is no VFIO on the build machines, so this is how both flows are verified.
 * The mock plays a well-behaved kernel (or a broken one, per test) and records
 * every call; tests compare the sequence with a golden list and check each
 * call's arguments. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "vfio/vfio_kernel.h"
#include "vfio/vfio_uapi.h"

enum mock_op { M_OPEN, M_IOCTL, M_CLOSE, M_MMAP, M_PREAD, M_PWRITE, M_READLINK, M_DIRENT };

struct mock_call {
	enum mock_op op;
	int fd;
	unsigned long req;
	char str[160];          /* path, device name */
	uint8_t arg[96];        /* snapshot of the ioctl argument as passed */
	uintptr_t iarg;         /* integer ioctl argument */
	uint64_t off, len;
};

#define MOCK_MAX_CALLS 400

struct mock {
	struct mock_call calls[MOCK_MAX_CALLS];
	uint8_t config[4096];       /* the device's config space (region 7) */
	uint32_t config_size;       /* its size as region info reports it: 256 or 4096 */
	unsigned n;
	int next_fd;
	int api_version, ext;
	uint32_t group_flags;
	uint32_t num_regions, num_irqs;
	unsigned long fail_req;     /* ioctl that fails with fail_errno */
	int fail_errno;
	const char *fail_open;      /* path whose open fails */
	int closed[16];
	unsigned nclosed;
	uint8_t token_seen[16];
};

static struct mock_call *mock_rec(struct mock *m, enum mock_op op)
{
	cr_assert_lt(m->n, MOCK_MAX_CALLS, "too many calls");
	struct mock_call *c = &m->calls[m->n++];
	memset(c, 0, sizeof(*c));
	c->op = op;
	return c;
}

static int m_open(void *o, const char *path, int flags)
{
	struct mock *m = o;
	struct mock_call *c = mock_rec(m, M_OPEN);

	snprintf(c->str, sizeof(c->str), "%s", path);
	cr_expect(flags & O_RDWR, "open %s without O_RDWR", path);
	cr_expect(flags & O_CLOEXEC, "open %s without O_CLOEXEC", path);
	if (m->fail_open && !strcmp(path, m->fail_open)) {
		errno = ENOENT;
		return -1;
	}
	return m->next_fd++;
}

static int m_region_info(struct mock *m, struct vfio_region_info *ri)
{
	uint32_t need = ri->index == VFIO_PCI_BAR0_REGION_INDEX
				? sizeof(*ri) + sizeof(struct vfio_region_info_cap_sparse_mmap) +
					  2 * sizeof(struct vfio_region_sparse_mmap_area)
				: sizeof(*ri);
	uint32_t have = ri->argsz;

	ri->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
	ri->size = ri->index == VFIO_PCI_CONFIG_REGION_INDEX ? m->config_size : 0x4000;
	ri->offset = (uint64_t)ri->index << 40;
	ri->argsz = need;
	if (ri->index == VFIO_PCI_BAR0_REGION_INDEX) {
		ri->flags |= VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS;
		if (have >= need) {
			struct vfio_region_info_cap_sparse_mmap *sp = (void *)(ri + 1);

			ri->cap_offset = sizeof(*ri);
			sp->header.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
			sp->header.version = 1;
			sp->header.next = 0;
			sp->nr_areas = 2;
			sp->areas[0].offset = 0;
			sp->areas[0].size = 0x1000;
			sp->areas[1].offset = 0x3000;
			sp->areas[1].size = 0x1000;
		}
	}
	return 0;
}

static int m_ioctl(void *o, int fd, unsigned long req, void *arg)
{
	struct mock *m = o;
	struct mock_call *c = mock_rec(m, M_IOCTL);

	c->fd = fd;
	c->req = req;
	c->iarg = (uintptr_t)arg;
	if (req == VFIO_GROUP_GET_DEVICE_FD)
		snprintf(c->str, sizeof(c->str), "%s", (const char *)arg);
	else if (req == VFIO_GROUP_SET_CONTAINER)
		memcpy(c->arg, arg, sizeof(int));
	else if (req != VFIO_CHECK_EXTENSION && req != VFIO_SET_IOMMU && arg) {
		/* Every VFIO/iommufd struct starts with its own size (argsz/size). */
		uint32_t sz;
		memcpy(&sz, arg, 4);
		cr_assert(sz >= 8 && sz <= 4096, "ioctl 0x%lx: argsz %u", req, sz);
		memcpy(c->arg, arg, sz < sizeof(c->arg) ? sz : sizeof(c->arg));
	}
	if (req == m->fail_req) {
		errno = m->fail_errno;
		return -1;
	}
	switch (req) {
	case VFIO_GET_API_VERSION:
		return m->api_version;
	case VFIO_CHECK_EXTENSION:
		return m->ext;
	case VFIO_GROUP_GET_STATUS:
		((struct vfio_group_status *)arg)->flags = m->group_flags;
		return 0;
	case VFIO_GROUP_GET_DEVICE_FD:
		return m->next_fd++;
	case IOMMU_IOAS_ALLOC:
		((struct iommu_ioas_alloc *)arg)->out_ioas_id = 7;
		return 0;
	case VFIO_DEVICE_BIND_IOMMUFD: {
		struct vfio_device_bind_iommufd *b = arg;

		if (b->flags & VFIO_DEVICE_BIND_FLAG_TOKEN)
			memcpy(m->token_seen, (void *)(uintptr_t)b->token_uuid_ptr, 16);
		b->out_devid = 3;
		return 0;
	}
	case VFIO_DEVICE_GET_INFO: {
		struct vfio_device_info *i = arg;

		i->flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
		i->num_regions = m->num_regions;
		i->num_irqs = m->num_irqs;
		return 0;
	}
	case VFIO_DEVICE_GET_REGION_INFO:
		return m_region_info(m, arg);
	case VFIO_DEVICE_GET_IRQ_INFO:
		((struct vfio_irq_info *)arg)->count =
			((struct vfio_irq_info *)arg)->index == VFIO_PCI_INTX_IRQ_INDEX ? 1 : 4;
		((struct vfio_irq_info *)arg)->flags = VFIO_IRQ_INFO_EVENTFD;
		return 0;
	case VFIO_IOMMU_UNMAP_DMA:
		return 0;   /* size left as requested: all unmapped */
	default:
		return 0;
	}
}

static int m_close(void *o, int fd)
{
	struct mock *m = o;
	struct mock_call *c = mock_rec(m, M_CLOSE);

	c->fd = fd;
	if (m->nclosed < 16)
		m->closed[m->nclosed++] = fd;
	return 0;
}

static void *m_mmap(void *o, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct mock *m = o;
	struct mock_call *c = mock_rec(m, M_MMAP);

	c->fd = fd;
	c->off = (uint64_t)off;
	c->len = len;
	cr_expect_eq(flags, MAP_SHARED);
	/* Real (anonymous) memory, so callers may touch and munmap it. */
	return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static ssize_t m_pread(void *o, int fd, void *buf, size_t len, off_t off)
{
	struct mock *m = o;
	struct mock_call *c = mock_rec(m, M_PREAD);

	c->fd = fd;
	c->off = (uint64_t)off;
	c->len = len;
	uint64_t cfg = (uint64_t)VFIO_PCI_CONFIG_REGION_INDEX << 40;
	if ((uint64_t)off >= cfg && (uint64_t)off - cfg + len <= m->config_size && m->config[0])
		memcpy(buf, m->config + ((uint64_t)off - cfg), len);
	else
		memset(buf, 0xab, len);
	return (ssize_t)len;
}

static ssize_t m_pwrite(void *o, int fd, const void *buf, size_t len, off_t off)
{
	struct mock *m = o;
	struct mock_call *c = mock_rec(m, M_PWRITE);

	c->fd = fd;
	c->off = (uint64_t)off;
	c->len = len;
	return (ssize_t)len;
}

static ssize_t m_readlink(void *o, const char *path, char *buf, size_t len)
{
	struct mock *m = o;
	struct mock_call *c = mock_rec(m, M_READLINK);
	const char *target = "../../../kernel/iommu_groups/42";

	snprintf(c->str, sizeof(c->str), "%s", path);
	size_t n = strlen(target) < len ? strlen(target) : len;
	memcpy(buf, target, n);
	return (ssize_t)n;
}

static int m_first_dirent(void *o, const char *path, char *name, size_t len)
{
	struct mock *m = o;
	struct mock_call *c = mock_rec(m, M_DIRENT);

	snprintf(c->str, sizeof(c->str), "%s", path);
	snprintf(name, len, "vfio5");
	return 0;
}

static const struct vfio_sys_ops mock_ops = {
	.open = m_open, .ioctl = m_ioctl, .close = m_close, .mmap = m_mmap, .pread = m_pread,
	.pwrite = m_pwrite, .readlink = m_readlink, .first_dirent = m_first_dirent,
};

static void mock_init(struct mock *m)
{
	memset(m, 0, sizeof(*m));
	m->next_fd = 10;
	m->api_version = VFIO_API_VERSION;
	m->ext = 1;
	m->group_flags = VFIO_GROUP_FLAGS_VIABLE;
	m->num_regions = VFIO_PCI_NUM_REGIONS;
	m->num_irqs = VFIO_PCI_NUM_IRQS;
	m->config_size = 256;
}

static int open_with(struct mock *m, enum vfio_kernel_mode mode, const char *token,
		     struct vfio_backend **be)
{
	struct vfio_kernel_opts o = {
		.bdf = "0000:03:00.1", .mode = mode, .vf_token = token, .sys = &mock_ops,
		.sys_opaque = m,
	};
	return vfio_kernel_open(&o, be);
}

/* A golden step: the op, and for opens the path, for ioctls the request. */
struct step {
	enum mock_op op;
	unsigned long req;
	const char *str;
};

static void expect_sequence(const struct mock *m, const struct step *g, unsigned n)
{
	cr_assert_eq(m->n, n, "expected %u calls, got %u", n, m->n);
	for (unsigned i = 0; i < n; i++) {
		cr_expect_eq(m->calls[i].op, g[i].op, "call %u: op %d, expected %d", i,
			     m->calls[i].op, g[i].op);
		if (g[i].op == M_IOCTL)
			cr_expect_eq(m->calls[i].req, g[i].req, "call %u: ioctl 0x%lx expected 0x%lx",
				     i, m->calls[i].req, g[i].req);
		if (g[i].str)
			cr_expect_str_eq(m->calls[i].str, g[i].str, "call %u", i);
	}
}

static const struct step type1_golden[] = {
	{ M_OPEN, 0, "/dev/vfio/vfio" },
	{ M_IOCTL, VFIO_GET_API_VERSION, NULL },
	{ M_IOCTL, VFIO_CHECK_EXTENSION, NULL },
	{ M_READLINK, 0, "/sys/bus/pci/devices/0000:03:00.1/iommu_group" },
	{ M_OPEN, 0, "/dev/vfio/42" },
	{ M_IOCTL, VFIO_GROUP_GET_STATUS, NULL },
	{ M_IOCTL, VFIO_GROUP_SET_CONTAINER, NULL },
	{ M_IOCTL, VFIO_SET_IOMMU, NULL },
	{ M_IOCTL, VFIO_GROUP_GET_DEVICE_FD, "0000:03:00.1" },
	{ M_IOCTL, VFIO_DEVICE_GET_INFO, NULL },
};

Test(vfio_kernel, type1_golden_sequence)
{
	struct mock m;
	struct vfio_backend *be = NULL;

	mock_init(&m);
	cr_assert_eq(open_with(&m, VFIO_MODE_TYPE1, NULL, &be), 0);
	expect_sequence(&m, type1_golden, sizeof(type1_golden) / sizeof(type1_golden[0]));
	/* Arguments: extension and IOMMU type are TYPE1v2 by value, the container
	 * fd (10) is passed by pointer to SET_CONTAINER on the group fd (11). */
	cr_expect_eq(m.calls[2].iarg, VFIO_TYPE1v2_IOMMU);
	cr_expect_eq(m.calls[2].fd, 10);
	cr_expect_eq(m.calls[5].fd, 11);
	int cfd;
	memcpy(&cfd, m.calls[6].arg, sizeof(cfd));
	cr_expect_eq(cfd, 10);
	cr_expect_eq(m.calls[6].fd, 11);
	cr_expect_eq(m.calls[7].iarg, VFIO_TYPE1v2_IOMMU);
	cr_expect_eq(m.calls[7].fd, 10);
	cr_expect_eq(m.calls[9].fd, 12, "GET_INFO must go to the device fd");
	struct vfio_device_info di;
	memcpy(&di, m.calls[9].arg, sizeof(di));
	cr_expect_eq(di.argsz, sizeof(di));

	/* DMA map/unmap go to the container with the right fields. */
	unsigned base = m.n;
	struct vfio_dma d = { .iova = 0x100000, .size = 0x200000, .hva = (void *)0x7f0000000000,
			      .read = true, .write = true };
	cr_assert_eq(be->ops->dma_map(be, &d), 0);
	cr_assert_eq(be->ops->dma_unmap(be, 0x100000, 0x200000), 0);
	cr_assert_eq(m.n, base + 2);
	struct vfio_iommu_type1_dma_map dm;
	memcpy(&dm, m.calls[base].arg, sizeof(dm));
	cr_expect_eq(m.calls[base].req, VFIO_IOMMU_MAP_DMA);
	cr_expect_eq(m.calls[base].fd, 10);
	cr_expect_eq(dm.argsz, sizeof(dm));
	cr_expect_eq(dm.iova, 0x100000);
	cr_expect_eq(dm.size, 0x200000);
	cr_expect_eq(dm.vaddr, 0x7f0000000000);
	cr_expect_eq(dm.flags, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
	struct vfio_iommu_type1_dma_unmap du;
	memcpy(&du, m.calls[base + 1].arg, sizeof(du));
	cr_expect_eq(m.calls[base + 1].req, VFIO_IOMMU_UNMAP_DMA);
	cr_expect_eq(du.iova, 0x100000);
	cr_expect_eq(du.size, 0x200000);

	/* Teardown closes device, group, container. */
	m.nclosed = 0;
	vfio_be_destroy(be);
	cr_assert_eq(m.nclosed, 3);
	cr_expect_eq(m.closed[0], 12);
	cr_expect_eq(m.closed[1], 11);
	cr_expect_eq(m.closed[2], 10);
}

Test(vfio_kernel, type1_vf_token_in_device_name)
{
	struct mock m;
	struct vfio_backend *be = NULL;

	mock_init(&m);
	cr_assert_eq(open_with(&m, VFIO_MODE_TYPE1, "bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3", &be), 0);
	cr_expect_str_eq(m.calls[8].str, "0000:03:00.1 vf_token=bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3");
	vfio_be_destroy(be);
}

static const struct step iommufd_golden[] = {
	{ M_OPEN, 0, "/dev/iommu" },
	{ M_IOCTL, IOMMU_IOAS_ALLOC, NULL },
	{ M_DIRENT, 0, "/sys/bus/pci/devices/0000:03:00.1/vfio-dev" },
	{ M_OPEN, 0, "/dev/vfio/devices/vfio5" },
	{ M_IOCTL, VFIO_DEVICE_BIND_IOMMUFD, NULL },
	{ M_IOCTL, VFIO_DEVICE_ATTACH_IOMMUFD_PT, NULL },
	{ M_IOCTL, VFIO_DEVICE_GET_INFO, NULL },
};

Test(vfio_kernel, iommufd_golden_sequence_with_token)
{
	struct mock m;
	struct vfio_backend *be = NULL;
	static const uint8_t uuid[16] = { 0xbd, 0x8d, 0x9d, 0x2b, 0x5a, 0x5f, 0x4f, 0x5a,
					  0xa2, 0x11, 0xf5, 0x91, 0x51, 0x4b, 0xa1, 0xf3 };

	mock_init(&m);
	cr_assert_eq(open_with(&m, VFIO_MODE_IOMMUFD, "bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3", &be),
		     0);
	expect_sequence(&m, iommufd_golden, sizeof(iommufd_golden) / sizeof(iommufd_golden[0]));
	struct iommu_ioas_alloc ia;
	memcpy(&ia, m.calls[1].arg, sizeof(ia));
	cr_expect_eq(ia.size, sizeof(ia));
	cr_expect_eq(ia.flags, 0);
	struct vfio_device_bind_iommufd b;
	memcpy(&b, m.calls[4].arg, sizeof(b));
	cr_expect_eq(b.argsz, sizeof(b));
	cr_expect_eq(b.iommufd, 10, "bind must name the iommufd");
	cr_expect_eq(b.flags, VFIO_DEVICE_BIND_FLAG_TOKEN);
	cr_expect_eq(m.calls[4].fd, 11);
	cr_expect_arr_eq(m.token_seen, uuid, 16);
	struct vfio_device_attach_iommufd_pt at;
	memcpy(&at, m.calls[5].arg, sizeof(at));
	cr_expect_eq(at.pt_id, 7, "attach must name the IOAS");
	cr_expect_eq(at.flags, 0);

	unsigned base = m.n;
	struct vfio_dma d = { .iova = 0x4000, .size = 0x1000, .hva = (void *)0x7f0000001000,
			      .read = true };
	cr_assert_eq(be->ops->dma_map(be, &d), 0);
	cr_assert_eq(be->ops->dma_unmap(be, 0x4000, 0x1000), 0);
	struct iommu_ioas_map im;
	memcpy(&im, m.calls[base].arg, sizeof(im));
	cr_expect_eq(m.calls[base].req, IOMMU_IOAS_MAP);
	cr_expect_eq(m.calls[base].fd, 10);
	cr_expect_eq(im.size, sizeof(im));
	cr_expect_eq(im.ioas_id, 7);
	cr_expect_eq(im.flags, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE);
	cr_expect_eq(im.iova, 0x4000);
	cr_expect_eq(im.length, 0x1000);
	cr_expect_eq(im.user_va, 0x7f0000001000);
	struct iommu_ioas_unmap iu;
	memcpy(&iu, m.calls[base + 1].arg, sizeof(iu));
	cr_expect_eq(m.calls[base + 1].req, IOMMU_IOAS_UNMAP);
	cr_expect_eq(iu.ioas_id, 7);
	cr_expect_eq(iu.iova, 0x4000);
	cr_expect_eq(iu.length, 0x1000);
	vfio_be_destroy(be);
}

Test(vfio_kernel, iommufd_without_token_sends_no_flag)
{
	struct mock m;
	struct vfio_backend *be = NULL;

	mock_init(&m);
	cr_assert_eq(open_with(&m, VFIO_MODE_IOMMUFD, NULL, &be), 0);
	struct vfio_device_bind_iommufd b;
	memcpy(&b, m.calls[4].arg, sizeof(b));
	cr_expect_eq(b.flags, 0);
	cr_expect_eq(b.token_uuid_ptr, 0);
	vfio_be_destroy(be);
}

static void expect_all_closed(const struct mock *m)
{
	/* Every fd handed out by open or GET_DEVICE_FD must be closed. */
	for (int fd = 10; fd < m->next_fd; fd++) {
		bool found = false;
		for (unsigned i = 0; i < m->nclosed; i++)
			found |= m->closed[i] == fd;
		cr_expect(found, "fd %d leaked", fd);
	}
}

Test(vfio_kernel, group_not_viable_is_a_clean_error)
{
	struct mock m;
	struct vfio_backend *be = NULL;

	mock_init(&m);
	m.group_flags = 0;
	cr_assert_eq(open_with(&m, VFIO_MODE_TYPE1, NULL, &be), -EBUSY);
	cr_expect_null(be);
	/* It stopped right after GET_STATUS: no SET_CONTAINER was attempted. */
	for (unsigned i = 0; i < m.n; i++)
		cr_expect_neq(m.calls[i].req, VFIO_GROUP_SET_CONTAINER);
	expect_all_closed(&m);
}

Test(vfio_kernel, wrong_api_version)
{
	struct mock m;
	struct vfio_backend *be = NULL;

	mock_init(&m);
	m.api_version = 1;
	cr_assert_eq(open_with(&m, VFIO_MODE_TYPE1, NULL, &be), -EPROTONOSUPPORT);
	cr_expect_eq(m.n, 3, "open, GET_API_VERSION, close");
	expect_all_closed(&m);
}

Test(vfio_kernel, no_type1v2_extension)
{
	struct mock m;
	struct vfio_backend *be = NULL;

	mock_init(&m);
	m.ext = 0;
	cr_assert_eq(open_with(&m, VFIO_MODE_TYPE1, NULL, &be), -EOPNOTSUPP);
	expect_all_closed(&m);
}

Test(vfio_kernel, dma_map_failure_is_reported)
{
	struct mock m;
	struct vfio_backend *be = NULL;

	mock_init(&m);
	cr_assert_eq(open_with(&m, VFIO_MODE_TYPE1, NULL, &be), 0);
	m.fail_req = VFIO_IOMMU_MAP_DMA;
	m.fail_errno = ENOMEM;
	struct vfio_dma d = { .iova = 0, .size = 0x1000, .hva = (void *)0x1000, .read = true };
	cr_expect_eq(be->ops->dma_map(be, &d), -ENOMEM);
	vfio_be_destroy(be);
}

Test(vfio_kernel, bind_failure_closes_everything)
{
	struct mock m;
	struct vfio_backend *be = NULL;

	mock_init(&m);
	m.fail_req = VFIO_DEVICE_BIND_IOMMUFD;
	m.fail_errno = EPERM;
	cr_assert_eq(open_with(&m, VFIO_MODE_IOMMUFD, NULL, &be), -EPERM);
	expect_all_closed(&m);
}

Test(vfio_kernel, missing_container_device)
{
	struct mock m;
	struct vfio_backend *be = NULL;

	mock_init(&m);
	m.fail_open = "/dev/vfio/vfio";
	cr_assert_eq(open_with(&m, VFIO_MODE_TYPE1, NULL, &be), -ENOENT);
	cr_expect_eq(m.n, 1);
}

Test(vfio_kernel, device_info_lies_huge_region_count)
{
	struct mock m;
	struct vfio_backend *be = NULL;

	mock_init(&m);
	m.num_regions = 0x10000000;
	cr_assert_eq(open_with(&m, VFIO_MODE_TYPE1, NULL, &be), -EPROTO);
	expect_all_closed(&m);
	mock_init(&m);
	m.num_irqs = 1000;
	cr_assert_eq(open_with(&m, VFIO_MODE_IOMMUFD, NULL, &be), -EPROTO);
}

Test(vfio_kernel, bad_arguments)
{
	struct mock m;
	struct vfio_backend *be = NULL;
	struct vfio_kernel_opts o = { .bdf = "03:00.1", .sys = &mock_ops, .sys_opaque = &m };

	mock_init(&m);
	cr_expect_eq(vfio_kernel_open(&o, &be), -EINVAL);
	o.bdf = "0000:03:00.9";
	cr_expect_eq(vfio_kernel_open(&o, &be), -EINVAL);
	cr_expect_eq(m.n, 0);
	o.bdf = "0000:03:00.1";
	o.mode = VFIO_MODE_IOMMUFD;
	o.vf_token = "not-a-uuid";
	cr_expect_eq(vfio_kernel_open(&o, &be), -EINVAL);
	expect_all_closed(&m);
}

Test(vfio_kernel, region_info_sparse_caps_and_rw)
{
	struct mock m;
	struct vfio_backend *be = NULL;
	struct vfio_region r;

	mock_init(&m);
	cr_assert_eq(open_with(&m, VFIO_MODE_TYPE1, NULL, &be), 0);
	unsigned base = m.n;
	cr_assert_eq(be->ops->region_info(be, VFIO_PCI_BAR0_REGION_INDEX, &r), 0);
	/* Two calls: the first learns the size of the capability chain. */
	cr_expect_eq(m.n, base + 2);
	cr_expect_eq(r.nr_sparse, 2);
	cr_expect_eq(r.sparse[1].offset, 0x3000);
	cr_expect_eq(r.sparse[1].size, 0x1000);
	cr_expect_eq(r.mmap_fd, 12);

	cr_assert_eq(be->ops->region_info(be, VFIO_PCI_BAR1_REGION_INDEX, &r), 0);
	cr_expect_eq(r.nr_sparse, 0, "not mmappable: no areas");
	cr_expect_eq(be->ops->region_info(be, 99, &r), -EINVAL);

	uint32_t v = 0;
	base = m.n;
	cr_assert_eq(vfio_be_region_read(be, VFIO_PCI_CONFIG_REGION_INDEX, 0x10, &v, 4), 0);
	cr_expect_eq(v, 0xabababab);
	cr_expect_eq(m.calls[m.n - 1].op, M_PREAD);
	cr_expect_eq(m.calls[m.n - 1].off, ((uint64_t)VFIO_PCI_CONFIG_REGION_INDEX << 40) + 0x10);
	cr_expect_eq(vfio_be_region_read(be, VFIO_PCI_CONFIG_REGION_INDEX, 0xfe, &v, 4), -ERANGE);
	cr_assert_eq(vfio_be_region_write(be, VFIO_PCI_BAR0_REGION_INDEX, 0x8, &v, 4), 0);
	cr_expect_eq(m.calls[m.n - 1].op, M_PWRITE);

	void *p = NULL;
	cr_assert_eq(be->ops->region_info(be, VFIO_PCI_BAR0_REGION_INDEX, &r), 0);
	cr_assert_eq(be->ops->region_mmap(be, &r, 0x3000, 0x1000, &p), 0);
	cr_expect_eq(m.calls[m.n - 1].off, ((uint64_t)VFIO_PCI_BAR0_REGION_INDEX << 40) + 0x3000);
	cr_expect_eq(be->ops->region_mmap(be, &r, 0x3000, 0x2000, &p), -EINVAL);
	vfio_be_destroy(be);
}

Test(vfio_kernel, irqs_reset_feature)
{
	struct mock m;
	struct vfio_backend *be = NULL;
	struct vfio_irq irq;
	int fds[3] = { 33, -1, 35 };

	mock_init(&m);
	cr_assert_eq(open_with(&m, VFIO_MODE_IOMMUFD, NULL, &be), 0);
	cr_assert_eq(be->ops->irq_info(be, VFIO_PCI_MSIX_IRQ_INDEX, &irq), 0);
	cr_expect_eq(irq.count, 4);
	cr_assert_eq(be->ops->set_irqs(be, VFIO_PCI_MSIX_IRQ_INDEX, 1, 3,
				       VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, fds),
		     0);
	struct mock_call *c = &m.calls[m.n - 1];
	struct vfio_irq_set s;
	memcpy(&s, c->arg, sizeof(s));
	cr_expect_eq(c->req, VFIO_DEVICE_SET_IRQS);
	cr_expect_eq(s.argsz, sizeof(s) + 12);
	cr_expect_eq(s.index, VFIO_PCI_MSIX_IRQ_INDEX);
	cr_expect_eq(s.start, 1);
	cr_expect_eq(s.count, 3);
	int32_t got[3];
	memcpy(got, c->arg + sizeof(s), sizeof(got));
	cr_expect_eq(got[0], 33);
	cr_expect_eq(got[1], -1);
	cr_expect_eq(got[2], 35);
	cr_assert_eq(be->ops->reset(be), 0);
	cr_expect_eq(m.calls[m.n - 1].req, VFIO_DEVICE_RESET);
	uint32_t st = 0;
	cr_assert_eq(be->ops->device_feature(be, VFIO_DEVICE_FEATURE_GET |
						 VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &st, 4), 0);
	cr_expect_eq(m.calls[m.n - 1].req, VFIO_DEVICE_FEATURE);
	vfio_be_destroy(be);
}

Test(vfio_kernel, region_caps_that_lie_are_rejected)
{
	uint8_t buf[256] = { 0 };
	struct vfio_region r = { .size = 0x4000 };
	struct vfio_info_cap_header *h = (void *)(buf + sizeof(struct vfio_region_info));

	/* Capability pointing to itself (a loop). */
	h->id = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
	h->next = sizeof(struct vfio_region_info);
	cr_expect_eq(vfio_region_parse_caps(&r, buf, sizeof(buf), sizeof(struct vfio_region_info)),
		     -EPROTO);
	/* Capability outside the reply. */
	cr_expect_eq(vfio_region_parse_caps(&r, buf, 40, 200), -EPROTO);
	/* nr_areas larger than the reply. */
	struct vfio_region_info_cap_sparse_mmap *sp = (void *)h;
	h->next = 0;
	sp->nr_areas = 1000;
	cr_expect_eq(vfio_region_parse_caps(&r, buf, sizeof(buf), sizeof(struct vfio_region_info)),
		     -EPROTO);
	/* A sparse area beyond the region. */
	sp->nr_areas = 1;
	sp->areas[0].offset = 0x3000;
	sp->areas[0].size = 0x2000;
	cr_assert_eq(vfio_region_parse_caps(&r, buf, sizeof(buf), sizeof(struct vfio_region_info)),
		     0);
	cr_expect_eq(vfio_region_validate(&r), -EPROTO);
}

Test(vfio_kernel, uuid_and_bdf)
{
	uint8_t u[16];

	cr_expect_eq(vfio_uuid_parse("00112233-4455-6677-8899-aabbccddeeff", u), 0);
	cr_expect_eq(u[0], 0x00);
	cr_expect_eq(u[15], 0xff);
	cr_expect_eq(vfio_uuid_parse("00112233-4455-6677-8899-aabbccddeefg", u), -EINVAL);
	cr_expect_eq(vfio_uuid_parse("0011223304455-6677-8899-aabbccddeeff", u), -EINVAL);
	cr_expect(vfio_bdf_valid("0000:03:00.1"));
	cr_expect(vfio_bdf_valid("abcd:ff:1f.7"));
	cr_expect(!vfio_bdf_valid("0000:03:20.1"));
	cr_expect(!vfio_bdf_valid("0000:03:00.1x"));
	cr_expect(!vfio_bdf_valid("0000-03:00.1"));
}

/* ---- the vfio-pci device model over the (mocked) kernel back end ---- */

#include "devices/pci.h"
#include "vfio/vfio_pci.h"
#include "vmm/bus.h"
#include "vmm/layout.h"
#include "vmm/mem.h"

static int kp_route_add(void *o, uint64_t a, uint32_t d, unsigned *gsi)
{
	*gsi = 40;
	return 0;
}
static int kp_route_update(void *o, unsigned gsi, uint64_t a, uint32_t d) { return 0; }
static int kp_irqfd(void *o, int fd, unsigned gsi, bool assign) { return 0; }
static int kp_ioeventfd(void *o, int fd, uint64_t a, uint32_t l, bool pio, bool assign) { return 0; }
static const struct pci_irq_ops kp_irq_ops = {
	.msi_route_add = kp_route_add, .msi_route_update = kp_route_update,
	.irqfd = kp_irqfd, .ioeventfd = kp_ioeventfd,
};

struct kp_slots {
	unsigned installs;
	uint64_t gpa, size;
};

static int kp_memslot(void *o, unsigned idx, uint64_t gpa, uint64_t size, void *hva)
{
	struct kp_slots *k = o;

	if (size) {
		k->installs++;
		k->gpa = gpa;
		k->size = size;
	}
	return 0;
}

/* An SR-IOV VF's header: 8086:1515, Ethernet, MSI-X (4 vectors, table at
 * BAR0 + 0x3000, PBA at + 0x3800), a PM capability, an MSI capability (to be
 * filtered out), INTA#. */
static void kp_config(struct mock *m)
{
	uint8_t *c = m->config;

	memset(c, 0, sizeof(m->config));
	c[0] = 0x86; c[1] = 0x80; c[2] = 0x15; c[3] = 0x15;
	c[PCI_STATUS] = PCI_STATUS_CAP_LIST;
	c[PCI_CLASS_DEVICE] = 0x00; c[PCI_CLASS_DEVICE + 1] = 0x02;
	c[PCI_CAPABILITY_LIST] = 0x40;
	c[PCI_INTERRUPT_PIN] = 1;
	c[0x40] = PCI_CAP_ID_MSIX; c[0x41] = 0x50;
	c[0x42] = 3;                                     /* 4 vectors */
	c[0x44] = 0x00; c[0x45] = 0x30;                  /* table 0x3000, BIR 0 */
	c[0x48] = 0x00; c[0x49] = 0x38;                  /* PBA 0x3800, BIR 0 */
	c[0x50] = PCI_CAP_ID_PM; c[0x51] = 0x60; c[0x52] = 0x03;
	c[0x60] = PCI_CAP_ID_MSI; c[0x61] = 0;
}

static unsigned count_ioctl(const struct mock *m, unsigned from, unsigned long req)
{
	unsigned n = 0;

	for (unsigned i = from; i < m->n; i++)
		n += m->calls[i].op == M_IOCTL && m->calls[i].req == req;
	return n;
}

static int last_set_irqs_index(const struct mock *m, uint32_t *flags, uint32_t *count)
{
	for (unsigned i = m->n; i-- > 0;) {
		if (m->calls[i].op == M_IOCTL && m->calls[i].req == VFIO_DEVICE_SET_IRQS) {
			struct vfio_irq_set s;

			memcpy(&s, m->calls[i].arg, sizeof(s));
			*flags = s.flags;
			*count = s.count;
			return (int)s.index;
		}
	}
	return -1;
}

/* The device model over the mocked kernel: a PCI bus, guest RAM, and the
 * vfio-pci function made from the mock's config space (set it up first). */
struct kp_rig {
	struct mock *m;
	struct bus mmio, pio;
	struct pci_bus pbus;
	struct guest_mem mem;
	struct kp_slots slots;
	struct vfio_pci *vp;
	unsigned base;          /* the mock's call count before vfio_pci_init */
};

static void kp_rig_start(struct kp_rig *r, struct mock *m)
{
	struct vfio_backend *be = NULL;

	memset(r, 0, sizeof(*r));
	r->m = m;
	r->vp = calloc(1, sizeof(*r->vp));
	cr_assert_not_null(r->vp);
	cr_assert_eq(open_with(m, VFIO_MODE_TYPE1, NULL, &be), 0);
	cr_assert_eq(mem_init(&r->mem, 8u << 20), 0);
	cr_assert_eq(bus_init(&r->mmio, "mmio"), 0);
	cr_assert_eq(bus_init(&r->pio, "pio"), 0);
	cr_assert_eq(pci_bus_init(&r->pbus, &r->mmio, &r->pio, LAYOUT_PCI_ECAM, &kp_irq_ops, NULL),
		     0);
	r->base = m->n;
	struct vfio_pci_env env = { .bus = &r->pbus, .mem = &r->mem, .memslot = kp_memslot,
				    .opaque = &r->slots, .slot = -1 };
	cr_assert_eq(vfio_pci_init(r->vp, "vfio0", be, &env), 0);
}

static void kp_rig_stop(struct kp_rig *r)
{
	vfio_pci_uninit(r->vp);
	pci_bus_destroy(&r->pbus);
	bus_destroy(&r->mmio);
	bus_destroy(&r->pio);
	mem_destroy(&r->mem);
	free(r->vp);
}

Test(vfio_kernel, device_model_over_type1)
{
	struct mock *m = calloc(1, sizeof(*m));
	struct kp_rig r;
	uint32_t flags, count;

	cr_assert_not_null(m);
	mock_init(m);
	kp_config(m);
	kp_rig_start(&r, m);
	struct vfio_pci *vp = r.vp;
	unsigned base = r.base;

	/* IDs and the capability filter: MSI-X (ours), PM passed, MSI dropped. */
	unsigned slot = vp->pci.slot;
	cr_expect_eq(pci_bus_config_read(&r.pbus, slot, 0, PCI_VENDOR_ID, 4), 0x15158086);
	cr_expect_eq(pci_bus_config_read(&r.pbus, slot, 0, PCI_CLASS_DEVICE, 2), 0x0200);
	cr_expect_neq(pci_cap_find(&vp->pci, PCI_CAP_ID_MSIX), 0);
	cr_expect_neq(pci_cap_find(&vp->pci, PCI_CAP_ID_PM), 0);
	cr_expect_eq(pci_cap_find(&vp->pci, PCI_CAP_ID_MSI), 0);

	/* Guest RAM mapped into the container, vaddr = our mapping of it. */
	cr_expect_eq(count_ioctl(m, base, VFIO_IOMMU_MAP_DMA), r.mem.nr_regions);
	for (unsigned i = base; i < m->n; i++) {
		if (m->calls[i].req != VFIO_IOMMU_MAP_DMA)
			continue;
		struct vfio_iommu_type1_dma_map dm;
		memcpy(&dm, m->calls[i].arg, sizeof(dm));
		cr_expect_eq(dm.iova, r.mem.regions[0].gpa);
		cr_expect_eq(dm.vaddr, (uintptr_t)r.mem.regions[0].hva);
		cr_expect_eq(dm.size, r.mem.regions[0].size);
		cr_expect_eq(m->calls[i].fd, 10, "on the container");
	}
	/* INTx armed at creation: trigger and unmask eventfds. */
	cr_expect(vp->intx_armed);
	cr_expect_eq(pci_bus_config_read(&r.pbus, slot, 0, PCI_INTERRUPT_PIN, 1), 1);

	/* Decode on: only BAR0's first sparse area becomes a memslot (the other
	 * holds the MSI-X table page and stays trapped). */
	pci_bus_config_write(&r.pbus, slot, 0, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	uint64_t bar0 = pci_bar_address(&vp->pci, 0);
	cr_expect_eq(r.slots.installs, 1);
	cr_expect_eq(r.slots.gpa, bar0);
	cr_expect_eq(r.slots.size, 0x1000);
	/* The command register reached the device (pwrite at config + 4). */
	cr_expect_eq(m->calls[m->n - 1].op, M_PWRITE);
	cr_expect_eq(m->calls[m->n - 1].off, ((uint64_t)VFIO_PCI_CONFIG_REGION_INDEX << 40) + 4);

	/* A trapped BAR access is a pread at the region offset. */
	uint32_t v = 0;
	cr_assert_eq(bus_read(&r.mmio, bar0 + 0x2000, &v, 4), 0);
	cr_expect_eq(v, 0xabababab);
	cr_expect_eq(m->calls[m->n - 1].op, M_PREAD);
	cr_expect_eq(m->calls[m->n - 1].off, ((uint64_t)VFIO_PCI_BAR0_REGION_INDEX << 40) + 0x2000);

	/* MSI-X enable: INTx off first (VFIO allows one type), then 4 eventfds. */
	uint16_t cap = pci_cap_find(&vp->pci, PCI_CAP_ID_MSIX);
	base = m->n;
	pci_bus_config_write(&r.pbus, slot, 0, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, 2);
	cr_expect_eq(count_ioctl(m, base, VFIO_DEVICE_SET_IRQS), 2);
	cr_expect_eq(last_set_irqs_index(m, &flags, &count), VFIO_PCI_MSIX_IRQ_INDEX);
	cr_expect_eq(flags, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER);
	cr_expect_eq(count, 4);
	cr_expect(!vp->intx_armed);

	/* VM reset = VFIO_DEVICE_RESET. */
	vfio_pci_reset(vp);
	cr_expect_eq(count_ioctl(m, base, VFIO_DEVICE_RESET), 1);

	/* Teardown unmaps the DMA and closes the device. */
	base = m->n;
	unsigned regions = r.mem.nr_regions;
	kp_rig_stop(&r);
	cr_expect_eq(count_ioctl(m, base, VFIO_IOMMU_UNMAP_DMA), regions);
	free(m);
}

/* ---- PCI Express extended capabilities (0x100+) ---- */

struct kp_ext {
	uint16_t off, id, next;
	uint8_t ver;
};

/* kp_config() plus a PCI Express capability (v2 endpoint, after MSI) and a
 * 4 KiB config region holding the extended chain @e (n entries). */
static void kp_pcie_config(struct mock *m, const struct kp_ext *e, unsigned n)
{
	uint8_t *c = m->config;

	kp_config(m);
	m->config_size = 4096;
	c[0x61] = 0x70;
	c[0x70] = PCI_CAP_ID_EXP;
	c[0x72] = 0x02;
	for (unsigned i = 0; i < n; i++) {
		uint32_t h = e[i].id | (uint32_t)e[i].ver << 16 | (uint32_t)e[i].next << 20;

		memcpy(c + e[i].off, &h, 4);
		/* A recognisable body: the offset of every byte's dword. */
		for (unsigned b = 4; b < 8 && e[i].off + b < 4096; b++)
			c[e[i].off + b] = (uint8_t)(e[i].off + b);
	}
}

/* The chain as the guest walks it (Linux pci_find_next_ext_capability):
 * from 0x100 until a zero header or a next pointer below 0x100. */
static unsigned guest_ext_chain(struct kp_rig *r, struct kp_ext *out, unsigned max)
{
	unsigned n = 0, pos = 0x100;

	while (n < max) {
		uint32_t h = pci_bus_config_read(&r->pbus, r->vp->pci.slot, 0, pos, 4);

		if (!h)
			break;
		out[n++] = (struct kp_ext){ .off = (uint16_t)pos, .id = h & 0xffff,
					    .ver = (uint8_t)(h >> 16 & 0xf), .next = h >> 20 };
		pos = h >> 20;
		if (pos < 0x100)
			break;
	}
	cr_assert_lt(n, max, "the guest's walk does not end");
	return n;
}

static uint32_t kp_cfg_read(struct kp_rig *r, uint32_t off, uint32_t len)
{
	return pci_bus_config_read(&r->pbus, r->vp->pci.slot, 0, off, len);
}

static void expect_chain(struct kp_rig *r, const struct kp_ext *want, unsigned n)
{
	struct kp_ext got[16];

	cr_assert_eq(guest_ext_chain(r, got, 16), n, "chain length");
	for (unsigned i = 0; i < n; i++) {
		cr_expect_eq(got[i].off, want[i].off, "cap %u offset", i);
		cr_expect_eq(got[i].id, want[i].id, "cap %u id", i);
		cr_expect_eq(got[i].ver, want[i].ver, "cap %u version", i);
		cr_expect_eq(got[i].next, i + 1 < n ? want[i + 1].off : 0, "cap %u next", i);
	}
}

/* Shown: AER and LTR, at the device's offsets, linked past the hidden ones
 * (SR-IOV, ATS, PASID); bodies live from the device, hidden ones zero. */
Test(vfio_kernel, extended_caps_passed_with_a_filter)
{
	static const struct kp_ext dev[] = {
		{ 0x100, PCI_EXT_CAP_ID_ERR, 0x148, 2 },  { 0x148, PCI_EXT_CAP_ID_SRIOV, 0x188, 1 },
		{ 0x188, PCI_EXT_CAP_ID_ATS, 0x190, 1 },  { 0x190, PCI_EXT_CAP_ID_LTR, 0x1a0, 1 },
		{ 0x1a0, PCI_EXT_CAP_ID_PASID, 0, 1 },
	};
	static const struct kp_ext want[] = {
		{ 0x100, PCI_EXT_CAP_ID_ERR, 0, 2 }, { 0x190, PCI_EXT_CAP_ID_LTR, 0, 1 },
	};
	struct mock *m = calloc(1, sizeof(*m));
	struct kp_rig r;

	mock_init(m);
	kp_pcie_config(m, dev, 5);
	kp_rig_start(&r, m);
	cr_assert_neq(pci_cap_find(&r.vp->pci, PCI_CAP_ID_EXP), 0, "PCI Express capability shown");
	expect_chain(&r, want, 2);
	/* Bodies: a live read at the same offset of the device's config. */
	unsigned at = m->n;
	cr_expect_eq(kp_cfg_read(&r, 0x104, 4), 0x07060504);
	cr_assert_eq(m->n, at + 1);
	cr_expect_eq(m->calls[at].op, M_PREAD);
	cr_expect_eq(m->calls[at].off, ((uint64_t)VFIO_PCI_CONFIG_REGION_INDEX << 40) + 0x104);
	cr_expect_eq(kp_cfg_read(&r, 0x194, 2), 0x9594, "LTR body");
	/* AER's body ends where SR-IOV begins: past that nothing reaches the device. */
	at = m->n;
	cr_expect_eq(kp_cfg_read(&r, 0x14c, 4), 0, "SR-IOV body hidden");
	cr_expect_eq(kp_cfg_read(&r, 0x148, 4), 0, "SR-IOV header hidden");
	cr_expect_eq(kp_cfg_read(&r, 0x188, 4), 0, "ATS hidden");
	cr_expect_eq(kp_cfg_read(&r, 0x1a4, 4), 0, "PASID hidden");
	cr_expect_eq(m->n, at, "hidden capabilities are never read from the device");
	/* Writes: bodies go to the device, headers and hidden ones nowhere. */
	at = m->n;
	pci_bus_config_write(&r.pbus, r.vp->pci.slot, 0, 0x108, 0x1000, 4);
	cr_assert_eq(m->n, at + 1);
	cr_expect_eq(m->calls[at].op, M_PWRITE);
	cr_expect_eq(m->calls[at].off, ((uint64_t)VFIO_PCI_CONFIG_REGION_INDEX << 40) + 0x108);
	pci_bus_config_write(&r.pbus, r.vp->pci.slot, 0, 0x100, 0xffffffff, 4);
	pci_bus_config_write(&r.pbus, r.vp->pci.slot, 0, 0x150, 0xffffffff, 4);
	cr_expect_eq(m->n, at + 1);
	expect_chain(&r, want, 2);
	kp_rig_stop(&r);
	free(m);
}

/* The first capability hidden: a Null capability at 0x100 points on (the
 * chain must start there). All hidden: 0x100 reads zero, no capabilities. */
Test(vfio_kernel, extended_caps_first_or_all_hidden)
{
	static const struct kp_ext first[] = {
		{ 0x100, PCI_EXT_CAP_ID_SRIOV, 0x140, 1 }, { 0x140, PCI_EXT_CAP_ID_DSN, 0x150, 1 },
		{ 0x150, PCI_EXT_CAP_ID_REBAR, 0x160, 1 }, { 0x160, PCI_EXT_CAP_ID_VNDR, 0, 1 },
	};
	static const struct kp_ext want[] = {
		{ 0x100, 0, 0, 0 }, { 0x140, PCI_EXT_CAP_ID_DSN, 0, 1 }, { 0x160, PCI_EXT_CAP_ID_VNDR, 0, 1 },
	};
	static const struct kp_ext all[] = {
		{ 0x100, PCI_EXT_CAP_ID_SRIOV, 0x200, 1 }, { 0x200, PCI_EXT_CAP_ID_ARI, 0x240, 1 },
		{ 0x240, PCI_EXT_CAP_ID_PRI, 0, 1 },
	};
	struct mock *m = calloc(1, sizeof(*m));
	struct kp_rig r;

	mock_init(m);
	kp_pcie_config(m, first, 4);
	kp_rig_start(&r, m);
	expect_chain(&r, want, 3);
	cr_expect_eq(kp_cfg_read(&r, 0x104, 4), 0, "the hidden SR-IOV body behind the Null header");
	cr_expect_eq(kp_cfg_read(&r, 0x144, 4), 0x47464544, "DSN body from the device");
	kp_rig_stop(&r);

	mock_init(m);
	kp_pcie_config(m, all, 3);
	kp_rig_start(&r, m);
	cr_expect_eq(kp_cfg_read(&r, 0x100, 4), 0, "no capability to show: an empty list");
	cr_expect_eq(kp_cfg_read(&r, 0x200, 4), 0);
	kp_rig_stop(&r);
	free(m);
}

/* Chains that lie: a loop, a pointer back into the header. The walk stops
 * at the bad link; what came before is shown, and the guest's chain ends. */
Test(vfio_kernel, extended_caps_hostile_chains_are_cut)
{
	static const struct kp_ext loop[] = {
		{ 0x100, PCI_EXT_CAP_ID_ERR, 0x180, 2 }, { 0x180, PCI_EXT_CAP_ID_DSN, 0x100, 1 },
	};
	static const struct kp_ext back[] = {
		{ 0x100, PCI_EXT_CAP_ID_ERR, 0x40, 2 },
	};
	static const struct kp_ext loop_want[] = {
		{ 0x100, PCI_EXT_CAP_ID_ERR, 0, 2 }, { 0x180, PCI_EXT_CAP_ID_DSN, 0, 1 },
	};
	struct mock *m = calloc(1, sizeof(*m));
	struct kp_rig r;

	mock_init(m);
	kp_pcie_config(m, loop, 2);
	kp_rig_start(&r, m);
	expect_chain(&r, loop_want, 2);
	kp_rig_stop(&r);

	mock_init(m);
	kp_pcie_config(m, back, 1);
	kp_rig_start(&r, m);
	expect_chain(&r, loop_want, 1);
	kp_rig_stop(&r);
	free(m);
}

/* Only a PCI Express function with a 4 KiB config region has 0x100+: with
 * a 256-byte region or without the PCI Express capability it reads zero and
 * the device's extended space is never read. */
Test(vfio_kernel, extended_caps_only_for_pci_express)
{
	static const struct kp_ext dev[] = { { 0x100, PCI_EXT_CAP_ID_ERR, 0, 2 } };
	struct mock *m = calloc(1, sizeof(*m));
	struct kp_rig r;

	mock_init(m);
	kp_pcie_config(m, dev, 1);
	m->config_size = 256;
	kp_rig_start(&r, m);
	cr_expect(!r.vp->pcie);
	cr_expect_eq(kp_cfg_read(&r, 0x100, 4), 0);
	for (unsigned i = r.base; i < m->n; i++)
		if (m->calls[i].op == M_PREAD)
			cr_expect_lt(m->calls[i].off & 0xffffffffffULL, 256, "read past 256");
	kp_rig_stop(&r);

	mock_init(m);
	kp_pcie_config(m, dev, 1);
	m->config[0x61] = 0;          /* no PCI Express capability in the list */
	kp_rig_start(&r, m);
	cr_expect_eq(pci_cap_find(&r.vp->pci, PCI_CAP_ID_EXP), 0);
	cr_expect_eq(kp_cfg_read(&r, 0x100, 4), 0);
	kp_rig_stop(&r);
	free(m);
}
