/* virtio-net across a snapshot/restore and a live migration: the test guest's
 * net-echo scenario behind a TAP in a network namespace this test creates
 * (and always deletes, killing every vmm it started, also on failure). The
 * guest must keep answering ping and UDP after it moved:
 *   - snapshot through the API (`vmm ctl vm.snapshot`), the source killed,
 *     restored onto a different TAP with `vmm run --restore DIR --tap 0=tap1`
 *     or with vm.restore {"taps": ["tap1"]} in a `vmm serve`;
 *   - `vmm migrate` over unix: to `vmm run --incoming` (both attached to one
 *     multi-queue TAP), with a ping running throughout; lost replies counted;
 *   - live update (`vmm migrate --local`) on a single-queue TAP, which only one
 *     process can attach: the new vmm answers on the queue the old one hands
 *     over (SCM_RIGHTS), with a fast ping running throughout. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
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

#include "harness.h"

#define GUEST_IP   "10.0.2.15"
#define HOST_IP    "10.0.2.2"
#define GUEST_MAC  "52:54:00:ab:cd:05"
#define MAX_PROCS  4

struct ns_env {
	char ns[32];
	char dir[64];              /* snapshot, sockets, output files */
	pid_t pids[MAX_PROCS];     /* every child still to be killed */
	bool ns_made;
};

static struct ns_env env;

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

static const char *path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", env.dir, name);
	return buf;
}

static void env_create(void)
{
	static int seq;

	snprintf(env.ns, sizeof(env.ns), "vmmns%d-%d", (int)getpid(), seq++);
	snprintf(env.dir, sizeof(env.dir), "/tmp/%s.d", env.ns);
	cr_assert_eq(mkdir(env.dir, 0700), 0, "mkdir %s: %s", env.dir, strerror(errno));
	cr_assert_eq(harness_sh("ip netns add %s", env.ns), 0, "cannot create netns %s", env.ns);
	env.ns_made = true;
	cr_assert_eq(harness_sh("ip -n %s link set lo up", env.ns), 0);
}

static void tap_create(const char *name, const char *flags)
{
	cr_assert_eq(harness_sh("ip -n %s tuntap add dev %s mode tap %s", env.ns, name, flags), 0);
	cr_assert_eq(harness_sh("ip -n %s addr add %s/24 dev %s", env.ns, HOST_IP, name), 0);
	cr_assert_eq(harness_sh("ip -n %s link set %s up", env.ns, name), 0);
}

static void env_cleanup(void)
{
	for (unsigned i = 0; i < MAX_PROCS; i++) {
		if (env.pids[i] > 0) {
			kill(env.pids[i], SIGKILL);
			waitpid(env.pids[i], NULL, 0);
			env.pids[i] = 0;
		}
	}
	if (env.ns_made)
		harness_sh("ip netns del %s 2>/dev/null", env.ns);
	env.ns_made = false;
	if (env.dir[0])
		harness_sh("rm -rf %s", env.dir);
	env.dir[0] = '\0';
}

/* Start `ip netns exec NS <argv...>` in slot @slot, stdout+stderr to @out. */
static pid_t spawn_in_ns(unsigned slot, const char *out, const char *const argv[])
{
	const char *full[32] = { "ip", "netns", "exec", env.ns };
	unsigned n = 4;
	pid_t pid;

	for (unsigned i = 0; argv[i] && n < 31; i++)
		full[n++] = argv[i];
	full[n] = NULL;
	pid = harness_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd < 0)
			_exit(127);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp("ip", (char *const *)full);
		_exit(127);
	}
	env.pids[slot] = pid;
	return pid;
}

