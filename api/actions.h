/* The closed set of API actions: one per endpoint /api/v1/NAME, each with its
 * HTTP method, whether it takes a body, and the VM phases it is allowed in.
 * Shared by the server (routing, state gating) and the client (`vmm ctl`
 * verbs), so the two cannot disagree. Pure data and functions: unit-tested. */
#ifndef API_ACTIONS_H
#define API_ACTIONS_H

#include <stdbool.h>
#include <stddef.h>

#define API_PATH_PREFIX "/api/v1/"
/* Request bodies larger than this get 413 (a VM config is a few hundred bytes). */
#define API_MAX_BODY (64 * 1024)

enum api_action {
	API_VMM_PING,
	API_VMM_SHUTDOWN,
	API_VM_CREATE,
	API_VM_BOOT,
	API_VM_PAUSE,
	API_VM_RESUME,
	API_VM_SHUTDOWN,
	API_VM_REBOOT,
	API_VM_INFO,
	API_VM_COUNTERS,
	API_VM_ADD_NET,
	API_VM_ADD_DEVICE,
	API_VM_REMOVE_DEVICE,
	API_VM_SNAPSHOT,
	API_VM_RESTORE,
	API_VM_SEND_MIGRATION,       /* api/actions_migration.c */
	API_VM_RECEIVE_MIGRATION,
	API_VM_MIGRATION_CANCEL,
	API_NR_ACTIONS
};

/* The VM as the API sees it: no VM yet, or a vm_state. A VM whose exit has
 * been requested (guest power-off, debug-exit, vm.shutdown) counts as SHUTDOWN. */
enum api_phase {
	API_PHASE_NONE,
	API_PHASE_CREATED,
	API_PHASE_RUNNING,
	API_PHASE_PAUSED,
	API_PHASE_SHUTDOWN,
	API_NR_PHASES
};

enum api_body {
	API_BODY_NONE,       /* empty, or an empty JSON object */
	API_BODY_REQUIRED,   /* a JSON object */
};

#define API_PHASE_BIT(p) (1u << (p))
#define API_PHASES_ANY   ((1u << API_NR_PHASES) - 1)

struct api_action_desc {
	enum api_action action;
	const char *name;          /* "vm.boot": the path after /api/v1/ and the ctl verb */
	const char *method;        /* "GET" or "PUT" */
	enum api_body body;
	unsigned phases;           /* API_PHASE_BIT()s where the action is allowed */
	bool needs_owner;          /* replaces the VM: only when the API created it (vmm serve) */
	const char *summary;       /* for `vmm ctl --help` and openapi.yaml */
};

const struct api_action_desc *api_action_by_name(const char *name);
const struct api_action_desc *api_action_get(enum api_action action);
const char *api_phase_name(enum api_phase phase);

/* May @a run now? 0 if so; otherwise -EBUSY with a one-line reason in @err
 * (the 409 body), e.g. "vm.boot: the VM is already running". @owns_vm is
 * false when the VM belongs to `vmm run` (the API may not replace it). */
int api_action_check(const struct api_action_desc *a, enum api_phase phase, bool owns_vm,
		     char *err, size_t errlen);

#endif
