/* service + http_client: error messages from each service's body, and no credential in any of them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engines/service.h"
#include "net/http_client.h"

static struct svc_conf conf(const char *service, const char *key) {
  struct svc_conf c = {.service = service};
  snprintf(c.key, sizeof c.key, "%s", key);
  return c;
}

static void credential_headers_are_redacted(void **state) {
  char out[256];
  const char *secret[] = {"Authorization: Bearer sk-abc", "x-api-key: sk-ant-1", "api-key: 123",
                          "xi-api-key: sk_9", "Ocp-Apim-Subscription-Key: deadbeef",
                          "AUTHORIZATION:Bearer z"};
  for (size_t i = 0; i < sizeof secret / sizeof secret[0]; i++) {
    assert_int_equal(http_redact_header(secret[i], out, sizeof out), 1);
    assert_non_null(strstr(out, "[redacted]"));
    const char *value = strchr(secret[i], ':') + 1;
    while (*value == ' ') value++;
    assert_null(strstr(out, value));
  }
  assert_int_equal(http_redact_header("Content-Type: application/json", out, sizeof out), 0);
  assert_string_equal(out, "Content-Type: application/json");
  assert_int_equal(http_redact_header("x-api-key-hint: no", out, sizeof out), 0);
}

static void error_bodies_of_each_service_are_read(void **state) {
  struct svc_conf c = conf("OpenAI chat completions", "sk-live-1234567890");
  char msg[512];
  const char *openai = "{\"error\":{\"message\":\"Incorrect API key provided: sk-live-1234567890.\","
                       "\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}";
  struct http_result r = {.status = 401, .body = openai, .body_len = strlen(openai), .retry_after_ms = -1};
  svc_error(&c, &r, msg, sizeof msg);
  assert_string_equal(msg, "OpenAI chat completions: HTTP 401 (the API key was refused): "
                           "Incorrect API key provided: [redacted].");
  const char *anthropic = "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Slow down\"}}";
  c = conf("Anthropic Messages", "");
  r = (struct http_result){.status = 429, .body = anthropic, .body_len = strlen(anthropic), .retry_after_ms = 20000};
  svc_error(&c, &r, msg, sizeof msg);
  assert_string_equal(msg, "Anthropic Messages: HTTP 429 (rate limited; retry after 20 s): Slow down");
  const char *eleven = "{\"detail\":{\"status\":\"quota_exceeded\",\"message\":\"Quota exceeded\"}}";
  c = conf("ElevenLabs text-to-speech", "");
  r = (struct http_result){.status = 402, .body = eleven, .body_len = strlen(eleven), .retry_after_ms = -1};
  svc_error(&c, &r, msg, sizeof msg);
  assert_string_equal(msg, "ElevenLabs text-to-speech: HTTP 402: Quota exceeded");
  const char *html = "<html><body>502 Bad Gateway</body></html>";
  c = conf("Azure Speech", "");
  r = (struct http_result){.status = 502, .body = html, .body_len = strlen(html), .retry_after_ms = -1};
  svc_error(&c, &r, msg, sizeof msg);
  assert_string_equal(msg, "Azure Speech: HTTP 502");
  const char *text = "model 'llama9' not found\n";
  r = (struct http_result){.status = 404, .body = text, .body_len = strlen(text), .retry_after_ms = -1};
  svc_error(&c, &r, msg, sizeof msg);
  assert_string_equal(msg, "Azure Speech: HTTP 404: model 'llama9' not found");
  r = (struct http_result){.rc = -ETIMEDOUT, .message = "Azure Speech: no response within 10000 ms", .body = ""};
  svc_error(&c, &r, msg, sizeof msg);
  assert_string_equal(msg, "Azure Speech: no response within 10000 ms");
}

static void anything_shaped_like_a_key_is_scrubbed(void **state) {
  struct svc_conf c = conf("x", "plainkey42");
  char m[256];
  snprintf(m, sizeof m, "keys plainkey42, sk-proj-****abcd, sk_ffff1111 and "
                        "0123456789abcdef0123456789abcdef stay hidden; words stay");
  svc_scrub(&c, m, sizeof m);
  assert_string_equal(m, "keys [redacted], [redacted], [redacted] and [redacted] stay hidden; words stay");
  char small[12] = "sk-abcdefgh";
  svc_scrub(NULL, small, sizeof small); /* the mask is longer than the key: cut, never overflow */
  assert_int_equal(strncmp(small, "[redacted]", strlen(small)), 0);
}

