/* JSON <-> struct vm_config: the strict parser behind `vmm run --config` and
 * the API's vm.create. Every error message starts with the JSON field path
 * ("nets[1].mac: ..."), so a user can find the mistake without reading code. */
#include "api/config_json.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* The validator's limits for memory (config.c) expressed for the JSON side. */
#define JSON_MEMORY_MIB_MAX (1LL << 20)

static int field_error(char *err, size_t errlen, const char *field, const char *what)
{
	snprintf(err, errlen, "%s: %s", field, what);
	return -EINVAL;
}

/* JSON numbers are doubles in cJSON; accept only integral values in range,
 * checked before any cast so out-of-range doubles never reach a conversion. */
static int json_get_int(const cJSON *v, const char *field, long long min, long long max,
			long long *out, char *err, size_t errlen)
{
	double d;

	if (!cJSON_IsNumber(v))
		goto bad;
	d = v->valuedouble;
	if (!(d >= (double)min && d <= (double)max) || (double)(long long)d != d)
		goto bad;
	*out = (long long)d;
	return 0;
bad:
	snprintf(err, errlen, "%s: expected an integer %lld..%lld", field, min, max);
	return -EINVAL;
}

static int json_get_bool(const cJSON *v, const char *field, bool *out, char *err, size_t errlen)
{
	if (!cJSON_IsBool(v))
		return field_error(err, errlen, field, "expected true or false");
	*out = cJSON_IsTrue(v);
	return 0;
}

/* A string of 1..@maxlen bytes (0..@maxlen with @allow_empty). */
static int json_get_string(const cJSON *v, const char *field, size_t maxlen, bool allow_empty,
			   const char **out, char *err, size_t errlen)
{
	size_t len;

	if (!cJSON_IsString(v) || !v->valuestring) {
		snprintf(err, errlen, "%s: expected a string", field);
		return -EINVAL;
	}
	len = strlen(v->valuestring);
	if ((!len && !allow_empty) || len > maxlen) {
		snprintf(err, errlen, "%s: expected a string of %d..%zu characters", field,
			 allow_empty ? 0 : 1, maxlen);
		return -EINVAL;
	}
	*out = v->valuestring;
	return 0;
}

static int replace_string(char **dst, const char *src)
{
	char *copy = NULL;

	if (src) {
		copy = strdup(src);
		if (!copy)
			return -ENOMEM;
	}
	free(*dst);
	*dst = copy;
	return 0;
}

/* Optional strings: null means "none". */
static int json_get_opt_path(const cJSON *v, const char *field, size_t maxlen, bool allow_empty,
			     char **dst, char *err, size_t errlen)
{
	const char *s = NULL;
	int ret;

	if (!cJSON_IsNull(v)) {
		ret = json_get_string(v, field, maxlen, allow_empty, &s, err, errlen);
		if (ret)
			return ret;
	}
	return replace_string(dst, s);
}

/* Linux dev_valid_name(): 1..IFNAMSIZ-1 bytes, not "." or "..", no '/', ':'
 * or white space. */
