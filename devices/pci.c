/* PCI root bus, host bridge, config space, BARs, capabilities. MSI-X lives in
 * pci_msix.c. See pci.h for the model. */
#include "devices/pci.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/layout.h"
#include "vmm/log.h"

/* Red Hat / QEMU "PCIe host bridge" ids: guests know them and need no driver. */
#define PCI_HOST_BRIDGE_VENDOR 0x1b36
#define PCI_HOST_BRIDGE_DEVICE 0x0008

/* ---- config helpers ---------------------------------------------------- */

void pci_cfg_set16(struct pci_device *d, uint32_t off, uint16_t v)
{
	d->cfg[off] = v & 0xff;
	d->cfg[off + 1] = v >> 8;
}

void pci_cfg_set32(struct pci_device *d, uint32_t off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		d->cfg[off + i] = (v >> (8 * i)) & 0xff;
}

uint16_t pci_cfg_get16(const struct pci_device *d, uint32_t off)
{
	return (uint16_t)(d->cfg[off] | d->cfg[off + 1] << 8);
}

uint32_t pci_cfg_get32(const struct pci_device *d, uint32_t off)
{
	return (uint32_t)d->cfg[off] | (uint32_t)d->cfg[off + 1] << 8 |
	       (uint32_t)d->cfg[off + 2] << 16 | (uint32_t)d->cfg[off + 3] << 24;
}

void pci_cfg_set_wmask(struct pci_device *d, uint32_t off, uint32_t len, uint8_t mask)
{
	if (off >= PCI_CFG_SIZE || len > PCI_CFG_SIZE - off)
		return;
	memset(&d->wmask[off], mask, len);
}

/* ---- device construction ----------------------------------------------- */

static void pci_update_bars(struct pci_device *d);

void pci_device_init(struct pci_device *d, const char *name, const struct pci_device_ops *ops,
		     void *opaque)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->ops = ops;
	d->opaque = opaque;
	d->cap_free = 0x40;   /* first byte after the type 0 header */
	d->intx_gsi = -1;
	pthread_mutex_init(&d->msix_lock, NULL);
	d->msix.bar = -1;
	/* Command: I/O, memory, bus master, SERR, INTx disable are writable
	 * (PCI 3.0 §6.2.2). Status error bits are write-1-to-clear. */
	pci_cfg_set16(d, PCI_COMMAND, 0);
	d->wmask[PCI_COMMAND] = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
				PCI_COMMAND_PARITY;
	d->wmask[PCI_COMMAND + 1] = (PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE) >> 8;
	d->w1cmask[PCI_STATUS + 1] = 0xf9;   /* parity, target/master abort, SERR, parity error */
	d->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	d->wmask[PCI_LATENCY_TIMER] = 0xff;
	d->wmask[PCI_INTERRUPT_LINE] = 0xff;
}

void pci_device_destroy(struct pci_device *d)
{
	if (d->msix.vec) {
		for (unsigned i = 0; i < d->msix.nr; i++) {
			struct pci_msix_vector *v = &d->msix.vec[i];

			if (v->routed && d->bus && d->bus->irq && d->bus->irq->irqfd)
				d->bus->irq->irqfd(d->bus->irq_opaque, v->fd, v->gsi, false);
			if (v->fd >= 0)
				close(v->fd);
		}
		free(d->msix.vec);
		d->msix.vec = NULL;
	}
	pthread_mutex_destroy(&d->msix_lock);
}

void pci_device_reset(struct pci_device *d)
{
	struct pci_bus *bus = d->bus;

	if (bus)
		pthread_mutex_lock(&bus->lock);
	pci_cfg_set16(d, PCI_COMMAND, 0);
	d->cfg[PCI_STATUS + 1] &= (uint8_t)~d->w1cmask[PCI_STATUS + 1];
	if (d->msix.nr) {
		pci_cfg_set16(d, d->msix.cap_off + PCI_MSIX_FLAGS,
			      pci_cfg_get16(d, d->msix.cap_off + PCI_MSIX_FLAGS) &
			      (uint16_t)~(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL));
		pthread_mutex_lock(&d->msix_lock);
		d->msix.enabled = d->msix.masked = false;
		for (unsigned i = 0; i < d->msix.nr; i++) {
			d->msix.vec[i].ctrl = 1;   /* masked */
			d->msix.vec[i].pending = false;
		}
		pthread_mutex_unlock(&d->msix_lock);
	}
	if (bus) {
		pci_update_bars(d);
		pthread_mutex_unlock(&bus->lock);
	}
}

