/* The JSON side of the VM config model: strict parsing, field-naming errors,
 * validation, and a round trip through config_to_json(). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/config_json.h"

static int parse(struct vm_config *cfg, const char *json, char *err, size_t errlen)
{
	config_init(cfg);
	err[0] = 0;
	return config_from_json(cfg, json, strlen(json), err, errlen);
}

Test(api_config, minimal_gets_defaults)
{
	struct vm_config cfg;
	char err[256];

	cr_assert_eq(parse(&cfg, "{\"kernel\": \"/k.elf\"}", err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(cfg.kernel, "/k.elf");
	cr_assert_null(cfg.initrd);
	cr_assert_null(cfg.cmdline);
	cr_assert_eq(cfg.cpus, 1);
	cr_assert_eq(cfg.memory_mib, CONFIG_DEFAULT_MEMORY_MIB);
	cr_assert_eq(cfg.console, CONSOLE_STDIO);
	cr_assert_eq(cfg.nr_nets, 0);
	cr_assert_eq(cfg.nr_devices, 0);
	config_free(&cfg);
}

Test(api_config, full_config)
{
	const char *json =
		"{\"kernel\": \"/boot/k\", \"initrd\": \"/boot/i\", \"cmdline\": \"test=hello x=1\","
		" \"cpus\": 4, \"memory_mib\": 512, \"console\": \"file:/tmp/c.log\", \"iommu\": true,"
		" \"nets\": [{\"tap\": \"tap0\", \"mac\": \"52:54:00:AB:cd:01\", \"queues\": 2, \"iommu\": true},"
		"            {\"macvtap\": \"macvtap3\"}],"
		" \"devices\": [{\"vfio\": \"0000:03:00.1\", \"iommu\": true}, {\"vfio-user\": \"/run/nic.sock\"}]}";
	struct vm_config cfg;
	char err[256];

	cr_assert_eq(parse(&cfg, json, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(cfg.initrd, "/boot/i");
	cr_assert_str_eq(cfg.cmdline, "test=hello x=1");
	cr_assert_eq(cfg.cpus, 4);
	cr_assert_eq(cfg.memory_mib, 512);
	cr_assert_eq(cfg.console, CONSOLE_FILE);
	cr_assert_str_eq(cfg.console_path, "/tmp/c.log");
	cr_assert(cfg.iommu);
	cr_assert_eq(cfg.nr_nets, 2);
	cr_assert_eq(cfg.nets[0].backend, NET_TAP);
	cr_assert_str_eq(cfg.nets[0].ifname, "tap0");
	cr_assert(cfg.nets[0].has_mac);
	cr_assert_eq(cfg.nets[0].mac[3], 0xab);
	cr_assert_eq(cfg.nets[0].mac[4], 0xcd);
	cr_assert_eq(cfg.nets[0].queues, 2);
	cr_assert(cfg.nets[0].iommu);
	cr_assert_eq(cfg.nets[1].backend, NET_MACVTAP);
	cr_assert_not(cfg.nets[1].has_mac);
	cr_assert_eq(cfg.nr_devices, 2);
	cr_assert_eq(cfg.devices[0].kind, PASSTHROUGH_VFIO);
	cr_assert_str_eq(cfg.devices[0].path, "0000:03:00.1");
	cr_assert(cfg.devices[0].iommu);
	cr_assert_eq(cfg.devices[1].kind, PASSTHROUGH_VFIO_USER);
	cr_assert_str_eq(cfg.devices[1].path, "/run/nic.sock");
	config_free(&cfg);
}

/* Each bad document, and a fragment the error message must contain (the field). */
static const struct bad_case {
	const char *json;
	const char *msg;
} bad_cases[] = {
	{ "", "malformed JSON" },
	{ "{", "malformed JSON" },
	{ "{\"kernel\": \"/k\",}", "malformed JSON" },
	{ "{\"kernel\": \"/k\"} x", "trailing data" },
	{ "[]", "expected a JSON object" },
	{ "\"kernel\"", "expected a JSON object" },
	{ "{}", "kernel:" },
	{ "{\"kernel\": \"\"}", "kernel:" },
	{ "{\"kernel\": 5}", "kernel: expected a string" },
	{ "{\"kernel\": \"/k\", \"kernal\": 1}", "kernal: unknown field" },
	{ "{\"kernel\": \"/k\", \"kernel\": \"/j\"}", "kernel: duplicate field" },
	{ "{\"kernel\": \"/k\", \"cpus\": 0}", "cpus: expected an integer 1..64" },
	{ "{\"kernel\": \"/k\", \"cpus\": 65}", "cpus: expected an integer 1..64" },
	{ "{\"kernel\": \"/k\", \"cpus\": 1.5}", "cpus: expected an integer" },
	{ "{\"kernel\": \"/k\", \"cpus\": \"2\"}", "cpus: expected an integer" },
	{ "{\"kernel\": \"/k\", \"cpus\": -1}", "cpus:" },
	{ "{\"kernel\": \"/k\", \"cpus\": 1e300}", "cpus:" },
	{ "{\"kernel\": \"/k\", \"memory_mib\": 1}", "memory_mib: expected an integer 2..1048576" },
	{ "{\"kernel\": \"/k\", \"memory_mib\": 1048577}", "memory_mib:" },
	{ "{\"kernel\": \"/k\", \"memory_mib\": null}", "memory_mib:" },
	{ "{\"kernel\": \"/k\", \"console\": \"serial\"}", "console:" },
	{ "{\"kernel\": \"/k\", \"console\": \"file:\"}", "console:" },
	{ "{\"kernel\": \"/k\", \"console\": true}", "console: expected a string" },
	{ "{\"kernel\": \"/k\", \"iommu\": 1}", "iommu: expected true or false" },
	{ "{\"kernel\": \"/k\", \"nets\": {}}", "nets: expected an array" },
	{ "{\"kernel\": \"/k\", \"nets\": [1]}", "nets[0]: expected an object" },
	{ "{\"kernel\": \"/k\", \"nets\": [{}]}", "nets[0]: expected exactly one of" },
	{ "{\"kernel\": \"/k\", \"nets\": [{\"tap\": \"a\", \"macvtap\": \"b\"}]}", "nets[0]: expected exactly one" },
	{ "{\"kernel\": \"/k\", \"nets\": [{\"tap\": \"a\"}, {\"tap\": \"b\", \"bridge\": 1}]}", "nets[1].bridge: unknown field" },
	{ "{\"kernel\": \"/k\", \"nets\": [{\"tap\": \"a/b\"}]}", "nets[0].tap: not a valid interface name" },
	{ "{\"kernel\": \"/k\", \"nets\": [{\"tap\": \"0123456789abcdef\"}]}", "nets[0].tap:" },
	{ "{\"kernel\": \"/k\", \"nets\": [{\"tap\": \"t\", \"mac\": \"52:54:00:12:34\"}]}", "nets[0].mac:" },
	{ "{\"kernel\": \"/k\", \"nets\": [{\"tap\": \"t\", \"mac\": \"52:54:00:12:34:5g\"}]}", "nets[0].mac:" },
	{ "{\"kernel\": \"/k\", \"nets\": [{\"tap\": \"t\", \"mac\": \"01:00:5e:00:00:01\"}]}", "nets[0].mac: a multicast" },
	{ "{\"kernel\": \"/k\", \"nets\": [{\"tap\": \"t\", \"queues\": 65}]}", "nets[0].queues: expected an integer 0..64" },
	{ "{\"kernel\": \"/k\", \"nets\": [{\"tap\": \"t\", \"iommu\": true}]}", "iommu" },
	{ "{\"kernel\": \"/k\", \"nets\": [{\"tap\":\"a\"},{\"tap\":\"a\"},{\"tap\":\"a\"},{\"tap\":\"a\"},"
	  "{\"tap\":\"a\"},{\"tap\":\"a\"},{\"tap\":\"a\"},{\"tap\":\"a\"},{\"tap\":\"a\"}]}", "nets: at most 8" },
	{ "{\"kernel\": \"/k\", \"devices\": [{\"vfio\": \"03:00.1\"}]}", "devices[0].vfio: expected a PCI address" },
	{ "{\"kernel\": \"/k\", \"devices\": [{\"vfio\": \"0000:03:20.1\"}]}", "devices[0].vfio:" },
	{ "{\"kernel\": \"/k\", \"devices\": [{\"vfio-user\": \"\"}]}", "devices[0].vfio-user:" },
	{ "{\"kernel\": \"/k\", \"devices\": [{\"vfio-user\": \"/s\", \"vfio\": \"0000:00:01.0\"}]}", "devices[0]: expected exactly one" },
	{ "{\"kernel\": \"/k\", \"devices\": [{\"iommu\": false}]}", "devices[0]: expected exactly one" },
	{ "{\"kernel\": \"/k\", \"devices\": [{\"vfio-user\": \"/s\", \"iommu\": true}]}", "devices[0].iommu" },
	{ "{\"kernel\": \"/k\", \"devices\": [{\"vfio-user\": \"/s\", \"iommu\": \"yes\"}]}", "devices[0].iommu: expected true or false" },
};

