/* Virtio 1.x core: device status, features, split virtqueues. See virtio.h. */
#include "devices/virtio.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/log.h"

/* Features the core implements for every device. */
#define VIRTIO_CORE_FEATURES ((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC) | \
			      (1ULL << VIRTIO_RING_F_EVENT_IDX))

int virtio_device_init(struct virtio_device *vdev, const char *name, struct guest_mem *mem,
		       uint32_t device_id, unsigned nr_queues, uint16_t queue_size,
		       const struct virtio_device_ops *ops, void *opaque)
{
	memset(vdev, 0, sizeof(*vdev));
	if (nr_queues == 0 || nr_queues > VIRTIO_MAX_QUEUES || queue_size == 0 ||
	    queue_size > VIRTQ_MAX_SIZE || (queue_size & (queue_size - 1)))
		return -EINVAL;
	snprintf(vdev->name, sizeof(vdev->name), "%s", name);
	vdev->mem = mem;
	vdev->device_id = device_id;
	vdev->ops = ops;
	vdev->opaque = opaque;
	vdev->host_features = VIRTIO_CORE_FEATURES;
	vdev->vqs = calloc(nr_queues, sizeof(*vdev->vqs));
	if (!vdev->vqs)
		return -ENOMEM;
	vdev->nr_queues = nr_queues;
	for (unsigned i = 0; i < nr_queues; i++)
		vdev->vqs[i].kick_fd = -1;
	pthread_mutex_init(&vdev->lock, NULL);
	for (unsigned i = 0; i < nr_queues; i++) {
		struct virtqueue *vq = &vdev->vqs[i];

		vq->vdev = vdev;
		vq->index = i;
		vq->max_size = queue_size;
		vq->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vq->kick_fd < 0) {
			int err = -errno;

			virtio_device_destroy(vdev);
			return err;
		}
	}
	pthread_mutex_lock(&vdev->lock);
	virtio_device_reset(vdev);
	vdev->resets = 0;
	pthread_mutex_unlock(&vdev->lock);
	return 0;
}

void virtio_device_destroy(struct virtio_device *vdev)
{
	if (!vdev->vqs)
		return;
	for (unsigned i = 0; i < vdev->nr_queues; i++)
		if (vdev->vqs[i].kick_fd >= 0)
			close(vdev->vqs[i].kick_fd);
	free(vdev->vqs);
	vdev->vqs = NULL;
	free(vdev->dma_cache);
	vdev->dma_cache = NULL;
	pthread_mutex_destroy(&vdev->lock);
}

