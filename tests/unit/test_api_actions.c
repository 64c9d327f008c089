/* The API's action table and state gating, and the HTTP layer in-process
 * (server and client in one process, no VM: needs no /dev/kvm). */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/actions.h"
#include "api/api.h"

Test(api_actions, table_is_complete_and_consistent)
{
	for (unsigned i = 0; i < API_NR_ACTIONS; i++) {
		const struct api_action_desc *a = api_action_get(i);

		cr_assert_not_null(a);
		cr_assert_eq(a->action, i, "entry %u is out of place", i);
		cr_assert_not_null(a->name);
		cr_assert(!strncmp(a->name, "vm.", 3) || !strncmp(a->name, "vmm.", 4), "%s", a->name);
		cr_assert(!strcmp(a->method, "GET") || !strcmp(a->method, "PUT"), "%s", a->name);
		/* GET must be safe: no bodies, no state changes. */
		if (!strcmp(a->method, "GET"))
			cr_assert_eq(a->body, API_BODY_NONE, "%s", a->name);
		cr_assert_neq(a->phases, 0, "%s is never allowed", a->name);
		cr_assert_eq(api_action_by_name(a->name), a);
		cr_assert_not_null(a->summary);
	}
	cr_assert_null(api_action_get(API_NR_ACTIONS));
	cr_assert_null(api_action_by_name("vm.Boot"));
	cr_assert_null(api_action_by_name(""));
	cr_assert_null(api_action_by_name(NULL));
}

/* The expected gating matrix, written out independently of the table. */
static const struct {
	const char *name;
	const char *allowed;   /* one letter per phase: N C R P S */
} matrix[] = {
	{ "vmm.ping", "NCRPS" },   { "vmm.shutdown", "NCRPS" }, { "vm.create", "N...S" },
	{ "vm.boot", ".C..." },    { "vm.pause", "..R.." },     { "vm.resume", "...P." },
	{ "vm.shutdown", ".CRP." }, { "vm.reboot", "..RPS" },   { "vm.info", ".CRPS" },
	{ "vm.counters", ".CRPS" }, { "vm.add-net", ".CRPS" },  { "vm.remove-device", ".CRPS" },
	{ "vm.add-device", ".CRPS" },
	{ "vm.snapshot", ".CRP." }, { "vm.restore", "N...S" },
	{ "vm.send-migration", "..RP." }, { "vm.receive-migration", "N...S" },
	{ "vm.migration-cancel", ".CRPS" },
};

Test(api_actions, gating_matrix)
{
	char err[256];

	cr_assert_eq(sizeof(matrix) / sizeof(matrix[0]), API_NR_ACTIONS, "a new action needs a matrix row");

	for (size_t i = 0; i < sizeof(matrix) / sizeof(matrix[0]); i++) {
		const struct api_action_desc *a = api_action_by_name(matrix[i].name);

		cr_assert_not_null(a, "%s", matrix[i].name);
		for (unsigned p = 0; p < API_NR_PHASES; p++) {
			bool want = matrix[i].allowed[p] != '.';
			int ret = api_action_check(a, p, true, err, sizeof(err));

			cr_expect_eq(ret == 0, want, "%s in phase %s: got %d", a->name, api_phase_name(p), ret);
			if (ret) {
				cr_expect_eq(ret, -EBUSY);
				cr_expect(strstr(err, a->name) == err, "message should start with the action: %s", err);
			}
		}
	}
}

Test(api_actions, refusal_messages_say_why)
{
	char err[256];

	cr_assert_eq(api_action_check(api_action_by_name("vm.boot"), API_PHASE_RUNNING, true, err,
				      sizeof(err)), -EBUSY);
	cr_assert(strstr(err, "already running"), "%s", err);
	cr_assert_eq(api_action_check(api_action_by_name("vm.pause"), API_PHASE_NONE, true, err,
				      sizeof(err)), -EBUSY);
	cr_assert(strstr(err, "vm.create first"), "%s", err);
	cr_assert_eq(api_action_check(api_action_by_name("vm.resume"), API_PHASE_RUNNING, true, err,
				      sizeof(err)), -EBUSY);
	cr_assert_eq(api_action_check(api_action_by_name("vm.create"), API_PHASE_RUNNING, true, err,
				      sizeof(err)), -EBUSY);
	cr_assert(strstr(err, "vm.shutdown it first"), "%s", err);
}

