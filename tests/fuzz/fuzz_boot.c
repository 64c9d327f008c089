/* libFuzzer target: boot_load() on arbitrary kernel bytes (ELF, bzImage or
 * junk), then boot_setup_bsp() when the load succeeds. The loader must
 * reject bad input with a message and never touch memory outside the
 * buffers it was given (ASan/UBSan enforce that). The first input byte
 * picks a guest RAM size and whether an initrd and a command line are
 * passed, so the memory-size and placement checks get exercised too. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vmm/boot.h"
#include "vmm/log.h"
#include "vmm/mem.h"

/* Guest RAM of each size, created once: mmap per input would dominate. */
static struct guest_mem fuzz_mem[3];
static const uint64_t fuzz_sizes[3] = { 1ULL << 20, 4ULL << 20, 64ULL << 20 };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_ERROR);
	for (int i = 0; i < 3; i++)
		if (mem_init(&fuzz_mem[i], fuzz_sizes[i]))
			return -1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t initrd[5000];
	struct boot_input in = { 0 };
	struct boot_entry e;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	char err[256];
	uint8_t sel;

	if (size < 1)
		return 0;
	sel = data[0];
	in.kernel = data + 1;
	in.kernel_len = size - 1;
	if (sel & 4) {
		in.initrd = initrd;
		in.initrd_len = sel & 8 ? sizeof(initrd) : 1;
	}
	in.cmdline = sel & 16 ? "console=ttyS0 test=hello" : NULL;
	in.rsdp_gpa = 0xe0000;
	struct guest_mem *mem = &fuzz_mem[(sel & 3) % 3];

	err[0] = '\0';
	if (boot_load(mem, &in, &e, err, sizeof(err)) == 0) {
		memset(&sregs, 0, sizeof(sregs));
		boot_setup_bsp(mem, &e, &regs, &sregs);
	} else if (err[0] == '\0') {
		__builtin_trap(); /* every failure must say why */
	}
	return 0;
}
