/* virtio-net's TX path into real back ends, without a guest or /dev/kvm: the
 * device (virtio_net_init, as the device-side benchmark builds it) sends
 * frames posted on a hand-made ring into a TAP and into a macvtap on a veth
 * pair, in a network namespace this test creates and always deletes. A TAP
 * with its unlimited send buffer must be driven unlinked, a macvtap with
 * linked batches (virtio_net_io.c); every frame must be written once, every
 * chain used, and the frames must reach a packet socket on the other side,
 * none twice.
 *
 * Order is not asserted here: past the back end the kernel does not keep it
 * for us. With the writes linked, issued from one thread in a single
 * batch, macvtap frames still arrived out of order in up to 1 run in 5 on
 * this host (pfifo or pfifo_fast on the macvtap alike), and a loaded machine
 * may drop some. The order of the writes themselves is asserted
 * deterministically in tests/unit/test_virtio_net.c (socket back end); here
 * the frames that came after a later one are counted and printed. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "devices/virtio_net.h"

#define RAM_SIZE   (4u << 20)
#define QSZ        256
#define DESC_GPA   0x10000
#define AVAIL_GPA  0x20000
#define USED_GPA   0x30000
#define FRAME_GPA  0x100000
#define FRAME_LEN  (14 + 100)
#define ETHERTYPE  0x88b5            /* IEEE local experimental */
#define FRAMES     5000u

static char ns[32];
static bool ns_made;

static void ns_cleanup(void)
{
	if (ns_made)
		harness_sh("ip netns del %s 2>/dev/null", ns);
	ns_made = false;
}

/* A namespace with lo up; this process moves into it (and sees its /sys). */
static void ns_enter(void)
{
	if (geteuid() != 0 || access("/dev/net/tun", R_OK | W_OK))
		cr_skip_test("needs root and /dev/net/tun");
	if (harness_sh("ip -V >/dev/null 2>&1"))
		cr_skip_test("iproute2 (ip) is missing");
	snprintf(ns, sizeof(ns), "vmmb%d", (int)getpid());
	if (harness_sh("ip netns add %s", ns))
		cr_skip_test("cannot create a network namespace here");
	ns_made = true;
	cr_assert_eq(harness_join_netns(ns), 0, "cannot enter netns %s", ns);
	/* macvtap's queue device is found through this namespace's sysfs. */
	if (harness_private_sysfs())
		cr_skip_test("cannot mount the namespace's /sys here");
	cr_assert_eq(harness_sh("ip link set lo up"), 0);
}

/* A packet socket on @ifname that takes our test frames. */
static int frame_listener(const char *ifname)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETHERTYPE),
				   .sll_ifindex = (int)if_nametoindex(ifname) };
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETHERTYPE)), rcvbuf = 8 << 20;

	cr_assert(fd >= 0 && sll.sll_ifindex, "packet socket on %s", ifname);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sll, sizeof(sll)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	return fd;
}

/* A driver's minimum: one TX queue of QSZ single-buffer chains at fixed
 * places in RAM (the RX queue is left off). */
