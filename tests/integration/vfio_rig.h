/* A vfio-user test rig without any VM: our client connected over a
 * socketpair to the test VF server (build/tests/vfio-user-nic, or
 * $VFIO_USER_NIC), a memfd as "guest RAM", and the register and descriptor
 * helpers a guest driver would use. Helpers assert (Criterion) on failure. */
#ifndef TESTS_INTEGRATION_VFIO_RIG_H
#define TESTS_INTEGRATION_VFIO_RIG_H

#include <stdint.h>
#include <sys/types.h>

#include "tests/vfio-user-nic/nic_regs.h"
#include "vfio/vfio_backend.h"
#include "vmm/mem.h"

#define RAM_SIZE   (4u << 20)
#define TX_RING    0x10000
#define RX_RING    0x20000
#define TX_BUFS    0x100000
#define RX_BUFS    0x200000
#define RING_N     16

struct rig {
	pid_t pid;                      /* the server process (our child) */
	struct guest_mem mem;
	struct vfio_backend *be;
	int efd[VFNIC_NR_VECTORS];
};

struct desc {
	uint64_t addr;
	uint16_t len, flags;
	uint32_t reserved;
};

/* The test VF server binary: $VFIO_USER_NIC, or <build>/tests/vfio-user-nic
 * next to $VMM_IMAGES (<build>/images). Caller frees. */
char *vf_server_path(void);
/* Start the server with @extra arguments (NULL-terminated, may be NULL) and
 * connect; returns vfio_user_open()'s result. */
int rig_start(struct rig *r, const char *const extra[]);
void rig_stop(struct rig *r);
uint32_t reg_read(struct rig *r, uint32_t off);
void reg_write(struct rig *r, uint32_t off, uint32_t v);
void map_all_ram(struct rig *r);
void setup_irqs(struct rig *r);
uint64_t irq_count(struct rig *r, int v);
void put_desc(struct rig *r, uint64_t ring, unsigned i, uint64_t addr, uint16_t len);
struct desc get_desc(struct rig *r, uint64_t ring, unsigned i);
/* Rings at TX_RING/RX_RING, @rx_posted RX buffers at RX_BUFS, device enabled. */
void program_rings(struct rig *r, unsigned rx_posted);

#endif
