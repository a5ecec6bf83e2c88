/*
 * log: one line per event; a line about a call names the call the same way
 * in both formats, so `grep ID` finds its whole story; a flood of lines (the
 * same one in a loop, or many a second) is counted, not written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* Runs fn with stderr sent to a temporary file; returns what it wrote (static buffer). */
static const char *capture(void (*fn)(void)) {
  static char out[65536];
  fflush(stderr);
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  int saved = dup(STDERR_FILENO);
  dup2(fileno(tmp), STDERR_FILENO);
  fn();
  dup2(saved, STDERR_FILENO);
  close(saved);
  rewind(tmp);
  size_t n = fread(out, 1, sizeof out - 1, tmp);
  out[n] = '\0';
  fclose(tmp);
  return out;
}

static void write_call_line(void) { log_call_info("media", "3f9a0c1d", "connected (%s)", "SRTP"); }
static void write_plain_line(void) { log_info("serve", "listening"); }
static void write_unnamed_call(void) { log_call_warn("asr", "", "cut"); }

static int lines_in(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

static void write_100k_same(void) {
  for (int i = 0; i < 100000; i++) log_error("lws", "accept: errno %d", 24);
  log_info("http", "something else");
}

static void write_distinct_burst(void) {
  for (int i = 0; i < 1000; i++) log_call_warn("media", "c0ffee", "packet %d", i);
}

static void a_repeated_line_is_written_once_and_counted(void **state) {
  log_configure(LOG_INFO, 0);
  unsigned long long before = log_suppressed();
  const char *out = capture(write_100k_same);
  assert_true(lines_in(out) <= 5); /* the line, a repeat count (or two), the next line */
  assert_non_null(strstr(out, "lws: accept: errno 24\n"));
  assert_non_null(strstr(out, "last message repeated "));
  assert_non_null(strstr(out, "http: something else\n"));
  /* Every repeat is accounted for: written counts plus suppressed add up. */
  unsigned long long counted = 0;
  for (const char *p = out; (p = strstr(p, "repeated ")); p += 9)
    counted += strtoull(p + 9, NULL, 10);
  assert_int_equal(counted, 99999);
  assert_true(log_suppressed() - before >= 99999);
}

static void more_than_a_burst_a_second_is_suppressed(void **state) {
  log_configure(LOG_INFO, 0);
  usleep(1100 * 1000); /* a second of its own */
  const char *out = capture(write_distinct_burst);
  assert_int_equal(lines_in(out), LOG_BURST);
  assert_non_null(strstr(out, "call c0ffee: packet 0\n")); /* the call-id macros still work */
  assert_null(strstr(out, "packet 999\n"));
  usleep(1100 * 1000); /* the next second reports what was held back */
  out = capture(write_plain_line);
  assert_non_null(strstr(out, "800 lines suppressed"));
  assert_non_null(strstr(out, "serve: listening\n"));
}

static void a_call_line_names_the_call_in_text(void **state) {
  log_configure(LOG_INFO, 0);
  const char *line = capture(write_call_line);
  assert_non_null(strstr(line, " info  media: call 3f9a0c1d: connected (SRTP)\n"));
  assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1); /* one event, one line */
}

static void a_call_line_has_a_call_field_in_json(void **state) {
  log_configure(LOG_INFO, 1);
  const char *line = capture(write_call_line);
  json_error_t err;
  json_t *o = json_loads(line, 0, &err);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "call")), "3f9a0c1d");
  assert_string_equal(json_string_value(json_object_get(o, "msg")), "connected (SRTP)");
  assert_string_equal(json_string_value(json_object_get(o, "module")), "media");
  json_decref(o);
  /* A line about no call has no such field. */
  o = json_loads(capture(write_plain_line), 0, &err);
  assert_non_null(o);
  assert_null(json_object_get(o, "call"));
  json_decref(o);
  log_configure(LOG_INFO, 0);
}

static void an_empty_call_id_is_left_out(void **state) {
  log_configure(LOG_INFO, 0);
  const char *line = capture(write_unnamed_call);
  assert_non_null(strstr(line, " asr: cut\n"));
  assert_null(strstr(line, "call"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_call_line_names_the_call_in_text),
      cmocka_unit_test(a_call_line_has_a_call_field_in_json),
      cmocka_unit_test(an_empty_call_id_is_left_out),
      cmocka_unit_test(a_repeated_line_is_written_once_and_counted),
      cmocka_unit_test(more_than_a_burst_a_second_is_suppressed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
