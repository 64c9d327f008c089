/* Our vfio-user client against our test VF server (build/tests/vfio-user-nic)
 * over a socketpair, without any VM: a memfd is "guest RAM", the test plays
 * the guest driver through region reads/writes, and checks what the device
 * did in memory and on the interrupt eventfds. Also: the server in DMA-message
 * mode, DMA to an unmapped IOVA (refused and reported), a server that dies,
 * and servers that lie. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/vfio.h>

#include "tests/integration/harness.h"
#include "tests/vfio-user-nic/nic_regs.h"
#include "vfio/vfio_user.h"
#include "vmm/log.h"
#include "vmm/mem.h"

#include "tests/integration/vfio_rig.h"
#include "devices/pci_vm.h"
#include "vmm/acpi.h"

/* Send @n frames of distinct content and check they come back on RX. */
static void echo_frames(struct rig *r, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t frame[100 + 7 * i];
		for (unsigned b = 0; b < sizeof(frame); b++)
			frame[b] = (uint8_t)(b * 3 + i);
		cr_assert_eq(mem_write(&r->mem, TX_BUFS + i * 2048, frame, sizeof(frame)), 0);
		put_desc(r, TX_RING, i, TX_BUFS + i * 2048, sizeof(frame));
	}
	reg_write(r, VFNIC_REG_TX_TAIL, n);
	cr_assert_eq(reg_read(r, VFNIC_REG_TX_HEAD), n);
	cr_assert_eq(reg_read(r, VFNIC_REG_RX_HEAD), n);
	cr_assert_eq(reg_read(r, VFNIC_REG_TX_FRAMES), n);
	cr_assert_eq(reg_read(r, VFNIC_REG_RX_FRAMES), n);
	for (unsigned i = 0; i < n; i++) {
		struct desc t = get_desc(r, TX_RING, i), x = get_desc(r, RX_RING, i);
		uint8_t got[2048], want[2048];

		cr_expect_eq(t.flags, VFNIC_DESC_DONE, "tx %u flags 0x%x", i, t.flags);
		cr_expect_eq(x.flags, VFNIC_DESC_DONE, "rx %u flags 0x%x", i, x.flags);
		cr_assert_eq(x.len, 100 + 7 * i);
		cr_assert_eq(mem_read(&r->mem, RX_BUFS + i * 2048, got, x.len), 0);
		cr_assert_eq(mem_read(&r->mem, TX_BUFS + i * 2048, want, x.len), 0);
		cr_assert_arr_eq(got, want, x.len, "frame %u corrupted", i);
	}
}

Test(vfio_user, handshake_info_regions_and_sparse_mmap)
{
	struct rig r;
	struct vfio_dev_info info;
	struct vfio_region reg;
	struct vfio_irq irq;

	cr_assert_eq(rig_start(&r, NULL), 0);
	cr_assert_eq(r.be->ops->device_info(r.be, &info), 0);
	cr_expect(info.flags & VFIO_DEVICE_FLAGS_PCI);
	cr_expect_eq(info.num_regions, VFIO_PCI_NUM_REGIONS);
	cr_assert_eq(r.be->ops->region_info(r.be, VFIO_PCI_BAR0_REGION_INDEX, &reg), 0);
	cr_expect_eq(reg.size, VFNIC_BAR0_SIZE);
	cr_expect_eq(reg.mmap_fd, -1, "BAR0 registers are trapped");
	cr_assert_eq(r.be->ops->region_info(r.be, VFIO_PCI_BAR2_REGION_INDEX, &reg), 0);
	cr_expect_eq(reg.size, VFNIC_BAR2_SIZE);
	cr_assert_geq(reg.mmap_fd, 0, "BAR2 comes with an fd");
	cr_assert_eq(reg.nr_sparse, 1);
	cr_expect_eq(reg.sparse[0].offset, 0);
	cr_expect_eq(reg.sparse[0].size, 4096);
	void *p = NULL;
	cr_assert_eq(r.be->ops->region_mmap(r.be, &reg, 0, 4096, &p), 0);
	uint32_t magic;
	memcpy(&magic, p, 4);
	cr_expect_eq(magic, VFNIC_BAR2_STATS_MAGIC, "mmapped BAR2 shows the device's page");
	munmap(p, 4096);
	cr_assert_eq(r.be->ops->irq_info(r.be, VFIO_PCI_MSIX_IRQ_INDEX, &irq), 0);
	cr_expect_eq(irq.count, VFNIC_NR_VECTORS);
	uint32_t id = 0;
	cr_assert_eq(vfio_be_region_read(r.be, VFIO_PCI_CONFIG_REGION_INDEX, 0, &id, 4), 0);
	cr_expect_eq(id, VFNIC_VENDOR_ID | (VFNIC_DEVICE_ID << 16));
	cr_expect_eq(reg_read(&r, VFNIC_REG_ID), VFNIC_MAGIC);
	cr_expect_eq(vfio_be_region_read(r.be, VFIO_PCI_BAR0_REGION_INDEX, 0xffe, &id, 4), -ERANGE);
	cr_expect_eq(r.be->ops->region_info(r.be, 200, &reg), -EINVAL);
	rig_stop(&r);
}

