/* The test VF on a TAP wire: frames in and out, RX asynchronous to the
 * client, and the server's DMA messages crossing the client's requests
 * (QEMU docs/interop/vfio-user.rst, "Command Concurrency": server->client
 * messages may sit between a client request and its reply, and the client
 * may pipeline requests). Needs root and /dev/net/tun. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <linux/vfio.h>
#include <net/ethernet.h>
#include <net/if.h>

#include "tests/integration/vfio_rig.h"
#include "vfio/vfio_user.h"
#include "vfio/vfio_user_proto.h"

#define VF_ETHERTYPE 0x88b5   /* IEEE local experimental: nobody else sends it */

static int packet_socket(const char *ifname, int *ifindex)
{
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(VF_ETHERTYPE));

	*ifindex = (int)if_nametoindex(ifname);
	if (fd < 0 || !*ifindex)
		return -1;
	struct sockaddr_ll sa = { .sll_family = AF_PACKET, .sll_protocol = htons(VF_ETHERTYPE),
				  .sll_ifindex = *ifindex };
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

static void make_frame(uint8_t *f, size_t len, uint8_t tag)
{
	memset(f, 0xff, 6);                                   /* broadcast */
	const uint8_t src[6] = { 0x02, 0, 0, 0, 0, 1 };
	memcpy(f + 6, src, 6);
	f[12] = VF_ETHERTYPE >> 8;
	f[13] = VF_ETHERTYPE & 0xff;
	for (size_t i = 14; i < len; i++)
		f[i] = (uint8_t)(i * 7 + tag);
}

/* Wait until RX descriptor @i is DONE in guest memory, serving the server's
 * DMA requests meanwhile (the VMM's event loop does this in a VM). */
static bool wait_rx_done(struct rig *r, unsigned i, bool serve)
{
	for (int t = 0; t < 2000; t++) {
		if (serve)
			cr_assert_eq(vfio_user_service(r->be), 0);
		struct desc d = get_desc(r, RX_RING, i);
		if (d.flags & VFNIC_DESC_DONE)
			return true;
		usleep(1000);
	}
	return false;
}

static void tap_wire_test(bool dma_msg)
{
	char ifname[IFNAMSIZ];
	struct rig r;
	int ifindex, pk;
	uint8_t frame[128], got[2048];

	if (access("/dev/net/tun", R_OK | W_OK) || geteuid() != 0)
		cr_skip_test("needs /dev/net/tun and root");
	snprintf(ifname, sizeof(ifname), "vfnt%d%c", getpid() % 100000, dma_msg ? 'm' : 'd');
	const char *extra[] = { "--tap", ifname, dma_msg ? "--dma-msg" : NULL, NULL };
	cr_assert_eq(rig_start(&r, extra), 0);
	pk = packet_socket(ifname, &ifindex);
	cr_assert_geq(pk, 0, "packet socket on %s", ifname);
	map_all_ram(&r);
	setup_irqs(&r);
	program_rings(&r, 4);

	/* Host -> wire -> device -> guest RAM, with no client request in flight. */
	make_frame(frame, sizeof(frame), 1);
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = ifindex, .sll_halen = 6 };
	memset(to.sll_addr, 0xff, 6);
	cr_assert_eq(sendto(pk, frame, sizeof(frame), 0, (struct sockaddr *)&to, sizeof(to)),
		     (ssize_t)sizeof(frame));
	/* Other traffic (IPv6 ND when the link came up) may take earlier slots. */
	bool found = false;
	for (unsigned i = 0; i < 4 && !found; i++) {
		cr_assert(wait_rx_done(&r, i, dma_msg), "no RX in slot %u", i);
		struct desc d = get_desc(&r, RX_RING, i);
		cr_assert_eq(mem_read(&r.mem, RX_BUFS + i * 2048, got, d.len), 0);
		found = d.len == sizeof(frame) && !memcmp(got, frame, sizeof(frame));
	}
	cr_expect(found, "our frame arrived in guest memory");
	cr_expect_geq(reg_read(&r, VFNIC_REG_RX_FRAMES), 1);
	cr_expect_geq(irq_count(&r, VFNIC_VEC_RX), 1, "RX vector fired");
	if (dma_msg) {
		struct vfio_user_stats st;
		vfio_user_get_stats(r.be, &st);
		cr_expect_gt(st.dma_writes, 0, "served asynchronously");
	}

	/* Guest -> device -> wire -> host. */
	make_frame(frame, sizeof(frame), 2);
	cr_assert_eq(mem_write(&r.mem, TX_BUFS, frame, sizeof(frame)), 0);
	put_desc(&r, TX_RING, 0, TX_BUFS, sizeof(frame));
	reg_write(&r, VFNIC_REG_TX_TAIL, 1);
	struct pollfd p = { .fd = pk, .events = POLLIN };
	found = false;
	while (!found && poll(&p, 1, 2000) == 1) {
		ssize_t n = recv(pk, got, sizeof(got), 0);
		found = n == (ssize_t)sizeof(frame) && !memcmp(got, frame, sizeof(frame));
	}
	cr_expect(found, "the frame the guest sent came out of %s", ifname);
	close(pk);
	rig_stop(&r);
}

