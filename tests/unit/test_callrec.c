/*
 * callrec: a call's agent events become the rows the store keeps, in the
 * order a person would read the conversation, whatever order the events
 * came in. Each test feeds the events a voice agent sends for one
 * situation, then reads the call back from a real SQLite store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "app/callrec.h"
#include "core/prom.h"

struct fixture {
  uv_loop_t loop;
  struct config cfg;
  struct store *st;
  struct callrec_metrics *m;
  char dir[64];
  json_t *result;
  int status, done;
};

static int setup(void **state) {
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

static int teardown(void **state) {
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

static void on_result(void *user, int status, json_t *result) {
  struct fixture *f = user;
  f->status = status;
  json_decref(f->result);
  f->result = result;
  f->done = 1;
}

/* The call as the store has it, once everything queued is written. */
static json_t *read_call(struct fixture *f, const char *id) {
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

static struct callrec *begin(struct fixture *f, const char *id) {
  struct callrec_start s = {.id = id, .remote_addr = "127.0.0.1", .agent = "voice", .asr = "pocketsphinx",
                            .llm = "local", .tts = "flite", .language = "en"};
  struct callrec *r = callrec_new(f->st, f->m, &s);
  assert_non_null(r);
  callrec_connected(r);
  return r;
}

static void feed(struct callrec *r, const char *const *events) {
  for (; *events; events++) callrec_agent_event(r, *events);
}

static json_t *turn_at(json_t *call, size_t i) {
  json_t *t = json_array_get(json_object_get(call, "turns"), i);
  if (!t) fail_msg("no turn %zu", i);
  return t;
}

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static void assert_text(json_t *o, const char *k, const char *want) {
  const char *got = str(o, k);
  if (!want) {
    assert_true(json_is_null(json_object_get(o, k)));
    return;
  }
  assert_non_null(got);
  assert_string_equal(got, want);
}

static void a_greeting_then_a_turn_make_two_rows(void **state) {
  struct fixture *f = *state;
  struct callrec *r = begin(f, "a1");
  static const char *const ev[] = {
      "{\"type\":\"state\",\"state\":\"speaking\",\"call_id\":\"a1\"}",
      "{\"type\":\"reply_partial\",\"text\":\"Hello.\",\"call_id\":\"a1\"}",
      "{\"type\":\"reply\",\"text\":\"Hello.\",\"interrupted\":false,\"turn\":0,\"call_id\":\"a1\"}",
      "{\"type\":\"transcript\",\"text\":\"what\",\"final\":false,\"call_id\":\"a1\"}",
      "{\"type\":\"transcript\",\"text\":\"what time is it\",\"final\":true,\"turn\":1,\"call_id\":\"a1\"}",
      "{\"type\":\"latency\",\"turn\":1,\"endpoint_ms\":600.0,\"asr_ms\":54.5,\"llm_first_token_ms\":1.0,"
      "\"llm_first_sentence_ms\":1.5,\"tts_first_audio_ms\":18.0,\"voice_to_voice_ms\":675.2,"
      "\"overhead_ms\":0.2,\"call_id\":\"a1\"}",
      "{\"type\":\"reply\",\"text\":\"It is noon.\",\"interrupted\":false,\"turn\":1,\"call_id\":\"a1\"}",
      NULL};
  feed(r, ev);
  struct media_call_summary s = {.packets_received = 500, .packets_lost = 2};
  callrec_end(r, "hangup", &s);
  json_t *call = read_call(f, "a1");
  assert_int_equal(json_array_size(json_object_get(call, "turns")), 2);
  json_t *t0 = turn_at(call, 0), *t1 = turn_at(call, 1);
  assert_int_equal(json_integer_value(json_object_get(t0, "index")), 0);
  assert_text(t0, "transcript", NULL);
  assert_text(t0, "reply", "Hello.");
  assert_text(t1, "transcript", "what time is it");
  assert_text(t1, "reply", "It is noon.");
  assert_true(json_is_false(json_object_get(t1, "interrupted")));
  assert_float_equal(json_number_value(json_object_get(t1, "voice_to_voice_ms")), 675.2, 1e-6);
  assert_float_equal(json_number_value(json_object_get(t1, "asr_ms")), 54.5, 1e-6);
  assert_true(json_is_null(json_object_get(t1, "barge_in_ms")));
  assert_text(call, "end_reason", "hangup");
  assert_int_equal(json_integer_value(json_object_get(call, "packets_lost")), 2);
  assert_int_equal(json_integer_value(json_object_get(call, "packets_received")), 500);
}

/* At a barge-in the new turn's words arrive before the reply they cut short. */
static void a_barge_in_keeps_the_interrupted_reply_with_its_turn(void **state) {
  struct fixture *f = *state;
  struct callrec *r = begin(f, "b2");
  static const char *const ev[] = {
      "{\"type\":\"transcript\",\"text\":\"tell me a story\",\"final\":true,\"turn\":1}",
      "{\"type\":\"latency\",\"turn\":1,\"voice_to_voice_ms\":700.0}",
      "{\"type\":\"transcript\",\"text\":\"stop\",\"final\":true,\"turn\":2}",
      "{\"type\":\"reply\",\"text\":\"Once upon\",\"interrupted\":true,\"turn\":1}",
      "{\"type\":\"latency\",\"turn\":1,\"voice_to_voice_ms\":700.0,\"barge_in_ms\":20.5,\"onset_lag_ms\":80}",
      "{\"type\":\"latency\",\"turn\":2,\"voice_to_voice_ms\":650.0}",
      "{\"type\":\"reply\",\"text\":\"Okay.\",\"interrupted\":false,\"turn\":2}",
      NULL};
  feed(r, ev);
  callrec_end(r, "hangup", NULL);
  json_t *call = read_call(f, "b2");
  assert_int_equal(json_array_size(json_object_get(call, "turns")), 2);
  json_t *t0 = turn_at(call, 0), *t1 = turn_at(call, 1);
  assert_text(t0, "transcript", "tell me a story");
  assert_text(t0, "reply", "Once upon");
  assert_true(json_is_true(json_object_get(t0, "interrupted")));
  assert_float_equal(json_number_value(json_object_get(t0, "barge_in_ms")), 20.5, 1e-6);
  assert_float_equal(json_number_value(json_object_get(t0, "onset_lag_ms")), 80, 1e-6);
  assert_text(t1, "transcript", "stop");
  assert_text(t1, "reply", "Okay.");
  assert_float_equal(json_number_value(json_object_get(t1, "voice_to_voice_ms")), 650, 1e-6);

  /* The metrics counted the interrupted turn's stages once, its barge-in once. */
  struct prom_buf b;
  prom_buf_init(&b);
  callrec_metrics_write(f->m, 0, &b);
  assert_non_null(strstr(b.data, "tingshuo_turns_total 2\n"));
  assert_non_null(strstr(b.data, "tingshuo_replies_interrupted_total 1\n"));
  assert_non_null(strstr(b.data, "tingshuo_voice_to_voice_seconds_count 2\n"));
  assert_non_null(strstr(b.data, "tingshuo_barge_in_stop_seconds_count 1\n"));
  assert_non_null(strstr(b.data, "tingshuo_calls_ended_total{reason=\"hangup\"} 1\n"));
  prom_buf_free(&b);
}

/* Words after a pause, before the reply began, continue the same turn: one row. */
static void words_that_continue_a_turn_stay_one_row(void **state) {
  struct fixture *f = *state;
  struct callrec *r = begin(f, "c3");
  static const char *const ev[] = {
      "{\"type\":\"transcript\",\"text\":\"I would like\",\"final\":true,\"turn\":1}",
      "{\"type\":\"transcript\",\"text\":\"I would like a table for two\",\"final\":true,\"turn\":1}",
      "{\"type\":\"reply\",\"text\":\"Sure.\",\"interrupted\":false,\"turn\":1}",
      "{\"type\":\"transcript\",\"text\":\"yeah\",\"final\":true}", /* a backchannel: no turn */
      NULL};
  feed(r, ev);
  callrec_end(r, "goodbye", NULL);
  json_t *call = read_call(f, "c3");
  assert_int_equal(json_array_size(json_object_get(call, "turns")), 1);
  assert_text(turn_at(call, 0), "transcript", "I would like a table for two");
  assert_text(turn_at(call, 0), "reply", "Sure.");
}

/* An LLM error belongs to the turn it failed; an ASR error to the apology that follows. */
static void engine_errors_go_with_the_row_they_affected(void **state) {
  struct fixture *f = *state;
  struct callrec *r = begin(f, "d4");
  static const char *const ev[] = {
      "{\"type\":\"transcript\",\"text\":\"hello\",\"final\":true,\"turn\":1}",
      "{\"type\":\"error\",\"code\":\"engine\",\"engine\":\"llm\",\"message\":\"llm: HTTP 500\","
      "\"error_id\":\"e-0123456789ab\"}",
      "{\"type\":\"reply\",\"text\":\"Sorry.\",\"interrupted\":false,\"turn\":1}",
      "{\"type\":\"error\",\"code\":\"engine\",\"engine\":\"asr\",\"message\":\"asr: timed out\"}",
      "{\"type\":\"reply\",\"text\":\"Sorry again.\",\"interrupted\":false,\"turn\":0}",
      "{\"type\":\"error\",\"code\":\"bad_message\",\"message\":\"not an engine's\"}",
      "not json at all",
      "{\"type\":\"reply\",\"text\":42}",
      NULL};
  feed(r, ev);
  callrec_end(r, "hangup", NULL);
  json_t *call = read_call(f, "d4");
  assert_int_equal(json_array_size(json_object_get(call, "turns")), 2);
  assert_text(turn_at(call, 0), "error", "llm: HTTP 500 (e-0123456789ab)");
  assert_text(turn_at(call, 0), "reply", "Sorry.");
  assert_text(turn_at(call, 1), "error", "asr: timed out");
  assert_text(turn_at(call, 1), "transcript", NULL);
  assert_text(turn_at(call, 1), "reply", "Sorry again.");
}

/* Records off: the metrics still count, nothing is stored, nothing leaks. */
static void without_a_store_only_metrics_are_kept(void **state) {
  struct fixture *f = *state;
  struct callrec_start s = {.id = "e5", .agent = "echo"};
  struct callrec *r = callrec_new(NULL, f->m, &s);
  assert_non_null(r);
  callrec_agent_event(r, "{\"type\":\"transcript\",\"text\":\"x\",\"final\":true,\"turn\":1}");
  callrec_end(r, "ice timeout", NULL);
  struct prom_buf b;
  prom_buf_init(&b);
  callrec_metrics_write(f->m, 3, &b);
  assert_non_null(strstr(b.data, "tingshuo_calls_active 3\n"));
  assert_non_null(strstr(b.data, "tingshuo_calls_started_total 1\n"));
  assert_non_null(strstr(b.data, "tingshuo_calls_ended_total{reason=\"ice timeout\"} 1\n"));
  prom_buf_free(&b);
  f->done = 0;
  store_get_call(f->st, "e5", on_result, f);
  while (!f->done) uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->status, -ENOENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(a_greeting_then_a_turn_make_two_rows, setup, teardown),
      cmocka_unit_test_setup_teardown(a_barge_in_keeps_the_interrupted_reply_with_its_turn, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(words_that_continue_a_turn_stay_one_row, setup, teardown),
      cmocka_unit_test_setup_teardown(engine_errors_go_with_the_row_they_affected, setup, teardown),
      cmocka_unit_test_setup_teardown(without_a_store_only_metrics_are_kept, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
