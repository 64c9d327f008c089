/* virtio-iommu end to end: the test guest drives the virtio-iommu and a
 * virtio-net placed behind it (iommu=on) whose TX ring and buffers are
 * reachable only through IOVAs. Each test makes its own persistent TAP
 * (root needed; skipped otherwise) and removes it afterwards. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define IOMMU_TIMEOUT_MS 30000

/* Create (persist = 1) or delete (persist = 0) TAP @name. */
static int tap_persist(const char *name, int persist)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETPERSIST, persist) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* Remove TAP @name. The vmm may still be closing its queue fds in a
 * teardown child for a moment (TUNSETIFF answers EBUSY meanwhile): retry. */
static void tap_delete(const char *name)
{
	for (int i = 0; i < 250 && tap_persist(name, 0) == -EBUSY; i++)
		usleep(20000);
}

#define ECHO_ETHERTYPE 0x88b5

/* The host-side peer: a packet socket on the TAP that sends every frame of
 * our ethertype back (broadcast destination, same payload). */
struct echo_peer {
	int fd;
	pthread_t thread;
	_Atomic bool stop;
	_Atomic unsigned echoed;
};

static void *echo_loop(void *arg)
{
	struct echo_peer *p = arg;
	unsigned char buf[2048];

	while (!atomic_load(&p->stop)) {
		struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t n;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		n = recvfrom(p->fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (n < 14 || from.sll_pkttype == PACKET_OUTGOING)
			continue;
		memcpy(buf + 6, "\x02\x00\x00\x00\x20\x02", 6);
		memset(buf, 0xff, 6);
		if (send(p->fd, buf, (size_t)n, 0) == n)
			atomic_fetch_add(&p->echoed, 1);
	}
	return NULL;
}

static int if_up(const char *name)
{
	struct ifreq ifr;
	char path[128];
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = 0;
	FILE *f;

	/* No IPv6 autoconfiguration chatter into the guest's RX queue. */
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
	f = fopen(path, "w");
	if (f) {
		fputs("1", f);
		fclose(f);
	}
	if (s < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		ret = -errno;
	ifr.ifr_flags |= IFF_UP;
	if (!ret && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		ret = -errno;
	close(s);
	return ret;
}

static int echo_start(struct echo_peer *p, const char *ifname)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ECHO_ETHERTYPE) };
	int ret = if_up(ifname);

	if (ret)
		return ret;
	memset(p, 0, sizeof(*p));
	p->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ECHO_ETHERTYPE));
	if (p->fd < 0)
		return -errno;
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	if (!sll.sll_ifindex || bind(p->fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		ret = -errno;
		close(p->fd);
		return ret ? ret : -ENODEV;
	}
	return -pthread_create(&p->thread, NULL, echo_loop, p);
}

static void echo_stop(struct echo_peer *p)
{
	atomic_store(&p->stop, true);
	pthread_join(p->thread, NULL);
	close(p->fd);
}

struct iommu_run {
	char tap[IFNAMSIZ];
	char config[64];
	struct run_result r;
	bool echo;
	struct echo_peer peer;
};

/* Boot scenario @test with --iommu semantics from a JSON config:
 * {"iommu": @iommu, "nets": [{"tap": ..., "iommu": @net_iommu}]}. */
static void run_scenario(struct iommu_run *run, const char *test, bool iommu, bool net_iommu)
{
	static int seq;
	char *kernel = harness_image_path("testguest.elf");
	const char *argv[] = { "run", "--config", run->config, NULL };
	FILE *f;
	int fd, ret;

	if (!harness_have_kvm())
		cr_skip_test("/dev/kvm is not available");
	snprintf(run->tap, sizeof(run->tap), "vio%d-%d", (int)getpid() % 100000, seq++);
	ret = tap_persist(run->tap, 1);
	if (ret)
		cr_skip_test("cannot create TAP %s: %s", run->tap, strerror(-ret));
	snprintf(run->config, sizeof(run->config), "/tmp/vmm-iommu-XXXXXX");
	fd = mkstemp(run->config);
	cr_assert_geq(fd, 0);
	f = fdopen(fd, "w");
	cr_assert_not_null(f);
	if (run->echo) {
		ret = echo_start(&run->peer, run->tap);
		if (ret) {
			tap_delete(run->tap);
			cr_skip_test("no echo peer on %s: %s", run->tap, strerror(-ret));
		}
	}
	fprintf(f, "{\"kernel\": \"%s\", \"cmdline\": \"test=%s\", \"iommu\": %s, "
		   "\"nets\": [{\"tap\": \"%s\", \"iommu\": %s}]}\n",
		kernel, test, iommu ? "true" : "false", run->tap, net_iommu ? "true" : "false");
	fclose(f);
	free(kernel);
	ret = harness_run(argv, harness_timeout_ms(IOMMU_TIMEOUT_MS), &run->r);
	if (run->echo)
		echo_stop(&run->peer);
	unlink(run->config);
	tap_delete(run->tap);
	cr_assert_eq(ret, 0, "could not start %s: %s", harness_vmm_bin(), strerror(-ret));
	cr_assert(!run->r.timed_out, "timed out; stdout:\n%s\nstderr:\n%s", run->r.out, run->r.err);
}

