/*
 * Every service backend through the engine interfaces, against the fixture
 * server (tests/fixtures/services/server.mjs, spawned here), with one real
 * libuv loop acting as both the control loop and the calls' home loop:
 * tokens, transcripts and PCM stream; errors name the service and never the
 * key; a 429 is retried after its Retry-After; the first-byte timeout
 * fires; cancelling closes the connection at once; warm connections are
 * reused. The last test prints what this layer adds to a turn's latency.
 *
 * The fixture reports its times from process.hrtime, which like uv_hrtime
 * reads CLOCK_MONOTONIC, so both processes' timestamps compare directly.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/redact.h"
#include "engines/engines.h"
#include "engines/service.h"
#include "net/http_client.h"
#include "node_fixture.h"


#define KEY "sk-test-Secret0123456789abcdefXYZ"
#define REPLY "Hello from the fixture. This is the second sentence."
#define FIRST_BYTE_MS 800

struct fx {
  pid_t node;
  int port;
  char base[128];
  uv_loop_t loop;
  uv_timer_t guard;
  struct mailbox *control, *home;
  struct http_client *http;
  struct config cfg;
  struct engine_env env;
};

static struct fx F;

/* ---- the fixture process ---- */

static int spawn_fixture(void) {
  F.node = node_fixture_spawn("services/server.mjs", 0, NULL, &F.port);
  snprintf(F.base, sizeof F.base, "http://127.0.0.1:%d", F.port);
  return F.node > 0 ? 0 : -1;
}

/* Blocking request to the fixture's control endpoints (not the client under test). */
static json_t *fixture(const char *path, const char *fmt, ...) {
  char body[2048] = "";
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
  }
  json_t *j = node_fixture_request(F.base, path, fmt ? body : NULL);
  assert_non_null(j);
  return j;
}

#define SCRIPT(...) json_decref(fixture("/_fixture/script", __VA_ARGS__))

static const char *str_field(json_t *entry, const char *name) {
  return json_string_value(json_object_get(entry, name));
}

static json_int_t int_field(json_t *entry, const char *name) {
  return json_integer_value(json_object_get(entry, name));
}

/* The fixture's log entries for one service (a new reference to an array). */
static json_t *requests(const char *service) {
  json_t *log = fixture("/_fixture/log", NULL), *out = json_array();
  size_t i;
  json_t *v;
  json_array_foreach(log, i, v) {
    if (strcmp(str_field(v, "service"), service) == 0) json_array_append(out, v);
  }
  json_decref(log);
  return out;
}

static uint64_t ns_field(json_t *entry, const char *name) {
  const char *s = str_field(entry, name);
  return s ? strtoull(s, NULL, 10) : 0;
}

/* ---- the loop ---- */

static void on_msg(struct mailbox *mb, struct mailbox_msg *m, void *u) { free(m); }
static void drop_msg(struct mailbox_msg *m) { free(m); }
static void on_guard(uv_timer_t *t) {}

static int wait_until(volatile int *flag, int ms) {
  uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000;
  while (!*flag && uv_hrtime() < end) uv_run(&F.loop, UV_RUN_ONCE);
  return *flag;
}

static void spin(int ms) {
  int never = 0;
  wait_until(&never, ms);
}

/* ---- what callbacks record ---- */

struct rec {
  char text[4096];
  int tokens, done, errors, finals;
  char err[1024];
  size_t samples, chunks;
  int rate;
  uint64_t first_ns, first_audio_ns;
  struct llm_usage usage;
  int usages, usage_after_done;
  /* bench: speak this the moment the first token arrives */
  struct engines *speak_with;
  struct tts_job *tts;
};

static void on_token(void *u, const char *t) {
  struct rec *r = u;
  if (!r->tokens++) r->first_ns = uv_hrtime();
  strncat(r->text, t, sizeof r->text - strlen(r->text) - 1);
}
static void on_done(void *u, int hangup) { ((struct rec *)u)->done++; }
static void on_usage(void *u, const struct llm_usage *usage) {
  struct rec *r = u;
  r->usages++;
  r->usage_after_done |= r->done;
  r->usage = *usage;
}
static void on_error(void *u, const char *m) {
  struct rec *r = u;
  r->errors++;
  snprintf(r->err, sizeof r->err, "%s", m);
}
static void on_final(void *u, const char *t) {
  struct rec *r = u;
  r->finals++;
  snprintf(r->text, sizeof r->text, "%s", t);
}
static void on_partial(void *u, const char *t) {}
static void on_audio(void *u, const int16_t *pcm, size_t n, int rate) {
  struct rec *r = u;
  if (!r->chunks++) r->first_audio_ns = uv_hrtime();
  r->samples += n;
  r->rate = rate;
}
static void on_tts_done(void *u) { ((struct rec *)u)->done++; }

static const struct llm_cb LLM_CB = {.token = on_token, .usage = on_usage, .done = on_done, .error = on_error, .user = NULL};
static const struct tts_cb TTS_CB = {on_audio, on_tts_done, on_error, NULL};
static const struct asr_cb ASR_CB = {on_partial, on_final, on_error, NULL};

static int finished(struct rec *r) { return r->done || r->errors || r->finals; }

/* ---- engines ---- */

