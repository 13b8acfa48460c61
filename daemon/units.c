/* Durations and sizes (see units.h for the grammar). Exact integer
 * arithmetic only: a config value means one number, never a rounding. */
#include "units.h"

#include <stdio.h>
#include <string.h>

#include <portalmetrics/plugin.h>

typedef struct unit {
  const char *name;
  uint64_t factor;
} unit_t;

#define US_MIN (UINT64_C(60) * 1000000)
#define US_HOUR (UINT64_C(60) * US_MIN)
#define US_DAY (UINT64_C(24) * US_HOUR)

/* Largest first: terms of a duration must follow this order. */
static const unit_t duration_units[] = {
    {"y", 365 * US_DAY}, {"w", 7 * US_DAY}, {"d", US_DAY},
    {"h", US_HOUR},      {"m", US_MIN},     {"s", 1000000},
    {"ms", 1000},        {"us", 1},         {NULL, 0}};

static const unit_t size_units[] = {{"B", 1},
                                    {"kB", UINT64_C(1000)},
                                    {"KB", UINT64_C(1000)},
                                    {"KiB", UINT64_C(1) << 10},
                                    {"MB", UINT64_C(1000000)},
                                    {"MiB", UINT64_C(1) << 20},
                                    {"GB", UINT64_C(1000000000)},
                                    {"GiB", UINT64_C(1) << 30},
                                    {"TB", UINT64_C(1000000000000)},
                                    {"TiB", UINT64_C(1) << 40},
                                    {NULL, 0}};

#define UNIT_SECONDS 5 /* index of "s" in duration_units */
#define UNIT_HOURS 3   /* first unit below a day */

/* More fraction digits than this cannot be scaled in 64 bits; no real
 * config needs them. */
