/* PCI core: config mechanisms, BAR sizing/decode, capability lists, MSI-X. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "devices/pci.h"
#include "devices/pci_vm.h"
#include "vmm/acpi.h"
#include "vmm/layout.h"

struct mock_irq {
	unsigned next_gsi;
	int route_adds, route_updates, irqfd_assigns, ioeventfds;
	uint64_t last_addr;
	uint32_t last_data;
};

static int mock_route_add(void *o, uint64_t addr, uint32_t data, unsigned *gsi)
{
	struct mock_irq *m = o;

	m->route_adds++;
	m->last_addr = addr;
	m->last_data = data;
	*gsi = 24 + m->next_gsi++;
	return 0;
}

static int mock_route_update(void *o, unsigned gsi, uint64_t addr, uint32_t data)
{
	struct mock_irq *m = o;

	m->route_updates++;
	m->last_addr = addr;
	m->last_data = data;
	return 0;
}

static int mock_irqfd(void *o, int fd, unsigned gsi, bool assign)
{
	struct mock_irq *m = o;

	if (assign)
		m->irqfd_assigns++;
	return 0;
}

static int mock_ioeventfd(void *o, int fd, uint64_t addr, uint32_t len, bool pio, bool assign)
{
	((struct mock_irq *)o)->ioeventfds += assign ? 1 : -1;
	return 0;
}

static const struct pci_irq_ops mock_irq_ops = {
	.msi_route_add = mock_route_add, .msi_route_update = mock_route_update,
	.irqfd = mock_irqfd, .ioeventfd = mock_ioeventfd,
};

struct bar_dev {
	uint32_t last_write_off, last_write_val;
	int reads, writes;
};

static void bar_read(void *o, uint64_t off, void *data, uint32_t len)
{
	struct bar_dev *b = o;

	b->reads++;
	memset(data, 0, len);
	memcpy(data, &off, len < 8 ? len : 8);   /* reads return their offset */
}

static void bar_write(void *o, uint64_t off, const void *data, uint32_t len)
{
	struct bar_dev *b = o;

	b->writes++;
	b->last_write_off = (uint32_t)off;
	b->last_write_val = 0;
	memcpy(&b->last_write_val, data, len < 4 ? len : 4);
}

static const struct bus_ops bar_ops = { .read = bar_read, .write = bar_write };

static struct bus mmio, pio;
static struct pci_bus pbus;
static struct mock_irq irq;
static struct pci_device dev;
static struct bar_dev bdev;

static void setup(void)
{
	memset(&irq, 0, sizeof(irq));
	memset(&bdev, 0, sizeof(bdev));
	cr_assert_eq(bus_init(&mmio, "mmio"), 0);
	cr_assert_eq(bus_init(&pio, "pio"), 0);
	cr_assert_eq(pci_bus_init(&pbus, &mmio, &pio, LAYOUT_PCI_ECAM, &mock_irq_ops, &irq), 0);
	pci_device_init(&dev, "test", NULL, NULL);
	pci_config_set_ids(&dev, 0x1234, 0x5678, 0x020000, 3);
	cr_assert_eq(pci_bar_define(&dev, 0, 0x1000, PCI_BAR_MMIO32, &bar_ops, &bdev), 0);
	cr_assert_eq(pci_bar_define(&dev, 2, 0x8000, PCI_BAR_MMIO64, &bar_ops, &bdev), 0);
	cr_assert_eq(pci_bar_define(&dev, 5, 0x20, PCI_BAR_IO, &bar_ops, &bdev), 0);
}

static void teardown(void)
{
	pci_bus_remove_device(&pbus, &dev);
	pci_device_destroy(&dev);
	pci_bus_destroy(&pbus);
	bus_destroy(&mmio);
	bus_destroy(&pio);
}

static uint32_t ecam_read(unsigned slot, uint32_t reg, uint32_t len)
{
	uint32_t v = 0;

	bus_read(&mmio, LAYOUT_PCI_ECAM + (slot << 15) + reg, &v, len);
	return v;
}

