/* The test VF's device logic (see nic.h and nic_regs.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tests/vfio-user-nic/nic.h"

static void nic_cfg16(struct nic *n, unsigned off, uint16_t v) { memcpy(n->st.config + off, &v, 2); }
static void nic_cfg32(struct nic *n, unsigned off, uint32_t v) { memcpy(n->st.config + off, &v, 4); }

/* Extended capability header (PCIe 6.0 §7.6.3): ID, version, next. */
static void nic_ext_cap(struct nic *n, unsigned off, uint16_t id, unsigned ver, unsigned next)
{
	nic_cfg32(n, off, id | (uint32_t)ver << 16 | (uint32_t)next << 20);
}

/* A PCI Express endpoint: the capability in the header, then a chain of
 * extended ones mixing what a VMM can show with what it must hide. */
static void nic_config_pcie(struct nic *n)
{
	n->st.config[VFNIC_VNDR_CAP + 1] = VFNIC_EXP_CAP;
	n->st.config[VFNIC_EXP_CAP] = 0x10;                 /* PCI Express */
	nic_cfg16(n, VFNIC_EXP_CAP + 2, 0x0002);            /* v2, endpoint */
	nic_cfg32(n, VFNIC_EXP_CAP + 4, 0x00008000);        /* DEVCAP: role-based error rep. */
	nic_ext_cap(n, VFNIC_EXT_SRIOV, 0x10, 1, VFNIC_EXT_AER);
	nic_cfg16(n, VFNIC_EXT_SRIOV + 0x0e, 8);            /* TotalVFs */
	nic_ext_cap(n, VFNIC_EXT_AER, 0x01, 2, VFNIC_EXT_ATS);
	nic_cfg32(n, VFNIC_EXT_AER + 0x0c, 0x00462030);     /* uncorrectable severity default */
	nic_ext_cap(n, VFNIC_EXT_ATS, 0x0f, 1, VFNIC_EXT_DSN);
	nic_ext_cap(n, VFNIC_EXT_DSN, 0x03, 1, VFNIC_EXT_REBAR);
	nic_cfg32(n, VFNIC_EXT_DSN + 4, (uint32_t)VFNIC_DSN);
	nic_cfg32(n, VFNIC_EXT_DSN + 8, (uint32_t)(VFNIC_DSN >> 32));
	nic_ext_cap(n, VFNIC_EXT_REBAR, 0x15, 1, VFNIC_EXT_VSEC);
	nic_ext_cap(n, VFNIC_EXT_VSEC, 0x0b, 1, 0);
	nic_cfg32(n, VFNIC_EXT_VSEC + 4, 0x1 | 1u << 16 | 0x00cu << 20);   /* VSEC id 1, rev 1, 12 bytes */
}

static void nic_config_defaults(struct nic *n)
{
	memset(n->st.config, 0, sizeof(n->st.config));
	nic_cfg16(n, 0x00, VFNIC_VENDOR_ID);
	nic_cfg16(n, 0x02, VFNIC_DEVICE_ID);
	nic_cfg16(n, 0x06, 0x0010);                     /* status: capability list */
	nic_cfg32(n, 0x08, (VFNIC_CLASS << 8) | 0x01);  /* class, revision 1 */
	nic_cfg32(n, 0x10, 0x0);                        /* BAR0: 32-bit memory */
	nic_cfg32(n, 0x18, 0x0);                        /* BAR2: 32-bit memory */
	nic_cfg16(n, 0x2c, VFNIC_VENDOR_ID);
	nic_cfg16(n, 0x2e, 0x0001);
	n->st.config[0x34] = VFNIC_MSIX_CAP;
	n->st.config[0x3d] = 1;                         /* INTA# */
	/* MSI-X capability (PCI 3.0 §6.8.2): table and PBA in BAR0. */
	n->st.config[VFNIC_MSIX_CAP] = 0x11;
	n->st.config[VFNIC_MSIX_CAP + 1] = VFNIC_PM_CAP;
	/* Power management (PCI PM 1.2): PMC version 3, PMCSR D0. */
	n->st.config[VFNIC_PM_CAP] = 0x01;
	n->st.config[VFNIC_PM_CAP + 1] = VFNIC_VNDR_CAP;
	nic_cfg16(n, VFNIC_PM_CAP + 2, 0x0003);
	/* Vendor-specific: 8 bytes, the IRQ status mirrored live at +4. */
	n->st.config[VFNIC_VNDR_CAP] = 0x09;
	n->st.config[VFNIC_VNDR_CAP + 1] = 0;
	n->st.config[VFNIC_VNDR_CAP + 2] = 8;
	/* An MSI capability would go here on a real VF: none, MSI-X only. */
	nic_cfg16(n, VFNIC_MSIX_CAP + 2, VFNIC_NR_VECTORS - 1);
	nic_cfg32(n, VFNIC_MSIX_CAP + 4, VFNIC_MSIX_TABLE | 0);
	nic_cfg32(n, VFNIC_MSIX_CAP + 8, VFNIC_MSIX_PBA | 0);
	nic_config_pcie(n);
}

