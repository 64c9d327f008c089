/* virtio-iommu request parser and handler with well-formed and malformed
 * requests (virtio 1.2 §5.13.6). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio_iommu_req.h"

#define ALL_FEATURES ((1ULL << VIRTIO_IOMMU_F_INPUT_RANGE) | (1ULL << VIRTIO_IOMMU_F_DOMAIN_RANGE) | \
		      (1ULL << VIRTIO_IOMMU_F_MAP_UNMAP) | (1ULL << VIRTIO_IOMMU_F_PROBE) | \
		      (1ULL << VIRTIO_IOMMU_F_BYPASS_CONFIG))

struct fixture {
	struct iommu io;
	struct viommu_ctx ctx;
	uint8_t out[VIOMMU_PROBE_PROPS_SIZE + 64];
};

static struct fixture *fx_new(uint64_t features)
{
	struct fixture *f = calloc(1, sizeof(*f));

	cr_assert_not_null(f);
	cr_assert_eq(iommu_init(&f->io, NULL), 0);
	cr_assert_eq(iommu_endpoint_add(&f->io, 0x08, NULL), 0);
	f->ctx.io = &f->io;
	f->ctx.features = features;
	f->ctx.probe_size = VIOMMU_PROBE_PROPS_SIZE;
	return f;
}

static void fx_free(struct fixture *f)
{
	iommu_destroy(&f->io);
	free(f);
}

static void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
	le32(p, (uint32_t)v);
	le32(p + 4, (uint32_t)(v >> 32));
}

static size_t mk_attach(uint8_t *b, uint32_t dom, uint32_t ep, uint32_t flags)
{
	memset(b, 0, VIOMMU_ATTACH_SIZE);
	b[0] = VIRTIO_IOMMU_T_ATTACH;
	le32(b + 4, dom);
	le32(b + 8, ep);
	le32(b + 12, flags);
	return VIOMMU_ATTACH_SIZE;
}

static size_t mk_detach(uint8_t *b, uint32_t dom, uint32_t ep)
{
	memset(b, 0, VIOMMU_DETACH_SIZE);
	b[0] = VIRTIO_IOMMU_T_DETACH;
	le32(b + 4, dom);
	le32(b + 8, ep);
	return VIOMMU_DETACH_SIZE;
}

static size_t mk_map(uint8_t *b, uint32_t dom, uint64_t vs, uint64_t ve, uint64_t ps, uint32_t fl)
{
	memset(b, 0, VIOMMU_MAP_SIZE);
	b[0] = VIRTIO_IOMMU_T_MAP;
	le32(b + 4, dom);
	le64(b + 8, vs);
	le64(b + 16, ve);
	le64(b + 24, ps);
	le32(b + 32, fl);
	return VIOMMU_MAP_SIZE;
}

static size_t mk_unmap(uint8_t *b, uint32_t dom, uint64_t vs, uint64_t ve)
{
	memset(b, 0, VIOMMU_UNMAP_SIZE);
	b[0] = VIRTIO_IOMMU_T_UNMAP;
	le32(b + 4, dom);
	le64(b + 8, vs);
	le64(b + 16, ve);
	return VIOMMU_UNMAP_SIZE;
}

static size_t mk_probe(uint8_t *b, uint32_t ep)
{
	memset(b, 0, VIOMMU_PROBE_SIZE);
	b[0] = VIRTIO_IOMMU_T_PROBE;
	le32(b + 4, ep);
	return VIOMMU_PROBE_SIZE;
}

/* Run a request with a 4-byte writable part; return the status (or -1 if dropped). */
static int run(struct fixture *f, const uint8_t *in, size_t len)
{
	size_t used = 99;
	uint8_t status = 0xee;

	memset(f->out, 0xaa, sizeof(f->out));
	if (viommu_req_handle(&f->ctx, in, len, f->out, VIOMMU_TAIL_SIZE, &used, &status) == VIOMMU_DROP) {
		cr_assert_eq(used, 0);
		cr_assert_eq(f->out[0], 0xaa, "a dropped request must not be written");
		return -1;
	}
	cr_assert_eq(used, VIOMMU_TAIL_SIZE);
	cr_assert_eq(f->out[0], status);
	cr_assert(f->out[1] == 0 && f->out[2] == 0 && f->out[3] == 0, "tail.reserved zeroed");
	cr_assert_eq(f->out[4], 0xaa, "nothing written past the writable part");
	return status;
}