static void assert_pass(struct iommu_run *run, const char *test)
{
	char line[64];

	snprintf(line, sizeof(line), "PASS %s", test);
	cr_assert(strstr(run->r.out, line), "no '%s'; stdout:\n%s\nstderr:\n%s", line, run->r.out,
		  run->r.err);
	cr_assert_eq(run->r.exit_status, 0, "exit %d; stderr:\n%s", run->r.exit_status, run->r.err);
}

Test(iommu, net_through_translated_addresses, .timeout = 90)
{
	struct iommu_run run = { .echo = false };

	run_scenario(&run, "iommu-net", true, true);
	assert_pass(&run, "iommu-net");
	cr_expect(strstr(run.r.out, "frames=16"), "stdout:\n%s", run.r.out);
	harness_result_free(&run.r);
}

/* net-echo style: every frame goes out through TX buffers the device reads
 * via IOVAs, a host peer on the TAP sends it back, and it lands in RX
 * buffers the device writes via IOVAs. */
Test(iommu, net_echo_through_translated_addresses, .timeout = 90)
{
	struct iommu_run run = { .echo = true };

	run_scenario(&run, "iommu-net echo", true, true);
	assert_pass(&run, "iommu-net");
	cr_expect(strstr(run.r.out, "frames=16 echoed=16"), "stdout:\n%s", run.r.out);
	cr_expect_geq(atomic_load(&run.peer.echoed), 16);
	harness_result_free(&run.r);
}

/* Only the request with the unmapped buffer fails: a fault event, its frame
 * never on the wire, memory untouched, and the device keeps going without a
 * reset (five more frames echoed back, the last through the re-mapped IOVA). */
Test(iommu, unmapped_buffer_fails_one_request, .timeout = 90)
{
	struct iommu_run run = { .echo = true };

	run_scenario(&run, "iommu-fault echo", true, true);
	assert_pass(&run, "iommu-fault");
	/* The fault names the IOVA the guest unmapped (reason 2 = MAPPING). */
	cr_expect(strstr(run.r.out, "reason=2 addr=0x8101000"), "stdout:\n%s", run.r.out);
	cr_expect(strstr(run.r.out, "after=5 echoed=5"), "stdout:\n%s", run.r.out);
	cr_expect_eq(atomic_load(&run.peer.echoed), 6, "the faulting frame must not reach the wire");
	cr_expect_not(strstr(run.r.err, "needs reset"), "stderr:\n%s", run.r.err);
	cr_expect(strstr(run.r.err, "IOMMU refused read of 0x8101000"), "stderr:\n%s", run.r.err);
	harness_result_free(&run.r);
}

Test(iommu, split_refused_and_pieces_work, .timeout = 90)
{
	struct iommu_run run = { .echo = false };

	run_scenario(&run, "iommu-split", true, true);
	assert_pass(&run, "iommu-split");
	harness_result_free(&run.r);
}

/* The device-write direction: an echoed frame must not land in an RX buffer
 * the guest unmapped; that buffer comes back empty, a WRITE fault is
 * reported, memory is untouched, and the frame plus three more arrive in
 * the next buffers without a device reset. */
Test(iommu, unmapped_rx_buffer_faults_on_write, .timeout = 90)
{
	struct iommu_run run = { .echo = true };

	run_scenario(&run, "iommu-fault-rx", true, true);
	assert_pass(&run, "iommu-fault-rx");
	cr_expect(strstr(run.r.out, "reason=2 flags=0x102 addr=0x8200000 after=3"), "stdout:\n%s",
		  run.r.out);
	cr_expect_not(strstr(run.r.err, "needs reset"), "stderr:\n%s", run.r.err);
	harness_result_free(&run.r);
}

/* Without iommu=on the net device is not an endpoint: the VIOT does not list
 * it and the guest's scenario must fail (the check can fail). */
Test(iommu, net_not_behind_iommu_is_not_an_endpoint, .timeout = 90)
{
	struct iommu_run run = { .echo = false };

	run_scenario(&run, "iommu-net", true, false);
	cr_assert(strstr(run.r.out, "FAIL iommu-net"), "stdout:\n%s", run.r.out);
	cr_assert_neq(run.r.exit_status, 0);
	harness_result_free(&run.r);
}

Test(iommu, net_iommu_on_needs_the_device, .timeout = 30)
{
	struct iommu_run run = { .echo = false };

	run_scenario(&run, "iommu-net", false, true);
	cr_assert_neq(run.r.exit_status, 0);
	cr_assert(strstr(run.r.err, "iommu"), "stderr:\n%s", run.r.err);
	harness_result_free(&run.r);
}
