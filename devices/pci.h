/* PCI: one root bus (bus 0) behind a host bridge, reachable through ECAM
 * (MMCONFIG, PCIe 5.0 §7.2.2, described by ACPI MCFG) and through the legacy
 * 0xCF8/0xCFC configuration mechanism (PCI Local Bus 3.0 §3.2.2.3.2).
 *
 * The device API (used by virtio-pci, vfio-pci and anything else):
 *
 *   struct pci_device *d = ...embedded in your device...;
 *   pci_device_init(d, "net0", &my_pci_ops, opaque);
 *   pci_config_set_ids(d, vendor, device, class_code, revision);
 *   pci_bar_define(d, 4, 0x8000, PCI_BAR_MMIO64, &my_bar_ops, opaque);  // sized, not placed
 *   pci_cap_add(d, PCI_CAP_ID_VNDR, len, &off);   // appends to the capability list
 *   pci_msix_init(d, nvec, 4, table_off, pba_off); // table/PBA emulated inside BAR 4
 *   pci_bus_add_device(bus, d, slot);             // places BARs, visible to the guest
 *
 * Config space: 4 KiB bytes + a per-byte write mask + a write-1-to-clear mask.
 * The core handles the command register, BAR sizing and placement (guest
 * writes all-ones, reads the size mask back; PCI 3.0 §6.2.5.1), capability
 * lists and the MSI-X capability; device hooks see every access afterwards
 * (config_read may override the value, e.g. for vfio passthrough).
 *
 * BARs: the bus pre-assigns addresses in the windows of vmm/layout.h like
 * firmware would. The bus registers each whole window (32-bit MMIO, I/O) once
 * on the trap bus and dispatches to the BAR that decodes the address, under
 * its own rwlock. (Registering BARs one by one on the trap bus would deadlock:
 * an ECAM write that moves a BAR runs under the MMIO bus read lock.) A BAR is
 * decoded while the command register enables its space and it lies inside a
 * window. bar_moved() tells the device where a BAR now lives (e.g. to
 * re-register ioeventfds). Accesses that fall inside the MSI-X table or PBA
 * are served by the core and never reach the device ops.
 *
 * MSI-X (PCI 3.0 §6.8.2): vector table with per-vector mask, function mask,
 * pending bits. pci_msix_notify() delivers through an irqfd (eventfd -> KVM
 * GSI routed to the vector's address/data) or sets the pending bit while
 * masked; unmasking delivers pending vectors. Routes are created lazily on the
 * first unmasked delivery and updated when the guest rewrites an entry.
 *
 * Interrupt and ioeventfd plumbing is reached through struct pci_irq_ops so
 * the core is testable without KVM; devices/pci_vm.c binds it to struct vm.
 *
 * Locking: config accesses and BAR placement are serialized by the bus lock;
 * MSI-X state by a per-device lock, so pci_msix_notify() can be called from
 * any thread (event loop, vCPU). */
#ifndef DEVICES_PCI_H
#define DEVICES_PCI_H

#include <linux/pci_regs.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"

#define PCI_CFG_SIZE        4096
#define PCI_MAX_SLOTS       32
#define PCI_NUM_BARS        6
#define PCI_MSIX_MAX_VECTORS 2048
#define PCI_ECAM_BUS_SIZE   (1u << 20)   /* 32 devices * 8 functions * 4 KiB */

struct pci_device;
struct pci_bus;

enum pci_bar_type { PCI_BAR_NONE, PCI_BAR_MMIO32, PCI_BAR_MMIO64, PCI_BAR_IO };

/* Interrupt routing and ioeventfd plumbing (bound to KVM by pci_vm.c). */
struct pci_irq_ops {
	int (*msi_route_add)(void *opaque, uint64_t addr, uint32_t data, unsigned *gsi);
	int (*msi_route_update)(void *opaque, unsigned gsi, uint64_t addr, uint32_t data);
	int (*irqfd)(void *opaque, int fd, unsigned gsi, bool assign);
	int (*ioeventfd)(void *opaque, int fd, uint64_t addr, uint32_t len, bool pio, bool assign);
};

