/* Logging: one line per message, prefixed with the subsystem or device name.
 * Library code never exits; it logs and returns a negative errno. */
#ifndef VMM_LOG_H
#define VMM_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Messages above this level are dropped. Set once at start-up (CLI -v / VMM_LOG). */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

void log_msg(enum log_level level, const char *prefix, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_err(prefix, ...)   log_msg(LOG_ERROR, prefix, __VA_ARGS__)
#define log_warn(prefix, ...)  log_msg(LOG_WARN, prefix, __VA_ARGS__)
#define log_info(prefix, ...)  log_msg(LOG_INFO, prefix, __VA_ARGS__)
#define log_debug(prefix, ...) log_msg(LOG_DEBUG, prefix, __VA_ARGS__)

/* strerror() that is safe to call from any thread. */
const char *strerror_safe(int err);

#endif
