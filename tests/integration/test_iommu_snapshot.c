/* memtest with a virtio-iommu present, across snapshot/restore: the VM is
 * snapshotted in this process at a random moment, the IOMMU's node is in the
 * state tree, and a new `vmm run --restore` process (lazy and copy memory)
 * finishes memtest; and a guest that is using the IOMMU's queues when
 * snapshotted keeps using them after restore. (Non-empty translation state
 * across restore is covered by the unit tests: a VM with endpoints needs
 * virtio-net save/load, which does not exist yet.) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio_iommu_vm.h"
#include "harness.h"
#include "migration/snapshot.h"
#include "vmm/vm.h"

static bool file_contains(const char *path, const char *needle)
{
	static char buf[65536];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

/* Boot @cmdline with --iommu in this process; once the console shows
 * @ready (if given), wait @delay_ms and snapshot into @dir. */
static void snapshot_with_iommu(const char *dir, const char *cmdline, const char *ready,
				int delay_ms)
{
	struct vm_config cfg;
	struct snapshot_stats st;
	char console[4200], err[512] = "";
	struct vm *vm;

	config_init(&cfg);
	cfg.kernel = harness_image_path("testguest.elf");
	cfg.cmdline = strdup(cmdline);
	cfg.memory_mib = 32;
	cfg.cpus = 2;
	cfg.iommu = true;
	snprintf(console, sizeof(console), "file:%s/console-before.log", dir);
	cr_assert_eq(config_parse_console(&cfg, console, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(vm_create(&vm, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(viommu_vm_find(vm), "--iommu must create the device");
	cr_assert_eq(vm_start(vm), 0);
	snprintf(console, sizeof(console), "%s/console-before.log", dir);
	for (int i = 0; ready && i < 1000 && !file_contains(console, ready); i++)
		usleep(10000);
	cr_assert(!ready || file_contains(console, ready), "the guest never printed '%s'", ready);
	usleep((useconds_t)delay_ms * 1000);
	cr_assert_eq(vm_pause(vm), 0, "the guest ended before the snapshot: %s", vm->exit_reason);
	cr_assert_eq(snapshot_save(vm, dir, &st, err, sizeof(err)), 0, "%s", err);
	vm_destroy(vm);
	config_free(&cfg);
}

static void restore_expect_pass(const char *dir, const char *mode, const char *scenario)
{
	char console[4300], log[4200], pass[64];
	const char *argv[] = { "run", "--restore", dir, "--restore-memory", mode, "--console", console,
			       NULL };
	struct run_result r;

	snprintf(log, sizeof(log), "%s/console-after-%s.log", dir, mode);
	snprintf(console, sizeof(console), "file:%s", log);
	cr_assert_eq(harness_run(argv, harness_timeout_ms(60000), &r), 0);
	cr_assert_eq(r.exit_status, 0, "restore (%s) exited %d; stderr: %s", mode, r.exit_status, r.err);
	snprintf(pass, sizeof(pass), "PASS %s", scenario);
	cr_assert(file_contains(log, pass), "no '%s' after restore (%s); stderr: %s", pass, mode,
		  r.err);
	cr_assert(!file_contains(log, "FAIL"), "the guest failed after restore (%s)", mode);
	harness_result_free(&r);
}

Test(iommu_snapshot, memtest_with_iommu_across_restore, .timeout = 240)
{
	char dir[] = "/tmp/vmm-iommu-snap-XXXXXX", cmd[128];
	const char *show[] = { "state", "show", dir, NULL };
	struct run_result r;

	if (!harness_have_kvm())
		cr_skip_test("no /dev/kvm");
	cr_assert_not_null(mkdtemp(dir));
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	snapshot_with_iommu(dir, "test=memtest seconds=1", NULL, 100 + rand() % 500);
	/* The IOMMU's translation state is a node of the tree. */
	cr_assert_eq(harness_run(show, harness_timeout_ms(10000), &r), 0);
	cr_assert_eq(r.exit_status, 0, "state show: %s", r.err);
	cr_assert(strstr(r.out, "iommu0") && strstr(r.out, "virtio-iommu") && strstr(r.out, "bypass"),
		  "no IOMMU node in:\n%s", r.out);
	harness_result_free(&r);
	restore_expect_pass(dir, "lazy", "memtest");
	restore_expect_pass(dir, "copy", "memtest");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_expect_eq(system(cmd), 0);
}

/* The guest drives the IOMMU (requests on its queues) while it is
 * snapshotted: the restored device continues the same queues. */
Test(iommu_snapshot, iommu_in_use_across_restore, .timeout = 240)
{
	char dir[] = "/tmp/vmm-iommu-snap-XXXXXX", cmd[128];

	if (!harness_have_kvm())
		cr_skip_test("no /dev/kvm");
	cr_assert_not_null(mkdtemp(dir));
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	snapshot_with_iommu(dir, "test=iommu-requests rounds=40", "iommu-requests: ready",
			    rand() % 300);
	restore_expect_pass(dir, "lazy", "iommu-requests");
	restore_expect_pass(dir, "copy", "iommu-requests");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_expect_eq(system(cmd), 0);
}
