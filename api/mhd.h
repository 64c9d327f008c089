/* libmicrohttpd, loaded with dlopen() when a server starts instead of being
 * linked: its TLS dependency chain (gnutls, nettle, gmp, p11-kit, ...) costs
 * every vmm process about 2 ms of dynamic linking at exec, including
 * `vmm run` without an API. `vmm serve` loads it after its socket already
 * listens, so the socket accepts (and queues) connections meanwhile. */
#ifndef API_MHD_H
#define API_MHD_H

#include <microhttpd.h>

#define API_MHD_SONAME "libmicrohttpd.so.12"

struct api_mhd {
	void *dl;
	__typeof__(MHD_start_daemon) *start_daemon;
	__typeof__(MHD_stop_daemon) *stop_daemon;
	__typeof__(MHD_create_response_from_buffer) *create_response_from_buffer;
	__typeof__(MHD_add_response_header) *add_response_header;
	__typeof__(MHD_queue_response) *queue_response;
	__typeof__(MHD_destroy_response) *destroy_response;
	__typeof__(MHD_lookup_connection_value) *lookup_connection_value;
	__typeof__(MHD_get_daemon_info) *get_daemon_info;
};

/* 0, or -ENOENT with the reason logged. */
int api_mhd_load(struct api_mhd *m);
void api_mhd_unload(struct api_mhd *m);

#endif
