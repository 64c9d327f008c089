/* The test VF's device logic, independent of the transport: registers,
 * TX/RX rings in guest memory, loopback wire. DMA and interrupts go through
 * callbacks the vfio-user server provides. All device state is in struct
 * nic_state (plain values, no pointers) so a later migration can copy it. */
#ifndef TESTS_VFIO_USER_NIC_NIC_H
#define TESTS_VFIO_USER_NIC_NIC_H

#include <stdbool.h>
#include <stdint.h>

#include "tests/vfio-user-nic/nic_regs.h"

struct nic_state {
	uint32_t ctrl, status;
	uint64_t tx_ring, rx_ring;
	uint32_t tx_size, rx_size;
	uint32_t tx_head, tx_tail, rx_head, rx_tail;
	uint32_t irq_status;
	uint32_t tx_frames, rx_frames, dma_faults, rx_drops;
	uint64_t fault_addr;
	uint8_t config[VFNIC_CFG_SIZE];   /* PCI Express config space as the device holds it */
};

struct nic_env {
	/* Device DMA: 0, or -EFAULT if the IOVA range is not mapped for this access. */
	int (*dma)(void *opaque, uint64_t iova, void *buf, uint32_t len, bool write);
	void (*irq)(void *opaque, unsigned vector);
	/* Optional: a frame leaves on the wire (TAP); NULL = loopback. */
	void (*wire_tx)(void *opaque, const uint8_t *frame, uint32_t len);
	void *opaque;
};

struct nic {
	struct nic_state st;
	struct nic_env env;
	uint8_t *bar2;                /* shared stats page (mmapped by the client) */
	uint32_t bar2_traps;          /* transport statistic, not device state */
};

void nic_init(struct nic *n, const struct nic_env *env, uint8_t *bar2);
void nic_reset(struct nic *n);
uint32_t nic_bar0_read(struct nic *n, uint32_t off);
void nic_bar0_write(struct nic *n, uint32_t off, uint32_t val);
/* A frame arrived from the wire: into the next RX buffer, RX vector raised.
 * Dropped (and counted) when disabled or without a posted buffer. */
void nic_wire_rx(struct nic *n, const uint8_t *frame, uint32_t len);
void nic_config_read(struct nic *n, uint32_t off, void *buf, uint32_t len);
void nic_config_write(struct nic *n, uint32_t off, const void *buf, uint32_t len);

#endif