static struct engines *open_engines(const char *asr, const char *llm, const char *tts) {
  snprintf(F.cfg.asr, sizeof F.cfg.asr, "%s", asr);
  snprintf(F.cfg.llm, sizeof F.cfg.llm, "%s", llm);
  snprintf(F.cfg.tts, sizeof F.cfg.tts, "%s", tts);
  const char *v1 = strcmp(tts, "openai") == 0 ? "/v1" : "";
  snprintf(F.cfg.tts_base_url, sizeof F.cfg.tts_base_url, "%s%s", F.base, v1);
  struct engines *e = NULL;
  char err[256] = "";
  int rc = engines_open(&e, &F.env, err, sizeof err);
  if (rc) fail_msg("engines_open: %s", err);
  return e;
}

static struct rec *llm_run(struct engines *e, struct rec *r, int wait_ms) {
  struct llm_turn turns[] = {{.role = LLM_USER, .text = "hi"}, {.role = LLM_ASSISTANT, .text = "Hello!"}, {.role = LLM_USER, .text = "what time is it?"}};
  struct llm_params p = {.system = "You are brief.", .turns = turns, .nturns = 3, .language = "en",
                         .max_tokens = 150, .temperature = 0.7};
  struct llm_cb cb = LLM_CB;
  cb.user = r;
  struct llm_job *j;
  assert_int_equal(engines_llm_generate(e, &p, F.home, &cb, &j), 0);
  wait_until((volatile int *)&r->done, wait_ms); /* done or error */
  if (!r->done) wait_until((volatile int *)&r->errors, 1);
  llm_release(j);
  return r;
}

static int llm_wait_any(struct rec *r, int ms) {
  uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000;
  while (!finished(r) && uv_hrtime() < end) uv_run(&F.loop, UV_RUN_ONCE);
  return finished(r);
}

static void llm_expect_error(struct engines *e, struct rec *r) {
  struct llm_turn turns[] = {{.role = LLM_USER, .text = "hi"}};
  struct llm_params p = {.system = "s", .turns = turns, .nturns = 1, .max_tokens = 10, .temperature = 0.5};
  struct llm_cb cb = LLM_CB;
  cb.user = r;
  struct llm_job *j;
  assert_int_equal(engines_llm_generate(e, &p, F.home, &cb, &j), 0);
  assert_true(llm_wait_any(r, 8000));
  llm_release(j);
  assert_int_equal(r->errors, 1);
  assert_int_equal(r->done, 0);
  assert_null(strstr(r->err, KEY));
  assert_null(strstr(r->err, "Secret0123"));
}

/* One utterance to the ASR service, in 20 ms frames; waits for its final or error. */
static void asr_run(struct engines *e, struct rec *r, const char *language, const int16_t *pcm,
                    size_t n) {
  struct asr_cb cb = ASR_CB;
  cb.user = r;
  struct asr_params p = {.language = language};
  struct asr_session *s;
  assert_int_equal(engines_asr_start(e, &p, F.home, &cb, &s), 0);
  for (size_t off = 0; off < n; off += 320) asr_feed(s, pcm + off, n - off < 320 ? n - off : 320);
  asr_finish(s);
  assert_true(llm_wait_any(r, 5000));
  asr_release(s);
}

/* The scripted reply, whole, and nothing went wrong. */
static void expect_reply(const struct rec *r) {
  assert_int_equal(r->errors, 0);
  assert_int_equal(r->done, 1);
  assert_string_equal(r->text, REPLY);
}

/* The fixture answers the next request as `scenario` says; r starts afresh. */
static void next_request(const char *scenario, struct rec *r) {
  SCRIPT("{\"reset\":true,\"scenarios\":[\"%s\"]}", scenario);
  memset(r, 0, sizeof *r);
}

static void tts_run(struct engines *e, struct rec *r) {
  struct tts_params p = {.text = "Hello there.", .language = "en", .rate = 100};
  struct tts_cb cb = TTS_CB;
  cb.user = r;
  struct tts_job *j;
  assert_int_equal(engines_tts_speak(e, &p, F.home, &cb, &j), 0);
  assert_true(llm_wait_any(r, 8000));
  tts_release(j);
}

static void tts_expect_error(struct engines *e, struct rec *r, const char *scenario) {
  next_request(scenario, r);
  tts_run(e, r);
  assert_int_equal(r->errors, 1);
  assert_null(strstr(r->err, KEY));
}

/* ---- tests ---- */

static void llm_openai_streams_tokens(void **state) {
  SCRIPT("{\"reset\":true,\"reply\":\"%s\"}", REPLY);
  struct engines *e = open_engines("openai", "openai", "openai");
  struct rec r = {0};
  llm_run(e, &r, 5000);
  expect_reply(&r);
  assert_true(r.tokens >= 8);
  json_t *reqs = requests("openai-chat");
  assert_int_equal(json_array_size(reqs), 1);
  json_t *req = json_array_get(reqs, 0);
  json_t *hdr = json_object_get(req, "headers"), *body = json_object_get(req, "request");
  assert_string_equal(str_field(hdr, "authorization"), "Bearer " KEY);
  assert_true(json_is_true(json_object_get(body, "stream")));
  assert_string_equal(str_field(body, "model"), "gpt-4o-mini");
  assert_int_equal(json_array_size(json_object_get(body, "messages")), 4);
  json_decref(reqs);
  engines_close(e);
}

