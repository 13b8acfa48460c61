/*
 * MLLP framing: a byte-at-a-time state machine over what the socket gave
 * us, with the frame's bytes copied into one growing buffer (never past
 * max_message), so messages split over reads arrive whole.
 *
 * Accounting, which the fuzz harness checks exactly: every byte fed is
 * part of a delivered frame (its data plus SB, EB, CR), of a junk report,
 * of f->dropped (all bytes of oversize frames, envelope included,
 * counted as they are discarded; cumulative, so the connection can report
 * them), or still pending: f->junk outside a frame, SB + f->len in a
 * frame, plus the EB after one.
 */
#include <stdlib.h>
#include <string.h>

#include "hl7_frame.h"

enum {
  ST_OUTSIDE = 0, /* between frames: bytes are junk */
  ST_IN,          /* after SB: bytes are data */
  ST_IN_EB,       /* data then EB: a CR ends the frame */
  ST_DROP,        /* oversize: discarding up to the end block */
  ST_DROP_EB      /* oversize, EB seen */
};

/* Small first, so a thousand idle connections do not hold a megabyte
 * each; doubled on demand. */
#define HL7_FRAME_INITIAL 4096

int hl7_framer_init(hl7_framer_t *f, size_t max_message) {
  memset(f, 0, sizeof(*f));
  f->max = max_message;
  f->cap = max_message < HL7_FRAME_INITIAL ? max_message : HL7_FRAME_INITIAL;
  if (f->cap == 0)
    f->cap = 1; /* an empty frame still gets a non-NULL data pointer */
  f->buf = malloc(f->cap);
  if (!f->buf)
    return -1;
  f->state = ST_OUTSIDE;
  return 0;
}

void hl7_framer_free(hl7_framer_t *f) {
  free(f->buf);
  f->buf = NULL;
  f->len = f->cap = 0;
}

int hl7_framer_in_frame(const hl7_framer_t *f) {
  return f->state != ST_OUTSIDE;
}

/* Room for one more data byte; 0, or -1 when out of memory. Called only
 * with f->len < f->max. */
static int reserve_one(hl7_framer_t *f) {
  if (f->len < f->cap)
    return 0;
  size_t cap = f->cap * 2;
  if (cap > f->max || cap < f->cap)
    cap = f->max;
  char *b = realloc(f->buf, cap);
  if (!b)
    return -1;
  f->buf = b;
  f->cap = cap;
  return 0;
}

/* A data byte of the current frame: buffered, or the frame turns
 * oversize. Returns 0, the callback's value, or -1 (out of memory, the
 * byte not taken). */
static int add_byte(hl7_framer_t *f, char c, hl7_frame_cb cb, void *arg) {
  if (f->len >= f->max) {
    size_t size = f->len + 1;
    /* SB, the buffered bytes and this one are gone from now on. */
    f->dropped += 1 + size;
    f->len = 0;
    f->state = ST_DROP;
    return cb(arg, HL7_OVERSIZE, NULL, size);
  }
  if (reserve_one(f) != 0)
    return -1;
  f->buf[f->len++] = c;
  return 0;
}

/* A start block: ends a junk run or a partial frame (both reported as
 * junk, the partial frame with its SB and any trailing EB), or an
 * oversize frame (already counted in dropped), and starts a frame. */
static int start_frame(hl7_framer_t *f, hl7_frame_cb cb, void *arg) {
  size_t junk = 0;
  switch (f->state) {
  case ST_OUTSIDE:
    junk = f->junk;
    break;
  case ST_IN:
    junk = 1 + f->len;
    break;
  case ST_IN_EB:
    junk = 2 + f->len;
    break;
  default:
    break;
  }
  f->junk = 0;
  f->len = 0;
  f->state = ST_IN;
  return junk ? cb(arg, HL7_JUNK, NULL, junk) : 0;
}

int hl7_framer_feed(hl7_framer_t *f, const char *p, size_t n, hl7_frame_cb cb,
                    void *arg) {
  size_t i = 0;
  int rc;

  while (i < n) {
    unsigned char c = (unsigned char)p[i];

    if (c == HL7_SB) {
      i++;
      if ((rc = start_frame(f, cb, arg)) != 0)
        return rc;
      continue;
    }

    switch (f->state) {
    case ST_OUTSIDE: {
      /* all junk up to the next start block */
      const char *sb = memchr(p + i, HL7_SB, n - i);
      size_t k = sb ? (size_t)(sb - (p + i)) : n - i;
      f->junk += k;
      i += k;
      break;
    }

    case ST_IN: {
      /* Fast path: copy the run of plain data up to the next SB or EB. */
      size_t j = i;
      while (j < n && p[j] != HL7_SB && p[j] != HL7_EB)
        j++;
      size_t run = j - i;
      size_t room = f->max - f->len;
      if (run > room)
        run = room;
      while (run > 0) {
        if (reserve_one(f) != 0)
          return -1;
        size_t k = f->cap - f->len;
        if (k > run)
          k = run;
        memcpy(f->buf + f->len, p + i, k);
        f->len += k;
        i += k;
        run -= k;
      }
      if (i < n && (unsigned char)p[i] == HL7_EB) {
        f->state = ST_IN_EB;
        i++;
      } else if (i < n && (unsigned char)p[i] != HL7_SB) {
        /* The frame is full and more data came: add_byte turns it
         * oversize, which takes the byte (and cannot fail). */
        char more = p[i++];
        if ((rc = add_byte(f, more, cb, arg)) != 0)
          return rc;
      }
      break;
    }

    case ST_IN_EB:
      if (c == HL7_CR) {
        size_t len = f->len;
        i++;
        f->len = 0;
        f->state = ST_OUTSIDE;
        if ((rc = cb(arg, HL7_FRAME, f->buf, len)) != 0)
          return rc;
      } else {
        /* A lone EB is data; this byte is looked at again as such. */
        f->state = ST_IN;
        if ((rc = add_byte(f, (char)HL7_EB, cb, arg)) != 0) {
          if (rc == -1 && f->state != ST_DROP)
            f->state = ST_IN_EB; /* nothing taken: retry later */
          return rc;
        }
      }
      break;

    case ST_DROP:
      f->dropped++;
      i++;
      if (c == HL7_EB)
        f->state = ST_DROP_EB;
      break;

    case ST_DROP_EB:
      f->dropped++;
      i++;
      if (c == HL7_CR)
        f->state = ST_OUTSIDE;
      else if (c != HL7_EB)
        f->state = ST_DROP;
      break;
    }
  }
  return 0;
}
