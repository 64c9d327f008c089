/* virtio-iommu translation state: AVL trees of endpoints, domains and
 * mappings, MAP/UNMAP with the exact semantics of virtio 1.2 §5.13.6, and a
 * cached translation path. See iommu_map.h for the model and locking. */
#include "devices/iommu_map.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/log.h"

#define LOG_PREFIX "iommu"

/* ---------------------------------------------------------------------------
 * Intrusive AVL tree keyed by u64. Recursion depth is bounded by the tree
 * height (< 1.45 log2 n), so at most ~90 frames even for 2^64 nodes.
 */

static int avl_height(const struct iommu_avl *n)
{
	return n ? n->height : 0;
}

static void avl_update(struct iommu_avl *n)
{
	int l = avl_height(n->left), r = avl_height(n->right);

	n->height = (l > r ? l : r) + 1;
}

static struct iommu_avl *avl_rotate_right(struct iommu_avl *n)
{
	struct iommu_avl *l = n->left;

	n->left = l->right;
	l->right = n;
	avl_update(n);
	avl_update(l);
	return l;
}

static struct iommu_avl *avl_rotate_left(struct iommu_avl *n)
{
	struct iommu_avl *r = n->right;

	n->right = r->left;
	r->left = n;
	avl_update(n);
	avl_update(r);
	return r;
}

static struct iommu_avl *avl_balance(struct iommu_avl *n)
{
	int bf;

	avl_update(n);
	bf = avl_height(n->left) - avl_height(n->right);
	if (bf > 1) {
		if (avl_height(n->left->left) < avl_height(n->left->right))
			n->left = avl_rotate_left(n->left);
		return avl_rotate_right(n);
	}
	if (bf < -1) {
		if (avl_height(n->right->right) < avl_height(n->right->left))
			n->right = avl_rotate_right(n->right);
		return avl_rotate_left(n);
	}
	return n;
}

static struct iommu_avl *avl_insert_at(struct iommu_avl *root, struct iommu_avl *node, int *err)
{
	if (!root) {
		node->left = node->right = NULL;
		node->height = 1;
		return node;
	}
	if (node->key < root->key)
		root->left = avl_insert_at(root->left, node, err);
	else if (node->key > root->key)
		root->right = avl_insert_at(root->right, node, err);
	else {
		*err = -EEXIST;
		return root;
	}
	return avl_balance(root);
}

static int avl_insert(struct iommu_avl **root, struct iommu_avl *node)
{
	int err = 0;

	*root = avl_insert_at(*root, node, &err);
	return err;
}

static struct iommu_avl *avl_remove_min(struct iommu_avl *n, struct iommu_avl **min)
{
	if (!n->left) {
		*min = n;
		return n->right;
	}
	n->left = avl_remove_min(n->left, min);
	return avl_balance(n);
}

static struct iommu_avl *avl_remove_at(struct iommu_avl *n, uint64_t key, struct iommu_avl **out)
{
	struct iommu_avl *min, *right;

	if (!n)
		return NULL;
	if (key < n->key) {
		n->left = avl_remove_at(n->left, key, out);
	} else if (key > n->key) {
		n->right = avl_remove_at(n->right, key, out);
	} else {
		*out = n;
		if (!n->right)
			return n->left;
		right = avl_remove_min(n->right, &min);
		min->right = right;
		min->left = n->left;
		return avl_balance(min);
	}
	return avl_balance(n);
}

static struct iommu_avl *avl_remove(struct iommu_avl **root, uint64_t key)
{
	struct iommu_avl *out = NULL;

	*root = avl_remove_at(*root, key, &out);
	return out;
}

static struct iommu_avl *avl_find(struct iommu_avl *n, uint64_t key)
{
	while (n && n->key != key)
		n = key < n->key ? n->left : n->right;
	return n;
}

/* Greatest node with key <= @key. */
static struct iommu_avl *avl_floor(struct iommu_avl *n, uint64_t key)
{
	struct iommu_avl *best = NULL;

	while (n) {
		if (n->key == key)
			return n;
		if (n->key < key) {
			best = n;
			n = n->right;
		} else {
			n = n->left;
		}
	}
	return best;
}

/* Smallest node with key >= @key. */
static struct iommu_avl *avl_ceil(struct iommu_avl *n, uint64_t key)
{
	struct iommu_avl *best = NULL;

	while (n) {
		if (n->key == key)
			return n;
		if (n->key > key) {
			best = n;
			n = n->left;
		} else {
			n = n->right;
		}
	}
	return best;
}

