/* virtio-net data path over io_uring (virtio 1.2 §5.1.6): TX frames as one
 * batch of WRITEV per kick, RX as one READV posted ahead per queue into the
 * guest's buffers, completion handling and draining. See virtio_net.h.
 *
 * Why the used ring stays exact: a TX chain's used entry is written only
 * when its write completed (the kernel no longer reads the guest's buffers);
 * an RX chain is used only when a read filled it. The chains under the one
 * posted read are the last ones popped from the RX queue (nothing else pops
 * it meanwhile), so a cancelled read can give them back with virtq_unpop().
 *
 * The back-end fds are blocking: io_uring tries each operation at once and,
 * if the TAP has no frame (RX) or no room (TX), parks it on the fd's wait
 * queue; no thread blocks and nothing polls. An -EAGAIN completion (someone
 * made the fd non-blocking again) is handled too: a read then waits for
 * POLLIN, a write is dropped like a NIC would.
 *
 * Why TX writes are linked: writes parked on a full back end are retried in
 * no particular order once it has room, so unlinked they would reorder the
 * frames of a queue. A batch is one IOSQE_IO_LINK chain (each write starts
 * when the one before it completed), and a queue submits no new batch while
 * one is in flight. A TAP with its default, unlimited send buffer never
 * makes a write wait: its writes complete in order during the submission,
 * unlinked (a link costs a task_work hop per write, ~25% of the device's
 * TX rate on this host: make bench-net). Should one wait all the same, the
 * queue links from then on. A write that fails breaks the chain: the writes after it
 * complete -ECANCELED untried and go back to the avail ring (net_tx_give_back),
 * as do those a drain cancels. */
#include "devices/virtio_net_io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "vmm/log.h"

#define NET_RX_BUDGET       256
#define NET_RX_MAX_IOV      1024      /* IOV_MAX */
#define NET_ETH_OVERHEAD    (14 + 4)  /* Ethernet header + one VLAN tag */
#define NET_GSO_MAX_FRAME   (65535 + 14 + 4)
#define NET_SQ_ENTRIES      256
#define NET_CQ_ENTRIES      1024
#define NET_RX_ERROR_LIMIT  64        /* failed reads in a row before the back end counts as gone */
#define NET_DRAIN_LIMIT_MS  5000

/* ---- ring plumbing ----------------------------------------------------------------- */

int net_io_submit(struct virtio_net *net)
{
	while (io_uring_sq_ready(&net->ring)) {
		int ret = io_uring_submit(&net->ring);

		if (ret == -EINTR)
			continue;
		if (ret == -EBUSY || ret == -EAGAIN) {
			/* Completions waiting for room in the CQ: make room, retry. */
			net_io_reap(net);
			ret = io_uring_submit(&net->ring);
		}
		if (ret < 0) {
			/* The unsubmitted SQEs keep their iovecs (the pool is not reset). */
			log_err(net->dev.name, "io_uring submit: %s", strerror_safe(-ret));
			return ret;
		}
	}
	/* IORING_FEAT_SUBMIT_STABLE: the kernel has copied every iovec array. */
	net->iov_used = 0;
	return 0;
}

/* Room to prepare one more SQE with @niov iovecs without submitting first. */
static bool net_io_room(struct virtio_net *net, unsigned niov)
{
	return io_uring_sq_space_left(&net->ring) > 0 && net->iov_used + niov <= VIRTIO_NET_IOV_POOL;
}

/* An SQE with room for @niov iovecs in the pool (NULL if the ring is
 * unusable). Submits the prepared SQEs first if either is full, so an SQE
 * is never submitted half-prepared. */
static struct io_uring_sqe *net_io_sqe(struct virtio_net *net, unsigned niov, struct iovec **iov)
{
	if (!net_io_room(net, niov) && net_io_submit(net))
		return NULL;
	if (!net_io_room(net, niov))
		return NULL;
	if (iov)
		*iov = &net->iov_pool[net->iov_used];
	net->iov_used += niov;
	return io_uring_get_sqe(&net->ring);
}

/* Point an SQE prepared on @qp's fd at the registered file instead, when
 * the fds are registered: the kernel then skips a file lookup per frame. */
static void net_io_use_file(struct io_uring_sqe *sqe, const struct net_queue_pair *qp)
{
	if (!qp->net->files_registered)
		return;
	sqe->fd = (int)qp->index;
	sqe->flags |= IOSQE_FIXED_FILE;
}

