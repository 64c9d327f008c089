/* The virtio-iommu device over real virtqueues in guest memory, with a
 * virtio device behind it: requests, translation of rings and buffers,
 * faults on the event queue, UNMAP in effect at completion, state restore. */
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <time.h>
#include <string.h>

#include "devices/virtio_iommu.h"
#include "devices/virtio_iommu_state.h"
#include "migration/state.h"

#define RAM_SIZE  (8u << 20)
#define QSZ       8
/* viommu queues (guest-physical, the IOMMU itself is not translated). */
#define RQ_DESC   0x10000
#define RQ_AVAIL  0x11000
#define RQ_USED   0x12000
#define EQ_DESC   0x13000
#define EQ_AVAIL  0x14000
#define EQ_USED   0x15000
#define REQ_BUF   0x20000   /* request bytes */
#define REPLY_BUF 0x21000   /* writable part */
#define EV_BUF    0x22000   /* event buffers, 64 bytes apart */
/* Client: rings and buffers live at GPA 0x400000.., the driver uses IOVAs 0x10000000.. */
#define CL_GPA    0x400000ULL
#define CL_IOVA   0x10000000ULL
#define CL_DESC   (CL_IOVA + 0x0000)
#define CL_AVAIL  (CL_IOVA + 0x1000)
#define CL_USED   (CL_IOVA + 0x2000)
#define CL_BUF    (CL_IOVA + 0x10000)   /* 16 pages of buffers */
#define EP        0x10
#define ACCESS_PLATFORM (1ULL << VIRTIO_F_ACCESS_PLATFORM)

static struct guest_mem mem;
static struct virtio_iommu viommu;
static struct virtio_device client;
static struct virtq_elem elem;
static int notifies;

static int count_notify(void *opaque, uint16_t vector)
{
	notifies++;
	return 0;
}

static const struct virtio_transport_ops transport = { .notify = count_notify };

static void *gpa(uint64_t a, uint64_t len)
{
	void *p = mem_gpa_to_hva(&mem, a, len);

	cr_assert_not_null(p);
	return p;
}

/* Guest-side ring helpers over guest-physical addresses. */
static void set_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	struct vring_desc *d = gpa(table + 16ULL * i, 16);

	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

static void post(uint64_t avail_gpa, uint16_t head)
{
	struct vring_avail *a = gpa(avail_gpa, 4 + 2 * QSZ + 2);

	a->ring[a->idx % QSZ] = head;
	__atomic_store_n(&a->idx, (uint16_t)(a->idx + 1), __ATOMIC_RELEASE);
}

static struct vring_used *used_ring(uint64_t used_gpa)
{
	return gpa(used_gpa, 4 + 8 * QSZ + 2);
}

static void start(struct virtio_device *d, uint64_t features, const uint64_t *rings, unsigned nq)
{
	pthread_mutex_lock(&d->lock);
	virtio_device_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_device_set_guest_features(d, 0, (uint32_t)features);
	virtio_device_set_guest_features(d, 1, (uint32_t)(features >> 32));
	virtio_device_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				    VIRTIO_CONFIG_S_FEATURES_OK);
	for (unsigned q = 0; q < nq; q++) {
		struct virtqueue *vq = &d->vqs[q];

		vq->st.size = QSZ;
		vq->st.desc_addr = rings[3 * q];
		vq->st.avail_addr = rings[3 * q + 1];
		vq->st.used_addr = rings[3 * q + 2];
		vq->st.msix_vector = (uint16_t)q;
		cr_assert_eq(virtq_enable(vq), 0, "queue %u of %s", q, d->name);
	}
	virtio_device_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				    VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	pthread_mutex_unlock(&d->lock);
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

/* Send one request through the request queue; return the status byte. */
static int request(const uint8_t *req, size_t len, size_t out_len)
{
	static uint16_t next_used;
	struct vring_used *u = used_ring(RQ_USED);
	uint8_t *reply = gpa(REPLY_BUF, out_len);

	memcpy(gpa(REQ_BUF, len), req, len);
	memset(reply, 0xee, out_len);
	set_desc(RQ_DESC, 0, REQ_BUF, (uint32_t)len, VRING_DESC_F_NEXT, 1);
	set_desc(RQ_DESC, 1, REPLY_BUF, (uint32_t)out_len, VRING_DESC_F_WRITE, 0);
	next_used = u->idx;
	post(RQ_AVAIL, 0);
	virtio_iommu_process_requests(&viommu);
	cr_assert_eq(u->idx, (uint16_t)(next_used + 1), "request completed");
	if (u->ring[next_used % QSZ].len == 0)
		return -1;
	cr_assert_eq(u->ring[next_used % QSZ].len, out_len);
	return reply[out_len - 4];
}

