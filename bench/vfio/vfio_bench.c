/* bench/vfio: the VF passthrough path measured side by side.
 *
 *  1. host_vf_*: frames/s through our vfio-user client and the test VF server
 *     without a guest (batches of 16 TX descriptors per doorbell), with the
 *     guest memfd mapped by the server and with DMA_READ/WRITE messages;
 *  2. guest_vf / guest_virtio_net: the test guest sends the same frames
 *     through the VF (vf-tx-flood) and through virtio-net on a TAP
 *     (net-tx-flood) in the same run; guests run emulated on this machine, so
 *     compare the two, not the absolute numbers;
 *  3. dma_map: latency of shadowed mappings: the back end's DMA_MAP alone,
 *     MAP -> first device DMA through the new window completed, and the
 *     whole vIOMMU path (iommu_map + vfio_pci_sync_iommu, what a guest MAP
 *     request runs before it completes, then the first device DMA)
 *     (p50/p99 over many windows).
 *
 *   vfio_bench --out FILE --vmm BIN --server BIN --kernel ELF [--quick] */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/vfio.h>

#include "devices/iommu_map.h"
#include "devices/pci.h"
#include "tests/vfio-user-nic/nic_regs.h"
#include "vfio/vfio_pci.h"
#include "vmm/bus.h"
#include "vmm/layout.h"
#include "vfio/vfio_user.h"
#include "vmm/log.h"
#include "vmm/mem.h"

#define RAM   (64u << 20)
#define RING  16

static const char *g_server, *g_vmm, *g_kernel;

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

struct host {
	pid_t pid;
	struct guest_mem mem;
	struct vfio_backend *be;
};