void pci_config_set_ids(struct pci_device *d, uint16_t vendor, uint16_t device,
			uint32_t class_code, uint8_t revision)
{
	pci_cfg_set16(d, PCI_VENDOR_ID, vendor);
	pci_cfg_set16(d, PCI_DEVICE_ID, device);
	d->cfg[PCI_REVISION_ID] = revision;
	d->cfg[PCI_CLASS_PROG] = class_code & 0xff;
	pci_cfg_set16(d, PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8));
	d->cfg[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;
}

void pci_config_set_subsystem(struct pci_device *d, uint16_t svendor, uint16_t sid)
{
	pci_cfg_set16(d, PCI_SUBSYSTEM_VENDOR_ID, svendor);
	pci_cfg_set16(d, PCI_SUBSYSTEM_ID, sid);
}

static uint64_t round_pow2(uint64_t v)
{
	uint64_t p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

int pci_bar_define(struct pci_device *d, int bar, uint64_t size, enum pci_bar_type type,
		   const struct bus_ops *ops, void *opaque)
{
	uint32_t off = PCI_BASE_ADDRESS_0 + 4 * bar;
	uint32_t lowmask, flags;

	if (bar < 0 || bar >= PCI_NUM_BARS || type == PCI_BAR_NONE || size == 0 ||
	    (type == PCI_BAR_MMIO64 && bar == PCI_NUM_BARS - 1))
		return -EINVAL;
	if (type == PCI_BAR_IO) {
		size = round_pow2(size < 4 ? 4 : size);
		if (size > 256)
			return -EINVAL;
		flags = PCI_BASE_ADDRESS_SPACE_IO;
		lowmask = (uint32_t)~(size - 1) & ~3u;
	} else {
		size = round_pow2(size < 16 ? 16 : size);
		if (type == PCI_BAR_MMIO32 && size > (1ULL << 31))
			return -EINVAL;
		flags = type == PCI_BAR_MMIO64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0;
		lowmask = (uint32_t)~(size - 1) & ~0xfu;
	}
	d->bars[bar] = (struct pci_bar){ .type = type, .size = size, .ops = ops, .opaque = opaque };
	pci_cfg_set32(d, off, flags);
	for (int i = 0; i < 4; i++)
		d->wmask[off + i] = (lowmask >> (8 * i)) & 0xff;
	if (type == PCI_BAR_MMIO64) {
		uint32_t himask = (uint32_t)(~(size - 1) >> 32);

		pci_cfg_set32(d, off + 4, 0);
		for (int i = 0; i < 4; i++)
			d->wmask[off + 4 + i] = (himask >> (8 * i)) & 0xff;
	}
	return 0;
}

uint64_t pci_bar_address(const struct pci_device *d, int bar)
{
	const struct pci_bar *b = &d->bars[bar];
	uint32_t off = PCI_BASE_ADDRESS_0 + 4 * bar;
	uint64_t addr;

	switch (b->type) {
	case PCI_BAR_IO:
		return pci_cfg_get32(d, off) & PCI_BASE_ADDRESS_IO_MASK;
	case PCI_BAR_MMIO32:
		return pci_cfg_get32(d, off) & PCI_BASE_ADDRESS_MEM_MASK;
	case PCI_BAR_MMIO64:
		addr = pci_cfg_get32(d, off) & PCI_BASE_ADDRESS_MEM_MASK;
		return addr | (uint64_t)pci_cfg_get32(d, off + 4) << 32;
	default:
		return 0;
	}
}

int pci_cap_add(struct pci_device *d, uint8_t id, uint8_t len, uint16_t *off)
{
	uint16_t at = (d->cap_free + 3) & ~3u;

	if (len < 2 || at + len > 0x100)
		return -ENOSPC;
	d->cfg[at] = id;
	d->cfg[at + 1] = 0;
	if (d->cap_tail)
		d->cfg[d->cap_tail + 1] = (uint8_t)at;
	else
		d->cfg[PCI_CAPABILITY_LIST] = (uint8_t)at;
	pci_cfg_set16(d, PCI_STATUS, pci_cfg_get16(d, PCI_STATUS) | PCI_STATUS_CAP_LIST);
	d->cap_tail = at;
	d->cap_free = at + len;
	*off = at;
	return 0;
}

uint16_t pci_cap_find(const struct pci_device *d, uint8_t id)
{
	uint16_t at;
	int guard = 48;   /* (256 - 64) / 4: a list cannot be longer */

	if (!(pci_cfg_get16(d, PCI_STATUS) & PCI_STATUS_CAP_LIST))
		return 0;
	for (at = d->cfg[PCI_CAPABILITY_LIST] & ~3u; at && guard--; at = d->cfg[at + 1] & ~3u)
		if (d->cfg[at] == id)
			return at;
	return 0;
}

/* ---- BAR decode -------------------------------------------------------- */

static bool pci_bar_in_window(const struct pci_bus *bus, const struct pci_bar *b, uint64_t addr)
{
	if (addr == 0)
		return false;
	if (b->type == PCI_BAR_IO)
		return addr >= bus->io_start && addr + b->size <= bus->io_end;
	return addr >= bus->mmio32_start && addr + b->size <= bus->mmio32_end &&
	       addr + b->size > addr;
}

/* Recompute which BARs decode where, after a command or BAR write.
 * Caller holds bus->lock (config serialization). */
static void pci_update_bars(struct pci_device *d)
{
	struct pci_bus *bus = d->bus;
	uint16_t cmd = pci_cfg_get16(d, PCI_COMMAND);

	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &d->bars[i];
		uint64_t addr;
		bool on;

		if (b->type == PCI_BAR_NONE)
			continue;
		addr = pci_bar_address(d, i);
		on = d->attached &&
		     ((b->type == PCI_BAR_IO) ? (cmd & PCI_COMMAND_IO) : (cmd & PCI_COMMAND_MEMORY)) &&
		     pci_bar_in_window(bus, b, addr);
		if (on == b->mapped && (!on || addr == b->mapped_addr))
			continue;
		pthread_rwlock_wrlock(&bus->bar_lock);
		b->mapped = on;
		b->mapped_addr = on ? addr : 0;
		pthread_rwlock_unlock(&bus->bar_lock);
		if (d->ops && d->ops->bar_moved)
			d->ops->bar_moved(d, i, addr, on);
		if (b->type == PCI_BAR_MMIO64)
			i++;
	}
}

