/* PCI config mechanism #1, enumeration, BAR sizing/assignment, MSI-X. */
#include "pci.h"

#define PCI_CONFIG_ADDR 0xcf8
#define PCI_CONFIG_DATA 0xcfc
#define PCI_MMIO_WINDOW_START 0xc0000000ULL
#define PCI_MMIO_WINDOW_END   0xe0000000ULL

#define BAR_IO          0x1
#define BAR_TYPE_64     0x4
#define BAR_MEM_MASK    (~0xfULL)
#define BAR_IO_MASK     (~0x3ULL)

#define MSIX_CTRL       2
#define MSIX_TABLE      4
#define MSIX_PBA        8
#define MSIX_CTRL_ENABLE    (1u << 15)
#define MSIX_CTRL_FUNC_MASK (1u << 14)
#define MSIX_ENTRY_SIZE 16
#define MSIX_ENTRY_ADDR_LO 0
#define MSIX_ENTRY_ADDR_HI 4
#define MSIX_ENTRY_DATA    8
#define MSIX_ENTRY_CTRL    12
#define MSIX_ENTRY_MASKED  1u

static u64 mmio_window_next = PCI_MMIO_WINDOW_START;
static struct spinlock pci_lock;

static u32 config_address(const struct pci_dev *d, u16 off)
{
	return 0x80000000u | ((u32)d->bus << 16) | ((u32)d->dev << 11) | ((u32)d->fn << 8) |
	       (off & 0xfc);
}

u32 pci_read32(const struct pci_dev *d, u16 off)
{
	spin_lock(&pci_lock);
	outl(PCI_CONFIG_ADDR, config_address(d, off));
	u32 v = inl(PCI_CONFIG_DATA);
	spin_unlock(&pci_lock);
	return v;
}

u16 pci_read16(const struct pci_dev *d, u16 off)
{
	spin_lock(&pci_lock);
	outl(PCI_CONFIG_ADDR, config_address(d, off));
	u16 v = inw(PCI_CONFIG_DATA + (off & 2));
	spin_unlock(&pci_lock);
	return v;
}

u8 pci_read8(const struct pci_dev *d, u16 off)
{
	spin_lock(&pci_lock);
	outl(PCI_CONFIG_ADDR, config_address(d, off));
	u8 v = inb(PCI_CONFIG_DATA + (off & 3));
	spin_unlock(&pci_lock);
	return v;
}

void pci_write32(const struct pci_dev *d, u16 off, u32 v)
{
	spin_lock(&pci_lock);
	outl(PCI_CONFIG_ADDR, config_address(d, off));
	outl(PCI_CONFIG_DATA, v);
	spin_unlock(&pci_lock);
}

void pci_write16(const struct pci_dev *d, u16 off, u16 v)
{
	spin_lock(&pci_lock);
	outl(PCI_CONFIG_ADDR, config_address(d, off));
	outw(PCI_CONFIG_DATA + (off & 2), v);
	spin_unlock(&pci_lock);
}

void pci_write8(const struct pci_dev *d, u16 off, u8 v)
{
	spin_lock(&pci_lock);
	outl(PCI_CONFIG_ADDR, config_address(d, off));
	outb(PCI_CONFIG_DATA + (off & 3), v);
	spin_unlock(&pci_lock);
}

static bool pci_probe(u8 bus, u8 dev, u8 fn, struct pci_dev *out)
{
	struct pci_dev d = { .bus = bus, .dev = dev, .fn = fn };
	u32 id = pci_read32(&d, PCI_VENDOR_ID);

	if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0)
		return false;
	u32 cls = pci_read32(&d, PCI_CLASS_REVISION);
	d.vendor = (u16)id;
	d.device = (u16)(id >> 16);
	d.class_code = (u8)(cls >> 24);
	d.subclass = (u8)(cls >> 16);
	d.prog_if = (u8)(cls >> 8);
	d.header_type = pci_read8(&d, PCI_HEADER_TYPE);
	*out = d;
	return true;
}

