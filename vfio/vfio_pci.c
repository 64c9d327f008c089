/* The vfio-pci device model (see vfio_pci.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "devices/iommu_map.h"
#include "vfio/vfio_pci.h"
#include "vfio/vfio_uapi.h"
#include "vfio/vfio_user.h"
#include "vmm/eventloop.h"
#include "vmm/log.h"
#include "vmm/mem.h"

#define VFIO_PAGE 4096ULL
#define VFIO_MAX_CAP_WALK 48

static void vfio_pci_mark_gone(struct vfio_pci *vp, int err)
{
	if (err != -EPIPE && err != -ENODEV && err != -ECONNRESET)
		return;
	if (!vp->gone)
		log_err(vp->name, "device is gone (%s); it now reads as removed",
			strerror_safe(-err));
	vp->gone = true;
}

/* ---- BAR access (trapped part) ---- */

static void vfio_bar_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct vfio_pci_bar *b = opaque;
	struct vfio_pci *vp = b->vp;
	int ret = -ENODEV;

	vp->bar_traps++;
	if (!vp->gone)
		ret = vfio_be_region_read(vp->be, (uint32_t)b->index, off, data, len);
	if (ret) {
		memset(data, 0xff, len);   /* what a removed device reads as */
		vp->bar_errors++;
		vfio_pci_mark_gone(vp, ret);
	}
}

static void vfio_bar_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct vfio_pci_bar *b = opaque;
	struct vfio_pci *vp = b->vp;
	int ret;

	vp->bar_traps++;
	if (vp->gone)
		return;
	ret = vfio_be_region_write(vp->be, (uint32_t)b->index, off, data, len);
	if (ret) {
		vp->bar_errors++;
		vfio_pci_mark_gone(vp, ret);
	}
}

static const struct bus_ops vfio_bar_ops = { .read = vfio_bar_read, .write = vfio_bar_write };

/* ---- direct mappings of BAR areas ---- */

static unsigned vfio_area_idx(int bar, unsigned area)
{
	return (unsigned)bar * VFIO_MAX_SPARSE + area;
}

static void vfio_bar_unmap_guest(struct vfio_pci *vp, struct vfio_pci_bar *b)
{
	for (unsigned a = 0; a < b->nr_areas; a++) {
		struct vfio_pci_area *ar = &b->areas[a];

		if (ar->installed && vp->env.memslot)
			vp->env.memslot(vp->env.opaque, vfio_area_idx(b->index, a),
					b->guest_addr + ar->off, 0, ar->hva);
		ar->installed = false;
	}
}

static void vfio_bar_map_guest(struct vfio_pci *vp, struct vfio_pci_bar *b, uint64_t addr)
{
	b->guest_addr = addr;
	for (unsigned a = 0; a < b->nr_areas && vp->env.memslot; a++) {
		struct vfio_pci_area *ar = &b->areas[a];
		int ret = vp->env.memslot(vp->env.opaque, vfio_area_idx(b->index, a), addr + ar->off,
					  ar->len, ar->hva);

		if (ret)
			log_warn(vp->name, "BAR%d area +0x%llx stays trapped: %s", b->index,
				 (unsigned long long)ar->off, strerror_safe(-ret));
		ar->installed = !ret;
	}
}

static void vfio_pci_bar_moved(struct pci_device *d, int bar, uint64_t addr, bool mapped)
{
	struct vfio_pci *vp = d->opaque;
	struct vfio_pci_bar *b = &vp->bars[bar];

	vfio_bar_unmap_guest(vp, b);
	b->mapped = mapped;
	if (mapped && !vp->gone)
		vfio_bar_map_guest(vp, b, addr);
}

/* Does [off, off+len) touch the pages holding the MSI-X table or PBA? Those
 * must stay trapped so the core can emulate them. */
static bool vfio_area_hits_msix(const struct vfio_pci *vp, int bar, uint64_t off, uint64_t len)
{
	const struct pci_msix *m = &vp->pci.msix;

	if (!m->nr || m->bar != bar)
		return false;
	uint64_t t0 = m->table_off & ~(VFIO_PAGE - 1);
	uint64_t t1 = (m->table_off + m->nr * 16ULL + VFIO_PAGE - 1) & ~(VFIO_PAGE - 1);
	uint64_t p0 = m->pba_off & ~(VFIO_PAGE - 1);
	uint64_t p1 = (m->pba_off + (m->nr + 63) / 64 * 8ULL + VFIO_PAGE - 1) & ~(VFIO_PAGE - 1);

	return (off < t1 && t0 < off + len) || (off < p1 && p0 < off + len);
}

static void vfio_bar_mmap_areas(struct vfio_pci *vp, struct vfio_pci_bar *b)
{
	const struct vfio_region *r = &b->region;

	if (!vp->env.memslot || !(r->flags & VFIO_REGION_INFO_FLAG_MMAP))
		return;
	for (unsigned i = 0; i < r->nr_sparse; i++) {
		const struct vfio_sparse_area *s = &r->sparse[i];
		void *p;

		if ((s->offset | s->size) & (VFIO_PAGE - 1) ||
		    vfio_area_hits_msix(vp, b->index, s->offset, s->size))
			continue;   /* not page-granular, or MSI-X: stays trapped */
		if (vp->be->ops->region_mmap(vp->be, r, s->offset, s->size, &p))
			continue;
		b->areas[b->nr_areas++] = (struct vfio_pci_area){ .off = s->offset, .len = s->size,
								  .hva = p };
	}
}

/* ---- config space ---- */

