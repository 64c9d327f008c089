/* Live migration end to end: the memtest guest (2 vCPUs, every page checked
 * pass after pass, counter/timer/IPI continuity) moves between vmm
 * processes over UNIX and TCP sockets, and is live-updated; then the failure
 * cases: each must leave the source running with nothing lost. */
#include <criterion/criterion.h>
#include <errno.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "migration/stream.h"
#include "test_migrate_util.h"


TestSuite(migrate, .fini = mt_kill_all);
TestSuite(migrate_fail, .fini = mt_kill_all);

static void url_for(struct mt_env *e, unsigned i, bool tcp, char *url, size_t len)
{
	if (tcp)
		snprintf(url, len, "tcp:127.0.0.1:%u", e->port_base + i);
	else
		snprintf(url, len, "unix:%s/mig%u.sock", e->dir, i);
}

/* On a failed hop: the source's vm.info (how far the migration got) and
 * every process's stderr, to say which side stopped where. */
static void chain_report(const char *src_sock, struct mt_proc *procs, unsigned n)
{
	cJSON *info = NULL;

	mt_api(src_sock, "GET", "vm.info", NULL, &info);
	char *json = info ? cJSON_PrintUnformatted(info) : NULL;
	cr_log_error("source vm.info: %s", json ? json : "(no answer)");
	free(json);
	cJSON_Delete(info);
	for (unsigned i = 0; i < n; i++) {
		char *err = mt_err(&procs[i]);

		cr_log_error("process %u stderr:\n%s", i, err ? err : "(none)");
		free(err);
	}
}

static bool exited_ok(struct mt_proc *p)
{
	return mt_exited(p) && p->status == 0;
}

/* @dst_flag: one more flag for every destination (NULL: none). */
static void migrate_chain(unsigned hops, bool alternate_tcp, bool local, const char *extra, const char *dst_flag)
{
	struct mt_env e;
	struct mt_proc procs[12];
	char sock[12][128], url[160], body[400], st[32], msg[512], cl[96];

	mt_need_kvm();
	mt_env_init(&e);
	for (unsigned i = 0; i <= hops; i++) {
		char n[16];

		snprintf(n, sizeof(n), "api%u.sock", i);
		mt_path(&e, sock[i], sizeof(sock[i]), n);
	}
	snprintf(cl, sizeof(cl), "test=memtest seconds=%u " MT_ARGS, mt_seconds(hops > 2 ? 15 : 4));
	mt_start_source(&e, &procs[0], sock[0], cl, 2, MEM_MIB);
	usleep(300000); /* let memtest fill its pages */
	for (unsigned i = 0; i < hops; i++) {
		bool tcp = alternate_tcp && (i % 2 == 1);

		url_for(&e, i + 1, tcp, url, sizeof(url));
		const char *argv[] = { "run", "--incoming", url, "--api-sock", sock[i + 1], dst_flag, NULL };
		mt_spawn(&e, &procs[i + 1], argv);
		snprintf(body, sizeof(body), "{\"destination_url\":\"%s\"%s%s}", url, local ? ",\"local\":true" : "",
			 extra ? extra : "");
		cr_assert_eq(mt_send_migration(sock[i], body), 200, "hop %u", i);
		mt_wait_migration(sock[i], st, sizeof(st), msg, sizeof(msg), harness_timeout_ms(20000));
		if (strcmp(st, "completed"))
			chain_report(sock[i], procs, i + 2);
		cr_assert_str_eq(st, "completed", "hop %u (%s): %s: %s", i, url, st, msg);
		if (i > 0) {
			/* An incoming-run process exits 0 once its VM has moved on. */
			cr_assert_eq(mt_wait(&procs[i], harness_timeout_ms(10000)), 0, "hop %u: source exit", i);
		}
		/* The last destination may already have run the guest to its end
		 * and exited (a slow chain on a loaded host): its exit status and
		 * the console's PASS are checked below. */
		bool last = i + 1 == hops;
		if (!(last && exited_ok(&procs[i + 1])) && !mt_api_up(sock[i + 1], harness_timeout_ms(5000)) &&
		    !(last && exited_ok(&procs[i + 1]))) {
			chain_report(sock[i], procs, i + 2);
			cr_assert_fail("hop %u: destination API", i);
		}
	}
	cr_assert_eq(mt_wait(&procs[hops], harness_timeout_ms(40000)), 0, "last process");
	/* The console moves with the guest, so a line can start in one process
	 * and end in the next: read them all in order. */
	char *all = calloc(1, 1);
	for (unsigned i = 0; i <= hops; i++) {
		char *o = mt_out(&procs[i]);
		size_t n = strlen(all);
		all = realloc(all, n + strlen(o) + 1);
		strcpy(all + n, o);
		free(o);
	}
	cr_assert(strstr(all, "PASS memtest"), "no PASS over %u hops; consoles:\n%s", hops, all);
	cr_assert_null(strstr(all, "FAIL"), "%s", all);
	free(all);
	mt_api(sock[0], "PUT", "vmm.shutdown", NULL, NULL);
	mt_wait(&procs[0], 5000);
	mt_env_cleanup(&e);
}

