/*
 * log: one line per event; a line about a call names the call the same way
 * in both formats, so `grep ID` finds its whole story.
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
  static char out[8192];
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
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
