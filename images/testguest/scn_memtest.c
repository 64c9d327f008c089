/* memtest: memory, a counter, the timer and interrupt delivery stay
 * continuous while the VMM pauses, snapshots or migrates the guest.
 *
 * Every vCPU owns every Nth page of free RAM (N = CPUs) and, pass after pass,
 * checks the word the previous pass left in each page, then writes the word
 * for this pass (one word per page: the guest runs emulated, so its own work
 * stays small). Between chunks of pages it also checks that a shared counter
 * only grows, the TSC never goes back, LAPIC timer ticks keep arriving and a
 * self-IPI sent now and then arrives. The guest cannot see a pause directly:
 * it sees a jump between two consecutive TSC readings; the longest one is
 * reported as max_gap_us, the guest-visible downtime.
 *
 * Each CPU completes at least MIN_PASSES passes; passes= in the PASS line
 * is the fewest full passes any CPU made.
 *
 * Parameters: seconds=N (guest TSC time, default 5), period_us=P (timer
 * period, default 2000), cpus=N (fallback when there is no MADT),
 * inject=memory|timer|ipi (self-test: break that property on CPU 0 from the
 * second pass on, and run until a check fails (no time limit), so the run
 * must FAIL; proves each check can fail). */
#include "apic.h"
#include "idt.h"
#include "smp.h"

#define VEC_MT_TIMER 0x50
#define VEC_MT_IPI   0x51
#define LAPIC_COUNTS_PER_US 1000    /* KVM's LAPIC bus clock: 1 GHz */
#define LAPIC_DIVIDE 16
#define PAGES_PER_CHUNK 16
#define MAX_RANGES 16
#define MIB (1ULL << 20)
/* Every CPU completes this many passes whatever seconds= says, so at least
 * one full pass re-checked the pattern of the one before. */
#define MIN_PASSES 2

/* Active-time accounting: a single TSC jump longer than this is a pause (or
 * the host descheduling us) and does not count against tick/IPI deadlines. */
#define ACTIVE_CLAMP_US 20000
#define IPI_INTERVAL_US 50000
#define IPI_DEADLINE_US 200000
#define TICK_DEADLINE_MIN_US 200000

struct mt_range {
	u64 start, pages;
	u64 first_index;     /* global page index of the first page */
};

struct mt_cpu {
	volatile u64 ticks;
	volatile u64 ipis;
	u64 passes;          /* started */
	u64 completed;       /* finished in full */
	u64 max_gap_tsc;
	u64 active_us;
	volatile bool done;
};

static struct mt_range ranges[MAX_RANGES];
static u32 nr_ranges;
static u64 total_pages;
static u32 nr_cpus;
static u64 period_us;
static u64 tick_deadline_us;
static u64 start_tsc, end_tsc;
static volatile bool go, stop;
static volatile u64 shared_counter;
static enum { INJECT_NONE, INJECT_MEMORY, INJECT_TIMER, INJECT_IPI } inject;
static volatile bool ipi_drop;
static struct mt_cpu cpus[MAX_CPUS];

static inline u64 pattern(u64 addr, u64 pass)
{
	return (addr * 0x9e3779b97f4a7c15ULL) ^ (pass << 1) ^ 0xa5a5a5a5ULL;
}

/* The word checked in each page moves with the page index, so pages that
 * alias (wrong mapping) are caught too. */
static inline u64 *page_word(u64 page_addr, u64 index)
{
	return (u64 *)(page_addr + (index % 512) * 8);
}

static void mt_timer(struct int_frame *f)
{
	cpus[cpu_index()].ticks++;
	lapic_eoi();
}

static void mt_ipi(struct int_frame *f)
{
	if (!ipi_drop)
		cpus[cpu_index()].ipis++;
	lapic_eoi();
}

struct mt_watch {
	u64 last_tsc;
	u64 active_tsc;
	u64 seen_ticks, active_at_tick;
	u64 ipis_sent, active_at_ipi;
	u64 counter_last;
	u64 clamp_tsc, tick_deadline_tsc, ipi_interval_tsc, ipi_deadline_tsc;
};

static void watch_init(struct mt_watch *w)
{
	u64 per_us = tsc_hz() / 1000000;

	memset(w, 0, sizeof(*w));
	w->last_tsc = rdtsc();
	w->clamp_tsc = ACTIVE_CLAMP_US * per_us;
	w->tick_deadline_tsc = tick_deadline_us * per_us;
	w->ipi_interval_tsc = IPI_INTERVAL_US * per_us;
	w->ipi_deadline_tsc = IPI_DEADLINE_US * per_us;
}

/* One observation point: time, counter, timer, IPI. Fails the run on any
 * discontinuity. */
