/* Child-process runner for the integration tests. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 64
#define CAPTURE_LIMIT (16u << 20)   /* a runaway guest must not eat the test's memory */

struct capture {
	char *buf;
	size_t len, cap;
};

const char *harness_vmm_bin(void)
{
	const char *v = getenv("VMM_BIN");

	return v && *v ? v : "build/vmm";
}

const char *harness_images_dir(void)
{
	const char *v = getenv("VMM_IMAGES");

	return v && *v ? v : "build/images";
}

char *harness_image_path(const char *name)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s", harness_images_dir(), name) < 0)
		return NULL;
	return p;
}

bool harness_have_kvm(void)
{
	return access("/dev/kvm", R_OK | W_OK) == 0;
}

int harness_timeout_ms(int base_ms)
{
	const char *asan = getenv("VMM_ASAN");

	return asan && *asan && strcmp(asan, "0") != 0 ? base_ms * 3 : base_ms;
}

int harness_sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
}

int harness_join_netns(const char *name)
{
	char path[128];
	int fd, ret;

	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ret = setns(fd, CLONE_NEWNET) ? -1 : 0;
	close(fd);
	return ret;
}

int harness_private_sysfs(void)
{
	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) ||
	    umount2("/sys", MNT_DETACH) || mount("sysfs", "/sys", "sysfs", 0, NULL))
		return -1;
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read what is available; returns false at EOF or on error. */
static bool capture_read(int fd, struct capture *c)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof(tmp));

	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	if (n == 0)
		return false;
	if (c->len + (size_t)n + 1 > c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 8192;
		while (cap < c->len + (size_t)n + 1)
			cap *= 2;
		if (cap > CAPTURE_LIMIT)
			return true;   /* drop the excess, keep draining */
		char *nb = realloc(c->buf, cap);
		if (!nb)
			return true;
		c->buf = nb;
		c->cap = cap;
	}
	memcpy(c->buf + c->len, tmp, (size_t)n);
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	return true;
}

static char *capture_take(struct capture *c, size_t *len)
{
	if (!c->buf)
		c->buf = calloc(1, 1);
	*len = c->len;
	return c->buf;
}

pid_t harness_fork(void)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* The test may have died before prctl(): then no signal comes. */
		if (getppid() != parent)
			_exit(127);
	}
	return pid;
}

static pid_t spawn(const char *const argv[], int out_fd, int err_fd, int in_fd)
{
	const char *args[MAX_ARGS + 2];
	size_t n = 0;

	args[n++] = harness_vmm_bin();
	for (size_t i = 0; argv && argv[i] && n < MAX_ARGS + 1; i++)
		args[n++] = argv[i];
	args[n] = NULL;

	pid_t pid = harness_fork();
	if (pid != 0)
		return pid;
	/* child */
	dup2(out_fd, STDOUT_FILENO);
	dup2(err_fd, STDERR_FILENO);
	int devnull = in_fd >= 0 ? in_fd : open("/dev/null", O_RDONLY);
	if (devnull >= 0)
		dup2(devnull, STDIN_FILENO);
	execv(args[0], (char *const *)args);
	/* Only async-signal-safe calls between fork and exec (the test runner
	 * may have threads). */
	static const char msg[] = "harness: cannot exec the vmm binary (VMM_BIN)\n";
	ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)w;
	_exit(127);
}

/* SIGSTOP/SIGCONT the child on schedule; returns ms until the next event. */
static long long pause_step(pid_t pid, const struct run_opts *o, long long start, int *state)
{
	long long now = now_ms();

	if (o->stop_at_ms <= 0 || *state == 2)
		return 1000;
	if (*state == 0) {
		if (now < start + o->stop_at_ms)
			return start + o->stop_at_ms - now;
		kill(pid, SIGSTOP);
		*state = 1;
	}
	long long resume = start + o->stop_at_ms + o->stop_for_ms;
	if (now < resume)
		return resume - now;
	kill(pid, SIGCONT);
	*state = 2;
	return 1000;
}

