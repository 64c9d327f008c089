/* The VM controller behind the API: runs one action at a time against the VM.
 *
 * Threads: actions run on the HTTP server's thread under ctl->lock. Work that
 * reads or changes device or vCPU state (pause, resume, info, counters) is
 * posted to the VM's event loop with evl_call() and waited for, so it never
 * races the device back ends. Lifecycle calls (vm_create, vm_start, exit
 * requests, vm_destroy) are made from the API thread: they own their locking.
 *
 * Ownership: under `vmm serve` the controller owns the VMs it creates. Once
 * booted, a watcher thread sits in vm_wait_exit() so a guest that powers off
 * by itself is reaped and shows as "shutdown" with its exit status. A VM that
 * has shut down stays for vm.info until vm.create (which destroys it first)
 * or vm.reboot (destroy, re-create from the same config, boot). Under
 * `vmm run --api-sock` the VM belongs to the run code, which waits for its
 * exit itself: the controller never joins, destroys or replaces it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/config_json.h"
#include "api/server_internal.h"
#include "migration/snapshot.h"
#include "vmm/cli.h"
#include "vmm/log.h"
#include "vmm/vm.h"

/* How long vm.shutdown waits for the vCPU threads to stop. */
#define VMCTL_SHUTDOWN_TIMEOUT_S 10

int api_vmctl_init(struct api_vmctl *ctl, struct vm *vm)
{
	memset(ctl, 0, sizeof(*ctl));
	pthread_mutex_init(&ctl->lock, NULL);
	ctl->vm = vm;
	ctl->owns_vm = vm == NULL;
	return 0;
}

static enum api_phase vmctl_phase(const struct api_vmctl *ctl)
{
	struct vm *vm = ctl->vm;
	enum api_phase p;

	if (!vm)
		return API_PHASE_NONE;
	pthread_mutex_lock(&vm->lock);
	if (vm->exit_requested || vm->state == VM_STATE_SHUTDOWN)
		p = API_PHASE_SHUTDOWN;
	else if (vm->state == VM_STATE_CREATED)
		p = API_PHASE_CREATED;
	else if (vm->state == VM_STATE_PAUSED)
		p = API_PHASE_PAUSED;
	else
		p = API_PHASE_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	return p;
}

static void *vmctl_watch(void *arg)
{
	struct vm *vm = arg;
	int status = vm_wait_exit(vm);

	log_info("api", "VM exited with status %d: %s", status, vm->exit_reason);
	return NULL;
}

/* Stop and free an owned VM. */
static void vmctl_release_vm(struct api_vmctl *ctl, const char *why)
{
	if (!ctl->vm || !ctl->owns_vm)
		return;
	vm_request_exit(ctl->vm, 0, "%s", why);
	if (ctl->watcher_started) {
		pthread_join(ctl->watcher, NULL);
		ctl->watcher_started = false;
	}
	vm_destroy(ctl->vm);
	ctl->vm = NULL;
}

static void vmctl_release(struct api_vmctl *ctl, const char *why)
{
	api_migration_release(ctl);
	vmctl_release_vm(ctl, why);
}

void api_vmctl_destroy(struct api_vmctl *ctl)
{
	pthread_mutex_lock(&ctl->lock);
	vmctl_release(ctl, "the VMM is shutting down");
	pthread_mutex_unlock(&ctl->lock);
	pthread_mutex_destroy(&ctl->lock);
}

/* Wait until the VM's threads are gone (state SHUTDOWN), set by whoever sits
 * in vm_wait_exit(): our watcher or `vmm run`. */
static int vmctl_wait_shutdown(struct vm *vm, int timeout_s)
{
	struct timespec deadline;
	int ret = 0;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_s;
	pthread_mutex_lock(&vm->lock);
	while (vm->state != VM_STATE_SHUTDOWN && ret != ETIMEDOUT)
		ret = pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline);
	pthread_mutex_unlock(&vm->lock);
	return vm->state == VM_STATE_SHUTDOWN ? 0 : -ETIMEDOUT;
}

