/* API actions for live migration: vm.send-migration, vm.receive-migration,
 * vm.migration-cancel, and the "migration" object of vm.info.
 *
 * Outgoing: the migration runs on its own thread (migration/migrate.c); the
 * action returns at once and vm.info shows the progress. After success the
 * source VM exits ("migrated to URL") and shows as shutdown.
 *
 * Incoming (vmm serve with no VM): a thread waits for the source and, once
 * the stream is complete and acked, the VM it built becomes the API's VM. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "api/actions_migration.h"
#include "api/server_internal.h"
#include "migration/migrate.h"
#include "migration/stream.h"
#include "vmm/log.h"
#include "vmm/vm.h"

enum in_status { IN_NONE, IN_WAITING, IN_COMPLETED, IN_FAILED };

struct api_migration {
	struct api_vmctl *ctl;
	struct mig_source *src;
	/* incoming */
	pthread_t in_thread;
	bool in_started;
	atomic_bool releasing;
	atomic_bool final_reported;  /* vm.info has shown a finished outgoing migration */
	int cancel_fd;               /* eventfd: wakes an incoming migration waiting for its source */
	char in_url[MIG_URL_MAX];
	bool in_prefault;
	pthread_mutex_t lock;        /* guards in_status, in_message */
	enum in_status in_status;
	char in_message[512];
};

static struct api_migration *mig_get(struct api_vmctl *ctl)
{
	if (!ctl->mig) {
		struct api_migration *m = calloc(1, sizeof(*m));

		if (!m)
			return NULL;
		m->ctl = ctl;
		m->cancel_fd = eventfd(0, EFD_CLOEXEC);
		if (m->cancel_fd < 0) {
			free(m);
			return NULL;
		}
		pthread_mutex_init(&m->lock, NULL);
		ctl->mig = m;
	}
	return ctl->mig;
}

/* ------------------------------------------------------------ body parsing */

static int get_uint(const cJSON *v, const char *name, unsigned max, unsigned *out, struct api_result *r,
		    const char *action)
{
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > max ||
	    v->valuedouble != (double)(unsigned)v->valuedouble) {
		api_result_error(r, 400, "%s: %s: expected an integer 0..%u", action, name, max);
		return -EINVAL;
	}
	*out = (unsigned)v->valuedouble;
	return 0;
}

static int get_bool(const cJSON *v, const char *name, bool *out, struct api_result *r, const char *action)
{
	if (!cJSON_IsBool(v)) {
		api_result_error(r, 400, "%s: %s: expected true or false", action, name);
		return -EINVAL;
	}
	*out = cJSON_IsTrue(v);
	return 0;
}

static int parse_send(const cJSON *body, struct mig_params *p, struct api_result *r)
{
	const char *act = "vm.send-migration";
	const cJSON *m;
	bool has_url = false;

	memset(p, 0, sizeof(*p));
	cJSON_ArrayForEach(m, body) {
		if (!strcmp(m->string, "destination_url")) {
			if (!cJSON_IsString(m) || !m->valuestring[0] || strlen(m->valuestring) >= sizeof(p->url)) {
				api_result_error(r, 400, "%s: destination_url: expected \"unix:PATH\" or "
					"\"tcp:HOST:PORT\"", act);
				return -EINVAL;
			}
			snprintf(p->url, sizeof(p->url), "%s", m->valuestring);
			has_url = true;
		} else if (!strcmp(m->string, "downtime_ms")) {
			if (get_uint(m, "downtime_ms", 60000, &p->downtime_ms, r, act))
				return -EINVAL;
		} else if (!strcmp(m->string, "connections")) {
			if (get_uint(m, "connections", MIG_MAX_LANES, &p->connections, r, act))
				return -EINVAL;
		} else if (!strcmp(m->string, "max_passes")) {
			if (get_uint(m, "max_passes", 100000, &p->max_passes, r, act))
				return -EINVAL;
		} else if (!strcmp(m->string, "local")) {
			if (get_bool(m, "local", &p->local, r, act))
				return -EINVAL;
		} else {
			api_result_error(r, 400, "%s: %.64s: unknown field", act, m->string);
			return -EINVAL;
		}
	}
	if (!has_url) {
		api_result_error(r, 400, "%s: destination_url: required", act);
		return -EINVAL;
	}
	return 0;
}

/* ------------------------------------------------------------ outgoing */

