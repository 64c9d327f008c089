/* The VM configuration: one model for CLI flags, `--config vm.json` and the
 * API's vm.create. CLI parsing and JSON parsing both fill this struct and both
 * end in config_validate(). */
#ifndef VMM_CONFIG_H
#define VMM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_CPUS     64
#define CONFIG_MAX_NETS     8
#define CONFIG_MAX_DEVICES  8
#define CONFIG_IFNAME_MAX   16   /* IFNAMSIZ */
#define CONFIG_DEFAULT_MEMORY_MIB 256
#define CONFIG_MIN_MEMORY_MIB 2

enum console_kind { CONSOLE_STDIO, CONSOLE_FILE, CONSOLE_NONE };

enum net_backend { NET_TAP, NET_MACVTAP };

struct net_config {
	enum net_backend backend;
	char ifname[CONFIG_IFNAME_MAX];   /* TAP name or macvtap link name */
	uint8_t mac[6];
	bool has_mac;
	unsigned queues;                  /* queue pairs; 0 = one per vCPU */
	bool iommu;                       /* behind virtio-iommu */
};

enum passthrough_kind { PASSTHROUGH_VFIO, PASSTHROUGH_VFIO_USER };

struct device_config {
	enum passthrough_kind kind;
	char *path;                       /* PCI address (vfio) or socket path (vfio-user) */
	bool iommu;
};

struct vm_config {
	char *kernel;                     /* required */
	char *initrd;                     /* optional */
	char *cmdline;                    /* optional */
	unsigned cpus;                    /* 1..CONFIG_MAX_CPUS */
	uint64_t memory_mib;
	enum console_kind console;
	char *console_path;               /* CONSOLE_FILE */
	bool iommu;                       /* add a virtio-iommu device */
	unsigned nr_nets;
	struct net_config nets[CONFIG_MAX_NETS];
	unsigned nr_devices;
	struct device_config devices[CONFIG_MAX_DEVICES];
};

void config_init(struct vm_config *cfg);          /* defaults */
void config_free(struct vm_config *cfg);          /* frees strings, keeps defaults */
int config_copy(struct vm_config *dst, const struct vm_config *src);
/* Check ranges and required fields; on error write a one-line message naming
 * the field to @err and return -EINVAL. */
int config_validate(const struct vm_config *cfg, char *err, size_t errlen);

/* Parse "--console" values: "stdio", "none", "file:PATH". */
int config_parse_console(struct vm_config *cfg, const char *s, char *err, size_t errlen);

#endif
