#include "test_migrate_util.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "harness.h"

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mt_env_init(struct mt_env *e)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "/tmp/vmm-mig-XXXXXX");
	cr_assert_not_null(mkdtemp(e->dir));
	e->port_base = 20000 + (unsigned)(getpid() * 37u % 20000u);
}

void mt_env_cleanup(struct mt_env *e)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", e->dir);
}

const char *mt_path(struct mt_env *e, char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", e->dir, name);
	return buf;
}

/* Children of this test process, killed by mt_kill_all() (suite .fini) so a
 * failed assertion leaves no vmm behind. Test-process state, not library code. */
static pid_t spawned[64];
static unsigned nr_spawned;

void mt_kill_all(void)
{
	for (unsigned i = 0; i < nr_spawned; i++)
		if (spawned[i] > 0 && kill(spawned[i], SIGKILL) == 0)
			waitpid(spawned[i], NULL, 0);
	nr_spawned = 0;
}

void mt_spawn(struct mt_env *e, struct mt_proc *p, const char *const argv[])
{
	const char *args[40];
	size_t n = 0;
	unsigned id = e->seq++;

	memset(p, 0, sizeof(*p));
	snprintf(p->out, sizeof(p->out), "%s/p%u.out", e->dir, id);
	snprintf(p->err, sizeof(p->err), "%s/p%u.err", e->dir, id);
	args[n++] = harness_vmm_bin();
	for (size_t i = 0; argv[i] && n < 39; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	p->pid = harness_fork();
	cr_assert_geq(p->pid, 0);
	if (p->pid == 0) {
		int o = open(p->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int er = open(p->err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int nul = open("/dev/null", O_RDONLY);

		dup2(o, 1);
		dup2(er, 2);
		dup2(nul, 0);
		execv(args[0], (char *const *)args);
		_exit(127);
	}
	if (nr_spawned < sizeof(spawned) / sizeof(spawned[0]))
		spawned[nr_spawned++] = p->pid;
}

int mt_wait(struct mt_proc *p, int timeout_ms)
{
	long long end = now_ms() + timeout_ms;
	int st;

	if (p->reaped)
		return p->status;
	for (;;) {
		pid_t r = waitpid(p->pid, &st, WNOHANG);

		if (r == p->pid)
			break;
		if (now_ms() > end) {
			kill(p->pid, SIGKILL);
			waitpid(p->pid, &st, 0);
			p->reaped = true;
			p->status = -1;
			return -1;
		}
		usleep(5000);
	}
	p->reaped = true;
	p->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return p->status;
}

bool mt_exited(struct mt_proc *p)
{
	int st;

	if (p->reaped)
		return true;
	if (waitpid(p->pid, &st, WNOHANG) != p->pid)
		return false;
	p->reaped = true;
	p->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return true;
}

void mt_kill(struct mt_proc *p, int sig)
{
	if (!p->reaped && p->pid > 0)
		kill(p->pid, sig);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;

	if (f) {
		FILE *m = open_memstream(&buf, &len);
		int c;

		while ((c = fgetc(f)) != EOF)
			fputc(c, m);
		fclose(m);
		fclose(f);
	}
	return buf ? buf : strdup("");
}

char *mt_out(const struct mt_proc *p)
{
	return slurp(p->out);
}

char *mt_err(const struct mt_proc *p)
{
	return slurp(p->err);
}

int mt_api(const char *sock, const char *method, const char *action, const char *body, cJSON **reply)
{
	struct api_reply rep;
	char path[128], err[256];

	snprintf(path, sizeof(path), "/api/v1/%s", action);
	if (reply)
		*reply = NULL;
	if (api_client_request(sock, method, path, body, body ? strlen(body) : 0, &rep, err, sizeof(err)))
		return -1;
	if (reply)
		*reply = cJSON_Parse(rep.body);
	int status = (int)rep.status;
	api_reply_free(&rep);
	return status;
}

bool mt_api_up(const char *sock, int timeout_ms)
{
	long long end = now_ms() + timeout_ms;

	while (now_ms() < end) {
		if (mt_api(sock, "GET", "vmm.ping", NULL, NULL) == 200)
			return true;
		usleep(10000);
	}
	return false;
}

unsigned mt_seconds(unsigned base)
{
	const char *asan = getenv("VMM_ASAN");

	return asan && *asan && strcmp(asan, "0") ? base * 2 : base;
}

void mt_start_source(struct mt_env *e, struct mt_proc *p, const char *sock, const char *cmdline,
		     unsigned cpus, unsigned memory_mib)
{
	const char *argv[] = { "serve", "--api-sock", sock, NULL };
	char *kernel = harness_image_path("testguest.elf");
	char body[1024];
	cJSON *r;

	mt_spawn(e, p, argv);
	cr_assert(mt_api_up(sock, harness_timeout_ms(5000)), "vmm serve did not come up");
	snprintf(body, sizeof(body),
		 "{\"kernel\":\"%s\",\"cmdline\":\"%s\",\"cpus\":%u,\"memory_mib\":%u}", kernel, cmdline, cpus,
		 memory_mib);
	free(kernel);
	cr_assert_eq(mt_api(sock, "PUT", "vm.create", body, &r), 200);
	cJSON_Delete(r);
	cr_assert_eq(mt_api(sock, "PUT", "vm.boot", NULL, &r), 200);
	cJSON_Delete(r);
}

int mt_send_migration(const char *sock, const char *body)
{
	cJSON *r;
	int st = mt_api(sock, "PUT", "vm.send-migration", body, &r);

	cJSON_Delete(r);
	return st;
}

static cJSON *migration_obj(cJSON *info)
{
	return cJSON_GetObjectItemCaseSensitive(info, "migration");
}

void mt_wait_migration(const char *sock, char *status, size_t slen, char *msg, size_t mlen, int timeout_ms)
{
	long long end = now_ms() + timeout_ms;

	snprintf(status, slen, "timeout");
	msg[0] = '\0';
	while (now_ms() < end) {
		cJSON *info, *m, *st, *ms;

		if (mt_api(sock, "GET", "vm.info", NULL, &info) == 200) {
			m = migration_obj(info);
			st = cJSON_GetObjectItemCaseSensitive(m, "status");
			ms = cJSON_GetObjectItemCaseSensitive(m, "message");
			if (cJSON_IsString(st) && strcmp(st->valuestring, "active")) {
				snprintf(status, slen, "%s", st->valuestring);
				snprintf(msg, mlen, "%s", cJSON_IsString(ms) ? ms->valuestring : "");
				cJSON_Delete(info);
				return;
			}
		}
		cJSON_Delete(info);
		usleep(10000);
	}
}

bool mt_wait_bytes(const char *sock, double bytes, int timeout_ms)
{
	long long end = now_ms() + timeout_ms;

	while (now_ms() < end) {
		cJSON *info = NULL;
		bool ok = false;

		if (mt_api(sock, "GET", "vm.info", NULL, &info) == 200) {
			cJSON *b = cJSON_GetObjectItemCaseSensitive(migration_obj(info), "bytes_sent");
			ok = cJSON_IsNumber(b) && b->valuedouble >= bytes;
		}
		cJSON_Delete(info);
		if (ok)
			return true;
		usleep(2000);
	}
	return false;
}

bool mt_wait_state(const char *sock, const char *state, int timeout_ms)
{
	long long end = now_ms() + timeout_ms;

	while (now_ms() < end) {
		cJSON *info = NULL;
		bool ok = false;

		if (mt_api(sock, "GET", "vm.info", NULL, &info) == 200) {
			cJSON *s = cJSON_GetObjectItemCaseSensitive(info, "state");
			ok = cJSON_IsString(s) && !strcmp(s->valuestring, state);
		}
		cJSON_Delete(info);
		if (ok)
			return true;
		usleep(20000);
	}
	return false;
}

void mt_need_kvm(void)
{
	if (!harness_have_kvm())
		cr_skip_test("/dev/kvm is not available");
}

void mt_expect_pass(struct mt_proc *last, const char *what)
{
	char *out = mt_out(last), *err = mt_err(last);

	cr_assert(strstr(out, "PASS memtest"), "%s: no PASS; stdout:\n%s\nstderr:\n%s", what, out, err);
	free(out);
	free(err);
}

void mt_start_failure_source(struct mt_env *e, struct mt_proc *src, char *sock, size_t len)
{
	char cl[96];

	mt_need_kvm();
	mt_env_init(e);
	mt_path(e, sock, len, "src.sock");
	snprintf(cl, sizeof(cl), "test=memtest seconds=%u " MT_ARGS, mt_seconds(4));
	mt_start_source(e, src, sock, cl, 2, MEM_MIB);
	usleep(200000);
}

/* On a failure: what the source VM was doing (state, migration, console). */
static void source_report(struct mt_proc *src, const char *sock)
{
	cJSON *info = NULL;
	char *json, *out = mt_out(src), *err = mt_err(src);

	mt_api(sock, "GET", "vm.info", NULL, &info);
	json = info ? cJSON_PrintUnformatted(info) : NULL;
	cr_log_error("source vm.info: %s\nstdout:\n%s\nstderr:\n%s", json ? json : "(no answer)", out, err);
	free(json);
	cJSON_Delete(info);
	free(out);
	free(err);
}

void mt_source_survives(struct mt_proc *src, const char *sock, const char *st, const char *msg,
			const char *want_status, const char *want_msg)
{
	cJSON *info, *ex, *status;

	cr_assert_str_eq(st, want_status, "message: %s", msg);
	if (want_msg)
		cr_assert(strstr(msg, want_msg), "want '%s' in '%s'", want_msg, msg);
	/* The guest keeps running at the source and finishes its checks. */
	if (!mt_wait_state(sock, "shutdown", harness_timeout_ms(30000))) {
		source_report(src, sock);
		cr_assert_fail("the source VM did not finish");
	}
	cr_assert_eq(mt_api(sock, "GET", "vm.info", NULL, &info), 200);
	ex = cJSON_GetObjectItemCaseSensitive(info, "exit");
	status = cJSON_GetObjectItemCaseSensitive(ex, "status");
	cr_assert(cJSON_IsNumber(status) && status->valueint == 0, "guest exit status");
	cJSON_Delete(info);
	mt_expect_pass(src, "source after a failed migration");
	mt_api(sock, "PUT", "vmm.shutdown", NULL, NULL);
	mt_wait(src, 5000);
}
