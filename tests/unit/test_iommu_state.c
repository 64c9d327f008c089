/* IOMMU state in the state tree: exact round trip, translation through
 * endpoint handles after restore, and hostile trees rejected whole. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio_iommu_state.h"

static const uint32_t eps[] = { 0x08, 0x10, 0x18 };

static struct iommu *mk(void)
{
	struct iommu *io = calloc(1, sizeof(*io));

	cr_assert_not_null(io);
	cr_assert_eq(iommu_init(io, NULL), 0);
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(iommu_endpoint_add(io, eps[i], NULL), 0);
	return io;
}

static void rm(struct iommu *io)
{
	iommu_destroy(io);
	free(io);
}

/* Serialize @io under /iommu and reopen the blob as a reading tree. */
static struct state_tree *save_reopen(struct iommu *io, struct state_node *out)
{
	struct state_tree *t = state_tree_new(), *rt;
	struct state_node *n, root;
	char err[256];
	void *blob;
	size_t len;

	cr_assert_not_null(t);
	n = state_add_node(state_tree_root(t), "iommu", 1);
	cr_assert_not_null(n);
	cr_assert_eq(iommu_state_save(io, n), 0);
	cr_assert_eq(state_tree_finish(t, &blob, &len), 0, "%s", state_error(t));
	state_tree_free(t);
	cr_assert_eq(state_tree_open(&rt, blob, len, err, sizeof(err)), 0, "%s", err);
	free(blob);
	cr_assert_eq(state_root(rt, &root), 0);
	cr_assert_eq(state_child(&root, "iommu", out), 0);
	return rt;
}

struct maplist {
	struct iommu_mapping_info m[4096];
	unsigned n;
};

static int collect(void *opaque, const struct iommu_mapping_info *m)
{
	struct maplist *l = opaque;

	l->m[l->n++] = *m;
	return 0;
}

static void assert_same_mappings(struct iommu *a, struct iommu *b, uint32_t dom)
{
	struct maplist *la = calloc(1, sizeof(*la)), *lb = calloc(1, sizeof(*lb));

	cr_assert_eq(iommu_for_each_mapping(a, dom, collect, la), 0);
	cr_assert_eq(iommu_for_each_mapping(b, dom, collect, lb), 0);
	cr_assert_eq(la->n, lb->n, "domain %u: %u vs %u mappings", dom, la->n, lb->n);
	for (unsigned i = 0; i < la->n; i++) {
		cr_assert_eq(la->m[i].virt_start, lb->m[i].virt_start);
		cr_assert_eq(la->m[i].virt_end, lb->m[i].virt_end);
		cr_assert_eq(la->m[i].phys, lb->m[i].phys);
		cr_assert_eq(la->m[i].flags, lb->m[i].flags);
	}
	free(la);
	free(lb);
}

static void populate(struct iommu *io, uint64_t seed, unsigned n)
{
	uint64_t s = seed;
	unsigned done = 0;

	cr_assert_eq(iommu_attach(io, 1, 0x08, 0), 0);
	cr_assert_eq(iommu_attach(io, 1, 0x10, 0), 0);
	cr_assert_eq(iommu_attach(io, 7, 0x18, 0), 0);
	/* One big mapping and many small random ones. */
	cr_assert_eq(iommu_map(io, 7, 0x40000000, 0x7fffffff, 0x0, 3), 0);
	while (done < n) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t va = ((s >> 20) % 100000) * 4096, pages = 1 + (s >> 50) % 8;

		if (iommu_map(io, 1, va, va + pages * 4096 - 1, ((s >> 8) % 50000) * 4096,
			      1 + (uint32_t)(s >> 60) % 3) == 0)
			done++;
	}
}