int net_io_arm_kick(struct virtio_net *net, unsigned q)
{
	struct io_uring_sqe *sqe = net_io_sqe(net, 0, NULL);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_multishot(sqe, net->vdev.vqs[q].kick_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, net_tag(NET_TAG_KICK, q, 0));
	return 0;
}

bool net_io_tx_may_park(int fd)
{
	int sndbuf = 0;

	/* tun_chr_open() sets sk_sndbuf to INT_MAX; TUNSETSNDBUF can lower it
	 * (then writes wait for room). A macvtap queue (wmem_default) and any
	 * other socket answer otherwise. */
	return ioctl(fd, TUNGETSNDBUF, &sndbuf) < 0 || sndbuf != INT_MAX;
}

/* ---- TX (§5.1.6.2) --------------------------------------------------------------- */

/* Sanitize the driver's header: offload requests are honoured only if the
 * matching feature was negotiated. Returns false to drop the frame. */
static bool net_tx_header(struct virtio_net *net, struct virtio_net_hdr_mrg_rxbuf *h)
{
	uint8_t gso = h->hdr.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;

	h->num_buffers = 0;
	if (!net_has(net, VIRTIO_NET_F_CSUM))
		h->hdr.flags &= (uint8_t)~VIRTIO_NET_HDR_F_NEEDS_CSUM;
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_NONE:
		return true;
	case VIRTIO_NET_HDR_GSO_TCPV4:
		return net_has(net, VIRTIO_NET_F_HOST_TSO4);
	case VIRTIO_NET_HDR_GSO_TCPV6:
		return net_has(net, VIRTIO_NET_F_HOST_TSO6);
	case VIRTIO_NET_HDR_GSO_UDP:
		return net_has(net, VIRTIO_NET_F_HOST_UFO);
	default:
		return false;
	}
}

/* TX slots form a ring in pop order: the oldest chain at tx_head. Used
 * entries are written in that order too, each once its chain is done (its
 * write completed, or it was dropped), so the driver sees them in the order
 * it posted them even when a later write completes first. */
static unsigned net_tx_take(struct net_queue_pair *qp, uint16_t head)
{
	unsigned slot = (qp->tx_head + qp->tx_count++) % VIRTIO_NET_QUEUE_SIZE;

	qp->tx_slots[slot].head = head;
	qp->tx_slots[slot].done = false;
	qp->tx_slots[slot].cancelled = false;
	return slot;
}

/* Write the used entries of the done chains at the front (published later). */
static void net_tx_collect(struct net_queue_pair *qp)
{
	struct virtio_net *net = qp->net;
	bool freed = false;

	while (qp->tx_count && qp->tx_slots[qp->tx_head].done) {
		if (!net->discard)
			virtq_fill_head(qp->txq, qp->tx_slots[qp->tx_head].head, 0, qp->tx_filled++);
		qp->tx_head = (uint16_t)((qp->tx_head + 1) % VIRTIO_NET_QUEUE_SIZE);
		qp->tx_count--;
		freed = true;
	}
	if (freed && qp->tx_stalled && !net->discard) {
		qp->tx_stalled = false;
		net->kicked[qp->txq->index] = true;
	}
}

/* After the queue's last write in flight completed: the cancelled writes at
 * the end of the slot ring (a failed write broke the batch's link, or a drain
 * cancelled it) are the last chains popped from the TX queue, and the back
 * end took none of them. They go back to the avail ring (virtq_unpop), to be
 * sent once the queue is processed again, here or at a migration's
 * destination, instead of being lost to a pause. A cancelled write with a
 * sent one after it (not expected with linked batches) is dropped: sending
 * it later would put it behind a frame the driver posted after it. */
static void net_tx_give_back(struct net_queue_pair *qp)
{
	uint16_t back = 0;

	while (back < qp->tx_count) {
		unsigned slot = (qp->tx_head + qp->tx_count - 1u - back) % VIRTIO_NET_QUEUE_SIZE;

		if (!qp->tx_slots[slot].cancelled)
			break;
		qp->tx_slots[slot].cancelled = false;
		back++;
	}
	if (back) {
		qp->tx_count = (uint16_t)(qp->tx_count - back);
		virtq_unpop(qp->txq, back);
		qp->tx_given_back += back;
		qp->net->kicked[qp->txq->index] = true;
	}
	for (uint16_t i = 0; i < qp->tx_count; i++) {
		struct net_tx_slot *s = &qp->tx_slots[(qp->tx_head + i) % VIRTIO_NET_QUEUE_SIZE];

		if (s->cancelled) {
			s->cancelled = false;
			s->done = true;
			qp->tx_errors++;
		}
	}
}