static int host_start(struct host *h, bool dma_msg)
{
	int sv[2];

	memset(h, 0, sizeof(*h));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return -errno;
	fcntl(sv[0], F_SETFD, FD_CLOEXEC);
	h->pid = fork();
	if (h->pid == 0) {
		char fd[16];
		snprintf(fd, sizeof(fd), "%d", sv[1]);
		execl(g_server, g_server, "--fd", fd, dma_msg ? "--dma-msg" : NULL, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	if (mem_init(&h->mem, RAM))
		return -ENOMEM;
	struct vfio_user_opts o = { .fd = sv[0], .mem = &h->mem, .name = "bench" };
	return vfio_user_open(&o, &h->be);
}

static void host_stop(struct host *h)
{
	vfio_be_destroy(h->be);
	waitpid(h->pid, NULL, 0);
	mem_destroy(&h->mem);
}

static void wr(struct host *h, uint32_t reg, uint32_t v)
{
	vfio_be_region_write(h->be, VFIO_PCI_BAR0_REGION_INDEX, reg, &v, 4);
}

static uint32_t rd(struct host *h, uint32_t reg)
{
	uint32_t v = 0;
	vfio_be_region_read(h->be, VFIO_PCI_BAR0_REGION_INDEX, reg, &v, 4);
	return v;
}

struct desc {
	uint64_t addr;
	uint16_t len, flags;
	uint32_t rsvd;
};

/* Frames/s host-side: the ring at 0x10000, buffers at 0x100000. */
static double host_frames_per_s(bool dma_msg, uint32_t count, uint32_t size)
{
	struct host h;
	double fps = -1;

	if (host_start(&h, dma_msg))
		goto out;
	struct vfio_dma d = { .iova = 0, .size = RAM, .hva = h.mem.base, .fd = h.mem.fd,
			      .read = true, .write = true };
	if (h.be->ops->dma_map(h.be, &d))
		goto out;
	for (unsigned i = 0; i < RING; i++) {
		struct desc ds = { .addr = 0x100000 + i * 2048, .len = (uint16_t)size };
		mem_write(&h.mem, 0x10000 + i * sizeof(ds), &ds, sizeof(ds));
	}
	wr(&h, VFNIC_REG_TX_RING_LO, 0x10000);
	wr(&h, VFNIC_REG_TX_SIZE, RING);
	wr(&h, VFNIC_REG_CTRL, VFNIC_CTRL_ENABLE);
	uint32_t tail = 0;
	uint64_t t0 = now_ns();
	while (tail < count) {
		tail += count - tail < RING ? count - tail : RING;
		wr(&h, VFNIC_REG_TX_TAIL, tail);
	}
	uint64_t ns = now_ns() - t0;
	if (rd(&h, VFNIC_REG_TX_FRAMES) == count)
		fps = count / (ns / 1e9);
out:
	host_stop(&h);
	return fps;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Shadowed mappings: n windows of 64 KiB at fresh IOVAs. For each: DMA_MAP
 * alone, then MAP + a TX descriptor whose buffer lies in the new window, until
 * the device reports it sent (the doorbell reply). */
static int dma_map_latency(unsigned n, cJSON *out)
{
	struct host h;
	uint64_t *map_ns = calloc(n, sizeof(uint64_t)), *use_ns = calloc(n, sizeof(uint64_t));
	int ret = -1;

	if (!map_ns || !use_ns || host_start(&h, false))
		goto out;
	/* The ring itself is mapped once at IOVA 0. */
	struct vfio_dma ring = { .iova = 0, .size = 0x20000, .hva = h.mem.base, .fd = h.mem.fd,
				 .read = true, .write = true };
	if (h.be->ops->dma_map(h.be, &ring))
		goto stop;
	wr(&h, VFNIC_REG_TX_RING_LO, 0x10000);
	wr(&h, VFNIC_REG_TX_SIZE, RING);
	wr(&h, VFNIC_REG_CTRL, VFNIC_CTRL_ENABLE);
	for (unsigned i = 0; i < n; i++) {
		uint64_t iova = 0x100000000ull + (uint64_t)i * 0x100000, gpa = 0x100000;
		struct vfio_dma d = { .iova = iova, .size = 0x10000, .hva = h.mem.base + gpa,
				      .fd = h.mem.fd, .fd_offset = gpa, .gpa = gpa, .read = true,
				      .write = true };
		uint64_t t0 = now_ns();
		if (h.be->ops->dma_map(h.be, &d))
			goto stop;
		map_ns[i] = now_ns() - t0;
		h.be->ops->dma_unmap(h.be, iova, 0x10000);
		struct desc ds = { .addr = iova + 0x100, .len = 64 };
		mem_write(&h.mem, 0x10000 + (i % RING) * sizeof(ds), &ds, sizeof(ds));
		t0 = now_ns();
		if (h.be->ops->dma_map(h.be, &d))
			goto stop;
		wr(&h, VFNIC_REG_TX_TAIL, i + 1);   /* device DMA through the new window */
		use_ns[i] = now_ns() - t0;
		h.be->ops->dma_unmap(h.be, iova, 0x10000);
	}
	if (rd(&h, VFNIC_REG_TX_FRAMES) != n || rd(&h, VFNIC_REG_DMA_FAULTS) != 0)
		goto stop;
	qsort(map_ns, n, sizeof(uint64_t), cmp_u64);
	qsort(use_ns, n, sizeof(uint64_t), cmp_u64);
	cJSON_AddNumberToObject(out, "windows", n);
	cJSON_AddNumberToObject(out, "map_p50_us", map_ns[n / 2] / 1e3);
	cJSON_AddNumberToObject(out, "map_p99_us", map_ns[n * 99 / 100] / 1e3);
	cJSON_AddNumberToObject(out, "map_to_use_p50_us", use_ns[n / 2] / 1e3);
	cJSON_AddNumberToObject(out, "map_to_use_p99_us", use_ns[n * 99 / 100] / 1e3);
	ret = 0;
stop:
	host_stop(&h);
out:
	free(map_ns);
	free(use_ns);
	return ret;
}

/* The same through the device model and a vIOMMU: iommu_map() as a guest
 * MAP request would do it, vfio_pci_sync_iommu() as virtio-iommu calls it
 * before completing the request, then the device's first DMA through it. */
static int bv_route(void *o, uint64_t a, uint32_t d, unsigned *gsi) { *gsi = 40; return 0; }
static int bv_update(void *o, unsigned g, uint64_t a, uint32_t d) { return 0; }
static int bv_irqfd(void *o, int fd, unsigned g, bool on) { return 0; }
static int bv_ioevfd(void *o, int fd, uint64_t a, uint32_t l, bool pio, bool on) { return 0; }
static const struct pci_irq_ops bv_irq = { bv_route, bv_update, bv_irqfd, bv_ioevfd };

static int viommu_map_latency(unsigned n, cJSON *out)
{
	struct host h;
	struct bus mmio, pio;
	struct pci_bus pbus;
	struct iommu io;
	struct iommu_params prm;
	struct vfio_pci *vp = calloc(1, sizeof(*vp));
	uint64_t *ns = calloc(n, sizeof(uint64_t));
	const uint32_t ep = 8, dom = 1;
	int ret = -1;

	if (!vp || !ns || host_start(&h, false))
		goto out;
	iommu_params_default(&prm);
	if (iommu_init(&io, &prm) || iommu_endpoint_add(&io, ep, NULL) ||
	    iommu_attach(&io, dom, ep, 0) || bus_init(&mmio, "mmio") || bus_init(&pio, "pio") ||
	    pci_bus_init(&pbus, &mmio, &pio, LAYOUT_PCI_ECAM, &bv_irq, NULL))
		goto out;
	struct vfio_pci_env env = { .bus = &pbus, .mem = &h.mem, .iommu = true, .slot = -1 };
	struct vfio_backend *be = h.be;
	h.be = NULL;
	if (vfio_pci_init(vp, "bench", be, &env))
		goto out;
	pci_bus_config_write(&pbus, vp->pci.slot, 0, PCI_COMMAND, 6, 2);
	uint64_t bar0 = pci_bar_address(&vp->pci, 0);
	uint32_t v;
	/* Ring at IOVA 0x10000 (mapped once), buffers in fresh windows. */
	iommu_map(&io, dom, 0x10000, 0x1ffff, 0x10000, IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE);
	vfio_pci_sync_iommu(vp, &io, ep);
	v = 0x10000; bus_write(&mmio, bar0 + VFNIC_REG_TX_RING_LO, &v, 4);
	v = RING; bus_write(&mmio, bar0 + VFNIC_REG_TX_SIZE, &v, 4);
	v = VFNIC_CTRL_ENABLE; bus_write(&mmio, bar0 + VFNIC_REG_CTRL, &v, 4);
	for (unsigned i = 0; i < n; i++) {
		uint64_t iova = 0x100000000ull + (uint64_t)i * 0x10000;
		struct desc ds = { .addr = iova + 0x100, .len = 64 };

		mem_write(&h.mem, 0x10000 + (i % RING) * sizeof(ds), &ds, sizeof(ds));
		uint64_t t0 = now_ns();
		iommu_map(&io, dom, iova, iova + 0xffff, 0x100000, IOMMU_MAP_F_READ);
		vfio_pci_sync_iommu(vp, &io, ep);
		v = i + 1;
		bus_write(&mmio, bar0 + VFNIC_REG_TX_TAIL, &v, 4);   /* first use */
		ns[i] = now_ns() - t0;
		iommu_unmap(&io, dom, iova, iova + 0xffff);
		vfio_pci_sync_iommu(vp, &io, ep);
	}
	bus_read(&mmio, bar0 + VFNIC_REG_TX_FRAMES, &v, 4);
	uint32_t faults;
	bus_read(&mmio, bar0 + VFNIC_REG_DMA_FAULTS, &faults, 4);
	if (v == n && faults == 0) {
		qsort(ns, n, sizeof(uint64_t), cmp_u64);
		cJSON_AddNumberToObject(out, "viommu_map_to_use_p50_us", ns[n / 2] / 1e3);
		cJSON_AddNumberToObject(out, "viommu_map_to_use_p99_us", ns[n * 99 / 100] / 1e3);
		ret = 0;
	}
	vfio_pci_uninit(vp);
	pci_bus_destroy(&pbus);
	bus_destroy(&mmio);
	bus_destroy(&pio);
	iommu_destroy(&io);
out:
	host_stop(&h);
	free(vp);
	free(ns);
	return ret;
}

/* Run a shell command, capture stdout, find "us=" and "sent=" of a PASS line. */
static double guest_fps_from(const char *cmd)
{
	char line[512];
	double fps = -1;
	FILE *p = popen(cmd, "r");

	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p)) {
		char *s = strstr(line, "sent="), *u = strstr(line, "us=");
		if (strncmp(line, "PASS", 4) || !s || !u)
			continue;
		double sent = atof(s + 5), us = atof(u + 3);
		if (us > 0)
			fps = sent / (us / 1e6);
	}
	pclose(p);
	return fps;
}

static double guest_vf_fps(unsigned count)
{
	char sock[64], cfg[64], cmd[512];
	pid_t pid;
	struct stat st;
	FILE *f;
	double fps;

	snprintf(sock, sizeof(sock), "/tmp/vfbench-%d.sock", getpid());
	snprintf(cfg, sizeof(cfg), "/tmp/vfbench-%d.json", getpid());
	pid = fork();
	if (pid == 0) {
		execl(g_server, g_server, "--socket", sock, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500 && stat(sock, &st); i++)
		usleep(2000);
	f = fopen(cfg, "w");
	if (!f)
		return -1;
	fprintf(f, "{\"kernel\":\"%s\",\"cmdline\":\"test=vf-tx-flood count=%u size=64\","
		   "\"devices\":[{\"vfio-user\":\"%s\"}]}", g_kernel, count, sock);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s run --config %s 2>/dev/null", g_vmm, cfg);
	fps = guest_fps_from(cmd);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(cfg);
	unlink(sock);
	return fps;
}

/* virtio-net on a TAP in a private network namespace (needs root). */
static double guest_virtio_net_fps(unsigned count)
{
	char ns[32], cmd[768];
	double fps;

	snprintf(ns, sizeof(ns), "vfbench%d", getpid());
	snprintf(cmd, sizeof(cmd),
		 "ip netns add %s && ip -n %s tuntap add dev vfb0 mode tap && "
		 "ip -n %s link set vfb0 up", ns, ns, ns);
	if (system(cmd)) {
		snprintf(cmd, sizeof(cmd), "ip netns del %s 2>/dev/null", ns);
		if (system(cmd)) {}
		return -1;
	}
	snprintf(cmd, sizeof(cmd),
		 "ip netns exec %s %s run --kernel %s --net tap=vfb0 "
		 "--cmdline 'test=net-tx-flood count=%u size=64 dst=10.0.2.2' 2>/dev/null",
		 ns, g_vmm, g_kernel, count);
	fps = guest_fps_from(cmd);
	snprintf(cmd, sizeof(cmd), "ip netns del %s", ns);
	if (system(cmd)) {}
	return fps;
}

int main(int argc, char **argv)
{
	const char *out = NULL;
	bool quick = false;
	cJSON *root = cJSON_CreateObject();

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--out") && i + 1 < argc)
			out = argv[++i];
		else if (!strcmp(argv[i], "--vmm") && i + 1 < argc)
			g_vmm = argv[++i];
		else if (!strcmp(argv[i], "--server") && i + 1 < argc)
			g_server = argv[++i];
		else if (!strcmp(argv[i], "--kernel") && i + 1 < argc)
			g_kernel = argv[++i];
		else if (!strcmp(argv[i], "--quick"))
			quick = true;
	}
	if (!g_server || !g_vmm || !g_kernel) {
		fprintf(stderr, "usage: %s --out FILE --vmm BIN --server BIN --kernel ELF [--quick]\n",
			argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_ERROR);
	unsigned host_n = quick ? 20000 : 200000, guest_n = quick ? 2000 : 20000;

	cJSON *h = cJSON_AddObjectToObject(root, "host_vf");
	cJSON_AddNumberToObject(h, "frames", host_n);
	cJSON_AddNumberToObject(h, "frame_bytes", 64);
	cJSON_AddNumberToObject(h, "mapped_memfd_fps", host_frames_per_s(false, host_n, 64));
	cJSON_AddNumberToObject(h, "dma_messages_fps", host_frames_per_s(true, host_n / 4, 64));

	cJSON *g = cJSON_AddObjectToObject(root, "guest_tx");
	cJSON_AddNumberToObject(g, "frames", guest_n);
	cJSON_AddNumberToObject(g, "frame_bytes", 64);
	cJSON_AddNumberToObject(g, "vf_fps", guest_vf_fps(guest_n));
	cJSON_AddNumberToObject(g, "virtio_net_fps", guest_virtio_net_fps(guest_n));
	cJSON_AddStringToObject(g, "note", "guests run emulated here: compare, do not quote");

	cJSON *d = cJSON_AddObjectToObject(root, "dma_map");
	if (dma_map_latency(quick ? 200 : 2000, d))
		cJSON_AddStringToObject(d, "error", "measurement failed");
	if (viommu_map_latency(quick ? 200 : 2000, d))
		cJSON_AddStringToObject(d, "viommu_error", "measurement failed");

	char *s = cJSON_Print(root);
	printf("%s\n", s);
	if (out) {
		FILE *f = fopen(out, "w");
		if (f) {
			fprintf(f, "%s\n", s);
			fclose(f);
		}
	}
	free(s);
	cJSON_Delete(root);
	return 0;
}
