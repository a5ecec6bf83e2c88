/*
 * cost: the arithmetic of a call's estimated cost, worked out by hand here,
 * and the usage a call's agent events report becoming the call's record,
 * its turns' rows and /metrics. The record is read back from a real SQLite
 * store; the same columns on PostgreSQL are tested by test_store.
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
#include "app/cost.h"
#include "callrec_fixture.h"
#include "core/prom.h"
#include "promtool.h"

/* ---- the arithmetic -------------------------------------------------------------------- */

static struct store_usage usage(int64_t in, int64_t cached, int64_t written, int64_t out,
                                int64_t chars, int64_t chars_cached, double asr_s) {
  return (struct store_usage){.reported = 1, .llm_input_tokens = in, .llm_cached_tokens = cached,
                              .llm_cache_write_tokens = written, .llm_output_tokens = out,
                              .tts_chars = chars, .tts_chars_cached = chars_cached,
                              .asr_seconds = asr_s};
}

static const struct cost_prices list_prices = {.llm_input = 3.0, .llm_cached = 0.3,
                                               .llm_output = 15.0, .tts = 15.0, .asr = 0.006,
                                               .currency = "USD"};

static void every_unit_is_priced_at_its_own_rate(void **state) {
  (void)state;
  /* 2000 uncached input at 3, 8000 cached at 0.30, 500 output at 15, 1000 characters at 15
   * per million; 90 s of audio at 0.006 a minute:
   * (6000 + 2400 + 7500 + 15000) / 1e6 + 1.5 * 0.006 = 0.0309 + 0.009. */
  struct store_usage u = usage(10000, 8000, 1000, 500, 1000, 400, 90.0);
  assert_true(cost_priced(&list_prices));
  assert_float_equal(cost_estimate(&list_prices, &u), 0.0399, 1e-12);
}

static void cached_input_tokens_are_priced_apart(void **state) {
  (void)state;
  struct store_usage u = usage(1000, 600, 0, 0, 0, 0, 0);
  struct cost_prices only_cached = {.llm_cached = 1.0};
  struct cost_prices only_input = {.llm_input = 1.0};
  assert_float_equal(cost_estimate(&only_cached, &u), 600e-6, 1e-15);
  assert_float_equal(cost_estimate(&only_input, &u), 400e-6, 1e-15);
  /* A service that reports more cached than input tokens never makes a negative cost. */
  struct store_usage odd = usage(100, 300, 0, 0, 0, 0, 0);
  assert_float_equal(cost_estimate(&only_input, &odd), 0, 0);
  assert_float_equal(cost_estimate(&only_cached, &odd), 300e-6, 1e-15);
}

static void cache_writes_are_priced_as_input(void **state) {
  (void)state;
  struct cost_prices p = {.llm_input = 2.0};
  struct store_usage with = usage(1000, 0, 900, 0, 0, 0, 0);
  struct store_usage without = usage(1000, 0, 0, 0, 0, 0, 0);
  assert_float_equal(cost_estimate(&p, &with), cost_estimate(&p, &without), 0);
  assert_float_equal(cost_estimate(&p, &with), 2000e-6, 1e-15);
}

static void tts_characters_from_the_cache_cost_nothing(void **state) {
  (void)state;
  struct cost_prices p = {.tts = 30.0};
  struct store_usage all_cached = usage(0, 0, 0, 0, 0, 5000, 0);
  struct store_usage some = usage(0, 0, 0, 0, 200, 5000, 0);
  assert_float_equal(cost_estimate(&p, &all_cached), 0, 0);
  assert_float_equal(cost_estimate(&p, &some), 200 * 30.0 / 1e6, 1e-15);
}

static void no_price_set_means_not_priced(void **state) {
  (void)state;
  struct config cfg;
  config_defaults(&cfg);
  struct cost_prices p;
  cost_prices_from_config(&p, &cfg);
  assert_false(cost_priced(&p));
  assert_string_equal(p.currency, "USD");
  cfg.price_asr = 0.01;
  snprintf(cfg.price_currency, sizeof cfg.price_currency, "CNY");
  cost_prices_from_config(&p, &cfg);
  assert_true(cost_priced(&p));
  assert_string_equal(p.currency, "CNY");
  struct store_usage u = usage(0, 0, 0, 0, 0, 0, 30.0);
  assert_float_equal(cost_estimate(&p, &u), 0.005, 1e-15);
}

/* ---- a call's events ------------------------------------------------------------------- */

static void set_prices(struct fixture *f, double in, double cached, double out, double tts,
                       double asr, const char *currency) {
  f->cfg.price_llm_input = in;
  f->cfg.price_llm_cached = cached;
  f->cfg.price_llm_output = out;
  f->cfg.price_tts = tts;
  f->cfg.price_asr = asr;
  snprintf(f->cfg.price_currency, sizeof f->cfg.price_currency, "%s", currency);
  callrec_metrics_set_prices(f->m, &f->cfg);
}