static int avl_walk(struct iommu_avl *n, int (*fn)(struct iommu_avl *, void *), void *opaque)
{
	int r;

	if (!n)
		return 0;
	r = avl_walk(n->left, fn, opaque);
	if (r)
		return r;
	r = fn(n, opaque);
	if (r)
		return r;
	return avl_walk(n->right, fn, opaque);
}

static void avl_free_all(struct iommu_avl *n, void (*free_node)(struct iommu_avl *))
{
	if (!n)
		return;
	avl_free_all(n->left, free_node);
	avl_free_all(n->right, free_node);
	free_node(n);
}

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static struct iommu_mapping *to_mapping(struct iommu_avl *n)
{
	return n ? container_of(n, struct iommu_mapping, node) : NULL;
}

static struct iommu_domain *to_domain(struct iommu_avl *n)
{
	return n ? container_of(n, struct iommu_domain, node) : NULL;
}

static struct iommu_endpoint *to_endpoint(struct iommu_avl *n)
{
	return n ? container_of(n, struct iommu_endpoint, node) : NULL;
}

/* ---------------------------------------------------------------------------
 * Listener notifications (lock held)
 */

static struct iommu_mapping_info mapping_info(const struct iommu_mapping *m)
{
	return (struct iommu_mapping_info){ .virt_start = m->node.key, .virt_end = m->virt_end,
					    .phys = m->phys, .flags = m->flags };
}

static void notify_map(struct iommu *io, uint32_t domain, const struct iommu_mapping *m, bool add)
{
	const struct iommu_listener *l = io->listener;
	struct iommu_mapping_info info;

	if (!l || !(add ? l->map : l->unmap))
		return;
	info = mapping_info(m);
	(add ? l->map : l->unmap)(l->opaque, domain, &info);
}

static void notify_ep(struct iommu *io, uint32_t domain, uint32_t ep, bool attach)
{
	const struct iommu_listener *l = io->listener;

	if (l && (attach ? l->attach : l->detach))
		(attach ? l->attach : l->detach)(l->opaque, domain, ep);
}

struct notify_ctx {
	struct iommu *io;
	uint32_t domain;
	bool add;
};

static int notify_mapping_node(struct iommu_avl *n, void *opaque)
{
	struct notify_ctx *c = opaque;

	notify_map(c->io, c->domain, to_mapping(n), c->add);
	return 0;
}

/* Every mapping of @d as added or removed. */
static void notify_domain_mappings(struct iommu *io, struct iommu_domain *d, bool add)
{
	struct notify_ctx c = { .io = io, .domain = (uint32_t)d->node.key, .add = add };

	if (io->listener)
		avl_walk(d->mappings, notify_mapping_node, &c);
}

static int notify_endpoint_node(struct iommu_avl *n, void *opaque)
{
	struct notify_ctx *c = opaque;
	struct iommu_endpoint *e = to_endpoint(n);

	if (e->domain)
		notify_ep(c->io, (uint32_t)e->domain->node.key, (uint32_t)n->key, c->add);
	return 0;
}

static int notify_domain_node(struct iommu_avl *n, void *opaque)
{
	struct notify_ctx *c = opaque;

	notify_domain_mappings(c->io, to_domain(n), c->add);
	return 0;
}

/* The whole state as torn down (add = false: detaches, then unmaps) or
 * built up (add = true: maps, then attaches). */
static void notify_all(struct iommu *io, bool add)
{
	struct notify_ctx c = { .io = io, .add = add };

	if (!io->listener)
		return;
	if (!add)
		avl_walk(io->endpoints, notify_endpoint_node, &c);
	avl_walk(io->domains, notify_domain_node, &c);
	if (add)
		avl_walk(io->endpoints, notify_endpoint_node, &c);
}

void iommu_set_listener(struct iommu *io, const struct iommu_listener *l)
{
	pthread_mutex_lock(&io->lock);
	io->listener = l;
	pthread_mutex_unlock(&io->lock);
}

/* ---------------------------------------------------------------------------
 * Lifecycle
 */

