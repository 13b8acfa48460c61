/* plugins/hl7/hl7_frame: MLLP framing, fed whole, split and byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hl7_frame.h"

#define SB "\x0b"
#define EB "\x1c"
#define CR "\r"

#define MSG_A                                                                  \
  "MSH|^~\\&|SCHED|CLINIC_EAST|PM|PM|20261125090000||SIU^S12^SIU_S12|"         \
  "SCH-0001|P|2.5\rSCH|APPT-1|APPT-1\rPID|1||FAKE-1||TESTPATIENT^ALPHA\r"
#define MSG_B                                                                  \
  "MSH|^~\\&|LAB|CLINIC_EAST|PM|PM|20261125100000||ORU^R01^ORU_R01|"           \
  "LAB-0002|P|2.5.1\rPID|1||FAKE-2||TESTPATIENT^BRAVO"

/* ---- an event recorder ---- */

typedef struct {
  hl7_frame_event_t ev;
  size_t len;
  char *data; /* a copy, frames only */
} event_t;

typedef struct {
  event_t ev[64];
  int n;
  int stop_on; /* event type whose callback returns stop_val, or 0 */
  int stop_val;
  size_t bytes; /* accounted: frames with their envelope, junk */
} rec_t;

static int rec_cb(void *arg, hl7_frame_event_t ev, const char *data,
                  size_t len) {
  rec_t *r = arg;
  assert_true(r->n < 64);
  event_t *e = &r->ev[r->n++];
  e->ev = ev;
  e->len = len;
  e->data = NULL;
  if (ev == HL7_FRAME) {
    assert_non_null(data);
    e->data = malloc(len + 1);
    assert_non_null(e->data);
    memcpy(e->data, data, len);
    e->data[len] = '\0';
    r->bytes += len + 3;
  } else {
    assert_null(data);
    if (ev == HL7_JUNK)
      r->bytes += len;
  }
  return (int)ev == r->stop_on ? r->stop_val : 0;
}

static void rec_free(rec_t *r) {
  for (int i = 0; i < r->n; i++)
    free(r->ev[i].data);
  r->n = 0;
  r->bytes = 0;
}

static void expect_frame(const rec_t *r, int i, const char *data, size_t len) {
  assert_true(i < r->n);
  assert_int_equal(r->ev[i].ev, HL7_FRAME);
  assert_int_equal(r->ev[i].len, len);
  assert_memory_equal(r->ev[i].data, data, len);
}

static void expect_event(const rec_t *r, int i, hl7_frame_event_t ev,
                         size_t len) {
  assert_true(i < r->n);
  assert_int_equal(r->ev[i].ev, ev);
  assert_int_equal(r->ev[i].len, len);
}

/* Feed s[0..n) cut at the given points (ascending), into a new framer. */
static void feed_split(size_t max, const char *s, size_t n, const size_t *cuts,
                       int ncuts, rec_t *r, hl7_framer_t *f) {
  size_t at = 0;
  assert_int_equal(hl7_framer_init(f, max), 0);
  for (int i = 0; i <= ncuts; i++) {
    size_t to = i < ncuts ? cuts[i] : n;
    assert_int_equal(hl7_framer_feed(f, s + at, to - at, rec_cb, r), 0);
    at = to;
  }
}

static void feed_whole(size_t max, const char *s, size_t n, rec_t *r,
                       hl7_framer_t *f) {
  feed_split(max, s, n, NULL, 0, r, f);
}

static void same_events(const rec_t *a, const rec_t *b) {
  assert_int_equal(a->n, b->n);
  for (int i = 0; i < a->n; i++) {
    assert_int_equal(a->ev[i].ev, b->ev[i].ev);
    assert_int_equal(a->ev[i].len, b->ev[i].len);
    if (a->ev[i].ev == HL7_FRAME)
      assert_memory_equal(a->ev[i].data, b->ev[i].data, a->ev[i].len);
  }
}

/* ---- tests ---- */

