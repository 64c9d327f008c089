/* `vmm serve --api-sock PATH`: a VMM with no VM that waits for API requests.
 * It exits on vmm.shutdown (after replying), SIGINT or SIGTERM, destroying
 * any VM it created. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "api/api.h"
#include "vmm/cli.h"
#include "vmm/log.h"

static void serve_usage(FILE *f)
{
	fprintf(f, "usage: vmm serve --api-sock PATH [-v]\n\n"
		   "Start a VMM with no VM and serve the REST API (api/openapi.yaml) on a\n"
		   "UNIX socket (mode 0600). Drive it with 'vmm ctl' or curl --unix-socket.\n"
		   "It exits on vmm.shutdown, SIGINT or SIGTERM.\n\n"
		   "  --api-sock PATH   the socket to create (a stale one is replaced)\n"
		   "  -v, --verbose     more log output (repeat for debug)\n"
		   "  -h, --help        this help\n");
}

enum { SERVE_OPT_SOCK = 256 };

static const struct option serve_options[] = {
	{ "api-sock", required_argument, NULL, SERVE_OPT_SOCK },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Wait for vmm.shutdown or a termination signal. */
static int serve_wait(struct api_server *srv, int sig_fd)
{
	struct pollfd pfd[2] = {
		{ .fd = api_server_shutdown_fd(srv), .events = POLLIN },
		{ .fd = sig_fd, .events = POLLIN },
	};
	struct signalfd_siginfo si;

	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (pfd[0].revents) {
			log_info("api", "vmm.shutdown requested");
			return 0;
		}
		if (pfd[1].revents && read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
			log_info("api", "signal %u: shutting down", si.ssi_signo);
			return 0;
		}
	}
}

int cli_serve(int argc, char **argv)
{
	const char *sock = NULL;
	struct api_server *srv;
	int opt, verbosity = 0, sig_fd, ret;
	sigset_t set;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+vh", serve_options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			serve_usage(stdout);
			return 0;
		case 'v':
			verbosity++;
			break;
		case SERVE_OPT_SOCK:
			sock = optarg;
			break;
		default:
			cli_error("serve: unknown option or missing value: '%s' (see 'vmm serve --help')",
				  argv[optind - 1]);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cli_error("serve: unexpected argument '%s'", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	if (!sock) {
		cli_error("serve: --api-sock PATH is required");
		return CLI_EXIT_USAGE;
	}
	log_set_level(verbosity >= 2 ? LOG_DEBUG : verbosity == 1 ? LOG_INFO : LOG_WARN);

	/* Block the termination signals in every thread (inherited by the ones
	 * created below) and take them through a signalfd. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	sig_fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sig_fd < 0) {
		cli_error("serve: signalfd: %s", strerror(errno));
		return CLI_EXIT_ERROR;
	}
	ret = api_server_start(&srv, sock, NULL);
	if (ret) {
		cli_error("serve: cannot serve the API on '%s': %s", sock, strerror(-ret));
		close(sig_fd);
		return CLI_EXIT_ERROR;
	}
	ret = serve_wait(srv, sig_fd);
	api_server_stop(srv);
	close(sig_fd);
	return ret ? CLI_EXIT_ERROR : 0;
}
