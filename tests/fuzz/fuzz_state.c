/* libFuzzer target for the state loader: any byte string goes through the
 * same path a restore takes (fdt_check_full, root checks, vCPU and VM state
 * parsing with every bound) and through the printer of `vmm state show`.
 * Nothing here may crash, leak or read out of bounds, whatever the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration/state.h"
#include "migration/vcpu_state.h"
#include "migration/vm_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Walk every node (bounded depth) and hit every getter on the names a loader uses. */
static void walk(const struct state_node *n, int depth, const struct vcpu_state_caps *caps)
{
	static const char *const props[] = { "version", "regs", "sregs", "xsave", "lapic", "type",
					     "msr-index", "msr-value", "clock", "rx-fifo", "ier" };
	struct state_node c;
	uint8_t buf[512];
	uint64_t arr[32];
	uint32_t a32[32];
	char s[64];
	size_t len;
	uint64_t v64;
	uint32_t v32;

	if (depth > 8)
		return;
	for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
		state_get_u32(n, props[i], &v32);
		state_get_u64(n, props[i], &v64);
		state_get_u32_range(n, props[i], 1, 9, &v32);
		state_get_bytes(n, props[i], buf, 144);
		state_get_bytes_max(n, props[i], buf, sizeof(buf), &len);
		state_get_u64_array(n, props[i], arr, 32, &len);
		state_get_u32_array(n, props[i], a32, 32, &len);
		state_get_str(n, props[i], s, sizeof(s));
		state_has(n, props[i]);
	}
	state_node_version(n, 1, 1, NULL);
	if (!strncmp(state_node_name(n), "cpu@", 4)) {
		struct vcpu_state vs;

		if (vcpu_state_parse(caps, n, &vs) == 0)
			vcpu_state_free(&vs);
	}
	for (int r = state_child_first(n, &c); r == 0; r = state_child_next(&c))
		walk(&c, depth + 1, caps);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	struct vcpu_state_caps caps = { .xsave_size = 4096, .xsave2 = true, .xcrs = true };
	struct state_tree *t;
	struct state_node root, c;
	struct vm_kstate ks;
	char err[STATE_ERR_MAX];

	if (!devnull)
		devnull = fopen("/dev/null", "w");
	if (state_tree_open(&t, data, size, err, sizeof(err)))
		return 0;
	state_root(t, &root);
	walk(&root, 0, &caps);
	vm_kstate_parse(&root, &ks);
	if (state_child_opt(&root, "vcpus", &c) == 0)
		walk(&c, 1, &caps);
	if (devnull)
		state_tree_print(t, devnull);
	state_tree_free(t);
	return 0;
}
