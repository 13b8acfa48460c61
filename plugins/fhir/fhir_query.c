/*
 * Day windows in the site's zone and FHIR search URLs: see fhir_query.h.
 */
#include "fhir_query.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DAYS_MAX 100000 /* far beyond any backfill; keeps mday in range */

/* A bound's dateTime and its encoded form. Returns 0 or -1. */
static int format_dt(time_t t, char *dt, char *enc) {
  struct tm lt;
  if (!localtime_r(&t, &lt))
    return -1;
  long off = lt.tm_gmtoff;
  char zone[8];
  if (off % 60 != 0) { /* not whole minutes (LMT): say it in UTC */
    if (!gmtime_r(&t, &lt))
      return -1;
    off = 0;
  }
  if (off == 0) {
    memcpy(zone, "Z", 2);
  } else {
    long a = off < 0 ? -off : off;
    snprintf(zone, sizeof(zone), "%c%02ld:%02ld", off < 0 ? '-' : '+',
             (a / 3600) % 100, (a / 60) % 60);
  }
  long year = (long)lt.tm_year + 1900;
  if (year < 0 || year > 9999)
    return -1;
  char tmp[96];
  int n = snprintf(tmp, sizeof(tmp), "%04ld-%02d-%02dT%02d:%02d:%02d%s", year,
                   lt.tm_mon + 1, lt.tm_mday, lt.tm_hour, lt.tm_min, lt.tm_sec,
                   zone);
  if (n < 0 || (size_t)n >= FHIR_DT_MAX)
    return -1;
  memcpy(dt, tmp, (size_t)n + 1);
  /* "+" would read as a space in a query value. */
  char *e = enc;
  for (const char *c = dt; *c; c++) {
    if (*c == '+') {
      memcpy(e, "%2B", 3);
      e += 3;
    } else {
      *e++ = *c;
    }
  }
  *e = '\0';
  return 0;
}

int fhir_day_windows(int64_t now_us, int days, fhir_window_t *out, size_t max) {
  if (!out || days < 1 || days > DAYS_MAX || (size_t)days > max)
    return -1;
  int64_t secs = now_us / 1000000;
  if (now_us % 1000000 < 0)
    secs--;
  time_t now = (time_t)secs;
  struct tm today;
  if (!localtime_r(&now, &today))
    return -1;

  time_t prev = 0;
  for (int i = 0; i <= days; i++) {
    /* The local midnight that starts day i (i == days: the end of the
     * last day, tomorrow's midnight). */
    struct tm m;
    memset(&m, 0, sizeof(m));
    m.tm_year = today.tm_year;
    m.tm_mon = today.tm_mon;
    m.tm_mday = today.tm_mday - (days - 1) + i;
    m.tm_isdst = -1;
    struct tm d = m; /* the calendar date, normalised without a zone */
    time_t b = mktime(&m);
    if (b == (time_t)-1 || timegm(&d) == (time_t)-1)
      return -1;
    if (i > 0 && b <= prev)
      return -1;
    if (i < days) {
      fhir_window_t *w = &out[i];
      long year = (long)d.tm_year + 1900;
      if (year < 0 || year > 9999)
        return -1;
      char tmp[64];
      int n = snprintf(tmp, sizeof(tmp), "%04ld-%02d-%02d", year, d.tm_mon + 1,
                       d.tm_mday);
      if (n < 0 || (size_t)n >= sizeof(w->date))
        return -1;
      memcpy(w->date, tmp, (size_t)n + 1);
      w->start_us = (int64_t)b * 1000000;
      if (format_dt(b, w->start, w->start_enc) != 0)
        return -1;
    }
    if (i > 0) {
      fhir_window_t *w = &out[i - 1];
      w->end_us = (int64_t)b * 1000000;
      if (format_dt(b, w->end, w->end_enc) != 0)
        return -1;
    }
    prev = b;
  }
  return days;
}

/* Appends to a bounded buffer; remembers an overflow. */
typedef struct buf {
  char *p;
  size_t len, used;
  int full;
} buf_t;

static void put(buf_t *b, const char *s, size_t n) {
  if (b->full || n >= b->len - b->used) {
    b->full = 1;
    return;
  }
  memcpy(b->p + b->used, s, n);
  b->used += n;
  b->p[b->used] = '\0';
}

