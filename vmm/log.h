/* Logging: one line per message, prefixed with the subsystem or device name.
 * Library code never exits; it logs and returns a negative errno. */
#ifndef VMM_LOG_H
#define VMM_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

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

/* Rate limit for messages a guest can trigger at will (IOMMU faults, bad
 * requests): at most @burst messages per @interval_ms window. Returns true
 * if this message may be printed; *missed (optional) gets how many were
 * suppressed since the last printed one, so the caller can say so. Not
 * thread safe: one struct per device, used under the device's lock. */
struct log_ratelimit {
	uint64_t window_start_ns;
	unsigned printed;
	uint64_t missed;
};
bool log_ratelimit(struct log_ratelimit *rl, unsigned burst, unsigned interval_ms, uint64_t *missed);

/* strerror() that is safe to call from any thread. */
const char *strerror_safe(int err);

#endif
