/* The hand-over of a live migration, cut at each step (migration/stream.h has
 * the table of what each side must do). A proxy thread relays the stream
 * between a real source and a real destination frame by frame and cuts both
 * connections at one point:
 *   - DONE never arrives: the source resumes, the destination exits;
 *   - the ready ACK never arrives: the same, although the destination has
 *     already applied the whole state;
 *   - COMMIT never arrives: neither side runs the guest; the source keeps it
 *     paused (it cannot know whether the COMMIT arrived) and says so, and an
 *     operator's vm.resume there brings it back with nothing lost;
 *   - the final ACK never arrives: the destination runs the guest to PASS,
 *     the source keeps its copy paused and never resumes it.
 * In no case do both run the guest. At the cut point the proxy holds both
 * connections open for a second and measures the CPU time the destination
 * burns meanwhile: a destination running the (CPU-bound) memtest guest burns
 * a lot of it, one holding the VM without running it next to none. The
 * final-ACK case, where the destination does run the guest, checks that the
 * measure tells the two apart. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "migration/stream.h"
#include "test_migrate_util.h"

TestSuite(migrate_handover, .fini = mt_kill_all);

enum cut_at { CUT_DONE, CUT_READY_ACK, CUT_COMMIT, CUT_FINAL_ACK };

#define HOLD_MS 1000
/* CPU time a destination may burn in HOLD_MS without running the guest. */
#define IDLE_CPU_MS 150

struct proxy {
	int lfd;                     /* the source connects here */
	char dst_path[128];
	enum cut_at cut;
	pid_t dst_pid;
	long long dst_cpu_ms;        /* CPU time the destination used while held at the cut */
	pthread_t thread;
	bool cut_done;               /* the cut happened where it should */
	char why[128];               /* the proxy's own failure, if any */
};

/* All @len bytes read from (@out false) or written to @fd; 0 or -1. */
static int io_all(int fd, void *buf, size_t len, bool out)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = out ? write(fd, p, len) : read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One whole frame from @fd into *@buf (grown as needed); its type, or -1. */
static int read_frame(int fd, uint8_t **buf, size_t *cap, size_t *len)
{
	uint32_t plen;

	if (*cap < MIG_HDR_SIZE || io_all(fd, *buf, MIG_HDR_SIZE, false))
		return -1;
	plen = mig_get_u32(*buf + 8);
	if (MIG_HDR_SIZE + (size_t)plen > *cap) {
		uint8_t *b = realloc(*buf, MIG_HDR_SIZE + (size_t)plen);

		if (!b)
			return -1;
		*buf = b;
		*cap = MIG_HDR_SIZE + (size_t)plen;
	}
	if (io_all(fd, *buf + MIG_HDR_SIZE, plen, false))
		return -1;
	*len = MIG_HDR_SIZE + plen;
	return (*buf)[4] | (*buf)[5] << 8;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memcpy(sa.sun_path, path, strnlen(path, sizeof(sa.sun_path) - 1));
	for (int i = 0; i < 500; i++) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		usleep(10000);
	}
	close(fd);
	return -1;
}

/* utime + stime of @pid in ms, or -1. */
static long long cpu_ms(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');   /* the command name may hold spaces */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)((ut + st) * 1000 / (unsigned long long)sysconf(_SC_CLK_TCK));
}

/* At the cut point, with both connections still open: how much CPU does
 * the destination burn in HOLD_MS? */
static void hold_and_measure(struct proxy *p)
{
	long long before = cpu_ms(p->dst_pid), after;

	usleep(HOLD_MS * 1000);
	after = cpu_ms(p->dst_pid);
	p->dst_cpu_ms = before >= 0 && after >= 0 ? after - before : -1;
}

