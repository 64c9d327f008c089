/* Shared parts of `vmm run --restore` and `vmm run --incoming`. See cli_host.h. */
#include "migration/cli_host.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "vmm/cli.h"
#include "vmm/log.h"
#include "vmm/vm.h"

const struct option cli_receive_options[] = {
	{ "console", required_argument, NULL, CLI_OPT_CONSOLE },
	{ "verbose", no_argument, NULL, 'v' },
	{ "restore", required_argument, NULL, CLI_OPT_RESTORE },
	{ "restore-memory", required_argument, NULL, CLI_OPT_RESTORE_MEMORY },
	{ "tap", required_argument, NULL, CLI_OPT_TAP },
	{ "incoming", required_argument, NULL, CLI_OPT_INCOMING },
	{ "api-sock", required_argument, NULL, CLI_OPT_API_SOCK },
	{ "memory-dir", required_argument, NULL, CLI_OPT_MEMORY_DIR },
	{ "accept-timeout-ms", required_argument, NULL, CLI_OPT_ACCEPT_TIMEOUT },
	{ "prefault", no_argument, NULL, CLI_OPT_PREFAULT },
	{ NULL, 0, NULL, 0 },
};

bool cli_argv_has(int argc, char **argv, const char *name)
{
	size_t n = strlen(name);

	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], "--", 2) && !strncmp(argv[i] + 2, name, n) &&
		    (argv[i][2 + n] == '\0' || argv[i][2 + n] == '='))
			return true;
	return false;
}

void cli_host_init(struct cli_host *h)
{
	memset(h, 0, sizeof(*h));
	config_init(&h->console_cfg);
}

void cli_host_free(struct cli_host *h)
{
	config_free(&h->console_cfg);
	h->console_path = NULL;
}

/* 0 taken, 1 not a shared option, -1 bad value. */
static int host_option(struct cli_host *h, int opt, const char *arg)
{
	char err[256] = "";

	switch (opt) {
	case CLI_OPT_CONSOLE:
		if (config_parse_console(&h->console_cfg, arg, err, sizeof(err))) {
			cli_error("--%s", err);
			return -1;
		}
		h->has_console = true;
		h->console = h->console_cfg.console;
		h->console_path = h->console_cfg.console_path;
		return 0;
	case 'v':
		h->verbosity++;
		return 0;
	default:
		return 1;
	}
}

int cli_host_parse(struct cli_host *h, const struct cli_mode *m, int argc, char **argv)
{
	int opt, idx = -1, ret;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+v", cli_receive_options, &idx)) != -1) {
		ret = host_option(h, opt, optarg);
		if (ret == 1 && opt != '?' && opt != ':')
			ret = m->option(m->ctx, opt, optarg);
		if (ret < 0)
			return -1;
		if (ret == 1) {
			/* Unknown, missing its value, or the other mode's. */
			char shown[64];

			if (opt == '?' || opt == ':' || idx < 0)
				snprintf(shown, sizeof(shown), "%s", argv[optind - 1]);
			else
				snprintf(shown, sizeof(shown), "--%s", cli_receive_options[idx].name);
			cli_error("run --%s: unknown option or missing value: '%s' (only %s go with --%s)", m->flag,
				  shown, m->allowed, m->flag);
			return -1;
		}
		idx = -1;
	}
	if (optind < argc) {
		cli_error("run --%s: unexpected argument '%s'", m->flag, argv[optind]);
		return -1;
	}
	log_set_level(h->verbosity >= 2 ? LOG_DEBUG : h->verbosity == 1 ? LOG_INFO : LOG_WARN);
	return 0;
}

int cli_host_wait(struct vm *vm)
{
	int status = vm_wait_exit(vm);

	if (status != 0)
		cli_error("%s", vm->exit_reason);
	else
		log_info("vm", "%s", vm->exit_reason);
	return status;
}
