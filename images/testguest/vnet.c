/* Test-guest virtio-net driver. See vnet.h. */
#include "vnet.h"

#include "apic.h"
#include "idt.h"

/* virtio_pci_common_cfg offsets (virtio 1.2 §4.1.4.3). */
#define CC_DFSELECT   0x00
#define CC_DF         0x04
#define CC_GFSELECT   0x08
#define CC_GF         0x0c
#define CC_MSIX_CFG   0x10
#define CC_STATUS     0x14
#define CC_Q_SELECT   0x16
#define CC_Q_SIZE     0x18
#define CC_Q_MSIX     0x1a
#define CC_Q_ENABLE   0x1c
#define CC_Q_NOFF     0x1e
#define CC_Q_DESC     0x20
#define CC_Q_DRIVER   0x28
#define CC_Q_DEVICE   0x30

#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR    3
#define CAP_DEVICE 4
#define NO_VECTOR  0xffff
#define USED_F_NO_NOTIFY 1

static struct vnet *irq_dev;

static void vnet_irq(struct int_frame *f)
{
	if (irq_dev)
		irq_dev->rx_irqs++;
	lapic_eoi();
}

u8 vnet_status(struct vnet *v)
{
	return mmio_read8(v->common + CC_STATUS);
}

static void set_status(struct vnet *v, u8 s)
{
	mmio_write8(v->common + CC_STATUS, s);
}

void vnet_reset(struct vnet *v)
{
	set_status(v, 0);
	while (vnet_status(v) != 0)   /* §4.1.4.3.2: reset done when it reads 0 */
		cpu_relax();
}

static int find_caps(struct vnet *v)
{
	u64 bar = 0;

	for (u8 c = pci_find_cap(&v->pci, PCI_CAP_ID_VENDOR); c;
	     c = pci_find_next_cap(&v->pci, PCI_CAP_ID_VENDOR, c)) {
		u8 type = pci_read8(&v->pci, c + 3), b = pci_read8(&v->pci, c + 4);
		u32 off = pci_read32(&v->pci, c + 8);

		bar = pci_bar(&v->pci, b, NULL, NULL);
		if (!bar)
			return -1;
		if (type == CAP_COMMON)
			v->common = bar + off;
		else if (type == CAP_ISR)
			v->isr = bar + off;
		else if (type == CAP_DEVICE)
			v->device = bar + off;
		else if (type == CAP_NOTIFY) {
			v->notify_base = bar + off;
			v->notify_mult = pci_read32(&v->pci, c + 16);
		}
	}
	return (v->common && v->notify_base && v->device) ? 0 : -1;
}

static void queue_alloc(struct vnet_queue *q, u16 index, u16 size)
{
	q->index = index;
	q->size = size;   /* up to 256: desc table, avail and used ring each fit a page */
	if (!q->bufs) {
		q->desc = page_alloc(1);
		q->avail = page_alloc(1);
		u8 *u = page_alloc(1);
		q->used_hdr = (volatile u16 *)u;
		q->used = (volatile struct vq_used_elem *)(u + 4);
		q->bufs = page_alloc((u64)size * VNET_BUF_SIZE / PAGE_SIZE);
	}
	memset(q->desc, 0, PAGE_SIZE);
	memset((void *)q->avail, 0, PAGE_SIZE);
	memset((void *)q->used_hdr, 0, PAGE_SIZE);
	q->avail_idx = q->last_used = 0;
}

static int queue_setup(struct vnet *v, struct vnet_queue *q, u16 vector)
{
	mmio_write16(v->common + CC_Q_SELECT, q->index);
	if (mmio_read16(v->common + CC_Q_SIZE) < q->size)
		return -1;
	mmio_write16(v->common + CC_Q_SIZE, q->size);
	mmio_write64(v->common + CC_Q_DESC, (u64)q->desc);
	mmio_write64(v->common + CC_Q_DRIVER, (u64)q->avail);
	mmio_write64(v->common + CC_Q_DEVICE, (u64)q->used_hdr);
	mmio_write16(v->common + CC_Q_MSIX, vector);
	q->notify = v->notify_base + (u64)mmio_read16(v->common + CC_Q_NOFF) * v->notify_mult;
	mmio_write16(v->common + CC_Q_ENABLE, 1);
	return 0;
}

