/* Dirty tracking: KVM dirty log + VMM bitmap. See dirty.h. */
#include "migration/dirty.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/kvm.h"
#include "vmm/log.h"
#include "vmm/vm.h"

static int set_manual_protect(struct vm *vm, bool on)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args = { on ? KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE : 0 },
	};

	return __kvm_ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0 ? -errno : 0;
}

int dirty_start(struct mig_dirty *d, struct vm *vm)
{
	int ret;

	memset(d, 0, sizeof(*d));
	d->vm = vm;
	d->nr_pages = vm->mem.size / MEM_PAGE_SIZE;
	d->nr_words = (d->nr_pages + 63) / 64;
	d->bitmap = calloc(d->nr_words, sizeof(uint64_t));
	d->slot_buf = calloc(d->nr_words, sizeof(uint64_t));
	if (!d->bitmap || !d->slot_buf) {
		ret = -ENOMEM;
		goto fail;
	}
	/* Without manual protect, GET_DIRTY_LOG clears and re-protects in one go:
	 * still correct, only coarser. */
	d->manual = kvm_ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0 &&
		    set_manual_protect(vm, true) == 0;
	ret = vm_set_memslots(vm, KVM_MEM_LOG_DIRTY_PAGES);
	if (ret) {
		log_err("migrate", "cannot enable KVM dirty logging: %s", strerror_safe(-ret));
		goto fail;
	}
	d->active = true;
	/* Everything is dirty at first; what the VMM wrote so far is covered by that. */
	memset(d->bitmap, 0xff, d->nr_words * sizeof(uint64_t));
	if (d->nr_pages % 64)
		d->bitmap[d->nr_words - 1] = (1ULL << (d->nr_pages % 64)) - 1;
	for (uint64_t w = 0; w < d->nr_words; w++)
		mem_take_dirty_word(&vm->mem, w);
	return 0;
fail:
	if (d->manual)
		set_manual_protect(vm, false);
	free(d->bitmap);
	free(d->slot_buf);
	memset(d, 0, sizeof(*d));
	return ret;
}

/* One slot: fetch its log into slot_buf, re-arm exactly those pages, and OR
 * them into the RAM-offset bitmap at the slot's first page. */
static int sync_slot(struct mig_dirty *d, unsigned slot, const struct mem_region *r)
{
	uint64_t pages = r->size / MEM_PAGE_SIZE, first = r->offset / MEM_PAGE_SIZE;
	uint64_t words = (pages + 63) / 64;
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = d->slot_buf };
	int ret;

	memset(d->slot_buf, 0, words * sizeof(uint64_t));
	ret = kvm_ioctl(d->vm->vm_fd, KVM_GET_DIRTY_LOG, &log);
	if (ret < 0)
		return ret;
	bool any = false;

	for (uint64_t w = 0; w < words && !any; w++)
		any = d->slot_buf[w] != 0;
	if (!any)
		return 0;
	if (d->manual) {
		struct kvm_clear_dirty_log clr = {
			.slot = slot, .first_page = 0, .num_pages = (uint32_t)pages, .dirty_bitmap = d->slot_buf,
		};
		ret = kvm_ioctl(d->vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clr);
		if (ret < 0)
			return ret;
	}
	if (first % 64 == 0) {
		for (uint64_t w = 0; w < words; w++)
			d->bitmap[first / 64 + w] |= d->slot_buf[w];
		return 0;
	}
	for (uint64_t p = 0; p < pages; p++)
		if (d->slot_buf[p / 64] & (1ULL << (p % 64)))
			d->bitmap[(first + p) / 64] |= 1ULL << ((first + p) % 64);
	return 0;
}

int dirty_sync(struct mig_dirty *d)
{
	struct guest_mem *mem = &d->vm->mem;

	if (!d->active)
		return -EINVAL;
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		int ret = sync_slot(d, i, &mem->regions[i]);

		if (ret)
			return ret;
	}
	for (uint64_t w = 0; w < d->nr_words; w++)
		d->bitmap[w] |= mem_take_dirty_word(mem, w);
	return 0;
}

uint64_t dirty_count(const struct mig_dirty *d)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < d->nr_words; w++)
		n += (uint64_t)__builtin_popcountll(d->bitmap[w]);
	return n;
}

void dirty_stop(struct mig_dirty *d)
{
	if (d->active) {
		vm_set_memslots(d->vm, 0);
		if (d->manual)
			set_manual_protect(d->vm, false);
	}
	free(d->bitmap);
	free(d->slot_buf);
	memset(d, 0, sizeof(*d));
}
