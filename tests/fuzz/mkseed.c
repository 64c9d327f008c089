/* Write a seed corpus for fuzz_state: a tree shaped like a real snapshot's
 * (root properties, one vCPU with every property at its real size, irqchip,
 * PIT, clock, devices), so fuzzing starts from deep inside the loader. */
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration/state.h"
#include "migration/vcpu_state.h"
#include "migration/vm_state.h"

static int write_seed(const char *path, struct state_tree *t)
{
	void *blob;
	size_t len;
	FILE *f;

	if (state_tree_finish(t, &blob, &len)) {
		fprintf(stderr, "mkseed: %s\n", state_error(t));
		return 1;
	}
	f = fopen(path, "wb");
	if (!f || fwrite(blob, 1, len, f) != len) {
		perror(path);
		return 1;
	}
	fclose(f);
	free(blob);
	return 0;
}

int main(int argc, char **argv)
{
	struct vcpu_state vs;
	struct vm_kstate ks;
	struct state_tree *t = state_tree_new();
	struct state_node *root = state_tree_root(t), *vcpus, *devs, *uart;
	char path[4096];
	uint8_t fifo[3] = { 'a', 'b', 'c' };

	if (argc != 2) {
		fprintf(stderr, "usage: mkseed DIR\n");
		return 2;
	}
	memset(&vs, 0, sizeof(vs));
	memset(&ks, 0, sizeof(ks));
	vs.xsave_size = 4096;
	vs.xsave = calloc(1, 4096);
	vs.has_xcrs = true;
	vs.msrs = calloc(1, sizeof(*vs.msrs) + 2 * sizeof(struct kvm_msr_entry));
	vs.msrs->nmsrs = 2;
	vs.msrs->entries[0].index = 0x10;
	vs.msrs->entries[1].index = 0xc0000080;
	vs.regs.rip = 0x100000;
	ks.has_irqchip = ks.has_pit = true;
	ks.clock.clock = 123456789;
	state_put_str(root, "vmm-version", "0.1.0");
	state_put_str(root, "host-cpu-vendor", "AuthenticAMD");
	state_put_str(root, "config-digest", "fnv1a64:0000000000000000");
	state_put_u64(root, "memory-size", 16 << 20);
	state_put_u32(root, "nr-vcpus", 1);
	vcpus = state_add_node(root, "vcpus", 1);
	vcpu_state_save(&vs, state_add_node(vcpus, "cpu@0", 1));
	vm_kstate_save(&ks, root);
	devs = state_add_node(root, "devices", 1);
	uart = state_add_node(devs, "uart0", 1);
	state_put_str(uart, "type", "uart");
	state_put_u32(uart, "ier", 3);
	state_put_bytes(uart, "rx-fifo", fifo, sizeof(fifo));
	snprintf(path, sizeof(path), "%s/snapshot.dtb", argv[1]);
	vcpu_state_free(&vs);
	return write_seed(path, t) ? 1 : (state_tree_free(t), 0);
}