static void echo_test(const char *const extra[])
{
	struct rig r;

	cr_assert_eq(rig_start(&r, extra), 0);
	map_all_ram(&r);
	setup_irqs(&r);
	program_rings(&r, 8);
	echo_frames(&r, 8);
	cr_expect_geq(irq_count(&r, VFNIC_VEC_TX), 1, "TX vector fired");
	cr_expect_geq(irq_count(&r, VFNIC_VEC_RX), 1, "RX vector fired");
	cr_expect_eq(reg_read(&r, VFNIC_REG_DMA_FAULTS), 0);
	/* Device writes through DMA_WRITE (or the mapping) are in guest RAM and,
	 * when the VMM served them, marked dirty. */
	struct vfio_user_stats st;
	vfio_user_get_stats(r.be, &st);
	if (extra) {
		cr_expect_gt(st.dma_reads, 0, "server used DMA_READ");
		cr_expect_gt(st.dma_writes, 0, "server used DMA_WRITE");
		cr_expect(mem_take_dirty_word(&r.mem, RX_BUFS / 4096 / 64) != 0,
			  "served DMA writes mark pages dirty");
	} else {
		cr_expect_eq(st.dma_reads + st.dma_writes, 0, "mapped memfd: no DMA messages");
	}
	/* Reset: the device forgets its rings. */
	cr_assert_eq(r.be->ops->reset(r.be), 0);
	cr_expect_eq(reg_read(&r, VFNIC_REG_TX_HEAD), 0);
	cr_expect_eq(reg_read(&r, VFNIC_REG_CTRL), 0);
	rig_stop(&r);
}

Test(vfio_user, echo_through_mapped_memfd)
{
	echo_test(NULL);
}

Test(vfio_user, echo_through_dma_messages)
{
	static const char *const extra[] = { "--dma-msg", NULL };
	echo_test(extra);
}

Test(vfio_user, dma_to_unmapped_iova_is_refused_and_reported)
{
	static const char *const modes[2][2] = { { NULL }, { "--dma-msg", NULL } };

	for (int m = 0; m < 2; m++) {
		struct rig r;

		cr_assert_eq(rig_start(&r, m ? modes[1] : NULL), 0);
		/* Only the first 1 MiB is mapped for the device. */
		struct vfio_dma d = { .iova = 0, .size = 1u << 20, .hva = r.mem.base,
				      .fd = r.mem.fd, .read = true, .write = true };
		cr_assert_eq(r.be->ops->dma_map(r.be, &d), 0);
		setup_irqs(&r);
		program_rings(&r, 2);
		/* TX_BUFS (2 MiB) lies outside the window. */
		put_desc(&r, TX_RING, 0, TX_BUFS, 64);
		reg_write(&r, VFNIC_REG_TX_TAIL, 1);
		cr_expect_eq(reg_read(&r, VFNIC_REG_DMA_FAULTS), 1, "mode %d", m);
		cr_expect_eq(reg_read(&r, VFNIC_REG_FAULT_LO), TX_BUFS);
		cr_expect(reg_read(&r, VFNIC_REG_STATUS) & VFNIC_STATUS_FAULT);
		struct desc t = get_desc(&r, TX_RING, 0);
		cr_expect_eq(t.flags, VFNIC_DESC_DONE | VFNIC_DESC_ERR);
		cr_expect_eq(reg_read(&r, VFNIC_REG_RX_FRAMES), 0, "nothing leaked to RX");
		/* Unmap: the window is gone for the device too. */
		cr_assert_eq(r.be->ops->dma_unmap(r.be, 0, 1u << 20), 0);
		put_desc(&r, TX_RING, 1, 0x8000, 64);
		reg_write(&r, VFNIC_REG_TX_TAIL, 2);
		cr_expect_geq(reg_read(&r, VFNIC_REG_DMA_FAULTS), 2);
		cr_expect_eq(r.be->ops->dma_unmap(r.be, 0, 1u << 20), -ENOENT);
		rig_stop(&r);
	}
}

/* A server that does not check its own windows asks the VMM for an IOVA
 * nobody mapped: the VMM refuses (EFAULT) and the device reports the fault. */
