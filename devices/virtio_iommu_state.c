/* IOMMU domains, endpoints and mappings as state-tree nodes. See the header. */
#include "devices/virtio_iommu_state.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- save ---- */

struct id_list {
	uint32_t *ids;
	uint8_t *bypass;
	size_t n, cap;
};

static int id_list_add(struct id_list *l, uint32_t id, bool bypass)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		uint32_t *ids = realloc(l->ids, cap * sizeof(*ids));
		uint8_t *b;

		if (!ids)
			return -ENOMEM;
		l->ids = ids;
		b = realloc(l->bypass, cap);
		if (!b)
			return -ENOMEM;
		l->bypass = b;
		l->cap = cap;
	}
	l->ids[l->n] = id;
	l->bypass[l->n++] = bypass;
	return 0;
}

static void id_list_free(struct id_list *l)
{
	free(l->ids);
	free(l->bypass);
}

static int collect_domain(void *opaque, const struct iommu_domain_info *d)
{
	return id_list_add(opaque, d->id, d->bypass);
}

static int save_endpoint(void *opaque, const struct iommu_endpoint_info *e)
{
	struct state_node *parent = opaque, *n;
	char name[STATE_NAME_MAX];

	snprintf(name, sizeof(name), "endpoint@%x", e->id);
	n = state_add_node(parent, name, IOMMU_STATE_VERSION);
	if (!n)
		return -ENOMEM;
	if (state_put_u32(n, "id", e->id) || state_put_u32(n, "attached", e->attached) ||
	    state_put_u32(n, "domain", e->domain))
		return -ENOMEM;
	return 0;
}

static int save_mapping(void *opaque, const struct iommu_mapping_info *m)
{
	struct state_node *parent = opaque, *n;
	char name[STATE_NAME_MAX];

	snprintf(name, sizeof(name), "mapping@%" PRIx64, m->virt_start);
	n = state_add_node(parent, name, IOMMU_STATE_VERSION);
	if (!n)
		return -ENOMEM;
	if (state_put_u64(n, "iova", m->virt_start) ||
	    state_put_u64(n, "size", m->virt_end - m->virt_start + 1) ||
	    state_put_u64(n, "gpa", m->phys) || state_put_u32(n, "flags", m->flags))
		return -ENOMEM;
	return 0;
}

int iommu_state_save(struct iommu *io, struct state_node *node)
{
	struct id_list doms = { 0 };
	char name[STATE_NAME_MAX];
	size_t i;
	int r;

	r = state_put_u32(node, "bypass", atomic_load(&io->bypass) ? 1 : 0);
	if (!r)
		r = iommu_for_each_endpoint(io, save_endpoint, node);
	/* Domains first collected, then walked one by one: the walkers hold the
	 * IOMMU lock, so they cannot nest. The VM is paused while saving. */
	if (!r)
		r = iommu_for_each_domain(io, collect_domain, &doms);
	for (i = 0; !r && i < doms.n; i++) {
		struct state_node *d;

		snprintf(name, sizeof(name), "domain@%u", doms.ids[i]);
		d = state_add_node(node, name, IOMMU_STATE_VERSION);
		if (!d || state_put_u32(d, "id", doms.ids[i]) ||
		    state_put_u32(d, "bypass", doms.bypass[i])) {
			r = -ENOMEM;
			break;
		}
		r = iommu_for_each_mapping(io, doms.ids[i], save_mapping, d);
	}
	id_list_free(&doms);
	return r;
}

/* ---- load ---- */

static bool name_is(const struct state_node *n, const char *prefix)
{
	return strncmp(state_node_name(n), prefix, strlen(prefix)) == 0;
}

static int copy_endpoint(void *opaque, const struct iommu_endpoint_info *e)
{
	return iommu_endpoint_add(opaque, e->id, NULL);
}

static int load_domains(const struct state_node *node, struct id_list *doms)
{
	struct state_node c;
	int r;

	for (r = state_child_first(node, &c); r == 0; r = state_child_next(&c)) {
		uint32_t id, bypass;

		if (name_is(&c, "endpoint@"))
			continue;
		if (!name_is(&c, "domain@"))
			return state_fail(&c, "unexpected node");
		if (state_node_version(&c, 1, IOMMU_STATE_VERSION, NULL) ||
		    state_get_u32(&c, "id", &id) || state_get_u32_range(&c, "bypass", 0, 1, &bypass))
			return -EINVAL;
		for (size_t i = 0; i < doms->n; i++)
			if (doms->ids[i] == id)
				return state_fail(&c, "domain %u saved twice", id);
		if (id_list_add(doms, id, bypass))
			return -ENOMEM;
	}
	return 0;
}