static void act_send(struct api_vmctl *ctl, const cJSON *body, struct api_result *r)
{
	struct api_migration *m;
	struct mig_params p;
	char err[512] = "";
	int ret;

	if (parse_send(body, &p, r))
		return;
	m = mig_get(ctl);
	if (!m) {
		api_result_error(r, 500, "vm.send-migration: out of memory");
		return;
	}
	if (api_migration_busy(ctl)) {
		api_result_error(r, 409, "vm.send-migration: a migration is already in progress "
			"(vm.migration-cancel stops it)");
		return;
	}
	mig_source_free(m->src);
	m->src = NULL;
	atomic_store(&m->final_reported, false);
	ret = mig_source_start(&m->src, ctl->vm, &p, err, sizeof(err));
	if (ret) {
		api_result_error(r, ret == -EBUSY ? 409 : ret == -EINVAL ? 400 : 500, "vm.send-migration: %s",
				 err[0] ? err : strerror_safe(-ret));
		return;
	}
	r->json = cJSON_CreateObject();
	if (r->json)
		cJSON_AddStringToObject(r->json, "migration", "active");
}

bool api_migration_busy(struct api_vmctl *ctl)
{
	return ctl->mig && ctl->mig->src && !mig_source_done(ctl->mig->src);
}

static void act_cancel(struct api_vmctl *ctl, struct api_result *r)
{
	struct api_migration *m = ctl->mig;
	int ret;

	if (!api_migration_busy(ctl)) {
		api_result_error(r, 409, "vm.migration-cancel: no outgoing migration in progress");
		return;
	}
	ret = mig_source_cancel(m->src);
	if (ret) {
		api_result_error(r, 409, "vm.migration-cancel: too late: the final state has been sent "
			"and the destination may already own the VM");
		return;
	}
	r->json = cJSON_CreateObject();
	if (r->json)
		cJSON_AddStringToObject(r->json, "migration", "cancelling");
}

static bool add_num(cJSON *o, const char *name, uint64_t v)
{
	return cJSON_AddNumberToObject(o, name, (double)v) != NULL;
}

bool api_migration_info(struct api_vmctl *ctl, cJSON *o)
{
	struct api_migration *m = ctl->mig;
	struct mig_progress p;
	cJSON *j;
	bool ok;

	if (!m)
		return true;
	if (m->src) {
		mig_source_progress(m->src, &p);
		j = cJSON_AddObjectToObject(o, "migration");
		ok = j && cJSON_AddStringToObject(j, "status", mig_status_name(p.status));
		ok = ok && cJSON_AddBoolToObject(j, "paused", p.paused);
		ok = ok && add_num(j, "pass", p.pass);
		ok = ok && add_num(j, "bytes_sent", p.bytes_sent);
		ok = ok && add_num(j, "pages_sent", p.pages_sent);
		ok = ok && add_num(j, "zero_pages", p.zero_pages);
		ok = ok && add_num(j, "dirty_rate_pages_per_s", p.dirty_rate_pps);
		ok = ok && add_num(j, "remaining_bytes", p.remaining_bytes);
		ok = ok && add_num(j, "remaining_fresh_bytes", p.remaining_fresh_bytes);
		ok = ok && add_num(j, "bandwidth_bytes_per_s", p.bandwidth_bps);
		ok = ok && add_num(j, "fresh_bandwidth_bytes_per_s", p.fresh_bandwidth_bps);
		ok = ok && add_num(j, "expected_downtime_us", p.expected_downtime_us);
		ok = ok && add_num(j, "downtime_us", p.downtime_us);
		ok = ok && add_num(j, "total_us", p.total_us);
		ok = ok && add_num(j, "stop_vcpus_us", p.stop_vcpus_us);
		ok = ok && add_num(j, "last_pass_us", p.last_pass_us);
		ok = ok && add_num(j, "state_save_us", p.state_save_us);
		ok = ok && add_num(j, "dest_ack_us", p.dest_ack_us);
		ok = ok && add_num(j, "state_bytes", p.state_bytes);
		ok = ok && cJSON_AddStringToObject(j, "message", p.message);
		if (!ok)
			return false;
		if (p.status != MIG_STATUS_ACTIVE)
			atomic_store(&m->final_reported, true);
	}
	pthread_mutex_lock(&m->lock);
	ok = true;
	if (m->in_status != IN_NONE) {
		static const char *const names[] = { "none", "waiting", "completed", "failed" };

		j = cJSON_AddObjectToObject(o, "incoming_migration");
		ok = j && cJSON_AddStringToObject(j, "status", names[m->in_status]) &&
		     cJSON_AddStringToObject(j, "receiver_url", m->in_url) &&
		     cJSON_AddStringToObject(j, "message", m->in_message);
	}
	pthread_mutex_unlock(&m->lock);
	return ok;
}

/* ------------------------------------------------------------ incoming */

static void in_set(struct api_migration *m, enum in_status s, const char *msg)
{
	pthread_mutex_lock(&m->lock);
	m->in_status = s;
	snprintf(m->in_message, sizeof(m->in_message), "%s", msg);
	pthread_mutex_unlock(&m->lock);
}