struct pci_device_ops {
	/* Called after the core has handled a config read; may replace *val
	 * (1, 2 or 4 bytes at @off). Optional. */
	void (*config_read)(struct pci_device *d, uint32_t off, uint32_t *val, uint32_t len);
	/* Called after the core has applied a config write. Optional. */
	void (*config_write)(struct pci_device *d, uint32_t off, uint32_t val, uint32_t len);
	/* BAR @bar is now decoded at @addr (mapped) or not decoded at all. Optional. */
	void (*bar_moved)(struct pci_device *d, int bar, uint64_t addr, bool mapped);
	/* MSI-X enable / function mask changed. Optional. */
	void (*msix_changed)(struct pci_device *d, bool enabled, bool masked);
};

struct pci_bar {
	enum pci_bar_type type;
	bool prefetchable;
	uint64_t size;                 /* power of two, 0 = unused */
	uint64_t mapped_addr;          /* where it is registered on the trap bus */
	bool mapped;
	const struct bus_ops *ops;     /* device handler, offsets relative to the BAR */
	void *opaque;
};

/* One MSI-X vector (PCI 3.0 §6.8.2.8): the guest-visible entry plus routing. */
struct pci_msix_vector {
	uint32_t addr_lo, addr_hi, data, ctrl;   /* the table entry, as the guest wrote it */
	bool pending;
	bool routed;                              /* gsi/eventfd valid */
	unsigned gsi;
	int fd;                                   /* irqfd eventfd, -1 until routed */
};

struct pci_msix {
	unsigned nr;                  /* 0 = no MSI-X */
	uint8_t cap_off;
	int bar;
	uint32_t table_off, pba_off;  /* inside the BAR */
	bool enabled, masked;         /* message control bits 15 and 14 */
	struct pci_msix_vector *vec;
	uint64_t delivered;           /* counters */
	uint64_t pended;
};

struct pci_device {
	struct pci_bus *bus;
	char name[32];
	uint8_t slot;                 /* device number on bus 0; function 0 only */
	bool attached;
	const struct pci_device_ops *ops;
	void *opaque;
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];  /* bits the guest may change */
	uint8_t w1cmask[PCI_CFG_SIZE];/* bits the guest clears by writing 1 */
	uint16_t cap_tail;            /* offset of the last capability, 0 = none */
	uint16_t cap_free;            /* next free offset for capabilities */
	/* IOAPIC GSI the VMM wired to the Interrupt Pin, -1 = none: the DSDT's
	 * _PRT tells the guest (Interrupt Line is only a guest-writable hint). */
	int intx_gsi;
	struct pci_bar bars[PCI_NUM_BARS];
	pthread_mutex_t msix_lock;
	struct pci_msix msix;
};

struct pci_bus {
	struct bus *mmio, *pio;       /* trap buses for ECAM, 0xCF8/0xCFC and BARs */
	const struct pci_irq_ops *irq;
	void *irq_opaque;
	uint64_t ecam_base;
	pthread_mutex_t lock;         /* config accesses, BAR moves */
	uint32_t cf8;                 /* latched CONFIG_ADDRESS */
	struct pci_device *slots[PCI_MAX_SLOTS];
	struct pci_device host_bridge;
	/* Allocation windows (bump allocators, natural alignment). */
	uint64_t mmio32_start, mmio32_next, mmio32_end;
	uint64_t io_start, io_next, io_end;
	pthread_rwlock_t bar_lock;    /* BAR decode state vs. BAR accesses */
};

#define PCI_IO_WINDOW_START 0xc000
#define PCI_IO_WINDOW_END   0x10000

/* Bus lifecycle. pci_bus_init registers ECAM (bus 0 only) at @ecam_base on
 * @mmio, the 0xCF8/0xCFC ports and the I/O window on @pio, the 32-bit MMIO
 * window (layout.h) on @mmio, and adds the host bridge at slot 0. */
int pci_bus_init(struct pci_bus *bus, struct bus *mmio, struct bus *pio, uint64_t ecam_base,
		 const struct pci_irq_ops *irq, void *irq_opaque);