/* A chain that goes back without a write (dropped frame, IOMMU fault). */
static void net_tx_drop(struct net_queue_pair *qp, uint16_t head)
{
	qp->tx_slots[net_tx_take(qp, head)].done = true;
	net_tx_collect(qp);
}

/* Queue the write of one popped chain (linked behind the batch's writes
 * before it), or drop the frame. Returns 0; -ENOSPC when the ring cannot
 * take it in this batch (the caller gives the chain back); or -EINVAL when
 * the chain violates the spec (the device is then broken). */
static int net_tx_queue(struct net_queue_pair *qp, const struct virtq_elem *e)
{
	struct virtio_net *net = qp->net;
	unsigned slot = (qp->tx_head + qp->tx_count) % VIRTIO_NET_QUEUE_SIZE;
	struct net_tx_slot *s = &qp->tx_slots[slot];
	size_t skip = VIRTIO_NET_HDR_LEN;
	struct io_uring_sqe *sqe;
	struct iovec *iov;
	unsigned n = 1;

	/* §5.1.6.2: TX buffers are device-readable and start with the header. */
	if (e->in_num || e->out_len < VIRTIO_NET_HDR_LEN) {
		virtio_device_set_broken(&net->vdev, "tx%u: chain %u has %s", qp->index, e->head,
					 e->in_num ? "device-writable buffers" : "no room for the header");
		return -EINVAL;
	}
	/* A submission in the middle of a batch would split its link chain. */
	if (qp->tx_link_tail && !net_io_room(net, e->out_num + 1u))
		return -ENOSPC;
	iov_to_buf(e->iov, e->out_num, 0, &s->hdr, VIRTIO_NET_HDR_LEN);
	sqe = net_tx_header(net, &s->hdr) ? net_io_sqe(net, e->out_num + 1, &iov) : NULL;
	if (!sqe) {
		qp->tx_errors++;   /* dropped: bad offload request (or no ring) */
		net_tx_drop(qp, e->head);
		return 0;
	}
	iov[0] = (struct iovec){ .iov_base = &s->hdr, .iov_len = VIRTIO_NET_HDR_LEN };
	for (unsigned i = 0; i < e->out_num; i++) {
		size_t len = e->iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		iov[n++] = (struct iovec){ .iov_base = (uint8_t *)e->iov[i].iov_base + skip,
					   .iov_len = len - skip };
		skip = 0;
	}
	net_tx_take(qp, e->head);
	s->len = e->out_len;
	io_uring_prep_writev(sqe, qp->fd, iov, n, 0);
	net_io_use_file(sqe, qp);
	io_uring_sqe_set_data64(sqe, net_tag(NET_TAG_TX, qp->index, slot));
	if (qp->tx_link) {
		sqe->flags |= IOSQE_IO_LINK;   /* cleared on the batch's last write */
		qp->tx_link_tail = sqe;
	}
	qp->tx_inflight++;
	net->inflight++;
	return 0;
}

/* End the batch's link chain at its last write. */
static void net_tx_end_batch(struct net_queue_pair *qp)
{
	if (qp->tx_link_tail)
		qp->tx_link_tail->flags &= (uint8_t)~IOSQE_IO_LINK;
	qp->tx_link_tail = NULL;
}

static void net_tx_done(struct net_queue_pair *qp, unsigned slot, int res)
{
	struct virtio_net *net = qp->net;
	struct net_tx_slot *s = &qp->tx_slots[slot];

	net->inflight--;
	qp->tx_inflight--;
	if ((res == -ECANCELED || res == -EINTR) && !net->discard) {
		/* Never tried (the link broke), cancelled by a drain, or
		 * interrupted before the back end took it: given back below. */
		s->cancelled = true;
	} else if (res == (int)s->len) {
		s->done = true;
		qp->tx_frames++;
		qp->tx_bytes += s->len - VIRTIO_NET_HDR_LEN;
	} else {
		/* The back end rejected (EINVAL: bad GSO), lost (EIO: TAP gone) or
		 * could not take (EAGAIN, or cancelled by a reset) the frame:
		 * dropped, as a NIC would. */
		s->done = true;
		qp->tx_errors++;
	}
	if (!qp->tx_inflight)
		net_tx_give_back(qp);
	net_tx_collect(qp);
}