static void nic_stats_publish(struct nic *n)
{
	if (!n->bar2)
		return;
	uint32_t v[5] = { VFNIC_BAR2_STATS_MAGIC, n->st.tx_frames, n->st.rx_frames,
			  n->st.dma_faults, n->st.rx_drops };
	memcpy(n->bar2, v, sizeof(v));
}

void nic_reset(struct nic *n)
{
	memset(&n->st, 0, sizeof(n->st));
	nic_config_defaults(n);
	nic_stats_publish(n);
}

void nic_init(struct nic *n, const struct nic_env *env, uint8_t *bar2)
{
	memset(n, 0, sizeof(*n));
	n->env = *env;
	n->bar2 = bar2;
	nic_reset(n);
}

static void nic_fault(struct nic *n, uint64_t iova)
{
	n->st.dma_faults++;
	n->st.fault_addr = iova;
	n->st.status |= VFNIC_STATUS_FAULT;
	fprintf(stderr, "vfio-user-nic: DMA to unmapped IOVA 0x%llx refused\n",
		(unsigned long long)iova);
}

static int nic_dma(struct nic *n, uint64_t iova, void *buf, uint32_t len, bool write)
{
	int ret = n->env.dma(n->env.opaque, iova, buf, len, write);

	if (ret)
		nic_fault(n, iova);
	return ret;
}

struct nic_desc {
	uint64_t addr;
	uint16_t len, flags;
	uint32_t reserved;
};

static bool nic_ring_ok(uint32_t size)
{
	return size && size <= VFNIC_MAX_RING && !(size & (size - 1));
}

/* Put one frame into the next posted RX buffer; false if none or on a fault. */
static bool nic_rx_deliver(struct nic *n, const uint8_t *frame, uint32_t len)
{
	struct nic_desc d;
	uint64_t at;

	if (!(n->st.ctrl & VFNIC_CTRL_ENABLE) || !nic_ring_ok(n->st.rx_size) ||
	    n->st.rx_head == n->st.rx_tail) {
		n->st.rx_drops++;
		return false;
	}
	at = n->st.rx_ring + (uint64_t)(n->st.rx_head & (n->st.rx_size - 1)) * VFNIC_DESC_SIZE;
	if (nic_dma(n, at, &d, sizeof(d), false))
		return false;
	if (d.len < len) {
		d.flags = VFNIC_DESC_DONE | VFNIC_DESC_ERR;
		d.len = 0;
		n->st.rx_drops++;
	} else {
		if (nic_dma(n, d.addr, (void *)frame, len, true))
			return false;
		d.len = (uint16_t)len;
		d.flags = VFNIC_DESC_DONE;
		n->st.rx_frames++;
	}
	if (nic_dma(n, at, &d, sizeof(d), true))
		return false;
	n->st.rx_head++;
	return true;
}

static void nic_tx(struct nic *n)
{
	uint8_t frame[VFNIC_MAX_FRAME];
	bool tx_done = false, rx_done = false;

	if (!(n->st.ctrl & VFNIC_CTRL_ENABLE))
		return;
	if (!nic_ring_ok(n->st.tx_size) || n->st.tx_tail - n->st.tx_head > n->st.tx_size) {
		n->st.status |= VFNIC_STATUS_ERROR;
		return;
	}
	while (n->st.tx_head != n->st.tx_tail) {
		uint64_t at = n->st.tx_ring +
			      (uint64_t)(n->st.tx_head & (n->st.tx_size - 1)) * VFNIC_DESC_SIZE;
		struct nic_desc d;

		if (nic_dma(n, at, &d, sizeof(d), false))
			break;
		if (!d.len || d.len > VFNIC_MAX_FRAME || nic_dma(n, d.addr, frame, d.len, false)) {
			d.flags = VFNIC_DESC_DONE | VFNIC_DESC_ERR;
		} else {
			d.flags = VFNIC_DESC_DONE;
			n->st.tx_frames++;
			if (n->env.wire_tx)
				n->env.wire_tx(n->env.opaque, frame, d.len);
			else
				rx_done |= nic_rx_deliver(n, frame, d.len);   /* loopback wire */
		}
		if (nic_dma(n, at, &d, sizeof(d), true))
			break;
		n->st.tx_head++;
		tx_done = true;
	}
	nic_stats_publish(n);
	if (tx_done) {
		n->st.irq_status |= 1u << VFNIC_VEC_TX;
		n->env.irq(n->env.opaque, VFNIC_VEC_TX);
	}
	if (rx_done) {
		n->st.irq_status |= 1u << VFNIC_VEC_RX;
		n->env.irq(n->env.opaque, VFNIC_VEC_RX);
	}
}

void nic_wire_rx(struct nic *n, const uint8_t *frame, uint32_t len)
{
	if (!len || len > VFNIC_MAX_FRAME || !nic_rx_deliver(n, frame, len))
		return;
	nic_stats_publish(n);
	n->st.irq_status |= 1u << VFNIC_VEC_RX;
	n->env.irq(n->env.opaque, VFNIC_VEC_RX);
}

