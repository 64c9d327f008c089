/* The state tree: every stateful object saves itself into one node of a
 * flattened device tree (libfdt), and loads itself back from it.
 *
 * Writing builds the tree in memory (so a save() may add properties and child
 * nodes in any order), then state_tree_finish() serializes it as a DTB:
 *
 *	struct state_tree *t = state_tree_new();
 *	struct state_node *n = state_add_node(state_tree_root(t), "uart0", 1);
 *	state_put_u32(n, "ier", s->ier);
 *	state_tree_finish(t, &blob, &len);
 *
 * Reading treats the blob as hostile: state_tree_open() runs fdt_check_full()
 * and checks the root format version; every getter checks the property's
 * presence and exact length (or bound) and, on failure, records one line that
 * names the node and the property, e.g.
 *	state: /vcpus/cpu@0: property 'regs' has 140 bytes, expected 144
 * The first error is kept in the tree (state_error()) and logged.
 *
 * Reading nodes are small values (tree + offset) that callers keep on the
 * stack; writing nodes are owned by their tree.
 *
 * Encoding: u32 and u64 are big-endian (FDT cells), so `dtc` shows them as
 * <cells>; byte strings are raw (kernel structs in host layout); strings are
 * NUL-terminated. Every node has a `version` (u32) property; a loader states
 * the window it accepts with state_node_version(). */
#ifndef MIGRATION_STATE_H
#define MIGRATION_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define STATE_FORMAT_VERSION 1
#define STATE_ERR_MAX 256
#define STATE_NAME_MAX 64          /* node and property names */
#define STATE_MAX_SIZE (64u << 20) /* refuse bigger state blobs outright */

struct state_prop;
struct state_tree;

struct state_node {
	struct state_tree *tree;
	int offset;                        /* reading: node offset in the blob */
	/* writing only */
	char *name;
	struct state_prop *props, **props_tail;
	struct state_node *children, **children_tail, *next;
	bool has_version;
};

/* ---- writing ---- */
struct state_tree *state_tree_new(void);
struct state_node *state_tree_root(struct state_tree *t);
/* Add a child node named @name (unit address allowed: "cpu@0") carrying
 * `version = <@version>`. Returns NULL (error recorded) on a bad name or ENOMEM. */
struct state_node *state_add_node(struct state_node *parent, const char *name, uint32_t version);
/* Move the tree @sub under @parent as node @name (its root's version and
 * properties come along); @sub is consumed, also on failure. Lets two threads
 * build parts of one tree side by side, each in its own tree. */
int state_graft(struct state_node *parent, const char *name, struct state_tree *sub);
/* Set (or replace) the node's version; for nodes created by someone else
 * (e.g. /devices/<name> is created by the snapshot code, versioned by the device). */
int state_set_version(struct state_node *n, uint32_t version);
int state_put_u32(struct state_node *n, const char *prop, uint32_t v);
int state_put_u64(struct state_node *n, const char *prop, uint64_t v);
int state_put_u32_array(struct state_node *n, const char *prop, const uint32_t *v, size_t count);
int state_put_u64_array(struct state_node *n, const char *prop, const uint64_t *v, size_t count);
int state_put_bytes(struct state_node *n, const char *prop, const void *data, size_t len);
int state_put_str(struct state_node *n, const char *prop, const char *s);
/* Serialize into a malloc'd DTB (caller frees). Fails, naming the node, if
 * any node lacks a version or an earlier put failed. */
int state_tree_finish(struct state_tree *t, void **blob, size_t *len);

/* ---- reading ---- */
/* Validate @blob (copied) and check the root format version window.
 * On failure returns -EINVAL (or -ENOMEM) and writes the message to @err. */
int state_tree_open(struct state_tree **out, const void *blob, size_t len, char *err, size_t errlen);
int state_root(struct state_tree *t, struct state_node *out);
/* Child by exact name; -ENOENT (error recorded) if missing. */
int state_child(const struct state_node *parent, const char *name, struct state_node *out);
/* Same, but a missing child is not an error (returns -ENOENT, nothing recorded). */
int state_child_opt(const struct state_node *parent, const char *name, struct state_node *out);
/* Iterate children: for (r = state_child_first(p, &c); r == 0; r = state_child_next(&c)) */
int state_child_first(const struct state_node *parent, struct state_node *child);
int state_child_next(struct state_node *child);
const char *state_node_name(const struct state_node *n);
/* Check the node's version is within [min, max]; store it in *@version if non-NULL. */
int state_node_version(const struct state_node *n, uint32_t min, uint32_t max, uint32_t *version);
bool state_has(const struct state_node *n, const char *prop);
int state_get_u32(const struct state_node *n, const char *prop, uint32_t *v);
int state_get_u64(const struct state_node *n, const char *prop, uint64_t *v);
/* u32 within [min, max] (inclusive); out-of-range is an error naming the property. */
int state_get_u32_range(const struct state_node *n, const char *prop, uint32_t min, uint32_t max,
			uint32_t *v);
/* Exactly @len bytes. */
int state_get_bytes(const struct state_node *n, const char *prop, void *buf, size_t len);
/* At most @max bytes; the length read goes to *@len. */
int state_get_bytes_max(const struct state_node *n, const char *prop, void *buf, size_t max,
			size_t *len);
/* Zero-copy view of a property of any length (valid while the tree lives). */
int state_get_raw(const struct state_node *n, const char *prop, const void **data, size_t *len);
/* Arrays: exactly @count elements, or at most @max (count read to *@count). */
int state_get_u32_array(const struct state_node *n, const char *prop, uint32_t *v, size_t max,
			size_t *count);
int state_get_u64_array(const struct state_node *n, const char *prop, uint64_t *v, size_t max,
			size_t *count);
/* NUL-terminated string of at most @size - 1 characters. */
int state_get_str(const struct state_node *n, const char *prop, char *buf, size_t size);
/* Record a semantic error found by a loader ("ier 0x100 out of range"): the
 * message is prefixed with "state: <node path>: ". Returns -EINVAL. */
int state_fail(const struct state_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Path of the node, e.g. "/vcpus/cpu@0". */
void state_node_path(const struct state_node *n, char *buf, size_t size);

/* ---- both ---- */
/* The first error recorded on the tree ("" if none). */
const char *state_error(const struct state_tree *t);
void state_tree_free(struct state_tree *t);
/* The raw validated blob of a reading tree (for state show / copying). */
const void *state_tree_blob(const struct state_tree *t, size_t *len);

/* Human-readable dump of a validated tree, dts-like; returns 0 or -errno. */
int state_tree_print(const struct state_tree *t, FILE *out);

#endif
