/* pci: list the functions on the bus (diagnostic; passes with none). With
 * expect=VVVV:DDDD the function must be present. */
#include "pci.h"

static int list_cb(const struct pci_dev *d, void *arg)
{
	unsigned *n = arg;

	guest_printf("pci: %02x:%02x.%u %04x:%04x class %02x%02x%02x\n", d->bus, d->dev, d->fn,
		     d->vendor, d->device, d->class_code, d->subclass, d->prog_if);
	(*n)++;
	return 0;
}

static void pci_list(void)
{
	unsigned n = 0;
	const char *expect = param_get("expect");

	pci_for_each(list_cb, &n);
	if (expect) {
		char v[8] = "0x", dv[8] = "0x";
		u64 vendor, device;
		if (strlen(expect) != 9 || expect[4] != ':')
			fail("expect= wants VVVV:DDDD");
		memcpy(v + 2, expect, 4);
		v[6] = 0;
		memcpy(dv + 2, expect + 5, 4);
		dv[6] = 0;
		struct pci_dev d;
		if (!parse_u64(v, &vendor) || !parse_u64(dv, &device) ||
		    pci_find((u16)vendor, (u16)device, 0, &d) != 0)
			fail("no PCI function %s", expect);
		struct msix m;
		if (pci_find_cap(&d, PCI_CAP_ID_MSIX)) {
			if (msix_init(&d, &m) != 0)
				fail("MSI-X capability of %s unusable", expect);
			guest_printf("pci: %s MSI-X %u entries, table 0x%lx pba 0x%lx\n", expect,
				     m.table_size, (unsigned long)m.table, (unsigned long)m.pba);
		}
	}
	guest_printf("pci: %u functions\n", n);
}
SCENARIO("pci", pci_list);
