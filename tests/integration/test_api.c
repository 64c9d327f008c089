/* Integration tests of the REST API: start `vmm serve`, drive the VM with
 * `vmm ctl`, curl --unix-socket and raw requests; a table of bad requests
 * with their expected status; a load test. Every test ends with vmm.shutdown
 * and checks the VMM's exit status: under VMM_ASAN=1 the sanitized VMM exits
 * non-zero on a leak or memory error, so that check covers them too.
 *
 * Guests: a 6-byte hand-made PVH ELF that halts with interrupts off (runs
 * until stopped, costs no CPU even when emulated), and the project's test
 * guest (build/images/testguest.elf: test=hello exits at once, test=irq with
 * many ticks keeps running). Helpers are static and prefixed apit_. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/actions.h"
#include "api/api.h"
#include "tests/integration/harness.h"
#include "tests/integration/vfio_rig.h"

struct apit_srv {
	pid_t pid;
	char dir[64];
	char sock[96];
	char log[96];
	char halt_elf[96];
	char console[96];
};

static bool apit_asan(void)
{
	return getenv("VMM_ASAN") != NULL;
}

/* The shared harness (harness.h) runs a vmm to completion; `vmm serve`
 * keeps running, so these tests spawn it themselves and take only the
 * environment conventions from the harness. */
static const char *apit_vmm(void)
{
	return harness_vmm_bin();
}

static void apit_testguest(char *buf, size_t len)
{
	snprintf(buf, len, "%s/testguest.elf", harness_images_dir());
}

static uint64_t apit_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void apit_need_kvm(void)
{
	if (!harness_have_kvm())
		cr_skip_test("no /dev/kvm");
}

/* A minimal PVH kernel: ELF64 with one PT_LOAD at 1 MiB holding
 * "cli; hlt; jmp hlt" and a PT_NOTE with Xen's PHYS32_ENTRY (type 18). */
static void apit_write_halt_guest(const char *path)
{
	static const uint8_t code[] = { 0xfa, 0xf4, 0xeb, 0xfd };
	struct {
		Elf64_Nhdr nh;
		char name[4];
		uint32_t entry;
	} note = { { 4, 4, 18 }, "Xen", 0x100000 };
	uint8_t img[0x1000 + sizeof(code)] = { 0 };
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(*eh));
	const size_t note_off = sizeof(*eh) + 2 * sizeof(*ph);
	FILE *f;

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = 0x100000;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 2;
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = 0x1000,
			      .p_vaddr = 0x100000, .p_paddr = 0x100000, .p_filesz = sizeof(code),
			      .p_memsz = sizeof(code), .p_align = 0x1000 };
	ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_flags = PF_R, .p_offset = note_off,
			      .p_filesz = sizeof(note), .p_memsz = sizeof(note), .p_align = 4 };
	memcpy(img + note_off, &note, sizeof(note));
	memcpy(img + 0x1000, code, sizeof(code));
	f = fopen(path, "wb");
	cr_assert_not_null(f, "cannot write %s", path);
	cr_assert_eq(fwrite(img, 1, sizeof(img), f), sizeof(img));
	fclose(f);
}

static bool apit_can_connect(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static pid_t apit_spawn(char *const argv[], const char *out_path)
{
	pid_t pid = harness_fork();

	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Wait for @pid up to @ms; returns the exit status, 128+signal, or -1 on timeout. */
static int apit_wait(pid_t pid, int ms)
{
	uint64_t deadline = apit_now_ms() + (uint64_t)ms;
	int st;

	while (apit_now_ms() < deadline) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(5000);
	}
	return -1;
}

static void apit_dump_log(const struct apit_srv *s)
{
	char buf[4096];
	FILE *f = fopen(s->log, "r");
	size_t n;

	if (!f)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	if (n)
		cr_log_info("vmm serve log:\n%s", buf);
}

static void apit_start(struct apit_srv *s)
{
	char *argv[] = { (char *)apit_vmm(), "serve", "--api-sock", s->sock, NULL };
	uint64_t deadline;

	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), "/tmp/vmm-apit-XXXXXX");
	cr_assert_not_null(mkdtemp(s->dir));
	snprintf(s->sock, sizeof(s->sock), "%s/api.sock", s->dir);
	snprintf(s->log, sizeof(s->log), "%s/serve.log", s->dir);
	snprintf(s->halt_elf, sizeof(s->halt_elf), "%s/halt.elf", s->dir);
	snprintf(s->console, sizeof(s->console), "%s/console.log", s->dir);
	apit_write_halt_guest(s->halt_elf);
	s->pid = apit_spawn(argv, s->log);
	deadline = apit_now_ms() + (apit_asan() ? 20000 : 5000);
	while (!apit_can_connect(s->sock)) {
		if (apit_now_ms() > deadline || apit_wait(s->pid, 0) >= 0) {
			apit_dump_log(s);
			cr_assert_fail("vmm serve did not start listening on %s", s->sock);
		}
		usleep(2000);
	}
}

static void apit_cleanup(struct apit_srv *s)
{
	char path[192];
	const char *files[] = { "api.sock", "serve.log", "halt.elf", "console.log", "cfg.json",
				"out.txt" };

	if (s->pid > 0 && apit_wait(s->pid, 0) < 0) {
		kill(s->pid, SIGKILL);
		apit_wait(s->pid, 5000);
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", s->dir, files[i]);
		unlink(path);
	}
	rmdir(s->dir);
}

/* One request through the library client; returns the HTTP status. */
static unsigned apit_req(const struct apit_srv *s, const char *verb, const char *body,
			 char *out, size_t outlen)
{
	const struct api_action_desc *a = api_action_by_name(verb);
	struct api_reply r;
	char path[96], err[256];
	unsigned status;

	cr_assert_not_null(a, "unknown verb %s", verb);
	snprintf(path, sizeof(path), API_PATH_PREFIX "%s", verb);
	cr_assert_eq(api_client_request(s->sock, a->method, path, body, body ? strlen(body) : 0, &r,
					err, sizeof(err)), 0, "%s: %s", verb, err);
	if (out)
		snprintf(out, outlen, "%s", r.body);
	status = r.status;
	api_reply_free(&r);
	return status;
}

/* vmm.shutdown, then the process must exit 0 (ASan: no leaks) and remove its socket. */
static void apit_shutdown_and_check(struct apit_srv *s)
{
	int st;

	cr_assert_eq(apit_req(s, "vmm.shutdown", NULL, NULL, 0), 200);
	st = apit_wait(s->pid, apit_asan() ? 30000 : 10000);
	if (st != 0)
		apit_dump_log(s);
	cr_assert_eq(st, 0, "vmm serve exited with %d", st);
	s->pid = 0;
	cr_assert_neq(access(s->sock, F_OK), 0, "socket file left behind");
}

