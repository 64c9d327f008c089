/* Virtio modern PCI transport through real config and BAR accesses:
 * capabilities, feature negotiation, queue setup, ISR, notifications,
 * ioeventfds following the BAR, the PCI_CFG window, MSI-X delivery. */
#include <criterion/criterion.h>
#include <linux/virtio_pci.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "devices/virtio_pci.h"
#include "vmm/layout.h"

struct mock {
	int ioeventfds;            /* currently assigned */
	uint64_t last_ioeventfd_addr;
	int routes;
};

static int m_route_add(void *o, uint64_t a, uint32_t d, unsigned *gsi)
{
	*gsi = 40 + ((struct mock *)o)->routes++;
	return 0;
}
static int m_route_update(void *o, unsigned g, uint64_t a, uint32_t d) { return 0; }
static int m_irqfd(void *o, int fd, unsigned g, bool assign) { return 0; }
static int m_ioeventfd(void *o, int fd, uint64_t addr, uint32_t len, bool pio, bool assign)
{
	struct mock *m = o;

	m->ioeventfds += assign ? 1 : -1;
	if (assign)
		m->last_ioeventfd_addr = addr;
	return 0;
}

static const struct pci_irq_ops mock_ops = { m_route_add, m_route_update, m_irqfd, m_ioeventfd };

