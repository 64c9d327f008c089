/* The REST API on a UNIX socket (HTTP/1.1, JSON; see api/openapi.yaml) and
 * the CLI verbs around it.
 *
 *   vmm serve --api-sock PATH            a VMM with no VM, driven by the API
 *   vmm run ... --api-sock PATH          boots a VM and also serves the API
 *   vmm ctl --api-sock PATH VERB [--data JSON|@FILE]   one request, prints the reply
 */
#ifndef API_API_H
#define API_API_H

#include <stddef.h>

struct vm;
struct api_server;

/* CLI verbs: argv[0] is the verb; return the process exit status. */
int cli_serve(int argc, char **argv);
int cli_ctl(int argc, char **argv);

/* Serve the API on a new UNIX socket at @sock_path (mode 0600). A stale socket
 * file is replaced only if nothing listens on it. With @vm (already started,
 * owned by the caller: `vmm run --api-sock`), the API drives that VM but never
 * destroys or replaces it; vm.shutdown and vmm.shutdown request its exit, and
 * the caller's vm_wait_exit() returns. With @vm NULL the server owns the VMs
 * it creates (vmm serve). Returns 0 or -errno (message logged). */
int api_server_start(struct api_server **out, const char *sock_path, struct vm *vm);
/* Stop serving, remove the socket file, destroy any VM the server owns. */
void api_server_stop(struct api_server *srv);
/* An eventfd that becomes readable when a client asked vmm.shutdown (after
 * the reply has been sent): `vmm serve` polls it. */
int api_server_shutdown_fd(const struct api_server *srv);

/* The client side: one request over the socket. */
struct api_reply {
	unsigned status;   /* HTTP status */
	char *body;        /* NUL-terminated reply body (malloc'd), may be empty */
	size_t body_len;
};

/* Send @method @path with an optional body (@body may be NULL) and read the
 * whole reply. Returns 0 (reply filled; free with api_reply_free) or -errno
 * with a message in @err. */
int api_client_request(const char *sock_path, const char *method, const char *path,
		       const char *body, size_t body_len, struct api_reply *reply,
		       char *err, size_t errlen);
void api_reply_free(struct api_reply *reply);

#endif
