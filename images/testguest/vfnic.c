/* Guest driver for the test VF (see vfnic.h and tests/vfio-user-nic/nic_regs.h). */
#include "apic.h"
#include "idt.h"
#include "iommu_virtio.h"
#include "vfnic.h"

volatile u32 vfnic_irqs[VFNIC_NR_VECTORS];

static void vfnic_tx_irq(struct int_frame *f)
{
	vfnic_irqs[VFNIC_VEC_TX]++;
	lapic_eoi();
}

static void vfnic_rx_irq(struct int_frame *f)
{
	vfnic_irqs[VFNIC_VEC_RX]++;
	lapic_eoi();
}

u32 vfnic_rd(struct vfnic *n, u32 reg)
{
	return mmio_read32(n->bar0 + reg);
}

void vfnic_wr(struct vfnic *n, u32 reg, u32 v)
{
	mmio_write32(n->bar0 + reg, v);
}

void vfnic_open(struct vfnic *n, u64 iova_base)
{
	u64 size;
	bool io;

	memset(n, 0, sizeof(*n));
	n->iova_base = iova_base;
	if (pci_find(VFNIC_VENDOR_ID, VFNIC_DEVICE_ID, 0, &n->pci))
		fail("no test VF (%04x:%04x) on PCI", VFNIC_VENDOR_ID, VFNIC_DEVICE_ID);
	n->bar0 = pci_bar(&n->pci, 0, &size, &io);
	if (!n->bar0 || io || size < VFNIC_BAR0_SIZE)
		fail("VF BAR0 unusable (0x%lx, %lu bytes)", (unsigned long)n->bar0,
		     (unsigned long)size);
	pci_enable(&n->pci, PCI_CMD_MEMORY | PCI_CMD_BUS_MASTER);
	if (vfnic_rd(n, VFNIC_REG_ID) != VFNIC_MAGIC)
		fail("VF BAR0 ID 0x%x, expected 0x%x", vfnic_rd(n, VFNIC_REG_ID), VFNIC_MAGIC);
	lapic_init();
	if (msix_init(&n->pci, &n->msix) || n->msix.table_size < VFNIC_NR_VECTORS)
		fail("VF MSI-X unusable");
	for (unsigned v = 0; v < VFNIC_NR_VECTORS; v++) {
		n->vec[v] = idt_alloc_vector();
		if (!n->vec[v])
			fail("no free interrupt vector");
		idt_set_handler(n->vec[v], v == VFNIC_VEC_TX ? vfnic_tx_irq : vfnic_rx_irq);
		msix_set_entry(&n->msix, (u16)v, n->vec[v], lapic_id());
		msix_mask(&n->msix, (u16)v, false);
		vfnic_irqs[v] = 0;
	}
	msix_enable(&n->msix, true);
	irq_enable();
	/* Rings and buffers: one page per ring, 32 KiB per buffer set. */
	n->tx = page_alloc(1);
	n->rx = page_alloc(1);
	n->tx_buf = page_alloc(VFNIC_RING_N * VFNIC_BUF / 4096);
	n->rx_buf = page_alloc(VFNIC_RING_N * VFNIC_BUF / 4096);
	vfnic_wr(n, VFNIC_REG_TX_RING_LO, (u32)vfnic_dma(n, n->tx));
	vfnic_wr(n, VFNIC_REG_TX_RING_HI, (u32)(vfnic_dma(n, n->tx) >> 32));
	vfnic_wr(n, VFNIC_REG_TX_SIZE, VFNIC_RING_N);
	vfnic_wr(n, VFNIC_REG_RX_RING_LO, (u32)vfnic_dma(n, n->rx));
	vfnic_wr(n, VFNIC_REG_RX_RING_HI, (u32)(vfnic_dma(n, n->rx) >> 32));
	vfnic_wr(n, VFNIC_REG_RX_SIZE, VFNIC_RING_N);
}

void vfnic_start(struct vfnic *n)
{
	for (u32 i = 0; i < VFNIC_RING_N; i++) {
		n->rx[i].addr = vfnic_dma(n, n->rx_buf + i * VFNIC_BUF);
		n->rx[i].len = VFNIC_BUF;
		n->rx[i].flags = 0;
	}
	n->rx_tail = VFNIC_RING_N;
	vfnic_wr(n, VFNIC_REG_RX_TAIL, n->rx_tail);
	vfnic_wr(n, VFNIC_REG_CTRL, VFNIC_CTRL_ENABLE);
}

void vfnic_queue_tx(struct vfnic *n, const u8 *data, u16 len)
{
	u32 slot = n->tx_tail % VFNIC_RING_N;
	u8 *buf = n->tx_buf + slot * VFNIC_BUF;

	memcpy(buf, data, len);
	n->tx[slot].addr = vfnic_dma(n, buf);
	n->tx[slot].len = len;
	n->tx[slot].flags = 0;
	n->tx_tail++;
}

void vfnic_kick(struct vfnic *n)
{
	vfnic_wr(n, VFNIC_REG_TX_TAIL, n->tx_tail);
}

bool vfnic_wait_irq(unsigned v, u32 count, u64 timeout_us)
{
	u64 t0 = time_us();

	while (vfnic_irqs[v] < count) {
		if (time_us() - t0 > timeout_us)
			return false;
		/* The interrupt may already be pending: sti;hlt takes it. The
		 * LAPIC timer is not armed, so poll with short halts via pause. */
		irq_enable();
		__asm__ volatile("pause");
	}
	return true;
}

static void vfnic_map_one(struct vfnic *n, struct giommu *io, u32 domain, void *p, u64 len,
			  const char *what)
{
	int st = giommu_map(io, domain, vfnic_dma(n, p), len, (u64)p, GIOMMU_MAP_R | GIOMMU_MAP_W);

	if (st)
		fail("vIOMMU MAP of the VF's %s: status %d", what, st);
}

void vfnic_iommu_map(struct vfnic *n, struct giommu *io, u32 domain, bool tx_bufs, bool rx_bufs)
{
	long ep = viot_endpoint(gpci_bdf(&io->v.pci), gpci_bdf(&n->pci));
	int st;

	if (ep < 0)
		fail("the VIOT does not put the VF behind the vIOMMU");
	st = giommu_attach(io, domain, (u32)ep);
	if (st)
		fail("vIOMMU ATTACH of the VF: status %d", st);
	vfnic_map_one(n, io, domain, n->tx, 4096, "TX ring");
	vfnic_map_one(n, io, domain, n->rx, 4096, "RX ring");
	if (tx_bufs)
		vfnic_map_one(n, io, domain, n->tx_buf, VFNIC_RING_N * VFNIC_BUF, "TX buffers");
	if (rx_bufs)
		vfnic_map_one(n, io, domain, n->rx_buf, VFNIC_RING_N * VFNIC_BUF, "RX buffers");
}
