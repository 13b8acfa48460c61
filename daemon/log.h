/* Logging: to the journal under systemd (with structured fields), to
 * stderr otherwise. Bottom layer: includes nothing of the daemon. */
#ifndef PM_LOG_H
#define PM_LOG_H

#include <stdarg.h>
#include <stdint.h>
#include <portalmetrics/plugin.h> /* PM_LOG_* levels */

/* Levels are syslog's: PM_LOG_ERROR (3) .. PM_LOG_DEBUG (7). */
void pm_log_init(int max_level, int to_journal);
void pm_log_set_level(int max_level);
int pm_log_level(void);
/* "error", "warning", "notice", "info", "debug" -> level, or -1. */
int pm_log_level_parse(const char *name);

/* Thread-safe. collector and plugin may be NULL; they become the journal
 * fields COLLECTOR= and PLUGIN= and a "[collector]" prefix on stderr. */
void pm_log(int level, const char *collector, const char *plugin,
            const char *fmt, ...) PM_PRINTF(4, 5);
void pm_logv(int level, const char *collector, const char *plugin,
             const char *fmt, va_list ap);

#define pm_error(...) pm_log(PM_LOG_ERROR, NULL, NULL, __VA_ARGS__)
#define pm_warn(...) pm_log(PM_LOG_WARNING, NULL, NULL, __VA_ARGS__)
#define pm_notice(...) pm_log(PM_LOG_NOTICE, NULL, NULL, __VA_ARGS__)
#define pm_info(...) pm_log(PM_LOG_INFO, NULL, NULL, __VA_ARGS__)
#define pm_debug(...) pm_log(PM_LOG_DEBUG, NULL, NULL, __VA_ARGS__)

/* An episode limiter: a repeating error is logged when it starts, then at
 * most once per interval with the number suppressed since. Not
 * thread-safe: one per site, used from one thread. */
typedef struct pm_ratelimit {
  int64_t interval_us;
  int64_t last_us; /* monotonic time of the last line logged, 0: never */
  uint64_t suppressed;
} pm_ratelimit_t;

/* Returns nonzero if the caller should log now; *suppressed (if not NULL)
 * gets how many were swallowed since the last line. */
int pm_ratelimit_ok(pm_ratelimit_t *rl, int64_t now_us, uint64_t *suppressed);

#endif
