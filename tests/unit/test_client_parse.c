/* client parsing: URLs, flag values, server events, /proc files, percentiles. */
#include <errno.h>
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

#include "client/args.h"
#include "client/events.h"
#include "client/procstat.h"
#include "client/stats.h"
#include "client/url.h"

static void url_http_address_means_its_ws_path(void **state) {
  struct ws_url u;
  char err[256];
  assert_int_equal(ws_url_parse("http://127.0.0.1:8080/", &u, err, sizeof err), 0);
  assert_false(u.tls);
  assert_string_equal(u.host, "127.0.0.1");
  assert_int_equal(u.port, 8080);
  assert_string_equal(u.path, "/ws");
}

static void url_wss_default_port_and_explicit_path(void **state) {
  struct ws_url u;
  char err[256];
  assert_int_equal(ws_url_parse("wss://voice.example.org/adapter/ws?room=3", &u, err, sizeof err), 0);
  assert_true(u.tls);
  assert_int_equal(u.port, 443);
  assert_string_equal(u.host, "voice.example.org");
  assert_string_equal(u.path, "/adapter/ws?room=3");
}

static void url_ipv6_in_brackets(void **state) {
  struct ws_url u;
  char err[256];
  assert_int_equal(ws_url_parse("ws://[::1]:9000", &u, err, sizeof err), 0);
  assert_string_equal(u.host, "::1");
  assert_int_equal(u.port, 9000);
  assert_string_equal(u.path, "/ws");
}

static void url_bad_ones_are_refused_with_a_reason(void **state) {
  static const char *const bad[] = {"ftp://x/", "ws://", "ws://host:0/", "ws://host:99999/",
                                    "ws://host:12a/", "ws://[::1/", "ws://user@host/",
                                    "ws://host/#frag", "127.0.0.1:8080", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct ws_url u;
    char err[256] = "";
    assert_int_equal(ws_url_parse(bad[i], &u, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "bad URL"));
  }
}

static void echo_spec_parses_gain_and_delay(void **state) {
  double g;
  int d;
  char err[256];
  assert_int_equal(args_echo("0.35:180", &g, &d, err, sizeof err), 0);
  assert_true(fabs(g - 0.35) < 1e-9);
  assert_int_equal(d, 180);
  assert_int_equal(args_echo("1:0", &g, &d, err, sizeof err), 0);
  assert_int_equal(d, 0);
}

static void echo_spec_rejects_malformed_and_out_of_range(void **state) {
  static const char *const bad[] = {"0.5", ":100", "0.5:", "x:100", "0.5:10ms", "5:100",
                                    "-1:100", "0.5:-3", "0.5:5000", "nan:1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    double g = -7;
    int d = -7;
    char err[256] = "";
    assert_int_equal(args_echo(bad[i], &g, &d, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "--echo"));
    assert_true(g == -7 && d == -7);
  }
}

static void numbers_must_be_whole_strings(void **state) {
  double v;
  long n;
  char err[256];
  assert_int_equal(args_number("--duration", "12.5", 1, 100, &v, err, sizeof err), 0);
  assert_true(v == 12.5);
  assert_int_equal(args_number("--duration", "10s", 1, 100, &v, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "--duration"));
  assert_int_equal(args_int("--calls", "40", 1, 5000, &n, err, sizeof err), 0);
  assert_int_equal(n, 40);
  assert_int_equal(args_int("--calls", "0", 1, 5000, &n, err, sizeof err), -EINVAL);
  assert_int_equal(args_int("--calls", "4.5", 1, 5000, &n, err, sizeof err), -EINVAL);
  assert_int_equal(args_int("--calls", NULL, 1, 5000, &n, err, sizeof err), -EINVAL);
}

static json_t *parse(const char *text) {
  json_t *v = json_loads(text, 0, NULL);
  assert_non_null(v);
  return v;
}

static void events_are_one_readable_line(void **state) {
  char line[512];
  json_t *m = parse("{\"type\":\"transcript\",\"text\":\"what time is it\",\"final\":true}");
  assert_int_equal(events_format(m, line, sizeof line), 0);
  assert_string_equal(line, "transcript (final): \"what time is it\"");
  json_decref(m);
  m = parse("{\"type\":\"latency\",\"turn\":2,\"voice_to_voice_ms\":812,\"endpoint_ms\":500}");
  assert_int_equal(events_format(m, line, sizeof line), 0);
  assert_string_equal(line, "latency turn 2: voice_to_voice 812 ms, endpoint 500 ms");
  json_decref(m);
  m = parse("{\"type\":\"level\",\"mic_db\":-40}");
  assert_int_equal(events_format(m, line, sizeof line), -ENOENT);
  json_decref(m);
  m = parse("{\"type\":\"surprise\",\"x\":1}");
  assert_int_equal(events_format(m, line, sizeof line), 0);
  assert_non_null(strstr(line, "surprise"));
  assert_non_null(strstr(line, "\"x\":1"));
  json_decref(m);
}

