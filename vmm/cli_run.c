/* `vmm run`: build a VM config from flags, create the VM, run it to the end.
 * Exit status: the guest's debug-exit value, 0 on guest power-off or reset,
 * 2 on bad flags, 125 when the VMM cannot create or run the VM, 126 when the
 * guest crashes (triple fault, emulation failure). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "api/actions_migration.h"
#include "api/api.h"
#include "api/config_json.h"
#include "devices/virtio_net_config.h"
#include "migration/migrate.h"
#include "migration/migration.h"
#include "vfio/vfio_pci.h"
#include "vmm/cli.h"
#include "vmm/log.h"
#include "vmm/vm.h"

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("vmm: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_parse_u64(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

void cli_run_usage(FILE *f)
{
	fprintf(f,
		"usage: vmm run --kernel FILE [OPTIONS]\n\n"
		"Create a VM, boot it, and run it until the guest exits.\n\n"
		"  --kernel FILE        kernel: PVH ELF, Linux vmlinux ELF or bzImage (required)\n"
		"  --initrd FILE        initial ramdisk\n"
		"  --cmdline STR        kernel command line\n"
		"  --cpus N             vCPUs (1..%d, default 1)\n"
		"  --memory MIB         guest RAM in MiB (default %d)\n"
		"  --console KIND       stdio (default), file:PATH, or none\n"
		"  --config FILE        the VM as JSON (the same document as the API's vm.create);\n"
		"                       flags given as well override its fields\n"
		"  --net SPEC           virtio-net device, repeatable:\n"
		"                       tap=NAME[,mac=MAC][,queues=N][,iommu=on]\n"
		"                       macvtap=IFNAME[,mac=MAC][,queues=N][,iommu=on]\n"
		"  --iommu              add a virtio-iommu device (devices with iommu=on sit behind it)\n"
		"  --vfio SPEC          pass through a host PCI function with kernel VFIO, repeatable:\n"
		"                       host=0000:03:00.1[,iommu=on]\n"
		"  --vfio-user SPEC     a device served by a vfio-user server, repeatable:\n"
		"                       socket=PATH[,iommu=on]\n"
		"  --api-sock PATH      also serve the REST API on this UNIX socket (see vmm ctl)\n"
		"  --restore DIR        start from a snapshot directory instead of a kernel\n"
		"    --restore-memory M with --restore: lazy (default: map the snapshot's RAM file, pages\n"
		"                       read on first touch) or copy (a memfd, all RAM read first;\n"
		"                       needed for a later live update or vfio-user devices)\n"
		"    --tap N=IFNAME     with --restore: net N uses TAP IFNAME instead of the snapshot's\n"
		"  --incoming URL       wait for a live migration (unix:PATH or tcp:HOST:PORT)\n"
		"    --memory-dir DIR   with --incoming: guest RAM in an unlinked file there (tmpfs, hugetlbfs)\n"
		"    --prefault         with --incoming: allocate all guest RAM before the stream starts\n"
		"    --accept-timeout-ms N  with --incoming: give up if no source connects in time\n"
		"  -v, --verbose        more log output (repeat for debug)\n"
		"  -h, --help           this help\n\n"
		"Exit status: the value the guest writes to the debug-exit port (0xf4),\n"
		"0 on guest power-off or reset, 2 on bad flags, 125 if the VM cannot be\n"
		"created or run, 126 if the guest crashes.\n",
		CONFIG_MAX_CPUS, CONFIG_DEFAULT_MEMORY_MIB);
}

static int set_string(char **dst, const char *src)
{
	free(*dst);
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_CPUS, OPT_MEMORY, OPT_CONSOLE, OPT_CONFIG,
       OPT_NET, OPT_IOMMU, OPT_API_SOCK, OPT_VFIO, OPT_VFIO_USER };

const struct option cli_run_options[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "console", required_argument, NULL, OPT_CONSOLE },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "net", required_argument, NULL, OPT_NET },
	{ "iommu", no_argument, NULL, OPT_IOMMU },
	{ "api-sock", required_argument, NULL, OPT_API_SOCK },
	{ "vfio", required_argument, NULL, OPT_VFIO },
	{ "vfio-user", required_argument, NULL, OPT_VFIO_USER },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Apply one option to @cfg; on error print a one-line message and return -EINVAL. */