static void llm_anthropic_streams_tokens(void **state) {
  SCRIPT("{\"reset\":true}");
  struct engines *e = open_engines("openai", "anthropic", "openai");
  struct rec r = {0};
  llm_run(e, &r, 5000);
  expect_reply(&r);
  json_t *reqs = requests("anthropic");
  json_t *hdr = json_object_get(json_array_get(reqs, 0), "headers");
  assert_string_equal(str_field(hdr, "x-api-key"), KEY);
  assert_string_equal(str_field(hdr, "anthropic-version"), "2023-06-01");
  json_t *body = json_object_get(json_array_get(reqs, 0), "request");
  json_t *system = json_object_get(body, "system");
  assert_int_equal(json_array_size(system), 1);
  assert_string_equal(str_field(json_array_get(system, 0), "text"), "You are brief.");
  json_decref(reqs);
  engines_close(e);
}

/* ---- usage ---- */

static void expect_usage(const struct rec *r, long long in, long long cached, long long write, long long out) {
  assert_int_equal(r->usages, 1);
  assert_int_equal(r->usage_after_done, 0); /* usage, then done */
  assert_int_equal(r->usage.input_tokens, in);
  assert_int_equal(r->usage.cached_tokens, cached);
  assert_int_equal(r->usage.cache_write_tokens, write);
  assert_int_equal(r->usage.output_tokens, out);
}

/* The one chat request the fixture saw since the last reset: its body (a new reference). */
static json_t *chat_body(const char *service) {
  json_t *reqs = requests(service);
  assert_int_equal(json_array_size(reqs), 1);
  json_t *body = json_incref(json_object_get(json_array_get(reqs, 0), "request"));
  json_decref(reqs);
  return body;
}

static void llm_openai_asks_for_and_records_usage(void **state) {
  SCRIPT("{\"reset\":true,\"reply\":\"%s\",\"usage\":{\"prompt\":1500,\"cached\":1280,\"output\":11}}", REPLY);
  struct engines *e = open_engines("openai", "openai", "openai");
  struct rec r = {0};
  llm_run(e, &r, 5000);
  expect_reply(&r);
  expect_usage(&r, 1500, 1280, 0, 11);
  json_t *body = chat_body("openai-chat");
  assert_true(json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage")));
  /* the stable part first: the system prompt, then the conversation oldest first */
  json_t *m = json_object_get(body, "messages");
  assert_string_equal(str_field(json_array_get(m, 0), "role"), "system");
  assert_string_equal(str_field(json_array_get(m, 0), "content"), "You are brief.");
  assert_string_equal(str_field(json_array_get(m, 1), "content"), "hi");
  assert_string_equal(str_field(json_array_get(m, 3), "content"), "what time is it?");
  json_decref(body);
  engines_close(e);
}

static void llm_anthropic_marks_the_system_prompt_and_records_usage(void **state) {
  /* prompt counts every prompt token; the fixture sends input_tokens = 1500 - 1024 - 200 */
  SCRIPT("{\"reset\":true,\"reply\":\"%s\",\"usage\":{\"prompt\":1500,\"cached\":1024,\"cacheWrite\":200,"
         "\"output\":12}}", REPLY);
  struct engines *e = open_engines("openai", "anthropic", "openai");
  struct rec r = {0};
  llm_run(e, &r, 5000);
  expect_reply(&r);
  expect_usage(&r, 1500, 1024, 200, 12);
  json_t *body = chat_body("anthropic");
  json_t *system = json_object_get(body, "system");
  json_t *last = json_array_get(system, json_array_size(system) - 1);
  assert_string_equal(str_field(last, "type"), "text");
  assert_string_equal(str_field(last, "text"), "You are brief.");
  assert_string_equal(str_field(json_object_get(last, "cache_control"), "type"), "ephemeral");
  json_decref(body);
  engines_close(e);
}

/* Two turns of one call: the second reads the prefix the first wrote (the fixture's pretend cache). */
static void a_calls_second_turn_reads_the_prompt_cache(void **state) {
  static const struct {
    const char *llm, *service;
    int writes; /* Anthropic reports the write; OpenAI bills none */
  } cases[] = {{"anthropic", "anthropic", 1}, {"openai", "openai-chat", 0}};
  for (size_t c = 0; c < 2; c++) {
    SCRIPT("{\"reset\":true,\"clearCache\":true,\"reply\":\"%s\"}", REPLY);
    struct engines *e = open_engines("openai", cases[c].llm, "openai");
    struct rec first = {0}, second = {0};
    llm_run(e, &first, 5000);
    llm_run(e, &second, 5000);
    expect_reply(&first);
    expect_reply(&second);
    long long prefix = (long long)(strlen("You are brief.") + 3) / 4; /* the fixture's 4 characters a token */
    assert_int_equal(first.usage.cached_tokens, 0);
    assert_int_equal(first.usage.cache_write_tokens, cases[c].writes ? prefix : 0);
    assert_int_equal(second.usage.cached_tokens, prefix);
    assert_int_equal(second.usage.cache_write_tokens, 0);
    assert_int_equal(first.usage.input_tokens, second.usage.input_tokens); /* the same prompt */
    assert_true(second.usage.output_tokens > 0);
    engines_close(e);
  }
}

/* The next chat replies send `raw`, verbatim, as every usage object. */
static void script_usage_raw(const char *raw) {
  json_t *cmd = json_pack("{s:b,s:s,s:s}", "reset", 1, "reply", REPLY, "usageRaw", raw);
  char *text = json_dumps(cmd, JSON_COMPACT);
  SCRIPT("%s", text);
  free(text);
  json_decref(cmd);
}

/* Usage objects a service should never send: the reply is whole, and no count is believed. */
static void malformed_usage_is_ignored(void **state) {
  static const char *raw[] = {
      "\"lots\"", "null", "[]", "{}", "{\"prompt_tokens\":null,\"input_tokens\":null}",
      "{\"prompt_tokens\":-5,\"completion_tokens\":\"7\",\"prompt_tokens_details\":{\"cached_tokens\":1.5}}",
      "{\"input_tokens\":-1,\"output_tokens\":true,\"cache_read_input_tokens\":{}}",
      "{\"prompt_tokens\":123456789012345678901234567890,\"input_tokens\":99999999999999999999}",
      "{\"completion_tokens\":1e300,\"output_tokens\":1000000000001,\"prompt_tokens_details\":7}",
  };
  for (int backend = 0; backend < 2; backend++) {
    const char *llm = backend ? "anthropic" : "openai";
    struct engines *e = open_engines("openai", llm, "openai");
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
      script_usage_raw(raw[i]);
      struct rec r = {0};
      llm_run(e, &r, 5000);
      if (r.errors || r.usages) fail_msg("%s, usage %s: error \"%s\", %d usages", llm, raw[i], r.err, r.usages);
      expect_reply(&r);
    }
    engines_close(e);
  }
}

