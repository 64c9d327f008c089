/* virtio-net (virtio 1.2 §5.1) over the modern PCI transport, with a TAP or
 * macvtap back end.
 *
 * Queues: rx0, tx0, rx1, tx1, ..., rx(N-1), tx(N-1), ctrl (§5.1.2). One TAP
 * queue (IFF_MULTI_QUEUE) or one /dev/tapN open per pair. Frames carry the
 * 12-byte virtio_net_hdr_mrg_rxbuf on both sides (TUNSETVNETHDRSZ 12), so the
 * data path is zero-copy: readv/writev straight between guest buffers and
 * the back-end fd (TX copies only the header, to sanitize it).
 *
 * Features: CSUM, GUEST_CSUM, GUEST/HOST TSO4/TSO6/ECN/UFO (as far as the TAP
 * accepts TUNSETOFFLOAD), MRG_RXBUF, MAC, STATUS, MTU, CTRL_VQ, MQ,
 * GUEST_ANNOUNCE. Negotiated guest offloads are set with TUNSETOFFLOAD.
 *
 * Event flow: the device owns one io_uring; multishot polls on every queue's
 * kick eventfd and every back-end fd complete into it, and the ring fd is
 * watched by the VM's event loop. Nothing spins while idle: with EVENT_IDX
 * the device asks for a kick only when it has drained a queue, and it reads
 * the TAP only while the guest has RX buffers posted.
 *
 * Quiesce (VM paused: migration, snapshot, restore): the data path runs
 * synchronously under vdev.lock (io_uring only polls; no read or write is
 * ever in flight there), so once the quiesced flag is set under that lock
 * nothing reads the TAP or writes guest RAM until the data path restarts.
 * Frames meanwhile wait in the TAP, TX chains in the ring. */
#ifndef DEVICES_VIRTIO_NET_H
#define DEVICES_VIRTIO_NET_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio.h"
#include "devices/virtio_pci.h"
#include "vmm/config.h"
#include "vmm/device.h"

#define VIRTIO_NET_HDR_LEN     12       /* struct virtio_net_hdr_mrg_rxbuf */
#define VIRTIO_NET_QUEUE_SIZE  256
#define VIRTIO_NET_MAX_PAIRS   16
#define VIRTIO_NET_RX_ELEMS    32       /* most buffers merged into one frame */
#define VIRTIO_NET_TX_BUDGET   256      /* frames per TX pass before yielding */
#define VIRTIO_NET_DEFAULT_MTU 1500

struct virtio_net;

struct net_queue_pair {
	struct virtio_net *net;
	unsigned index;
	int fd;                        /* TAP queue / macvtap fd, non-blocking */
	struct virtqueue *rxq, *txq;
	bool rx_blocked;               /* TAP has data, guest has no buffers */
	struct virtq_elem *rx_elems;   /* VIRTIO_NET_RX_ELEMS */
	struct virtq_elem *tx_elem;
	/* Counters (frames, bytes, errors). */
	uint64_t rx_frames, rx_bytes, rx_no_buffers, rx_errors;
	uint64_t tx_frames, tx_bytes, tx_errors, tx_batches;
};

/* Serializable device state (besides the virtio common state). */
struct virtio_net_state {
	uint8_t mac[6];
	uint16_t status;               /* VIRTIO_NET_S_* */
	uint16_t active_pairs;         /* set by VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET */
};

struct virtio_net {
	struct device dev;
	struct vm *vm;                 /* NULL in unit tests */
	struct net_config cfg;
	struct virtio_device vdev;
	struct virtio_pci vp;
	bool pci_attached;
	struct virtio_net_state st;
	uint16_t mtu;
	unsigned nr_pairs;             /* max_virtqueue_pairs */
	struct net_queue_pair *qp;
	struct virtq_elem *ctrl_elem;
	unsigned tun_offloads;         /* TUN_F_* the back end accepted when probed */
	struct io_uring ring;
	bool ring_ready, ring_in_loop;
	uint64_t ctrl_cmds, ctrl_errors, announces;
};

/* Open the back end and create the device on @vm's PCI bus (vm->pci); on
 * error write a one-line reason ("net0: TAP 'tap9' does not exist ...") to @err. */