static void watch_observe(struct mt_watch *w, struct mt_cpu *c, u32 me)
{
	u64 now = rdtsc();

	if (now < w->last_tsc)
		fail("cpu %u: TSC went back from 0x%lx to 0x%lx", me, (unsigned long)w->last_tsc,
		     (unsigned long)now);
	u64 d = now - w->last_tsc;
	w->last_tsc = now;
	if (d > c->max_gap_tsc)
		c->max_gap_tsc = d;
	w->active_tsc += d < w->clamp_tsc ? d : w->clamp_tsc;

	u64 v = __atomic_add_fetch(&shared_counter, 1, __ATOMIC_SEQ_CST);
	if (v <= w->counter_last)
		fail("cpu %u: counter went back from %lu to %lu", me, (unsigned long)w->counter_last,
		     (unsigned long)v);
	w->counter_last = v;

	u64 ticks = c->ticks;
	if (ticks != w->seen_ticks) {
		w->seen_ticks = ticks;
		w->active_at_tick = w->active_tsc;
	} else if (w->active_tsc - w->active_at_tick > w->tick_deadline_tsc) {
		fail("cpu %u: no timer tick for %lu us of running time (after %lu ticks)", me,
		     (unsigned long)tsc_to_us(w->active_tsc - w->active_at_tick), (unsigned long)ticks);
	}

	u64 ipis = c->ipis;
	if (ipis == w->ipis_sent) {
		if (w->active_tsc - w->active_at_ipi > w->ipi_interval_tsc) {
			w->ipis_sent++;
			w->active_at_ipi = w->active_tsc;
			lapic_send_self_ipi(VEC_MT_IPI);
		}
	} else if (w->active_tsc - w->active_at_ipi > w->ipi_deadline_tsc) {
		fail("cpu %u: self-IPI %lu lost (%lu arrived)", me, (unsigned long)w->ipis_sent,
		     (unsigned long)ipis);
	}

	/* With a fault injected the run must end in FAIL, however slow the host:
	 * ignore the time limit and let the broken property's check fire. */
	if (me == 0 && inject == INJECT_NONE && (long long)(now - end_tsc) >= 0)
		stop = true;
}

static inline bool mt_should_stop(const struct mt_cpu *c)
{
	return stop && c->completed >= MIN_PASSES;
}

/* Check the previous pass's word and write this pass's in each of this
 * CPU's pages of @r, observing between chunks. Returns false when told to stop. */
static bool mt_range_pass(const struct mt_range *r, u32 me, u64 pass, struct mt_watch *w,
			  struct mt_cpu *c)
{
	/* First page of the range owned by this CPU: index % nr_cpus == me. */
	u64 skip = (me + nr_cpus - r->first_index % nr_cpus) % nr_cpus;
	unsigned chunk = 0;

	for (u64 p = skip; p < r->pages; p += nr_cpus) {
		u64 index = r->first_index + p;
		u64 addr = r->start + p * PAGE_SIZE;
		volatile u64 *word = page_word(addr, index);
		if (pass > 1 && *word != pattern(addr, pass - 1))
			fail("cpu %u pass %lu: page 0x%lx holds 0x%lx, expected 0x%lx", me,
			     (unsigned long)pass, (unsigned long)addr, (unsigned long)*word,
			     (unsigned long)pattern(addr, pass - 1));
		*word = pattern(addr, pass);
		if (++chunk == PAGES_PER_CHUNK) {
			chunk = 0;
			watch_observe(w, c, me);
			if (mt_should_stop(c))
				return false;
		}
	}
	watch_observe(w, c, me);
	return true;
}

static void mt_inject_fault(void)
{
	switch (inject) {
	case INJECT_MEMORY: {
		/* CPU 0 owns the first page of range 0 when its index is 0 mod N. */
		const struct mt_range *r = &ranges[0];
		u64 p = (nr_cpus - r->first_index % nr_cpus) % nr_cpus;
		*page_word(r->start + p * PAGE_SIZE, r->first_index + p) ^= 1;
		break;
	}
	case INJECT_TIMER:
		lapic_timer_stop();
		break;
	case INJECT_IPI:
		ipi_drop = true;
		break;
	case INJECT_NONE:
		break;
	}
}