static int attach(uint32_t dom, uint32_t ep)
{
	uint8_t b[VIOMMU_ATTACH_SIZE] = { VIRTIO_IOMMU_T_ATTACH };

	le32(b + 4, dom);
	le32(b + 8, ep);
	return request(b, sizeof(b), 4);
}

static int map(uint32_t dom, uint64_t va, uint64_t size, uint64_t pa, uint32_t flags)
{
	uint8_t b[VIOMMU_MAP_SIZE] = { VIRTIO_IOMMU_T_MAP };

	le32(b + 4, dom);
	le64(b + 8, va);
	le64(b + 16, va + size - 1);
	le64(b + 24, pa);
	le32(b + 32, flags);
	return request(b, sizeof(b), 4);
}

static int unmap(uint32_t dom, uint64_t va, uint64_t size)
{
	uint8_t b[VIOMMU_UNMAP_SIZE] = { VIRTIO_IOMMU_T_UNMAP };

	le32(b + 4, dom);
	le64(b + 8, va);
	le64(b + 16, va + size - 1);
	return request(b, sizeof(b), 4);
}

static void provide_event_buffers(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		set_desc(EQ_DESC, i, EV_BUF + 64ULL * i, 64, VRING_DESC_F_WRITE, 0);
		post(EQ_AVAIL, (uint16_t)i);
	}
}

#define IOMMU_FEATURES ((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_IOMMU_F_MAP_UNMAP) | \
			(1ULL << VIRTIO_IOMMU_F_PROBE) | (1ULL << VIRTIO_IOMMU_F_INPUT_RANGE) | \
			(1ULL << VIRTIO_IOMMU_F_DOMAIN_RANGE) | (1ULL << VIRTIO_IOMMU_F_BYPASS_CONFIG))

static void setup(void)
{
	static const uint64_t vrings[] = { RQ_DESC, RQ_AVAIL, RQ_USED, EQ_DESC, EQ_AVAIL, EQ_USED };

	cr_assert_eq(mem_init(&mem, RAM_SIZE), 0);
	cr_assert_eq(virtio_iommu_init(&viommu, &mem, NULL), 0);
	viommu.vdev.transport = &transport;
	cr_assert_eq(virtio_device_init(&client, "client", &mem, 1, 1, QSZ, NULL, NULL), 0);
	client.transport = &transport;
	cr_assert_eq(virtio_iommu_add_endpoint(&viommu, &client, EP), 0);
	cr_assert(client.host_features & ACCESS_PLATFORM, "ACCESS_PLATFORM offered");
	start(&viommu.vdev, IOMMU_FEATURES, vrings, 2);
	notifies = 0;
}

static void teardown(void)
{
	virtio_iommu_destroy(&viommu);
	virtio_device_destroy(&client);
	mem_destroy(&mem);
}

/* Map the client's rings (RW) and 16 buffer pages, attach, start the client. */
static void start_client(uint32_t buf_flags)
{
	static const uint64_t crings[] = { CL_DESC, CL_AVAIL, CL_USED };

	cr_assert_eq(attach(1, EP), VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, CL_IOVA, 0x3000, CL_GPA, IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE), 0);
	cr_assert_eq(map(1, CL_BUF, 0x10000, CL_GPA + 0x10000, buf_flags), 0);
	start(&client, (1ULL << VIRTIO_F_VERSION_1) | ACCESS_PLATFORM, crings, 1);
	cr_assert_not(client.broken, "%s", client.broken_reason);
}

/* The client driver writes descriptors through the GPA of its IOVA (the test
 * knows the mapping); the device sees only IOVAs. */
static uint64_t cl_gpa(uint64_t iova)
{
	return iova - CL_IOVA + CL_GPA;
}

static int client_pop(void)
{
	int r;

	pthread_mutex_lock(&client.lock);
	r = virtq_pop(&client.vqs[0], &elem);
	pthread_mutex_unlock(&client.lock);
	return r;
}

TestSuite(iommu_device, .init = setup, .fini = teardown);