static cJSON *apit_info(const struct apit_srv *s, const char *verb)
{
	char buf[8192];
	cJSON *j;

	cr_assert_eq(apit_req(s, verb, NULL, buf, sizeof(buf)), 200, "%s: %s", verb, buf);
	j = cJSON_Parse(buf);
	cr_assert_not_null(j, "%s: not JSON: %s", verb, buf);
	return j;
}

/* The device named @name in @info's "devices", or NULL. */
static const cJSON *apit_device(const cJSON *info, const char *name)
{
	const cJSON *dev;

	cJSON_ArrayForEach(dev, cJSON_GetObjectItemCaseSensitive(info, "devices")) {
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(dev, "name");

		if (cJSON_IsString(n) && !strcmp(n->valuestring, name))
			return dev;
	}
	return NULL;
}

static const char *apit_state(const struct apit_srv *s, char *buf, size_t len)
{
	cJSON *j = apit_info(s, "vm.info");
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "state");

	cr_assert(cJSON_IsString(st));
	snprintf(buf, len, "%s", st->valuestring);
	cJSON_Delete(j);
	return buf;
}

static void apit_halt_config(const struct apit_srv *s, char *buf, size_t len)
{
	snprintf(buf, len, "{\"kernel\": \"%s\", \"cpus\": 1, \"memory_mib\": 16, \"console\": \"none\"}",
		 s->halt_elf);
}

/* The test guest's idle scenario (halts with a 100 Hz timer, runs until
 * stopped), printing to the file console; false if the image is missing. */
static bool apit_idle_config(const struct apit_srv *s, char *buf, size_t len)
{
	char elf[256];

	apit_testguest(elf, sizeof(elf));
	if (access(elf, R_OK))
		return false;
	snprintf(buf, len, "{\"kernel\": \"%s\", \"cmdline\": \"test=idle\", \"memory_mib\": 32,"
		 " \"console\": \"file:%s\"}", elf, s->console);
	return true;
}

static void apit_wait_console(const struct apit_srv *s, const char *text, int ms)
{
	uint64_t deadline = apit_now_ms() + (uint64_t)ms;
	char buf[4096];

	for (;;) {
		FILE *f = fopen(s->console, "r");
		size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

		if (f)
			fclose(f);
		buf[n] = 0;
		if (strstr(buf, text))
			return;
		cr_assert(apit_now_ms() < deadline, "console never showed '%s': %s", text, buf);
		usleep(10000);
	}
}