static void ecam_write(unsigned slot, uint32_t reg, uint32_t v, uint32_t len)
{
	bus_write(&mmio, LAYOUT_PCI_ECAM + (slot << 15) + reg, &v, len);
}

TestSuite(pci, .init = setup, .fini = teardown);

Test(pci, host_bridge_via_cf8_and_ecam)
{
	uint32_t addr = 0x80000000u, v = 0;

	bus_write(&pio, PORT_PCI_CONFIG_ADDR, &addr, 4);
	bus_read(&pio, PORT_PCI_CONFIG_DATA, &v, 4);
	cr_assert_eq(v, 0x00081b36u);
	cr_assert_eq(ecam_read(0, PCI_VENDOR_ID, 4), 0x00081b36u);
	/* Class code (bridge/host) via CFC + byte offset 2 of dword 8. */
	addr = 0x80000000u | PCI_CLASS_REVISION;
	bus_write(&pio, PORT_PCI_CONFIG_ADDR, &addr, 4);
	v = 0;
	bus_read(&pio, PORT_PCI_CONFIG_DATA + 2, &v, 2);
	cr_assert_eq(v, 0x0600);
	/* Disabled CONFIG_ADDRESS reads all ones. */
	addr = 0;
	bus_write(&pio, PORT_PCI_CONFIG_ADDR, &addr, 4);
	bus_read(&pio, PORT_PCI_CONFIG_DATA, &v, 4);
	cr_assert_eq(v, 0xffffffffu);
}

Test(pci, empty_slot_reads_all_ones)
{
	cr_assert_eq(ecam_read(7, 0, 4), 0xffffffffu);
	cr_assert_eq(ecam_read(7, 0, 2), 0xffffu);
}

Test(pci, bar_sizing_and_assignment)
{
	uint64_t b0;

	cr_assert_eq(pci_bus_add_device(&pbus, &dev, 3), 0);
	cr_assert_eq(ecam_read(3, PCI_DEVICE_ID, 2), 0x5678);
	/* Firmware-like pre-assignment: naturally aligned inside the window. */
	b0 = pci_bar_address(&dev, 0);
	cr_assert(b0 >= LAYOUT_PCI_MMIO32_START && b0 < LAYOUT_PCI_MMIO32_END);
	cr_assert_eq(b0 % 0x1000, 0);
	cr_assert_eq(pci_bar_address(&dev, 2) % 0x8000, 0);

	ecam_write(3, PCI_BASE_ADDRESS_0, 0xffffffffu, 4);
	cr_assert_eq(ecam_read(3, PCI_BASE_ADDRESS_0, 4), 0xfffff000u);
	ecam_write(3, PCI_BASE_ADDRESS_2, 0xffffffffu, 4);
	ecam_write(3, PCI_BASE_ADDRESS_3, 0xffffffffu, 4);
	cr_assert_eq(ecam_read(3, PCI_BASE_ADDRESS_2, 4), 0xffff8004u);   /* 64-bit type bits */
	cr_assert_eq(ecam_read(3, PCI_BASE_ADDRESS_3, 4), 0xffffffffu);
	ecam_write(3, PCI_BASE_ADDRESS_5, 0xffffffffu, 4);
	cr_assert_eq(ecam_read(3, PCI_BASE_ADDRESS_5, 4), 0xffffffe1u);   /* I/O bit */
	/* Unused BAR and ROM read back 0: not implemented. */
	ecam_write(3, PCI_BASE_ADDRESS_1, 0xffffffffu, 4);
	cr_assert_eq(ecam_read(3, PCI_BASE_ADDRESS_1, 4), 0);
	ecam_write(3, PCI_ROM_ADDRESS, 0xffffffffu, 4);
	cr_assert_eq(ecam_read(3, PCI_ROM_ADDRESS, 4), 0);
}

