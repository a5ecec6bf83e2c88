/* prom: exposition lines, escaping, number spelling, histograms; promtool accepts the output. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/prom.h"
#include "promtool.h"

static void family_and_samples(void **state) {
  struct prom_buf b;
  prom_buf_init(&b);
  prom_family(&b, "tingshuo_x_total", "counter", "Things that happened.");
  prom_sample(&b, "tingshuo_x_total", 3, NULL);
  prom_sample(&b, "tingshuo_x_total", 7, "reason", "hangup", "worker", "1", NULL);
  assert_false(b.failed);
  assert_string_equal(b.data, "# HELP tingshuo_x_total Things that happened.\n"
                              "# TYPE tingshuo_x_total counter\n"
                              "tingshuo_x_total 3\n"
                              "tingshuo_x_total{reason=\"hangup\",worker=\"1\"} 7\n");
  assert_int_equal(b.len, strlen(b.data));
  prom_buf_free(&b);
  assert_null(b.data);
}

static void label_values_and_help_are_escaped(void **state) {
  struct prom_buf b;
  prom_buf_init(&b);
  prom_family(&b, "m", "gauge", "a \\ backslash\nand a \"quote\"");
  prom_sample(&b, "m", 1, "v", "back\\slash \"quoted\"\nnext line", NULL);
  /* Help escapes backslash and newline only; label values also escape the quote. */
  assert_string_equal(b.data, "# HELP m a \\\\ backslash\\nand a \"quote\"\n"
                              "# TYPE m gauge\n"
                              "m{v=\"back\\\\slash \\\"quoted\\\"\\nnext line\"} 1\n");
  prom_buf_free(&b);
}

static void numbers_read_back_exactly(void **state) {
  struct prom_buf b;
  prom_buf_init(&b);
  prom_sample(&b, "a", 0.1, NULL);
  prom_sample(&b, "b", 1e20, NULL);
  prom_sample(&b, "c", -2.5, NULL);
  prom_sample(&b, "d", NAN, NULL);
  prom_sample(&b, "e", INFINITY, NULL);
  prom_sample(&b, "f", -INFINITY, NULL);
  prom_sample(&b, "g", 18446744073709551615.0, NULL);
  prom_sample(&b, "h", 1.0 / 3, NULL);
  assert_string_equal(b.data, "a 0.1\nb 1e+20\nc -2.5\nd NaN\ne +Inf\nf -Inf\n"
                              "g 1.8446744073709552e+19\nh 0.33333333333333331\n");
  prom_buf_free(&b);
}

static void histogram_buckets_are_cumulative(void **state) {
  static const double bounds[] = {0.01, 0.1, 1};
  struct prom_histogram h;
  prom_histogram_init(&h, bounds, 3);
  prom_histogram_observe(&h, 0.005); /* le 0.01 */
  prom_histogram_observe(&h, 0.01);  /* le 0.01: bounds are inclusive */
  prom_histogram_observe(&h, 0.5);   /* le 1 */
  prom_histogram_observe(&h, 7);     /* +Inf only */
  prom_histogram_observe(&h, -1);    /* counts as 0 */
  prom_histogram_observe(&h, NAN);   /* ignored */
  struct prom_buf b;
  prom_buf_init(&b);
  prom_family(&b, "lat_seconds", "histogram", "Latency.");
  prom_histogram_write(&b, "lat_seconds", &h, "figure", "asr", NULL);
  assert_string_equal(b.data, "# HELP lat_seconds Latency.\n"
                              "# TYPE lat_seconds histogram\n"
                              "lat_seconds_bucket{figure=\"asr\",le=\"0.01\"} 3\n"
                              "lat_seconds_bucket{figure=\"asr\",le=\"0.1\"} 3\n"
                              "lat_seconds_bucket{figure=\"asr\",le=\"1\"} 4\n"
                              "lat_seconds_bucket{figure=\"asr\",le=\"+Inf\"} 5\n"
                              "lat_seconds_sum{figure=\"asr\"} 7.515\n"
                              "lat_seconds_count{figure=\"asr\"} 5\n");
  prom_buf_free(&b);
}