static bool ifname_valid(const char *s)
{
	size_t len = strlen(s);

	if (!len || len >= CONFIG_IFNAME_MAX || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (const char *p = s; *p; p++)
		if (*p == '/' || *p == ':' || isspace((unsigned char)*p) || !isprint((unsigned char)*p))
			return false;
	return true;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;

	if (strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2 ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
			return -EINVAL;
	}
	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}

/* PCI address in sysfs form, DDDD:BB:DD.F (PCI Local Bus 3.0: 8-bit bus,
 * 5-bit device, 3-bit function). */
static bool pci_address_valid(const char *s)
{
	unsigned dom, bus, dev, fn;
	int n = -1;

	if (strlen(s) != 12)
		return false;
	for (int i = 0; i < 12; i++) {
		bool sep = i == 4 || i == 7 || i == 10;

		if (sep ? s[i] != (i == 10 ? '.' : ':') : !isxdigit((unsigned char)s[i]))
			return false;
	}
	if (sscanf(s, "%4x:%2x:%2x.%1x%n", &dom, &bus, &dev, &fn, &n) != 4 || n != 12)
		return false;
	return dev < 32 && fn < 8;
}

/* --- top-level fields ----------------------------------------------------- */

typedef int (*field_parse_fn)(struct vm_config *cfg, const cJSON *v, char *err, size_t errlen);

static int parse_kernel(struct vm_config *cfg, const cJSON *v, char *err, size_t errlen)
{
	const char *s;
	int ret = json_get_string(v, "kernel", CONFIG_JSON_PATH_MAX, false, &s, err, errlen);

	return ret ? ret : replace_string(&cfg->kernel, s);
}

static int parse_initrd(struct vm_config *cfg, const cJSON *v, char *err, size_t errlen)
{
	return json_get_opt_path(v, "initrd", CONFIG_JSON_PATH_MAX, false, &cfg->initrd, err, errlen);
}

static int parse_cmdline(struct vm_config *cfg, const cJSON *v, char *err, size_t errlen)
{
	return json_get_opt_path(v, "cmdline", CONFIG_JSON_CMDLINE_MAX, true, &cfg->cmdline, err,
				 errlen);
}

static int parse_cpus(struct vm_config *cfg, const cJSON *v, char *err, size_t errlen)
{
	long long n;
	int ret = json_get_int(v, "cpus", 1, CONFIG_MAX_CPUS, &n, err, errlen);

	if (!ret)
		cfg->cpus = (unsigned)n;
	return ret;
}

static int parse_memory(struct vm_config *cfg, const cJSON *v, char *err, size_t errlen)
{
	long long n;
	int ret = json_get_int(v, "memory_mib", CONFIG_MIN_MEMORY_MIB, JSON_MEMORY_MIB_MAX, &n, err,
			       errlen);

	if (!ret)
		cfg->memory_mib = (uint64_t)n;
	return ret;
}

static int parse_console(struct vm_config *cfg, const cJSON *v, char *err, size_t errlen)
{
	const char *s;
	int ret = json_get_string(v, "console", CONFIG_JSON_PATH_MAX + 5, false, &s, err, errlen);

	if (ret)
		return ret;
	ret = config_parse_console(cfg, s, err, errlen);
	if (ret == -EINVAL)
		snprintf(err, errlen, "console: expected \"stdio\", \"none\" or \"file:PATH\"");
	if (!ret && cfg->console != CONSOLE_FILE) {
		free(cfg->console_path);
		cfg->console_path = NULL;
	}
	return ret;
}

static int parse_iommu(struct vm_config *cfg, const cJSON *v, char *err, size_t errlen)
{
	return json_get_bool(v, "iommu", &cfg->iommu, err, errlen);
}

/* Walk an object's members against a list of names: unknown and duplicate
 * keys are errors. @seen gets bit i for names[i]; returns the index or <0. */
static int member_index(const cJSON *m, const char *const *names, unsigned nr, unsigned *seen,
			const char *field, char *err, size_t errlen)
{
	for (unsigned i = 0; i < nr; i++) {
		if (strcmp(m->string, names[i]))
			continue;
		if (*seen & (1u << i)) {
			snprintf(err, errlen, "%s%s%s: duplicate field", field, *field ? "." : "",
				 names[i]);
			return -EINVAL;
		}
		*seen |= 1u << i;
		return (int)i;
	}
	snprintf(err, errlen, "%s%s%.64s: unknown field", field, *field ? "." : "", m->string);
	return -EINVAL;
}

enum net_field { NF_TAP, NF_MACVTAP, NF_MAC, NF_QUEUES, NF_IOMMU, NF_COUNT };
static const char *const net_fields[NF_COUNT] = { "tap", "macvtap", "mac", "queues", "iommu" };

int config_net_from_cjson(struct net_config *net, const cJSON *obj, const char *field,
			  char *err, size_t errlen)
{
	char name[64];
	unsigned seen = 0;
	const cJSON *m;
	const char *s;
	long long n;
	int idx, ret;

	if (!cJSON_IsObject(obj)) {
		snprintf(err, errlen, "%s: expected an object like {\"tap\": \"tap0\"}", field);
		return -EINVAL;
	}
	memset(net, 0, sizeof(*net));
	cJSON_ArrayForEach(m, obj) {
		idx = member_index(m, net_fields, NF_COUNT, &seen, field, err, errlen);
		if (idx < 0)
			return idx;
		snprintf(name, sizeof(name), "%s.%s", field, net_fields[idx]);
		switch (idx) {
		case NF_TAP:
		case NF_MACVTAP:
			ret = json_get_string(m, name, CONFIG_IFNAME_MAX - 1, false, &s, err, errlen);
			if (ret)
				return ret;
			if (!ifname_valid(s))
				return field_error(err, errlen, name,
						   "not a valid interface name (1..15 characters, no '/', ':' or spaces)");
			net->backend = idx == NF_TAP ? NET_TAP : NET_MACVTAP;
			memcpy(net->ifname, s, strlen(s) + 1);
			break;
		case NF_MAC:
			if (!cJSON_IsString(m) || parse_mac(m->valuestring, net->mac))
				return field_error(err, errlen, name,
						   "expected a MAC address like \"52:54:00:12:34:56\"");
			if (net->mac[0] & 1)
				return field_error(err, errlen, name,
						   "a multicast address cannot be a NIC's MAC");
			net->has_mac = true;
			break;
		case NF_QUEUES:
			ret = json_get_int(m, name, 0, CONFIG_MAX_CPUS, &n, err, errlen);
			if (ret)
				return ret;
			net->queues = (unsigned)n;
			break;
		case NF_IOMMU:
			ret = json_get_bool(m, name, &net->iommu, err, errlen);
			if (ret)
				return ret;
			break;
		}
	}
	if (!!(seen & (1u << NF_TAP)) == !!(seen & (1u << NF_MACVTAP))) {
		snprintf(err, errlen, "%s: expected exactly one of \"tap\" or \"macvtap\"", field);
		return -EINVAL;
	}
	return 0;
}

static int parse_nets(struct vm_config *cfg, const cJSON *v, char *err, size_t errlen)
{
	char field[32];
	const cJSON *e;
	unsigned i = 0;
	int ret;

	if (!cJSON_IsArray(v))
		return field_error(err, errlen, "nets", "expected an array");
	if (cJSON_GetArraySize(v) > CONFIG_MAX_NETS) {
		snprintf(err, errlen, "nets: at most %d network devices", CONFIG_MAX_NETS);
		return -EINVAL;
	}
	cJSON_ArrayForEach(e, v) {
		snprintf(field, sizeof(field), "nets[%u]", i);
		ret = config_net_from_cjson(&cfg->nets[i], e, field, err, errlen);
		if (ret)
			return ret;
		i++;
	}
	cfg->nr_nets = i;
	return 0;
}

enum dev_field { DF_VFIO, DF_VFIO_USER, DF_IOMMU, DF_COUNT };
static const char *const dev_fields[DF_COUNT] = { "vfio", "vfio-user", "iommu" };

int config_device_from_cjson(struct device_config *dev, const cJSON *obj, const char *field,
			char *err, size_t errlen)
{
	const size_t sun_path_max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
	char name[64];
	unsigned seen = 0;
	const char *path = NULL;
	const cJSON *m;
	int idx, ret;

	if (!cJSON_IsObject(obj)) {
		snprintf(err, errlen, "%s: expected an object like {\"vfio\": \"0000:03:00.1\"}",
			 field);
		return -EINVAL;
	}
	memset(dev, 0, sizeof(*dev));
	cJSON_ArrayForEach(m, obj) {
		idx = member_index(m, dev_fields, DF_COUNT, &seen, field, err, errlen);
		if (idx < 0)
			return idx;
		snprintf(name, sizeof(name), "%s.%s", field, dev_fields[idx]);
		switch (idx) {
		case DF_VFIO:
			if (!cJSON_IsString(m) || !pci_address_valid(m->valuestring))
				return field_error(err, errlen, name,
						   "expected a PCI address like \"0000:03:00.1\"");
			path = m->valuestring;
			dev->kind = PASSTHROUGH_VFIO;
			break;
		case DF_VFIO_USER:
			ret = json_get_string(m, name, sun_path_max, false, &path, err, errlen);
			if (ret)
				return ret;
			dev->kind = PASSTHROUGH_VFIO_USER;
			break;
		case DF_IOMMU:
			ret = json_get_bool(m, name, &dev->iommu, err, errlen);
			if (ret)
				return ret;
			break;
		}
	}
	if (!!(seen & (1u << DF_VFIO)) == !!(seen & (1u << DF_VFIO_USER))) {
		snprintf(err, errlen, "%s: expected exactly one of \"vfio\" or \"vfio-user\"", field);
		return -EINVAL;
	}
	dev->path = strdup(path);
	return dev->path ? 0 : -ENOMEM;
}

static int parse_devices(struct vm_config *cfg, const cJSON *v, char *err, size_t errlen)
{
	char field[32];
	const cJSON *e;
	int ret;

	if (!cJSON_IsArray(v))
		return field_error(err, errlen, "devices", "expected an array");
	if (cJSON_GetArraySize(v) > CONFIG_MAX_DEVICES) {
		snprintf(err, errlen, "devices: at most %d devices", CONFIG_MAX_DEVICES);
		return -EINVAL;
	}
	/* Replace, not append: drop what the defaults/CLI had. */
	for (unsigned i = 0; i < cfg->nr_devices; i++) {
		free(cfg->devices[i].path);
		cfg->devices[i].path = NULL;
	}
	cfg->nr_devices = 0;
	cJSON_ArrayForEach(e, v) {
		snprintf(field, sizeof(field), "devices[%u]", cfg->nr_devices);
		ret = config_device_from_cjson(&cfg->devices[cfg->nr_devices], e, field, err, errlen);
		if (ret)
			return ret;
		cfg->nr_devices++;
	}
	return 0;
}

static const struct {
	const char *name;
	field_parse_fn parse;
} top_fields[] = {
	{ "kernel", parse_kernel },   { "initrd", parse_initrd }, { "cmdline", parse_cmdline },
	{ "cpus", parse_cpus },       { "memory_mib", parse_memory },
	{ "console", parse_console }, { "iommu", parse_iommu },   { "nets", parse_nets },
	{ "devices", parse_devices },
};
#define NR_TOP_FIELDS (sizeof(top_fields) / sizeof(top_fields[0]))

static int config_from_cjson_opt(struct vm_config *cfg, const cJSON *root, bool validate, char *err,
				 size_t errlen)
{
	const char *names[NR_TOP_FIELDS];
	struct vm_config tmp;
	unsigned seen = 0;
	const cJSON *m;
	int idx, ret;

	if (!cJSON_IsObject(root)) {
		snprintf(err, errlen, "config: expected a JSON object");
		return -EINVAL;
	}
	for (unsigned i = 0; i < NR_TOP_FIELDS; i++)
		names[i] = top_fields[i].name;
	/* Parse into a copy so a failed parse leaves @cfg untouched. */
	ret = config_copy(&tmp, cfg);
	if (ret) {
		snprintf(err, errlen, "config: out of memory");
		return ret;
	}
	cJSON_ArrayForEach(m, root) {
		idx = member_index(m, names, NR_TOP_FIELDS, &seen, "", err, errlen);
		if (idx < 0) {
			ret = idx;
			goto fail;
		}
		ret = top_fields[idx].parse(&tmp, m, err, errlen);
		if (ret)
			goto fail;
	}
	ret = validate ? config_validate(&tmp, err, errlen) : 0;
	if (ret)
		goto fail;
	config_free(cfg);
	*cfg = tmp;
	return 0;
fail:
	if (ret == -ENOMEM)
		snprintf(err, errlen, "config: out of memory");
	config_free(&tmp);
	return ret;
}

cJSON *json_parse_strict(const char *json, size_t len, char *err, size_t errlen)
{
	const char *end = NULL;
	cJSON *root;

	if (!json || !len) {
		snprintf(err, errlen, "malformed JSON: empty document");
		return NULL;
	}
	root = cJSON_ParseWithLengthOpts(json, len, &end, false);
	if (!root) {
		size_t off = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;

		snprintf(err, errlen, "malformed JSON at offset %zu", off);
		return NULL;
	}
	while (end < json + len && isspace((unsigned char)*end))
		end++;
	if (end != json + len) {
		snprintf(err, errlen, "malformed JSON: trailing data at offset %zu",
			 (size_t)(end - json));
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

int config_from_cjson(struct vm_config *cfg, const cJSON *root, char *err, size_t errlen)
{
	return config_from_cjson_opt(cfg, root, true, err, errlen);
}

static int config_from_json_opt(struct vm_config *cfg, const char *json, size_t len, bool validate,
				char *err, size_t errlen)
{
	cJSON *root = json_parse_strict(json, len, err, errlen);
	int ret;

	if (!root)
		return -EINVAL;
	ret = config_from_cjson_opt(cfg, root, validate, err, errlen);
	cJSON_Delete(root);
	return ret;
}

int config_from_json(struct vm_config *cfg, const char *json, size_t len, char *err, size_t errlen)
{
	return config_from_json_opt(cfg, json, len, true, err, errlen);
}

int config_from_json_unvalidated(struct vm_config *cfg, const char *json, size_t len, char *err,
				 size_t errlen)
{
	return config_from_json_opt(cfg, json, len, false, err, errlen);
}

/* --- serialization -------------------------------------------------------- */

static bool add_string(cJSON *obj, const char *name, const char *s)
{
	return cJSON_AddStringToObject(obj, name, s) != NULL;
}

static cJSON *net_to_json(const struct net_config *n)
{
	cJSON *o = cJSON_CreateObject();
	char mac[18];
	bool ok;

	if (!o)
		return NULL;
	ok = add_string(o, n->backend == NET_TAP ? "tap" : "macvtap", n->ifname);
	if (n->has_mac) {
		snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->mac[0], n->mac[1],
			 n->mac[2], n->mac[3], n->mac[4], n->mac[5]);
		ok = ok && add_string(o, "mac", mac);
	}
	ok = ok && cJSON_AddNumberToObject(o, "queues", n->queues);
	ok = ok && cJSON_AddBoolToObject(o, "iommu", n->iommu);
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static cJSON *device_to_json(const struct device_config *d)
{
	cJSON *o = cJSON_CreateObject();
	bool ok;

	if (!o)
		return NULL;
	ok = add_string(o, d->kind == PASSTHROUGH_VFIO ? "vfio" : "vfio-user",
			d->path ? d->path : "");
	ok = ok && cJSON_AddBoolToObject(o, "iommu", d->iommu);
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static bool add_console(cJSON *o, const struct vm_config *cfg)
{
	char *s;
	bool ok;

	switch (cfg->console) {
	case CONSOLE_STDIO:
		return add_string(o, "console", "stdio");
	case CONSOLE_NONE:
		return add_string(o, "console", "none");
	case CONSOLE_FILE:
		if (asprintf(&s, "file:%s", cfg->console_path ? cfg->console_path : "") < 0)
			return false;
		ok = add_string(o, "console", s);
		free(s);
		return ok;
	}
	return false;
}

cJSON *config_to_json(const struct vm_config *cfg)
{
	cJSON *o = cJSON_CreateObject(), *arr, *e;
	bool ok;

	if (!o)
		return NULL;
	ok = add_string(o, "kernel", cfg->kernel ? cfg->kernel : "");
	if (ok && cfg->initrd)
		ok = add_string(o, "initrd", cfg->initrd);
	if (ok && cfg->cmdline)
		ok = add_string(o, "cmdline", cfg->cmdline);
	ok = ok && cJSON_AddNumberToObject(o, "cpus", cfg->cpus);
	ok = ok && cJSON_AddNumberToObject(o, "memory_mib", (double)cfg->memory_mib);
	ok = ok && add_console(o, cfg);
	ok = ok && cJSON_AddBoolToObject(o, "iommu", cfg->iommu);
	arr = ok ? cJSON_AddArrayToObject(o, "nets") : NULL;
	for (unsigned i = 0; arr && i < cfg->nr_nets && i < CONFIG_MAX_NETS; i++) {
		e = net_to_json(&cfg->nets[i]);
		if (!e || !cJSON_AddItemToArray(arr, e)) {
			cJSON_Delete(e);
			arr = NULL;
		}
	}
	ok = arr != NULL;
	arr = ok ? cJSON_AddArrayToObject(o, "devices") : NULL;
	for (unsigned i = 0; arr && i < cfg->nr_devices && i < CONFIG_MAX_DEVICES; i++) {
		e = device_to_json(&cfg->devices[i]);
		if (!e || !cJSON_AddItemToArray(arr, e)) {
			cJSON_Delete(e);
			arr = NULL;
		}
	}
	if (!arr) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}
