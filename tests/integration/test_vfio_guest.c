/* End to end: the test guest drives the test VF passed through with
 * vfio-user (vmm + tests/vfio-user-nic server + testguest scenarios vf-*). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/harness.h"
#include "tests/integration/vfio_rig.h"

struct vf_run {
	pid_t server;
	char sock[108], cfg[128];
	struct run_result r;
};

/* Start the server on a fresh socket, boot the guest with @scenario. */
static void vf_boot_opts(struct vf_run *v, const char *scenario, const char *const server_args[],
			 bool iommu)
{
	static int seq;
	char *srv = vf_server_path(), *kernel = harness_image_path("testguest.elf");
	FILE *f;

	if (!harness_have_kvm())
		cr_skip_test("no /dev/kvm");
	memset(v, 0, sizeof(*v));
	cr_assert(access(srv, X_OK) == 0, "test server %s missing", srv);
	snprintf(v->sock, sizeof(v->sock), "/tmp/vfnic-%d-%d.sock", getpid(), seq);
	snprintf(v->cfg, sizeof(v->cfg), "/tmp/vfnic-%d-%d.json", getpid(), seq++);
	v->server = harness_fork();
	cr_assert_geq(v->server, 0);
	if (v->server == 0) {
		const char *argv[12] = { srv, "--socket", v->sock };
		int n = 3;

		for (int i = 0; server_args && server_args[i] && n < 11; i++)
			argv[n++] = server_args[i];
		argv[n] = NULL;
		execv(srv, (char *const *)argv);
		_exit(127);
	}
	/* The socket appears once the server listens. */
	struct stat st;
	for (int i = 0; i < 500 && stat(v->sock, &st); i++)
		usleep(2000);
	cr_assert_eq(stat(v->sock, &st), 0, "server did not listen on %s", v->sock);
	f = fopen(v->cfg, "w");
	cr_assert_not_null(f);
	fprintf(f, "{\"kernel\":\"%s\",\"cmdline\":\"test=%s%s\",\"iommu\":%s,"
		   "\"devices\":[{\"vfio-user\":\"%s\",\"iommu\":%s}]}",
		kernel, scenario, iommu ? " iommu" : "", iommu ? "true" : "false", v->sock,
		iommu ? "true" : "false");
	fclose(f);
	const char *argv[] = { "run", "--config", v->cfg, NULL };
	cr_assert_eq(harness_run(argv, harness_timeout_ms(20000), &v->r), 0);
	free(srv);
	free(kernel);
}

static void vf_boot(struct vf_run *v, const char *scenario, const char *const server_args[])
{
	vf_boot_opts(v, scenario, server_args, false);
}

static void vf_done(struct vf_run *v)
{
	int st;

	for (int i = 0; i < 200 && waitpid(v->server, &st, WNOHANG) == 0; i++)
		usleep(5000);
	kill(v->server, SIGKILL);
	waitpid(v->server, &st, 0);
	unlink(v->cfg);
	unlink(v->sock);
	harness_result_free(&v->r);
}

static void expect_pass(struct vf_run *v, const char *scenario)
{
	char want[64];

	snprintf(want, sizeof(want), "PASS %s", scenario);
	cr_expect_eq(v->r.exit_status, 0, "%s: exit %d\nstdout:\n%s\nstderr:\n%s", scenario,
		     v->r.exit_status, v->r.out, v->r.err);
	cr_expect_not_null(strstr(v->r.out, want), "stdout:\n%s\nstderr:\n%s", v->r.out, v->r.err);
}

Test(vfio_guest, vf_echo_mapped_memfd)
{
	struct vf_run v;

	vf_boot(&v, "vf-echo", NULL);
	expect_pass(&v, "vf-echo");
	cr_expect_not_null(strstr(v.r.out, "tx=8 rx=8"));
	cr_expect_not_null(strstr(v.r.out, "bar2=direct"), "BAR2 page mapped as a memslot");
	vf_done(&v);
}