Test(vfio_user, tap_wire_mapped_memfd)
{
	tap_wire_test(false);
}

Test(vfio_user, tap_wire_dma_messages_async)
{
	tap_wire_test(true);
}

/* A TAP rig in DMA-message mode with @posted RX buffers; @tag names the TAP. */
static int tap_rig(struct rig *r, char ifname[IFNAMSIZ], char tag, unsigned posted, int *ifindex)
{
	int pk;

	if (access("/dev/net/tun", R_OK | W_OK) || geteuid() != 0)
		cr_skip_test("needs /dev/net/tun and root");
	snprintf(ifname, IFNAMSIZ, "vfnt%d%c", getpid() % 100000, tag);
	const char *extra[] = { "--tap", ifname, "--dma-msg", NULL };
	cr_assert_eq(rig_start(r, extra), 0);
	pk = packet_socket(ifname, ifindex);
	cr_assert_geq(pk, 0, "packet socket on %s", ifname);
	map_all_ram(r);
	program_rings(r, posted);
	return pk;
}

static void send_frames(int pk, int ifindex, int n)
{
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = ifindex, .sll_halen = 6 };
	uint8_t frame[64];

	memset(to.sll_addr, 0xff, 6);
	for (int i = 0; i < n; i++) {
		make_frame(frame, sizeof(frame), (uint8_t)i);
		cr_assert_eq(sendto(pk, frame, sizeof(frame), 0, (struct sockaddr *)&to, sizeof(to)),
			     (ssize_t)sizeof(frame));
	}
}

/* Freeze the server (our child) until server_cont(): whatever arrives
 * meanwhile is ready on all its fds at once when it wakes. */
static void server_stop(struct rig *r)
{
	int st;

	cr_assert_eq(kill(r->pid, SIGSTOP), 0);
	cr_assert_eq(waitpid(r->pid, &st, WUNTRACED), r->pid);
	cr_assert(WIFSTOPPED(st));
}

static void server_cont(struct rig *r)
{
	cr_assert_eq(kill(r->pid, SIGCONT), 0);
}

/* Bytes we sent on @sock that the peer has not read yet (AF_UNIX SIOCOUTQ). */
static int unread_by_peer(int sock)
{
	int n = 0;

	return ioctl(sock, SIOCOUTQ, &n) ? -1 : n;
}

/* Wait (up to 2 s) until the frozen server's socket holds our request. */
static void wait_request_queued(struct rig *r)
{
	for (int t = 0; t < 2000 && unread_by_peer(vfio_user_socket(r->be)) <= 0; t++)
		usleep(1000);
	cr_assert_gt(unread_by_peer(vfio_user_socket(r->be)), 0, "request not sent");
}

/* RX_FRAMES from the device, the client serving DMA meanwhile, until @want. */
static uint32_t wait_rx_frames(struct rig *r, uint32_t want)
{
	uint32_t rx = 0;

	for (int t = 0; t < 2000 && rx < want; t++) {
		cr_assert_eq(vfio_user_service(r->be), 0);
		rx = reg_read(r, VFNIC_REG_RX_FRAMES);
		usleep(500);
	}
	return rx;
}

struct read_job {
	struct rig *r;
	uint32_t off, val;
	int ret;
};

static void *read_job_run(void *arg)
{
	struct read_job *j = arg;

	j->ret = vfio_be_region_read(j->r->be, VFIO_PCI_BAR0_REGION_INDEX, j->off, &j->val, 4);
	return NULL;
}

/* A client request that crosses the server's asynchronous DMA messages, at
 * whatever moment the timing gives (the random form of the tests below). */
Test(vfio_user, request_crossing_async_dma)
{
	char ifname[IFNAMSIZ];
	struct rig r;
	int ifindex, pk = tap_rig(&r, ifname, 'x', 16, &ifindex);

	send_frames(pk, ifindex, 8);
	/* Only register reads from our side: every DMA is served inside them. */
	uint32_t rx = 0;
	for (int t = 0; t < 2000 && rx < 8; t++) {
		rx = reg_read(&r, VFNIC_REG_RX_FRAMES);
		usleep(500);
	}
	cr_expect_geq(rx, 8, "all frames received while requests crossed DMA");
	cr_expect(vfio_user_alive(r.be));
	close(pk);
	rig_stop(&r);
}

