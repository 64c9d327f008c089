/* Snapshot a running test guest at a random moment (in this process), then
 * restore it in a new `vmm run --restore` process: the guest must finish its
 * scenario and print PASS. Also: hostile snapshot directories through the CLI
 * (under ASan when VMM_BIN is the sanitized binary), and `vmm state show`. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "migration/snapshot.h"
#include "migration/stream.h"
#include "tests/integration/harness.h"
#include "vmm/vm.h"

struct child_result {
	int status;          /* exit code, or -1 when killed */
	int sig;
	char out[65536];
	char err[8192];
};

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v && *v ? v : def;
}

static int timeout_ms(int base)
{
	return getenv("VMM_ASAN") ? base * 4 : base;
}

/* Run $VMM_BIN with @argv (NULL-terminated, argv[0] excluded), capture stdout/stderr. */
static void run_vmm(const char *const argv[], int tmo_ms, struct child_result *r)
{
	const char *bin = env_or("VMM_BIN", "build/vmm");
	const char *args[32] = { bin };
	int out[2], err[2], wst;
	size_t no = 0, ne = 0;
	struct timespec t0, t;
	pid_t pid;

	for (int i = 0; argv[i] && i < 30; i++)
		args[i + 1] = argv[i];
	memset(r, 0, sizeof(*r));
	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
	pid = harness_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		execv(bin, (char *const *)args);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p[2] = { { out[0], POLLIN, 0 }, { err[0], POLLIN, 0 } };
		long el;

		clock_gettime(CLOCK_MONOTONIC, &t);
		el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (el > tmo_ms) {
			kill(pid, SIGKILL);
			break;
		}
		if (poll(p, 2, 100) < 0)
			continue;
		if (p[0].revents) {
			ssize_t n = read(out[0], r->out + no, sizeof(r->out) - 1 - no);
			if (n > 0)
				no += (size_t)n;
			else if (p[0].revents & POLLHUP)
				p[0].fd = -1;
		}
		if (p[1].revents) {
			ssize_t n = read(err[0], r->err + ne, sizeof(r->err) - 1 - ne);
			if (n > 0)
				ne += (size_t)n;
		}
		if (waitpid(pid, &wst, WNOHANG) == pid)
			goto reaped;
	}
	waitpid(pid, &wst, 0);
reaped:
	/* Drain what is left. */
	for (ssize_t n; (n = read(out[0], r->out + no, sizeof(r->out) - 1 - no)) > 0;)
		no += (size_t)n;
	for (ssize_t n; (n = read(err[0], r->err + ne, sizeof(r->err) - 1 - ne)) > 0;)
		ne += (size_t)n;
	close(out[0]);
	close(err[0]);
	r->status = WIFEXITED(wst) ? WEXITSTATUS(wst) : -1;
	r->sig = WIFSIGNALED(wst) ? WTERMSIG(wst) : 0;
}

static bool file_contains(const char *path, const char *needle)
{
	char buf[65536];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return strstr(buf, needle) != NULL;
}

static char *image_path(void)
{
	static __thread char path[4096];

	snprintf(path, sizeof(path), "%s/testguest.elf", env_or("VMM_IMAGES", "build/images"));
	return path;
}

/* The scenario that checks memory across a snapshot: `memtest` when the test
 * guest has it, else our own `snapcheck`. */
static const char *pick_scenario(void)
{
	static const char *const names[] = { "memtest", "snapcheck" };
	FILE *f = fopen(image_path(), "rb");
	static __thread char *elf;
	size_t len;

	if (!f)
		return NULL;
	elf = malloc(8 << 20);
	len = fread(elf, 1, 8 << 20, f);
	fclose(f);
	for (size_t i = 0; i < 2; i++) {
		size_t nl = strlen(names[i]);
		for (size_t off = 0; off + nl < len; off++)
			if (!memcmp(elf + off, names[i], nl) && elf[off + nl] == '\0' && elf[off - 1] == '\0') {
				free(elf);
				return names[i];
			}
	}
	free(elf);
	return NULL;
}

static void make_dir(char *tmpl)
{
	cr_assert_not_null(mkdtemp(tmpl));
}

