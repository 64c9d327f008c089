/* bench-net: frames per second from guest TX to a TAP, measured on the host
 * side (the TAP's rx_packets counter), against the physical limit measured
 * in the same run (this program writing the same frames to the same TAP as
 * fast as it can), plus a device-side microbenchmark that feeds pre-built
 * descriptor chains to the virtio-net TX path without a guest.
 *
 * Runs in a network namespace of its own; writes JSON (see --out). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio_net.h"

#define RAM_SIZE   (16u << 20)
#define QSZ        256
#define DESC_GPA   0x10000
#define AVAIL_GPA  0x20000
#define USED_GPA   0x30000
#define FRAME_GPA  0x40000
#define BENCH_REPEATS 3

struct opts {
	const char *vmm, *guest, *out;
	unsigned limit_frames, micro_frames, guest_frames;
};

static double now_s(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int sh(const char *cmd)
{
	int st = system(cmd);

	return (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
}

static long tap_rx_packets(void)
{
	char buf[64] = { 0 };
	int fd = open("/sys/class/net/tap0/statistics/rx_packets", O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	return n > 0 ? atol(buf) : -1;
}

/* A broadcast Ethernet/IPv4/UDP frame of @size bytes after a zero vnet header. */
static void build_frame(uint8_t *p, unsigned size)
{
	static const uint8_t head[] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00,
		0x45, 0x00,
	};

	memset(p, 0, VIRTIO_NET_HDR_LEN + size);
	memcpy(p + VIRTIO_NET_HDR_LEN, head, sizeof(head));
	p[VIRTIO_NET_HDR_LEN + 16] = (uint8_t)((size - 14) >> 8);
	p[VIRTIO_NET_HDR_LEN + 17] = (uint8_t)(size - 14);
	p[VIRTIO_NET_HDR_LEN + 22] = 64;
	p[VIRTIO_NET_HDR_LEN + 23] = 17;
}

static int open_tap(void)
{
	unsigned n = 1;
	int fd;
	char err[256];

	/* A vmm that just exited may still hold the TAP for a moment (its
	 * teardown runs in a child process): retry while busy. */
	for (int tries = 0; tries < 100; tries++) {
		int ret = net_tap_open("tap0", &n, true, &fd, err, sizeof(err));

		if (ret == 0)
			return fd;
		if (ret != -EBUSY)
			break;
		usleep(50000);
	}
	fprintf(stderr, "bench-net: %s\n", err);
	return -1;
}

/* The physical limit: write() the frame to the TAP in a loop. */
static double bench_limit(unsigned size, unsigned frames, double *per_core)
{
	uint8_t frame[VIRTIO_NET_HDR_LEN + 1514];
	int fd = open_tap();
	long before = tap_rx_packets();
	double t0, t;

	if (fd < 0)
		return -1;
	build_frame(frame, size);
	double c0 = now_s(CLOCK_THREAD_CPUTIME_ID);
	t0 = now_s(CLOCK_MONOTONIC);
	for (unsigned i = 0; i < frames;) {
		if (write(fd, frame, VIRTIO_NET_HDR_LEN + size) > 0)
			i++;
	}
	t = now_s(CLOCK_MONOTONIC) - t0;
	*per_core = frames / (now_s(CLOCK_THREAD_CPUTIME_ID) - c0);
	close(fd);
	if (tap_rx_packets() - before < (long)frames)
		fprintf(stderr, "bench-net: TAP counted %ld of %u frames\n", tap_rx_packets() - before, frames);
	return frames / t;
}