Test(api_actions, vm_of_vmm_run_is_not_replaced)
{
	char err[256];

	/* Under `vmm run --api-sock` the API drives the VM but cannot replace it. */
	cr_assert_eq(api_action_check(api_action_by_name("vm.reboot"), API_PHASE_RUNNING, false, err,
				      sizeof(err)), -EBUSY);
	cr_assert(strstr(err, "vmm run"), "%s", err);
	cr_assert_eq(api_action_check(api_action_by_name("vm.create"), API_PHASE_SHUTDOWN, false, err,
				      sizeof(err)), -EBUSY);
	cr_assert_eq(api_action_check(api_action_by_name("vm.pause"), API_PHASE_RUNNING, false, err,
				      sizeof(err)), 0);
}

/* --- the HTTP layer in-process, no VM ---------------------------------------- */

struct srv_fixture {
	char dir[64];
	char sock[96];
	struct api_server *srv;
};

static void fixture_start(struct srv_fixture *f)
{
	snprintf(f->dir, sizeof(f->dir), "/tmp/vmm-apiu-XXXXXX");
	cr_assert_not_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/s", f->dir);
	cr_assert_eq(api_server_start(&f->srv, f->sock, NULL), 0);
}

static void fixture_stop(struct srv_fixture *f)
{
	api_server_stop(f->srv);
	cr_assert_neq(access(f->sock, F_OK), 0, "socket left behind");
	rmdir(f->dir);
}

static unsigned call(struct srv_fixture *f, const char *method, const char *path, const char *body,
		     char *out, size_t outlen)
{
	struct api_reply r;
	char err[256];
	unsigned st;

	cr_assert_eq(api_client_request(f->sock, method, path, body, body ? strlen(body) : 0, &r, err,
					sizeof(err)), 0, "%s", err);
	snprintf(out, outlen, "%s", r.body);
	st = r.status;
	api_reply_free(&r);
	return st;
}

Test(api_http, statuses_without_a_vm)
{
	struct srv_fixture f;
	struct stat st;
	char out[1024];
	char *big;

	fixture_start(&f);
	cr_assert_eq(stat(f.sock, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);

	cr_assert_eq(call(&f, "GET", "/api/v1/vmm.ping", NULL, out, sizeof(out)), 200);
	cJSON *j = cJSON_Parse(out);
	cr_assert_not_null(j, "%s", out);
	cr_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "version")));
	cr_assert_eq(cJSON_GetObjectItemCaseSensitive(j, "pid")->valueint, getpid());
	cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "vm")->valuestring, "none");
	cJSON_Delete(j);

	cr_assert_eq(call(&f, "GET", "/api/v1/nothing", NULL, out, sizeof(out)), 404);
	cr_assert(strstr(out, "\"error\""), "%s", out);
	cr_assert_eq(call(&f, "PUT", "/api/v1/vmm.ping", NULL, out, sizeof(out)), 405);
	cr_assert_eq(call(&f, "PUT", "/api/v1/vm.boot", NULL, out, sizeof(out)), 409);
	cr_assert(strstr(out, "vm.create first"), "%s", out);
	cr_assert_eq(call(&f, "PUT", "/api/v1/vm.create", "{\"kernel\": \"/k\", \"cpus\": \"many\"}", out,
			  sizeof(out)), 400);
	cr_assert(strstr(out, "cpus: expected an integer 1..64"), "%s", out);
	cr_assert_eq(call(&f, "PUT", "/api/v1/vm.create", "{\"kernel\":", out, sizeof(out)), 400);
	cr_assert(strstr(out, "malformed JSON"), "%s", out);

	big = malloc(API_MAX_BODY + 2);
	memset(big, ' ', API_MAX_BODY + 1);
	big[API_MAX_BODY + 1] = 0;
	cr_assert_eq(call(&f, "PUT", "/api/v1/vm.create", big, out, sizeof(out)), 413);
	free(big);
	/* Exactly at the limit is accepted (and then judged as JSON). */
	big = malloc(API_MAX_BODY + 1);
	memset(big, ' ', API_MAX_BODY);
	big[0] = '{';
	big[API_MAX_BODY - 1] = '}';
	big[API_MAX_BODY] = 0;
	cr_assert_eq(call(&f, "PUT", "/api/v1/vm.create", big, out, sizeof(out)), 400);
	cr_assert(strstr(out, "kernel"), "%s", out);
	free(big);
	fixture_stop(&f);
}

Test(api_http, busy_socket_is_refused_and_kept)
{
	struct srv_fixture f;
	struct api_server *second;
	char out[256];

	fixture_start(&f);
	cr_assert_eq(api_server_start(&second, f.sock, NULL), -EADDRINUSE);
	cr_assert_eq(call(&f, "GET", "/api/v1/vmm.ping", NULL, out, sizeof(out)), 200);
	fixture_stop(&f);
}

