/* TSC time source, calibrated once against PIT channel 2 (8254 datasheet:
 * mode 0, gate via port 0x61 bit 0, OUT2 readable at port 0x61 bit 5). */
#include "guest.h"

#define PIT_HZ 1193182ULL
#define PIT_CH2 0x42
#define PIT_CMD 0x43
#define PORT_SPEAKER 0x61
#define SPEAKER_GATE2 0x01
#define SPEAKER_DATA  0x02
#define CALIBRATE_MS 5
#define CALIBRATE_MAX_POLLS 100000
#define CALIBRATE_TRIES 8
#define CALIBRATE_MAX_ERR_PCT 2

static volatile u64 tsc_freq;
static u64 tsc_origin;
static struct spinlock calib_lock;

/* Read channel 2's current count with a counter-latch command (8254 §"Read
 * operations"): reading the count works whether or not port 0x61 (gate and
 * OUT2) exists; QEMU's microvm, for one, has no port 0x61. */
static u16 pit_ch2_read(void)
{
	outb(PIT_CMD, 0x80);           /* latch channel 2 */
	u8 lo = inb(PIT_CH2);
	u8 hi = inb(PIT_CH2);
	return (u16)(lo | (hi << 8));
}

/* A PIT count and the TSC when it was latched, known to within *err TSC
 * ticks: the vCPU may be descheduled anywhere, also between the two reads. */
static u16 pit_sample(u64 *tsc, u64 *err)
{
	u64 a = rdtsc();
	u16 c = pit_ch2_read();
	u64 b = rdtsc();

	*tsc = a + (b - a) / 2;
	*err = b - a;
	return c;
}

/* One CALIBRATE_MS window; *err gets the TSC uncertainty of its two ends. */
static u64 calibrate_pit_once(u64 *err)
{
	const u16 start = 0xffff;
	const u32 window = (u32)(PIT_HZ * CALIBRATE_MS / 1000);
	u8 spk = inb(PORT_SPEAKER);
	u64 t0, e0, t1, e1;

	/* Gate 2 high, speaker off (no effect where the port is absent). */
	outb(PORT_SPEAKER, (u8)((spk & ~SPEAKER_DATA) | SPEAKER_GATE2));
	outb(PIT_CMD, 0xb0);           /* channel 2, lo/hi byte, mode 0, binary */
	outb(PIT_CH2, (u8)start);
	outb(PIT_CH2, (u8)(start >> 8));

	/* Counting starts with the count write; time from the first change. */
	u16 c0 = pit_sample(&t0, &e0);
	*err = 0;                      /* 0 and no result: no PIT counting here */
	for (u32 i = 0; i < CALIBRATE_MAX_POLLS; i++) {
		u16 c = pit_sample(&t1, &e1);
		if (c > c0) {              /* wrapped: descheduled for > 55 ms, try again */
			*err = ~0ULL;
			return 0;
		}
		if ((u32)(c0 - c) >= window) {
			*err = e0 + e1;
			return (t1 - t0) * PIT_HZ / (u32)(c0 - c);
		}
	}
	return 0;
}

/* A host that deschedules the vCPU between a PIT read and its TSC read
 * (a loaded host does, for tens of ms) would skew one window by that much:
 * 45 ms late on a 5 ms window made "4 s" last 40. So each end of the window
 * is bracketed by TSC reads, a window is kept only if both brackets are
 * tight (CALIBRATE_MAX_ERR_PCT of the window), and otherwise the tightest
 * of CALIBRATE_TRIES windows wins. */
static u64 calibrate_pit(void)
{
	u64 best = 0, best_err = ~0ULL;

	for (u32 i = 0; i < CALIBRATE_TRIES; i++) {
		u64 err = 0, hz = calibrate_pit_once(&err);
		u64 window_tsc = hz * CALIBRATE_MS / 1000;

		if (!hz && !err)
			break;                 /* no PIT */
		if (!hz)
			continue;
		if (err * 100 <= window_tsc * CALIBRATE_MAX_ERR_PCT)
			return hz;
		if (err < best_err) {
			best = hz;
			best_err = err;
		}
	}
	return best;
}

/* CPUID 0x40000010 (hypervisor timing leaf: TSC kHz) or 0x16 (base MHz). */
static u64 calibrate_cpuid(void)
{
	u32 a, b, c, d;

	cpuid(0x40000000, 0, &a, &b, &c, &d);
	if (a >= 0x40000010 && a < 0x40000100) {
		cpuid(0x40000010, 0, &a, &b, &c, &d);
		if (a)
			return (u64)a * 1000;
	}
	cpuid(0, 0, &a, &b, &c, &d);
	if (a >= 0x16) {
		cpuid(0x16, 0, &a, &b, &c, &d);
		if (a)
			return (u64)a * 1000000;
	}
	return 1000000000ULL;   /* a guess; time is then approximate */
}

u64 tsc_hz(void)
{
	if (tsc_freq)
		return tsc_freq;
	spin_lock(&calib_lock);
	if (!tsc_freq) {
		u64 hz = calibrate_pit();
		if (!hz)
			hz = calibrate_cpuid();
		tsc_origin = rdtsc();
		__atomic_store_n(&tsc_freq, hz, __ATOMIC_RELEASE);
	}
	spin_unlock(&calib_lock);
	return tsc_freq;
}

u64 tsc_to_us(u64 delta)
{
	u64 hz = tsc_hz();

	/* Split to avoid overflow of delta * 1e6 for long intervals. */
	return delta / hz * 1000000 + (delta % hz) * 1000000 / hz;
}

u64 time_us(void)
{
	tsc_hz();   /* sets tsc_origin */
	return tsc_to_us(rdtsc() - tsc_origin);
}

void udelay(u64 us)
{
	u64 end = rdtsc() + us * tsc_hz() / 1000000;

	while ((long long)(end - rdtsc()) > 0)
		cpu_relax();
}