/* Device-side: pre-built chains through virtio_net_tx_process, no guest. */
static int bench_device(unsigned size, unsigned frames, double *per_core, double *wall)
{
	struct net_config cfg = { .backend = NET_TAP, .mac = { 0x52, 0x54, 0, 0, 0, 1 } };
	struct guest_mem mem;
	struct virtio_net net;
	struct virtqueue *vq;
	int fd = open_tap(), ret;
	unsigned done = 0;
	double c0, w0;

	if (fd < 0)
		return -1;
	ret = mem_init(&mem, RAM_SIZE);
	if (ret)
		return ret;
	memset(&net, 0, sizeof(net));
	ret = virtio_net_init(&net, "bench-net", &mem, &cfg, &fd, 1, 0);
	if (ret)
		goto out_mem;
	build_frame(mem_gpa_to_hva(&mem, FRAME_GPA, 2048), size);
	struct vring_desc *d = mem_gpa_to_hva(&mem, DESC_GPA, 16 * QSZ);
	struct vring_avail *a = mem_gpa_to_hva(&mem, AVAIL_GPA, 4 + 2 * QSZ + 2);
	for (unsigned i = 0; i < QSZ; i++) {
		d[i] = (struct vring_desc){ FRAME_GPA, VIRTIO_NET_HDR_LEN + size, 0, 0 };
		a->ring[i] = (uint16_t)i;
	}
	pthread_mutex_lock(&net.vdev.lock);
	virtio_device_set_status(&net.vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_device_set_guest_features(&net.vdev, 1, 1);   /* VERSION_1 */
	virtio_device_set_status(&net.vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					    VIRTIO_CONFIG_S_FEATURES_OK);
	vq = net.qp[0].txq;
	vq->st.size = QSZ;
	vq->st.desc_addr = DESC_GPA;
	vq->st.avail_addr = AVAIL_GPA;
	vq->st.used_addr = USED_GPA;
	virtq_enable(vq);
	virtio_device_set_status(&net.vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					    VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	c0 = now_s(CLOCK_THREAD_CPUTIME_ID);
	w0 = now_s(CLOCK_MONOTONIC);
	while (done < frames) {
		bool more;
		int r;

		a->idx = (uint16_t)(a->idx + QSZ);   /* the "driver" posts a full ring */
		r = virtio_net_tx_process(&net.qp[0], &more);
		if (r <= 0) {
			ret = r ? r : -EIO;
			break;
		}
		done += (unsigned)r;
	}
	*per_core = done / (now_s(CLOCK_THREAD_CPUTIME_ID) - c0);
	*wall = done / (now_s(CLOCK_MONOTONIC) - w0);
	pthread_mutex_unlock(&net.vdev.lock);
	if (net.qp[0].tx_errors)
		fprintf(stderr, "bench-net: %llu TX errors\n", (unsigned long long)net.qp[0].tx_errors);
	virtio_net_uninit(&net);
	ret = done >= frames ? 0 : ret;
out_mem:
	mem_destroy(&mem);
	return ret;
}

/* The guest floods; the host watches the TAP's rx_packets. The rate is
 * counted from the first frame seen to the last, so boot time is excluded. */
static double bench_guest(const struct opts *o, unsigned size, unsigned frames, double *guest_fps)
{
	char cmdline[128], outpath[64];
	long base = tap_rx_packets(), c;
	double t_first = 0, t_last = 0, deadline;
	pid_t pid;
	int st;

	snprintf(cmdline, sizeof(cmdline), "test=net-tx-flood event_idx=1 count=%u size=%u", frames, size);
	snprintf(outpath, sizeof(outpath), "/tmp/vmm-bench-net-%d.out", (int)getpid());
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(fd, 1);
		dup2(fd, 2);
		execl(o->vmm, o->vmm, "run", "--kernel", o->guest, "--cmdline", cmdline, "--net",
		      "tap=tap0", "--console", "stdio", (char *)NULL);
		_exit(127);
	}
	deadline = now_s(CLOCK_MONOTONIC) + 60;
	while (now_s(CLOCK_MONOTONIC) < deadline) {
		c = tap_rx_packets() - base;
		if (c > 0 && !t_first)
			t_first = now_s(CLOCK_MONOTONIC);
		if (c >= (long)frames) {
			t_last = now_s(CLOCK_MONOTONIC);
			break;
		}
		usleep(100);
	}
	if (!t_last)
		kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	*guest_fps = -1;
	{
		char buf[4096] = { 0 }, *p;
		int fd = open(outpath, O_RDONLY);
		ssize_t n = fd < 0 ? 0 : read(fd, buf, sizeof(buf) - 1);

		if (fd >= 0)
			close(fd);
		(void)n;
		p = strstr(buf, " us=");
		if (p && atol(p + 4) > 0)
			*guest_fps = frames / (atol(p + 4) / 1e6);
		unlink(outpath);
	}
	if (!t_last || t_last <= t_first)
		return -1;
	return (frames - 1) / (t_last - t_first);
}

/* sysfs shows the namespace it was mounted in, so run ourselves again under
 * `ip netns exec` (which remounts /sys) rather than just setns(). */
static int run_in_netns(int argc, char **argv, char *ns, size_t len)
{
	char cmd[256];
	char **args = calloc((size_t)argc + 6, sizeof(*args));
	pid_t pid;
	int st = -1, n = 0;

	if (!args)
		return -1;
	snprintf(ns, len, "vmmbench%d", (int)getpid());
	snprintf(cmd, sizeof(cmd), "ip netns add %s && ip -n %s tuntap add dev tap0 mode tap && "
		 "ip -n %s link set tap0 up", ns, ns, ns);
	if (sh(cmd)) {
		free(args);
		return -1;
	}
	args[n++] = "ip";
	args[n++] = "netns";
	args[n++] = "exec";
	args[n++] = ns;
	args[n++] = argv[0];
	args[n++] = "--in-netns";
	for (int i = 1; i < argc; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	pid = fork();
	if (pid == 0) {
		execvp("ip", args);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
	free(args);
	snprintf(cmd, sizeof(cmd), "ip netns del %s", ns);
	sh(cmd);
	return (pid > 0 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
}

static const char note[] =
	"guest_ratio compares frames/s a guest pushes through virtio-net to the TAP with a host "
	"program writing the same frames to the same TAP. Guests here run fully emulated by KVM's "
	"instruction emulator (~1.5M guest instructions/s, see ENVIRONMENT.md), so guest_fps is "
	"bounded by the guest's own instruction rate, not by the device: the 0.8 target is not "
	"reachable on this machine and guest_ratio is reported as measured. device_ratio is the "
	"device-side TX path alone (pre-built descriptor chains, zero-copy io_uring WRITEV batches to the same TAP, "
	"one core) against the same limit (best of three runs each; *_per_core figures divide by the "
	"thread's CPU time, so they do not depend on what else the two cores were doing): it is what a "
	"hardware-KVM guest could reach at most.";

int main(int argc, char **argv)
{
	struct opts o = { "build/vmm", "build/images/testguest.elf", "build/bench/net.json", 200000,
			  200000, 20000 };
	static const unsigned sizes[] = { 64, 1500 };
	cJSON *root = cJSON_CreateObject(), *results = cJSON_CreateArray();
	char ns[64] = "";
	int ret = 0;

	bool in_netns = argc > 1 && !strcmp(argv[1], "--in-netns");

	for (int i = in_netns ? 2 : 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--vmm"))
			o.vmm = argv[i + 1];
		else if (!strcmp(argv[i], "--guest"))
			o.guest = argv[i + 1];
		else if (!strcmp(argv[i], "--out"))
			o.out = argv[i + 1];
		else if (!strcmp(argv[i], "--frames"))
			o.limit_frames = o.micro_frames = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--guest-frames"))
			o.guest_frames = (unsigned)atoi(argv[i + 1]);
	}
	cJSON_AddStringToObject(root, "benchmark", "net-tx");
	cJSON_AddNumberToObject(root, "target_ratio", 0.8);
	cJSON_AddStringToObject(root, "note", note);
	if (geteuid() != 0 || access("/dev/net/tun", R_OK | W_OK)) {
		cJSON_AddStringToObject(root, "skipped", "needs root and /dev/net/tun");
		goto write;
	}
	/* Without /dev/kvm no guest runs: the limit and the device-side
	 * microbenchmark still do. */
	bool have_kvm = !access("/dev/kvm", R_OK | W_OK);

	if (!have_kvm)
		cJSON_AddStringToObject(root, "guest_skipped", "no /dev/kvm: guest TX not measured");
	if (!in_netns) {
		ret = run_in_netns(argc, argv, ns, sizeof(ns));
		if (ret >= 0) {
			cJSON_Delete(results);
			cJSON_Delete(root);
			return ret;
		}
		cJSON_AddStringToObject(root, "skipped", "cannot create a network namespace with a TAP");
		goto write;
	}
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned size = sizes[i];
		double limit, limit_core, dev_core = -1, dev_wall = -1, guest_host, guest_self;
		cJSON *r = cJSON_CreateObject();

		/* Best of three: this machine has two cores and other work. */
		limit = limit_core = -1;
		for (int rep = 0; rep < BENCH_REPEATS; rep++) {
			double l, lc, dc = -1, dw = -1;

			l = bench_limit(size, o.limit_frames, &lc);
			if (l > limit) {
				limit = l;
				limit_core = lc;
			}
			if (bench_device(size, o.micro_frames, &dc, &dw))
				fprintf(stderr, "bench-net: device microbenchmark failed\n");
			if (dw > dev_wall) {
				dev_wall = dw;
				dev_core = dc;
			}
		}
		guest_host = guest_self = -1;
		if (have_kvm)
			guest_host = bench_guest(&o, size, o.guest_frames, &guest_self);
		cJSON_AddNumberToObject(r, "frame_bytes", size);
		cJSON_AddNumberToObject(r, "limit_fps", limit);
		cJSON_AddNumberToObject(r, "limit_fps_per_core", limit_core);
		cJSON_AddNumberToObject(r, "guest_fps", guest_host);
		cJSON_AddNumberToObject(r, "guest_fps_guest_clock", guest_self);
		cJSON_AddNumberToObject(r, "guest_ratio", limit > 0 && guest_host > 0 ? guest_host / limit : -1);
		cJSON_AddNumberToObject(r, "device_fps_per_core", dev_core);
		cJSON_AddNumberToObject(r, "device_fps_wall", dev_wall);
		cJSON_AddNumberToObject(r, "device_ratio", limit > 0 && dev_wall > 0 ? dev_wall / limit : -1);
		cJSON_AddNumberToObject(r, "device_ratio_per_core",
					limit_core > 0 && dev_core > 0 ? dev_core / limit_core : -1);
		cJSON_AddItemToArray(results, r);
		printf("bench-net: %4u B  limit %.0f fps  guest %.0f fps (ratio %.3f)  device %.0f fps/core, %.0f fps wall (ratio %.3f)\n",
		       size, limit, guest_host, guest_host / limit, dev_core, dev_wall, dev_wall / limit);
		if ((have_kvm && guest_host <= 0) || limit <= 0 || dev_wall <= 0)
			ret = 1;
	}
	cJSON_AddItemToObject(root, "results", results);
	results = NULL;
write:
	if (results)
		cJSON_Delete(results);
	{
		char *s = cJSON_Print(root);
		FILE *f = fopen(o.out, "w");

		if (!f || !s || fputs(s, f) < 0) {
			fprintf(stderr, "bench-net: cannot write %s\n", o.out);
			ret = 1;
		}
		if (f)
			fclose(f);
		free(s);
	}
	cJSON_Delete(root);
	printf("bench-net: wrote %s\n", o.out);
	return ret;
}
