#include "vmm/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_init(struct vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cpus = 1;
	cfg->memory_mib = CONFIG_DEFAULT_MEMORY_MIB;
	cfg->console = CONSOLE_STDIO;
}

void config_free(struct vm_config *cfg)
{
	free(cfg->kernel);
	free(cfg->initrd);
	free(cfg->cmdline);
	free(cfg->console_path);
	for (unsigned i = 0; i < cfg->nr_devices; i++)
		free(cfg->devices[i].path);
	config_init(cfg);
}

static int dup_str(char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

int config_copy(struct vm_config *dst, const struct vm_config *src)
{
	int ret = 0;

	*dst = *src;
	dst->kernel = dst->initrd = dst->cmdline = dst->console_path = NULL;
	for (unsigned i = 0; i < src->nr_devices; i++)
		dst->devices[i].path = NULL;
	ret |= dup_str(&dst->kernel, src->kernel);
	ret |= dup_str(&dst->initrd, src->initrd);
	ret |= dup_str(&dst->cmdline, src->cmdline);
	ret |= dup_str(&dst->console_path, src->console_path);
	for (unsigned i = 0; i < src->nr_devices; i++)
		ret |= dup_str(&dst->devices[i].path, src->devices[i].path);
	if (ret) {
		config_free(dst);
		return -ENOMEM;
	}
	return 0;
}

int config_validate(const struct vm_config *cfg, char *err, size_t errlen)
{
	if (!cfg->kernel || !*cfg->kernel) {
		snprintf(err, errlen, "kernel: a kernel image is required");
		return -EINVAL;
	}
	if (cfg->cpus < 1 || cfg->cpus > CONFIG_MAX_CPUS) {
		snprintf(err, errlen, "cpus: %u is out of range (1..%d)", cfg->cpus, CONFIG_MAX_CPUS);
		return -EINVAL;
	}
	if (cfg->memory_mib < CONFIG_MIN_MEMORY_MIB || cfg->memory_mib > (1ULL << 20)) {
		snprintf(err, errlen, "memory: %llu MiB is out of range (%d..1048576)",
			 (unsigned long long)cfg->memory_mib, CONFIG_MIN_MEMORY_MIB);
		return -EINVAL;
	}
	if (cfg->console == CONSOLE_FILE && (!cfg->console_path || !*cfg->console_path)) {
		snprintf(err, errlen, "console: file console needs a path (file:PATH)");
		return -EINVAL;
	}
	if (cfg->nr_nets > CONFIG_MAX_NETS) {
		snprintf(err, errlen, "net: at most %d network devices", CONFIG_MAX_NETS);
		return -EINVAL;
	}
	for (unsigned i = 0; i < cfg->nr_nets; i++) {
		const struct net_config *n = &cfg->nets[i];

		if (!n->ifname[0]) {
			snprintf(err, errlen, "net[%u]: an interface name is required", i);
			return -EINVAL;
		}
		if (n->has_mac && (n->mac[0] & 1)) {
			snprintf(err, errlen, "net[%u].mac: multicast address cannot be a NIC's MAC", i);
			return -EINVAL;
		}
		if (n->queues > CONFIG_MAX_CPUS) {
			snprintf(err, errlen, "net[%u].queues: %u is out of range (0..%d)", i, n->queues,
				 CONFIG_MAX_CPUS);
			return -EINVAL;
		}
		if (n->iommu && !cfg->iommu) {
			snprintf(err, errlen, "net[%u].iommu: needs the virtio-iommu device (--iommu)", i);
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < cfg->nr_devices; i++) {
		if (!cfg->devices[i].path || !*cfg->devices[i].path) {
			snprintf(err, errlen, "devices[%u]: a host address or socket path is required", i);
			return -EINVAL;
		}
		if (cfg->devices[i].iommu && !cfg->iommu) {
			snprintf(err, errlen, "devices[%u].iommu: needs the virtio-iommu device (--iommu)", i);
			return -EINVAL;
		}
	}
	return 0;
}

int config_parse_console(struct vm_config *cfg, const char *s, char *err, size_t errlen)
{
	char *path;

	if (!strcmp(s, "stdio")) {
		cfg->console = CONSOLE_STDIO;
	} else if (!strcmp(s, "none")) {
		cfg->console = CONSOLE_NONE;
	} else if (!strncmp(s, "file:", 5) && s[5]) {
		path = strdup(s + 5);
		if (!path)
			return -ENOMEM;
		free(cfg->console_path);
		cfg->console_path = path;
		cfg->console = CONSOLE_FILE;
	} else {
		snprintf(err, errlen, "console: '%s' is not stdio, none or file:PATH", s);
		return -EINVAL;
	}
	return 0;
}