static uint8_t devcfg[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
static void get_config(struct virtio_device *v, uint32_t off, void *data, uint32_t len)
{
	if (off < sizeof(devcfg))
		memcpy(data, devcfg + off, len < sizeof(devcfg) - off ? len : sizeof(devcfg) - off);
}
static int driver_oks;
static void driver_ok(struct virtio_device *v) { driver_oks++; }
static const struct virtio_device_ops dev_ops = { .get_config = get_config, .driver_ok = driver_ok };

static struct bus mmio, pio;
static struct pci_bus pbus;
static struct mock mock;
static struct guest_mem mem;
static struct virtio_device vdev;
static struct virtio_pci vp;
static uint64_t bar;

static uint32_t cfg_read(uint32_t off, uint32_t len)
{
	uint32_t v = 0;

	bus_read(&mmio, LAYOUT_PCI_ECAM + ((uint64_t)vp.pci.slot << 15) + off, &v, len);
	return v;
}

static void cfg_write(uint32_t off, uint32_t v, uint32_t len)
{
	bus_write(&mmio, LAYOUT_PCI_ECAM + ((uint64_t)vp.pci.slot << 15) + off, &v, len);
}

static uint64_t rd(uint64_t off, uint32_t len)
{
	uint64_t v = 0;

	bus_read(&mmio, bar + off, &v, len);
	return v;
}

static void wr(uint64_t off, uint64_t v, uint32_t len)
{
	bus_write(&mmio, bar + off, &v, len);
}

#define CC(field) (VIRTIO_PCI_COMMON_OFF + offsetof(struct virtio_pci_common_cfg, field))

static void setup(void)
{
	memset(&mock, 0, sizeof(mock));
	driver_oks = 0;
	cr_assert_eq(bus_init(&mmio, "mmio"), 0);
	cr_assert_eq(bus_init(&pio, "pio"), 0);
	cr_assert_eq(mem_init(&mem, 1 << 20), 0);
	cr_assert_eq(pci_bus_init(&pbus, &mmio, &pio, LAYOUT_PCI_ECAM, &mock_ops, &mock), 0);
	cr_assert_eq(virtio_device_init(&vdev, "vtest", &mem, 1, 2, 64, &dev_ops, NULL), 0);
	cr_assert_eq(virtio_pci_init(&vp, &vdev, &pbus, VIRTIO_PCI_DEVICE_BASE + 1, 0x020000), 0);
	bar = pci_bar_address(&vp.pci, VIRTIO_PCI_BAR);
	cfg_write(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
}

static void teardown(void)
{
	virtio_pci_destroy(&vp);
	virtio_device_destroy(&vdev);
	pci_bus_destroy(&pbus);
	mem_destroy(&mem);
	bus_destroy(&mmio);
	bus_destroy(&pio);
}

TestSuite(virtio_pci, .init = setup, .fini = teardown);

Test(virtio_pci, ids_and_capabilities)
{
	int types = 0;

	cr_assert_eq(cfg_read(PCI_VENDOR_ID, 2), 0x1af4);
	cr_assert_eq(cfg_read(PCI_DEVICE_ID, 2), 0x1041);
	cr_assert_geq(cfg_read(PCI_REVISION_ID, 1), 1);
	cr_assert_geq(cfg_read(PCI_SUBSYSTEM_ID, 2), 0x40);
	cr_assert_eq(cfg_read(PCI_BASE_ADDRESS_4, 4) & 0x6, PCI_BASE_ADDRESS_MEM_TYPE_64);
	for (uint32_t at = cfg_read(PCI_CAPABILITY_LIST, 1); at; at = cfg_read(at + 1, 1)) {
		if (cfg_read(at, 1) != PCI_CAP_ID_VNDR)
			continue;
		uint32_t type = cfg_read(at + 3, 1);
		types |= 1 << type;
		cr_assert_eq(cfg_read(at + 4, 1), VIRTIO_PCI_BAR);
		if (type == VIRTIO_PCI_CAP_NOTIFY_CFG)
			cr_assert_eq(cfg_read(at + 16, 4), VIRTIO_PCI_NOTIFY_MULT);
	}
	cr_assert_eq(types, (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5));
	cr_assert_neq(pci_cap_find(&vp.pci, PCI_CAP_ID_MSIX), 0);
}

Test(virtio_pci, feature_negotiation_and_queue_setup)
{
	wr(CC(device_feature_select), 1, 4);
	cr_assert_eq(rd(CC(device_feature), 4) & 1, 1, "VERSION_1 (bit 32) offered");
	cr_assert_eq(rd(CC(num_queues), 2), 2);
	wr(CC(device_status), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER, 1);
	wr(CC(guest_feature_select), 1, 4);
	wr(CC(guest_feature), 1, 4);
	wr(CC(device_status), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			      VIRTIO_CONFIG_S_FEATURES_OK, 1);
	cr_assert(rd(CC(device_status), 1) & VIRTIO_CONFIG_S_FEATURES_OK);

	wr(CC(queue_select), 1, 2);
	cr_assert_eq(rd(CC(queue_size), 2), 64);
	cr_assert_eq(rd(CC(queue_notify_off), 2), 1);
	wr(CC(queue_size), 32, 2);
	/* 64-bit fields written as two halves, as Linux does. */
	wr(CC(queue_desc_lo), 0x10000, 4);
	wr(CC(queue_desc_hi), 0, 4);
	wr(CC(queue_avail_lo), 0x11000, 4);
	wr(CC(queue_used_lo), 0x12000, 4);
	wr(CC(queue_msix_vector), 2, 2);
	cr_assert_eq(rd(CC(queue_msix_vector), 2), 2);
	wr(CC(queue_msix_vector), 77, 2);   /* beyond the table: reads back NO_VECTOR */
	cr_assert_eq(rd(CC(queue_msix_vector), 2), VIRTIO_NO_VECTOR);
	wr(CC(queue_msix_vector), 2, 2);
	wr(CC(queue_enable), 1, 2);
	cr_assert_eq(rd(CC(queue_enable), 2), 1);
	cr_assert_eq(vdev.vqs[1].st.size, 32);
	cr_assert_eq(vdev.vqs[1].st.avail_addr, 0x11000);
	/* Frozen once enabled. */
	wr(CC(queue_size), 16, 2);
	cr_assert_eq(rd(CC(queue_size), 2), 32);
	/* Out-of-range queue_select reads zeros and ignores writes. */
	wr(CC(queue_select), 9, 2);
	cr_assert_eq(rd(CC(queue_size), 2), 0);

	wr(CC(device_status), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			      VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK, 1);
	cr_assert_eq(driver_oks, 1);
	uint8_t gen = (uint8_t)rd(CC(config_generation), 1);
	/* Reset: status reads 0, queues disabled, generation moves on. */
	wr(CC(device_status), 0, 1);
	cr_assert_eq(rd(CC(device_status), 1), 0);
	wr(CC(queue_select), 1, 2);
	cr_assert_eq(rd(CC(queue_enable), 2), 0);
	cr_assert_neq((uint8_t)rd(CC(config_generation), 1), gen);
}

Test(virtio_pci, device_config_isr_and_pci_cfg_window)
{
	cr_assert_eq(rd(VIRTIO_PCI_DEVICE_OFF + 2, 2), 0x0403);
	atomic_store(&vdev.isr, VIRTIO_ISR_CONFIG);
	cr_assert_eq(rd(VIRTIO_PCI_ISR_OFF, 1), VIRTIO_ISR_CONFIG);
	cr_assert_eq(rd(VIRTIO_PCI_ISR_OFF, 1), 0, "ISR read clears it");

	/* §4.1.4.9: the same device config through the config-space window. */
	uint16_t c = vp.pci_cfg_cap;
	cfg_write(c + offsetof(struct virtio_pci_cfg_cap, cap.bar), VIRTIO_PCI_BAR, 1);
	cfg_write(c + offsetof(struct virtio_pci_cfg_cap, cap.offset), VIRTIO_PCI_DEVICE_OFF + 4, 4);
	cfg_write(c + offsetof(struct virtio_pci_cfg_cap, cap.length), 4, 4);
	cr_assert_eq(cfg_read(c + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data), 4), 0x08070605);
}

Test(virtio_pci, notify_and_ioeventfd_follow_the_bar)
{
	uint64_t cnt = 0;

	cr_assert_eq(mock.ioeventfds, 2, "one ioeventfd per queue while decoding");
	cr_assert_eq(mock.last_ioeventfd_addr, bar + VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT);
	/* A trapped notify write (e.g. wrong width) signals the same kick eventfd. */
	wr(VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT, 1, 4);
	cr_assert_eq(read(vdev.vqs[1].kick_fd, &cnt, 8), 8);
	cr_assert_eq(cnt, 1);
	/* Memory decoding off: ioeventfds go away; on again at a new address. */
	cfg_write(PCI_COMMAND, 0, 2);
	cr_assert_eq(mock.ioeventfds, 0);
	cfg_write(PCI_BASE_ADDRESS_4, (uint32_t)(LAYOUT_PCI_MMIO32_START + 0x1000000), 4);
	cfg_write(PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	cr_assert_eq(mock.ioeventfds, 2);
	cr_assert_eq(mock.last_ioeventfd_addr,
		     LAYOUT_PCI_MMIO32_START + 0x1000000 + VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT);
}

Test(virtio_pci, queue_interrupt_goes_through_msix)
{
	uint16_t cap = pci_cap_find(&vp.pci, PCI_CAP_ID_MSIX);
	uint64_t cnt = 0;

	cfg_write(cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, 2);
	wr(VIRTIO_PCI_MSIX_TABLE + 16 * 1 + 0, 0xfee00000, 4);
	wr(VIRTIO_PCI_MSIX_TABLE + 16 * 1 + 8, 0x33, 4);
	wr(VIRTIO_PCI_MSIX_TABLE + 16 * 1 + 12, 0, 4);
	cr_assert_eq(vdev.transport->notify(vdev.transport_opaque, 1), 0);
	cr_assert_eq(mock.routes, 1);
	cr_assert_eq(read(vp.pci.msix.vec[1].fd, &cnt, 8), 8);
	cr_assert_eq(vdev.transport->notify(vdev.transport_opaque, VIRTIO_NO_VECTOR), 0);
}
