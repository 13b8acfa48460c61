/*
 * The sentence an alert event carries, written the way a person would
 * write it to a clinic leader:
 *
 *   "Portal enrollment at North Clinic is 31.0 %, 6.2 points behind the
 *    plan of 37.2 % for 2026-11-25; at the current pace 60 % will be
 *    reached on 2027-09-14, 76 days late."
 *
 * Percent targets show values times 100 with one decimal and gaps in
 * points; number targets show values as numbers (no decimals when whole,
 * else one). at_most targets read "above the ceiling of" instead of
 * "behind the plan of". Bottom layer.
 */
#ifndef PM_ALERT_TEXT_H
#define PM_ALERT_TEXT_H

#include <stddef.h>
#include "alert_event.h"

/* Write e's message (every field of e but message, event_id, at_us and
 * daemon is read) into buf, always NUL-terminated, truncated to len.
 * Returns the length it needed, like snprintf. */
int pm_alert_message(const pm_alert_event_t *e, char *buf, size_t len);

#endif
