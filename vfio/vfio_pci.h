/* The vfio-pci device model: a PCI function owned by a VFIO back end
 * (kernel VFIO or vfio-user, vfio_backend.h) shown to the guest on our PCI
 * bus (devices/pci.h).
 *
 *   config space: IDs, class, subsystem and revision come from the device;
 *     BARs, the command register's decode bits, the capability list and
 *     MSI-X are virtualized by the PCI core; command-register writes
 *     (memory/bus master/INTx disable) are forwarded to the device; of the
 *     device's other capabilities an allow-list (power management, PCI
 *     Express, vendor-specific) is passed through: listed in our chain, body
 *     read from and written to the device live; the rest (MSI, anything
 *     unknown) is filtered out.
 *   BARs: every access is trapped and forwarded (region read/write), except
 *     mmappable areas (sparse mmap capability honoured, the MSI-X table and
 *     PBA pages excluded) which are mmapped and handed to env.memslot so the
 *     guest reaches them without exits (KVM memslots in vfio_pci_vm.c).
 *   MSI-X: the table and PBA are emulated by the PCI core; each vector has an
 *     eventfd given to the back end (SET_IRQS) and watched by the event loop,
 *     which signals the vector through pci_msix_notify() (masking/pending
 *     handled there).
 *   INTx: when the device has one, its trigger eventfd goes to a KVM irqfd on
 *     a fixed IOAPIC GSI (Interrupt Line) with a resample eventfd handed to
 *     the device as its UNMASK trigger: the device masks INTx when it asserts,
 *     the guest's EOI unmasks it (VFIO's automasked level semantics). INTx is
 *     switched off while MSI-X is enabled and back on when it is disabled.
 *   DMA: without a vIOMMU every guest RAM region is mapped at IOVA = GPA;
 *     behind a vIOMMU nothing is mapped until vfio_pci_shadow_map() mirrors a
 *     guest MAP (the vIOMMU must call it before completing the request).
 *   Failure: a back end that dies (vfio-user server gone) turns the device
 *     into a surprise-removed one: config and BAR reads return all ones, writes
 *     are dropped, the VM keeps running. */
#ifndef VFIO_VFIO_PCI_H
#define VFIO_VFIO_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/pci.h"
#include "vfio/vfio_backend.h"
#include "vmm/device.h"

struct guest_mem;
struct event_loop;
struct cJSON;
struct vm;
struct vm_config;
struct device_config;

#define VFIO_PCI_MAX_DMA 256

struct vfio_pci_env {
	struct pci_bus *bus;
	struct guest_mem *mem;
	struct event_loop *loop;     /* NULL: caller polls with vfio_pci_poll() */
	/* Install (size > 0) or remove (size == 0) a direct mapping of host
	 * memory at a guest-physical range; @idx identifies it (0..47). NULL =
	 * trap every BAR access. */
	int (*memslot)(void *opaque, unsigned idx, uint64_t gpa, uint64_t size, void *hva);
	void *opaque;
	/* INTx: connect @trigger (device asserts) and @resample (guest EOI'd the
	 * level interrupt: the device may re-assert) to a GSI, KVM_IRQFD with
	 * KVM_IRQFD_FLAG_RESAMPLE; returns the GSI in *gsi. NULL = no INTx
	 * routing (signals are then only counted by vfio_pci_poll). */
	int (*intx)(void *opaque, int trigger, int resample, bool assign, unsigned *gsi);
	bool iommu;                  /* behind virtio-iommu: map on demand only */
	int slot;                    /* PCI slot, -1 = first free */
};

struct vfio_pci_area {          /* one mmapped piece of a BAR */
	uint64_t off, len;
	void *hva;
	bool installed;
};

struct vfio_pci_bar {
	struct vfio_pci *vp;
	int index;
	struct vfio_region region;
	unsigned nr_areas;
	struct vfio_pci_area areas[VFIO_MAX_SPARSE];
	uint64_t guest_addr;
	bool mapped;
};

#define VFIO_PCI_MAX_PASSCAPS 32