static struct callrec *begin(struct fixture *f, const char *id) {
  struct callrec_start s = {.id = id, .agent = "voice", .llm = "openai", .tts = "openai",
                            .asr = "openai", .language = "en"};
  return begin_with(f, &s);
}

static double num(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_number(v)) fail_msg("%s is not a number", key);
  return json_number_value(v);
}

static void assert_usage(json_t *u, int64_t in, int64_t cached, int64_t written, int64_t out,
                         int64_t chars, int64_t chars_cached, double asr_s) {
  assert_true(json_is_object(u));
  assert_int_equal(inum(u, "llm_input_tokens"), in);
  assert_int_equal(inum(u, "llm_cached_tokens"), cached);
  assert_int_equal(inum(u, "llm_cache_write_tokens"), written);
  assert_int_equal(inum(u, "llm_output_tokens"), out);
  assert_int_equal(inum(u, "tts_chars"), chars);
  assert_int_equal(inum(u, "tts_chars_cached"), chars_cached);
  assert_float_equal(num(u, "asr_seconds"), asr_s, 1e-9);
}

/* The value of the sample `series` (name and labels, as written) in `b`. */
static double sample(const struct prom_buf *b, const char *series) {
  char key[256];
  snprintf(key, sizeof key, "\n%s ", series);
  const char *at = strstr(b->data, key);
  if (!at) fail_msg("no %s in:\n%s", series, b->data);
  return strtod(at + strlen(key), NULL);
}

#define USAGE(turn, in, cached, written, out, chars, chars_cached, asr)                       \
  "{\"type\":\"usage\",\"call_id\":\"x\",\"turn\":" #turn ",\"llm_input_tokens\":" #in          \
  ",\"llm_cached_tokens\":" #cached ",\"llm_cache_write_tokens\":" #written                    \
  ",\"llm_output_tokens\":" #out ",\"tts_chars\":" #chars ",\"tts_chars_cached\":" #chars_cached \
  ",\"asr_seconds\":" #asr "}"

/*
 * A greeting from the TTS cache (its usage before its reply event), a caller turn asked
 * twice (the first answer dropped), an idle prompt (its usage after its reply event), and a
 * reply alone dropped before it was heard: one row each for what was heard, no row made
 * by a turn-0 latency, every usage in the call's totals, and the cost of those totals.
 */
static void usage_goes_to_its_rows_and_all_of_it_to_the_call(void **state) {
  struct fixture *f = *state;
  set_prices(f, 3.0, 0.3, 15.0, 15.0, 0.006, "EUR");
  struct callrec *r = begin(f, "u1");
  static const char *const ev[] = {
      "{\"type\":\"latency\",\"turn\":0,\"tts_first_audio_ms\":0.4,\"tts_cached\":true}",
      USAGE(0, 0, 0, 0, 0, 0, 29, 0.0),
      "{\"type\":\"reply\",\"text\":\"Hello, this is the test line.\",\"interrupted\":false,"
      "\"turn\":0}",
      "{\"type\":\"transcript\",\"text\":\"what time is it\",\"final\":true,\"turn\":1}",
      USAGE(1, 900, 0, 800, 3, 0, 0, 1.2), /* the first answer, dropped */
      "{\"type\":\"latency\",\"turn\":1,\"endpoint_ms\":500,\"asr_ms\":60,"
      "\"tts_first_audio_ms\":180.5,\"voice_to_voice_ms\":900,\"tts_cached\":false}",
      "{\"type\":\"reply\",\"text\":\"It is noon.\",\"interrupted\":false,\"turn\":1}",
      USAGE(1, 1000, 800, 0, 5, 11, 0, 0.0),
      "{\"type\":\"latency\",\"turn\":0,\"tts_first_audio_ms\":250.0,\"tts_cached\":false}",
      "{\"type\":\"reply\",\"text\":\"Are you still there?\",\"interrupted\":false,\"turn\":0}",
      USAGE(0, 0, 0, 0, 0, 20, 0, 0.0),
      USAGE(0, 0, 0, 0, 0, 7, 0, 0.0), /* a reply alone dropped before its first audio */
      NULL};
  feed(r, ev);
  callrec_end(r, "hangup", NULL);
  json_t *call = read_call(f, "u1");
  assert_int_equal(json_array_size(json_object_get(call, "turns")), 3);
  json_t *t0 = turn_at(call, 0), *t1 = turn_at(call, 1), *t2 = turn_at(call, 2);
  assert_true(json_is_true(json_object_get(t0, "tts_cached")));
  assert_float_equal(num(t0, "tts_first_audio_ms"), 0.4, 1e-9);
  assert_usage(json_object_get(t0, "usage"), 0, 0, 0, 0, 0, 29, 0);
  assert_true(json_is_false(json_object_get(t1, "tts_cached")));
  assert_float_equal(num(t1, "tts_first_audio_ms"), 180.5, 1e-9);
  assert_usage(json_object_get(t1, "usage"), 1900, 800, 800, 8, 11, 0, 1.2);
  assert_string_equal(json_string_value(json_object_get(t2, "reply")), "Are you still there?");
  assert_true(json_is_false(json_object_get(t2, "tts_cached")));
  assert_float_equal(num(t2, "tts_first_audio_ms"), 250.0, 1e-9);
  assert_usage(json_object_get(t2, "usage"), 0, 0, 0, 0, 20, 0, 0);
  assert_usage(json_object_get(call, "usage"), 1900, 800, 800, 8, 38, 29, 1.2);
  /* (1100 * 3 + 800 * 0.3 + 8 * 15 + 38 * 15) / 1e6 + 1.2 / 60 * 0.006 */
  double want = (1100 * 3.0 + 800 * 0.3 + 8 * 15.0 + 38 * 15.0) / 1e6 + 1.2 / 60 * 0.006;
  assert_float_equal(num(call, "cost"), want, 1e-12);
  assert_string_equal(json_string_value(json_object_get(call, "currency")), "EUR");

  struct prom_buf b;
  prom_buf_init(&b);
  callrec_metrics_write(f->m, 0, &b);
  assert_float_equal(sample(&b, "tingshuo_estimated_cost_total{currency=\"EUR\"}"), want, 1e-12);
  assert_non_null(strstr(b.data, "tingshuo_reply_first_sentences_total{source=\"cached\"} 1\n"));
  assert_non_null(
      strstr(b.data, "tingshuo_reply_first_sentences_total{source=\"synthesised\"} 2\n"));
  /* The replies alone are not caller turns: the stage histograms saw turn 1 alone. */
  assert_non_null(strstr(
      b.data, "tingshuo_turn_stage_seconds_count{stage=\"tts_first_audio\"} 1\n"));
  assert_promtool_accepts(&b);
  prom_buf_free(&b);
}