Test(iommu_device, buffers_translate_iova_to_gpa)
{
	start_client(IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE);
	set_desc(cl_gpa(CL_DESC), 0, CL_BUF + 0x100, 64, VRING_DESC_F_NEXT, 1);
	set_desc(cl_gpa(CL_DESC), 1, CL_BUF + 0x5000, 128, VRING_DESC_F_WRITE, 0);
	post(cl_gpa(CL_AVAIL), 0);
	cr_assert_eq(client_pop(), 1);
	cr_assert_eq(elem.iov[0].iov_base, gpa(CL_GPA + 0x10100, 64));
	cr_assert_eq(elem.iov[1].iov_base, gpa(CL_GPA + 0x15000, 128));
	cr_assert_eq(elem.gpa[1], CL_GPA + 0x15000);
	/* Used ring write goes to the translated address and marks it dirty. */
	pthread_mutex_lock(&client.lock);
	virtq_push(&client.vqs[0], &elem, 128);
	pthread_mutex_unlock(&client.lock);
	cr_assert_eq(((struct vring_used *)gpa(cl_gpa(CL_USED), 16))->idx, 1);
	/* The same buffers again: served from the device's DMA cache, the
	 * IOMMU is not asked again. */
	uint64_t hits = client.dma_cache_hits, misses = client.dma_cache_misses;
	uint64_t io_hits = atomic_load(&viommu.clients[0].ep->tlb_hits);
	uint64_t io_misses = atomic_load(&viommu.clients[0].ep->tlb_misses);
	post(cl_gpa(CL_AVAIL), 0);
	cr_assert_eq(client_pop(), 1);
	cr_assert_eq(elem.iov[1].iov_base, gpa(CL_GPA + 0x15000, 128));
	cr_assert_eq(client.dma_cache_hits, hits + 2, "device cache hits");
	cr_assert_eq(client.dma_cache_misses, misses);
	cr_assert_eq(atomic_load(&viommu.clients[0].ep->tlb_hits), io_hits);
	cr_assert_eq(atomic_load(&viommu.clients[0].ep->tlb_misses), io_misses);
}

static void *client_map(uint64_t iova, uint64_t len, bool write)
{
	void *p;

	pthread_mutex_lock(&client.lock);
	p = virtio_dma_map(&client, iova, len, write, NULL);
	pthread_mutex_unlock(&client.lock);
	return p;
}

/* The device's DMA cache: one entry serves the whole mapping; UNMAP (a new
 * IOMMU generation) invalidates it before the UNMAP completes; a cached
 * read does not allow a write. */
Test(iommu_device, dma_cache_follows_unmap_and_permissions)
{
	start_client(IOMMU_MAP_F_READ);
	provide_event_buffers(2);
	cr_assert_eq(client_map(CL_BUF + 0x100, 64, false), gpa(CL_GPA + 0x10100, 64));
	uint64_t misses = client.dma_cache_misses;
	cr_assert_eq(client_map(CL_BUF + 0x180, 64, false), gpa(CL_GPA + 0x10180, 64));
	cr_assert_eq(client.dma_cache_misses, misses, "same page, same mapping: a hit");
	cr_assert_null(client_map(CL_BUF + 0x100, 64, true), "read-only mapping");
	cr_assert_eq(unmap(1, CL_BUF, 0x10000), VIRTIO_IOMMU_S_OK);
	cr_assert_null(client_map(CL_BUF + 0x100, 64, false), "unmapped: the cached entry is dead");
	virtio_iommu_flush_faults(&viommu);
	cr_assert_eq(used_ring(EQ_USED)->idx, 2, "both refusals reported");
	cr_assert_eq(map(1, CL_BUF, 0x1000, CL_GPA + 0x30000, IOMMU_MAP_F_READ), VIRTIO_IOMMU_S_OK);
	cr_assert_eq(client_map(CL_BUF + 0x100, 64, false), gpa(CL_GPA + 0x30100, 64),
		     "re-mapped elsewhere: the new translation");
}

/* An entry never reaches past the RAM region it was filled in: bypass
 * translates everything 1:1, but an access crossing the end of RAM fails. */
