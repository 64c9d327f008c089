/* The virtio-iommu mapping structure: spec examples of virtio 1.2 §5.13.6.6,
 * attach/detach rules, translation and its cache, and long random MAP/UNMAP
 * sequences checked against a naive reference model. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "devices/iommu_map.h"

#define PG 4096ULL

static struct iommu *new_iommu(unsigned nr_eps)
{
	struct iommu *io = calloc(1, sizeof(*io));
	struct iommu_params p;
	unsigned i;

	cr_assert_not_null(io);
	iommu_params_default(&p);
	cr_assert_eq(iommu_init(io, &p), 0);
	for (i = 0; i < nr_eps; i++)
		cr_assert_eq(iommu_endpoint_add(io, 8 + i, NULL), 0);
	return io;
}

static void free_iommu(struct iommu *io)
{
	iommu_destroy(io);
	free(io);
}

/* Spec addresses are in bytes; scale them to pages to respect the 4 KiB granule. */
#define S(x) ((uint64_t)(x) * PG)
#define E(x) ((uint64_t)(x) * PG + PG - 1)

Test(iommu_map, spec_unmap_examples)
{
	struct iommu *io = new_iommu(1);
	const uint32_t rw = IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE;

	cr_assert_eq(iommu_attach(io, 1, 8, 0), 0);
	/* (1) */
	cr_assert_eq(iommu_unmap(io, 1, S(0), E(4)), 0);
	/* (2) */
	cr_assert_eq(iommu_map(io, 1, S(0), E(9), 0x100000, rw), 0);
	cr_assert_eq(iommu_unmap(io, 1, S(0), E(9)), 0);
	cr_assert_eq(iommu_nr_mappings(io), 0);
	/* (3) */
	cr_assert_eq(iommu_map(io, 1, S(0), E(4), 0x100000, rw), 0);
	cr_assert_eq(iommu_map(io, 1, S(5), E(9), 0x200000, rw), 0);
	cr_assert_eq(iommu_unmap(io, 1, S(0), E(9)), 0);
	cr_assert_eq(iommu_nr_mappings(io), 0);
	/* (4): partial unmap fails with S_RANGE and removes nothing. */
	cr_assert_eq(iommu_map(io, 1, S(0), E(9), 0x100000, rw), 0);
	cr_assert_eq(iommu_unmap(io, 1, S(0), E(4)), -ERANGE);
	cr_assert_eq(iommu_unmap(io, 1, S(3), E(5)), -ERANGE);
	cr_assert_eq(iommu_unmap(io, 1, S(5), E(12)), -ERANGE);
	cr_assert_eq(iommu_nr_mappings(io), 1);
	cr_assert_eq(iommu_unmap(io, 1, S(0), E(9)), 0);
	/* (5) */
	cr_assert_eq(iommu_map(io, 1, S(0), E(4), 0x100000, rw), 0);
	cr_assert_eq(iommu_map(io, 1, S(5), E(9), 0x200000, rw), 0);
	cr_assert_eq(iommu_unmap(io, 1, S(0), E(4)), 0);
	cr_assert_eq(iommu_nr_mappings(io), 1);
	cr_assert_eq(iommu_unmap(io, 1, S(5), E(9)), 0);
	/* (6) */
	cr_assert_eq(iommu_map(io, 1, S(0), E(4), 0x100000, rw), 0);
	cr_assert_eq(iommu_unmap(io, 1, S(0), E(9)), 0);
	cr_assert_eq(iommu_nr_mappings(io), 0);
	/* (7) */
	cr_assert_eq(iommu_map(io, 1, S(0), E(4), 0x100000, rw), 0);
	cr_assert_eq(iommu_map(io, 1, S(10), E(14), 0x200000, rw), 0);
	cr_assert_eq(iommu_unmap(io, 1, S(0), E(14)), 0);
	cr_assert_eq(iommu_nr_mappings(io), 0);
	free_iommu(io);
}

