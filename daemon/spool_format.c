/* Encoding and decoding of segment headers and records, and the pread
 * reader. Every integer is written little-endian whatever the host. */
#include "spool_format.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h"

#define RBUF_MIN (256u * 1024)

static void put32(unsigned char *p, uint32_t v) {
  v = htole32(v);
  memcpy(p, &v, 4);
}
static void put64(unsigned char *p, uint64_t v) {
  v = htole64(v);
  memcpy(p, &v, 8);
}
static uint32_t get32(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return le32toh(v);
}
static uint64_t get64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return le64toh(v);
}
static uint16_t get16(const unsigned char *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return le16toh(v);
}

void pm_seg_hdr_encode(unsigned char out[PM_SEG_HDR], const pm_seg_hdr_t *h) {
  memcpy(out, PM_SEG_MAGIC, 8);
  memcpy(out + 8, h->id, 16);
  put64(out + 24, h->first_seq);
  put64(out + 32, (uint64_t)h->created_us);
  put32(out + 40, 0);
  put32(out + 44, pm_crc32c(0, out, 44));
}

int pm_seg_hdr_decode(const unsigned char *p, size_t len, pm_seg_hdr_t *h) {
  if (len < PM_SEG_HDR || memcmp(p, PM_SEG_MAGIC, 8) != 0 ||
      get32(p + 44) != pm_crc32c(0, p, 44))
    return -1;
  memcpy(h->id, p + 8, 16);
  h->first_seq = get64(p + 24);
  h->created_us = (int64_t)get64(p + 32);
  return h->first_seq >= 1 ? 0 : -1;
}

void pm_seg_name(char *name, uint64_t first_seq) {
  snprintf(name, 32, "seg-%020" PRIu64 ".log", first_seq);
}

int pm_seg_name_parse(const char *name, uint64_t *seq) {
  uint64_t v = 0;
  if (strlen(name) != 28 || memcmp(name, "seg-", 4) != 0 ||
      strcmp(name + 24, ".log") != 0)
    return 0;
  for (int i = 4; i < 24; i++) {
    if (name[i] < '0' || name[i] > '9')
      return 0;
    if (v > (UINT64_MAX - 9) / 10)
      return 0;
    v = v * 10 + (uint64_t)(name[i] - '0');
  }
  *seq = v;
  return 1;
}

/* Frame the payload already written at p + PM_REC_HDR. */
static void frame(unsigned char *p, uint8_t type, uint32_t len) {
  put32(p, len);
  p[8] = type;
  put32(p + 4, pm_crc32c(pm_crc32c(0, &type, 1), p + PM_REC_HDR, len));
}

void pm_rec_put_series(pm_buf_t *b, const pm_series_t *s) {
  size_t ml = strlen(s->metric), ll = strlen(s->labels_json);
  size_t len = 8 + 1 + 2 + ml + 4 + ll;
  unsigned char *p;

  if (ml > PM_SERIES_METRIC_MAX || ll > PM_SERIES_LABELS_MAX) {
    b->oom = 1; /* cannot happen: the host caps both far lower */
    return;
  }
  if (pm_buf_reserve(b, PM_REC_HDR + len) != 0)
    return;
  p = (unsigned char *)b->p + b->len;
  put64(p + 9, (uint64_t)s->id);
  p[17] = (unsigned char)s->kind;
  p[18] = (unsigned char)(ml & 0xff);
  p[19] = (unsigned char)(ml >> 8);
  memcpy(p + 20, s->metric, ml);
  put32(p + 20 + ml, (uint32_t)ll);
  memcpy(p + 24 + ml, s->labels_json, ll);
  frame(p, PM_R_SERIES, (uint32_t)len);
  b->len += PM_REC_HDR + len;
}

void pm_rec_put_key(pm_buf_t *b, const uint64_t h[2], int64_t seen_us,
                    uint64_t seq) {
  unsigned char *p;
  if (pm_buf_reserve(b, PM_REC_HDR + PM_KEY_BYTES) != 0)
    return;
  p = (unsigned char *)b->p + b->len;
  memcpy(p + 9, &h[0], 8); /* the hash's bytes, as HMAC produced them */
  memcpy(p + 17, &h[1], 8);
  put64(p + 25, (uint64_t)seen_us);
  put64(p + 33, seq);
  frame(p, PM_R_KEY, PM_KEY_BYTES);
  b->len += PM_REC_HDR + PM_KEY_BYTES;
}

void pm_rec_put_samples(pm_buf_t *b, uint64_t first_seq, int64_t append_us,
                        const pm_rec_t *recs, size_t n) {
  size_t len = PM_SAMPLES_HDR + n * PM_SAMPLE_BYTES;
  unsigned char *p, *q;
  if (len > PM_REC_MAX) {
    b->oom = 1;
    return;
  }
  if (pm_buf_reserve(b, PM_REC_HDR + len) != 0)
    return;
  p = (unsigned char *)b->p + b->len;
  put64(p + 9, first_seq);
  put64(p + 17, (uint64_t)append_us);
  put32(p + 25, (uint32_t)n);
  q = p + 29;
  for (size_t i = 0; i < n; i++, q += PM_SAMPLE_BYTES) {
    uint64_t v;
    memcpy(&v, &recs[i].value, 8);
    put64(q, (uint64_t)recs[i].series->id);
    put64(q + 8, (uint64_t)recs[i].ts_us);
    put64(q + 16, v);
  }
  frame(p, PM_R_SAMPLES, (uint32_t)len);
  b->len += PM_REC_HDR + len;
}

