/* The event loop's posted calls: inline when the loop is not running, on the
 * loop thread (in order) when it is, with the caller free in between. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "vmm/eventloop.h"

struct probe {
	struct event_loop *loop;
	bool on_loop;
	int order;
	atomic_int *counter;
	atomic_bool *release;
};

static int record(void *arg)
{
	struct probe *p = arg;

	/* Hold the loop until the caller says so: proves evl_post returned
	 * before the call finished. */
	while (p->release && !atomic_load(p->release))
		usleep(100);
	p->on_loop = evl_on_loop_thread(p->loop);
	p->order = atomic_fetch_add(p->counter, 1);
	return 40 + p->order;
}

Test(eventloop, post_runs_inline_when_the_loop_is_not_running)
{
	struct event_loop loop;
	struct evl_call c;
	atomic_int counter = 0;
	struct probe p = { .loop = &loop, .counter = &counter };

	cr_assert_eq(evl_init(&loop), 0);
	evl_post(&loop, &c, record, &p);
	cr_assert_eq(atomic_load(&counter), 1, "ran before evl_post returned");
	cr_assert_not(p.on_loop);
	cr_assert_eq(evl_wait(&loop, &c), 40);
	evl_destroy(&loop);
}

Test(eventloop, post_runs_on_the_loop_in_order_while_the_caller_goes_on)
{
	struct event_loop loop;
	struct evl_call c1, c2;
	atomic_int counter = 0;
	atomic_bool release = false;
	struct probe p1 = { .loop = &loop, .counter = &counter, .release = &release };
	struct probe p2 = { .loop = &loop, .counter = &counter };

	cr_assert_eq(evl_init(&loop), 0);
	cr_assert_eq(evl_start(&loop, "test-loop"), 0);
	evl_post(&loop, &c1, record, &p1);
	evl_post(&loop, &c2, record, &p2);
	usleep(20000);
	cr_assert_eq(atomic_load(&counter), 0, "the first call is held: nothing may have run");
	atomic_store(&release, true);
	cr_assert_eq(evl_wait(&loop, &c2), 41);
	cr_assert_eq(evl_wait(&loop, &c1), 40);
	cr_assert(p1.on_loop && p2.on_loop, "posted calls run on the loop thread");
	cr_assert_eq(p1.order, 0);
	cr_assert_eq(p2.order, 1);
	/* The blocking form is the same two halves. */
	cr_assert_eq(evl_call(&loop, record, &p2), 42);
	evl_destroy(&loop);
}
