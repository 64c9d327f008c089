/* vfio-pci in a struct vm: back end selection from the device config, BAR
 * areas as KVM memslots, the device list entry (reset = FLR, info), and the
 * CLI syntax of --vfio / --vfio-user. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "devices/virtio_iommu_vm.h"
#include "vfio/vfio_kernel.h"
#include "vfio/vfio_pci.h"
#include "vfio/vfio_user.h"
#include "vmm/config.h"
#include "vmm/log.h"
#include "vmm/vm.h"

/* KVM slots 0..(MEM_MAX_REGIONS-1) hold guest RAM; BAR areas of passthrough
 * device i use VFIO_SLOT_BASE + i * 48 + area. */
#define VFIO_SLOT_BASE 32
#define VFIO_SLOTS_PER_DEV (PCI_NUM_BARS * VFIO_MAX_SPARSE)

struct vfio_pci_vm {
	struct vfio_pci vp;
	struct vm *vm;
	unsigned idx;
	struct viommu_vm *viommu;    /* iommu=on: the IOMMU we sit behind */
	uint16_t bdf;                /* our endpoint ID there */
};

/* virtio-iommu changed its translation state: mirror our domain. */
static void vfio_vm_iommu_sync(void *opaque)
{
	struct vfio_pci_vm *p = opaque;

	vfio_pci_sync_iommu(&p->vp, &p->viommu->viommu.io, p->bdf);
}

#define to_pvm(d) ((struct vfio_pci_vm *)((char *)(d) - offsetof(struct vfio_pci_vm, vp.dev)))

static int vfio_vm_memslot(void *opaque, unsigned idx, uint64_t gpa, uint64_t size, void *hva)
{
	struct vfio_pci_vm *p = opaque;
	struct kvm_userspace_memory_region r = {
		.slot = VFIO_SLOT_BASE + p->idx * VFIO_SLOTS_PER_DEV + idx,
		.guest_phys_addr = gpa, .memory_size = size, .userspace_addr = (uintptr_t)hva,
	};

	if (idx >= VFIO_SLOTS_PER_DEV)
		return -EINVAL;
	if (ioctl(p->vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r))
		return -errno;
	return 0;
}

/* INTx of passthrough device i on IOAPIC GSI 16 + i (pins 16-23 carry no
 * ISA interrupt): level, with KVM's resample eventfd. */
#define VFIO_INTX_GSI_BASE 16

static int vfio_vm_intx(void *opaque, int trigger, int resample, bool assign, unsigned *gsi)
{
	struct vfio_pci_vm *p = opaque;
	struct kvm_irqfd irqfd = {
		.fd = (uint32_t)trigger, .gsi = VFIO_INTX_GSI_BASE + p->idx,
		.flags = assign ? KVM_IRQFD_FLAG_RESAMPLE : KVM_IRQFD_FLAG_DEASSIGN,
		.resamplefd = (uint32_t)resample,
	};

	if (p->idx >= 8)
		return -ENOSPC;
	if (ioctl(p->vm->vm_fd, KVM_IRQFD, &irqfd))
		return -errno;
	*gsi = irqfd.gsi;
	return 0;
}

static void vfio_dev_reset(struct device *dev)
{
	vfio_pci_reset(&to_pvm(dev)->vp);
}

static void vfio_dev_destroy(struct device *dev)
{
	struct vfio_pci_vm *p = to_pvm(dev);

	vfio_pci_uninit(&p->vp);
	free(p);
}

static void vfio_dev_info(struct device *dev, struct cJSON *obj)
{
	vfio_pci_info(&to_pvm(dev)->vp, obj);
}

static const struct device_ops vfio_pci_device_ops = {
	.type = "vfio-pci",
	.reset = vfio_dev_reset,
	.destroy = vfio_dev_destroy,
	.info = vfio_dev_info,
};

/* dc->path for kernel VFIO: "BDF[,mode=type1|iommufd][,vf_token=UUID]". */
static int vfio_open_kernel(const char *spec, const char *name, struct vfio_backend **be,
			    char *err, size_t errlen)
{
	char *copy = strdup(spec), *save = NULL, *tok;
	struct vfio_kernel_opts o = { .mode = VFIO_MODE_TYPE1 };
	int ret = 0;

	if (!copy)
		return -ENOMEM;
	o.bdf = strtok_r(copy, ",", &save);
	while (!ret && (tok = strtok_r(NULL, ",", &save))) {
		if (!strcmp(tok, "mode=type1"))
			o.mode = VFIO_MODE_TYPE1;
		else if (!strcmp(tok, "mode=iommufd"))
			o.mode = VFIO_MODE_IOMMUFD;
		else if (!strncmp(tok, "vf_token=", 9))
			o.vf_token = tok + 9;
		else
			ret = -EINVAL;
	}
	if (!ret)
		ret = vfio_kernel_open(&o, be);
	if (ret)
		snprintf(err, errlen, "%s: cannot open VFIO device '%s': %s", name, spec,
			 strerror_safe(-ret));
	free(copy);
	return ret;
}

