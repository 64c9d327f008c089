/* UNIX and TCP transports for the migration stream. */
#include "migration/transport.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/log.h"
#include "vmm/unix_listen.h"

#define MIG_LISTEN_BACKLOG 16

int mig_url_parse(const char *url, struct mig_url *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof(*u));
	if (!url) {
		snprintf(err, errlen, "no URL given");
		return -EINVAL;
	}
	if (!strncmp(url, "unix:", 5)) {
		const char *p = url + 5;

		if (!*p || strlen(p) >= sizeof(u->path)) {
			snprintf(err, errlen, "'%s': a UNIX socket path must have 1..%zu characters", url,
				 sizeof(u->path) - 1);
			return -EINVAL;
		}
		u->kind = MIG_TRANSPORT_UNIX;
		snprintf(u->path, sizeof(u->path), "%s", p);
		return 0;
	}
	if (!strncmp(url, "tcp:", 4)) {
		const char *h = url + 4, *colon, *hend;

		if (*h == '[') {
			hend = strchr(h, ']');
			if (!hend || hend[1] != ':')
				goto bad_tcp;
			colon = hend + 1;
			h++;
		} else {
			colon = strrchr(h, ':');
			if (!colon)
				goto bad_tcp;
			hend = colon;
		}
		size_t hlen = (size_t)(hend - h);
		const char *port = colon + 1;
		if (!hlen || hlen >= sizeof(u->host) || !*port || strlen(port) >= sizeof(u->port) ||
		    strspn(port, "0123456789") != strlen(port))
			goto bad_tcp;
		u->kind = MIG_TRANSPORT_TCP;
		memcpy(u->host, h, hlen);
		snprintf(u->port, sizeof(u->port), "%s", port);
		return 0;
bad_tcp:
		snprintf(err, errlen, "'%s': expected tcp:HOST:PORT", url);
		return -EINVAL;
	}
	snprintf(err, errlen, "'%s': expected unix:PATH or tcp:HOST:PORT", url);
	return -EINVAL;
}

static int unix_addr(const struct mig_url *u, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", u->path);
	return 0;
}

static int tcp_resolve(const struct mig_url *u, bool passive, struct addrinfo **res, char *err,
		       size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = passive ? AI_PASSIVE : 0 };
	int r = getaddrinfo(u->host, u->port, &hints, res);

	if (r) {
		snprintf(err, errlen, "tcp:%s:%s: %s", u->host, u->port, gai_strerror(r));
		return -EHOSTUNREACH;
	}
	return 0;
}

int mig_connect(const struct mig_url *u, char *err, size_t errlen)
{
	int fd, ret;

	if (u->kind == MIG_TRANSPORT_UNIX) {
		struct sockaddr_un sa;

		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		unix_addr(u, &sa);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			ret = -errno;
			snprintf(err, errlen, "cannot connect to unix:%s: %s", u->path, strerror_safe(errno));
			close(fd);
			return ret;
		}
		return fd;
	}
	struct addrinfo *res, *ai;

	ret = tcp_resolve(u, false, &res, err, errlen);
	if (ret)
		return ret;
	ret = -ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			int one = 1;

			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			freeaddrinfo(res);
			return fd;
		}
		ret = -errno;
		close(fd);
	}
	freeaddrinfo(res);
	snprintf(err, errlen, "cannot connect to tcp:%s:%s: %s", u->host, u->port, strerror_safe(-ret));
	return ret;
}

int mig_listen(const struct mig_url *u, char *err, size_t errlen)
{
	int fd, ret, one = 1;

	if (u->kind == MIG_TRANSPORT_UNIX) {
		/* 0600: whoever connects first feeds this destination a guest
		 * (or, for a live update, is handed its memory). */
		static const struct unix_listen_opts opts = { .backlog = MIG_LISTEN_BACKLOG, .mode = 0600 };
		char why[200];

		fd = unix_listen(u->path, &opts, why, sizeof(why));
		if (fd < 0)
			snprintf(err, errlen, "cannot listen on unix:%s: %s", u->path, why);
		return fd;
	}
	struct addrinfo *res, *ai;

	ret = tcp_resolve(u, true, &res, err, errlen);
	if (ret)
		return ret;
	ret = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, MIG_LISTEN_BACKLOG) == 0) {
			freeaddrinfo(res);
			return fd;
		}
		ret = -errno;
		close(fd);
	}
	freeaddrinfo(res);
	snprintf(err, errlen, "cannot listen on tcp:%s:%s: %s", u->host, u->port, strerror_safe(-ret));
	return ret;
}

int mig_accept(int listen_fd, int timeout_ms, int cancel_fd, char *err, size_t errlen)
{
	struct pollfd p[2] = { { .fd = listen_fd, .events = POLLIN }, { .fd = cancel_fd, .events = POLLIN } };
	int r, fd, one = 1;

	do
		r = poll(p, cancel_fd > 0 ? 2 : 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r > 0 && cancel_fd > 0 && (p[1].revents & POLLIN)) {
		snprintf(err, errlen, "cancelled while waiting for the source");
		return -ECANCELED;
	}
	if (r == 0) {
		snprintf(err, errlen, "no connection within %d ms", timeout_ms);
		return -ETIMEDOUT;
	}
	if (r < 0)
		return -errno;
	fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "accept failed: %s", strerror_safe(errno));
		return r;
	}
	/* Harmless on UNIX sockets (fails with EOPNOTSUPP, ignored). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}
