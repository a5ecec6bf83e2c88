/*
 * The event loop an embedded engine's tests run on. An engine works on pool
 * threads and posts its results to a mailbox on the loop that opened the
 * session, so each test gets a fresh loop, a control mailbox, a pool of two
 * threads and default configuration, wired into the engine_env the backend
 * opens with. engine_loop_spin() turns the loop until a callback sets a
 * flag, with a ticking timer so the time-out is checked even when nothing
 * else wakes the loop. Include after <cmocka.h>.
 */
#ifndef TINGSHUO_TESTS_ENGINE_LOOP_H
#define TINGSHUO_TESTS_ENGINE_LOOP_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <uv.h>

#include "core/config.h"
#include "core/mailbox.h"
#include "core/pool.h"
#include "engines/engine.h"

struct engine_loop {
  uv_loop_t loop;
  struct mailbox *mb;
  struct pool *pool;
  struct config cfg;
  struct engine_env env;
};

static inline void engine_loop_drop_message(struct mailbox *mb, struct mailbox_msg *msg,
                                            void *user) {
  (void)mb;
  (void)user;
  free(msg);
}

/* cmocka set-up: *state becomes a fresh struct engine_loop. */
static inline int engine_loop_setup(void **state) {
  struct engine_loop *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(mailbox_new(&f->mb, &f->loop, engine_loop_drop_message, NULL), 0);
  assert_int_equal(pool_new(&f->pool, 2), 0);
  config_defaults(&f->cfg);
  f->env.cfg = &f->cfg;
  f->env.pool = f->pool;
  f->env.control = f->mb;
  *state = f;
  return 0;
}

/* cmocka tear-down: every handle the test left must close with the loop. */
static inline int engine_loop_teardown(void **state) {
  struct engine_loop *f = *state;
  pool_free(f->pool);
  mailbox_close(f->mb, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

#define ENGINE_LOOP_TEST(fn) \
  cmocka_unit_test_setup_teardown(fn, engine_loop_setup, engine_loop_teardown)

static inline void engine_loop_tick(uv_timer_t *t) { (void)t; }

/* Runs the loop until *flag (never, if flag is NULL) or the time is up. */
static inline void engine_loop_spin(struct engine_loop *f, const int *flag, int timeout_ms) {
  uv_timer_t t;
  uv_timer_init(&f->loop, &t);
  uv_timer_start(&t, engine_loop_tick, 5, 5);
  uv_update_time(&f->loop);
  uint64_t end = uv_now(&f->loop) + (uint64_t)timeout_ms;
  while ((!flag || !*flag) && uv_now(&f->loop) < end) uv_run(&f->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* CPU time of the whole process, all threads: the cost of work on the pool. */
static inline double engine_loop_cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif
