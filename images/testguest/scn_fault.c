/* fault: raise an exception on purpose (kind=de|pf|ud, default pf) so tests
 * can see the exception report: "FAIL fault: exception N (...) ... rip=...". */
#include "guest.h"

/* Above every RAM range we ever map: the PDPT has no entry for 256 GiB. */
#define UNMAPPED_ADDR 0x4000000000ULL

static void fault(void)
{
	const char *kind = param_get("kind");

	if (!kind || !strcmp(kind, "pf")) {
		(void)*(volatile u64 *)UNMAPPED_ADDR;
	} else if (!strcmp(kind, "de")) {
		volatile u32 zero = 0;
		u32 q = 1;
		__asm__ volatile("divl %1" : "+a"(q) : "r"(zero) : "rdx");
	} else if (!strcmp(kind, "ud")) {
		__asm__ volatile("ud2");
	}
	fail("no exception for kind=%s", kind ? kind : "pf");
}
SCENARIO("fault", fault);