/* Run a command, capture stdout into @out; returns the exit status. */
static int apit_run(char *const argv[], char *out, size_t outlen)
{
	int pfd[2], st;
	size_t n = 0;
	ssize_t r;
	pid_t pid;

	cr_assert_eq(pipe(pfd), 0);
	pid = harness_fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);

		dup2(pfd[1], STDOUT_FILENO);
		if (devnull >= 0)
			dup2(devnull, STDERR_FILENO);
		close(pfd[0]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	while (n + 1 < outlen && (r = read(pfd[0], out + n, outlen - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = 0;
	close(pfd[0]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int apit_ctl(const struct apit_srv *s, const char *verb, const char *data, char *out,
		    size_t outlen)
{
	char *argv[] = { (char *)apit_vmm(), "ctl", "--api-sock", (char *)s->sock, (char *)verb,
			 data ? "--data" : NULL, (char *)data, NULL };

	return apit_run(argv, out, outlen);
}

static void apit_wait_state(const struct apit_srv *s, const char *want, int ms)
{
	uint64_t deadline = apit_now_ms() + (uint64_t)ms;
	char st[32];

	while (strcmp(apit_state(s, st, sizeof(st)), want)) {
		cr_assert(apit_now_ms() < deadline, "state stayed '%s', wanted '%s'", st, want);
		usleep(10000);
	}
}

/* --- lifecycle -------------------------------------------------------------- */

Test(api, lifecycle_with_vmm_ctl, .timeout = 120)
{
	struct apit_srv s;
	char cfg[512], out[8192], path[192];
	FILE *f;

	apit_need_kvm();
	apit_start(&s);
	apit_halt_config(&s, cfg, sizeof(cfg));
	snprintf(path, sizeof(path), "%s/cfg.json", s.dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(cfg, f);
	fclose(f);
	snprintf(cfg, sizeof(cfg), "@%s", path);

	cr_assert_eq(apit_ctl(&s, "vmm.ping", NULL, out, sizeof(out)), 0);
	cr_assert(strstr(out, "\"version\"") && strstr(out, "\"uptime_ms\""), "%s", out);
	cr_assert_eq(apit_ctl(&s, "vm.create", cfg, out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "\"created\""), "%s", out);
	cr_assert_eq(apit_ctl(&s, "vm.boot", NULL, out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "\"running\""), "%s", out);
	/* Boot twice: 409 and a non-zero exit with the reply printed. */
	cr_assert_eq(apit_ctl(&s, "vm.boot", NULL, out, sizeof(out)), 1);
	cr_assert(strstr(out, "already running"), "%s", out);
	cr_assert_eq(apit_ctl(&s, "vm.pause", NULL, out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "\"paused\""), "%s", out);
	cr_assert_eq(apit_ctl(&s, "vm.resume", NULL, out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "\"running\""), "%s", out);
	cr_assert_eq(apit_ctl(&s, "vm.info", NULL, out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "\"state\":\"running\"") && strstr(out, s.halt_elf) &&
		  strstr(out, "\"memory_mib\":16") && strstr(out, "\"uart0\""), "%s", out);
	cr_assert_eq(apit_ctl(&s, "vm.counters", NULL, out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "\"exits\""), "%s", out);
	cr_assert_eq(apit_ctl(&s, "vm.shutdown", NULL, out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "\"shutdown\""), "%s", out);
	cr_assert_eq(apit_ctl(&s, "vm.info", NULL, out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "\"exit\"") && strstr(out, "shutdown requested via the API"), "%s", out);
	/* A new VM after the old one shut down; malformed --data is a 400. */
	cr_assert_eq(apit_ctl(&s, "vm.create", "{\"kernel\": 1}", out, sizeof(out)), 1);
	cr_assert(strstr(out, "kernel: expected a string"), "%s", out);
	cr_assert_eq(apit_ctl(&s, "vm.create", cfg, out, sizeof(out)), 0, "%s", out);
	cr_assert_eq(apit_ctl(&s, "no.such-verb", NULL, out, sizeof(out)), 2);
	apit_shutdown_and_check(&s);
	apit_cleanup(&s);
}

Test(api, lifecycle_with_curl, .timeout = 120)
{
	struct apit_srv s;
	char cfg[512], out[8192];
	char *curl_v[] = { "curl", "--version", NULL };

	apit_need_kvm();
	if (apit_run(curl_v, out, sizeof(out)) != 0)
		cr_skip_test("curl is not installed");
	apit_start(&s);
	apit_halt_config(&s, cfg, sizeof(cfg));
	struct {
		const char *method, *verb, *data;
		const char *expect;
	} steps[] = {
		{ "PUT", "vm.create", cfg, "\"created\"" },
		{ "PUT", "vm.boot", NULL, "\"running\"" },
		{ "PUT", "vm.pause", NULL, "\"paused\"" },
		{ "PUT", "vm.resume", NULL, "\"running\"" },
		{ "GET", "vm.info", NULL, "\"state\":\"running\"" },
		{ "PUT", "vm.shutdown", NULL, "\"shutdown\"" },
		{ "GET", "vm.info", NULL, "\"state\":\"shutdown\"" },
	};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		char url[128];
		char *argv[] = { "curl", "-s", "-f", "--unix-socket", s.sock, "-X", (char *)steps[i].method,
				 url, steps[i].data ? "-d" : NULL, (char *)steps[i].data, NULL };

		snprintf(url, sizeof(url), "http://localhost/api/v1/%s", steps[i].verb);
		cr_assert_eq(apit_run(argv, out, sizeof(out)), 0, "curl %s failed", steps[i].verb);
		cr_assert(strstr(out, steps[i].expect), "%s: %s", steps[i].verb, out);
	}
	apit_shutdown_and_check(&s);
	apit_cleanup(&s);
}

/* The real test guest: hello runs and exits by itself; the server reaps it
 * and vm.info shows the guest's exit; a long irq run shows as running. */
Test(api, testguest_hello_and_running, .timeout = 180)
{
	struct apit_srv s;
	char cfg[1024], out[8192], elf[256];
	cJSON *info;
	const cJSON *ex;

	apit_need_kvm();
	apit_testguest(elf, sizeof(elf));
	if (access(elf, R_OK))
		cr_skip_test("%s is missing (make images)", elf);
	apit_start(&s);
	snprintf(cfg, sizeof(cfg), "{\"kernel\": \"%s\", \"cmdline\": \"test=hello\", \"console\": \"file:%s\"}",
		 elf, s.console);
	cr_assert_eq(apit_req(&s, "vm.create", cfg, out, sizeof(out)), 200, "%s", out);
	cr_assert_eq(apit_req(&s, "vm.boot", NULL, out, sizeof(out)), 200, "%s", out);
	cr_assert_eq(apit_req(&s, "vm.boot", NULL, out, sizeof(out)), 409, "%s", out);
	apit_wait_state(&s, "shutdown", 60000);
	info = apit_info(&s, "vm.info");
	ex = cJSON_GetObjectItemCaseSensitive(info, "exit");
	cr_assert(cJSON_IsObject(ex), "no exit in vm.info");
	cr_assert_eq(cJSON_GetObjectItemCaseSensitive(ex, "status")->valueint, 0);
	cr_assert(strstr(cJSON_GetObjectItemCaseSensitive(ex, "reason")->valuestring, "debug-exit"));
	cJSON_Delete(info);
	/* vm.reboot re-creates the same config and boots it: hello runs again. */
	cr_assert_eq(apit_req(&s, "vm.reboot", NULL, out, sizeof(out)), 200, "%s", out);
	apit_wait_state(&s, "shutdown", 60000);

	/* A guest that keeps running: the idle scenario halts with its timer on. */
	cr_assert(apit_idle_config(&s, cfg, sizeof(cfg)));
	cr_assert_eq(apit_req(&s, "vm.create", cfg, out, sizeof(out)), 200, "%s", out);
	cr_assert_eq(apit_req(&s, "vm.boot", NULL, out, sizeof(out)), 200, "%s", out);
	apit_wait_console(&s, "idle: running", 60000);
	cr_assert_str_eq(apit_state(&s, out, sizeof(out)), "running");
	cr_assert_eq(apit_req(&s, "vm.pause", NULL, out, sizeof(out)), 200, "%s", out);
	cr_assert_eq(apit_req(&s, "vm.resume", NULL, out, sizeof(out)), 200, "%s", out);
	cr_assert_str_eq(apit_state(&s, out, sizeof(out)), "running");
	apit_shutdown_and_check(&s);
	apit_cleanup(&s);
}

/* --- the table of bad requests ----------------------------------------------- */

/* Send raw bytes; return the status of the reply, or 0 if the server closed
 * the connection or sent nothing within @timeout_ms. */
static unsigned apit_raw(const struct apit_srv *s, const char *req, size_t len, int timeout_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char buf[4096];
	size_t n = 0;
	unsigned status = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->sock);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	for (size_t off = 0; off < len;) {
		ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);

		if (w <= 0)
			break;     /* the server may refuse early and close */
		off += (size_t)w;
	}
	while (n < sizeof(buf) - 1 && poll(&p, 1, timeout_ms) == 1) {
		ssize_t r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0);

		if (r <= 0)
			break;
		n += (size_t)r;
		buf[n] = 0;
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
	buf[n] = 0;
	close(fd);
	if (sscanf(buf, "HTTP/1.%*c %u", &status) != 1)
		status = 0;
	return status;
}

static unsigned apit_http(const struct apit_srv *s, const char *method, const char *path,
			  const char *body)
{
	char *req;
	unsigned st;
	int n = asprintf(&req, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
			 method, path, body ? strlen(body) : 0, body ? body : "");

	cr_assert_gt(n, 0);
	st = apit_raw(s, req, (size_t)n, 5000);
	free(req);
	return st;
}

enum apit_kind { K_HTTP, K_RAW, K_STEP };

struct apit_case {
	enum apit_kind kind;
	const char *method, *path, *body;   /* K_RAW: body is the whole request */
	unsigned status;                    /* 0: no reply expected (server must live on) */
	const char *why;
};

#define CFG_OK "__CFG__"   /* replaced by the halt guest's config */

static const struct apit_case apit_cases[] = {
	/* No VM yet. */
	{ K_HTTP, "GET", "/api/v1/vmm.ping", NULL, 200, "ping" },
	{ K_HTTP, "GET", "/", NULL, 404, "root" },
	{ K_HTTP, "GET", "/api/v1/", NULL, 404, "empty action" },
	{ K_HTTP, "GET", "/api/v1/vm.nope", NULL, 404, "unknown action" },
	{ K_HTTP, "GET", "/api/v2/vmm.ping", NULL, 404, "unknown version" },
	{ K_HTTP, "GET", "/api/v1/vmm.ping/", NULL, 404, "trailing slash" },
	{ K_HTTP, "GET", "/api/v1/VMM.PING", NULL, 404, "case matters" },
	{ K_HTTP, "GET", "/api/v1/vm.create", NULL, 405, "create with GET" },
	{ K_HTTP, "PUT", "/api/v1/vm.info", NULL, 405, "info with PUT" },
	{ K_HTTP, "POST", "/api/v1/vm.boot", NULL, 405, "boot with POST" },
	{ K_HTTP, "DELETE", "/api/v1/vm.boot", NULL, 405, "DELETE" },
	{ K_HTTP, "PUT", "/api/v1/vm.boot", NULL, 409, "boot without a VM" },
	{ K_HTTP, "PUT", "/api/v1/vm.pause", NULL, 409, "pause without a VM" },
	{ K_HTTP, "GET", "/api/v1/vm.info", NULL, 409, "info without a VM" },
	{ K_HTTP, "PUT", "/api/v1/vm.shutdown", NULL, 409, "shutdown without a VM" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", NULL, 400, "create without a body" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "{", 400, "truncated JSON" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "{\"kernel\": \"/k\"} {}", 400, "two documents" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "[1,2]", 400, "array body" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "\"x\"", 400, "string body" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "{\"kernel\": 7}", 400, "kernel wrong type" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "{\"kernel\": \"/k\", \"cpus\": 0}", 400, "cpus 0" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "{\"kernel\": \"/k\", \"cpus\": 1e9}", 400, "cpus huge" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "{\"kernel\": \"/k\", \"memory_mib\": -5}", 400, "memory negative" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "{\"kernel\": \"/k\", \"bogus\": true}", 400, "unknown field" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "{\"kernel\": \"/k\", \"nets\": [{\"tap\": \"\"}]}", 400, "empty tap" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "{\"kernel\": \"/k\", \"console\": \"tty\"}", 400, "bad console" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "{\"kernel\": \"/nonexistent/kernel\"}", 400, "missing kernel file" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "{\"kernel\": \"/etc/hostname\"}", 400, "not a kernel" },
	{ K_HTTP, "PUT", "/api/v1/vm.add-net", "{\"tap\": 5}", 400, "add-net wrong type" },
	{ K_HTTP, "PUT", "/api/v1/vm.add-net", "{\"tap\": \"tap0\"}", 409, "add-net without a VM" },
	{ K_HTTP, "PUT", "/api/v1/vm.add-device", "{\"vfio-user\": \"/run/vf.sock\"}", 409, "add-device without a VM" },
	{ K_HTTP, "PUT", "/api/v1/vm.add-device", "{\"vfio\": \"3:0.1\"}", 400, "add-device bad address" },
	{ K_HTTP, "GET", "/api/v1/vm.add-device", NULL, 405, "add-device with GET" },
	{ K_HTTP, "PUT", "/api/v1/vm.boot", "{\"force\": true}", 400, "boot takes no fields" },
	{ K_HTTP, "PUT", "/api/v1/vm.snapshot", "{\"destination\": \"/tmp/x\"}", 409, "snapshot without a VM" },
	{ K_HTTP, "GET", "/api/v1/vm.snapshot", NULL, 405, "snapshot with GET" },
	{ K_HTTP, "PUT", "/api/v1/vm.restore", "{}", 400, "restore without source" },
	{ K_HTTP, "PUT", "/api/v1/vm.restore", "{\"source\": \"/nonexistent/snap\"}", 400, "restore from nowhere" },
	{ K_HTTP, "PUT", "/api/v1/vm.restore", "{\"source\": \"/x\", \"memory\": \"fast\"}", 400, "restore bad memory mode" },
	{ K_HTTP, "PUT", "/api/v1/vm.boot", "not json", 400, "boot with junk body" },
	{ K_RAW, NULL, NULL, "GARBAGE\r\n\r\n", 0, "not HTTP (closed without a reply)" },
	{ K_RAW, NULL, NULL, "GET /api/v1/vmm.ping HTTP/9.9\r\nHost: x\r\n\r\n", 505, "bad HTTP version" },
	{ K_RAW, NULL, NULL, "PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n", 400, "Content-Length not a number" },
	{ K_RAW, NULL, NULL, "PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n{", 413, "huge Content-Length" },
	{ K_RAW, NULL, NULL, "PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "negative Content-Length" },
	{ K_RAW, NULL, NULL, "PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"a\"", 0, "truncated body (client gives up)" },
	{ K_RAW, NULL, NULL, "PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n", 400, "chunked malformed" },
	{ K_RAW, NULL, NULL, "__OVERSIZED_CHUNKED__", 413, "chunked over the limit" },
	{ K_RAW, NULL, NULL, "__OVERSIZED_BODY__", 413, "body over the limit" },
	{ K_RAW, NULL, NULL, "__HUGE_HEADER__", 431, "header over the connection memory limit" },
	/* A created VM. */
	{ K_STEP, "PUT", "/api/v1/vm.create", CFG_OK, 200, "create" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", CFG_OK, 409, "create twice" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", "{\"kernel\": 1}", 400, "bad create after create is still 400" },
	{ K_HTTP, "PUT", "/api/v1/vm.pause", NULL, 409, "pause before boot" },
	{ K_HTTP, "PUT", "/api/v1/vm.resume", NULL, 409, "resume before boot" },
	{ K_HTTP, "PUT", "/api/v1/vm.reboot", NULL, 409, "reboot before boot" },
	{ K_HTTP, "PUT", "/api/v1/vm.remove-device", "{\"id\": \"uart0\"}", 409, "remove-device unsupported" },
	{ K_HTTP, "PUT", "/api/v1/vm.remove-device", "{\"id\": 3}", 400, "remove-device wrong type" },
	{ K_HTTP, "PUT", "/api/v1/vm.remove-device", "{}", 400, "remove-device without id" },
	/* Running. */
	{ K_STEP, "PUT", "/api/v1/vm.boot", NULL, 200, "boot" },
	{ K_HTTP, "PUT", "/api/v1/vm.boot", NULL, 409, "boot twice" },
	{ K_HTTP, "PUT", "/api/v1/vm.resume", NULL, 409, "resume while running" },
	{ K_HTTP, "PUT", "/api/v1/vm.create", CFG_OK, 409, "create after boot" },
	{ K_HTTP, "PUT", "/api/v1/vm.add-net", "{\"tap\": \"tap0\"}", 409, "hotplug unsupported" },
	{ K_HTTP, "PUT", "/api/v1/vm.add-net", "{\"tap\": \"tap0\", \"queues\": 1000}", 400, "add-net out of range" },
	{ K_HTTP, "PUT", "/api/v1/vm.add-device", "{\"vfio\": \"0000:03:00.1\"}", 409, "add-device unsupported" },
	{ K_HTTP, "PUT", "/api/v1/vm.add-device", "{\"vfio-user\": \"\"}", 400, "add-device empty socket" },
	{ K_HTTP, "PUT", "/api/v1/vm.add-device", "{}", 400, "add-device without a device" },
	{ K_HTTP, "PUT", "/api/v1/vm.restore", "{\"source\": \"/x\"}", 409, "restore over a running VM" },
	{ K_HTTP, "PUT", "/api/v1/vm.snapshot", "{\"dest\": \"/x\"}", 400, "snapshot unknown field" },
	{ K_STEP, "PUT", "/api/v1/vm.pause", NULL, 200, "pause" },
	{ K_HTTP, "PUT", "/api/v1/vm.pause", NULL, 409, "pause twice" },
	{ K_HTTP, "PUT", "/api/v1/vm.boot", NULL, 409, "boot while paused" },
	{ K_HTTP, "GET", "/api/v1/vm.counters", NULL, 200, "counters while paused" },
	{ K_STEP, "PUT", "/api/v1/vm.resume", NULL, 200, "resume" },
	{ K_STEP, "PUT", "/api/v1/vm.shutdown", NULL, 200, "shutdown" },
	{ K_HTTP, "PUT", "/api/v1/vm.shutdown", NULL, 409, "shutdown twice" },
	{ K_HTTP, "PUT", "/api/v1/vm.pause", NULL, 409, "pause after shutdown" },
	{ K_HTTP, "PUT", "/api/v1/vm.boot", NULL, 409, "boot after shutdown" },
	{ K_HTTP, "GET", "/api/v1/vm.info", NULL, 200, "info after shutdown" },
	{ K_HTTP, "GET", "/api/v1/vmm.ping", NULL, 200, "still alive" },
};

static char *apit_expand(const struct apit_srv *s, const struct apit_case *c, size_t *len)
{
	char *out = NULL;
	char cfg[512];

	if (c->body && !strcmp(c->body, CFG_OK)) {
		apit_halt_config(s, cfg, sizeof(cfg));
		out = strdup(cfg);
	} else if (c->body && !strcmp(c->body, "__OVERSIZED_BODY__")) {
		size_t n = API_MAX_BODY + 100;
		int h;

		out = malloc(n + 200);
		h = sprintf(out, "PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
		memset(out + h, ' ', n);
		out[h + n] = 0;
	} else if (c->body && !strcmp(c->body, "__OVERSIZED_CHUNKED__")) {
		size_t chunk = 16384, nchunks = API_MAX_BODY / chunk + 2, off;

		out = malloc(nchunks * (chunk + 16) + 256);
		off = (size_t)sprintf(out, "PUT /api/v1/vm.create HTTP/1.1\r\nHost: x\r\n"
				      "Transfer-Encoding: chunked\r\n\r\n");
		for (size_t i = 0; i < nchunks; i++) {
			off += (size_t)sprintf(out + off, "%zx\r\n", chunk);
			memset(out + off, ' ', chunk);
			off += chunk;
			off += (size_t)sprintf(out + off, "\r\n");
		}
		sprintf(out + off, "0\r\n\r\n");
	} else if (c->body && !strcmp(c->body, "__HUGE_HEADER__")) {
		size_t n = 40000;
		int h;

		out = malloc(n + 200);
		h = sprintf(out, "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\nX-Big: ");
		memset(out + h, 'a', n);
		sprintf(out + h + n, "\r\n\r\n");
	} else if (c->body) {
		out = strdup(c->body);
	}
	*len = out ? strlen(out) : 0;
	return out;
}

Test(api, bad_request_table, .timeout = 180)
{
	const size_t nr = sizeof(apit_cases) / sizeof(apit_cases[0]);
	struct apit_srv s;
	size_t nr_bad = 0;

	apit_need_kvm();
	apit_start(&s);
	for (size_t i = 0; i < nr; i++) {
		const struct apit_case *c = &apit_cases[i];
		size_t len;
		char *body = apit_expand(&s, c, &len);
		unsigned st;

		if (c->kind == K_RAW)
			st = apit_raw(&s, body, len, c->status ? 5000 : 300);
		else
			st = apit_http(&s, c->method, c->path, body);
		free(body);
		cr_expect_eq(st, c->status, "case %zu (%s): got %u, expected %u", i, c->why, st, c->status);
		if (c->kind != K_STEP)
			nr_bad++;
		/* Whatever came before, the VMM must still answer. */
		cr_assert_eq(apit_http(&s, "GET", "/api/v1/vmm.ping", NULL), 200,
			     "VMM stopped answering after case %zu (%s)", i, c->why);
	}
	cr_assert_geq(nr_bad, 40, "the table must hold at least 40 bad requests");
	apit_shutdown_and_check(&s);
	apit_cleanup(&s);
}

/* Concurrent conflicting requests: exactly one boot wins, the rest get 409. */
struct apit_par {
	const struct apit_srv *s;
	const char *verb;
	unsigned status;
};

static void *apit_par_fn(void *arg)
{
	struct apit_par *p = arg;
	const struct api_action_desc *a = api_action_by_name(p->verb);
	struct api_reply r;
	char path[64], err[256];

	snprintf(path, sizeof(path), API_PATH_PREFIX "%s", p->verb);
	if (api_client_request(p->s->sock, a->method, path, NULL, 0, &r, err, sizeof(err)) == 0) {
		p->status = r.status;
		api_reply_free(&r);
	}
	return NULL;
}

static unsigned apit_race(const struct apit_srv *s, const char *verb, unsigned n, unsigned want)
{
	struct apit_par par[16];
	pthread_t t[16];
	unsigned nr_ok = 0;

	for (unsigned i = 0; i < n; i++) {
		par[i] = (struct apit_par){ s, verb, 0 };
		cr_assert_eq(pthread_create(&t[i], NULL, apit_par_fn, &par[i]), 0);
	}
	for (unsigned i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		cr_assert(par[i].status == 200 || par[i].status == 409, "%s: status %u", verb, par[i].status);
		nr_ok += par[i].status == 200;
	}
	cr_assert_eq(nr_ok, want, "%s: %u of %u concurrent requests succeeded", verb, nr_ok, n);
	return nr_ok;
}

Test(api, concurrent_conflicting_requests, .timeout = 120)
{
	struct apit_srv s;
	char cfg[512];

	apit_need_kvm();
	apit_start(&s);
	apit_halt_config(&s, cfg, sizeof(cfg));
	cr_assert_eq(apit_req(&s, "vm.create", cfg, NULL, 0), 200);
	apit_race(&s, "vm.boot", 8, 1);
	apit_race(&s, "vm.pause", 8, 1);
	apit_race(&s, "vm.resume", 8, 1);
	/* Reboot is allowed in every state it leaves behind: all succeed, one by one. */
	apit_race(&s, "vm.reboot", 8, 8);
	apit_race(&s, "vm.pause", 8, 1);
	apit_race(&s, "vm.shutdown", 8, 1);     /* from paused */
	apit_shutdown_and_check(&s);
	apit_cleanup(&s);
}

/* --- load: 8 clients x 500 requests while the guest runs ------------------- */

static long apit_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

struct apit_load {
	const struct apit_srv *s;
	unsigned id, nr, ok;
};

static void *apit_load_fn(void *arg)
{
	struct apit_load *l = arg;
	struct api_reply r;
	char err[256];

	for (unsigned i = 0; i < l->nr; i++) {
		const char *path = (i + l->id) % 2 ? API_PATH_PREFIX "vm.info" : API_PATH_PREFIX "vm.counters";

		if (api_client_request(l->s->sock, "GET", path, NULL, 0, &r, err, sizeof(err)) == 0) {
			l->ok += r.status == 200 && r.body_len > 10;
			api_reply_free(&r);
		}
	}
	return NULL;
}

static void apit_load_round(const struct apit_srv *s, unsigned clients, unsigned per_client)
{
	struct apit_load l[8];
	pthread_t t[8];

	for (unsigned i = 0; i < clients; i++) {
		l[i] = (struct apit_load){ s, i, per_client, 0 };
		cr_assert_eq(pthread_create(&t[i], NULL, apit_load_fn, &l[i]), 0);
	}
	for (unsigned i = 0; i < clients; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(l[i].ok, per_client, "client %u: %u of %u answered 200", i, l[i].ok, per_client);
	}
}

Test(api, load_8_clients_x_500, .timeout = 300)
{
	struct apit_srv s;
	char cfg[512], st[32];
	long rss0, rss1;
	uint64_t t0;

	bool idle;

	apit_need_kvm();
	apit_start(&s);
	idle = apit_idle_config(&s, cfg, sizeof(cfg));
	if (!idle)
		apit_halt_config(&s, cfg, sizeof(cfg));
	cr_assert_eq(apit_req(&s, "vm.create", cfg, NULL, 0), 200);
	cr_assert_eq(apit_req(&s, "vm.boot", NULL, NULL, 0), 200);
	if (idle)
		apit_wait_console(&s, "idle: running", 60000);
	/* Warm up (allocator arenas, MHD pools), then measure. */
	apit_load_round(&s, 8, 50);
	rss0 = apit_rss_kib(s.pid);
	t0 = apit_now_ms();
	apit_load_round(&s, 8, 500);
	rss1 = apit_rss_kib(s.pid);
	cr_log_info("api load: 4000 requests in %llu ms, VMM RSS %ld -> %ld KiB",
		    (unsigned long long)(apit_now_ms() - t0), rss0, rss1);
	cr_assert_gt(rss0, 0);
	/* Stable: no per-request growth (4000 leaked replies would be far more).
	 * ASan's quarantine grows by design, so only the plain build is held to it. */
	if (!apit_asan())
		cr_assert_lt(rss1 - rss0, 1024, "RSS grew from %ld to %ld KiB", rss0, rss1);
	cr_assert_str_eq(apit_state(&s, st, sizeof(st)), "running");
	apit_shutdown_and_check(&s);
	apit_cleanup(&s);
}

/* --- the socket itself -------------------------------------------------------- */

Test(api, socket_mode_stale_and_busy, .timeout = 60)
{
	struct apit_srv s;
	struct stat st;
	char out[512], log2[192];
	int fd, rc;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	apit_start(&s);
	cr_assert_eq(stat(s.sock, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);

	/* A second server on the same live socket must refuse, leaving it alone. */
	char *argv2[] = { (char *)apit_vmm(), "serve", "--api-sock", s.sock, NULL };
	snprintf(log2, sizeof(log2), "%s/out.txt", s.dir);
	rc = apit_wait(apit_spawn(argv2, log2), apit_asan() ? 20000 : 5000);
	cr_assert_neq(rc, 0);
	cr_assert_eq(apit_req(&s, "vmm.ping", NULL, out, sizeof(out)), 200);
	apit_shutdown_and_check(&s);

	/* A stale socket (nothing listening) is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s.sock);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	s.pid = apit_spawn(argv2, s.log);
	for (int i = 0; i < 2000 && !apit_can_connect(s.sock); i++)
		usleep(5000);
	cr_assert_eq(apit_req(&s, "vmm.ping", NULL, out, sizeof(out)), 200, "stale socket not replaced");
	apit_shutdown_and_check(&s);

	/* A regular file in the way is not touched. */
	fd = open(s.sock, O_CREAT | O_WRONLY, 0644);
	close(fd);
	rc = apit_wait(apit_spawn(argv2, log2), apit_asan() ? 20000 : 5000);
	cr_assert_neq(rc, 0);
	cr_assert_eq(stat(s.sock, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	unlink(s.sock);
	apit_cleanup(&s);
}

Test(api, sigterm_stops_server_and_vm, .timeout = 60)
{
	struct apit_srv s;
	char cfg[512];
	int rc;

	apit_need_kvm();
	apit_start(&s);
	apit_halt_config(&s, cfg, sizeof(cfg));
	cr_assert_eq(apit_req(&s, "vm.create", cfg, NULL, 0), 200);
	cr_assert_eq(apit_req(&s, "vm.boot", NULL, NULL, 0), 200);
	kill(s.pid, SIGTERM);
	rc = apit_wait(s.pid, apit_asan() ? 30000 : 10000);
	cr_assert_eq(rc, 0, "exit %d", rc);
	s.pid = 0;
	cr_assert_neq(access(s.sock, F_OK), 0);
	apit_cleanup(&s);
}

/* A VM with a virtio-net device on a TAP: vm.info and vm.counters show the
 * device's own summary and counters (the device's info/counters hooks). */
Test(api, net_device_info_and_counters, .timeout = 60)
{
	struct apit_srv s;
	char cfg[768], out[8192], tap[16], cmd[128];
	const cJSON *net;
	cJSON *j;

	apit_need_kvm();
	snprintf(tap, sizeof(tap), "apit%d", (int)(getpid() % 100000));
	snprintf(cmd, sizeof(cmd), "ip tuntap add dev %s mode tap 2>/dev/null", tap);
	if (system(cmd) != 0)
		cr_skip_test("cannot create a TAP device (need root and /dev/net/tun)");
	apit_start(&s);
	cr_assert(apit_idle_config(&s, out, sizeof(out)));
	/* The idle config, plus a NIC. */
	snprintf(cfg, sizeof(cfg), "%.*s, \"nets\": [{\"tap\": \"%s\", \"mac\": \"52:54:00:12:34:56\"}]}",
		 (int)strlen(out) - 1, out, tap);
	cr_assert_eq(apit_req(&s, "vm.create", cfg, out, sizeof(out)), 200, "%s: %s", cfg, out);
	cr_assert_eq(apit_req(&s, "vm.boot", NULL, out, sizeof(out)), 200, "%s", out);
	j = apit_info(&s, "vm.info");
	net = apit_device(j, "net0");
	cr_assert_not_null(net, "no net0 in vm.info");
	cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(net, "type")->valuestring, "virtio-net");
	cr_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(net, "mac")));
	cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(net, "mac")->valuestring, "52:54:00:12:34:56");
	cJSON_Delete(j);
	j = apit_info(&s, "vm.counters");
	net = apit_device(j, "net0");
	cr_assert_not_null(net, "no net0 in vm.counters");
	cr_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(net, "rx_frames")));
	cr_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(net, "tx_bytes")));
	cJSON_Delete(j);
	apit_shutdown_and_check(&s);
	apit_cleanup(&s);
	snprintf(cmd, sizeof(cmd), "ip link del %s 2>/dev/null", tap);
	cr_assert_eq(system(cmd), 0);
}

/* Random requests (seeded): any method, path, header and body bytes. The VMM
 * answers each with a status or closes the connection, and stays up. */
Test(api, random_requests_do_not_hurt, .timeout = 120)
{
	static const char *const methods[] = { "GET", "PUT", "POST", "HEAD", "OPTIONS", "PATCH", "\x01" };
	static const char *const paths[] = { "/api/v1/vm.create", "/api/v1/vm.boot", "/api/v1/vm.info",
					     "/api/v1/vmm.ping", "/api/v1/vm.add-net", "/%00", "/api/v1/../x",
					     "/api/v1/vm.remove-device" };
	static const char *const bodies[] = { "{\"kernel\": \"/k\", \"cpus\": 2}", "{\"tap\": \"t0\"}",
					      "{\"id\": \"net0\"}", "[[[[[[[[", "{\"a\":{\"b\":[1,2,{}]}}", "" };
	struct apit_srv s;
	unsigned seed = 12345, nr = apit_asan() ? 150 : 300;
	char req[2048], body[600];

	apit_start(&s);
	for (unsigned i = 0; i < nr; i++) {
		size_t blen;
		int n;

		snprintf(body, sizeof(body), "%s", bodies[rand_r(&seed) % 6]);
		blen = strlen(body);
		/* Flip, truncate or splice random bytes into the body. */
		for (unsigned k = rand_r(&seed) % 4; k && blen; k--)
			body[rand_r(&seed) % blen] = (char)(rand_r(&seed) & 0xff);
		if (blen && rand_r(&seed) % 3 == 0)
			blen = rand_r(&seed) % blen;
		n = snprintf(req, sizeof(req), "%s %s HTTP/1.%d\r\nHost: x\r\nConnection: close\r\n"
			     "Content-Length: %zu\r\n\r\n", methods[rand_r(&seed) % 7],
			     paths[rand_r(&seed) % 8], rand_r(&seed) % 2, blen);
		memcpy(req + n, body, blen);
		/* Sometimes lie about the length or cut the request short. */
		size_t len = (size_t)n + blen;
		if (rand_r(&seed) % 5 == 0)
			len = rand_r(&seed) % len;
		unsigned st = apit_raw(&s, req, len, 30);
		cr_assert(st == 0 || (st >= 200 && st < 600), "request %u: status %u", i, st);
	}
	cr_assert_eq(apit_http(&s, "GET", "/api/v1/vmm.ping", NULL), 200);
	apit_shutdown_and_check(&s);
	apit_cleanup(&s);
}

/* `vmm run --config FILE --api-sock PATH`: the same JSON model as vm.create;
 * the API drives the VM but cannot replace it; vm.shutdown ends the process. */
Test(api, run_with_api_sock, .timeout = 60)
{
	struct apit_srv s;
	char cfg[512], path[192], out[4096];
	FILE *f;
	int rc;

	apit_need_kvm();
	apit_start(&s);       /* only for its directory and guest; stop it at once */
	apit_shutdown_and_check(&s);
	apit_halt_config(&s, cfg, sizeof(cfg));
	snprintf(path, sizeof(path), "%s/cfg.json", s.dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(cfg, f);
	fclose(f);
	char *argv[] = { (char *)apit_vmm(), "run", "--config", path, "--api-sock", s.sock, NULL };
	s.pid = apit_spawn(argv, s.log);
	for (int i = 0; i < 4000 && !apit_can_connect(s.sock); i++)
		usleep(5000);
	cr_assert_str_eq(apit_state(&s, out, sizeof(out)), "running");
	cr_assert_eq(apit_req(&s, "vm.pause", NULL, out, sizeof(out)), 200, "%s", out);
	cr_assert_eq(apit_req(&s, "vm.resume", NULL, out, sizeof(out)), 200, "%s", out);
	cr_assert_eq(apit_req(&s, "vm.reboot", NULL, out, sizeof(out)), 409, "%s", out);
	cr_assert(strstr(out, "vmm run"), "%s", out);
	cr_assert_eq(apit_req(&s, "vm.create", cfg, out, sizeof(out)), 409, "%s", out);
	cr_assert_eq(apit_req(&s, "vm.shutdown", NULL, out, sizeof(out)), 200, "%s", out);
	cr_assert(strstr(out, "\"shutdown\""), "%s", out);
	rc = apit_wait(s.pid, apit_asan() ? 30000 : 10000);
	if (rc != 0)
		apit_dump_log(&s);
	cr_assert_eq(rc, 0, "vmm run exited with %d", rc);
	s.pid = 0;
	cr_assert_neq(access(s.sock, F_OK), 0, "socket file left behind");
	apit_cleanup(&s);
}

Test(api, ctl_help_and_errors, .timeout = 30)
{
	char out[8192];
	char *help[] = { (char *)apit_vmm(), "ctl", "--help", NULL };
	char *nosock[] = { (char *)apit_vmm(), "ctl", "--api-sock", "/tmp/vmm-apit-none.sock", "vmm.ping", NULL };
	char *noverb[] = { (char *)apit_vmm(), "ctl", "--api-sock", "/tmp/x.sock", NULL };

	cr_assert_eq(apit_run(help, out, sizeof(out)), 0);
	for (unsigned i = 0; i < API_NR_ACTIONS; i++)
		cr_assert(strstr(out, api_action_get(i)->name), "--help lacks %s", api_action_get(i)->name);
	cr_assert_eq(apit_run(nosock, out, sizeof(out)), 3);
	cr_assert_eq(apit_run(noverb, out, sizeof(out)), 2);
}

static double apit_num(const cJSON *obj, const char *field)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);

	cr_assert(cJSON_IsNumber(v), "%s: not a number", field);
	return v->valuedouble;
}

/* Start the test VF server listening on @path; returns its pid. */
static pid_t apit_vf_server(const char *path)
{
	char *srv = vf_server_path();
	struct stat st;
	pid_t pid;

	if (access(srv, X_OK)) {
		free(srv);
		cr_skip_test("test VF server not built");
	}
	pid = harness_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		execl(srv, srv, "--socket", path, (char *)NULL);
		_exit(127);
	}
	free(srv);
	for (int i = 0; i < 1000 && stat(path, &st); i++)
		usleep(2000);
	cr_assert_eq(stat(path, &st), 0, "the VF server did not listen on %s", path);
	return pid;
}