void vnet_notify(struct vnet *v, struct vnet_queue *q)
{
	mmio_write16(q->notify, q->index);
}

static bool event_idx(const struct vnet *v)
{
	return v->features & VNET_F_EVENT_IDX;
}

/* avail_event sits after the used ring, used_event after the avail ring (§2.7.10). */
static u16 avail_event(const struct vnet_queue *q)
{
	return *(volatile u16 *)((volatile u8 *)q->used_hdr + 4 + 8 * q->size);
}

static void set_used_event(struct vnet_queue *q, u16 idx)
{
	q->avail[2 + q->size] = idx;
}

/* Kick if the device asked for it: EVENT_IDX (vring_need_event) or flags. */
static void kick(struct vnet *v, struct vnet_queue *q, u16 old_idx)
{
	__asm__ volatile("lock; addl $0, (%%rsp)" ::: "memory", "cc");   /* publish idx before reading the device's wish */
	if (event_idx(v)) {
		u16 ev = avail_event(q), n = q->avail_idx;

		if ((u16)(n - ev - 1) < (u16)(n - old_idx))
			vnet_notify(v, q);
	} else if (!(q->used_hdr[0] & USED_F_NO_NOTIFY)) {
		vnet_notify(v, q);
	}
}

static void publish(struct vnet_queue *q, u16 head)
{
	q->avail[2 + q->avail_idx % q->size] = head;
	barrier();
	q->avail_idx++;
	q->avail[1] = q->avail_idx;
}

void vnet_post_raw(struct vnet *v, struct vnet_queue *q, u16 head)
{
	v->tx_same_len = 0;   /* the caller rewrote descriptors */
	barrier();
	publish(q, head);
}

static void rx_fill(struct vnet *v, struct vnet_queue *q)
{
	for (u16 i = 0; i < q->size; i++) {
		q->desc[i].addr = (u64)(q->bufs + (u64)i * VNET_BUF_SIZE);
		q->desc[i].len = VNET_BUF_SIZE;
		q->desc[i].flags = VQ_DESC_F_WRITE;
		publish(q, i);
	}
	vnet_notify(v, q);
}

/* VIRTIO_NET_CTRL_MQ / VQ_PAIRS_SET (§5.1.6.5.5): class, command, u16 pairs
 * readable; one ack byte writable. Polls for the answer. */
static int vnet_ctrl_mq(struct vnet *v, u16 pairs)
{
	struct vnet_queue *q = &v->ctrl;
	u8 *cmd = q->bufs, *ack = q->bufs + 64;

	cmd[0] = 4;   /* VIRTIO_NET_CTRL_MQ */
	cmd[1] = 0;   /* VQ_PAIRS_SET */
	cmd[2] = (u8)pairs;
	cmd[3] = (u8)(pairs >> 8);
	*ack = 0xff;
	q->desc[0] = (struct vq_desc){ (u64)cmd, 4, VQ_DESC_F_NEXT, 1 };
	q->desc[1] = (struct vq_desc){ (u64)ack, 1, VQ_DESC_F_WRITE, 0 };
	barrier();
	publish(q, 0);
	vnet_notify(v, q);
	for (u64 end = time_us() + 2000000; q->used_hdr[1] == q->last_used; ) {
		if (time_us() > end)
			return -1;
		cpu_relax();
	}
	q->last_used++;
	return *(volatile u8 *)ack == 0 ? 0 : -1;   /* VIRTIO_NET_OK */
}