int virtio_device_set_dma_translate(struct virtio_device *vdev, virtio_dma_translate_fn fn,
				    void *opaque, const _Atomic uint64_t *gen)
{
	if (fn && !vdev->dma_cache) {
		vdev->dma_cache = calloc(VIRTIO_DMA_CACHE_SIZE, sizeof(*vdev->dma_cache));
		if (!vdev->dma_cache)
			return -ENOMEM;
	}
	if (!fn) {
		free(vdev->dma_cache);
		vdev->dma_cache = NULL;
	}
	vdev->dma_translate = fn;
	vdev->dma_opaque = opaque;
	vdev->dma_gen = gen;
	if (fn)
		vdev->host_features |= 1ULL << VIRTIO_F_ACCESS_PLATFORM;
	return 0;
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* DMA cache miss: ask the hook, keep its answer clipped to the RAM region
 * the address is in (so one host pointer covers the whole entry). */
static __attribute__((noinline)) int dma_cache_fill(struct virtio_device *vdev,
						    struct virtio_dma_cache_entry *e, uint64_t addr,
						    uint64_t len, bool write, void **hva,
						    uint64_t *gpa)
{
	const struct mem_region *reg;
	struct virtio_dma_range r;
	uint64_t g, below, above;
	int ret;

	vdev->dma_cache_misses++;
	ret = vdev->dma_translate(vdev->dma_opaque, addr, len, write, &r);
	if (ret)
		return ret == -EFAULT ? -EFAULT : -ERANGE;
	g = r.gpa + (addr - r.start);
	reg = mem_region_of(vdev->mem, g, len);
	if (!reg)
		return -ERANGE;
	below = min_u64(addr - r.start, g - reg->gpa);
	above = min_u64(r.last - addr, reg->gpa + reg->size - 1 - g);
	*e = (struct virtio_dma_cache_entry){ .start = addr - below, .last = addr + above,
					      .gen = r.gen, .hva = reg->hva + (g - reg->gpa) - below,
					      .gpa = g - below, .perm = r.perm };
	*hva = reg->hva + (g - reg->gpa);
	*gpa = g;
	return 0;
}

/* IOVA -> host pointer for a device behind an IOMMU. A hit needs the
 * current generation (so an UNMAP that has returned is in effect), the
 * whole range inside the entry and the access allowed. */
static inline int dma_map_translated(struct virtio_device *vdev, uint64_t addr, uint64_t len,
				     bool write, void **hva, uint64_t *gpa)
{
	struct virtio_dma_cache_entry *e = &vdev->dma_cache[(addr >> 12) & (VIRTIO_DMA_CACHE_SIZE - 1)];
	uint32_t perm = write ? VIRTIO_DMA_WRITE : VIRTIO_DMA_READ;
	uint64_t gen = atomic_load_explicit(vdev->dma_gen, memory_order_acquire);

	if (!len || addr + len - 1 < addr)
		return -ERANGE;
	if (__builtin_expect(e->gen == gen && (e->perm & perm) && addr >= e->start &&
			     addr + len - 1 <= e->last, 1)) {
		vdev->dma_cache_hits++;
		*hva = e->hva + (addr - e->start);
		*gpa = e->gpa + (addr - e->start);
		return 0;
	}
	return dma_cache_fill(vdev, e, addr, len, write, hva, gpa);
}

/* 0 with *hva (and *gpa); -EFAULT: the IOMMU refused the access (the hook
 * has reported the fault); -ERANGE: not guest RAM (or a bad length). */
static int dma_map(struct virtio_device *vdev, uint64_t addr, uint64_t len, bool write,
		   void **hva, uint64_t *gpa)
{
	uint64_t pa;

	if (vdev->dma_translate && virtio_has_feature(vdev, VIRTIO_F_ACCESS_PLATFORM))
		return dma_map_translated(vdev, addr, len, write, hva, gpa ? gpa : &pa);
	*hva = mem_gpa_to_hva(vdev->mem, addr, len);
	if (!*hva)
		return -ERANGE;
	if (gpa)
		*gpa = addr;
	return 0;
}

void virtio_device_quiesce(struct virtio_device *vdev, bool on)
{
	pthread_mutex_lock(&vdev->lock);
	vdev->quiesced = on;
	pthread_mutex_unlock(&vdev->lock);
}

void *virtio_dma_map(struct virtio_device *vdev, uint64_t addr, uint64_t len, bool write,
		     uint64_t *gpa)
{
	void *hva;

	return dma_map(vdev, addr, len, write, &hva, gpa) ? NULL : hva;
}

/* ---- status and features ------------------------------------------------ */

static void virtq_reset(struct virtqueue *vq)
{
	memset(&vq->st, 0, sizeof(vq->st));
	vq->st.size = vq->max_size;
	vq->st.msix_vector = VIRTIO_NO_VECTOR;
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	vq->used_gpa = 0;
	vq->fault_idx_valid = false;
}

void virtio_device_reset(struct virtio_device *vdev)
{
	uint8_t gen = vdev->st.config_generation;

	if (vdev->ops && vdev->ops->reset)
		vdev->ops->reset(vdev);
	memset(&vdev->st, 0, sizeof(vdev->st));
	vdev->st.config_generation = gen + 1;
	vdev->st.config_vector = VIRTIO_NO_VECTOR;
	atomic_store(&vdev->isr, 0);
	vdev->broken = false;
	vdev->broken_reason[0] = 0;
	/* Not needed for correctness (entries carry their generation), but a
	 * reset device starts from nothing. */
	if (vdev->dma_cache)
		memset(vdev->dma_cache, 0, VIRTIO_DMA_CACHE_SIZE * sizeof(*vdev->dma_cache));
	for (unsigned i = 0; i < vdev->nr_queues; i++)
		virtq_reset(&vdev->vqs[i]);
	vdev->resets++;
}

static void virtio_raise(struct virtio_device *vdev, uint8_t isr_bit, uint16_t vector)
{
	atomic_fetch_or(&vdev->isr, isr_bit);
	if (vdev->transport && vdev->transport->notify)
		vdev->transport->notify(vdev->transport_opaque, vector);
}

void virtio_device_config_changed(struct virtio_device *vdev)
{
	vdev->st.config_generation++;
	if (vdev->st.status & VIRTIO_CONFIG_S_DRIVER_OK)
		virtio_raise(vdev, VIRTIO_ISR_CONFIG, vdev->st.config_vector);
}

void virtio_device_set_broken(struct virtio_device *vdev, const char *fmt, ...)
{
	va_list ap;

	if (vdev->broken)
		return;
	vdev->broken = true;
	vdev->broken_count++;
	va_start(ap, fmt);
	vsnprintf(vdev->broken_reason, sizeof(vdev->broken_reason), fmt, ap);
	va_end(ap);
	/* Logged once per reset cycle; the guest cannot flood the log. */
	log_err(vdev->name, "driver error, device needs reset: %s", vdev->broken_reason);
	vdev->st.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	/* §2.1.2: with DRIVER_OK set, NEEDS_RESET comes with a config change notification. */
	if (vdev->st.status & VIRTIO_CONFIG_S_DRIVER_OK)
		virtio_raise(vdev, VIRTIO_ISR_CONFIG, vdev->st.config_vector);
}

void virtio_device_set_guest_features(struct virtio_device *vdev, unsigned word, uint32_t val)
{
	uint64_t mask, v;

	/* §3.1.1: features are fixed once FEATURES_OK is set. */
	if (word > 1 || (vdev->st.status & VIRTIO_CONFIG_S_FEATURES_OK))
		return;
	mask = 0xffffffffULL << (32 * word);
	v = (uint64_t)val << (32 * word);
	/* Bits the device did not offer are dropped; FEATURES_OK re-checks. */
	vdev->st.guest_features = (vdev->st.guest_features & ~mask) | (v & mask & vdev->host_features);
}

static bool virtio_features_acceptable(struct virtio_device *vdev)
{
	/* Modern-only device: VERSION_1 is mandatory (§6.1). */
	if (!virtio_has_feature(vdev, VIRTIO_F_VERSION_1))
		return false;
	return !vdev->ops || !vdev->ops->features_ok || vdev->ops->features_ok(vdev) == 0;
}

void virtio_device_set_status(struct virtio_device *vdev, uint8_t status)
{
	uint8_t old = vdev->st.status;

	if (status == 0) {
		virtio_device_reset(vdev);
		return;
	}
	/* Drivers only add bits (§3.1.1); NEEDS_RESET is the device's to set. */
	status = (uint8_t)((status & ~VIRTIO_CONFIG_S_NEEDS_RESET) | (old & VIRTIO_CONFIG_S_NEEDS_RESET));
	if ((status & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK) &&
	    !virtio_features_acceptable(vdev))
		status &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;   /* driver reads it back: refused */
	if ((status & VIRTIO_CONFIG_S_DRIVER_OK) && !(status & VIRTIO_CONFIG_S_FEATURES_OK)) {
		vdev->st.status = status & (uint8_t)~VIRTIO_CONFIG_S_DRIVER_OK;
		virtio_device_set_broken(vdev, "DRIVER_OK without FEATURES_OK");
		return;
	}
	vdev->st.status = status;
	if ((status & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK) &&
	    !vdev->broken && vdev->ops && vdev->ops->driver_ok)
		vdev->ops->driver_ok(vdev);
}

/* ---- rings ---------------------------------------------------------------- */

static uint64_t vring_desc_bytes(uint16_t n) { return 16ULL * n; }
static uint64_t vring_avail_bytes(uint16_t n) { return 4 + 2ULL * n + 2; }   /* + used_event */
static uint64_t vring_used_bytes(uint16_t n) { return 4 + 8ULL * n + 2; }    /* + avail_event */

static int virtq_map_rings(struct virtqueue *vq)
{
	struct virtio_device *vdev = vq->vdev;
	uint16_t n = vq->st.size;

	/* Stop at the first refused ring: one fault report per queue. */
	vq->avail = NULL;
	vq->used = NULL;
	vq->desc = virtio_dma_map(vdev, vq->st.desc_addr, vring_desc_bytes(n), false, NULL);
	if (vq->desc)
		vq->avail = virtio_dma_map(vdev, vq->st.avail_addr, vring_avail_bytes(n), false, NULL);
	if (vq->avail)
		vq->used = virtio_dma_map(vdev, vq->st.used_addr, vring_used_bytes(n), true,
					  &vq->used_gpa);
	if (!vq->used) {
		vq->desc = NULL;
		vq->avail = NULL;
		vq->used = NULL;
		return -EFAULT;
	}
	return 0;
}

int virtq_enable(struct virtqueue *vq)
{
	struct virtio_device *vdev = vq->vdev;
	uint16_t n = vq->st.size;

	if (vq->st.enabled)
		return 0;
	/* §2.7: split queue size is a power of 2, at most what the device offers. */
	if (n == 0 || n > vq->max_size || (n & (n - 1))) {
		virtio_device_set_broken(vdev, "queue %u: bad size %u", vq->index, n);
		return -EINVAL;
	}
	/* §2.7.2 alignment: descriptors 16, driver area 2, device area 4. */
	if ((vq->st.desc_addr & 15) || (vq->st.avail_addr & 1) || (vq->st.used_addr & 3)) {
		virtio_device_set_broken(vdev, "queue %u: misaligned ring", vq->index);
		return -EINVAL;
	}
	if (virtq_map_rings(vq)) {
		virtio_device_set_broken(vdev, "queue %u: ring outside guest memory (desc 0x%llx avail 0x%llx used 0x%llx)",
					 vq->index, (unsigned long long)vq->st.desc_addr,
					 (unsigned long long)vq->st.avail_addr,
					 (unsigned long long)vq->st.used_addr);
		return -EFAULT;
	}
	vq->st.enabled = true;
	return 0;
}

int virtio_device_remap_rings(struct virtio_device *vdev)
{
	int ret = 0;

	for (unsigned i = 0; i < vdev->nr_queues && !ret; i++) {
		struct virtqueue *vq = &vdev->vqs[i];

		if (vq->st.enabled && virtq_map_rings(vq)) {
			virtio_device_set_broken(vdev, "queue %u: ring no longer mapped", i);
			vq->st.enabled = false;
			ret = -EFAULT;
		}
	}
	if (vdev->ops && vdev->ops->dma_changed)
		vdev->ops->dma_changed(vdev);
	return ret;
}

/* Quiesced counts as not running: every guest-RAM access of the queue
 * functions (pop, fill after a pop, set_notification) is behind this. */
static bool virtq_running(const struct virtqueue *vq)
{
	const struct virtio_device *vdev = vq->vdev;

	return vq->st.enabled && !vdev->broken && !vdev->quiesced &&
	       (vdev->st.status & VIRTIO_CONFIG_S_DRIVER_OK);
}

static uint16_t le16_load_acquire(const __virtio16 *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

uint16_t virtq_avail_count(struct virtqueue *vq)
{
	if (!virtq_running(vq))
		return 0;
	return (uint16_t)(le16_load_acquire(&vq->avail->idx) - vq->st.last_avail_idx);
}

/* Walk state for one chain. */
struct chain_walk {
	struct virtqueue *vq;
	struct virtq_elem *elem;
	unsigned count;       /* descriptors mapped so far */
	/* The translation fault that failed the request (CHAIN_FAULT). */
	uint64_t fault_addr;
	uint32_t fault_len;
	bool fault_write;
};

/* chain_add()/chain_walk_table(): the IOMMU refused a buffer; not an error
 * of the chain itself (see virtio.h). Positive, unlike the -errno results. */
#define CHAIN_FAULT 1

static int chain_fault(struct chain_walk *w, uint64_t addr, uint32_t len, bool write)
{
	w->fault_addr = addr;
	w->fault_len = len;
	w->fault_write = write;
	return CHAIN_FAULT;
}

static int chain_add(struct chain_walk *w, const struct vring_desc *d)
{
	struct virtio_device *vdev = w->vq->vdev;
	struct virtq_elem *e = w->elem;
	uint64_t addr = d->addr, gpa;
	uint32_t len = d->len;
	bool write = d->flags & VRING_DESC_F_WRITE;
	unsigned slot = e->out_num + e->in_num;
	void *hva;

	if (len == 0) {
		virtio_device_set_broken(vdev, "queue %u head %u: zero-length descriptor",
					 w->vq->index, e->head);
		return -EINVAL;
	}
	if (!write && e->in_num) {
		/* §2.7.4.2: device-readable descriptors come before writable ones. */
		virtio_device_set_broken(vdev, "queue %u head %u: readable descriptor after a writable one",
					 w->vq->index, e->head);
		return -EINVAL;
	}
	if (slot >= VIRTQ_MAX_SIZE) {
		virtio_device_set_broken(vdev, "queue %u head %u: chain too long", w->vq->index, e->head);
		return -E2BIG;
	}
	switch (dma_map(vdev, addr, len, write, &hva, &gpa)) {
	case 0:
		break;
	case -EFAULT:
		return chain_fault(w, addr, len, write);
	default:
		virtio_device_set_broken(vdev, "queue %u head %u: buffer 0x%llx+%u outside guest memory",
					 w->vq->index, e->head, (unsigned long long)addr, len);
		return -EFAULT;
	}
	e->iov[slot] = (struct iovec){ .iov_base = hva, .iov_len = len };
	e->gpa[slot] = gpa;
	if (write) {
		e->in_num++;
		e->in_len += len;
	} else {
		e->out_num++;
		e->out_len += len;
	}
	return 0;
}

/* Walk a descriptor table of @max entries starting at @idx. The guest may
 * rewrite descriptors under us: each is copied once, then only the copy is
 * used (no double fetch). */
static int chain_walk_table(struct chain_walk *w, const struct vring_desc *table, unsigned max,
			    uint16_t idx, bool indirect)
{
	struct virtqueue *vq = w->vq;
	struct virtio_device *vdev = vq->vdev;
	unsigned steps = 0;

	for (;;) {
		struct vring_desc d;
		int ret;

		if (idx >= max) {
			virtio_device_set_broken(vdev, "queue %u head %u: next index %u out of range",
						 vq->index, w->elem->head, idx);
			return -EINVAL;
		}
		/* A chain visits each entry at most once; more steps means a loop (§2.7.5.2). */
		if (++steps > max) {
			virtio_device_set_broken(vdev, "queue %u head %u: descriptor loop or chain longer than %u",
						 vq->index, w->elem->head, max);
			return -ELOOP;
		}
		memcpy(&d, (const void *)&table[idx], sizeof(d));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (d.flags & VRING_DESC_F_INDIRECT) {
			ret = -EINVAL;
			if (indirect)
				virtio_device_set_broken(vdev, "queue %u head %u: indirect descriptor inside an indirect table",
							 vq->index, w->elem->head);
			else if (!virtio_has_feature(vdev, VIRTIO_RING_F_INDIRECT_DESC))
				virtio_device_set_broken(vdev, "queue %u head %u: INDIRECT not negotiated",
							 vq->index, w->elem->head);
			else if (d.flags & VRING_DESC_F_NEXT)
				virtio_device_set_broken(vdev, "queue %u head %u: INDIRECT together with NEXT",
							 vq->index, w->elem->head);
			else if (d.len == 0 || d.len % sizeof(struct vring_desc) ||
				 d.len / sizeof(struct vring_desc) > VIRTQ_MAX_SIZE)
				virtio_device_set_broken(vdev, "queue %u head %u: bad indirect table length %u",
							 vq->index, w->elem->head, d.len);
			else
				ret = 0;
			if (ret)
				return ret;
			void *itab;

			ret = dma_map(vdev, d.addr, d.len, false, &itab, NULL);
			if (ret == -EFAULT)
				return chain_fault(w, d.addr, d.len, false);
			if (ret) {
				virtio_device_set_broken(vdev, "queue %u head %u: indirect table 0x%llx+%u outside guest memory",
							 vq->index, w->elem->head,
							 (unsigned long long)d.addr, d.len);
				return -EFAULT;
			}
			/* An indirect descriptor ends the chain in the main table. */
			return chain_walk_table(w, itab, d.len / sizeof(struct vring_desc), 0, true);
		}
		ret = chain_add(w, &d);
		if (ret)
			return ret;   /* -errno, or CHAIN_FAULT: the rest of the chain is not looked at */
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		idx = d.next;
	}
}

/* A request failed on a translation fault: count it, remember its avail
 * index (virtq_unpop may give it back), log it without letting the guest
 * flood the log. The IOMMU hook has queued the fault report already. */
static void virtq_fault(struct virtqueue *vq, const struct chain_walk *w)
{
	struct virtio_device *vdev = vq->vdev;
	char more[48] = "";
	uint64_t missed;

	vq->faults++;
	vq->fault_idx = vq->st.last_avail_idx;
	vq->fault_idx_valid = true;
	if (!log_ratelimit(&vdev->fault_log, 10, 5000, &missed))
		return;
	if (missed)
		snprintf(more, sizeof(more), " (%llu before it not logged)", (unsigned long long)missed);
	log_warn(vdev->name, "queue %u head %u: IOMMU refused %s of 0x%llx+%u, request failed%s",
		 vq->index, w->elem->head, w->fault_write ? "write" : "read",
		 (unsigned long long)w->fault_addr, w->fault_len, more);
}

int virtq_pop(struct virtqueue *vq, struct virtq_elem *elem)
{
	struct virtio_device *vdev = vq->vdev;
	struct chain_walk w = { .vq = vq, .elem = elem };
	uint16_t avail_idx, n, head;
	int ret;

	if (!virtq_running(vq))
		return 0;
	avail_idx = le16_load_acquire(&vq->avail->idx);
	n = (uint16_t)(avail_idx - vq->st.last_avail_idx);
	if (n == 0)
		return 0;
	if (n > vq->st.size) {
		virtio_device_set_broken(vdev, "queue %u: avail index %u runs %u ahead of %u",
					 vq->index, avail_idx, n, vq->st.last_avail_idx);
		return -EINVAL;
	}
	head = __atomic_load_n(&vq->avail->ring[vq->st.last_avail_idx % vq->st.size], __ATOMIC_RELAXED);
	elem->head = head;
	elem->out_num = elem->in_num = 0;
	elem->out_len = elem->in_len = 0;
	if (head >= vq->st.size) {
		virtio_device_set_broken(vdev, "queue %u: head index %u out of range", vq->index, head);
		return -EINVAL;
	}
	if (vq->fault_idx_valid && vq->fault_idx == vq->st.last_avail_idx) {
		/* Faulted and reported already, then given back: fail it again. */
		ret = CHAIN_FAULT;
	} else {
		/* A chain after the remembered one is popped: that one is gone
		 * for good (chains before it are popped again after an unpop). */
		if ((uint16_t)(vq->st.last_avail_idx - vq->fault_idx) < 0x8000)
			vq->fault_idx_valid = false;
		ret = chain_walk_table(&w, vq->desc, vq->st.size, head, false);
		if (ret < 0)
			return ret;
		if (ret == CHAIN_FAULT)
			virtq_fault(vq, &w);
	}
	vq->st.last_avail_idx++;
	vq->pops++;
	if (ret == CHAIN_FAULT) {
		/* The request fails: nothing of it may be touched. */
		elem->out_num = elem->in_num = 0;
		elem->out_len = elem->in_len = 0;
		return VIRTQ_FAULT;
	}
	return 1;
}

void virtq_unpop(struct virtqueue *vq, uint16_t n)
{
	vq->st.last_avail_idx = (uint16_t)(vq->st.last_avail_idx - n);
}

void virtq_fill_head(struct virtqueue *vq, uint16_t head, uint32_t len, uint16_t pos)
{
	uint16_t slot = (uint16_t)(vq->st.used_idx + pos) % vq->st.size;
	struct vring_used_elem *ue;

	if (!vq->used)
		return;
	ue = &vq->used->ring[slot];
	ue->id = head;
	ue->len = len;
	mem_mark_dirty(vq->vdev->mem, vq->used_gpa + 4 + 8ULL * slot, 8);
}

void virtq_fill(struct virtqueue *vq, const struct virtq_elem *elem, uint32_t len, uint16_t pos)
{
	uint32_t left = len;

	if (!vq->used)
		return;
	/* The device's writes into the buffers: dirty for migration. */
	for (unsigned i = elem->out_num; i < elem->out_num + elem->in_num && left; i++) {
		uint32_t n = left < elem->iov[i].iov_len ? left : (uint32_t)elem->iov[i].iov_len;

		mem_mark_dirty(vq->vdev->mem, elem->gpa[i], n);
		left -= n;
	}
	virtq_fill_head(vq, elem->head, len, pos);
}

void virtq_flush(struct virtqueue *vq, uint16_t count)
{
	if (!vq->used)
		return;
	vq->st.used_idx = (uint16_t)(vq->st.used_idx + count);
	/* §2.7.8: the used element must be visible before the index. */
	__atomic_store_n(&vq->used->idx, vq->st.used_idx, __ATOMIC_RELEASE);
	mem_mark_dirty(vq->vdev->mem, vq->used_gpa + 2, 2);
}

bool virtq_set_notification(struct virtqueue *vq, bool enable)
{
	struct virtio_device *vdev = vq->vdev;

	if (!virtq_running(vq))
		return false;
	if (virtio_has_feature(vdev, VIRTIO_RING_F_EVENT_IDX)) {
		/* avail_event sits after the used ring (§2.7.8). Suppression with
		 * EVENT_IDX is implicit: we just do not move it forward. */
		if (enable) {
			uint16_t *avail_event = (uint16_t *)((uint8_t *)vq->used + 4 + 8ULL * vq->st.size);

			__atomic_store_n(avail_event, vq->st.last_avail_idx, __ATOMIC_RELAXED);
			mem_mark_dirty(vdev->mem, vq->used_gpa + 4 + 8ULL * vq->st.size, 2);
		}
	} else {
		__atomic_store_n(&vq->used->flags, enable ? 0 : VRING_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
		mem_mark_dirty(vdev->mem, vq->used_gpa, 2);
	}
	if (!enable)
		return false;
	/* Pairs with the driver's barrier between publishing avail->idx and
	 * reading our suppression state: otherwise a kick could be lost. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return virtq_avail_count(vq) != 0;
}

bool virtq_should_notify(struct virtqueue *vq)
{
	struct virtio_device *vdev = vq->vdev;
	uint16_t old, new, used_event;
	bool valid;

	if (!vq->used)
		return false;
	/* Our used->idx store must be visible before we read the driver's
	 * suppression state (§2.7.7.2). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!virtio_has_feature(vdev, VIRTIO_RING_F_EVENT_IDX))
		return !(__atomic_load_n(&vq->avail->flags, __ATOMIC_RELAXED) & VRING_AVAIL_F_NO_INTERRUPT);
	old = vq->st.signalled_used;
	valid = vq->st.signalled_used_valid;
	new = vq->st.signalled_used = vq->st.used_idx;
	vq->st.signalled_used_valid = true;
	if (!valid)
		return true;
	used_event = __atomic_load_n(&vq->avail->ring[vq->st.size], __ATOMIC_RELAXED);
	return virtq_need_event(used_event, new, old);
}

void virtq_notify(struct virtqueue *vq)
{
	if (!virtq_should_notify(vq)) {
		vq->suppressed++;
		return;
	}
	vq->notifies++;
	virtio_raise(vq->vdev, VIRTIO_ISR_QUEUE, vq->st.msix_vector);
}

/* ---- iovec helpers -------------------------------------------------------- */

size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t skip, const void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t seg = iov[i].iov_len, c;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		c = seg - skip < len - done ? seg - skip : len - done;
		memcpy((uint8_t *)iov[i].iov_base + skip, (const uint8_t *)buf + done, c);
		done += c;
		skip = 0;
	}
	return done;
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t seg = iov[i].iov_len, c;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		c = seg - skip < len - done ? seg - skip : len - done;
		memcpy((uint8_t *)buf + done, (const uint8_t *)iov[i].iov_base + skip, c);
		done += c;
		skip = 0;
	}
	return done;
}