Test(vfio_user, vmm_refuses_dma_messages_outside_windows)
{
	static const char *const extra[] = { "--dma-msg", "--lie", "no-window-check", NULL };
	struct rig r;
	struct vfio_user_stats st;

	cr_assert_eq(rig_start(&r, extra), 0);
	struct vfio_dma d = { .iova = 0, .size = 1u << 20, .hva = r.mem.base, .fd = r.mem.fd,
			      .read = true, .write = true };
	cr_assert_eq(r.be->ops->dma_map(r.be, &d), 0);
	program_rings(&r, 2);
	put_desc(&r, TX_RING, 0, TX_BUFS, 64);
	reg_write(&r, VFNIC_REG_TX_TAIL, 1);
	vfio_user_get_stats(r.be, &st);
	cr_expect_eq(st.dma_refused, 1, "the VMM refused the server's DMA_READ");
	cr_expect_eq(reg_read(&r, VFNIC_REG_DMA_FAULTS), 1);
	cr_expect(vfio_user_alive(r.be), "a refused DMA does not kill the device");
	rig_stop(&r);
}

Test(vfio_user, every_vector_fires)
{
	struct rig r;

	cr_assert_eq(rig_start(&r, NULL), 0);
	setup_irqs(&r);
	reg_write(&r, VFNIC_REG_IRQ_FIRE, 0x3);
	cr_expect_eq(irq_count(&r, 0), 1);
	cr_expect_eq(irq_count(&r, 1), 1);
	cr_expect_eq(reg_read(&r, VFNIC_REG_IRQ_STATUS), 0x3);
	reg_write(&r, VFNIC_REG_IRQ_STATUS, 0x1);
	cr_expect_eq(reg_read(&r, VFNIC_REG_IRQ_STATUS), 0x2);
	/* De-assign: no more signals. */
	int none[2] = { -1, -1 };
	cr_assert_eq(r.be->ops->set_irqs(r.be, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2,
					 VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, none),
		     0);
	reg_write(&r, VFNIC_REG_IRQ_FIRE, 0x3);
	cr_expect_eq(irq_count(&r, 0), 0);
	rig_stop(&r);
}

Test(vfio_user, server_crash_is_a_clean_error)
{
	static const char *const extra[] = { "--exit-after", "6", NULL };
	struct rig r;
	int ret = 0;

	/* VERSION, GET_INFO, then a few register reads, then the server dies. */
	cr_assert_eq(rig_start(&r, extra), 0);
	for (int i = 0; i < 10 && !ret; i++) {
		uint32_t v;
		ret = vfio_be_region_read(r.be, VFIO_PCI_BAR0_REGION_INDEX, 0, &v, 4);
	}
	cr_expect_eq(ret, -EPIPE);
	cr_expect(!vfio_user_alive(r.be));
	uint32_t v;
	cr_expect_eq(vfio_be_region_read(r.be, VFIO_PCI_BAR0_REGION_INDEX, 0, &v, 4), -EPIPE,
		     "a dead server fails fast");
	cr_expect_eq(vfio_user_service(r.be), -EPIPE);
	rig_stop(&r);
}

Test(vfio_user, server_killed_mid_run)
{
	struct rig r;

	cr_assert_eq(rig_start(&r, NULL), 0);
	map_all_ram(&r);
	program_rings(&r, 4);
	kill(r.pid, SIGKILL);
	waitpid(r.pid, NULL, 0);
	r.pid = 0;
	uint32_t v = 0;
	cr_expect_eq(vfio_be_region_write(r.be, VFIO_PCI_BAR0_REGION_INDEX, VFNIC_REG_TX_TAIL, &v, 4),
		     -EPIPE);
	cr_expect(!vfio_user_alive(r.be));
	rig_stop(&r);
}

static int open_lying(const char *what, struct rig *r)
{
	const char *extra[] = { "--lie", what, NULL };
	return rig_start(r, extra);
}

Test(vfio_user, lying_servers_get_clean_errors)
{
	struct rig r;
	struct vfio_region reg;
	uint32_t v;

	cr_expect_eq(open_lying("device-info", &r), -EPROTO);
	rig_stop(&r);
	cr_expect_eq(open_lying("bad-json", &r), -EPROTO);
	rig_stop(&r);
	/* Replies with the wrong id are caught on the first request after VERSION. */
	cr_expect_eq(open_lying("reply-id", &r), -EPIPE);
	rig_stop(&r);

	cr_assert_eq(open_lying("short-read", &r), 0);
	cr_expect_eq(vfio_be_region_read(r.be, VFIO_PCI_BAR0_REGION_INDEX, 0, &v, 4), -EPROTO);
	rig_stop(&r);

	cr_assert_eq(open_lying("short-fd", &r), 0);
	cr_assert_eq(r.be->ops->region_info(r.be, VFIO_PCI_BAR2_REGION_INDEX, &reg), 0);
	void *p = NULL;
	cr_expect_eq(r.be->ops->region_mmap(r.be, &reg, 0, 4096, &p), -EPROTO,
		     "an fd that does not back the region is refused");
	rig_stop(&r);

	cr_assert_eq(open_lying("region-fd", &r), 0);
	cr_expect_eq(r.be->ops->region_info(r.be, VFIO_PCI_BAR2_REGION_INDEX, &reg), -EPROTO);
	cr_expect_eq(r.be->ops->region_info(r.be, VFIO_PCI_BAR0_REGION_INDEX, &reg), 0,
		     "other regions still usable");
	rig_stop(&r);
}

