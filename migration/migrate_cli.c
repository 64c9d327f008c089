/* CLI of live migration:
 *   vmm run --incoming URL [--api-sock PATH] [--console KIND] [--memory-dir DIR] [--prefault]
 *           [--accept-timeout-ms N] [-v]
 *       receive a VM and run it to the end (exit statuses as `vmm run`);
 *       with --api-sock it can be migrated on again.
 *   vmm migrate --api-sock PATH URL [--downtime-ms N] [--connections N] [--local] [--no-wait]
 *       ask a VMM to migrate its VM (vm.send-migration) and follow vm.info:
 *       a progress bar on a terminal, one line per change otherwise. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api/actions_migration.h"
#include "api/api.h"
#include "migration/cli_host.h"
#include "migration/migrate.h"
#include "vmm/cli.h"
#include "vmm/config.h"
#include "vmm/log.h"
#include "vmm/vm.h"

/* How long a VMM whose VM migrated away keeps its API up for the final status. */
#define MIG_LINGER_MS 3000
#define MIG_LINGER_FLUSH_MS 200

bool cli_run_wants_incoming(int argc, char **argv)
{
	return cli_argv_has(argc, argv, "incoming");
}

struct incoming_args {
	struct mig_incoming_opts o;
	const char *url, *sock;
};

/* One option of `run --incoming` besides the shared ones (cli_mode_option_fn). */
static int incoming_option(void *ctx, int opt, const char *arg)
{
	struct incoming_args *a = ctx;
	unsigned long long v;

	switch (opt) {
	case CLI_OPT_INCOMING:
		a->url = arg;
		return 0;
	case CLI_OPT_API_SOCK:
		a->sock = arg;
		return 0;
	case CLI_OPT_MEMORY_DIR:
		a->o.memory_dir = arg;
		return 0;
	case CLI_OPT_PREFAULT:
		a->o.prefault = true;
		return 0;
	case CLI_OPT_ACCEPT_TIMEOUT:
		if (!cli_parse_u64(arg, 86400000, &v)) {
			a->o.accept_timeout_ms = (int)v;
			return 0;
		}
		cli_error("--accept-timeout-ms: '%s' is not a number of milliseconds", arg);
		return -1;
	default:
		return 1;
	}
}

static void report_incoming(const struct mig_incoming_stats *s)
{
	if (!getenv("VMM_REPORT_MIGRATION"))
		return;
	fprintf(stderr, "vmm-stats: incoming total_us=%llu pages=%llu zero_pages=%llu bytes=%llu "
		"state_bytes=%llu local=%d\n", (unsigned long long)s->total_us, (unsigned long long)s->pages,
		(unsigned long long)s->zero_pages, (unsigned long long)s->bytes_received,
		(unsigned long long)s->state_bytes, s->local);
}

int cli_run_incoming(int argc, char **argv)
{
	struct incoming_args a = { .url = NULL };
	const struct cli_mode mode = { .flag = "incoming",
				       .allowed = "--api-sock, --console, --memory-dir, --prefault, --accept-timeout-ms and -v",
				       .option = incoming_option, .ctx = &a };
	struct mig_incoming_opts *o = &a.o;
	struct mig_incoming_stats stats;
	struct api_server *srv = NULL;
	struct cli_host h;
	char err[768] = "";
	int status;
	struct vm *vm;

	cli_host_init(&h);
	if (cli_host_parse(&h, &mode, argc, argv))
		goto usage;
	if (!a.url) {
		cli_error("run --incoming: a URL to listen on is needed");
		goto usage;
	}
	o->has_console = h.has_console;
	o->console = h.console;
	o->console_path = h.console_path;
	if (mig_incoming(a.url, o, &vm, &stats, err, sizeof(err))) {
		report_incoming(&stats);
		/* The guest never ran here: nothing half-received is started. */
		cli_error("%s", err);
		cli_host_free(&h);
		return CLI_EXIT_ERROR;
	}
	report_incoming(&stats);
	if (a.sock && api_server_start(&srv, a.sock, vm))
		cli_error("cannot serve the API on %s; the VM runs without it", a.sock);
	status = cli_host_wait(vm);
	/* Moved on: let the API client that asked see "completed" before we go. */
	if (srv && !strncmp(vm->exit_reason, "migrated to", 11)) {
		for (int i = 0; i < MIG_LINGER_MS / 5 && !api_server_migration_reported(srv); i++)
			usleep(5000);
		/* The flag is set while the reply is built: give it time to leave. */
		usleep(MIG_LINGER_FLUSH_MS * 1000);
	}
	api_server_stop(srv); /* joins an outgoing migration before the VM goes */
	vm_destroy(vm);
	cli_host_free(&h);
	return status;
usage:
	cli_host_free(&h);
	return CLI_EXIT_USAGE;
}