/* ---- config access ------------------------------------------------------ */

static bool ranges_overlap(uint32_t a, uint32_t alen, uint32_t b, uint32_t blen)
{
	return a < b + blen && b < a + alen;
}

static uint32_t pci_device_config_read(struct pci_device *d, uint32_t off, uint32_t len)
{
	uint32_t val = 0;

	for (uint32_t i = 0; i < len; i++)
		val |= (uint32_t)d->cfg[off + i] << (8 * i);
	if (d->ops && d->ops->config_read)
		d->ops->config_read(d, off, &val, len);
	return val;
}

static void pci_device_config_write(struct pci_device *d, uint32_t off, uint32_t val, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++) {
		uint8_t v = (val >> (8 * i)) & 0xff, wm = d->wmask[off + i];

		d->cfg[off + i] = (uint8_t)((d->cfg[off + i] & ~wm) | (v & wm));
		d->cfg[off + i] &= (uint8_t)~(v & d->w1cmask[off + i]);
	}
	if (ranges_overlap(off, len, PCI_COMMAND, 2) ||
	    ranges_overlap(off, len, PCI_BASE_ADDRESS_0, 24))
		pci_update_bars(d);
	if (d->msix.nr && ranges_overlap(off, len, d->msix.cap_off + PCI_MSIX_FLAGS, 2))
		pci_msix_config_written(d);
	if (d->ops && d->ops->config_write)
		d->ops->config_write(d, off, val, len);
}

static bool pci_access_ok(uint32_t off, uint32_t len)
{
	/* Naturally aligned 1/2/4-byte accesses inside the 4 KiB space. */
	return (len == 1 || len == 2 || len == 4) && off < PCI_CFG_SIZE && (off & (len - 1)) == 0;
}

uint32_t pci_bus_config_read(struct pci_bus *bus, unsigned slot, unsigned fn, uint32_t off,
			     uint32_t len)
{
	struct pci_device *d;
	uint32_t val;

	if (!pci_access_ok(off, len))
		return 0xffffffffu >> (32 - 8 * (len > 4 ? 4 : len ? len : 4));
	pthread_mutex_lock(&bus->lock);
	d = (slot < PCI_MAX_SLOTS && fn == 0) ? bus->slots[slot] : NULL;
	val = d ? pci_device_config_read(d, off, len) : (0xffffffffu >> (32 - 8 * len));
	pthread_mutex_unlock(&bus->lock);
	return val;
}