/* The passed-through capability whose body (after its list header) holds
 * [off, off+len) entirely, or NULL. */
static const struct vfio_pci_passcap *vfio_passcap_at(const struct vfio_pci *vp, uint32_t off,
						      uint32_t len)
{
	for (unsigned i = 0; i < vp->nr_passcaps; i++) {
		const struct vfio_pci_passcap *c = &vp->passcaps[i];
		uint32_t hdr = c->ext ? 4 : 2;

		if (off >= c->off + hdr && off + len <= (uint32_t)c->off + c->len)
			return c;
	}
	return NULL;
}

static void vfio_pci_config_read(struct pci_device *d, uint32_t off, uint32_t *val, uint32_t len)
{
	struct vfio_pci *vp = d->opaque;
	const struct vfio_pci_passcap *c;
	uint32_t v = 0;

	if (vp->gone) {
		*val = len == 4 ? 0xffffffffu : (1u << (8 * len)) - 1;
		return;
	}
	c = vfio_passcap_at(vp, off, len);
	if (c && !vfio_be_region_read(vp->be, VFIO_PCI_CONFIG_REGION_INDEX,
				      c->dev_off + (off - c->off), &v, len))
		*val = v;
}

static void vfio_pci_config_write(struct pci_device *d, uint32_t off, uint32_t val, uint32_t len)
{
	struct vfio_pci *vp = d->opaque;
	const struct vfio_pci_passcap *c;
	uint16_t cmd;
	int ret;

	if (vp->gone)
		return;
	c = vfio_passcap_at(vp, off, len);
	if (c) {
		ret = vfio_be_region_write(vp->be, VFIO_PCI_CONFIG_REGION_INDEX,
					   c->dev_off + (off - c->off), &val, len);
		if (ret)
			vfio_pci_mark_gone(vp, ret);
		return;
	}
	if (off > PCI_COMMAND + 1 || off + len <= PCI_COMMAND)
		return;
	/* Forward the decode/bus-master/INTx-disable bits the guest set. */
	cmd = pci_cfg_get16(d, PCI_COMMAND) &
	      (PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
	ret = vfio_be_region_write(vp->be, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, &cmd, 2);
	if (ret)
		vfio_pci_mark_gone(vp, ret);
}

/* ---- MSI-X ---- */

static void vfio_msix_signal(struct vfio_pci *vp, unsigned v)
{
	uint64_t n;

	if (read(vp->msix_fd[v], &n, sizeof(n)) == sizeof(n)) {
		vp->msix_count[v] += n;
		pci_msix_notify(&vp->pci, v);
	}
}

static void vfio_msix_ready(void *opaque, uint32_t events)
{
	struct vfio_pci *vp = opaque;

	for (unsigned v = 0; v < vp->msix_nr; v++)
		vfio_msix_signal(vp, v);
}

/* ---- INTx ---- */

static int vfio_intx_arm(struct vfio_pci *vp, bool on)
{
	int ret;

	if (on == vp->intx_armed || vp->intx_fd < 0 || vp->gone)
		return 0;
	if (on) {
		ret = vp->be->ops->set_irqs(vp->be, VFIO_PCI_INTX_IRQ_INDEX, 0, 1,
					    VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
					    &vp->intx_fd);
		if (!ret)
			ret = vp->be->ops->set_irqs(vp->be, VFIO_PCI_INTX_IRQ_INDEX, 0, 1,
						    VFIO_IRQ_SET_DATA_EVENTFD |
							    VFIO_IRQ_SET_ACTION_UNMASK,
						    &vp->intx_resample_fd);
	} else {
		ret = vp->be->ops->set_irqs(vp->be, VFIO_PCI_INTX_IRQ_INDEX, 0, 0,
					    VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, NULL);
	}
	if (ret) {
		log_err(vp->name, "%s INTx failed: %s", on ? "enabling" : "disabling",
			strerror_safe(-ret));
		vfio_pci_mark_gone(vp, ret);
		return ret;
	}
	vp->intx_armed = on;
	return 0;
}

static int vfio_pci_setup_intx(struct vfio_pci *vp)
{
	struct vfio_irq irq;
	int ret;

	vp->intx_fd = vp->intx_resample_fd = -1;
	vp->pci.cfg[PCI_INTERRUPT_PIN] = 0;
	if (vp->info.num_irqs <= VFIO_PCI_INTX_IRQ_INDEX ||
	    vp->be->ops->irq_info(vp->be, VFIO_PCI_INTX_IRQ_INDEX, &irq) || irq.count != 1 ||
	    !(irq.flags & VFIO_IRQ_INFO_EVENTFD) || !vp->dev_cfg[PCI_INTERRUPT_PIN])
		return 0;   /* no INTx: MSI-X only */
	vp->intx_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vp->intx_resample_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vp->intx_fd < 0 || vp->intx_resample_fd < 0)
		return -errno;
	if (vp->env.intx) {
		ret = vp->env.intx(vp->env.opaque, vp->intx_fd, vp->intx_resample_fd, true,
				   &vp->intx_gsi);
		if (ret) {
			log_err(vp->name, "INTx routing failed: %s", strerror_safe(-ret));
			return ret;
		}
		vp->intx_routed = true;
	}
	/* INTA#, on the GSI the VMM chose (what firmware writes in Interrupt Line). */
	vp->pci.cfg[PCI_INTERRUPT_PIN] = 1;
	vp->pci.cfg[PCI_INTERRUPT_LINE] = vp->intx_routed ? (uint8_t)vp->intx_gsi : 0xff;
	vp->pci.intx_gsi = vp->intx_routed ? (int)vp->intx_gsi : -1;
	return vfio_intx_arm(vp, true);
}