Test(api_http, shutdown_signals_the_fd)
{
	struct srv_fixture f;
	char out[256];
	uint64_t v = 0;

	fixture_start(&f);
	cr_assert_eq(read(api_server_shutdown_fd(f.srv), &v, sizeof(v)), -1);
	cr_assert_eq(call(&f, "PUT", "/api/v1/vmm.shutdown", NULL, out, sizeof(out)), 200);
	/* Signalled once the reply is out; give the server thread a moment. */
	for (int i = 0; i < 200 && read(api_server_shutdown_fd(f.srv), &v, sizeof(v)) != sizeof(v); i++)
		usleep(5000);
	cr_assert_eq(v, 1);
	fixture_stop(&f);
}

/* Hotplug actions: the body is judged first (400 naming the field), a valid
 * one gets 409 with the reason; no VM here, so the reason is the missing VM. */
Test(api_http, hotplug_bodies_checked_then_refused)
{
	static const struct {
		const char *path, *body;
		unsigned status;
		const char *says;
	} cases[] = {
		{ "vm.add-device", "{\"vfio-user\": \"/run/vf0.sock\", \"iommu\": true}", 409,
		  "vm.add-device: there is no VM" },
		{ "vm.add-device", "{\"vfio\": \"0000:03:00.1\"}", 409, "vm.create first" },
		{ "vm.add-device", "{\"vfio\": \"03:00\"}", 400, "device.vfio: expected a PCI address" },
		{ "vm.add-device", "{\"vfio\": \"0000:03:00.1\", \"vfio-user\": \"/s\"}", 400,
		  "exactly one of" },
		{ "vm.add-device", "{\"iommu\": true}", 400, "exactly one of" },
		{ "vm.add-device", "{\"vfio-user\": \"/s\", \"speed\": 1}", 400, "speed" },
		{ "vm.add-device", "[]", 400, "JSON object" },
		{ "vm.add-device", NULL, 400, "" },
		{ "vm.add-net", "{\"tap\": \"tap0\"}", 409, "vm.add-net: there is no VM" },
		{ "vm.remove-device", "{\"id\": \"vfio0\"}", 409, "vm.remove-device: there is no VM" },
	};
	struct srv_fixture f;
	char out[1024], path[64];

	fixture_start(&f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(path, sizeof(path), "/api/v1/%s", cases[i].path);
		cr_expect_eq(call(&f, "PUT", path, cases[i].body, out, sizeof(out)), cases[i].status,
			     "case %zu: %s", i, out);
		cr_expect(strstr(out, cases[i].says), "case %zu: %s", i, out);
	}
	cr_assert_eq(call(&f, "GET", "/api/v1/vm.add-device", NULL, out, sizeof(out)), 405);
	fixture_stop(&f);
}

/* vm.receive-migration judges its body before it listens anywhere. */
Test(api_http, receive_migration_body_checked)
{
	static const struct {
		const char *body, *says;
	} cases[] = {
		{ "{\"receiver_url\": \"unix:/nonexistent/m.sock\", \"prefault\": 1}", "prefault: expected true or false" },
		{ "{\"prefault\": true}", "receiver_url: required" },
		{ "{\"receiver_url\": \"unix:/nonexistent/m.sock\", \"prealloc\": true}", "prealloc: unknown field" },
	};
	struct srv_fixture f;
	char out[1024];

	fixture_start(&f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_expect_eq(call(&f, "PUT", "/api/v1/vm.receive-migration", cases[i].body, out, sizeof(out)), 400,
			     "case %zu: %s", i, out);
		cr_expect(strstr(out, cases[i].says), "case %zu: %s", i, out);
	}
	fixture_stop(&f);
}

/* api/openapi.yaml documents every action with its method. */
Test(api_actions, openapi_matches_the_table)
{
	FILE *f = fopen("api/openapi.yaml", "r");
	char *doc, want[128];
	size_t n;

	if (!f)
		cr_skip_test("api/openapi.yaml not found (run from the source tree)");
	doc = calloc(1, 256 * 1024);
	n = fread(doc, 1, 256 * 1024 - 1, f);
	fclose(f);
	cr_assert_gt(n, 0);
	for (unsigned i = 0; i < API_NR_ACTIONS; i++) {
		const struct api_action_desc *a = api_action_get(i);
		char method[8];

		for (unsigned k = 0; k < sizeof(method) - 1 && a->method[k]; k++)
			method[k] = (char)(a->method[k] | 0x20);
		method[strlen(a->method)] = 0;
		snprintf(want, sizeof(want), "\n  /%s:\n    %s:\n", a->name, method);
		cr_expect(strstr(doc, want) != NULL, "openapi.yaml lacks %s %s", a->method, a->name);
		snprintf(want, sizeof(want), "operationId: %s\n", a->name);
		cr_expect(strstr(doc, want) != NULL, "openapi.yaml lacks operationId %s", a->name);
	}
	free(doc);
}
