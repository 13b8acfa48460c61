/*
 * A growable byte buffer, and the encoders of PostgreSQL's binary COPY
 * format that fill it: the one place that knows that format. Apart from
 * the writer because it is a plain encoder with no daemon dependencies
 * (the writer decides what to send; this file, how it looks on the wire).
 * Bottom layer.
 *
 * The format (PostgreSQL docs, "COPY", Binary Format), every integer in
 * network byte order:
 *   header:  the 11-byte signature "PGCOPY\n\377\r\n\0", int32 flags (0:
 *            no OIDs), int32 length of the header extension (0);
 *   a tuple: int16 field count, then per field int32 length (-1: NULL)
 *            and the value in its type's binary send format;
 *   trailer: int16 -1.
 *
 * Errors are sticky: once an append runs out of memory the buffer is
 * marked oom and ignores further appends, so a whole payload is built and
 * checked once at the end.
 */
#ifndef PM_COPYBUF_H
#define PM_COPYBUF_H

#include <stddef.h>
#include <stdint.h>

/* A zeroed one is empty. p is NULL until the first append. */
typedef struct pm_buf {
  char *p;
  size_t len, cap;
  int oom; /* an append ran out of memory: the contents are incomplete */
} pm_buf_t;

/* Room for `more` bytes past len: 0, or -1 (and oom) if out of memory. */
int pm_buf_reserve(pm_buf_t *b, size_t more);

/* Append n bytes (nothing once oom). */
void pm_buf_put(pm_buf_t *b, const void *p, size_t n);

/* Empty it and forget an earlier oom; keeps the memory for reuse. */
void pm_buf_reset(pm_buf_t *b);

/* Release the memory; b is empty (and usable) afterwards. */
void pm_buf_free(pm_buf_t *b);

/* The COPY header, a tuple's field count, and the trailer. */
void pm_copy_header(pm_buf_t *b);
void pm_copy_tuple(pm_buf_t *b, uint16_t nfields);
void pm_copy_trailer(pm_buf_t *b);

/* One field each, in the binary send format of its type. */
void pm_copy_int8(pm_buf_t *b, int64_t v);     /* bigint */
void pm_copy_float8(pm_buf_t *b, double v);    /* double precision */
void pm_copy_text(pm_buf_t *b, const char *s); /* text, NUL-terminated */
void pm_copy_jsonb(pm_buf_t *b, const char *json);
void pm_copy_bool(pm_buf_t *b, int v);
/* timestamptz from Unix microseconds (it counts from 2000-01-01 UTC) */
void pm_copy_timestamptz(pm_buf_t *b, int64_t unix_us);

/*
 * The fast path for many (bigint, timestamptz, float8) tuples, each 2 +
 * 3 * (4 + 8) = 38 bytes: begin empties b, writes the header and reserves
 * room for up to ntuples tuples and the trailer, so that each
 * pm_copy_i8_ts_f8 writes through a pointer without checks. Then
 * pm_copy_trailer. begin returns 0, or -1 (and oom) if out of memory.
 */
int pm_copy_begin_i8_ts_f8(pm_buf_t *b, size_t ntuples);
void pm_copy_i8_ts_f8(pm_buf_t *b, int64_t i8, int64_t ts_unix_us, double f8);

#endif