/* Chains in flight or filled but unpublished must stay below the queue
 * size, or used entries would overwrite each other (a driver posting a head
 * twice gets throttled, not corrupted rings). */
static bool net_tx_room(const struct net_queue_pair *qp)
{
	return qp->tx_count < VIRTIO_NET_QUEUE_SIZE && qp->tx_count + qp->tx_filled < qp->txq->st.size;
}

int virtio_net_tx_process(struct net_queue_pair *qp, bool *more)
{
	struct virtio_net *net = qp->net;
	struct virtqueue *vq = qp->txq;
	int frames = 0, chains = 0, r = 0;

	*more = false;
	net_io_reap(net);   /* earlier writes: free their slots */
	if (net_data_stopped(net))
		return 0;
	if (qp->tx_inflight) {
		/* The back end pushes back: the batch in flight completes first
		 * (frames stay in order), and its completion brings us back. */
		qp->tx_stalled = true;
		return 0;
	}
	virtq_set_notification(vq, false);
	for (;;) {
		if (chains >= VIRTIO_NET_TX_BUDGET) {
			/* Out of budget: come back if there is more, else ask for a
			 * kick (a full ring drained in one pass must not leave
			 * avail_event behind, or the driver never kicks again). */
			*more = virtq_avail_count(vq) != 0 || virtq_set_notification(vq, true);
			break;
		}
		if (!net_tx_room(qp)) {
			qp->tx_stalled = true;   /* a completion resumes us */
			break;
		}
		r = virtq_pop(vq, qp->tx_elem);
		if (r < 0)
			break;
		if (r == 0) {
			/* Drained: ask for a kick, and look again in case one raced us. */
			if (virtq_set_notification(vq, true))
				continue;
			break;
		}
		chains++;
		if (r == VIRTQ_FAULT) {
			/* The IOMMU refused a buffer: this frame is dropped (its
			 * chain goes back unread), the queue goes on. */
			qp->tx_faults++;
			net_tx_drop(qp, qp->tx_elem->head);
			continue;
		}
		r = net_tx_queue(qp, qp->tx_elem);
		if (r == -ENOSPC) {
			/* The ring is full for this batch: the chain goes back, the
			 * next pass takes it. */
			virtq_unpop(vq, 1);
			*more = true;
			r = 0;
			break;
		}
		if (r < 0)
			break;
		frames++;
	}
	net_tx_end_batch(qp);
	if (frames) {
		/* One submission for the batch; a TAP takes each write at once, so
		 * the completions are there when it returns. */
		net_io_submit(net);
		net_io_reap(net);
		qp->tx_batches++;
		if (qp->tx_inflight && !qp->tx_link) {
			qp->tx_link = true;
			log_warn(net->dev.name, "tx%u: the back end made a write wait: linking writes "
				 "from now on (frames of this batch may have been reordered)", qp->index);
		}
	}
	net_io_publish(net);
	return r < 0 ? r : frames;
}

/* ---- RX (§5.1.6.3, §5.1.6.4) -------------------------------------------------------- */

/* Largest frame (with header) the TAP may hand us. */
static size_t net_rx_max_frame(const struct virtio_net *net)
{
	bool gso = net_has(net, VIRTIO_NET_F_GUEST_TSO4) || net_has(net, VIRTIO_NET_F_GUEST_TSO6) ||
		   net_has(net, VIRTIO_NET_F_GUEST_UFO);

	return VIRTIO_NET_HDR_LEN + (gso ? NET_GSO_MAX_FRAME : net->mtu + NET_ETH_OVERHEAD);
}

/* Pop RX chains until they can hold @need bytes. Returns the number popped,
 * or -errno if the driver broke the spec. *cap gets their total size.
 *
 * A chain the IOMMU refuses (VIRTQ_FAULT) cannot take a frame: as the first
 * one it is returned at once with used length 0, nothing written (counted in
 * rx_faults; an interrupt follows at publish), and the next one is tried.
 * Behind chains already gathered it is given back (virtq_unpop: it fails
 * again later without a second fault report, once the chains before it are
 * used), and *fault_stop tells the caller that no more room will come before
 * it: receive into what was gathered instead of waiting for more. */
