/* virtio-iommu scenarios. They need the VMM run with --iommu and one
 * virtio-net with iommu=on (its TAP may be down: only TX is used).
 *
 *   iommu-net    the net device's rings and buffers are reachable only
 *                through IOVAs mapped by the IOMMU; frames go out, and with
 *                `echo` each must come back (a host peer echoes them) into
 *                RX buffers the device writes through translated addresses.
 *                `hold`: stop (halted) with the mappings in place.
 *   iommu-fault  a TX buffer the device still holds (posted, not yet
 *                consumed) is unmapped: that request fails (used length 0),
 *                a fault event names the endpoint and the IOVA, memory is
 *                untouched, and traffic goes on without a device reset
 *                (`echo`: checked through a host echo peer).
 *   iommu-fault-rx  the same for an RX buffer the device would write.
 *   iommu-split  UNMAP of the middle of one mapping is refused (S_RANGE,
 *                virtio 1.2 §5.13.6.6); a range mapped in three pieces loses
 *                its middle piece and both remaining halves still work.
 *
 * Device addresses (IOVAs) start at 0x08000000 while the guest-physical
 * pages behind them come from the heap, so an identity access would hit
 * different memory. */
#include "iommu_virtio.h"

#define IOVA_RING  0x08000000UL
#define IOVA_BUF   0x08100000UL
#define DOMAIN     1
#define NET_ID     1                     /* virtio device id of net */
#define F_ACCESS_PLATFORM (1ULL << 33)
#define S_OK 0
#define S_RANGE 5
#define S_INVAL 4
#define S_NOENT 6
#define STATUS_NEEDS_RESET 0x40
#define RXQ 0
#define TXQ 1
#define IOVA_RX 0x08200000UL
#define RX_BUFS 4
#define FRAME_LEN 60
#define HDR_LEN 12

struct iommu_env {
	struct giommu io;
	struct gvirtio net;
	struct gvq tx, rx;
	u32 ep;
	u8 *bufs;                 /* guest-physical buffer pages */
	unsigned nr_buf_pages;
};

static void expect_status(int got, int want, const char *what)
{
	if (got != want)
		fail("%s: status %d, expected %d", what, got, want);
}

static void check_probe(struct iommu_env *e)
{
	const u8 *p = e->io.out_buf;

	expect_status(giommu_probe(&e->io, e->ep), S_OK, "PROBE");
	/* First property: RESV_MEM (1), length 20, subtype MSI (1), the x86 MSI window. */
	if (p[0] != 1 || p[2] != 20 || p[4] != 1)
		fail("PROBE: no MSI RESV_MEM property (type %u len %u subtype %u)", p[0], p[2], p[4]);
	u64 start, end;
	memcpy(&start, p + 8, 8);
	memcpy(&end, p + 16, 8);
	if (start != 0xfee00000UL || end != 0xfeefffffUL)
		fail("PROBE: MSI window 0x%lx-0x%lx", (unsigned long)start, (unsigned long)end);
	expect_status(giommu_probe(&e->io, 0xbeef), S_NOENT, "PROBE of an unknown endpoint");
}

/* IOMMU up, endpoint found through the VIOT, net device started with its
 * TX ring at an IOVA. */
