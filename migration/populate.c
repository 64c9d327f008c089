/* Faulting in guest RAM ahead of the receiver. See populate.h. */
#include "migration/populate.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

bool populate_supported(void)
{
	/* A zero-length request is checked for a known advice and does nothing
	 * else: EINVAL means the kernel predates MADV_POPULATE_WRITE. */
	return madvise(NULL, 0, MADV_POPULATE_WRITE) == 0;
}

unsigned populate_helpers_for(unsigned receive_threads)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (cpus <= (long)receive_threads || !populate_supported())
		return 0;
	unsigned spare = (unsigned)(cpus - (long)receive_threads);

	return spare < receive_threads ? spare : receive_threads;
}

static bool work_is_current(struct populate_helper *h, uint64_t gen)
{
	return !__atomic_load_n(&h->stop, __ATOMIC_RELAXED) && __atomic_load_n(&h->gen, __ATOMIC_RELAXED) == gen;
}

/* The runs backwards, each from its end, a chunk at a time: the receiver
 * comes from the front, so whatever of the frame is left when they meet is
 * what it already faulted in itself. */
static void populate_runs(struct populate_helper *h, const struct iovec *runs, unsigned n, uint64_t gen)
{
	for (unsigned i = n; i-- > 0;) {
		uint8_t *start = runs[i].iov_base, *end = start + runs[i].iov_len;

		while (end > start) {
			size_t len = (size_t)(end - start) < POPULATE_CHUNK ? (size_t)(end - start) : POPULATE_CHUNK;

			if (!work_is_current(h, gen))
				return;
			end -= len;
			/* Errors (memory full, a hole punched meanwhile) are the
			 * receiver's to meet and report; this is only a head start. */
			if (h->madvise_fn(end, len, MADV_POPULATE_WRITE) == 0)
				__atomic_add_fetch(&h->bytes_populated, len, __ATOMIC_RELAXED);
		}
	}
}

static void *populate_thread(void *arg)
{
	struct populate_helper *h = arg;
	struct iovec runs[POPULATE_MAX_RUNS];
	uint64_t seen = 0;

	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (!h->stop && h->gen == seen)
			pthread_cond_wait(&h->cond, &h->lock);
		if (h->stop)
			break;
		seen = h->gen;
		unsigned n = h->nr_runs;
		memcpy(runs, h->runs, n * sizeof(runs[0]));
		pthread_mutex_unlock(&h->lock);
		populate_runs(h, runs, n, seen);
		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

int populate_start(struct populate_helper *h, int (*madvise_fn)(void *addr, size_t len, int advice))
{
	int ret;

	memset(h, 0, sizeof(*h));
	h->madvise_fn = madvise_fn ? madvise_fn : madvise;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	ret = -pthread_create(&h->thread, NULL, populate_thread, h);
	if (ret) {
		pthread_cond_destroy(&h->cond);
		pthread_mutex_destroy(&h->lock);
		return ret;
	}
	h->started = true;
	return 0;
}

void populate_post(struct populate_helper *h, const struct iovec *runs, unsigned n)
{
	if (!h->started)
		return;
	if (n > POPULATE_MAX_RUNS)
		n = POPULATE_MAX_RUNS;
	pthread_mutex_lock(&h->lock);
	memcpy(h->runs, runs, n * sizeof(runs[0]));
	h->nr_runs = n;
	__atomic_add_fetch(&h->gen, 1, __ATOMIC_RELAXED);
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

void populate_stop(struct populate_helper *h)
{
	if (!h->started)
		return;
	pthread_mutex_lock(&h->lock);
	__atomic_store_n(&h->stop, true, __ATOMIC_RELAXED);
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	h->started = false;
}

#define PREFAULT_TOUCH_CHUNK (64u * 1024)
#define PREFAULT_PAGE 4096u

/* Read a byte of every page of the (populated) slice from user mode, a
 * chunk at a time, each chunk inside the touching count so that
 * prefault_stop_touching() can wait until no read is under way. seq_cst on
 * both sides: either the slice sees no_touch, or the stopper sees it
 * touching (the same pattern as Dekker's). */
static void prefault_touch(struct prefault_job *job, const uint8_t *base, size_t size)
{
	for (size_t off = 0; off < size; off += PREFAULT_TOUCH_CHUNK) {
		size_t end = size - off < PREFAULT_TOUCH_CHUNK ? size : off + PREFAULT_TOUCH_CHUNK;

		__atomic_add_fetch(&job->touching, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&job->no_touch, __ATOMIC_SEQ_CST)) {
			__atomic_sub_fetch(&job->touching, 1, __ATOMIC_SEQ_CST);
			return;
		}
		for (size_t p = off; p < end; p += PREFAULT_PAGE)
			(void)*(const volatile uint8_t *)(base + p);
		__atomic_sub_fetch(&job->touching, 1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&job->bytes_touched, end - off, __ATOMIC_RELAXED);
	}
}

/* One slice of a prefault job per thread; the job counts finished slices. */
static void *prefault_slice_thread(void *arg)
{
	struct prefault_slice *sl = arg;
	struct prefault_job *job = sl->job;
	int ret = madvise(sl->base, sl->size, MADV_POPULATE_WRITE) ? -errno : 0;

	if (!ret)
		prefault_touch(job, sl->base, sl->size);
	pthread_mutex_lock(&job->lock);
	if (ret && !job->ret)
		job->ret = ret;
	job->finished++;
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->lock);
	return NULL;
}

void prefault_stop_touching(struct prefault_job *job)
{
	__atomic_store_n(&job->no_touch, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&job->touching, __ATOMIC_SEQ_CST))
		sched_yield();
}

int prefault_start(struct prefault_job *job, uint8_t *base, size_t size, unsigned threads, bool read_pages)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), per;
	unsigned n = threads < 1 ? 1 : threads > PREFAULT_MAX_THREADS ? PREFAULT_MAX_THREADS : threads;

	memset(job, 0, sizeof(*job));
	job->no_touch = !read_pages;
	pthread_mutex_init(&job->lock, NULL);
	pthread_cond_init(&job->cond, NULL);
	per = (size / n + page - 1) / page * page;
	for (unsigned i = 0; i < n && (size_t)i * per < size; i++) {
		struct prefault_slice *sl = &job->slice[job->nr];
		size_t off = (size_t)i * per;

		*sl = (struct prefault_slice){ .job = job, .base = base + off,
					       .size = size - off < per ? size - off : per };
		if (pthread_create(&sl->thread, NULL, prefault_slice_thread, sl)) {
			int ret = -EAGAIN;

			prefault_finish(job);
			return ret;
		}
		job->nr++;
	}
	return 0;
}

int prefault_wait(struct prefault_job *job, int timeout_ms)
{
	struct timespec end;
	int ret;

	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += timeout_ms / 1000;
	end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (end.tv_nsec >= 1000000000L) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&job->lock);
	while (job->finished < job->nr && !job->ret)
		if (pthread_cond_timedwait(&job->cond, &job->lock, &end) == ETIMEDOUT)
			break;
	ret = job->ret ? job->ret : job->finished < job->nr ? -ETIMEDOUT : 0;
	pthread_mutex_unlock(&job->lock);
	return ret;
}

int prefault_finish(struct prefault_job *job)
{
	for (unsigned i = 0; i < job->nr; i++)
		pthread_join(job->slice[i].thread, NULL);
	job->nr = job->finished = 0;
	pthread_cond_destroy(&job->cond);
	pthread_mutex_destroy(&job->lock);
	return job->ret;
}
