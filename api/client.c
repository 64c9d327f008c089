/* The API client: one HTTP/1.1 request over the UNIX socket (no keep-alive),
 * and `vmm ctl`, which sends one verb and prints the JSON reply. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/actions.h"
#include "api/api.h"
#include "vmm/cli.h"

#define CLIENT_TIMEOUT_S   30
#define CLIENT_MAX_REPLY   (16 * 1024 * 1024)

/* Exit statuses of `vmm ctl`. */
#define CTL_EXIT_REFUSED   1      /* the server answered with an error status */
#define CTL_EXIT_NO_SERVER 3      /* no server, or no valid reply */

void api_reply_free(struct api_reply *reply)
{
	free(reply->body);
	reply->body = NULL;
	reply->body_len = 0;
}

static int client_connect(const char *sock_path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = CLIENT_TIMEOUT_S };
	int fd, ret;

	if (strlen(sock_path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path '%s' is too long", sock_path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return ret;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot connect to '%s': %s", sock_path, strerror(errno));
		close(fd);
		return ret;
	}
	return fd;
}

static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read until the server closes the connection (we sent Connection: close). */
static int recv_all(int fd, char **out, size_t *out_len)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap), *nb;
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (len + 1 >= cap) {
			if (cap >= CLIENT_MAX_REPLY) {
				free(buf);
				return -EFBIG;
			}
			nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		/* A server that answered before reading our whole body (413)
		 * closes with data unread, which resets our side: the reply
		 * already received stands. */
		if (n < 0 && errno == ECONNRESET && len)
			break;
		if (n < 0) {
			int ret = -errno;

			free(buf);
			return ret;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	return 0;
}

/* Split "HTTP/1.1 200 OK\r\n...\r\n\r\nbody" into status and body. */
static int parse_reply(char *raw, size_t len, struct api_reply *reply)
{
	char *hdr_end = strstr(raw, "\r\n\r\n"), *p, *body;
	unsigned long clen = 0;
	bool has_clen = false;
	unsigned status;

	if (!hdr_end || sscanf(raw, "HTTP/1.%*[01] %3u", &status) != 1 || status < 100 || status > 599)
		return -EPROTO;
	*hdr_end = '\0';
	for (p = strstr(raw, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
		if (!strncasecmp(p + 2, "Content-Length:", 15)) {
			clen = strtoul(p + 17, NULL, 10);
			has_clen = true;
		}
	}
	body = hdr_end + 4;
	reply->body_len = len - (size_t)(body - raw);
	if (has_clen && clen < reply->body_len)
		reply->body_len = clen;
	reply->body = malloc(reply->body_len + 1);
	if (!reply->body)
		return -ENOMEM;
	memcpy(reply->body, body, reply->body_len);
	reply->body[reply->body_len] = '\0';
	reply->status = status;
	return 0;
}

int api_client_request(const char *sock_path, const char *method, const char *path,
		       const char *body, size_t body_len, struct api_reply *reply,
		       char *err, size_t errlen)
{
	char *head = NULL, *raw = NULL;
	size_t raw_len = 0;
	int fd, ret, n;

	memset(reply, 0, sizeof(*reply));
	fd = client_connect(sock_path, err, errlen);
	if (fd < 0)
		return fd;
	n = asprintf(&head, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
			    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
		     method, path, body ? body_len : 0);
	if (n < 0) {
		ret = -ENOMEM;
		goto out;
	}
	ret = send_all(fd, head, (size_t)n);
	if (!ret && body && body_len)
		ret = send_all(fd, body, body_len);
	/* A server that refuses early (413) may close before reading the body:
	 * its reply is still there to read. */
	if (ret && ret != -EPIPE && ret != -ECONNRESET) {
		snprintf(err, errlen, "sending the request failed: %s", strerror(-ret));
		goto out;
	}
	ret = recv_all(fd, &raw, &raw_len);
	if (ret) {
		snprintf(err, errlen, "reading the reply failed: %s", strerror(-ret));
		goto out;
	}
	ret = parse_reply(raw, raw_len, reply);
	if (ret)
		snprintf(err, errlen, "the server sent no valid HTTP reply");
out:
	free(raw);
	free(head);
	close(fd);
	return ret;
}

/* --- vmm ctl ---------------------------------------------------------------- */

static void ctl_usage(FILE *f)
{
	fprintf(f, "usage: vmm ctl --api-sock PATH VERB [--data JSON|@FILE]\n\n"
		   "Send one request to a VMM's API socket and print the JSON reply\n"
		   "(indented on a terminal, compact otherwise).\n\n"
		   "  --api-sock PATH   the socket of 'vmm serve' or 'vmm run --api-sock'\n"
		   "  --data JSON       request body; @FILE reads it from FILE, @- from stdin\n"
		   "  -h, --help        this help\n\nVerbs:\n");
	for (unsigned i = 0; i < API_NR_ACTIONS; i++) {
		const struct api_action_desc *a = api_action_get(i);

		fprintf(f, "  %-17s %-4s %s%s\n", a->name, a->method, a->summary,
			a->body == API_BODY_REQUIRED ? " (--data)" : "");
	}
	fprintf(f, "\nExit status: 0 on a 2xx reply, 1 when the VMM refused the request\n"
		   "(the error is printed), 2 on bad usage, 3 when the VMM cannot be reached.\n");
}

static int read_stream(FILE *f, char **out, size_t *len)
{
	size_t cap = 4096, n = 0, r;
	char *buf = malloc(cap), *nb;

	if (!buf)
		return -ENOMEM;
	while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += r;
		if (n + 1 == cap) {
			if (cap > 4 * API_MAX_BODY)   /* the server would refuse it anyway */
				break;
			nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
	}
	if (ferror(f)) {
		free(buf);
		return -EIO;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* --data JSON, @FILE or @- */
static int ctl_load_data(const char *arg, char **out, size_t *len)
{
	FILE *f;
	int ret;

	if (arg[0] != '@') {
		*out = strdup(arg);
		*len = strlen(arg);
		return *out ? 0 : -ENOMEM;
	}
	if (!strcmp(arg, "@-"))
		return read_stream(stdin, out, len);
	f = fopen(arg + 1, "r");
	if (!f) {
		ret = -errno;
		cli_error("ctl: --data: cannot open '%s': %s", arg + 1, strerror(errno));
		return ret;
	}
	ret = read_stream(f, out, len);
	fclose(f);
	if (ret)
		cli_error("ctl: --data: cannot read '%s'", arg + 1);
	return ret;
}

static void ctl_print_reply(const struct api_reply *reply)
{
	cJSON *json = cJSON_ParseWithLength(reply->body, reply->body_len);
	char *text = NULL;

	if (json)
		text = isatty(STDOUT_FILENO) ? cJSON_Print(json) : cJSON_PrintUnformatted(json);
	if (text)
		printf("%s\n", text);
	else if (reply->body_len)
		printf("%s\n", reply->body);
	if (reply->status >= 300) {
		const cJSON *e = json ? cJSON_GetObjectItemCaseSensitive(json, "error") : NULL;

		cli_error("%s (HTTP %u)", cJSON_IsString(e) ? e->valuestring : "request failed",
			  reply->status);
	}
	free(text);
	cJSON_Delete(json);
}

enum { CTL_OPT_SOCK = 256, CTL_OPT_DATA };

static const struct option ctl_options[] = {
	{ "api-sock", required_argument, NULL, CTL_OPT_SOCK },
	{ "data", required_argument, NULL, CTL_OPT_DATA },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

int cli_ctl(int argc, char **argv)
{
	const char *sock = NULL, *data_arg = NULL, *verb = NULL;
	const struct api_action_desc *a;
	struct api_reply reply;
	char *data = NULL, *path = NULL, err[512];
	size_t data_len = 0;
	int opt, status;

	optind = 1;
	opterr = 0;
	/* Options may come before or after the verb (GNU getopt permutes). */
	while ((opt = getopt_long(argc, argv, "h", ctl_options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			ctl_usage(stdout);
			return 0;
		case CTL_OPT_SOCK:
			sock = optarg;
			break;
		case CTL_OPT_DATA:
			data_arg = optarg;
			break;
		default:
			cli_error("ctl: unknown option or missing value: '%s' (see 'vmm ctl --help')",
				  argv[optind - 1]);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc)
		verb = argv[optind++];
	if (optind < argc) {
		cli_error("ctl: unexpected argument '%s'", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	if (!sock || !verb) {
		cli_error("ctl: %s is required (see 'vmm ctl --help')", sock ? "a VERB" : "--api-sock");
		return CLI_EXIT_USAGE;
	}
	a = api_action_by_name(verb);
	if (!a) {
		cli_error("ctl: unknown verb '%s' (see 'vmm ctl --help')", verb);
		return CLI_EXIT_USAGE;
	}
	if (data_arg && ctl_load_data(data_arg, &data, &data_len))
		return CLI_EXIT_USAGE;
	if (asprintf(&path, "%s%s", API_PATH_PREFIX, a->name) < 0) {
		free(data);
		return CTL_EXIT_NO_SERVER;
	}
	if (api_client_request(sock, a->method, path, data, data_len, &reply, err, sizeof(err))) {
		cli_error("ctl: %s", err);
		status = CTL_EXIT_NO_SERVER;
	} else {
		ctl_print_reply(&reply);
		status = reply.status >= 200 && reply.status < 300 ? 0 : CTL_EXIT_REFUSED;
		api_reply_free(&reply);
	}
	free(path);
	free(data);
	return status;
}