static char *read_file(const char *p)
{
	static char buf[65536];
	int fd = open(p, O_RDONLY);
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

static bool wait_text(unsigned slot, const char *out, const char *needle, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	while (now_ms() < end) {
		if (strstr(read_file(out), needle))
			return true;
		if (env.pids[slot] > 0 && waitpid(env.pids[slot], NULL, WNOHANG) == env.pids[slot]) {
			env.pids[slot] = 0;
			return strstr(read_file(out), needle) != NULL;
		}
		usleep(20000);
	}
	return false;
}

static bool wait_path(const char *p, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	while (now_ms() < end) {
		if (access(p, F_OK) == 0)
			return true;
		usleep(20000);
	}
	return false;
}

/* Wait for the child in @slot to exit; its exit status, or -1 (killed at the timeout). */
static int proc_wait(unsigned slot, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int st;

	while (env.pids[slot] > 0 && now_ms() < end) {
		pid_t r = waitpid(env.pids[slot], &st, WNOHANG);

		if (r == env.pids[slot]) {
			env.pids[slot] = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
		usleep(20000);
	}
	if (env.pids[slot] > 0) {
		kill(env.pids[slot], SIGKILL);
		waitpid(env.pids[slot], NULL, 0);
		env.pids[slot] = 0;
	}
	return -1;
}

static void proc_kill(unsigned slot)
{
	if (env.pids[slot] > 0) {
		kill(env.pids[slot], SIGKILL);
		waitpid(env.pids[slot], NULL, 0);
		env.pids[slot] = 0;
	}
}

/* "N packets transmitted, M received" of a ping output file. */
static int ping_counts(const char *out, int *sent)
{
	const char *s = strstr(read_file(out), "packets transmitted");
	int tx = 0, rx = 0;

	while (s && s > read_file(out) && s[-1] != '\n')
		s--;
	if (!s || sscanf(s, "%d packets transmitted, %d received", &tx, &rx) != 2)
		return -1;
	if (sent)
		*sent = tx;
	return rx;
}

/* @n pings (0.2 s apart); returns the replies. */
static int ping_n(int n)
{
	char out[128];

	path(out, sizeof(out), "ping.out");
	harness_sh("ip netns exec %s ping -n -c %d -i 0.2 -W 3 %s > %s 2>&1", env.ns, n, GUEST_IP, out);
	return ping_counts(out, NULL);
}

/* Until the guest answers one ping (it may still be coming up), at most @tries seconds. */
static bool ping_until_answer(int tries)
{
	for (int i = 0; i < tries; i++)
		if (harness_sh("ip netns exec %s ping -n -c 1 -W 1 %s >/dev/null 2>&1", env.ns, GUEST_IP) == 0)
			return true;
	return false;
}

/* In a child that joined the namespace: @n UDP round trips to net-echo's
 * port 7777, payloads checked, then "stop" (the guest then exits with PASS).
 * Returns the failures. */
static int udp_round_trips_and_stop(int n)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		char nspath[96], buf[256], msg[64];
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(7777) };
		struct timeval tv = { .tv_sec = 3 };
		int nsfd, s, bad = 0;

		snprintf(nspath, sizeof(nspath), "/var/run/netns/%s", env.ns);
		nsfd = open(nspath, O_RDONLY);
		if (nsfd < 0 || setns(nsfd, CLONE_NEWNET))
			_exit(100);
		s = socket(AF_INET, SOCK_DGRAM, 0);
		inet_pton(AF_INET, GUEST_IP, &to.sin_addr);
		setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		for (int i = 0; i < n; i++) {
			int len = snprintf(msg, sizeof(msg), "vmm-moved-%d-%d", i, (int)getpid());
			ssize_t got;

			sendto(s, msg, (size_t)len, 0, (struct sockaddr *)&to, sizeof(to));
			got = recv(s, buf, sizeof(buf), 0);
			if (got != len || memcmp(buf, msg, (size_t)len))
				bad++;
		}
		sendto(s, "stop", 4, 0, (struct sockaddr *)&to, sizeof(to));
		_exit(bad);
	}
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100;
}

/* Boot net-echo in slot 0 with an API socket; wait until it answers ping. */
static void boot_source(const char *sock, const char *out)
{
	char *kernel = harness_image_path("testguest.elf");
	const char *argv[] = { harness_vmm_bin(), "run", "--kernel", kernel, "--cmdline",
			       "test=net-echo ip=" GUEST_IP "/24", "--memory", "32", "--net",
			       "tap=tap0,mac=" GUEST_MAC, "--console", "stdio", "--api-sock", sock, NULL };

	cr_assert_not_null(kernel);
	spawn_in_ns(0, out, argv);
	free(kernel);
	cr_assert(wait_text(0, out, "net: ready", harness_timeout_ms(20000)),
		  "guest never became ready:\n%s", read_file(out));
	cr_assert_eq(ping_n(3), 3, "source guest did not answer 3 pings");
}

