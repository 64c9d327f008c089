/* Background setup steps: each runs exactly once, on the thread or in the
 * caller, and its result comes back; a cancelled step that has not begun
 * never runs, so its argument may go at once (ASan checks that). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <unistd.h>

#include "vmm/bgjob.h"

struct step {
	int runs;
	int result;
};

static int step_fn(void *arg)
{
	struct step *s = arg;

	__atomic_add_fetch(&s->runs, 1, __ATOMIC_RELAXED);
	return s->result;
}

Test(bgjob, runs_once_and_returns_the_result)
{
	for (int i = 0; i < 200; i++) {
		struct step s = { .result = -i };
		struct bgjob *job = bgjob_start(step_fn, &s);

		cr_assert_not_null(job);
		if (i % 4 == 0)
			usleep(200);   /* give the thread a chance to take it */
		cr_assert_eq(bgjob_finish(job, step_fn, &s), -i);
		cr_assert_eq(s.runs, 1, "run %d: step ran %d times", i, s.runs);
	}
}

Test(bgjob, without_a_job_the_caller_runs_the_step)
{
	struct step s = { .result = 7 };

	cr_assert_eq(bgjob_finish(NULL, step_fn, &s), 7);
	cr_assert_eq(s.runs, 1);
	bgjob_cancel(NULL);
}

Test(bgjob, cancel_runs_at_most_once_and_frees_the_argument)
{
	for (int i = 0; i < 200; i++) {
		struct step *s = calloc(1, sizeof(*s));
		struct bgjob *job = bgjob_start(step_fn, s);

		cr_assert_not_null(job);
		if (i % 2)
			usleep(100);
		bgjob_cancel(job);
		cr_assert_leq(s->runs, 1);
		free(s);   /* the thread must not touch it any more */
	}
	usleep(20000);  /* threads that lost the race exit before the process */
}
