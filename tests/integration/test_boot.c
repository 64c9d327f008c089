/* Boot the test guest under the real vmm binary, one scenario per test, and
 * check the guest's verdict line and the vmm's exit status (the status the
 * guest wrote to the debug-exit port). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define BOOT_TIMEOUT_MS 20000

static void require_kvm(void)
{
	if (!harness_have_kvm())
		cr_skip_test("/dev/kvm is not available");
}

static void boot(const char *cmdline, const char *const extra[], struct run_result *r)
{
	int ret = harness_run_guest(cmdline, extra, harness_timeout_ms(BOOT_TIMEOUT_MS), r);

	cr_assert_eq(ret, 0, "could not start %s: %s", harness_vmm_bin(), strerror(-ret));
	cr_assert(!r->timed_out, "guest timed out; stdout:\n%s\nstderr:\n%s", r->out, r->err);
}

static void assert_passed(const struct run_result *r, const char *name)
{
	char line[64];

	snprintf(line, sizeof(line), "PASS %s\n", name);
	cr_assert(strstr(r->out, line), "no '%s' in stdout:\n%s\nstderr:\n%s", name, r->out, r->err);
	cr_assert_eq(r->exit_status, 0, "exit status %d (signal %d); stderr:\n%s", r->exit_status,
		     r->term_signal, r->err);
}

static void assert_failed(const struct run_result *r, const char *prefix)
{
	cr_assert(strstr(r->out, prefix), "no '%s' in stdout:\n%s", prefix, r->out);
	cr_assert_neq(r->exit_status, 0, "a failing guest must give a non-zero exit status");
	cr_assert_eq(r->term_signal, 0, "vmm died from signal %d; stderr:\n%s", r->term_signal,
		     r->err);
}

Test(boot, hello, .timeout = 60)
{
	struct run_result r;

	require_kvm();
	boot("test=hello", NULL, &r);
	cr_expect(strstr(r.out, "hello from testguest\n"), "stdout:\n%s", r.out);
	assert_passed(&r, "hello");
	harness_result_free(&r);
}

Test(boot, default_scenario_is_hello, .timeout = 60)
{
	struct run_result r;

	require_kvm();
	boot(NULL, NULL, &r);
	assert_passed(&r, "hello");
	harness_result_free(&r);
}

Test(boot, cmdline_is_passed_verbatim, .timeout = 60)
{
	struct run_result r;
	const char *cl = "test=cmdline alpha=1 beta=0x2f flag expect=beta";

	require_kvm();
	boot(cl, NULL, &r);
	char want[128];
	snprintf(want, sizeof(want), "cmdline: %s\n", cl);
	cr_expect(strstr(r.out, want), "no '%s' in stdout:\n%s", want, r.out);
	assert_passed(&r, "cmdline");
	harness_result_free(&r);
}

Test(boot, smp_all_vcpus_check_in, .timeout = 60)
{
	struct run_result r;
	const char *extra[] = { "--cpus", "2", NULL };

	require_kvm();
	boot("test=smp cpus=2", extra, &r);
	cr_expect(strstr(r.out, "smp: 2 CPUs checked in"), "stdout:\n%s", r.out);
	assert_passed(&r, "smp");
	harness_result_free(&r);
}

/* Without cpus= the guest must learn the count from the VMM's MADT. */
Test(boot, smp_count_from_madt, .timeout = 60)
{
	struct run_result r;
	const char *extra[] = { "--cpus", "2", NULL };

	require_kvm();
	boot("test=smp", extra, &r);
	cr_expect(strstr(r.out, "smp: 2 CPUs checked in (expected from MADT)"), "stdout:\n%s", r.out);
	assert_passed(&r, "smp");
	harness_result_free(&r);
}

Test(boot, irq_timer_and_ipi_arrive, .timeout = 60)
{
	struct run_result r;

	require_kvm();
	boot("test=irq", NULL, &r);
	assert_passed(&r, "irq");
	harness_result_free(&r);
}

Test(boot, memmap_matches_memory, .timeout = 60)
{
	struct run_result r;
	const char *extra[] = { "--memory", "96", NULL };

	require_kvm();
	boot("test=memmap memory=96", extra, &r);
	assert_passed(&r, "memmap");
	harness_result_free(&r);
}

/* The memmap check must be able to fail: claim a size the VM does not have. */
Test(boot, memmap_detects_wrong_size, .timeout = 60)
{
	struct run_result r;
	const char *extra[] = { "--memory", "96", NULL };

	require_kvm();
	boot("test=memmap memory=64", extra, &r);
	assert_failed(&r, "FAIL memmap: ");
	harness_result_free(&r);
}

Test(boot, memmap_above_4g, .timeout = 60)
{
	struct run_result r;
	const char *extra[] = { "--memory", "4160", NULL };   /* 3 GiB low + 1088 MiB high */

	require_kvm();
	boot("test=memmap memory=4160", extra, &r);
	assert_passed(&r, "memmap");
	cr_expect(strstr(r.out, "[0x100000000-0x144000000) ram"), "stdout:\n%s", r.out);
	harness_result_free(&r);
}

Test(boot, unknown_scenario_fails, .timeout = 60)
{
	struct run_result r;

	require_kvm();
	boot("test=no-such-test", NULL, &r);
	assert_failed(&r, "FAIL unknown test 'no-such-test'");
	harness_result_free(&r);
}