Test(iommu_device, dma_cache_entry_stays_inside_ram)
{
	static const uint64_t rings[] = { CL_GPA, CL_GPA + 0x1000, CL_GPA + 0x2000 };

	iommu_set_bypass(&viommu.io, true);
	start(&client, (1ULL << VIRTIO_F_VERSION_1) | ACCESS_PLATFORM, rings, 1);
	cr_assert_eq(client_map(RAM_SIZE - 128, 64, true), gpa(RAM_SIZE - 128, 64));
	cr_assert_eq(client_map(RAM_SIZE - 64, 64, true), gpa(RAM_SIZE - 64, 64));
	cr_assert_null(client_map(RAM_SIZE - 64, 128, true));
	cr_assert_null(client_map(RAM_SIZE, 1, false));
}

/* Concurrency: a device thread translates one IOVA over and over (through
 * its DMA cache, under its lock as the device does) while this thread maps
 * and unmaps it. A translation that starts after iommu_unmap() returned
 * must fail: phase is odd from then until the next MAP starts. */
struct dma_race {
	_Atomic unsigned phase;
	_Atomic bool stop;
	_Atomic unsigned long violations, hits, tries;
};

static void *dma_race_device(void *arg)
{
	struct dma_race *r = arg;

	while (!atomic_load(&r->stop)) {
		unsigned phase = atomic_load(&r->phase);
		uint8_t *p = client_map(CL_BUF + 0x10, 64, false);

		atomic_fetch_add(&r->tries, 1);
		if ((phase & 1) && phase == atomic_load(&r->phase)) {
			if (p)
				atomic_fetch_add(&r->violations, 1);
		} else if (p) {
			atomic_fetch_add(&r->hits, 1);
			if (p != gpa(CL_GPA + 0x10010, 64))
				atomic_fetch_add(&r->violations, 1);
		}
	}
	return NULL;
}

Test(iommu_device, dma_cache_unmap_wins_against_concurrent_device)
{
	struct dma_race r = { .phase = 1 };
	struct timespec t0, now;
	pthread_t t;

	start_client(IOMMU_MAP_F_READ);
	cr_assert_eq(iommu_unmap(&viommu.io, 1, CL_BUF, CL_BUF + 0xffff), 0);
	cr_assert_eq(pthread_create(&t, NULL, dma_race_device, &r), 0);
	while (!atomic_load(&r.tries))
		sched_yield();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0;; i++) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (i >= 20000 && (atomic_load(&r.tries) >= 100000 || now.tv_sec - t0.tv_sec >= 2))
			break;
		atomic_fetch_add(&r.phase, 1);
		cr_assert_eq(iommu_map(&viommu.io, 1, CL_BUF, CL_BUF + 0xfff, CL_GPA + 0x10000,
				       IOMMU_MAP_F_READ), 0);
		for (volatile int spin = 0; spin < 200; spin++)
			;
		cr_assert_eq(iommu_unmap(&viommu.io, 1, CL_BUF, CL_BUF + 0xfff), 0);
		atomic_fetch_add(&r.phase, 1);
	}
	atomic_store(&r.stop, true);
	pthread_join(t, NULL);
	cr_assert_eq(atomic_load(&r.violations), 0, "a translation used an unmapped IOVA");
	cr_assert_gt(atomic_load(&r.hits), 0, "the device did see the mapping sometimes");
}