/* Guest keeps answering after the move, then finishes with PASS. */
static void expect_alive_then_stop(unsigned slot, const char *out)
{
	cr_assert(ping_until_answer(harness_timeout_ms(15000) / 1000),
		  "moved guest never answered a ping:\n%s", read_file(out));
	cr_expect_eq(ping_n(5), 5, "moved guest lost pings");
	cr_expect_eq(udp_round_trips_and_stop(10), 0, "UDP round trips to the moved guest failed");
	cr_assert_eq(proc_wait(slot, harness_timeout_ms(10000)), 0, "moved vmm did not exit cleanly:\n%s",
		     read_file(out));
	cr_assert_not_null(strstr(read_file(out), "PASS net-echo"), "%s", read_file(out));
}

TestSuite(net_snapshot, .fini = env_cleanup, .timeout = 90);

/* Boot net-echo on tap0, snapshot it through the API into @snap, kill it,
 * and replace tap0 by tap1: the host side differs after a move (another
 * TAP, another MAC on the host end). */
static void snapshot_then_move_tap(char *snap, size_t len)
{
	char sock[128], out_a[128], ctl_out[128], body[256];

	skip_unless_capable();
	env_create();
	tap_create("tap0", "");
	path(sock, sizeof(sock), "a.sock");
	path(out_a, sizeof(out_a), "a.out");
	path(snap, len, "snap");
	path(ctl_out, sizeof(ctl_out), "ctl.out");
	boot_source(sock, out_a);

	snprintf(body, sizeof(body), "{\"destination\": \"%s\"}", snap);
	cr_assert_eq(harness_sh("%s ctl --api-sock %s vm.snapshot --data '%s' > %s 2>&1", harness_vmm_bin(), sock,
			body, ctl_out),
		     0, "vm.snapshot failed: %s", read_file(ctl_out));
	proc_kill(0);
	cr_assert_eq(harness_sh("ip -n %s link del tap0", env.ns), 0);
	tap_create("tap1", "");
}

/* The guest's counters came along: 3 pings before the move, at least 6 after. */
static void expect_icmp_count_carried(const char *out)
{
	const char *icmp = strstr(read_file(out), "icmp=");

	cr_assert(icmp && atoi(icmp + 5) >= 9, "icmp count: %s", read_file(out));
}

Test(net_snapshot, restore_on_another_tap_keeps_answering)
{
	char snap[128], out_b[128], msg[128];

	snapshot_then_move_tap(snap, sizeof(snap));
	path(out_b, sizeof(out_b), "b.out");
	path(msg, sizeof(msg), "refused.out");
	/* A TAP override naming nothing: refused with a message naming it. */
	cr_assert_neq(harness_sh("ip netns exec %s %s run --restore %s --tap 0=nosuch9 --console none > %s 2>&1",
			 env.ns, harness_vmm_bin(), snap, msg),
		      0);
	cr_assert_not_null(strstr(read_file(msg), "nosuch9"), "%s", read_file(msg));

	const char *argv[] = { harness_vmm_bin(), "run", "--restore", snap, "--tap", "0=tap1", "--console",
			       "stdio", NULL };
	spawn_in_ns(1, out_b, argv);
	expect_alive_then_stop(1, out_b);
	expect_icmp_count_carried(out_b);
}

/* The same through the API: vm.restore {"taps": ["tap1"]} in a `vmm serve`. */
Test(net_snapshot, api_restore_with_taps_keeps_answering)
{
	char snap[128], out_b[128], sock[128], ctl_out[128], body[256];

	snapshot_then_move_tap(snap, sizeof(snap));
	path(out_b, sizeof(out_b), "b.out");
	path(sock, sizeof(sock), "b.sock");
	path(ctl_out, sizeof(ctl_out), "ctl-b.out");
	const char *argv[] = { harness_vmm_bin(), "serve", "--api-sock", sock, NULL };
	spawn_in_ns(1, out_b, argv);
	cr_assert(wait_path(sock, 5000), "vmm serve did not listen: %s", read_file(out_b));
	snprintf(body, sizeof(body), "{\"source\": \"%s\", \"taps\": [\"tap1\"]}", snap);
	cr_assert_eq(harness_sh("%s ctl --api-sock %s vm.restore --data '%s' > %s 2>&1", harness_vmm_bin(), sock,
			body, ctl_out),
		     0, "vm.restore failed: %s", read_file(ctl_out));
	cr_assert_eq(harness_sh("%s ctl --api-sock %s vm.resume > %s 2>&1", harness_vmm_bin(), sock, ctl_out), 0,
		     "vm.resume failed: %s", read_file(ctl_out));
	cr_assert(ping_until_answer(harness_timeout_ms(15000) / 1000),
		  "restored guest never answered a ping:\n%s", read_file(out_b));
	cr_expect_eq(ping_n(5), 5, "restored guest lost pings");
	cr_expect_eq(udp_round_trips_and_stop(10), 0, "UDP round trips to the restored guest failed");
	cr_assert(wait_text(1, out_b, "PASS net-echo", harness_timeout_ms(10000)), "%s", read_file(out_b));
	expect_icmp_count_carried(out_b);
	harness_sh("%s ctl --api-sock %s vmm.shutdown > /dev/null 2>&1", harness_vmm_bin(), sock);
	cr_assert_eq(proc_wait(1, 5000), 0, "vmm serve did not shut down cleanly");
}

