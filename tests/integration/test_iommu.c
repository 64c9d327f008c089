/* virtio-iommu end to end: the test guest drives the virtio-iommu and a
 * virtio-net placed behind it (iommu=on) whose TX ring and buffers are
 * reachable only through IOVAs. Each test makes its own persistent TAP
 * (root needed; skipped otherwise) and removes it afterwards. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "harness.h"

#define IOMMU_TIMEOUT_MS 30000

/* Create (persist = 1) or delete (persist = 0) TAP @name. */
static int tap_persist(const char *name, int persist)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETPERSIST, persist) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

struct iommu_run {
	char tap[IFNAMSIZ];
	char config[64];
	struct run_result r;
};

/* Boot scenario @test with --iommu semantics from a JSON config:
 * {"iommu": @iommu, "nets": [{"tap": ..., "iommu": @net_iommu}]}. */
static void run_scenario(struct iommu_run *run, const char *test, bool iommu, bool net_iommu)
{
	static int seq;
	char *kernel = harness_image_path("testguest.elf");
	const char *argv[] = { "run", "--config", run->config, NULL };
	FILE *f;
	int fd, ret;

	if (!harness_have_kvm())
		cr_skip_test("/dev/kvm is not available");
	snprintf(run->tap, sizeof(run->tap), "vio%d-%d", (int)getpid() % 100000, seq++);
	ret = tap_persist(run->tap, 1);
	if (ret)
		cr_skip_test("cannot create TAP %s: %s", run->tap, strerror(-ret));
	snprintf(run->config, sizeof(run->config), "/tmp/vmm-iommu-XXXXXX");
	fd = mkstemp(run->config);
	cr_assert_geq(fd, 0);
	f = fdopen(fd, "w");
	cr_assert_not_null(f);
	fprintf(f, "{\"kernel\": \"%s\", \"cmdline\": \"test=%s\", \"iommu\": %s, "
		   "\"nets\": [{\"tap\": \"%s\", \"iommu\": %s}]}\n",
		kernel, test, iommu ? "true" : "false", run->tap, net_iommu ? "true" : "false");
	fclose(f);
	free(kernel);
	ret = harness_run(argv, harness_timeout_ms(IOMMU_TIMEOUT_MS), &run->r);
	unlink(run->config);
	tap_persist(run->tap, 0);
	cr_assert_eq(ret, 0, "could not start %s: %s", harness_vmm_bin(), strerror(-ret));
	cr_assert(!run->r.timed_out, "timed out; stdout:\n%s\nstderr:\n%s", run->r.out, run->r.err);
}

static void assert_pass(struct iommu_run *run, const char *test)
{
	char line[64];

	snprintf(line, sizeof(line), "PASS %s", test);
	cr_assert(strstr(run->r.out, line), "no '%s'; stdout:\n%s\nstderr:\n%s", line, run->r.out,
		  run->r.err);
	cr_assert_eq(run->r.exit_status, 0, "exit %d; stderr:\n%s", run->r.exit_status, run->r.err);
}

Test(iommu, net_through_translated_addresses, .timeout = 90)
{
	struct iommu_run run;

	run_scenario(&run, "iommu-net", true, true);
	assert_pass(&run, "iommu-net");
	cr_expect(strstr(run.r.out, "frames=16"), "stdout:\n%s", run.r.out);
	harness_result_free(&run.r);
}

Test(iommu, unmapped_buffer_faults, .timeout = 90)
{
	struct iommu_run run;

	run_scenario(&run, "iommu-fault", true, true);
	assert_pass(&run, "iommu-fault");
	/* The fault names the IOVA the guest unmapped (reason 2 = MAPPING). */
	cr_expect(strstr(run.r.out, "reason=2 addr=0x8101000"), "stdout:\n%s", run.r.out);
	harness_result_free(&run.r);
}

Test(iommu, split_refused_and_pieces_work, .timeout = 90)
{
	struct iommu_run run;

	run_scenario(&run, "iommu-split", true, true);
	assert_pass(&run, "iommu-split");
	harness_result_free(&run.r);
}

/* Without iommu=on the net device is not an endpoint: the VIOT does not list
 * it and the guest's scenario must fail (the check can fail). */
Test(iommu, net_not_behind_iommu_is_not_an_endpoint, .timeout = 90)
{
	struct iommu_run run;

	run_scenario(&run, "iommu-net", true, false);
	cr_assert(strstr(run.r.out, "FAIL iommu-net"), "stdout:\n%s", run.r.out);
	cr_assert_neq(run.r.exit_status, 0);
	harness_result_free(&run.r);
}

Test(iommu, net_iommu_on_needs_the_device, .timeout = 30)
{
	struct iommu_run run;

	run_scenario(&run, "iommu-net", false, true);
	cr_assert_neq(run.r.exit_status, 0);
	cr_assert(strstr(run.r.err, "iommu"), "stderr:\n%s", run.r.err);
	harness_result_free(&run.r);
}
