/* The test guest runtime: what a scenario may use. Freestanding C, long mode,
 * identity-mapped (virtual == physical below 4 GiB, and above once
 * map_high_ram() ran). See README.md for an overview. */
#ifndef TESTGUEST_GUEST_H
#define TESTGUEST_GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout_guest.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((u64)(a) - 1))
#define PAGE_SIZE 4096UL

/* ---- Scenarios. Register from any new .c file:
 *     static void my_test(void) { ... pass(); }
 *     SCENARIO("mytest", my_test);
 * The descriptor lands in the .scenarios section, which main() walks. If the
 * function returns, the scenario passes. ---- */
struct scenario {
	const char *name;
	void (*run)(void);
};
#define SCENARIO(name_, fn_)                                                      \
	static const struct scenario __scenario_##fn_                             \
		__attribute__((used, section(".scenarios"), aligned(8))) = { name_, fn_ }

/* Name of the running scenario (for messages). */
const char *scenario_name(void);

/* ---- Ending the run: print "PASS <name>[ extra]" or "FAIL <name>: reason",
 * then write the status to the debug-exit port (0 = pass, 1 = fail). ---- */
__attribute__((noreturn)) void pass(void);
__attribute__((noreturn, format(printf, 1, 2))) void pass_with(const char *fmt, ...);
__attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...);
/* Raw exit: status to port 0xf4, then halt forever if nobody listens. */
__attribute__((noreturn)) void guest_exit(u32 status);

/* ---- Console (COM1, polled). Output is line-buffered per call. ---- */
__attribute__((format(printf, 1, 2))) int guest_printf(const char *fmt, ...);
int guest_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
__attribute__((format(printf, 3, 4))) int guest_snprintf(char *buf, size_t size, const char *fmt, ...);
void serial_write(const char *s, size_t len);

/* ---- Kernel command line: "test=NAME key=value flag ...". ---- */
const char *cmdline(void);                      /* as given, unmodified */
const char *param_get(const char *key);         /* value, "" for a bare flag, NULL if absent */
u64 param_u64(const char *key, u64 def);        /* decimal or 0x-hex; def if absent/invalid */
bool parse_u64(const char *s, u64 *out);

/* ---- PVH boot information (Xen public/arch-x86/hvm/start_info.h). ---- */
#define HVM_START_MAGIC 0x336ec578
#define E820_RAM 1
struct hvm_memmap_entry {
	u64 addr;
	u64 size;
	u32 type;
	u32 reserved;
};
struct hvm_start_info {
	u32 magic;
	u32 version;
	u32 flags;
	u32 nr_modules;
	u64 modlist_paddr;
	u64 cmdline_paddr;
	u64 rsdp_paddr;
	u64 memmap_paddr;
	u32 memmap_entries;
	u32 reserved;
};
const struct hvm_start_info *start_info(void);
/* Memory map (version >= 1); *count = 0 if absent. */
const struct hvm_memmap_entry *memmap(u32 *count);
/* End of RAM the guest may use freely: highest type-1 byte + 1. */
u64 ram_top(void);

/* ---- Port I/O, MMIO, MSRs, CPU. ---- */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline u8 mmio_read8(u64 a) { return *(volatile u8 *)a; }
static inline u16 mmio_read16(u64 a) { return *(volatile u16 *)a; }
static inline u32 mmio_read32(u64 a) { return *(volatile u32 *)a; }
static inline u64 mmio_read64(u64 a) { return *(volatile u64 *)a; }
static inline void mmio_write8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline void mmio_write16(u64 a, u16 v) { *(volatile u16 *)a = v; }
static inline void mmio_write32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void mmio_write64(u64 a, u64 v) { *(volatile u64 *)a = v; }

static inline u64 rdmsr(u32 msr)
{
	u32 lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 msr, u64 v)
{
	__asm__ volatile("wrmsr" ::"c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}
static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}
static inline void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static inline void irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
/* sti;hlt: the interrupt shadow of sti makes the pair race-free. */
static inline void irq_enable_and_halt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

/* ---- A tiny spinlock (used by the console across vCPUs). ---- */
struct spinlock { volatile u32 locked; };
void spin_lock(struct spinlock *l);
void spin_unlock(struct spinlock *l);

/* ---- Memory: page-aligned bump allocator from the end of the image up
 * (below the first RAM hole). Memory is zeroed. Never freed. NULL if out. ---- */
void *page_alloc(u64 pages);
u64 heap_top(void);                 /* first byte not handed out yet */
/* Identity-map guest-physical [4 GiB, end) with 2 MiB pages (allocates page
 * directories). Idempotent; returns 0 or -1. */
int map_high_ram(u64 end);

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t memscan(const void *s, int c, size_t n);   /* index of the first @c, or n */
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* ---- Time: TSC, calibrated once (lazily) against PIT channel 2. ---- */
u64 tsc_hz(void);                   /* calibrates on first call (~2 ms) */
u64 time_us(void);                  /* microseconds since calibration */
u64 tsc_to_us(u64 tsc_delta);
void udelay(u64 us);                /* busy-waits: keep short, guests run emulated */

/* ---- Per-CPU. Index 0 is the BSP; APs get 1.. in check-in order. ---- */
u32 cpu_index(void);
u32 cpu_count(void);                /* CPUs running the runtime (1 until smp_start) */

#endif