static int net_rx_gather(struct net_queue_pair *qp, size_t need, size_t *cap, bool *fault_stop)
{
	struct virtio_net *net = qp->net;
	bool mrg = net_has(net, VIRTIO_NET_F_MRG_RXBUF);
	int k = 0;

	*cap = 0;
	*fault_stop = false;
	while (k < VIRTIO_NET_RX_ELEMS && *cap < need) {
		struct virtq_elem *e = &qp->rx_elems[k];
		int r = virtq_pop(qp->rxq, e);

		if (r < 0)
			return r;
		if (r == 0)
			break;
		if (r == VIRTQ_FAULT) {
			if (k) {
				virtq_unpop(qp->rxq, 1);
				*fault_stop = true;
				break;
			}
			qp->rx_faults++;
			virtq_push(qp->rxq, e, 0);
			qp->notify_rx = true;
			continue;
		}
		k++;
		/* §5.1.6.3: RX buffers are device-writable and hold at least the header. */
		if (e->out_num || e->in_len < VIRTIO_NET_HDR_LEN) {
			virtio_device_set_broken(&net->vdev, "rx%u: chain %u is %s", qp->index, e->head,
						 e->out_num ? "device-readable" : "smaller than the header");
			return -EINVAL;
		}
		*cap += e->in_len;
		if (!mrg)
			break;
	}
	return k;
}

/* Gather buffers for the largest frame: the number of chains, 0 if the
 * guest has too few posted (it will kick: notifications are on), or -errno. */
static int net_rx_buffers(struct net_queue_pair *qp)
{
	struct virtio_net *net = qp->net;
	size_t need = net_rx_max_frame(net), cap;

	for (;;) {
		bool fault_stop;
		int k = net_rx_gather(qp, need, &cap, &fault_stop);

		if (k < 0)
			return k;
		/* Too little room for a full-size frame and nothing more posted:
		 * wait for buffers rather than truncate (unless the guest has
		 * already posted all it can, or a faulting buffer is next).
		 * Without MRG_RXBUF a frame gets one chain whatever else is
		 * posted, so waiting cannot help (and looping here would never
		 * end): the read goes into that chain, and a larger frame is cut
		 * to its size. §5.1.6.3.1: the driver SHOULD post buffers of at
		 * least 1526 bytes (65562 with GUEST_TSO/UFO). */
		if (k > 0 && (!net_has(net, VIRTIO_NET_F_MRG_RXBUF) || cap >= need ||
			      k == VIRTIO_NET_RX_ELEMS || fault_stop ||
			      cap >= (size_t)VIRTIO_NET_HDR_LEN + net->mtu + NET_ETH_OVERHEAD))
			return k;
		virtq_unpop(qp->rxq, (uint16_t)k);
		/* Look again only if the guest posted more meanwhile: the k
		 * chains alone are not enough, however often we pop them. */
		if (!virtq_set_notification(qp->rxq, true) || virtq_avail_count(qp->rxq) <= (uint16_t)k) {
			qp->rx_blocked = true;
			qp->rx_no_buffers++;
			return 0;
		}
	}
}

/* Post the read for the next frame. 1: posted; 0: no buffers (or no
 * ring); -errno: the driver broke the spec. */
static int net_rx_post(struct net_queue_pair *qp)
{
	struct virtio_net *net = qp->net;
	struct io_uring_sqe *sqe;
	struct iovec *iov;
	unsigned n = 0, segs = 0;
	int k = net_rx_buffers(qp);

	if (k <= 0)
		return k;
	qp->rx_blocked = false;
	for (int i = 0; i < k; i++)
		segs += qp->rx_elems[i].in_num;
	sqe = net_io_sqe(net, segs < NET_RX_MAX_IOV ? segs : NET_RX_MAX_IOV, &iov);
	if (!sqe) {
		virtq_unpop(qp->rxq, (uint16_t)k);
		return 0;
	}
	for (int i = 0; i < k && n < NET_RX_MAX_IOV; i++) {
		const struct virtq_elem *e = &qp->rx_elems[i];

		for (unsigned s = 0; s < e->in_num && n < NET_RX_MAX_IOV; s++)
			iov[n++] = e->iov[e->out_num + s];
	}
	io_uring_prep_readv(sqe, qp->fd, iov, n, 0);
	net_io_use_file(sqe, qp);
	io_uring_sqe_set_data64(sqe, net_tag(NET_TAG_RX, qp->index, 0));
	qp->rx_inflight = (uint16_t)k;
	net->inflight++;
	return 1;
}

