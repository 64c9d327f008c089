/* Faulting in guest RAM ahead of the receiver, on another CPU.
 *
 * A migration destination writes each page of the first pass into memory
 * nobody has touched yet, and taking a fresh page (allocate, clear) can cost
 * far more than copying 4 KiB into it: on a host that is itself a VM whose
 * hypervisor reclaims free memory, about 28 µs a page, one CPU's worth of
 * work at 150 MB/s. The receive thread would do all of that alone, inside
 * recvmsg(). A populate helper takes the frame the receiver is about to read
 * and faults it in from its far end (MADV_POPULATE_WRITE), so the two meet in
 * the middle and the allocation runs on two CPUs. Only where pages are
 * received in place (page_rx.h: RAM without a writable fd); pages written
 * with pwrite() take no fault in this process.
 *
 * MADV_POPULATE_WRITE maps pages writable without changing a byte, so the
 * helper may race the receiver, a later frame, or a zero page's hole punch:
 * what lands in RAM is whatever the receiver wrote. Posting new work drops
 * what is left of the old (the receiver has gone past it). */
#ifndef MIGRATION_POPULATE_H
#define MIGRATION_POPULATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define POPULATE_MAX_RUNS 256u
#define POPULATE_CHUNK (64u * 1024)      /* bytes per madvise: small enough to notice new work soon */

struct populate_helper {
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	uint64_t gen;                    /* bumped by every post; the helper drops older work */
	struct iovec runs[POPULATE_MAX_RUNS];
	unsigned nr_runs;
	uint64_t bytes_populated;        /* madvised (stats, tests) */
	int (*madvise_fn)(void *addr, size_t len, int advice); /* madvise; tests record calls */
};

/* Whether the kernel has MADV_POPULATE_WRITE (Linux 5.14). */
bool populate_supported(void);
/* How many receive threads get a helper: one each while online CPUs are
 * left over for them, none if the kernel lacks MADV_POPULATE_WRITE. */
unsigned populate_helpers_for(unsigned receive_threads);

/* Start the helper thread; -errno if it cannot be created (then run
 * without). @madvise_fn is madvise() unless a test passes a recorder. */
int populate_start(struct populate_helper *h, int (*madvise_fn)(void *addr, size_t len, int advice));
/* Hand over the runs the receiver is about to fill, in the order it fills
 * them (only the first POPULATE_MAX_RUNS are taken). Does not wait. */
void populate_post(struct populate_helper *h, const struct iovec *runs, unsigned n);
/* Stop and join the helper (no madvise runs once this returns). Safe on a
 * helper that never started. */
void populate_stop(struct populate_helper *h);

/* Faulting all of guest RAM in on several threads (--prefault): start, wait
 * up to a deadline, and join (the rest may finish in the background while
 * the stream runs; the receiver's own writes are correct either way).
 *
 * Each slice is populated (MADV_POPULATE_WRITE), then, if asked (for RAM that
 * receives pages in place), read once a page from this process, until
 * prefault_stop_touching(). Populated page tables are
 * not enough on a host that is itself a VM with shadow paging (PVM): the
 * first user-mode access to each page still traps to the outer hypervisor,
 * ~3.7 us a page, which would otherwise fall on the receiver's checksum of
 * the page (measured: 1 GB/s instead of 13). The read never allocates: it
 * runs only on a populated slice and only until the stream may punch holes
 * (a read of a hole in a full RAM file would be SIGBUS). */
#define PREFAULT_MAX_THREADS 16u

struct prefault_job;
struct prefault_slice {
	struct prefault_job *job;
	pthread_t thread;
	uint8_t *base;
	size_t size;
};

struct prefault_job {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct prefault_slice slice[PREFAULT_MAX_THREADS];
	unsigned nr, finished;
	int ret;                         /* the first slice's -errno */
	int no_touch;                    /* set: slices stop reading their pages */
	int touching;                    /* slices inside a chunk of reads */
	uint64_t bytes_touched;          /* stats, tests */
};

/* Start @threads (1..PREFAULT_MAX_THREADS) threads on [@base, @base + @size);
 * @read_pages: read every page once populated (above). */
int prefault_start(struct prefault_job *job, uint8_t *base, size_t size, unsigned threads, bool read_pages);
/* 0 once every slice is in, the first -errno (-ENOMEM; -EFAULT for a full RAM
 * file; -EINVAL without MADV_POPULATE_WRITE) as soon as one fails, or
 * -ETIMEDOUT after @timeout_ms with slices still running. */
int prefault_wait(struct prefault_job *job, int timeout_ms);
/* Stop the reads; once this returns no slice reads a page any more (holes
 * may be punched from now on). Population goes on. */
void prefault_stop_touching(struct prefault_job *job);
/* Join every thread; returns the first -errno, if any. */
int prefault_finish(struct prefault_job *job);

#endif