int vnet_init(struct vnet *v, u64 want)
{
	u64 offered;

	if (!v->common) {
		if (pci_find(0x1af4, 0x1041, 0, &v->pci) != 0)
			return -1;
		pci_enable(&v->pci, PCI_CMD_MEMORY | PCI_CMD_BUS_MASTER);
		if (find_caps(v) != 0)
			return -2;
		if (msix_init(&v->pci, &v->msix) != 0)
			return -3;
		lapic_init();
		v->rx_vector = idt_alloc_vector();
		if (!v->rx_vector)
			return -3;
		irq_dev = v;
		idt_set_handler(v->rx_vector, vnet_irq);
		for (u16 e = 1; e <= 2 && e < v->msix.table_size; e++) {
			msix_set_entry(&v->msix, e, v->rx_vector, lapic_id());
			msix_mask(&v->msix, e, false);
		}
		msix_enable(&v->msix, true);
	}
	vnet_reset(v);
	set_status(v, VIRTIO_S_ACK | VIRTIO_S_DRIVER);
	mmio_write32(v->common + CC_DFSELECT, 0);
	offered = mmio_read32(v->common + CC_DF);
	mmio_write32(v->common + CC_DFSELECT, 1);
	offered |= (u64)mmio_read32(v->common + CC_DF) << 32;
	v->features = offered & want;
	mmio_write32(v->common + CC_GFSELECT, 0);
	mmio_write32(v->common + CC_GF, (u32)v->features);
	mmio_write32(v->common + CC_GFSELECT, 1);
	mmio_write32(v->common + CC_GF, (u32)(v->features >> 32));
	set_status(v, VIRTIO_S_ACK | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);
	if (!(vnet_status(v) & VIRTIO_S_FEATURES_OK))
		return -4;
	for (int i = 0; i < 6; i++)
		v->mac[i] = mmio_read8(v->device + (u64)i);
	mmio_write16(v->common + CC_MSIX_CFG, NO_VECTOR);
	queue_alloc(&v->rx, 0, VNET_QSZ);
	queue_alloc(&v->tx, 1, VNET_TX_QSZ);
	if (queue_setup(v, &v->rx, 1) || queue_setup(v, &v->tx, NO_VECTOR))
		return -5;
	v->pairs = 1;
	u16 max_pairs = mmio_read16(v->device + 8);   /* virtio_net_config.max_virtqueue_pairs */
	bool mq = (v->features & (VNET_F_MQ | VNET_F_CTRL_VQ)) == (VNET_F_MQ | VNET_F_CTRL_VQ) &&
		  max_pairs >= 2 && v->msix.table_size > 2;
	if (mq) {
		queue_alloc(&v->rx1, 2, VNET_QSZ);
		queue_alloc(&v->ctrl, (u16)(2 * max_pairs), VNET_QSZ);
		if (queue_setup(v, &v->rx1, 2) || queue_setup(v, &v->ctrl, NO_VECTOR))
			return -5;
	}
	v->tx_free = v->tx.size;
	v->tx_same_len = 0;
	v->cur = &v->rx;
	set_status(v, VIRTIO_S_ACK | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK | VIRTIO_S_DRIVER_OK);
	rx_fill(v, &v->rx);
	if (mq) {
		rx_fill(v, &v->rx1);
		if (vnet_ctrl_mq(v, 2) != 0)
			return -6;
		v->pairs = 2;
	}
	return 0;
}

u32 vnet_tx_reclaim(struct vnet *v)
{
	struct vnet_queue *q = &v->tx;
	u16 used = q->used_hdr[1];
	u32 n = (u16)(used - q->last_used);

	q->last_used = used;
	v->tx_free += n;
	return n;
}

int vnet_send(struct vnet *v, const void *frame, u32 len)
{
	struct vnet_queue *q = &v->tx;
	u16 idx;
	u8 *buf;

	vnet_tx_reclaim(v);
	if (!v->tx_free || len + VNET_HDR_LEN > VNET_BUF_SIZE)
		return -1;
	v->tx_same_len = 0;   /* this descriptor points elsewhere now */
	idx = q->avail_idx % q->size;
	buf = q->bufs + (u64)idx * VNET_BUF_SIZE;
	memset(buf, 0, VNET_HDR_LEN);
	memcpy(buf + VNET_HDR_LEN, frame, len);
	q->desc[idx].addr = (u64)buf;
	q->desc[idx].len = len + VNET_HDR_LEN;
	q->desc[idx].flags = 0;
	v->tx_free--;
	barrier();
	u16 old = q->avail_idx;
	publish(q, idx);
	kick(v, q, old);
	return 0;
}

