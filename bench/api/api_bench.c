/* API benchmark: request latency over the UNIX socket (p50/p99/max) for
 * vmm.ping and vm.info (a booted VM), one connection per request as
 * `vmm ctl` and curl make them, and the time from launching `vmm serve` to
 * its socket accepting a connection. Writes JSON and prints a table.
 * Targets: p99 under 1 ms, socket ready under 5 ms.
 *
 *   api-bench --vmm build/vmm --out build/bench/api.json [--requests N] [--starts N] */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/actions.h"
#include "api/api.h"

#define TARGET_P99_US     1000.0
#define TARGET_READY_US   5000.0

struct stats {
	double p50, p99, max, mean;
	unsigned n, failed;
};

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void summarize(double *v, unsigned n, unsigned failed, struct stats *s)
{
	double sum = 0;

	memset(s, 0, sizeof(*s));
	s->n = n;
	s->failed = failed;
	if (!n)
		return;
	qsort(v, n, sizeof(*v), cmp_double);
	for (unsigned i = 0; i < n; i++)
		sum += v[i];
	s->mean = sum / n;
	s->p50 = v[n / 2];
	s->p99 = v[(unsigned)((n - 1) * 0.99)];
	s->max = v[n - 1];
}

static bool can_connect(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static pid_t spawn_serve(const char *vmm, const char *sock)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);

		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execl(vmm, vmm, "serve", "--api-sock", sock, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static unsigned request(const char *sock, const char *verb, const char *body);

/* Launch to accepting; -1 if it never came up within 5 s. With @first_reply,
 * also launch to the first vmm.ping answered (the HTTP library loads after
 * the socket listens; connections queue meanwhile). */
static double measure_ready(const char *vmm, const char *sock, pid_t *pid, double *first_reply)
{
	double t0 = now_us(), ready;

	*pid = spawn_serve(vmm, sock);
	while (!can_connect(sock)) {
		if (now_us() - t0 > 5e6 || waitpid(*pid, NULL, WNOHANG) == *pid)
			return -1;
		usleep(50);
	}
	ready = now_us() - t0;
	if (first_reply)
		*first_reply = request(sock, "vmm.ping", NULL) == 200 ? now_us() - t0 : -1;
	return ready;
}

static unsigned request(const char *sock, const char *verb, const char *body)
{
	const struct api_action_desc *a = api_action_by_name(verb);
	struct api_reply r;
	char path[64], err[256];
	unsigned st = 0;

	snprintf(path, sizeof(path), API_PATH_PREFIX "%s", verb);
	if (!api_client_request(sock, a->method, path, body, body ? strlen(body) : 0, &r, err,
				sizeof(err))) {
		st = r.status;
		api_reply_free(&r);
	}
	return st;
}

static void stop_serve(const char *sock, pid_t pid)
{
	request(sock, "vmm.shutdown", NULL);
	for (int i = 0; i < 2000 && waitpid(pid, NULL, WNOHANG) != pid; i++)
		usleep(5000);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, WNOHANG);
	unlink(sock);
}

static void bench_latency(const char *sock, const char *verb, unsigned n, struct stats *s)
{
	double *v = calloc(n, sizeof(*v));
	unsigned ok = 0, failed = 0;

	for (unsigned i = 0; i < 50; i++)     /* warm-up */
		request(sock, verb, NULL);
	for (unsigned i = 0; i < n; i++) {
		double t0 = now_us();

		if (request(sock, verb, NULL) == 200)
			v[ok++] = now_us() - t0;
		else
			failed++;
	}
	summarize(v, ok, failed, s);
	free(v);
}

/* The smallest PVH guest: "cli; hlt; jmp hlt" at 1 MiB, halted at no cost. */
static int write_halt_guest(const char *path)
{
	static const uint8_t code[] = { 0xfa, 0xf4, 0xeb, 0xfd };
	struct {
		Elf64_Nhdr nh;
		char name[4];
		uint32_t entry;
	} note = { { 4, 4, 18 }, "Xen", 0x100000 };
	static uint8_t img[0x1000 + sizeof(code)];
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(*eh));
	const size_t note_off = sizeof(*eh) + 2 * sizeof(*ph);
	FILE *f;

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = 0x100000;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 2;
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = 0x1000,
			      .p_vaddr = 0x100000, .p_paddr = 0x100000, .p_filesz = sizeof(code),
			      .p_memsz = sizeof(code), .p_align = 0x1000 };
	ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_flags = PF_R, .p_offset = note_off,
			      .p_filesz = sizeof(note), .p_memsz = sizeof(note), .p_align = 4 };
	memcpy(img + note_off, &note, sizeof(note));
	memcpy(img + 0x1000, code, sizeof(code));
	f = fopen(path, "wb");
	if (!f || fwrite(img, 1, sizeof(img), f) != sizeof(img)) {
		if (f)
			fclose(f);
		return -EIO;
	}
	return fclose(f) ? -EIO : 0;
}

/* The 1-minute load average: on a shared machine it explains outliers. */
static double loadavg_1m(void)
{
	FILE *f = fopen("/proc/loadavg", "r");
	double l = -1;

	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = -1;
		fclose(f);
	}
	return l;
}

static void json_stats(FILE *f, const char *name, const struct stats *s, bool last)
{
	fprintf(f, "    \"%s\": {\"requests\": %u, \"failed\": %u, \"p50_us\": %.1f, \"p99_us\": %.1f, "
		   "\"max_us\": %.1f, \"mean_us\": %.1f}%s\n",
		name, s->n, s->failed, s->p50, s->p99, s->max, s->mean, last ? "" : ",");
}