void pci_bus_config_write(struct pci_bus *bus, unsigned slot, unsigned fn, uint32_t off,
			  uint32_t val, uint32_t len)
{
	struct pci_device *d;

	if (!pci_access_ok(off, len))
		return;
	pthread_mutex_lock(&bus->lock);
	d = (slot < PCI_MAX_SLOTS && fn == 0) ? bus->slots[slot] : NULL;
	if (d)
		pci_device_config_write(d, off, val, len);
	pthread_mutex_unlock(&bus->lock);
}

/* ---- ECAM and CF8/CFC --------------------------------------------------- */

static uint32_t load_le(const void *data, uint32_t len)
{
	const uint8_t *p = data;
	uint32_t v = 0;

	for (uint32_t i = 0; i < len && i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static void store_le(void *data, uint32_t len, uint64_t v)
{
	uint8_t *p = data;

	for (uint32_t i = 0; i < len; i++)
		p[i] = (v >> (8 * i)) & 0xff;
}

/* ECAM offset: bus[27:20] device[19:15] function[14:12] register[11:0]. */
static void pci_ecam_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct pci_bus *bus = opaque;

	if (len > 4) {
		memset(data, 0xff, len);
		return;
	}
	store_le(data, len, pci_bus_config_read(bus, (off >> 15) & 31, (off >> 12) & 7,
						off & 0xfff, len));
}

static void pci_ecam_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct pci_bus *bus = opaque;

	if (len > 4)
		return;
	pci_bus_config_write(bus, (off >> 15) & 31, (off >> 12) & 7, off & 0xfff,
			     load_le(data, len), len);
}

static const struct bus_ops pci_ecam_ops = { .read = pci_ecam_read, .write = pci_ecam_write };

/* CONFIG_ADDRESS (0xCF8): enable[31] bus[23:16] device[15:11] function[10:8] reg[7:2]. */
static void pci_cf8_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct pci_bus *bus = opaque;

	pthread_mutex_lock(&bus->lock);
	store_le(data, len, (off == 0 && len == 4) ? bus->cf8 : 0xffffffffu);
	pthread_mutex_unlock(&bus->lock);
}

static void pci_cf8_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct pci_bus *bus = opaque;

	/* Only dword writes latch the address; byte writes to 0xCF9 are reset control. */
	if (off != 0 || len != 4)
		return;
	pthread_mutex_lock(&bus->lock);
	bus->cf8 = load_le(data, 4) & 0x80fffffcu;
	pthread_mutex_unlock(&bus->lock);
}

static bool pci_cf8_decode(struct pci_bus *bus, uint64_t off, unsigned *slot, unsigned *fn,
			   uint32_t *reg)
{
	uint32_t a;

	pthread_mutex_lock(&bus->lock);
	a = bus->cf8;
	pthread_mutex_unlock(&bus->lock);
	if (!(a & 0x80000000u) || ((a >> 16) & 0xff) != 0)
		return false;
	*slot = (a >> 11) & 31;
	*fn = (a >> 8) & 7;
	*reg = (a & 0xfc) + (uint32_t)off;
	return true;
}

static void pci_cfc_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	unsigned slot, fn;
	uint32_t reg;

	if (len > 4 || !pci_cf8_decode(opaque, off, &slot, &fn, &reg)) {
		memset(data, 0xff, len);
		return;
	}
	store_le(data, len, pci_bus_config_read(opaque, slot, fn, reg, len));
}

static void pci_cfc_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	unsigned slot, fn;
	uint32_t reg;

	if (len > 4 || !pci_cf8_decode(opaque, off, &slot, &fn, &reg))
		return;
	pci_bus_config_write(opaque, slot, fn, reg, load_le(data, len), len);
}

static const struct bus_ops pci_cf8_ops = { .read = pci_cf8_read, .write = pci_cf8_write };
static const struct bus_ops pci_cfc_ops = { .read = pci_cfc_read, .write = pci_cfc_write };

/* ---- BAR windows -------------------------------------------------------- */

