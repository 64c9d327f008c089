/* Listening UNIX sockets, bound under a temporary name and renamed into place. */
#include "vmm/unix_listen.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/log.h"

/* Is something accepting connections on @path? (True when it cannot tell.) */
static bool socket_in_use(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool used;

	if (fd < 0 || strlen(path) >= sizeof(sa.sun_path)) {
		if (fd >= 0)
			close(fd);
		return true;   /* cannot tell: do not remove it */
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	used = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno != ECONNREFUSED;
	close(fd);
	return used;
}

/* Make room for a new socket at @path: nothing there, or a stale socket removed. */
static int clear_path(const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "'%s' exists and is not a socket; not replacing it", path);
		return -EEXIST;
	}
	if (socket_in_use(path)) {
		snprintf(err, errlen, "'%s': another process is listening on it", path);
		return -EADDRINUSE;
	}
	log_info("unix", "removing stale socket '%s'", path);
	if (unlink(path) < 0 && errno != ENOENT) {
		int ret = -errno;

		snprintf(err, errlen, "cannot remove stale socket '%s': %s", path, strerror_safe(errno));
		return ret;
	}
	return 0;
}

int unix_listen(const char *path, const struct unix_listen_opts *o, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char tmp[sizeof(sa.sun_path)];
	int fd, ret, n;
	bool staged;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path '%s' is longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	ret = clear_path(path, err, errlen);
	if (ret)
		return ret;
	/* Paths too long for the temporary suffix are bound directly. */
	n = snprintf(tmp, sizeof(tmp), "%s.%d~", path, (int)getpid());
	staged = n > 0 && (size_t)n < sizeof(tmp);
	if (!staged)
		snprintf(tmp, sizeof(tmp), "%s", path);
	else
		unlink(tmp);   /* left by an earlier process with our pid */
	memcpy(sa.sun_path, tmp, strlen(tmp) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | o->sock_flags, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot create a socket: %s", strerror_safe(errno));
		return ret;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot bind '%s': %s", tmp, strerror_safe(errno));
		close(fd);
		return ret;
	}
	/* The mode is set before listen(): connect() checks it, and until
	 * listen() every connect() is refused anyway. No umask games, which
	 * would touch every thread's file creation. */
	if (chmod(tmp, o->mode) < 0 || listen(fd, o->backlog) < 0 || (staged && rename(tmp, path) < 0)) {
		ret = -errno;
		snprintf(err, errlen, "cannot listen on '%s': %s", path, strerror_safe(errno));
		unlink(tmp);
		close(fd);
		return ret;
	}
	return fd;
}