static void test_one_frame(void **state) {
  (void)state;
  static const char in[] = SB MSG_A EB CR;
  rec_t r = {0};
  hl7_framer_t f;

  feed_whole(1 << 20, in, sizeof(in) - 1, &r, &f);
  assert_int_equal(r.n, 1);
  expect_frame(&r, 0, MSG_A, strlen(MSG_A));
  assert_int_equal(r.bytes, sizeof(in) - 1);
  assert_false(hl7_framer_in_frame(&f));
  rec_free(&r);
  hl7_framer_free(&f);
}

static void test_two_frames_one_feed(void **state) {
  (void)state;
  static const char in[] = SB MSG_A EB CR SB MSG_B EB CR;
  rec_t r = {0};
  hl7_framer_t f;

  feed_whole(1 << 20, in, sizeof(in) - 1, &r, &f);
  assert_int_equal(r.n, 2);
  expect_frame(&r, 0, MSG_A, strlen(MSG_A));
  expect_frame(&r, 1, MSG_B, strlen(MSG_B));
  assert_int_equal(r.bytes, sizeof(in) - 1);
  rec_free(&r);
  hl7_framer_free(&f);
}

/* Junk, two frames, a lone EB in data, junk between: cut anywhere, fed
 * byte by byte, the events are the same as fed whole. */
static void test_split_everywhere(void **state) {
  (void)state;
  static const char in[] =
      "xx" SB MSG_A EB CR "\r\n" SB "A" EB "B" EB CR SB MSG_B EB CR;
  const size_t n = sizeof(in) - 1;
  rec_t whole = {0};
  hl7_framer_t f;

  feed_whole(64, in, n, &whole, &f);
  hl7_framer_free(&f);
  /* with max 64: junk 2, MSG_A oversize, junk 2, "A\x1c" "B", oversize */
  assert_int_equal(whole.n, 5);
  expect_event(&whole, 0, HL7_JUNK, 2);
  expect_event(&whole, 1, HL7_OVERSIZE, 65);
  expect_event(&whole, 2, HL7_JUNK, 2);
  expect_frame(&whole, 3, "A" EB "B", 3);
  expect_event(&whole, 4, HL7_OVERSIZE, 65);
  rec_free(&whole);

  for (size_t max = 64; max <= 1 << 20; max += (1 << 20) - 64) {
    feed_whole(max, in, n, &whole, &f);
    hl7_framer_free(&f);
    for (size_t cut = 0; cut <= n; cut++) {
      rec_t r = {0};
      feed_split(max, in, n, &cut, 1, &r, &f);
      same_events(&whole, &r);
      assert_false(hl7_framer_in_frame(&f));
      rec_free(&r);
      hl7_framer_free(&f);
    }
    size_t cuts[sizeof(in)];
    for (size_t i = 0; i < n; i++)
      cuts[i] = i + 1;
    rec_t r = {0};
    feed_split(max, in, n, cuts, (int)n - 1, &r, &f);
    same_events(&whole, &r);
    rec_free(&r);
    hl7_framer_free(&f);
    rec_free(&whole);
  }

  /* The big max: every frame whole, and each byte accounted for. */
  feed_whole(1 << 20, in, n, &whole, &f);
  assert_int_equal(whole.n, 5);
  expect_event(&whole, 0, HL7_JUNK, 2);
  expect_frame(&whole, 1, MSG_A, strlen(MSG_A));
  expect_event(&whole, 2, HL7_JUNK, 2);
  expect_frame(&whole, 3, "A" EB "B", 3);
  expect_frame(&whole, 4, MSG_B, strlen(MSG_B));
  assert_int_equal(whole.bytes, n);
  rec_free(&whole);
  hl7_framer_free(&f);
}

