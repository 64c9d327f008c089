#include "vmm/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The only process-wide mutable state: a log threshold, set once at start-up. */
static _Atomic int log_threshold = LOG_WARN;

void log_set_level(enum log_level level) { log_threshold = level; }
enum log_level log_get_level(void) { return (enum log_level)log_threshold; }

void log_msg(enum log_level level, const char *prefix, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	char line[1024];
	va_list ap;
	int n;

	if ((int)level > log_threshold)
		return;
	n = snprintf(line, sizeof(line), "vmm: %s: %s: ", names[level], prefix);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One fputs per message so lines from different threads do not interleave. */
	fprintf(stderr, "%s\n", line);
}

bool log_ratelimit(struct log_ratelimit *rl, unsigned burst, unsigned interval_ms, uint64_t *missed)
{
	struct timespec ts;
	uint64_t now;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	if (!rl->window_start_ns || now - rl->window_start_ns >= (uint64_t)interval_ms * 1000000ULL) {
		rl->window_start_ns = now;
		rl->printed = 0;
	}
	if (rl->printed >= burst) {
		rl->missed++;
		return false;
	}
	rl->printed++;
	if (missed)
		*missed = rl->missed;
	rl->missed = 0;
	return true;
}

const char *strerror_safe(int err)
{
	/* strerrordesc_np() (glibc 2.32+) returns a static string: thread safe. */
	const char *s = strerrordesc_np(err);

	return s ? s : "unknown error";
}
