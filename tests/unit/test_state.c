/* The state tree: round trips, and a hostile reader that names what is wrong. */
#include <criterion/criterion.h>
#include <errno.h>
#include <libfdt.h>
#include <stdlib.h>
#include <string.h>

#include "migration/state.h"

static void *build_sample(size_t *len)
{
	struct state_tree *t = state_tree_new();
	struct state_node *vcpus, *cpu, *dev;
	uint8_t regs[144];
	uint32_t idx[3] = { 0x10, 0xc0000080, 0x1b };
	uint64_t val[3] = { 1, 0xd01, 0xfee00900 };
	void *blob;

	cr_assert_not_null(t);
	for (size_t i = 0; i < sizeof(regs); i++)
		regs[i] = (uint8_t)i;
	cr_assert_eq(state_put_str(state_tree_root(t), "vmm-version", "test"), 0);
	vcpus = state_add_node(state_tree_root(t), "vcpus", 1);
	cr_assert_not_null(vcpus);
	cpu = state_add_node(vcpus, "cpu@0", 2);
	cr_assert_not_null(cpu);
	cr_assert_eq(state_put_bytes(cpu, "regs", regs, sizeof(regs)), 0);
	cr_assert_eq(state_put_u64(cpu, "rip", 0x123456789abcdef0ULL), 0);
	cr_assert_eq(state_put_u32_array(cpu, "msr-index", idx, 3), 0);
	cr_assert_eq(state_put_u64_array(cpu, "msr-value", val, 3), 0);
	cr_assert_not_null(state_add_node(vcpus, "cpu@1", 2));
	dev = state_add_node(state_tree_root(t), "uart0", 1);
	cr_assert_not_null(dev);
	cr_assert_eq(state_put_u32(dev, "ier", 0x0f), 0);
	cr_assert_eq(state_put_str(dev, "type", "uart"), 0);
	cr_assert_eq(state_tree_finish(t, &blob, len), 0, "%s", state_error(t));
	state_tree_free(t);
	return blob;
}