/* A frame of @got bytes landed in the k chains of the posted read. */
static void net_rx_deliver(struct net_queue_pair *qp, int k, size_t got)
{
	struct virtqueue *vq = qp->rxq;
	uint16_t used = 0, nbuf;
	size_t rem = got;

	/* §5.1.6.4: num_buffers tells the driver how many chains the frame
	 * spans. Written before virtq_fill() marks the pages dirty. */
	for (int i = 0; i < k && rem; i++) {
		rem -= rem < qp->rx_elems[i].in_len ? rem : qp->rx_elems[i].in_len;
		used++;
	}
	nbuf = used;
	iov_from_buf(&qp->rx_elems[0].iov[qp->rx_elems[0].out_num], qp->rx_elems[0].in_num,
		     offsetof(struct virtio_net_hdr_mrg_rxbuf, num_buffers), &nbuf, sizeof(nbuf));
	rem = got;
	for (uint16_t i = 0; i < used; i++) {
		uint32_t len = rem < qp->rx_elems[i].in_len ? (uint32_t)rem : qp->rx_elems[i].in_len;

		virtq_fill(vq, &qp->rx_elems[i], len, i);
		rem -= len;
	}
	virtq_unpop(vq, (uint16_t)(k - used));
	virtq_flush(vq, used);
	qp->rx_frames++;
	qp->rx_bytes += got - VIRTIO_NET_HDR_LEN;
	qp->notify_rx = true;
}

/* Wait for POLLIN before reading again (after -EAGAIN or an error). */
static void net_rx_wait_readable(struct net_queue_pair *qp)
{
	struct io_uring_sqe *sqe = net_io_sqe(qp->net, 0, NULL);

	if (!sqe)
		return;
	io_uring_prep_poll_add(sqe, qp->fd, POLLIN);
	net_io_use_file(sqe, qp);
	io_uring_sqe_set_data64(sqe, net_tag(NET_TAG_RX_POLL, qp->index, 0));
	qp->rx_polling = true;
	qp->net->inflight++;
}

static void net_rx_failed(struct net_queue_pair *qp, int err)
{
	struct virtio_net *net = qp->net;

	qp->rx_errors++;
	if (++qp->rx_error_run == NET_RX_ERROR_LIMIT) {
		log_err(net->dev.name, "rx%u: %u reads failed in a row (%s): back end given up",
			qp->index, NET_RX_ERROR_LIMIT, strerror_safe(err));
		qp->backend_gone = true;
		return;
	}
	if (qp->rx_error_run == 1)
		log_warn(net->dev.name, "rx%u read: %s", qp->index, strerror_safe(err));
	net_rx_wait_readable(qp);
}

static void net_rx_done(struct net_queue_pair *qp, int res)
{
	struct virtio_net *net = qp->net;
	int k = qp->rx_inflight;

	qp->rx_inflight = 0;
	net->inflight--;
	if (net->discard)
		return;
	if (res < VIRTIO_NET_HDR_LEN) {
		/* Nothing (or a runt) arrived: the chains go back untouched. They are
		 * the last ones popped, as nothing pops RX while a read is posted. */
		virtq_unpop(qp->rxq, (uint16_t)k);
		if (res == -ECANCELED)
			return;   /* drained: whoever drained restarts the queue */
		if (res == -EAGAIN || res == -EINTR)
			net_rx_wait_readable(qp);
		else if (res < 0)
			net_rx_failed(qp, -res);
		else {
			qp->rx_errors++;   /* runt frame: dropped */
			qp->rx_ready = true;
		}
		return;
	}
	qp->rx_error_run = 0;
	net_rx_deliver(qp, k, (size_t)res);
	qp->rx_ready = true;
}

static void net_rx_poll_done(struct net_queue_pair *qp, int res)
{
	struct virtio_net *net = qp->net;

	qp->rx_polling = false;
	net->inflight--;
	if (net->discard || res == -ECANCELED)
		return;
	if (res < 0 || (res & (POLLERR | POLLHUP | POLLNVAL))) {
		log_err(net->dev.name, "back end of queue pair %u is gone", qp->index);
		qp->backend_gone = true;
		return;
	}
	qp->rx_ready = true;
}