Test(iommu_map, map_errors)
{
	struct iommu *io = new_iommu(1);
	const uint32_t r = IOMMU_MAP_F_READ;

	cr_assert_eq(iommu_map(io, 1, 0, PG - 1, 0, r), -ENOENT);      /* no domain */
	cr_assert_eq(iommu_attach(io, 1, 8, 0), 0);
	cr_assert_eq(iommu_map(io, 1, 0x800, PG - 1, 0, r), -ERANGE);  /* unaligned start */
	cr_assert_eq(iommu_map(io, 1, 0, PG - 2, 0, r), -ERANGE);      /* unaligned end+1 */
	cr_assert_eq(iommu_map(io, 1, 0, PG - 1, 0x10, r), -ERANGE);   /* unaligned phys */
	cr_assert_eq(iommu_map(io, 1, PG, 0, 0, r), -EINVAL);          /* end < start */
	cr_assert_eq(iommu_map(io, 1, 0, PG - 1, 0, 1u << 5), -EINVAL);/* unknown flag */
	cr_assert_eq(iommu_map(io, 1, 0, PG - 1, 0, IOMMU_MAP_F_MMIO), -EINVAL); /* F_MMIO not offered */
	cr_assert_eq(iommu_map(io, 1, 1ULL << 48, (1ULL << 48) + PG - 1, 0, r), -ERANGE); /* input range */
	cr_assert_eq(iommu_map(io, 1, 0, PG - 1, ~0xfffULL, r), 0);    /* phys end = 2^64-1: ok */
	cr_assert_eq(iommu_map(io, 1, PG, 2 * PG - 1 + PG, ~0xfffULL, r), -ERANGE); /* phys wraps */
	cr_assert_eq(iommu_map(io, 1, 0xfee00000, 0xfee00fff, 0, r), -EINVAL); /* MSI window */
	cr_assert_eq(iommu_map(io, 1, 0xfe000000, 0xfeffffff, 0, r), -EINVAL); /* overlaps it */
	cr_assert_eq(iommu_map(io, 1, S(10), E(19), 0, r), 0);
	cr_assert_eq(iommu_map(io, 1, S(10), E(19), 0, r), -EINVAL);   /* same range */
	cr_assert_eq(iommu_map(io, 1, S(5), E(10), 0, r), -EINVAL);    /* overlaps start */
	cr_assert_eq(iommu_map(io, 1, S(19), E(25), 0, r), -EINVAL);   /* overlaps end */
	cr_assert_eq(iommu_map(io, 1, S(12), E(13), 0, r), -EINVAL);   /* inside */
	cr_assert_eq(iommu_map(io, 1, S(5), E(30), 0, r), -EINVAL);    /* around */
	cr_assert_eq(iommu_map(io, 1, S(20), E(25), 0, r), 0);         /* adjacent: fine */
	cr_assert_eq(iommu_unmap(io, 2, 0, PG - 1), -ENOENT);
	free_iommu(io);
}

