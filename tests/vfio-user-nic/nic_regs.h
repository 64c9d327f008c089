/* The test VF: a simple SR-IOV-style NIC function served over vfio-user.
 * Register map of BAR0 (4 KiB, 32-bit registers, trapped) shared by the
 * server, the host-side tests and the test guest's driver.
 *
 * Rings live in guest memory and are reached by device DMA (IOVAs):
 *   descriptor = { u64 addr; u16 len; u16 flags; u32 reserved }  (16 bytes)
 *   TX: driver fills descriptors, writes TX_TAIL (free-running index);
 *       device sends head..tail-1, sets DONE (or ERR), advances TX_HEAD.
 *   RX: driver posts empty buffers (len = capacity), writes RX_TAIL; device
 *       fills them in order, sets len and DONE, advances RX_HEAD.
 * Indices are free-running u32; ring sizes are powers of two <= 4096.
 * MSI-X: vector 0 = TX completion, vector 1 = RX; table at 0x800, PBA at
 * 0xC00 of BAR0 (the VMM emulates both; the device only signals eventfds).
 * INTx (INTA#) when no MSI-X vector is configured: level, asserted while
 * IRQ_STATUS != 0, automasked, re-asserted on unmask if still pending.
 * BAR2 (8 KiB) is a memory window, mmappable in its first 4 KiB only (sparse
 * mmap capability): STATS_* mirror the counters there for lock-free reads. */
#ifndef TESTS_VFIO_USER_NIC_REGS_H
#define TESTS_VFIO_USER_NIC_REGS_H

#define VFNIC_VENDOR_ID   0x1b36
#define VFNIC_DEVICE_ID   0x11f0
#define VFNIC_CLASS       0x020000      /* Ethernet controller */
#define VFNIC_MAGIC       0x56464e43    /* "VFNC" */

#define VFNIC_BAR0_SIZE   0x1000
#define VFNIC_BAR2_SIZE   0x2000
#define VFNIC_NR_VECTORS  2
#define VFNIC_VEC_TX      0
#define VFNIC_VEC_RX      1
#define VFNIC_MSIX_TABLE  0x800
#define VFNIC_MSIX_PBA    0xc00
#define VFNIC_MSIX_CAP    0x40
#define VFNIC_PM_CAP      0x50          /* power management: PMCSR writable */
#define VFNIC_VNDR_CAP    0x60          /* vendor-specific: +4 = IRQ_STATUS, live */
#define VFNIC_EXP_CAP     0x70          /* PCI Express v2, endpoint: 4 KiB config space */
/* The PCI Express extended capability chain (config 0x100+), in chain order.
 * A VMM must hide SR-IOV, ATS and Resizable BAR and keep the chain valid. */
#define VFNIC_EXT_SRIOV   0x100         /* SR-IOV (0x10): hidden */
#define VFNIC_EXT_AER     0x140         /* AER (0x01) v2: +8 uncorrectable mask, writable */
#define VFNIC_EXT_ATS     0x190         /* ATS (0x0f): hidden */
#define VFNIC_EXT_DSN     0x1a0         /* Device Serial Number (0x03) */
#define VFNIC_EXT_REBAR   0x1b0         /* Resizable BAR (0x15): hidden */
#define VFNIC_EXT_VSEC    0x1c0         /* Vendor-Specific (0x0b): +8 = IRQ_STATUS, live; last */
#define VFNIC_DSN         0x0123456789abcdefULL
#define VFNIC_CFG_SIZE    0x1000

#define VFNIC_REG_ID          0x00   /* RO magic */
#define VFNIC_REG_CTRL        0x04
#define   VFNIC_CTRL_ENABLE   (1u << 0)
#define   VFNIC_CTRL_RESET    (1u << 1)   /* self-clearing */
#define VFNIC_REG_STATUS      0x08   /* RO */
#define   VFNIC_STATUS_FAULT  (1u << 0)   /* a DMA was refused; see FAULT_ADDR */
#define   VFNIC_STATUS_ERROR  (1u << 1)   /* bad ring programming */
#define VFNIC_REG_TX_RING_LO  0x10
#define VFNIC_REG_TX_RING_HI  0x14
#define VFNIC_REG_TX_SIZE     0x18
#define VFNIC_REG_TX_TAIL     0x1c   /* doorbell */
#define VFNIC_REG_TX_HEAD     0x20   /* RO */
#define VFNIC_REG_RX_RING_LO  0x30
#define VFNIC_REG_RX_RING_HI  0x34
#define VFNIC_REG_RX_SIZE     0x38
#define VFNIC_REG_RX_TAIL     0x3c
#define VFNIC_REG_RX_HEAD     0x40   /* RO */
#define VFNIC_REG_IRQ_STATUS  0x50   /* W1C: bit n = vector n fired */
#define VFNIC_REG_IRQ_FIRE    0x54   /* test hook: write a vector mask to fire it */
#define VFNIC_REG_TX_FRAMES   0x60
#define VFNIC_REG_RX_FRAMES   0x64
#define VFNIC_REG_DMA_FAULTS  0x68
#define VFNIC_REG_RX_DROPS    0x6c
#define VFNIC_REG_FAULT_LO    0x70
#define VFNIC_REG_FAULT_HI    0x74
#define VFNIC_REG_BAR2_TRAPS  0x78   /* BAR2 accesses that came as REGION_READ/WRITE */

#define VFNIC_DESC_SIZE   16
#define VFNIC_DESC_DONE   (1u << 0)
#define VFNIC_DESC_ERR    (1u << 1)
#define VFNIC_MAX_FRAME   2048
#define VFNIC_MAX_RING    4096

#define VFNIC_BAR2_STATS_MAGIC 0x53544154   /* "STAT" at BAR2 offset 0 */

#endif
