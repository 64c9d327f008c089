/* Integration-test harness: run the vmm binary as a child process with a
 * timeout and capture what it prints.
 *
 * Environment: VMM_BIN (default build/vmm), VMM_IMAGES (default
 * build/images), VMM_ASAN=1 stretches timeouts for the sanitized binary. */
#ifndef TESTS_INTEGRATION_HARNESS_H
#define TESTS_INTEGRATION_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct run_result {
	int exit_status;     /* exit code; -1 if killed by a signal or the timeout */
	int term_signal;     /* signal that ended the child, 0 if it exited */
	bool timed_out;      /* we killed it after the timeout */
	char *out;           /* stdout, NUL-terminated (never NULL after a run) */
	size_t out_len;
	char *err;           /* stderr, NUL-terminated */
	size_t err_len;
};

#define HARNESS_DEFAULT_TIMEOUT_MS 20000

const char *harness_vmm_bin(void);
const char *harness_images_dir(void);
/* "$VMM_IMAGES/<name>" in a static-free, caller-freed string. */
char *harness_image_path(const char *name);
bool harness_have_kvm(void);
/* Timeout scaled for sanitizer builds. */
int harness_timeout_ms(int base_ms);
/* Run a shell command (printf-style) for a test's setup (ip netns, ip link,
 * ...); returns its exit status, -1 if it did not exit normally. */
int harness_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Join network namespace @name (made by `ip netns add`): 0, or -1. */
int harness_join_netns(const char *name);
/* A private mount namespace with /sys remounted, so sysfs shows the joined
 * network namespace's interfaces (as `ip netns exec` does): 0, or -1. */
int harness_private_sysfs(void);

/* fork() for every process a test starts (a vmm, a test device server):
 * the child gets SIGKILL when the test process dies (PR_SET_PDEATHSIG), so
 * a test killed by its timeout or a crash leaves no orphan behind to hold
 * TAPs, sockets or CPU for later tests. The signal comes when the thread
 * that forked exits: fork from the test's own thread. */
pid_t harness_fork(void);

/* Run $VMM_BIN with @argv (NULL-terminated, without argv[0]). The child is
 * killed (SIGKILL) after @timeout_ms. Returns 0 when the child ran (look at
 * @r for how it ended) or -errno if it could not be started. */
int harness_run(const char *const argv[], int timeout_ms, struct run_result *r);

/* Options for harness_run_opts(). stop_at_ms > 0 freezes the whole vmm
 * process (SIGSTOP) that long after the start, for stop_for_ms, then resumes
 * it (SIGCONT): a guest-visible pause without any VMM help. */
struct run_opts {
	int timeout_ms;
	int stop_at_ms;
	int stop_for_ms;
	/* When set: written to the vmm's stdin once stdout contains
	 * stdin_after, then stdin is closed. Otherwise stdin is /dev/null. */
	const char *stdin_data;
	const char *stdin_after;
};
int harness_run_opts(const char *const argv[], const struct run_opts *opts, struct run_result *r);

/* Boot the test guest: "run --kernel $VMM_IMAGES/testguest.elf
 * [--cmdline @cmdline] @extra...". @cmdline may be NULL, @extra may be NULL. */
int harness_run_guest(const char *cmdline, const char *const extra[], int timeout_ms,
		      struct run_result *r);

/* Number of lines in @s (a trailing newline does not start a new line). */
size_t harness_count_lines(const char *s);

void harness_result_free(struct run_result *r);

#endif