Test(iommu_map, attach_detach_rules)
{
	struct iommu *io = new_iommu(2);

	cr_assert_eq(iommu_attach(io, 1, 99, 0), -ENOENT);      /* unknown endpoint */
	cr_assert_eq(iommu_attach(io, 1, 8, 2), -EINVAL);       /* unknown flag */
	cr_assert_eq(iommu_attach(io, 0, 8, 0), -ERANGE);       /* below domain_range */
	cr_assert_eq(iommu_attach(io, 0x10000, 8, 0), -ERANGE); /* above it */
	cr_assert_eq(iommu_attach(io, 1, 8, 0), 0);
	cr_assert_eq(iommu_attach(io, 1, 9, 0), 0);             /* two endpoints, one domain */
	cr_assert_eq(iommu_attach(io, 1, 9, IOMMU_ATTACH_F_BYPASS), -EINVAL); /* inconsistent */
	cr_assert_eq(iommu_nr_domains(io), 1);
	cr_assert_eq(iommu_map(io, 1, 0, PG - 1, 0x5000, IOMMU_MAP_F_READ), 0);
	/* Moving endpoint 9 to domain 2 detaches it from 1 first. */
	cr_assert_eq(iommu_attach(io, 2, 9, 0), 0);
	cr_assert_eq(iommu_nr_domains(io), 2);
	cr_assert_eq(iommu_detach(io, 1, 9), -EINVAL);          /* not attached there */
	cr_assert_eq(iommu_detach(io, 1, 77), -ENOENT);
	/* Last endpoint leaves: domain 1 and its mapping are gone. */
	cr_assert_eq(iommu_detach(io, 1, 8), 0);
	cr_assert_eq(iommu_nr_domains(io), 1);
	cr_assert_eq(iommu_nr_mappings(io), 0);
	cr_assert_eq(iommu_attach(io, 1, 8, 0), 0);
	cr_assert_eq(iommu_nr_mappings(io), 0);
	/* Bypass domain: MAP/UNMAP rejected, translation is the identity. */
	cr_assert_eq(iommu_attach(io, 3, 9, IOMMU_ATTACH_F_BYPASS), 0);
	cr_assert_eq(iommu_map(io, 3, 0, PG - 1, 0, IOMMU_MAP_F_READ), -EINVAL);
	cr_assert_eq(iommu_unmap(io, 3, 0, PG - 1), -EINVAL);
	uint64_t gpa = 0;
	cr_assert_eq(iommu_translate(io, 9, 0x123456, 8, IOMMU_PERM_WRITE, &gpa, NULL), 0);
	cr_assert_eq(gpa, 0x123456);
	iommu_reset(io);
	cr_assert_eq(iommu_nr_domains(io), 0);
	free_iommu(io);
}