static int run_apply_option(struct vm_config *cfg, int opt, const char *arg)
{
	unsigned long long v;
	char err[256];

	switch (opt) {
	case OPT_KERNEL:
		return set_string(&cfg->kernel, arg);
	case OPT_INITRD:
		return set_string(&cfg->initrd, arg);
	case OPT_CMDLINE:
		return set_string(&cfg->cmdline, arg);
	case OPT_CPUS:
		if (cli_parse_u64(arg, CONFIG_MAX_CPUS, &v) || v == 0) {
			cli_error("--cpus: '%s' is not a number of vCPUs (1..%d)", arg, CONFIG_MAX_CPUS);
			return -EINVAL;
		}
		cfg->cpus = (unsigned)v;
		return 0;
	case OPT_MEMORY:
		if (cli_parse_u64(arg, 1ULL << 20, &v) || v < CONFIG_MIN_MEMORY_MIB) {
			cli_error("--memory: '%s' is not a size in MiB (%d..1048576)", arg, CONFIG_MIN_MEMORY_MIB);
			return -EINVAL;
		}
		cfg->memory_mib = v;
		return 0;
	case OPT_CONFIG:
		return 0; /* applied before the other flags, see run_load_config */
	case OPT_IOMMU:
		cfg->iommu = true;
		return 0;
	case OPT_VFIO:
	case OPT_VFIO_USER:
		if (config_parse_vfio(cfg, arg, opt == OPT_VFIO_USER, err, sizeof(err))) {
			cli_error("%s", err); /* names the flag and the bad field */
			return -EINVAL;
		}
		return 0;
	case OPT_NET:
		if (config_parse_net(cfg, arg, err, sizeof(err))) {
			cli_error("--net %s: %s", arg, err);
			return -EINVAL;
		}
		return 0;
	case OPT_CONSOLE:
		if (config_parse_console(cfg, arg, err, sizeof(err))) {
			cli_error("--%s", err);
			return -EINVAL;
		}
		return 0;
	}
	return -EINVAL;
}

/* With a terminal on stdin, pass keys to the guest as typed (no line
 * buffering, no echo) but keep Ctrl-C as a way out. */
static bool console_raw(struct termios *saved)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, saved) < 0)
		return false;
	t = *saved;
	t.c_lflag &= (tcflag_t)~(ICANON | ECHO);
	t.c_iflag &= (tcflag_t)~(ICRNL);
	tcsetattr(STDIN_FILENO, TCSANOW, &t);
	return true;
}

static long long status_kib(const char *field)
{
	char line[256];
	long long v = -1;
	size_t n = strlen(field);
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':')
			v = atoll(line + n + 1);
	fclose(f);
	return v;
}

/* VMM_REPORT_RSS=1: print peak RSS and the guest RAM that is resident, so a
 * benchmark can compute the VMM's own memory overhead. */
static void report_rss(const struct vm *vm)
{
	const struct guest_mem *mem = &vm->mem;
	size_t pages = mem->size / MEM_PAGE_SIZE;
	unsigned char *vec = malloc(pages ? pages : 1);
	unsigned long long resident = 0;

	if (!vec)
		return;
	if (mincore(mem->base, mem->size, vec) == 0)
		for (size_t i = 0; i < pages; i++)
			resident += vec[i] & 1;
	free(vec);
	fprintf(stderr, "vmm-stats: peak_rss_kib=%lld guest_resident_kib=%llu\n", status_kib("VmHWM"),
		resident * (MEM_PAGE_SIZE / 1024));
}

