/* virtio-net (virtio 1.2 §5.1) over the modern PCI transport, with a TAP or
 * macvtap back end.
 *
 * Queues: rx0, tx0, rx1, tx1, ..., rx(N-1), tx(N-1), ctrl (§5.1.2). One TAP
 * queue (IFF_MULTI_QUEUE) or one /dev/tapN open per pair. Frames carry the
 * 12-byte virtio_net_hdr_mrg_rxbuf on both sides (TUNSETVNETHDRSZ 12), so the
 * data path is zero-copy: io_uring READV/WRITEV straight between guest
 * buffers and the back-end fd (TX copies only the header, to sanitize it).
 *
 * Features: CSUM, GUEST_CSUM, GUEST/HOST TSO4/TSO6/ECN/UFO (as far as the TAP
 * accepts TUNSETOFFLOAD), MRG_RXBUF, MAC, STATUS, MTU, CTRL_VQ, MQ,
 * GUEST_ANNOUNCE. Negotiated guest offloads are set with TUNSETOFFLOAD.
 *
 * Event flow: the device owns one io_uring (virtio_net_io.c); multishot
 * polls on every queue's kick eventfd, the TX writes and the RX reads all
 * complete into it, and the ring fd is watched by the VM's event loop. A TX
 * kick turns into one WRITEV per frame, submitted as one batch; a chain's
 * used entry is written when its write completed. Each RX queue has one
 * READV posted ahead into the guest's buffers, parked in the kernel until
 * a frame arrives. Nothing spins while idle: with EVENT_IDX the device asks
 * for a kick only when it has drained a queue, and it posts an RX read only
 * while the guest has buffers posted. virtio_net_drain() cancels whatever
 * is in flight and waits for it (reset, save, quiesce, teardown).
 *
 * Pause: vm_pause() quiesces the device (device_ops.quiesce ->
 * virtio_net_quiesce: nothing new starts, what is in flight is drained), so
 * nothing reads the TAP or writes guest RAM until vm_resume(); frames wait
 * in the TAP, TX chains in the ring. */
#ifndef DEVICES_VIRTIO_NET_H
#define DEVICES_VIRTIO_NET_H

#include <linux/virtio_net.h>
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
#define VIRTIO_NET_IOV_POOL    2048     /* iovecs of the SQEs prepared, not yet submitted */
#define VIRTIO_NET_DEFAULT_MTU 1500

struct virtio_net;

/* A TX frame handed to the back end; its used entry waits for the write. */
struct net_tx_slot {
	struct virtio_net_hdr_mrg_rxbuf hdr;   /* the sanitized header the write sends */
	uint32_t len;                      /* bytes the write must take */
	uint16_t head;
	bool done;                         /* written (or dropped): its used entry may follow */
	bool cancelled;                    /* not taken: cancelled by a drain, or never tried behind a failed write */
};