static void env_setup(struct iommu_env *e, unsigned buf_pages)
{
	u8 *ring;

	memset(e, 0, sizeof(*e));
	if (giommu_init(&e->io))
		fail("no usable virtio-iommu (run with --iommu)");
	if (!(e->io.page_size_mask & PAGE_SIZE) || (e->io.page_size_mask & (PAGE_SIZE - 1)))
		fail("page_size_mask 0x%lx: expected 4 KiB granule", (unsigned long)e->io.page_size_mask);
	if (pci_find(0x1af4, 0x1041, 0, &e->net.pci))
		fail("no virtio-net function");
	long ep = viot_endpoint(gpci_bdf(&e->io.v.pci), gpci_bdf(&e->net.pci));
	if (ep < 0)
		fail("VIOT does not put %02x:%02x.%u behind the IOMMU", e->net.pci.bus, e->net.pci.dev,
		     e->net.pci.fn);
	e->ep = (u32)ep;
	check_probe(e);
	expect_status(giommu_attach(&e->io, DOMAIN, e->ep), S_OK, "ATTACH");
	ring = page_alloc(2);                       /* TX ring, RX ring */
	e->bufs = page_alloc(buf_pages);
	if (!ring || !e->bufs)
		fail("out of memory");
	e->nr_buf_pages = buf_pages;
	expect_status(giommu_map(&e->io, DOMAIN, IOVA_RING, 2 * PAGE_SIZE, (u64)ring,
				 GIOMMU_MAP_R | GIOMMU_MAP_W), S_OK, "MAP rings");
	if (gvirtio_init(&e->net, NET_ID, 0, F_ACCESS_PLATFORM))
		fail("virtio-net does not offer ACCESS_PLATFORM");
	if (gvq_setup(&e->net, &e->tx, TXQ, (u64)ring, IOVA_RING))
		fail("TX queue setup");
	if (gvq_setup(&e->net, &e->rx, RXQ, (u64)ring + PAGE_SIZE, IOVA_RING + PAGE_SIZE))
		fail("RX queue setup");
	gvirtio_driver_ok(&e->net);
	if (gvirtio_status(&e->net) & STATUS_NEEDS_RESET)
		fail("net NEEDS_RESET right after DRIVER_OK");
}

static void fill_frame(u8 *p, unsigned seq)
{
	memset(p, 0, HDR_LEN);                      /* virtio_net_hdr_v1: no offloads */
	u8 *f = p + HDR_LEN;
	memset(f, 0xff, 6);                         /* broadcast */
	const u8 src[6] = { 0x02, 0, 0, 0, 0x10, 0x01 };
	memcpy(f + 6, src, 6);
	f[12] = 0x88;                               /* local experimental ethertype */
	f[13] = 0xb5;
	for (unsigned i = 14; i < FRAME_LEN; i++)
		f[i] = (u8)(seq + i);
}

/* Send one frame from buffer page @page (IOVA @iova); 0 if the device used it. */
static int send_frame(struct iommu_env *e, unsigned page, u64 iova, unsigned seq)
{
	struct gbuf b[2] = {
		{ iova, HDR_LEN, false },
		{ iova + HDR_LEN, FRAME_LEN, false },
	};

	fill_frame(e->bufs + page * PAGE_SIZE, seq);
	gvq_submit(&e->tx, b, 2);
	return gvq_wait(&e->tx, NULL, 2000000);
}

/* RX buffer for descriptor head @head: page head / 2 of the RX area. */
static void post_rx(struct iommu_env *e)
{
	u16 head = (u16)((e->rx.avail_idx * 2) % e->rx.size);
	struct gbuf b = { IOVA_RX + (head / 2) * PAGE_SIZE, 2048, true };

	gvq_post(&e->rx, &b, 1);
}

/* Wait for an echoed copy of frame @seq (ethertype 0x88b5, same payload);
 * other traffic the host sends is skipped. 0 or -1 on timeout/mismatch. */
static int wait_echo(struct iommu_env *e, u8 *rx_pages, unsigned seq)
{
	for (int tries = 0; tries < 8; tries++) {
		u16 slot = e->rx.last_used;
		u32 len, id;

		if (gvq_wait(&e->rx, &len, 3000000))
			return -1;
		id = e->rx.used[1 + 2 * (slot % e->rx.size)];
		const u8 *f = rx_pages + (id / 2) * PAGE_SIZE + HDR_LEN;
		bool ours = len >= HDR_LEN + FRAME_LEN && f[12] == 0x88 && f[13] == 0xb5;
		bool same = ours;
		for (unsigned i = 14; ours && i < FRAME_LEN; i++)
			if (f[i] != (u8)(seq + i))
				same = false;
		post_rx(e);
		gvq_kick(&e->rx);
		if (ours)
			return same ? 0 : -1;
	}
	return -1;
}

