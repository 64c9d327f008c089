/* Dirty tracking against real KVM: a real-mode guest that keeps writing one
 * page, the VMM writing another; the log must show exactly those, and a page
 * must show again after being collected only if it was written again. */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "migration/dirty.h"
#include "vmm/kvm.h"
#include "vmm/vm.h"

static struct vm *make_vm(const uint8_t *code, size_t len)
{
	struct vm_config cfg;
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = 0x1000, .rflags = 2 };
	char err[256];
	struct vm *vm;

	config_init(&cfg);
	cfg.kernel = strdup("(none)");
	cfg.cpus = 1;
	cfg.memory_mib = 16;
	cfg.console = CONSOLE_NONE;
	cr_assert_eq(vm_create_bare(&vm, &cfg, NULL, err, sizeof(err)), 0, "%s", err);
	config_free(&cfg);
	cr_assert_eq(mem_write(&vm->mem, 0x1000, code, len), 0);
	cr_assert_eq(kvm_ioctl(vm->vcpus[0].fd, KVM_GET_SREGS, &sregs), 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	cr_assert_eq(kvm_ioctl(vm->vcpus[0].fd, KVM_SET_SREGS, &sregs), 0);
	cr_assert_eq(kvm_ioctl(vm->vcpus[0].fd, KVM_SET_REGS, &regs), 0);
	return vm;
}

static bool page_dirty(const struct mig_dirty *d, uint64_t gpa)
{
	uint64_t p = gpa / 4096;

	return d->bitmap[p / 64] & (1ULL << (p % 64));
}

static void clear_all(struct mig_dirty *d)
{
	memset(d->bitmap, 0, d->nr_words * sizeof(uint64_t));
}

static void wait_counter_moves(volatile uint16_t *c)
{
	uint16_t start = *c;

	for (int i = 0; i < 5000 && *c == start; i++)
		usleep(1000);
	cr_assert_neq(*c, start, "the guest does not run");
}

Test(migrate_dirty, kvm_log_and_vmm_bitmap_merge, .timeout = 30)
{
	/* 1: inc word [0x3000]; jmp 1b */
	static const uint8_t code[] = { 0xff, 0x06, 0x00, 0x30, 0xeb, 0xfa };
	struct mig_dirty d;
	struct vm *vm;

	if (access("/dev/kvm", R_OK | W_OK))
		cr_skip_test("/dev/kvm is not available");
	vm = make_vm(code, sizeof(code));
	volatile uint16_t *counter = mem_gpa_to_hva(&vm->mem, 0x3000, 2);
	cr_assert_eq(dirty_start(&d, vm), 0);
	cr_assert_eq(dirty_count(&d), vm->mem.size / 4096, "everything starts dirty");
	clear_all(&d);

	cr_assert_eq(vm_start(vm), 0);
	wait_counter_moves(counter);
	cr_assert_eq(vm_pause(vm), 0);
	cr_assert_eq(mem_write(&vm->mem, 0x9000, "x", 1), 0);
	cr_assert_eq(dirty_sync(&d), 0);
	cr_assert(page_dirty(&d, 0x3000), "the guest's page is in the KVM log");
	cr_assert(page_dirty(&d, 0x9000), "the VMM's write is merged in");
	cr_assert(!page_dirty(&d, 0x5000));
	cr_assert_leq(dirty_count(&d), 3, "only written pages (got %lu)", (unsigned long)dirty_count(&d));

	/* Collected and re-protected: with the guest paused nothing is new. */
	clear_all(&d);
	cr_assert_eq(dirty_sync(&d), 0);
	cr_assert_eq(dirty_count(&d), 0, "collected pages reappeared without writes");

	/* Written again after collection: it must show again (re-armed). */
	cr_assert_eq(vm_resume(vm), 0);
	wait_counter_moves(counter);
	cr_assert_eq(vm_pause(vm), 0);
	cr_assert_eq(dirty_sync(&d), 0);
	cr_assert(page_dirty(&d, 0x3000), "a re-written page must be logged again");
	cr_assert(!page_dirty(&d, 0x9000));

	dirty_stop(&d);
	cr_assert_eq(vm_resume(vm), 0, "the guest keeps running with logging off");
	wait_counter_moves(counter);
	vm_request_exit(vm, 0, "test done");
	vm_wait_exit(vm);
	vm_destroy(vm);
}