Test(migrate, memtest_back_and_forth_10_times_unix_and_tcp, .timeout = 180)
{
	migrate_chain(10, true, false, NULL, NULL);
}

Test(migrate, memtest_two_connections_tcp, .timeout = 90)
{
	migrate_chain(2, true, false, ",\"connections\":2", NULL);
}

/* --prefault: every destination backs all its RAM before the stream. */
Test(migrate, memtest_prefaulted_destinations, .timeout = 90)
{
	migrate_chain(2, true, false, NULL, "--prefault");
}

Test(migrate, memtest_live_update_local, .timeout = 90)
{
	migrate_chain(2, false, true, NULL, NULL);
}

/* ---------------------------------------------------------------- failures */

/* Source running memtest; returns after the VM is up. downtime_ms=1 with
 * max_passes=10000 keeps the migration iterating (never converges) so a
 * failure can be injected mid-stream. */
static const char *const never_converge = ",\"downtime_ms\":1,\"max_passes\":10000";

Test(migrate_fail, kill_destination_mid_stream, .timeout = 90)
{
	struct mt_env e;
	struct mt_proc src, dst;
	char sock[128], url[160], body[300], st[32], msg[512];

	mt_start_failure_source(&e, &src, sock, sizeof(sock));
	url_for(&e, 1, false, url, sizeof(url));
	const char *argv[] = { "run", "--incoming", url, NULL };
	mt_spawn(&e, &dst, argv);
	snprintf(body, sizeof(body), "{\"destination_url\":\"%s\"%s}", url, never_converge);
	cr_assert_eq(mt_send_migration(sock, body), 200);
	cr_assert(mt_wait_bytes(sock, 16 << 20, harness_timeout_ms(10000)), "migration did not get going");
	mt_kill(&dst, SIGKILL);
	mt_wait(&dst, 5000);
	mt_wait_migration(sock, st, sizeof(st), msg, sizeof(msg), harness_timeout_ms(10000));
	mt_source_survives(&src, sock, st, msg, "failed", NULL);
	mt_env_cleanup(&e);
}

Test(migrate_fail, cancel_keeps_source_and_destination_never_runs, .timeout = 90)
{
	struct mt_env e;
	struct mt_proc src, dst;
	char sock[128], url[160], body[300], st[32], msg[512];

	mt_start_failure_source(&e, &src, sock, sizeof(sock));
	url_for(&e, 1, true, url, sizeof(url));
	const char *argv[] = { "run", "--incoming", url, NULL };
	mt_spawn(&e, &dst, argv);
	snprintf(body, sizeof(body), "{\"destination_url\":\"%s\"%s}", url, never_converge);
	cr_assert_eq(mt_send_migration(sock, body), 200);
	cr_assert(mt_wait_bytes(sock, 8 << 20, harness_timeout_ms(10000)));
	cJSON *r;
	/* The migration pauses and resumes the VM itself: hands off meanwhile. */
	cr_assert_eq(mt_api(sock, "PUT", "vm.pause", NULL, NULL), 409);
	cr_assert_eq(mt_api(sock, "PUT", "vm.snapshot", "{\"destination\": \"/nonexistent\"}", NULL), 409);
	cr_assert_eq(mt_api(sock, "PUT", "vm.migration-cancel", NULL, &r), 200);
	cJSON_Delete(r);
	mt_wait_migration(sock, st, sizeof(st), msg, sizeof(msg), harness_timeout_ms(10000));
	/* The destination got an incomplete stream: it exits, the guest never ran there. */
	int dst_status = mt_wait(&dst, harness_timeout_ms(10000));
	char *dout = mt_out(&dst), *derr = mt_err(&dst);
	cr_assert_eq(dst_status, 125, "destination exit status; stderr:\n%s", derr);
	cr_assert_eq(dout[0], '\0', "the guest printed at the destination:\n%s", dout);
	cr_assert(strstr(derr, "incomplete stream"), "%s", derr);
	free(dout);
	free(derr);
	cr_assert_eq(mt_api(sock, "PUT", "vm.migration-cancel", NULL, NULL), 409, "nothing left to cancel");
	mt_source_survives(&src, sock, st, msg, "cancelled", "cancelled");
	mt_env_cleanup(&e);
}

