/* Durations and sizes as written in the config ("500ms", "2d", "64MiB").
 * Bottom layer. */
#ifndef PM_UNITS_H
#define PM_UNITS_H

#include <stddef.h>
#include <stdint.h>

#define PM_US_PER_SEC INT64_C(1000000)

/*
 * Duration: one or more <number><unit> terms, e.g. "500ms", "15m",
 * "1h30m", "2d", "3y". Units: us, ms, s, m, h, d, w, y (365 d). A bare
 * number is seconds. Returns 0 or PM_EINVAL (syntax, negative, overflow).
 */
int pm_parse_duration(const char *s, int64_t *out_us);

/*
 * Size: <number>[unit], units B, kB/KB (1000), KiB (1024), MB, MiB, GB,
 * GiB, TB, TiB; a bare number is bytes. Returns 0 or PM_EINVAL.
 */
int pm_parse_size(const char *s, uint64_t *out_bytes);

/* "1h30m", "500ms", "0s": the shortest exact form. */
void pm_format_duration(int64_t us, char *buf, size_t len);

#endif
