/* The address-space trap registry. Devices register [base, base+len) ranges on
 * the PIO or MMIO bus with a const ops table; the vCPU run loop dispatches each
 * I/O or MMIO exit with bus_read()/bus_write() and knows nothing else.
 * Ranges are kept sorted; lookup is a binary search under a read lock, so
 * devices can be added or removed while vCPUs run. */
#ifndef VMM_BUS_H
#define VMM_BUS_H

#include <pthread.h>
#include <stdint.h>

struct bus_ops {
	/* @offset is relative to the registered base. @len is 1, 2, 4 or 8. */
	void (*read)(void *opaque, uint64_t offset, void *data, uint32_t len);
	void (*write)(void *opaque, uint64_t offset, const void *data, uint32_t len);
	/* Optional: a batch of writes KVM had buffered (vmm/coalesced.c) has
	 * been delivered; make their effects visible (e.g. write out output). */
	void (*flush)(void *opaque);
};

struct bus_range {
	uint64_t base, len;
	const struct bus_ops *ops;
	void *opaque;
	const char *name;
};

struct bus {
	const char *name;            /* "pio" or "mmio", for messages */
	pthread_rwlock_t lock;
	struct bus_range *ranges;    /* sorted by base, non-overlapping */
	unsigned nr, cap;
	/* Accesses that hit no device: counted, reads return all ones. */
	_Atomic uint64_t unhandled;
};

int bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);
/* -EEXIST if the range overlaps a registered one, -EINVAL if empty or wrapping. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name);
/* Remove the range starting exactly at @base; -ENOENT if none. */
int bus_unregister(struct bus *bus, uint64_t base);
/* Return 0 if a device handled the access, -ENOENT otherwise (reads then fill 0xff). */
int bus_read(struct bus *bus, uint64_t addr, void *data, uint32_t len);
int bus_write(struct bus *bus, uint64_t addr, const void *data, uint32_t len);
/* Call the flush op of the device at @addr, if it has one. */
void bus_flush(struct bus *bus, uint64_t addr);

#endif