int pci_for_each(int (*fn)(const struct pci_dev *d, void *arg), void *arg)
{
	u64 max_bus = param_u64("pci_max_bus", 0);

	for (u64 bus = 0; bus <= max_bus && bus < 256; bus++) {
		for (u8 dev = 0; dev < 32; dev++) {
			struct pci_dev d;
			if (!pci_probe((u8)bus, dev, 0, &d))
				continue;
			int r = fn(&d, arg);
			if (r)
				return r;
			if (!(d.header_type & 0x80))
				continue;   /* single-function device */
			for (u8 f = 1; f < 8; f++) {
				if (!pci_probe((u8)bus, dev, f, &d))
					continue;
				r = fn(&d, arg);
				if (r)
					return r;
			}
		}
	}
	return 0;
}

struct find_ctx {
	u16 vendor, device;
	int class_code, subclass;    /* -1 = match by ids */
	unsigned nth;
	struct pci_dev *out;
};

static int find_cb(const struct pci_dev *d, void *arg)
{
	struct find_ctx *c = arg;
	bool match = c->class_code >= 0
			     ? d->class_code == c->class_code && d->subclass == c->subclass
			     : (c->vendor == 0xffff || d->vendor == c->vendor) &&
				       (c->device == 0xffff || d->device == c->device);
	if (!match)
		return 0;
	if (c->nth--)
		return 0;
	*c->out = *d;
	return 1;
}

int pci_find(u16 vendor, u16 device, unsigned nth, struct pci_dev *out)
{
	struct find_ctx c = { vendor, device, -1, -1, nth, out };

	return pci_for_each(find_cb, &c) ? 0 : -1;
}

int pci_find_class(u8 class_code, u8 subclass, unsigned nth, struct pci_dev *out)
{
	struct find_ctx c = { 0, 0, class_code, subclass, nth, out };

	return pci_for_each(find_cb, &c) ? 0 : -1;
}

u8 pci_find_next_cap(const struct pci_dev *d, u8 id, u8 from)
{
	u8 off;

	if (!(pci_read16(d, PCI_STATUS) & PCI_STATUS_CAP_LIST))
		return 0;
	off = from ? pci_read8(d, from + 1) : pci_read8(d, PCI_CAP_PTR);
	/* At most 48 capabilities fit in 192 bytes: bounds a looping chain. */
	for (int guard = 0; off >= 0x40 && guard < 48; guard++) {
		off &= 0xfc;
		if (pci_read8(d, off) == id)
			return off;
		off = pci_read8(d, off + 1);
	}
	return 0;
}

u8 pci_find_cap(const struct pci_dev *d, u8 id)
{
	return pci_find_next_cap(d, id, 0);
}

void pci_enable(const struct pci_dev *d, u16 cmd_bits)
{
	pci_write16(d, PCI_COMMAND, pci_read16(d, PCI_COMMAND) | cmd_bits);
}

static u64 window_alloc(u64 size)
{
	spin_lock(&pci_lock);
	u64 a = ALIGN_UP(mmio_window_next, size < PAGE_SIZE ? PAGE_SIZE : size);
	u64 r = 0;
	if (a + size <= PCI_MMIO_WINDOW_END) {
		mmio_window_next = a + size;
		r = a;
	}
	spin_unlock(&pci_lock);
	return r;
}