/* Map the RX area (RX_BUFS pages at IOVA_RX) and post a buffer in each page. */
static u8 *rx_setup(struct iommu_env *e)
{
	u8 *rx_pages = page_alloc(RX_BUFS);

	if (!rx_pages)
		fail("out of memory");
	expect_status(giommu_map(&e->io, DOMAIN, IOVA_RX, RX_BUFS * PAGE_SIZE, (u64)rx_pages,
				 GIOMMU_MAP_R | GIOMMU_MAP_W), S_OK, "MAP RX buffers");
	for (unsigned i = 0; i < RX_BUFS; i++)
		post_rx(e);
	gvq_kick(&e->rx);
	return rx_pages;
}

/* Frame @seq out of buffer page @page (IOVA @iova) and, with the echo peer,
 * back in through the RX buffers: the device works through valid mappings. */
static void frame_round_trip(struct iommu_env *e, u8 *rx_pages, unsigned page, u64 iova,
			     unsigned seq, const char *when)
{
	if (send_frame(e, page, iova, seq))
		fail("%s: frame %u not consumed (net status 0x%x)", when, seq, gvirtio_status(&e->net));
	if (rx_pages && wait_echo(e, rx_pages, seq))
		fail("%s: no echo of frame %u (net status 0x%x)", when, seq, gvirtio_status(&e->net));
}

static void iommu_net(void)
{
	struct iommu_env e;
	unsigned frames = (unsigned)param_u64("frames", 16);
	bool echo = param_get("echo") != NULL;
	u8 *rx_pages;

	env_setup(&e, 4);
	/* TX buffers: device-readable only; RX buffers: device-writable. */
	expect_status(giommu_map(&e.io, DOMAIN, IOVA_BUF, 4 * PAGE_SIZE, (u64)e.bufs, GIOMMU_MAP_R),
		      S_OK, "MAP TX buffers");
	rx_pages = rx_setup(&e);
	for (unsigned i = 0; i < frames; i++)
		frame_round_trip(&e, echo ? rx_pages : NULL, i % 4, IOVA_BUF + (i % 4) * PAGE_SIZE, i,
				 "iommu-net");
	if (gvirtio_status(&e.net) & STATUS_NEEDS_RESET)
		fail("net NEEDS_RESET after traffic");
	if (param_get("hold")) {
		/* Keep the translation state in place for the VMM's vm.info. */
		guest_printf("iommu-net: holding ep=0x%x\n", e.ep);
		irq_disable();
		for (;;)
			__asm__ volatile("hlt");
	}
	/* Teardown in driver order: reset the device, then take its mappings away. */
	gvirtio_reset(&e.net);
	expect_status(giommu_unmap(&e.io, DOMAIN, IOVA_BUF, 4 * PAGE_SIZE), S_OK, "UNMAP buffers");
	expect_status(giommu_unmap(&e.io, DOMAIN, IOVA_RX, RX_BUFS * PAGE_SIZE), S_OK, "UNMAP RX");
	expect_status(giommu_detach(&e.io, DOMAIN, e.ep), S_OK, "DETACH");
	pass_with("frames=%u echoed=%u ep=0x%x", frames, echo ? frames : 0, e.ep);
}
SCENARIO("iommu-net", iommu_net);

/* The request that faulted comes back on @q unused (length 0), and only it
 * failed: the device is not NEEDS_RESET. */
static void expect_failed_request(struct iommu_env *e, struct gvq *q, const char *what)
{
	u32 len;

	if (gvq_wait(q, &len, 2000000))
		fail("the faulting %s was not returned", what);
	if (len != 0)
		fail("the faulting %s was completed with length %u", what, len);
	if (gvirtio_status(&e->net) & STATUS_NEEDS_RESET)
		fail("the fault broke the whole device (status 0x%x)", gvirtio_status(&e->net));
}

/* iommu-fault: a TX buffer the device holds (posted, not yet consumed) is
 * unmapped. That request alone fails: its chain comes back with used
 * length 0, a READ fault event names the endpoint and the IOVA, the frame
 * never goes out and memory is untouched. The device does not need a
 * reset: frames through mapped buffers keep flowing (with `echo` they come
 * back through the RX buffers, and a leaked faulting frame would be seen
 * there), also through the same IOVA once it is mapped again. */