/* A fake destination: accept, then answer with @reply (or just close). */
static void fake_destination(const char *path, const void *reply, size_t len, int *lfd_out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);

	memcpy(sa.sun_path, path, strnlen(path, sizeof(sa.sun_path) - 1));
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 4), 0);
	*lfd_out = lfd;
	(void)reply;
	(void)len;
}

static void run_fake_destination(const char *how, const char *want_msg)
{
	struct mt_env e;
	struct mt_proc src;
	char sock[128], path[128], body[300], st[32], msg[512];
	int lfd, c;

	mt_start_failure_source(&e, &src, sock, sizeof(sock));
	mt_path(&e, path, sizeof(path), "fake.sock");
	fake_destination(path, NULL, 0, &lfd);
	snprintf(body, sizeof(body), "{\"destination_url\":\"unix:%s\"}", path);
	cr_assert_eq(mt_send_migration(sock, body), 200);
	c = accept(lfd, NULL, NULL);
	cr_assert_geq(c, 0);
	if (!strcmp(how, "garbage")) {
		static const char junk[] = "HTTP/1.1 200 OK\r\n\r\nthis is not a migration stream at all";
		cr_assert_eq(write(c, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	} else if (!strcmp(how, "bitflip")) {
		/* A valid-looking ACK with one bit flipped in its checksum. */
		uint8_t f[MIG_HDR_SIZE];
		mig_frame_header(f, MIG_ACK, NULL, 0);
		f[12] ^= 0x10;
		cr_assert_eq(write(c, f, sizeof(f)), (ssize_t)sizeof(f));
	} else if (!strcmp(how, "refuse")) {
		struct mig_stream s;
		mig_stream_init(&s, dup(c));
		mig_send_error(&s, "no room for this VM here");
		mig_stream_close(&s);
	}
	usleep(100000);
	close(c);
	close(lfd);
	mt_wait_migration(sock, st, sizeof(st), msg, sizeof(msg), harness_timeout_ms(10000));
	mt_source_survives(&src, sock, st, msg, "failed", want_msg);
	mt_env_cleanup(&e);
}

Test(migrate_fail, destination_sends_garbage, .timeout = 90)
{
	run_fake_destination("garbage", "bad frame magic");
}

Test(migrate_fail, destination_bit_flip, .timeout = 90)
{
	run_fake_destination("bitflip", "checksum mismatch");
}

Test(migrate_fail, destination_closes_socket, .timeout = 90)
{
	run_fake_destination("close", "destination refused");
}

Test(migrate_fail, destination_refusal_reaches_the_sender, .timeout = 90)
{
	run_fake_destination("refuse", "no room for this VM here");
}

/* Destination RAM on a 4 MiB tmpfs: the 64 MiB guest cannot fit. Without
 * --prefault the stream fails when the pages stop fitting; with it, before
 * the first page. Either way the source keeps running and says why. */
static void destination_out_of_space(bool prefault, const char *says)
{
	struct mt_env e;
	struct mt_proc src, dst;
	char sock[128], url[160], body[300], st[32], msg[512], mnt[128];

	mt_start_failure_source(&e, &src, sock, sizeof(sock));
	mt_path(&e, mnt, sizeof(mnt), "small");
	cr_assert_eq(mkdir(mnt, 0700), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m")) {
		mt_api(sock, "PUT", "vmm.shutdown", NULL, NULL);
		mt_wait(&src, 5000);
		mt_env_cleanup(&e);
		cr_skip_test("cannot mount a tmpfs here (not root?)");
	}
	url_for(&e, 1, false, url, sizeof(url));
	const char *argv[] = { "run", "--incoming", url, "--memory-dir", mnt, prefault ? "--prefault" : NULL, NULL };
	mt_spawn(&e, &dst, argv);
	snprintf(body, sizeof(body), "{\"destination_url\":\"%s\"}", url);
	cr_assert_eq(mt_send_migration(sock, body), 200);
	mt_wait_migration(sock, st, sizeof(st), msg, sizeof(msg), harness_timeout_ms(10000));
	int dst_status = mt_wait(&dst, harness_timeout_ms(10000));
	umount2(mnt, MNT_DETACH);
	char *dout = mt_out(&dst);
	cr_assert_eq(dst_status, 125);
	cr_assert_eq(dout[0], '\0', "the guest ran at the destination:\n%s", dout);
	free(dout);
	mt_source_survives(&src, sock, st, msg, "failed", says);
	mt_env_cleanup(&e);
}

Test(migrate_fail, destination_out_of_space, .timeout = 90)
{
	destination_out_of_space(false, "No space left");
}

Test(migrate_fail, prefaulted_destination_out_of_space_fails_before_the_stream, .timeout = 90)
{
	destination_out_of_space(true, "cannot prefault 64 MiB of guest RAM: the memory directory's file system is full");
}

/* A fake source's connection @h->lane_index to @path, HELLO sent (and, on
 * the first, acked). */
static void fake_source_connect(const char *path, struct mig_stream *s, const struct mig_hello *h)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint8_t hello[MIG_HELLO_SIZE];
	struct mig_frame f;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	memcpy(sa.sun_path, path, strnlen(path, sizeof(sa.sun_path) - 1));
	for (int i = 0; i < 200 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)); i++)
		usleep(10000);
	mig_stream_init(s, fd);
	s->recv_timeout_ms = 5000;
	mig_hello_encode(h, hello);
	cr_assert_eq(mig_send(s, MIG_HELLO, hello, sizeof(hello)), 0);
	if (h->lane_index == 0)
		cr_assert_eq(mig_recv(s, &f, MIG_TYPE_BIT(MIG_ACK)), 0, "%s", s->err);
}