Test(vfio_user, no_server_at_path)
{
	struct vfio_backend *be = NULL;
	struct vfio_user_opts o = { .socket_path = "/nonexistent/vfu.sock", .fd = -1 };

	cr_expect_eq(vfio_user_open(&o, &be), -ENOENT);
	cr_expect_null(be);
}

/* ---- the vfio-pci device model on our PCI bus, over the test VF ---- */

#include "devices/pci.h"
#include "vfio/vfio_pci.h"
#include "vmm/bus.h"
#include "vmm/layout.h"

struct mock_irq {
	unsigned routes, irqfds;
};

static int mi_route_add(void *o, uint64_t a, uint32_t d, unsigned *gsi)
{
	*gsi = 24 + ((struct mock_irq *)o)->routes++;
	return 0;
}
static int mi_route_update(void *o, unsigned gsi, uint64_t a, uint32_t d) { return 0; }
static int mi_irqfd(void *o, int fd, unsigned gsi, bool assign)
{
	((struct mock_irq *)o)->irqfds += assign;
	return 0;
}
static int mi_ioeventfd(void *o, int fd, uint64_t a, uint32_t l, bool pio, bool assign) { return 0; }

static const struct pci_irq_ops mi_ops = {
	.msi_route_add = mi_route_add, .msi_route_update = mi_route_update,
	.irqfd = mi_irqfd, .ioeventfd = mi_ioeventfd,
};

struct slot_log {
	unsigned installs, removes;
	uint64_t gpa, size;
	void *hva;
};

static int mock_memslot(void *o, unsigned idx, uint64_t gpa, uint64_t size, void *hva)
{
	struct slot_log *l = o;

	if (size) {
		l->installs++;
		l->gpa = gpa;
		l->size = size;
		l->hva = hva;
	} else {
		l->removes++;
	}
	return 0;
}

struct pci_rig {
	struct rig r;
	struct bus mmio, pio;
	struct pci_bus pbus;
	struct mock_irq irq;
	struct slot_log slots;
	struct vfio_pci vp;
	uint64_t bar0;
};

static uint32_t cfg_read(struct pci_rig *p, uint32_t off, uint32_t len)
{
	return pci_bus_config_read(&p->pbus, p->vp.pci.slot, 0, off, len);
}

static uint32_t mmio_read32(struct pci_rig *p, uint64_t addr)
{
	uint32_t v = 0;
	bus_read(&p->mmio, addr, &v, 4);
	return v;
}

static void mmio_write32(struct pci_rig *p, uint64_t addr, uint32_t v)
{
	bus_write(&p->mmio, addr, &v, 4);
}

/* @intx: INTx routing as the VMM does it (an irqfd on a GSI), or NULL: then
 * the test reads the trigger eventfd itself (vfio_pci_poll). */
static void pci_rig_start_intx(struct pci_rig *p, bool iommu,
			       int (*intx)(void *, int, int, bool, unsigned *))
{
	memset(p, 0, sizeof(*p));
	cr_assert_eq(rig_start(&p->r, NULL), 0);
	cr_assert_eq(bus_init(&p->mmio, "mmio"), 0);
	cr_assert_eq(bus_init(&p->pio, "pio"), 0);
	cr_assert_eq(pci_bus_init(&p->pbus, &p->mmio, &p->pio, LAYOUT_PCI_ECAM, &mi_ops, &p->irq), 0);
	struct vfio_pci_env env = { .bus = &p->pbus, .mem = &p->r.mem, .memslot = mock_memslot,
				    .opaque = &p->slots, .iommu = iommu, .slot = -1, .intx = intx };
	struct vfio_backend *be = p->r.be;
	p->r.be = NULL;   /* owned by the device model now */
	cr_assert_eq(vfio_pci_init(&p->vp, "vfio0", be, &env), 0);
	/* Enable memory decode and bus mastering like a driver would. */
	pci_bus_config_write(&p->pbus, p->vp.pci.slot, 0, PCI_COMMAND, 0x6, 2);
	p->bar0 = pci_bar_address(&p->vp.pci, 0);
}