/* Find the decoded BAR containing [addr, addr+len). Caller holds bar_lock. */
static struct pci_device *pci_bar_lookup(struct pci_bus *bus, bool io, uint64_t addr,
					 uint32_t len, int *bar)
{
	for (unsigned s = 0; s < PCI_MAX_SLOTS; s++) {
		struct pci_device *d = bus->slots[s];

		if (!d)
			continue;
		for (int i = 0; i < PCI_NUM_BARS; i++) {
			struct pci_bar *b = &d->bars[i];

			if (!b->mapped || (b->type == PCI_BAR_IO) != io)
				continue;
			if (addr >= b->mapped_addr && addr - b->mapped_addr < b->size &&
			    len <= b->size - (addr - b->mapped_addr)) {
				*bar = i;
				return d;
			}
		}
	}
	return NULL;
}

static void pci_window_access(struct pci_bus *bus, bool io, uint64_t addr, void *rdata,
			      const void *wdata, uint32_t len)
{
	struct pci_device *d;
	struct pci_bar *b;
	uint64_t off;
	int bar = 0;

	pthread_rwlock_rdlock(&bus->bar_lock);
	d = pci_bar_lookup(bus, io, addr, len, &bar);
	if (!d) {
		pthread_rwlock_unlock(&bus->bar_lock);
		if (rdata)
			memset(rdata, 0xff, len);
		return;
	}
	b = &d->bars[bar];
	off = addr - b->mapped_addr;
	if (rdata) {
		if (!pci_msix_mmio_read(d, bar, off, rdata, len)) {
			if (b->ops && b->ops->read)
				b->ops->read(b->opaque, off, rdata, len);
			else
				memset(rdata, 0xff, len);
		}
	} else if (!pci_msix_mmio_write(d, bar, off, wdata, len) && b->ops && b->ops->write) {
		b->ops->write(b->opaque, off, wdata, len);
	}
	pthread_rwlock_unlock(&bus->bar_lock);
}

static void pci_mmio_window_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct pci_bus *bus = opaque;

	pci_window_access(bus, false, bus->mmio32_start + off, data, NULL, len);
}

static void pci_mmio_window_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct pci_bus *bus = opaque;

	pci_window_access(bus, false, bus->mmio32_start + off, NULL, data, len);
}

static void pci_io_window_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct pci_bus *bus = opaque;

	pci_window_access(bus, true, bus->io_start + off, data, NULL, len);
}

static void pci_io_window_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct pci_bus *bus = opaque;

	pci_window_access(bus, true, bus->io_start + off, NULL, data, len);
}

static const struct bus_ops pci_mmio_window_ops = {
	.read = pci_mmio_window_read, .write = pci_mmio_window_write,
};
static const struct bus_ops pci_io_window_ops = {
	.read = pci_io_window_read, .write = pci_io_window_write,
};

/* ---- bus ---------------------------------------------------------------- */

static void pci_bus_unregister_all(struct pci_bus *bus)
{
	if (bus->mmio) {
		bus_unregister(bus->mmio, bus->ecam_base);
		bus_unregister(bus->mmio, bus->mmio32_start);
	}
	if (bus->pio) {
		bus_unregister(bus->pio, PORT_PCI_CONFIG_ADDR);
		bus_unregister(bus->pio, PORT_PCI_CONFIG_DATA);
		bus_unregister(bus->pio, bus->io_start);
	}
}