static void histogram_without_labels(void **state) {
  struct prom_histogram h;
  prom_histogram_init(&h, prom_latency_bounds, prom_latency_nbounds);
  assert_true(prom_latency_nbounds <= PROM_MAX_BUCKETS);
  assert_true(prom_latency_bounds[0] == 0.005 && prom_latency_bounds[prom_latency_nbounds - 1] == 10);
  for (int i = 1; i < prom_latency_nbounds; i++)
    assert_true(prom_latency_bounds[i] > prom_latency_bounds[i - 1]);
  prom_histogram_observe(&h, 0.25);
  struct prom_buf b;
  prom_buf_init(&b);
  prom_histogram_write(&b, "x_seconds", &h, NULL);
  assert_non_null(strstr(b.data, "x_seconds_bucket{le=\"0.2\"} 0\n"));
  assert_non_null(strstr(b.data, "x_seconds_bucket{le=\"0.3\"} 1\n"));
  assert_non_null(strstr(b.data, "x_seconds_bucket{le=\"+Inf\"} 1\n"));
  assert_non_null(strstr(b.data, "x_seconds_sum 0.25\n"));
  assert_non_null(strstr(b.data, "x_seconds_count 1\n"));
  prom_buf_free(&b);
}

static void too_many_bounds_are_cut(void **state) {
  double bounds[PROM_MAX_BUCKETS + 5];
  for (int i = 0; i < PROM_MAX_BUCKETS + 5; i++) bounds[i] = i + 1;
  struct prom_histogram h;
  prom_histogram_init(&h, bounds, PROM_MAX_BUCKETS + 5);
  assert_int_equal(h.nbounds, PROM_MAX_BUCKETS);
  prom_histogram_observe(&h, 1000);
  assert_int_equal(atomic_load(&h.buckets[PROM_MAX_BUCKETS]), 1);
}

static void buffer_grows(void **state) {
  struct prom_buf b;
  prom_buf_init(&b);
  char value[300];
  memset(value, 'v', sizeof value - 1);
  value[sizeof value - 1] = '\0';
  for (int i = 0; i < 100; i++) prom_sample(&b, "big", i, "v", value, NULL);
  assert_false(b.failed);
  assert_true(b.len > 100 * 300);
  assert_int_equal(b.len, strlen(b.data));
  prom_buf_free(&b);
}

/* Debian's promtool is the judge of the format. */
static void promtool_accepts_the_output(void **state) {
  struct prom_histogram h;
  prom_histogram_init(&h, prom_latency_bounds, prom_latency_nbounds);
  prom_histogram_observe(&h, 0.3);
  struct prom_buf b;
  prom_buf_init(&b);
  prom_family(&b, "tingshuo_test_events_total", "counter", "Events, with \\ and \n in the help.");
  prom_sample(&b, "tingshuo_test_events_total", 2, "kind", "a\"b\\c\nd", NULL);
  prom_family(&b, "tingshuo_test_level", "gauge", "A level.");
  prom_sample(&b, "tingshuo_test_level", 0.5, NULL);
  prom_family(&b, "tingshuo_test_duration_seconds", "histogram", "A duration.");
  prom_histogram_write(&b, "tingshuo_test_duration_seconds", &h, "kind", "x", NULL);
  assert_promtool_accepts(&b);
  prom_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(family_and_samples),
      cmocka_unit_test(label_values_and_help_are_escaped),
      cmocka_unit_test(numbers_read_back_exactly),
      cmocka_unit_test(histogram_buckets_are_cumulative),
      cmocka_unit_test(histogram_without_labels),
      cmocka_unit_test(too_many_bounds_are_cut),
      cmocka_unit_test(buffer_grows),
      cmocka_unit_test(promtool_accepts_the_output),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
