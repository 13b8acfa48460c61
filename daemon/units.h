/* Durations and sizes as written in the config ("500ms", "2d", "64MiB").
 * Bottom layer. */
#ifndef PM_UNITS_H
#define PM_UNITS_H

#include <stddef.h>
#include <stdint.h>

#define PM_US_PER_SEC INT64_C(1000000)

/*
 * Duration: one or more <number><unit> terms, e.g. "500ms", "15m",
 * "1h30m", "2d", "3y". Units (case-sensitive): us, ms, s, m, h, d, w,
 * y (365 d). Terms go from larger to smaller units, each unit at most
 * once ("30m1h" and "1h1h" are refused). A bare number, alone, is
 * seconds. A number may have a decimal fraction ("1.5h", "0.25s") as
 * long as the total is a whole number of microseconds. No sign, no
 * spaces. Returns 0 or PM_EINVAL (empty, syntax, negative, inexact,
 * more than INT64_MAX microseconds).
 */
int pm_parse_duration(const char *s, int64_t *out_us);

/*
 * Size: <number>[unit], units (case-sensitive) B, kB/KB (1000), KiB
 * (1024), MB, MiB, GB, GiB, TB, TiB; a bare number is bytes. A decimal
 * fraction is allowed when the result is a whole number of bytes
 * ("1.5GiB" yes, "1.1KiB" no). Returns 0 or PM_EINVAL (empty, syntax,
 * negative, inexact, more than UINT64_MAX bytes).
 */
int pm_parse_size(const char *s, uint64_t *out_bytes);

/*
 * The shortest exact form that pm_parse_duration reads back to `us`:
 * "1h30m", "500ms", "0s", "2w", "3y", "400d". Whole days are written in
 * y or w only when that unit divides them ("730d" -> "2y", "400d" stays
 * "400d"); the rest of a day goes greedily h, m, s, ms, us. A negative
 * value gets a leading '-' (it does not parse back). Truncates to len.
 */
void pm_format_duration(int64_t us, char *buf, size_t len);

#endif