Test(boot, truncated_elf_is_rejected, .timeout = 60)
{
	struct run_result r;
	char *src = harness_image_path("testguest.elf");
	char path[] = "/tmp/vmm-trunc-XXXXXX";
	char buf[100];

	require_kvm();
	cr_assert_not_null(src);
	FILE *in = fopen(src, "rb");
	cr_assert_not_null(in, "cannot open %s", src);
	cr_assert_eq(fread(buf, 1, sizeof(buf), in), sizeof(buf));
	fclose(in);
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);

	const char *argv[] = { "run", "--kernel", path, NULL };
	cr_assert_eq(harness_run(argv, harness_timeout_ms(BOOT_TIMEOUT_MS), &r), 0);
	unlink(path);
	free(src);
	cr_assert(!r.timed_out);
	cr_assert_neq(r.exit_status, 0, "a truncated ELF must not boot");
	cr_assert_eq(r.term_signal, 0, "vmm died from signal %d", r.term_signal);
	cr_assert_eq(harness_count_lines(r.err), 1, "want one line of error, got:\n%s", r.err);
	cr_expect_eq(r.out_len, 0, "nothing should run; stdout:\n%s", r.out);
	harness_result_free(&r);
}

Test(boot, missing_kernel_is_an_error, .timeout = 60)
{
	struct run_result r;
	const char *argv[] = { "run", "--kernel", "/nonexistent/vmm-test/kernel.elf", NULL };

	require_kvm();
	cr_assert_eq(harness_run(argv, harness_timeout_ms(BOOT_TIMEOUT_MS), &r), 0);
	cr_assert(!r.timed_out);
	cr_assert_neq(r.exit_status, 0);
	cr_assert_eq(r.term_signal, 0);
	cr_assert(strstr(r.err, "/nonexistent/vmm-test/kernel.elf"), "stderr should name the file:\n%s",
		  r.err);
	harness_result_free(&r);
}

/* `run --restore` and `run --incoming` share one option table and parser
 * (migration/cli_host.c): each refuses the other's options, bad values and
 * stray arguments with one line and exit status 2, before touching anything. */
Test(boot, receive_modes_refuse_bad_flags, .timeout = 60)
{
	static const struct {
		const char *argv[8];
		const char *want;
	} cases[] = {
		{ { "run", "--restore", "/nonexistent", "--api-sock", "/tmp/x", NULL }, "'--api-sock' (only --restore-memory" },
		{ { "run", "--restore", "/nonexistent", "--restore-memory", "eager", NULL }, "'eager' is not lazy or copy" },
		{ { "run", "--restore", "/nonexistent", "--tap", "tap0", NULL }, "'tap0' is not N=IFNAME" },
		{ { "run", "--restore", "/nonexistent", "--console", "tty", NULL }, "'tty' is not stdio" },
		{ { "run", "--incoming", "unix:/nonexistent/s", "--tap", "0=tap0", NULL }, "'--tap' (only --api-sock" },
		{ { "run", "--incoming", "unix:/nonexistent/s", "--accept-timeout-ms", "soon", NULL }, "'soon' is not a number" },
		{ { "run", "--incoming", "unix:/nonexistent/s", "--bogus", NULL }, "'--bogus'" },
		{ { "run", "--incoming", "unix:/nonexistent/s", "stray", NULL }, "unexpected argument 'stray'" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct run_result r;

		cr_assert_eq(harness_run(cases[i].argv, 10000, &r), 0);
		cr_assert_eq(r.exit_status, 2, "case %zu: exit %d; stderr:\n%s", i, r.exit_status, r.err);
		cr_assert_eq(harness_count_lines(r.err), 1, "case %zu: want one line:\n%s", i, r.err);
		cr_assert(strstr(r.err, cases[i].want), "case %zu: want '%s' in:\n%s", i, cases[i].want, r.err);
		harness_result_free(&r);
	}
}

/* The runtime reports exceptions with vector, error code and RIP, then fails. */
Test(boot, exception_is_reported, .timeout = 60)
{
	struct run_result r;

	require_kvm();
	boot("test=fault kind=pf", NULL, &r);
	assert_failed(&r, "FAIL fault: exception 14 (#PF page fault)");
	cr_expect(strstr(r.out, "cr2=0x4000000000"), "stdout:\n%s", r.out);
	cr_expect(strstr(r.out, "rip=0x"), "stdout:\n%s", r.out);
	harness_result_free(&r);
}

/* The harness kills a guest that outlives its timeout and keeps its output. */
Test(boot, harness_kills_on_timeout, .timeout = 60)
{
	struct run_result r;

	require_kvm();
	cr_assert_eq(harness_run_guest("test=idle", NULL, 1500, &r), 0);
	cr_assert(r.timed_out, "an idle guest must hit the timeout");
	cr_assert_eq(r.exit_status, -1);
	cr_assert_eq(r.term_signal, SIGKILL);
	cr_expect(strstr(r.out, "idle: running"), "stdout:\n%s", r.out);
	harness_result_free(&r);
}

Test(boot, idle_for_a_while_passes, .timeout = 60)
{
	struct run_result r;

	require_kvm();
	boot("test=idle seconds=1", NULL, &r);
	assert_passed(&r, "idle");
	harness_result_free(&r);
}
