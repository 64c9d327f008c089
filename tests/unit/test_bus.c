/* The trap registry: registration rules and dispatch. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "vmm/bus.h"

struct probe {
	uint64_t last_off;
	uint32_t last_len;
	uint32_t value;
	int reads, writes;
};

static void probe_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct probe *p = opaque;

	p->reads++;
	p->last_off = off;
	p->last_len = len;
	memcpy(data, &p->value, len < 4 ? len : 4);
}

static void probe_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct probe *p = opaque;

	p->writes++;
	p->last_off = off;
	p->last_len = len;
	memcpy(&p->value, data, len < 4 ? len : 4);
}

static const struct bus_ops probe_ops = { .read = probe_read, .write = probe_write };

Test(bus, dispatches_with_offsets)
{
	struct bus bus;
	struct probe a = { 0 }, b = { 0 };
	uint32_t v = 0xdeadbeef, out = 0;

	bus_init(&bus, "test");
	cr_assert_eq(bus_register(&bus, 0x3f8, 8, &probe_ops, &a, "a"), 0);
	cr_assert_eq(bus_register(&bus, 0x100, 0x10, &probe_ops, &b, "b"), 0);
	cr_assert_eq(bus_write(&bus, 0x3fc, &v, 4), 0);
	cr_assert_eq(a.writes, 1);
	cr_assert_eq(a.last_off, 4);
	cr_assert_eq(a.value, 0xdeadbeef);
	cr_assert_eq(bus_read(&bus, 0x3fc, &out, 4), 0);
	cr_assert_eq(out, 0xdeadbeef);
	cr_assert_eq(b.reads + b.writes, 0);
	bus_destroy(&bus);
}

Test(bus, unhandled_reads_return_all_ones)
{
	struct bus bus;
	struct probe a = { 0 };
	uint32_t out = 0;

	bus_init(&bus, "test");
	bus_register(&bus, 0x1000, 0x10, &probe_ops, &a, "a");
	cr_assert_eq(bus_read(&bus, 0x2000, &out, 4), -ENOENT);
	cr_assert_eq(out, 0xffffffff);
	cr_assert_eq(bus_read(&bus, 0x100e, &out, 4), -ENOENT, "access straddling the end");
	cr_assert_eq(bus_read(&bus, 0xfff, &out, 2), -ENOENT, "access straddling the start");
	cr_assert_eq(a.reads, 0);
	cr_assert_eq(bus.unhandled, 3);
	bus_destroy(&bus);
}

Test(bus, rejects_overlaps_and_empty_ranges)
{
	struct bus bus;
	struct probe a = { 0 };

	bus_init(&bus, "test");
	cr_assert_eq(bus_register(&bus, 0x1000, 0x100, &probe_ops, &a, "a"), 0);
	cr_assert_eq(bus_register(&bus, 0x10ff, 1, &probe_ops, &a, "b"), -EEXIST);
	cr_assert_eq(bus_register(&bus, 0xf00, 0x101, &probe_ops, &a, "c"), -EEXIST);
	cr_assert_eq(bus_register(&bus, 0x800, 0x1000, &probe_ops, &a, "d"), -EEXIST, "covering range");
	cr_assert_eq(bus_register(&bus, 0x1100, 1, &probe_ops, &a, "e"), 0, "adjacent is fine");
	cr_assert_eq(bus_register(&bus, 0x2000, 0, &probe_ops, &a, "f"), -EINVAL);
	cr_assert_eq(bus_register(&bus, UINT64_MAX, 2, &probe_ops, &a, "g"), -EINVAL);
	bus_destroy(&bus);
}

Test(bus, many_ranges_stay_sorted_and_can_be_removed)
{
	struct bus bus;
	struct probe p[64];
	uint8_t v = 0;

	memset(p, 0, sizeof(p));
	bus_init(&bus, "test");
	/* Register out of order. */
	for (int i = 0; i < 64; i++) {
		int k = (i * 37) % 64;

		cr_assert_eq(bus_register(&bus, (uint64_t)k * 0x100, 0x10, &probe_ops, &p[k], "p"), 0);
	}
	for (int k = 0; k < 64; k++) {
		cr_assert_eq(bus_write(&bus, (uint64_t)k * 0x100 + 3, &v, 1), 0);
		cr_assert_eq(p[k].writes, 1);
		cr_assert_eq(p[k].last_off, 3);
	}
	cr_assert_eq(bus_unregister(&bus, 0x500), 0);
	cr_assert_eq(bus_unregister(&bus, 0x500), -ENOENT);
	cr_assert_eq(bus_write(&bus, 0x503, &v, 1), -ENOENT);
	cr_assert_eq(bus_write(&bus, 0x603, &v, 1), 0);
	bus_destroy(&bus);
}