Test(iommu_req, well_formed_sequence)
{
	struct fixture *f = fx_new(ALL_FEATURES);
	uint8_t b[128];
	uint64_t gpa;

	cr_assert_eq(run(f, b, mk_attach(b, 1, 8, 0)), VIRTIO_IOMMU_S_OK);
	cr_assert_eq(run(f, b, mk_map(b, 1, 0x10000, 0x1ffff, 0x400000, 3)), VIRTIO_IOMMU_S_OK);
	cr_assert_eq(iommu_translate(&f->io, 8, 0x10008, 8, IOMMU_PERM_WRITE, &gpa, NULL), 0);
	cr_assert_eq(gpa, 0x400008);
	cr_assert_eq(run(f, b, mk_unmap(b, 1, 0x10000, 0x13fff)), VIRTIO_IOMMU_S_RANGE);
	cr_assert_eq(run(f, b, mk_unmap(b, 1, 0x0, 0xfffff)), VIRTIO_IOMMU_S_OK);
	cr_assert_eq(iommu_translate(&f->io, 8, 0x10008, 8, IOMMU_PERM_WRITE, &gpa, NULL), -EFAULT);
	cr_assert_eq(run(f, b, mk_detach(b, 1, 8)), VIRTIO_IOMMU_S_OK);
	cr_assert_eq(iommu_nr_domains(&f->io), 0);
	fx_free(f);
}

