/* virtio-net end to end: the test guest's net-echo / net-bad-desc /
 * net-tx-flood scenarios behind a TAP, and behind a macvtap on a veth pair,
 * each in a network namespace this test creates and always deletes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sys/mount.h>

#include "harness.h"
#include "devices/virtio_net_config.h"
#include "migration/snapshot.h"
#include "vmm/vm.h"

#define GUEST_IP   "10.0.2.15"
#define HOST_IP    "10.0.2.2"
#define NET_BOOT_TIMEOUT_MS 20000

struct net_env {
	char ns[32];
	char out_path[64];
	pid_t vmm;
	bool ns_made;
};

static struct net_env env;

static void skip_unless_capable(void)
{
	if (!harness_have_kvm())
		cr_skip_test("/dev/kvm is not available");
	if (access("/dev/net/tun", R_OK | W_OK))
		cr_skip_test("/dev/net/tun is not available");
	if (geteuid() != 0)
		cr_skip_test("network namespaces need root");
	if (harness_sh("ip -V >/dev/null 2>&1"))
		cr_skip_test("iproute2 (ip) is missing");
}

static void ns_create(void)
{
	static int seq;

	snprintf(env.ns, sizeof(env.ns), "vmmt%d-%d", (int)getpid(), seq++);
	snprintf(env.out_path, sizeof(env.out_path), "/tmp/%s.out", env.ns);
	cr_assert_eq(harness_sh("ip netns add %s", env.ns), 0, "cannot create netns %s", env.ns);
	env.ns_made = true;
	cr_assert_eq(harness_sh("ip -n %s link set lo up", env.ns), 0);
}

static void tap_create(const char *name, const char *addr)
{
	cr_assert_eq(harness_sh("ip -n %s tuntap add dev %s mode tap", env.ns, name), 0);
	cr_assert_eq(harness_sh("ip -n %s addr add %s dev %s", env.ns, addr, name), 0);
	cr_assert_eq(harness_sh("ip -n %s link set %s up", env.ns, name), 0);
}

static void env_cleanup(void)
{
	if (env.vmm > 0) {
		kill(env.vmm, SIGKILL);
		waitpid(env.vmm, NULL, 0);
		env.vmm = 0;
	}
	if (env.ns_made)
		harness_sh("ip netns del %s 2>/dev/null", env.ns);
	env.ns_made = false;
	if (env.out_path[0])
		unlink(env.out_path);
}

/* Start vmm inside the namespace; stdout+stderr go to env.out_path. */
static void vmm_start(const char *cmdline, const char *net)
{
	char *kernel = harness_image_path("testguest.elf");
	pid_t pid;

	cr_assert_not_null(kernel);
	pid = harness_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(env.out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd < 0)
			_exit(127);
		dup2(fd, 1);
		dup2(fd, 2);
		execlp("ip", "ip", "netns", "exec", env.ns, harness_vmm_bin(), "run", "--kernel", kernel,
		       "--cmdline", cmdline, "--net", net, "--console", "stdio", (char *)NULL);
		_exit(127);
	}
	free(kernel);
	env.vmm = pid;
}

static char *read_output(void)
{
	static char buf[65536];
	int fd = open(env.out_path, O_RDONLY);
	ssize_t n = fd < 0 ? 0 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool wait_output(const char *needle, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	while (now_ms() < end) {
		if (strstr(read_output(), needle))
			return true;
		if (waitpid(env.vmm, NULL, WNOHANG) == env.vmm) {
			env.vmm = 0;
			return strstr(read_output(), needle) != NULL;
		}
		usleep(20000);
	}
	return false;
}

/* Wait for vmm to exit; returns its exit status or -1 (killed at timeout). */
static int vmm_wait(int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int st;

	while (env.vmm > 0 && now_ms() < end) {
		pid_t r = waitpid(env.vmm, &st, WNOHANG);

		if (r == env.vmm) {
			env.vmm = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
		usleep(20000);
	}
	if (env.vmm > 0) {
		kill(env.vmm, SIGKILL);
		waitpid(env.vmm, NULL, 0);
		env.vmm = 0;
	}
	return -1;
}

/* In a child that joined the namespace: @n UDP round trips to the guest,
 * each payload checked, then "stop". With @flows, every datagram comes from
 * a new socket (a new source port: a new flow for multi-queue steering).
 * Exit status = failures. */
static int udp_exchange(const char *guest_ip, int n, bool flows)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		char path[64], buf[256], msg[64];
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(7777) };
		struct timeval tv = { .tv_sec = 2 };
		int nsfd, s, bad = 0;

		snprintf(path, sizeof(path), "/var/run/netns/%s", env.ns);
		nsfd = open(path, O_RDONLY);
		if (nsfd < 0 || setns(nsfd, CLONE_NEWNET)) {
			fprintf(stderr, "udp: cannot join %s: %s\n", path, strerror(errno));
			_exit(100);
		}
		s = socket(AF_INET, SOCK_DGRAM, 0);
		inet_pton(AF_INET, guest_ip, &to.sin_addr);
		setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		for (int i = 0; i < n; i++) {
			int len = snprintf(msg, sizeof(msg), "vmm-udp-%d-%d", i, (int)getpid());
			bool ok = false;

			if (flows && i) {
				close(s);
				s = socket(AF_INET, SOCK_DGRAM, 0);
				setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			}
			/* UDP may drop (the guest is emulated and shares two cores
			 * with the rest of the suite): up to three tries. */
			for (int t = 0; t < 3 && !ok; t++) {
				ssize_t got;

				sendto(s, msg, (size_t)len, 0, (struct sockaddr *)&to, sizeof(to));
				while (!ok && (got = recv(s, buf, sizeof(buf), 0)) > 0)
					ok = got == len && !memcmp(buf, msg, (size_t)len);
			}
			if (!ok) {
				fprintf(stderr, "udp: no echo for datagram %d: %s\n", i, strerror(errno));
				bad++;
			}
		}
		/* "stop" twice: the second is harmless if the first arrived. */
		sendto(s, "stop", 4, 0, (struct sockaddr *)&to, sizeof(to));
		usleep(200000);
		sendto(s, "stop", 4, 0, (struct sockaddr *)&to, sizeof(to));
		_exit(bad);
	}
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100;
}