/* Tearing a VM down costs KVM tens of milliseconds (an SRCU grace period when
 * the last user of our address space runs exit_mmap and KVM's MMU notifier
 * goes, more when the VM fd closes), all on the exit path before our parent
 * sees the status. Once the guest has finished, a helper process that shares
 * our address space (CLONE_VM) and our fd table (CLONE_FILES) keeps both
 * alive past our exit, and lets go only when our whole thread group is gone
 * (its pidfd turns readable): the teardown is then the helper's exit, off the
 * caller's path. It must outlive every thread of ours, including the KVM
 * NX-recovery worker (a vhost task in our thread group): whichever task drops
 * the last mm reference pays the grace period. (PR_SET_PDEATHSIG cannot do
 * this: it fires when the creating thread exits, while the rest of the group
 * still runs, so the helper often died first.)
 * The helper first takes a private copy of the fd table and closes its copies
 * of stdio: our stdio then closes with our own exit, as for any process, so
 * a caller reading our output sees EOF together with the exit status (one
 * that polls for the status after EOF does not sleep on a still-running
 * process). We do not wait for the helper to start: clone() already gave it
 * the mm and the table. VMM_SYNC_TEARDOWN=1 turns this off (the ASan pass
 * sets it so leak checks run at exit). Returns only when teardown is
 * synchronous: unset, or the helper cannot be started. */
#define TEARDOWN_STACK_SIZE (16 * 1024)

static int teardown_helper(void *opaque)
{
	pid_t parent = (pid_t)(intptr_t)opaque;
	struct pollfd pfd = { .events = POLLIN };

	/* Our own table (the VM fds stay open in it), without the caller's
	 * stdio. Should that fail, leave at once: sharing it, we would keep
	 * the caller's pipes open. */
	if (unshare(CLONE_FILES) < 0)
		_exit(0);
	for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++)
		close(fd);
	pfd.fd = (int)syscall(SYS_pidfd_open, parent, 0);
	/* Checked after pidfd_open: if our parent's thread group had already
	 * gone, we were reparented and the pid may name another process. Its
	 * exit then has passed, and so has any need to wait. */
	if (pfd.fd < 0 || getppid() != parent)
		_exit(0);
	/* Readable once every thread of the parent has exited (after each one's
	 * exit_mm and exit_files): only then drop the last references. */
	while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
		;
	_exit(0);
	return 0;
}

