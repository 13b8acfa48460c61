/*
 * The byte buffer and the binary COPY encoders: see copybuf.h.
 */
#include "copybuf.h"

#include <stdlib.h>
#include <string.h>

#define PG_EPOCH_US INT64_C(946684800000000) /* 2000-01-01 in Unix us */
#define SIG_LEN 11                           /* the signature, with its NUL */
#define HEADER_LEN (SIG_LEN + 4 + 4)
#define TRAILER_LEN 2
#define I8_TS_F8_LEN (2 + 3 * (4 + 8))

static const char sig[SIG_LEN] = "PGCOPY\n\377\r\n"; /* and the NUL */

/* ------------------------------------------------------------------ */
/* big-endian integers into memory known to have room */

static unsigned char *put_be16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
  return p + 2;
}

static unsigned char *put_be32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (24 - 8 * i));
  return p + 4;
}

static unsigned char *put_be64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (56 - 8 * i));
  return p + 8;
}

/* ------------------------------------------------------------------ */
/* the buffer */

int pm_buf_reserve(pm_buf_t *b, size_t more) {
  if (b->oom)
    return -1;
  if (b->len + more > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return -1;
    }
    b->p = p;
    b->cap = cap;
  }
  return 0;
}

void pm_buf_put(pm_buf_t *b, const void *p, size_t n) {
  if (pm_buf_reserve(b, n) < 0)
    return;
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

void pm_buf_reset(pm_buf_t *b) {
  b->len = 0;
  b->oom = 0;
}

void pm_buf_free(pm_buf_t *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

static void buf_be16(pm_buf_t *b, uint16_t v) {
  unsigned char x[2];
  put_be16(x, v);
  pm_buf_put(b, x, sizeof x);
}

static void buf_be32(pm_buf_t *b, uint32_t v) {
  unsigned char x[4];
  put_be32(x, v);
  pm_buf_put(b, x, sizeof x);
}

static void buf_be64(pm_buf_t *b, uint64_t v) {
  unsigned char x[8];
  put_be64(x, v);
  pm_buf_put(b, x, sizeof x);
}

/* ------------------------------------------------------------------ */
/* COPY framing and fields */

void pm_copy_header(pm_buf_t *b) {
  pm_buf_put(b, sig, SIG_LEN);
  buf_be32(b, 0); /* flags */
  buf_be32(b, 0); /* header extension length */
}

void pm_copy_tuple(pm_buf_t *b, uint16_t nfields) {
  buf_be16(b, nfields);
}

void pm_copy_trailer(pm_buf_t *b) {
  buf_be16(b, 0xFFFF); /* -1 */
}

void pm_copy_int8(pm_buf_t *b, int64_t v) {
  buf_be32(b, 8);
  buf_be64(b, (uint64_t)v);
}

void pm_copy_float8(pm_buf_t *b, double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof u); /* the IEEE 754 double's 64 bits */
  buf_be32(b, 8);
  buf_be64(b, u);
}

void pm_copy_text(pm_buf_t *b, const char *s) {
  size_t n = strlen(s);
  buf_be32(b, (uint32_t)n);
  pm_buf_put(b, s, n);
}

void pm_copy_jsonb(pm_buf_t *b, const char *json) {
  size_t n = strlen(json);
  unsigned char version = 1; /* jsonb's binary format: a version, text */
  buf_be32(b, (uint32_t)(n + 1));
  pm_buf_put(b, &version, 1);
  pm_buf_put(b, json, n);
}

void pm_copy_bool(pm_buf_t *b, int v) {
  unsigned char c = v ? 1 : 0;
  buf_be32(b, 1);
  pm_buf_put(b, &c, 1);
}

void pm_copy_timestamptz(pm_buf_t *b, int64_t unix_us) {
  pm_copy_int8(b, unix_us - PG_EPOCH_US);
}

/* ------------------------------------------------------------------ */
/* the fixed-size fast path */

int pm_copy_begin_i8_ts_f8(pm_buf_t *b, size_t ntuples) {
  unsigned char *p;
  pm_buf_reset(b);
  if (pm_buf_reserve(b, HEADER_LEN + ntuples * I8_TS_F8_LEN + TRAILER_LEN) < 0)
    return -1;
  p = (unsigned char *)b->p;
  memcpy(p, sig, SIG_LEN);
  p = put_be32(p + SIG_LEN, 0); /* flags */
  p = put_be32(p, 0);           /* header extension length */
  b->len = (size_t)(p - (unsigned char *)b->p);
  return 0;
}

void pm_copy_i8_ts_f8(pm_buf_t *b, int64_t i8, int64_t ts_unix_us, double f8) {
  unsigned char *p = (unsigned char *)b->p + b->len;
  uint64_t v;
  memcpy(&v, &f8, sizeof v);
  p = put_be16(p, 3);
  p = put_be32(p, 8);
  p = put_be64(p, (uint64_t)i8);
  p = put_be32(p, 8);
  p = put_be64(p, (uint64_t)(ts_unix_us - PG_EPOCH_US));
  p = put_be32(p, 8);
  p = put_be64(p, v);
  b->len = (size_t)(p - (unsigned char *)b->p);
}