static void iommu_fault(void)
{
	struct iommu_env e;
	bool echo = param_get("echo") != NULL;
	u8 reason, *rx_pages = NULL;
	u32 flags, ep;
	u64 addr, ident = IOVA_BUF + PAGE_SIZE;
	u8 *ident_p = (u8 *)ident;    /* the guest-physical page equal to the IOVA */
	unsigned seq = 0, after = 0;

	env_setup(&e, 2);
	expect_status(giommu_map(&e.io, DOMAIN, IOVA_BUF, PAGE_SIZE, (u64)e.bufs, GIOMMU_MAP_R),
		      S_OK, "MAP buffer 0");
	expect_status(giommu_map(&e.io, DOMAIN, IOVA_BUF + PAGE_SIZE, PAGE_SIZE,
				 (u64)e.bufs + PAGE_SIZE, GIOMMU_MAP_R), S_OK, "MAP buffer 1");
	if (echo)
		rx_pages = rx_setup(&e);
	frame_round_trip(&e, rx_pages, 0, IOVA_BUF, seq++, "before the fault");
	/* Post a frame in buffer 1 but do not kick yet: the device now holds it. */
	struct gbuf b[2] = { { ident, HDR_LEN, false }, { ident + HDR_LEN, FRAME_LEN, false } };
	fill_frame(e.bufs + PAGE_SIZE, seq++);
	memset(ident_p, 0x5a, PAGE_SIZE);
	gvq_post(&e.tx, b, 2);
	expect_status(giommu_unmap(&e.io, DOMAIN, IOVA_BUF + PAGE_SIZE, PAGE_SIZE), S_OK, "UNMAP");
	gvq_kick(&e.tx);
	if (giommu_wait_fault(&e.io, &reason, &flags, &ep, &addr, 2000000))
		fail("no fault event");
	if (reason != 2 || ep != e.ep || !(flags & 0x100) || !(flags & 1) ||
	    addr != ident)
		fail("fault: reason %u flags 0x%x ep 0x%x addr 0x%lx", reason, flags, ep,
		     (unsigned long)addr);
	expect_failed_request(&e, &e.tx, "TX request");
	for (unsigned i = 0; i < PAGE_SIZE; i++)
		if (ident_p[i] != 0x5a)
			fail("memory at 0x%lx changed", (unsigned long)(ident + i));
	for (unsigned i = 14; i < FRAME_LEN; i++)
		if (e.bufs[PAGE_SIZE + HDR_LEN + i] != (u8)(1 + i))
			fail("the unmapped buffer changed");
	/* No reset: traffic goes on through the mapping that is left... */
	for (; after < 4; after++)
		frame_round_trip(&e, rx_pages, 0, IOVA_BUF, seq++, "after the fault");
	/* ...and through the faulting IOVA once the driver maps it again. */
	expect_status(giommu_map(&e.io, DOMAIN, IOVA_BUF + PAGE_SIZE, PAGE_SIZE,
				 (u64)e.bufs + PAGE_SIZE, GIOMMU_MAP_R), S_OK, "MAP buffer 1 again");
	frame_round_trip(&e, rx_pages, 1, IOVA_BUF + PAGE_SIZE, seq++, "after the remap");
	after++;
	u8 r2;
	u32 f2, ep2;
	u64 a2;
	if (giommu_wait_fault(&e.io, &r2, &f2, &ep2, &a2, 100000) == 0)
		fail("a second fault event (addr 0x%lx)", (unsigned long)a2);
	if (gvirtio_status(&e.net) & STATUS_NEEDS_RESET)
		fail("net NEEDS_RESET after traffic");
	pass_with("reason=%u addr=0x%lx ep=0x%x after=%u echoed=%u", reason, (unsigned long)addr, ep,
		  after, echo ? after : 0);
}
SCENARIO("iommu-fault", iommu_fault);