/* Good counts beside bad ones are kept; a cached count above the prompt is not. */
static void usage_keeps_the_good_counts(void **state) {
  struct engines *e = open_engines("openai", "openai", "openai");
  script_usage_raw("{\"prompt_tokens\":40,\"completion_tokens\":-1,\"prompt_tokens_details\":{\"cached_tokens\":99}}");
  struct rec r = {0};
  llm_run(e, &r, 5000);
  expect_reply(&r);
  expect_usage(&r, 40, 0, 0, 0);
  engines_close(e);

  /* Anthropic: what message_delta repeats replaces message_start's; a bad count is left out */
  e = open_engines("openai", "anthropic", "openai");
  script_usage_raw("{\"input_tokens\":10,\"cache_read_input_tokens\":\"x\",\"cache_creation_input_tokens\":30,"
                   "\"output_tokens\":5}");
  memset(&r, 0, sizeof r);
  llm_run(e, &r, 5000);
  expect_reply(&r);
  expect_usage(&r, 40, 0, 30, 5);
  engines_close(e);
}

/* DeepSeek's chat completions report cache hits in a field of their own. */
static void deepseek_cache_hits_are_read(void **state) {
  struct engines *e = open_engines("openai", "openai", "openai");
  script_usage_raw("{\"prompt_tokens\":300,\"completion_tokens\":9,\"total_tokens\":309,"
                   "\"prompt_cache_hit_tokens\":256,\"prompt_cache_miss_tokens\":44}");
  struct rec r = {0};
  llm_run(e, &r, 5000);
  expect_reply(&r);
  expect_usage(&r, 300, 256, 0, 9);
  engines_close(e);
}

/* A compatible server that sends no usage (or ignores include_usage): the reply ends as usual. */
static void a_stream_without_usage_completes(void **state) {
  for (int backend = 0; backend < 2; backend++) {
    SCRIPT("{\"reset\":true,\"reply\":\"%s\",\"usage\":false}", REPLY);
    struct engines *e = open_engines("openai", backend ? "anthropic" : "openai", "openai");
    struct rec r = {0};
    llm_run(e, &r, 5000);
    expect_reply(&r);
    assert_int_equal(r.usages, 0);
    engines_close(e);
  }
}

static void asr_openai_transcribes_a_wav_upload(void **state) {
  SCRIPT("{\"reset\":true,\"transcript\":\"turn on the lights\"}");
  struct engines *e = open_engines("openai", "openai", "openai");
  struct rec r = {0};
  static int16_t tone[16000]; /* one second of 200 Hz */
  for (int i = 0; i < 16000; i++) tone[i] = (int16_t)(6000 * sin(i * 2 * M_PI * 200 / 16000));
  asr_run(e, &r, "en-US", tone, 16000);
  assert_int_equal(r.errors, 0);
  assert_string_equal(r.text, "turn on the lights");
  json_t *reqs = requests("openai-transcriptions");
  json_t *req = json_array_get(reqs, 0);
  json_t *wav = json_object_get(req, "wav"), *fields = json_object_get(req, "fields");
  assert_int_equal(int_field(wav, "samples"), 16000);
  assert_int_equal(int_field(wav, "rate"), 16000);
  assert_true(int_field(wav, "peak") > 5000);
  assert_string_equal(str_field(fields, "language"), "en");
  assert_string_equal(str_field(fields, "model"), "whisper-1");
  assert_string_equal(str_field(fields, "response_format"), "json");
  json_decref(reqs);
  engines_close(e);
}

