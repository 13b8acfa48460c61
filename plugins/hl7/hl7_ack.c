/*
 * ACK messages, written with the standard delimiters |^~\& whatever the
 * original used: the values we echo were decoded by the parser, so they
 * are escaped again here, and control bytes (CR, LF, the MLLP envelope
 * bytes) become \Xhh\ so an echoed value can never end a segment or a
 * frame.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hl7_ack.h"
#include "hl7_frame.h"

const char *hl7_ack_code(const hl7_msg_t *m, hl7_ack_kind_t k) {
  /* Enhanced mode is announced by either acknowledgment type field. */
  int enhanced = m->accept_ack[0] != '\0' || m->app_ack[0] != '\0';
  switch (k) {
  case HL7_ACK_ACCEPT:
    return enhanced ? "CA" : "AA";
  case HL7_ACK_ERROR:
    return enhanced ? "CE" : "AE";
  case HL7_ACK_REJECT:
    break;
  }
  return enhanced ? "CR" : "AR";
}

typedef struct {
  char *p;
  size_t cap, len;
  int full;
} out_t;

static void raw(out_t *o, const char *s, size_t n) {
  if (o->full || n > o->cap - o->len) {
    o->full = 1;
    return;
  }
  memcpy(o->p + o->len, s, n);
  o->len += n;
}

static void str(out_t *o, const char *s) {
  raw(o, s, strlen(s));
}

/* s[0..max) up to its NUL, escaped for |^~\&. max bounds the read for a
 * hand-filled hl7_msg_t whose array lacks its NUL. */
static void esc(out_t *o, const char *s, size_t max) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strnlen(s, max);

  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char seq[6] = {'\\', 0, '\\'};
    size_t len = 3;
    switch (c) {
    case '|':
      seq[1] = 'F';
      break;
    case '^':
      seq[1] = 'S';
      break;
    case '&':
      seq[1] = 'T';
      break;
    case '~':
      seq[1] = 'R';
      break;
    case '\\':
      seq[1] = 'E';
      break;
    default:
      if (c < 0x20 || c == 0x7F) {
        seq[1] = 'X';
        seq[2] = hex[c >> 4];
        seq[3] = hex[c & 15];
        seq[4] = '\\';
        len = 5;
      } else {
        seq[0] = (char)c;
        len = 1;
      }
    }
    raw(o, seq, len);
  }
}

#define ESC(o, field) esc((o), (field), sizeof(field))

int hl7_ack_build(const hl7_msg_t *m, hl7_ack_kind_t k, int err_code,
                  const char *text, const char *ack_control_id,
                  long long now_unix, char *out, size_t outlen) {
  out_t o = {out, outlen, 0, 0};
  char now[80], num[16]; /* now: room for any int, for the compiler */
  struct tm tm;
  time_t t = (time_t)now_unix;

  /* A year outside 0..9999 (never from a real clock) would not be a DTM
   * of 14 digits: the epoch then. */
  if (!gmtime_r(&t, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900) {
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = 70;
    tm.tm_mday = 1;
  }
  snprintf(now, sizeof(now), "%04d%02d%02d%02d%02d%02d+0000", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);

  char sb = HL7_SB, eb = HL7_EB;
  raw(&o, &sb, 1);
  /* MSH: our side is the original's receiver, and the other way round. */
  str(&o, "MSH|^~\\&|");
  ESC(&o, m->receiving_app);
  str(&o, "|");
  ESC(&o, m->receiving_facility);
  str(&o, "|");
  ESC(&o, m->sending_app);
  str(&o, "|");
  ESC(&o, m->sending_facility);
  str(&o, "|");
  str(&o, now);
  str(&o, "||ACK^");
  ESC(&o, m->trigger);
  str(&o, "^ACK|");
  esc(&o, ack_control_id ? ack_control_id : "", SIZE_MAX);
  str(&o, "|");
  if (m->processing_id[0])
    ESC(&o, m->processing_id);
  else
    str(&o, "P");
  str(&o, "|");
  if (m->version[0])
    ESC(&o, m->version);
  else
    str(&o, "2.5");
  str(&o, "\r");

  str(&o, "MSA|");
  str(&o, hl7_ack_code(m, k));
  str(&o, "|");
  ESC(&o, m->control_id);
  str(&o, "\r");

  if (err_code != 0) {
    /* ERR-3 the table 0357 code, ERR-4 the severity (v2.5). */
    snprintf(num, sizeof(num), "%d", err_code);
    str(&o, "ERR|||");
    str(&o, num);
    str(&o, "^");
    esc(&o, text ? text : "", SIZE_MAX);
    str(&o, "^HL70357|E\r");
  }

  raw(&o, &eb, 1);
  str(&o, "\r");
  if (o.full || o.len > (size_t)2147483647)
    return -1;
  return (int)o.len;
}
