/* PCI configuration access (mechanism #1, ports 0xcf8/0xcfc), enumeration,
 * BARs, capabilities and MSI-X (PCI Local Bus 3.0 §3.2.2.3.2, §6.7, §6.8.2). */
#ifndef TESTGUEST_PCI_H
#define TESTGUEST_PCI_H

#include "guest.h"

#define PCI_VENDOR_ID      0x00
#define PCI_DEVICE_ID      0x02
#define PCI_COMMAND        0x04
#define PCI_STATUS         0x06
#define PCI_CLASS_REVISION 0x08
#define PCI_HEADER_TYPE    0x0e
#define PCI_BAR0           0x10
#define PCI_CAP_PTR        0x34
#define PCI_INTERRUPT_LINE 0x3c

#define PCI_CMD_IO         (1u << 0)
#define PCI_CMD_MEMORY     (1u << 1)
#define PCI_CMD_BUS_MASTER (1u << 2)
#define PCI_CMD_INTX_DISABLE (1u << 10)
#define PCI_STATUS_CAP_LIST (1u << 4)

#define PCI_CAP_ID_MSI     0x05
#define PCI_CAP_ID_VENDOR  0x09
#define PCI_CAP_ID_MSIX    0x11

struct pci_dev {
	u8 bus, dev, fn;
	u16 vendor, device;
	u8 class_code, subclass, prog_if, header_type;
};

u32 pci_read32(const struct pci_dev *d, u16 off);
u16 pci_read16(const struct pci_dev *d, u16 off);
u8 pci_read8(const struct pci_dev *d, u16 off);
void pci_write32(const struct pci_dev *d, u16 off, u32 v);
void pci_write16(const struct pci_dev *d, u16 off, u16 v);
void pci_write8(const struct pci_dev *d, u16 off, u8 v);

/* Walk functions on buses 0..max_bus (max_bus from the pci_max_bus=N
 * parameter, default 0); calls @fn for each present function until it returns
 * non-zero, which is then returned. */
int pci_for_each(int (*fn)(const struct pci_dev *d, void *arg), void *arg);
/* The @nth (0-based) function matching vendor/device (0xffff = any).
 * Returns 0 and fills @out, or -1. */
int pci_find(u16 vendor, u16 device, unsigned nth, struct pci_dev *out);
int pci_find_class(u8 class_code, u8 subclass, unsigned nth, struct pci_dev *out);

/* Offset of capability @id at or after the chain start (0 if absent);
 * pci_find_next_cap continues after @from. */
u8 pci_find_cap(const struct pci_dev *d, u8 id);
u8 pci_find_next_cap(const struct pci_dev *d, u8 id, u8 from);

/* BAR @bar: size it (SDM-style all-ones probe with decoding off), and if a
 * memory BAR is unassigned (0), place it in the 32-bit window
 * 0xc0000000-0xe0000000. Returns the address (0 if the BAR is absent),
 * the size in *size and whether it is I/O in *is_io (both may be NULL). A
 * 64-bit BAR uses slots @bar and @bar+1. */
u64 pci_bar(const struct pci_dev *d, unsigned bar, u64 *size, bool *is_io);
/* Set command bits (PCI_CMD_*) on top of the current ones. */
void pci_enable(const struct pci_dev *d, u16 cmd_bits);

/* ---- MSI-X ---- */
struct msix {
	struct pci_dev dev;
	u8 cap;               /* capability offset */
	u16 table_size;       /* entries */
	u64 table;            /* guest-physical address of the vector table */
	u64 pba;              /* pending bit array */
};
/* Find the capability, resolve table/PBA BARs (assigning if needed), enable
 * memory decoding. All entries start masked. Returns 0 or -1. */
int msix_init(const struct pci_dev *d, struct msix *m);
/* Program entry @idx to deliver @vector to @apic_id (fixed, edge; Intel SDM
 * vol. 3 §10.11 message address/data), leaving its mask as is. */
void msix_set_entry(struct msix *m, u16 idx, u8 vector, u32 apic_id);
void msix_mask(struct msix *m, u16 idx, bool masked);
bool msix_pending(struct msix *m, u16 idx);
/* MSI-X Enable (and clear Function Mask); also disables INTx. */
void msix_enable(struct msix *m, bool on);

#endif
