/* The simplest scenarios: hello and cmdline. */
#include "guest.h"

static void hello(void)
{
	guest_printf("hello from testguest\n");
}
SCENARIO("hello", hello);

/* Echo the command line exactly as the VMM placed it, so tests can compare. */
static void cmdline_echo(void)
{
	guest_printf("cmdline: %s\n", cmdline());
	const char *expect = param_get("expect");
	if (expect && !param_get(expect))
		fail("parameter '%s' not found", expect);
}
SCENARIO("cmdline", cmdline_echo);