static void tts_services_stream_pcm(void **state) {
  static const struct {
    const char *engine, *service;
    int rate;
  } cases[] = {{"openai", "openai-speech", 24000}, {"elevenlabs", "elevenlabs", 16000}, {"azure", "azure", 16000}};
  for (size_t c = 0; c < 3; c++) {
    SCRIPT("{\"reset\":true}");
    struct engines *e = open_engines("openai", "openai", cases[c].engine);
    struct rec r = {0};
    tts_run(e, &r);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.rate, cases[c].rate);
    json_t *reqs = requests(cases[c].service);
    assert_int_equal(json_array_size(reqs), 1);
    json_t *req = json_array_get(reqs, 0);
    assert_int_equal(r.samples, (size_t)int_field(req, "samples"));
    assert_true(r.chunks > 1); /* delivered as it came, not at the end */
    json_decref(reqs);
    engines_close(e);
  }
}

static void errors_name_the_service_and_hide_the_key(void **state) {
  struct engines *e = open_engines("openai", "openai", "openai");
  struct {
    const char *scenario, *expect;
    int attempts;
  } cases[] = {
      {"401", "OpenAI chat completions: HTTP 401", 1},
      {"500", "OpenAI chat completions: HTTP 500", 2},
      {"garbage", "malformed stream", 1},
      {"cutoff", "closed before the response ended", 1},
      {"stream-error", "The server is overloaded", 1},
      {"close", "closed before the response ended", 2},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const char *sc = cases[c].scenario;
    SCRIPT("{\"reset\":true,\"scenarios\":[\"%s\",\"%s\",\"%s\"]}", sc, sc, sc);
    struct rec r = {0};
    llm_expect_error(e, &r);
    if (!strstr(r.err, cases[c].expect)) fail_msg("%s: \"%s\" lacks \"%s\"", cases[c].scenario, r.err, cases[c].expect);
    /* libcurl itself retries once on a fresh connection when a reused one dies with nothing read */
    json_t *reqs = requests("openai-chat");
    size_t n = json_array_size(reqs), want = (size_t)cases[c].attempts;
    if (n < want || n > want + (strcmp(sc, "close") == 0))
      fail_msg("%s: %zu requests, expected %zu", sc, n, want);
    json_decref(reqs);
  }
  engines_close(e);

  /* The other services' error bodies. */
  e = open_engines("openai", "anthropic", "elevenlabs");
  struct rec r;
  next_request("401", &r);
  llm_expect_error(e, &r);
  assert_non_null(strstr(r.err, "Anthropic Messages: HTTP 401"));
  assert_non_null(strstr(r.err, "invalid x-api-key"));
  next_request("stream-error", &r);
  llm_expect_error(e, &r);
  assert_non_null(strstr(r.err, "overloaded_error"));
  tts_expect_error(e, &r, "401");
  assert_non_null(strstr(r.err, "ElevenLabs text-to-speech: HTTP 401"));
  assert_non_null(strstr(r.err, "Invalid API key"));
  tts_expect_error(e, &r, "garbage");
  assert_non_null(strstr(r.err, "not audio"));
  engines_close(e);

  e = open_engines("openai", "openai", "azure");
  tts_expect_error(e, &r, "cutoff");
  assert_non_null(strstr(r.err, "Azure Speech"));
  assert_true(r.samples > 0); /* what came before the cut was played */
  engines_close(e);
}

static void asr_errors_are_reported(void **state) {
  struct engines *e = open_engines("openai", "openai", "openai");
  const char *scenarios[] = {"401", "garbage", "cutoff"};
  const char *expect[] = {"OpenAI transcriptions: HTTP 401", "no transcript", "closed before"};
  for (int c = 0; c < 3; c++) {
    SCRIPT("{\"reset\":true,\"scenarios\":[\"%s\",\"%s\"]}", scenarios[c], scenarios[c]);
    struct rec r = {0};
    static const int16_t silence[1600];
    asr_run(e, &r, "en", silence, 1600);
    if (r.errors != 1) {
      json_t *log = fixture("/_fixture/log", NULL);
      char *dump = json_dumps(log, JSON_COMPACT);
      fail_msg("%s: no error (final \"%s\"); fixture log %s", scenarios[c], r.text, dump);
    }
    if (!strstr(r.err, expect[c])) fail_msg("%s: \"%s\" lacks \"%s\"", scenarios[c], r.err, expect[c]);
    assert_null(strstr(r.err, KEY));
  }
  engines_close(e);
}

/* A new HTTP client in place of the old, which closes on the loop. */
static void renew_http(void) {
  http_client_free(F.http);
  struct http_client_opts o = {.connect_timeout_ms = 1000, .first_byte_timeout_ms = FIRST_BYTE_MS,
                               .total_timeout_ms = 10000};
  assert_int_equal(http_client_new(&F.http, &F.loop, &o), 0);
  F.env.http = F.http;
}