uint32_t nic_bar0_read(struct nic *n, uint32_t off)
{
	switch (off) {
	case VFNIC_REG_ID: return VFNIC_MAGIC;
	case VFNIC_REG_CTRL: return n->st.ctrl;
	case VFNIC_REG_STATUS: return n->st.status;
	case VFNIC_REG_TX_RING_LO: return (uint32_t)n->st.tx_ring;
	case VFNIC_REG_TX_RING_HI: return (uint32_t)(n->st.tx_ring >> 32);
	case VFNIC_REG_TX_SIZE: return n->st.tx_size;
	case VFNIC_REG_TX_TAIL: return n->st.tx_tail;
	case VFNIC_REG_TX_HEAD: return n->st.tx_head;
	case VFNIC_REG_RX_RING_LO: return (uint32_t)n->st.rx_ring;
	case VFNIC_REG_RX_RING_HI: return (uint32_t)(n->st.rx_ring >> 32);
	case VFNIC_REG_RX_SIZE: return n->st.rx_size;
	case VFNIC_REG_RX_TAIL: return n->st.rx_tail;
	case VFNIC_REG_RX_HEAD: return n->st.rx_head;
	case VFNIC_REG_IRQ_STATUS: return n->st.irq_status;
	case VFNIC_REG_TX_FRAMES: return n->st.tx_frames;
	case VFNIC_REG_RX_FRAMES: return n->st.rx_frames;
	case VFNIC_REG_DMA_FAULTS: return n->st.dma_faults;
	case VFNIC_REG_RX_DROPS: return n->st.rx_drops;
	case VFNIC_REG_FAULT_LO: return (uint32_t)n->st.fault_addr;
	case VFNIC_REG_FAULT_HI: return (uint32_t)(n->st.fault_addr >> 32);
	case VFNIC_REG_BAR2_TRAPS: return n->bar2_traps;
	default: return 0;
	}
}

static void nic_set_lo(uint64_t *r, uint32_t v) { *r = (*r & ~0xffffffffull) | v; }
static void nic_set_hi(uint64_t *r, uint32_t v) { *r = (*r & 0xffffffffull) | ((uint64_t)v << 32); }

void nic_bar0_write(struct nic *n, uint32_t off, uint32_t val)
{
	switch (off) {
	case VFNIC_REG_CTRL:
		if (val & VFNIC_CTRL_RESET) {
			nic_reset(n);
			return;
		}
		n->st.ctrl = val & VFNIC_CTRL_ENABLE;
		break;
	case VFNIC_REG_TX_RING_LO: nic_set_lo(&n->st.tx_ring, val); break;
	case VFNIC_REG_TX_RING_HI: nic_set_hi(&n->st.tx_ring, val); break;
	case VFNIC_REG_TX_SIZE: n->st.tx_size = val; break;
	case VFNIC_REG_TX_TAIL:
		n->st.tx_tail = val;
		nic_tx(n);
		break;
	case VFNIC_REG_RX_RING_LO: nic_set_lo(&n->st.rx_ring, val); break;
	case VFNIC_REG_RX_RING_HI: nic_set_hi(&n->st.rx_ring, val); break;
	case VFNIC_REG_RX_SIZE: n->st.rx_size = val; break;
	case VFNIC_REG_RX_TAIL: n->st.rx_tail = val; break;
	case VFNIC_REG_IRQ_STATUS: n->st.irq_status &= ~val; break;
	case VFNIC_REG_IRQ_FIRE:
		for (unsigned v = 0; v < VFNIC_NR_VECTORS; v++)
			if (val & (1u << v)) {
				n->st.irq_status |= 1u << v;
				n->env.irq(n->env.opaque, v);
			}
		break;
	default:
		break;
	}
}

void nic_config_read(struct nic *n, uint32_t off, void *buf, uint32_t len)
{
	nic_cfg32(n, VFNIC_VNDR_CAP + 4, n->st.irq_status);
	nic_cfg32(n, VFNIC_EXT_VSEC + 8, n->st.irq_status);
	memcpy(buf, n->st.config + off, len);
}

void nic_config_write(struct nic *n, uint32_t off, const void *buf, uint32_t len)
{
	/* Only the command register (memory/bus-master/INTx disable) is writable
	 * here; BARs and MSI-X are virtualized by the VMM. */
	for (uint32_t i = 0; i < len; i++) {
		uint32_t o = off + i;
		uint8_t b = ((const uint8_t *)buf)[i];

		if (o == 0x04)
			n->st.config[o] = b & 0x06;
		else if (o == 0x05)
			n->st.config[o] = b & 0x04;
		else if (o == VFNIC_PM_CAP + 4)
			n->st.config[o] = b & 0x03;   /* PMCSR power state */
		else if (o >= VFNIC_EXT_AER + 8 && o < VFNIC_EXT_AER + 12)
			n->st.config[o] = b;          /* AER uncorrectable error mask */
	}
}
