/* inference pool: runs items, in order on one thread, in parallel on many; drops on free. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "core/pool.h"

struct order {
  uv_mutex_t lock;
  int seen[100];
  int n;
};

struct order_item {
  struct order *o;
  int index;
};

static void record(void *arg) {
  struct order_item *it = arg;
  uv_mutex_lock(&it->o->lock);
  it->o->seen[it->o->n++] = it->index;
  uv_mutex_unlock(&it->o->lock);
  free(it);
}

static void wait_idle(struct pool *p) {
  for (int i = 0; i < 5000 && pool_pending(p) > 0; i++) uv_sleep(1);
  assert_int_equal(pool_pending(p), 0);
}

static void one_thread_runs_items_in_submission_order(void **state) {
  struct pool *p;
  assert_int_equal(pool_new(&p, 1), 0);
  struct order o = {.n = 0};
  uv_mutex_init(&o.lock);
  for (int i = 0; i < 100; i++) {
    struct order_item *it = malloc(sizeof *it);
    it->o = &o;
    it->index = i;
    assert_int_equal(pool_submit(p, record, free, it), 0);
  }
  wait_idle(p);
  assert_int_equal(o.n, 100);
  for (int i = 0; i < 100; i++) assert_int_equal(o.seen[i], i);
  pool_free(p);
  uv_mutex_destroy(&o.lock);
}

/* Two items that each wait for the other can only finish if they run at once. */
struct rendezvous {
  atomic_int arrived;
  atomic_int finished;
};

static void meet(void *arg) {
  struct rendezvous *r = arg;
  atomic_fetch_add(&r->arrived, 1);
  for (int i = 0; i < 5000 && atomic_load(&r->arrived) < 2; i++) uv_sleep(1);
  if (atomic_load(&r->arrived) >= 2) atomic_fetch_add(&r->finished, 1);
}

static void two_threads_run_items_in_parallel(void **state) {
  struct pool *p;
  assert_int_equal(pool_new(&p, 2), 0);
  struct rendezvous r;
  atomic_init(&r.arrived, 0);
  atomic_init(&r.finished, 0);
  assert_int_equal(pool_submit(p, meet, NULL, &r), 0);
  assert_int_equal(pool_submit(p, meet, NULL, &r), 0);
  wait_idle(p);
  assert_int_equal(atomic_load(&r.finished), 2);
  pool_free(p);
}

struct gate {
  atomic_int entered;
  atomic_int open;
  atomic_int ran, dropped;
  atomic_int resubmit_rc;
  struct pool *pool;
};

static void count_run(void *arg) { atomic_fetch_add(&((struct gate *)arg)->ran, 1); }
static void count_drop(void *arg) { atomic_fetch_add(&((struct gate *)arg)->dropped, 1); }

/* Blocks the only thread until the test opens the gate, then tries to submit more. */
static void hold(void *arg) {
  struct gate *g = arg;
  atomic_store(&g->entered, 1);
  while (!atomic_load(&g->open)) uv_sleep(1);
  uv_sleep(20); /* let pool_free begin */
  atomic_store(&g->resubmit_rc, pool_submit(g->pool, count_run, count_drop, g));
}

static void opener(void *arg) {
  struct gate *g = arg;
  uv_sleep(30);
  atomic_store(&g->open, 1);
}

static void free_drops_queued_items_and_refuses_new_ones(void **state) {
  struct gate g;
  memset(&g, 0, sizeof g);
  assert_int_equal(pool_new(&g.pool, 1), 0);
  assert_int_equal(pool_submit(g.pool, hold, NULL, &g), 0);
  while (!atomic_load(&g.entered)) uv_sleep(1);
  for (int i = 0; i < 5; i++) assert_int_equal(pool_submit(g.pool, count_run, count_drop, &g), 0);
  assert_int_equal(pool_pending(g.pool), 6);
  uv_thread_t t;
  uv_thread_create(&t, opener, &g);
  pool_free(g.pool); /* joins the holder, which finishes after the gate opens */
  uv_thread_join(&t);
  assert_int_equal(atomic_load(&g.ran), 0);
  assert_int_equal(atomic_load(&g.dropped), 5);
  assert_int_equal(atomic_load(&g.resubmit_rc), -ESHUTDOWN);
}

static void zero_threads_means_one(void **state) {
  struct pool *p;
  assert_int_equal(pool_new(&p, 0), 0);
  struct gate g;
  memset(&g, 0, sizeof g);
  assert_int_equal(pool_submit(p, count_run, count_drop, &g), 0);
  wait_idle(p);
  assert_int_equal(atomic_load(&g.ran), 1);
  pool_free(p);
  pool_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(one_thread_runs_items_in_submission_order),
      cmocka_unit_test(two_threads_run_items_in_parallel),
      cmocka_unit_test(free_drops_queued_items_and_refuses_new_ones),
      cmocka_unit_test(zero_threads_means_one),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