static void test_junk_before_start(void **state) {
  (void)state;
  static const char in[] = "GET / HTTP/1.0\r\n\r\n" SB MSG_A EB CR;
  rec_t r = {0};
  hl7_framer_t f;

  feed_whole(1 << 20, in, sizeof(in) - 1, &r, &f);
  assert_int_equal(r.n, 2);
  expect_event(&r, 0, HL7_JUNK, 18);
  expect_frame(&r, 1, MSG_A, strlen(MSG_A));
  rec_free(&r);
  hl7_framer_free(&f);

  /* A run of junk spread over feeds is one report, when it ends. */
  assert_int_equal(hl7_framer_init(&f, 100), 0);
  assert_int_equal(hl7_framer_feed(&f, "abc", 3, rec_cb, &r), 0);
  assert_int_equal(hl7_framer_feed(&f, "de", 2, rec_cb, &r), 0);
  assert_int_equal(r.n, 0);
  assert_false(hl7_framer_in_frame(&f));
  assert_int_equal(hl7_framer_feed(&f, SB, 1, rec_cb, &r), 0);
  assert_int_equal(r.n, 1);
  expect_event(&r, 0, HL7_JUNK, 5);
  rec_free(&r);
  hl7_framer_free(&f);
}

static void test_junk_between_frames(void **state) {
  (void)state;
  static const char in[] = SB MSG_A EB CR "\n\n\x1c\r" SB MSG_B EB CR "z";
  rec_t r = {0};
  hl7_framer_t f;

  feed_whole(1 << 20, in, sizeof(in) - 1, &r, &f);
  assert_int_equal(r.n, 3);
  expect_frame(&r, 0, MSG_A, strlen(MSG_A));
  expect_event(&r, 1, HL7_JUNK, 4);
  expect_frame(&r, 2, MSG_B, strlen(MSG_B));
  assert_int_equal(f.junk, 1); /* the trailing "z", not reported yet */
  rec_free(&r);
  hl7_framer_free(&f);
}

/* The framer passes the payload as is: the trailing CR of the last
 * segment is there or not, as sent. */
static void test_last_segment_cr(void **state) {
  (void)state;
  static const char with[] = SB MSG_A EB CR;    /* MSG_A ends with CR */
  static const char without[] = SB MSG_B EB CR; /* MSG_B does not */
  rec_t r = {0};
  hl7_framer_t f;

  feed_whole(1 << 20, with, sizeof(with) - 1, &r, &f);
  assert_int_equal(r.n, 1);
  assert_int_equal(r.ev[0].data[r.ev[0].len - 1], '\r');
  expect_frame(&r, 0, MSG_A, strlen(MSG_A));
  rec_free(&r);
  hl7_framer_free(&f);

  feed_whole(1 << 20, without, sizeof(without) - 1, &r, &f);
  assert_int_equal(r.n, 1);
  expect_frame(&r, 0, MSG_B, strlen(MSG_B));
  assert_int_equal(r.ev[0].data[r.ev[0].len - 1], 'O');
  rec_free(&r);
  hl7_framer_free(&f);
}

static void test_eb_without_cr_is_data(void **state) {
  (void)state;
  static const char in[] = SB "AB" EB "CD" EB EB CR SB EB "\n" EB CR;
  rec_t r = {0};
  hl7_framer_t f;

  feed_whole(1 << 20, in, sizeof(in) - 1, &r, &f);
  assert_int_equal(r.n, 2);
  expect_frame(&r, 0, "AB" EB "CD" EB, 6);
  expect_frame(&r, 1, EB "\n", 2);
  assert_int_equal(r.bytes, sizeof(in) - 1);
  rec_free(&r);
  hl7_framer_free(&f);
}

static void test_empty_frame(void **state) {
  (void)state;
  rec_t r = {0};
  hl7_framer_t f;

  feed_whole(0, SB EB CR SB "x" EB CR SB EB CR, 10, &r, &f);
  assert_int_equal(r.n, 3);
  expect_frame(&r, 0, "", 0);
  expect_event(&r, 1, HL7_OVERSIZE, 1);
  expect_frame(&r, 2, "", 0);
  rec_free(&r);
  hl7_framer_free(&f);
}