static int vmctl_boot(struct api_vmctl *ctl, struct api_result *r)
{
	struct vm *vm = ctl->vm;
	int ret = vm_start(vm), err;

	if (ret && vmctl_phase(ctl) == API_PHASE_CREATED) {
		api_result_error(r, 500, "vm.boot: cannot start the VM: %s", strerror_safe(-ret));
		return ret;
	}
	/* Started (or half-started and now exiting): someone must reap it. */
	if (ctl->owns_vm) {
		err = pthread_create(&ctl->watcher, NULL, vmctl_watch, vm);
		if (err) {
			vm_request_exit(vm, CLI_EXIT_ERROR, "cannot start the API's VM watcher");
			vm_wait_exit(vm);
			api_result_error(r, 500, "vm.boot: cannot start a thread: %s", strerror_safe(err));
			return -err;
		}
		pthread_setname_np(ctl->watcher, "vmm-api-watch");
		ctl->watcher_started = true;
	}
	if (ret)
		api_result_error(r, 500, "vm.boot: the VM failed to start: %s", vm->exit_reason);
	return ret;
}

int api_vmctl_adopt(struct api_vmctl *ctl, struct vm *vm)
{
	int err;

	vmctl_release_vm(ctl, "replaced by an incoming migration");
	ctl->vm = vm;
	ctl->owns_vm = true;
	err = pthread_create(&ctl->watcher, NULL, vmctl_watch, vm);
	if (err)
		return -err;
	ctl->watcher_started = true;
	return 0;
}

static cJSON *state_reply(struct api_vmctl *ctl)
{
	cJSON *o = cJSON_CreateObject();

	if (o && !cJSON_AddStringToObject(o, "state", api_phase_name(vmctl_phase(ctl)))) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static void act_create(struct api_vmctl *ctl, const cJSON *body, struct api_result *r)
{
	struct vm_config cfg;
	char err[512] = "";
	int ret;

	config_init(&cfg);
	ret = config_from_cjson(&cfg, body, err, sizeof(err));
	if (ret) {
		api_result_error(r, ret == -EINVAL ? 400 : 500, "%s", err);
		goto out;
	}
	vmctl_release(ctl, "replaced by vm.create");
	ret = vm_create(&ctl->vm, &cfg, err, sizeof(err));
	if (ret) {
		ctl->vm = NULL;
		/* Bad files or values the validator cannot see are the client's. */
		api_result_error(r, ret == -ENOMEM || ret == -EIO ? 500 : 400, "vm.create: %s",
				 err[0] ? err : strerror_safe(-ret));
		goto out;
	}
	r->json = state_reply(ctl);
out:
	config_free(&cfg);
}

static void act_reboot(struct api_vmctl *ctl, struct api_result *r)
{
	struct vm_config cfg;
	char err[512] = "";
	int ret = config_copy(&cfg, &ctl->vm->cfg);

	if (ret) {
		api_result_error(r, 500, "vm.reboot: out of memory");
		return;
	}
	vmctl_release(ctl, "reboot requested via the API");
	ret = vm_create(&ctl->vm, &cfg, err, sizeof(err));
	if (ret) {
		ctl->vm = NULL;
		api_result_error(r, 500, "vm.reboot: re-creating the VM failed: %s", err);
	} else if (!vmctl_boot(ctl, r)) {
		r->json = state_reply(ctl);
	}
	config_free(&cfg);
}

static void act_shutdown_vm(struct api_vmctl *ctl, struct api_result *r)
{
	struct vm *vm = ctl->vm;
	bool booted;

	pthread_mutex_lock(&vm->lock);
	booted = vm->state != VM_STATE_CREATED;
	pthread_mutex_unlock(&vm->lock);
	vm_request_exit(vm, 0, "shutdown requested via the API");
	if (!booted && ctl->owns_vm)
		vm_wait_exit(vm);       /* no vCPU threads: returns at once */
	else if (vmctl_wait_shutdown(vm, VMCTL_SHUTDOWN_TIMEOUT_S)) {
		api_result_error(r, 500, "vm.shutdown: the VM did not stop within %d s",
				 VMCTL_SHUTDOWN_TIMEOUT_S);
		return;
	}
	r->json = state_reply(ctl);
}

static int vmctl_pause_fn(void *vm)
{
	return vm_pause(vm);
}

static int vmctl_resume_fn(void *vm)
{
	return vm_resume(vm);
}

static void act_pause_resume(struct api_vmctl *ctl, const struct api_action_desc *a,
			     struct api_result *r)
{
	int ret = evl_call(&ctl->vm->loop, a->action == API_VM_PAUSE ? vmctl_pause_fn : vmctl_resume_fn,
			   ctl->vm);

	/* The guest may have exited between the state check and now. */
	if (ret == -EBUSY || ret == -ESHUTDOWN)
		api_result_error(r, 409, "%s: not allowed now: the VM is %s", a->name,
				 api_phase_name(vmctl_phase(ctl)));
	else if (ret)
		api_result_error(r, 500, "%s: %s", a->name, strerror_safe(-ret));
	else
		r->json = state_reply(ctl);
}

/* --- vm.info and vm.counters, built on the event loop thread -------------- */

struct vmctl_report {
	struct api_vmctl *ctl;
	bool counters;
	cJSON *out;
};

static bool add_u64(cJSON *o, const char *name, uint64_t v)
{
	return cJSON_AddNumberToObject(o, name, (double)v) != NULL;
}

static cJSON *device_entry(struct device *dev, bool counters)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	if (!cJSON_AddStringToObject(o, "name", dev->name) ||
	    !cJSON_AddStringToObject(o, "type", dev->ops->type ? dev->ops->type : "unknown")) {
		cJSON_Delete(o);
		return NULL;
	}
	if (counters && dev->ops->counters)
		dev->ops->counters(dev, o);
	else if (!counters && dev->ops->info)
		dev->ops->info(dev, o);
	return o;
}

