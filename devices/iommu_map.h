/* The virtio-iommu translation state: domains, endpoints and mappings
 * (virtio 1.2 §5.13), independent of any transport, so it can be unit-tested,
 * saved into the state tree and shadowed into VFIO later.
 *
 * Structure:
 *   - endpoints: the endpoint IDs this IOMMU manages (PCI requester IDs of the
 *     devices placed behind it), registered by the VMM before the guest runs;
 *   - domains: created by ATTACH, destroyed when their last endpoint detaches;
 *   - mappings: per domain, non-overlapping [virt_start, virt_end] -> phys.
 * All three live in AVL trees (keyed by endpoint ID, domain ID, virt_start),
 * so lookup, insertion and removal are O(log n).
 *
 * Errors are negative errnos chosen so the request layer maps them 1:1 to
 * virtio status codes (iommu_errno_to_status()):
 *   -EINVAL -> S_INVAL, -ERANGE -> S_RANGE, -ENOENT -> S_NOENT,
 *   -ENOMEM -> S_NOMEM, -EOPNOTSUPP -> S_UNSUPP, -EFAULT -> S_FAULT.
 *
 * Translation: iommu_translate() takes an endpoint, an IOVA range and the
 * access type, and returns the guest-physical address, or -EFAULT plus a
 * fault record (reason, flags, address) for the event queue. Each endpoint
 * has a small translation cache; every change of the translation state (MAP,
 * UNMAP, ATTACH, DETACH, bypass, reset) bumps one generation counter before
 * the call returns, which invalidates every cached entry at once: an UNMAP is
 * in effect for every translation that starts after iommu_unmap() returned.
 *
 * Locking: one mutex serializes changes and cache misses; cache hits are
 * lock-free (per-entry sequence counter + generation check), so the DMA fast
 * path of a device costs a few loads. Any thread may call any function. */
#ifndef DEVICES_IOMMU_MAP_H
#define DEVICES_IOMMU_MAP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* MAP flags (virtio 1.2 §5.13.6.5). */
#define IOMMU_MAP_F_READ   (1u << 0)
#define IOMMU_MAP_F_WRITE  (1u << 1)
#define IOMMU_MAP_F_MMIO   (1u << 2)
/* ATTACH flags (§5.13.6.3). */
#define IOMMU_ATTACH_F_BYPASS (1u << 0)

/* Access type for translation. */
#define IOMMU_PERM_READ    IOMMU_MAP_F_READ    /* device reads guest memory */
#define IOMMU_PERM_WRITE   IOMMU_MAP_F_WRITE   /* device writes guest memory */

/* Fault reasons and flags (§5.13.6.9). */
#define IOMMU_FAULT_R_UNKNOWN 0
#define IOMMU_FAULT_R_DOMAIN  1
#define IOMMU_FAULT_R_MAPPING 2
#define IOMMU_FAULT_F_READ    (1u << 0)
#define IOMMU_FAULT_F_WRITE   (1u << 1)
#define IOMMU_FAULT_F_ADDRESS (1u << 8)

/* Reserved-region subtypes for PROBE (§5.13.6.8.1). */
#define IOMMU_RESV_MEM_T_RESERVED 0
#define IOMMU_RESV_MEM_T_MSI      1

#define IOMMU_TLB_ENTRIES 256        /* per endpoint, direct-mapped by IOVA page: 1 MiB of 4 KiB pages */
#define IOMMU_MAX_RESV    4

struct iommu_avl {                    /* intrusive AVL node */
	struct iommu_avl *left, *right;
	uint64_t key;
	int height;
};

struct iommu_mapping {
	struct iommu_avl node;             /* key = virt_start */
	uint64_t virt_end;                 /* inclusive */
	uint64_t phys;
	uint32_t flags;
};

struct iommu_domain {
	struct iommu_avl node;             /* key = domain ID */
	bool bypass;                       /* created with ATTACH_F_BYPASS */
	unsigned nr_endpoints;
	uint64_t nr_mappings;
	struct iommu_avl *mappings;
};