static void mt_run(u32 me)
{
	struct mt_cpu *c = &cpus[me];
	struct mt_watch w;

	while (!go)
		cpu_relax();
	lapic_timer_periodic(VEC_MT_TIMER, (u32)(period_us * LAPIC_COUNTS_PER_US / LAPIC_DIVIDE),
			     LAPIC_DIVIDE);
	irq_enable();
	watch_init(&w);
	while (!mt_should_stop(c)) {
		bool whole = true;
		c->passes++;
		if (me == 0 && c->passes == 2)
			mt_inject_fault();
		for (u32 i = 0; i < nr_ranges && whole; i++)
			whole = mt_range_pass(&ranges[i], me, c->passes, &w, c);
		if (whole)
			c->completed++;
	}
	c->active_us = tsc_to_us(w.active_tsc);

	/* The timer must have kept a plausible rate over the running time: at
	 * least an eighth of the nominal ticks. Emulation and host load make
	 * ticks late (KVM keeps one pending), never early; a restored timer with
	 * a wrong divider or count would be off by far more. */
	u64 nominal = c->active_us / period_us;
	if (c->active_us > 500000 && c->ticks * 8 < nominal)
		fail("cpu %u: %lu timer ticks in %lu us of running time, expected about %lu", me,
		     (unsigned long)c->ticks, (unsigned long)c->active_us, (unsigned long)nominal);
	__atomic_store_n(&c->done, true, __ATOMIC_RELEASE);
}

static void mt_ap_entry(u32 index)
{
	mt_run(index);
}

/* Free RAM: every RAM range at or above the allocator's top (everything below
 * holds the image, the heap, AP stacks and page tables). */
static void mt_collect_ranges(void)
{
	u32 n;
	const struct hvm_memmap_entry *e = memmap(&n);
	u64 floor = ALIGN_UP(heap_top(), PAGE_SIZE);

	if (!e || !n)
		fail("no memory map");
	for (u32 i = 0; i < n && nr_ranges < MAX_RANGES; i++) {
		if (e[i].type != E820_RAM)
			continue;
		u64 s = ALIGN_UP(e[i].addr, PAGE_SIZE), t = (e[i].addr + e[i].size) & ~(PAGE_SIZE - 1);
		if (s < floor)
			s = floor;
		if (s < MIB || t <= s)
			continue;
		ranges[nr_ranges].start = s;
		ranges[nr_ranges].pages = (t - s) / PAGE_SIZE;
		ranges[nr_ranges].first_index = total_pages;
		total_pages += ranges[nr_ranges].pages;
		nr_ranges++;
	}
	if (!total_pages)
		fail("no free RAM to test");
}

static void memtest(void)
{
	u64 seconds = param_u64("seconds", 5);
	u64 hz = tsc_hz();

	const char *inj = param_get("inject");
	if (inj)
		inject = !strcmp(inj, "memory") ? INJECT_MEMORY
			 : !strcmp(inj, "timer") ? INJECT_TIMER
			 : !strcmp(inj, "ipi")   ? INJECT_IPI
						 : INJECT_NONE;
	period_us = param_u64("period_us", 2000);
	if (!period_us)
		period_us = 2000;
	tick_deadline_us = period_us * 50 > TICK_DEADLINE_MIN_US ? period_us * 50 : TICK_DEADLINE_MIN_US;

	idt_set_handler(VEC_MT_TIMER, mt_timer);
	idt_set_handler(VEC_MT_IPI, mt_ipi);
	u32 expected = smp_expected_cpus();
	nr_cpus = smp_start(mt_ap_entry, expected, 3000000);
	if (nr_cpus != expected)
		fail("%u of %u CPUs checked in", nr_cpus, expected);
	if (ram_top() > GUEST_HIGH_RAM_START && map_high_ram(ram_top()) != 0)
		fail("cannot map RAM above 4 GiB");
	mt_collect_ranges();
	guest_printf("memtest: %u CPUs, %lu pages in %u ranges, %lu s, timer %lu us\n", nr_cpus,
		     (unsigned long)total_pages, nr_ranges, (unsigned long)seconds,
		     (unsigned long)period_us);

	start_tsc = rdtsc();
	end_tsc = start_tsc + seconds * hz;
	__atomic_store_n(&go, true, __ATOMIC_RELEASE);
	mt_run(0);

	/* Wait for the APs (they may still owe MIN_PASSES passes); one that
	 * stops moving the shared counter for 2 s is stuck. */
	for (u32 i = 1; i < nr_cpus; i++) {
		u64 seen = shared_counter, since = rdtsc();
		while (!cpus[i].done) {
			if (shared_counter != seen) {
				seen = shared_counter;
				since = rdtsc();
			} else if (rdtsc() - since > 2 * hz) {
				fail("cpu %u stopped making progress", i);
			}
			cpu_relax();
		}
	}

	u64 max_gap = 0, passes = ~0ULL, ticks = 0;
	for (u32 i = 0; i < nr_cpus; i++) {
		if (cpus[i].max_gap_tsc > max_gap)
			max_gap = cpus[i].max_gap_tsc;
		if (cpus[i].completed < passes)
			passes = cpus[i].completed;
		ticks += cpus[i].ticks;
	}
	pass_with("max_gap_us=%lu passes=%lu pages=%lu cpus=%u ticks=%lu",
		  (unsigned long)tsc_to_us(max_gap), (unsigned long)passes,
		  (unsigned long)total_pages, nr_cpus, (unsigned long)ticks);
}
SCENARIO("memtest", memtest);