void vfio_pci_intx_eoi(struct vfio_pci *vp)
{
	uint64_t one = 1;

	if (vp->intx_resample_fd >= 0 && write(vp->intx_resample_fd, &one, sizeof(one)) < 0)
		log_warn(vp->name, "INTx resample: %s", strerror_safe(errno));
}

static int vfio_msix_arm(struct vfio_pci *vp, bool on)
{
	int ret;

	if (on == vp->msix_armed || !vp->msix_nr || vp->gone)
		return 0;
	/* VFIO allows one interrupt type at a time: INTx off while MSI-X is on. */
	if (on && vfio_intx_arm(vp, false))
		return -EIO;
	if (on)
		ret = vp->be->ops->set_irqs(vp->be, VFIO_PCI_MSIX_IRQ_INDEX, 0, vp->msix_nr,
					    VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
					    vp->msix_fd);
	else
		ret = vp->be->ops->set_irqs(vp->be, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0,
					    VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, NULL);
	if (ret) {
		log_err(vp->name, "%s MSI-X failed: %s", on ? "enabling" : "disabling",
			strerror_safe(-ret));
		vfio_pci_mark_gone(vp, ret);
		return ret;
	}
	vp->msix_armed = on;
	if (!on)
		vfio_intx_arm(vp, true);
	return 0;
}

static void vfio_pci_msix_changed(struct pci_device *d, bool enabled, bool masked)
{
	vfio_msix_arm(d->opaque, enabled);
}

static const struct pci_device_ops vfio_pci_dev_ops = {
	.config_read = vfio_pci_config_read,
	.config_write = vfio_pci_config_write,
	.bar_moved = vfio_pci_bar_moved,
	.msix_changed = vfio_pci_msix_changed,
};

/* Find capability @id in the device's own config header, bounds-checked
 * (the list comes from the device: it may loop or point outside). */
static uint8_t vfio_find_cap(const uint8_t *cfg, uint8_t id)
{
	uint16_t status = (uint16_t)(cfg[PCI_STATUS] | cfg[PCI_STATUS + 1] << 8);
	uint8_t pos;

	if (!(status & PCI_STATUS_CAP_LIST))
		return 0;
	pos = cfg[PCI_CAPABILITY_LIST] & ~3;
	for (int n = 0; n < VFIO_MAX_CAP_WALK && pos >= 0x40 && pos <= 256 - 4; n++) {
		if (cfg[pos] == id)
			return pos;
		pos = cfg[pos + 1] & ~3;
	}
	return 0;
}

/* Length of an allow-listed capability at @pos of the device's header, 0 if
 * it is filtered out. */
static unsigned vfio_passcap_len(const uint8_t *cfg, uint8_t pos)
{
	switch (cfg[pos]) {
	case PCI_CAP_ID_PM:
		return PCI_PM_SIZEOF;
	case PCI_CAP_ID_VNDR:
		return cfg[pos + 2] >= 3 ? cfg[pos + 2] : 0;
	case PCI_CAP_ID_EXP:
		return (cfg[pos + 2] & PCI_EXP_FLAGS_VERS) >= 2 ? PCI_CAP_EXP_ENDPOINT_SIZEOF_V2
								 : PCI_CAP_EXP_ENDPOINT_SIZEOF_V1;
	default:
		return 0;   /* MSI (we offer MSI-X only) and anything we do not know */
	}
}

static int vfio_pci_setup_passcaps(struct vfio_pci *vp)
{
	const uint8_t *cfg = vp->dev_cfg;
	uint8_t pos;

	if (!((cfg[PCI_STATUS] | cfg[PCI_STATUS + 1] << 8) & PCI_STATUS_CAP_LIST))
		return 0;
	pos = cfg[PCI_CAPABILITY_LIST] & ~3;
	for (int n = 0; n < VFIO_MAX_CAP_WALK && pos >= 0x40 && pos <= 256 - 4; n++) {
		unsigned len = vfio_passcap_len(cfg, pos);
		uint16_t off;

		if (len && pos + len <= 256 && vp->nr_passcaps < VFIO_PCI_MAX_PASSCAPS &&
		    !pci_cap_add(&vp->pci, cfg[pos], (uint8_t)len, &off)) {
			memcpy(vp->pci.cfg + off + 2, cfg + pos + 2, len - 2);
			vp->passcaps[vp->nr_passcaps++] = (struct vfio_pci_passcap){
				.id = cfg[pos], .off = off, .dev_off = pos, .len = (uint16_t)len,
			};
		}
		pos = cfg[pos + 1] & ~3;
	}
	return 0;
}

/* ---- PCI Express extended capabilities (PCIe 6.0 §7.6) ---- */

#ifndef PCI_EXT_CAP_ID_VF_REBAR
#define PCI_EXT_CAP_ID_VF_REBAR 0x24   /* VF Resizable BAR (pci_regs.h of Linux 6.2+) */
#endif
#define VFIO_EXT_CAP_MAX ((PCI_CFG_SIZE - PCI_CFG_SPACE_SIZE) / 4)

