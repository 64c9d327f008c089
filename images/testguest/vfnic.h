/* Guest driver for the test VF (tests/vfio-user-nic): find it on PCI, map
 * BAR0, set up MSI-X (one vector per queue) and the TX/RX rings. Device
 * addresses are guest-physical (no vIOMMU in the guest). */
#ifndef TESTGUEST_VFNIC_H
#define TESTGUEST_VFNIC_H

#include "guest.h"
#include "pci.h"
#include "../../tests/vfio-user-nic/nic_regs.h"

#define VFNIC_RING_N 16
#define VFNIC_BUF    2048

struct vfnic_desc {
	u64 addr;
	u16 len, flags;
	u32 reserved;
};

struct vfnic {
	struct pci_dev pci;
	u64 bar0;
	struct msix msix;
	u8 vec[VFNIC_NR_VECTORS];        /* IDT vectors */
	struct vfnic_desc *tx, *rx;      /* rings */
	u8 *tx_buf, *rx_buf;             /* VFNIC_RING_N buffers each */
	u32 tx_tail, rx_tail;
	u64 iova_base;                   /* device address = guest-physical + iova_base */
};

/* Per-vector interrupt counts (written by the handlers). */
extern volatile u32 vfnic_irqs[VFNIC_NR_VECTORS];

u32 vfnic_rd(struct vfnic *n, u32 reg);
void vfnic_wr(struct vfnic *n, u32 reg, u32 v);
/* Find, enable and program the device; fail()s if absent or inconsistent.
 * The device sees guest memory at guest-physical + @iova_base (0 without a
 * vIOMMU; with one the caller maps those IOVAs, see vfnic_iommu_map). */
void vfnic_open(struct vfnic *n, u64 iova_base);
static inline u64 vfnic_dma(const struct vfnic *n, const void *p)
{
	return (u64)p + n->iova_base;
}
/* Behind virtio-iommu: attach the VF to @domain and map its rings (and the
 * TX/RX buffers when @tx_bufs/@rx_bufs) at guest-physical + iova_base. */
struct giommu;
void vfnic_iommu_map(struct vfnic *n, struct giommu *io, u32 domain, bool tx_bufs, bool rx_bufs);
/* Post every RX buffer and enable the device. */
void vfnic_start(struct vfnic *n);
/* Queue one frame in TX slot (tx_tail % N) without ringing the doorbell. */
void vfnic_queue_tx(struct vfnic *n, const u8 *data, u16 len);
void vfnic_kick(struct vfnic *n);
/* Halt until vfnic_irqs[v] >= @count or @timeout_us passes; true if reached. */
bool vfnic_wait_irq(unsigned v, u32 count, u64 timeout_us);

#endif