/* Check vm.info's entry for the vfio-user function: regions with their
 * sizes and mmapped areas, interrupts, and (no vIOMMU) all of guest RAM
 * mapped for DMA at IOVA = GPA. */
static void apit_check_vfio_info(const cJSON *vf, double ram_bytes)
{
	const cJSON *r, *m;
	double bar0 = 0, bar2 = 0, mapped = 0;

	cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(vf, "type")->valuestring, "vfio-pci");
	cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(vf, "backend")->valuestring, "vfio-user");
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(vf, "present")));
	cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(vf, "regions")) {
		const cJSON *areas = cJSON_GetObjectItemCaseSensitive(r, "mmapped");

		if (apit_num(r, "index") == 0) {
			bar0 = apit_num(r, "size");
			cr_expect_eq(cJSON_GetArraySize(areas), 0, "BAR0 registers are trapped");
		} else if (apit_num(r, "index") == 2) {
			bar2 = apit_num(r, "size");
			cr_assert_eq(cJSON_GetArraySize(areas), 1, "BAR2: its one sparse mmap area");
			cr_expect_eq(apit_num(cJSON_GetArrayItem(areas, 0), "offset"), 0);
			cr_expect_eq(apit_num(cJSON_GetArrayItem(areas, 0), "size"), 4096);
		}
	}
	cr_expect_eq(bar0, VFNIC_BAR0_SIZE);
	cr_expect_eq(bar2, VFNIC_BAR2_SIZE);
	const cJSON *msix = cJSON_GetObjectItemCaseSensitive(vf, "msix");
	cr_expect_eq(apit_num(msix, "vectors"), VFNIC_NR_VECTORS);
	cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(msix, "signals")),
		     VFNIC_NR_VECTORS);
	cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
			  cJSON_GetObjectItemCaseSensitive(vf, "intx"), "present")));
	cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(vf, "dma_mappings")) {
		cr_expect_eq(apit_num(m, "iova"), apit_num(m, "gpa"), "identity without a vIOMMU");
		mapped += apit_num(m, "size");
	}
	cr_expect_eq(mapped, ram_bytes, "all guest RAM is mapped for the device");
}