/* ------------------------------------------------------------ vmm migrate */

static void migrate_usage(FILE *f)
{
	fprintf(f, "usage: vmm migrate --api-sock PATH URL [--downtime-ms N] [--connections N] [--local]\n"
		   "                   [--max-passes N] [--no-wait]\n\n"
		   "Live-migrate the VM of the VMM at PATH to URL (unix:PATH or tcp:HOST:PORT, where\n"
		   "'vmm run --incoming URL' waits), and follow its progress until it ends.\n"
		   "--local hands the memory and the TAP queues over by fd to a vmm on this host\n"
		   "(live update).\n\n"
		   "Exit status: 0 migrated, 1 failed or cancelled (the reason is printed; the VM\n"
		   "keeps running at the source, or stays paused there if the hand-over was\n"
		   "committed but not confirmed), 2 bad usage, 3 the VMM cannot be reached.\n");
}

static const struct option migrate_options[] = {
	{ "api-sock", required_argument, NULL, 'a' },
	{ "downtime-ms", required_argument, NULL, 'd' },
	{ "connections", required_argument, NULL, 'c' },
	{ "max-passes", required_argument, NULL, 'p' },
	{ "local", no_argument, NULL, 'l' },
	{ "no-wait", no_argument, NULL, 'n' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static double num(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void show_progress(const cJSON *m, bool tty, double ram)
{
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(m, "status");
	double sent = num(m, "bytes_sent"), frac = ram > 0 ? sent / ram : 0;
	int width = 30, filled;

	if (frac > 1)
		frac = 1;
	filled = (int)(frac * width);
	if (tty) {
		fprintf(stderr, "\r[%.*s%*s] pass %.0f  %.1f MiB sent  %.0f MiB/s  dirty %.0f pages/s  "
			"remaining %.1f MiB  expected downtime %.1f ms  %s   ",
			filled, "##############################", width - filled, "", num(m, "pass"),
			sent / 1048576, num(m, "bandwidth_bytes_per_s") / 1048576, num(m, "dirty_rate_pages_per_s"),
			num(m, "remaining_bytes") / 1048576, num(m, "expected_downtime_us") / 1000,
			cJSON_IsString(st) ? st->valuestring : "?");
		fflush(stderr);
	} else {
		fprintf(stderr, "migration: status=%s pass=%.0f bytes_sent=%.0f remaining_bytes=%.0f "
			"expected_downtime_us=%.0f\n", cJSON_IsString(st) ? st->valuestring : "?",
			num(m, "pass"), sent, num(m, "remaining_bytes"), num(m, "expected_downtime_us"));
	}
}

/* Poll vm.info until the migration is no longer active. */
static int migrate_follow(const char *sock)
{
	bool tty = isatty(STDERR_FILENO);
	char last[256] = "";

	for (;;) {
		struct api_reply rep;
		char err[256];
		cJSON *info, *m, *st, *msg, *cfg;
		int ret = api_client_request(sock, "GET", "/api/v1/vm.info", NULL, 0, &rep, err, sizeof(err));

		if (ret) {
			cli_error("%s", err);
			return 3;
		}
		info = cJSON_Parse(rep.body);
		api_reply_free(&rep);
		m = cJSON_GetObjectItemCaseSensitive(info, "migration");
		st = cJSON_GetObjectItemCaseSensitive(m, "status");
		cfg = cJSON_GetObjectItemCaseSensitive(info, "config");
		double ram = num(cfg, "memory_mib") * 1048576;
		if (!cJSON_IsString(st)) {
			cJSON_Delete(info);
			cli_error("the VMM reports no migration");
			return 1;
		}
		char line[256];
		snprintf(line, sizeof(line), "%s/%.0f/%.0f", st->valuestring, num(m, "pass"), num(m, "bytes_sent"));
		if (tty || strcmp(line, last))
			show_progress(m, tty, ram);
		snprintf(last, sizeof(last), "%s", line);
		if (strcmp(st->valuestring, "active")) {
			bool ok = !strcmp(st->valuestring, "completed");

			msg = cJSON_GetObjectItemCaseSensitive(m, "message");
			if (tty)
				fputc('\n', stderr);
			if (ok)
				printf("migrated: total %.1f ms, downtime %.2f ms, %.1f MiB sent\n",
				       num(m, "total_us") / 1000, num(m, "downtime_us") / 1000,
				       num(m, "bytes_sent") / 1048576);
			else
				cli_error("migration %s: %s", st->valuestring,
					  cJSON_IsString(msg) ? msg->valuestring : "");
			cJSON_Delete(info);
			return ok ? 0 : 1;
		}
		cJSON_Delete(info);
		usleep(tty ? 100000 : 50000);
	}
}

int cli_migrate(int argc, char **argv)
{
	const char *sock = NULL;
	bool wait = true;
	cJSON *body = cJSON_CreateObject();
	unsigned long long v;
	int opt, ret;

	if (!body)
		return CLI_EXIT_ERROR;
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "h", migrate_options, NULL)) != -1) {
		switch (opt) {
		case 'a':
			sock = optarg;
			break;
		case 'd':
		case 'c':
		case 'p':
			if (cli_parse_u64(optarg, 60000, &v)) {
				cli_error("migrate: '%s' is not a number", optarg);
				goto usage;
			}
			cJSON_AddNumberToObject(body, opt == 'd' ? "downtime_ms" : opt == 'c' ? "connections"
											: "max_passes", (double)v);
			break;
		case 'l':
			cJSON_AddBoolToObject(body, "local", true);
			break;
		case 'n':
			wait = false;
			break;
		case 'h':
			migrate_usage(stdout);
			cJSON_Delete(body);
			return 0;
		default:
			cli_error("migrate: unknown option or missing value: '%s'", argv[optind - 1]);
			goto usage;
		}
	}
	if (!sock || optind != argc - 1) {
		cli_error("migrate: --api-sock PATH and one URL are required");
		goto usage;
	}
	cJSON_AddStringToObject(body, "destination_url", argv[optind]);
	char *json = cJSON_PrintUnformatted(body);
	struct api_reply rep;
	char err[256];

	cJSON_Delete(body);
	if (!json)
		return CLI_EXIT_ERROR;
	ret = api_client_request(sock, "PUT", "/api/v1/vm.send-migration", json, strlen(json), &rep, err,
				 sizeof(err));
	free(json);
	if (ret) {
		cli_error("%s", err);
		return 3;
	}
	if (rep.status >= 300) {
		cli_error("%s", rep.body);
		api_reply_free(&rep);
		return 1;
	}
	api_reply_free(&rep);
	return wait ? migrate_follow(sock) : 0;
usage:
	cJSON_Delete(body);
	migrate_usage(stderr);
	return CLI_EXIT_USAGE;
}
