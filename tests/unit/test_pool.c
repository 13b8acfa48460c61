/* The worker pool: a hung job holds one thread and the others still run;
 * `after` runs on the loop thread; shutdown drops jobs not started. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <unistd.h>

#include <portalmetrics/plugin.h>
#include "pool.h"

static atomic_int release_hung;
static int quick_done, hung_done;

static void hung(void *arg) {
  (void)arg;
  while (!atomic_load(&release_hung))
    usleep(1000);
}
static void quick(void *arg) {
  (void)arg;
}
static void after_quick(void *arg, int status) {
  (void)arg;
  assert_int_equal(status, 0);
  quick_done++;
}
static void after_hung(void *arg, int status) {
  (void)arg;
  hung_done++;
}
static void on_closed(void *arg) {
  (void)arg;
}

static void test_hung_job(void **state) {
  uv_loop_t loop;
  (void)state;

  uv_loop_init(&loop);
  pm_pool_t *p = pm_pool_new(&loop, 4);
  assert_int_equal(pm_pool_submit(p, hung, after_hung, NULL), 0);
  assert_int_equal(pm_pool_submit(p, hung, after_hung, NULL), 0);
  for (int i = 0; i < 10; i++)
    assert_int_equal(pm_pool_submit(p, quick, after_quick, NULL), 0);
  for (int i = 0; i < 2000 && quick_done < 10; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  assert_int_equal(quick_done, 10);
  assert_int_equal(hung_done, 0);
  assert_int_equal(pm_pool_busy(p), 2);

  atomic_store(&release_hung, 1);
  for (int i = 0; i < 2000 && hung_done < 2; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  assert_int_equal(hung_done, 2);
  pm_pool_shutdown(p, on_closed, NULL);
  assert_int_equal(pm_pool_submit(p, quick, after_quick, NULL), PM_ESTOPPED);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(pm_pool_free(p), 0);
  uv_loop_close(&loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_hung_job)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