Test(iommu_device, unmapped_buffer_faults_and_reports_event)
{
	uint8_t *ident;
	uint8_t *ev = gpa(EV_BUF, 64);

	start_client(IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE);
	provide_event_buffers(2);
	/* The buffer IOVA 0x7000000 is not mapped; its identity GPA holds a pattern. */
	ident = gpa(0x700000, 64);
	memset(ident, 0x5a, 64);
	set_desc(cl_gpa(CL_DESC), 0, 0x700000, 64, VRING_DESC_F_WRITE, 0);
	post(cl_gpa(CL_AVAIL), 0);
	cr_assert_eq(client_pop(), VIRTQ_FAULT, "the request fails");
	cr_assert_eq(elem.head, 0);
	cr_assert_eq(elem.in_num + elem.out_num, 0, "and hands out no buffer");
	cr_assert_not(client.broken, "only the request fails, not the device");
	cr_assert_eq(client.vqs[0].faults, 1);
	pthread_mutex_lock(&client.lock);
	virtq_push(&client.vqs[0], &elem, 0);
	pthread_mutex_unlock(&client.lock);
	cr_assert_eq(used_ring(cl_gpa(CL_USED))->idx, 1, "the failed chain is returned");
	cr_assert_eq(used_ring(cl_gpa(CL_USED))->ring[0].len, 0);
	for (int i = 0; i < 64; i++)
		cr_assert_eq(ident[i], 0x5a, "guest memory untouched");
	virtio_iommu_flush_faults(&viommu);
	cr_assert_eq(used_ring(EQ_USED)->idx, 1, "one fault event");
	cr_assert_eq(used_ring(EQ_USED)->ring[0].len, VIOMMU_FAULT_SIZE);
	cr_assert_eq(ev[0], IOMMU_FAULT_R_MAPPING);
	cr_assert_eq(ev[4], IOMMU_FAULT_F_WRITE);
	cr_assert_eq(ev[5], IOMMU_FAULT_F_ADDRESS >> 8);
	cr_assert_eq(ev[8], EP);
	cr_assert_eq(*(uint64_t *)(ev + 16), 0x700000);
	cr_assert_gt(notifies, 0);
	/* The queue goes on: the next request through a mapped buffer works. */
	set_desc(cl_gpa(CL_DESC), 1, CL_BUF + 0x3000, 64, VRING_DESC_F_WRITE, 0);
	post(cl_gpa(CL_AVAIL), 1);
	cr_assert_eq(client_pop(), 1, "%s", client.broken_reason);
	cr_assert_eq(elem.head, 1);
	cr_assert_eq(elem.gpa[0], CL_GPA + 0x13000);
	cr_assert_eq(used_ring(EQ_USED)->idx, 1, "no second fault event");
}

/* A chain whose first buffer is fine and whose second is not: the whole
 * request fails, one fault event (the first refused address), nothing of
 * the mapped part is handed out either. */
Test(iommu_device, fault_in_second_buffer_fails_whole_request)
{
	start_client(IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE);
	provide_event_buffers(4);
	set_desc(cl_gpa(CL_DESC), 0, CL_BUF, 64, VRING_DESC_F_NEXT, 1);
	set_desc(cl_gpa(CL_DESC), 1, 0x900000, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
	set_desc(cl_gpa(CL_DESC), 2, 0xa00000, 64, VRING_DESC_F_WRITE, 0);
	post(cl_gpa(CL_AVAIL), 0);
	cr_assert_eq(client_pop(), VIRTQ_FAULT);
	cr_assert_eq(elem.out_num + elem.in_num, 0);
	cr_assert_not(client.broken);
	virtio_iommu_flush_faults(&viommu);
	cr_assert_eq(used_ring(EQ_USED)->idx, 1, "one event per failed request");
	cr_assert_eq(*(uint64_t *)gpa(EV_BUF + 16, 8), 0x900000);
}

/* An indirect table the IOMMU refuses fails the request the same way. */
Test(iommu_device, unmapped_indirect_table_fails_request)
{
	static const uint64_t crings[] = { CL_DESC, CL_AVAIL, CL_USED };

	cr_assert_eq(attach(1, EP), VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, CL_IOVA, 0x3000, CL_GPA, IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE), 0);
	cr_assert_eq(map(1, CL_BUF, 0x10000, CL_GPA + 0x10000, IOMMU_MAP_F_READ), 0);
	start(&client, (1ULL << VIRTIO_F_VERSION_1) | ACCESS_PLATFORM |
		       (1ULL << VIRTIO_RING_F_INDIRECT_DESC), crings, 1);
	set_desc(cl_gpa(CL_DESC), 0, 0x800000, 32, VRING_DESC_F_INDIRECT, 0);
	post(cl_gpa(CL_AVAIL), 0);
	cr_assert_eq(client_pop(), VIRTQ_FAULT);
	cr_assert_not(client.broken);
	/* A mapped indirect table on the next request works. */
	set_desc(cl_gpa(CL_BUF + 0x1000), 0, CL_BUF + 0x2000, 16, 0, 0);
	set_desc(cl_gpa(CL_DESC), 1, CL_BUF + 0x1000, 16, VRING_DESC_F_INDIRECT, 0);
	post(cl_gpa(CL_AVAIL), 1);
	cr_assert_eq(client_pop(), 1, "%s", client.broken_reason);
	cr_assert_eq(elem.gpa[0], CL_GPA + 0x12000);
}

/* A failed chain given back (virtio-net RX does that when it has gathered
 * buffers before it) fails again when popped again, without translating or
 * reporting a second time; chains before it are popped normally. */