/* Extended capabilities the guest must not see: we cannot virtualize them. */
static bool vfio_ext_cap_hidden(uint16_t id)
{
	switch (id) {
	case 0x0000:                    /* Null capability: a placeholder, nothing to show */
	case PCI_EXT_CAP_ID_SRIOV:      /* VF enable and VF BARs belong to the host's PF driver */
	case PCI_EXT_CAP_ID_MRIOV:
	case PCI_EXT_CAP_ID_REBAR:      /* BAR sizes are fixed by our model at creation */
	case PCI_EXT_CAP_ID_VF_REBAR:
	case PCI_EXT_CAP_ID_ATS:        /* translation requests need an IOMMU with ATS/PRI/PASID: */
	case PCI_EXT_CAP_ID_PRI:        /* virtio-iommu has none, and without a vIOMMU the */
	case PCI_EXT_CAP_ID_PASID:      /* device would cache host translations */
	case PCI_EXT_CAP_ID_ARI:        /* its next-function numbers name host functions */
	case PCI_EXT_CAP_ID_MCAST:      /* multicast windows are BARs we do not model */
		return true;
	default:
		return false;
	}
}

struct vfio_ext_cap {
	uint16_t id, off, end;
	uint8_t ver;
};

/* The device's extended capability chain from 0x100, bounds-checked (it
 * comes from the device: it may loop, point back into the header or past
 * 4 KiB). Returns how many were found; a broken link ends the walk. */
static unsigned vfio_ext_caps_walk(struct vfio_pci *vp, struct vfio_ext_cap *caps)
{
	uint8_t seen[VFIO_EXT_CAP_MAX] = { 0 };
	unsigned n = 0;
	uint32_t pos = PCI_CFG_SPACE_SIZE;

	while (pos && n < VFIO_EXT_CAP_MAX) {
		uint32_t hdr;

		if (pos < PCI_CFG_SPACE_SIZE || pos > PCI_CFG_SIZE - 4 || (pos & 3) ||
		    seen[(pos - PCI_CFG_SPACE_SIZE) / 4]) {
			log_warn(vp->name, "extended capability chain broken at 0x%x: cut there", pos);
			break;
		}
		seen[(pos - PCI_CFG_SPACE_SIZE) / 4] = 1;
		memcpy(&hdr, vp->dev_cfg + pos, 4);
		if (hdr == 0 || hdr == 0xffffffffu)
			break;   /* no (more) capabilities */
		caps[n++] = (struct vfio_ext_cap){ .id = (uint16_t)hdr, .off = (uint16_t)pos,
						   .ver = (uint8_t)PCI_EXT_CAP_VER(hdr) };
		pos = PCI_EXT_CAP_NEXT(hdr);
	}
	/* A capability's body ends where the next one (by offset) begins. */
	for (unsigned i = 0; i < n; i++) {
		caps[i].end = PCI_CFG_SIZE;
		for (unsigned j = 0; j < n; j++)
			if (caps[j].off > caps[i].off && caps[j].off < caps[i].end)
				caps[i].end = caps[j].off;
	}
	return n;
}

/* Our extended capability header at @at: ID, version, next offset. */
static void vfio_ext_hdr(struct vfio_pci *vp, uint16_t at, uint16_t id, uint8_t ver, uint16_t next)
{
	pci_cfg_set32(&vp->pci, at, (uint32_t)id | (uint32_t)(ver & 0xf) << 16 | (uint32_t)next << 20);
}

static void vfio_ext_link(struct vfio_pci *vp, uint16_t at, uint16_t next)
{
	uint32_t h = pci_cfg_get32(&vp->pci, at);

	pci_cfg_set32(&vp->pci, at, (h & 0xfffffu) | (uint32_t)next << 20);
}

/* Show the device's extended capabilities at their own offsets, minus the
 * hidden ones: our headers link the shown ones in the device's order, so
 * the chain stays valid; a hidden one at 0x100 leaves a Null capability
 * there pointing on (the chain must start at 0x100). Bodies are passed
 * through live; hidden bodies and gaps read as zero. */
static int vfio_pci_setup_ext_caps(struct vfio_pci *vp)
{
	struct vfio_ext_cap caps[VFIO_EXT_CAP_MAX];
	unsigned n;
	int prev = -1;

	if (!vp->pcie || !pci_cap_find(&vp->pci, PCI_CAP_ID_EXP))
		return 0;   /* conventional PCI to the guest: 0x100+ reads as zero */
	n = vfio_ext_caps_walk(vp, caps);
	for (unsigned i = 0; i < n; i++) {
		const struct vfio_ext_cap *c = &caps[i];

		if (vfio_ext_cap_hidden(c->id) || vp->nr_passcaps >= VFIO_PCI_MAX_PASSCAPS) {
			if (!vfio_ext_cap_hidden(c->id))
				log_warn(vp->name, "extended capability 0x%x at 0x%x not shown: "
					 "too many", c->id, c->off);
			continue;
		}
		vfio_ext_hdr(vp, c->off, c->id, c->ver, 0);
		if (prev >= 0)
			vfio_ext_link(vp, (uint16_t)prev, c->off);
		else if (c->off != PCI_CFG_SPACE_SIZE)
			vfio_ext_hdr(vp, PCI_CFG_SPACE_SIZE, 0, 0, c->off);   /* Null capability */
		prev = c->off;
		vp->passcaps[vp->nr_passcaps++] = (struct vfio_pci_passcap){
			.id = c->id, .off = c->off, .dev_off = c->off,
			.len = (uint16_t)(c->end - c->off), .ext = true,
		};
	}
	return 0;
}