Test(api_config, bad_documents_name_the_field)
{
	char err[256];

	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct vm_config cfg;
		int ret = parse(&cfg, bad_cases[i].json, err, sizeof(err));

		cr_expect_eq(ret, -EINVAL, "case %zu (%s): ret %d", i, bad_cases[i].json, ret);
		cr_expect(strstr(err, bad_cases[i].msg) != NULL, "case %zu (%s): message '%s' lacks '%s'",
			  i, bad_cases[i].json, err, bad_cases[i].msg);
		config_free(&cfg);
	}
}

Test(api_config, failed_parse_leaves_config_untouched)
{
	struct vm_config cfg;
	char err[256];
	const char *bad = "{\"kernel\": \"/other\", \"cpus\": 3, \"nets\": [{\"tap\": \"t\"}], \"devices\": 7}";

	config_init(&cfg);
	const char *good = "{\"kernel\": \"/k\", \"cpus\": 2}";

	cr_assert_eq(config_from_json(&cfg, good, strlen(good), err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_from_json(&cfg, bad, strlen(bad), err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(cfg.kernel, "/k");
	cr_assert_eq(cfg.cpus, 2);
	cr_assert_eq(cfg.nr_nets, 0);
	config_free(&cfg);
}

Test(api_config, json_overrides_existing_values)
{
	struct vm_config cfg;
	char err[256];
	const char *json = "{\"cpus\": 2, \"cmdline\": null}";

	/* As the CLI would: flags first, then the file's fields on top. */
	config_init(&cfg);
	cfg.kernel = strdup("/from-cli");
	cfg.cmdline = strdup("console=x");
	cr_assert_eq(config_from_json(&cfg, json, strlen(json), err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(cfg.kernel, "/from-cli");
	cr_assert_null(cfg.cmdline);
	cr_assert_eq(cfg.cpus, 2);
	config_free(&cfg);
}

Test(api_config, length_is_respected)
{
	struct vm_config cfg;
	char err[256];
	/* Only the first 19 bytes are the document; the rest must not be read. */
	const char buf[] = "{\"kernel\": \"/k.elf\"}GARBAGE";

	config_init(&cfg);
	cr_assert_eq(config_from_json(&cfg, buf, 20, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(cfg.kernel, "/k.elf");
	config_free(&cfg);
	cr_assert_eq(config_from_json(&cfg, buf, sizeof(buf) - 1, err, sizeof(err)), -EINVAL);
	config_free(&cfg);
}

Test(api_config, round_trip)
{
	const char *json =
		"{\"kernel\": \"/boot/k\", \"cmdline\": \"a b\", \"cpus\": 2, \"memory_mib\": 64,"
		" \"console\": \"none\", \"iommu\": true,"
		" \"nets\": [{\"macvtap\": \"mv0\", \"mac\": \"02:00:00:00:00:07\", \"iommu\": true}],"
		" \"devices\": [{\"vfio-user\": \"/s.sock\"}]}";
	struct vm_config a, b;
	char err[256], *text;
	cJSON *out;

	cr_assert_eq(parse(&a, json, err, sizeof(err)), 0, "%s", err);
	out = config_to_json(&a);
	cr_assert_not_null(out);
	cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(out, "console")->valuestring, "none");
	text = cJSON_PrintUnformatted(out);
	cr_assert_not_null(text);
	config_init(&b);
	cr_assert_eq(config_from_json(&b, text, strlen(text), err, sizeof(err)), 0, "%s: %s", text, err);
	cr_assert_str_eq(b.kernel, a.kernel);
	cr_assert_str_eq(b.cmdline, a.cmdline);
	cr_assert_null(b.initrd);
	cr_assert_eq(b.cpus, a.cpus);
	cr_assert_eq(b.memory_mib, a.memory_mib);
	cr_assert_eq(b.console, a.console);
	cr_assert_eq(b.iommu, a.iommu);
	cr_assert_eq(b.nr_nets, 1);
	cr_assert_eq(b.nets[0].backend, NET_MACVTAP);
	cr_assert_arr_eq(b.nets[0].mac, a.nets[0].mac, 6);
	cr_assert_eq(b.nets[0].has_mac, true);
	cr_assert_eq(b.nr_devices, 1);
	cr_assert_str_eq(b.devices[0].path, "/s.sock");
	free(text);
	cJSON_Delete(out);
	config_free(&a);
	config_free(&b);
}

Test(api_config, net_element_alone)
{
	struct net_config net;
	char err[256];
	cJSON *o = cJSON_Parse("{\"tap\": \"tap9\", \"queues\": 0}");

	cr_assert_eq(config_net_from_cjson(&net, o, "net", err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(net.ifname, "tap9");
	cr_assert_eq(net.backend, NET_TAP);
	cJSON_Delete(o);
	o = cJSON_Parse("{\"tap\": \"tap9\", \"x\": 0}");
	cr_assert_eq(config_net_from_cjson(&net, o, "net", err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "net.x: unknown field");
	cJSON_Delete(o);
}

Test(api_config, deep_nesting_is_rejected_not_crashing)
{
	char buf[8192];
	struct vm_config cfg;
	char err[256];
	size_t n = 0;

	for (int i = 0; i < 3000; i++)
		buf[n++] = '[';
	buf[n] = 0;
	config_init(&cfg);
	cr_assert_eq(config_from_json(&cfg, buf, n, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "malformed JSON") != NULL, "%s", err);
	config_free(&cfg);
}

/* Seeded mutations of a valid config (byte flips, truncation, splices of
 * JSON tokens): every result is either a config that validates or -EINVAL
 * with a message; nothing else, and (under ASan) no memory errors or leaks. */
Test(api_config, mutated_documents_are_handled)
{
	static const char *const base =
		"{\"kernel\": \"/boot/k\", \"initrd\": \"/i\", \"cmdline\": \"a=1\", \"cpus\": 2,"
		" \"memory_mib\": 64, \"console\": \"file:/tmp/x\", \"iommu\": true,"
		" \"nets\": [{\"tap\": \"t0\", \"mac\": \"52:54:00:00:00:01\", \"queues\": 1, \"iommu\": true}],"
		" \"devices\": [{\"vfio\": \"0000:03:00.1\"}, {\"vfio-user\": \"/s\", \"iommu\": true}]}";
	static const char *const tokens[] = { "{", "}", "[", "]", ",", ":", "\"", "null", "true", "-1",
					      "1e999", "\\u0000", "\"kernel\"", "\"nets\"", "0.5" };
	size_t base_len = strlen(base);
	unsigned seed = 4242, nr_ok = 0, nr_bad = 0;
	char buf[1024], err[256];

	for (int i = 0; i < 20000; i++) {
		struct vm_config cfg;
		size_t len = base_len;
		int ret;

		memcpy(buf, base, base_len + 1);
		for (unsigned k = rand_r(&seed) % 4; k; k--) {
			size_t pos = rand_r(&seed) % len;

			if (rand_r(&seed) % 2) {
				buf[pos] = (char)(rand_r(&seed) & 0xff);
			} else {
				const char *t = tokens[rand_r(&seed) % (sizeof(tokens) / sizeof(tokens[0]))];
				size_t tl = strlen(t);

				if (len + tl < sizeof(buf)) {
					memmove(buf + pos + tl, buf + pos, len - pos);
					memcpy(buf + pos, t, tl);
					len += tl;
				}
			}
		}
		if (rand_r(&seed) % 4 == 0)
			len = rand_r(&seed) % (len + 1);
		config_init(&cfg);
		err[0] = 0;
		ret = config_from_json(&cfg, buf, len, err, sizeof(err));
		cr_assert(ret == 0 || ret == -EINVAL, "ret %d", ret);
		if (ret == 0) {
			cr_assert_eq(config_validate(&cfg, err, sizeof(err)), 0, "%s", err);
			nr_ok++;
		} else {
			cr_assert_neq(err[0], 0, "an error without a message");
			nr_bad++;
		}
		config_free(&cfg);
	}
	/* The mutations must exercise both outcomes. */
	cr_assert_gt(nr_ok, 100);
	cr_assert_gt(nr_bad, 1000);
}