static int udp_round_trips(const char *guest_ip, int n)
{
	return udp_exchange(guest_ip, n, false);
}

static void ping_udp_and_stop_flows(const char *guest_ip, bool flows)
{
	int st;

	cr_assert(wait_output("net: ready", harness_timeout_ms(NET_BOOT_TIMEOUT_MS)),
		  "guest never became ready:\n%s", read_output());
	st = harness_sh("ip netns exec %s ping -n -c 5 -i 0.2 -W 3 %s > %s.ping 2>&1", env.ns, guest_ip,
		env.out_path);
	{
		char cmd[160];
		snprintf(cmd, sizeof(cmd), "grep -q ' 5 received' %s.ping", env.out_path);
		cr_expect_eq(st, 0, "ping failed");
		cr_expect_eq(harness_sh("%s", cmd), 0, "ping did not get 5 replies");
		harness_sh("rm -f %s.ping", env.out_path);
	}
	st = udp_exchange(guest_ip, flows ? 24 : 10, flows);
	cr_expect_eq(st, 0, "UDP round trips failed (%d); vmm output:\n%s", st, read_output());
	cr_assert_eq(vmm_wait(harness_timeout_ms(10000)), 0, "vmm did not exit cleanly:\n%s",
		     read_output());
	cr_assert_not_null(strstr(read_output(), "PASS net-echo"), "%s", read_output());
	cr_assert_not_null(strstr(read_output(), "icmp=5"), "%s", read_output());
}

static void ping_udp_and_stop(const char *guest_ip)
{
	ping_udp_and_stop_flows(guest_ip, false);
}

TestSuite(net, .fini = env_cleanup, .timeout = 60);

Test(net, tap_ping_and_udp_echo)
{
	skip_unless_capable();
	ns_create();
	tap_create("tap0", HOST_IP "/24");
	/* EVENT_IDX here; the macvtap test below uses the flags path. */
	vmm_start("test=net-echo event_idx=1 ip=" GUEST_IP "/24", "tap=tap0,mac=52:54:00:ab:cd:01");
	ping_udp_and_stop(GUEST_IP);
	cr_assert_not_null(strstr(read_output(), "mac=52:54:00:ab:cd:01"), "guest did not get the MAC");
	const char *f = strstr(read_output(), "features=0x");
	cr_assert(f && (strtoull(f + 11, NULL, 16) >> 29 & 1), "EVENT_IDX not negotiated: %s", read_output());
}

/* Two vCPUs: one queue pair per vCPU, one TAP queue each (IFF_MULTI_QUEUE).
 * The guest negotiates CTRL_VQ + MQ and switches to two pairs with
 * VQ_PAIRS_SET; 24 UDP flows must then arrive on both RX queues (the second
 * TAP queue is attached only now: with one active pair it stays detached). */