Test(iommu_map, translate_permissions_faults_and_cache)
{
	struct iommu *io = new_iommu(1);
	struct iommu_endpoint *ep = iommu_endpoint_find(io, 8);
	struct iommu_fault f;
	uint64_t gpa;

	cr_assert_not_null(ep);
	/* Unattached, bypass off: R_DOMAIN fault. */
	memset(&f, 0xaa, sizeof(f));
	cr_assert_eq(iommu_translate_ep(io, ep, 0x1000, 4, IOMMU_PERM_READ, &gpa, &f), -EFAULT);
	cr_assert_eq(f.reason, IOMMU_FAULT_R_DOMAIN);
	cr_assert_eq(f.endpoint, 8);
	/* Unattached with config.bypass = 1: identity. */
	iommu_set_bypass(io, true);
	cr_assert_eq(iommu_translate_ep(io, ep, 0x1000, 4, IOMMU_PERM_READ, &gpa, &f), 0);
	cr_assert_eq(gpa, 0x1000);
	iommu_set_bypass(io, false);
	cr_assert_eq(iommu_translate_ep(io, ep, 0x1000, 4, IOMMU_PERM_READ, &gpa, &f), -EFAULT);

	cr_assert_eq(iommu_attach(io, 1, 8, 0), 0);
	cr_assert_eq(iommu_map(io, 1, 0x10000, 0x11fff, 0x800000, IOMMU_MAP_F_READ), 0);
	cr_assert_eq(iommu_map(io, 1, 0x12000, 0x12fff, 0x802000, IOMMU_MAP_F_READ), 0);
	cr_assert_eq(iommu_map(io, 1, 0x13000, 0x13fff, 0x900000, IOMMU_MAP_F_READ), 0);
	cr_assert_eq(iommu_map(io, 1, 0x20000, 0x20fff, 0xa00000,
			       IOMMU_MAP_F_READ | IOMMU_MAP_F_WRITE), 0);
	/* Hit twice: the second comes from the cache. */
	uint64_t hits = atomic_load(&ep->tlb_hits);
	cr_assert_eq(iommu_translate_ep(io, ep, 0x10010, 16, IOMMU_PERM_READ, &gpa, &f), 0);
	cr_assert_eq(gpa, 0x800010);
	cr_assert_eq(iommu_translate_ep(io, ep, 0x11ff0, 16, IOMMU_PERM_READ, &gpa, &f), 0);
	cr_assert_eq(gpa, 0x801ff0);
	cr_assert_eq(iommu_translate_ep(io, ep, 0x10010, 16, IOMMU_PERM_READ, &gpa, &f), 0);
	cr_assert_gt(atomic_load(&ep->tlb_hits), hits);
	/* Read-only mapping: a write faults with R_MAPPING, WRITE flag and address. */
	cr_assert_eq(iommu_translate_ep(io, ep, 0x10010, 16, IOMMU_PERM_WRITE, &gpa, &f), -EFAULT);
	cr_assert_eq(f.reason, IOMMU_FAULT_R_MAPPING);
	cr_assert_eq(f.flags, IOMMU_FAULT_F_WRITE | IOMMU_FAULT_F_ADDRESS);
	cr_assert_eq(f.address, 0x10010);
	/* Spanning two mappings with contiguous phys is fine; a phys gap faults at the boundary. */
	cr_assert_eq(iommu_translate_ep(io, ep, 0x11ff0, 32, IOMMU_PERM_READ, &gpa, &f), 0);
	cr_assert_eq(gpa, 0x801ff0);
	cr_assert_eq(iommu_translate_ep(io, ep, 0x12ff0, 32, IOMMU_PERM_READ, &gpa, &f), -EFAULT);
	cr_assert_eq(f.address, 0x13000);
	/* Unmapped hole. */
	cr_assert_eq(iommu_translate_ep(io, ep, 0x14000, 1, IOMMU_PERM_READ, &gpa, &f), -EFAULT);
	cr_assert_eq(f.address, 0x14000);
	/* The cached entry dies with UNMAP before iommu_unmap() returns. */
	cr_assert_eq(iommu_translate_ep(io, ep, 0x20000, 64, IOMMU_PERM_WRITE, &gpa, &f), 0);
	cr_assert_eq(iommu_translate_ep(io, ep, 0x20000, 64, IOMMU_PERM_WRITE, &gpa, &f), 0);
	cr_assert_eq(iommu_unmap(io, 1, 0x20000, 0x20fff), 0);
	cr_assert_eq(iommu_translate_ep(io, ep, 0x20000, 64, IOMMU_PERM_WRITE, &gpa, &f), -EFAULT);
	/* DETACH also invalidates. */
	cr_assert_eq(iommu_translate_ep(io, ep, 0x10010, 16, IOMMU_PERM_READ, &gpa, &f), 0);
	cr_assert_eq(iommu_detach(io, 1, 8), 0);
	cr_assert_eq(iommu_translate_ep(io, ep, 0x10010, 16, IOMMU_PERM_READ, &gpa, &f), -EFAULT);
	cr_assert_eq(f.reason, IOMMU_FAULT_R_DOMAIN);
	/* Bad arguments. */
	cr_assert_eq(iommu_translate_ep(io, ep, 0x10010, 0, IOMMU_PERM_READ, &gpa, &f), -EINVAL);
	cr_assert_eq(iommu_translate_ep(io, ep, ~0ULL, 2, IOMMU_PERM_READ, &gpa, &f), -EINVAL);
	cr_assert_eq(iommu_translate(io, 1234, 0, 1, IOMMU_PERM_READ, &gpa, &f), -ENOENT);
	free_iommu(io);
}

/* ---- reference model: an unsorted array, everything by linear scan ---- */

struct ref_map {
	uint64_t s, e, p;
	uint32_t f;
};

struct ref {
	struct ref_map m[4096];
	unsigned n;
};

static int ref_map_op(struct ref *r, uint64_t s, uint64_t e, uint64_t p, uint32_t f)
{
	unsigned i;

	if (e < s)
		return -EINVAL;
	if ((s | p | (e + 1)) & (PG - 1))
		return -ERANGE;
	for (i = 0; i < r->n; i++)
		if (r->m[i].s <= e && s <= r->m[i].e)
			return -EINVAL;
	r->m[r->n++] = (struct ref_map){ s, e, p, f };
	return 0;
}

static int ref_unmap_op(struct ref *r, uint64_t s, uint64_t e)
{
	unsigned i;

	for (i = 0; i < r->n; i++)
		if (r->m[i].s <= e && s <= r->m[i].e && (r->m[i].s < s || r->m[i].e > e))
			return -ERANGE;
	for (i = 0; i < r->n;) {
		if (r->m[i].s >= s && r->m[i].e <= e)
			r->m[i] = r->m[--r->n];
		else
			i++;
	}
	return 0;
}