/* The request and wire frames are both waiting when the server wakes: it
 * must answer the request even though the frames' DMA messages read (and
 * park) whatever the client sends meanwhile. This once hung the server in
 * recv() on a stale poll() result while the client waited for its reply. */
Test(vfio_user, request_and_frames_ready_together)
{
	char ifname[IFNAMSIZ];
	struct rig r;
	int ifindex, pk = tap_rig(&r, ifname, 'y', 16, &ifindex);
	struct read_job j = { .r = &r, .off = VFNIC_REG_ID };
	pthread_t th;

	server_stop(&r);
	send_frames(pk, ifindex, 4);
	cr_assert_eq(pthread_create(&th, NULL, read_job_run, &j), 0);
	wait_request_queued(&r);
	server_cont(&r);
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, 0, "the request crossing the frames' DMA was answered");
	cr_expect_eq(j.val, VFNIC_MAGIC);
	cr_expect_geq(wait_rx_frames(&r, 4), 4, "the frames arrived too");
	cr_expect(vfio_user_alive(r.be));
	close(pk);
	rig_stop(&r);
}

/* Serve one DMA_READ/WRITE from the rig's memory, as a client must while it
 * waits for replies (raw: the pipelining test bypasses our client). */
static void raw_serve_dma(struct rig *r, int sock, const struct vfio_user_hdr *h, uint8_t *buf,
			  size_t len)
{
	struct vfio_user_dma_rw rw;
	bool write = h->command == VFIO_USER_DMA_WRITE;

	cr_assert(h->command == VFIO_USER_DMA_READ || write, "server sent command %u", h->command);
	cr_assert_geq(len, sizeof(rw));
	memcpy(&rw, buf, sizeof(rw));
	cr_assert_leq(rw.count, 4096);
	if (write) {
		cr_assert_eq(len, sizeof(rw) + rw.count);
		cr_assert_eq(mem_write(&r->mem, rw.address, buf + sizeof(rw), rw.count), 0);
		cr_assert_eq(vfio_user_reply(sock, h, 0, buf, sizeof(rw), NULL, 0), 0);
	} else {
		cr_assert_eq(mem_read(&r->mem, rw.address, buf + sizeof(rw), rw.count), 0);
		cr_assert_eq(vfio_user_reply(sock, h, 0, buf, sizeof(rw) + rw.count, NULL, 0), 0);
	}
}

/* Several pipelined requests (allowed by the spec) wait with wire frames
 * when the server wakes: every one is answered, in order, with the right
 * data, while the frames' DMA messages interleave. */
Test(vfio_user, pipelined_requests_cross_dma_in_order)
{
	enum { NREQ = 5, NFRAMES = 3, ID0 = 0x7100 };
	char ifname[IFNAMSIZ];
	struct rig r;
	int ifindex, pk = tap_rig(&r, ifname, 'z', 16, &ifindex);
	int sock = vfio_user_socket(r.be);
	static uint8_t buf[VFIO_USER_MAX_MSG];
	unsigned replies = 0, dma = 0;

	server_stop(&r);
	send_frames(pk, ifindex, NFRAMES);
	for (int i = 0; i < NREQ; i++) {
		struct vfio_user_region_rw rw = { .offset = VFNIC_REG_ID,
						  .region = VFIO_PCI_BAR0_REGION_INDEX, .count = 4 };
		struct vfio_user_hdr h = { .msg_id = (uint16_t)(ID0 + i),
					   .command = VFIO_USER_REGION_READ,
					   .msg_size = sizeof(h) + sizeof(rw) };
		cr_assert_eq(vfio_user_send(sock, &h, &rw, sizeof(rw), NULL, 0), 0);
	}
	server_cont(&r);
	while (replies < NREQ) {
		struct vfio_user_hdr h;
		size_t len;
		unsigned nfds = 0;

		cr_assert_eq(vfio_user_recv(sock, &h, buf, sizeof(buf), &len, NULL, &nfds, 3000), 0,
			     "after %u replies", replies);
		if ((h.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_COMMAND) {
			raw_serve_dma(&r, sock, &h, buf, len);
			dma++;
			continue;
		}
		uint32_t v;
		cr_assert_eq(h.msg_id, ID0 + replies, "reply %u out of order", replies);
		cr_assert_eq(h.flags, VFIO_USER_F_REPLY);
		cr_assert_eq(len, sizeof(struct vfio_user_region_rw) + 4);
		memcpy(&v, buf + sizeof(struct vfio_user_region_rw), 4);
		cr_expect_eq(v, VFNIC_MAGIC);
		replies++;
	}
	cr_expect_gt(dma, 0, "DMA messages interleaved with the replies");
	/* The client takes over again: the rest of the frames' DMA, the count. */
	cr_expect_geq(wait_rx_frames(&r, NFRAMES), NFRAMES);
	cr_expect(vfio_user_alive(r.be));
	close(pk);
	rig_stop(&r);
}