static void pci_rig_start(struct pci_rig *p, bool iommu)
{
	pci_rig_start_intx(p, iommu, NULL);
}

static void pci_rig_stop(struct pci_rig *p)
{
	vfio_pci_uninit(&p->vp);
	pci_bus_destroy(&p->pbus);
	bus_destroy(&p->mmio);
	bus_destroy(&p->pio);
	rig_stop(&p->r);
}

Test(vfio_pci, config_bars_and_direct_mapping)
{
	struct pci_rig p;

	pci_rig_start(&p, false);
	cr_expect_eq(cfg_read(&p, PCI_VENDOR_ID, 2), VFNIC_VENDOR_ID);
	cr_expect_eq(cfg_read(&p, PCI_DEVICE_ID, 2), VFNIC_DEVICE_ID);
	cr_expect_eq(cfg_read(&p, PCI_CLASS_DEVICE, 2), VFNIC_CLASS >> 8);
	cr_expect_neq(pci_cap_find(&p.vp.pci, PCI_CAP_ID_MSIX), 0, "MSI-X capability shown");
	cr_expect_eq(p.vp.pci.msix.nr, VFNIC_NR_VECTORS);
	/* BAR0 registers: trapped and forwarded. */
	cr_assert_geq(p.bar0, LAYOUT_PCI_MMIO32_START);
	cr_expect_eq(mmio_read32(&p, p.bar0 + VFNIC_REG_ID), VFNIC_MAGIC);
	mmio_write32(&p, p.bar0 + VFNIC_REG_TX_SIZE, 64);
	cr_expect_eq(mmio_read32(&p, p.bar0 + VFNIC_REG_TX_SIZE), 64);
	/* BAR2: its mmappable first page went to a memslot at the BAR address. */
	uint64_t bar2 = pci_bar_address(&p.vp.pci, 2);
	cr_expect_eq(p.slots.installs, 1);
	cr_expect_eq(p.slots.gpa, bar2);
	cr_expect_eq(p.slots.size, 4096);
	uint32_t magic;
	memcpy(&magic, p.slots.hva, 4);
	cr_expect_eq(magic, VFNIC_BAR2_STATS_MAGIC, "the memslot shows device memory");
	/* All guest RAM is mapped for DMA (no vIOMMU). */
	cr_expect_eq(p.vp.nr_dma, p.r.mem.nr_regions);
	cr_expect_eq(p.vp.dma[0].iova, p.r.mem.regions[0].gpa);
	/* Disabling memory decode removes the direct mapping. */
	pci_bus_config_write(&p.pbus, p.vp.pci.slot, 0, PCI_COMMAND, 0x4, 2);
	cr_expect_eq(p.slots.removes, 1);
	pci_rig_stop(&p);
}

Test(vfio_pci, capabilities_passed_through_with_a_filter)
{
	struct pci_rig p;
	uint16_t pm, vndr;

	pci_rig_start(&p, false);
	pm = pci_cap_find(&p.vp.pci, PCI_CAP_ID_PM);
	vndr = pci_cap_find(&p.vp.pci, PCI_CAP_ID_VNDR);
	cr_assert_neq(pm, 0, "power management shown");
	cr_assert_neq(vndr, 0, "vendor capability shown");
	cr_expect_eq(pci_cap_find(&p.vp.pci, PCI_CAP_ID_MSI), 0);
	cr_expect_eq(cfg_read(&p, pm + 2, 2), 0x0003, "PMC from the device");
	/* PMCSR writes reach the device and read back from it. */
	pci_bus_config_write(&p.pbus, p.vp.pci.slot, 0, pm + PCI_PM_CTRL, 3, 2);
	cr_expect_eq(cfg_read(&p, pm + PCI_PM_CTRL, 2) & 3, 3);
	/* Reads are live: the vendor capability mirrors IRQ_STATUS. */
	cr_expect_eq(cfg_read(&p, vndr + 4, 4), 0);
	mmio_write32(&p, p.bar0 + VFNIC_REG_IRQ_FIRE, 0x2);
	cr_expect_eq(cfg_read(&p, vndr + 4, 4), 0x2);
	cr_expect_eq(cfg_read(&p, vndr + 2, 1), 8, "length byte");
	pci_rig_stop(&p);
}

/* The test VF's PCI Express extended capabilities as the guest sees them
 * (ECAM, from 0x100): SR-IOV (at 0x100), ATS and Resizable BAR hidden, the
 * chain valid (a Null capability at 0x100 leads to AER, then DSN, then the
 * vendor-specific one), bodies live from the server. */