/* Relay frames both ways; drop the chosen one and cut both connections. */
static void *proxy_thread(void *arg)
{
	struct proxy *p = arg;
	size_t cap = 2 << 20, len;
	uint8_t *buf = malloc(cap);
	unsigned acks_after_done = 0;
	bool done_seen = false;
	int src = accept(p->lfd, NULL, NULL), dst = src < 0 ? -1 : connect_unix(p->dst_path);

	if (!buf || src < 0 || dst < 0) {
		snprintf(p->why, sizeof(p->why), "proxy: cannot connect both sides");
		goto out;
	}
	for (;;) {
		struct pollfd pf[2] = { { .fd = src, .events = POLLIN }, { .fd = dst, .events = POLLIN } };

		if (poll(pf, 2, 60000) <= 0) {
			snprintf(p->why, sizeof(p->why), "proxy: nothing happened for 60 s");
			break;
		}
		if (pf[0].revents) {
			int type = read_frame(src, &buf, &cap, &len);

			if (type < 0) {
				snprintf(p->why, sizeof(p->why), "proxy: the source closed before the cut");
				break;
			}
			done_seen |= type == MIG_DONE;
			if ((type == MIG_DONE && p->cut == CUT_DONE) || (type == MIG_COMMIT && p->cut == CUT_COMMIT)) {
				p->cut_done = true;
				hold_and_measure(p);
				break;
			}
			if (io_all(dst, buf, len, true))
				break;
		}
		if (pf[1].revents) {
			int type = read_frame(dst, &buf, &cap, &len);

			if (type < 0) {
				snprintf(p->why, sizeof(p->why), "proxy: the destination closed before the cut");
				break;
			}
			if (type == MIG_ACK && done_seen)
				acks_after_done++;
			if ((acks_after_done == 1 && p->cut == CUT_READY_ACK) ||
			    (acks_after_done == 2 && p->cut == CUT_FINAL_ACK)) {
				p->cut_done = true;
				hold_and_measure(p);
				break;
			}
			if (io_all(src, buf, len, true))
				break;
		}
	}
out:
	/* The cut: both connections end at once, as when a link or a process dies. */
	if (src >= 0)
		close(src);
	if (dst >= 0)
		close(dst);
	free(buf);
	return NULL;
}

static void proxy_start(struct proxy *p, const char *listen_path, const char *dst_path, pid_t dst_pid,
			enum cut_at cut)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(p, 0, sizeof(*p));
	p->cut = cut;
	p->dst_pid = dst_pid;
	snprintf(p->dst_path, sizeof(p->dst_path), "%s", dst_path);
	p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memcpy(sa.sun_path, listen_path, strnlen(listen_path, sizeof(sa.sun_path) - 1));
	cr_assert_eq(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(p->lfd, 1), 0);
	cr_assert_eq(pthread_create(&p->thread, NULL, proxy_thread, p), 0);
}

static void proxy_join(struct proxy *p)
{
	pthread_join(p->thread, NULL);
	close(p->lfd);
	cr_assert(p->cut_done, "the cut did not happen: %s", p->why);
}

/* The destination never ran the guest: it burned next to no CPU while it
 * held the VM, exits 125, and its console is empty. */
static void destination_never_ran(struct mt_proc *dst, long long cpu_held_ms, const char *want)
{
	int status = mt_wait(dst, harness_timeout_ms(15000));
	char *out = mt_out(dst), *err = mt_err(dst);

	cr_assert(cpu_held_ms >= 0 && cpu_held_ms < IDLE_CPU_MS,
		  "the destination used %lld ms of CPU in %d ms before the cut: it ran the guest", cpu_held_ms,
		  HOLD_MS);
	cr_assert_eq(status, 125, "destination exit status %d; stderr:\n%s", status, err);
	cr_assert_eq(out[0], '\0', "the guest ran at the destination:\n%s", out);
	cr_assert(strstr(err, want), "want '%s' in the destination's stderr:\n%s", want, err);
	free(out);
	free(err);
}

/* The source keeps the VM paused, and keeps it so (it never resumes by itself). */
static void source_stays_paused(const char *sock, const char *st, const char *msg)
{
	cr_assert_str_eq(st, "failed", "%s", msg);
	cr_assert(strstr(msg, "did not confirm"), "%s", msg);
	cr_assert(mt_wait_state(sock, "paused", 2000), "the source VM is not paused");
	usleep(500000);
	cr_assert(mt_wait_state(sock, "paused", 100), "the source VM resumed by itself");
}