static int vfio_pci_setup_msix(struct vfio_pci *vp)
{
	uint8_t cap = vfio_find_cap(vp->dev_cfg, PCI_CAP_ID_MSIX);
	struct vfio_irq irq;
	uint32_t table, pba;
	unsigned nr;
	int ret;

	if (!cap)
		return 0;
	nr = ((vp->dev_cfg[cap + 2] | vp->dev_cfg[cap + 3] << 8) & PCI_MSIX_FLAGS_QSIZE) + 1;
	memcpy(&table, vp->dev_cfg + cap + PCI_MSIX_TABLE, 4);
	memcpy(&pba, vp->dev_cfg + cap + PCI_MSIX_PBA, 4);
	ret = vp->be->ops->irq_info(vp->be, VFIO_PCI_MSIX_IRQ_INDEX, &irq);
	if (ret)
		return ret;
	if (irq.count < nr || !(irq.flags & VFIO_IRQ_INFO_EVENTFD)) {
		log_err(vp->name, "MSI-X: capability says %u vectors, back end offers %u", nr,
			irq.count);
		return -EPROTO;
	}
	ret = pci_msix_init(&vp->pci, nr, (int)(table & PCI_MSIX_TABLE_BIR),
			    table & PCI_MSIX_TABLE_OFFSET, pba & PCI_MSIX_PBA_OFFSET);
	if (ret) {
		log_err(vp->name, "MSI-X table/PBA do not fit their BAR");
		return ret;
	}
	vp->msix_fd = calloc(nr, sizeof(int));
	vp->msix_count = calloc(nr, sizeof(uint64_t));
	if (!vp->msix_fd || !vp->msix_count)
		return -ENOMEM;
	vp->msix_nr = nr;
	for (unsigned v = 0; v < nr; v++)
		vp->msix_fd[v] = -1;
	for (unsigned v = 0; v < nr; v++) {
		vp->msix_fd[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->msix_fd[v] < 0)
			return -errno;
		if (vp->env.loop) {
			ret = evl_add_fd(vp->env.loop, vp->msix_fd[v], EPOLLIN, vfio_msix_ready, vp);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* ---- BARs ---- */

static enum pci_bar_type vfio_bar_type(const uint8_t *cfg, int i, bool *pref)
{
	uint32_t v;

	memcpy(&v, cfg + PCI_BASE_ADDRESS_0 + 4 * i, 4);
	*pref = v & PCI_BASE_ADDRESS_MEM_PREFETCH;
	if (v & PCI_BASE_ADDRESS_SPACE_IO)
		return PCI_BAR_IO;
	if ((v & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64)
		return i < PCI_NUM_BARS - 1 ? PCI_BAR_MMIO64 : PCI_BAR_NONE;
	return PCI_BAR_MMIO32;
}

static int vfio_pci_setup_bars(struct vfio_pci *vp)
{
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct vfio_pci_bar *b = &vp->bars[i];
		enum pci_bar_type type;
		bool pref;
		int ret;

		b->vp = vp;
		b->index = i;
		ret = vp->be->ops->region_info(vp->be, (uint32_t)i, &b->region);
		if (ret)
			return ret;
		if (!b->region.size)
			continue;
		type = vfio_bar_type(vp->dev_cfg, i, &pref);
		if (type == PCI_BAR_NONE || b->region.size & (b->region.size - 1)) {
			log_err(vp->name, "BAR%d: unusable (size 0x%llx)", i,
				(unsigned long long)b->region.size);
			return -EPROTO;
		}
		ret = pci_bar_define(&vp->pci, i, b->region.size, type, &vfio_bar_ops, b);
		if (ret)
			return ret;
		vp->pci.bars[i].prefetchable = pref;
		if (type == PCI_BAR_MMIO64)
			i++;
	}
	return 0;
}

/* ---- DMA ---- */

static int vfio_dma_add(struct vfio_pci *vp, uint64_t iova, uint64_t size, uint64_t gpa,
			bool read, bool write)
{
	struct guest_mem *mem = vp->env.mem;
	void *hva = mem_gpa_to_hva(mem, gpa, size);
	int64_t off = mem_gpa_to_offset(mem, gpa);
	int ret;

	if (!hva || off < 0 || !size)
		return -EFAULT;   /* not guest RAM: nothing the device may reach */
	pthread_mutex_lock(&vp->dma_lock);
	if (vp->nr_dma >= VFIO_PCI_MAX_DMA) {
		ret = -ENOSPC;
		goto out;
	}
	struct vfio_dma d = { .iova = iova, .size = size, .hva = hva, .fd = mem->fd,
			      .fd_offset = (uint64_t)off, .gpa = gpa, .read = read, .write = write };
	ret = vp->be->ops->dma_map(vp->be, &d);
	if (!ret)
		vp->dma[vp->nr_dma++] = d;
	else
		vfio_pci_mark_gone(vp, ret);
out:
	pthread_mutex_unlock(&vp->dma_lock);
	return ret;
}

static int vfio_pci_map_all_ram(struct vfio_pci *vp)
{
	const struct guest_mem *mem = vp->env.mem;

	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->regions[i];
		int ret = vfio_dma_add(vp, r->gpa, r->size, r->gpa, true, true);

		if (ret) {
			log_err(vp->name, "mapping guest RAM [0x%llx,+0x%llx) for DMA: %s",
				(unsigned long long)r->gpa, (unsigned long long)r->size,
				strerror_safe(-ret));
			return ret;
		}
	}
	return 0;
}

int vfio_pci_shadow_map(struct vfio_pci *vp, uint64_t iova, uint64_t size, uint64_t gpa,
			bool read, bool write)
{
	if (vp->gone)
		return -ENODEV;
	return vfio_dma_add(vp, iova, size, gpa, read, write);
}

int vfio_pci_shadow_unmap(struct vfio_pci *vp, uint64_t iova, uint64_t size)
{
	int err = 0;

	pthread_mutex_lock(&vp->dma_lock);
	/* Unmap every window inside [iova, iova+size): guest UNMAPs may cover
	 * several MAPs (virtio 1.2 §5.13.6.6); unmapping nothing is no error. */
	for (unsigned i = 0; i < vp->nr_dma;) {
		struct vfio_dma *d = &vp->dma[i];

		if (d->iova >= iova && d->iova - iova < size && d->size <= size - (d->iova - iova)) {
			int r = vp->gone ? 0 : vp->be->ops->dma_unmap(vp->be, d->iova, d->size);

			if (r) {
				vfio_pci_mark_gone(vp, r);
				if (!err)
					err = r;
			}
			*d = vp->dma[--vp->nr_dma];
			continue;
		}
		i++;
	}
	pthread_mutex_unlock(&vp->dma_lock);
	return err;
}

/* ---- vIOMMU: mirror an endpoint's domain ---- */

struct vfio_want {
	struct vfio_dma *v;
	unsigned n, cap;
	uint32_t ep;
	bool found, attached, bypass;
	uint32_t domain;
};

static int vfio_want_add(struct vfio_want *w, uint64_t iova, uint64_t size, uint64_t gpa, bool r,
			 bool wr)
{
	if (w->n == w->cap) {
		unsigned cap = w->cap ? w->cap * 2 : 16;
		struct vfio_dma *nv = realloc(w->v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		w->v = nv;
		w->cap = cap;
	}
	w->v[w->n++] = (struct vfio_dma){ .iova = iova, .size = size, .gpa = gpa, .read = r,
					  .write = wr };
	return 0;
}

static int vfio_want_ep(void *opaque, const struct iommu_endpoint_info *e)
{
	struct vfio_want *w = opaque;

	if (e->id != w->ep)
		return 0;
	w->found = true;
	w->attached = e->attached;
	w->domain = e->domain;
	return 1;
}

static int vfio_want_dom(void *opaque, const struct iommu_domain_info *d)
{
	struct vfio_want *w = opaque;

	if (d->id == w->domain) {
		w->bypass = d->bypass;
		return 1;
	}
	return 0;
}

static int vfio_want_map(void *opaque, const struct iommu_mapping_info *m)
{
	struct vfio_want *w = opaque;

	if (m->flags & IOMMU_MAP_F_MMIO)
		return 0;   /* MSI doorbells and other MMIO: not guest RAM */
	return vfio_want_add(w, m->virt_start, m->virt_end - m->virt_start + 1, m->phys,
			     m->flags & IOMMU_MAP_F_READ, m->flags & IOMMU_MAP_F_WRITE);
}

static bool vfio_dma_same(const struct vfio_dma *a, const struct vfio_dma *b)
{
	return a->iova == b->iova && a->size == b->size && a->gpa == b->gpa &&
	       a->read == b->read && a->write == b->write;
}

/* What the endpoint may reach now, as a list of windows. */
static int vfio_want_collect(struct vfio_want *w, struct vfio_pci *vp, struct iommu *io)
{
	bool identity;
	int ret = 0;

	iommu_for_each_endpoint(io, vfio_want_ep, w);
	if (!w->found)
		return -ENOENT;
	if (w->attached)
		iommu_for_each_domain(io, vfio_want_dom, w);
	identity = w->attached ? w->bypass : atomic_load(&io->bypass);
	if (identity) {
		const struct guest_mem *mem = vp->env.mem;

		for (unsigned i = 0; i < mem->nr_regions && !ret; i++)
			ret = vfio_want_add(w, mem->regions[i].gpa, mem->regions[i].size,
					    mem->regions[i].gpa, true, true);
	} else if (w->attached) {
		ret = iommu_for_each_mapping(io, w->domain, vfio_want_map, w);
	}
	return ret;
}

int vfio_pci_sync_iommu(struct vfio_pci *vp, struct iommu *io, uint32_t ep)
{
	struct vfio_want w = { .ep = ep };
	int ret = vfio_want_collect(&w, vp, io), err = 0;

	if (ret || vp->gone)
		goto out;
	/* Unmap what the guest took away, then map what it added. */
	pthread_mutex_lock(&vp->dma_lock);
	for (unsigned i = 0; i < vp->nr_dma;) {
		bool keep = false;

		for (unsigned j = 0; j < w.n && !keep; j++)
			keep = vfio_dma_same(&vp->dma[i], &w.v[j]);
		if (keep) {
			i++;
			continue;
		}
		int r = vp->be->ops->dma_unmap(vp->be, vp->dma[i].iova, vp->dma[i].size);
		if (r && !err)
			err = r;
		vp->dma[i] = vp->dma[--vp->nr_dma];
	}
	pthread_mutex_unlock(&vp->dma_lock);
	for (unsigned j = 0; j < w.n; j++) {
		bool have = false;

		pthread_mutex_lock(&vp->dma_lock);
		for (unsigned i = 0; i < vp->nr_dma && !have; i++)
			have = vfio_dma_same(&vp->dma[i], &w.v[j]);
		pthread_mutex_unlock(&vp->dma_lock);
		if (have)
			continue;
		int r = vfio_dma_add(vp, w.v[j].iova, w.v[j].size, w.v[j].gpa, w.v[j].read,
				     w.v[j].write);
		if (r) {
			log_warn(vp->name, "shadowing IOVA [0x%llx,+0x%llx) -> 0x%llx failed: %s",
				 (unsigned long long)w.v[j].iova, (unsigned long long)w.v[j].size,
				 (unsigned long long)w.v[j].gpa, strerror_safe(-r));
			if (!err)
				err = r;
		}
	}
	if (err)
		vfio_pci_mark_gone(vp, err);
	ret = err;
out:
	free(w.v);
	return ret;
}

/* ---- vfio-user service ---- */

static void vfio_user_ready(void *opaque, uint32_t events)
{
	struct vfio_pci *vp = opaque;
	int ret = vfio_user_service(vp->be);

	if (ret || (events & (EPOLLHUP | EPOLLERR))) {
		vfio_pci_mark_gone(vp, -EPIPE);
		evl_del_fd(vp->env.loop, vfio_user_socket(vp->be));
		vp->sock_in_loop = false;
	}
}

/* ---- lifecycle ---- */

/* The extended space (0x100-0xfff) of a PCI Express function: only when the
 * config region has it and the header has a PCI Express capability. */
static int vfio_pci_read_ext_config(struct vfio_pci *vp)
{
	struct vfio_region r;
	int ret = vp->be->ops->region_info(vp->be, VFIO_PCI_CONFIG_REGION_INDEX, &r);

	if (ret)
		return ret;
	if (r.size < PCI_CFG_SIZE || !vfio_find_cap(vp->dev_cfg, PCI_CAP_ID_EXP))
		return 0;
	ret = vfio_be_region_read(vp->be, VFIO_PCI_CONFIG_REGION_INDEX, PCI_CFG_SPACE_SIZE,
				  vp->dev_cfg + PCI_CFG_SPACE_SIZE, PCI_CFG_SIZE - PCI_CFG_SPACE_SIZE);
	vp->pcie = !ret;
	return ret;
}

static int vfio_pci_read_config(struct vfio_pci *vp)
{
	uint16_t vendor, device, svid, sid;
	uint32_t class_rev;
	int ret = vfio_be_region_read(vp->be, VFIO_PCI_CONFIG_REGION_INDEX, 0, vp->dev_cfg,
				      PCI_CFG_SPACE_SIZE);

	if (!ret)
		ret = vfio_pci_read_ext_config(vp);
	if (ret) {
		log_err(vp->name, "cannot read the device's config space: %s", strerror_safe(-ret));
		return ret;
	}
	memcpy(&vendor, vp->dev_cfg + PCI_VENDOR_ID, 2);
	memcpy(&device, vp->dev_cfg + PCI_DEVICE_ID, 2);
	memcpy(&class_rev, vp->dev_cfg + PCI_CLASS_REVISION, 4);
	memcpy(&svid, vp->dev_cfg + PCI_SUBSYSTEM_VENDOR_ID, 2);
	memcpy(&sid, vp->dev_cfg + PCI_SUBSYSTEM_ID, 2);
	if (vendor == 0xffff || vendor == 0) {
		log_err(vp->name, "device reports vendor 0x%04x: not present", vendor);
		return -ENODEV;
	}
	pci_config_set_ids(&vp->pci, vendor, device, class_rev >> 8, (uint8_t)class_rev);
	pci_config_set_subsystem(&vp->pci, svid, sid);
	vp->pci.cfg[PCI_INTERRUPT_PIN] = 0;   /* INTx not offered (MSI-X only) */
	return 0;
}

int vfio_pci_init(struct vfio_pci *vp, const char *name, struct vfio_backend *be,
		  const struct vfio_pci_env *env)
{
	int ret;

	memset(vp, 0, sizeof(*vp));
	vp->intx_fd = vp->intx_resample_fd = -1;
	snprintf(vp->name, sizeof(vp->name), "%s", name);
	vp->be = be;
	vp->env = *env;
	pthread_mutex_init(&vp->dma_lock, NULL);
	pci_device_init(&vp->pci, vp->name, &vfio_pci_dev_ops, vp);
	ret = be->ops->device_info(be, &vp->info);
	if (!ret)
		ret = vfio_pci_read_config(vp);
	if (!ret)
		ret = vfio_pci_setup_bars(vp);
	if (!ret)
		ret = vfio_pci_setup_msix(vp);
	if (!ret)
		ret = vfio_pci_setup_passcaps(vp);
	if (!ret)
		ret = vfio_pci_setup_ext_caps(vp);
	if (!ret)
		ret = vfio_pci_setup_intx(vp);
	if (ret)
		goto fail;
	for (int i = 0; i < PCI_NUM_BARS; i++)
		if (vp->bars[i].region.size)
			vfio_bar_mmap_areas(vp, &vp->bars[i]);
	if (!env->iommu) {
		ret = vfio_pci_map_all_ram(vp);
		if (ret)
			goto fail;
	}
	if (env->loop && vfio_user_is(be)) {
		ret = evl_add_fd(env->loop, vfio_user_socket(be), EPOLLIN, vfio_user_ready, vp);
		if (ret)
			goto fail;
		vp->sock_in_loop = true;
	}
	ret = pci_bus_add_device(env->bus, &vp->pci, env->slot);
	if (ret)
		goto fail;
	vp->attached = true;
	return 0;
fail:
	log_err(vp->name, "cannot set up the device: %s", strerror_safe(-ret));
	vfio_pci_uninit(vp);
	return ret;
}

void vfio_pci_uninit(struct vfio_pci *vp)
{
	if (vp->attached)
		pci_bus_remove_device(vp->env.bus, &vp->pci);
	vp->attached = false;
	if (vp->sock_in_loop)
		evl_del_fd(vp->env.loop, vfio_user_socket(vp->be));
	vp->sock_in_loop = false;
	vfio_msix_arm(vp, false);
	vfio_intx_arm(vp, false);
	if (vp->intx_routed)
		vp->env.intx(vp->env.opaque, vp->intx_fd, vp->intx_resample_fd, false, &vp->intx_gsi);
	vp->intx_routed = false;
	if (vp->intx_fd >= 0)
		close(vp->intx_fd);
	if (vp->intx_resample_fd >= 0)
		close(vp->intx_resample_fd);
	vp->intx_fd = vp->intx_resample_fd = -1;
	for (unsigned v = 0; vp->msix_fd && v < vp->msix_nr; v++) {
		if (vp->msix_fd[v] < 0)
			continue;
		if (vp->env.loop)
			evl_del_fd(vp->env.loop, vp->msix_fd[v]);
		close(vp->msix_fd[v]);
	}
	free(vp->msix_fd);
	free(vp->msix_count);
	vp->msix_fd = NULL;
	vp->msix_count = NULL;
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct vfio_pci_bar *b = &vp->bars[i];

		vfio_bar_unmap_guest(vp, b);
		for (unsigned a = 0; a < b->nr_areas; a++)
			munmap(b->areas[a].hva, b->areas[a].len);
		b->nr_areas = 0;
	}
	vfio_pci_shadow_unmap(vp, 0, UINT64_MAX);
	pci_device_destroy(&vp->pci);
	vfio_be_destroy(vp->be);
	vp->be = NULL;
	pthread_mutex_destroy(&vp->dma_lock);
}

void vfio_pci_reset(struct vfio_pci *vp)
{
	int ret;

	if (vp->gone)
		return;
	vfio_msix_arm(vp, false);   /* back to INTx, as after power-on */
	ret = vp->be->ops->reset(vp->be);
	if (ret && ret != -EOPNOTSUPP) {
		log_err(vp->name, "function-level reset failed: %s", strerror_safe(-ret));
		vfio_pci_mark_gone(vp, ret);
	}
}

void vfio_pci_poll(struct vfio_pci *vp)
{
	if (vfio_user_is(vp->be) && !vp->gone && vfio_user_service(vp->be))
		vfio_pci_mark_gone(vp, -EPIPE);
	for (unsigned v = 0; v < vp->msix_nr; v++)
		vfio_msix_signal(vp, v);
	uint64_t n;
	if (!vp->intx_routed && vp->intx_fd >= 0 && read(vp->intx_fd, &n, sizeof(n)) == sizeof(n))
		vp->intx_count += n;
}

bool vfio_pci_gone(const struct vfio_pci *vp)
{
	return vp->gone;
}

void vfio_pci_info(struct vfio_pci *vp, cJSON *obj)
{
	cJSON *regions = cJSON_AddArrayToObject(obj, "regions");
	cJSON *dma = cJSON_AddArrayToObject(obj, "dma_mappings");

	cJSON_AddStringToObject(obj, "backend", vp->be ? vp->be->ops->kind : "none");
	cJSON_AddBoolToObject(obj, "present", !vp->gone);
	cJSON_AddNumberToObject(obj, "pci_slot", vp->pci.slot);
	cJSON_AddNumberToObject(obj, "bar_traps", (double)vp->bar_traps);
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		const struct vfio_pci_bar *b = &vp->bars[i];

		if (!b->region.size)
			continue;
		cJSON *r = cJSON_CreateObject();
		cJSON_AddNumberToObject(r, "index", i);
		cJSON_AddNumberToObject(r, "size", (double)b->region.size);
		cJSON_AddNumberToObject(r, "guest_addr", b->mapped ? (double)b->guest_addr : 0);
		cJSON *areas = cJSON_AddArrayToObject(r, "mmapped");
		for (unsigned a = 0; a < b->nr_areas; a++) {
			cJSON *ar = cJSON_CreateObject();
			cJSON_AddNumberToObject(ar, "offset", (double)b->areas[a].off);
			cJSON_AddNumberToObject(ar, "size", (double)b->areas[a].len);
			cJSON_AddBoolToObject(ar, "in_guest", b->areas[a].installed);
			cJSON_AddItemToArray(areas, ar);
		}
		cJSON_AddItemToArray(regions, r);
	}
	cJSON *intx = cJSON_AddObjectToObject(obj, "intx");
	cJSON_AddBoolToObject(intx, "present", vp->intx_fd >= 0);
	cJSON_AddBoolToObject(intx, "armed", vp->intx_armed);
	if (vp->intx_routed)
		cJSON_AddNumberToObject(intx, "gsi", vp->intx_gsi);
	cJSON *irqs = cJSON_AddObjectToObject(obj, "msix");
	cJSON_AddNumberToObject(irqs, "vectors", vp->msix_nr);
	cJSON_AddBoolToObject(irqs, "armed", vp->msix_armed);
	cJSON *counts = cJSON_AddArrayToObject(irqs, "signals");
	for (unsigned v = 0; v < vp->msix_nr; v++)
		cJSON_AddItemToArray(counts, cJSON_CreateNumber((double)vp->msix_count[v]));
	pthread_mutex_lock(&vp->dma_lock);
	for (unsigned i = 0; i < vp->nr_dma; i++) {
		cJSON *m = cJSON_CreateObject();
		cJSON_AddNumberToObject(m, "iova", (double)vp->dma[i].iova);
		cJSON_AddNumberToObject(m, "size", (double)vp->dma[i].size);
		cJSON_AddNumberToObject(m, "gpa", (double)vp->dma[i].gpa);
		cJSON_AddItemToArray(dma, m);
	}
	pthread_mutex_unlock(&vp->dma_lock);
}
