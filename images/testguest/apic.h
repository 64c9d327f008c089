/* Local APIC (xAPIC MMIO at 0xfee00000) and IOAPIC (0xfec00000). */
#ifndef TESTGUEST_APIC_H
#define TESTGUEST_APIC_H

#include "guest.h"

#define VEC_SPURIOUS 0xff

/* Software-enable this CPU's LAPIC (SVR, spurious vector 0xff), TPR 0. */
void lapic_init(void);
u32 lapic_id(void);
void lapic_eoi(void);

/* Timer (SDM vol. 3 §10.5.4). @divide is 1,2,4,...,128. Counts run at the
 * bus clock (1 GHz on KVM); calibrate with time_us() if it matters. */
void lapic_timer_periodic(u8 vector, u32 count, u32 divide);
void lapic_timer_oneshot(u8 vector, u32 count, u32 divide);
void lapic_timer_stop(void);
u32 lapic_timer_current(void);

/* IPIs (ICR, SDM vol. 3 §10.6.1). */
void lapic_send_ipi(u32 apic_id, u8 vector);
void lapic_send_self_ipi(u8 vector);
void lapic_send_init_all_but_self(void);
void lapic_send_sipi_all_but_self(u8 page);

/* IOAPIC redirection (82093AA datasheet §3.2.4). */
#define IOAPIC_LEVEL      (1u << 15)
#define IOAPIC_ACTIVE_LOW (1u << 13)
#define IOAPIC_MASKED     (1u << 16)
u32 ioapic_pins(void);
/* Route pin @gsi to @vector on @apic_id (fixed delivery, physical). */
void ioapic_route(u32 gsi, u8 vector, u32 apic_id, u32 flags);
void ioapic_mask(u32 gsi, bool masked);

#endif
