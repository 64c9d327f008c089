/* Addresses and selectors shared by the assembly and C parts of the guest.
 * The guest-physical map itself is vmm/layout.h; the guest is freestanding and
 * does not include VMM headers, so the few values it needs are repeated here. */
#ifndef TESTGUEST_LAYOUT_GUEST_H
#define TESTGUEST_LAYOUT_GUEST_H

#define GDT_CODE64       0x08
#define GDT_DATA         0x10
#define GDT_CODE32       0x18

/* Free low RAM between the VMM's page-table area (ends 0x10000) and the
 * command line (0x20000): the SIPI target must sit below 1 MiB. */
#define TRAMPOLINE_ADDR  0x10000

/* Interrupt stubs: 16 bytes per vector from here (first thing in the image). */
#define ISR_BASE         0x100000

#define BSP_STACK_SIZE   16384
#define AP_STACK_SIZE    8192
#define MAX_CPUS         64

#define GUEST_LAPIC_BASE  0xfee00000UL
#define GUEST_IOAPIC_BASE 0xfec00000UL
#define GUEST_MMIO_GAP_START 0xc0000000UL
#define GUEST_HIGH_RAM_START 0x100000000UL
#define GUEST_PORT_COM1   0x3f8
#define GUEST_PORT_DEBUG_EXIT 0xf4

#endif
