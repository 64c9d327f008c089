/* The HTTP layer of the API: a UNIX listen socket we create ourselves, handed
 * to libmicrohttpd (one internal polling thread, so requests are handled one
 * at a time), request bodies accumulated up to API_MAX_BODY, and the mapping
 * of every request to exactly one action or to an error status:
 *   unknown path 404, wrong method 405, body too large 413, bad body 400,
 *   action not allowed in the VM's state 409. */
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/config_json.h"
#include "api/mhd.h"
#include "api/server_internal.h"
#include "vmm/log.h"
#include "vmm/unix_listen.h"

#define API_SOCK_MODE          0600
#define API_LISTEN_BACKLOG     64
#define API_CONN_LIMIT         64       /* simultaneous connections */
#define API_CONN_TIMEOUT_S     10       /* idle/slow clients are dropped */
#define API_CONN_MEMORY_LIMIT  (32 * 1024)   /* request line + headers per connection */
#define API_DRAIN_MS           500      /* at stop, wait this long for open connections */

/* Per-request state, from the first access-handler call to completion. */
struct api_request {
	const struct api_action_desc *action;
	char *body;
	size_t len;
	bool too_large;
	bool shutdown_after;          /* vmm.shutdown: signal once the reply is out */
};

uint64_t api_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void api_result_error(struct api_result *r, unsigned status, const char *fmt, ...)
{
	va_list ap;

	r->status = status;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	cJSON_Delete(r->json);
	r->json = NULL;
}

/* Queue a JSON reply. @json is consumed. */
static enum MHD_Result reply_json(const struct api_mhd *mhd, struct MHD_Connection *conn,
				  unsigned status, cJSON *json, const char *allow)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char *text = json ? cJSON_PrintUnformatted(json) : NULL;

	cJSON_Delete(json);
	if (!text)
		text = strdup("{\"error\": \"out of memory\"}");
	if (!text)
		return MHD_NO;
	resp = mhd->create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	mhd->add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (allow)
		mhd->add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	ret = mhd->queue_response(conn, status, resp);
	mhd->destroy_response(resp);
	return ret;
}