static void device_start(struct virtio_net *net)
{
	struct virtqueue *vq = net->qp[0].txq;

	pthread_mutex_lock(&net->vdev.lock);
	virtio_device_set_status(&net->vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_device_set_guest_features(&net->vdev, 1, 1);   /* VERSION_1 */
	virtio_device_set_status(&net->vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					     VIRTIO_CONFIG_S_FEATURES_OK);
	vq->st.size = QSZ;
	vq->st.desc_addr = DESC_GPA;
	vq->st.avail_addr = AVAIL_GPA;
	vq->st.used_addr = USED_GPA;
	cr_assert_eq(virtq_enable(vq), 0);
	virtio_device_set_status(&net->vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	pthread_mutex_unlock(&net->vdev.lock);
}

/* Post FRAMES frames numbered 0.. (as the ring has room), run TX, and read
 * them on @listener: none twice, (nearly) all of them. */
static void send_and_check(struct virtio_net *net, struct guest_mem *mem, int listener)
{
	struct vring_desc *d = mem_gpa_to_hva(mem, DESC_GPA, 16 * QSZ);
	struct vring_avail *a = mem_gpa_to_hva(mem, AVAIL_GPA, 4 + 2 * QSZ + 2);
	struct vring_used *u = mem_gpa_to_hva(mem, USED_GPA, 4 + 8 * QSZ);
	static bool seen[FRAMES];
	uint32_t posted = 0, got = 0, next = 0, late = 0;

	memset(seen, 0, sizeof(seen));
	for (unsigned spin = 0; got < FRAMES && spin < 200000; spin++) {
		uint8_t buf[2048];
		ssize_t r;
		bool more;

		while (posted < FRAMES && (uint16_t)(a->idx - u->idx) < QSZ) {
			unsigned i = a->idx % QSZ;
			uint8_t *f = mem_gpa_to_hva(mem, FRAME_GPA + i * 2048ull, 2048);

			memset(f, 0, VIRTIO_NET_HDR_LEN + FRAME_LEN);
			memset(f + VIRTIO_NET_HDR_LEN, 0xff, 6);                 /* broadcast */
			memcpy(f + VIRTIO_NET_HDR_LEN + 6, net->st.mac, 6);
			f[VIRTIO_NET_HDR_LEN + 12] = ETHERTYPE >> 8;
			f[VIRTIO_NET_HDR_LEN + 13] = ETHERTYPE & 0xff;
			memcpy(f + VIRTIO_NET_HDR_LEN + 14, &posted, sizeof(posted));
			d[i] = (struct vring_desc){ FRAME_GPA + i * 2048ull, VIRTIO_NET_HDR_LEN + FRAME_LEN, 0, 0 };
			a->ring[i] = (uint16_t)i;
			__atomic_store_n(&a->idx, (uint16_t)(a->idx + 1), __ATOMIC_RELEASE);
			posted++;
		}
		pthread_mutex_lock(&net->vdev.lock);
		virtio_net_tx_process(&net->qp[0], &more);
		pthread_mutex_unlock(&net->vdev.lock);
		while ((r = recv(listener, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
			uint32_t seq;

			cr_assert_geq(r, 18);
			memcpy(&seq, buf + 14, sizeof(seq));
			cr_assert(seq < FRAMES && !seen[seq], "frame %u arrived twice (or was never sent)", seq);
			seen[seq] = true;
			late += seq < next;
			next = seq >= next ? seq + 1 : next;
			got++;
		}
		if (posted == FRAMES && u->idx == (uint16_t)FRAMES && spin > 100000)
			break;   /* all written; the kernel dropped the rest past the back end */
	}
	if (late || got < FRAMES)
		fprintf(stderr, "net_backend: %u of %u frames arrived, %u after a later one\n", got, FRAMES,
			late);
	cr_assert_geq(got, FRAMES - FRAMES / 100, "only %u of %u frames arrived", got, FRAMES);
	cr_assert_eq(net->qp[0].tx_frames, FRAMES);
	cr_assert_eq(net->qp[0].tx_errors, 0);
	cr_assert_eq(u->idx, (uint16_t)FRAMES, "every chain used");
}

static void run_backend(int fd, const char *listen_on, bool expect_link, const uint8_t mac[6])
{
	struct net_config cfg = { .backend = NET_TAP };
	struct guest_mem mem;
	struct virtio_net net;
	int listener = frame_listener(listen_on);

	memcpy(cfg.mac, mac, 6);
	cr_assert_eq(mem_init(&mem, RAM_SIZE), 0);
	memset(&net, 0, sizeof(net));
	cr_assert_eq(virtio_net_init(&net, "backend", &mem, &cfg, &fd, 1, 0), 0);
	cr_assert_eq(net.qp[0].tx_link, expect_link, "linked batches: %d", net.qp[0].tx_link);
	device_start(&net);
	send_and_check(&net, &mem, listener);
	virtio_net_uninit(&net);
	mem_destroy(&mem);
	close(listener);
}

TestSuite(net_backend, .fini = ns_cleanup, .timeout = 60);

/* A TAP takes every write at once: unlinked. */
Test(net_backend, tap_unlinked_frames_arrive)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0, 0, 0, 0x21 };
	unsigned n = 1;
	char err[256];
	int fd;

	ns_enter();
	cr_assert_eq(harness_sh("ip tuntap add dev tapb mode tap && ip link set tapb up"), 0);
	cr_assert_eq(net_tap_open("tapb", &n, false, &fd, err, sizeof(err)), 0, "%s", err);
	run_backend(fd, "tapb", false, mac);
}

/* A macvtap queue may push back: linked batches, read on the veth peer. */
Test(net_backend, macvtap_linked_frames_arrive)
{
	uint8_t mac[6];
	unsigned n = 1;
	char err[256];
	int fd;

	ns_enter();
	cr_assert_eq(harness_sh("ip link add va type veth peer name vb"), 0);
	if (harness_sh("ip link add link va name mvt0 type macvtap mode bridge"))
		cr_skip_test("macvtap is not available");
	cr_assert_eq(harness_sh("ip link set va up && ip link set vb up && ip link set mvt0 up"), 0);
	cr_assert_eq(net_macvtap_open("mvt0", &n, false, &fd, mac, err, sizeof(err)), 0, "%s", err);
	run_backend(fd, "vb", true, mac);
}