/* Every TX descriptor -> @buf_gpa, avail slot i -> descriptor i. Only on an
 * idle ring: descriptors in flight must not change under the device. */
static void tx_template(struct vnet *v, u64 buf_gpa, u32 len)
{
	struct vnet_queue *q = &v->tx;

	for (u16 i = 0; i < q->size; i++) {
		q->desc[i].addr = buf_gpa;
		q->desc[i].len = len;
		q->desc[i].flags = 0;
		q->avail[2 + i] = i;
	}
	v->tx_same_gpa = buf_gpa;
	v->tx_same_len = len;
}

u32 vnet_send_same(struct vnet *v, u64 buf_gpa, u32 len, u32 n)
{
	struct vnet_queue *q = &v->tx;
	u32 done = 0;
	u16 old = q->avail_idx;

	vnet_tx_reclaim(v);
	if ((v->tx_same_gpa != buf_gpa || v->tx_same_len != len) && v->tx_free == q->size)
		tx_template(v, buf_gpa, len);
	if (v->tx_same_gpa == buf_gpa && v->tx_same_len == len) {
		/* The ring already says it all: publish @done more entries. */
		done = n < v->tx_free ? n : v->tx_free;
		q->avail_idx = (u16)(q->avail_idx + done);
		v->tx_free -= done;
	}
	while (done < n && v->tx_free) {
		u16 idx = q->avail_idx % q->size;

		q->desc[idx].addr = buf_gpa;
		q->desc[idx].len = len;
		q->desc[idx].flags = 0;
		q->avail[2 + idx] = idx;
		q->avail_idx++;
		v->tx_free--;
		done++;
	}
	if (done) {
		barrier();
		q->avail[1] = q->avail_idx;
		kick(v, q, old);
	}
	return done;
}

u8 *vnet_recv(struct vnet *v, u32 *len)
{
	struct vnet_queue *q = &v->rx;
	u16 used = q->used_hdr[1];
	u32 id, l;

	if (used == q->last_used && v->pairs > 1) {
		q = &v->rx1;
		used = q->used_hdr[1];
	}
	if (used == q->last_used)
		return NULL;
	barrier();
	v->cur = q;
	v->rx_per_queue[q == &v->rx1]++;
	id = q->used[q->last_used % q->size].id;
	l = q->used[q->last_used % q->size].len;
	if (id >= q->size || l < VNET_HDR_LEN || l > VNET_BUF_SIZE) {
		*len = 0;
		return q->bufs;   /* let the caller skip it */
	}
	*len = l - VNET_HDR_LEN;
	return q->bufs + (u64)id * VNET_BUF_SIZE + VNET_HDR_LEN;
}

void vnet_rx_done(struct vnet *v)
{
	struct vnet_queue *q = v->cur;
	u32 id = q->used[q->last_used % q->size].id;

	u16 old = q->avail_idx;

	q->last_used++;
	if (id < q->size)
		publish(q, (u16)id);
	kick(v, q, old);
}

void vnet_wait_rx(struct vnet *v)
{
	irq_disable();
	/* EVENT_IDX: interrupt me when the next buffer is used. */
	set_used_event(&v->rx, v->rx.last_used);
	if (v->pairs > 1)
		set_used_event(&v->rx1, v->rx1.last_used);
	__asm__ volatile("lock; addl $0, (%%rsp)" ::: "memory", "cc");
	if (v->rx.used_hdr[1] == v->rx.last_used &&
	    (v->pairs < 2 || v->rx1.used_hdr[1] == v->rx1.last_used))
		irq_enable_and_halt();
	else
		irq_enable();
}
