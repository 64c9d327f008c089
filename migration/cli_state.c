/* CLI verbs for snapshots: `vmm state show` and `vmm run --restore`. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "migration/cli_host.h"
#include "migration/migration.h"
#include "migration/snapshot.h"
#include "migration/state.h"
#include "vmm/cli.h"
#include "vmm/log.h"
#include "vmm/vm.h"

static void state_usage(FILE *f)
{
	fprintf(f, "usage: vmm state show DIR|FILE\n\n"
		   "Print a snapshot's state tree (DIR/state.dtb, or a .dtb file) as text.\n"
		   "The file is validated first, as restore does.\n");
}

static int read_blob(const char *path, void **blob, size_t *len)
{
	struct stat st;
	size_t off = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > STATE_MAX_SIZE) {
		close(fd);
		return -EINVAL;
	}
	*len = (size_t)st.st_size;
	*blob = malloc(*len ? *len : 1);
	if (!*blob) {
		close(fd);
		return -ENOMEM;
	}
	while (off < *len) {
		ssize_t n = read(fd, (char *)*blob + off, *len - off);

		if (n <= 0) {
			free(*blob);
			close(fd);
			return n < 0 ? -errno : -EIO;
		}
		off += (size_t)n;
	}
	close(fd);
	return 0;
}

int cli_state(int argc, char **argv)
{
	char path[4096], err[STATE_ERR_MAX];
	struct state_tree *t;
	struct stat st;
	void *blob = NULL;
	size_t len = 0;
	int ret;

	if ((argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) ||
	    (argc == 3 && (!strcmp(argv[2], "-h") || !strcmp(argv[2], "--help")))) {
		state_usage(stdout);
		return 0;
	}
	if (argc != 3 || strcmp(argv[1], "show")) {
		state_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (stat(argv[2], &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(path, sizeof(path), "%s/state.dtb", argv[2]);
	else
		snprintf(path, sizeof(path), "%s", argv[2]);
	ret = read_blob(path, &blob, &len);
	if (ret) {
		cli_error("state: cannot read '%s': %s", path, strerror_safe(-ret));
		return 1;
	}
	ret = state_tree_open(&t, blob, len, err, sizeof(err));
	free(blob);
	if (ret) {
		cli_error("%s: %s", path, err);
		return 1;
	}
	state_tree_print(t, stdout);
	state_tree_free(t);
	return 0;
}

/* ------------------------------------------------------ run --restore */

bool cli_run_wants_restore(int argc, char **argv)
{
	return cli_argv_has(argc, argv, "restore");
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int parse_tap(struct snapshot_restore_opts *o, const char *arg)
{
	unsigned long long idx;
	const char *eq = strchr(arg, '=');
	char num[16];

	if (!eq || (size_t)(eq - arg) >= sizeof(num) || strlen(eq + 1) == 0 ||
	    strlen(eq + 1) >= CONFIG_IFNAME_MAX)
		return -EINVAL;
	memcpy(num, arg, (size_t)(eq - arg));
	num[eq - arg] = '\0';
	if (cli_parse_u64(num, CONFIG_MAX_NETS - 1, &idx))
		return -EINVAL;
	o->has_tap[idx] = true;
	snprintf(o->tap[idx], sizeof(o->tap[idx]), "%s", eq + 1);
	return 0;
}

struct restore_args {
	struct snapshot_restore_opts o;
	const char *dir;
};

/* One option of `run --restore` besides the shared ones (cli_mode_option_fn). */
static int restore_option(void *ctx, int opt, const char *arg)
{
	struct restore_args *a = ctx;

	switch (opt) {
	case CLI_OPT_RESTORE:
		a->dir = arg;
		return 0;
	case CLI_OPT_RESTORE_MEMORY:
		if (!strcmp(arg, "lazy") || !strcmp(arg, "copy")) {
			a->o.memory = arg[0] == 'l' ? SNAPSHOT_MEMORY_LAZY : SNAPSHOT_MEMORY_COPY;
			return 0;
		}
		cli_error("--restore-memory: '%s' is not lazy or copy", arg);
		return -1;
	case CLI_OPT_TAP:
		if (!parse_tap(&a->o, arg))
			return 0;
		cli_error("--tap: '%s' is not N=IFNAME", arg);
		return -1;
	default:
		return 1;
	}
}

int cli_run_restore(int argc, char **argv)
{
	struct restore_args a = { .o = { .memory = SNAPSHOT_MEMORY_LAZY } };
	const struct cli_mode mode = { .flag = "restore", .allowed = "--restore-memory, --console, --tap and -v",
				       .option = restore_option, .ctx = &a };
	struct snapshot_restore_opts *o = &a.o;
	struct cli_host h;
	char err[512] = "";
	int status;
	uint64_t t0, c0;
	struct vm *vm;

	cli_host_init(&h);
	if (cli_host_parse(&h, &mode, argc, argv))
		goto usage;
	if (!a.dir) {
		cli_error("run --restore: a snapshot directory is needed");
		goto usage;
	}
	o->has_console = h.has_console;
	o->console = (enum console_kind)h.console;
	o->console_path = h.console_path;
	t0 = now_ns();
	c0 = cpu_ns();
	if (snapshot_restore(&vm, a.dir, o, err, sizeof(err))) {
		cli_error("%s", err[0] ? err : "restore failed");
		cli_host_free(&h);
		return CLI_EXIT_ERROR;
	}
	if (vm_resume(vm)) {
		cli_error("cannot resume the restored VM");
		status = CLI_EXIT_ERROR;
	} else {
		/* VMM_REPORT_RESTORE=1: wall and CPU time from the start of the
		 * restore to running vCPUs (CPU time is what a loaded host cannot inflate). */
		if (getenv("VMM_REPORT_RESTORE"))
			fprintf(stderr, "vmm-stats: restore_to_running_us=%llu restore_cpu_us=%llu\n",
				(unsigned long long)((now_ns() - t0) / 1000),
				(unsigned long long)((cpu_ns() - c0) / 1000));
		status = cli_host_wait(vm);
	}
	vm_destroy(vm);
	cli_host_free(&h);
	return status;
usage:
	cli_host_free(&h);
	return CLI_EXIT_USAGE;
}
