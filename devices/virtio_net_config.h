/* Parsing of `--net` values into struct net_config (vmm/config.h):
 *   tap=NAME[,mac=MAC][,queues=N][,iommu=on|off]
 *   macvtap=IFNAME[,mac=MAC][,queues=N][,iommu=on|off]
 * Appends to cfg->nets; on error writes a one-line message to @err and
 * returns -EINVAL (or -E2BIG when there are too many). */
#ifndef DEVICES_VIRTIO_NET_CONFIG_H
#define DEVICES_VIRTIO_NET_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/config.h"

int config_parse_net(struct vm_config *cfg, const char *spec, char *err, size_t errlen);
/* "52:54:00:12:34:56" -> bytes; rejects multicast and all-zero addresses. */
int net_parse_mac(const char *s, uint8_t mac[6]);

#endif
