/* What the VMM presents besides devices, seen from the test guest: CPUID,
 * the i8042 reset line, ACPI power-off through the FADT/DSDT, and console
 * input from host stdin through the UART (more than its 64-byte FIFO). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void run(const char *cmdline, const struct run_opts *opts, struct run_result *r)
{
	char *kernel = harness_image_path("testguest.elf");
	const char *argv[] = { "run", "--kernel", kernel, "--cmdline", cmdline, NULL };

	if (!harness_have_kvm())
		cr_skip_test("/dev/kvm is not available");
	cr_assert_eq(harness_run_opts(argv, opts, r), 0);
	free(kernel);
	cr_assert(!r->timed_out, "timed out; stdout:\n%s\nstderr:\n%s", r->out, r->err);
}

static void expect_pass(const char *scenario, const char *line)
{
	struct run_opts o = { .timeout_ms = harness_timeout_ms(HARNESS_DEFAULT_TIMEOUT_MS) };
	struct run_result r;
	char cmdline[64];

	snprintf(cmdline, sizeof(cmdline), "test=%s", scenario);
	run(cmdline, &o, &r);
	cr_assert_eq(r.exit_status, 0, "stdout:\n%s\nstderr:\n%s", r.out, r.err);
	cr_assert(strstr(r.out, line), "want '%s' in:\n%s", line, r.out);
	cr_assert(!strstr(r.out, "FAIL"), "%s", r.out);
	harness_result_free(&r);
}

Test(platform, cpuid_has_hypervisor_leaves)
{
	expect_pass("cpuid", "PASS cpuid");
}

/* The guest fails (status 1) if it is still running 2 s after the write. */
Test(platform, i8042_reset_ends_the_run_with_status_0)
{
	expect_pass("reset", "reset: pulsing");
}

Test(platform, acpi_s5_powers_off_with_status_0)
{
	expect_pass("poweroff", "SLP_TYP 5 to port 0x600");
}

Test(platform, stdin_reaches_the_guest_without_loss)
{
	char input[302];
	char want[96];
	unsigned sum = 0;
	struct run_opts o = {
		.timeout_ms = harness_timeout_ms(HARNESS_DEFAULT_TIMEOUT_MS),
		.stdin_data = input,
		.stdin_after = "echo-input: ready",
	};
	struct run_result r;

	/* 300 bytes: more than four times the UART's RX FIFO. */
	for (int i = 0; i < 300; i++) {
		input[i] = (char)('a' + (i * 7) % 26);
		sum = sum * 31 + (unsigned char)input[i];
	}
	input[300] = '\n';
	input[301] = '\0';
	run("test=echo-input", &o, &r);
	snprintf(want, sizeof(want), "echo-input: len=300 sum=%u head=%.32s", sum, input);
	cr_assert_eq(r.exit_status, 0, "stdout:\n%s\nstderr:\n%s", r.out, r.err);
	cr_assert(strstr(r.out, want), "want '%s' in:\n%s", want, r.out);
	harness_result_free(&r);
}