void iommu_params_default(struct iommu_params *p)
{
	memset(p, 0, sizeof(*p));
	p->page_size_mask = ~0xfffULL;          /* 4 KiB granule, any larger size */
	p->input_start = 0;
	p->input_end = (1ULL << 48) - 1;
	p->domain_start = 1;
	p->domain_end = 0xffff;
	p->bypass = false;
	p->max_mappings = 1u << 20;
	/* x86 routes DMA writes to 0xfee00000-0xfeefffff to the LAPICs as MSIs
	 * without IOMMU translation here; tell the driver (§5.13.6.8.1). */
	p->nr_resv = 1;
	p->resv[0].start = 0xfee00000ULL;
	p->resv[0].end = 0xfeefffffULL;
	p->resv[0].subtype = IOMMU_RESV_MEM_T_MSI;
}

int iommu_init(struct iommu *io, const struct iommu_params *p)
{
	int r;

	memset(io, 0, sizeof(*io));
	if (p)
		io->params = *p;
	else
		iommu_params_default(&io->params);
	if (!io->params.page_size_mask)
		io->params.page_size_mask = ~0xfffULL;
	if (!io->params.max_mappings)
		io->params.max_mappings = 1u << 20;
	if (io->params.input_end < io->params.input_start ||
	    io->params.domain_end < io->params.domain_start ||
	    io->params.nr_resv > IOMMU_MAX_RESV) {
		log_err(LOG_PREFIX, "invalid parameters");
		return -EINVAL;
	}
	r = pthread_mutex_init(&io->lock, NULL);
	if (r)
		return -r;
	atomic_init(&io->gen, 1);
	atomic_init(&io->bypass, io->params.bypass);
	return 0;
}

static void free_mapping_node(struct iommu_avl *n)
{
	free(to_mapping(n));
}

static void free_domain_node(struct iommu_avl *n)
{
	struct iommu_domain *d = to_domain(n);

	avl_free_all(d->mappings, free_mapping_node);
	free(d);
}

static void free_endpoint_node(struct iommu_avl *n)
{
	free(to_endpoint(n));
}

/* Called with the lock held (or single-threaded): invalidates every cached
 * translation. The release store orders the tree changes before it. */
static void iommu_bump_gen(struct iommu *io)
{
	atomic_fetch_add_explicit(&io->gen, 1, memory_order_release);
}

static int detach_endpoint_node(struct iommu_avl *n, void *opaque)
{
	to_endpoint(n)->domain = NULL;
	return 0;
}

void iommu_destroy(struct iommu *io)
{
	avl_free_all(io->domains, free_domain_node);
	avl_free_all(io->endpoints, free_endpoint_node);
	io->domains = io->endpoints = NULL;
	pthread_mutex_destroy(&io->lock);
}

void iommu_reset(struct iommu *io)
{
	pthread_mutex_lock(&io->lock);
	notify_all(io, false);
	avl_walk(io->endpoints, detach_endpoint_node, NULL);
	avl_free_all(io->domains, free_domain_node);
	io->domains = NULL;
	io->nr_domains = 0;
	io->nr_mappings = 0;
	iommu_bump_gen(io);
	pthread_mutex_unlock(&io->lock);
}

void iommu_system_reset(struct iommu *io)
{
	iommu_reset(io);
	iommu_set_bypass(io, io->params.bypass);
}

void iommu_set_bypass(struct iommu *io, bool bypass)
{
	pthread_mutex_lock(&io->lock);
	atomic_store(&io->bypass, bypass);
	iommu_bump_gen(io);
	pthread_mutex_unlock(&io->lock);
}

/* ---------------------------------------------------------------------------
 * Endpoints and domains
 */

int iommu_endpoint_add(struct iommu *io, uint32_t ep, struct iommu_endpoint **out)
{
	struct iommu_endpoint *e = calloc(1, sizeof(*e));
	int r;

	if (!e)
		return -ENOMEM;
	e->node.key = ep;
	pthread_mutex_lock(&io->lock);
	r = avl_insert(&io->endpoints, &e->node);
	if (!r)
		io->nr_endpoints++;
	pthread_mutex_unlock(&io->lock);
	if (r) {
		free(e);
		log_err(LOG_PREFIX, "endpoint 0x%x registered twice", ep);
		return r;
	}
	if (out)
		*out = e;
	return 0;
}

struct iommu_endpoint *iommu_endpoint_find(struct iommu *io, uint32_t ep)
{
	struct iommu_endpoint *e;

	pthread_mutex_lock(&io->lock);
	e = to_endpoint(avl_find(io->endpoints, ep));
	pthread_mutex_unlock(&io->lock);
	return e;
}