Test(iommu_state, round_trip_exact)
{
	struct iommu *src = mk(), *dst = mk();
	struct iommu_endpoint *ep8 = iommu_endpoint_find(dst, 0x08);
	struct state_node n;
	struct state_tree *t;
	uint64_t gpa_src, gpa_dst;

	populate(src, 42, 2000);
	iommu_set_bypass(src, true);
	t = save_reopen(src, &n);
	cr_assert_eq(iommu_state_load(dst, &n), 0, "%s", state_error(t));
	state_tree_free(t);
	cr_assert_eq(iommu_nr_domains(dst), 2);
	cr_assert_eq(iommu_nr_mappings(dst), iommu_nr_mappings(src));
	assert_same_mappings(src, dst, 1);
	assert_same_mappings(src, dst, 7);
	cr_assert(atomic_load(&dst->bypass));
	/* The handle taken before restore keeps translating through the restored state. */
	cr_assert_eq(iommu_translate(src, 0x18, 0x40001234, 16, IOMMU_PERM_WRITE, &gpa_src, NULL), 0);
	cr_assert_eq(iommu_translate(dst, 0x18, 0x40001234, 16, IOMMU_PERM_WRITE, &gpa_dst, NULL), 0);
	cr_assert_eq(gpa_dst, gpa_src);
	cr_assert_eq(gpa_dst, 0x1234);
	struct iommu_mapping_info first;
	struct maplist *l = calloc(1, sizeof(*l));
	cr_assert_eq(iommu_for_each_mapping(dst, 1, collect, l), 0);
	first = l->m[0];
	free(l);
	cr_assert_eq(iommu_translate_ep(dst, ep8, first.virt_start, 1, first.flags, &gpa_dst, NULL), 0);
	cr_assert_eq(gpa_dst, first.phys);
	rm(src);
	rm(dst);
}

Test(iommu_state, restore_replaces_previous_state)
{
	struct iommu *src = mk(), *dst = mk();
	struct state_node n;
	struct state_tree *t;
	uint64_t gpa;

	cr_assert_eq(iommu_attach(src, 3, 0x08, 0), 0);
	cr_assert_eq(iommu_map(src, 3, 0x1000, 0x1fff, 0x9000, 1), 0);
	/* dst has something else mapped and cached. */
	cr_assert_eq(iommu_attach(dst, 5, 0x08, 0), 0);
	cr_assert_eq(iommu_map(dst, 5, 0x1000, 0x1fff, 0x5000, 1), 0);
	cr_assert_eq(iommu_translate(dst, 0x08, 0x1000, 4, 1, &gpa, NULL), 0);
	cr_assert_eq(gpa, 0x5000);
	t = save_reopen(src, &n);
	cr_assert_eq(iommu_state_load(dst, &n), 0);
	state_tree_free(t);
	cr_assert_eq(iommu_translate(dst, 0x08, 0x1000, 4, 1, &gpa, NULL), 0);
	cr_assert_eq(gpa, 0x9000, "stale cache entry must not survive restore");
	cr_assert_eq(iommu_nr_domains(dst), 1);
	rm(src);
	rm(dst);
}

Test(iommu_state, endpoint_mismatch_rejected_and_nothing_applied)
{
	struct iommu *src = mk(), *dst = calloc(1, sizeof(*dst));
	struct state_node n;
	struct state_tree *t;

	cr_assert_eq(iommu_init(dst, NULL), 0);
	cr_assert_eq(iommu_endpoint_add(dst, 0x08, NULL), 0);
	cr_assert_eq(iommu_attach(dst, 2, 0x08, 0), 0);
	cr_assert_eq(iommu_map(dst, 2, 0, 0xfff, 0, 1), 0);
	populate(src, 7, 10);
	t = save_reopen(src, &n);
	cr_assert_neq(iommu_state_load(dst, &n), 0);
	cr_assert(strstr(state_error(t), "endpoint@10") != NULL, "error: %s", state_error(t));
	state_tree_free(t);
	cr_assert_eq(iommu_nr_domains(dst), 1, "untouched");
	cr_assert_eq(iommu_nr_mappings(dst), 1);
	rm(src);
	rm(dst);
}

/* Hand-made hostile trees. */
static struct state_tree *tree_from(void (*build)(struct state_node *), struct state_node *out)
{
	struct state_tree *t = state_tree_new(), *rt;
	struct state_node *n, root;
	char err[256];
	void *blob;
	size_t len;