/* Feed o->stdin_data once stdout shows o->stdin_after, then close stdin. */
static void feed_stdin(int *in_wr, const struct run_opts *o, const struct capture *out)
{
	size_t len, done = 0;

	if (*in_wr < 0 || !out->buf || !strstr(out->buf, o->stdin_after))
		return;
	len = strlen(o->stdin_data);
	while (done < len) {
		ssize_t n = write(*in_wr, o->stdin_data + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(*in_wr);
	*in_wr = -1;
}

static void collect(int out_rd, int err_rd, int *in_wr, pid_t pid, const struct run_opts *o,
		    struct run_result *r, struct capture *out, struct capture *err)
{
	long long start = now_ms();
	long long deadline = start + o->timeout_ms;
	bool out_open = true, err_open = true;
	int pause_state = 0;

	while (out_open || err_open) {
		long long left = deadline - now_ms();
		if (left <= 0) {
			kill(pid, SIGKILL);
			r->timed_out = true;
			break;
		}
		long long next = pause_step(pid, o, start, &pause_state);
		if (next < left)
			left = next > 0 ? next : 1;
		struct pollfd p[2] = { { out_open ? out_rd : -1, POLLIN, 0 },
				       { err_open ? err_rd : -1, POLLIN, 0 } };
		int n = poll(p, 2, (int)(left > 1000 ? 1000 : left));
		if (n == 0)
			continue;
		if (n < 0 && errno != EINTR)
			break;
		if (out_open && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			out_open = capture_read(out_rd, out);
			feed_stdin(in_wr, o, out);
		}
		if (err_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
			err_open = capture_read(err_rd, err);
	}
}

int harness_run(const char *const argv[], int timeout_ms, struct run_result *r)
{
	struct run_opts o = { .timeout_ms = timeout_ms };

	return harness_run_opts(argv, &o, r);
}

int harness_run_opts(const char *const argv[], const struct run_opts *opts, struct run_result *r)
{
	int out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 }, in_pipe[2] = { -1, -1 };
	struct capture out = { 0 }, err = { 0 };
	int status = 0;

	memset(r, 0, sizeof(*r));
	r->exit_status = -1;
	if (pipe2(out_pipe, O_CLOEXEC) || pipe2(err_pipe, O_CLOEXEC))
		goto fail_errno;
	if (opts->stdin_data && pipe2(in_pipe, O_CLOEXEC))
		goto fail_errno;

	pid_t pid = spawn(argv, out_pipe[1], err_pipe[1], in_pipe[0]);
	if (pid < 0)
		goto fail_errno;
	close(out_pipe[1]);
	close(err_pipe[1]);
	out_pipe[1] = err_pipe[1] = -1;
	if (in_pipe[0] >= 0)
		close(in_pipe[0]);

	collect(out_pipe[0], err_pipe[0], &in_pipe[1], pid, opts, r, &out, &err);
	if (in_pipe[1] >= 0)
		close(in_pipe[1]);
	if (r->timed_out) {
		/* Drain what is left so the output up to the kill is kept. */
		while (capture_read(out_pipe[0], &out))
			;
		while (capture_read(err_pipe[0], &err))
			;
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	close(out_pipe[0]);
	close(err_pipe[0]);

	if (WIFEXITED(status) && !r->timed_out)
		r->exit_status = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		r->term_signal = WTERMSIG(status);
	r->out = capture_take(&out, &r->out_len);
	r->err = capture_take(&err, &r->err_len);
	return 0;

fail_errno:;
	int e = errno;
	for (int i = 0; i < 2; i++) {
		if (out_pipe[i] >= 0)
			close(out_pipe[i]);
		if (err_pipe[i] >= 0)
			close(err_pipe[i]);
		if (in_pipe[i] >= 0)
			close(in_pipe[i]);
	}
	r->out = calloc(1, 1);
	r->err = calloc(1, 1);
	return -e;
}

int harness_run_guest(const char *cmdline, const char *const extra[], int timeout_ms,
		      struct run_result *r)
{
	const char *argv[MAX_ARGS + 1];
	char *kernel = harness_image_path("testguest.elf");
	size_t n = 0;
	int ret;

	if (!kernel)
		return -ENOMEM;
	argv[n++] = "run";
	argv[n++] = "--kernel";
	argv[n++] = kernel;
	if (cmdline) {
		argv[n++] = "--cmdline";
		argv[n++] = cmdline;
	}
	for (size_t i = 0; extra && extra[i] && n < MAX_ARGS; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	ret = harness_run(argv, timeout_ms, r);
	free(kernel);
	return ret;
}

size_t harness_count_lines(const char *s)
{
	size_t n = 0;

	for (const char *p = s; p && *p; p++)
		if (*p == '\n' || p[1] == '\0')
			n++;
	return n;
}

void harness_result_free(struct run_result *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}
