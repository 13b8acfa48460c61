/*
 * Just enough of HL7 v2 to count and acknowledge a message: MSH, EVN-2
 * and OBR-25. Every other segment is only checked for control bytes and
 * skipped, so nothing of PID, OBX or NTE is ever copied.
 *
 * The parse walks the buffer once with explicit bounds (it is not
 * NUL-terminated) and writes only into the fixed arrays of hl7_msg_t.
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "hl7_msg.h"

/* The message's delimiters; tc is the v2.7 truncation character, '#' when
 * MSH-2 does not declare one (what \P\ stands for). */
typedef struct {
  char fs, cs, rs, es, ss, tc;
} enc_t;

typedef struct {
  const char *p;
  size_t n;
} span_t;

/* CR and LF separate segments and tab is harmless in text; every other
 * control byte is refused, above all the MLLP envelope bytes, so nothing
 * we echo can break a frame. */
static int bad_byte(unsigned char c) {
  return (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7F;
}

static int has_bad_byte(span_t s) {
  for (size_t i = 0; i < s.n; i++)
    if (bad_byte((unsigned char)s.p[i]))
      return 1;
  return 0;
}

/* A delimiter: printable, not a letter or digit, not a space. */
static int delim_ok(unsigned char c) {
  if (c <= 0x20 || c >= 0x7F)
    return 0;
  return !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
           (c >= 'a' && c <= 'z'));
}

/* s up to the first c. */
static span_t until(span_t s, char c) {
  const char *e = memchr(s.p, c, s.n);
  if (e)
    s.n = (size_t)(e - s.p);
  return s;
}

