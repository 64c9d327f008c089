/* Helpers for the migration integration tests: vmm processes in the
 * background (output to files), API calls, and a memtest source VM. */
#ifndef TESTS_INTEGRATION_MIGRATE_UTIL_H
#define TESTS_INTEGRATION_MIGRATE_UTIL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <sys/types.h>

#define MEM_MIB 64
/* A slow timer keeps memtest's tick-rate check meaningful when the host is
 * loaded by parallel tests (guests run emulated here). */
#define MT_ARGS "cpus=2 period_us=10000"

struct mt_proc {
	pid_t pid;
	char out[160], err[160];
	int status;          /* exit status once reaped; -1 killed/timeout */
	bool reaped;
};

struct mt_env {
	char dir[64];        /* private temp dir */
	unsigned port_base;  /* TCP ports for this test */
	unsigned seq;
};

void mt_env_init(struct mt_env *e);
void mt_env_cleanup(struct mt_env *e);
/* "<dir>/<name>" */
const char *mt_path(struct mt_env *e, char *buf, size_t len, const char *name);

/* Start $VMM_BIN @argv (NULL-terminated, without argv[0]); stdout/stderr go to files. */
void mt_spawn(struct mt_env *e, struct mt_proc *p, const char *const argv[]);
/* Wait up to @timeout_ms; SIGKILL after. Returns the exit status or -1. */
int mt_wait(struct mt_proc *p, int timeout_ms);
/* Has it exited (reaped, status recorded)? Does not wait. */
bool mt_exited(struct mt_proc *p);
void mt_kill(struct mt_proc *p, int sig);
/* SIGKILL every process mt_spawn() started in this test (suite .fini). */
void mt_kill_all(void);
/* The process's stdout / stderr (malloc'd, NUL-terminated). */
char *mt_out(const struct mt_proc *p);
char *mt_err(const struct mt_proc *p);

/* One API request; returns the HTTP status (or -1) and the parsed reply in *@reply. */
int mt_api(const char *sock, const char *method, const char *action, const char *body, cJSON **reply);
/* Wait until the API socket answers vmm.ping. */
bool mt_api_up(const char *sock, int timeout_ms);
/* `vmm serve` + vm.create + vm.boot of the test guest with @cmdline. */
void mt_start_source(struct mt_env *e, struct mt_proc *p, const char *sock, const char *cmdline,
		     unsigned cpus, unsigned memory_mib);
/* PUT vm.send-migration with @body_fmt; returns the HTTP status. */
int mt_send_migration(const char *sock, const char *body);
/* Poll vm.info until migration.status is not "active"; copies status and message. */
void mt_wait_migration(const char *sock, char *status, size_t slen, char *msg, size_t mlen, int timeout_ms);
/* Poll vm.info until migration.bytes_sent >= @bytes (and status active). */
bool mt_wait_bytes(const char *sock, double bytes, int timeout_ms);
/* Poll vm.info until the VM's state is @state. */
bool mt_wait_state(const char *sock, const char *state, int timeout_ms);
/* memtest seconds, stretched for sanitizer builds. */
unsigned mt_seconds(unsigned base);

/* Skip the test without /dev/kvm. */
void mt_need_kvm(void);
/* The guest's PASS line, from whichever process ran it last. */
void mt_expect_pass(struct mt_proc *last, const char *what);
/* A fresh env and a `vmm serve` source at "<dir>/src.sock" running memtest
 * (2 vCPUs, MEM_MIB, about 4 s of checks). */
void mt_start_failure_source(struct mt_env *e, struct mt_proc *src, char *sock, size_t len);
/* The migration ended with @want_status (and @want_msg in its message, if
 * given); the guest keeps running at the source, finishes with PASS, and the
 * source is shut down. */
void mt_source_survives(struct mt_proc *src, const char *sock, const char *st, const char *msg,
			const char *want_status, const char *want_msg);

#endif