static const struct ref_map *ref_find(const struct ref *r, uint64_t a)
{
	unsigned i;

	for (i = 0; i < r->n; i++)
		if (r->m[i].s <= a && a <= r->m[i].e)
			return &r->m[i];
	return NULL;
}

static int ref_translate(const struct ref *r, uint64_t a, uint64_t len, uint32_t perm, uint64_t *gpa)
{
	const struct ref_map *m = ref_find(r, a);
	uint64_t cur, expect;

	if (!m || (m->f & perm) != perm)
		return -EFAULT;
	*gpa = m->p + (a - m->s);
	expect = *gpa;
	for (cur = a; cur < a + len;) {
		m = ref_find(r, cur);
		if (!m || (m->f & perm) != perm || m->p + (cur - m->s) != expect)
			return -EFAULT;
		expect += m->e - cur + 1;
		cur = m->e + 1;
	}
	return 0;
}

static uint64_t rnd(uint64_t *state)
{
	/* xorshift64*: deterministic, so failures reproduce. */
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545F4914F6CDD1DULL;
}

static void random_sequence(uint64_t seed, unsigned ops, unsigned space_pages)
{
	struct iommu *io = new_iommu(1);
	struct iommu_endpoint *ep = iommu_endpoint_find(io, 8);
	struct ref *ref = calloc(1, sizeof(*ref));
	uint64_t st = seed;
	unsigned i, nmap = 0, nunmap = 0, ntr = 0, nsplit = 0;

	cr_assert_not_null(ref);
	cr_assert_eq(iommu_attach(io, 1, 8, 0), 0);
	for (i = 0; i < ops; i++) {
		unsigned op = rnd(&st) % 10;
		uint64_t s = (rnd(&st) % space_pages) * PG, e, p, gpa1 = 0, gpa2 = 0;
		uint32_t f = 1 + rnd(&st) % 3;
		int want, got;

		e = s + (1 + rnd(&st) % 12) * PG - 1;
		if (rnd(&st) % 50 == 0)
			e -= 0x800;                 /* occasionally unaligned */
		if (op < 4) {
			p = (rnd(&st) % 100000) * PG;
			if (ref->n >= 4000)
				continue;
			want = ref_map_op(ref, s, e, p, f);
			got = iommu_map(io, 1, s, e, p, f);
			cr_assert_eq(got, want, "op %u: map [%#lx,%#lx] got %d want %d", i,
				     (unsigned long)s, (unsigned long)e, got, want);
			nmap++;
		} else if (op < 7) {
			want = ref_unmap_op(ref, s, e);
			got = iommu_unmap(io, 1, s, e);
			cr_assert_eq(got, want, "op %u: unmap [%#lx,%#lx] got %d want %d", i,
				     (unsigned long)s, (unsigned long)e, got, want);
			nunmap++;
			nsplit += want == -ERANGE;
		} else {
			uint64_t a = s + rnd(&st) % (2 * PG), len = 1 + rnd(&st) % (3 * PG);
			uint32_t perm = 1 + rnd(&st) % 3;

			want = ref_translate(ref, a, len, perm, &gpa1);
			/* Twice: the second is normally a cache hit. */
			got = iommu_translate_ep(io, ep, a, len, perm, &gpa2, NULL);
			cr_assert_eq(got, want, "op %u: translate %#lx+%lu got %d want %d", i,
				     (unsigned long)a, (unsigned long)len, got, want);
			if (!want)
				cr_assert_eq(gpa2, gpa1);
			got = iommu_translate_ep(io, ep, a, len, perm, &gpa2, NULL);
			cr_assert_eq(got, want);
			if (!want)
				cr_assert_eq(gpa2, gpa1);
			ntr++;
		}
		cr_assert_eq(iommu_nr_mappings(io), ref->n, "op %u: count", i);
	}
	/* The mapping lists agree exactly at the end. */
	cr_assert_gt(nmap, 0);
	cr_assert_gt(nunmap, 0);
	cr_assert_gt(nsplit, 0, "the sequence should exercise split-refusals");
	cr_assert_gt(ntr, 0);
	for (i = 0; i < ref->n; i++) {
		uint64_t gpa;

		cr_assert_eq(iommu_domain_translate(io, 1, ref->m[i].s, ref->m[i].e - ref->m[i].s + 1,
						    ref->m[i].f, &gpa), 0);
		cr_assert_eq(gpa, ref->m[i].p);
	}
	free(ref);
	free_iommu(io);
}