static void test_oversize(void **state) {
  (void)state;
  char in[256];
  rec_t r = {0};
  hl7_framer_t f;

  /* 40 data bytes with max 16, then a frame of exactly 16. */
  size_t n = 0;
  in[n++] = HL7_SB;
  memset(in + n, 'o', 40);
  n += 40;
  in[n++] = HL7_EB;
  in[n++] = HL7_CR;
  in[n++] = HL7_SB;
  memcpy(in + n, "MSH|^~\\&|SIXTEEN", 16);
  n += 16;
  in[n++] = HL7_EB;
  in[n++] = HL7_CR;

  feed_whole(16, in, n, &r, &f);
  assert_int_equal(r.n, 2);
  expect_event(&r, 0, HL7_OVERSIZE, 17);
  expect_frame(&r, 1, "MSH|^~\\&|SIXTEEN", 16);
  assert_int_equal(f.dropped, 1 + 40 + 2);
  assert_int_equal(r.bytes + f.dropped, n);
  rec_free(&r);
  hl7_framer_free(&f);

  /* byte by byte: still reported once */
  assert_int_equal(hl7_framer_init(&f, 16), 0);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(hl7_framer_feed(&f, in + i, 1, rec_cb, &r), 0);
    if (i < 42)
      assert_true(hl7_framer_in_frame(&f)); /* slow oversize: still timed */
  }
  assert_int_equal(r.n, 2);
  expect_event(&r, 0, HL7_OVERSIZE, 17);
  expect_frame(&r, 1, "MSH|^~\\&|SIXTEEN", 16);
  rec_free(&r);
  hl7_framer_free(&f);

  /* An EB that turns out to be data is what overflows. */
  feed_whole(2, SB "ab" EB "c" EB CR SB "ok" EB CR, 12, &r, &f);
  assert_int_equal(r.n, 2);
  expect_event(&r, 0, HL7_OVERSIZE, 3);
  expect_frame(&r, 1, "ok", 2);
  assert_int_equal(f.dropped, 7);
  rec_free(&r);
  hl7_framer_free(&f);

  /* A start block while discarding starts a new frame. */
  feed_whole(2, SB "abcdef" SB "ok" EB CR, 12, &r, &f);
  assert_int_equal(r.n, 2);
  expect_event(&r, 0, HL7_OVERSIZE, 3);
  expect_frame(&r, 1, "ok", 2);
  rec_free(&r);
  hl7_framer_free(&f);
}

/* The buffer grows past its first allocation up to max. */
static void test_large_frame(void **state) {
  (void)state;
  const size_t len = 300000;
  char *in = malloc(len + 3);
  assert_non_null(in);
  in[0] = HL7_SB;
  for (size_t i = 0; i < len; i++)
    in[1 + i] = (char)('A' + i % 26);
  in[len + 1] = HL7_EB;
  in[len + 2] = HL7_CR;
  rec_t r = {0};
  hl7_framer_t f;

  assert_int_equal(hl7_framer_init(&f, len), 0);
  for (size_t at = 0; at < len + 3; at += 1000) {
    size_t k = len + 3 - at < 1000 ? len + 3 - at : 1000;
    assert_int_equal(hl7_framer_feed(&f, in + at, k, rec_cb, &r), 0);
  }
  assert_int_equal(r.n, 1);
  expect_frame(&r, 0, in + 1, len);
  rec_free(&r);
  hl7_framer_free(&f);

  /* one byte over */
  assert_int_equal(hl7_framer_init(&f, len - 1), 0);
  assert_int_equal(hl7_framer_feed(&f, in, len + 3, rec_cb, &r), 0);
  assert_int_equal(r.n, 1);
  expect_event(&r, 0, HL7_OVERSIZE, len);
  rec_free(&r);
  hl7_framer_free(&f);
  free(in);
}

static void test_restart_inside_frame(void **state) {
  (void)state;
  static const char in[] =
      SB "MSH|PARTIAL" SB MSG_A EB CR SB "X" EB SB MSG_B EB CR;
  rec_t r = {0};
  hl7_framer_t f;

  feed_whole(1 << 20, in, sizeof(in) - 1, &r, &f);
  assert_int_equal(r.n, 4);
  expect_event(&r, 0, HL7_JUNK, 12); /* SB and its 11 bytes */
  expect_frame(&r, 1, MSG_A, strlen(MSG_A));
  expect_event(&r, 2, HL7_JUNK, 3); /* SB "X" EB */
  expect_frame(&r, 3, MSG_B, strlen(MSG_B));
  assert_int_equal(r.bytes, sizeof(in) - 1);
  rec_free(&r);
  hl7_framer_free(&f);
}

