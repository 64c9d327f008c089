/* Migration transports: "unix:PATH" and "tcp:HOST:PORT" (HOST may be a name,
 * an IPv4 address or a bracketed IPv6 address: tcp:[::1]:4444). */
#ifndef MIGRATION_TRANSPORT_H
#define MIGRATION_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

enum mig_transport { MIG_TRANSPORT_UNIX, MIG_TRANSPORT_TCP };

struct mig_url {
	enum mig_transport kind;
	char path[108];          /* unix: sun_path */
	char host[256];          /* tcp */
	char port[8];
};

/* Parse @url; -EINVAL with a reason in @err if it is not one of the forms above. */
int mig_url_parse(const char *url, struct mig_url *u, char *err, size_t errlen);
/* Connected stream socket (close-on-exec, TCP_NODELAY for TCP), or -errno. */
int mig_connect(const struct mig_url *u, char *err, size_t errlen);
/* Listening socket; a stale UNIX socket file is replaced. */
int mig_listen(const struct mig_url *u, char *err, size_t errlen);
/* Accept one connection, waiting at most @timeout_ms (< 0: forever); gives
 * up with -ECANCELED as soon as @cancel_fd (if > 0) becomes readable. */
int mig_accept(int listen_fd, int timeout_ms, int cancel_fd, char *err, size_t errlen);

#endif