static void domain_put_endpoint(struct iommu *io, struct iommu_endpoint *e)
{
	struct iommu_domain *d = e->domain;

	e->domain = NULL;
	notify_ep(io, (uint32_t)d->node.key, (uint32_t)e->node.key, false);
	/* §5.13.6.4: after all endpoints are detached the domain ceases to exist. */
	if (--d->nr_endpoints == 0) {
		notify_domain_mappings(io, d, false);
		avl_remove(&io->domains, d->node.key);
		io->nr_domains--;
		io->nr_mappings -= d->nr_mappings;
		free_domain_node(&d->node);
	}
}

int iommu_attach(struct iommu *io, uint32_t domain, uint32_t ep, uint32_t flags)
{
	struct iommu_endpoint *e;
	struct iommu_domain *d;
	bool bypass = flags & IOMMU_ATTACH_F_BYPASS;
	int r = 0;

	/* §5.13.6.3.2: unknown flags -> S_INVAL. */
	if (flags & ~IOMMU_ATTACH_F_BYPASS)
		return -EINVAL;
	if (domain < io->params.domain_start || domain > io->params.domain_end)
		return -ERANGE;
	pthread_mutex_lock(&io->lock);
	e = to_endpoint(avl_find(io->endpoints, ep));
	if (!e) {
		r = -ENOENT;
		goto out;
	}
	d = to_domain(avl_find(io->domains, domain));
	if (d && d->bypass != bypass) {
		r = -EINVAL;          /* bypass flag inconsistent with the domain */
		goto out;
	}
	if (d && e->domain == d)
		goto out;             /* already attached there: nothing changes */
	if (!d) {
		d = calloc(1, sizeof(*d));
		if (!d) {
			r = -ENOMEM;
			goto out;
		}
		d->node.key = domain;
		d->bypass = bypass;
		avl_insert(&io->domains, &d->node);
		io->nr_domains++;
	}
	/* Attached elsewhere: behave as DETACH then ATTACH (§5.13.6.3.2). */
	if (e->domain)
		domain_put_endpoint(io, e);
	e->domain = d;
	d->nr_endpoints++;
	notify_ep(io, domain, ep, true);
	iommu_bump_gen(io);
out:
	pthread_mutex_unlock(&io->lock);
	return r;
}

int iommu_detach(struct iommu *io, uint32_t domain, uint32_t ep)
{
	struct iommu_endpoint *e;
	int r = 0;

	pthread_mutex_lock(&io->lock);
	e = to_endpoint(avl_find(io->endpoints, ep));
	if (!e) {
		r = -ENOENT;              /* §5.13.6.4.2: MUST be S_NOENT */
		goto out;
	}
	if (!e->domain || e->domain->node.key != domain) {
		r = -EINVAL;              /* MAY be S_INVAL; we do */
		goto out;
	}
	domain_put_endpoint(io, e);
	iommu_bump_gen(io);
out:
	pthread_mutex_unlock(&io->lock);
	return r;
}

/* ---------------------------------------------------------------------------
 * MAP / UNMAP
 */

static bool ranges_overlap(uint64_t s1, uint64_t e1, uint64_t s2, uint64_t e2)
{
	return s1 <= e2 && s2 <= e1;
}

/* Does any mapping of @d intersect [start, end]? */
static bool domain_range_mapped(struct iommu_domain *d, uint64_t start, uint64_t end)
{
	struct iommu_mapping *m = to_mapping(avl_floor(d->mappings, start));

	if (m && m->virt_end >= start)
		return true;
	m = to_mapping(avl_ceil(d->mappings, start));
	return m && m->node.key <= end;
}

static int map_check_args(struct iommu *io, uint64_t virt_start, uint64_t virt_end, uint64_t phys,
			  uint32_t flags)
{
	uint64_t mask = iommu_granule(io) - 1;
	unsigned i;

	/* §5.13.6.5.2: unrecognized flag -> S_INVAL. We do not offer
	 * VIRTIO_IOMMU_F_MMIO, so the MMIO flag is not recognized either. */
	if (flags & ~(IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE))
		return -EINVAL;
	/* §5.13.6.5.1: virt_end MUST be greater than virt_start; a granule of
	 * one byte allows a one-byte mapping, where they are equal. */
	if (virt_end < virt_start)
		return -EINVAL;
	/* §5.13.6.5.2: unaligned virt_start, phys_start, virt_end + 1 -> S_RANGE. */
	if ((virt_start & mask) || (phys & mask) || ((virt_end + 1) & mask))
		return -ERANGE;
	/* §5.13.6: outside input_range fails; the physical end must not wrap. */
	if (virt_start < io->params.input_start || virt_end > io->params.input_end)
		return -ERANGE;
	if (phys + (virt_end - virt_start) < phys)
		return -ERANGE;
	/* §5.13.6.8.1.2: the device SHOULD reject a MAP overlapping RESV_MEM. */
	for (i = 0; i < io->params.nr_resv; i++)
		if (ranges_overlap(virt_start, virt_end, io->params.resv[i].start,
				   io->params.resv[i].end))
			return -EINVAL;
	return 0;
}