static void iommu_split(void)
{
	struct iommu_env e;
	const u64 P = PAGE_SIZE;
	u8 reason;
	u32 flags, ep;
	u64 addr;

	env_setup(&e, 16);
	/* One 16-page mapping: its middle cannot be unmapped (§5.13.6.6, example (4)). */
	expect_status(giommu_map(&e.io, DOMAIN, IOVA_BUF, 16 * P, (u64)e.bufs, GIOMMU_MAP_R),
		      S_OK, "MAP large");
	expect_status(giommu_unmap(&e.io, DOMAIN, IOVA_BUF + 6 * P, 4 * P), S_RANGE,
		      "UNMAP middle of one mapping");
	if (send_frame(&e, 8, IOVA_BUF + 8 * P, 1))
		fail("the refused UNMAP removed the mapping");
	expect_status(giommu_map(&e.io, DOMAIN, IOVA_BUF + 2 * P, P, 0, GIOMMU_MAP_R), S_INVAL,
		      "MAP over an existing mapping");
	expect_status(giommu_unmap(&e.io, DOMAIN, IOVA_BUF, 16 * P), S_OK, "UNMAP large");
	/* The same range in three pieces; remove the middle one. */
	expect_status(giommu_map(&e.io, DOMAIN, IOVA_BUF, 6 * P, (u64)e.bufs, GIOMMU_MAP_R), S_OK,
		      "MAP low");
	expect_status(giommu_map(&e.io, DOMAIN, IOVA_BUF + 6 * P, 4 * P, (u64)e.bufs + 6 * P,
				 GIOMMU_MAP_R), S_OK, "MAP middle");
	expect_status(giommu_map(&e.io, DOMAIN, IOVA_BUF + 10 * P, 6 * P, (u64)e.bufs + 10 * P,
				 GIOMMU_MAP_R), S_OK, "MAP high");
	expect_status(giommu_unmap(&e.io, DOMAIN, IOVA_BUF + 6 * P, 4 * P), S_OK, "UNMAP middle");
	if (send_frame(&e, 0, IOVA_BUF, 2) || send_frame(&e, 5, IOVA_BUF + 5 * P, 3))
		fail("low half stopped working");
	if (send_frame(&e, 10, IOVA_BUF + 10 * P, 4) || send_frame(&e, 15, IOVA_BUF + 15 * P, 5))
		fail("high half stopped working");
	/* And the hole is a hole: DMA there faults. */
	struct gbuf b[2] = { { IOVA_BUF + 7 * P, HDR_LEN, false },
			     { IOVA_BUF + 7 * P + HDR_LEN, FRAME_LEN, false } };
	gvq_submit(&e.tx, b, 2);
	if (giommu_wait_fault(&e.io, &reason, &flags, &ep, &addr, 2000000))
		fail("no fault for the unmapped middle");
	if (addr != IOVA_BUF + 7 * P)
		fail("fault address 0x%lx", (unsigned long)addr);
	pass_with("ep=0x%x", e.ep);
}
SCENARIO("iommu-split", iommu_split);

/* iommu-requests: keep issuing requests on the virtio-iommu for a while
 * (rounds=N, default 100, ~20 ms apart). Used across snapshot/restore: the
 * restored device must continue the same queues (indices, rings, status). */
static void iommu_requests(void)
{
	struct giommu io;
	unsigned rounds = (unsigned)param_u64("rounds", 100);

	if (giommu_init(&io))
		fail("no usable virtio-iommu (run with --iommu)");
	guest_printf("iommu-requests: ready\n");
	for (unsigned i = 0; i < rounds; i++) {
		int st = giommu_probe(&io, 0xbeef);

		if (st != S_NOENT)
			fail("round %u: PROBE status %d, expected %d", i, st, S_NOENT);
		if (mmio_read32(io.v.device) != (u32)io.page_size_mask)
			fail("round %u: config space changed", i);
		udelay(20000);
	}
	pass_with("rounds=%u", rounds);
}
SCENARIO("iommu-requests", iommu_requests);

/* iommu-fault-rx: the device-write direction. An RX buffer is posted, then
 * unmapped; a frame is sent (a host peer echoes it back). The device must
 * not write the echo anywhere: that buffer comes back with used length 0, a
 * WRITE fault names the RX IOVA, and both the page that was behind it and
 * the page whose address equals the IOVA keep their contents. The device
 * needs no reset: the echoed frame waits for the next buffer the driver
 * posts (a mapped one) and arrives there intact, and more frames follow,
 * also through the faulting IOVA once it is mapped again. Needs the echo
 * peer of the integration test. */