Test(iommu_req, short_requests)
{
	struct fixture *f = fx_new(ALL_FEATURES);
	uint8_t b[128];
	size_t used;
	uint8_t st;
	struct viommu_req req;

	/* Shorter than the head: parse error, S_INVAL when the tail exists. */
	cr_assert_eq(viommu_req_parse(b, 3, &req), -EMSGSIZE);
	mk_attach(b, 1, 8, 0);
	cr_assert_eq(run(f, b, 0), VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(run(f, b, 3), VIRTIO_IOMMU_S_INVAL);
	/* Every type one byte short. */
	cr_assert_eq(run(f, b, mk_attach(b, 1, 8, 0) - 1), VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(iommu_nr_domains(&f->io), 0, "nothing executed");
	cr_assert_eq(run(f, b, mk_detach(b, 1, 8) - 1), VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(run(f, b, mk_map(b, 1, 0, 0xfff, 0, 1) - 1), VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(run(f, b, mk_unmap(b, 1, 0, 0xfff) - 1), VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(viommu_req_parse(b, mk_probe(b, 8) - 1, &req), -EMSGSIZE);
	/* No room for the tail: returned unwritten. */
	mk_attach(b, 1, 8, 0);
	memset(f->out, 0xaa, sizeof(f->out));
	cr_assert_eq(viommu_req_handle(&f->ctx, b, VIOMMU_ATTACH_SIZE, f->out, 3, &used, &st),
		     VIOMMU_DROP);
	cr_assert_eq(used, 0);
	cr_assert_eq(f->out[0], 0xaa);
	cr_assert_eq(iommu_nr_domains(&f->io), 0);
	/* A longer readable part is accepted. */
	cr_assert_eq(run(f, b, VIOMMU_ATTACH_SIZE + 8), VIRTIO_IOMMU_S_OK);
	fx_free(f);
}

Test(iommu_req, unknown_types_are_dropped)
{
	struct fixture *f = fx_new(ALL_FEATURES);
	uint8_t b[128] = { 0 };
	const uint8_t types[] = { 0, 6, 7, 0x80, 0xff };
	struct viommu_req req;

	for (unsigned i = 0; i < sizeof(types); i++) {
		b[0] = types[i];
		cr_assert_eq(viommu_req_parse(b, sizeof(b), &req), -EOPNOTSUPP);
		cr_assert_eq(run(f, b, sizeof(b)), -1, "type %u", types[i]);
	}
	fx_free(f);
}

Test(iommu_req, reserved_fields)
{
	struct fixture *f = fx_new(ALL_FEATURES);
	uint8_t b[128];

	/* head.reserved is ignored (§5.13.6.2). */
	mk_attach(b, 1, 8, 0);
	b[1] = b[2] = b[3] = 0x5a;
	cr_assert_eq(run(f, b, VIOMMU_ATTACH_SIZE), VIRTIO_IOMMU_S_OK);
	/* ATTACH reserved must be rejected with S_INVAL (§5.13.6.3.2). */
	mk_attach(b, 2, 8, 0);
	b[19] = 1;
	cr_assert_eq(run(f, b, VIOMMU_ATTACH_SIZE), VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(iommu_nr_domains(&f->io), 1, "domain 2 not created");
	/* UNMAP reserved: we reject and do not unmap. */
	cr_assert_eq(run(f, b, mk_map(b, 1, 0, 0xfff, 0, 1)), VIRTIO_IOMMU_S_OK);
	mk_unmap(b, 1, 0, 0xfff);
	b[24] = 1;
	cr_assert_eq(run(f, b, VIOMMU_UNMAP_SIZE), VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(iommu_nr_mappings(&f->io), 1);
	/* DETACH reserved is ignored (§5.13.6.4.2). */
	mk_detach(b, 1, 8);
	memset(b + 12, 0xff, 8);
	cr_assert_eq(run(f, b, VIOMMU_DETACH_SIZE), VIRTIO_IOMMU_S_OK);
	fx_free(f);
}

Test(iommu_req, bad_flags_ranges_and_ids)
{
	struct fixture *f = fx_new(ALL_FEATURES);
	uint8_t b[128];

	cr_assert_eq(run(f, b, mk_attach(b, 1, 0x99, 0)), VIRTIO_IOMMU_S_NOENT);  /* unknown endpoint */
	cr_assert_eq(run(f, b, mk_attach(b, 0, 8, 0)), VIRTIO_IOMMU_S_RANGE);     /* domain out of range */
	cr_assert_eq(run(f, b, mk_attach(b, 0x7fffffff, 8, 0)), VIRTIO_IOMMU_S_RANGE);
	cr_assert_eq(run(f, b, mk_attach(b, 1, 8, 0x4)), VIRTIO_IOMMU_S_INVAL);   /* unknown flag */
	cr_assert_eq(run(f, b, mk_map(b, 1, 0, 0xfff, 0, 1)), VIRTIO_IOMMU_S_NOENT); /* no domain */
	cr_assert_eq(run(f, b, mk_attach(b, 1, 8, 0)), VIRTIO_IOMMU_S_OK);
	cr_assert_eq(run(f, b, mk_map(b, 1, 0, 0xfff, 0, 0x10)), VIRTIO_IOMMU_S_INVAL);  /* bad flag */
	cr_assert_eq(run(f, b, mk_map(b, 1, 0, 0xfff, 0, IOMMU_MAP_F_MMIO)), VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(run(f, b, mk_map(b, 1, 0x10, 0xfff, 0, 1)), VIRTIO_IOMMU_S_RANGE); /* unaligned */
	cr_assert_eq(run(f, b, mk_map(b, 1, 0x1000, 0xfff, 0, 1)), VIRTIO_IOMMU_S_INVAL); /* end < start */
	cr_assert_eq(run(f, b, mk_map(b, 1, 0xfee00000, 0xfee00fff, 0, 1)), VIRTIO_IOMMU_S_INVAL); /* MSI */
	cr_assert_eq(run(f, b, mk_map(b, 1, 1ULL << 52, (1ULL << 52) + 0xfff, 0, 1)),
		     VIRTIO_IOMMU_S_RANGE);                                             /* input range */
	cr_assert_eq(run(f, b, mk_unmap(b, 5, 0, 0xfff)), VIRTIO_IOMMU_S_NOENT);
	cr_assert_eq(run(f, b, mk_detach(b, 1, 0x99)), VIRTIO_IOMMU_S_NOENT);
	cr_assert_eq(run(f, b, mk_detach(b, 2, 8)), VIRTIO_IOMMU_S_INVAL);       /* not attached there */
	fx_free(f);
}

Test(iommu_req, feature_gating)
{
	struct fixture *f = fx_new((1ULL << VIRTIO_IOMMU_F_INPUT_RANGE));
	uint8_t b[128];

	cr_assert_eq(run(f, b, mk_attach(b, 1, 8, IOMMU_ATTACH_F_BYPASS)), VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(run(f, b, mk_attach(b, 1, 8, 0)), VIRTIO_IOMMU_S_OK);
	cr_assert_eq(run(f, b, mk_map(b, 1, 0, 0xfff, 0, 1)), VIRTIO_IOMMU_S_UNSUPP);
	cr_assert_eq(run(f, b, mk_unmap(b, 1, 0, 0xfff)), VIRTIO_IOMMU_S_UNSUPP);
	cr_assert_eq(run(f, b, mk_probe(b, 8)), -1, "PROBE not negotiated: dropped");
	f->ctx.features = ALL_FEATURES;
	cr_assert_eq(run(f, b, mk_attach(b, 2, 8, IOMMU_ATTACH_F_BYPASS)), VIRTIO_IOMMU_S_OK);
	cr_assert_eq(run(f, b, mk_map(b, 2, 0, 0xfff, 0, 1)), VIRTIO_IOMMU_S_INVAL); /* bypass domain */
	fx_free(f);
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint64_t rd64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

Test(iommu_req, probe)
{
	struct fixture *f = fx_new(ALL_FEATURES);
	const size_t ps = VIOMMU_PROBE_PROPS_SIZE;
	uint8_t b[128];
	size_t used, i;
	uint8_t st;

	mk_probe(b, 8);
	memset(b + 8, 0x77, 64);  /* reserved is ignored */
	memset(f->out, 0xaa, sizeof(f->out));
	cr_assert_eq(viommu_req_handle(&f->ctx, b, VIOMMU_PROBE_SIZE, f->out, ps + 4, &used, &st),
		     VIOMMU_REPLY);
	cr_assert_eq(st, VIRTIO_IOMMU_S_OK);
	cr_assert_eq(used, ps + 4);
	/* One RESV_MEM property, subtype MSI, the x86 MSI window. */
	cr_assert_eq(rd16(f->out), VIRTIO_IOMMU_PROBE_T_RESV_MEM);
	cr_assert_eq(rd16(f->out + 2), 20);
	cr_assert_eq(f->out[4], IOMMU_RESV_MEM_T_MSI);
	cr_assert(f->out[5] == 0 && f->out[6] == 0 && f->out[7] == 0);
	cr_assert_eq(rd64(f->out + 8), 0xfee00000ULL);
	cr_assert_eq(rd64(f->out + 16), 0xfeefffffULL);
	for (i = 24; i < ps; i++)
		cr_assert_eq(f->out[i], 0, "byte %zu of properties not zero", i);
	cr_assert_eq(f->out[ps], VIRTIO_IOMMU_S_OK);
	cr_assert_eq(f->out[ps + 4], 0xaa);

	/* Properties smaller than probe_size: S_INVAL, no property written. */
	memset(f->out, 0xaa, sizeof(f->out));
	cr_assert_eq(viommu_req_handle(&f->ctx, b, VIOMMU_PROBE_SIZE, f->out, 64, &used, &st),
		     VIOMMU_REPLY);
	cr_assert_eq(st, VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(rd16(f->out), 0);
	cr_assert_eq(f->out[60], VIRTIO_IOMMU_S_INVAL);

	/* Unknown endpoint. */
	mk_probe(b, 0x1234);
	cr_assert_eq(viommu_req_handle(&f->ctx, b, VIOMMU_PROBE_SIZE, f->out, ps + 4, &used, &st),
		     VIOMMU_REPLY);
	cr_assert_eq(st, VIRTIO_IOMMU_S_NOENT);
	cr_assert_eq(rd16(f->out), 0, "no properties on failure");
	fx_free(f);
}

Test(iommu_req, random_garbage_never_crashes)
{
	struct fixture *f = fx_new(ALL_FEATURES);
	uint8_t in[96], out[VIOMMU_PROBE_PROPS_SIZE + 8];
	uint64_t s = 0x9e3779b97f4a7c15ULL;
	unsigned i, replies = 0, drops = 0;

	for (i = 0; i < 20000; i++) {
		size_t in_len, out_len, used;
		uint8_t st;

		for (size_t k = 0; k < sizeof(in); k++) {
			s = s * 6364136223846793005ULL + 1442695040888963407ULL;
			in[k] = (uint8_t)(s >> 56);
		}
		in[0] = (uint8_t)(in[0] % 8);              /* mostly valid types */
		in[4] = (uint8_t)(in[4] % 3);              /* small domains */
		in[5] = in[6] = in[7] = 0;
		in_len = (s >> 8) % sizeof(in);
		out_len = (s >> 20) % 2 ? VIOMMU_TAIL_SIZE : (s >> 24) % sizeof(out);
		if (viommu_req_handle(&f->ctx, in, in_len, out, out_len, &used, &st) == VIOMMU_REPLY) {
			cr_assert_eq(used, out_len);
			cr_assert_eq(out[out_len - 4], st);
			cr_assert_leq(st, VIRTIO_IOMMU_S_NOMEM);
			replies++;
		} else {
			cr_assert_eq(used, 0);
			drops++;
		}
	}
	cr_assert_gt(replies, 1000);
	cr_assert_gt(drops, 100);
	fx_free(f);
}

Test(iommu_req, config_and_fault_encoding)
{
	struct fixture *f = fx_new(ALL_FEATURES);
	uint8_t cfg[VIOMMU_CONFIG_SIZE], ev[VIOMMU_FAULT_SIZE];
	struct iommu_fault fault = { .reason = IOMMU_FAULT_R_MAPPING,
				     .flags = IOMMU_FAULT_F_WRITE | IOMMU_FAULT_F_ADDRESS,
				     .endpoint = 0x10, .address = 0x123456789000ULL };

	viommu_config_fill(&f->io, VIOMMU_PROBE_PROPS_SIZE, cfg);
	cr_assert_eq(rd64(cfg), ~0xfffULL);
	cr_assert_eq(rd64(cfg + 8), 0);
	cr_assert_eq(rd64(cfg + 16), (1ULL << 48) - 1);
	cr_assert_eq(rd16(cfg + 24) | rd16(cfg + 26) << 16, 1);
	cr_assert_eq(rd16(cfg + 28) | rd16(cfg + 30) << 16, 0xffff);
	cr_assert_eq(rd16(cfg + 32) | rd16(cfg + 34) << 16, VIOMMU_PROBE_PROPS_SIZE);
	cr_assert_eq(cfg[36], 0);
	iommu_set_bypass(&f->io, true);
	viommu_config_fill(&f->io, VIOMMU_PROBE_PROPS_SIZE, cfg);
	cr_assert_eq(cfg[36], 1);

	viommu_fault_encode(&fault, ev);
	cr_assert_eq(ev[0], IOMMU_FAULT_R_MAPPING);
	cr_assert(ev[1] == 0 && ev[2] == 0 && ev[3] == 0);
	cr_assert_eq(rd16(ev + 4), 0x102);
	cr_assert_eq(rd16(ev + 8), 0x10);
	cr_assert_eq(rd64(ev + 12) & 0xffffffff, 0, "reserved1 zero");
	cr_assert_eq(rd64(ev + 16), 0x123456789000ULL);
	fx_free(f);
}