int virtio_net_create(struct vm *vm, const struct net_config *cfg, unsigned idx, char *err,
		      size_t errlen);

/* Build a device around already-open back-end fds (one per pair; taken over
 * and closed by destroy). No PCI, no event loop: for unit tests and the
 * device-side benchmark. @tun_offloads: TUN_F_* the fds accept (0 for pipes). */
int virtio_net_init(struct virtio_net *net, const char *name, struct guest_mem *mem,
		    const struct net_config *cfg, const int *fds, unsigned nr_pairs,
		    unsigned tun_offloads);
void virtio_net_uninit(struct virtio_net *net);

/* Data path (vdev.lock held). Return frames moved, or -errno when the
 * device went NEEDS_RESET. tx_process sends at most VIRTIO_NET_TX_BUDGET
 * frames; *more is set if the queue still had work. */
int virtio_net_tx_process(struct net_queue_pair *qp, bool *more);
int virtio_net_rx_process(struct net_queue_pair *qp);
int virtio_net_ctrl_process(struct virtio_net *net);

/* Ask the guest to announce itself (after migration): sets
 * VIRTIO_NET_S_ANNOUNCE and sends a config interrupt (§5.1.6.5.4). */
int virtio_net_announce(struct virtio_net *net);
/* The same for every virtio-net of @vm (after restore / incoming migration);
 * returns how many devices were asked. */
int virtio_net_announce_all(struct vm *vm);

/* Stop (@on) or restart the data path (device_ops quiesce/unquiesce; see
 * above). Restarting looks at every queue once. */
void virtio_net_quiesce(struct virtio_net *net, bool on);

/* After a load replaced the virtio and device state (virtio_net_state.c):
 * bring the back end in line (TUNSETOFFLOAD for the negotiated offloads,
 * TUNSETQUEUE for the active pairs) and quiesce the data path (frames the
 * TAP delivers meanwhile wait there) until the VM resumes: an interrupt sent
 * before the irqchip/LAPIC state is written would be lost, and a migration
 * destination must not touch guest RAM before the hand-over is committed. */
void virtio_net_backend_sync(struct virtio_net *net);
/* The whole VM is restored (vCPU and irqchip state written, vCPUs not yet
 * running): ask the guest to announce itself (GUEST_ANNOUNCE) so peers
 * relearn the MAC on the new host. The data path restarts with vm_resume(). */
void virtio_net_restore_done(struct virtio_net *net);
int virtio_net_restore_done_all(struct vm *vm);
/* device_ops save/load (virtio_net_state.c). */
struct state_node;
int virtio_net_dev_save(struct device *dev, struct state_node *node);
int virtio_net_dev_load(struct device *dev, const struct state_node *node);

/* Back ends (virtio_net_tap.c). Each returns fds[nr] non-blocking with the
 * vnet header enabled, or -errno with a one-line reason in @err. */
int net_tap_open(const char *ifname, unsigned *nr_queues, bool queues_given, int *fds,
		 char *err, size_t errlen);
int net_macvtap_open(const char *ifname, unsigned *nr_queues, bool queues_given, int *fds,
		     uint8_t mac[6], char *err, size_t errlen);
/* An fd handed over by another process (live update) is a TAP/macvtap
 * queue of @ifname with the vnet header on; -EINVAL and a reason otherwise. */
int net_backend_check_fd(int fd, const char *ifname, char *err, size_t errlen);
/* Live update, source side: the back-end fds (one per queue pair, still
 * owned by the device) of @vm's @idx-th virtio-net and the TUN_F_* offloads
 * it accepts. Returns the number of fds, -ENOENT (no such NIC) or -E2BIG. */
int virtio_net_backend_fds(struct vm *vm, unsigned idx, int *fds, unsigned max, unsigned *tun_offloads);
/* Probe which TUN_F_* offloads the fd accepts (leaves them off). */
unsigned net_tap_probe_offloads(int fd);
int net_tap_set_offloads(int fd, unsigned tun_flags);
/* Enable/disable one TAP queue for RX steering (TUNSETQUEUE). */
int net_tap_set_queue_active(int fd, bool active);

#endif
