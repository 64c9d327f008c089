/* The migration stream without a VM: how close the page path comes to a plain
 * socket copy of the same bytes, on the same machine, in one run.
 *
 * Sender: the source's lane code (migrate_lane.c) in stable mode, as for a
 * paused guest: pages checked for zeroes, batched into PAGES frames,
 * checksummed and sent in place with io_uring. Receiver: the stream layer's
 * mig_recv_begin/part/end, the calls the destination's receive_pages() makes,
 * with the data received in place into a memfd and its checksum verified.
 * The destination memory is prefaulted with the --prefault job (populate.c).
 * The plain copy sends the same buffer in 1 MiB writes into a memfd
 * prefaulted the same way.
 *
 * "untouched" receives into memory that was only populated (the prefault's
 * reads stopped at once): on a host that is itself a VM with shadow paging,
 * the receiver's first access to each page traps to the outer hypervisor,
 * which is what the prefault's reads take off the stream.
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
	int ret;
	char err[600];
};

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint8_t *map_memfd(size_t size)
{
	int fd = memfd_create("stream-bench", MFD_CLOEXEC);
	uint8_t *p;

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		perror("stream_bench: memfd");
		exit(1);
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror("stream_bench: mmap");
		exit(1);
	}
	return p;
}

/* Destination memory as a --prefault destination has it; @touch false stops
 * the prefault's reads before they start. */