static cJSON *vcpu_counters(const struct vcpu *v)
{
	cJSON *o = cJSON_CreateObject();
	bool ok = o != NULL;

	ok = ok && add_u64(o, "id", v->id);
	ok = ok && add_u64(o, "exits", atomic_load(&v->stats.exits));
	ok = ok && add_u64(o, "io", atomic_load(&v->stats.io));
	ok = ok && add_u64(o, "mmio", atomic_load(&v->stats.mmio));
	ok = ok && add_u64(o, "hlt", atomic_load(&v->stats.hlt));
	ok = ok && add_u64(o, "irq_window", atomic_load(&v->stats.irq_window));
	ok = ok && add_u64(o, "intr", atomic_load(&v->stats.intr));
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static bool add_exit(cJSON *o, struct vm *vm)
{
	cJSON *e;
	bool ok;

	pthread_mutex_lock(&vm->lock);
	if (!vm->exit_requested) {
		pthread_mutex_unlock(&vm->lock);
		return true;
	}
	e = cJSON_AddObjectToObject(o, "exit");
	ok = e && cJSON_AddNumberToObject(e, "status", vm->exit_status) &&
	     cJSON_AddStringToObject(e, "reason", vm->exit_reason);
	pthread_mutex_unlock(&vm->lock);
	return ok;
}

static int vmctl_report_fn(void *arg)
{
	struct vmctl_report *rep = arg;
	struct vm *vm = rep->ctl->vm;
	cJSON *o = cJSON_CreateObject(), *arr, *e;
	bool ok = o != NULL;

	ok = ok && cJSON_AddStringToObject(o, "state", api_phase_name(vmctl_phase(rep->ctl)));
	if (!rep->counters) {
		e = config_to_json(&vm->cfg);
		ok = ok && e && cJSON_AddItemToObject(o, "config", e);
		if (!ok)
			cJSON_Delete(e);
		ok = ok && add_u64(o, "uptime_ms", (api_now_ns() - vm->start_ns) / 1000000);
		ok = ok && add_u64(o, "vcpus", vm->nr_vcpus);
		ok = ok && add_exit(o, vm);
		ok = ok && api_migration_info(rep->ctl, o);
	} else {
		arr = ok ? cJSON_AddArrayToObject(o, "vcpus") : NULL;
		for (unsigned i = 0; arr && i < vm->nr_vcpus; i++) {
			e = vcpu_counters(&vm->vcpus[i]);
			if (!e || !cJSON_AddItemToArray(arr, e)) {
				cJSON_Delete(e);
				arr = NULL;
			}
		}
		ok = arr != NULL;
	}
	arr = ok ? cJSON_AddArrayToObject(o, "devices") : NULL;
	for (struct device *dev = vm->devices; arr && dev; dev = dev->next) {
		e = device_entry(dev, rep->counters);
		if (!e || !cJSON_AddItemToArray(arr, e)) {
			cJSON_Delete(e);
			arr = NULL;
		}
	}
	if (!arr) {
		cJSON_Delete(o);
		return -ENOMEM;
	}
	rep->out = o;
	return 0;
}

static void act_report(struct api_vmctl *ctl, bool counters, struct api_result *r)
{
	struct vmctl_report rep = { .ctl = ctl, .counters = counters };

	if (evl_call(&ctl->vm->loop, vmctl_report_fn, &rep))
		api_result_error(r, 500, "%s: out of memory", counters ? "vm.counters" : "vm.info");
	else
		r->json = rep.out;
}

/* --- hotplug: the body is checked, then refused ---------------------------- */

/* Why every hotplug action gets 409: the PCI model (devices/pci.c) is a
 * conventional host bridge whose functions are fixed at vm.create; it has no
 * hotplug controller (no PCIe slot with Hot-Plug Capable, no ACPI _EJ0/GPE
 * hotplug), so a guest could neither find a new function nor release one. */
#define NO_PCI_HOTPLUG "the PCI model has no hotplug controller (functions are fixed at vm.create)"

/* The 409 for a valid hotplug request; @hint says what to do instead. */
static void refuse_hotplug(struct api_vmctl *ctl, const char *action, const char *hint,
			   struct api_result *r)
{
	if (vmctl_phase(ctl) == API_PHASE_NONE)
		api_result_error(r, 409, "%s: there is no VM (use vm.create first)", action);
	else
		api_result_error(r, 409, "%s: not supported: %s%s", action, NO_PCI_HOTPLUG, hint);
}

static void act_add_net(struct api_vmctl *ctl, const cJSON *body, struct api_result *r)
{
	struct net_config net;
	char err[256];

	if (config_net_from_cjson(&net, body, "net", err, sizeof(err))) {
		api_result_error(r, 400, "vm.add-net: %s", err);
		return;
	}
	refuse_hotplug(ctl, "vm.add-net", "; list the device in vm.create's \"nets\"", r);
}

static void act_add_device(struct api_vmctl *ctl, const cJSON *body, struct api_result *r)
{
	struct device_config dev;
	char err[256];
	int ret = config_device_from_cjson(&dev, body, "device", err, sizeof(err));

	if (ret) {
		api_result_error(r, ret == -ENOMEM ? 500 : 400, "vm.add-device: %s",
				 ret == -ENOMEM ? "out of memory" : err);
		return;
	}
	free(dev.path);
	refuse_hotplug(ctl, "vm.add-device", "; list the device in vm.create's \"devices\"", r);
}

static void act_remove_device(struct api_vmctl *ctl, const cJSON *body, struct api_result *r)
{
	const cJSON *m;
	bool has_id = false;

	cJSON_ArrayForEach(m, body) {
		if (strcmp(m->string, "id")) {
			api_result_error(r, 400, "vm.remove-device: %.64s: unknown field", m->string);
			return;
		}
		if (has_id || !cJSON_IsString(m) || !m->valuestring[0]) {
			api_result_error(r, 400, "vm.remove-device: id: expected one device name string");
			return;
		}
		has_id = true;
	}
	if (!has_id) {
		api_result_error(r, 400, "vm.remove-device: id: required (a name from vm.info)");
		return;
	}
	refuse_hotplug(ctl, "vm.remove-device", "", r);
}

/* --- vm.snapshot / vm.restore (migration/snapshot.h) ----------------------- */

/* The body: only @allowed fields; a string field @want is required. */
static const char *body_string(const cJSON *body, const char *action, const char *want,
			       const char *const *allowed, struct api_result *r)
{
	const cJSON *m;

	cJSON_ArrayForEach(m, body) {
		bool ok = false;

		for (const char *const *a = allowed; *a; a++)
			ok |= !strcmp(m->string, *a);
		if (!ok) {
			api_result_error(r, 400, "%s: %.64s: unknown field", action, m->string);
			return NULL;
		}
	}
	m = cJSON_GetObjectItemCaseSensitive(body, want);
	if (!cJSON_IsString(m) || !m->valuestring[0]) {
		api_result_error(r, 400, "%s: %s: required (a directory path)", action, want);
		return NULL;
	}
	return m->valuestring;
}

static void act_snapshot(struct api_vmctl *ctl, const cJSON *body, struct api_result *r)
{
	static const char *const allowed[] = { "destination", NULL };
	struct snapshot_stats st;
	const char *dir = body_string(body, "vm.snapshot", "destination", allowed, r);
	char err[512] = "";
	int ret;

	if (!dir)
		return;
	if (vmctl_phase(ctl) == API_PHASE_RUNNING) {
		ret = evl_call(&ctl->vm->loop, vmctl_pause_fn, ctl->vm);
		if (ret) {
			api_result_error(r, ret == -EBUSY || ret == -ESHUTDOWN ? 409 : 500,
					 "vm.snapshot: cannot pause the VM: %s", strerror_safe(-ret));
			return;
		}
	}
	ret = snapshot_save(ctl->vm, dir, &st, err, sizeof(err));
	if (ret) {
		api_result_error(r, ret == -EOPNOTSUPP ? 409 : 500, "vm.snapshot: %s", err);
		return;
	}
	r->json = state_reply(ctl);
	if (r->json) {
		cJSON_AddStringToObject(r->json, "destination", dir);
		cJSON_AddNumberToObject(r->json, "snapshot_ms", st.total_ns / 1e6);
		cJSON_AddNumberToObject(r->json, "memory_bytes_written", (double)st.memory_bytes_written);
	}
}

static int restore_opts_from_json(const cJSON *body, struct snapshot_restore_opts *o,
				  struct api_result *r)
{
	const cJSON *mem = cJSON_GetObjectItemCaseSensitive(body, "memory");
	const cJSON *taps = cJSON_GetObjectItemCaseSensitive(body, "taps"), *t;
	unsigned i = 0;

	memset(o, 0, sizeof(*o));
	o->memory = SNAPSHOT_MEMORY_LAZY;
	if (mem) {
		if (cJSON_IsString(mem) && !strcmp(mem->valuestring, "lazy")) {
			o->memory = SNAPSHOT_MEMORY_LAZY;
		} else if (cJSON_IsString(mem) && !strcmp(mem->valuestring, "copy")) {
			o->memory = SNAPSHOT_MEMORY_COPY;
		} else {
			api_result_error(r, 400, "vm.restore: memory: expected \"lazy\" or \"copy\"");
			return -EINVAL;
		}
	}
	if (taps && !cJSON_IsArray(taps)) {
		api_result_error(r, 400, "vm.restore: taps: expected an array of TAP names (null keeps one)");
		return -EINVAL;
	}
	cJSON_ArrayForEach(t, taps) {
		if (i >= CONFIG_MAX_NETS || !(cJSON_IsNull(t) || cJSON_IsString(t)) ||
		    (cJSON_IsString(t) && (!t->valuestring[0] || strlen(t->valuestring) >= CONFIG_IFNAME_MAX))) {
			api_result_error(r, 400, "vm.restore: taps[%u]: expected an interface name (1..%d "
					 "characters) or null", i, CONFIG_IFNAME_MAX - 1);
			return -EINVAL;
		}
		if (cJSON_IsString(t)) {
			o->has_tap[i] = true;
			snprintf(o->tap[i], sizeof(o->tap[i]), "%s", t->valuestring);
		}
		i++;
	}
	return 0;
}

static void act_restore(struct api_vmctl *ctl, const cJSON *body, struct api_result *r)
{
	static const char *const allowed[] = { "source", "memory", "taps", NULL };
	struct snapshot_restore_opts o;
	const char *dir = body_string(body, "vm.restore", "source", allowed, r);
	char err[512] = "";
	int ret;

	if (!dir || restore_opts_from_json(body, &o, r))
		return;
	vmctl_release(ctl, "replaced by vm.restore");
	ret = snapshot_restore(&ctl->vm, dir, &o, err, sizeof(err));
	if (ret) {
		ctl->vm = NULL;
		/* A bad or missing snapshot is the client's; running out of resources is ours. */
		api_result_error(r, ret == -ENOMEM ? 500 : 400, "vm.restore: %s", err);
		return;
	}
	/* The vCPU threads exist (parked): the VM needs a reaper like a booted one. */
	ret = pthread_create(&ctl->watcher, NULL, vmctl_watch, ctl->vm);
	if (ret) {
		vm_request_exit(ctl->vm, CLI_EXIT_ERROR, "cannot start the API's VM watcher");
		vm_wait_exit(ctl->vm);
		api_result_error(r, 500, "vm.restore: cannot start a thread: %s", strerror_safe(ret));
		return;
	}
	ctl->watcher_started = true;
	r->json = state_reply(ctl);
}

static void act_ping(struct api_server *srv, struct api_result *r)
{
	cJSON *o = cJSON_CreateObject();
	bool ok = o != NULL;

	ok = ok && cJSON_AddStringToObject(o, "version", VMM_VERSION);
	ok = ok && add_u64(o, "uptime_ms", (api_now_ns() - srv->start_ns) / 1000000);
	ok = ok && add_u64(o, "pid", (uint64_t)getpid());
	ok = ok && cJSON_AddStringToObject(o, "vm", api_phase_name(vmctl_phase(&srv->ctl)));
	if (!ok) {
		cJSON_Delete(o);
		api_result_error(r, 500, "vmm.ping: out of memory");
		return;
	}
	r->json = o;
}

/* vmm.shutdown: stop the VM now; `vmm serve` exits once the reply is sent
 * (server.c signals api_server_shutdown_fd), `vmm run` when its VM exits. */
static void act_vmm_shutdown(struct api_vmctl *ctl, struct api_result *r)
{
	if (ctl->vm)
		vm_request_exit(ctl->vm, 0, "VMM shutdown requested via the API");
	r->json = cJSON_CreateObject();
	if (r->json)
		cJSON_AddStringToObject(r->json, "state", "shutting down");
}

void api_vmctl_run(struct api_server *srv, const struct api_action_desc *a, const cJSON *body,
		   struct api_result *r)
{
	struct api_vmctl *ctl = &srv->ctl;
	char err[256];

	r->status = 200;
	r->json = NULL;
	pthread_mutex_lock(&ctl->lock);
	/* Bodies are checked before the state, so a bad request is always 400. */
	if (a->action == API_VM_ADD_NET) {
		act_add_net(ctl, body, r);
		goto out;
	}
	if (a->action == API_VM_ADD_DEVICE) {
		act_add_device(ctl, body, r);
		goto out;
	}
	if (a->action == API_VM_REMOVE_DEVICE) {
		act_remove_device(ctl, body, r);
		goto out;
	}
	if (api_action_check(a, vmctl_phase(ctl), ctl->owns_vm, err, sizeof(err))) {
		if (a->action == API_VM_CREATE) {
			/* A bad config is still a 400, whatever the state. */
			struct vm_config cfg;
			char cerr[512];

			config_init(&cfg);
			if (config_from_cjson(&cfg, body, cerr, sizeof(cerr)) == -EINVAL) {
				api_result_error(r, 400, "%s", cerr);
				config_free(&cfg);
				goto out;
			}
			config_free(&cfg);
		}
		api_result_error(r, 409, "%s", err);
		goto out;
	}
	if ((a->action == API_VM_PAUSE || a->action == API_VM_RESUME || a->action == API_VM_SNAPSHOT) &&
	    api_migration_busy(ctl)) {
		/* The migration pauses and resumes the VM itself (and hands it over). */
		api_result_error(r, 409, "%s: not allowed now: a migration is in progress (vm.migration-cancel "
				 "stops it)", a->name);
		goto out;
	}
	switch (a->action) {
	case API_VMM_PING:
		act_ping(srv, r);
		break;
	case API_VMM_SHUTDOWN:
		act_vmm_shutdown(ctl, r);
		break;
	case API_VM_CREATE:
		act_create(ctl, body, r);
		break;
	case API_VM_BOOT:
		if (!vmctl_boot(ctl, r))
			r->json = state_reply(ctl);
		break;
	case API_VM_PAUSE:
	case API_VM_RESUME:
		act_pause_resume(ctl, a, r);
		break;
	case API_VM_SHUTDOWN:
		act_shutdown_vm(ctl, r);
		break;
	case API_VM_REBOOT:
		act_reboot(ctl, r);
		break;
	case API_VM_INFO:
	case API_VM_COUNTERS:
		act_report(ctl, a->action == API_VM_COUNTERS, r);
		break;
	case API_VM_SNAPSHOT:
		act_snapshot(ctl, body, r);
		break;
	case API_VM_RESTORE:
		act_restore(ctl, body, r);
		break;
	case API_VM_SEND_MIGRATION:
	case API_VM_RECEIVE_MIGRATION:
	case API_VM_MIGRATION_CANCEL:
		api_migration_action(ctl, a, body, r);
		break;
	case API_VM_ADD_NET:
	case API_VM_ADD_DEVICE:
	case API_VM_REMOVE_DEVICE:
	case API_NR_ACTIONS:
		api_result_error(r, 409, "%s: there is no VM (use vm.create first)", a->name);
		break;
	}
out:
	pthread_mutex_unlock(&ctl->lock);
}
