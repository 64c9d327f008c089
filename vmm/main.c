/* vmm: entry point and verb dispatch. */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "migration/migrate.h"
#include "migration/migration.h"
#include "vmm/cli.h"

struct verb {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct verb verbs[] = {
	{ "run", cli_run, "create and boot a VM from flags or a JSON config" },
	{ "serve", cli_serve, "start a VMM with no VM and serve the REST API" },
	{ "ctl", cli_ctl, "send one request to a VMM's API socket" },
	{ "migrate", cli_migrate, "live-migrate a VMM's VM to another vmm (see migrate --help)" },
	{ "state", cli_state, "show a snapshot's state tree (state show DIR)" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: vmm VERB [OPTIONS]\n\n"
		   "A minimal virtual machine monitor for Linux KVM.\n\nVerbs:\n");
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		fprintf(f, "  %-8s %s\n", verbs[i].name, verbs[i].summary);
	fprintf(f, "\nOptions:\n  -h, --help     this help (VERB --help: help for a verb)\n"
		   "  -V, --version  print the version\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("vmm %s\n", VMM_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcmp(argv[1], verbs[i].name))
			return verbs[i].fn(argc - 1, argv + 1);
	cli_error("unknown verb '%s' (see 'vmm --help')", argv[1]);
	return CLI_EXIT_USAGE;
}
