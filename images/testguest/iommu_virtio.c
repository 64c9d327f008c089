/* Polled virtio-pci transport, virtio-iommu driver and VIOT lookup for the
 * iommu scenarios. See iommu_virtio.h. */
#include "iommu_virtio.h"

#include "acpi.h"

/* virtio 1.2 §4.1.4: vendor capability types and common config offsets. */
#define VCAP_COMMON 1
#define VCAP_NOTIFY 2
#define VCAP_DEVICE 4
#define CC_DFSELECT 0x00
#define CC_DF       0x04
#define CC_GFSELECT 0x08
#define CC_GF       0x0c
#define CC_STATUS   0x14
#define CC_QSELECT  0x16
#define CC_QSIZE    0x18
#define CC_QENABLE  0x1c
#define CC_QNOTIFY  0x1e
#define CC_QDESC    0x20
#define CC_QDRIVER  0x28
#define CC_QDEVICE  0x30

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8

#define F_VERSION_1 (1ULL << 32)

static void write64_split(u64 a, u64 v)
{
	/* Two 32-bit halves, as drivers do on 32-bit-only buses (§4.1.3.1). */
	mmio_write32(a, (u32)v);
	mmio_write32(a + 4, (u32)(v >> 32));
}

static u64 bar_addr(const struct pci_dev *d, u8 bar)
{
	return pci_bar(d, bar, NULL, NULL);
}

static int find_caps(struct gvirtio *v)
{
	u8 off = pci_find_cap(&v->pci, PCI_CAP_ID_VENDOR);

	for (; off; off = pci_find_next_cap(&v->pci, PCI_CAP_ID_VENDOR, off)) {
		u8 type = pci_read8(&v->pci, off + 3);
		u64 base = bar_addr(&v->pci, pci_read8(&v->pci, off + 4));
		u64 addr = base + pci_read32(&v->pci, off + 8);

		if (!base)
			continue;
		if (type == VCAP_COMMON)
			v->common = addr;
		else if (type == VCAP_NOTIFY) {
			v->notify = addr;
			v->notify_mult = pci_read32(&v->pci, off + 16);
		} else if (type == VCAP_DEVICE)
			v->device = addr;
	}
	return v->common && v->notify && v->device ? 0 : -1;
}

u8 gvirtio_status(struct gvirtio *v)
{
	return mmio_read8(v->common + CC_STATUS);
}

void gvirtio_reset(struct gvirtio *v)
{
	mmio_write8(v->common + CC_STATUS, 0);
	while (gvirtio_status(v))
		cpu_relax();
}

