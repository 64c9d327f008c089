/* Boot a real Linux kernel through each loader path and check what Linux
 * itself reports about the boot data: command line, e820 map, ACPI tables,
 * IOAPIC/MADT, CPUs, initrd.
 *
 * Skipped unless VMM_LINUX_KERNEL names a kernel (vmlinux ELF with or without
 * the PVH note, or a bzImage; see docs/boot.md for a recipe). On this
 * project's machines KVM emulates every instruction and Linux stops at the
 * first one the emulator lacks (XSAVE, after ACPI and SMP setup), so the
 * run may end with status 126; everything checked here is printed before
 * that. On hardware KVM the kernel goes on to panic for lack of a root file
 * system and reboots through the ACPI reset register (status 0).
 * VMM_LINUX_TIMEOUT_MS overrides the 180 s default. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define LINUX_CMDLINE "earlyprintk=serial,ttyS0,115200 console=ttyS0 panic=-1 vmm_test_marker=42"

static char *make_initrd(size_t len)
{
	char *path = strdup("/tmp/vmm-linux-initrd-XXXXXX");
	int fd = mkstemp(path);
	char *buf = calloc(1, len);

	cr_assert(fd >= 0 && buf);
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(i * 31);
	cr_assert_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
	free(buf);
	return path;
}

static void expect_line(const char *out, const char *needle)
{
	cr_expect_not_null(strstr(out, needle), "Linux did not print '%s'; output:\n%s", needle, out);
}

Test(linux_guest, early_boot_sees_our_boot_data, .timeout = 600)
{
	const char *kernel = getenv("VMM_LINUX_KERNEL");
	const char *tmo = getenv("VMM_LINUX_TIMEOUT_MS");
	struct run_result r;
	char *initrd;

	if (!kernel || !*kernel)
		cr_skip_test("VMM_LINUX_KERNEL is not set (path to a vmlinux or bzImage)");
	if (!harness_have_kvm())
		cr_skip_test("/dev/kvm is not available");
	initrd = make_initrd(1 << 20);
	const char *argv[] = { "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256",
			       "--cpus", "2", "--cmdline", LINUX_CMDLINE, NULL };
	cr_assert_eq(harness_run(argv, harness_timeout_ms(tmo ? atoi(tmo) : 180000), &r), 0);
	unlink(initrd);
	free(initrd);

	cr_expect(!r.timed_out, "timed out");
	cr_expect(r.exit_status == 0 || r.exit_status == 126, "exit %d; stderr:\n%s", r.exit_status, r.err);
	expect_line(r.out, "Command line: " LINUX_CMDLINE);
	/* e820 exactly as boot_load built it for 256 MiB. */
	expect_line(r.out, "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable");
	expect_line(r.out, "BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved");
	expect_line(r.out, "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable");
	/* ACPI found through boot_params.acpi_rsdp_addr / hvm_start_info.rsdp_paddr. */
	expect_line(r.out, "ACPI: RSDP 0x00000000000E0000 000024 (v02 VMM   )");
	expect_line(r.out, "ACPI: FACP ");
	expect_line(r.out, "ACPI: DSDT ");
	expect_line(r.out, "ACPI: APIC ");
	expect_line(r.out, "IOAPIC[0]: apic_id 2, version");
	expect_line(r.out, "ACPI: INT_SRC_OVR (bus 0 bus_irq 0 global_irq 2 high edge)");
	cr_expect(strstr(r.out, "Allowing 2 present CPUs") || strstr(r.out, "Allowing 2 CPUs"),
		  "MADT CPUs not seen; output:\n%s", r.out);
	/* Initrd: 1 MiB placed at the top of RAM. */
	expect_line(r.out, "RAMDISK: [mem 0x0ff00000-0x0fffffff]");
	harness_result_free(&r);
}
