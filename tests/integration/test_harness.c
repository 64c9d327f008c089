/* The harness itself: a process started with harness_fork() does not
 * outlive the test that started it. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/harness.h"

/* A "test" (the middle process) starts a long-running child and dies
 * without cleaning up: the child must be gone shortly after. */
Test(harness, forked_child_dies_with_its_test)
{
	int pfd[2], st;
	pid_t middle, child = 0;

	cr_assert_eq(pipe(pfd), 0);
	middle = fork();
	cr_assert_geq(middle, 0);
	if (middle == 0) {
		pid_t c = harness_fork();

		if (c == 0) {
			for (;;)
				pause();
		}
		if (write(pfd[1], &c, sizeof(c)) != sizeof(c))
			_exit(1);
		_exit(0);   /* like a test killed by its timeout: no kill, no wait */
	}
	close(pfd[1]);
	cr_assert_eq(read(pfd[0], &child, sizeof(child)), (ssize_t)sizeof(child));
	close(pfd[0]);
	cr_assert_gt(child, 0);
	cr_assert_eq(waitpid(middle, &st, 0), middle);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	for (int i = 0; i < 200 && kill(child, 0) == 0; i++)
		usleep(10000);
	if (kill(child, 0) == 0) {
		kill(child, SIGKILL);   /* do not leave it to hang the runner */
		cr_assert_fail("the child outlived its test by 2 s");
	}
	cr_assert_eq(errno, ESRCH);
}