static enum MHD_Result reply_error(const struct api_mhd *mhd, struct MHD_Connection *conn,
				   unsigned status, const char *allow, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static enum MHD_Result reply_error(const struct api_mhd *mhd, struct MHD_Connection *conn,
				   unsigned status, const char *allow, const char *fmt, ...)
{
	char msg[768];
	cJSON *o = cJSON_CreateObject();
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (o && !cJSON_AddStringToObject(o, "error", msg)) {
		cJSON_Delete(o);
		o = NULL;
	}
	if (status >= 500)
		log_warn("api", "%u: %s", status, msg);
	return reply_json(mhd, conn, status, o, allow);
}

/* The first call for a request: route it and refuse early (before reading a
 * body) what can be refused from the request line and headers. Returns true
 * if a reply was queued. */
static bool request_route(const struct api_mhd *mhd, struct MHD_Connection *conn, const char *url, const char *method,
			  struct api_request *req, enum MHD_Result *mret)
{
	const char *name = NULL, *clen;
	unsigned long long n;
	char *end;

	if (!strncmp(url, API_PATH_PREFIX, strlen(API_PATH_PREFIX)))
		name = url + strlen(API_PATH_PREFIX);
	req->action = api_action_by_name(name);
	if (!req->action) {
		*mret = reply_error(mhd, conn, MHD_HTTP_NOT_FOUND, NULL, "no such endpoint: %.200s", url);
		return true;
	}
	if (strcmp(method, req->action->method)) {
		*mret = reply_error(mhd, conn, MHD_HTTP_METHOD_NOT_ALLOWED, req->action->method,
				    "%s: method %.16s not allowed (use %s)", req->action->name, method,
				    req->action->method);
		return true;
	}
	clen = mhd->lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (clen) {
		errno = 0;
		n = strtoull(clen, &end, 10);
		if (!errno && *end == '\0' && n > API_MAX_BODY) {
			*mret = reply_error(mhd, conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
					    "request body of %llu bytes is larger than the limit of %d",
					    n, API_MAX_BODY);
			return true;
		}
	}
	return false;
}

/* Append one chunk of the body; past the limit just count it (chunked
 * uploads have no Content-Length to refuse early). */
static int request_append(struct api_request *req, const char *data, size_t size)
{
	char *nb;

	if (req->too_large || req->len + size > API_MAX_BODY) {
		req->too_large = true;
		free(req->body);
		req->body = NULL;
		return 0;
	}
	nb = realloc(req->body, req->len + size + 1);
	if (!nb)
		return -ENOMEM;
	memcpy(nb + req->len, data, size);
	req->len += size;
	nb[req->len] = '\0';
	req->body = nb;
	return 0;
}

static bool body_is_blank(const struct api_request *req)
{
	for (size_t i = 0; i < req->len; i++)
		if (!strchr(" \t\r\n", req->body[i]))
			return false;
	return true;
}

/* Parse and shape-check the body. Returns NULL with *bad set on a 400. */
static cJSON *request_parse_body(const struct api_request *req, char *err, size_t errlen,
				 bool *bad)
{
	const struct api_action_desc *a = req->action;
	cJSON *root;

	*bad = false;
	if (body_is_blank(req)) {
		if (a->body == API_BODY_REQUIRED) {
			snprintf(err, errlen, "%s: a JSON object body is required", a->name);
			*bad = true;
		}
		return NULL;
	}
	root = json_parse_strict(req->body, req->len, err, errlen);
	if (!root) {
		*bad = true;
		return NULL;
	}
	if (!cJSON_IsObject(root)) {
		snprintf(err, errlen, "%s: the body must be a JSON object", a->name);
		goto bad;
	}
	if (a->body == API_BODY_NONE && root->child) {
		snprintf(err, errlen, "%.64s: unknown field (%s takes no parameters)",
			 root->child->string, a->name);
		goto bad;
	}
	return root;
bad:
	cJSON_Delete(root);
	*bad = true;
	return NULL;
}

static enum MHD_Result request_finish(struct api_server *srv, struct MHD_Connection *conn,
				      struct api_request *req)
{
	const struct api_mhd *mhd = &srv->mhd_lib;
	struct api_result r = { .status = MHD_HTTP_OK };
	char err[512];
	cJSON *body;
	bool bad;

	if (req->too_large)
		return reply_error(mhd, conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
				   "request body is larger than the limit of %d bytes", API_MAX_BODY);
	body = request_parse_body(req, err, sizeof(err), &bad);
	if (bad)
		return reply_error(mhd, conn, MHD_HTTP_BAD_REQUEST, NULL, "%s", err);
	api_vmctl_run(srv, req->action, body, &r);
	cJSON_Delete(body);
	if (r.status >= 400)
		return reply_error(mhd, conn, r.status, NULL, "%s", r.err);
	if (req->action->action == API_VMM_SHUTDOWN)
		req->shutdown_after = true;
	return reply_json(mhd, conn, r.status, r.json ? r.json : cJSON_CreateObject(), NULL);
}

static enum MHD_Result api_access(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct api_server *srv = cls;
	struct api_request *req = *con_cls;
	enum MHD_Result mret;

	if (!req) {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		*con_cls = req;
		if (request_route(&srv->mhd_lib, conn, url, method, req, &mret))
			return mret;
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (request_append(req, upload_data, *upload_data_size))
			return MHD_NO;      /* out of memory: drop the connection */
		*upload_data_size = 0;
		return MHD_YES;
	}
	return request_finish(srv, conn, req);
}

static void api_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			  enum MHD_RequestTerminationCode toe)
{
	struct api_server *srv = cls;
	struct api_request *req = *con_cls;
	uint64_t one = 1;

	if (!req)
		return;
	if (req->shutdown_after && write(srv->shutdown_fd, &one, sizeof(one)) < 0)
		log_warn("api", "cannot signal shutdown: %s", strerror_safe(errno));
	free(req->body);
	free(req);
	*con_cls = NULL;
}