void pm_samples_at(const pm_samples_view_t *v, uint32_t i, int64_t *series_id,
                   int64_t *ts_us, double *value) {
  const unsigned char *q = v->items + (size_t)i * PM_SAMPLE_BYTES;
  uint64_t d = get64(q + 16);
  *series_id = (int64_t)get64(q);
  *ts_us = (int64_t)get64(q + 8);
  memcpy(value, &d, 8);
}

void pm_rbuf_reset(pm_rbuf_t *b, int fd) {
  b->fd = fd;
  b->len = 0;
  b->off = 0;
  b->lim = 0;
}

void pm_rbuf_free(pm_rbuf_t *b) {
  free(b->p);
  b->p = NULL;
  b->cap = b->len = 0;
  b->off = 0;
}

const unsigned char *pm_rbuf_get(pm_rbuf_t *b, uint64_t off, size_t n) {
  size_t want, got = 0;

  if (off >= b->off && off - b->off <= b->len && b->len - (off - b->off) >= n)
    return b->p + (off - b->off);
  if (n > PM_REC_HDR + PM_REC_MAX)
    return NULL;
  if (b->lim && (off >= b->lim || b->lim - off < n))
    return NULL;
  want = n > RBUF_MIN ? n : RBUF_MIN;
  if (want > b->cap) {
    unsigned char *p = realloc(b->p, want);
    if (!p)
      return NULL;
    b->p = p;
    b->cap = want;
  }
  /* Read as much as fits: the next records are likely wanted next. */
  b->off = off;
  b->len = 0;
  size_t room = b->cap;
  if (b->lim && b->lim - off < room)
    room = (size_t)(b->lim - off);
  while (got < room) {
    ssize_t r = pread(b->fd, b->p + got, room - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  b->len = got;
  return got >= n ? b->p : NULL;
}

static int check_payload(pm_rec_view_t *v) {
  const unsigned char *p = v->pl;
  uint32_t len = v->len;

  switch (v->type) {
  case PM_R_SERIES: {
    pm_series_view_t *s = &v->u.series;
    size_t ml, ll;
    if (len < 15)
      return -1;
    s->id = (int64_t)get64(p);
    s->kind = p[8];
    ml = get16(p + 9);
    if (ml == 0 || ml > PM_SERIES_METRIC_MAX || 11 + ml + 4 > len)
      return -1;
    ll = get32(p + 11 + ml);
    if (ll > PM_SERIES_LABELS_MAX || 15 + ml + ll != len)
      return -1;
    if (s->kind != 1 && s->kind != 2)
      return -1;
    s->metric = (const char *)p + 11;
    s->metric_len = ml;
    s->labels = (const char *)p + 15 + ml;
    s->labels_len = ll;
    if (memchr(s->metric, 0, ml) || memchr(s->labels, 0, ll))
      return -1;
    return 0;
  }
  case PM_R_SAMPLES: {
    pm_samples_view_t *s = &v->u.samples;
    if (len < PM_SAMPLES_HDR + PM_SAMPLE_BYTES)
      return -1;
    s->first_seq = get64(p);
    s->append_us = (int64_t)get64(p + 8);
    s->n = get32(p + 16);
    if (s->n == 0 ||
        (uint64_t)PM_SAMPLES_HDR + (uint64_t)s->n * PM_SAMPLE_BYTES != len)
      return -1;
    if (s->first_seq == 0 || s->first_seq > UINT64_MAX / 2)
      return -1;
    s->items = p + PM_SAMPLES_HDR;
    return 0;
  }
  case PM_R_KEY: {
    pm_key_view_t *k = &v->u.key;
    if (len != PM_KEY_BYTES)
      return -1;
    memcpy(&k->h[0], p, 8);
    memcpy(&k->h[1], p + 8, 8);
    k->seen_us = (int64_t)get64(p + 16);
    k->seq = get64(p + 24);
    return (k->h[0] || k->h[1]) ? 0 : -1;
  }
  default:
    return -1;
  }
}

int pm_rec_parse(pm_rbuf_t *b, uint64_t off, uint64_t end, pm_rec_view_t *v) {
  const unsigned char *p;
  uint32_t crc;

  if (off > end || end - off < PM_REC_HDR)
    return PM_PARSE_SHORT;
  if (!(p = pm_rbuf_get(b, off, PM_REC_HDR)))
    return PM_PARSE_SHORT;
  v->len = get32(p);
  crc = get32(p + 4);
  v->type = p[8];
  if (v->type < PM_R_SERIES || v->type > PM_R_KEY || v->len > PM_REC_MAX)
    return PM_PARSE_BAD;
  v->size = PM_REC_HDR + (uint64_t)v->len;
  if (end - off < v->size)
    return PM_PARSE_SHORT;
  if (!(p = pm_rbuf_get(b, off, (size_t)v->size)))
    return PM_PARSE_SHORT;
  v->pl = p + PM_REC_HDR;
  /* Structure first: it is cheap and rejects most garbage before the
   * CRC is computed (resync tries every offset). */
  if (check_payload(v) != 0)
    return PM_PARSE_BAD;
  if (pm_crc32c(pm_crc32c(0, &v->type, 1), v->pl, v->len) != crc)
    return PM_PARSE_BAD;
  return PM_PARSE_OK;
}