static uint8_t *prefaulted(size_t size, bool touch)
{
	uint8_t *p = map_memfd(size);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct prefault_job job;

	if (prefault_start(&job, p, size, cpus > 0 ? (unsigned)cpus : 1)) {
		fprintf(stderr, "stream_bench: cannot start the prefault\n");
		exit(1);
	}
	if (!touch)
		prefault_stop_touching(&job);
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

static int recv_plain(int fd, uint8_t *dst, size_t size)
{
	for (size_t off = 0; off < size;) {
		ssize_t r = recv(fd, dst + off, size - off < CHUNK ? size - off : CHUNK, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -EIO;
		off += (size_t)r;
	}
	return 0;
}

/* What receive_pages() does for a frame, less the checks against a VM. */
static int recv_frame(struct mig_stream *s, uint8_t *dst, size_t size, size_t *got)
{
	static uint64_t entries[MIG_PAGES_PER_FRAME];
	struct iovec iov[MIG_PAGES_PER_FRAME];
	struct mig_rx rx;
	uint8_t head[8];
	unsigned n = 0;
	uint32_t count;
	int r = mig_recv_begin(s, &rx, MIG_TYPE_BIT(MIG_PAGES));

	if (!r)
		r = mig_recv_part(s, &rx, &(struct iovec){ head, 8 }, 1);
	if (r)
		return r;
	count = mig_get_u32(head);
	if (!count || count > MIG_PAGES_PER_FRAME)
		return -EPROTO;
	r = mig_recv_part(s, &rx, &(struct iovec){ entries, 8 * (size_t)count }, 1);
	if (r)
		return r;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t e = mig_get_u64((const uint8_t *)&entries[i]), off = e & ~(uint64_t)(MIG_PAGE_SIZE - 1);

		if (off >= size)
			return -EPROTO;
		if (e & MIG_PAGE_ZERO)
			continue;
		if (n && (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == dst + off)
			iov[n - 1].iov_len += MIG_PAGE_SIZE;
		else
			iov[n++] = (struct iovec){ dst + off, MIG_PAGE_SIZE };
	}
	r = n ? mig_recv_part(s, &rx, iov, n) : 0;
	if (!r)
		r = mig_recv_end(s, &rx);
	*got += (size_t)count * MIG_PAGE_SIZE;
	return r;
}

static int recv_stream(int fd, uint8_t *dst, size_t size)
{
	struct mig_stream s;
	size_t got = 0;
	int r = 0;

	mig_stream_init(&s, fd);
	while (!r && got < size)
		r = recv_frame(&s, dst, size, &got);
	if (r)
		fprintf(stderr, "stream_bench: receive: %s\n", s.err[0] ? s.err : strerror(-r));
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

/* One transfer of @size bytes of @src; returns MiB/s. */
static double transfer(const char *url, const uint8_t *src, size_t size, bool stream, bool touch)
{
	uint8_t *dst = prefaulted(size, touch);
	struct xfer x = { .src = src, .size = size, .stream = stream };
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
	r = stream ? recv_stream(fds[1], dst, size) : recv_plain(fds[1], dst, size);
	pthread_join(t, NULL);
	dt = now_s() - t0;
	if (r || x.ret || memcmp(src, dst, size)) {
		fprintf(stderr, "stream_bench: %s %s transfer failed%s%s\n", url, stream ? "stream" : "plain",
			x.err[0] ? ": " : "", x.err);
		exit(1);
	}
	close(fds[0]);
	close(fds[1]);
	munmap(dst, size);
	return (double)size / (1 << 20) / dt;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

struct result {
	double plain, stream, untouched;
};

/* Medians of @runs, the three kinds interleaved so drift hits all alike. */
static struct result measure(const char *url, const uint8_t *src, size_t size, unsigned runs)
{
	double p[MAX_RUNS], s[MAX_RUNS], u[MAX_RUNS];

	for (unsigned i = 0; i < runs; i++) {
		p[i] = transfer(url, src, size, false, true);
		s[i] = transfer(url, src, size, true, true);
		u[i] = transfer(url, src, size, true, false);
	}
	qsort(p, runs, sizeof(double), cmp_double);
	qsort(s, runs, sizeof(double), cmp_double);
	qsort(u, runs, sizeof(double), cmp_double);
	return (struct result){ p[runs / 2], s[runs / 2], u[runs / 2] };
}

static void usage(FILE *f)
{
	fprintf(f, "usage: stream_bench [--size-mib N] [--runs N] [--out FILE]\n"
		   "  The migration page stream (lane sender, stream receiver) against a plain\n"
		   "  socket copy of the same bytes into prefaulted memory, over a UNIX socket\n"
		   "  and loopback TCP. No VM, no /dev/kvm. Medians of --runs (default 3).\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size-mib", required_argument, NULL, 's' }, { "runs", required_argument, NULL, 'r' },
		{ "out", required_argument, NULL, 'o' },      { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *urls[2] = { NULL, "tcp:127.0.0.1:47391" }, *names[2] = { "unix", "tcp" }, *out = NULL;
	char unix_url[128];
	size_t size = 1024u << 20;
	unsigned runs = 3;
	struct result res[2];
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
	snprintf(unix_url, sizeof(unix_url), "unix:/tmp/vmm-stream-bench-%d.sock", (int)getpid());
	urls[0] = unix_url;

	/* Source pages with data everywhere (no zero page to skip), written from
	 * this process as a guest's RAM would have been read before. */
	uint8_t *src = map_memfd(size);
	for (size_t off = 0; off < size; off += 8)
		*(uint64_t *)(src + off) = off * 0x9e3779b97f4a7c15ull | 1;

	for (unsigned i = 0; i < 2; i++) {
		res[i] = measure(urls[i], src, size, runs);
		printf("%-4s plain copy %6.0f MiB/s, stream %6.0f MiB/s (%.2f of plain), "
		       "into untouched memory %6.0f MiB/s (%.2f)\n",
		       names[i], res[i].plain, res[i].stream, res[i].stream / res[i].plain, res[i].untouched,
		       res[i].untouched / res[i].plain);
	}
	if (out) {
		FILE *f = fopen(out, "w");

		if (!f) {
			perror(out);
			return 1;
		}
		fprintf(f, "{\n  \"benchmark\": \"migration stream, no VM\",\n  \"size_mib\": %zu,\n  \"runs\": %u,\n",
			size >> 20, runs);
		for (unsigned i = 0; i < 2; i++)
			fprintf(f,
				"  \"%s\": {\"plain_mib_s\": %.0f, \"stream_mib_s\": %.0f, \"stream_ratio\": %.3f, "
				"\"untouched_mib_s\": %.0f, \"untouched_ratio\": %.3f}%s\n",
				names[i], res[i].plain, res[i].stream, res[i].stream / res[i].plain, res[i].untouched,
				res[i].untouched / res[i].plain, i ? "" : ",");
		fprintf(f, "}\n");
		fclose(f);
	}
	munmap(src, size);
	return 0;
}
