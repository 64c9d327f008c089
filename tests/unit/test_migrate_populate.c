/* The destination's populate helper: faults runs in from their far end, a
 * chunk at a time, drops stale work when the receiver posts new runs, never
 * changes a byte of RAM, and is quiet once stopped. */
#include <criterion/criterion.h>
#include <errno.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "migration/populate.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define MAX_CALLS 64

static struct {
	pthread_mutex_t lock;
	uintptr_t addr[MAX_CALLS];
	size_t len[MAX_CALLS];
	int advice[MAX_CALLS];
	unsigned n;
	sem_t *hold;             /* when set, the first call waits on it */
	sem_t entered;           /* posted as a held call starts */
} rec = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int record_madvise(void *addr, size_t len, int advice)
{
	pthread_mutex_lock(&rec.lock);
	unsigned i = rec.n < MAX_CALLS ? rec.n++ : MAX_CALLS - 1;
	rec.addr[i] = (uintptr_t)addr;
	rec.len[i] = len;
	rec.advice[i] = advice;
	sem_t *hold = i == 0 ? rec.hold : NULL;
	pthread_mutex_unlock(&rec.lock);
	if (hold) {
		sem_post(&rec.entered);
		sem_wait(hold);
	}
	return 0;
}

static void reset_recorder(void)
{
	rec.n = 0;
	rec.hold = NULL;
	sem_init(&rec.entered, 0, 0);
}

static void wait_populated(struct populate_helper *h, uint64_t bytes)
{
	for (int i = 0; i < 5000 && __atomic_load_n(&h->bytes_populated, __ATOMIC_RELAXED) < bytes; i++)
		usleep(1000);
	cr_assert_eq(__atomic_load_n(&h->bytes_populated, __ATOMIC_RELAXED), bytes);
}

Test(populate, runs_backwards_from_the_far_end_in_chunks)
{
	static uint8_t ram[8 * POPULATE_CHUNK];
	struct iovec runs[2] = {
		{ ram, 2 * POPULATE_CHUNK + 4096 },                     /* 3 calls: 4096, chunk, chunk from its end */
		{ ram + 4 * POPULATE_CHUNK, POPULATE_CHUNK },           /* 1 call */
	};
	struct populate_helper h;

	reset_recorder();
	cr_assert_eq(populate_start(&h, record_madvise), 0);
	populate_post(&h, runs, 2);
	wait_populated(&h, 3 * POPULATE_CHUNK + 4096);
	populate_stop(&h);

	uintptr_t b = (uintptr_t)ram;
	uintptr_t want_addr[] = { b + 4 * POPULATE_CHUNK, b + POPULATE_CHUNK + 4096, b + 4096, b };
	size_t want_len[] = { POPULATE_CHUNK, POPULATE_CHUNK, POPULATE_CHUNK, 4096 };
	cr_assert_eq(rec.n, 4);
	for (unsigned i = 0; i < 4; i++) {
		cr_expect_eq(rec.addr[i], want_addr[i], "call %u at +%#lx", i, (unsigned long)(rec.addr[i] - b));
		cr_expect_eq(rec.len[i], want_len[i], "call %u", i);
		cr_expect_eq(rec.advice[i], MADV_POPULATE_WRITE);
	}
}

Test(populate, new_runs_drop_what_is_left_of_the_old)
{
	static uint8_t ram[16 * POPULATE_CHUNK];
	struct iovec old_run = { ram, 8 * POPULATE_CHUNK }, new_run = { ram + 8 * POPULATE_CHUNK, POPULATE_CHUNK };
	struct populate_helper h;
	sem_t hold;

	reset_recorder();
	sem_init(&hold, 0, 0);
	rec.hold = &hold;
	cr_assert_eq(populate_start(&h, record_madvise), 0);
	populate_post(&h, &old_run, 1);
	sem_wait(&rec.entered);          /* the helper is inside the old run's first chunk */
	populate_post(&h, &new_run, 1);  /* the receiver moved on */
	sem_post(&hold);
	wait_populated(&h, 2 * POPULATE_CHUNK);
	populate_stop(&h);

	cr_assert_eq(rec.n, 2, "%u calls: the old run was not dropped", rec.n);
	cr_expect_eq(rec.addr[0], (uintptr_t)(ram + 7 * POPULATE_CHUNK));
	cr_expect_eq(rec.addr[1], (uintptr_t)new_run.iov_base);
	sem_destroy(&hold);
}

Test(populate, stopped_helper_makes_no_more_calls)
{
	static uint8_t ram[4 * POPULATE_CHUNK];
	struct iovec run = { ram, sizeof(ram) };
	struct populate_helper h, never;

	memset(&never, 0, sizeof(never));
	populate_stop(&never);           /* never started: nothing to join */
	populate_post(&never, &run, 1);  /* and nothing to post to */

	reset_recorder();
	cr_assert_eq(populate_start(&h, record_madvise), 0);
	populate_stop(&h);
	populate_post(&h, &run, 1);
	usleep(20000);
	cr_expect_eq(rec.n, 0);
}

/* With the real madvise on a memfd, as the destination's RAM: racing a
 * writer changes nothing it wrote, and untouched pages read as zeroes. */