Test(iommu_device, faulted_chain_given_back_is_not_reported_twice)
{
	start_client(IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE);
	set_desc(cl_gpa(CL_DESC), 0, CL_BUF, 64, VRING_DESC_F_WRITE, 0);
	set_desc(cl_gpa(CL_DESC), 1, 0x900000, 64, VRING_DESC_F_WRITE, 0);
	post(cl_gpa(CL_AVAIL), 0);
	post(cl_gpa(CL_AVAIL), 1);
	cr_assert_eq(client_pop(), 1);
	cr_assert_eq(client_pop(), VIRTQ_FAULT);
	cr_assert_eq(atomic_load(&viommu.io.nr_faults), 1);
	pthread_mutex_lock(&client.lock);
	virtq_unpop(&client.vqs[0], 2);
	pthread_mutex_unlock(&client.lock);
	cr_assert_eq(client_pop(), 1);
	cr_assert_eq(elem.head, 0);
	cr_assert_eq(client_pop(), VIRTQ_FAULT);
	cr_assert_eq(elem.head, 1);
	cr_assert_eq(atomic_load(&viommu.io.nr_faults), 1, "reported once");
	cr_assert_eq(viommu.pending_count, 1);
	cr_assert_eq(client.vqs[0].faults, 1);
	/* Once a later chain is popped, the index is forgotten: the same slot,
	 * reused by a new request with a good buffer, works. */
	set_desc(cl_gpa(CL_DESC), 2, CL_BUF + 0x1000, 64, VRING_DESC_F_WRITE, 0);
	post(cl_gpa(CL_AVAIL), 2);
	cr_assert_eq(client_pop(), 1);
	cr_assert_not(client.vqs[0].fault_idx_valid);
}

Test(iommu_device, read_only_buffer_refuses_device_write)
{
	start_client(IOMMU_MAP_F_READ);
	provide_event_buffers(1);
	set_desc(cl_gpa(CL_DESC), 0, CL_BUF, 64, 0, 0);
	post(cl_gpa(CL_AVAIL), 0);
	cr_assert_eq(client_pop(), 1, "device may read a READ mapping");
	set_desc(cl_gpa(CL_DESC), 1, CL_BUF + 0x1000, 64, VRING_DESC_F_WRITE, 0);
	post(cl_gpa(CL_AVAIL), 1);
	cr_assert_eq(client_pop(), VIRTQ_FAULT, "but not write it");
	cr_assert_not(client.broken);
	virtio_iommu_flush_faults(&viommu);
	cr_assert_eq(used_ring(EQ_USED)->idx, 1);
	cr_assert_eq(((uint8_t *)gpa(EV_BUF, 64))[4], IOMMU_FAULT_F_WRITE);
	post(cl_gpa(CL_AVAIL), 0);
	cr_assert_eq(client_pop(), 1, "reads still work after the fault");
}

Test(iommu_device, unmap_takes_effect_before_completion)
{
	start_client(IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE);
	/* A buffer popped fine, then unmapped: the very next use faults. */
	set_desc(cl_gpa(CL_DESC), 0, CL_BUF + 0x2000, 64, 0, 0);
	post(cl_gpa(CL_AVAIL), 0);
	cr_assert_eq(client_pop(), 1);
	cr_assert_eq(unmap(1, CL_BUF, 0x10000), VIRTIO_IOMMU_S_OK);
	post(cl_gpa(CL_AVAIL), 0);
	cr_assert_eq(client_pop(), VIRTQ_FAULT);
}

/* Rings are not requests: with its rings unmapped the queue cannot go on,
 * and NEEDS_RESET (virtio 1.2 §2.1.2) is the device's only way to say so. */
Test(iommu_device, unmapping_rings_breaks_client_at_completion)
{
	start_client(IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE);
	provide_event_buffers(2);
	cr_assert_eq(unmap(1, CL_IOVA, 0x3000), VIRTIO_IOMMU_S_OK);
	/* Cached ring pointers were re-translated before the UNMAP completed. */
	cr_assert(client.broken, "client must not keep using unmapped rings");
	cr_assert(client.st.status & VIRTIO_CONFIG_S_NEEDS_RESET);
	virtio_iommu_flush_faults(&viommu);
	cr_assert_eq(used_ring(EQ_USED)->idx, 1, "the ring fault is reported too");
	cr_assert_eq(*(uint64_t *)gpa(EV_BUF + 16, 8), CL_DESC);
}

