/* asr openai: the multipart upload with a WAV file built in memory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "engines/service.h"

static struct svc_conf conf(void) {
  struct svc_conf c = {.service = "OpenAI transcriptions"};
  snprintf(c.base_url, sizeof c.base_url, "http://127.0.0.1:8081/v1");
  snprintf(c.model, sizeof c.model, "whisper-1");
  snprintf(c.prompt, sizeof c.prompt, "tingshuo, WebRTC");
  snprintf(c.key, sizeof c.key, "sk-123");
  return c;
}

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* The value of form field `name`, located in the body by its boundary framing. */
static const char *field(const struct http_request *r, const char *boundary, const char *name, size_t *len) {
  char head[256];
  snprintf(head, sizeof head, "--%s\r\nContent-Disposition: form-data; name=\"%s\"", boundary, name);
  const char *p = memmem(r->body, r->body_len, head, strlen(head));
  if (!p) return NULL;
  p = memmem(p, r->body_len - (size_t)(p - r->body), "\r\n\r\n", 4) + 4;
  char end[128];
  snprintf(end, sizeof end, "\r\n--%s", boundary);
  const char *q = memmem(p, r->body_len - (size_t)(p - r->body), end, strlen(end));
  assert_non_null(q);
  *len = (size_t)(q - p);
  return p;
}

static void multipart_carries_fields_and_a_wav_file(void **state) {
  struct svc_conf c = conf();
  int16_t pcm[1000];
  for (int i = 0; i < 1000; i++) pcm[i] = (int16_t)(i * 37 - 18000);
  struct http_request r;
  assert_int_equal(asr_openai_build(&c, "zh-CN", pcm, 1000, &r), 0);
  assert_string_equal(r.url, "http://127.0.0.1:8081/v1/audio/transcriptions");
  assert_string_equal(http_request_header(&r, "Authorization"), "Bearer sk-123");
  const char *ct = http_request_header(&r, "Content-Type");
  assert_non_null(ct);
  assert_int_equal(strncmp(ct, "multipart/form-data; boundary=", 30), 0);
  const char *boundary = ct + 30;
  size_t n;
  const char *v = field(&r, boundary, "model", &n);
  assert_true(v && n == 9 && memcmp(v, "whisper-1", 9) == 0);
  v = field(&r, boundary, "language", &n);
  assert_true(v && n == 2 && memcmp(v, "zh", 2) == 0); /* ISO 639-1 */
  v = field(&r, boundary, "prompt", &n);
  assert_true(v && n == strlen(c.prompt) && memcmp(v, c.prompt, n) == 0);
  v = field(&r, boundary, "response_format", &n);
  assert_true(v && n == 4 && memcmp(v, "json", 4) == 0);
  const uint8_t *wav = (const uint8_t *)field(&r, boundary, "file", &n);
  assert_non_null(wav);
  assert_int_equal(n, 44 + 2000);
  assert_memory_equal(wav, "RIFF", 4);
  assert_int_equal(le32(wav + 4), 36 + 2000);
  assert_memory_equal(wav + 8, "WAVEfmt ", 8);
  assert_int_equal(le32(wav + 16), 16);
  assert_int_equal(wav[20] | wav[21] << 8, 1);  /* PCM */
  assert_int_equal(wav[22] | wav[23] << 8, 1);  /* mono */
  assert_int_equal(le32(wav + 24), 16000);
  assert_int_equal(le32(wav + 28), 32000);
  assert_int_equal(wav[34] | wav[35] << 8, 16);
  assert_memory_equal(wav + 36, "data", 4);
  assert_int_equal(le32(wav + 40), 2000);
  for (int i = 0; i < 1000; i++) assert_int_equal((int16_t)(wav[44 + 2 * i] | wav[45 + 2 * i] << 8), pcm[i]);
  assert_non_null(memmem(r.body, r.body_len, "filename=\"audio.wav\"\r\nContent-Type: audio/wav", 45));
  char closing[128];
  snprintf(closing, sizeof closing, "\r\n--%s--\r\n", boundary);
  assert_memory_equal(r.body + r.body_len - strlen(closing), closing, strlen(closing));
  http_request_clear(&r);
}

static void no_language_and_no_prompt_are_left_out(void **state) {
  struct svc_conf c = conf();
  c.prompt[0] = c.key[0] = '\0';
  int16_t pcm[10] = {0};
  struct http_request r;
  assert_int_equal(asr_openai_build(&c, NULL, pcm, 10, &r), 0);
  assert_null(memmem(r.body, r.body_len, "name=\"language\"", 15));
  assert_null(memmem(r.body, r.body_len, "name=\"prompt\"", 13));
  assert_null(http_request_header(&r, "Authorization"));
  http_request_clear(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(multipart_carries_fields_and_a_wav_file),
      cmocka_unit_test(no_language_and_no_prompt_are_left_out),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
