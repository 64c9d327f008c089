/* memtest: the continuity checker the snapshot/migration tests build on.
 * Here it runs undisturbed, across a whole-process freeze (SIGSTOP/SIGCONT,
 * which the guest must see only as a gap), and with injected faults that
 * each check must catch. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MEMTEST_TIMEOUT_MS 30000

static const char *const mt_extra[] = { "--cpus", "2", "--memory", "64", NULL };

static void run_memtest(const char *cmdline, int stop_at_ms, int stop_for_ms, struct run_result *r)
{
	char *kernel = harness_image_path("testguest.elf");
	const char *argv[16] = { "run", "--kernel", kernel, "--cmdline", cmdline };
	size_t n = 5;
	struct run_opts o = { .timeout_ms = harness_timeout_ms(MEMTEST_TIMEOUT_MS), .stop_at_ms = stop_at_ms,
			      .stop_for_ms = stop_for_ms };

	if (!harness_have_kvm())
		cr_skip_test("/dev/kvm is not available");
	cr_assert_not_null(kernel);
	for (size_t i = 0; mt_extra[i]; i++)
		argv[n++] = mt_extra[i];
	argv[n] = NULL;
	cr_assert_eq(harness_run_opts(argv, &o, r), 0);
	free(kernel);
	cr_assert(!r->timed_out, "memtest timed out; stdout:\n%s", r->out);
}

/* Value of "key=<number>" in the PASS line, or -1. */
static long long pass_value(const char *out, const char *key)
{
	const char *line = strstr(out, "PASS memtest");
	char pat[32];

	if (!line)
		return -1;
	snprintf(pat, sizeof(pat), " %s=", key);
	const char *p = strstr(line, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

Test(memtest, passes_undisturbed, .timeout = 90)
{
	struct run_result r;

	run_memtest("test=memtest seconds=1 cpus=2", 0, 0, &r);
	cr_assert_eq(r.exit_status, 0, "stdout:\n%s\nstderr:\n%s", r.out, r.err);
	cr_assert(strstr(r.out, "PASS memtest max_gap_us="), "stdout:\n%s", r.out);
	cr_expect_eq(pass_value(r.out, "cpus"), 2, "stdout:\n%s", r.out);
	cr_expect_geq(pass_value(r.out, "passes"), 2, "stdout:\n%s", r.out);
	cr_expect_gt(pass_value(r.out, "ticks"), 0);
	long long gap = pass_value(r.out, "max_gap_us");
	cr_expect(gap > 0 && gap < 1000000, "max_gap_us=%lld without any pause", gap);
	harness_result_free(&r);
}

Test(memtest, freeze_shows_as_gap_only, .timeout = 90)
{
	struct run_result r;

	run_memtest("test=memtest seconds=2 cpus=2", 700, 500, &r);
	cr_assert_eq(r.exit_status, 0, "a frozen-then-resumed guest must pass; stdout:\n%s\nstderr:\n%s",
		     r.out, r.err);
	long long gap = pass_value(r.out, "max_gap_us");
	cr_expect_geq(gap, 400000, "a 500 ms freeze must show in max_gap_us; stdout:\n%s", r.out);
	harness_result_free(&r);
}

static void expect_injected_failure(const char *what, const char *reason)
{
	struct run_result r;
	char cl[96];

	snprintf(cl, sizeof(cl), "test=memtest seconds=5 cpus=2 inject=%s", what);
	run_memtest(cl, 0, 0, &r);
	cr_assert_neq(r.exit_status, 0, "inject=%s must fail; stdout:\n%s", what, r.out);
	cr_assert(strstr(r.out, "FAIL memtest: "), "stdout:\n%s", r.out);
	cr_expect(strstr(r.out, reason), "want '%s' in:\n%s", reason, r.out);
	harness_result_free(&r);
}

Test(memtest, catches_memory_corruption, .timeout = 90)
{
	expect_injected_failure("memory", "holds 0x");
}

Test(memtest, catches_stopped_timer, .timeout = 90)
{
	expect_injected_failure("timer", "no timer tick");
}

Test(memtest, catches_lost_interrupt, .timeout = 90)
{
	expect_injected_failure("ipi", "self-IPI");
}
