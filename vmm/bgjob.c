#include "vmm/bgjob.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

enum { BGJOB_PENDING, BGJOB_BY_THREAD, BGJOB_BY_CALLER };

struct bgjob {
	int (*fn)(void *arg);
	void *arg;
	int who;                     /* BGJOB_*, claimed once with a CAS */
	int refs;                    /* thread + caller; the last one frees */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;                   /* the thread has run the step */
	int ret;
};

/* Small: the steps are a few ioctls. */
#define BGJOB_STACK (64 * 1024)

static bool bgjob_claim(struct bgjob *job, int who)
{
	int expected = BGJOB_PENDING;

	return __atomic_compare_exchange_n(&job->who, &expected, who, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_ACQUIRE);
}

static void bgjob_put(struct bgjob *job)
{
	if (__atomic_sub_fetch(&job->refs, 1, __ATOMIC_ACQ_REL))
		return;
	pthread_mutex_destroy(&job->lock);
	pthread_cond_destroy(&job->cond);
	free(job);
}

static void *bgjob_thread(void *opaque)
{
	struct bgjob *job = opaque;

	/* Claimed by the caller already: @arg may be gone, touch only @job. */
	if (bgjob_claim(job, BGJOB_BY_THREAD)) {
		int ret = job->fn(job->arg);

		pthread_mutex_lock(&job->lock);
		job->ret = ret;
		job->done = true;
		pthread_cond_signal(&job->cond);
		pthread_mutex_unlock(&job->lock);
	}
	bgjob_put(job);
	return NULL;
}

struct bgjob *bgjob_start(int (*fn)(void *arg), void *arg)
{
	struct bgjob *job = calloc(1, sizeof(*job));
	pthread_attr_t attr;
	pthread_t thread;
	int ret;

	if (!job)
		return NULL;
	job->fn = fn;
	job->arg = arg;
	job->who = BGJOB_PENDING;
	job->refs = 2;
	pthread_mutex_init(&job->lock, NULL);
	pthread_cond_init(&job->cond, NULL);
	/* Detached: the caller never waits for the thread itself, only for the
	 * step when the thread has taken it. */
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, BGJOB_STACK);
	ret = pthread_create(&thread, &attr, bgjob_thread, job);
	pthread_attr_destroy(&attr);
	if (ret) {
		job->refs = 1;
		bgjob_put(job);
		return NULL;
	}
	return job;
}

static int bgjob_wait(struct bgjob *job)
{
	int ret;

	pthread_mutex_lock(&job->lock);
	while (!job->done)
		pthread_cond_wait(&job->cond, &job->lock);
	ret = job->ret;
	pthread_mutex_unlock(&job->lock);
	return ret;
}

int bgjob_finish(struct bgjob *job, int (*fn)(void *arg), void *arg)
{
	int ret;

	if (!job)
		return fn(arg);
	ret = bgjob_claim(job, BGJOB_BY_CALLER) ? job->fn(job->arg) : bgjob_wait(job);
	bgjob_put(job);
	return ret;
}

void bgjob_cancel(struct bgjob *job)
{
	if (!job)
		return;
	if (!bgjob_claim(job, BGJOB_BY_CALLER))
		bgjob_wait(job);
	bgjob_put(job);
}