/* A fake source: start `vmm run --incoming unix:...` in @dst and open
 * @lanes connections to it (s[0] the main one); HELLO (with @features) is
 * sent on each. */
static void fake_source_lanes(struct mt_env *e, struct mt_proc *dst, struct mig_stream *s, unsigned lanes,
			      uint32_t features)
{
	char url[160], path[128];
	struct mig_hello h = { .version = MIG_VERSION, .page_size = MIG_PAGE_SIZE, .lanes = lanes,
			       .mem_size = 16 << 20, .features = features, .session = 42 };

	mt_path(e, path, sizeof(path), "in.sock");
	snprintf(url, sizeof(url), "unix:%s", path);
	const char *argv[] = { "run", "--incoming", url, NULL };
	mt_spawn(e, dst, argv);
	for (h.lane_index = 0; h.lane_index < lanes; h.lane_index++)
		fake_source_connect(path, &s[h.lane_index], &h);
}

static void fake_source_hello(struct mt_env *e, struct mt_proc *dst, struct mig_stream *s, uint32_t features)
{
	fake_source_lanes(e, dst, s, 1, features);
}

/* CONFIG for a 16 MiB, 1-vCPU VM, acked. */
static void fake_source_config(struct mig_stream *s)
{
	char *kernel = harness_image_path("testguest.elf"), cfg[512];
	struct mig_frame f;

	snprintf(cfg, sizeof(cfg), "{\"kernel\":\"%s\",\"cpus\":1,\"memory_mib\":16}", kernel);
	free(kernel);
	cr_assert_eq(mig_send(s, MIG_CONFIG, cfg, strlen(cfg)), 0);
	cr_assert_eq(mig_recv(s, &f, MIG_TYPE_BIT(MIG_ACK)), 0, "%s", s->err);
}

/* The destination refused the stream with a message containing @want,
 * said it on @s and on stderr, and exited without running the guest. */
static void fake_source_refused(struct mt_proc *dst, struct mig_stream *s, const char *want)
{
	struct mig_frame f;

	cr_assert_eq(mig_recv(s, &f, MIG_TYPE_BIT(MIG_ACK)), -ECONNABORTED);
	cr_assert(strstr(s->err, want), "%s", s->err);
	mig_stream_close(s);
	cr_assert_eq(mt_wait(dst, harness_timeout_ms(10000)), 125);
	char *err = mt_err(dst);
	cr_assert(strstr(err, want), "%s", err);
	free(err);
}