static void test_in_frame(void **state) {
  (void)state;
  rec_t r = {0};
  hl7_framer_t f;

  assert_int_equal(hl7_framer_init(&f, 100), 0);
  assert_false(hl7_framer_in_frame(&f));
  assert_int_equal(hl7_framer_feed(&f, "junk", 4, rec_cb, &r), 0);
  assert_false(hl7_framer_in_frame(&f));
  assert_int_equal(hl7_framer_feed(&f, SB, 1, rec_cb, &r), 0);
  assert_true(hl7_framer_in_frame(&f));
  assert_int_equal(hl7_framer_feed(&f, "MSH", 3, rec_cb, &r), 0);
  assert_true(hl7_framer_in_frame(&f));
  assert_int_equal(hl7_framer_feed(&f, EB, 1, rec_cb, &r), 0);
  assert_true(hl7_framer_in_frame(&f));
  assert_int_equal(hl7_framer_feed(&f, CR, 1, rec_cb, &r), 0);
  assert_false(hl7_framer_in_frame(&f));
  assert_int_equal(r.n, 2);
  expect_event(&r, 0, HL7_JUNK, 4);
  expect_frame(&r, 1, "MSH", 3);
  rec_free(&r);
  hl7_framer_free(&f);
}

static void test_stop_value(void **state) {
  (void)state;
  static const char in[] = "j" SB "one" EB CR SB "two" EB CR;
  rec_t r = {.stop_on = HL7_FRAME, .stop_val = 7};
  hl7_framer_t f;

  assert_int_equal(hl7_framer_init(&f, 100), 0);
  assert_int_equal(hl7_framer_feed(&f, in, sizeof(in) - 1, rec_cb, &r), 7);
  assert_int_equal(r.n, 2); /* the junk, then "one": nothing after it */
  expect_frame(&r, 1, "one", 3);
  assert_false(hl7_framer_in_frame(&f));
  /* The framer is usable after a stop: the rest fed again */
  r.stop_on = 0;
  assert_int_equal(hl7_framer_feed(&f, SB "two" EB CR, 6, rec_cb, &r), 0);
  expect_frame(&r, 2, "two", 3);
  rec_free(&r);
  hl7_framer_free(&f);

  r = (rec_t){.stop_on = HL7_JUNK, .stop_val = -5};
  assert_int_equal(hl7_framer_init(&f, 100), 0);
  assert_int_equal(hl7_framer_feed(&f, in, sizeof(in) - 1, rec_cb, &r), -5);
  assert_int_equal(r.n, 1);
  assert_true(hl7_framer_in_frame(&f)); /* the SB was taken */
  rec_free(&r);
  hl7_framer_free(&f);

  r = (rec_t){.stop_on = HL7_OVERSIZE, .stop_val = 3};
  assert_int_equal(hl7_framer_init(&f, 2), 0);
  assert_int_equal(hl7_framer_feed(&f, in, sizeof(in) - 1, rec_cb, &r), 3);
  assert_int_equal(r.n, 2);
  expect_event(&r, 1, HL7_OVERSIZE, 3);
  rec_free(&r);
  hl7_framer_free(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_frame),
      cmocka_unit_test(test_two_frames_one_feed),
      cmocka_unit_test(test_split_everywhere),
      cmocka_unit_test(test_junk_before_start),
      cmocka_unit_test(test_junk_between_frames),
      cmocka_unit_test(test_last_segment_cr),
      cmocka_unit_test(test_eb_without_cr_is_data),
      cmocka_unit_test(test_empty_frame),
      cmocka_unit_test(test_oversize),
      cmocka_unit_test(test_large_frame),
      cmocka_unit_test(test_restart_inside_frame),
      cmocka_unit_test(test_in_frame),
      cmocka_unit_test(test_stop_value),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