static void run_exit_fast(int status)
{
	void *stack;

	fflush(NULL);
	if (getenv("VMM_SYNC_TEARDOWN"))
		return;
	stack = mmap(NULL, TEARDOWN_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (stack == MAP_FAILED)
		return;
	if (clone(teardown_helper, (char *)stack + TEARDOWN_STACK_SIZE, CLONE_VM | CLONE_FILES | SIGCHLD,
		  (void *)(intptr_t)getpid()) >= 0)
		_exit(status);
	munmap(stack, TEARDOWN_STACK_SIZE);
}

static int run_vm(const struct vm_config *cfg, const char *api_sock)
{
	struct api_server *api = NULL;
	char err[512] = "";
	struct termios saved;
	bool raw = false;
	struct vm *vm;
	int status;

	if (vm_create(&vm, cfg, err, sizeof(err))) {
		cli_error("%s", err[0] ? err : "cannot create the VM");
		return CLI_EXIT_ERROR;
	}
	if (cfg->console == CONSOLE_STDIO)
		raw = console_raw(&saved);
	if (api_sock) {
		if (vm_start(vm)) {
			cli_error("cannot start the VM");
			vm_destroy(vm);
			return CLI_EXIT_ERROR;
		}
		if (api_server_start(&api, api_sock, vm))
			vm_request_exit(vm, CLI_EXIT_ERROR, "cannot serve the API on '%s'", api_sock);
		status = vm_wait_exit(vm);
		/* Moved on by a live migration: let the client following it (vmm
		 * migrate) see "completed" before the socket goes, as run --incoming does. */
		if (api && !strncmp(vm->exit_reason, "migrated to", 11))
			for (int i = 0; i < 3000 / 5 && !api_server_migration_reported(api); i++)
				usleep(5000);
		/* Replies to requests that raced with the exit are sent first. */
		api_server_stop(api);
	} else {
		/* vCPU 0 runs on this thread: no hand-off at start or at exit. */
		if (vm_run_on_caller(vm)) {
			cli_error("cannot start the VM");
			vm_destroy(vm);
			return CLI_EXIT_ERROR;
		}
		pthread_mutex_lock(&vm->lock);
		status = vm->exit_status;
		pthread_mutex_unlock(&vm->lock);
	}
	if (status != 0)
		cli_error("%s", vm->exit_reason);
	else
		log_info("vm", "%s", vm->exit_reason);
	if (getenv("VMM_REPORT_RSS"))
		report_rss(vm);
	if (raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	/* Other vCPU threads and the event loop end with the process. */
	run_exit_fast(status);
	if (!api_sock)
		vm_wait_exit(vm);
	vm_destroy(vm);
	return status;
}

#define RUN_CONFIG_MAX (1 << 20)

static int run_load_config(struct vm_config *cfg, const char *path)
{
	char err[512];
	char *json = NULL;
	size_t len = 0;
	FILE *f = fopen(path, "r");
	int ret;

	if (!f) {
		cli_error("--config: cannot open '%s': %s", path, strerror_safe(errno));
		return -errno;
	}
	json = malloc(RUN_CONFIG_MAX + 1);
	if (!json) {
		fclose(f);
		return -ENOMEM;
	}
	len = fread(json, 1, RUN_CONFIG_MAX + 1, f);
	if (len > RUN_CONFIG_MAX) {
		cli_error("--config: '%s' is larger than %d bytes", path, RUN_CONFIG_MAX);
		free(json);
		fclose(f);
		return -EFBIG;
	}
	fclose(f);
	ret = config_from_json_unvalidated(cfg, json, len, err, sizeof(err));
	free(json);
	if (ret)
		cli_error("--config %s: %s", path, err);
	return ret;
}

/* --config is applied first wherever it appears, so flags can override it. */
static int run_find_config(int argc, char **argv, struct vm_config *cfg)
{
	const char *path = NULL;
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+vh", cli_run_options, NULL)) != -1) {
		if (opt != OPT_CONFIG)
			continue;
		if (path) {
			cli_error("--config given twice ('%s' and '%s'): give one file", path, optarg);
			return -EINVAL;
		}
		path = optarg;
	}
	return path ? run_load_config(cfg, path) : 0;
}

int cli_run(int argc, char **argv)
{
	struct vm_config cfg;
	const char *api_sock = NULL;
	char err[256];
	int opt, status, verbosity = 0;

	/* --help wins wherever it stands, also next to --restore/--incoming. */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			cli_run_usage(stdout);
			return 0;
		}
	}
	if (cli_run_wants_restore(argc, argv))
		return cli_run_restore(argc, argv);
	if (cli_run_wants_incoming(argc, argv))
		return cli_run_incoming(argc, argv);
	config_init(&cfg);
	if (run_find_config(argc, argv, &cfg)) {
		config_free(&cfg);
		return CLI_EXIT_USAGE;
	}
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+vh", cli_run_options, NULL)) != -1) {
		if (opt == 'h') {
			cli_run_usage(stdout);
			config_free(&cfg);
			return 0;
		}
		if (opt == 'v') {
			verbosity++;
			continue;
		}
		if (opt == OPT_API_SOCK) {
			api_sock = optarg;
			continue;
		}
		if (opt == '?' || opt == ':') {
			cli_error("run: unknown option or missing value: '%s' (see 'vmm run --help')",
				  argv[optind - 1]);
			config_free(&cfg);
			return CLI_EXIT_USAGE;
		}
		if (run_apply_option(&cfg, opt, optarg)) {
			config_free(&cfg);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cli_error("run: unexpected argument '%s' (see 'vmm run --help')", argv[optind]);
		config_free(&cfg);
		return CLI_EXIT_USAGE;
	}
	log_set_level(verbosity >= 2 ? LOG_DEBUG : verbosity == 1 ? LOG_INFO : LOG_WARN);
	if (config_validate(&cfg, err, sizeof(err))) {
		cli_error("%s", err);
		config_free(&cfg);
		return CLI_EXIT_USAGE;
	}
	status = run_vm(&cfg, api_sock);
	config_free(&cfg);
	return status;
}