int main(int argc, char **argv)
{
	const char *vmm = "build/vmm", *out = "build/bench/api.json";
	unsigned nreq = 2000, nstarts = 20, ready_fail = 0, nready = 0, nfirst = 0;
	struct stats ping, info, ready, first;
	char dir[] = "/tmp/vmm-api-bench-XXXXXX", sock[96], elf[96], cfg[256];
	double *rv, *fv;
	bool have_kvm = access("/dev/kvm", R_OK | W_OK) == 0, pass;
	pid_t pid;
	FILE *f;
	int opt;

	static const struct option opts[] = {
		{ "vmm", required_argument, NULL, 'v' }, { "out", required_argument, NULL, 'o' },
		{ "requests", required_argument, NULL, 'n' }, { "starts", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'v': vmm = optarg; break;
		case 'o': out = optarg; break;
		case 'n': nreq = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': nstarts = (unsigned)strtoul(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: api-bench --vmm PATH --out FILE [--requests N] [--starts N]\n");
			return 2;
		}
	}
	if (!nreq || !nstarts || !mkdtemp(dir))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	snprintf(sock, sizeof(sock), "%s/api.sock", dir);
	snprintf(elf, sizeof(elf), "%s/halt.elf", dir);

	/* Launch to socket accepting, each start a fresh process. */
	rv = calloc(nstarts, sizeof(*rv));
	fv = calloc(nstarts, sizeof(*fv));
	for (unsigned i = 0; i < nstarts; i++) {
		double f1 = -1, t = measure_ready(vmm, sock, &pid, &f1);

		if (t < 0)
			ready_fail++;
		else
			rv[nready++] = t;
		if (f1 >= 0)
			fv[nfirst++] = f1;
		stop_serve(sock, pid);
	}
	summarize(rv, nready, ready_fail, &ready);
	summarize(fv, nfirst, nstarts - nfirst, &first);
	free(rv);
	free(fv);

	if (measure_ready(vmm, sock, &pid, NULL) < 0) {
		fprintf(stderr, "api-bench: vmm serve did not start\n");
		return 1;
	}
	bench_latency(sock, "vmm.ping", nreq, &ping);
	memset(&info, 0, sizeof(info));
	if (have_kvm && !write_halt_guest(elf)) {
		snprintf(cfg, sizeof(cfg), "{\"kernel\": \"%s\", \"memory_mib\": 16, \"console\": \"none\"}", elf);
		if (request(sock, "vm.create", cfg) == 200 && request(sock, "vm.boot", NULL) == 200)
			bench_latency(sock, "vm.info", nreq, &info);
	}
	stop_serve(sock, pid);
	unlink(elf);
	rmdir(dir);

	/* Readiness is judged on the median: single starts on a shared, loaded
	 * machine see scheduler outliers (the max is reported too). */
	pass = ping.n && ping.p99 < TARGET_P99_US && ready.n && ready.p50 < TARGET_READY_US &&
	       (!have_kvm || (info.n && info.p99 < TARGET_P99_US));
	f = fopen(out, "w");
	if (!f) {
		fprintf(stderr, "api-bench: cannot write %s\n", out);
		return 1;
	}
	fprintf(f, "{\n  \"benchmark\": \"api\",\n  \"transport\": \"unix socket, one connection per request\",\n");
	fprintf(f, "  \"host\": {\"cpus\": %ld, \"loadavg_1m\": %.2f},\n", sysconf(_SC_NPROCESSORS_ONLN),
		loadavg_1m());
	fprintf(f, "  \"latency\": {\n");
	json_stats(f, "vmm.ping", &ping, false);
	json_stats(f, "vm.info", &info, true);
	fprintf(f, "  },\n  \"socket_ready\": {\"starts\": %u, \"failed\": %u, \"p50_ms\": %.3f, "
		   "\"max_ms\": %.3f, \"mean_ms\": %.3f},\n",
		ready.n, ready.failed, ready.p50 / 1000, ready.max / 1000, ready.mean / 1000);
	fprintf(f, "  \"first_reply\": {\"starts\": %u, \"failed\": %u, \"p50_ms\": %.3f, "
		   "\"max_ms\": %.3f, \"mean_ms\": %.3f},\n",
		first.n, first.failed, first.p50 / 1000, first.max / 1000, first.mean / 1000);
	fprintf(f, "  \"targets\": {\"p99_ms\": %.1f, \"socket_ready_p50_ms\": %.1f},\n  \"pass\": %s\n}\n",
		TARGET_P99_US / 1000, TARGET_READY_US / 1000, pass ? "true" : "false");
	fclose(f);

	printf("%-26s %10s %10s %10s %8s\n", "api benchmark", "p50", "p99", "max", "n");
	printf("%-26s %8.1fus %8.1fus %8.1fus %8u\n", "vmm.ping latency", ping.p50, ping.p99, ping.max, ping.n);
	if (info.n)
		printf("%-26s %8.1fus %8.1fus %8.1fus %8u\n", "vm.info latency (running)", info.p50,
		       info.p99, info.max, info.n);
	else
		printf("%-26s %10s\n", "vm.info latency", have_kvm ? "FAILED" : "skipped (no /dev/kvm)");
	printf("%-26s %8.2fms %10s %8.2fms %8u\n", "serve start -> accepting", ready.p50 / 1000, "",
	       ready.max / 1000, ready.n);
	printf("%-26s %8.2fms %10s %8.2fms %8u\n", "serve start -> first ping", first.p50 / 1000, "",
	       first.max / 1000, first.n);
	printf("host load average (1 min): %.2f on %ld CPUs\n", loadavg_1m(), sysconf(_SC_NPROCESSORS_ONLN));
	printf("targets: request p99 < %.0f ms, socket ready (p50) < %.0f ms: %s  (%s)\n", TARGET_P99_US / 1000,
	       TARGET_READY_US / 1000, pass ? "met" : "NOT met", out);
	return 0;
}