static void latency_figures_absent_are_negative(void **state) {
  struct events_latency lat;
  json_t *m = parse("{\"type\":\"latency\",\"turn\":3,\"endpoint_ms\":480,\"barge_in_ms\":120}");
  assert_int_equal(events_latency(m, &lat), 0);
  assert_int_equal(lat.turn, 3);
  assert_true(lat.endpoint_ms == 480 && lat.barge_in_ms == 120);
  assert_true(lat.voice_to_voice_ms < 0 && lat.overhead_ms < 0);
  json_decref(m);
  m = parse("{\"type\":\"reply\",\"text\":\"hi\",\"interrupted\":true}");
  assert_int_equal(events_latency(m, &lat), -EINVAL);
  assert_int_equal(events_reply_interrupted(m), 1);
  json_decref(m);
  m = parse("{\"type\":\"reply\",\"text\":\"hi\"}");
  assert_int_equal(events_reply_interrupted(m), 0);
  json_decref(m);
}

static void proc_stat_with_a_tricky_command_name(void **state) {
  const char *stat = "4242 (ting shuo) (x)) S 1 4242 4242 0 -1 4194560 1500 0 0 0 "
                     "250 130 0 0 20 0 5 0 12345 100000000 3000 18446744073709551615";
  double cpu;
  assert_int_equal(procstat_parse_stat(stat, 100, &cpu), 0);
  assert_true(fabs(cpu - 3.8) < 1e-9);
  assert_int_equal(procstat_parse_stat("4242 no parens", 100, &cpu), -EBADMSG);
  assert_int_equal(procstat_parse_stat("1 (x) S 1 2", 100, &cpu), -EBADMSG);
}

static void proc_status_rss_and_threads(void **state) {
  const char *status = "Name:\ttingshuo\nVmPeak:\t  300000 kB\nVmRSS:\t   18204 kB\nThreads:\t5\n";
  long rss, threads;
  assert_int_equal(procstat_parse_status(status, &rss, &threads), 0);
  assert_int_equal(rss, 18204);
  assert_int_equal(threads, 5);
  assert_int_equal(procstat_parse_status("Name:\tx\n", &rss, &threads), -EBADMSG);
}

static void proc_of_this_process_is_readable(void **state) {
  struct procstat ps;
  assert_int_equal(procstat_read(getpid(), &ps), 0);
  assert_true(ps.rss_kb > 0);
  assert_true(ps.cpu_s >= 0);
}

static void sample_percentiles_are_nearest_rank(void **state) {
  struct stats_samples s;
  stats_samples_init(&s);
  assert_true(isnan(stats_samples_pct(&s, 50)));
  for (int i = 100; i >= 1; i--) stats_samples_add(&s, i);
  assert_true(stats_samples_pct(&s, 50) == 50);
  assert_true(stats_samples_pct(&s, 95) == 95);
  assert_true(stats_samples_pct(&s, 99) == 99);
  assert_true(stats_samples_pct(&s, 100) == 100);
  assert_true(stats_samples_mean(&s) == 50.5);
  stats_samples_free(&s);
}

static void histogram_percentiles_within_a_bin(void **state) {
  struct stats_hist *h = stats_hist_new();
  assert_non_null(h);
  assert_true(isnan(stats_hist_pct(h, 99)));
  for (int i = 0; i < 990; i++) stats_hist_add(h, 0.55);
  for (int i = 0; i < 10; i++) stats_hist_add(h, 42.0);
  assert_int_equal(stats_hist_count(h), 1000);
  assert_true(fabs(stats_hist_pct(h, 50) - 0.6) < 1e-9);
  assert_true(fabs(stats_hist_pct(h, 99) - 0.6) < 1e-9);
  assert_true(fabs(stats_hist_pct(h, 99.5) - 42.0) < 1e-9);
  stats_hist_add(h, 1e9); /* overflow bin */
  stats_hist_add(h, -5);  /* clamped */
  assert_true(stats_hist_max(h) == 1e9);
  stats_hist_free(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(url_http_address_means_its_ws_path),
      cmocka_unit_test(url_wss_default_port_and_explicit_path),
      cmocka_unit_test(url_ipv6_in_brackets),
      cmocka_unit_test(url_bad_ones_are_refused_with_a_reason),
      cmocka_unit_test(echo_spec_parses_gain_and_delay),
      cmocka_unit_test(echo_spec_rejects_malformed_and_out_of_range),
      cmocka_unit_test(numbers_must_be_whole_strings),
      cmocka_unit_test(events_are_one_readable_line),
      cmocka_unit_test(latency_figures_absent_are_negative),
      cmocka_unit_test(proc_stat_with_a_tricky_command_name),
      cmocka_unit_test(proc_status_rss_and_threads),
      cmocka_unit_test(proc_of_this_process_is_readable),
      cmocka_unit_test(sample_percentiles_are_nearest_rank),
      cmocka_unit_test(histogram_percentiles_within_a_bin),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