static void request_strings_are_owned_and_bounded(void **state) {
  struct http_request r = {0};
  assert_int_equal(http_request_set_url(&r, "http://h/%s", "p"), 0);
  for (int i = 0; i < HTTP_MAX_HEADERS; i++) assert_int_equal(http_request_add_header(&r, "X-%d: %d", i, i), 0);
  assert_int_equal(http_request_add_header(&r, "One: too many"), -ENOSPC);
  assert_string_equal(http_request_header(&r, "x-3"), "3");
  assert_null(http_request_header(&r, "X-"));
  http_request_clear(&r);
  assert_null(r.url);
  assert_null(r.headers[0]);
}

/* ---- a streamed PCM body, fed by hand ---- */

struct pcm_seen {
  int16_t pcm[16];
  size_t n;
};

static struct svc_call *fed_call;

/* The request "builder" only notes which svc_call the stream carries its request in. */
static int note_call(const struct svc_conf *c, const struct tts_params *p, struct http_request *out) {
  fed_call = (struct svc_call *)((char *)out - offsetof(struct svc_call, req));
  svc_request_post(c, out);
  return 0;
}

static void seen_audio(void *u, const int16_t *pcm, size_t n, int rate) {
  struct pcm_seen *s = u;
  for (size_t i = 0; i < n && s->n < 16; i++) s->pcm[s->n++] = pcm[i];
}
static void seen_done(void *u) {}
static void seen_error(void *u, const char *m) {}
static void ignore_msg(struct mailbox *mb, struct mailbox_msg *m, void *u) { free(m); }
static void drop_msg(struct mailbox_msg *m) { free(m); }

/* curl documents that its write callback may get 0 bytes; a sample split around one stays whole. */
static void an_empty_read_between_halves_of_a_sample_changes_nothing(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct mailbox *control, *home;
  assert_int_equal(mailbox_new(&control, &loop, ignore_msg, NULL), 0);
  assert_int_equal(mailbox_new(&home, &loop, ignore_msg, NULL), 0);
  struct svc_conf c = conf("PCM service", "");
  c.control = control;
  struct pcm_seen seen = {0};
  struct tts_cb cb = {seen_audio, seen_done, seen_error, &seen};
  struct tts_params p = {.text = "hi"};
  struct tts_job *job = NULL;
  assert_int_equal(svc_tts_speak(&c, NULL, 24000, note_call, &p, home, &cb, &job), 0);
  assert_non_null(fed_call);
  static const char first[] = {0x01, 0x02, 0x03}, nothing[] = {(char)0xff}, rest[] = {0x04, 0x05, 0x06};
  assert_int_equal(fed_call->ops->data(fed_call, first, 3), 0);
  assert_int_equal(fed_call->ops->data(fed_call, nothing, 0), 0); /* points at a byte it does not own */
  assert_int_equal(fed_call->ops->data(fed_call, rest, 3), 0);
  assert_int_equal(fed_call->ops->data(fed_call, NULL, 0), 0);
  for (int i = 0; i < 5; i++) uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(seen.n, 3);
  assert_int_equal((uint16_t)seen.pcm[0], 0x0201);
  assert_int_equal((uint16_t)seen.pcm[1], 0x0403); /* 0xff03 if the empty read took a byte */
  assert_int_equal((uint16_t)seen.pcm[2], 0x0605);
  tts_release(job);
  mailbox_close(control, drop_msg);
  mailbox_close(home, drop_msg);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(credential_headers_are_redacted),
      cmocka_unit_test(error_bodies_of_each_service_are_read),
      cmocka_unit_test(anything_shaped_like_a_key_is_scrubbed),
      cmocka_unit_test(request_strings_are_owned_and_bounded),
      cmocka_unit_test(an_empty_read_between_halves_of_a_sample_changes_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
