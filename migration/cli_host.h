/* What the two `vmm run` modes that receive a VM instead of booting one
 * share (`run --restore DIR`, migration/cli_state.c, and `run --incoming URL`,
 * migration/migrate_cli.c): one option table, the host-side options
 * (--console, -v), the getopt loop around each mode's own options, and
 * running the VM to its end. */
#ifndef MIGRATION_CLI_HOST_H
#define MIGRATION_CLI_HOST_H

#include <getopt.h>
#include <stdbool.h>

#include "vmm/config.h"

struct vm;

/* The long options of both modes (getopt_long). */
extern const struct option cli_receive_options[];

/* getopt_long values of every option of both modes. */
enum cli_receive_opt {
	CLI_OPT_CONSOLE = 300,
	CLI_OPT_RESTORE,
	CLI_OPT_RESTORE_MEMORY,
	CLI_OPT_TAP,
	CLI_OPT_INCOMING,
	CLI_OPT_API_SOCK,
	CLI_OPT_MEMORY_DIR,
	CLI_OPT_ACCEPT_TIMEOUT,
	CLI_OPT_PREFAULT,
};

struct cli_host {
	bool has_console;            /* --console given: override the VM's console here */
	int console;                 /* enum console_kind */
	const char *console_path;    /* CONSOLE_FILE (owned by console_cfg) */
	int verbosity;               /* -v count */
	struct vm_config console_cfg;
};

/* A mode's own options: 0 taken, 1 not one of this mode's, -1 bad value
 * (the one-line error is printed). */
typedef int (*cli_mode_option_fn)(void *ctx, int opt, const char *arg);

struct cli_mode {
	const char *flag;            /* "restore": the option that selects the mode */
	const char *allowed;         /* "--restore-memory, --console, --tap and -v" */
	cli_mode_option_fn option;
	void *ctx;
};

/* Whether argv holds --@name or --@name=VALUE. */
bool cli_argv_has(int argc, char **argv, const char *name);

void cli_host_init(struct cli_host *h);
void cli_host_free(struct cli_host *h);
/* Parse argv: the shared options into @h, the rest through @m. 0, or -1
 * after printing a usage error (unknown option, one of the other mode's,
 * a bad value, a stray argument). Sets the log level -v asked for. */
int cli_host_parse(struct cli_host *h, const struct cli_mode *m, int argc, char **argv);
/* Run @vm to its end: its exit status, the reason printed if it failed. */
int cli_host_wait(struct vm *vm);

#endif