Test(iommu_map, random_vs_reference_dense)
{
	random_sequence(0x1234567887654321ULL, 20000, 256);
}

Test(iommu_map, random_vs_reference_sparse)
{
	random_sequence(0xdeadbeefcafef00dULL, 20000, 4096);
}

static int count_mapping(void *opaque, const struct iommu_mapping_info *m)
{
	uint64_t *prev_end = opaque;

	/* Ascending, non-overlapping. */
	cr_assert(prev_end[1] == 0 || m->virt_start > prev_end[0]);
	prev_end[0] = m->virt_end;
	prev_end[1]++;
	return 0;
}

/* AVL height bound: h < 1.4405 log2(n + 2); use ceil(log2) to stay integer. */
static int avl_bound(unsigned n)
{
	int lg = 0;

	while ((1ULL << lg) < (uint64_t)n + 2)
		lg++;
	return (int)(1.4405 * lg) + 1;
}

Test(iommu_map, tree_stays_balanced)
{
	struct iommu *io = new_iommu(1);
	const unsigned n = 50000;
	uint64_t walk[2] = { 0, 0 };
	struct iommu_domain *d;
	unsigned i;

	cr_assert_eq(iommu_attach(io, 1, 8, 0), 0);
	/* Ascending insertion is the worst case for an unbalanced tree. */
	for (i = 0; i < n; i++)
		cr_assert_eq(iommu_map(io, 1, (uint64_t)i * PG, (uint64_t)i * PG + PG - 1,
				       (uint64_t)i * PG, IOMMU_MAP_F_READ), 0);
	d = (struct iommu_domain *)io->domains;   /* node is the first member */
	cr_assert_leq(d->mappings->height, avl_bound(n),
		      "height %d for %u nodes", d->mappings->height, n);
	cr_assert_eq(iommu_for_each_mapping(io, 1, count_mapping, walk), 0);
	cr_assert_eq(walk[1], n);
	/* Remove every other one, then a big range in one request. */
	for (i = 0; i < n; i += 2)
		cr_assert_eq(iommu_unmap(io, 1, (uint64_t)i * PG, (uint64_t)i * PG + PG - 1), 0);
	cr_assert_eq(iommu_nr_mappings(io), n / 2);
	cr_assert_leq(d->mappings->height, avl_bound(n / 2));
	cr_assert_eq(iommu_unmap(io, 1, 0, (uint64_t)n * PG - 1), 0);
	cr_assert_eq(iommu_nr_mappings(io), 0);
	free_iommu(io);
}

Test(iommu_map, bench_helper_runs)
{
	struct iommu *io = new_iommu(1);
	int64_t ns;

	cr_assert_eq(iommu_attach(io, 1, 8, 0), 0);
	cr_assert_eq(iommu_map(io, 1, 0x100000, 0x10ffff, 0x200000, IOMMU_MAP_F_READ), 0);
	ns = iommu_bench_translate(io, 8, 0x100000, 16, 64, 10000);
	cr_assert_geq(ns, 0);
	cr_assert_eq(iommu_bench_translate(io, 8, 0x200000, 16, 64, 10), -EFAULT);
	free_iommu(io);
}

/* Concurrency: a translator thread hammers one IOVA (mostly cache hits) while
 * this thread maps and unmaps it. Any translation that STARTS after
 * iommu_unmap() returned must fail: the phase counter is read before each
 * translation: odd means "unmap has returned", and it becomes even before
 * the next MAP starts. */
