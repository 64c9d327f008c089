/* `--net` parsing. See virtio_net_config.h. */
#include "devices/virtio_net_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio_net.h"

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

int net_parse_mac(const char *s, uint8_t mac[6])
{
	bool zero = true;

	if (strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		int hi = hex_nibble(s[3 * i]), lo = hex_nibble(s[3 * i + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
			return -EINVAL;
		mac[i] = (uint8_t)(hi << 4 | lo);
		zero &= mac[i] == 0;
	}
	/* A NIC address must be unicast (I/G bit clear) and not all zeros. */
	return (zero || (mac[0] & 1)) ? -EINVAL : 0;
}

static int parse_ifname(const char *v, char *out, const char *what, char *err, size_t errlen)
{
	size_t n = strlen(v);

	if (n == 0 || n >= CONFIG_IFNAME_MAX || strchr(v, '/') || strchr(v, ' ')) {
		snprintf(err, errlen, "net: '%s' is not a valid %s interface name (1..%d characters)",
			 v, what, CONFIG_IFNAME_MAX - 1);
		return -EINVAL;
	}
	memcpy(out, v, n + 1);
	return 0;
}

/* Apply one key=value pair. */
static int net_apply_kv(struct net_config *nc, bool first, const char *key, const char *val,
			char *err, size_t errlen)
{
	char *end;
	unsigned long q;

	if (first && !strcmp(key, "tap")) {
		nc->backend = NET_TAP;
		return parse_ifname(val, nc->ifname, "TAP", err, errlen);
	}
	if (first && !strcmp(key, "macvtap")) {
		nc->backend = NET_MACVTAP;
		return parse_ifname(val, nc->ifname, "macvtap", err, errlen);
	}
	if (first) {
		snprintf(err, errlen, "net: '%s' must start with tap=NAME or macvtap=IFNAME", key);
		return -EINVAL;
	}
	if (!strcmp(key, "mac")) {
		if (net_parse_mac(val, nc->mac)) {
			snprintf(err, errlen, "net: '%s' is not a unicast MAC address (expected xx:xx:xx:xx:xx:xx)", val);
			return -EINVAL;
		}
		nc->has_mac = true;
		return 0;
	}
	if (!strcmp(key, "queues")) {
		errno = 0;
		q = strtoul(val, &end, 10);
		if (!*val || *end || errno || q < 1 || q > VIRTIO_NET_MAX_PAIRS) {
			snprintf(err, errlen, "net: queues=%s is not a number of queue pairs (1..%d)", val,
				 VIRTIO_NET_MAX_PAIRS);
			return -EINVAL;
		}
		nc->queues = (unsigned)q;
		return 0;
	}
	if (!strcmp(key, "iommu")) {
		if (strcmp(val, "on") && strcmp(val, "off")) {
			snprintf(err, errlen, "net: iommu=%s: expected on or off", val);
			return -EINVAL;
		}
		nc->iommu = !strcmp(val, "on");
		return 0;
	}
	snprintf(err, errlen, "net: unknown option '%s' (known: mac, queues, iommu)", key);
	return -EINVAL;
}

int config_parse_net(struct vm_config *cfg, const char *spec, char *err, size_t errlen)
{
	struct net_config nc = { 0 };
	char *copy, *save = NULL, *tok;
	bool first = true;
	int ret = 0;

	if (cfg->nr_nets >= CONFIG_MAX_NETS) {
		snprintf(err, errlen, "net: at most %d network devices", CONFIG_MAX_NETS);
		return -E2BIG;
	}
	if (!spec || !*spec) {
		snprintf(err, errlen, "net: empty value (expected tap=NAME or macvtap=IFNAME)");
		return -EINVAL;
	}
	copy = strdup(spec);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && !ret; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		if (!eq) {
			snprintf(err, errlen, "net: '%s' is not key=value", tok);
			ret = -EINVAL;
			break;
		}
		*eq = '\0';
		ret = net_apply_kv(&nc, first, tok, eq + 1, err, errlen);
		first = false;
	}
	free(copy);
	if (ret)
		return ret;
	if (!nc.ifname[0]) {
		snprintf(err, errlen, "net: expected tap=NAME or macvtap=IFNAME");
		return -EINVAL;
	}
	cfg->nets[cfg->nr_nets++] = nc;
	return 0;
}
