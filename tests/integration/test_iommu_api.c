/* vm.info over the REST API lists the IOMMU's domains, endpoints and
 * mapping counts while the test guest holds its mappings (iommu-net hold). */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/actions.h"
#include "api/api.h"
#include "harness.h"

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

/* Remove TAP @name. The vmm may still be closing its queue fds in a
 * teardown child for a moment (TUNSETIFF answers EBUSY meanwhile): retry. */
static void tap_delete(const char *name)
{
	for (int i = 0; i < 250 && tap_persist(name, 0) == -EBUSY; i++)
		usleep(20000);
}

static bool can_connect(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static unsigned request(const char *sock, const char *method, const char *verb, const char *body,
			char *out, size_t outlen)
{
	struct api_reply r;
	char path[96], err[256];
	unsigned status;

	snprintf(path, sizeof(path), API_PATH_PREFIX "%s", verb);
	cr_assert_eq(api_client_request(sock, method, path, body, body ? strlen(body) : 0, &r, err,
					sizeof(err)), 0, "%s: %s", verb, err);
	snprintf(out, outlen, "%s", r.body ? r.body : "");
	status = r.status;
	api_reply_free(&r);
	return status;
}

static bool console_has(const char *path, const char *text)
{
	char buf[8192];
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

	if (f)
		fclose(f);
	buf[n] = 0;
	return strstr(buf, text) != NULL;
}

static const cJSON *find_device(const cJSON *info, const char *type)
{
	const cJSON *d;

	cJSON_ArrayForEach(d, cJSON_GetObjectItem(info, "devices")) {
		const cJSON *t = cJSON_GetObjectItem(d, "type");

		if (cJSON_IsString(t) && !strcmp(t->valuestring, type))
			return d;
	}
	return NULL;
}

/* GET @verb, parse it into *doc (the caller deletes it), return the entry
 * of the device of @type. */
static const cJSON *get_device(const char *sock, const char *verb, const char *type, char *out,
			       size_t outlen, cJSON **doc)
{
	const cJSON *dev;

	cr_assert_eq(request(sock, "GET", verb, NULL, out, outlen), 200, "%s", out);
	*doc = cJSON_Parse(out);
	cr_assert_not_null(*doc, "%s", out);
	dev = find_device(*doc, type);
	cr_assert_not_null(dev, "no %s in %s: %s", type, verb, out);
	return dev;
}

static double num(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItem(o, name);

	cr_assert(cJSON_IsNumber(v), "no number '%s'", name);
	return v->valuedouble;
}

Test(iommu_api, vm_info_lists_domains_endpoints_mappings, .timeout = 120)
{
	char dir[] = "/tmp/vmm-iommu-api-XXXXXX", sock[96], console[96], tap[IFNAMSIZ];
	char body[1024], out[16384];
	char *kernel = harness_image_path("testguest.elf");
	const cJSON *dev, *doms, *eps;
	cJSON *info;
	int st, ret;
	pid_t pid;

	if (!harness_have_kvm())
		cr_skip_test("no /dev/kvm");
	snprintf(tap, sizeof(tap), "vioa%d", (int)getpid() % 100000);
	ret = tap_persist(tap, 1);
	if (ret)
		cr_skip_test("cannot create TAP: %s", strerror(-ret));
	cr_assert_not_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/api.sock", dir);
	snprintf(console, sizeof(console), "%s/console.log", dir);
	pid = harness_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, 1);
		dup2(fd, 2);
		execl(harness_vmm_bin(), harness_vmm_bin(), "serve", "--api-sock", sock, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 2500 && !can_connect(sock); i++)
		usleep(4000);
	cr_assert(can_connect(sock), "vmm serve is not listening");

	snprintf(body, sizeof(body),
		 "{\"kernel\": \"%s\", \"cmdline\": \"test=iommu-net frames=2 hold\", \"memory_mib\": 32,"
		 " \"console\": \"file:%s\", \"iommu\": true,"
		 " \"nets\": [{\"tap\": \"%s\", \"iommu\": true}]}", kernel, console, tap);
	cr_assert_eq(request(sock, "PUT", "vm.create", body, out, sizeof(out)), 200, "%s", out);
	cr_assert_eq(request(sock, "PUT", "vm.boot", NULL, out, sizeof(out)), 200, "%s", out);
	for (int i = 0; i < 2000 && !console_has(console, "holding"); i++)
		usleep(10000);
	cr_assert(console_has(console, "holding"), "the guest never reached its hold point");

	dev = get_device(sock, "vm.info", "virtio-iommu", out, sizeof(out), &info);
	/* Rings (1 mapping) + TX buffers + RX buffers = 3 mappings in domain 1. */
	cr_assert_eq(num(dev, "mappings"), 3, "%s", out);
	doms = cJSON_GetObjectItem(dev, "domains");
	cr_assert_eq(cJSON_GetArraySize(doms), 1, "%s", out);
	cr_assert_eq(num(cJSON_GetArrayItem(doms, 0), "id"), 1);
	cr_assert_eq(num(cJSON_GetArrayItem(doms, 0), "mappings"), 3);
	cr_assert_eq(num(cJSON_GetArrayItem(doms, 0), "endpoints"), 1);
	eps = cJSON_GetObjectItem(dev, "endpoints");
	cr_assert_eq(cJSON_GetArraySize(eps), 1, "%s", out);
	cr_assert_eq(num(cJSON_GetArrayItem(eps, 0), "domain"), 1);
	cr_assert_gt(num(cJSON_GetArrayItem(eps, 0), "id"), 0);
	cJSON_Delete(info);

	/* The net device translated through its DMA cache: misses for the first
	 * use of each mapping, hits for the second descriptor of each TX chain
	 * (same page); no faults. */
	dev = get_device(sock, "vm.counters", "virtio-net", out, sizeof(out), &info);
	cr_assert_gt(num(dev, "dma_cache_misses"), 0, "%s", out);
	cr_assert_geq(num(dev, "dma_cache_hits"), 2, "%s", out);
	cr_assert_eq(num(dev, "tx_iommu_faults"), 0, "%s", out);
	cr_assert_eq(num(dev, "rx_iommu_faults"), 0, "%s", out);
	cJSON_Delete(info);

	cr_assert_eq(request(sock, "PUT", "vmm.shutdown", NULL, out, sizeof(out)), 200, "%s", out);
	for (int i = 0; i < 3000 && waitpid(pid, &st, WNOHANG) != pid; i++)
		usleep(10000);
	if (kill(pid, 0) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	tap_delete(tap);
	unlink(console);
	rmdir(dir);
	free(kernel);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "vmm serve exit status 0x%x", st);
}