static void rm_rf(const char *dir)
{
	char cmd[4200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", dir);
}

static bool have_kvm(void)
{
	return access("/dev/kvm", R_OK | W_OK) == 0;
}

/* Boot @scenario in this process, snapshot after @delay_ms into @dir. */
static void boot_and_snapshot(const char *scenario, const char *params, unsigned cpus, unsigned memory_mib,
			      int delay_ms, const char *dir)
{
	struct vm_config cfg;
	struct snapshot_stats st;
	char cmdline[256], console[4200], err[512] = "";
	struct vm *vm;

	config_init(&cfg);
	cfg.kernel = strdup(image_path());
	snprintf(cmdline, sizeof(cmdline), "test=%s %s", scenario, params);
	cfg.cmdline = strdup(cmdline);
	cfg.memory_mib = memory_mib;
	cfg.cpus = cpus;
	snprintf(console, sizeof(console), "file:%s/console-before.log", dir);
	cr_assert_eq(config_parse_console(&cfg, console, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(vm_create(&vm, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(vm_start(vm), 0);
	usleep((useconds_t)delay_ms * 1000);
	cr_assert_eq(vm_pause(vm), 0, "the guest ended before the snapshot: %s", vm->exit_reason);
	cr_assert_eq(snapshot_save(vm, dir, &st, err, sizeof(err)), 0, "%s", err);
	cr_log_info("snapshot at %d ms: %.2f ms (state %.2f ms), %llu KiB of memory data", delay_ms,
		    st.total_ns / 1e6, st.state_ns / 1e6, (unsigned long long)(st.memory_bytes_written >> 10));
	vm_destroy(vm);
	config_free(&cfg);
}

static void restore_expect_pass(const char *dir, const char *mode, const char *scenario)
{
	struct child_result *r = malloc(sizeof(*r));
	char console[4300], log[4200], pass[64];
	const char *argv[] = { "run", "--restore", dir, "--restore-memory", mode, "--console", console, NULL };

	snprintf(log, sizeof(log), "%s/console-after-%s.log", dir, mode);
	snprintf(console, sizeof(console), "file:%s", log);
	run_vmm(argv, timeout_ms(60000), r);
	snprintf(pass, sizeof(pass), "PASS %s", scenario);
	cr_assert_eq(r->sig, 0, "vmm killed by signal %d; stderr: %s", r->sig, r->err);
	cr_assert_eq(r->status, 0, "restore (%s) exited %d; stderr: %s", mode, r->status, r->err);
	cr_assert(file_contains(log, pass), "no '%s' after restore (%s); stderr: %s", pass, mode, r->err);
	cr_assert(!file_contains(log, "FAIL"), "guest reported FAIL after restore");
	free(r);
}

Test(snapshot, memtest_restored_in_new_process_passes, .timeout = 240)
{
	const char *scenario;
	char dir[] = "/tmp/vmm-snap-XXXXXX";

	if (!have_kvm())
		cr_skip_test("no /dev/kvm");
	scenario = pick_scenario();
	if (!scenario)
		cr_skip_test("the test guest has neither memtest nor snapcheck");
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	make_dir(dir);
	/* A random moment within the guest's run. */
	/* memtest: 2 vCPUs, LAPIC timer and IPIs, 2 s of guest time. */
	boot_and_snapshot(scenario, strcmp(scenario, "memtest") ? "" : "seconds=2", 2, 64,
			  150 + rand() % 1200, dir);
	restore_expect_pass(dir, "lazy", scenario);
	restore_expect_pass(dir, "copy", scenario);
	rm_rf(dir);
}

Test(snapshot, state_show_prints_vcpu_and_device_nodes, .timeout = 60)
{
	struct child_result *r = malloc(sizeof(*r));
	char dir[] = "/tmp/vmm-snap-XXXXXX";
	const char *argv[] = { "state", "show", dir, NULL };

	if (!have_kvm())
		cr_skip_test("no /dev/kvm");
	if (!pick_scenario())
		cr_skip_test("the test guest has neither memtest nor snapcheck");
	make_dir(dir);
	boot_and_snapshot(pick_scenario(), "", 1, 16, 100, dir);
	run_vmm(argv, timeout_ms(10000), r);
	cr_assert_eq(r->status, 0, "%s", r->err);
	cr_assert(strstr(r->out, "cpu@0 {"), "%s", r->out);
	cr_assert(strstr(r->out, "regs = <"), "%s", r->out);
	cr_assert(strstr(r->out, "lapic = ["), "%s", r->out);
	cr_assert(strstr(r->out, "irqchip {"), "%s", r->out);
	cr_assert(strstr(r->out, "uart0 {"), "%s", r->out);
	cr_assert(strstr(r->out, "type = \"uart\";"), "%s", r->out);
	/* dtc reads it too (DTSpec-conformant blob). */
	if (access("/usr/bin/dtc", X_OK) == 0) {
		char cmd[4300];

		snprintf(cmd, sizeof(cmd), "dtc -q -I dtb -O dts '%s/state.dtb' | grep -q 'cpu@0 {'", dir);
		cr_assert_eq(system(cmd), 0, "dtc could not read state.dtb");
	}
	free(r);
	rm_rf(dir);
}

/* Corrupt a copy of a good snapshot with @mutate, restore through the CLI:
 * it must fail with status 125, a one-line "restore:" message containing
 * @expect, and no crash. */
static void expect_refused(const char *good, void (*mutate)(const char *dir), const char *expect)
{
	struct child_result *r = malloc(sizeof(*r));
	char dir[] = "/tmp/vmm-snap-bad-XXXXXX", cmd[8400];
	const char *argv[] = { "run", "--restore", dir, "--console", "none", NULL };

	make_dir(dir);
	snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s'/state.dtb '%s'/config.json '%s'/memory '%s'/", good,
		 good, good, dir);
	cr_assert_eq(system(cmd), 0);
	mutate(dir);
	run_vmm(argv, timeout_ms(15000), r);
	cr_assert_eq(r->sig, 0, "vmm crashed (signal %d) on %s; stderr: %s", r->sig, expect, r->err);
	cr_assert_eq(r->status, 125, "status %d for '%s'; stderr: %s", r->status, expect, r->err);
	cr_assert(strstr(r->err, "restore") && strstr(r->err, expect), "expected '%s' in: %s", expect, r->err);
	cr_assert(!strstr(r->err, "AddressSanitizer") && !strstr(r->err, "runtime error"), "%s", r->err);
	free(r);
	rm_rf(dir);
}

static void *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	void *buf = malloc(1 << 20);

	cr_assert_not_null(f);
	*len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	return buf;
}

static void write_all(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(buf, 1, len, f), len);
	fclose(f);
}

static char *path_in(const char *dir, const char *name)
{
	static __thread char p[4200];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

/* A forged edit: recompute the root's crc32c so the deeper checks are what
 * refuse it (an accidental flip is caught by the checksum, see below). */
static void write_resealed(const char *dir, void *b, size_t len)
{
	cr_assert_eq(fdt_setprop_inplace_u32(b, 0, "crc32c", 0), 0);
	cr_assert_eq(fdt_setprop_inplace_u32(b, 0, "crc32c", mig_crc32c(0, b, len)), 0);
	write_all(path_in(dir, "state.dtb"), b, len);
}

/* One bit flipped inside a property value (the registers of cpu@0): the tree
 * stays well formed, only the checksum can tell. */
static void flip_value_bit(const char *dir)
{
	size_t len;
	uint8_t *b = read_all(path_in(dir, "state.dtb"), &len);
	int off = fdt_path_offset(b, "/vcpus/cpu@0"), plen;
	uint8_t *regs = fdt_getprop_w(b, off, "regs", &plen);

	cr_assert(regs && plen > 16);
	regs[8] ^= 0x04;
	write_all(path_in(dir, "state.dtb"), b, len);
	free(b);
}

static void truncate_state(const char *dir)
{
	size_t len;
	void *b = read_all(path_in(dir, "state.dtb"), &len);

	write_all(path_in(dir, "state.dtb"), b, len / 2);
	free(b);
}

/* A flip in the header's structure-block size: caught by fdt_check_full. */
static void flip_header_bit(const char *dir)
{
	size_t len;
	uint8_t *b = read_all(path_in(dir, "state.dtb"), &len);

	b[offsetof(struct fdt_header, size_dt_struct) + 2] ^= 0x10;
	write_all(path_in(dir, "state.dtb"), b, len);
	free(b);
}

/* A flip in the middle of the blob, wherever it lands: refused or restored,
 * never a crash (the message check is loose for this one). */
static void version_bump_vcpu(const char *dir)
{
	size_t len;
	void *b = read_all(path_in(dir, "state.dtb"), &len);
	int off = fdt_path_offset(b, "/vcpus/cpu@0");

	cr_assert_geq(off, 0);
	cr_assert_eq(fdt_setprop_inplace_u32(b, off, "version", 7), 0);
	write_resealed(dir, b, len);
	free(b);
}

/* Reordered: cpu@0 renamed to cpu@9 (same length), so cpu@0 is missing. */
static void rename_cpu(const char *dir)
{
	size_t len;
	void *b = read_all(path_in(dir, "state.dtb"), &len);
	int off = fdt_path_offset(b, "/vcpus/cpu@0");
	char *name = (char *)fdt_get_name(b, off, NULL);

	cr_assert_not_null(name);
	name[4] = '9';
	write_resealed(dir, b, len);
	free(b);
}

static void drop_lapic(const char *dir)
{
	size_t len;
	void *b = read_all(path_in(dir, "state.dtb"), &len);
	int off = fdt_path_offset(b, "/vcpus/cpu@0");

	cr_assert_eq(fdt_nop_property(b, off, "lapic"), 0);
	write_resealed(dir, b, len);
	free(b);
}

static void shorten_memory(const char *dir)
{
	struct stat st;

	cr_assert_eq(stat(path_in(dir, "memory"), &st), 0);
	cr_assert_eq(truncate(path_in(dir, "memory"), st.st_size - 4096), 0);
}

static void edit_config(const char *dir)
{
	size_t len;
	char *b = read_all(path_in(dir, "config.json"), &len);
	char *p = strstr(b, "test=");

	cr_assert_not_null(p);
	p[3] = 'x'; /* "tesx=": any edit breaks the digest */
	write_all(path_in(dir, "config.json"), b, len);
	free(b);
}

static void bad_json(const char *dir)
{
	write_all(path_in(dir, "config.json"), "{\"kernel\": ", 11);
}

Test(snapshot, hostile_snapshots_refused_with_a_message, .timeout = 180)
{
	char dir[] = "/tmp/vmm-snap-XXXXXX";

	if (!have_kvm())
		cr_skip_test("no /dev/kvm");
	if (!pick_scenario())
		cr_skip_test("the test guest has neither memtest nor snapcheck");
	make_dir(dir);
	boot_and_snapshot(pick_scenario(), "", 1, 16, 100, dir);
	expect_refused(dir, truncate_state, "state: not a valid state tree");
	expect_refused(dir, flip_header_bit, "state: not a valid state tree");
	expect_refused(dir, flip_value_bit, "state: checksum mismatch");
	expect_refused(dir, version_bump_vcpu, "state: /vcpus/cpu@0: version 7 not supported");
	expect_refused(dir, rename_cpu, "state: /vcpus: missing node 'cpu@0'");
	expect_refused(dir, drop_lapic, "state: /vcpus/cpu@0: missing property 'lapic'");
	expect_refused(dir, shorten_memory, "memory' has 16773120 bytes, expected 16777216");
	expect_refused(dir, edit_config, "config.json does not match the state");
	expect_refused(dir, bad_json, "config.json");
	rm_rf(dir);
}

/* --- the same through the REST API: vmm serve + vmm ctl ------------------- */

static pid_t serve_start(const char *sock)
{
	const char *bin = env_or("VMM_BIN", "build/vmm");
	pid_t pid = harness_fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);

		dup2(devnull, 1);
		execl(bin, bin, "serve", "--api-sock", sock, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 400 && access(sock, F_OK) != 0; i++)
		usleep(10000);
	cr_assert_eq(access(sock, F_OK), 0, "vmm serve did not create %s", sock);
	return pid;
}

static void ctl(const char *sock, const char *verb, const char *data, struct child_result *r)
{
	const char *argv[] = { "ctl", "--api-sock", sock, verb, data ? "--data" : NULL, data, NULL };

	run_vmm(argv, timeout_ms(30000), r);
}

static void serve_stop(const char *sock, pid_t pid)
{
	struct child_result *r = malloc(sizeof(*r));
	int st;

	ctl(sock, "vmm.shutdown", NULL, r);
	free(r);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "vmm serve ended with %d", st);
}

Test(snapshot, api_snapshot_then_restore_in_another_vmm, .timeout = 240)
{
	struct child_result *r = malloc(sizeof(*r));
	char dir[] = "/tmp/vmm-snap-XXXXXX", sock_a[4200], sock_b[4200], body[8600], snap[4200], log[4200];
	const char *scenario;
	pid_t a, b;

	if (!have_kvm())
		cr_skip_test("no /dev/kvm");
	scenario = pick_scenario();
	if (!scenario)
		cr_skip_test("the test guest has neither memtest nor snapcheck");
	make_dir(dir);
	snprintf(sock_a, sizeof(sock_a), "%s/a.sock", dir);
	snprintf(sock_b, sizeof(sock_b), "%s/b.sock", dir);
	snprintf(snap, sizeof(snap), "%s/snap", dir);
	snprintf(log, sizeof(log), "%s/console.log", dir);

	a = serve_start(sock_a);
	snprintf(body, sizeof(body),
		 "{\"kernel\": \"%s\", \"cmdline\": \"test=%s%s\", \"cpus\": 2, \"memory_mib\": 64, "
		 "\"console\": \"file:%s\"}", image_path(), scenario,
		 strcmp(scenario, "memtest") ? "" : " seconds=2", log);
	ctl(sock_a, "vm.create", body, r);
	cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
	ctl(sock_a, "vm.boot", NULL, r);
	cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
	usleep(400000);
	snprintf(body, sizeof(body), "{\"destination\": \"%s\"}", snap);
	ctl(sock_a, "vm.snapshot", body, r);
	cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
	cr_assert(strstr(r->out, "\"state\":\"paused\""), "%s", r->out); /* left paused */
	serve_stop(sock_a, a);

	b = serve_start(sock_b);
	/* Bad requests first: refused with a message, the VMM stays up. */
	ctl(sock_b, "vm.restore", "{\"source\": \"/nonexistent\"}", r);
	cr_assert_eq(r->status, 1);
	cr_assert(strstr(r->err, "vm.restore: restore: cannot open"), "%s", r->err);
	ctl(sock_b, "vm.restore", "{\"source\": \"x\", \"memory\": \"eager\"}", r);
	cr_assert_eq(r->status, 1);
	cr_assert(strstr(r->err, "memory: expected"), "%s", r->err);
	snprintf(body, sizeof(body), "{\"source\": \"%s\", \"memory\": \"lazy\"}", snap);
	ctl(sock_b, "vm.restore", body, r);
	cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
	cr_assert(strstr(r->out, "\"state\":\"paused\""), "%s", r->out);
	ctl(sock_b, "vm.resume", NULL, r);
	cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
	for (int i = 0; i < 300; i++) {
		ctl(sock_b, "vm.info", NULL, r);
		if (strstr(r->out, "\"state\":\"shutdown\""))
			break;
		usleep(100000);
	}
	cr_assert(strstr(r->out, "\"exit\":{\"status\":0"), "%s", r->out);
	cr_assert(file_contains(log, "PASS"), "no PASS after the API restore");
	serve_stop(sock_b, b);
	free(r);
	rm_rf(dir);
}

/* A device without save() makes the snapshot fail with a message naming it
 * (a vfio-user passthrough device has no save/load yet: its device state
 * would come from the server's migration region); the VM stays usable. */
Test(snapshot, unsaveable_device_is_named, .timeout = 60)
{
	struct child_result *r = malloc(sizeof(*r));
	char dir[] = "/tmp/vmm-snap-XXXXXX", sock[4200], body[8600], vfu[4200], srv[4200];
	pid_t a, server;
	struct stat st;

	if (!have_kvm())
		cr_skip_test("needs /dev/kvm");
	/* The server is built beside the images: $VMM_IMAGES/../tests/vfio-user-nic. */
	snprintf(srv, sizeof(srv), "%s/../tests/vfio-user-nic", env_or("VMM_IMAGES", "build/images"));
	if (access(srv, X_OK))
		cr_skip_test("test VF server %s not built", srv);
	make_dir(dir);
	snprintf(vfu, sizeof(vfu), "%s/vfu.sock", dir);
	server = harness_fork();
	cr_assert_geq(server, 0);
	if (server == 0) {
		execl(srv, srv, "--socket", vfu, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500 && stat(vfu, &st); i++)
		usleep(2000);
	cr_assert_eq(stat(vfu, &st), 0, "test VF server did not listen");
	snprintf(sock, sizeof(sock), "%s/a.sock", dir);
	a = serve_start(sock);
	snprintf(body, sizeof(body), "{\"kernel\": \"%s\", \"cmdline\": \"test=hello\", \"memory_mib\": 16, "
		 "\"devices\": [{\"vfio-user\": \"%s\"}], \"console\": \"none\"}", image_path(), vfu);
	ctl(sock, "vm.create", body, r);
	cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
	snprintf(body, sizeof(body), "{\"destination\": \"%s/snap\"}", dir);
	ctl(sock, "vm.snapshot", body, r);
	cr_assert_eq(r->status, 1);
	cr_assert(strstr(r->err, "(vfio-pci) cannot be saved"), "%s", r->err);
	ctl(sock, "vm.info", NULL, r);
	cr_assert_eq(r->status, 0, "the VMM must survive a refused snapshot: %s", r->err);
	serve_stop(sock, a);
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	free(r);
	rm_rf(dir);
}
