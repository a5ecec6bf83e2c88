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
#include "callrec_fixture.h"
#include "core/prom.h"

static struct callrec *begin(struct fixture *f, const char *id) {
  struct callrec_start s = {.id = id, .remote_addr = "127.0.0.1", .agent = "voice", .asr = "pocketsphinx",
                            .llm = "local", .tts = "flite", .language = "en"};
  return begin_with(f, &s);
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

/* ---- tool calls ------------------------------------------------------------------------ */

static json_t *tools_at(json_t *call, size_t turn) {
  json_t *list = json_object_get(turn_at(call, turn), "tool_calls");
  assert_true(json_is_array(list));
  return list;
}

/* Two parallel calls answered out of order, then a second round whose tool fails. */
static void tool_calls_stay_in_order_on_their_turn_with_their_results(void **state) {
  struct fixture *f = *state;
  struct callrec *r = begin(f, "t1");
  static const char *const ev[] = {
      "{\"type\":\"transcript\",\"text\":\"where is order 42\",\"final\":true,\"turn\":1}",
      "{\"type\":\"tool_call\",\"turn\":1,\"tool\":\"get_order_status\",\"tool_call_id\":\"call_1\","
      "\"arguments\":{\"order_id\":\"42\"},\"call_id\":\"t1\"}",
      "{\"type\":\"tool_call\",\"turn\":1,\"tool\":\"get_time\",\"tool_call_id\":\"call_2\","
      "\"arguments\":\"{not json\",\"call_id\":\"t1\"}",
      "{\"type\":\"tool_result\",\"turn\":1,\"tool\":\"get_time\",\"tool_call_id\":\"call_2\","
      "\"is_error\":false,\"result\":{\"now\":\"noon\"},\"ms\":2,\"call_id\":\"t1\"}",
      "{\"type\":\"tool_result\",\"turn\":1,\"tool\":\"get_order_status\",\"tool_call_id\":\"call_1\","
      "\"is_error\":false,\"result\":{\"status\":\"shipped\"},\"ms\":180,\"call_id\":\"t1\"}",
      "{\"type\":\"tool_call\",\"turn\":1,\"tool\":\"lookup_down\",\"tool_call_id\":\"call_3\","
      "\"arguments\":{},\"call_id\":\"t1\"}",
      "{\"type\":\"tool_result\",\"turn\":1,\"tool\":\"lookup_down\",\"tool_call_id\":\"call_3\","
      "\"is_error\":true,\"result\":{\"error\":\"HTTP 500\"},\"ms\":31,\"call_id\":\"t1\"}",
      "{\"type\":\"reply\",\"text\":\"It has shipped.\",\"interrupted\":false,\"turn\":1}",
      /* Nonsense is ignored: no turn, a turn that is not a number. */
      "{\"type\":\"tool_call\",\"tool\":\"x\",\"tool_call_id\":\"z\"}",
      "{\"type\":\"tool_result\",\"turn\":\"one\",\"tool_call_id\":\"z\"}",
      NULL};
  feed(r, ev);
  callrec_end(r, "hangup", NULL);
  json_t *call = read_call(f, "t1");
  assert_int_equal(inum(call, "tool_calls"), 3);
  assert_int_equal(json_array_size(json_object_get(call, "turns")), 1);
  assert_text(turn_at(call, 0), "reply", "It has shipped.");
  json_t *list = tools_at(call, 0);
  assert_int_equal(json_array_size(list), 3);
  json_t *a = json_array_get(list, 0), *b = json_array_get(list, 1), *c = json_array_get(list, 2);
  assert_text(a, "tool", "get_order_status");
  assert_text(a, "tool_call_id", "call_1");
  assert_text(json_object_get(a, "arguments"), "order_id", "42");
  assert_text(json_object_get(a, "result"), "status", "shipped");
  assert_true(json_is_false(json_object_get(a, "is_error")));
  assert_int_equal(inum(a, "ms"), 180);
  assert_null(json_object_get(a, "result_truncated"));
  assert_text(b, "tool", "get_time");
  assert_text(b, "arguments", "{not json"); /* the model's text as it came */
  assert_text(json_object_get(b, "result"), "now", "noon");
  assert_int_equal(inum(b, "ms"), 2);
  assert_text(c, "tool", "lookup_down");
  assert_true(json_is_true(json_object_get(c, "is_error")));
  assert_text(json_object_get(c, "result"), "error", "HTTP 500");
}

/* Calls for a turn whose row is not made yet (a reply alone, a turn whose transcript
 * never came) wait for it; a result that comes after the row was made finds its call. */
static void calls_before_their_row_exists_are_held_until_it_is(void **state) {
  struct fixture *f = *state;
  struct callrec *r = begin(f, "t2");
  static const char *const ev[] = {
      "{\"type\":\"tool_call\",\"turn\":0,\"tool\":\"get_time\",\"tool_call_id\":\"g1\",\"arguments\":{}}",
      "{\"type\":\"tool_result\",\"turn\":0,\"tool\":\"get_time\",\"tool_call_id\":\"g1\","
      "\"is_error\":false,\"result\":{\"now\":\"9am\"},\"ms\":1}",
      "{\"type\":\"tool_call\",\"turn\":0,\"tool\":\"slow\",\"tool_call_id\":\"g2\",\"arguments\":{}}",
      "{\"type\":\"latency\",\"turn\":0,\"tts_first_audio_ms\":20.0,\"tts_cached\":false}",
      "{\"type\":\"reply\",\"text\":\"Good morning.\",\"interrupted\":true,\"turn\":0}",
      /* Its reply was cut short; the slow tool answers later, into the same row. */
      "{\"type\":\"tool_result\",\"turn\":0,\"tool\":\"slow\",\"tool_call_id\":\"g2\","
      "\"is_error\":true,\"result\":{\"error\":\"The caller went on before this result came.\"},\"ms\":900}",
      /* Turn 1's calls come before any transcript of it. */
      "{\"type\":\"tool_call\",\"turn\":1,\"tool\":\"get_order_status\",\"tool_call_id\":\"o1\","
      "\"arguments\":{\"order_id\":\"7\"}}",
      "{\"type\":\"tool_result\",\"turn\":1,\"tool\":\"get_order_status\",\"tool_call_id\":\"o1\","
      "\"is_error\":false,\"result\":\"plain text\",\"ms\":50}",
      "{\"type\":\"reply\",\"text\":\"Order 7 is on its way.\",\"interrupted\":false,\"turn\":1}",
      /* A result that never had a call event is kept as what is known of it. */
      "{\"type\":\"tool_result\",\"turn\":1,\"tool\":\"orphan\",\"tool_call_id\":\"x9\","
      "\"is_error\":false,\"result\":1,\"ms\":5}",
      NULL};
  feed(r, ev);
  callrec_end(r, "hangup", NULL);
  json_t *call = read_call(f, "t2");
  assert_int_equal(json_array_size(json_object_get(call, "turns")), 2);
  assert_int_equal(inum(call, "tool_calls"), 4);
  json_t *alone = tools_at(call, 0);
  assert_text(turn_at(call, 0), "reply", "Good morning.");
  assert_int_equal(json_array_size(alone), 2);
  assert_text(json_object_get(json_array_get(alone, 0), "result"), "now", "9am");
  json_t *slow = json_array_get(alone, 1);
  assert_true(json_is_true(json_object_get(slow, "is_error")));
  assert_int_equal(inum(slow, "ms"), 900);
  json_t *t1 = tools_at(call, 1);
  assert_text(turn_at(call, 1), "reply", "Order 7 is on its way.");
  assert_int_equal(json_array_size(t1), 2);
  assert_text(json_array_get(t1, 0), "result", "plain text");
  json_t *orphan = json_array_get(t1, 1);
  assert_text(orphan, "tool", "orphan");
  assert_true(json_is_null(json_object_get(orphan, "arguments")));
  assert_int_equal(inum(orphan, "result"), 1);
}

/* A turn-1 tool_call whose arguments, or tool_result whose result, is the string `value`;
 * the caller frees it. */
static char *tool_event(const char *type, const char *id, const char *value) {
  json_t *ev = json_pack("{s:s,s:i,s:s,s:s}", "type", type, "turn", 1, "tool", "big",
                         "tool_call_id", id);
  if (strcmp(type, "tool_call") == 0) {
    json_object_set_new(ev, "arguments", json_string(value));
  } else {
    json_object_set_new(ev, "result", json_string(value));
    json_object_set_new(ev, "is_error", json_false());
    json_object_set_new(ev, "ms", json_integer(7));
  }
  char *text = json_dumps(ev, JSON_COMPACT);
  json_decref(ev);
  return text;
}

static char *repeat(const char *unit, size_t times) {
  size_t n = strlen(unit);
  char *s = malloc(n * times + 1);
  for (size_t i = 0; i < times; i++) memcpy(s + i * n, unit, n);
  s[n * times] = '\0';
  return s;
}

static void feed_text(struct callrec *r, char *text) {
  callrec_agent_event(r, text);
  free(text);
}

/* A result of 300 KB, Chinese text cut between characters, an object cut as its JSON
 * text, and more calls than a row keeps: the row is stored, says what it cut, and
 * counts every call. */
static void huge_tool_values_are_cut_and_every_call_counted(void **state) {
  struct fixture *f = *state;
  struct callrec *r = begin(f, "t3");
  callrec_agent_event(r, "{\"type\":\"transcript\",\"text\":\"all of it\",\"final\":true,\"turn\":1}");
  char *big = repeat("x", 300000), *zh = repeat("订单", 3000);
  feed_text(r, tool_event("tool_call", "c0", "small"));
  feed_text(r, tool_event("tool_result", "c0", big));
  feed_text(r, tool_event("tool_call", "c1", zh));
  feed_text(r, tool_event("tool_result", "c1", "ok"));
  callrec_agent_event(r, "{\"type\":\"tool_call\",\"turn\":1,\"tool\":\"obj\",\"tool_call_id\":\"c2\","
                         "\"arguments\":{\"a\":1}}");
  json_t *obj = json_object();
  char *filler = repeat("y", 5000);
  json_object_set_new(obj, "data", json_string(filler));
  json_t *res = json_pack("{s:s,s:i,s:s,s:s,s:b,s:O,s:i}", "type", "tool_result", "turn", 1, "tool",
                          "obj", "tool_call_id", "c2", "is_error", 0, "result", obj, "ms", 3);
  feed_text(r, json_dumps(res, JSON_COMPACT));
  json_decref(res);
  json_decref(obj);
  free(filler);
  for (int i = 3; i < 40; i++) {
    char id[16];
    snprintf(id, sizeof id, "c%d", i);
    feed_text(r, tool_event("tool_call", id, "1"));
    feed_text(r, tool_event("tool_result", id, big)); /* the row's room runs out */
  }
  free(big);
  free(zh);
  callrec_agent_event(r, "{\"type\":\"reply\",\"text\":\"Done.\",\"interrupted\":false,\"turn\":1}");
  callrec_end(r, "hangup", NULL);

  json_t *call = read_call(f, "t3");
  assert_int_equal(inum(call, "tool_calls"), 40);
  assert_text(turn_at(call, 0), "reply", "Done.");
  json_t *list = tools_at(call, 0);
  assert_int_equal(json_array_size(list), 32);
  json_t *c0 = json_array_get(list, 0), *c1 = json_array_get(list, 1), *c2 = json_array_get(list, 2);
  assert_int_equal(strlen(str(c0, "result")), 4096);
  assert_true(json_is_true(json_object_get(c0, "result_truncated")));
  assert_null(json_object_get(c0, "arguments_truncated"));
  assert_int_equal(inum(c0, "ms"), 7);
  const char *cut = str(c1, "arguments");
  assert_int_equal(strlen(cut), 4095); /* 1365 characters of 3 bytes: none split */
  assert_int_equal(strncmp(cut, "订单订单", 12), 0);
  assert_true(json_is_true(json_object_get(c1, "arguments_truncated")));
  assert_text(c1, "result", "ok");
  const char *objcut = str(c2, "result"); /* the object's JSON text, cut */
  assert_int_equal(strlen(objcut), 4096);
  assert_int_equal(strncmp(objcut, "{\"data\":\"yyy", 12), 0);
  /* Past TOOL_ROW_MAX bytes of values in the row, what is left is empty and marked cut. */
  json_t *last = json_array_get(list, 31);
  assert_text(last, "result", "");
  assert_true(json_is_true(json_object_get(last, "result_truncated")));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(a_greeting_then_a_turn_make_two_rows, setup, teardown),
      cmocka_unit_test_setup_teardown(a_barge_in_keeps_the_interrupted_reply_with_its_turn, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(words_that_continue_a_turn_stay_one_row, setup, teardown),
      cmocka_unit_test_setup_teardown(engine_errors_go_with_the_row_they_affected, setup, teardown),
      cmocka_unit_test_setup_teardown(without_a_store_only_metrics_are_kept, setup, teardown),
      cmocka_unit_test_setup_teardown(tool_calls_stay_in_order_on_their_turn_with_their_results,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(calls_before_their_row_exists_are_held_until_it_is, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(huge_tool_values_are_cut_and_every_call_counted, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
