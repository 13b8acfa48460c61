/* Logging. One line per call; under systemd each line is a journal entry
 * with COLLECTOR=, PLUGIN= fields so `journalctl COLLECTOR=epic` works. */
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <systemd/sd-journal.h>

static atomic_int log_max = PM_LOG_INFO;
static int log_journal;

static const char *const level_names[] = {"emerg",   "alert",  "crit", "error",
                                          "warning", "notice", "info", "debug"};

void pm_log_init(int max_level, int to_journal) {
  atomic_store(&log_max, max_level);
  log_journal = to_journal;
}

void pm_log_set_level(int max_level) {
  atomic_store(&log_max, max_level);
}

int pm_log_level(void) {
  return atomic_load(&log_max);
}

int pm_log_level_parse(const char *name) {
  for (int i = PM_LOG_ERROR; i <= PM_LOG_DEBUG; i++)
    if (strcasecmp(name, level_names[i]) == 0)
      return i;
  return -1;
}

void pm_logv(int level, const char *collector, const char *plugin,
             const char *fmt, va_list ap) {
  char msg[2048];

  if (level > atomic_load(&log_max))
    return;
  if (level < 0)
    level = 0;
  if (level > PM_LOG_DEBUG)
    level = PM_LOG_DEBUG;
  vsnprintf(msg, sizeof(msg), fmt, ap);

  if (log_journal) {
    sd_journal_send(
        "MESSAGE=%s%s%s%s", collector ? "[" : "", collector ? collector : "",
        collector ? "] " : "", msg, "PRIORITY=%d", level, "COLLECTOR=%s",
        collector ? collector : "", "PLUGIN=%s", plugin ? plugin : "", NULL);
    return;
  }
  /* One fprintf per line: stdio locks the stream, so lines from worker
   * threads never interleave. */
  if (collector)
    fprintf(stderr, "portalmetricsd: %s: [%s] %s\n", level_names[level],
            collector, msg);
  else
    fprintf(stderr, "portalmetricsd: %s: %s\n", level_names[level], msg);
}

void pm_log(int level, const char *collector, const char *plugin,
            const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pm_logv(level, collector, plugin, fmt, ap);
  va_end(ap);
}

int pm_ratelimit_ok(pm_ratelimit_t *rl, int64_t now_us, uint64_t *suppressed) {
  if (rl->last_us != 0 && now_us - rl->last_us < rl->interval_us) {
    rl->suppressed++;
    return 0;
  }
  if (suppressed)
    *suppressed = rl->suppressed;
  rl->suppressed = 0;
  rl->last_us = now_us ? now_us : 1;
  return 1;
}
