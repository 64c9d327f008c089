#include "api/actions.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define P(x) API_PHASE_BIT(API_PHASE_##x)
#define VM_EXISTS (P(CREATED) | P(RUNNING) | P(PAUSED) | P(SHUTDOWN))

static const struct api_action_desc actions[API_NR_ACTIONS] = {
	[API_VMM_PING] = { API_VMM_PING, "vmm.ping", "GET", API_BODY_NONE, API_PHASES_ANY, false,
			   "VMM version, uptime and pid" },
	[API_VMM_SHUTDOWN] = { API_VMM_SHUTDOWN, "vmm.shutdown", "PUT", API_BODY_NONE, API_PHASES_ANY,
			       false, "stop the VM (if any) and the VMM process" },
	/* After a shutdown the old VM is destroyed and a new one may be created. */
	[API_VM_CREATE] = { API_VM_CREATE, "vm.create", "PUT", API_BODY_REQUIRED,
			    P(NONE) | P(SHUTDOWN), true,
			    "create the VM from a JSON config (kernel loaded, not running)" },
	[API_VM_BOOT] = { API_VM_BOOT, "vm.boot", "PUT", API_BODY_NONE, P(CREATED), false,
			  "start the created VM's vCPUs" },
	[API_VM_PAUSE] = { API_VM_PAUSE, "vm.pause", "PUT", API_BODY_NONE, P(RUNNING), false,
			   "park every vCPU at a clean point" },
	[API_VM_RESUME] = { API_VM_RESUME, "vm.resume", "PUT", API_BODY_NONE, P(PAUSED), false,
			    "let the paused vCPUs run again" },
	[API_VM_SHUTDOWN] = { API_VM_SHUTDOWN, "vm.shutdown", "PUT", API_BODY_NONE,
			      P(CREATED) | P(RUNNING) | P(PAUSED), false,
			      "stop the VM (it stays for vm.info until vm.create or vm.reboot)" },
	[API_VM_REBOOT] = { API_VM_REBOOT, "vm.reboot", "PUT", API_BODY_NONE,
			    P(RUNNING) | P(PAUSED) | P(SHUTDOWN), true,
			    "destroy the VM, re-create it from the same config and boot it" },
	[API_VM_INFO] = { API_VM_INFO, "vm.info", "GET", API_BODY_NONE, VM_EXISTS, false,
			  "config, state, exit status and per-device summary" },
	[API_VM_COUNTERS] = { API_VM_COUNTERS, "vm.counters", "GET", API_BODY_NONE, VM_EXISTS, false,
			      "per-device and per-vCPU counters" },
	[API_VM_ADD_NET] = { API_VM_ADD_NET, "vm.add-net", "PUT", API_BODY_REQUIRED, VM_EXISTS, false,
			     "hot-add a virtio-net device (no PCI hotplug: 409)" },
	[API_VM_ADD_DEVICE] = { API_VM_ADD_DEVICE, "vm.add-device", "PUT", API_BODY_REQUIRED,
				VM_EXISTS, false,
				"hot-add a passed-through PCI function (no PCI hotplug: 409)" },
	[API_VM_REMOVE_DEVICE] = { API_VM_REMOVE_DEVICE, "vm.remove-device", "PUT", API_BODY_REQUIRED,
				   VM_EXISTS, false, "hot-remove a device (no PCI hotplug: 409)" },
	/* migration/snapshot.h: {"destination": DIR}; the VM is left paused. */
	[API_VM_SNAPSHOT] = { API_VM_SNAPSHOT, "vm.snapshot", "PUT", API_BODY_REQUIRED,
			      P(CREATED) | P(RUNNING) | P(PAUSED), false,
			      "pause the VM and write DIR/{state.dtb,config.json,memory}" },
	/* {"source": DIR, "memory": "lazy"|"copy", "taps": [NAME|null, ...]} */
	[API_VM_RESTORE] = { API_VM_RESTORE, "vm.restore", "PUT", API_BODY_REQUIRED,
			     P(NONE) | P(SHUTDOWN), true,
			     "recreate a snapshotted VM, paused (vm.resume runs it)" },
	[API_VM_SEND_MIGRATION] = { API_VM_SEND_MIGRATION, "vm.send-migration", "PUT", API_BODY_REQUIRED,
				    P(RUNNING) | P(PAUSED), false,
				    "live-migrate (or live-update with \"local\") the VM; progress in vm.info" },
	/* Receiving builds the VM, so it needs an empty, API-owned slot. */
	[API_VM_RECEIVE_MIGRATION] = { API_VM_RECEIVE_MIGRATION, "vm.receive-migration", "PUT",
				       API_BODY_REQUIRED, P(NONE) | P(SHUTDOWN), true,
				       "wait for an incoming migration on receiver_url" },
	[API_VM_MIGRATION_CANCEL] = { API_VM_MIGRATION_CANCEL, "vm.migration-cancel", "PUT", API_BODY_NONE,
				      VM_EXISTS, false, "stop an outgoing migration; the VM keeps running" },
};

const struct api_action_desc *api_action_by_name(const char *name)
{
	if (!name)
		return NULL;
	for (unsigned i = 0; i < API_NR_ACTIONS; i++)
		if (!strcmp(actions[i].name, name))
			return &actions[i];
	return NULL;
}

const struct api_action_desc *api_action_get(enum api_action action)
{
	return (unsigned)action < API_NR_ACTIONS ? &actions[action] : NULL;
}

const char *api_phase_name(enum api_phase phase)
{
	static const char *const names[API_NR_PHASES] = {
		[API_PHASE_NONE] = "none",       [API_PHASE_CREATED] = "created",
		[API_PHASE_RUNNING] = "running", [API_PHASE_PAUSED] = "paused",
		[API_PHASE_SHUTDOWN] = "shutdown",
	};

	return (unsigned)phase < API_NR_PHASES ? names[phase] : "unknown";
}

/* Why @a is refused in @phase, in words a user can act on. */
static const char *refusal(const struct api_action_desc *a, enum api_phase phase)
{
	switch (phase) {
	case API_PHASE_NONE:
		return "there is no VM (use vm.create first)";
	case API_PHASE_SHUTDOWN:
		return "the VM has shut down (vm.info tells why; vm.create or vm.reboot starts anew)";
	case API_PHASE_CREATED:
		return "the VM is created but not booted (use vm.boot)";
	case API_PHASE_RUNNING:
		return a->action == API_VM_BOOT ? "the VM is already running" :
		       a->action == API_VM_CREATE ? "a VM exists and is running (vm.shutdown it first)" :
		       "the VM is running";
	case API_PHASE_PAUSED:
		return a->action == API_VM_CREATE ? "a VM exists and is paused (vm.shutdown it first)" :
		       "the VM is paused (use vm.resume)";
	default:
		return "the VM is in an unknown state";
	}
}

int api_action_check(const struct api_action_desc *a, enum api_phase phase, bool owns_vm,
		     char *err, size_t errlen)
{
	if (a->needs_owner && !owns_vm && phase != API_PHASE_NONE) {
		snprintf(err, errlen, "%s: the VM belongs to 'vmm run'; this process cannot replace it",
			 a->name);
		return -EBUSY;
	}
	if ((unsigned)phase >= API_NR_PHASES || !(a->phases & API_PHASE_BIT(phase))) {
		snprintf(err, errlen, "%s: not allowed now: %s", a->name, refusal(a, phase));
		return -EBUSY;
	}
	return 0;
}
