/* The migration page stream without a VM: how close it comes to a plain
 * socket copy of the same bytes, on the same machine, in one run.
 *
 * Sender: the source's lane code (migrate_lane.c) in stable mode, as for a
 * paused guest (or as in a live pass, each page judged zero on its copy):
 * pages checked for zeroes, copied into PAGES frames, checksummed and sent with io_uring. Receiver: the destination's
 * own page receiver (page_rx.c), in both of its modes (written with
 * pwrite(), or received in place), into a fresh memfd or one prefaulted by
 * the --prefault job (populate.c). The plain copy sends the same buffer in
 * 1 MiB writes into the same kinds of memory. "in place, unread" receives
 * into memory that was only populated: on a host that is itself a VM with
 * shadow paging, the receiver's first access to each page traps to the outer
 * hypervisor. The "cold source" cases send memory this process never read,
 * as a migration source's guest RAM is (see cold_source()).
 *
 * Needs no /dev/kvm. Writes JSON with --out. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "migration/migrate_lane.h"
#include "migration/page_rx.h"
#include "migration/populate.h"
#include "migration/stream.h"
#include "migration/transport.h"

#define CHUNK (1u << 20)
#define MAX_RUNS 9

struct xfer {
	int fd;
	const uint8_t *src;
	size_t size;
	bool stream;
	bool live;                   /* the lane as in a live pass (each page judged zero on its copy), not stable */
	int ret;
	char err[600];
};

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint8_t *map_memfd(size_t size, int *fd_out)
{
	int fd = memfd_create("stream-bench", MFD_CLOEXEC);
	uint8_t *p;

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		perror("stream_bench: memfd");
		exit(1);
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		perror("stream_bench: mmap");
		exit(1);
	}
	if (fd_out)
		*fd_out = fd;
	else
		close(fd);
	return p;
}

/* Destination memory: a fresh memfd, or one as a --prefault destination
 * has it (@read: the prefault also read every page). */
static uint8_t *destination(size_t size, bool prefault, bool read, int *fd)
{
	uint8_t *p = map_memfd(size, fd);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct prefault_job job;

	if (!prefault)
		return p;
	if (prefault_start(&job, p, size, cpus > 0 ? (unsigned)cpus : 1, read)) {
		fprintf(stderr, "stream_bench: cannot start the prefault\n");
		exit(1);
	}
	if (prefault_finish(&job)) {
		fprintf(stderr, "stream_bench: prefault failed (MADV_POPULATE_WRITE needs Linux 5.14)\n");
		exit(1);
	}
	return p;
}

static int send_plain(struct xfer *x)
{
	for (size_t off = 0; off < x->size;) {
		ssize_t r = send(x->fd, x->src + off, x->size - off < CHUNK ? x->size - off : CHUNK, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(x->err, sizeof(x->err), "send: %s", r ? strerror(errno) : "closed");
			return -EIO;
		}
		off += (size_t)r;
	}
	return 0;
}

static int send_stream(struct xfer *x)
{
	struct mig_lane l;
	int r = lane_init(&l, x->fd);

	if (r)
		return r;
	if (!x->live)
		lane_set_stable(&l);
	for (size_t off = 0; off < x->size && r >= 0; off += MIG_PAGE_SIZE)
		r = lane_copy_page(&l, off, x->src + off, true);
	if (r >= 0)
		r = lane_flush(&l);
	if (r < 0)
		snprintf(x->err, sizeof(x->err), "%s", l.s.err[0] ? l.s.err : strerror(-r));
	l.s.fd = -1;   /* the caller closes it */
	lane_destroy(&l);
	return r < 0 ? r : 0;
}

static void *sender(void *arg)
{
	struct xfer *x = arg;

	x->ret = x->stream ? send_stream(x) : send_plain(x);
	shutdown(x->fd, SHUT_WR);
	return NULL;
}