/* The first repetition's first component: what we keep of a field. */
static span_t first_value(const enc_t *e, span_t f) {
  return until(until(f, e->rs), e->cs);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

typedef struct {
  char *out;
  size_t cap; /* including the NUL */
  size_t len; /* decoded length, also past cap */
  int bad;    /* a decoded control byte */
} sink_t;

static void put(sink_t *k, char c) {
  if (bad_byte((unsigned char)c))
    k->bad = 1;
  if (k->len + 1 < k->cap)
    k->out[k->len] = c;
  k->len++;
}

/* One escape sequence's body (between the escape characters). */
static void unescape(const enc_t *e, span_t q, sink_t *k) {
  if (q.n == 1) {
    switch (q.p[0]) {
    case 'F':
      put(k, e->fs);
      return;
    case 'S':
      put(k, e->cs);
      return;
    case 'T':
      put(k, e->ss);
      return;
    case 'R':
      put(k, e->rs);
      return;
    case 'E':
      put(k, e->es);
      return;
    case 'P':
      put(k, e->tc);
      return;
    default:
      return;
    }
  }
  if (q.n >= 3 && q.p[0] == 'X' && (q.n - 1) % 2 == 0) {
    for (size_t i = 1; i < q.n; i++)
      if (hexval(q.p[i]) < 0)
        return; /* not hex: dropped like any unknown sequence */
    for (size_t i = 1; i < q.n; i += 2)
      put(k, (char)(hexval(q.p[i]) * 16 + hexval(q.p[i + 1])));
  }
  /* formatting (\.br\, \H\, \N\ ...) and character set switches
   * (\C..\, \M..\): no meaning for the fields we keep */
}

/* Decode v into k, stopping once k holds `stop` bytes. */
static void decode_span(const enc_t *e, span_t v, sink_t *k, size_t stop) {
  size_t i = 0;

  while (i < v.n && k->len < stop) {
    char c = v.p[i];
    if (c != e->es) {
      put(k, c);
      i++;
      continue;
    }
    const char *close = memchr(v.p + i + 1, e->es, v.n - i - 1);
    if (!close) {
      /* Unterminated: the escape character is taken literally, and so
       * is the rest, which holds no other escape character. */
      put(k, c);
      i++;
      continue;
    }
    span_t q = {v.p + i + 1, (size_t)(close - (v.p + i + 1))};
    unescape(e, q, k);
    i = (size_t)(close - v.p) + 1;
  }
}

/*
 * Decode v into out[cap] (NUL-terminated). Returns HL7_OK, HL7_E_TOO_LONG
 * when it does not fit, HL7_E_CHARS when an escape yields a control byte;
 * on error out is "" so a partly parsed message holds no half value.
 */
static hl7_err_t decode(const enc_t *e, span_t v, char *out, size_t cap) {
  sink_t k = {out, cap, 0, 0};

  decode_span(e, v, &k, SIZE_MAX);
  if (k.bad || k.len + 1 > cap) {
    out[0] = '\0';
    return k.bad ? HL7_E_CHARS : HL7_E_TOO_LONG;
  }
  out[k.len] = '\0';
  return HL7_OK;
}

/* Field n (1-based) of a segment other than MSH; empty when absent. */
static span_t seg_field(span_t seg, char fs, int n) {
  span_t rest = seg;
  for (int i = 0; i <= n; i++) {
    span_t tok = until(rest, fs);
    if (i == n)
      return tok;
    if (tok.n == rest.n)
      break; /* no more fields */
    rest.p += tok.n + 1;
    rest.n -= tok.n + 1;
  }
  return (span_t){seg.p + seg.n, 0};
}

static int seg_is(span_t seg, char fs, const char *name) {
  span_t id = until(seg, fs);
  return id.n == 3 && memcmp(id.p, name, 3) == 0;
}

/* MSH-1 and MSH-2. */
static hl7_err_t parse_encoding(span_t msh, enc_t *e, span_t *rest) {
  if (msh.n < 4 || !delim_ok((unsigned char)msh.p[3]))
    return HL7_E_ENCODING;
  e->fs = msh.p[3];
  span_t tail = {msh.p + 4, msh.n - 4};
  span_t enc = until(tail, e->fs);
  if (enc.n != 4 && enc.n != 5)
    return HL7_E_ENCODING;
  char all[6] = {e->fs};
  for (size_t i = 0; i < enc.n; i++) {
    unsigned char c = (unsigned char)enc.p[i];
    if (!delim_ok(c) || memchr(all, c, i + 1))
      return HL7_E_ENCODING;
    all[i + 1] = (char)c;
  }
  e->cs = enc.p[0];
  e->rs = enc.p[1];
  e->es = enc.p[2];
  e->ss = enc.p[3];
  e->tc = enc.n == 5 ? enc.p[4] : '#';
  rest->p = tail.p + enc.n;
  rest->n = tail.n - enc.n;
  return HL7_OK;
}

/* MSH-3 onwards: each field checked for control bytes in order, the kept
 * ones decoded, so an error leaves the fields before it filled. */
static hl7_err_t parse_msh_fields(const enc_t *e, span_t rest, hl7_msg_t *m) {
  hl7_err_t rc = HL7_OK;

  /* rest is empty or starts with the separator after MSH-2. */
  for (int n = 3; rest.n > 0; n++) {
    rest.p++;
    rest.n--;
    span_t f = until(rest, e->fs);
    rest.p += f.n;
    rest.n -= f.n;
    if (has_bad_byte(f))
      return HL7_E_CHARS;
    span_t v = first_value(e, f);
    switch (n) {
    case 3:
      rc = decode(e, v, m->sending_app, sizeof(m->sending_app));
      break;
    case 4:
      rc = decode(e, v, m->sending_facility, sizeof(m->sending_facility));
      break;
    case 5:
      rc = decode(e, v, m->receiving_app, sizeof(m->receiving_app));
      break;
    case 6:
      rc = decode(e, v, m->receiving_facility, sizeof(m->receiving_facility));
      break;
    case 7:
      rc = decode(e, v, m->datetime, sizeof(m->datetime));
      break;
    case 9: {
      span_t r = until(f, e->rs);
      span_t type = until(r, e->cs);
      span_t trig = {r.p + r.n, 0};
      if (type.n < r.n) {
        trig.p = type.p + type.n + 1;
        trig.n = r.n - type.n - 1;
        trig = until(trig, e->cs);
      }
      rc = decode(e, type, m->type, sizeof(m->type));
      if (rc == HL7_OK)
        rc = decode(e, trig, m->trigger, sizeof(m->trigger));
      break;
    }
    case 10:
      /* The whole field: it is half of the de-duplication key, so two ids
       * differing past a stray separator must stay two ids. */
      rc = decode(e, f, m->control_id, sizeof(m->control_id));
      break;
    case 11:
      rc = decode(e, v, m->processing_id, sizeof(m->processing_id));
      break;
    case 12:
      rc = decode(e, v, m->version, sizeof(m->version));
      break;
    case 15:
      rc = decode(e, v, m->accept_ack, sizeof(m->accept_ack));
      break;
    case 16:
      rc = decode(e, v, m->app_ack, sizeof(m->app_ack));
      break;
    default:
      break;
    }
    if (rc != HL7_OK)
      return rc;
  }
  return HL7_OK;
}

/* A segment after MSH: checked, and EVN-2 / OBR-25 taken. */
static hl7_err_t parse_segment(const enc_t *e, span_t seg, hl7_msg_t *m,
                               int *seen_evn) {
  if (has_bad_byte(seg))
    return HL7_E_CHARS;
  if (seg_is(seg, e->fs, "EVN") && !*seen_evn) {
    *seen_evn = 1;
    span_t v = first_value(e, seg_field(seg, e->fs, 2));
    return decode(e, v, m->event_time, sizeof(m->event_time));
  }
  if (seg_is(seg, e->fs, "OBR")) {
    m->n_obr++;
    span_t v = first_value(e, seg_field(seg, e->fs, 25));
    /* Only the first character matters: a short sink, overflow ignored;
     * a decoded control byte is refused as anywhere else. */
    char st[2];
    sink_t k = {st, sizeof(st), 0, 0};
    decode_span(e, v, &k, 1);
    if (k.bad)
      return HL7_E_CHARS;
    if (k.len > 0 && st[0] >= 'A' && st[0] <= 'Z')
      m->obr_status |= 1u << (st[0] - 'A');
  }
  return HL7_OK;
}

hl7_err_t hl7_msg_parse(const char *data, size_t len, hl7_msg_t *m) {
  memset(m, 0, sizeof(*m));
  if (len < 3 || memcmp(data, "MSH", 3) != 0)
    return HL7_E_NOMSH;

  int first = 1, seen_evn = 0;
  enc_t e = {0};
  size_t pos = 0;
  hl7_err_t rc;

  while (pos < len) {
    size_t end = pos;
    while (end < len && data[end] != '\r' && data[end] != '\n')
      end++;
    span_t seg = {data + pos, end - pos};
    pos = end + 1;
    if (first) {
      first = 0;
      span_t rest;
      if ((rc = parse_encoding(seg, &e, &rest)) != HL7_OK)
        return rc;
      m->fs = e.fs;
      m->cs = e.cs;
      m->rs = e.rs;
      m->es = e.es;
      m->ss = e.ss;
      if ((rc = parse_msh_fields(&e, rest, m)) != HL7_OK)
        return rc;
      if (!m->type[0] || !m->trigger[0] || !m->control_id[0])
        return HL7_E_REQUIRED;
      continue;
    }
    if (seg.n == 0)
      continue; /* the LF of a CRLF, or a blank line */
    if ((rc = parse_segment(&e, seg, m, &seen_evn)) != HL7_OK)
      return rc;
  }
  return HL7_OK;
}

const char *hl7_err_str(hl7_err_t e) {
  switch (e) {
  case HL7_OK:
    return "ok";
  case HL7_E_NOMSH:
    return "no MSH segment";
  case HL7_E_ENCODING:
    return "invalid field separator or encoding characters";
  case HL7_E_REQUIRED:
    return "required field missing (MSH-9 or MSH-10)";
  case HL7_E_CHARS:
    return "control character in message";
  case HL7_E_TOO_LONG:
    return "field too long";
  }
  return "unknown error";
}

int hl7_msg_has_result_status(const hl7_msg_t *m, char c) {
  if (c < 'A' || c > 'Z')
    return 0;
  return (m->obr_status >> (c - 'A')) & 1u;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), exact for any year, with no time_t or TZ involved. */
static int64_t days_from_civil(int64_t y, int mo, int d) {
  y -= mo <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int mo) {
  static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
    return 29;
  return dm[mo - 1];
}

/* n digits at s as a number, or -1. */
static int digits(const char *s, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

int hl7_dtm_day(const char *dtm, int32_t *day) {
  int y, mo, d, h = 0, mi = 0, sec = 0;
  const char *s = dtm;

  if ((y = digits(s, 4)) < 0 || (mo = digits(s + 4, 2)) < 0 ||
      (d = digits(s + 6, 2)) < 0)
    return -1; /* digits() stops at the NUL: it is not a digit */
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
    return -1;
  s += 8;

  int has_time = 0;
  if (*s >= '0' && *s <= '9') {
    has_time = 1;
    if ((h = digits(s, 2)) < 0 || h > 23)
      return -1;
    s += 2;
    if (*s >= '0' && *s <= '9') {
      if ((mi = digits(s, 2)) < 0 || mi > 59)
        return -1;
      s += 2;
      if (*s >= '0' && *s <= '9') {
        if ((sec = digits(s, 2)) < 0 || sec > 59)
          return -1;
        s += 2;
        if (*s == '.') {
          int k = 0;
          for (s++; *s >= '0' && *s <= '9'; s++)
            k++;
          if (k < 1 || k > 4)
            return -1;
        }
      }
    }
  }

  int off = 0, has_off = 0;
  if (*s == '+' || *s == '-') {
    int oh = digits(s + 1, 2), om = oh < 0 ? -1 : digits(s + 3, 2);
    if (oh < 0 || om < 0 || oh > 23 || om > 59)
      return -1;
    off = (oh * 60 + om) * 60 * (*s == '-' ? -1 : 1);
    has_off = 1;
    s += 5;
  }
  if (*s != '\0')
    return -1;

  int64_t days = days_from_civil(y, mo, d);
  /* A date alone names a day, not an instant: its offset moves nothing. */
  if (has_off && has_time) {
    time_t t = (time_t)(days * 86400 + h * 3600 + mi * 60 + sec - off);
    struct tm tm;
    if (!localtime_r(&t, &tm))
      return -1;
    days =
        days_from_civil((int64_t)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
  }
  *day = (int32_t)days;
  return 0;
}