Test(pci, bar_decodes_only_when_enabled)
{
	uint64_t b0, v = 0;
	uint32_t w = 0xabcd;

	cr_assert_eq(pci_bus_add_device(&pbus, &dev, -1), 0);
	b0 = pci_bar_address(&dev, 0);
	bus_read(&mmio, b0 + 0x10, &v, 4);
	cr_assert_eq(v, 0xffffffffu, "BAR decoded with memory space disabled");
	cr_assert_eq(bdev.reads, 0);

	ecam_write(dev.slot, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	v = 0;
	bus_read(&mmio, b0 + 0x10, &v, 4);
	cr_assert_eq(v, 0x10);
	bus_write(&mmio, b0 + 0x20, &w, 4);
	cr_assert_eq(bdev.last_write_off, 0x20);
	cr_assert_eq(bdev.last_write_val, 0xabcd);

	/* Move the BAR: the old address stops decoding, the new one works. */
	ecam_write(dev.slot, PCI_BASE_ADDRESS_0, (uint32_t)(LAYOUT_PCI_MMIO32_START + 0x100000), 4);
	v = 0;
	bus_read(&mmio, b0 + 0x10, &v, 4);
	cr_assert_eq(v, 0xffffffffu);
	bus_read(&mmio, LAYOUT_PCI_MMIO32_START + 0x100000 + 0x18, &v, 4);
	cr_assert_eq(v, 0x18);

	/* I/O BAR needs the I/O enable bit. */
	v = 0;
	bus_read(&pio, pci_bar_address(&dev, 5) + 4, &v, 2);
	cr_assert_eq(v, 0xffff);
	ecam_write(dev.slot, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_IO, 2);
	bus_read(&pio, pci_bar_address(&dev, 5) + 4, &v, 2);
	cr_assert_eq(v, 4);
}

Test(pci, read_only_fields_and_w1c)
{
	cr_assert_eq(pci_bus_add_device(&pbus, &dev, -1), 0);
	ecam_write(dev.slot, PCI_VENDOR_ID, 0xffffffffu, 4);
	cr_assert_eq(ecam_read(dev.slot, PCI_VENDOR_ID, 4), 0x56781234u);
	dev.cfg[PCI_STATUS + 1] = 0x80;   /* parity error detected */
	ecam_write(dev.slot, PCI_STATUS, 0x8000, 2);
	cr_assert_eq(ecam_read(dev.slot, PCI_STATUS, 2) & 0x8000, 0);
	/* Misaligned access is ignored / reads all ones. */
	cr_assert_eq(ecam_read(dev.slot, 1, 2), 0xffff);
}

Test(pci, capability_list_walk)
{
	uint16_t a, b, c;
	uint8_t at, ids[3];
	int n = 0;

	cr_assert_eq(pci_cap_add(&dev, PCI_CAP_ID_VNDR, 16, &a), 0);
	cr_assert_eq(pci_cap_add(&dev, PCI_CAP_ID_PM, 8, &b), 0);
	cr_assert_eq(pci_cap_add(&dev, PCI_CAP_ID_VNDR, 20, &c), 0);
	cr_assert_eq(pci_bus_add_device(&pbus, &dev, -1), 0);
	cr_assert(ecam_read(dev.slot, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	for (at = (uint8_t)ecam_read(dev.slot, PCI_CAPABILITY_LIST, 1); at && n < 3;
	     at = (uint8_t)ecam_read(dev.slot, at + 1, 1))
		ids[n++] = (uint8_t)ecam_read(dev.slot, at, 1);
	cr_assert_eq(n, 3);
	cr_assert_eq(ids[0], PCI_CAP_ID_VNDR);
	cr_assert_eq(ids[1], PCI_CAP_ID_PM);
	cr_assert_eq(ids[2], PCI_CAP_ID_VNDR);
	cr_assert_eq(pci_cap_find(&dev, PCI_CAP_ID_PM), b);
	cr_assert_eq(pci_cap_find(&dev, PCI_CAP_ID_MSIX), 0);
	cr_assert(a % 4 == 0 && b % 4 == 0 && c % 4 == 0 && a >= 0x40);
	/* Filling config space fails cleanly. */
	uint16_t x;
	int ret = 0;
	for (int i = 0; i < 64 && ret == 0; i++)
		ret = pci_cap_add(&dev, PCI_CAP_ID_VNDR, 32, &x);
	cr_assert_eq(ret, -ENOSPC);
}

static void msix_entry_write(uint64_t table, unsigned vec, unsigned word, uint32_t v)
{
	bus_write(&mmio, table + 16 * vec + 4 * word, &v, 4);
}

static uint64_t pba_read(uint64_t pba)
{
	uint64_t v = 0;

	bus_read(&mmio, pba, &v, 8);
	return v;
}

Test(pci, msix_mask_pending_delivery)
{
	uint64_t bar, table, pba, cnt = 0;
	uint16_t cap, ctrl;

	cr_assert_eq(pci_msix_init(&dev, 4, 2, 0x4000, 0x6000), 0);
	cr_assert_eq(pci_bus_add_device(&pbus, &dev, -1), 0);
	ecam_write(dev.slot, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	bar = pci_bar_address(&dev, 2);
	table = bar + 0x4000;
	pba = bar + 0x6000;
	cap = pci_cap_find(&dev, PCI_CAP_ID_MSIX);
	cr_assert_neq(cap, 0);
	ctrl = (uint16_t)ecam_read(dev.slot, cap + PCI_MSIX_FLAGS, 2);
	cr_assert_eq(ctrl & PCI_MSIX_FLAGS_QSIZE, 3);
	cr_assert_eq(ecam_read(dev.slot, cap + PCI_MSIX_TABLE, 4), 0x4002u);

	/* Disabled: notify only pends. Table entries reset masked. */
	cr_assert_eq(pci_msix_notify(&dev, 1), 1);
	cr_assert_eq(pba_read(pba), 0x2);
	uint32_t ctl = 0;
	bus_read(&mmio, table + 16 + 12, &ctl, 4);
	cr_assert_eq(ctl, 1);

	ecam_write(dev.slot, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, 2);
	cr_assert_eq(irq.route_adds, 0, "masked vector must not be delivered");
	msix_entry_write(table, 1, 0, 0xfee00000);
	msix_entry_write(table, 1, 1, 0);
	msix_entry_write(table, 1, 2, 0x41);
	msix_entry_write(table, 1, 3, 0);   /* unmask: pending vector goes out */
	cr_assert_eq(irq.route_adds, 1);
	cr_assert_eq(irq.last_addr, 0xfee00000u);
	cr_assert_eq(irq.last_data, 0x41);
	cr_assert_eq(irq.irqfd_assigns, 1);
	cr_assert_eq(pba_read(pba), 0);
	cr_assert_eq(read(dev.msix.vec[1].fd, &cnt, 8), 8);
	cr_assert_eq(cnt, 1);

	/* Delivered straight away now. */
	cr_assert_eq(pci_msix_notify(&dev, 1), 0);
	cr_assert_eq(read(dev.msix.vec[1].fd, &cnt, 8), 8);

	/* Function mask pends; clearing it delivers. */
	ecam_write(dev.slot, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL, 2);
	cr_assert_eq(pci_msix_notify(&dev, 1), 1);
	cr_assert_eq(pba_read(pba), 0x2);
	ecam_write(dev.slot, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, 2);
	cr_assert_eq(pba_read(pba), 0);
	cr_assert_eq(read(dev.msix.vec[1].fd, &cnt, 8), 8);

	/* Rewriting the entry updates the existing route, no new GSI. */
	msix_entry_write(table, 1, 2, 0x42);
	cr_assert_eq(irq.route_updates, 1);
	cr_assert_eq(irq.last_data, 0x42);
	cr_assert_eq(irq.route_adds, 1);

	/* PBA is read-only; out-of-range vectors are rejected. */
	uint64_t ones = ~0ULL;
	bus_write(&mmio, pba, &ones, 8);
	cr_assert_eq(pba_read(pba), 0);
	cr_assert_eq(pci_msix_notify(&dev, 4), -EINVAL);
	/* Accesses outside table/PBA reach the device. */
	uint32_t v = 0;
	bus_read(&mmio, bar + 0x100, &v, 4);
	cr_assert_eq(v, 0x100);
}

Test(pci, msix_init_rejects_bad_layout)
{
	cr_assert_eq(pci_msix_init(&dev, 4, 0, 0x0ff8, 0x0800), -EINVAL);   /* table past BAR end */
	cr_assert_eq(pci_msix_init(&dev, 4, 5, 0, 0x10), -EINVAL);          /* I/O BAR */
	cr_assert_eq(pci_msix_init(&dev, 0, 2, 0, 0x100), -EINVAL);
	cr_assert_eq(pci_msix_init(&dev, 4, 1, 0, 0x100), -EINVAL);         /* no such BAR */
}

Test(pci, reset_disables_decoding_and_msix)
{
	uint16_t cap;
	uint64_t bar0, v = 0;

	cr_assert_eq(pci_msix_init(&dev, 2, 2, 0x4000, 0x6000), 0);
	cr_assert_eq(pci_bus_add_device(&pbus, &dev, -1), 0);
	cap = pci_cap_find(&dev, PCI_CAP_ID_MSIX);
	ecam_write(dev.slot, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	ecam_write(dev.slot, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, 2);
	msix_entry_write(pci_bar_address(&dev, 2) + 0x4000, 0, 3, 0);   /* unmask 0 */
	cr_assert(!pci_msix_vector_masked(&dev, 0));
	bar0 = pci_bar_address(&dev, 0);

	pci_device_reset(&dev);
	cr_assert_eq(ecam_read(dev.slot, PCI_COMMAND, 2), 0);
	cr_assert_eq(ecam_read(dev.slot, cap + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_ENABLE, 0);
	cr_assert(pci_msix_vector_masked(&dev, 0));
	cr_assert_eq(pci_bar_address(&dev, 0), bar0, "BAR addresses survive a reset");
	bus_read(&mmio, bar0, &v, 4);
	cr_assert_eq(v, 0xffffffffu, "BAR still decoding after reset");
}

/* The ACPI description follows the bus: a _PRT route for every function
 * whose Interrupt Pin the VMM wired to a GSI, none for the others. */
Test(pci, acpi_prt_routes_follow_the_wiring)
{
	struct pci_device msix_only, unrouted;
	struct acpi_config acpi = { .nr_cpus = 1 };

	cr_assert_eq(pci_bus_add_device(&pbus, &dev, 5), 0);
	dev.cfg[PCI_INTERRUPT_PIN] = 1;            /* INTA# */
	dev.intx_gsi = 18;
	pci_device_init(&msix_only, "msix", NULL, NULL);
	pci_device_init(&unrouted, "unrouted", NULL, NULL);
	cr_assert_eq(msix_only.intx_gsi, -1, "no GSI until the VMM wires one");
	unrouted.cfg[PCI_INTERRUPT_PIN] = 2;       /* a pin, but not wired */
	cr_assert_eq(pci_bus_add_device(&pbus, &msix_only, 7), 0);
	cr_assert_eq(pci_bus_add_device(&pbus, &unrouted, 9), 0);

	pci_vm_acpi_config(&pbus, &acpi);
	cr_assert(acpi.pci);
	cr_assert_eq(acpi.pci_ecam_base, LAYOUT_PCI_ECAM);
	cr_assert_eq(acpi.nr_pci_irqs, 1);
	cr_assert_eq(acpi.pci_irqs[0].slot, 5);
	cr_assert_eq(acpi.pci_irqs[0].pin, 0, "INTA# is pin 0 in _PRT");
	cr_assert_eq(acpi.pci_irqs[0].gsi, 18);
	/* Asked again (a rebuild), the list is not doubled. */
	pci_vm_acpi_config(&pbus, &acpi);
	cr_assert_eq(acpi.nr_pci_irqs, 1);
	pci_vm_acpi_config(NULL, &acpi);
	cr_assert(!acpi.pci);
	cr_assert_eq(acpi.nr_pci_irqs, 0);

	pci_bus_remove_device(&pbus, &msix_only);
	pci_bus_remove_device(&pbus, &unrouted);
	pci_device_destroy(&msix_only);
	pci_device_destroy(&unrouted);
}
