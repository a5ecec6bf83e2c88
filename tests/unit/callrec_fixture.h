/*
 * callrec_fixture: what the tests of call records (test_callrec) and of
 * their costs (test_cost) share: a real SQLite store in a temporary
 * directory with a call record's metrics (setup, teardown), feeding agent
 * events to a record, and reading the call back once the store has written
 * everything queued. Include after cmocka.h.
 */
#ifndef TS_TESTS_CALLREC_FIXTURE_H
#define TS_TESTS_CALLREC_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "app/callrec.h"

struct fixture {
  uv_loop_t loop;
  struct config cfg;
  struct store *st;
  struct callrec_metrics *m;
  char dir[64];
  json_t *result;
  int status, done;
};

static inline int setup(void **state) {
  struct fixture *f = calloc(1, sizeof *f);
  uv_loop_init(&f->loop);
  config_defaults(&f->cfg);
  snprintf(f->dir, sizeof f->dir, "/tmp/tingshuo-callrec-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->cfg.data_dir, sizeof f->cfg.data_dir, "%s", f->dir);
  char err[256];
  assert_int_equal(store_open(&f->st, &f->loop, &f->cfg, err, sizeof err), 0);
  assert_int_equal(callrec_metrics_new(&f->m), 0);
  *state = f;
  return 0;
}

static inline int teardown(void **state) {
  struct fixture *f = *state;
  store_close(f->st, 1000);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  uv_loop_close(&f->loop);
  callrec_metrics_free(f->m);
  json_decref(f->result);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static inline void on_result(void *user, int status, json_t *result) {
  struct fixture *f = user;
  f->status = status;
  json_decref(f->result);
  f->result = result;
  f->done = 1;
}

/* The call as the store has it, once everything queued is written. */
static inline json_t *read_call(struct fixture *f, const char *id) {
  for (int tries = 0; tries < 200; tries++) {
    f->done = 0;
    store_get_call(f->st, id, on_result, f);
    while (!f->done) uv_run(&f->loop, UV_RUN_ONCE);
    struct store_stats s;
    store_get_stats(f->st, &s);
    if (f->status == 0 && s.queued == 0) return json_object_get(f->result, "call");
    usleep(10000);
  }
  fail_msg("call %s never readable (status %d)", id, f->status);
  return NULL;
}

/* A record for a call that has connected. */
static inline struct callrec *begin_with(struct fixture *f, const struct callrec_start *s) {
  struct callrec *r = callrec_new(f->st, f->m, s);
  assert_non_null(r);
  callrec_connected(r);
  return r;
}

static inline void feed(struct callrec *r, const char *const *events) {
  for (; *events; events++) callrec_agent_event(r, *events);
}

static inline json_t *turn_at(json_t *call, size_t i) {
  json_t *t = json_array_get(json_object_get(call, "turns"), i);
  if (!t) fail_msg("no turn %zu", i);
  return t;
}

static inline json_int_t inum(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_integer(v)) fail_msg("%s is not an integer", key);
  return json_integer_value(v);
}

#endif
