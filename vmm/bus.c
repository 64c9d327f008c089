#include "vmm/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bus_init(struct bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
	return -pthread_rwlock_init(&bus->lock, NULL);
}

void bus_destroy(struct bus *bus)
{
	free(bus->ranges);
	pthread_rwlock_destroy(&bus->lock);
	memset(bus, 0, sizeof(*bus));
}

/* Index of the first range whose base is > addr. */
static unsigned bus_upper_bound(const struct bus *bus, uint64_t addr)
{
	unsigned lo = 0, hi = bus->nr;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (bus->ranges[mid].base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name)
{
	unsigned pos;
	int ret = 0;

	if (len == 0 || base + len < base || !ops)
		return -EINVAL;
	pthread_rwlock_wrlock(&bus->lock);
	pos = bus_upper_bound(bus, base);
	if ((pos > 0 && bus->ranges[pos - 1].base + bus->ranges[pos - 1].len > base) ||
	    (pos < bus->nr && bus->ranges[pos].base < base + len)) {
		ret = -EEXIST;
		goto out;
	}
	if (bus->nr == bus->cap) {
		unsigned cap = bus->cap ? bus->cap * 2 : 16;
		struct bus_range *r = realloc(bus->ranges, cap * sizeof(*r));

		if (!r) {
			ret = -ENOMEM;
			goto out;
		}
		bus->ranges = r;
		bus->cap = cap;
	}
	memmove(&bus->ranges[pos + 1], &bus->ranges[pos], (bus->nr - pos) * sizeof(*bus->ranges));
	bus->ranges[pos] = (struct bus_range){ base, len, ops, opaque, name };
	bus->nr++;
out:
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

int bus_unregister(struct bus *bus, uint64_t base)
{
	unsigned pos;
	int ret = -ENOENT;

	pthread_rwlock_wrlock(&bus->lock);
	pos = bus_upper_bound(bus, base);
	if (pos > 0 && bus->ranges[pos - 1].base == base) {
		pos--;
		memmove(&bus->ranges[pos], &bus->ranges[pos + 1], (bus->nr - pos - 1) * sizeof(*bus->ranges));
		bus->nr--;
		ret = 0;
	}
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

/* Caller holds the read lock. An access must lie entirely inside one range. */
static const struct bus_range *bus_lookup(const struct bus *bus, uint64_t addr, uint32_t len)
{
	unsigned pos = bus_upper_bound(bus, addr);
	const struct bus_range *r;

	if (pos == 0)
		return NULL;
	r = &bus->ranges[pos - 1];
	if (addr - r->base >= r->len || len > r->len - (addr - r->base))
		return NULL;
	return r;
}

int bus_read(struct bus *bus, uint64_t addr, void *data, uint32_t len)
{
	const struct bus_range *r;
	int ret = 0;

	pthread_rwlock_rdlock(&bus->lock);
	r = bus_lookup(bus, addr, len);
	if (r && r->ops->read) {
		r->ops->read(r->opaque, addr - r->base, data, len);
	} else {
		memset(data, 0xff, len);
		bus->unhandled++;
		ret = -ENOENT;
	}
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

int bus_write(struct bus *bus, uint64_t addr, const void *data, uint32_t len)
{
	const struct bus_range *r;
	int ret = 0;

	pthread_rwlock_rdlock(&bus->lock);
	r = bus_lookup(bus, addr, len);
	if (r && r->ops->write) {
		r->ops->write(r->opaque, addr - r->base, data, len);
	} else {
		bus->unhandled++;
		ret = -ENOENT;
	}
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

void bus_flush(struct bus *bus, uint64_t addr)
{
	const struct bus_range *r;

	pthread_rwlock_rdlock(&bus->lock);
	r = bus_lookup(bus, addr, 1);
	if (r && r->ops->flush)
		r->ops->flush(r->opaque);
	pthread_rwlock_unlock(&bus->lock);
}