/* One cached translation: [start, end] -> phys with flags, valid while
 * gen equals the IOMMU generation. seq is odd while the entry is written. */
struct iommu_tlb_entry {
	_Atomic uint32_t seq;
	uint32_t flags;
	uint64_t gen, start, end, phys;    /* accessed with __atomic relaxed ops */
} __attribute__((aligned(64)));        /* one cache line per entry */

struct iommu_endpoint {
	struct iommu_avl node;             /* key = endpoint ID */
	struct iommu_domain *domain;       /* NULL = not attached */
	struct iommu_tlb_entry tlb[IOMMU_TLB_ENTRIES];
	_Atomic uint64_t tlb_hits, tlb_misses, faults;
};

struct iommu_resv {
	uint64_t start, end;               /* inclusive */
	uint8_t subtype;                   /* IOMMU_RESV_MEM_T_* */
};

struct iommu_params {
	uint64_t page_size_mask;           /* lowest set bit = granule; 0 -> 4 KiB pages */
	uint64_t input_start, input_end;   /* IOVA window (inclusive) */
	uint32_t domain_start, domain_end; /* valid domain IDs (inclusive) */
	bool bypass;                       /* initial config.bypass (BYPASS_CONFIG) */
	uint64_t max_mappings;             /* across all domains; 0 -> 1 Mi */
	unsigned nr_resv;
	struct iommu_resv resv[IOMMU_MAX_RESV];
};

struct iommu_mapping_info;
/* An observer of translation changes, for back ends that must mirror them
 * (VFIO: shadow the mappings of a passed-through device's domain into its
 * container/IOAS). Called with the IOMMU lock held, in order, before the
 * call that made the change returns (so before the guest's request
 * completes); a callback must not call back into this IOMMU. When a domain
 * ceases to exist (last endpoint detached, reset, restore) every mapping of
 * it is reported as unmapped first. */
struct iommu_listener {
	void (*map)(void *opaque, uint32_t domain, const struct iommu_mapping_info *m);
	void (*unmap)(void *opaque, uint32_t domain, const struct iommu_mapping_info *m);
	void (*attach)(void *opaque, uint32_t domain, uint32_t ep);
	void (*detach)(void *opaque, uint32_t domain, uint32_t ep);
	void *opaque;
};

struct iommu {
	struct iommu_params params;
	const struct iommu_listener *listener;   /* optional, see iommu_set_listener */
	pthread_mutex_t lock;
	_Atomic uint64_t gen;              /* bumped on every translation change */
	_Atomic bool bypass;               /* config.bypass, current value */
	struct iommu_avl *endpoints, *domains;
	unsigned nr_endpoints, nr_domains;
	uint64_t nr_mappings;
	/* Counters for vm.info / vm.counters. */
	_Atomic uint64_t nr_map_ops, nr_unmap_ops, nr_faults;
};

struct iommu_fault {
	uint8_t reason;                    /* IOMMU_FAULT_R_* */
	uint32_t flags;                    /* IOMMU_FAULT_F_* */
	uint32_t endpoint;
	uint64_t address;
};

/* Fill @p with this VMM's defaults: 4 KiB granule, 48-bit IOVA window,
 * domains 1..65535, bypass off, the x86 MSI window reserved. */
void iommu_params_default(struct iommu_params *p);
int iommu_init(struct iommu *io, const struct iommu_params *p);
void iommu_destroy(struct iommu *io);
/* Device reset (§5.13.5): every endpoint detached, every domain gone.
 * config.bypass keeps its value (§5.13.4.2). */
void iommu_reset(struct iommu *io);
/* System reset: iommu_reset() and config.bypass back to its initial value. */
void iommu_system_reset(struct iommu *io);
void iommu_set_bypass(struct iommu *io, bool bypass);

/* Endpoints managed by this IOMMU (VMM side, not guest requests). Add them
 * before the guest runs: endpoints are never removed before iommu_destroy(),
 * so the returned pointer stays valid and is the handle for the fast path. */