u64 pci_bar(const struct pci_dev *d, unsigned bar, u64 *size, bool *is_io)
{
	u16 off = (u16)(PCI_BAR0 + 4 * bar);
	u32 lo = pci_read32(d, off);
	bool io = lo & BAR_IO;
	bool is64 = !io && (lo & 0x6) == BAR_TYPE_64;
	u32 hi = is64 ? pci_read32(d, off + 4) : 0;

	/* Size with decoding off so the probe value is never decoded (PCI 3.0 §6.2.5.1). */
	u16 cmd = pci_read16(d, PCI_COMMAND);
	pci_write16(d, PCI_COMMAND, cmd & ~(PCI_CMD_IO | PCI_CMD_MEMORY));
	pci_write32(d, off, 0xffffffff);
	u64 mask = pci_read32(d, off);
	pci_write32(d, off, lo);
	if (is64) {
		pci_write32(d, off + 4, 0xffffffff);
		mask |= (u64)pci_read32(d, off + 4) << 32;
		pci_write32(d, off + 4, hi);
	} else {
		mask |= io ? 0xffff0000ULL | 0xffffffff00000000ULL : 0xffffffff00000000ULL;
	}
	pci_write16(d, PCI_COMMAND, cmd);

	mask &= io ? BAR_IO_MASK : BAR_MEM_MASK;
	u64 sz = mask ? (~mask + 1) : 0;
	u64 addr = io ? (lo & BAR_IO_MASK) : (((u64)hi << 32) | (lo & BAR_MEM_MASK));
	if (io)
		sz &= 0xffff;

	if (sz && !io && addr == 0) {
		addr = window_alloc(sz);
		if (addr) {
			pci_write32(d, off, (u32)addr | (lo & 0xf));
			if (is64)
				pci_write32(d, off + 4, (u32)(addr >> 32));
		}
	}
	if (size)
		*size = sz;
	if (is_io)
		*is_io = io;
	return sz ? addr : 0;
}

int msix_init(const struct pci_dev *d, struct msix *m)
{
	u8 cap = pci_find_cap(d, PCI_CAP_ID_MSIX);

	if (!cap)
		return -1;
	m->dev = *d;
	m->cap = cap;
	m->table_size = (u16)((pci_read16(d, cap + MSIX_CTRL) & 0x7ff) + 1);

	u32 t = pci_read32(d, cap + MSIX_TABLE), p = pci_read32(d, cap + MSIX_PBA);
	u64 tbar = pci_bar(d, t & 7, NULL, NULL), pbar = pci_bar(d, p & 7, NULL, NULL);
	if (!tbar || !pbar)
		return -1;
	m->table = tbar + (t & ~7u);
	m->pba = pbar + (p & ~7u);
	pci_enable(d, PCI_CMD_MEMORY);
	for (u16 i = 0; i < m->table_size; i++)
		msix_mask(m, i, true);
	return 0;
}

void msix_set_entry(struct msix *m, u16 idx, u8 vector, u32 apic_id)
{
	u64 e = m->table + (u64)idx * MSIX_ENTRY_SIZE;

	mmio_write32(e + MSIX_ENTRY_ADDR_LO, (u32)GUEST_LAPIC_BASE | (apic_id << 12));
	mmio_write32(e + MSIX_ENTRY_ADDR_HI, 0);
	mmio_write32(e + MSIX_ENTRY_DATA, vector);   /* fixed delivery, edge */
}

void msix_mask(struct msix *m, u16 idx, bool masked)
{
	u64 c = m->table + (u64)idx * MSIX_ENTRY_SIZE + MSIX_ENTRY_CTRL;
	u32 v = mmio_read32(c);

	mmio_write32(c, masked ? (v | MSIX_ENTRY_MASKED) : (v & ~MSIX_ENTRY_MASKED));
}

bool msix_pending(struct msix *m, u16 idx)
{
	return (mmio_read64(m->pba + (idx / 64) * 8) >> (idx % 64)) & 1;
}

void msix_enable(struct msix *m, bool on)
{
	u16 ctrl = pci_read16(&m->dev, m->cap + MSIX_CTRL);

	ctrl &= ~MSIX_CTRL_FUNC_MASK;
	ctrl = on ? (ctrl | MSIX_CTRL_ENABLE) : (ctrl & ~MSIX_CTRL_ENABLE);
	if (on)
		pci_enable(&m->dev, PCI_CMD_INTX_DISABLE | PCI_CMD_BUS_MASTER);
	pci_write16(&m->dev, m->cap + MSIX_CTRL, ctrl);
}