/* Boot net-echo on tap0 (created with @tap_flags), move it with `vmm migrate
 * URL @migrate_args` to a `vmm run --incoming` while @ping_count pings
 * @ping_interval apart run; returns the replies lost (logged with @what).
 * The destination runs in slot 1, its output in @out_b. */
static int move_with_ping(const char *tap_flags, const char *migrate_args, const char *ping_count,
			  const char *ping_interval, const char *what, char *out_b, size_t out_len)
{
	char sock[128], out_a[128], out_m[128], out_p[128], url[160], mig[128];
	int sent = 0, got;

	skip_unless_capable();
	env_create();
	tap_create("tap0", tap_flags);
	path(sock, sizeof(sock), "a.sock");
	path(out_a, sizeof(out_a), "a.out");
	path(out_b, out_len, "b.out");
	path(out_m, sizeof(out_m), "migrate.out");
	path(out_p, sizeof(out_p), "ping-during.out");
	path(mig, sizeof(mig), "mig.sock");
	snprintf(url, sizeof(url), "unix:%s", mig);
	boot_source(sock, out_a);

	const char *dst[] = { harness_vmm_bin(), "run", "--incoming", url, "--console", "stdio", "-v", NULL };
	spawn_in_ns(1, out_b, dst);
	cr_assert(wait_path(mig, 5000), "destination never listened: %s", read_file(out_b));
	const char *ping[] = { "ping", "-n", "-c", ping_count, "-i", ping_interval, "-W", "2", GUEST_IP, NULL };
	spawn_in_ns(2, out_p, ping);
	usleep(500000);
	cr_assert_eq(harness_sh("%s migrate --api-sock %s %s %s > %s 2>&1", harness_vmm_bin(), sock, url, migrate_args,
			out_m),
		     0, "%s failed: %s\ndestination: %s", what, read_file(out_m), read_file(out_b));
	cr_expect_eq(proc_wait(0, harness_timeout_ms(10000)), 0, "source did not end cleanly: %s",
		     read_file(out_a));
	cr_log_info("%s", read_file(out_m));
	proc_wait(2, harness_timeout_ms(15000));
	got = ping_counts(out_p, &sent);
	cr_log_info("ping every %s s during %s: %d sent, %d answered, %d lost", ping_interval, what, sent, got,
		    sent - got);
	cr_assert_gt(sent, atoi(ping_count) / 2, "%s", read_file(out_p));
	return sent - got;
}

Test(net_snapshot, live_migration_keeps_answering)
{
	char out_b[128];
	/* Source and destination attach to the same TAP while the VM moves. */
	int lost = move_with_ping("multi_queue", "", "40", "0.1", "live migration", out_b, sizeof(out_b));

	cr_expect_leq(lost, 10, "too many lost replies: %d", lost);
	expect_alive_then_stop(1, out_b);
}

/* Live update keeps the very same TAP queue: tap0 is single-queue, so the
 * new process could not attach to it by name while the old one holds it. */
Test(net_snapshot, live_update_hands_over_the_tap)
{
	char out_b[128];
	int lost = move_with_ping("", "--local", "150", "0.02", "live update", out_b, sizeof(out_b));

	cr_assert_not_null(strstr(read_file(out_b), "(handed over)"),
			   "the new vmm did not use the handed-over queue:\n%s", read_file(out_b));
	cr_expect_leq(lost, 3, "too many lost replies: %d", lost);
	expect_alive_then_stop(1, out_b);
}