/* A fake source that stops halfway: the destination exits without running the guest. */
Test(migrate_fail, destination_exits_on_truncated_stream, .timeout = 60)
{
	struct mt_env e;
	struct mt_proc dst;
	struct mig_stream s;

	mt_need_kvm();
	mt_env_init(&e);
	fake_source_hello(&e, &dst, &s, 0);
	fake_source_config(&s);
	/* One PAGES frame whose entry points outside RAM: refused with a message. */
	uint8_t pages[8 + 8 + MIG_PAGE_SIZE] = { 0 };
	mig_put_u32(pages, 1);
	mig_put_u64(pages + 8, 1ULL << 40);
	cr_assert_eq(mig_send(&s, MIG_PAGES, pages, sizeof(pages)), 0);
	fake_source_refused(&dst, &s, "outside RAM");
	mt_env_cleanup(&e);
}

/* With two connections, page 64 (bitmap word 1) travels on connection 1
 * only: on the main connection it could overtake a newer copy. The
 * destination's bookkeeping per connection relies on it too. */
Test(migrate_fail, page_on_the_wrong_connection_refused, .timeout = 60)
{
	struct mt_env e;
	struct mt_proc dst;
	struct mig_stream s[2];
	uint8_t pages[8 + 8 + MIG_PAGE_SIZE] = { 0 };

	mt_need_kvm();
	mt_env_init(&e);
	fake_source_lanes(&e, &dst, s, 2, 0);
	fake_source_config(&s[0]);
	mig_put_u32(pages, 1);
	mig_put_u64(pages + 8, 64 * MIG_PAGE_SIZE);
	pages[16] = 1;
	cr_assert_eq(mig_send(&s[0], MIG_PAGES, pages, sizeof(pages)), 0);
	fake_source_refused(&dst, &s[0], "page 0x40000 came on connection 0; it belongs on connection 1");
	mig_stream_close(&s[1]);
	mt_env_cleanup(&e);
}

/* SYNC (feature MIG_FEAT_SYNC): answered on the connection it came on, with
 * its token, after the pages before it; a SYNC of the wrong size, or one
 * from a source that did not ask for the feature, is refused. */
static void fake_source_sync(uint32_t features, unsigned sync_len, const char *refusal)
{
	struct mt_env e;
	struct mt_proc dst;
	struct mig_stream s[2];
	struct mig_frame f;
	uint8_t pages[8 + 8 + MIG_PAGE_SIZE] = { 0 }, token[8];

	mt_need_kvm();
	mt_env_init(&e);
	fake_source_lanes(&e, &dst, s, 2, features);
	fake_source_config(&s[0]);
	mig_put_u32(pages, 1);
	mig_put_u64(pages + 8, 64 * MIG_PAGE_SIZE);
	pages[16] = 0xa5;
	cr_assert_eq(mig_send(&s[1], MIG_PAGES, pages, sizeof(pages)), 0);
	mig_put_u64(token, 0x1122334455667788ULL);
	cr_assert_eq(mig_send(&s[1], MIG_SYNC, token, sync_len), 0);
	if (refusal) {
		/* An extra connection's failure reaches the source at DONE. */
		cr_assert_eq(mig_send(&s[0], MIG_STATE, "x", 1), 0);
		cr_assert_eq(mig_send(&s[0], MIG_DONE, (uint8_t[4]){ 0 }, 4), 0);
		fake_source_refused(&dst, &s[0], refusal);
	} else {
		cr_assert_eq(mig_recv(&s[1], &f, MIG_TYPE_BIT(MIG_SYNC)), 0, "%s", s[1].err);
		cr_assert_eq(f.len, 8);
		cr_assert_eq(mig_get_u64(f.data), 0x1122334455667788ULL);
		mig_stream_close(&s[0]);
		cr_assert_eq(mt_wait(&dst, harness_timeout_ms(10000)), 125);
	}
	mig_stream_close(&s[1]);
	mt_env_cleanup(&e);
}

Test(migrate_fail, sync_answered_with_its_token, .timeout = 60)
{
	fake_source_sync(MIG_FEAT_SYNC, 8, NULL);
}

Test(migrate_fail, sync_of_the_wrong_size_refused, .timeout = 60)
{
	fake_source_sync(MIG_FEAT_SYNC, 4, "connection 1: SYNC frame of 4 bytes");
}

Test(migrate_fail, sync_without_the_feature_refused, .timeout = 60)
{
	fake_source_sync(0, 8, "connection 1: unexpected SYNC frame");
}

/* A hostile live-update source: the fd it hands over as net0's TAP queue is
 * a memfd. The destination checks every handed-over fd (TUNGETIFF: a queue
 * of the configured interface) and refuses with a message naming it, never
 * running the guest; a NIC without fds is refused as well. */