static void iommu_fault_rx(void)
{
	struct iommu_env e;
	u8 *rx_pages = page_alloc(RX_BUFS), *ident_p = (u8 *)IOVA_RX;
	u8 reason;
	u32 flags, ep;
	u64 addr;
	unsigned seq = 7;

	env_setup(&e, 1);
	if (!rx_pages)
		fail("out of memory");
	expect_status(giommu_map(&e.io, DOMAIN, IOVA_BUF, PAGE_SIZE, (u64)e.bufs, GIOMMU_MAP_R),
		      S_OK, "MAP TX buffer");
	/* RX page 0 on its own (it gets unmapped), pages 1.. in one mapping. */
	expect_status(giommu_map(&e.io, DOMAIN, IOVA_RX, PAGE_SIZE, (u64)rx_pages,
				 GIOMMU_MAP_R | GIOMMU_MAP_W), S_OK, "MAP RX buffer");
	expect_status(giommu_map(&e.io, DOMAIN, IOVA_RX + PAGE_SIZE, (RX_BUFS - 1) * PAGE_SIZE,
				 (u64)rx_pages + PAGE_SIZE, GIOMMU_MAP_R | GIOMMU_MAP_W), S_OK,
		      "MAP more RX buffers");
	memset(rx_pages, 0xa5, PAGE_SIZE);
	memset(ident_p, 0x5a, PAGE_SIZE);
	post_rx(&e);                                /* head 0: RX page 0 */
	gvq_kick(&e.rx);                            /* the device now holds it */
	expect_status(giommu_unmap(&e.io, DOMAIN, IOVA_RX, PAGE_SIZE), S_OK, "UNMAP RX buffer");
	if (send_frame(&e, 0, IOVA_BUF, seq))
		fail("TX frame not consumed");
	if (giommu_wait_fault(&e.io, &reason, &flags, &ep, &addr, 3000000))
		fail("no fault event for the echoed frame (is the echo peer running?)");
	if (reason != 2 || ep != e.ep || !(flags & 2) || addr != IOVA_RX)
		fail("fault: reason %u flags 0x%x ep 0x%x addr 0x%lx", reason, flags, ep,
		     (unsigned long)addr);
	expect_failed_request(&e, &e.rx, "RX buffer");
	for (unsigned i = 0; i < PAGE_SIZE; i++)
		if (rx_pages[i] != 0xa5 || ident_p[i] != 0x5a)
			fail("memory changed at offset %u", i);
	/* The echo was not lost: it lands in the next (mapped) buffer. */
	post_rx(&e);                                /* head 2: RX page 1 */
	gvq_kick(&e.rx);
	if (wait_echo(&e, rx_pages, seq))
		fail("the echoed frame did not arrive in the next buffer");
	/* More traffic, then through the faulting IOVA mapped again. */
	if (send_frame(&e, 0, IOVA_BUF, ++seq) || wait_echo(&e, rx_pages, seq))
		fail("no echo of frame %u after the fault", seq);
	expect_status(giommu_map(&e.io, DOMAIN, IOVA_RX, PAGE_SIZE, (u64)rx_pages,
				 GIOMMU_MAP_R | GIOMMU_MAP_W), S_OK, "MAP RX buffer again");
	if (send_frame(&e, 0, IOVA_BUF, ++seq) || wait_echo(&e, rx_pages, seq))
		fail("no echo of frame %u after the remap", seq);
	if (send_frame(&e, 0, IOVA_BUF, ++seq) || wait_echo(&e, rx_pages, seq))
		fail("no echo of frame %u into the remapped page", seq);
	if (gvirtio_status(&e.net) & STATUS_NEEDS_RESET)
		fail("net NEEDS_RESET after traffic");
	pass_with("reason=%u flags=0x%x addr=0x%lx after=%u", reason, flags, (unsigned long)addr,
		  seq - 7);
}
SCENARIO("iommu-fault-rx", iommu_fault_rx);