static void puts_(buf_t *b, const char *s) {
  put(b, s, strlen(s));
}

/* No control characters, spaces, non-ASCII, or any of bad. */
static int clean(const char *s, size_t n, const char *bad) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 0x20 || c >= 0x7f || strchr(bad, c))
      return 0;
  }
  return 1;
}

static int http_scheme(const char *url) {
  if (strncasecmp(url, "http://", 7) == 0)
    return 7;
  if (strncasecmp(url, "https://", 8) == 0)
    return 8;
  return 0;
}

/* A query string without its leading ?/& and trailing &: [*s, *s + *n). */
static int query_part(const char *q, const char **s, size_t *n) {
  *s = "";
  *n = 0;
  if (!q)
    return 0;
  size_t l = strlen(q);
  while (l && (*q == '?' || *q == '&'))
    q++, l--;
  while (l && q[l - 1] == '&')
    l--;
  if (!clean(q, l, "#"))
    return -1;
  *s = q;
  *n = l;
  return 0;
}

int fhir_url_build(char *out, size_t len, const char *base_url,
                   const char *resource, const char *params,
                   const char *date_param, const fhir_window_t *w,
                   const char *extra) {
  if (!out || len == 0)
    return -1;
  out[0] = '\0';
  if (!base_url || !resource || !!date_param != !!w)
    return -1;

  size_t bl = strlen(base_url);
  int sl = http_scheme(base_url);
  while (bl > (size_t)sl && base_url[bl - 1] == '/')
    bl--;
  if (!sl || bl == (size_t)sl || !clean(base_url, bl, "?#"))
    return -1;

  size_t rl = strlen(resource);
  if (rl < 2 || rl > 64 || !(resource[0] >= 'A' && resource[0] <= 'Z'))
    return -1;
  for (size_t i = 0; i < rl; i++)
    if (!isalpha((unsigned char)resource[i]))
      return -1;

  if (date_param) {
    size_t dl = strlen(date_param);
    if (dl == 0 || dl > 64)
      return -1;
    for (size_t i = 0; i < dl; i++) {
      char c = date_param[i];
      if (!(isalnum((unsigned char)c) || c == '_' || c == '.' || c == ':' ||
            c == '-'))
        return -1;
    }
  }

  const char *ps, *es;
  size_t pl, el;
  if (query_part(params, &ps, &pl) != 0 || query_part(extra, &es, &el) != 0)
    return -1;

  buf_t b = {out, len, 0, 0};
  put(&b, base_url, bl);
  puts_(&b, "/");
  puts_(&b, resource);
  const char *sep = "?";
  if (pl) {
    puts_(&b, sep);
    put(&b, ps, pl);
    sep = "&";
  }
  if (date_param) {
    puts_(&b, sep);
    puts_(&b, date_param);
    puts_(&b, "=ge");
    puts_(&b, w->start_enc);
    puts_(&b, "&");
    puts_(&b, date_param);
    puts_(&b, "=lt");
    puts_(&b, w->end_enc);
    sep = "&";
  }
  if (el) {
    puts_(&b, sep);
    put(&b, es, el);
  }
  if (b.full) {
    out[0] = '\0';
    return -1;
  }
  return (int)b.used;
}

int fhir_url_origin(const char *url, char *out, size_t len) {
  if (!out || len == 0)
    return -1;
  out[0] = '\0';
  if (!url)
    return -1;
  int sl = http_scheme(url);
  if (!sl)
    return -1;
  const char *auth = url + sl;
  size_t al = strcspn(auth, "/?#");
  /* Drop userinfo: it may hold a password. */
  const char *at = NULL;
  for (size_t i = 0; i < al; i++)
    if (auth[i] == '@')
      at = auth + i;
  if (at) {
    al -= (size_t)(at + 1 - auth);
    auth = at + 1;
  }
  if (al == 0 || auth[0] == ':' || !clean(auth, al, "\\"))
    return -1;
  buf_t b = {out, len, 0, 0};
  puts_(&b, sl == 8 ? "https://" : "http://");
  put(&b, auth, al);
  if (b.full) {
    out[0] = '\0';
    return -1;
  }
  return 0;
}