int vfio_pci_create(struct vm *vm, const struct device_config *dc, unsigned idx, char *err,
		    size_t errlen)
{
	struct vfio_backend *be = NULL;
	struct vfio_pci_vm *p;
	char name[32];
	int ret;

	snprintf(name, sizeof(name), "vfio%u", idx);
	if (dc->kind == PASSTHROUGH_VFIO_USER) {
		struct vfio_user_opts o = { .socket_path = dc->path, .fd = -1, .mem = &vm->mem,
					    .name = name };
		ret = vfio_user_open(&o, &be);
		if (ret)
			snprintf(err, errlen, "%s: cannot use vfio-user server '%s': %s", name,
				 dc->path, strerror_safe(-ret));
	} else {
		ret = vfio_open_kernel(dc->path, name, &be, err, errlen);
	}
	if (ret)
		return ret;
	p = calloc(1, sizeof(*p));
	if (!p) {
		vfio_be_destroy(be);
		return -ENOMEM;
	}
	p->vm = vm;
	p->idx = idx;
	if (dc->iommu) {
		p->viommu = viommu_vm_find(vm);
		if (!p->viommu) {
			snprintf(err, errlen, "%s: iommu=on needs the virtio-iommu device (--iommu)",
				 name);
			vfio_be_destroy(be);
			free(p);
			return -EINVAL;
		}
	}
	struct vfio_pci_env env = { .bus = vm->pci, .mem = &vm->mem, .loop = &vm->loop,
				    .memslot = vfio_vm_memslot, .intx = vfio_vm_intx, .opaque = p,
				    .iommu = dc->iommu,
				    .slot = -1 };
	ret = vfio_pci_init(&p->vp, name, be, &env);
	if (ret) {
		snprintf(err, errlen, "%s: cannot set up the passthrough device: %s", name,
			 strerror_safe(-ret));
		free(p);
		return ret;
	}
	vm_add_device(vm, &p->vp.dev, &vfio_pci_device_ops, name);
	if (p->viommu) {
		/* Endpoint ID = requester ID (bus 0): the VIOT names it, the guest
		 * attaches it, every MAP/UNMAP is mirrored by vfio_vm_iommu_sync. */
		p->bdf = viommu_vm_bdf(&p->vp.pci);
		ret = virtio_iommu_add_external(&p->viommu->viommu, p->bdf, vfio_vm_iommu_sync, p);
		if (ret) {
			snprintf(err, errlen, "%s: cannot put it behind the IOMMU: %s", name,
				 strerror_safe(-ret));
			return ret;   /* the device is on the VM's list: destroyed with it */
		}
	}
	log_info(name, "%s '%s' at PCI 00:%02x.0%s", be->ops->kind, dc->path, p->vp.pci.slot,
		 dc->iommu ? ", behind the vIOMMU" : "");
	return 0;
}

/* ---- CLI ---- */

int config_parse_vfio(struct vm_config *cfg, const char *spec, bool user, char *err,
		      size_t errlen)
{
	const char *key = user ? "socket=" : "host=";
	const char *opt = user ? "--vfio-user" : "--vfio";
	char *copy, *save = NULL, *tok, extra[160] = "";
	const char *target = NULL;
	bool iommu = false;
	int ret = 0;

	if (cfg->nr_devices >= CONFIG_MAX_DEVICES) {
		snprintf(err, errlen, "%s: at most %d passthrough devices", opt, CONFIG_MAX_DEVICES);
		return -EINVAL;
	}
	copy = strdup(spec ? spec : "");
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && !ret; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, key, strlen(key)) && tok[strlen(key)]) {
			target = tok + strlen(key);
		} else if (!strcmp(tok, "iommu=on") || !strcmp(tok, "iommu=off")) {
			iommu = !strcmp(tok, "iommu=on");
		} else if (!user && (!strcmp(tok, "mode=type1") || !strcmp(tok, "mode=iommufd") ||
				     !strncmp(tok, "vf_token=", 9))) {
			if (!strncmp(tok, "vf_token=", 9)) {
				uint8_t u[16];
				if (vfio_uuid_parse(tok + 9, u)) {
					snprintf(err, errlen, "%s: vf_token must be a UUID", opt);
					ret = -EINVAL;
					break;
				}
			}
			size_t l = strlen(extra);
			snprintf(extra + l, sizeof(extra) - l, ",%s", tok);
		} else {
			snprintf(err, errlen, "%s: unknown option '%s'", opt, tok);
			ret = -EINVAL;
		}
	}
	if (!ret && !target) {
		snprintf(err, errlen, "%s: %sPATH is required", opt, key);
		ret = -EINVAL;
	}
	if (!ret && !user && !vfio_bdf_valid(target)) {
		snprintf(err, errlen, "%s: host=%s is not a PCI address (DDDD:BB:DD.F)", opt, target);
		ret = -EINVAL;
	}
	if (!ret) {
		struct device_config *dc = &cfg->devices[cfg->nr_devices];
		size_t len = strlen(target) + strlen(extra) + 1;

		dc->path = malloc(len);
		if (!dc->path) {
			ret = -ENOMEM;
		} else {
			snprintf(dc->path, len, "%s%s", target, extra);
			dc->kind = user ? PASSTHROUGH_VFIO_USER : PASSTHROUGH_VFIO;
			dc->iommu = iommu;
			cfg->nr_devices++;
			if (iommu)
				cfg->iommu = true;   /* the device sits behind virtio-iommu */
		}
	}
	free(copy);
	return ret;
}