Test(vfio_pci, pcie_extended_capabilities_filtered)
{
	static const struct { uint16_t off, id, next; } want[] = {
		{ 0x100, 0x0000, VFNIC_EXT_AER },
		{ VFNIC_EXT_AER, PCI_EXT_CAP_ID_ERR, VFNIC_EXT_DSN },
		{ VFNIC_EXT_DSN, PCI_EXT_CAP_ID_DSN, VFNIC_EXT_VSEC },
		{ VFNIC_EXT_VSEC, PCI_EXT_CAP_ID_VNDR, 0 },
	};
	struct pci_rig p;
	unsigned pos = 0x100, n = 0;

	pci_rig_start(&p, false);
	cr_assert_neq(pci_cap_find(&p.vp.pci, PCI_CAP_ID_EXP), 0, "PCI Express capability shown");
	while (pos >= 0x100 && n < 8) {
		uint32_t h = cfg_read(&p, pos, 4);

		if (!h)
			break;
		cr_assert_lt(n, sizeof(want) / sizeof(want[0]), "extra capability 0x%x at 0x%x",
			     h & 0xffff, pos);
		cr_expect_eq(pos, want[n].off, "cap %u", n);
		cr_expect_eq(h & 0xffff, want[n].id, "cap %u at 0x%x", n, pos);
		cr_expect_eq(PCI_EXT_CAP_NEXT(h), want[n].next, "cap %u at 0x%x", n, pos);
		n++;
		pos = PCI_EXT_CAP_NEXT(h);
	}
	cr_expect_eq(n, sizeof(want) / sizeof(want[0]));
	cr_expect_eq(cfg_read(&p, VFNIC_EXT_SRIOV + 0x0e, 2), 0, "SR-IOV TotalVFs hidden");
	cr_expect_eq(cfg_read(&p, VFNIC_EXT_ATS, 4), 0, "ATS hidden");
	cr_expect_eq(cfg_read(&p, VFNIC_EXT_REBAR, 4), 0, "Resizable BAR hidden");
	cr_expect_eq(cfg_read(&p, VFNIC_EXT_DSN + 4, 4), (uint32_t)VFNIC_DSN, "serial number");
	cr_expect_eq(cfg_read(&p, VFNIC_EXT_DSN + 8, 4), (uint32_t)(VFNIC_DSN >> 32));
	cr_expect_eq(cfg_read(&p, VFNIC_EXT_AER + 0x0c, 4), 0x00462030, "AER severity");
	/* Writes to a shown body reach the device and read back from it. */
	pci_bus_config_write(&p.pbus, p.vp.pci.slot, 0, VFNIC_EXT_AER + 8, 0x00001000, 4);
	cr_expect_eq(cfg_read(&p, VFNIC_EXT_AER + 8, 4), 0x00001000, "AER mask written");
	/* Live: the vendor-specific capability mirrors IRQ_STATUS. */
	cr_expect_eq(cfg_read(&p, VFNIC_EXT_VSEC + 8, 4), 0);
	mmio_write32(&p, p.bar0 + VFNIC_REG_IRQ_FIRE, 0x1);
	cr_expect_eq(cfg_read(&p, VFNIC_EXT_VSEC + 8, 4), 0x1);
	/* Headers are ours and read-only. */
	pci_bus_config_write(&p.pbus, p.vp.pci.slot, 0, VFNIC_EXT_DSN, 0xffffffff, 4);
	cr_expect_eq(cfg_read(&p, VFNIC_EXT_DSN, 4) & 0xffff, PCI_EXT_CAP_ID_DSN);
	pci_rig_stop(&p);
}

static uint64_t intx_poll(struct pci_rig *p)
{
	/* A register read is a round trip: the server has handled any unmask
	 * (resample) signalled before it. */
	(void)mmio_read32(p, p->bar0 + VFNIC_REG_ID);
	usleep(2000);
	vfio_pci_poll(&p->vp);
	return p->vp.intx_count;
}