int iommu_endpoint_add(struct iommu *io, uint32_t ep, struct iommu_endpoint **out);
struct iommu_endpoint *iommu_endpoint_find(struct iommu *io, uint32_t ep);
static inline uint32_t iommu_endpoint_id(const struct iommu_endpoint *e)
{
	return (uint32_t)e->node.key;
}

/* Guest requests. Return 0 or the negative errno documented above. */
int iommu_attach(struct iommu *io, uint32_t domain, uint32_t ep, uint32_t flags);
int iommu_detach(struct iommu *io, uint32_t domain, uint32_t ep);
int iommu_map(struct iommu *io, uint32_t domain, uint64_t virt_start, uint64_t virt_end,
	      uint64_t phys, uint32_t flags);
int iommu_unmap(struct iommu *io, uint32_t domain, uint64_t virt_start, uint64_t virt_end);

/* A successful translation, as a range a caller may cache: IOVAs
 * [start, last] map linearly to phys.. with access @flags, as long as the
 * IOMMU's generation (io->gen) still equals @gen. It always contains the
 * range asked for (when that crosses contiguous mappings, it is exactly
 * that range). */
struct iommu_xlate {
	uint64_t start, last;
	uint64_t phys;                     /* guest-physical address of start */
	uint32_t flags;                    /* IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE */
	uint64_t gen;
};

/* The out-of-line part of iommu_translate_ep_range(): argument checks, cache
 * miss, tree walk under the lock, cache fill, fault record. */
int iommu_translate_ep_slow(struct iommu *io, struct iommu_endpoint *ep, uint64_t iova,
			    uint64_t len, uint32_t perm, struct iommu_xlate *x,
			    struct iommu_fault *fault);

static inline unsigned iommu_tlb_index(uint64_t iova)
{
	return (unsigned)(iova >> 12) & (IOMMU_TLB_ENTRIES - 1);
}

/* Lock-free cache lookup: a hit needs a stable entry (even, unchanged seq),
 * the current generation, the whole range inside the entry and the
 * permission. Inline: this is the DMA fast path of every translated device. */
static inline bool iommu_tlb_lookup(struct iommu *io, struct iommu_endpoint *e, uint64_t iova,
				    uint64_t len, uint32_t perm, struct iommu_xlate *x)
{
	struct iommu_tlb_entry *t = &e->tlb[iommu_tlb_index(iova)];
	uint64_t start, end, gen;
	uint32_t seq, flags;

	seq = atomic_load_explicit(&t->seq, memory_order_acquire);
	if (seq & 1)
		return false;
	/* Early exits on values that may be torn only cause a miss; the
	 * values used for the result are validated by the second seq read. */
	gen = __atomic_load_n(&t->gen, __ATOMIC_RELAXED);
	if (gen != atomic_load_explicit(&io->gen, memory_order_acquire))
		return false;
	start = __atomic_load_n(&t->start, __ATOMIC_RELAXED);
	end = __atomic_load_n(&t->end, __ATOMIC_RELAXED);
	/* len >= 1 and no wrap are checked by the caller. */
	if (iova < start || iova - start > end - start || len - 1 > end - iova)
		return false;
	flags = __atomic_load_n(&t->flags, __ATOMIC_RELAXED);
	if ((flags & perm) != perm)
		return false;
	x->phys = __atomic_load_n(&t->phys, __ATOMIC_RELAXED);
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&t->seq, memory_order_relaxed) != seq)
		return false;
	x->start = start;
	x->last = end;
	x->flags = flags;
	x->gen = gen;
	return true;
}

/* Translate [iova, iova+len) for endpoint @ep with access @perm (IOMMU_PERM_*).
 * The range may span adjacent mappings only if their physical ranges are
 * contiguous too. 0 and *x on success; -EFAULT with *fault filled when the
 * access is not allowed (fault may be NULL); -EINVAL on len 0, wrap or a bad
 * @perm. Cache hits are counted without a locked instruction (a relaxed
 * load + store: concurrent translators may lose a count, fine for vm.info). */