static bool net_rx_may_post(const struct net_queue_pair *qp)
{
	const struct virtio_net *net = qp->net;

	return !qp->rx_inflight && !qp->rx_polling && !qp->backend_gone && !net->vdev.broken &&
	       !net_data_stopped(net) && qp->index < net->st.active_pairs;
}

int virtio_net_rx_process(struct net_queue_pair *qp)
{
	struct virtio_net *net = qp->net;
	uint64_t before = qp->rx_frames;
	int ret = 0;

	net_io_reap(net);   /* frames the posted read brought meanwhile */
	qp->rx_ready = false;
	while (net_rx_may_post(qp) && qp->rx_frames - before < NET_RX_BUDGET) {
		ret = net_rx_post(qp);
		if (ret <= 0)
			break;
		ret = 0;
		/* A frame already waiting is read during the submission. */
		net_io_submit(net);
		net_io_reap(net);
		qp->rx_ready = false;
	}
	net_io_publish(net);
	if (qp->rx_frames - before >= NET_RX_BUDGET)
		net_kick_self(qp->rxq);   /* more may be waiting: come back after others ran */
	return ret < 0 ? ret : (int)(qp->rx_frames - before);
}

/* ---- completions ------------------------------------------------------------------ */

static void net_kick_done(struct virtio_net *net, unsigned q, const struct io_uring_cqe *cqe)
{
	if (q >= net->vdev.nr_queues)
		return;
	net->kicked[q] = true;
	/* A multishot poll without F_MORE has ended: arm it again. */
	if (!(cqe->flags & IORING_CQE_F_MORE) && cqe->res != -ECANCELED && net_io_arm_kick(net, q))
		log_err(net->dev.name, "cannot watch the kicks of queue %u", q);
}

static void net_complete(struct virtio_net *net, const struct io_uring_cqe *cqe)
{
	uint64_t tag = io_uring_cqe_get_data64(cqe);
	unsigned idx = (tag >> 16) & 0xffff, slot = tag & 0xffff;
	struct net_queue_pair *qp = idx < net->nr_pairs ? &net->qp[idx] : NULL;

	switch ((enum net_tag)(tag >> 32)) {
	case NET_TAG_KICK:
		net_kick_done(net, idx, cqe);
		break;
	case NET_TAG_TX:
		if (qp && slot < VIRTIO_NET_QUEUE_SIZE)
			net_tx_done(qp, slot, cqe->res);
		break;
	case NET_TAG_RX:
		if (qp && qp->rx_inflight)
			net_rx_done(qp, cqe->res);
		break;
	case NET_TAG_RX_POLL:
		if (qp && qp->rx_polling)
			net_rx_poll_done(qp, cqe->res);
		break;
	case NET_TAG_CANCEL:
		break;
	}
}

void net_io_reap(struct virtio_net *net)
{
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		io_uring_for_each_cqe(&net->ring, head, cqe) {
			net_complete(net, cqe);
			seen++;
		}
		io_uring_cq_advance(&net->ring, seen);
		/* Completions the CQ had no room for wait in the kernel. */
		if (!io_uring_cq_has_overflow(&net->ring) || io_uring_get_events(&net->ring) < 0)
			break;
	}
}

void net_io_publish(struct virtio_net *net)
{
	for (unsigned i = 0; i < net->nr_pairs; i++) {
		struct net_queue_pair *qp = &net->qp[i];

		if (qp->tx_filled) {
			virtq_flush(qp->txq, qp->tx_filled);
			qp->tx_filled = 0;
			virtq_notify(qp->txq);
		}
		if (qp->notify_rx) {
			qp->notify_rx = false;
			virtq_notify(qp->rxq);
		}
	}
}

/* ---- drain ----------------------------------------------------------------------- */