Test(net, multiqueue_tap_one_pair_per_vcpu)
{
	char *kernel;

	skip_unless_capable();
	ns_create();
	cr_assert_eq(harness_sh("ip -n %s tuntap add dev tap0 mode tap multi_queue", env.ns), 0);
	cr_assert_eq(harness_sh("ip -n %s addr add " HOST_IP "/24 dev tap0 && ip -n %s link set tap0 up",
			env.ns, env.ns), 0);
	kernel = harness_image_path("testguest.elf");
	pid_t pid = harness_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(env.out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(fd, 1);
		dup2(fd, 2);
		execlp("ip", "ip", "netns", "exec", env.ns, harness_vmm_bin(), "run", "-v", "--cpus", "2",
		       "--kernel", kernel, "--cmdline", "test=net-echo event_idx=1 mq=1", "--net", "tap=tap0",
		       "--console", "stdio", (char *)NULL);
		_exit(127);
	}
	free(kernel);
	env.vmm = pid;
	ping_udp_and_stop_flows(GUEST_IP, true);
	char *out = read_output();
	cr_assert_not_null(strstr(out, "2 queue pairs"), "%s", out);
	cr_assert_not_null(strstr(out, "pairs=2"), "guest did not switch to 2 pairs: %s", out);
	const char *q0 = strstr(out, "rxq0="), *q1 = strstr(out, "rxq1=");
	cr_assert(q0 && q1, "%s", out);
	cr_assert(atol(q0 + 5) > 0 && atol(q1 + 5) > 0, "frames did not use both RX queues: %s", out);
}

Test(net, macvtap_on_veth)
{
	skip_unless_capable();
	ns_create();
	cr_assert_eq(harness_sh("ip -n %s link add va type veth peer name vb", env.ns), 0);
	if (harness_sh("ip -n %s link add link va name mvt0 type macvtap mode bridge", env.ns))
		cr_skip_test("macvtap is not available");
	cr_assert_eq(harness_sh("ip -n %s addr add 10.0.3.2/24 dev vb", env.ns), 0);
	cr_assert_eq(harness_sh("ip -n %s link set va up && ip -n %s link set vb up && ip -n %s link set mvt0 up",
			env.ns, env.ns, env.ns), 0);
	vmm_start("test=net-echo ip=10.0.3.15/24", "macvtap=mvt0");
	ping_udp_and_stop("10.0.3.15");
}

Test(net, bad_descriptors_need_reset_and_vmm_survives)
{
	skip_unless_capable();
	ns_create();
	tap_create("tap0", HOST_IP "/24");
	vmm_start("test=net-bad-desc", "tap=tap0");
	cr_assert_eq(vmm_wait(harness_timeout_ms(NET_BOOT_TIMEOUT_MS)), 0, "%s", read_output());
	char *out = read_output();
	cr_assert_not_null(strstr(out, "PASS net-bad-desc"), "%s", out);
	/* Each malformed chain is logged exactly once. */
	int n = 0;
	for (char *p = out; (p = strstr(p, "device needs reset")); p++)
		n++;
	cr_assert_eq(n, 7, "expected 7 NEEDS_RESET log lines, got %d:\n%s", n, out);
}

Test(net, tx_flood_reaches_the_tap)
{
	char path[128], buf[64];
	long before = 0, after = 0;
	FILE *f;

	skip_unless_capable();
	ns_create();
	tap_create("tap0", HOST_IP "/24");
	snprintf(path, sizeof(path), "ip netns exec %s cat /sys/class/net/tap0/statistics/rx_packets",
		 env.ns);
	f = popen(path, "r");
	cr_assert(f && fgets(buf, sizeof(buf), f));
	before = atol(buf);
	pclose(f);
	vmm_start("test=net-tx-flood event_idx=1 count=3000 size=64", "tap=tap0");
	cr_assert_eq(vmm_wait(harness_timeout_ms(NET_BOOT_TIMEOUT_MS)), 0, "%s", read_output());
	cr_assert_not_null(strstr(read_output(), "PASS net-tx-flood sent=3000"), "%s", read_output());
	f = popen(path, "r");
	cr_assert(f && fgets(buf, sizeof(buf), f));
	after = atol(buf);
	pclose(f);
	cr_assert_geq(after - before, 3000, "TAP saw %ld frames", after - before);
}

/* One-line errors for a missing TAP, a busy TAP and a bad MAC. */
Test(net, clear_errors)
{
	skip_unless_capable();
	ns_create();
	vmm_start("test=hello", "tap=nosuchtap0");
	cr_assert_neq(vmm_wait(harness_timeout_ms(10000)), 0);
	cr_assert_not_null(strstr(read_output(), "TAP 'nosuchtap0' does not exist"), "%s", read_output());

	vmm_start("test=hello", "tap=tap0,mac=01:00:5e:00:00:01");
	cr_assert_eq(vmm_wait(harness_timeout_ms(10000)), 2, "%s", read_output());
	cr_assert_not_null(strstr(read_output(), "not a unicast MAC"), "%s", read_output());

	tap_create("tap0", HOST_IP "/24");
	vmm_start("test=net-echo", "tap=tap0");
	cr_assert(wait_output("net: ready", harness_timeout_ms(NET_BOOT_TIMEOUT_MS)), "%s", read_output());
	pid_t first = env.vmm;
	char first_out[64];
	snprintf(first_out, sizeof(first_out), "%s", env.out_path);
	snprintf(env.out_path, sizeof(env.out_path), "/tmp/%s.2.out", env.ns);
	vmm_start("test=hello", "tap=tap0");
	int st = vmm_wait(harness_timeout_ms(10000));
	char *out = read_output();
	bool busy = strstr(out, "TAP 'tap0' is busy") != NULL;
	unlink(env.out_path);
	snprintf(env.out_path, sizeof(env.out_path), "%s", first_out);
	env.vmm = first;
	cr_assert_neq(st, 0);
	cr_assert(busy, "second vmm on the same TAP: %s", out);
	cr_assert_eq(udp_round_trips(GUEST_IP, 0), 0);   /* sends "stop" */
	cr_assert_eq(vmm_wait(harness_timeout_ms(10000)), 0, "%s", read_output());
}