	n = state_add_node(state_tree_root(t), "iommu", 1);
	build(n);
	cr_assert_eq(state_tree_finish(t, &blob, &len), 0, "%s", state_error(t));
	state_tree_free(t);
	cr_assert_eq(state_tree_open(&rt, blob, len, err, sizeof(err)), 0, "%s", err);
	free(blob);
	cr_assert_eq(state_root(rt, &root), 0);
	cr_assert_eq(state_child(&root, "iommu", out), 0);
	return rt;
}

static void ep_node(struct state_node *p, uint32_t id, uint32_t attached, uint32_t dom)
{
	char name[32];
	struct state_node *e;

	snprintf(name, sizeof(name), "endpoint@%x", id);
	e = state_add_node(p, name, 1);
	state_put_u32(e, "id", id);
	state_put_u32(e, "attached", attached);
	state_put_u32(e, "domain", dom);
}

static struct state_node *dom_node(struct state_node *p, uint32_t id)
{
	char name[32];
	struct state_node *d;

	snprintf(name, sizeof(name), "domain@%u", id);
	d = state_add_node(p, name, 1);
	state_put_u32(d, "id", id);
	state_put_u32(d, "bypass", 0);
	return d;
}

static void map_node(struct state_node *d, uint64_t iova, uint64_t size, uint64_t gpa, uint32_t fl)
{
	char name[32];
	struct state_node *m;

	snprintf(name, sizeof(name), "mapping@%lx", (unsigned long)iova);
	m = state_add_node(d, name, 1);
	state_put_u64(m, "iova", iova);
	state_put_u64(m, "size", size);
	state_put_u64(m, "gpa", gpa);
	state_put_u32(m, "flags", fl);
}

static void build_overlap(struct state_node *n)
{
	struct state_node *d;

	state_put_u32(n, "bypass", 0);
	ep_node(n, 0x08, 1, 1);
	d = dom_node(n, 1);
	map_node(d, 0x1000, 0x2000, 0, 1);
	map_node(d, 0x2000, 0x1000, 0, 1);     /* overlaps the first */
}

static void build_orphan_domain(struct state_node *n)
{
	state_put_u32(n, "bypass", 0);
	ep_node(n, 0x08, 1, 1);
	dom_node(n, 1);
	dom_node(n, 2);                        /* no endpoint: cannot exist */
}

static void build_unaligned(struct state_node *n)
{
	state_put_u32(n, "bypass", 0);
	ep_node(n, 0x08, 1, 1);
	map_node(dom_node(n, 1), 0x1000, 0x800, 0, 1);
}

static void build_missing_domain(struct state_node *n)
{
	state_put_u32(n, "bypass", 0);
	ep_node(n, 0x08, 1, 9);
}

static void build_bad_bypass(struct state_node *n)
{
	state_put_u32(n, "bypass", 2);
}

static void build_wrap(struct state_node *n)
{
	state_put_u32(n, "bypass", 0);
	ep_node(n, 0x08, 1, 1);
	map_node(dom_node(n, 1), 0xfffffffffffff000ULL, 0x2000, 0, 1);
}

static void check_rejected(void (*build)(struct state_node *), const char *needle)
{
	struct iommu *dst = mk();
	struct state_node n;
	struct state_tree *t = tree_from(build, &n);

	cr_assert_eq(iommu_attach(dst, 4, 0x18, 0), 0);
	cr_assert_neq(iommu_state_load(dst, &n), 0);
	cr_assert(strstr(state_error(t), needle) != NULL, "error '%s' lacks '%s'", state_error(t),
		  needle);
	cr_assert_eq(iommu_nr_domains(dst), 1, "nothing applied");
	state_tree_free(t);
	rm(dst);
}

Test(iommu_state, hostile_trees)
{
	check_rejected(build_overlap, "mapping@2000");
	check_rejected(build_orphan_domain, "2 domains saved, 1 with endpoints");
	check_rejected(build_unaligned, "mapping@1000");
	check_rejected(build_missing_domain, "endpoint@8");
	check_rejected(build_bad_bypass, "bypass");
	check_rejected(build_wrap, "wraps");
}