Test(vfio_guest, vf_echo_dma_messages)
{
	static const char *const args[] = { "--dma-msg", NULL };
	struct vf_run v;

	vf_boot(&v, "vf-echo", args);
	expect_pass(&v, "vf-echo");
	vf_done(&v);
}

/* Behind virtio-iommu: the guest maps its rings/buffers at IOVAs != GPA,
 * every MAP/UNMAP is shadowed into the device before it completes. */
Test(vfio_guest, vf_echo_behind_viommu)
{
	struct vf_run v;

	vf_boot_opts(&v, "vf-echo", NULL, true);
	expect_pass(&v, "vf-echo");
	cr_expect_not_null(strstr(v.r.out, "iommu=on unmap=enforced"), "%s", v.r.out);
	vf_done(&v);
}

Test(vfio_guest, vf_echo_behind_viommu_dma_messages)
{
	static const char *const args[] = { "--dma-msg", NULL };
	struct vf_run v;

	vf_boot_opts(&v, "vf-echo", args, true);
	expect_pass(&v, "vf-echo");
	vf_done(&v);
}

Test(vfio_guest, vf_iommu_fault_behind_viommu)
{
	struct vf_run v;

	vf_boot_opts(&v, "vf-iommu-fault", NULL, true);
	expect_pass(&v, "vf-iommu-fault");
	cr_expect_not_null(strstr(v.r.out, "fault_addr=0x4000"), "IOVA, not GPA: %s", v.r.out);
	vf_done(&v);
}

Test(vfio_guest, vf_msix)
{
	struct vf_run v;

	vf_boot(&v, "vf-msix", NULL);
	expect_pass(&v, "vf-msix");
	vf_done(&v);
}

Test(vfio_guest, vf_intx_level_with_resample)
{
	struct vf_run v;

	vf_boot(&v, "vf-intx rounds=4", NULL);
	expect_pass(&v, "vf-intx");
	cr_expect_not_null(strstr(v.r.out, "interrupts=4"), "%s", v.r.out);
	/* The guest routed INTA# by the DSDT _PRT, which agreed with Interrupt Line. */
	cr_expect_not_null(strstr(v.r.out, "gsi=16 prt=16 "), "%s", v.r.out);
	vf_done(&v);
}

Test(vfio_guest, vf_iommu_fault)
{
	struct vf_run v;

	vf_boot(&v, "vf-iommu-fault", NULL);
	expect_pass(&v, "vf-iommu-fault");
	vf_done(&v);
}

Test(vfio_guest, vf_server_crash_vmm_stays_up)
{
	static const char *const args[] = { "--die-after-ms", "800", NULL };
	struct vf_run v;

	vf_boot(&v, "vf-server-crash", args);
	expect_pass(&v, "vf-server-crash");
	cr_expect_not_null(strstr(v.r.out, "vf-server-crash: ready"), "crash came after setup");
	cr_expect_not_null(strstr(v.r.err, "device is gone"), "the VMM says why: %s", v.r.err);
	cr_expect_eq(v.r.term_signal, 0, "the VMM did not crash");
	vf_done(&v);
}

Test(vfio_guest, missing_server_is_a_clean_startup_error)
{
	char *kernel = harness_image_path("testguest.elf");
	char cfg[128];
	struct run_result r;
	FILE *f;

	if (!harness_have_kvm())
		cr_skip_test("no /dev/kvm");
	snprintf(cfg, sizeof(cfg), "/tmp/vfnic-missing-%d.json", getpid());
	f = fopen(cfg, "w");
	cr_assert_not_null(f);
	fprintf(f, "{\"kernel\":\"%s\",\"devices\":[{\"vfio-user\":\"/nonexistent/vf.sock\"}]}",
		kernel);
	fclose(f);
	const char *argv[] = { "run", "--config", cfg, NULL };
	cr_assert_eq(harness_run(argv, harness_timeout_ms(10000), &r), 0);
	cr_expect_eq(r.exit_status, 125, "stderr: %s", r.err);
	cr_expect_not_null(strstr(r.err, "/nonexistent/vf.sock"));
	harness_result_free(&r);
	unlink(cfg);
	free(kernel);
}