void pci_bus_destroy(struct pci_bus *bus);
/* Attach @d at @slot (-1 = first free slot), assign BAR addresses. */
int pci_bus_add_device(struct pci_bus *bus, struct pci_device *d, int slot);
void pci_bus_remove_device(struct pci_bus *bus, struct pci_device *d);

/* Config space access by (slot, function, offset), as ECAM and CF8/CFC do. */
uint32_t pci_bus_config_read(struct pci_bus *bus, unsigned slot, unsigned fn, uint32_t off,
			     uint32_t len);
void pci_bus_config_write(struct pci_bus *bus, unsigned slot, unsigned fn, uint32_t off,
			  uint32_t val, uint32_t len);

/* Device construction. */
void pci_device_init(struct pci_device *d, const char *name, const struct pci_device_ops *ops,
		     void *opaque);
void pci_device_destroy(struct pci_device *d);   /* frees MSI-X state, closes irqfds */
/* VM reset (PCI 3.0 §6.2.2, §6.8.2.3): command register cleared (BARs stop
 * decoding; addresses are kept, as firmware assigned them), MSI-X disabled,
 * every vector masked, pending bits cleared. Routes stay allocated. */
void pci_device_reset(struct pci_device *d);
void pci_config_set_ids(struct pci_device *d, uint16_t vendor, uint16_t device,
			uint32_t class_code, uint8_t revision);
void pci_config_set_subsystem(struct pci_device *d, uint16_t svendor, uint16_t sid);
/* Declare BAR @bar; for PCI_BAR_MMIO64 it also uses @bar + 1. Size rounded up
 * to a power of two (min 16 bytes MMIO, 4 bytes I/O). */
int pci_bar_define(struct pci_device *d, int bar, uint64_t size, enum pci_bar_type type,
		   const struct bus_ops *ops, void *opaque);
/* Current guest-programmed BAR address (not necessarily decoded). */
uint64_t pci_bar_address(const struct pci_device *d, int bar);
/* Append a capability of @len bytes (>= 2, header included) with id @id; its
 * offset is returned in @off. -ENOSPC if config space is full. */
int pci_cap_add(struct pci_device *d, uint8_t id, uint8_t len, uint16_t *off);
/* Find the first capability with @id starting from the list head; 0 if none. */
uint16_t pci_cap_find(const struct pci_device *d, uint8_t id);

/* Config helpers (little endian, no masks applied). */
static inline void pci_cfg_set8(struct pci_device *d, uint32_t off, uint8_t v) { d->cfg[off] = v; }
void pci_cfg_set16(struct pci_device *d, uint32_t off, uint16_t v);
void pci_cfg_set32(struct pci_device *d, uint32_t off, uint32_t v);
uint16_t pci_cfg_get16(const struct pci_device *d, uint32_t off);
uint32_t pci_cfg_get32(const struct pci_device *d, uint32_t off);
/* Make @len bytes at @off guest-writable with @mask (repeated per byte value). */
void pci_cfg_set_wmask(struct pci_device *d, uint32_t off, uint32_t len, uint8_t mask);

/* MSI-X. */
int pci_msix_init(struct pci_device *d, unsigned nr_vectors, int bar, uint32_t table_off,
		  uint32_t pba_off);
/* Signal @vector: deliver now, or set its pending bit if masked/disabled.
 * Returns 0 if delivered, 1 if pended, -errno on a routing failure. */
int pci_msix_notify(struct pci_device *d, unsigned vector);
bool pci_msix_enabled(struct pci_device *d);
bool pci_msix_vector_masked(struct pci_device *d, unsigned vector);
/* Table/PBA emulation; @off relative to the BAR start. Return true if the
 * access fell inside the table or PBA and was handled. Used by the BAR
 * dispatcher; exposed for vfio-pci, which owns its BARs' regions. */
bool pci_msix_mmio_read(struct pci_device *d, int bar, uint64_t off, void *data, uint32_t len);
bool pci_msix_mmio_write(struct pci_device *d, int bar, uint64_t off, const void *data,
			 uint32_t len);

/* Internal (pci.c -> pci_msix.c): message control was written. Bus lock held. */
void pci_msix_config_written(struct pci_device *d);

#endif