static uint64_t net_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int virtio_net_drain(struct virtio_net *net, bool discard)
{
	uint64_t deadline = net_now_ms() + NET_DRAIN_LIMIT_MS;
	int ret = 0;

	if (!net->ring_ready)
		return 0;
	net->discard = discard;
	net_io_reap(net);
	if (net->inflight) {
		/* Every data-path operation targets a back-end fd; the kick polls
		 * (on the eventfds) stay armed. */
		for (unsigned i = 0; i < net->nr_pairs; i++) {
			struct io_uring_sqe *sqe = net_io_sqe(net, 0, NULL);

			if (!sqe)
				break;
			if (net->files_registered)
				io_uring_prep_cancel_fd(sqe, (int)i,
							IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD_FIXED);
			else
				io_uring_prep_cancel_fd(sqe, net->qp[i].fd, IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data64(sqe, net_tag(NET_TAG_CANCEL, i, 0));
		}
		net_io_submit(net);
	}
	while (net->inflight) {
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe_timeout(&net->ring, &cqe, &ts);

		if (r == 0 || r == -EINTR) {
			net_io_reap(net);
			continue;
		}
		if (r != -ETIME || net_now_ms() > deadline) {
			log_err(net->dev.name, "%u I/O operations did not complete after cancelling: %s",
				net->inflight, strerror_safe(r == -ETIME ? ETIMEDOUT : -r));
			ret = -ETIMEDOUT;
			break;
		}
	}
	net->discard = false;
	if (discard) {
		for (unsigned i = 0; i < net->nr_pairs; i++) {
			net->qp[i].tx_filled = 0;
			net->qp[i].notify_rx = false;
			net->qp[i].rx_ready = false;
		}
	} else {
		net_io_publish(net);
	}
	return ret;
}

void net_io_dma_changed(struct virtio_net *net)
{
	bool posted[VIRTIO_NET_MAX_PAIRS];

	for (unsigned i = 0; i < net->nr_pairs; i++)
		posted[i] = net->qp[i].rx_inflight != 0;
	virtio_net_drain(net, false);
	for (unsigned i = 0; i < net->nr_pairs; i++)
		if (posted[i] && net_rx_may_post(&net->qp[i]))
			net_rx_wait_readable(&net->qp[i]);
	net_io_submit(net);
}

/* ---- setup and teardown ------------------------------------------------------------- */

int net_io_init(struct virtio_net *net)
{
	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE, .cq_entries = NET_CQ_ENTRIES };
	int ret;

	for (unsigned i = 0; i < net->nr_pairs; i++) {
		struct net_queue_pair *qp = &net->qp[i];
		int fl = fcntl(qp->fd, F_GETFL);

		qp->tx_slots = calloc(VIRTIO_NET_QUEUE_SIZE, sizeof(*qp->tx_slots));
		if (!qp->tx_slots)
			return -ENOMEM;
		/* Blocking, so a read without a frame parks in io_uring instead of
		 * completing with -EAGAIN at once. */
		if (fl < 0 || fcntl(qp->fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
			return -errno;
	}
	net->iov_pool = calloc(VIRTIO_NET_IOV_POOL, sizeof(*net->iov_pool));
	if (!net->iov_pool)
		return -ENOMEM;
	ret = io_uring_queue_init_params(NET_SQ_ENTRIES, &net->ring, &p);
	if (ret)
		return ret;
	net->ring_ready = true;
	/* Iovec arrays are reused once submitted; that needs the kernel to
	 * have copied them by then (Linux 5.5). */
	if (!(p.features & IORING_FEAT_SUBMIT_STABLE) || !(p.features & IORING_FEAT_NODROP))
		return -EOPNOTSUPP;
	/* Registered back-end files (index = pair): optional, plain fds work too. */
	{
		int fds[VIRTIO_NET_MAX_PAIRS];

		for (unsigned i = 0; i < net->nr_pairs; i++)
			fds[i] = net->qp[i].fd;
		net->files_registered = io_uring_register_files(&net->ring, fds, net->nr_pairs) == 0;
	}
	return 0;
}

void net_io_exit(struct virtio_net *net)
{
	if (net->ring_ready) {
		pthread_mutex_lock(&net->vdev.lock);
		virtio_net_drain(net, true);
		pthread_mutex_unlock(&net->vdev.lock);
		/* Drop the ring's references to the TAP queues now, not when the
		 * kernel gets round to freeing the ring: a vmm started next on
		 * the same TAP would find it busy. */
		if (net->files_registered)
			io_uring_unregister_files(&net->ring);
		io_uring_queue_exit(&net->ring);
		net->ring_ready = false;
	}
	for (unsigned i = 0; net->qp && i < net->nr_pairs; i++) {
		free(net->qp[i].tx_slots);
		net->qp[i].tx_slots = NULL;
	}
	free(net->iov_pool);
	net->iov_pool = NULL;
}