Test(state, round_trip)
{
	size_t len, n;
	void *blob = build_sample(&len);
	struct state_tree *t;
	struct state_node root, vcpus, cpu, dev, c;
	char err[STATE_ERR_MAX], s[16];
	uint8_t regs[144];
	uint32_t idx[8], v32, ver;
	uint64_t val[8], v64;
	int count = 0, r;

	cr_assert_eq(state_tree_open(&t, blob, len, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(state_root(t, &root), 0);
	cr_assert_eq(state_get_str(&root, "vmm-version", s, sizeof(s)), 0);
	cr_assert_str_eq(s, "test");
	cr_assert_eq(state_child(&root, "vcpus", &vcpus), 0);
	for (r = state_child_first(&vcpus, &c); r == 0; r = state_child_next(&c))
		count++;
	cr_assert_eq(count, 2);
	cr_assert_eq(state_child(&vcpus, "cpu@0", &cpu), 0);
	cr_assert_eq(state_node_version(&cpu, 1, 2, &ver), 0);
	cr_assert_eq(ver, 2);
	cr_assert_eq(state_get_bytes(&cpu, "regs", regs, sizeof(regs)), 0);
	for (size_t i = 0; i < sizeof(regs); i++)
		cr_assert_eq(regs[i], (uint8_t)i);
	cr_assert_eq(state_get_u64(&cpu, "rip", &v64), 0);
	cr_assert_eq(v64, 0x123456789abcdef0ULL);
	cr_assert_eq(state_get_u32_array(&cpu, "msr-index", idx, 8, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_eq(idx[1], 0xc0000080);
	cr_assert_eq(state_get_u64_array(&cpu, "msr-value", val, 8, &n), 0);
	cr_assert_eq(val[2], 0xfee00900);
	cr_assert_eq(state_child(&root, "uart0", &dev), 0);
	cr_assert_eq(state_get_u32_range(&dev, "ier", 0, 0xf, &v32), 0);
	cr_assert_eq(v32, 0xf);
	cr_assert_str_eq(state_error(t), "");
	state_tree_free(t);
	free(blob);
}

Test(state, errors_name_node_and_property)
{
	size_t len, n;
	void *blob = build_sample(&len);
	struct state_tree *t;
	struct state_node root, vcpus, cpu, dev;
	char err[STATE_ERR_MAX];
	uint8_t regs[140];
	uint32_t v32, idx[2];

	cr_assert_eq(state_tree_open(&t, blob, len, err, sizeof(err)), 0, "%s", err);
	state_root(t, &root);
	state_child(&root, "vcpus", &vcpus);
	state_child(&vcpus, "cpu@0", &cpu);
	cr_assert_eq(state_get_bytes(&cpu, "regs", regs, sizeof(regs)), -EINVAL);
	cr_assert_str_eq(state_error(t), "state: /vcpus/cpu@0: property 'regs' has 144 bytes, expected 140");
	state_tree_free(t);

	state_tree_open(&t, blob, len, err, sizeof(err));
	state_root(t, &root);
	state_child(&root, "vcpus", &vcpus);
	state_child(&vcpus, "cpu@0", &cpu);
	cr_assert_eq(state_node_version(&cpu, 3, 4, NULL), -EINVAL);
	cr_assert_str_eq(state_error(t), "state: /vcpus/cpu@0: version 2 not supported (this vmm reads 3..4)");
	state_tree_free(t);

	state_tree_open(&t, blob, len, err, sizeof(err));
	state_root(t, &root);
	state_child(&root, "uart0", &dev);
	cr_assert_eq(state_get_u32_range(&dev, "ier", 0, 7, &v32), -EINVAL);
	cr_assert_str_eq(state_error(t), "state: /uart0: property 'ier' is 15, expected 0..7");
	state_tree_free(t);

	state_tree_open(&t, blob, len, err, sizeof(err));
	state_root(t, &root);
	state_child(&root, "vcpus", &vcpus);
	state_child(&vcpus, "cpu@0", &cpu);
	cr_assert_eq(state_get_u32_array(&cpu, "msr-index", idx, 2, &n), -EINVAL);
	cr_assert_str_eq(state_error(t), "state: /vcpus/cpu@0: property 'msr-index' has 3 entries, expected at most 2");
	state_tree_free(t);

	state_tree_open(&t, blob, len, err, sizeof(err));
	state_root(t, &root);
	cr_assert_eq(state_child(&root, "pit", &dev), -ENOENT);
	cr_assert_str_eq(state_error(t), "state: /: missing node 'pit'");
	state_tree_free(t);

	state_tree_open(&t, blob, len, err, sizeof(err));
	state_root(t, &root);
	state_child(&root, "uart0", &dev);
	cr_assert_eq(state_get_u64(&dev, "lsr", NULL), -EINVAL);
	cr_assert_str_eq(state_error(t), "state: /uart0: missing property 'lsr'");
	/* The first error is kept. */
	cr_assert_eq(state_fail(&dev, "second"), -EINVAL);
	cr_assert_str_eq(state_error(t), "state: /uart0: missing property 'lsr'");
	state_tree_free(t);
	free(blob);
}

Test(state, writer_refuses_bad_trees)
{
	struct state_tree *t = state_tree_new();
	struct state_node *n;
	void *blob;
	size_t len;

	cr_assert_null(state_add_node(state_tree_root(t), "bad/name", 1));
	cr_assert_neq(state_error(t)[0], '\0');
	cr_assert_eq(state_tree_finish(t, &blob, &len), -EINVAL);
	state_tree_free(t);

	t = state_tree_new();
	n = state_add_node(state_tree_root(t), "a", 1);
	cr_assert_null(state_add_node(state_tree_root(t), "a", 1));
	state_tree_free(t);

	/* A node whose version nobody set makes the whole save fail, naming it. */
	t = state_tree_new();
	n = state_add_node(state_tree_root(t), "dev", 1);
	cr_assert_not_null(n);
	n->has_version = false;
	cr_assert_eq(state_tree_finish(t, &blob, &len), -EINVAL);
	cr_assert_str_eq(state_error(t), "state: dev: node has no version property");
	state_tree_free(t);
}

Test(state, hostile_blobs_are_refused)
{
	size_t len;
	uint8_t *blob = build_sample(&len);
	struct state_tree *t;
	char err[STATE_ERR_MAX];

	/* Truncation. */
	for (size_t cut = 0; cut < len; cut += 7) {
		err[0] = 0;
		cr_assert_eq(state_tree_open(&t, blob, cut, err, sizeof(err)), -EINVAL, "cut %zu", cut);
		cr_assert_null(t);
		cr_assert(strncmp(err, "state: ", 7) == 0, "%s", err);
	}
	/* Single bit flips anywhere: either refused, or a tree every getter still
	 * reads safely (a flip inside a property value is not detectable here). */
	for (size_t bit = 0; bit < len * 8; bit++) {
		uint8_t *copy = malloc(len);
		struct state_node root, c;
		int r;

		memcpy(copy, blob, len);
		copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		if (state_tree_open(&t, copy, len, err, sizeof(err)) == 0) {
			state_root(t, &root);
			for (r = state_child_first(&root, &c); r == 0; r = state_child_next(&c)) {
				uint8_t buf[256];
				size_t n;

				state_node_version(&c, 1, 2, NULL);
				state_get_bytes_max(&c, "regs", buf, sizeof(buf), &n);
			}
			state_tree_free(t);
		} else {
			cr_assert_neq(err[0], '\0');
		}
		free(copy);
	}
	/* Root format version from the future. */
	{
		uint8_t *copy = malloc(len);
		int off;

		memcpy(copy, blob, len);
		off = fdt_path_offset(copy, "/");
		cr_assert_eq(fdt_setprop_inplace_u32(copy, off, "version", STATE_FORMAT_VERSION + 1), 0);
		cr_assert_eq(state_tree_open(&t, copy, len, err, sizeof(err)), -EINVAL);
		cr_assert(strstr(err, "version 2 not supported") != NULL, "%s", err);
		free(copy);
	}
	/* Old device-tree layouts (the header's version below 17): libfdt 1.6.1's
	 * fdt_check_full dereferenced NULL on a fuzzed one of these. */
	for (uint32_t v = 1; v < 17; v++) {
		uint8_t *copy = malloc(len);

		memcpy(copy, blob, len);
		fdt_set_version(copy, v);
		cr_assert_eq(state_tree_open(&t, copy, len, err, sizeof(err)), -EINVAL);
		cr_assert(strstr(err, "is not supported") != NULL, "%s", err);
		free(copy);
	}
	free(blob);
}

/* Regression (tests/fuzz/fuzz_state): an old FDT version with a root name
 * libfdt cannot parse crashed fdt_check_full; it must be an error. */
Test(state, old_fdt_version_is_refused)
{
	struct state_tree *t;
	char err[STATE_ERR_MAX];
	size_t len;
	uint8_t *blob = build_sample(&len);
	uint8_t *copy = malloc(len);
	const uint8_t v5[4] = { 0, 0, 0, 5 };   /* header word 5: version, big-endian */

	memcpy(copy, blob, len);
	memcpy(copy + 20, v5, 4);
	cr_assert_eq(state_tree_open(&t, copy, len, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "version 5"), "%s", err);
	free(copy);
	free(blob);
}

Test(state, print_shows_nodes)
{
	size_t len;
	void *blob = build_sample(&len);
	struct state_tree *t;
	char err[STATE_ERR_MAX], *text = NULL;
	size_t tlen = 0;
	FILE *f = open_memstream(&text, &tlen);

	cr_assert_eq(state_tree_open(&t, blob, len, err, sizeof(err)), 0);
	cr_assert_eq(state_tree_print(t, f), 0);
	fclose(f);
	cr_assert(strstr(text, "cpu@0 {") != NULL, "%s", text);
	cr_assert(strstr(text, "rip = <0x12345678 0x9abcdef0>;") != NULL, "%s", text);
	cr_assert(strstr(text, "type = \"uart\";") != NULL, "%s", text);
	free(text);
	state_tree_free(t);
	free(blob);
}

/* state_tree_finish sizes its buffer from the tree once, without retrying:
 * trees of every shape (name lengths 1..31 against the 4-byte padding,
 * empty and odd-sized values, deep and wide) must serialize and read back. */
Test(state, finish_sizes_any_tree_in_one_go)
{
	uint8_t data[301];
	unsigned seed = 12345;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	for (unsigned round = 0; round < 200; round++) {
		struct state_tree *t = state_tree_new(), *r;
		struct state_node *n, *parent;
		char name[40], err[STATE_ERR_MAX];
		size_t len;
		void *blob;

		cr_assert_not_null(t);
		parent = state_tree_root(t);
		for (unsigned k = 0; k < 1 + round % 9; k++) {
			seed = seed * 1103515245u + 12345u;
			unsigned nlen = 1 + (seed >> 8) % 31;
			memset(name, 'a' + k, nlen);
			name[nlen] = '\0';
			n = state_add_node(parent, name, 1);
			cr_assert_not_null(n, "%s", state_error(t));
			for (unsigned p = 0; p < (seed >> 16) % 6; p++) {
				unsigned plen = 1 + (seed >> (p + 3)) % 31;
				memset(name, 'p' + p % 8, plen);
				name[plen] = '\0';
				cr_assert_eq(state_put_bytes(n, name, data, (seed >> (p + 5)) % sizeof(data)), 0);
			}
			if (seed & 1)
				parent = n; /* go deeper */
		}
		cr_assert_eq(state_tree_finish(t, &blob, &len), 0, "round %u: %s", round, state_error(t));
		cr_assert_eq(state_tree_open(&r, blob, len, err, sizeof(err)), 0, "round %u: %s", round, err);
		state_tree_free(r);
		state_tree_free(t);
		free(blob);
	}
}

/* Two threads build a tree each; one is grafted under the other. */
Test(state, graft_moves_a_tree_under_a_node)
{
	struct state_tree *t = state_tree_new(), *sub = state_tree_new(), *bad = state_tree_new(), *r;
	struct state_node root, devs, uart;
	char err[STATE_ERR_MAX];
	uint32_t v;
	size_t len;
	void *blob;

	cr_assert(t && sub && bad);
	cr_assert_eq(state_set_version(state_tree_root(sub), 3), 0);
	cr_assert_not_null(state_add_node(state_tree_root(sub), "uart0", 1));
	cr_assert_eq(state_put_u32(state_tree_root(sub), "count", 1), 0);
	cr_assert_eq(state_graft(state_tree_root(t), "devices", sub), 0, "%s", state_error(t));
	/* A second "devices" is a duplicate; a tree with an error brings it along. */
	sub = state_tree_new();
	cr_assert_eq(state_graft(state_tree_root(t), "devices", sub), -EINVAL);
	cr_assert(strstr(state_error(t), "duplicate"), "%s", state_error(t));
	cr_assert_eq(state_tree_finish(t, &blob, &len), -EINVAL, "an error was recorded");
	state_tree_free(t);

	t = state_tree_new();
	cr_assert_null(state_add_node(state_tree_root(bad), "bad name!", 1));
	cr_assert_eq(state_graft(state_tree_root(t), "devices", bad), -EINVAL);
	cr_assert(strstr(state_error(t), "bad name"), "%s", state_error(t));
	state_tree_free(t);

	t = state_tree_new();
	sub = state_tree_new();
	cr_assert_eq(state_set_version(state_tree_root(sub), 3), 0);
	cr_assert_not_null(state_add_node(state_tree_root(sub), "uart0", 1));
	cr_assert_eq(state_graft(state_tree_root(t), "devices", sub), 0);
	cr_assert_eq(state_tree_finish(t, &blob, &len), 0, "%s", state_error(t));
	cr_assert_eq(state_tree_open(&r, blob, len, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(state_root(r, &root), 0);
	cr_assert_eq(state_child(&root, "devices", &devs), 0);
	cr_assert_eq(state_node_version(&devs, 3, 3, &v), 0);
	cr_assert_eq(state_child(&devs, "uart0", &uart), 0);
	state_tree_free(r);
	state_tree_free(t);
	free(blob);
}
