/* CLI verbs. Each takes argv with argv[0] = the verb and returns the process
 * exit status. */
#ifndef VMM_CLI_H
#define VMM_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "vmm/config.h"

#define VMM_VERSION "0.1.0"

/* Exit statuses of the vmm process besides the guest's own debug-exit value. */
#define CLI_EXIT_USAGE 2        /* bad flags */
#define CLI_EXIT_ERROR 125      /* the VMM could not create or run the VM */

int cli_run(int argc, char **argv);
/* `vmm run --help`; every long option of cli_run_options and
 * cli_receive_options (the --restore/--incoming modes) is in it. */
void cli_run_usage(FILE *f);
extern const struct option cli_run_options[];

/* Parse a non-negative integer option strictly ("12", not "12x"); -EINVAL otherwise. */
int cli_parse_u64(const char *s, unsigned long long max, unsigned long long *out);
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