/* Join the test's namespace the way `ip netns exec` does: network namespace,
 * plus a private mount namespace with /sys remounted so sysfs shows our
 * interfaces. For a forked child only. */
static int child_enter_netns(void)
{
	return harness_join_netns(env.ns) || harness_private_sysfs() ? -1 : 0;
}

/* Child: boot net-echo with the TAP, snapshot it once it is ready. */
static int child_snapshot(const char *dir)
{
	struct vm_config cfg;
	struct snapshot_stats st;
	char console[700], log[600], err[512] = "";
	struct vm *vm;

	if (child_enter_netns())
		return 10;
	config_init(&cfg);
	cfg.kernel = harness_image_path("testguest.elf");
	cfg.cmdline = strdup("test=net-echo event_idx=1 ip=" GUEST_IP "/24");
	cfg.memory_mib = 32;
	snprintf(log, sizeof(log), "%s/console-before.log", dir);
	snprintf(console, sizeof(console), "file:%s", log);
	if (config_parse_console(&cfg, console, err, sizeof(err)) ||
	    config_parse_net(&cfg, "tap=tap0,mac=52:54:00:ab:cd:02", err, sizeof(err)))
		return 11;
	if (vm_create(&vm, &cfg, err, sizeof(err))) {
		fprintf(stderr, "vm_create: %s\n", err);
		return 12;
	}
	if (vm_start(vm))
		return 13;
	for (int i = 0; i < 2000; i++) {
		char buf[4096] = { 0 };
		int fd = open(log, O_RDONLY);
		ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

		if (fd >= 0)
			close(fd);
		if (n > 0 && strstr(buf, "net: ready"))
			break;
		usleep(10000);
	}
	usleep(200000);
	if (vm_pause(vm))
		return 14;
	if (snapshot_save(vm, dir, &st, err, sizeof(err))) {
		fprintf(stderr, "snapshot: %s\n", err);
		return 15;
	}
	vm_destroy(vm);
	config_free(&cfg);
	return 0;
}

/* The NIC's state (virtio transport, queues, MSI-X, MAC) survives a
 * snapshot: the restored guest still answers ping and echoes UDP. */
Test(net, snapshot_restore_keeps_the_nic, .timeout = 120)
{
	char dir[] = "/tmp/vmm-net-snap-XXXXXX";
	pid_t pid;
	int st;

	skip_unless_capable();
	ns_create();
	tap_create("tap0", HOST_IP "/24");
	cr_assert_not_null(mkdtemp(dir));
	pid = harness_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(child_snapshot(dir));
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "snapshot child failed: %d", WEXITSTATUS(st));

	pid = harness_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(env.out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(fd, 1);
		dup2(fd, 2);
		execlp("ip", "ip", "netns", "exec", env.ns, harness_vmm_bin(), "run", "--restore", dir,
		       "--console", "stdio", (char *)NULL);
		_exit(127);
	}
	env.vmm = pid;
	/* The restored guest printed "ready" before the snapshot: ping until it answers. */
	int ok = -1;
	for (int i = 0; i < 20 && ok; i++)
		ok = harness_sh("ip netns exec %s ping -n -c 1 -W 1 " GUEST_IP " >/dev/null 2>&1", env.ns);
	cr_assert_eq(ok, 0, "restored guest does not answer ping:\n%s", read_output());
	cr_assert_eq(harness_sh("ip netns exec %s ping -n -c 5 -i 0.2 -W 3 " GUEST_IP " >/dev/null", env.ns), 0);
	cr_expect_eq(udp_round_trips(GUEST_IP, 10), 0, "UDP after restore failed");
	cr_assert_eq(vmm_wait(harness_timeout_ms(20000)), 0, "%s", read_output());
	cr_assert_not_null(strstr(read_output(), "PASS net-echo"), "%s", read_output());
	harness_sh("rm -rf %s", dir);
}