static inline int iommu_translate_ep_range(struct iommu *io, struct iommu_endpoint *ep,
					   uint64_t iova, uint64_t len, uint32_t perm,
					   struct iommu_xlate *x, struct iommu_fault *fault)
{
	if (__builtin_expect(len && iova + len - 1 >= iova && perm && perm <= 3, 1) &&
	    iommu_tlb_lookup(io, ep, iova, len, perm, x)) {
		atomic_store_explicit(&ep->tlb_hits,
				      atomic_load_explicit(&ep->tlb_hits, memory_order_relaxed) + 1,
				      memory_order_relaxed);
		return 0;
	}
	return iommu_translate_ep_slow(io, ep, iova, len, perm, x, fault);
}

/* The same, giving just the guest-physical address of @iova in *gpa. */
static inline int iommu_translate_ep(struct iommu *io, struct iommu_endpoint *ep, uint64_t iova,
				     uint64_t len, uint32_t perm, uint64_t *gpa,
				     struct iommu_fault *fault)
{
	struct iommu_xlate x;
	int r = iommu_translate_ep_range(io, ep, iova, len, perm, &x, fault);

	if (!r)
		*gpa = x.phys + (iova - x.start);
	return r;
}
/* By endpoint ID (looks the endpoint up; unknown -> -ENOENT). */
int iommu_translate(struct iommu *io, uint32_t ep, uint64_t iova, uint64_t len, uint32_t perm,
		    uint64_t *gpa, struct iommu_fault *fault);
/* Same walk on a domain's mapping tree directly, no cache (tests, reference). */
int iommu_domain_translate(struct iommu *io, uint32_t domain, uint64_t iova, uint64_t len,
			   uint32_t perm, uint64_t *gpa);

/* Iteration for info and state save, under the lock. Return non-zero from a
 * callback to stop; that value is returned. Order: ascending IDs / IOVAs. */
struct iommu_domain_info {
	uint32_t id;
	bool bypass;
	unsigned nr_endpoints;
	uint64_t nr_mappings;
};
struct iommu_endpoint_info {
	uint32_t id;
	bool attached;
	uint32_t domain;
	uint64_t tlb_hits, tlb_misses, faults;
};
struct iommu_mapping_info {
	uint64_t virt_start, virt_end, phys;
	uint32_t flags;
};
int iommu_for_each_domain(struct iommu *io, int (*fn)(void *opaque, const struct iommu_domain_info *d),
			  void *opaque);
int iommu_for_each_endpoint(struct iommu *io,
			    int (*fn)(void *opaque, const struct iommu_endpoint_info *e), void *opaque);
int iommu_for_each_mapping(struct iommu *io, uint32_t domain,
			   int (*fn)(void *opaque, const struct iommu_mapping_info *m), void *opaque);
/* Replace @dst's domains, mappings, attachments and config.bypass with
 * @src's, leaving @src without domains. Both must have the same endpoint
 * set (-EINVAL otherwise, nothing changed). Used by restore: build and
 * validate a scratch iommu, then commit it in one step that cannot fail
 * halfway. Endpoint handles of @dst stay valid. */
int iommu_adopt(struct iommu *dst, struct iommu *src);

/* Install (or with NULL remove) the listener; the current state is not
 * replayed (use the iterators). */
void iommu_set_listener(struct iommu *io, const struct iommu_listener *l);

/* Mapping counts, for vm.info. */
uint64_t iommu_nr_mappings(struct iommu *io);
unsigned iommu_nr_domains(struct iommu *io);

/* Granule (smallest page size) in bytes. */
static inline uint64_t iommu_granule(const struct iommu *io)
{
	return io->params.page_size_mask & -io->params.page_size_mask;
}

/* Microbenchmark for bench/iommu: @iters translations of @len bytes spread
 * over @nr_pages mapped pages; returns elapsed nanoseconds or -errno. */
int64_t iommu_bench_translate(struct iommu *io, uint32_t ep, uint64_t iova_base,
			      uint64_t nr_pages, uint64_t len, uint64_t iters);

#endif