Test(vfio_pci, intx_level_automask_and_resample)
{
	struct pci_rig p;

	pci_rig_start(&p, false);
	cr_expect_eq(cfg_read(&p, PCI_INTERRUPT_PIN, 1), 1, "INTA#");
	cr_expect(p.vp.intx_armed);
	mmio_write32(&p, p.bar0 + VFNIC_REG_IRQ_FIRE, 0x1);
	cr_expect_eq(intx_poll(&p), 1, "asserted");
	mmio_write32(&p, p.bar0 + VFNIC_REG_IRQ_FIRE, 0x2);
	cr_expect_eq(intx_poll(&p), 1, "automasked: no second edge before the EOI");
	/* EOI with the status still set: level, so it is asserted again. */
	vfio_pci_intx_eoi(&p.vp);
	cr_expect_eq(intx_poll(&p), 2, "re-asserted after resample while pending");
	/* The driver clears the status, then EOIs: nothing more. */
	mmio_write32(&p, p.bar0 + VFNIC_REG_IRQ_STATUS, 0x3);
	vfio_pci_intx_eoi(&p.vp);
	cr_expect_eq(intx_poll(&p), 2);
	mmio_write32(&p, p.bar0 + VFNIC_REG_IRQ_FIRE, 0x1);
	cr_expect_eq(intx_poll(&p), 3, "unmasked again: next interrupt arrives");
	/* Enabling MSI-X switches INTx off in the device. */
	uint16_t cap = pci_cap_find(&p.vp.pci, PCI_CAP_ID_MSIX);
	pci_bus_config_write(&p.pbus, p.vp.pci.slot, 0, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE,
			     2);
	cr_expect(!p.vp.intx_armed);
	mmio_write32(&p, p.bar0 + VFNIC_REG_IRQ_STATUS, 0x3);
	vfio_pci_intx_eoi(&p.vp);
	mmio_write32(&p, p.bar0 + VFNIC_REG_IRQ_FIRE, 0x1);
	cr_expect_eq(intx_poll(&p), 3, "no INTx while MSI-X is on");
	cr_expect_eq(p.vp.msix_count[0], 1, "MSI-X vector 0 instead");
	pci_bus_config_write(&p.pbus, p.vp.pci.slot, 0, cap + PCI_MSIX_FLAGS, 0, 2);
	cr_expect(p.vp.intx_armed, "back to INTx when MSI-X is disabled");
	pci_rig_stop(&p);
}

#define MOCK_INTX_GSI 19

static int mock_intx(void *o, int trigger, int resample, bool assign, unsigned *gsi)
{
	*gsi = MOCK_INTX_GSI;
	return 0;
}

/* INTx routed to a GSI: Interrupt Line says it, and the ACPI _PRT gets
 * exactly that route for the function's slot (what a Linux guest uses). */
Test(vfio_pci, intx_gsi_in_interrupt_line_and_acpi_prt)
{
	struct acpi_config acpi = { .nr_cpus = 1 };
	struct pci_rig p;
	uint64_t rsdp;

	pci_rig_start_intx(&p, false, mock_intx);
	cr_expect(p.vp.intx_routed);
	cr_expect_eq(cfg_read(&p, PCI_INTERRUPT_PIN, 1), 1, "INTA#");
	cr_expect_eq(cfg_read(&p, PCI_INTERRUPT_LINE, 1), MOCK_INTX_GSI);
	cr_expect_eq(p.vp.pci.intx_gsi, MOCK_INTX_GSI);
	pci_vm_acpi_config(&p.pbus, &acpi);
	cr_assert_eq(acpi.nr_pci_irqs, 1);
	cr_expect_eq(acpi.pci_irqs[0].slot, p.vp.pci.slot);
	cr_expect_eq(acpi.pci_irqs[0].pin, 0);
	cr_expect_eq(acpi.pci_irqs[0].gsi, MOCK_INTX_GSI);
	cr_expect_eq(acpi_build(&p.r.mem, &acpi, &rsdp), 0, "and it makes a valid DSDT");
	pci_rig_stop(&p);
}

Test(vfio_pci, msix_vectors_fire_and_mask)
{
	struct pci_rig p;
	uint16_t cap;

	pci_rig_start(&p, false);
	cap = pci_cap_find(&p.vp.pci, PCI_CAP_ID_MSIX);
	cr_assert_neq(cap, 0);
	/* Program both table entries (unmasked), then enable MSI-X. */
	for (unsigned v = 0; v < VFNIC_NR_VECTORS; v++) {
		uint64_t e = p.bar0 + VFNIC_MSIX_TABLE + v * 16;
		mmio_write32(&p, e + 0, 0xfee00000);
		mmio_write32(&p, e + 4, 0);
		mmio_write32(&p, e + 8, 0x40 + v);
		mmio_write32(&p, e + 12, 0);
	}
	pci_bus_config_write(&p.pbus, p.vp.pci.slot, 0, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE,
			     2);
	cr_assert(p.vp.msix_armed, "enabling MSI-X hands the eventfds to the device");
	mmio_write32(&p, p.bar0 + VFNIC_REG_IRQ_FIRE, 0x3);
	vfio_pci_poll(&p.vp);
	cr_expect_eq(p.vp.msix_count[0], 1);
	cr_expect_eq(p.vp.msix_count[1], 1);
	cr_expect_eq(p.vp.pci.msix.delivered, 2);
	/* Mask vector 1: the signal is held pending, and delivered on unmask. */
	mmio_write32(&p, p.bar0 + VFNIC_MSIX_TABLE + 16 + 12, 1);
	mmio_write32(&p, p.bar0 + VFNIC_REG_IRQ_FIRE, 0x2);
	vfio_pci_poll(&p.vp);
	cr_expect_eq(p.vp.pci.msix.pended, 1);
	cr_expect_eq(p.vp.pci.msix.delivered, 2);
	uint64_t pba = 0;
	bus_read(&p.mmio, p.bar0 + VFNIC_MSIX_PBA, &pba, 8);
	cr_expect_eq(pba, 0x2, "pending bit of vector 1");
	mmio_write32(&p, p.bar0 + VFNIC_MSIX_TABLE + 16 + 12, 0);
	cr_expect_eq(p.vp.pci.msix.delivered, 3, "unmask delivers the pending vector");
	/* Disable: the device gets its triggers removed. */
	pci_bus_config_write(&p.pbus, p.vp.pci.slot, 0, cap + PCI_MSIX_FLAGS, 0, 2);
	cr_expect(!p.vp.msix_armed);
	pci_rig_stop(&p);
}

