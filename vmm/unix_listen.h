/* Listening UNIX stream sockets that appear on the file system only once
 * they accept connections.
 *
 * A client that waits for a socket file and then connects must never see
 * ECONNREFUSED because it came between bind() and listen(): the socket is
 * bound under a temporary name next to PATH, given its mode, put in the
 * listening state and only then rename()d into place. An existing PATH is
 * replaced only if it is a socket nobody listens on (left by a process that
 * died); a live socket or any other kind of file is left alone. */
#ifndef VMM_UNIX_LISTEN_H
#define VMM_UNIX_LISTEN_H

#include <stddef.h>
#include <sys/types.h>

struct unix_listen_opts {
	int backlog;
	mode_t mode;        /* permission bits of the socket file */
	int sock_flags;     /* extra socket() type flags, e.g. SOCK_NONBLOCK */
};

/* Returns the listening fd, or -errno with @err saying what to fix:
 * -ENAMETOOLONG, -EEXIST (not a socket), -EADDRINUSE (something listens). */
int unix_listen(const char *path, const struct unix_listen_opts *o, char *err, size_t errlen);

#endif