static void api_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[256];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_debug("api", "microhttpd: %s", msg);
}

static int api_listen(const char *path)
{
	static const struct unix_listen_opts opts = {
		.backlog = API_LISTEN_BACKLOG, .mode = API_SOCK_MODE, .sock_flags = SOCK_NONBLOCK,
	};
	char err[256];
	int fd = unix_listen(path, &opts, err, sizeof(err));

	if (fd < 0)
		log_err("api", "%s", err);
	return fd;
}

int api_server_shutdown_fd(const struct api_server *srv)
{
	return srv->shutdown_fd;
}

int api_server_start(struct api_server **out, const char *sock_path, struct vm *vm)
{
	struct api_server *srv;
	int ret;

	*out = NULL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->listen_fd = srv->shutdown_fd = -1;
	srv->start_ns = api_now_ns();
	srv->sock_path = strdup(sock_path);
	if (!srv->sock_path) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = api_vmctl_init(&srv->ctl, vm);
	if (ret)
		goto fail;
	srv->shutdown_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->shutdown_fd < 0) {
		ret = -errno;
		goto fail_ctl;
	}
	srv->listen_fd = api_listen(sock_path);
	if (srv->listen_fd < 0) {
		ret = srv->listen_fd;
		goto fail_ctl;
	}
	/* Listening already: connections queue while the library loads. */
	ret = api_mhd_load(&srv->mhd_lib);
	if (ret)
		goto fail_sock;
	srv->mhd = srv->mhd_lib.start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
				    api_access, srv,
				    MHD_OPTION_LISTEN_SOCKET, srv->listen_fd,
				    MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_CONN_LIMIT,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)API_CONN_TIMEOUT_S,
				    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_CONN_MEMORY_LIMIT,
				    MHD_OPTION_NOTIFY_COMPLETED, api_completed, srv,
				    MHD_OPTION_EXTERNAL_LOGGER, api_mhd_log, srv,
				    MHD_OPTION_END);
	if (!srv->mhd) {
		log_err("api", "cannot start the HTTP server on '%s'", sock_path);
		ret = -EIO;
		goto fail_lib;
	}
	log_info("api", "listening on %s", sock_path);
	*out = srv;
	return 0;

fail_lib:
	api_mhd_unload(&srv->mhd_lib);
fail_sock:
	close(srv->listen_fd);
	unlink(sock_path);
fail_ctl:
	api_vmctl_destroy(&srv->ctl);
fail:
	if (srv->shutdown_fd >= 0)
		close(srv->shutdown_fd);
	free(srv->sock_path);
	free(srv);
	return ret;
}

/* Let replies in flight (vm.shutdown under `vmm run`, whose VM exit is what
 * stops us) reach their clients before the connections are closed. */
static void api_server_drain(struct api_server *srv)
{
	const union MHD_DaemonInfo *info;

	for (int i = 0; i < API_DRAIN_MS; i++) {
		info = srv->mhd_lib.get_daemon_info(srv->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
		if (!info || info->num_connections == 0)
			return;
		usleep(1000);
	}
}

void api_server_stop(struct api_server *srv)
{
	if (!srv)
		return;
	api_server_drain(srv);
	/* MHD closes the listen socket it was given. */
	srv->mhd_lib.stop_daemon(srv->mhd);
	api_mhd_unload(&srv->mhd_lib);
	unlink(srv->sock_path);
	api_vmctl_destroy(&srv->ctl);
	close(srv->shutdown_fd);
	free(srv->sock_path);
	free(srv);
}