struct race {
	struct iommu *io;
	struct iommu_endpoint *ep;
	_Atomic unsigned phase;
	_Atomic bool stop;
	_Atomic unsigned long violations, hits_after_map, tries;
};

static void *race_translator(void *arg)
{
	struct race *r = arg;
	uint64_t gpa;

	while (!atomic_load(&r->stop)) {
		unsigned phase = atomic_load(&r->phase);
		int ret = iommu_translate_ep(r->io, r->ep, 0x40000000 + 0x10, 64, IOMMU_PERM_READ,
					     &gpa, NULL);

		atomic_fetch_add(&r->tries, 1);
		/* Odd and unchanged: unmapped before we started, no MAP began since. */
		if ((phase & 1) && phase == atomic_load(&r->phase)) {
			if (ret == 0)
				atomic_fetch_add(&r->violations, 1);
		} else if (ret == 0) {
			/* Whatever it saw must be the real mapping, never a torn entry. */
			atomic_fetch_add(&r->hits_after_map, 1);
			if (gpa != 0x800010)
				atomic_fetch_add(&r->violations, 1);
		}
	}
	return NULL;
}

Test(iommu_map, unmap_wins_against_concurrent_translation)
{
	struct iommu *io = new_iommu(1);
	struct race r = { .io = io };
	pthread_t t;

	r.ep = iommu_endpoint_find(io, 8);
	cr_assert_eq(iommu_attach(io, 1, 8, 0), 0);
	atomic_store(&r.phase, 1);
	cr_assert_eq(pthread_create(&t, NULL, race_translator, &r), 0);
	while (!atomic_load(&r.tries))
		sched_yield();                      /* the translator runs */
	/* At least 20000 rounds, and until the translator did 100000 tries
	 * (on a loaded machine it may get little CPU), but at most 2 s. */
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0;; i++) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (i >= 20000 && (atomic_load(&r.tries) >= 100000 || now.tv_sec - t0.tv_sec >= 2))
			break;
		atomic_fetch_add(&r.phase, 1);          /* even: a mapping may exist from now on */
		cr_assert_eq(iommu_map(io, 1, 0x40000000, 0x40000fff, 0x800000, IOMMU_MAP_F_READ), 0);
		for (volatile int spin = 0; spin < 200; spin++)
			;
		cr_assert_eq(iommu_unmap(io, 1, 0x40000000, 0x40000fff), 0);
		atomic_fetch_add(&r.phase, 1);          /* odd: unmap has returned */
	}
	atomic_store(&r.stop, true);
	pthread_join(t, NULL);
	cr_assert_eq(atomic_load(&r.violations), 0, "%lu translations used a removed mapping",
		     atomic_load(&r.violations));
	cr_log_info("%lu translations, %lu while mapped", atomic_load(&r.tries),
		    atomic_load(&r.hits_after_map));
	cr_assert_gt(atomic_load(&r.tries), 1000);
	free_iommu(io);
}

/* ---- listener: a mirror kept only from notifications must equal the state ---- */

struct mirror {
	struct { uint32_t dom; struct iommu_mapping_info m; } maps[8192];
	unsigned n;
	int64_t ep_dom[64];                        /* -1: detached */
	unsigned errors;
};

static void mir_map(void *o, uint32_t dom, const struct iommu_mapping_info *m)
{
	struct mirror *x = o;

	x->maps[x->n].dom = dom;
	x->maps[x->n++].m = *m;
}

static void mir_unmap(void *o, uint32_t dom, const struct iommu_mapping_info *m)
{
	struct mirror *x = o;

	for (unsigned i = 0; i < x->n; i++)
		if (x->maps[i].dom == dom && x->maps[i].m.virt_start == m->virt_start &&
		    x->maps[i].m.virt_end == m->virt_end) {
			x->maps[i] = x->maps[--x->n];
			return;
		}
	x->errors++;                                /* unmap of something never mapped */
}

static void mir_attach(void *o, uint32_t dom, uint32_t ep)
{
	struct mirror *x = o;

	if (x->ep_dom[ep] != -1)
		x->errors++;                        /* attach without a detach first */
	x->ep_dom[ep] = dom;
}