#define FRAC_DIGITS_MAX 18

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}
static int is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static uint64_t gcd(uint64_t a, uint64_t b) {
  while (b) {
    uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* A number: digits, optionally '.' and digits. *p advances past it. */
typedef struct number {
  uint64_t whole;
  uint64_t frac;     /* the fraction's digits as an integer */
  uint64_t frac_den; /* 10^(number of fraction digits), 1 if none */
} number_t;

static int parse_number(const char **p, number_t *n) {
  const char *s = *p;
  int ndig = 0;

  n->whole = 0;
  n->frac = 0;
  n->frac_den = 1;
  if (!is_digit(*s))
    return PM_EINVAL;
  for (; is_digit(*s); s++) {
    if (__builtin_mul_overflow(n->whole, 10, &n->whole) ||
        __builtin_add_overflow(n->whole, (uint64_t)(*s - '0'), &n->whole))
      return PM_EINVAL;
  }
  if (*s == '.') {
    const char *f = ++s, *end;
    if (!is_digit(*f))
      return PM_EINVAL; /* "1." and "1.h" are typos, not numbers */
    while (is_digit(*s))
      s++;
    /* Trailing zeros carry no value; drop them so "1.500000..." fits. */
    end = s;
    while (end > f && end[-1] == '0')
      end--;
    for (; f < end; f++) {
      if (++ndig > FRAC_DIGITS_MAX)
        return PM_EINVAL;
      n->frac = n->frac * 10 + (uint64_t)(*f - '0');
      n->frac_den *= 10;
    }
  }
  *p = s;
  return 0;
}

/* n * factor, exactly, or PM_EINVAL if inexact or past max. */
static int scale(const number_t *n, uint64_t factor, uint64_t max,
                 uint64_t *out) {
  uint64_t v, g, f;

  if (__builtin_mul_overflow(n->whole, factor, &v))
    return PM_EINVAL;
  if (n->frac) {
    /* frac / den * factor is whole iff den / gcd(den, factor) divides
     * frac; dividing first keeps the product in 64 bits. */
    g = gcd(n->frac_den, factor);
    if (n->frac % (n->frac_den / g) != 0)
      return PM_EINVAL;
    if (__builtin_mul_overflow(n->frac / (n->frac_den / g), factor / g, &f) ||
        __builtin_add_overflow(v, f, &v))
      return PM_EINVAL;
  }
  if (v > max)
    return PM_EINVAL;
  *out = v;
  return 0;
}

/* The unit named by the letters at *p (advanced past them), or -1. */
static int parse_unit(const char **p, const unit_t *units) {
  const char *s = *p;
  size_t len = 0;

  while (is_alpha(s[len]))
    len++;
  if (len == 0)
    return -1;
  for (int i = 0; units[i].name; i++) {
    if (strlen(units[i].name) == len && memcmp(units[i].name, s, len) == 0) {
      *p = s + len;
      return i;
    }
  }
  return -1;
}

int pm_parse_duration(const char *s, int64_t *out_us) {
  uint64_t total = 0, term;
  number_t n;
  int u, prev = -1;

  if (!s || !*s || !out_us)
    return PM_EINVAL;
  while (*s) {
    if (parse_number(&s, &n) != 0)
      return PM_EINVAL;
    if (*s == '\0' && prev < 0) {
      u = UNIT_SECONDS; /* a bare number alone */
    } else if ((u = parse_unit(&s, duration_units)) < 0 || u <= prev) {
      /* no unit after a term, an unknown unit, or units out of order */
      return PM_EINVAL;
    }
    if (scale(&n, duration_units[u].factor, INT64_MAX, &term) != 0 ||
        __builtin_add_overflow(total, term, &total) || total > INT64_MAX)
      return PM_EINVAL;
    prev = u;
  }
  *out_us = (int64_t)total;
  return 0;
}

int pm_parse_size(const char *s, uint64_t *out_bytes) {
  number_t n;
  int u = 0; /* bytes */

  if (!s || !*s || !out_bytes)
    return PM_EINVAL;
  if (parse_number(&s, &n) != 0)
    return PM_EINVAL;
  if (*s && ((u = parse_unit(&s, size_units)) < 0 || *s))
    return PM_EINVAL;
  return scale(&n, size_units[u].factor, UINT64_MAX, out_bytes);
}

/* Appends to buf at *off, never past len; keeps the string terminated. */
static void put_term(char *buf, size_t len, size_t *off, uint64_t v,
                     const char *unit) {
  int w;

  if (*off >= len)
    return;
  w = snprintf(buf + *off, len - *off, "%llu%s", (unsigned long long)v, unit);
  if (w > 0)
    *off += (size_t)w < len - *off ? (size_t)w : len - *off - 1;
}

void pm_format_duration(int64_t us, char *buf, size_t len) {
  uint64_t v, days;
  size_t off = 0;

  if (!buf || len == 0)
    return;
  buf[0] = '\0';
  if (us == 0) {
    snprintf(buf, len, "0s");
    return;
  }
  if (us < 0) {
    if (len > 1) {
      buf[0] = '-';
      buf[1] = '\0';
      off = 1;
    }
    /* INT64_MIN has no positive int64: negate in unsigned. */
    v = (uint64_t)0 - (uint64_t)us;
  } else {
    v = (uint64_t)us;
  }

  /* Whole days: in years or weeks only when exact, so "400d" stays
   * readable instead of becoming "1y5w". */
  days = v / US_DAY;
  v %= US_DAY;
  if (days) {
    if (days % 365 == 0)
      put_term(buf, len, &off, days / 365, "y");
    else if (days % 7 == 0)
      put_term(buf, len, &off, days / 7, "w");
    else
      put_term(buf, len, &off, days, "d");
  }
  for (int i = UNIT_HOURS; duration_units[i].name; i++) {
    uint64_t f = duration_units[i].factor;
    if (v >= f) {
      put_term(buf, len, &off, v / f, duration_units[i].name);
      v %= f;
    }
  }
}