int gvirtio_init(struct gvirtio *v, u16 device_id, unsigned nth, u64 want)
{
	u64 have;

	memset(v, 0, sizeof(*v));
	if (pci_find(0x1af4, (u16)(0x1040 + device_id), nth, &v->pci))
		return -1;
	if (find_caps(v))
		return -1;
	pci_enable(&v->pci, PCI_CMD_MEMORY | PCI_CMD_BUS_MASTER);
	/* §3.1.1: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK. */
	mmio_write8(v->common + CC_STATUS, 0);
	while (gvirtio_status(v))
		cpu_relax();
	mmio_write8(v->common + CC_STATUS, S_ACK);
	mmio_write8(v->common + CC_STATUS, S_ACK | S_DRIVER);
	mmio_write32(v->common + CC_DFSELECT, 0);
	have = mmio_read32(v->common + CC_DF);
	mmio_write32(v->common + CC_DFSELECT, 1);
	have |= (u64)mmio_read32(v->common + CC_DF) << 32;
	want |= F_VERSION_1;
	if ((have & want) != want) {
		guest_printf("virtio %04x: wants features 0x%lx, device has 0x%lx\n", device_id,
			     (unsigned long)want, (unsigned long)have);
		return -1;
	}
	v->features = want;
	mmio_write32(v->common + CC_GFSELECT, 0);
	mmio_write32(v->common + CC_GF, (u32)want);
	mmio_write32(v->common + CC_GFSELECT, 1);
	mmio_write32(v->common + CC_GF, (u32)(want >> 32));
	mmio_write8(v->common + CC_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	if (!(gvirtio_status(v) & S_FEATURES_OK))
		return -1;
	return 0;
}

int gvq_setup(struct gvirtio *v, struct gvq *q, u16 index, u64 ring_gpa, u64 ring_dma)
{
	u16 max;

	memset(q, 0, sizeof(*q));
	mmio_write16(v->common + CC_QSELECT, index);
	max = mmio_read16(v->common + CC_QSIZE);
	if (max < VQ_SIZE)
		return -1;
	q->index = index;
	q->size = VQ_SIZE;
	q->ring_gpa = ring_gpa;
	q->ring_dma = ring_dma;
	q->desc = (volatile struct gvq_desc *)ring_gpa;
	q->avail = (volatile u16 *)(ring_gpa + 0x200);
	q->used = (volatile u32 *)(ring_gpa + 0x400);
	memset((void *)ring_gpa, 0, PAGE_SIZE);
	mmio_write16(v->common + CC_QSIZE, VQ_SIZE);
	write64_split(v->common + CC_QDESC, ring_dma);
	write64_split(v->common + CC_QDRIVER, ring_dma + 0x200);
	write64_split(v->common + CC_QDEVICE, ring_dma + 0x400);
	q->notify_addr = v->notify + (u64)mmio_read16(v->common + CC_QNOTIFY) * v->notify_mult;
	mmio_write16(v->common + CC_QENABLE, 1);
	return 0;
}

void gvirtio_driver_ok(struct gvirtio *v)
{
	mmio_write8(v->common + CC_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

u16 gvq_post(struct gvq *q, const struct gbuf *bufs, unsigned n)
{
	/* Chains of at most 2 descriptors at 2 * (slot), up to 4 outstanding. */
	u16 head = (u16)((q->avail_idx * 2) % q->size);

	for (unsigned i = 0; i < n; i++) {
		volatile struct gvq_desc *d = &q->desc[head + i];

		d->addr = bufs[i].addr;
		d->len = bufs[i].len;
		d->flags = (u16)((i + 1 < n ? GVQ_F_NEXT : 0) | (bufs[i].write ? GVQ_F_WRITE : 0));
		d->next = (u16)(head + i + 1);
	}
	q->avail[2 + q->avail_idx % q->size] = head;
	barrier();
	q->avail_idx++;
	q->avail[1] = q->avail_idx;
	return head;
}

void gvq_kick(struct gvq *q)
{
	barrier();
	mmio_write16(q->notify_addr, q->index);
}

u16 gvq_submit(struct gvq *q, const struct gbuf *bufs, unsigned n)
{
	u16 head = gvq_post(q, bufs, n);

	gvq_kick(q);
	return head;
}

u16 gvq_used_idx(struct gvq *q)
{
	return ((volatile u16 *)q->used)[1];
}

int gvq_wait(struct gvq *q, u32 *len, u64 timeout_us)
{
	u64 start = time_us();

	while (gvq_used_idx(q) == q->last_used) {
		if (time_us() - start > timeout_us)
			return -1;
		cpu_relax();
	}
	barrier();
	if (len)
		*len = q->used[2 + 2 * (q->last_used % q->size)];
	q->last_used++;
	return 0;
}

/* ---- virtio-iommu ---- */

#define T_ATTACH 1
#define T_DETACH 2
#define T_MAP    3
#define T_UNMAP  4
#define T_PROBE  5
#define REQ_TIMEOUT_US 2000000

static void put32(u8 *p, u32 v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (u8)(v >> (8 * i));
}

static void put64(u8 *p, u64 v)
{
	put32(p, (u32)v);
	put32(p + 4, (u32)(v >> 32));
}

static int request(struct giommu *io, u32 in_len, u32 out_len)
{
	struct gbuf b[2] = {
		{ (u64)io->req_buf, in_len, false },
		{ (u64)io->out_buf, out_len, true },
	};
	u32 used;

	memset(io->out_buf, 0xee, out_len);
	gvq_submit(&io->req, b, 2);
	if (gvq_wait(&io->req, &used, REQ_TIMEOUT_US))
		return -1;
	if (used == 0)
		return -1;
	return io->out_buf[out_len - 4];
}

int giommu_attach(struct giommu *io, u32 domain, u32 ep)
{
	memset(io->req_buf, 0, 20);
	io->req_buf[0] = T_ATTACH;
	put32(io->req_buf + 4, domain);
	put32(io->req_buf + 8, ep);
	return request(io, 20, 4);
}

int giommu_detach(struct giommu *io, u32 domain, u32 ep)
{
	memset(io->req_buf, 0, 20);
	io->req_buf[0] = T_DETACH;
	put32(io->req_buf + 4, domain);
	put32(io->req_buf + 8, ep);
	return request(io, 20, 4);
}

int giommu_map(struct giommu *io, u32 domain, u64 va, u64 size, u64 pa, u32 flags)
{
	memset(io->req_buf, 0, 36);
	io->req_buf[0] = T_MAP;
	put32(io->req_buf + 4, domain);
	put64(io->req_buf + 8, va);
	put64(io->req_buf + 16, va + size - 1);
	put64(io->req_buf + 24, pa);
	put32(io->req_buf + 32, flags);
	return request(io, 36, 4);
}

int giommu_unmap(struct giommu *io, u32 domain, u64 va, u64 size)
{
	memset(io->req_buf, 0, 28);
	io->req_buf[0] = T_UNMAP;
	put32(io->req_buf + 4, domain);
	put64(io->req_buf + 8, va);
	put64(io->req_buf + 16, va + size - 1);
	return request(io, 28, 4);
}

int giommu_probe(struct giommu *io, u32 ep)
{
	memset(io->req_buf, 0, 72);
	io->req_buf[0] = T_PROBE;
	put32(io->req_buf + 4, ep);
	return request(io, 72, io->probe_size + 4);
}

static void post_event_buffer(struct giommu *io)
{
	/* Event buffer i lives at evt_buf + 64 * (descriptor head). */
	u16 head = (u16)((io->evt.avail_idx * 2) % io->evt.size);
	struct gbuf b = { (u64)io->evt_buf + 64ULL * head, 64, true };

	gvq_submit(&io->evt, &b, 1);
}

int giommu_wait_fault(struct giommu *io, u8 *reason, u32 *flags, u32 *ep, u64 *addr,
		      u64 timeout_us)
{
	u16 slot = io->evt.last_used;
	u32 len, id;
	const u8 *e;

	if (gvq_wait(&io->evt, &len, timeout_us))
		return -1;
	id = io->evt.used[1 + 2 * (slot % io->evt.size)];
	if (len < 24 || id >= io->evt.size)
		return -1;
	e = io->evt_buf + 64 * id;
	*reason = e[0];
	memcpy(flags, e + 4, 4);
	memcpy(ep, e + 8, 4);
	memcpy(addr, e + 16, 8);
	post_event_buffer(io);
	return 0;
}

int giommu_init(struct giommu *io)
{
	/* INPUT_RANGE, DOMAIN_RANGE, MAP_UNMAP, PROBE (§5.13.3). */
	const u64 want = (1ULL << 0) | (1ULL << 1) | (1ULL << 2) | (1ULL << 4);
	u8 *rings;

	memset(io, 0, sizeof(*io));
	if (gvirtio_init(&io->v, 23, 0, want))
		return -1;
	io->page_size_mask = mmio_read32(io->v.device) | (u64)mmio_read32(io->v.device + 4) << 32;
	io->input_start = mmio_read32(io->v.device + 8) | (u64)mmio_read32(io->v.device + 12) << 32;
	io->input_end = mmio_read32(io->v.device + 16) | (u64)mmio_read32(io->v.device + 20) << 32;
	io->domain_start = mmio_read32(io->v.device + 24);
	io->domain_end = mmio_read32(io->v.device + 28);
	io->probe_size = mmio_read32(io->v.device + 32);
	if (io->probe_size > 1024)
		return -1;
	rings = page_alloc(5);
	if (!rings)
		return -1;
	io->req_buf = rings + 2 * PAGE_SIZE;
	io->out_buf = rings + 3 * PAGE_SIZE;
	io->evt_buf = rings + 4 * PAGE_SIZE;
	/* The IOMMU's own queues are not translated: guest-physical addresses. */
	if (gvq_setup(&io->v, &io->req, 0, (u64)rings, (u64)rings) ||
	    gvq_setup(&io->v, &io->evt, 1, (u64)rings + PAGE_SIZE, (u64)rings + PAGE_SIZE))
		return -1;
	gvirtio_driver_ok(&io->v);
	for (int i = 0; i < 3; i++)
		post_event_buffer(io);
	return 0;
}

/* ---- ACPI VIOT (ACPI 6.4 §5.2.30) ---- */

static u16 get16(const u8 *p) { return (u16)(p[0] | p[1] << 8); }
static u32 get32(const u8 *p) { return get16(p) | (u32)get16(p + 2) << 16; }

long viot_endpoint(u16 iommu_bdf, u16 bdf)
{
	const struct acpi_header *h = acpi_find_table("VIOT", false);
	const u8 *t = (const u8 *)h;
	u32 off, n, iommu_off = 0;

	if (!h || h->length < 48)
		return -1;
	/* First the virtio-pci IOMMU node (type 3) for @iommu_bdf... */
	off = get16(t + 38);
	for (n = get16(t + 36); n && off + 4 <= h->length; n--, off += get16(t + off + 2)) {
		if (t[off] == 3 && get16(t + off + 6) == iommu_bdf)
			iommu_off = off;
		if (get16(t + off + 2) == 0)
			return -1;
	}
	if (!iommu_off)
		return -1;
	/* ...then a PCI range (type 1) covering @bdf that points at it. */
	off = get16(t + 38);
	for (n = get16(t + 36); n && off + 24 <= h->length; n--, off += get16(t + off + 2)) {
		if (t[off] != 1 || get16(t + off + 16) != iommu_off)
			continue;
		if (bdf >= get16(t + off + 12) && bdf <= get16(t + off + 14))
			return (long)(get32(t + off + 4) + (u32)(bdf - get16(t + off + 12)));
	}
	return -1;
}
