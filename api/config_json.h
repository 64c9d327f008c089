/* The JSON side of the VM configuration model (vmm/config.h).
 *
 * One model, one parser, one validator: `vmm run --config vm.json` and the
 * API's vm.create both go through config_from_json(), which is strict
 * (unknown or duplicate fields, wrong types and out-of-range values are
 * errors naming the field) and ends in config_validate().
 *
 * Shape (every field optional except kernel):
 *   {"kernel": str, "initrd": str, "cmdline": str, "cpus": int, "memory_mib": int,
 *    "console": "stdio" | "none" | "file:PATH", "iommu": bool,
 *    "nets": [{"tap": NAME} | {"macvtap": NAME}, + "mac": "52:54:00:..", "queues": int, "iommu": bool],
 *    "devices": [{"vfio": "0000:03:00.1"} | {"vfio-user": "/path.sock"}, + "iommu": bool]}
 */
#ifndef API_CONFIG_JSON_H
#define API_CONFIG_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "vmm/config.h"

/* Longest string we accept for paths (PATH_MAX) and for the kernel command line. */
#define CONFIG_JSON_PATH_MAX    4096
#define CONFIG_JSON_CMDLINE_MAX 4096

/* Parse @json (@len bytes, need not be NUL-terminated) into @cfg, which the
 * caller has config_init()ed. Fields absent from the JSON keep cfg's values
 * (the defaults). Returns 0, or -EINVAL with a one-line message naming the
 * field in @err (e.g. "cpus: expected an integer 1..64"), or -ENOMEM. On
 * error cfg holds no allocations beyond what config_free() releases. */
int config_from_json(struct vm_config *cfg, const char *json, size_t len, char *err, size_t errlen);

/* Like config_from_json but without the final config_validate(), for callers
 * that apply more settings first (vmm run: --config, then flags override it,
 * then one validation of the result). */
int config_from_json_unvalidated(struct vm_config *cfg, const char *json, size_t len, char *err,
				 size_t errlen);

/* The same, from an already parsed JSON value (the API server parses once). */
int config_from_cjson(struct vm_config *cfg, const cJSON *root, char *err, size_t errlen);

/* Parse one "nets" element ({"tap": "tap0", ...}) into @net; @field names it
 * in messages (e.g. "nets[2]"). Used by vm.create and vm.add-net. */
int config_net_from_cjson(struct net_config *net, const cJSON *obj, const char *field,
			  char *err, size_t errlen);

/* Parse one "devices" element ({"vfio-user": "/run/vf0.sock", ...}) into
 * @dev (dev->path allocated on success; the caller frees it). Used by
 * vm.create and vm.add-device. */
int config_device_from_cjson(struct device_config *dev, const cJSON *obj, const char *field,
			     char *err, size_t errlen);

/* Serialize @cfg in the shape above (all fields present, defaults included).
 * Returns NULL only on allocation failure; the caller cJSON_Delete()s it. */
cJSON *config_to_json(const struct vm_config *cfg);

/* Parse a whole JSON document strictly: exactly one value, nothing but white
 * space after it. Returns NULL with a message ("malformed JSON at offset N")
 * in @err. */
cJSON *json_parse_strict(const char *json, size_t len, char *err, size_t errlen);

#endif