/* A VM with a vfio-user function: vm.info shows its regions, interrupts and
 * DMA mappings; vm.add-device / vm.remove-device get 409 with the reason
 * (through `vmm ctl` too), and the device is untouched by them. */
Test(api, vfio_device_info_and_hotplug_refused, .timeout = 60)
{
	struct apit_srv s;
	char cfg[1024], out[16384], vsock[128], *body;
	pid_t server;
	cJSON *j;

	apit_need_kvm();
	apit_start(&s);
	snprintf(vsock, sizeof(vsock), "%s/vf.sock", s.dir);
	server = apit_vf_server(vsock);
	cr_assert(apit_idle_config(&s, out, sizeof(out)), "test guest image missing");
	snprintf(cfg, sizeof(cfg), "%.*s, \"devices\": [{\"vfio-user\": \"%s\"}]}",
		 (int)strlen(out) - 1, out, vsock);
	cr_assert_eq(apit_req(&s, "vm.create", cfg, out, sizeof(out)), 200, "%s", out);
	cr_assert_eq(apit_req(&s, "vm.boot", NULL, out, sizeof(out)), 200, "%s", out);
	j = apit_info(&s, "vm.info");
	cr_assert_not_null(apit_device(j, "vfio0"), "no vfio0 in vm.info");
	apit_check_vfio_info(apit_device(j, "vfio0"),
			     apit_num(cJSON_GetObjectItemCaseSensitive(j, "config"), "memory_mib") *
				     1048576.0);
	cJSON_Delete(j);

	body = "{\"vfio-user\": \"/run/another.sock\"}";
	cr_assert_eq(apit_req(&s, "vm.add-device", body, out, sizeof(out)), 409, "%s", out);
	cr_expect(strstr(out, "no hotplug controller") && strstr(out, "\\\"devices\\\""), "%s", out);
	cr_assert_eq(apit_ctl(&s, "vm.add-device", body, out, sizeof(out)), 1, "%s", out);
	cr_expect(strstr(out, "vm.add-device: not supported"), "%s", out);
	cr_assert_eq(apit_req(&s, "vm.remove-device", "{\"id\": \"vfio0\"}", out, sizeof(out)), 409,
		     "%s", out);
	cr_expect(strstr(out, "no hotplug controller"), "%s", out);
	cr_assert_eq(apit_req(&s, "vm.add-device", "{\"vfio-user\": 5}", out, sizeof(out)), 400);
	cr_expect(strstr(out, "device.vfio-user"), "%s", out);
	j = apit_info(&s, "vm.info");
	cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(apit_device(j, "vfio0"), "present")),
		  "the device is still there");
	cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(j, "state")->valuestring, "running");
	cJSON_Delete(j);
	apit_shutdown_and_check(&s);
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	unlink(vsock);
	apit_cleanup(&s);
}