/* Into @dst, or over and over into @buf if given. */
static int recv_plain(int fd, uint8_t *dst, size_t size, uint8_t *buf)
{
	for (size_t off = 0; off < size;) {
		size_t want = size - off < CHUNK ? size - off : CHUNK;
		ssize_t r = recv(fd, buf ? buf + off % CHUNK : dst + off, buf ? CHUNK - off % CHUNK : want, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -EIO;
		off += (size_t)r;
	}
	return 0;
}

static int recv_stream(int fd, uint8_t *dst, int ram_fd, size_t size, enum page_rx_mode mode)
{
	struct page_ram ram = { .base = dst, .size = size, .fd = ram_fd, .mode = mode, .nr_lanes = 1 };
	struct page_rx rx;
	struct mig_stream s;
	int r = page_rx_init(&rx, 0, mode);

	mig_stream_init(&s, fd);
	s.recv_timeout_ms = 30000;   /* as the destination's: a poll() before each receive */
	while (!r && rx.pages + rx.zero_pages < size / MIG_PAGE_SIZE) {
		struct mig_rx f;

		r = mig_recv_begin(&s, &f, MIG_TYPE_BIT(MIG_PAGES));
		if (!r)
			r = page_rx_frame(&rx, &s, &f, &ram);
	}
	if (r)
		fprintf(stderr, "stream_bench: receive: %s\n", s.err[0] ? s.err : strerror(-r));
	page_rx_destroy(&rx);
	s.fd = -1;   /* the caller closes it */
	mig_stream_close(&s);
	return r;
}

/* A connected pair over @url's transport. */
static void connect_pair(const char *url, int fds[2])
{
	struct mig_url u;
	char err[256];
	int l;

	if (mig_url_parse(url, &u, err, sizeof(err)) || (l = mig_listen(&u, err, sizeof(err))) < 0 ||
	    (fds[0] = mig_connect(&u, err, sizeof(err))) < 0 || (fds[1] = mig_accept(l, 5000, -1, err, sizeof(err))) < 0) {
		fprintf(stderr, "stream_bench: %s: %s\n", url, err);
		exit(1);
	}
	close(l);
	if (u.kind == MIG_TRANSPORT_UNIX)
		unlink(u.path);
}

enum dst_kind {
	DST_BUFFER,                  /* a 1 MiB buffer used over and over: the socket alone */
	DST_FRESH,                   /* a fresh memfd */
	DST_PREFAULTED,              /* a memfd prefaulted by the --prefault job */
	DST_PREFAULTED_READ,         /* ... which also read every page */
};

struct bench_case {
	const char *name;
	bool stream;
	enum page_rx_mode mode;
	enum dst_kind dst;
	bool live;                   /* see struct xfer */
	bool cold;                   /* a source this process has never accessed (see cold_source) */
};

/* Every case is compared with the first: the socket's own limit. */
static const struct bench_case cases[] = {
	{ "plain copy into one 1 MiB buffer", false, PAGE_RX_WRITE, DST_BUFFER, false, false },
	{ "plain copy into fresh memory", false, PAGE_RX_WRITE, DST_FRESH, false, false },
	{ "plain copy into prefaulted memory", false, PAGE_RX_WRITE, DST_PREFAULTED, false, false },
	{ "stream written, fresh memory", true, PAGE_RX_WRITE, DST_FRESH, false, false },
	{ "stream written, prefaulted", true, PAGE_RX_WRITE, DST_PREFAULTED, false, false },
	{ "stream written, prefaulted, live-pass source", true, PAGE_RX_WRITE, DST_PREFAULTED, true, false },
	{ "stream in place, fresh memory", true, PAGE_RX_IN_PLACE, DST_FRESH, false, false },
	{ "stream in place, prefaulted and read", true, PAGE_RX_IN_PLACE, DST_PREFAULTED_READ, false, false },
	{ "stream in place, prefaulted unread", true, PAGE_RX_IN_PLACE, DST_PREFAULTED, false, false },
	{ "plain copy into one 1 MiB buffer, cold source", false, PAGE_RX_WRITE, DST_BUFFER, false, true },
	{ "stream written, prefaulted, cold source", true, PAGE_RX_WRITE, DST_PREFAULTED, false, true },
	{ "stream written, prefaulted, cold source, live-pass source", true, PAGE_RX_WRITE, DST_PREFAULTED, true, true },
};
#define NR_CASES (sizeof(cases) / sizeof(cases[0]))

/* The source's bytes: a word of each 8 derived from its offset, never zero. */
static void fill_pattern(uint8_t *p, size_t off, size_t len)
{
	for (size_t i = 0; i < len; i += 8)
		*(uint64_t *)(p + i) = (off + i) * 0x9e3779b97f4a7c15ull | 1;
}

/* The same bytes as @src in a new memfd written with pwrite(), the way a
 * vCPU's writes reach guest RAM: never through this process's mapping. On a
 * host that is a VM with shadow paging, a migration source's first access to
 * each guest page traps (from user mode, and again from the kernel's copy in
 * send()); the other cases read a source this process has read before. */
static uint8_t *cold_source(size_t size)
{
	uint8_t *chunk = malloc(CHUNK);
	int fd;
	uint8_t *p = map_memfd(size, &fd);   /* mapped, never accessed through the mapping */

	if (!chunk) {
		perror("stream_bench: cold source");
		exit(1);
	}
	for (size_t off = 0; off < size; off += CHUNK) {
		size_t len = size - off < CHUNK ? size - off : CHUNK;

		fill_pattern(chunk, off, len);
		if (pwrite(fd, chunk, len, (off_t)off) != (ssize_t)len) {
			perror("stream_bench: cold source");
			exit(1);
		}
	}
	close(fd);
	free(chunk);
	return p;
}

/* One transfer of @size bytes of @src; returns MiB/s. */
static double transfer(const char *url, const uint8_t *warm_src, size_t size, const struct bench_case *c)
{
	const uint8_t *src = c->cold ? cold_source(size) : warm_src;
	int ram_fd;
	uint8_t *dst = destination(size, c->dst == DST_PREFAULTED || c->dst == DST_PREFAULTED_READ,
				   c->dst == DST_PREFAULTED_READ, &ram_fd);
	uint8_t *buf = c->dst == DST_BUFFER ? calloc(1, CHUNK) : NULL;
	struct xfer x = { .src = src, .size = size, .stream = c->stream, .live = c->live };
	int fds[2], r;
	pthread_t t;
	double t0, dt;

	connect_pair(url, fds);
	x.fd = fds[0];
	t0 = now_s();
	if (pthread_create(&t, NULL, sender, &x)) {
		fprintf(stderr, "stream_bench: cannot start the sender\n");
		exit(1);
	}
	r = c->stream ? recv_stream(fds[1], dst, ram_fd, size, c->mode) : recv_plain(fds[1], dst, size, buf);
	pthread_join(t, NULL);
	dt = now_s() - t0;
	if (r || x.ret || (!buf && memcmp(src, dst, size))) {
		fprintf(stderr, "stream_bench: %s, %s: transfer failed%s%s\n", url, c->name, x.err[0] ? ": " : "",
			x.err);
		exit(1);
	}
	if (!buf && c->cold && memcmp(warm_src, dst, size)) {
		fprintf(stderr, "stream_bench: %s, %s: the cold source differs\n", url, c->name);
		exit(1);
	}
	free(buf);
	close(fds[0]);
	close(fds[1]);
	munmap(dst, size);
	close(ram_fd);
	if (c->cold)
		munmap((void *)src, size);
	return (double)size / (1 << 20) / dt;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The socket's limit (case 0) always runs; with --only, of the others just
 * those whose name contains @only. */
static bool case_wanted(unsigned c, const char *only)
{
	return c == 0 || !only || strstr(cases[c].name, only);
}

/* Medians of @runs, the cases interleaved so drift hits all alike. */
static void measure(const char *url, const uint8_t *src, size_t size, unsigned runs, const char *only,
		    double *median)
{
	double v[NR_CASES][MAX_RUNS] = { { 0 } };

	/* Untimed: the first pass over the source (and the first connection)
	 * pays for first accesses that later ones do not. */
	transfer(url, src, size, &cases[0]);
	for (unsigned i = 0; i < runs; i++)
		for (unsigned c = 0; c < NR_CASES; c++)
			if (case_wanted(c, only))
				v[c][i] = transfer(url, src, size, &cases[c]);
	for (unsigned c = 0; c < NR_CASES; c++) {
		qsort(v[c], runs, sizeof(double), cmp_double);
		median[c] = v[c][runs / 2];
	}
}

/* A cold-source stream case against the plain copy of the same cold pages
 * (what a migration source can reach where its first read of each page is
 * what costs); -1 for other cases, or if that copy did not run. */
static double cold_copy_ratio(const double *res, unsigned c)
{
	for (unsigned i = 0; i < NR_CASES; i++)
		if (cases[i].cold && !cases[i].stream)
			return cases[c].cold && cases[c].stream && res[i] > 0 ? res[c] / res[i] : -1;
	return -1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: stream_bench [--size-mib N] [--runs N] [--only TEXT] [--transport unix|tcp]\n"
		   "                    [--out FILE]\n"
		   "  The migration page stream (lane sender, the destination's page receiver in\n"
		   "  both modes) against a plain socket copy of the same bytes, over a UNIX\n"
		   "  socket and loopback TCP. No VM, no /dev/kvm. Medians of --runs (default 3).\n"
		   "  --only: just the cases whose name contains TEXT (and the socket's limit),\n"
		   "  for a profile of one case; --transport: just one of the two.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size-mib", required_argument, NULL, 's' }, { "runs", required_argument, NULL, 'r' },
		{ "out", required_argument, NULL, 'o' },      { "help", no_argument, NULL, 'h' },
		{ "only", required_argument, NULL, 'n' },     { "transport", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *urls[2] = { NULL, "tcp:127.0.0.1:47391" }, *names[2] = { "unix", "tcp" }, *out = NULL;
	const char *only = NULL, *transport = NULL;
	char unix_url[128];
	size_t size = 1024u << 20;
	unsigned runs = 3;
	double res[2][NR_CASES] = { { 0 } };
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			size = (size_t)strtoul(optarg, NULL, 10) << 20;
			break;
		case 'r':
			runs = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'o':
			out = optarg;
			break;
		case 'n':
			only = optarg;
			break;
		case 't':
			transport = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!size || runs < 1 || runs > MAX_RUNS) {
		fprintf(stderr, "stream_bench: --size-mib must be positive and --runs 1..%d\n", MAX_RUNS);
		return 2;
	}
	if (transport && strcmp(transport, "unix") && strcmp(transport, "tcp")) {
		fprintf(stderr, "stream_bench: --transport is unix or tcp, not '%s'\n", transport);
		return 2;
	}
	if (out && (only || transport)) {
		fprintf(stderr, "stream_bench: --out writes every case: not with --only or --transport\n");
		return 2;
	}
	snprintf(unix_url, sizeof(unix_url), "unix:/tmp/vmm-stream-bench-%d.sock", (int)getpid());
	urls[0] = unix_url;

	/* Source pages with data everywhere (no zero page to skip), written from
	 * this process as a guest's RAM would have been read before. */
	uint8_t *src = map_memfd(size, NULL);
	fill_pattern(src, 0, size);

	for (unsigned t = 0; t < 2; t++) {
		if (transport && strcmp(transport, names[t]))
			continue;
		measure(urls[t], src, size, runs, only, res[t]);
		for (unsigned i = 0; i < NR_CASES; i++) {
			double cold = cold_copy_ratio(res[t], i);

			if (!case_wanted(i, only))
				continue;
			printf("%-4s %-44s %6.0f MiB/s  %.2f of the socket", names[t], cases[i].name, res[t][i],
			       res[t][i] / res[t][0]);
			if (cold > 0)
				printf(", %.2f of the cold copy", cold);
			printf("\n");
		}
	}
	if (out) {
		FILE *f = fopen(out, "w");

		if (!f) {
			perror(out);
			return 1;
		}
		fprintf(f, "{\n  \"benchmark\": \"migration page stream, no VM\",\n  \"size_mib\": %zu,\n  \"runs\": %u,\n",
			size >> 20, runs);
		for (unsigned t = 0; t < 2; t++) {
			fprintf(f, "  \"%s\": [\n", names[t]);
			for (unsigned i = 0; i < NR_CASES; i++)
				fprintf(f, "    {\"case\": \"%s\", \"mib_s\": %.0f, \"ratio_to_socket\": %.3f, "
					"\"ratio_to_cold_copy\": %.3f}%s\n",
					cases[i].name, res[t][i], res[t][i] / res[t][0], cold_copy_ratio(res[t], i),
					i + 1 < NR_CASES ? "," : "");
			fprintf(f, "  ]%s\n", t ? "" : ",");
		}
		fprintf(f, "}\n");
		fclose(f);
	}
	munmap(src, size);
	return 0;
}
