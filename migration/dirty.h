/* Dirty-page tracking for pre-copy migration: KVM's dirty log (guest writes)
 * merged with the VMM's own bitmap (writes the VMM made into guest RAM).
 *
 * KVM side: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is enabled, so KVM_GET_DIRTY_LOG
 * only reports and KVM_CLEAR_DIRTY_LOG re-arms write protection for exactly
 * the pages we are about to send (api.rst §4.117). The slots are switched to
 * KVM_MEM_LOG_DIRTY_PAGES for the duration of tracking.
 *
 * Page numbers are offsets in guest RAM (the memfd) / 4096, the same index as
 * guest_mem.vmm_dirty, so both sources OR into one bitmap. */
#ifndef MIGRATION_DIRTY_H
#define MIGRATION_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

struct mig_dirty {
	struct vm *vm;
	uint64_t nr_pages;
	uint64_t nr_words;
	uint64_t *bitmap;           /* pages dirtied since the last sync, by RAM offset */
	uint64_t *slot_buf;         /* scratch for one slot's KVM bitmap */
	bool manual;                /* MANUAL_DIRTY_LOG_PROTECT2 in use */
	bool active;
};

/* Start logging; every page counts as dirty at first (the first pass sends all). */
int dirty_start(struct mig_dirty *d, struct vm *vm);
/* Fold KVM's log (fetch + re-protect) and the VMM bitmap into d->bitmap. */
int dirty_sync(struct mig_dirty *d);
/* Number of set bits in d->bitmap. */
uint64_t dirty_count(const struct mig_dirty *d);
/* Stop logging (slots back to plain) and free. Safe on a never-started tracker. */
void dirty_stop(struct mig_dirty *d);

#endif