static void retry_after_429_is_honoured(void **state) {
  SCRIPT("{\"reset\":true,\"scenarios\":[\"429\",\"ok\"],\"retryAfter\":1}");
  struct engines *e = open_engines("openai", "openai", "openai");
  spin(100); /* let the warm-up HEAD finish */
  struct rec r = {0};
  uint64_t t0 = uv_hrtime();
  llm_run(e, &r, 5000);
  double ms = (double)(uv_hrtime() - t0) / 1e6;
  expect_reply(&r);
  assert_true(ms >= 950);
  json_t *reqs = requests("openai-chat");
  assert_int_equal(json_array_size(reqs), 2);
  json_decref(reqs);

  /* A Retry-After beyond the bound is not waited for: the error says so. */
  SCRIPT("{\"reset\":true,\"scenarios\":[\"429\",\"ok\"],\"retryAfter\":30}");
  memset(&r, 0, sizeof r);
  llm_expect_error(e, &r);
  assert_non_null(strstr(r.err, "HTTP 429 (rate limited; retry after 30 s)"));

  /* The service is held meanwhile: the next request fails at once, unsent; other services are not held. */
  memset(&r, 0, sizeof r);
  t0 = uv_hrtime();
  llm_expect_error(e, &r);
  assert_true((double)(uv_hrtime() - t0) / 1e6 < 300);
  assert_non_null(strstr(r.err, "rate limited; the service asked for no requests for another 30 s"));
  reqs = requests("openai-chat");
  assert_int_equal(json_array_size(reqs), 1);
  json_decref(reqs);
  struct rec t = {0};
  tts_run(e, &t);
  assert_int_equal(t.errors, 0);
  SCRIPT("{\"retryAfter\":1}");
  engines_close(e);
  renew_http(); /* forgets the hold, which would refuse the tests that follow */
}

/* A short hold is waited out by every request, not only the one that met the 429. */
static void short_retry_after_holds_other_requests(void **state) {
  SCRIPT("{\"reset\":true,\"scenarios\":[\"429\",\"ok\",\"ok\"],\"retryAfter\":1}");
  struct engines *e = open_engines("openai", "openai", "openai");
  struct rec a = {0}, b = {0};
  struct llm_turn turns[] = {{.role = LLM_USER, .text = "hi"}};
  struct llm_params p = {.turns = turns, .nturns = 1, .max_tokens = 20, .temperature = 0.5};
  struct llm_cb ca = LLM_CB, cb = LLM_CB;
  ca.user = &a;
  cb.user = &b;
  struct llm_job *ja, *jb;
  assert_int_equal(engines_llm_generate(e, &p, F.home, &ca, &ja), 0);
  json_t *reqs = NULL;
  for (int i = 0; i < 100 && (!reqs || json_array_size(reqs) < 1); i++) {
    json_decref(reqs);
    spin(10);
    reqs = requests("openai-chat");
  }
  json_decref(reqs);
  spin(100); /* the 429 is in: the first request waits to retry */
  assert_int_equal(engines_llm_generate(e, &p, F.home, &cb, &jb), 0);
  llm_wait_any(&a, 5000);
  llm_wait_any(&b, 5000);
  expect_reply(&a);
  expect_reply(&b);
  reqs = requests("openai-chat");
  assert_int_equal(json_array_size(reqs), 3);
  uint64_t first = ns_field(json_array_get(reqs, 0), "startNs");
  for (size_t i = 1; i < 3; i++) {
    double after = (double)(ns_field(json_array_get(reqs, i), "startNs") - first) / 1e6;
    if (after < 900) fail_msg("request %zu reached the service %.0f ms after the 429", i, after);
  }
  json_decref(reqs);
  llm_release(ja);
  llm_release(jb);
  engines_close(e);
}

static void first_byte_timeout_fires(void **state) {
  SCRIPT("{\"reset\":true,\"scenarios\":[\"slow-first-byte\",\"slow-first-byte\"],\"delayMs\":3000}");
  struct engines *e = open_engines("openai", "openai", "openai");
  struct rec r = {0};
  uint64_t t0 = uv_hrtime();
  llm_expect_error(e, &r);
  double ms = (double)(uv_hrtime() - t0) / 1e6;
  assert_non_null(strstr(r.err, "no response within 800 ms"));
  assert_true(ms >= 2 * FIRST_BYTE_MS && ms < 2 * FIRST_BYTE_MS + 1000); /* two attempts */
  SCRIPT("{\"delayMs\":null}");
  engines_close(e);
}

static void cancel_closes_the_connection_at_once(void **state) {
  SCRIPT("{\"reset\":true,\"scenarios\":[\"slow-stream\",\"slow-stream\"],\"delayMs\":300}");
  struct engines *e = open_engines("openai", "openai", "openai");
  struct rec r = {0};
  struct llm_turn turns[] = {{.role = LLM_USER, .text = "talk slowly"}};
  struct llm_params p = {.turns = turns, .nturns = 1, .max_tokens = 50, .temperature = 0.2};
  struct llm_cb cb = LLM_CB;
  cb.user = &r;
  struct llm_job *j;
  assert_int_equal(engines_llm_generate(e, &p, F.home, &cb, &j), 0);
  assert_true(wait_until((volatile int *)&r.tokens, 5000));
  uint64_t released = uv_hrtime();
  llm_release(j);
  int tokens = r.tokens;
  spin(400);
  assert_int_equal(r.tokens, tokens); /* nothing after release */
  assert_int_equal(r.done + r.errors, 0);
  json_t *reqs = requests("openai-chat");
  json_t *req = json_array_get(reqs, 0);
  assert_true(json_is_true(json_object_get(req, "aborted")));
  double ms = (double)(ns_field(req, "abortNs") - released) / 1e6;
  printf("# cancel -> the service saw the disconnect: %.2f ms\n", ms);
  assert_true(ms < 100);
  json_decref(reqs);

  /* the same for speech */
  struct rec t = {0};
  struct tts_cb tcb = TTS_CB;
  tcb.user = &t;
  struct tts_job *tj;
  assert_int_equal(engines_tts_speak(e, &(struct tts_params){.text = "slow", .language = "en"}, F.home, &tcb, &tj), 0);
  assert_true(wait_until((volatile int *)&t.chunks, 5000));
  released = uv_hrtime();
  tts_release(tj);
  spin(400);
  reqs = requests("openai-speech");
  req = json_array_get(reqs, 0);
  assert_true(json_is_true(json_object_get(req, "aborted")));
  assert_true((double)(ns_field(req, "abortNs") - released) / 1e6 < 100);
  json_decref(reqs);
  SCRIPT("{\"delayMs\":null}");
  engines_close(e);
}

