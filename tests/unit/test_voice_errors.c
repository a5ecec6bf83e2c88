/*
 * voice agent errors: when an AI service fails, the caller is told only that
 * it is unavailable, with an error id; the detail (here curl's "Failed to
 * connect to 127.0.0.1 port 1", an internal address) goes to the log under
 * that id and the call's id, with the configured secrets masked.
 *
 * The greeting is spoken by the OpenAI speech backend pointed at a closed
 * port, through the real HTTP client on one libuv loop.
 */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "agent/voice.h"
#include "core/log.h"
#include "engines/engines.h"
#include "net/http_client.h"

#define CALL_ID "c0ffee1234"

struct seen {
  int errors;
  char message[256], error_id[32], engine[16], raw[1024];
};

static void on_msg(struct mailbox *mb, struct mailbox_msg *m, void *u) { free(m); }
static void drop_msg(struct mailbox_msg *m) { free(m); }

static void on_event(void *user, char *json) {
  struct seen *s = user;
  json_t *ev = json_loads(json, 0, NULL);
  const char *type = json_string_value(json_object_get(ev, "type"));
  if (type && strcmp(type, "error") == 0 && !s->errors++) {
    snprintf(s->raw, sizeof s->raw, "%s", json);
    snprintf(s->message, sizeof s->message, "%s", json_string_value(json_object_get(ev, "message")));
    const char *id = json_string_value(json_object_get(ev, "error_id"));
    snprintf(s->error_id, sizeof s->error_id, "%s", id ? id : "");
    snprintf(s->engine, sizeof s->engine, "%s", json_string_value(json_object_get(ev, "engine")));
  }
  json_decref(ev);
  free(json);
}
static void on_end(void *user, const char *reason) {}
static void on_kick(void *user) {}

static void a_failed_service_tells_the_caller_nothing_of_its_detail(void **state) {
  struct config cfg;
  config_defaults(&cfg);
  snprintf(cfg.asr, sizeof cfg.asr, "scripted");
  snprintf(cfg.llm, sizeof cfg.llm, "fixed");
  snprintf(cfg.tts, sizeof cfg.tts, "openai");
  snprintf(cfg.tts_base_url, sizeof cfg.tts_base_url, "http://127.0.0.1:1/v1");
  snprintf(cfg.greeting, sizeof cfg.greeting, "Hello there.");
  setenv("TS_VOICE_ERRORS_KEY", "sk-voice-errors-0123456789abcdef", 1);
  snprintf(cfg.tts_api_key_env, sizeof cfg.tts_api_key_env, "TS_VOICE_ERRORS_KEY");

  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct mailbox *control, *home;
  assert_int_equal(mailbox_new(&control, &loop, on_msg, NULL), 0);
  assert_int_equal(mailbox_new(&home, &loop, on_msg, NULL), 0);
  struct http_client_opts o = {.connect_timeout_ms = 1000, .first_byte_timeout_ms = 1000, .total_timeout_ms = 3000};
  struct http_client *http;
  assert_int_equal(http_client_new(&http, &loop, &o), 0);
  struct engine_env env = {&cfg, NULL, control, http};
  struct engines *eng;
  char err[256];
  assert_int_equal(engines_open(&eng, &env, err, sizeof err), 0);

  /* the log goes to a file for the test to read */
  fflush(stderr);
  FILE *logf = tmpfile();
  int saved = dup(STDERR_FILENO);
  dup2(fileno(logf), STDERR_FILENO);
  log_configure(LOG_INFO, 0);

  struct seen seen = {0};
  struct agent_host host = {on_event, on_end, on_kick, &seen};
  struct voice_agent *va;
  assert_int_equal(voice_agent_new(&va, CALL_ID, &cfg, eng, home, NULL, &host), 0);
  voice_agent_start(va);
  uint64_t end = uv_hrtime() + 8000000000ull;
  while (!seen.errors && uv_hrtime() < end) uv_run(&loop, UV_RUN_ONCE);

  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  char log[8192];
  rewind(logf);
  size_t n = fread(log, 1, sizeof log - 1, logf);
  log[n] = '\0';
  fclose(logf);

  assert_int_equal(seen.errors, 1);
  assert_string_equal(seen.engine, "tts");
  assert_string_equal(seen.message, "The speech synthesis service is unavailable");
  assert_int_equal(strlen(seen.error_id), 14);
  assert_true(strncmp(seen.error_id, "e-", 2) == 0);
  if (strstr(seen.raw, "127.0.0.1") || strstr(seen.raw, "port 1") || strstr(seen.raw, "OpenAI"))
    fail_msg("the event carries the detail: %s", seen.raw);
  /* the log line has the id, the call and the detail */
  const char *line = strstr(log, seen.error_id);
  if (!line) fail_msg("no log line with %s in:\n%s", seen.error_id, log);
  const char *bol = line;
  while (bol > log && bol[-1] != '\n') bol--;
  const char *eol = strchr(line, '\n');
  char one[1024];
  snprintf(one, sizeof one, "%.*s", (int)(eol ? eol - bol : (long)strlen(bol)), bol);
  assert_non_null(strstr(one, CALL_ID));
  assert_non_null(strstr(one, "127.0.0.1"));
  assert_null(strcasestr(log, "voice-errors-0123"));

  voice_agent_free(va);
  engines_close(eng);
  http_client_free(http);
  mailbox_close(control, drop_msg);
  mailbox_close(home, drop_msg);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_failed_service_tells_the_caller_nothing_of_its_detail),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
