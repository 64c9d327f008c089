/* The VM config model: defaults and the validator's messages. */
#include <criterion/criterion.h>
#include <string.h>

#include "vmm/config.h"

static void expect_invalid(const struct vm_config *cfg, const char *needle)
{
	char err[256] = "";

	cr_assert_lt(config_validate(cfg, err, sizeof(err)), 0);
	cr_assert(strstr(err, needle), "message '%s' should mention '%s'", err, needle);
}

Test(config, defaults_need_only_a_kernel)
{
	struct vm_config cfg;
	char err[256];

	config_init(&cfg);
	cr_assert_eq(cfg.cpus, 1);
	cr_assert_eq(cfg.memory_mib, CONFIG_DEFAULT_MEMORY_MIB);
	expect_invalid(&cfg, "kernel");
	cfg.kernel = strdup("k");
	cr_assert_eq(config_validate(&cfg, err, sizeof(err)), 0);
	config_free(&cfg);
}

Test(config, ranges_are_checked)
{
	struct vm_config cfg;

	config_init(&cfg);
	cfg.kernel = strdup("k");
	cfg.cpus = 0;
	expect_invalid(&cfg, "cpus");
	cfg.cpus = CONFIG_MAX_CPUS + 1;
	expect_invalid(&cfg, "cpus");
	cfg.cpus = 1;
	cfg.memory_mib = 1;
	expect_invalid(&cfg, "memory");
	cfg.memory_mib = 64;
	cfg.nr_nets = 1;
	expect_invalid(&cfg, "net[0]");
	strcpy(cfg.nets[0].ifname, "tap0");
	cfg.nets[0].has_mac = true;
	cfg.nets[0].mac[0] = 0x01;
	expect_invalid(&cfg, "multicast");
	cfg.nets[0].mac[0] = 0x52;
	cfg.nets[0].iommu = true;
	expect_invalid(&cfg, "--iommu");
	config_free(&cfg);
}

Test(config, console_parsing)
{
	struct vm_config cfg;
	char err[256];

	config_init(&cfg);
	cr_assert_eq(config_parse_console(&cfg, "none", err, sizeof(err)), 0);
	cr_assert_eq(cfg.console, CONSOLE_NONE);
	cr_assert_eq(config_parse_console(&cfg, "file:/tmp/x", err, sizeof(err)), 0);
	cr_assert_eq(cfg.console, CONSOLE_FILE);
	cr_assert_str_eq(cfg.console_path, "/tmp/x");
	cr_assert_lt(config_parse_console(&cfg, "file:", err, sizeof(err)), 0);
	cr_assert_lt(config_parse_console(&cfg, "tty", err, sizeof(err)), 0);
	cr_assert(strstr(err, "tty"));
	config_free(&cfg);
}

Test(config, copy_is_deep)
{
	struct vm_config a, b;

	config_init(&a);
	a.kernel = strdup("kernel");
	a.cmdline = strdup("test=hello");
	cr_assert_eq(config_copy(&b, &a), 0);
	cr_assert_neq(a.kernel, b.kernel);
	cr_assert_str_eq(b.cmdline, "test=hello");
	config_free(&a);
	cr_assert_str_eq(b.kernel, "kernel");
	config_free(&b);
}
