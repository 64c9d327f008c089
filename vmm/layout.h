/* Guest-physical address map for x86_64 guests. One place, so the boot
 * loaders, ACPI tables, devices and the test guest agree.
 *
 *   0x0000_0000  real-mode IVT / BDA (left zero)
 *   0x0000_6000  GDT written by the VMM for 32/64-bit entry
 *   0x0000_7000  boot_params (Linux zero page) or hvm_start_info (PVH)
 *   0x0000_8000  PVH memory map / module list
 *   0x0000_9000  identity page tables for Linux 64-bit entry (PML4, PDPT, PDs)
 *   0x0002_0000  kernel command line (up to 64 KiB)
 *   0x0009_fc00  top of conventional memory (EBDA above, reserved)
 *   0x000e_0000  ACPI tables (RSDP first), up to 0x000f_ffff
 *   0x0010_0000  kernel image (1 MiB)
 *   ...          RAM up to min(memory, MMIO gap start)
 *   0xc000_0000  MMIO gap: 32-bit PCI BAR window
 *   0xe000_0000  PCI ECAM (MMCONFIG), one bus = 1 MiB
 *   0xfec0_0000  IOAPIC
 *   0xfee0_0000  LAPIC
 *   4 GiB        RAM above the gap (if memory > gap start)
 */
#ifndef VMM_LAYOUT_H
#define VMM_LAYOUT_H

#define LAYOUT_GDT            0x6000ULL
#define LAYOUT_BOOT_INFO      0x7000ULL   /* boot_params or hvm_start_info */
#define LAYOUT_PVH_MEMMAP     0x8000ULL
#define LAYOUT_PAGE_TABLES    0x9000ULL   /* PML4 at +0, PDPT at +0x1000, PDs from +0x2000 */
#define LAYOUT_PAGE_TABLES_END 0x10000ULL
#define LAYOUT_CMDLINE        0x20000ULL
#define LAYOUT_CMDLINE_MAX    0x10000ULL
#define LAYOUT_EBDA_START     0x9fc00ULL
#define LAYOUT_ACPI_START     0xe0000ULL
#define LAYOUT_ACPI_END       0x100000ULL
#define LAYOUT_KERNEL_START   0x100000ULL

#define LAYOUT_MMIO_GAP_START 0xc0000000ULL
#define LAYOUT_MMIO_GAP_END   0x100000000ULL
#define LAYOUT_PCI_MMIO32_START 0xc0000000ULL
#define LAYOUT_PCI_MMIO32_END   0xe0000000ULL
#define LAYOUT_PCI_ECAM       0xe0000000ULL
#define LAYOUT_PCI_ECAM_SIZE  0x10000000ULL  /* 256 buses */
#define LAYOUT_IOAPIC         0xfec00000ULL
#define LAYOUT_LAPIC          0xfee00000ULL
#define LAYOUT_HIGH_RAM_START 0x100000000ULL

/* I/O ports. */
#define PORT_COM1             0x3f8
#define IRQ_COM1              4
#define PORT_I8042_DATA       0x60
#define PORT_I8042_CMD        0x64
#define PORT_DEBUG_EXIT       0xf4       /* where QEMU's isa-debug-exit sits */
#define PORT_ACPI_PM_BASE     0x600      /* hardware-reduced ACPI sleep/reset registers */
#define PORT_ACPI_SLEEP_CTL   0x600      /* FADT SLEEP_CONTROL_REG (1 byte) */
#define PORT_ACPI_SLEEP_STS   0x601      /* FADT SLEEP_STATUS_REG (1 byte) */
#define PORT_ACPI_RESET       0x602      /* FADT RESET_REG (1 byte) */
#define ACPI_RESET_VALUE      0x1
#define ACPI_S5_TYPE          5          /* SLP_TYPx the DSDT _S5 object advertises */
#define PORT_PCI_CONFIG_ADDR  0xcf8
#define PORT_PCI_CONFIG_DATA  0xcfc

#endif