/* An interrupted greeting: its barge-in report after its reply still lands on its row,
 * and the usage that follows it too. */
static void an_interrupted_reply_alone_keeps_its_figures(void **state) {
  struct fixture *f = *state;
  struct callrec *r = begin(f, "u2");
  static const char *const ev[] = {
      "{\"type\":\"latency\",\"turn\":0,\"tts_first_audio_ms\":120,\"tts_cached\":false}",
      "{\"type\":\"transcript\",\"text\":\"hi\",\"final\":true,\"turn\":1}",
      "{\"type\":\"reply\",\"text\":\"Hello, this\",\"interrupted\":true,\"turn\":0}",
      "{\"type\":\"latency\",\"turn\":0,\"barge_in_ms\":40,\"onset_lag_ms\":80}",
      USAGE(0, 0, 0, 0, 0, 29, 0, 0.0),
      "{\"type\":\"reply\",\"text\":\"Hi.\",\"interrupted\":false,\"turn\":1}",
      USAGE(1, 50, 0, 0, 2, 3, 0, 0.8),
      NULL};
  feed(r, ev);
  callrec_end(r, "hangup", NULL);
  json_t *call = read_call(f, "u2");
  assert_int_equal(json_array_size(json_object_get(call, "turns")), 2);
  json_t *hi = turn_at(call, 0), *greeting = turn_at(call, 1);
  assert_string_equal(json_string_value(json_object_get(hi, "transcript")), "hi");
  assert_usage(json_object_get(hi, "usage"), 50, 0, 0, 2, 3, 0, 0.8);
  assert_string_equal(json_string_value(json_object_get(greeting, "reply")), "Hello, this");
  assert_float_equal(num(greeting, "tts_first_audio_ms"), 120, 1e-9);
  assert_float_equal(num(greeting, "barge_in_ms"), 40, 1e-9);
  assert_usage(json_object_get(greeting, "usage"), 0, 0, 0, 0, 29, 0, 0);
  /* No price set: the cost is unknown, not 0, and /metrics has no cost series. */
  assert_true(json_is_null(json_object_get(call, "cost")));
  assert_true(json_is_null(json_object_get(call, "currency")));
  assert_usage(json_object_get(call, "usage"), 50, 0, 0, 2, 32, 0, 0.8);
  struct prom_buf b;
  prom_buf_init(&b);
  callrec_metrics_write(f->m, 0, &b);
  assert_null(strstr(b.data, "tingshuo_estimated_cost_total{"));
  assert_promtool_accepts(&b);
  prom_buf_free(&b);
}

