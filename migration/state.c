/* The state tree over libfdt: an in-memory builder serialized with the
 * sequential-write API, and a bounds-checked reader over a validated blob.
 * See state.h for the contract. */
#include "migration/state.h"

#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <libfdt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/log.h"

struct state_prop {
	char *name;
	void *data;
	size_t len;
	struct state_prop *next;
};

struct state_tree {
	/* writing */
	struct state_node *wroot;
	/* reading */
	void *blob;
	size_t len;
	char err[STATE_ERR_MAX];
};

/* ---------------------------------------------------------------- errors */

static void state_record(struct state_tree *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void state_record(struct state_tree *t, const char *fmt, ...)
{
	va_list ap;

	if (!t || t->err[0])
		return; /* the first error is the one that explains the rest */
	va_start(ap, fmt);
	vsnprintf(t->err, sizeof(t->err), fmt, ap);
	va_end(ap);
	log_debug("state", "%s", t->err);
}

/* Names in a hostile blob may hold anything: print only safe characters. */
static void sanitize(char *s)
{
	for (; *s; s++)
		if (!isprint((unsigned char)*s))
			*s = '?';
}

static void write_node_path(const struct state_node *n, char *buf, size_t size)
{
	/* A writing node knows only its own name; good enough for messages. */
	snprintf(buf, size, "%s", n->name && n->name[0] ? n->name : "/");
}

void state_node_path(const struct state_node *n, char *buf, size_t size)
{
	if (!size)
		return;
	if (!n->tree || !n->tree->blob) {
		write_node_path(n, buf, size);
		return;
	}
	if (fdt_get_path(n->tree->blob, n->offset, buf, (int)size) < 0) {
		const char *name = fdt_get_name(n->tree->blob, n->offset, NULL);

		snprintf(buf, size, ".../%s", name ? name : "?");
	}
	sanitize(buf);
}

static void node_record(const struct state_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void node_record(const struct state_node *n, const char *fmt, ...)
{
	char path[160], msg[STATE_ERR_MAX];
	va_list ap;

	if (!n->tree || n->tree->err[0])
		return;
	state_node_path(n, path, sizeof(path));
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	state_record(n->tree, "state: %s: %s", path, msg);
}

int state_fail(const struct state_node *n, const char *fmt, ...)
{
	char msg[STATE_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	node_record(n, "%s", msg);
	return -EINVAL;
}

const char *state_error(const struct state_tree *t)
{
	return t ? t->err : "";
}

/* --------------------------------------------------------------- writing */

static bool valid_name(const char *s, bool node)
{
	size_t len = strlen(s);
	bool at = false;

	if (len == 0 || len >= STATE_NAME_MAX)
		return false;
	for (; *s; s++) {
		if (isalnum((unsigned char)*s) || strchr(",._+-", *s))
			continue;
		if (node && *s == '@' && !at) {
			at = true;
			continue;
		}
		return false;
	}
	return true;
}

struct state_tree *state_tree_new(void)
{
	struct state_tree *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->wroot = calloc(1, sizeof(*t->wroot));
	if (!t->wroot) {
		free(t);
		return NULL;
	}
	t->wroot->tree = t;
	t->wroot->name = strdup("");
	t->wroot->props_tail = &t->wroot->props;
	t->wroot->children_tail = &t->wroot->children;
	if (!t->wroot->name || state_set_version(t->wroot, STATE_FORMAT_VERSION)) {
		state_tree_free(t);
		return NULL;
	}
	return t;
}

struct state_node *state_tree_root(struct state_tree *t)
{
	return t ? t->wroot : NULL;
}

/* A new child of @parent may be called @name: valid, and not taken yet. */
static int child_name_check(const struct state_node *parent, const char *name)
{
	if (!valid_name(name, true)) {
		node_record(parent, "invalid node name '%.*s'", STATE_NAME_MAX, name);
		return -EINVAL;
	}
	for (const struct state_node *n = parent->children; n; n = n->next)
		if (!strcmp(n->name, name)) {
			node_record(parent, "duplicate node '%s'", name);
			return -EINVAL;
		}
	return 0;
}

static void link_child(struct state_node *parent, struct state_node *n)
{
	n->next = NULL;
	*parent->children_tail = n;
	parent->children_tail = &n->next;
}

struct state_node *state_add_node(struct state_node *parent, const char *name, uint32_t version)
{
	struct state_node *n;

	if (!parent || !parent->tree || !parent->tree->wroot || child_name_check(parent, name))
		return NULL;
	n = calloc(1, sizeof(*n));
	if (!n || !(n->name = strdup(name))) {
		free(n);
		node_record(parent, "out of memory adding node '%s'", name);
		return NULL;
	}
	n->tree = parent->tree;
	n->props_tail = &n->props;
	n->children_tail = &n->children;
	link_child(parent, n);
	if (state_set_version(n, version))
		return NULL;
	return n;
}

static void set_tree(struct state_node *n, struct state_tree *t)
{
	for (; n; n = n->next) {
		n->tree = t;
		set_tree(n->children, t);
	}
}

int state_graft(struct state_node *parent, const char *name, struct state_tree *sub)
{
	struct state_node *n;
	char *copy;

	if (!parent || !parent->tree || !parent->tree->wroot || !sub || !sub->wroot)
		return -EINVAL;
	if (sub->err[0]) {
		state_record(parent->tree, "%s", sub->err);
		state_tree_free(sub);
		return -EINVAL;
	}
	if (child_name_check(parent, name)) {
		state_tree_free(sub);
		return -EINVAL;
	}
	copy = strdup(name);
	if (!copy) {
		node_record(parent, "out of memory adding node '%s'", name);
		state_tree_free(sub);
		return -ENOMEM;
	}
	n = sub->wroot;
	sub->wroot = NULL;
	state_tree_free(sub);
	free(n->name);
	n->name = copy;
	link_child(parent, n);
	set_tree(n, parent->tree);
	return 0;
}

static int put_prop(struct state_node *n, const char *prop, const void *data, size_t len)
{
	struct state_prop *p;
	void *copy;

	if (!n || !n->tree || !n->tree->wroot)
		return -EINVAL;
	if (!valid_name(prop, false)) {
		node_record(n, "invalid property name '%.*s'", STATE_NAME_MAX, prop);
		return -EINVAL;
	}
	if (len > STATE_MAX_SIZE) {
		node_record(n, "property '%s' is too large (%zu bytes)", prop, len);
		return -E2BIG;
	}
	copy = malloc(len ? len : 1);
	if (!copy) {
		node_record(n, "out of memory for property '%s'", prop);
		return -ENOMEM;
	}
	if (len)
		memcpy(copy, data, len);
	for (p = n->props; p; p = p->next)
		if (!strcmp(p->name, prop)) {
			free(p->data);
			p->data = copy;
			p->len = len;
			return 0;
		}
	p = calloc(1, sizeof(*p));
	if (!p || !(p->name = strdup(prop))) {
		free(p);
		free(copy);
		node_record(n, "out of memory for property '%s'", prop);
		return -ENOMEM;
	}
	p->data = copy;
	p->len = len;
	*n->props_tail = p;
	n->props_tail = &p->next;
	return 0;
}

int state_set_version(struct state_node *n, uint32_t version)
{
	int ret = state_put_u32(n, "version", version);

	if (!ret)
		n->has_version = true;
	return ret;
}

int state_put_u32(struct state_node *n, const char *prop, uint32_t v)
{
	fdt32_t be = cpu_to_fdt32(v);

	return put_prop(n, prop, &be, sizeof(be));
}

int state_put_u64(struct state_node *n, const char *prop, uint64_t v)
{
	fdt64_t be = cpu_to_fdt64(v);

	return put_prop(n, prop, &be, sizeof(be));
}

int state_put_u32_array(struct state_node *n, const char *prop, const uint32_t *v, size_t count)
{
	fdt32_t *be;
	int ret;

	if (count > STATE_MAX_SIZE / sizeof(*be))
		return put_prop(n, prop, NULL, SIZE_MAX); /* records "too large" */
	be = malloc(count ? count * sizeof(*be) : 1);
	if (!be)
		return put_prop(n, prop, NULL, SIZE_MAX);
	for (size_t i = 0; i < count; i++)
		be[i] = cpu_to_fdt32(v[i]);
	ret = put_prop(n, prop, be, count * sizeof(*be));
	free(be);
	return ret;
}

int state_put_u64_array(struct state_node *n, const char *prop, const uint64_t *v, size_t count)
{
	fdt64_t *be;
	int ret;

	if (count > STATE_MAX_SIZE / sizeof(*be))
		return put_prop(n, prop, NULL, SIZE_MAX);
	be = malloc(count ? count * sizeof(*be) : 1);
	if (!be)
		return put_prop(n, prop, NULL, SIZE_MAX);
	for (size_t i = 0; i < count; i++)
		be[i] = cpu_to_fdt64(v[i]);
	ret = put_prop(n, prop, be, count * sizeof(*be));
	free(be);
	return ret;
}

int state_put_bytes(struct state_node *n, const char *prop, const void *data, size_t len)
{
	return put_prop(n, prop, data, len);
}

int state_put_str(struct state_node *n, const char *prop, const char *s)
{
	return put_prop(n, prop, s, strlen(s) + 1);
}

static int check_versions(struct state_node *n)
{
	if (!n->has_version) {
		node_record(n, "node has no version property");
		return -EINVAL;
	}
	for (struct state_node *c = n->children; c; c = c->next)
		if (check_versions(c))
			return -EINVAL;
	return 0;
}

/* Sequential write: a node's properties first, then its children (DTSpec 0.4 §5.4.1). */
static int write_node(void *fdt, const struct state_node *n)
{
	int ret = fdt_begin_node(fdt, n->name);

	for (const struct state_prop *p = n->props; !ret && p; p = p->next)
		ret = fdt_property(fdt, p->name, p->data, (int)p->len);
	for (const struct state_node *c = n->children; !ret && c; c = c->next)
		ret = write_node(fdt, c);
	return ret ? ret : fdt_end_node(fdt);
}

static size_t fdt_align4(size_t n) { return (n + 3) & ~(size_t)3; }
static size_t fdt_align16(size_t n) { return (n + 15) & ~(size_t)15; }

/* An upper bound of the blob's size (DTSpec 0.4 §5: FDT_BEGIN_NODE and the
 * padded name, FDT_PROP with its 8-byte header and padded value, FDT_END_NODE;
 * every property name counted in the strings block), so the tree is written
 * once instead of being retried at doubling sizes. */
static size_t node_size_bound(const struct state_node *n)
{
	size_t size = 4 + fdt_align4(strlen(n->name) + 1) + 4;

	for (const struct state_prop *p = n->props; p; p = p->next)
		size += 12 + fdt_align4(p->len) + strlen(p->name) + 1;
	for (const struct state_node *c = n->children; c; c = c->next)
		size += node_size_bound(c);
	return size;
}

int state_tree_finish(struct state_tree *t, void **blob, size_t *len)
{
	size_t size;
	void *buf = NULL;
	int ret;

	if (!t || !t->wroot)
		return -EINVAL;
	if (t->err[0])
		return -EINVAL;
	if (check_versions(t->wroot))
		return -EINVAL;
	/* On top of the nodes: the header, which fdt_create pads to a reserve
	 * entry's alignment (16), the reserve map's terminating entry, FDT_END. */
	size = fdt_align16(sizeof(struct fdt_header)) + sizeof(struct fdt_reserve_entry) + 4 +
	       node_size_bound(t->wroot);
	if (size > STATE_MAX_SIZE) {
		state_record(t, "state: tree larger than %u bytes", STATE_MAX_SIZE);
		return -E2BIG;
	}
	buf = malloc(size);
	if (!buf) {
		state_record(t, "state: out of memory serializing the tree");
		return -ENOMEM;
	}
	/* Property names are not de-duplicated: the bound counts each one, and
	 * libfdt's search of the strings block per property was a third of the
	 * serialization time of a VM's state. */
	ret = fdt_create_with_flags(buf, (int)size, FDT_CREATE_FLAG_NO_NAME_DEDUP);
	if (!ret)
		ret = fdt_finish_reservemap(buf);
	if (!ret)
		ret = write_node(buf, t->wroot);
	if (!ret)
		ret = fdt_finish(buf);
	if (ret) {
		/* NOSPACE here would mean node_size_bound is wrong. */
		state_record(t, "state: serializing failed: %s", fdt_strerror(ret));
		free(buf);
		return -EINVAL;
	}
	*len = fdt_totalsize(buf);
	*blob = buf;
	return 0;
}

static void free_wnode(struct state_node *n)
{
	while (n) {
		struct state_node *next = n->next;

		for (struct state_prop *p = n->props, *pn; p; p = pn) {
			pn = p->next;
			free(p->name);
			free(p->data);
			free(p);
		}
		free_wnode(n->children);
		free(n->name);
		free(n);
		n = next;
	}
}

void state_tree_free(struct state_tree *t)
{
	if (!t)
		return;
	free_wnode(t->wroot);
	free(t->blob);
	free(t);
}

/* --------------------------------------------------------------- reading */

int state_tree_open(struct state_tree **out, const void *blob, size_t len, char *err, size_t errlen)
{
	struct state_tree *t;
	struct state_node root;
	int ret;

	*out = NULL;
	if (len < sizeof(struct fdt_header) || len > STATE_MAX_SIZE) {
		snprintf(err, errlen, "state: blob has %zu bytes, expected %zu..%u", len,
			 sizeof(struct fdt_header), STATE_MAX_SIZE);
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t || !(t->blob = malloc(len))) {
		free(t);
		snprintf(err, errlen, "state: out of memory");
		return -ENOMEM;
	}
	/* Our own aligned copy: libfdt wants 8-byte alignment, and the caller's
	 * buffer may change under us (a mapped file). */
	memcpy(t->blob, blob, len);
	t->len = len;
	/* Our trees are version 17 (what fdt_create writes). Older layouts
	 * (full-path node names, no strings size) take paths in libfdt 1.6.1's
	 * fdt_check_full that dereference NULL on crafted input (found by
	 * fuzz_state): refuse them before it looks. */
	if (fdt_magic(t->blob) == FDT_MAGIC && fdt_version(t->blob) < 17) {
		snprintf(err, errlen, "state: device tree version %u is not supported (17 expected)",
			 fdt_version(t->blob));
		goto fail;
	}
	ret = fdt_check_full(t->blob, len);
	if (ret) {
		snprintf(err, errlen, "state: not a valid state tree: %s", fdt_strerror(ret));
		goto fail;
	}
	if (fdt_totalsize(t->blob) != len) {
		snprintf(err, errlen, "state: blob has %zu bytes but its header says %u", len,
			 fdt_totalsize(t->blob));
		goto fail;
	}
	state_root(t, &root);
	if (state_node_version(&root, 1, STATE_FORMAT_VERSION, NULL)) {
		snprintf(err, errlen, "%s", t->err);
		goto fail;
	}
	*out = t;
	return 0;
fail:
	state_tree_free(t);
	return -EINVAL;
}

int state_root(struct state_tree *t, struct state_node *out)
{
	memset(out, 0, sizeof(*out));
	out->tree = t;
	out->offset = 0;
	return t && t->blob ? 0 : -EINVAL;
}

const void *state_tree_blob(const struct state_tree *t, size_t *len)
{
	*len = t ? t->len : 0;
	return t ? t->blob : NULL;
}

static int child_lookup(const struct state_node *parent, const char *name, struct state_node *out,
			bool required)
{
	int off;

	memset(out, 0, sizeof(*out));
	out->tree = parent->tree;
	if (!parent->tree || !parent->tree->blob)
		return -EINVAL;
	off = fdt_subnode_offset(parent->tree->blob, parent->offset, name);
	if (off < 0) {
		if (required)
			node_record(parent, "missing node '%s'", name);
		return -ENOENT;
	}
	out->offset = off;
	return 0;
}

int state_child(const struct state_node *parent, const char *name, struct state_node *out)
{
	return child_lookup(parent, name, out, true);
}

int state_child_opt(const struct state_node *parent, const char *name, struct state_node *out)
{
	return child_lookup(parent, name, out, false);
}

int state_child_first(const struct state_node *parent, struct state_node *child)
{
	int off;

	memset(child, 0, sizeof(*child));
	child->tree = parent->tree;
	if (!parent->tree || !parent->tree->blob)
		return -EINVAL;
	off = fdt_first_subnode(parent->tree->blob, parent->offset);
	if (off < 0)
		return -ENOENT;
	child->offset = off;
	return 0;
}

int state_child_next(struct state_node *child)
{
	int off = fdt_next_subnode(child->tree->blob, child->offset);

	if (off < 0)
		return -ENOENT;
	child->offset = off;
	return 0;
}

const char *state_node_name(const struct state_node *n)
{
	const char *name;

	if (!n->tree || !n->tree->blob)
		return n->name ? n->name : "";
	name = fdt_get_name(n->tree->blob, n->offset, NULL);
	return name ? name : "";
}

/* Look a property up; a missing one is an error naming it. */
static const void *prop_get(const struct state_node *n, const char *prop, size_t *len)
{
	const void *data;
	int plen;

	if (!n->tree || !n->tree->blob)
		return NULL;
	data = fdt_getprop(n->tree->blob, n->offset, prop, &plen);
	if (!data || plen < 0) {
		node_record(n, "missing property '%s'", prop);
		return NULL;
	}
	*len = (size_t)plen;
	return data;
}

static const void *prop_get_len(const struct state_node *n, const char *prop, size_t want)
{
	const void *data;
	size_t len;

	data = prop_get(n, prop, &len);
	if (!data)
		return NULL;
	if (len != want) {
		node_record(n, "property '%s' has %zu bytes, expected %zu", prop, len, want);
		return NULL;
	}
	return data;
}

bool state_has(const struct state_node *n, const char *prop)
{
	return n->tree && n->tree->blob && fdt_getprop(n->tree->blob, n->offset, prop, NULL);
}

int state_get_u32(const struct state_node *n, const char *prop, uint32_t *v)
{
	const void *data = prop_get_len(n, prop, sizeof(fdt32_t));

	if (!data)
		return -EINVAL;
	*v = fdt32_ld(data);
	return 0;
}

int state_get_u64(const struct state_node *n, const char *prop, uint64_t *v)
{
	const void *data = prop_get_len(n, prop, sizeof(fdt64_t));
	fdt64_t be;

	if (!data)
		return -EINVAL;
	memcpy(&be, data, sizeof(be)); /* property data is only 4-byte aligned */
	*v = fdt64_to_cpu(be);
	return 0;
}

int state_get_u32_range(const struct state_node *n, const char *prop, uint32_t min, uint32_t max,
			uint32_t *v)
{
	uint32_t x;

	if (state_get_u32(n, prop, &x))
		return -EINVAL;
	if (x < min || x > max) {
		node_record(n, "property '%s' is %u, expected %u..%u", prop, x, min, max);
		return -EINVAL;
	}
	*v = x;
	return 0;
}

int state_node_version(const struct state_node *n, uint32_t min, uint32_t max, uint32_t *version)
{
	uint32_t v;

	if (state_get_u32(n, "version", &v))
		return -EINVAL;
	if (v < min || v > max) {
		node_record(n, "version %u not supported (this vmm reads %u..%u)", v, min, max);
		return -EINVAL;
	}
	if (version)
		*version = v;
	return 0;
}

int state_get_bytes(const struct state_node *n, const char *prop, void *buf, size_t len)
{
	const void *data = prop_get_len(n, prop, len);

	if (!data)
		return -EINVAL;
	memcpy(buf, data, len);
	return 0;
}

int state_get_bytes_max(const struct state_node *n, const char *prop, void *buf, size_t max,
			size_t *len)
{
	const void *data = prop_get(n, prop, len);

	if (!data)
		return -EINVAL;
	if (*len > max) {
		node_record(n, "property '%s' has %zu bytes, expected at most %zu", prop, *len, max);
		return -EINVAL;
	}
	memcpy(buf, data, *len);
	return 0;
}

int state_get_raw(const struct state_node *n, const char *prop, const void **data, size_t *len)
{
	*data = prop_get(n, prop, len);
	return *data ? 0 : -EINVAL;
}

static const void *array_get(const struct state_node *n, const char *prop, size_t elem, size_t max,
			     size_t *count)
{
	const void *data;
	size_t len;

	data = prop_get(n, prop, &len);
	if (!data)
		return NULL;
	if (len % elem) {
		node_record(n, "property '%s' has %zu bytes, not a multiple of %zu", prop, len, elem);
		return NULL;
	}
	if (len / elem > max) {
		node_record(n, "property '%s' has %zu entries, expected at most %zu", prop, len / elem, max);
		return NULL;
	}
	*count = len / elem;
	return data;
}

int state_get_u32_array(const struct state_node *n, const char *prop, uint32_t *v, size_t max,
			size_t *count)
{
	const uint8_t *data = array_get(n, prop, sizeof(fdt32_t), max, count);

	if (!data)
		return -EINVAL;
	for (size_t i = 0; i < *count; i++)
		v[i] = fdt32_ld((const fdt32_t *)(data + i * sizeof(fdt32_t)));
	return 0;
}

int state_get_u64_array(const struct state_node *n, const char *prop, uint64_t *v, size_t max,
			size_t *count)
{
	const uint8_t *data = array_get(n, prop, sizeof(fdt64_t), max, count);

	if (!data)
		return -EINVAL;
	for (size_t i = 0; i < *count; i++) {
		fdt64_t be;

		memcpy(&be, data + i * sizeof(be), sizeof(be));
		v[i] = fdt64_to_cpu(be);
	}
	return 0;
}

int state_get_str(const struct state_node *n, const char *prop, char *buf, size_t size)
{
	const char *data;
	size_t len;

	data = prop_get(n, prop, &len);
	if (!data)
		return -EINVAL;
	if (len == 0 || data[len - 1] != '\0' || strlen(data) != len - 1) {
		node_record(n, "property '%s' is not a string", prop);
		return -EINVAL;
	}
	if (len > size) {
		node_record(n, "property '%s' is %zu characters long, at most %zu allowed", prop, len - 1,
			    size ? size - 1 : 0);
		return -EINVAL;
	}
	memcpy(buf, data, len);
	return 0;
}

/* ------------------------------------------------------------- printing */

static bool printable_string(const char *s, int len)
{
	if (len <= 0 || s[len - 1] != '\0')
		return false;
	for (int i = 0; i < len - 1; i++)
		if (!isprint((unsigned char)s[i]))
			return false;
	return true;
}

static void print_prop(FILE *out, int depth, const char *name, const void *data, int len)
{
	const uint8_t *b = data;
	char safe[STATE_NAME_MAX * 2];

	snprintf(safe, sizeof(safe), "%s", name);
	sanitize(safe);
	fprintf(out, "%*s%s", depth * 4, "", safe);
	if (len == 0) {
		fputs(";\n", out);
	} else if (printable_string(data, len) && len > 1) {
		fprintf(out, " = \"%s\";\n", (const char *)data);
	} else if (len % 4 == 0 && len <= 512) {
		fputs(" = <", out);
		for (int i = 0; i < len; i += 4)
			fprintf(out, "%s0x%x", i ? " " : "", fdt32_ld((const fdt32_t *)(b + i)));
		fputs(">;\n", out);
	} else {
		int shown = len < 64 ? len : 64;

		fputs(" = [", out);
		for (int i = 0; i < shown; i++)
			fprintf(out, "%s%02x", i ? " " : "", b[i]);
		fprintf(out, "%s]; /* %d bytes */\n", shown < len ? " ..." : "", len);
	}
}

int state_tree_print(const struct state_tree *t, FILE *out)
{
	const void *fdt = t ? t->blob : NULL;
	int off = 0, depth = 0;

	if (!fdt)
		return -EINVAL;
	/* Walk iteratively: fdt_next_node() tracks depth, so a deep hostile tree
	 * cannot exhaust the stack (it was validated by fdt_check_full anyway). */
	while (off >= 0) {
		const char *name = fdt_get_name(fdt, off, NULL);
		char safe[STATE_NAME_MAX * 2];
		int prop, next_depth = depth;

		snprintf(safe, sizeof(safe), "%s", name && name[0] ? name : "/");
		sanitize(safe);
		fprintf(out, "%*s%s {\n", depth * 4, "", safe);
		fdt_for_each_property_offset(prop, fdt, off) {
			const char *pname;
			int len;
			const void *data = fdt_getprop_by_offset(fdt, prop, &pname, &len);

			if (data && pname)
				print_prop(out, depth + 1, pname, data, len);
		}
		off = fdt_next_node(fdt, off, &next_depth);
		/* Past the root's end libfdt reports depth -1 (and a positive offset). */
		if (off < 0 || next_depth <= 0) {
			off = -1;
			next_depth = 0;
		}
		/* Close every node we leave: children first, then siblings' parents. */
		for (int d = depth; d >= next_depth; d--)
			fprintf(out, "%*s};\n", d * 4, "");
		depth = next_depth;
	}
	return 0;
}
