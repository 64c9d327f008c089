/* snapcheck: a memory pattern that must survive snapshot/restore.
 * Each round fills `pages` pages with a sequence from a per-round LCG seed,
 * then verifies it; a snapshot taken at any moment and restored elsewhere
 * must let every round verify. The integration tests prefer `memtest` when
 * the test guest has it. Params: pages=N (default 64), rounds=N (default 4). */
#include "guest.h"

static u64 lcg_next(u64 x)
{
	return x * 6364136223846793005ULL + 1442695040888963407ULL;
}

static void snapcheck(void)
{
	u64 pages = param_u64("pages", 64), rounds = param_u64("rounds", 4);
	u64 *buf = page_alloc(pages);
	u64 words = pages * 4096 / 8;

	if (!buf)
		fail("cannot allocate %llu pages", (unsigned long long)pages);
	for (u64 r = 0; r < rounds; r++) {
		u64 x = 0x9e3779b97f4a7c15ULL + r;

		for (u64 i = 0; i < words; i++)
			buf[i] = x = lcg_next(x);
		x = 0x9e3779b97f4a7c15ULL + r;
		for (u64 i = 0; i < words; i++) {
			x = lcg_next(x);
			if (buf[i] != x)
				fail("round %llu: word %llu changed", (unsigned long long)r, (unsigned long long)i);
		}
		guest_printf("snapcheck: round %llu ok\n", (unsigned long long)r);
	}
}
SCENARIO("snapcheck", snapcheck);
