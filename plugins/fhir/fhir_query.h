/*
 * FHIR search URLs for day buckets in the site's time zone. Pure apart
 * from the process time zone (TZ is the site's, as the daemon sets it and
 * calls tzset): no I/O, no allocation; every output is a caller buffer.
 */
#ifndef FHIR_QUERY_H
#define FHIR_QUERY_H

#include <stddef.h>
#include <stdint.h>

#define FHIR_DT_MAX 32 /* "2026-11-25T00:00:00-07:00" + NUL, with room */

/*
 * One local day, the half-open window [start, end). start and end are
 * the instants of the local midnights (00:00 with tm_isdst = -1, through
 * mktime), so a DST day is 23 or 25 hours long. Where a midnight does not
 * exist (DST at midnight), the instant mktime picks is the bound, and
 * its strings say that time (e.g. T01:00:00). Strings are FHIR dateTimes
 * with the local offset ("-07:00", "+05:30"; "Z" for UTC; a bound at an
 * offset that is not whole minutes, as with historical LMT, is written
 * in UTC); the _enc forms are the same URL-encoded for a query value:
 * "+" as "%2B", ":" kept.
 */
typedef struct fhir_window {
  int64_t start_us, end_us;        /* microseconds since the epoch */
  char date[16];                   /* the local day, "2026-11-25" */
  char start[FHIR_DT_MAX];         /* "2026-11-25T00:00:00-07:00" */
  char end[FHIR_DT_MAX];           /* "2026-11-26T00:00:00-07:00" */
  char start_enc[FHIR_DT_MAX + 4]; /* "2026-11-25T00:00:00%2B05:30" */
  char end_enc[FHIR_DT_MAX + 4];
} fhir_window_t;

/*
 * The last `days` local days up to and including the one holding now_us,
 * oldest first, into out[0..days). Consecutive windows share their bound
 * (out[i].end_us == out[i + 1].start_us). Returns days, or -1 when days
 * < 1, days > max, or the time cannot be converted (out undefined).
 */
int fhir_day_windows(int64_t now_us, int days, fhir_window_t *out, size_t max);

/*
 * base_url "/" resource "?" params "&" date_param "=ge" start_enc "&"
 * date_param "=lt" end_enc "&" extra, into out (len bytes, NUL included).
 *  - base_url: starts with http:// or https:// (any case), no "?", "#",
 *    spaces or control characters; trailing "/" are dropped;
 *  - resource: [A-Z][A-Za-z]+, at most 64 bytes;
 *  - params, extra: query strings as written (already encoded), NULL or
 *    "" for none; leading "?"/"&" and trailing "&" are dropped, so the
 *    separators come out right; printable ASCII without "#" or spaces;
 *  - date_param and w: both given (date_param [A-Za-z0-9_.:-]+) for a
 *    day bucket, or both NULL for none (a gauge, e.g. all Patients).
 * Returns the length written (without NUL), or -1 for an argument
 * refused or a result that does not fit (out is then "" when len > 0).
 */
int fhir_url_build(char *out, size_t len, const char *base_url,
                   const char *resource, const char *params,
                   const char *date_param, const fhir_window_t *w,
                   const char *extra);

/*
 * scheme://host[:port] of an http(s) URL, for logs: paths and queries may
 * carry patient parameters, and userinfo a password, so neither is kept.
 * The scheme comes out in lower case; host and port as given. Returns 0,
 * or -1 when url is not http(s) with a host of printable non-space ASCII,
 * or the origin does not fit in out (out is then "" when len > 0).
 */
int fhir_url_origin(const char *url, char *out, size_t len);

#endif