int iommu_map(struct iommu *io, uint32_t domain, uint64_t virt_start, uint64_t virt_end,
	      uint64_t phys, uint32_t flags)
{
	struct iommu_mapping *m;
	struct iommu_domain *d;
	int r;

	r = map_check_args(io, virt_start, virt_end, phys, flags);
	if (r)
		return r;
	pthread_mutex_lock(&io->lock);
	d = to_domain(avl_find(io->domains, domain));
	if (!d) {
		r = -ENOENT;
		goto out;
	}
	if (d->bypass) {
		r = -EINVAL;
		goto out;
	}
	/* §5.13.6.5.2: a mapping already in the range -> S_INVAL. */
	if (domain_range_mapped(d, virt_start, virt_end)) {
		r = -EINVAL;
		goto out;
	}
	if (io->nr_mappings >= io->params.max_mappings) {
		r = -ENOMEM;
		goto out;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		r = -ENOMEM;
		goto out;
	}
	m->node.key = virt_start;
	m->virt_end = virt_end;
	m->phys = phys;
	m->flags = flags;
	avl_insert(&d->mappings, &m->node);
	notify_map(io, domain, m, true);
	d->nr_mappings++;
	io->nr_mappings++;
	atomic_fetch_add_explicit(&io->nr_map_ops, 1, memory_order_relaxed);
	/* Cached entries only describe existing mappings and MAP cannot change
	 * one, but a bump keeps the rule simple: every change invalidates. */
	iommu_bump_gen(io);
out:
	pthread_mutex_unlock(&io->lock);
	return r;
}

/* UNMAP, virtio 1.2 §5.13.6.6: "All mappings covered by the range
 * [virt_start; virt_end] (inclusive) are removed", where a mapping is what a
 * single MAP created. §5.13.6.6.2 (device requirements): "If a mapping
 * affected by the range is not covered in its entirety by the range (the
 * UNMAP request would split the mapping), then the device SHOULD set the
 * request status to VIRTIO_IOMMU_S_RANGE, and SHOULD NOT remove any mapping."
 * and "If part of the range or the full range is not covered by an existing
 * mapping, then the device SHOULD remove all mappings affected by the range
 * and set the request status to VIRTIO_IOMMU_S_OK." So a partial UNMAP never
 * splits: it fails with -ERANGE and leaves the domain untouched (example (4)),
 * and holes in the range are fine (examples (1), (6), (7)). */
int iommu_unmap(struct iommu *io, uint32_t domain, uint64_t virt_start, uint64_t virt_end)
{
	struct iommu_mapping *m;
	struct iommu_domain *d;
	uint64_t removed = 0;
	int r = 0;

	if (virt_end < virt_start)
		return -EINVAL;
	pthread_mutex_lock(&io->lock);
	d = to_domain(avl_find(io->domains, domain));
	if (!d) {
		r = -ENOENT;
		goto out;
	}
	if (d->bypass) {
		r = -EINVAL;
		goto out;
	}
	/* A mapping starting before the range but reaching into it would be split. */
	m = to_mapping(avl_floor(d->mappings, virt_start));
	if (m && m->node.key < virt_start && m->virt_end >= virt_start) {
		r = -ERANGE;
		goto out;
	}
	/* So would one that contains virt_end and goes beyond it. */
	m = to_mapping(avl_floor(d->mappings, virt_end));
	if (m && m->virt_end > virt_end) {
		r = -ERANGE;
		goto out;
	}
	/* Every mapping starting inside the range now ends inside it. */
	while ((m = to_mapping(avl_ceil(d->mappings, virt_start))) && m->node.key <= virt_end) {
		avl_remove(&d->mappings, m->node.key);
		notify_map(io, domain, m, false);
		free(m);
		removed++;
	}
	d->nr_mappings -= removed;
	io->nr_mappings -= removed;
	atomic_fetch_add_explicit(&io->nr_unmap_ops, 1, memory_order_relaxed);
	/* Before we return (and the request completes), no new translation
	 * may use a removed mapping: invalidate every cached entry. */
	if (removed)
		iommu_bump_gen(io);
out:
	pthread_mutex_unlock(&io->lock);
	return r;
}