static void warm_connection_is_reused(void **state) {
  SCRIPT("{\"reset\":true}");
  struct http_client_stats before, after;
  http_client_stats(F.http, &before);
  struct engines *e = open_engines("openai", "openai", "openai");
  spin(200); /* the warm-up */
  json_t *log = fixture("/_fixture/log", NULL);
  json_t *warm = json_array_get(log, 0);
  assert_non_null(warm);
  assert_string_equal(str_field(warm, "method"), "HEAD");
  json_int_t conn = int_field(warm, "connection");
  json_decref(log);
  struct rec r = {0};
  llm_run(e, &r, 5000);
  assert_int_equal(r.done, 1);
  json_t *reqs = requests("openai-chat");
  assert_int_equal(json_integer_value(json_object_get(json_array_get(reqs, 0), "connection")), conn);
  json_decref(reqs);
  http_client_stats(F.http, &after);
  assert_true(after.requests > before.requests);
  engines_close(e);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void bench_token(void *u, const char *t) {
  struct rec *r = u;
  on_token(u, t);
  if (r->tokens == 1 && r->speak_with) {
    struct tts_params p = {.text = t, .language = "en", .rate = 100};
    struct tts_cb cb = TTS_CB;
    cb.user = r + 1; /* the TTS record follows the LLM one */
    assert_int_equal(engines_tts_speak(r->speak_with, &p, F.home, &cb, &r->tts), 0);
  }
}

/*
 * What this layer adds to a turn: from the moment the LLM service wrote its
 * first token to the moment the TTS service received a request (the agent
 * cuts a sentence in between; here the first token is spoken at once), and
 * from the TTS service's first PCM byte to that PCM reaching the home loop.
 */
static void latency_added_by_the_service_layer(void **state) {
  SCRIPT("{\"reset\":true,\"toneMs\":200}");
  struct engines *e = open_engines("openai", "openai", "openai");
  spin(200);
  enum { ROUNDS = 20 };
  double tok_to_tts[ROUNDS], tok_home[ROUNDS], pcm_home[ROUNDS];
  for (int i = 0; i < ROUNDS; i++) {
    SCRIPT("{\"reset\":true}");
    struct rec r[2];
    memset(r, 0, sizeof r);
    r[0].speak_with = e;
    struct llm_turn turns[] = {{.role = LLM_USER, .text = "hello"}};
    struct llm_params p = {.turns = turns, .nturns = 1, .max_tokens = 50, .temperature = 0.2};
    struct llm_cb cb = {.token = bench_token, .done = on_done, .error = on_error, .user = &r[0]};
    struct llm_job *j;
    assert_int_equal(engines_llm_generate(e, &p, F.home, &cb, &j), 0);
    assert_true(wait_until((volatile int *)&r[0].done, 5000));
    assert_true(llm_wait_any(&r[1], 5000));
    llm_release(j);
    tts_release(r[0].tts);
    assert_int_equal(r[1].errors, 0);
    json_t *chat = requests("openai-chat"), *speech = requests("openai-speech");
    json_t *c0 = json_array_get(chat, 0), *s0 = json_array_get(speech, 0);
    /* chunk 0 is the role-only delta; chunk 1 carries the first text */
    uint64_t token_written = strtoull(json_string_value(json_array_get(json_object_get(c0, "writeNs"), 1)), NULL, 10);
    tok_to_tts[i] = (double)(ns_field(s0, "startNs") - token_written) / 1e6;
    tok_home[i] = (double)(r[0].first_ns - token_written) / 1e6;
    pcm_home[i] = (double)(r[1].first_audio_ns - ns_field(s0, "firstByteNs")) / 1e6;
    json_decref(chat);
    json_decref(speech);
  }
  qsort(tok_to_tts, ROUNDS, sizeof(double), cmp_double);
  qsort(tok_home, ROUNDS, sizeof(double), cmp_double);
  qsort(pcm_home, ROUNDS, sizeof(double), cmp_double);
  printf("# service layer latency over %d turns (ms)       p50     p95     max\n", ROUNDS);
  printf("# LLM first token written -> token at home   %7.3f %7.3f %7.3f\n", tok_home[ROUNDS / 2],
         tok_home[ROUNDS * 95 / 100], tok_home[ROUNDS - 1]);
  printf("# LLM first token written -> TTS request in  %7.3f %7.3f %7.3f\n", tok_to_tts[ROUNDS / 2],
         tok_to_tts[ROUNDS * 95 / 100], tok_to_tts[ROUNDS - 1]);
  printf("# TTS first PCM byte written -> PCM at home  %7.3f %7.3f %7.3f\n", pcm_home[ROUNDS / 2],
         pcm_home[ROUNDS * 95 / 100], pcm_home[ROUNDS - 1]);
  /* Printed, not asserted: timings are for benchmarks, and this machine is shared. The
   * functional part (every round reached TTS and brought PCM home) is checked above. */
  SCRIPT("{\"toneMs\":600}");
  engines_close(e);
}

/* A service that quotes the key back changed (upper case, no "sk-") still gets nothing of it out. */
static void an_echoed_key_in_another_form_is_redacted(void **state) {
  struct engines *e = open_engines("openai", "openai", "openai");
  SCRIPT("{\"reset\":true,\"scenarios\":[\"401-echo\"]}");
  struct rec r = {0};
  llm_expect_error(e, &r);
  assert_non_null(strstr(r.err, "HTTP 401"));
  assert_non_null(strstr(r.err, "[redacted]"));
  assert_null(strcasestr(r.err, "Secret0123"));
  assert_null(strcasestr(r.err, "0123456789abcdef"));
  /* the set the voice agent cleans its log line with holds the key the config names, in any form */
  char out[256];
  redact_text(engines_redact(e), "upstream said TEST-SECRET0123456789ABCDEFXYZ, then 6789abcdefxy", out, sizeof out);
  assert_string_equal(out, "upstream said [redacted], then [redacted]");
  engines_close(e);
}

/* ---- setup ---- */

static int setup(void **state) {
  if (spawn_fixture() != 0) return -1;
  setenv("TS_TEST_SERVICE_KEY", KEY, 1);
  assert_int_equal(uv_loop_init(&F.loop), 0);
  uv_timer_init(&F.loop, &F.guard);
  uv_timer_start(&F.guard, on_guard, 20, 20);
  assert_int_equal(mailbox_new(&F.control, &F.loop, on_msg, NULL), 0);
  assert_int_equal(mailbox_new(&F.home, &F.loop, on_msg, NULL), 0);
  struct http_client_opts o = {.connect_timeout_ms = 1000, .first_byte_timeout_ms = FIRST_BYTE_MS,
                               .total_timeout_ms = 10000};
  assert_int_equal(http_client_new(&F.http, &F.loop, &o), 0);
  config_defaults(&F.cfg);
  snprintf(F.cfg.llm_base_url, sizeof F.cfg.llm_base_url, "%s/v1", F.base);
  snprintf(F.cfg.asr_base_url, sizeof F.cfg.asr_base_url, "%s/v1", F.base);
  snprintf(F.cfg.llm_api_key_env, sizeof F.cfg.llm_api_key_env, "TS_TEST_SERVICE_KEY");
  snprintf(F.cfg.asr_api_key_env, sizeof F.cfg.asr_api_key_env, "TS_TEST_SERVICE_KEY");
  snprintf(F.cfg.tts_api_key_env, sizeof F.cfg.tts_api_key_env, "TS_TEST_SERVICE_KEY");
  F.env = (struct engine_env){&F.cfg, NULL, F.control, F.http};
  return 0;
}

static int teardown(void **state) {
  http_client_free(F.http);
  mailbox_close(F.control, drop_msg);
  mailbox_close(F.home, drop_msg);
  uv_close((uv_handle_t *)&F.guard, NULL);
  uv_run(&F.loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&F.loop);
  node_fixture_stop(F.node);
  return rc;
}

int main(void) {
  if (system("node --version >/dev/null 2>&1") != 0) {
    printf("# node not found: skipping the service fixture tests\n");
    return 0;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(warm_connection_is_reused), /* first: the warm-up happens once per origin */
      cmocka_unit_test(llm_openai_streams_tokens),
      cmocka_unit_test(llm_anthropic_streams_tokens),
      cmocka_unit_test(llm_openai_asks_for_and_records_usage),
      cmocka_unit_test(llm_anthropic_marks_the_system_prompt_and_records_usage),
      cmocka_unit_test(a_calls_second_turn_reads_the_prompt_cache),
      cmocka_unit_test(malformed_usage_is_ignored),
      cmocka_unit_test(usage_keeps_the_good_counts),
      cmocka_unit_test(deepseek_cache_hits_are_read),
      cmocka_unit_test(a_stream_without_usage_completes),
      cmocka_unit_test(asr_openai_transcribes_a_wav_upload),
      cmocka_unit_test(tts_services_stream_pcm),
      cmocka_unit_test(errors_name_the_service_and_hide_the_key),
      cmocka_unit_test(an_echoed_key_in_another_form_is_redacted),
      cmocka_unit_test(asr_errors_are_reported),
      cmocka_unit_test(retry_after_429_is_honoured),
      cmocka_unit_test(short_retry_after_holds_other_requests),
      cmocka_unit_test(first_byte_timeout_fires),
      cmocka_unit_test(cancel_closes_the_connection_at_once),
      cmocka_unit_test(latency_added_by_the_service_layer),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  curl_global_cleanup();
  return rc;
}