/* A device capability shown to the guest: our copy at @off (list header
 * ours: 2 bytes for a standard capability, 4 for a PCI Express extended one,
 * which keeps the device's offset), body read from / written to the device
 * at @dev_off. */
struct vfio_pci_passcap {
	uint16_t id, off, dev_off, len;
	bool ext;
};

struct vfio_pci {
	struct device dev;
	struct pci_device pci;
	struct vfio_pci_env env;
	struct vfio_backend *be;
	struct vfio_dev_info info;
	char name[32];
	struct vfio_pci_bar bars[PCI_NUM_BARS];
	uint8_t dev_cfg[PCI_CFG_SIZE];/* the device's config space as read (0x100+: PCIe only) */
	bool pcie;                    /* 4 KiB config space with a PCI Express capability */
	unsigned nr_passcaps;
	struct vfio_pci_passcap passcaps[VFIO_PCI_MAX_PASSCAPS];
	/* MSI-X */
	unsigned msix_nr;
	int *msix_fd;                 /* eventfds handed to the back end */
	uint64_t *msix_count;         /* signals seen per vector */
	bool msix_armed;
	/* INTx (level, automasked by the device, unmasked by the resample fd) */
	int intx_fd, intx_resample_fd;
	bool intx_armed, intx_routed;
	unsigned intx_gsi;
	uint64_t intx_count;
	/* DMA mappings given to the back end (the state tree saves these). */
	pthread_mutex_t dma_lock;
	unsigned nr_dma;
	struct vfio_dma dma[VFIO_PCI_MAX_DMA];
	/* Lifecycle. */
	bool attached, sock_in_loop;
	_Atomic bool gone;
	uint64_t bar_traps, bar_errors;
};

/* Takes ownership of @be, also when it fails. */
int vfio_pci_init(struct vfio_pci *vp, const char *name, struct vfio_backend *be,
		  const struct vfio_pci_env *env);
/* Detach from the bus and release everything, the back end included. */
void vfio_pci_uninit(struct vfio_pci *vp);
/* FLR on VM reset: back end reset, interrupts disarmed. */
void vfio_pci_reset(struct vfio_pci *vp);
/* Without an event loop: deliver pending vector signals and serve the
 * back end's own requests (vfio-user DMA). */
void vfio_pci_poll(struct vfio_pci *vp);
bool vfio_pci_gone(const struct vfio_pci *vp);
/* Without KVM (tests): what KVM's resample does on the guest's EOI. */
void vfio_pci_intx_eoi(struct vfio_pci *vp);

/* vIOMMU shadowing: mirror a guest MAP/UNMAP into the back end (container,
 * IOAS or vfio-user DMA_MAP) before the guest's request completes. */
int vfio_pci_shadow_map(struct vfio_pci *vp, uint64_t iova, uint64_t size, uint64_t gpa,
			bool read, bool write);
int vfio_pci_shadow_unmap(struct vfio_pci *vp, uint64_t iova, uint64_t size);

/* Make the device's DMA windows equal to what endpoint @ep may reach in
 * @io: its domain's mappings, all RAM when bypassed, nothing when detached.
 * Called by virtio-iommu (virtio_iommu_add_external) before a request
 * completes. Returns 0 or the first back end error. */
struct iommu;
int vfio_pci_sync_iommu(struct vfio_pci *vp, struct iommu *io, uint32_t ep);

/* vm.info: back end, regions, IRQs, DMA mappings. */
void vfio_pci_info(struct vfio_pci *vp, struct cJSON *obj);

/* ---- VM glue (vfio_pci_vm.c) ---- */
/* Create passthrough device @idx from @dc on vm->pci and add it to the VM. */
int vfio_pci_create(struct vm *vm, const struct device_config *dc, unsigned idx, char *err,
		    size_t errlen);
/* CLI: "--vfio host=0000:03:00.1[,iommu=on][,mode=type1|iommufd][,vf_token=UUID]" and
 * "--vfio-user socket=PATH[,iommu=on]". Appends to cfg->devices. */
int config_parse_vfio(struct vm_config *cfg, const char *spec, bool user, char *err,
		      size_t errlen);

#endif