/* ---------------------------------------------------------------------------
 * Translation
 */

/* Walk @d's mappings for [iova, iova+len); on failure *fault_addr is the
 * first address that cannot be accessed. On success *first is the mapping
 * holding iova (for the cache). Lock held. */
static int domain_walk(struct iommu_domain *d, uint64_t iova, uint64_t len, uint32_t perm,
		       uint64_t *gpa, uint64_t *fault_addr, struct iommu_mapping **first)
{
	uint64_t last = iova + len - 1, next_phys;
	struct iommu_mapping *m = to_mapping(avl_floor(d->mappings, iova));

	if (!m || m->virt_end < iova || (m->flags & perm) != perm) {
		*fault_addr = iova;
		return -EFAULT;
	}
	*gpa = m->phys + (iova - m->node.key);
	*first = m;
	/* A range crossing into the next mapping is allowed only if the next
	 * mapping continues both the IOVA and the physical range. */
	while (m->virt_end < last) {
		uint64_t boundary = m->virt_end + 1;

		next_phys = m->phys + (m->virt_end - m->node.key) + 1;
		m = to_mapping(avl_find(d->mappings, boundary));
		if (!m || m->phys != next_phys || (m->flags & perm) != perm) {
			*fault_addr = boundary;
			return -EFAULT;
		}
	}
	return 0;
}

