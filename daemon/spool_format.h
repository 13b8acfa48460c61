/*
 * The spool's on-disk format (described in spool.h): segment headers,
 * the framing and payloads of records, and a buffered pread reader that
 * recovery and pm_spool_read share. The one place that knows how a
 * segment looks. Layer: writer and spool.
 */
#ifndef PM_SPOOL_FORMAT_H
#define PM_SPOOL_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include "copybuf.h"
#include "queue.h"
#include "series.h"

#define PM_SEG_MAGIC "PMSEG001"
#define PM_SEG_HDR 48u                 /* header bytes */
#define PM_REC_HDR 9u                  /* u32 len, u32 crc, u8 type */
#define PM_REC_MAX (64u * 1024 * 1024) /* payload bytes */
#define PM_SAMPLES_HDR 20u             /* first_seq, append_us, n */
#define PM_SAMPLE_BYTES 24u            /* series_id, ts_us, value */
#define PM_KEY_BYTES 32u
#define PM_SERIES_METRIC_MAX 1024u
#define PM_SERIES_LABELS_MAX 65536u

enum { PM_R_SERIES = 1, PM_R_SAMPLES = 2, PM_R_KEY = 3 };

typedef struct pm_seg_hdr {
  unsigned char id[16];
  uint64_t first_seq;
  int64_t created_us;
} pm_seg_hdr_t;

void pm_seg_hdr_encode(unsigned char out[PM_SEG_HDR], const pm_seg_hdr_t *h);
/* 0, or -1 if p (len bytes) is not a valid header. */
int pm_seg_hdr_decode(const unsigned char *p, size_t len, pm_seg_hdr_t *h);

/* "seg-<20 digits>.log" into name (at least 32 bytes). */
void pm_seg_name(char *name, uint64_t first_seq);
/* 1 and *seq if name is a segment's file name, else 0. */
int pm_seg_name_parse(const char *name, uint64_t *seq);

/* Encoders: append one framed record (with its CRC) to b. */
void pm_rec_put_series(pm_buf_t *b, const pm_series_t *s);
void pm_rec_put_key(pm_buf_t *b, const uint64_t h[2], int64_t seen_us,
                    uint64_t seq);
/* recs[i].seq must be first_seq + i. */
void pm_rec_put_samples(pm_buf_t *b, uint64_t first_seq, int64_t append_us,
                        const pm_rec_t *recs, size_t n);
/* Bytes pm_rec_put_samples adds for n records. */
static inline size_t pm_rec_samples_size(size_t n) {
  return PM_REC_HDR + PM_SAMPLES_HDR + n * PM_SAMPLE_BYTES;
}

/* Decoded payloads; pointers point into the payload. */
typedef struct pm_series_view {
  int64_t id;
  int kind;
  const char *metric, *labels; /* not NUL-terminated */
  size_t metric_len, labels_len;
} pm_series_view_t;

typedef struct pm_samples_view {
  uint64_t first_seq;
  int64_t append_us;
  uint32_t n;
  const unsigned char *items; /* n x 24 bytes */
} pm_samples_view_t;

typedef struct pm_key_view {
  uint64_t h[2];
  int64_t seen_us;
  uint64_t seq;
} pm_key_view_t;

/* A record as found in a file. */
typedef struct pm_rec_view {
  uint8_t type;
  uint32_t len;            /* payload bytes */
  const unsigned char *pl; /* the payload, valid until the next read */
  uint64_t size;           /* PM_REC_HDR + len */
  union {
    pm_series_view_t series;
    pm_samples_view_t samples;
    pm_key_view_t key;
  } u;
} pm_rec_view_t;

/* Sample i of a SAMPLES view. */
void pm_samples_at(const pm_samples_view_t *v, uint32_t i, int64_t *series_id,
                   int64_t *ts_us, double *value);

/* A buffered reader of one file with pread. A zeroed one (fd set) is
 * ready; pm_rbuf_free releases the buffer (not the fd). */
typedef struct pm_rbuf {
  int fd;
  unsigned char *p;
  size_t cap, len;
  uint64_t off; /* file offset of p[0] */
  uint64_t lim; /* never read at or past this offset; 0: no limit */
} pm_rbuf_t;

/* Switch to another file: forget what is buffered. */
void pm_rbuf_reset(pm_rbuf_t *b, int fd);
void pm_rbuf_free(pm_rbuf_t *b);
/* Bytes [off, off + n) of the file, or NULL if the file is shorter (or a
 * read failed, or n is too large). The pointer is valid until the next
 * call. */
const unsigned char *pm_rbuf_get(pm_rbuf_t *b, uint64_t off, size_t n);

enum { PM_PARSE_OK = 0, PM_PARSE_BAD = -1, PM_PARSE_SHORT = -2 };
/*
 * The record at off, if it lies wholly before end: PM_PARSE_OK and *v (its
 * CRC and structure checked); PM_PARSE_SHORT if its header or payload
 * runs past end; PM_PARSE_BAD if its length, type, structure or CRC is
 * wrong.
 */
int pm_rec_parse(pm_rbuf_t *b, uint64_t off, uint64_t end, pm_rec_view_t *v);

#endif
