/*
 * MLLP framing (plugins/hl7/hl7_frame.h). Input: byte 0 picks
 * max_message (small, so oversize frames are common), bytes 1-2 seed the
 * chunk sizes, the rest is the stream. Oracles beyond "no crash":
 *  - the events are the same whether the stream is fed whole or in
 *    chunks (the framer keeps no state in the split points);
 *  - frames are never longer than max_message and never hold a start
 *    block or an end block followed by CR; junk and oversize events
 *    carry no data, oversize is reported at max_message + 1;
 *  - every byte is accounted for: after a final empty frame flushes
 *    what is pending, frames with their envelope, junk, and dropped
 *    (oversize) bytes add up to what was fed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hl7_frame.h"

typedef struct {
  size_t max;
  uint64_t hash; /* FNV-1a of the events: type, length, data */
  size_t events, bytes;
} run_t;

static void mix(run_t *r, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    r->hash ^= b[i];
    r->hash *= 0x100000001b3ULL;
  }
}

static int on_event(void *arg, hl7_frame_event_t ev, const char *data,
                    size_t len) {
  run_t *r = arg;
  unsigned char e = (unsigned char)ev;

  switch (ev) {
  case HL7_FRAME:
    if (!data || len > r->max || memchr(data, HL7_SB, len))
      abort();
    for (size_t i = 0; i + 1 < len; i++)
      if (data[i] == HL7_EB && data[i + 1] == HL7_CR)
        abort();
    r->bytes += len + 3;
    break;
  case HL7_JUNK:
    if (data || len == 0)
      abort();
    r->bytes += len;
    break;
  case HL7_OVERSIZE:
    if (data || len != r->max + 1)
      abort();
    break;
  default:
    abort();
  }
  mix(r, &e, 1);
  mix(r, &len, sizeof(len));
  if (ev == HL7_FRAME)
    mix(r, data, len);
  r->events++;
  return 0;
}

/* Feed in[0..n) in chunks (all at once when seed is 0xFFFF), then an
 * empty frame so nothing stays pending; check the accounting. */
static void run(run_t *r, const char *in, size_t n, unsigned seed) {
  static const char flush[] = {HL7_SB, HL7_EB, HL7_CR};
  hl7_framer_t f;

  r->hash = 0xcbf29ce484222325ULL;
  r->events = r->bytes = 0;
  if (hl7_framer_init(&f, r->max) != 0)
    abort();
  size_t at = 0;
  uint32_t x = seed;
  while (at < n) {
    size_t k = n - at;
    if (seed != 0xFFFF) {
      x = x * 1103515245u + 12345u;
      /* mostly short chunks, byte by byte when seed is 0 */
      size_t c = seed == 0 ? 1 : 1 + (x >> 16) % 23;
      if (c < k)
        k = c;
    }
    if (hl7_framer_feed(&f, in + at, k, on_event, r) != 0)
      abort();
    at += k;
  }
  if (hl7_framer_feed(&f, flush, sizeof(flush), on_event, r) != 0)
    abort();
  if (hl7_framer_in_frame(&f) || f.junk != 0 || f.len != 0)
    abort();
  if (r->bytes + f.dropped != n + sizeof(flush))
    abort();
  hl7_framer_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3)
    return 0;
  size_t max = data[0] & 0x80 ? (size_t)(data[0] & 0x7f) : (size_t)data[0] * 16;
  unsigned seed = (unsigned)data[1] | (unsigned)data[2] << 8;
  const char *in = (const char *)data + 3;
  size_t n = size - 3;

  run_t whole = {.max = max}, split = {.max = max};
  run(&whole, in, n, 0xFFFF);
  run(&split, in, n, seed == 0xFFFF ? 0 : seed);
  if (whole.hash != split.hash || whole.events != split.events ||
      whole.bytes != split.bytes)
    abort();
  return 0;
}
