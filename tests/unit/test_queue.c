/* The in-memory queue: order, sequence numbers, the cap (PM_EBUSY),
 * completions on the loop thread and never from inside push. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "queue.h"

static int ready_calls, done_calls, done_order[8];

static void on_ready(void *arg) {
  (void)arg;
  ready_calls++;
}

static void on_done(void *arg, int status) {
  assert_int_equal(status, 0);
  done_order[done_calls++] = (int)(intptr_t)arg;
}

static void test_order_and_cap(void **state) {
  uv_loop_t loop;
  pm_rec_t recs[3] = {{.value = 1}, {.value = 2}, {.value = 3}}, out[8];
  (void)state;

  uv_loop_init(&loop);
  pm_queue_t *q = pm_queue_new(&loop, 4, on_ready, NULL);
  assert_non_null(q);
  assert_int_equal(pm_queue_push(q, recs, 3, on_done, (void *)1), 0);
  assert_int_equal(recs[0].seq, 1);
  assert_int_equal(recs[2].seq, 3);
  /* Never from inside push. */
  assert_int_equal(done_calls, 0);
  assert_int_equal(pm_queue_push(q, recs, 2, on_done, (void *)2), PM_EBUSY);
  assert_int_equal(pm_queue_full(q), 0);
  assert_int_equal(pm_queue_push(q, recs, 1, on_done, (void *)3), 0);
  assert_int_equal(pm_queue_full(q), 1);
  uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(done_calls, 2);
  assert_int_equal(done_order[0], 1);
  assert_int_equal(done_order[1], 3);
  assert_true(ready_calls >= 1);

  assert_int_equal(pm_queue_read(q, 0, out, 8), 4);
  assert_true(out[0].value == 1 && out[3].value == 1);
  assert_int_equal(pm_queue_read(q, 2, out, 8), 2);
  assert_int_equal(out[0].seq, 3);
  pm_queue_ack(q, 2);
  assert_int_equal(pm_queue_len(q), 2);
  assert_int_equal(pm_queue_read(q, 2, out, 1), 1);
  assert_int_equal(out[0].seq, 3);
  assert_int_equal(pm_queue_last_seq(q), 4);
  pm_queue_ack(q, 4);
  assert_int_equal(pm_queue_len(q), 0);
  assert_int_equal(pm_queue_read(q, 4, out, 8), 0);

  pm_queue_close(q, NULL, NULL);
  assert_int_equal(pm_queue_push(q, recs, 1, NULL, NULL), PM_ESTOPPED);
  uv_run(&loop, UV_RUN_DEFAULT);
  pm_queue_free(q);
  uv_loop_close(&loop);
}

/* The ring grows past its first allocation and wraps correctly. */
static void test_grow_wrap(void **state) {
  uv_loop_t loop;
  pm_rec_t r = {0}, out[1];
  (void)state;

  uv_loop_init(&loop);
  pm_queue_t *q = pm_queue_new(&loop, 200000, NULL, NULL);
  for (int i = 0; i < 100000; i++) {
    r.value = i;
    assert_int_equal(pm_queue_push(q, &r, 1, NULL, NULL), 0);
  }
  pm_queue_ack(q, 60000);
  for (int i = 100000; i < 190000; i++) {
    r.value = i;
    assert_int_equal(pm_queue_push(q, &r, 1, NULL, NULL), 0);
  }
  assert_int_equal(pm_queue_len(q), 130000);
  assert_int_equal(pm_queue_read(q, 150000, out, 1), 1);
  assert_int_equal(out[0].seq, 150001);
  assert_true(out[0].value == 150000);
  pm_queue_close(q, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  pm_queue_free(q);
  uv_loop_close(&loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_order_and_cap),
                                     cmocka_unit_test(test_grow_wrap)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
