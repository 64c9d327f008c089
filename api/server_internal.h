/* Shared between the HTTP layer (server.c) and the VM controller (vmctl.c). */
#ifndef API_SERVER_INTERNAL_H
#define API_SERVER_INTERNAL_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/actions.h"
#include "api/api.h"
#include "api/mhd.h"

struct MHD_Daemon;

/* The controller: which VM the API drives and whether it may replace it.
 * Actions run one at a time (ctl_lock); VM work that touches device state
 * runs on the VM's event loop (evl_call). */
struct api_vmctl {
	pthread_mutex_t lock;
	struct vm *vm;
	bool owns_vm;                /* vmm serve: created by vm.create */
	pthread_t watcher;           /* owned and booted: waits for the VM's exit */
	bool watcher_started;
	struct api_migration *mig;   /* api/actions_migration.c; NULL until used */
};

struct api_server {
	struct api_mhd mhd_lib;      /* libmicrohttpd, dlopen()ed */
	struct MHD_Daemon *mhd;
	int listen_fd;
	char *sock_path;
	int shutdown_fd;             /* eventfd, see api_server_shutdown_fd() */
	uint64_t start_ns;
	struct api_vmctl ctl;
};

/* The outcome of one action: an HTTP status and a JSON body. */
struct api_result {
	unsigned status;
	cJSON *json;                 /* success body; NULL -> {} */
	char err[512];               /* error message when status >= 400 */
};

void api_result_error(struct api_result *r, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

int api_vmctl_init(struct api_vmctl *ctl, struct vm *vm);
void api_vmctl_destroy(struct api_vmctl *ctl);
/* Run action @a with the already parsed body (@body may be NULL). */
void api_vmctl_run(struct api_server *srv, const struct api_action_desc *a, const cJSON *body,
		   struct api_result *r);

uint64_t api_now_ns(void);

/* Migration actions (api/actions_migration.c). Called under ctl->lock. */
void api_migration_action(struct api_vmctl *ctl, const struct api_action_desc *a, const cJSON *body,
			  struct api_result *r);
/* Whether an outgoing migration is running: it pauses and resumes the VM
 * itself, so vm.pause/vm.resume/vm.snapshot wait until it has ended. */
bool api_migration_busy(struct api_vmctl *ctl);
/* Add "migration" (progress of the last outgoing migration) to a vm.info reply. */
bool api_migration_info(struct api_vmctl *ctl, cJSON *o);
/* Stop and join any migration thread before the VM goes away (vm.create,
 * vm.reboot, server stop). */
void api_migration_release(struct api_vmctl *ctl);
/* Start the owned-VM watcher (vmctl.c), for a VM that arrived by migration. */
int api_vmctl_adopt(struct api_vmctl *ctl, struct vm *vm);

#endif