Test(iommu_device, split_refused_then_adjacent_pieces)
{
	uint64_t g;

	start_client(IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE);
	/* Partial UNMAP of the 16-page buffer mapping: S_RANGE, both halves still work. */
	cr_assert_eq(unmap(1, CL_BUF + 0x4000, 0x4000), VIRTIO_IOMMU_S_RANGE);
	cr_assert_eq(iommu_translate(&viommu.io, EP, CL_BUF, 1, IOMMU_PERM_READ, &g, NULL), 0);
	cr_assert_eq(iommu_translate(&viommu.io, EP, CL_BUF + 0xf000, 1, IOMMU_PERM_READ, &g, NULL), 0);
	cr_assert_eq(iommu_translate(&viommu.io, EP, CL_BUF + 0x5000, 1, IOMMU_PERM_READ, &g, NULL), 0);
}

Test(iommu_device, probe_and_unknown_request)
{
	uint8_t b[VIOMMU_PROBE_SIZE] = { VIRTIO_IOMMU_T_PROBE };
	uint8_t *reply;

	le32(b + 4, EP);
	cr_assert_eq(request(b, sizeof(b), VIOMMU_PROBE_PROPS_SIZE + 4), VIRTIO_IOMMU_S_OK);
	reply = gpa(REPLY_BUF, 64);
	cr_assert_eq(reply[0], VIRTIO_IOMMU_PROBE_T_RESV_MEM);
	cr_assert_eq(reply[4], IOMMU_RESV_MEM_T_MSI);
	b[0] = 0x42;
	cr_assert_eq(request(b, sizeof(b), 4), -1, "unknown type: used length 0");
	cr_assert_eq(reply[0], 0xee, "and nothing written");
}

Test(iommu_device, config_space_and_bypass_write)
{
	uint8_t cfg[40], one = 1;

	viommu.vdev.ops->get_config(&viommu.vdev, 0, cfg, sizeof(cfg));
	cr_assert_eq(*(uint64_t *)cfg, ~0xfffULL);
	cr_assert_eq(cfg[36], 0);
	viommu.vdev.ops->set_config(&viommu.vdev, 36, &one, 1);
	viommu.vdev.ops->get_config(&viommu.vdev, 36, cfg, 1);
	cr_assert_eq(cfg[0], 1);
	/* Unattached endpoint now bypasses. */
	uint64_t g;
	cr_assert_eq(iommu_translate(&viommu.io, EP, 0x123000, 8, IOMMU_PERM_WRITE, &g, NULL), 0);
	cr_assert_eq(g, 0x123000);
}

Test(iommu_device, save_restore_keeps_translating)
{
	struct state_tree *t = state_tree_new(), *rt;
	struct state_node *n, root, dn;
	char err[256];
	void *blob;
	size_t len;

	start_client(IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE);
	n = state_add_node(state_tree_root(t), "viommu", 1);
	cr_assert_eq(virtio_iommu_save(&viommu, n), 0);
	cr_assert_eq(state_tree_finish(t, &blob, &len), 0, "%s", state_error(t));
	state_tree_free(t);
	/* Wipe the IOMMU (device reset), then restore. */
	iommu_reset(&viommu.io);
	cr_assert_eq(iommu_nr_mappings(&viommu.io), 0);
	cr_assert_eq(state_tree_open(&rt, blob, len, err, sizeof(err)), 0, "%s", err);
	free(blob);
	cr_assert_eq(state_root(rt, &root), 0);
	cr_assert_eq(state_child(&root, "viommu", &dn), 0);
	cr_assert_eq(virtio_iommu_load(&viommu, &dn), 0, "%s", state_error(rt));
	state_tree_free(rt);
	cr_assert_eq(iommu_nr_mappings(&viommu.io), 2);
	set_desc(cl_gpa(CL_DESC), 0, CL_BUF + 0x300, 32, 0, 0);
	post(cl_gpa(CL_AVAIL), 0);
	cr_assert_eq(client_pop(), 1);
	cr_assert_eq(elem.gpa[0], CL_GPA + 0x10300);
}

Test(iommu_device, iommu_reset_takes_translations_away)
{
	start_client(IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE);
	pthread_mutex_lock(&viommu.vdev.lock);
	virtio_device_set_status(&viommu.vdev, 0);
	pthread_mutex_unlock(&viommu.vdev.lock);
	cr_assert_eq(iommu_nr_domains(&viommu.io), 0);
	cr_assert(client.broken, "client rings must not stay usable after the IOMMU reset");
}