/* Fill under io->lock (writers are serialized by it). */
static void tlb_fill(struct iommu *io, struct iommu_endpoint *e, uint64_t iova, uint64_t start,
		     uint64_t end, uint64_t phys, uint32_t flags)
{
	struct iommu_tlb_entry *t = &e->tlb[iommu_tlb_index(iova)];
	uint32_t seq = atomic_load_explicit(&t->seq, memory_order_relaxed);

	atomic_store_explicit(&t->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	__atomic_store_n(&t->gen, atomic_load_explicit(&io->gen, memory_order_relaxed),
			 __ATOMIC_RELAXED);
	__atomic_store_n(&t->start, start, __ATOMIC_RELAXED);
	__atomic_store_n(&t->end, end, __ATOMIC_RELAXED);
	__atomic_store_n(&t->phys, phys, __ATOMIC_RELAXED);
	__atomic_store_n(&t->flags, flags, __ATOMIC_RELAXED);
	atomic_store_explicit(&t->seq, seq + 2, memory_order_release);
}

static int translate_slow(struct iommu *io, struct iommu_endpoint *e, uint64_t iova, uint64_t len,
			  uint32_t perm, struct iommu_xlate *x, struct iommu_fault *fault)
{
	struct iommu_mapping *first = NULL;
	uint64_t fault_addr = iova, gpa;
	uint8_t reason;
	int r;

	pthread_mutex_lock(&io->lock);
	/* Changes bump gen under this lock: the result is valid at this gen. */
	x->gen = atomic_load_explicit(&io->gen, memory_order_relaxed);
	if (!e->domain) {
		/* §5.13.6: unattached endpoints are in bypass mode iff config.bypass. */
		if (atomic_load(&io->bypass))
			goto bypass;
		reason = IOMMU_FAULT_R_DOMAIN;
		goto fault;
	}
	if (e->domain->bypass)
		goto bypass;
	r = domain_walk(e->domain, iova, len, perm, &gpa, &fault_addr, &first);
	if (r) {
		reason = IOMMU_FAULT_R_MAPPING;
		goto fault;
	}
	if (iova + len - 1 <= first->virt_end) {
		*x = (struct iommu_xlate){ .start = first->node.key, .last = first->virt_end,
					   .phys = first->phys, .flags = first->flags, .gen = x->gen };
		tlb_fill(io, e, iova, first->node.key, first->virt_end, first->phys, first->flags);
	} else {
		/* Crossing into contiguous mappings: exactly the range asked for. */
		*x = (struct iommu_xlate){ .start = iova, .last = iova + len - 1, .phys = gpa,
					   .flags = perm, .gen = x->gen };
	}
	pthread_mutex_unlock(&io->lock);
	return 0;

bypass:
	*x = (struct iommu_xlate){ .start = 0, .last = UINT64_MAX, .phys = 0,
				   .flags = IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE, .gen = x->gen };
	tlb_fill(io, e, iova, 0, UINT64_MAX, 0, IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE);
	pthread_mutex_unlock(&io->lock);
	return 0;

fault:
	pthread_mutex_unlock(&io->lock);
	atomic_fetch_add_explicit(&e->faults, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&io->nr_faults, 1, memory_order_relaxed);
	if (fault) {
		fault->reason = reason;
		fault->flags = IOMMU_FAULT_F_ADDRESS |
			       ((perm & IOMMU_PERM_READ) ? IOMMU_FAULT_F_READ : 0) |
			       ((perm & IOMMU_PERM_WRITE) ? IOMMU_FAULT_F_WRITE : 0);
		fault->endpoint = iommu_endpoint_id(e);
		fault->address = fault_addr;
	}
	return -EFAULT;
}

int iommu_translate_ep_slow(struct iommu *io, struct iommu_endpoint *e, uint64_t iova,
			    uint64_t len, uint32_t perm, struct iommu_xlate *x,
			    struct iommu_fault *fault)
{
	if (!len || iova + len - 1 < iova || !perm ||
	    (perm & ~(IOMMU_PERM_READ | IOMMU_PERM_WRITE)))
		return -EINVAL;
	atomic_fetch_add_explicit(&e->tlb_misses, 1, memory_order_relaxed);
	return translate_slow(io, e, iova, len, perm, x, fault);
}

int iommu_translate(struct iommu *io, uint32_t ep, uint64_t iova, uint64_t len, uint32_t perm,
		    uint64_t *gpa, struct iommu_fault *fault)
{
	struct iommu_endpoint *e = iommu_endpoint_find(io, ep);

	if (!e)
		return -ENOENT;
	return iommu_translate_ep(io, e, iova, len, perm, gpa, fault);
}

int iommu_domain_translate(struct iommu *io, uint32_t domain, uint64_t iova, uint64_t len,
			   uint32_t perm, uint64_t *gpa)
{
	struct iommu_mapping *first;
	struct iommu_domain *d;
	uint64_t fault_addr;
	int r;

	if (!len || iova + len - 1 < iova)
		return -EINVAL;
	pthread_mutex_lock(&io->lock);
	d = to_domain(avl_find(io->domains, domain));
	if (!d)
		r = -ENOENT;
	else if (d->bypass)
		*gpa = iova, r = 0;
	else
		r = domain_walk(d, iova, len, perm, gpa, &fault_addr, &first);
	pthread_mutex_unlock(&io->lock);
	return r;
}

/* ---------------------------------------------------------------------------
 * Iteration and counters
 */

struct walk_ctx {
	void *opaque;
	int (*domain_fn)(void *, const struct iommu_domain_info *);
	int (*endpoint_fn)(void *, const struct iommu_endpoint_info *);
	int (*mapping_fn)(void *, const struct iommu_mapping_info *);
};

static int walk_domain(struct iommu_avl *n, void *opaque)
{
	struct walk_ctx *c = opaque;
	struct iommu_domain *d = to_domain(n);
	struct iommu_domain_info info = {
		.id = (uint32_t)d->node.key, .bypass = d->bypass,
		.nr_endpoints = d->nr_endpoints, .nr_mappings = d->nr_mappings,
	};

	return c->domain_fn(c->opaque, &info);
}

static int walk_endpoint(struct iommu_avl *n, void *opaque)
{
	struct walk_ctx *c = opaque;
	struct iommu_endpoint *e = to_endpoint(n);
	struct iommu_endpoint_info info = {
		.id = iommu_endpoint_id(e), .attached = e->domain != NULL,
		.domain = e->domain ? (uint32_t)e->domain->node.key : 0,
		.tlb_hits = atomic_load(&e->tlb_hits), .tlb_misses = atomic_load(&e->tlb_misses),
		.faults = atomic_load(&e->faults),
	};

	return c->endpoint_fn(c->opaque, &info);
}

static int walk_mapping(struct iommu_avl *n, void *opaque)
{
	struct walk_ctx *c = opaque;
	struct iommu_mapping *m = to_mapping(n);
	struct iommu_mapping_info info = {
		.virt_start = m->node.key, .virt_end = m->virt_end, .phys = m->phys,
		.flags = m->flags,
	};

	return c->mapping_fn(c->opaque, &info);
}

int iommu_for_each_domain(struct iommu *io, int (*fn)(void *, const struct iommu_domain_info *),
			  void *opaque)
{
	struct walk_ctx c = { .opaque = opaque, .domain_fn = fn };
	int r;

	pthread_mutex_lock(&io->lock);
	r = avl_walk(io->domains, walk_domain, &c);
	pthread_mutex_unlock(&io->lock);
	return r;
}

int iommu_for_each_endpoint(struct iommu *io,
			    int (*fn)(void *, const struct iommu_endpoint_info *), void *opaque)
{
	struct walk_ctx c = { .opaque = opaque, .endpoint_fn = fn };
	int r;

	pthread_mutex_lock(&io->lock);
	r = avl_walk(io->endpoints, walk_endpoint, &c);
	pthread_mutex_unlock(&io->lock);
	return r;
}

int iommu_for_each_mapping(struct iommu *io, uint32_t domain,
			   int (*fn)(void *, const struct iommu_mapping_info *), void *opaque)
{
	struct walk_ctx c = { .opaque = opaque, .mapping_fn = fn };
	struct iommu_domain *d;
	int r;

	pthread_mutex_lock(&io->lock);
	d = to_domain(avl_find(io->domains, domain));
	r = d ? avl_walk(d->mappings, walk_mapping, &c) : -ENOENT;
	pthread_mutex_unlock(&io->lock);
	return r;
}

static int endpoint_in(struct iommu_avl *n, void *opaque)
{
	struct iommu *other = opaque;

	return avl_find(other->endpoints, n->key) ? 0 : -EINVAL;
}

static int endpoint_adopt(struct iommu_avl *n, void *opaque)
{
	struct iommu *src = opaque;
	struct iommu_endpoint *s = to_endpoint(avl_find(src->endpoints, n->key));

	to_endpoint(n)->domain = s->domain;
	s->domain = NULL;
	return 0;
}

int iommu_adopt(struct iommu *dst, struct iommu *src)
{
	int r;

	if (dst == src)
		return -EINVAL;
	/* Lock order: by address, so two adopts in opposite directions cannot deadlock. */
	pthread_mutex_lock(dst < src ? &dst->lock : &src->lock);
	pthread_mutex_lock(dst < src ? &src->lock : &dst->lock);
	r = dst->nr_endpoints == src->nr_endpoints ? avl_walk(dst->endpoints, endpoint_in, src)
						   : -EINVAL;
	if (r)
		goto out;
	notify_all(dst, false);
	avl_free_all(dst->domains, free_domain_node);
	avl_walk(dst->endpoints, endpoint_adopt, src);
	dst->domains = src->domains;
	dst->nr_domains = src->nr_domains;
	dst->nr_mappings = src->nr_mappings;
	src->domains = NULL;
	src->nr_domains = 0;
	src->nr_mappings = 0;
	atomic_store(&dst->bypass, atomic_load(&src->bypass));
	notify_all(dst, true);
	iommu_bump_gen(dst);
	iommu_bump_gen(src);
out:
	pthread_mutex_unlock(&src->lock);
	pthread_mutex_unlock(&dst->lock);
	return r;
}

uint64_t iommu_nr_mappings(struct iommu *io)
{
	uint64_t n;

	pthread_mutex_lock(&io->lock);
	n = io->nr_mappings;
	pthread_mutex_unlock(&io->lock);
	return n;
}

unsigned iommu_nr_domains(struct iommu *io)
{
	unsigned n;

	pthread_mutex_lock(&io->lock);
	n = io->nr_domains;
	pthread_mutex_unlock(&io->lock);
	return n;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int64_t iommu_bench_translate(struct iommu *io, uint32_t ep, uint64_t iova_base,
			      uint64_t nr_pages, uint64_t len, uint64_t iters)
{
	struct iommu_endpoint *e = iommu_endpoint_find(io, ep);
	uint64_t i, page, gpa, sum = 0, t0;
	int r;

	if (!e || !nr_pages || !len || len > 4096)
		return -EINVAL;
	t0 = now_ns();
	for (i = 0, page = 0; i < iters; i++) {
		r = iommu_translate_ep(io, e, iova_base + page * 4096, len, IOMMU_PERM_READ, &gpa,
				       NULL);
		if (r)
			return r;
		sum += gpa;
		if (++page == nr_pages)       /* no division in the timed loop */
			page = 0;
	}
	/* Keep the loop from being optimized away. */
	__asm__ volatile("" : : "r"(sum));
	return (int64_t)(now_ns() - t0);
}