static void forged_tap_fds(bool send_fds, const char *want)
{
	struct mt_env e;
	struct mt_proc dst;
	char cfg[512], *kernel = harness_image_path("testguest.elf");
	uint8_t size[8], netfds[MIG_NETFDS_SIZE] = { 0 };
	struct mig_stream s;
	int mfd = memfd_create("ram", MFD_CLOEXEC), fake = memfd_create("not-a-tap", MFD_CLOEXEC);

	mt_need_kvm();
	cr_assert(mfd >= 0 && fake >= 0 && ftruncate(mfd, 16 << 20) == 0);
	mt_env_init(&e);
	fake_source_hello(&e, &dst, &s, MIG_FEAT_LOCAL);
	mig_put_u64(size, 16 << 20);
	cr_assert_eq(mig_send_fd(&s, MIG_MEMFD, size, sizeof(size), mfd), 0);
	if (send_fds) {
		mig_put_u32(netfds + 4, 1);
		cr_assert_eq(mig_send_fd(&s, MIG_NETFDS, netfds, sizeof(netfds), fake), 0);
	}
	snprintf(cfg, sizeof(cfg), "{\"kernel\":\"%s\",\"cpus\":1,\"memory_mib\":16,"
		 "\"nets\":[{\"tap\":\"vmmnotap%d\"}]}", kernel, (int)getpid() % 10000);
	free(kernel);
	cr_assert_eq(mig_send(&s, MIG_CONFIG, cfg, strlen(cfg)), 0);
	fake_source_refused(&dst, &s, want);
	close(mfd);
	close(fake);
	mt_env_cleanup(&e);
}

Test(migrate_fail, live_update_forged_tap_fd_refused, .timeout = 60)
{
	forged_tap_fds(true, "is not a TAP/macvtap queue");
}

Test(migrate_fail, live_update_without_tap_fds_refused, .timeout = 60)
{
	forged_tap_fds(false, "without the fds of net0");
}

/* A paused VM migrates in one pass and stays paused at the destination
 * until vm.resume there; then the guest finishes its checks. */
Test(migrate, paused_vm_stays_paused, .timeout = 90)
{
	struct mt_env e;
	struct mt_proc src, dst;
	char sock[128], dsock[128], url[160], body[300], st[32], msg[512], cl[96];
	cJSON *r;

	mt_need_kvm();
	mt_env_init(&e);
	mt_path(&e, sock, sizeof(sock), "src.sock");
	mt_path(&e, dsock, sizeof(dsock), "dst.sock");
	snprintf(cl, sizeof(cl), "test=memtest seconds=%u " MT_ARGS, mt_seconds(3));
	mt_start_source(&e, &src, sock, cl, 2, MEM_MIB);
	usleep(300000);
	cr_assert_eq(mt_api(sock, "PUT", "vm.pause", NULL, &r), 200);
	cJSON_Delete(r);
	url_for(&e, 1, true, url, sizeof(url));
	const char *argv[] = { "run", "--incoming", url, "--api-sock", dsock, NULL };
	mt_spawn(&e, &dst, argv);
	snprintf(body, sizeof(body), "{\"destination_url\":\"%s\"}", url);
	cr_assert_eq(mt_send_migration(sock, body), 200);
	mt_wait_migration(sock, st, sizeof(st), msg, sizeof(msg), harness_timeout_ms(20000));
	cr_assert_str_eq(st, "completed", "%s", msg);
	cr_assert(mt_api_up(dsock, harness_timeout_ms(5000)));
	cr_assert(mt_wait_state(dsock, "paused", 2000), "the destination must keep the VM paused");
	usleep(200000);
	cr_assert(mt_wait_state(dsock, "paused", 100), "still paused");
	cr_assert_eq(mt_api(dsock, "PUT", "vm.resume", NULL, &r), 200);
	cJSON_Delete(r);
	cr_assert_eq(mt_wait(&dst, harness_timeout_ms(30000)), 0);
	char *out = mt_out(&dst), *sout = mt_out(&src);
	cr_assert(strstr(out, "PASS memtest"), "source:\n%s\ndestination:\n%s", sout, out);
	free(out);
	free(sout);
	mt_api(sock, "PUT", "vmm.shutdown", NULL, NULL);
	mt_wait(&src, 5000);
	mt_env_cleanup(&e);
}
