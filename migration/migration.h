/* CLI entry points of the migration subsystem (dispatched by vmm/main.c). */
#ifndef MIGRATION_MIGRATION_H
#define MIGRATION_MIGRATION_H

#include <stdbool.h>

/* `vmm state show DIR|FILE.dtb`: print a snapshot's state tree as text. */
int cli_state(int argc, char **argv);

/* `vmm run --restore DIR [--restore-memory lazy|copy] [--console KIND]
 *  [--tap N=NAME] [--paused-ms MS] [-v]`: restore a snapshot in this process
 * and run it to the end (exit statuses as `vmm run`). cli_run() hands over
 * to it when it sees --restore. */
int cli_run_restore(int argc, char **argv);
bool cli_run_wants_restore(int argc, char **argv);

#endif