/* A price changed after a call ended does not change that call's cost. */
static void a_cost_is_kept_at_the_prices_of_its_day(void **state) {
  struct fixture *f = *state;
  static const char *const ev[] = {
      "{\"type\":\"transcript\",\"text\":\"hello\",\"final\":true,\"turn\":1}",
      "{\"type\":\"reply\",\"text\":\"Hi.\",\"interrupted\":false,\"turn\":1}",
      USAGE(1, 0, 0, 0, 1000000, 0, 0, 0.0), NULL};
  set_prices(f, 0, 0, 2.0, 0, 0, "USD");
  struct callrec *r = begin(f, "old");
  feed(r, ev);
  callrec_end(r, "hangup", NULL);
  set_prices(f, 0, 0, 5.0, 0, 0, "USD");
  r = begin(f, "new");
  feed(r, ev);
  callrec_end(r, "hangup", NULL);
  assert_float_equal(num(read_call(f, "old"), "cost"), 2.0, 1e-12);
  assert_float_equal(num(read_call(f, "new"), "cost"), 5.0, 1e-12);
  struct prom_buf b;
  prom_buf_init(&b);
  callrec_metrics_write(f->m, 0, &b);
  assert_non_null(strstr(b.data, "tingshuo_estimated_cost_total{currency=\"USD\"} 7\n"));
  prom_buf_free(&b);
}

/* Figures that are not counts are ignored one by one; the event's others still count. */
static void nonsense_in_a_usage_event_counts_as_nothing(void **state) {
  struct fixture *f = *state;
  set_prices(f, 1.0, 0, 0, 0, 0, "USD");
  struct callrec *r = begin(f, "u3");
  static const char *const ev[] = {
      "{\"type\":\"transcript\",\"text\":\"hello\",\"final\":true,\"turn\":1}",
      "{\"type\":\"reply\",\"text\":\"Hi.\",\"interrupted\":false,\"turn\":1}",
      "{\"type\":\"usage\",\"turn\":1,\"llm_input_tokens\":-50,\"llm_output_tokens\":\"9\","
      "\"tts_chars\":1e30,\"tts_chars_cached\":99999999999999999,\"asr_seconds\":-3,"
      "\"llm_cached_tokens\":4}",
      "{\"type\":\"usage\",\"turn\":1,\"llm_input_tokens\":10,\"asr_seconds\":\"x\"}",
      "{\"type\":\"usage\",\"turn\":7,\"llm_input_tokens\":5}", /* no such row: totals only */
      "{\"type\":\"usage\"", /* not JSON */
      "{\"type\":\"usage\",\"turn\":\"1\",\"llm_input_tokens\":1}", /* no turn: totals only */
      NULL};
  feed(r, ev);
  callrec_end(r, "hangup", NULL);
  json_t *call = read_call(f, "u3");
  assert_int_equal(json_array_size(json_object_get(call, "turns")), 1);
  assert_usage(json_object_get(turn_at(call, 0), "usage"), 10, 4, 0, 0, 0, 0, 0);
  assert_usage(json_object_get(call, "usage"), 16, 4, 0, 0, 0, 0, 0);
  assert_float_equal(num(call, "cost"), 12e-6, 1e-15); /* 16 - 4 uncached at 1 per million */
}

/* Records off: the cost still reaches /metrics. */
static void without_a_store_the_cost_is_still_counted(void **state) {
  struct fixture *f = *state;
  set_prices(f, 0, 0, 0, 0, 0.5, "USD");
  struct callrec_start s = {.id = "u4", .agent = "voice"};
  struct callrec *r = callrec_new(NULL, f->m, &s);
  assert_non_null(r);
  callrec_agent_event(r, USAGE(1, 0, 0, 0, 0, 0, 0, 120.0));
  callrec_end(r, "hangup", NULL);
  struct prom_buf b;
  prom_buf_init(&b);
  callrec_metrics_write(f->m, 0, &b);
  assert_non_null(strstr(b.data, "tingshuo_estimated_cost_total{currency=\"USD\"} 1\n"));
  prom_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_unit_is_priced_at_its_own_rate),
      cmocka_unit_test(cached_input_tokens_are_priced_apart),
      cmocka_unit_test(cache_writes_are_priced_as_input),
      cmocka_unit_test(tts_characters_from_the_cache_cost_nothing),
      cmocka_unit_test(no_price_set_means_not_priced),
      cmocka_unit_test_setup_teardown(usage_goes_to_its_rows_and_all_of_it_to_the_call, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(an_interrupted_reply_alone_keeps_its_figures, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_cost_is_kept_at_the_prices_of_its_day, setup, teardown),
      cmocka_unit_test_setup_teardown(nonsense_in_a_usage_event_counts_as_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(without_a_store_the_cost_is_still_counted, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