Test(vfio_pci, echo_through_the_bus_and_iommu_shadowing)
{
	struct pci_rig p;

	pci_rig_start(&p, true);
	cr_expect_eq(p.vp.nr_dma, 0, "behind a vIOMMU nothing is mapped up front");
	/* Shadow a guest MAP of the ring/buffer area at IOVA 0x40000000. */
	const uint64_t iova = 0x40000000;
	cr_assert_eq(vfio_pci_shadow_map(&p.vp, iova, 0x400000, 0, true, true), 0);
	cr_expect_eq(vfio_pci_shadow_map(&p.vp, iova, 0x1000, RAM_SIZE, true, true), -EFAULT,
		     "a MAP to non-RAM is refused");
	uint64_t b = p.bar0;
	mmio_write32(&p, b + VFNIC_REG_TX_RING_LO, (uint32_t)(iova + TX_RING));
	mmio_write32(&p, b + VFNIC_REG_TX_SIZE, RING_N);
	mmio_write32(&p, b + VFNIC_REG_RX_RING_LO, (uint32_t)(iova + RX_RING));
	mmio_write32(&p, b + VFNIC_REG_RX_SIZE, RING_N);
	put_desc(&p.r, RX_RING, 0, iova + RX_BUFS, 2048);
	mmio_write32(&p, b + VFNIC_REG_RX_TAIL, 1);
	mmio_write32(&p, b + VFNIC_REG_CTRL, VFNIC_CTRL_ENABLE);
	const char msg[] = "hello through the VF";
	cr_assert_eq(mem_write(&p.r.mem, TX_BUFS, msg, sizeof(msg)), 0);
	put_desc(&p.r, TX_RING, 0, iova + TX_BUFS, sizeof(msg));
	mmio_write32(&p, b + VFNIC_REG_TX_TAIL, 1);
	cr_expect_eq(mmio_read32(&p, b + VFNIC_REG_RX_FRAMES), 1);
	char got[sizeof(msg)];
	cr_assert_eq(mem_read(&p.r.mem, RX_BUFS, got, sizeof(got)), 0);
	cr_expect_str_eq(got, msg);
	/* Guest UNMAP: the device loses access before the request completes. */
	cr_assert_eq(vfio_pci_shadow_unmap(&p.vp, iova, 0x400000), 0);
	cr_expect_eq(p.vp.nr_dma, 0);
	put_desc(&p.r, TX_RING, 1, iova + TX_BUFS, sizeof(msg));
	mmio_write32(&p, b + VFNIC_REG_TX_TAIL, 2);
	cr_expect_eq(mmio_read32(&p, b + VFNIC_REG_DMA_FAULTS), 1);
	pci_rig_stop(&p);
}

Test(vfio_pci, server_death_reads_as_removed_device)
{
	struct pci_rig p;

	pci_rig_start(&p, false);
	cr_expect_eq(mmio_read32(&p, p.bar0 + VFNIC_REG_ID), VFNIC_MAGIC);
	kill(p.r.pid, SIGKILL);
	waitpid(p.r.pid, NULL, 0);
	p.r.pid = 0;
	cr_expect_eq(mmio_read32(&p, p.bar0 + VFNIC_REG_ID), 0xffffffff);
	cr_expect(vfio_pci_gone(&p.vp));
	cr_expect_eq(cfg_read(&p, PCI_VENDOR_ID, 2), 0xffff, "the guest sees the device gone");
	mmio_write32(&p, p.bar0 + VFNIC_REG_CTRL, 1);   /* dropped, no crash */
	vfio_pci_reset(&p.vp);
	pci_rig_stop(&p);
}