/* Source memtest VM -> proxy -> `vmm run --incoming`, cut at @cut. */
static long long run_cut(enum cut_at cut, struct mt_env *e, struct mt_proc *src, struct mt_proc *dst,
			 char *sock, size_t socklen, char *st, size_t stlen, char *msg, size_t msglen)
{
	char ppath[128], dpath[128], url[160], body[300];
	struct proxy p;

	mt_start_failure_source(e, src, sock, socklen);
	mt_path(e, ppath, sizeof(ppath), "proxy.sock");
	mt_path(e, dpath, sizeof(dpath), "dst.sock");
	snprintf(url, sizeof(url), "unix:%s", dpath);
	const char *argv[] = { "run", "--incoming", url, NULL };
	mt_spawn(e, dst, argv);
	proxy_start(&p, ppath, dpath, dst->pid, cut);
	snprintf(body, sizeof(body), "{\"destination_url\":\"unix:%s\"}", ppath);
	cr_assert_eq(mt_send_migration(sock, body), 200);
	mt_wait_migration(sock, st, stlen, msg, msglen, harness_timeout_ms(20000));
	proxy_join(&p);
	return p.dst_cpu_ms;
}

/* Cut before the source sent COMMIT: it resumes, the destination exits. */
static void cut_before_commit(enum cut_at cut, const char *want_dst)
{
	struct mt_env e;
	struct mt_proc src, dst;
	char sock[128], st[32], msg[512];
	long long cpu = run_cut(cut, &e, &src, &dst, sock, sizeof(sock), st, sizeof(st), msg, sizeof(msg));

	destination_never_ran(&dst, cpu, want_dst);
	mt_source_survives(&src, sock, st, msg, "failed", "waiting for the destination's ACK");
	mt_env_cleanup(&e);
}

Test(migrate_handover, cut_before_done, .timeout = 90)
{
	cut_before_commit(CUT_DONE, "incomplete stream");
}

Test(migrate_handover, cut_ready_ack, .timeout = 90)
{
	cut_before_commit(CUT_READY_ACK, "did not commit the hand-over");
}

Test(migrate_handover, cut_commit_nobody_runs_until_resumed, .timeout = 90)
{
	struct mt_env e;
	struct mt_proc src, dst;
	char sock[128], st[32], msg[512];
	cJSON *r;
	long long cpu = run_cut(CUT_COMMIT, &e, &src, &dst, sock, sizeof(sock), st, sizeof(st), msg, sizeof(msg));

	destination_never_ran(&dst, cpu, "did not commit the hand-over");
	source_stays_paused(sock, st, msg);
	/* The operator knows the destination is gone: resume at the source. */
	cr_assert_eq(mt_api(sock, "PUT", "vm.resume", NULL, &r), 200);
	cJSON_Delete(r);
	mt_source_survives(&src, sock, st, msg, "failed", "did not confirm");
	mt_env_cleanup(&e);
}

Test(migrate_handover, cut_final_ack_destination_runs_source_stays_paused, .timeout = 90)
{
	struct mt_env e;
	struct mt_proc src, dst;
	char sock[128], st[32], msg[512], *out;
	long long cpu = run_cut(CUT_FINAL_ACK, &e, &src, &dst, sock, sizeof(sock), st, sizeof(st), msg,
				sizeof(msg));

	/* The control for the CPU measure: a destination that runs the guest. */
	cr_assert_geq(cpu, IDLE_CPU_MS, "the running destination used only %lld ms of CPU in %d ms", cpu, HOLD_MS);
	source_stays_paused(sock, st, msg);
	cr_assert_eq(mt_wait(&dst, harness_timeout_ms(30000)), 0, "the destination did not run the guest to the end");
	out = mt_out(&dst);
	cr_assert(strstr(out, "PASS memtest"), "destination:\n%s", out);
	free(out);
	cr_assert(mt_wait_state(sock, "paused", 100), "the source VM resumed while the destination ran it");
	mt_api(sock, "PUT", "vmm.shutdown", NULL, NULL);
	mt_wait(&src, 5000);
	mt_env_cleanup(&e);
}
