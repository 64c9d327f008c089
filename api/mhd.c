#include "api/mhd.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#include "vmm/log.h"

#define MHD_SYM(m, field, name)                                   \
	do {                                                      \
		*(void **)&(m)->field = dlsym((m)->dl, name);     \
		if (!(m)->field) {                                \
			missing = name;                           \
			goto fail;                                \
		}                                                 \
	} while (0)

int api_mhd_load(struct api_mhd *m)
{
	const char *missing;

	memset(m, 0, sizeof(*m));
	m->dl = dlopen(API_MHD_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!m->dl) {
		log_err("api", "cannot load %s: %s (install libmicrohttpd12)", API_MHD_SONAME, dlerror());
		return -ENOENT;
	}
	MHD_SYM(m, start_daemon, "MHD_start_daemon");
	MHD_SYM(m, stop_daemon, "MHD_stop_daemon");
	MHD_SYM(m, create_response_from_buffer, "MHD_create_response_from_buffer");
	MHD_SYM(m, add_response_header, "MHD_add_response_header");
	MHD_SYM(m, queue_response, "MHD_queue_response");
	MHD_SYM(m, destroy_response, "MHD_destroy_response");
	MHD_SYM(m, lookup_connection_value, "MHD_lookup_connection_value");
	MHD_SYM(m, get_daemon_info, "MHD_get_daemon_info");
	return 0;
fail:
	log_err("api", "%s lacks %s", API_MHD_SONAME, missing);
	api_mhd_unload(m);
	return -ENOENT;
}

void api_mhd_unload(struct api_mhd *m)
{
	if (m->dl)
		dlclose(m->dl);
	memset(m, 0, sizeof(*m));
}
