/* `vmm run --help` names every option `vmm run` accepts, in all three modes
 * (boot, --restore, --incoming): a flag missing from the help is one a user
 * cannot find. */
#include <criterion/criterion.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration/cli_host.h"
#include "vmm/cli.h"

static char *run_help(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	cr_assert_not_null(f);
	cli_run_usage(f);
	fclose(f);
	return text;
}

static void assert_all_listed(const char *help, const struct option *opts)
{
	for (const struct option *o = opts; o->name; o++) {
		char flag[64];

		snprintf(flag, sizeof(flag), "--%s ", o->name);
		cr_assert(strstr(help, flag), "run --help does not list --%s", o->name);
	}
}

Test(cli_help, run_lists_every_boot_option)
{
	char *help = run_help();

	assert_all_listed(help, cli_run_options);
	free(help);
}

Test(cli_help, run_lists_every_restore_and_incoming_option)
{
	char *help = run_help();

	assert_all_listed(help, cli_receive_options);
	free(help);
}