static int load_endpoints(struct iommu *scratch, const struct state_node *node,
			  const struct id_list *doms, unsigned *nr_attached_doms)
{
	struct state_node c;
	int r, err;

	for (r = state_child_first(node, &c); r == 0; r = state_child_next(&c)) {
		uint32_t id, attached, domain;
		size_t i;

		if (!name_is(&c, "endpoint@"))
			continue;
		if (state_node_version(&c, 1, IOMMU_STATE_VERSION, NULL) ||
		    state_get_u32(&c, "id", &id) ||
		    state_get_u32_range(&c, "attached", 0, 1, &attached) ||
		    state_get_u32(&c, "domain", &domain))
			return -EINVAL;
		if (!iommu_endpoint_find(scratch, id))
			return state_fail(&c, "endpoint 0x%x is not behind this IOMMU", id);
		if (!attached)
			continue;
		for (i = 0; i < doms->n && doms->ids[i] != domain; i++)
			;
		if (i == doms->n)
			return state_fail(&c, "attached to domain %u, which is not saved", domain);
		err = iommu_attach(scratch, domain, id, doms->bypass[i] ? IOMMU_ATTACH_F_BYPASS : 0);
		if (err)
			return state_fail(&c, "attach to domain %u: %s", domain, strerror(-err));
	}
	*nr_attached_doms = iommu_nr_domains(scratch);
	return 0;
}

static int load_mappings(struct iommu *scratch, const struct state_node *dnode, uint32_t domain)
{
	struct state_node m;
	int r, err;

	for (r = state_child_first(dnode, &m); r == 0; r = state_child_next(&m)) {
		uint64_t iova, size, gpa, last;
		uint32_t flags;

		if (!name_is(&m, "mapping@"))
			return state_fail(&m, "unexpected node");
		if (state_node_version(&m, 1, IOMMU_STATE_VERSION, NULL) ||
		    state_get_u64(&m, "iova", &iova) || state_get_u64(&m, "size", &size) ||
		    state_get_u64(&m, "gpa", &gpa) || state_get_u32(&m, "flags", &flags))
			return -EINVAL;
		last = iova + size - 1;          /* size 0 = 2^64 */
		if (size && last < iova)
			return state_fail(&m, "iova 0x%" PRIx64 " + size 0x%" PRIx64 " wraps", iova, size);
		err = iommu_map(scratch, domain, iova, last, gpa, flags);
		if (err)
			return state_fail(&m, "mapping [0x%" PRIx64 ", 0x%" PRIx64 "] rejected: %s",
					  iova, last, strerror(-err));
	}
	return 0;
}

static int load_all_mappings(struct iommu *scratch, const struct state_node *node)
{
	struct state_node c;
	int r;

	for (r = state_child_first(node, &c); r == 0; r = state_child_next(&c)) {
		uint32_t id;

		if (!name_is(&c, "domain@"))
			continue;
		if (state_get_u32(&c, "id", &id))
			return -EINVAL;
		r = load_mappings(scratch, &c, id);
		if (r)
			return r;
	}
	return 0;
}

int iommu_state_load(struct iommu *io, const struct state_node *node)
{
	struct id_list doms = { 0 };
	struct iommu *scratch;
	unsigned nr_attached = 0;
	uint32_t bypass;
	int r;

	scratch = calloc(1, sizeof(*scratch));
	if (!scratch)
		return -ENOMEM;
	r = iommu_init(scratch, &io->params);
	if (r) {
		free(scratch);
		return r;
	}
	r = iommu_for_each_endpoint(io, copy_endpoint, scratch);
	if (!r && state_get_u32_range(node, "bypass", 0, 1, &bypass))
		r = -EINVAL;
	if (!r)
		r = load_domains(node, &doms);
	if (!r)
		r = load_endpoints(scratch, node, &doms, &nr_attached);
	/* §5.13.6.4: a domain exists only while an endpoint is attached. */
	if (!r && nr_attached != doms.n)
		r = state_fail(node, "%zu domains saved, %u with endpoints", doms.n, nr_attached);
	if (!r)
		r = load_all_mappings(scratch, node);
	if (!r) {
		atomic_store(&scratch->bypass, bypass != 0);
		r = iommu_adopt(io, scratch);
	}
	id_list_free(&doms);
	iommu_destroy(scratch);
	free(scratch);
	return r;
}