Test(populate, real_madvise_changes_no_byte)
{
	size_t size = 64 * POPULATE_CHUNK;
	int fd = memfd_create("populate-test", 0);
	struct populate_helper h;
	uint8_t *ram;

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(ram, MAP_FAILED);
	if (!populate_supported()) {
		cr_log_warn("no MADV_POPULATE_WRITE here");
		goto out;
	}
	cr_assert_eq(populate_start(&h, NULL), 0);
	for (int round = 0; round < 8; round++) {
		struct iovec run = { ram, size };

		populate_post(&h, &run, 1);
		/* The receiver's part: write the front half while the helper works from the back. */
		for (size_t off = 0; off < size / 2; off += 4096)
			memset(ram + off, 0xa0 + round, 4096);
	}
	for (int i = 0; i < 5000 && !__atomic_load_n(&h.bytes_populated, __ATOMIC_RELAXED); i++)
		usleep(1000);
	populate_stop(&h);
	for (size_t off = 0; off < size; off += 4096) {
		uint8_t want = off < size / 2 ? 0xa0 + 7 : 0;

		cr_assert(ram[off] == want && ram[off + 4095] == want, "page at %#zx: %#x", off, ram[off]);
	}
	cr_expect_eq(h.bytes_populated > 0, true);
out:
	munmap(ram, size);
	close(fd);
}

Test(populate, helpers_only_for_spare_cpus)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	cr_expect_eq(populate_helpers_for((unsigned)cpus), 0);
	if (!populate_supported())
		return; /* old kernel: no helpers at all */
	cr_expect_eq(populate_helpers_for(1), cpus >= 2 ? 1u : 0u);
	cr_expect_eq(populate_helpers_for((unsigned)cpus / 2), (unsigned)cpus / 2);
}

/* --prefault's job: every page of the range resident once it is done. */
Test(populate, prefault_job_backs_every_page)
{
	size_t size = 8u << 20, pages = size / 4096;
	int fd = memfd_create("prefault-test", 0);
	struct prefault_job job;
	unsigned char *vec = malloc(pages);
	uint8_t *ram;

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(ram, MAP_FAILED);
	cr_assert_eq(mincore(ram, size, vec), 0);
	cr_assert_eq(vec[0] & 1, 0, "fresh memfd page already resident");
	if (!populate_supported()) {
		cr_assert_eq(prefault_start(&job, ram, size, 3, false), 0);
		cr_expect_eq(prefault_wait(&job, 5000), -EINVAL);
		cr_expect_eq(prefault_finish(&job), -EINVAL);
		goto out;
	}
	cr_assert_eq(prefault_start(&job, ram, size, 3, false), 0); /* uneven slices: 3 threads */
	cr_assert_eq(prefault_wait(&job, 10000), 0);
	cr_assert_eq(prefault_finish(&job), 0);
	cr_assert_eq(job.bytes_touched, 0, "read pages it was not asked to");
	cr_assert_eq(mincore(ram, size, vec), 0);
	for (size_t i = 0; i < pages; i++)
		cr_assert(vec[i] & 1, "page %zu not resident after the prefault", i);
	for (size_t i = 0; i < size; i += 4096)
		cr_assert_eq(ram[i], 0);
out:
	free(vec);
	munmap(ram, size);
	close(fd);
}

static uint8_t *map_memfd(size_t size)
{
	int fd = memfd_create("prefault-test", 0);
	uint8_t *ram;

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(ram, MAP_FAILED);
	close(fd);
	return ram;
}

/* Every page of every (uneven) slice is read once it is populated. */
Test(populate, prefault_job_reads_every_page_once_populated)
{
	size_t size = (8u << 20) + 3 * 4096;
	uint8_t *ram = map_memfd(size);
	struct prefault_job job;

	if (!populate_supported())
		cr_skip_test("no MADV_POPULATE_WRITE");
	cr_assert_eq(prefault_start(&job, ram, size, 3, true), 0);
	cr_assert_eq(prefault_wait(&job, 10000), 0);
	cr_assert_eq(prefault_finish(&job), 0);
	cr_assert_eq(job.bytes_touched, size);
	munmap(ram, size);
}

/* Once prefault_stop_touching() returns no page is read any more (the stream
 * may punch holes from then on), while population runs to the end. */
Test(populate, no_reads_after_stop_touching)
{
	size_t size = 256u << 20, pages = size / 4096;
	uint8_t *ram = map_memfd(size);
	unsigned char *vec = malloc(pages);
	struct prefault_job job;

	if (!populate_supported())
		cr_skip_test("no MADV_POPULATE_WRITE");
	cr_assert_eq(prefault_start(&job, ram, size, 1, true), 0);
	prefault_stop_touching(&job);
	uint64_t at_stop = __atomic_load_n(&job.bytes_touched, __ATOMIC_SEQ_CST);
	cr_assert_eq(prefault_finish(&job), 0);
	cr_assert_eq(job.bytes_touched, at_stop, "pages read after stop: %llu bytes",
		     (unsigned long long)(job.bytes_touched - at_stop));
	cr_assert_lt(at_stop, size);
	cr_assert_eq(mincore(ram, size, vec), 0);
	for (size_t i = 0; i < pages; i++)
		cr_assert(vec[i] & 1, "page %zu not resident: population must go on", i);
	free(vec);
	munmap(ram, size);
}