static void *incoming_thread(void *arg)
{
	struct api_migration *m = arg;
	struct mig_incoming_opts o = { .cancel_fd = m->cancel_fd, .prefault = m->in_prefault };
	char err[512] = "";
	struct vm *vm = NULL;
	int ret = mig_incoming(m->in_url, &o, &vm, NULL, err, sizeof(err));

	if (ret) {
		in_set(m, IN_FAILED, err);
		log_err("api", "%s", err);
		return NULL;
	}
	/* Adopt the VM under the controller lock; a release in progress (which
	 * holds that lock while joining us) wins, and the VM is dropped. */
	while (pthread_mutex_trylock(&m->ctl->lock)) {
		if (atomic_load(&m->releasing)) {
			vm_destroy(vm);
			in_set(m, IN_FAILED, "the VMM dropped the incoming VM while shutting down");
			return NULL;
		}
		usleep(1000);
	}
	ret = api_vmctl_adopt(m->ctl, vm);
	pthread_mutex_unlock(&m->ctl->lock);
	in_set(m, ret ? IN_FAILED : IN_COMPLETED, ret ? "cannot start the VM watcher" : "received");
	return NULL;
}

static void act_receive(struct api_vmctl *ctl, const cJSON *body, struct api_result *r)
{
	const char *act = "vm.receive-migration";
	const cJSON *url = NULL, *f;
	struct api_migration *m;
	bool prefault = false;
	int ret;

	cJSON_ArrayForEach(f, body) {
		if (!strcmp(f->string, "receiver_url")) {
			url = f;
		} else if (!strcmp(f->string, "prefault")) {
			if (get_bool(f, "prefault", &prefault, r, act))
				return;
		} else {
			api_result_error(r, 400, "%s: %.64s: unknown field", act, f->string);
			return;
		}
	}
	if (!url || !cJSON_IsString(url) || !url->valuestring[0] || strlen(url->valuestring) >= MIG_URL_MAX) {
		api_result_error(r, 400, "%s: receiver_url: required, \"unix:PATH\" or \"tcp:HOST:PORT\"", act);
		return;
	}
	m = mig_get(ctl);
	if (!m) {
		api_result_error(r, 500, "%s: out of memory", act);
		return;
	}
	if (m->in_started && m->in_status == IN_WAITING) {
		api_result_error(r, 409, "%s: already waiting on %s", act, m->in_url);
		return;
	}
	if (m->in_started) {
		pthread_join(m->in_thread, NULL);
		m->in_started = false;
	}
	snprintf(m->in_url, sizeof(m->in_url), "%s", url->valuestring);
	m->in_prefault = prefault;
	in_set(m, IN_WAITING, "");
	ret = -pthread_create(&m->in_thread, NULL, incoming_thread, m);
	if (ret) {
		in_set(m, IN_FAILED, "cannot start a thread");
		api_result_error(r, 500, "%s: cannot start a thread: %s", act, strerror_safe(-ret));
		return;
	}
	m->in_started = true;
	r->json = cJSON_CreateObject();
	if (r->json)
		cJSON_AddStringToObject(r->json, "incoming_migration", "waiting");
}

void api_migration_action(struct api_vmctl *ctl, const struct api_action_desc *a, const cJSON *body,
			  struct api_result *r)
{
	switch (a->action) {
	case API_VM_SEND_MIGRATION:
		act_send(ctl, body, r);
		break;
	case API_VM_RECEIVE_MIGRATION:
		act_receive(ctl, body, r);
		break;
	case API_VM_MIGRATION_CANCEL:
		act_cancel(ctl, r);
		break;
	default:
		api_result_error(r, 500, "%s: not a migration action", a->name);
		break;
	}
}

void api_migration_release(struct api_vmctl *ctl)
{
	struct api_migration *m = ctl->mig;
	uint64_t one = 1;

	if (!m)
		return;
	if (m->src) {
		mig_source_cancel(m->src); /* -EBUSY in the commit phase: then it just finishes */
		mig_source_free(m->src);
		m->src = NULL;
	}
	if (m->in_started) {
		atomic_store(&m->releasing, true);
		if (write(m->cancel_fd, &one, sizeof(one)) < 0)
			log_err("api", "cannot wake the incoming migration");
		pthread_join(m->in_thread, NULL);
		m->in_started = false;
	}
	close(m->cancel_fd);
	pthread_mutex_destroy(&m->lock);
	free(m);
	ctl->mig = NULL;
}

bool api_server_migration_reported(struct api_server *srv)
{
	struct api_migration *m = srv ? srv->ctl.mig : NULL;

	return m && atomic_load(&m->final_reported);
}