int pci_bus_init(struct pci_bus *bus, struct bus *mmio, struct bus *pio, uint64_t ecam_base,
		 const struct pci_irq_ops *irq, void *irq_opaque)
{
	int ret;

	memset(bus, 0, sizeof(*bus));
	bus->mmio = mmio;
	bus->pio = pio;
	bus->irq = irq;
	bus->irq_opaque = irq_opaque;
	bus->ecam_base = ecam_base;
	bus->mmio32_start = bus->mmio32_next = LAYOUT_PCI_MMIO32_START;
	bus->mmio32_end = LAYOUT_PCI_MMIO32_END;
	bus->io_start = bus->io_next = PCI_IO_WINDOW_START;
	bus->io_end = PCI_IO_WINDOW_END;
	pthread_mutex_init(&bus->lock, NULL);
	pthread_rwlock_init(&bus->bar_lock, NULL);

	if (mmio) {
		ret = bus_register(mmio, ecam_base, PCI_ECAM_BUS_SIZE, &pci_ecam_ops, bus, "pci-ecam");
		if (ret)
			goto err;
		ret = bus_register(mmio, bus->mmio32_start, bus->mmio32_end - bus->mmio32_start,
				   &pci_mmio_window_ops, bus, "pci-mmio32");
		if (ret)
			goto err;
	}
	if (pio) {
		ret = bus_register(pio, PORT_PCI_CONFIG_ADDR, 4, &pci_cf8_ops, bus, "pci-cf8");
		if (ret)
			goto err;
		ret = bus_register(pio, PORT_PCI_CONFIG_DATA, 4, &pci_cfc_ops, bus, "pci-cfc");
		if (ret)
			goto err;
		ret = bus_register(pio, bus->io_start, bus->io_end - bus->io_start,
				   &pci_io_window_ops, bus, "pci-io");
		if (ret)
			goto err;
	}

	pci_device_init(&bus->host_bridge, "pci-host", NULL, NULL);
	pci_config_set_ids(&bus->host_bridge, PCI_HOST_BRIDGE_VENDOR, PCI_HOST_BRIDGE_DEVICE,
			   0x060000, 0);   /* class: bridge, host */
	ret = pci_bus_add_device(bus, &bus->host_bridge, 0);
	if (ret)
		goto err;
	return 0;

err:
	log_err("pci", "cannot register the PCI root bus: %s", strerror_safe(-ret));
	pci_bus_unregister_all(bus);
	pthread_rwlock_destroy(&bus->bar_lock);
	pthread_mutex_destroy(&bus->lock);
	return ret;
}

void pci_bus_destroy(struct pci_bus *bus)
{
	pci_bus_unregister_all(bus);
	pci_device_destroy(&bus->host_bridge);
	pthread_rwlock_destroy(&bus->bar_lock);
	pthread_mutex_destroy(&bus->lock);
}

/* Bump-allocate a naturally aligned address for each BAR, like firmware. */
static int pci_bars_assign(struct pci_bus *bus, struct pci_device *d)
{
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &d->bars[i];
		uint64_t *next, end, addr;
		uint32_t off = PCI_BASE_ADDRESS_0 + 4 * i;

		if (b->type == PCI_BAR_NONE)
			continue;
		next = b->type == PCI_BAR_IO ? &bus->io_next : &bus->mmio32_next;
		end = b->type == PCI_BAR_IO ? bus->io_end : bus->mmio32_end;
		addr = (*next + b->size - 1) & ~(b->size - 1);
		if (addr + b->size > end) {
			log_err(d->name, "no room for BAR%d (%llu bytes) in the PCI window", i,
				(unsigned long long)b->size);
			return -ENOSPC;
		}
		*next = addr + b->size;
		/* Keep the read-only type bits (I/O: [1:0], memory: [3:0]). */
		pci_cfg_set32(d, off, (pci_cfg_get32(d, off) & (b->type == PCI_BAR_IO ? 0x3 : 0xf)) |
				      (uint32_t)addr);
		if (b->type == PCI_BAR_MMIO64) {
			pci_cfg_set32(d, off + 4, (uint32_t)(addr >> 32));
			i++;
		}
	}
	return 0;
}

int pci_bus_add_device(struct pci_bus *bus, struct pci_device *d, int slot)
{
	int ret;

	pthread_mutex_lock(&bus->lock);
	if (slot < 0) {
		for (slot = 1; slot < PCI_MAX_SLOTS && bus->slots[slot]; slot++)
			;
	}
	if (slot >= PCI_MAX_SLOTS || bus->slots[slot]) {
		ret = slot >= PCI_MAX_SLOTS ? -ENOSPC : -EBUSY;
		goto out;
	}
	d->bus = bus;
	ret = pci_bars_assign(bus, d);
	if (ret)
		goto out;
	d->slot = (uint8_t)slot;
	d->attached = true;
	bus->slots[slot] = d;
	pci_update_bars(d);
out:
	pthread_mutex_unlock(&bus->lock);
	if (ret)
		log_err(d->name, "cannot attach to PCI bus: %s", strerror_safe(-ret));
	return ret;
}

void pci_bus_remove_device(struct pci_bus *bus, struct pci_device *d)
{
	pthread_mutex_lock(&bus->lock);
	if (d->attached && bus->slots[d->slot] == d) {
		d->attached = false;
		pci_update_bars(d);
		pthread_rwlock_wrlock(&bus->bar_lock);
		bus->slots[d->slot] = NULL;
		pthread_rwlock_unlock(&bus->bar_lock);
	}
	pthread_mutex_unlock(&bus->lock);
}
