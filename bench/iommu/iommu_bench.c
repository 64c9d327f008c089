/* virtio-iommu device-side benchmarks; see iommu.mk. Prints a summary and
 * writes JSON (--out FILE). Everything runs in-process on the VMM's own code:
 * no guest, no KVM. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices/iommu_map.h"
#include "devices/virtio_iommu_req.h"

#define ALL_FEATURES ((1ULL << VIRTIO_IOMMU_F_INPUT_RANGE) | (1ULL << VIRTIO_IOMMU_F_DOMAIN_RANGE) | \
		      (1ULL << VIRTIO_IOMMU_F_MAP_UNMAP) | (1ULL << VIRTIO_IOMMU_F_PROBE))

/* CPU time of this thread: the build machines are shared, and being
 * descheduled must not count as translation cost. */
static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
	le32(p, (uint32_t)v);
	le32(p + 4, (uint32_t)(v >> 32));
}

/* Nanoseconds per cached translation of a 64-byte access. */
static double bench_translate(void)
{
	struct iommu io;
	int64_t ns;
	const uint64_t iters = 20000000;

	if (iommu_init(&io, NULL) || iommu_endpoint_add(&io, 8, NULL) || iommu_attach(&io, 1, 8, 0) ||
	    iommu_map(&io, 1, 0x100000, 0x13ffff, 0x200000, IOMMU_MAP_F_READ))
		return -1;
	ns = iommu_bench_translate(&io, 8, 0x100000, 64, 64, iters);
	iommu_destroy(&io);
	return ns < 0 ? -1 : (double)ns / (double)iters;
}

/* MAP + UNMAP request pairs per second through the request handler, with
 * @background mappings already in the domain (tree depth). */
static double bench_map_unmap(unsigned background, unsigned pairs)
{
	struct iommu io;
	struct viommu_ctx ctx = { .io = &io, .features = ALL_FEATURES, .probe_size = 512 };
	uint8_t map[VIOMMU_MAP_SIZE] = { VIRTIO_IOMMU_T_MAP }, unmap[VIOMMU_UNMAP_SIZE] = {
		VIRTIO_IOMMU_T_UNMAP };
	uint8_t out[4], st;
	size_t used;
	unsigned i;
	double t0, t;

	if (iommu_init(&io, NULL) || iommu_endpoint_add(&io, 8, NULL) || iommu_attach(&io, 1, 8, 0))
		return -1;
	for (i = 0; i < background; i++)
		if (iommu_map(&io, 1, 0x100000000ULL + (uint64_t)i * 8192,
			      0x100000000ULL + (uint64_t)i * 8192 + 4095, 0, IOMMU_MAP_F_READ))
			return -1;
	le32(map + 4, 1);
	le32(map + 32, IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE);
	le32(unmap + 4, 1);
	t0 = now_s();
	for (i = 0; i < pairs; i++) {
		/* Interleave with the background so lookups walk the whole tree. */
		uint64_t va = 0x100000000ULL + (uint64_t)(i % (background + 1)) * 8192 + 4096;

		le64(map + 8, va);
		le64(map + 16, va + 4095);
		le64(map + 24, 0x1000000 + (uint64_t)(i % 1024) * 4096);
		viommu_req_handle(&ctx, map, sizeof(map), out, sizeof(out), &used, &st);
		if (st != VIRTIO_IOMMU_S_OK)
			return -1;
		le64(unmap + 8, va);
		le64(unmap + 16, va + 4095);
		viommu_req_handle(&ctx, unmap, sizeof(unmap), out, sizeof(out), &used, &st);
		if (st != VIRTIO_IOMMU_S_OK)
			return -1;
	}
	t = now_s() - t0;
	iommu_destroy(&io);
	return 2.0 * pairs / t;
}

#include "bench/iommu/tx_path.h"

int main(int argc, char **argv)
{
	const char *out = NULL;
	double tr_ns, mu0, mu100k;
	struct tx_result tx;
	FILE *f;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--out") && i + 1 < argc)
			out = argv[++i];
	tr_ns = bench_translate();
	mu0 = bench_map_unmap(0, 500000);
	mu100k = bench_map_unmap(100000, 500000);
	if (tr_ns < 0 || mu0 < 0 || mu100k < 0 || tx_path_bench(&tx)) {
		fprintf(stderr, "iommu_bench: a benchmark failed\n");
		return 1;
	}
	printf("translate (cached, 64 B):        %.1f ns\n", tr_ns);
	printf("MAP/UNMAP requests, empty domain: %.0f req/s\n", mu0);
	printf("MAP/UNMAP requests, 100k mapped:  %.0f req/s\n", mu100k);
	printf("virtio core TX path, IOMMU off:   %.0f frames/s\n", tx.fps_off);
	printf("virtio core TX path, IOMMU on:    %.0f frames/s (ratio %.3f, target >= 0.9)\n",
	       tx.fps_on, tx.fps_on / tx.fps_off);
	printf("  buffers over 512 pages (cache misses): off %.0f, on %.0f frames/s (ratio %.3f)\n",
	       tx.fps_off_miss, tx.fps_on_miss, tx.fps_on_miss / tx.fps_off_miss);
	printf("virtio-net TX path (writes to /dev/null): off %.0f, on %.0f frames/s (ratio %.3f)\n",
	       tx.fps_off_net, tx.fps_on_net, tx.fps_on_net / tx.fps_off_net);
	if (out) {
		f = fopen(out, "w");
		if (!f) {
			perror(out);
			return 1;
		}
		fprintf(f, "{\n  \"benchmark\": \"iommu\",\n"
			   "  \"translate_cached_ns\": %.2f,\n"
			   "  \"map_unmap_req_per_s_empty\": %.0f,\n"
			   "  \"map_unmap_req_per_s_100k\": %.0f,\n"
			   "  \"tx_frames_per_s_iommu_off\": %.0f,\n"
			   "  \"tx_frames_per_s_iommu_on\": %.0f,\n"
			   "  \"tx_ratio_on_off\": %.4f,\n"
			   "  \"tx_frames_per_s_iommu_off_512_pages\": %.0f,\n"
			   "  \"tx_frames_per_s_iommu_on_512_pages\": %.0f,\n"
			   "  \"tx_ratio_on_off_512_pages\": %.4f,\n"
			   "  \"net_tx_frames_per_s_iommu_off\": %.0f,\n"
			   "  \"net_tx_frames_per_s_iommu_on\": %.0f,\n"
			   "  \"net_tx_ratio_on_off\": %.4f,\n"
			   "  \"tx_frame_bytes\": %u,\n"
			   "  \"tx_target_ratio\": 0.9,\n"
			   "  \"clock\": \"thread_cputime\"\n}\n",
			tr_ns, mu0, mu100k, tx.fps_off, tx.fps_on, tx.fps_on / tx.fps_off,
			tx.fps_off_miss, tx.fps_on_miss, tx.fps_on_miss / tx.fps_off_miss,
			tx.fps_off_net, tx.fps_on_net, tx.fps_on_net / tx.fps_off_net, tx.frame_bytes);
		fclose(f);
	}
	return 0;
}