struct net_queue_pair {
	struct virtio_net *net;
	unsigned index;
	int fd;                        /* TAP queue / macvtap fd (blocking: io_uring parks on it) */
	struct virtqueue *rxq, *txq;
	bool rx_blocked;               /* the guest has too few RX buffers posted */
	struct virtq_elem *rx_elems;   /* VIRTIO_NET_RX_ELEMS */
	struct virtq_elem *tx_elem;
	/* In flight on the io_uring (virtio_net_io.c). */
	struct net_tx_slot *tx_slots;  /* VIRTIO_NET_QUEUE_SIZE, a ring in pop order */
	uint16_t tx_head, tx_count;    /* oldest chain not yet used; chains in the ring */
	uint16_t tx_filled;            /* used entries written, not yet published */
	uint16_t tx_inflight;          /* writes submitted, not completed (one linked batch) */
	struct io_uring_sqe *tx_link_tail; /* the batch's last write SQE, not yet submitted */
	bool tx_link;                  /* the back end may push back: link each batch's writes */
	bool tx_stalled;               /* no room, or a batch in flight: resume on a completion */
	uint16_t rx_inflight;          /* chains (rx_elems[0..n)) under the posted read; 0: none */
	bool rx_polling;               /* a read failed: waiting for POLLIN before the next */
	bool rx_ready;                 /* a read completed: post the next */
	bool notify_rx;                /* RX used entries published since the last interrupt check */
	bool backend_gone;             /* the fd reported an error or hangup */
	unsigned rx_error_run;         /* failed reads in a row */
	/* Counters (frames, bytes, errors). */
	uint64_t rx_frames, rx_bytes, rx_no_buffers, rx_errors;
	uint64_t tx_frames, tx_bytes, tx_errors, tx_batches;
	uint64_t tx_given_back;        /* writes the back end never took, put back on the avail ring */
	/* Chains failed on an IOMMU translation fault (returned with length 0). */
	uint64_t rx_faults, tx_faults;
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
	bool files_registered;         /* back-end fds registered with the ring (index = pair) */
	struct iovec *iov_pool;        /* VIRTIO_NET_IOV_POOL: iovecs until their SQEs are submitted */
	unsigned iov_used;
	unsigned inflight;             /* data-path operations whose completion is outstanding */
	bool discard;                  /* draining for a reset or load: completions write nothing */
	bool kicked[VIRTIO_MAX_QUEUES];   /* kicks (and self-kicks) seen, not yet acted on */
	bool held;                     /* data path held during a restore */
	bool quiesced;                 /* data path stopped for a pause (virtio_net_quiesce) */
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

/* Data path (virtio_net_io.c; vdev.lock held). Return frames moved (TX:
 * writes submitted, some of which may come back to the avail ring if the
 * back end refuses one ahead of them), or -errno when the device went
 * NEEDS_RESET. tx_process hands at most VIRTIO_NET_TX_BUDGET chains to the
 * back end in one io_uring submission and publishes the used entries of
 * those whose write completed (with a TAP: all, before it returns); *more is
 * set if the queue still had work. While a batch waits for a back end that
 * pushes back it starts no other (returns 0; the completion resumes it).
 * rx_process delivers the frames completed reads brought and keeps one
 * read posted while the guest has buffers. A chain whose buffer the IOMMU
 * refuses fails alone (virtio.h, VIRTQ_FAULT): a TX frame is dropped, an RX
 * buffer returned empty; counted in tx_faults/rx_faults. */
int virtio_net_tx_process(struct net_queue_pair *qp, bool *more);
int virtio_net_rx_process(struct net_queue_pair *qp);
int virtio_net_ctrl_process(struct virtio_net *net);

/* Cancel every data-path operation in flight and wait for its completion
 * (vdev.lock held). Completed ones are finished as usual (TX used entries,
 * RX frames delivered); a cancelled read gives its chains back to the avail
 * ring (so a saved state is exact), and so do cancelled writes (only
 * possible while the back end pushes back) that were the last chains popped
 * from their queue: they are sent after the pause, or by the migration's
 * destination. A cancelled write followed by one the back end took is a
 * dropped frame (sending it later would reorder). With @discard (device
 * reset, state load) nothing more is written to the rings.
 * When it returns 0 no operation can write guest RAM; -ETIMEDOUT if the
 * kernel did not complete them within seconds (logged). */
int virtio_net_drain(struct virtio_net *net, bool discard);
/* Stop (@on) the data path for a pause (migration, snapshot), draining it,
 * or start it again and look at every queue. Takes vdev.lock. While
 * stopped the TAP keeps its frames and guest kicks wait. */
void virtio_net_quiesce(struct virtio_net *net, bool on);

/* Ask the guest to announce itself (after migration): sets
 * VIRTIO_NET_S_ANNOUNCE and sends a config interrupt (§5.1.6.5.4). */
int virtio_net_announce(struct virtio_net *net);
/* The same for every virtio-net of @vm (after restore / incoming migration);
 * returns how many devices were asked. */
int virtio_net_announce_all(struct vm *vm);

/* After a load replaced the virtio and device state (virtio_net_state.c):
 * bring the back end in line (TUNSETOFFLOAD for the negotiated offloads,
 * TUNSETQUEUE for the active pairs) and hold the data path (frames the TAP
 * delivers meanwhile wait there) until the rest of the VM is restored:
 * an interrupt sent before the irqchip/LAPIC state is written would be lost. */
void virtio_net_backend_sync(struct virtio_net *net);
/* The whole VM is restored (vCPU and irqchip state written, vCPUs not yet
 * running): release the hold, look at every queue once (buffers and frames
 * posted before the snapshot), and announce (GUEST_ANNOUNCE) so peers
 * relearn the MAC on the new host. The VM is then started paused
 * (vm_start_paused quiesces the device before its event loop runs), so the
 * data path only moves once vm_resume() unquiesces it: a migration
 * destination writes no guest RAM before the hand-over is committed. */
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