static void mir_detach(void *o, uint32_t dom, uint32_t ep)
{
	struct mirror *x = o;

	if (x->ep_dom[ep] != (int64_t)dom)
		x->errors++;
	x->ep_dom[ep] = -1;
}

struct mirror_check {
	struct mirror *x;
	uint32_t dom;
	unsigned seen;
};

static int check_mapping(void *o, const struct iommu_mapping_info *m)
{
	struct mirror_check *c = o;

	for (unsigned i = 0; i < c->x->n; i++)
		if (c->x->maps[i].dom == c->dom && c->x->maps[i].m.virt_start == m->virt_start &&
		    c->x->maps[i].m.virt_end == m->virt_end && c->x->maps[i].m.phys == m->phys &&
		    c->x->maps[i].m.flags == m->flags) {
			c->seen++;
			return 0;
		}
	return -1;
}

static int check_endpoint(void *o, const struct iommu_endpoint_info *e)
{
	struct mirror *x = o;

	if (x->ep_dom[e->id] != (e->attached ? (int64_t)e->domain : -1))
		return -1;
	return 0;
}

static void assert_mirror(struct iommu *io, struct mirror *x)
{
	unsigned total = 0;

	cr_assert_eq(x->errors, 0, "inconsistent notifications");
	cr_assert_eq(iommu_for_each_endpoint(io, check_endpoint, x), 0, "endpoint mirror differs");
	for (uint32_t dom = 1; dom <= 3; dom++) {
		struct mirror_check c = { .x = x, .dom = dom };

		if (iommu_for_each_mapping(io, dom, check_mapping, &c) == -1)
			cr_assert_fail("domain %u: a mapping is missing from the mirror", dom);
		total += c.seen;
	}
	cr_assert_eq(total, x->n, "mirror has %u mappings, the IOMMU %u", x->n, total);
	cr_assert_eq(iommu_nr_mappings(io), x->n);
}

static const struct iommu_listener mirror_ops = {
	.map = mir_map, .unmap = mir_unmap, .attach = mir_attach, .detach = mir_detach,
};

Test(iommu_map, listener_mirror_follows_every_change)
{
	struct iommu *io = new_iommu(3);           /* endpoints 8, 9, 10 */
	struct mirror *x = calloc(1, sizeof(*x));
	struct iommu_listener l = mirror_ops;
	uint64_t st = 77;

	cr_assert_not_null(x);
	for (int i = 0; i < 64; i++)
		x->ep_dom[i] = -1;
	l.opaque = x;
	iommu_set_listener(io, &l);
	for (unsigned i = 0; i < 20000; i++) {
		unsigned op = rnd(&st) % 100;
		uint32_t ep = 8 + rnd(&st) % 3, dom = 1 + rnd(&st) % 3;
		uint64_t s = (rnd(&st) % 128) * PG, e = s + (1 + rnd(&st) % 6) * PG - 1;

		if (op < 10)
			iommu_attach(io, dom, ep, 0);
		else if (op < 15)
			iommu_detach(io, dom, ep);
		else if (op < 60)
			iommu_map(io, dom, s, e, s, IOMMU_MAP_F_READ);
		else if (op < 99)
			iommu_unmap(io, dom, s, e);
		else
			iommu_reset(io);
		if (i % 1000 == 0)
			assert_mirror(io, x);
	}
	assert_mirror(io, x);

	/* Restore-style replacement: the old state goes, the new one comes. */
	struct iommu *src = new_iommu(3);
	cr_assert_eq(iommu_attach(src, 2, 9, 0), 0);
	cr_assert_eq(iommu_map(src, 2, 0x100000, 0x1fffff, 0x4000000, 3), 0);
	cr_assert_eq(iommu_adopt(io, src), 0);
	assert_mirror(io, x);
	cr_assert_eq(x->n, 1);
	cr_assert_eq(x->ep_dom[9], 2);
	free_iommu(src);
	iommu_reset(io);
	assert_mirror(io, x);
	cr_assert_eq(x->n, 0);
	free(x);
	free_iommu(io);
}
