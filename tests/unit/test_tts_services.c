/* tts openai, elevenlabs, azure: each service's request as it goes on the wire. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "engines/service.h"

static struct svc_conf conf(const char *service, const char *base, const char *model, const char *voice) {
  struct svc_conf c = {.service = service, .rate = 100};
  snprintf(c.base_url, sizeof c.base_url, "%s", base);
  snprintf(c.model, sizeof c.model, "%s", model);
  snprintf(c.voice, sizeof c.voice, "%s", voice);
  snprintf(c.key, sizeof c.key, "k-123");
  return c;
}

static void openai_speech_asks_for_pcm(void **state) {
  struct svc_conf c = conf("OpenAI speech", "https://api.openai.com/v1", "tts-1", "alloy");
  struct tts_params p = {.text = "Hello.", .language = "en", .rate = 150};
  struct http_request r;
  assert_int_equal(tts_openai_build(&c, &p, &r), 0);
  assert_string_equal(r.url, "https://api.openai.com/v1/audio/speech");
  assert_string_equal(http_request_header(&r, "Authorization"), "Bearer k-123");
  json_t *b = json_loadb(r.body, r.body_len, 0, NULL);
  assert_string_equal(json_string_value(json_object_get(b, "model")), "tts-1");
  assert_string_equal(json_string_value(json_object_get(b, "input")), "Hello.");
  assert_string_equal(json_string_value(json_object_get(b, "voice")), "alloy");
  assert_string_equal(json_string_value(json_object_get(b, "response_format")), "pcm");
  assert_true(json_real_value(json_object_get(b, "speed")) > 1.49);
  json_decref(b);
  http_request_clear(&r);
  p.voice = "nova";
  p.rate = 100;
  assert_int_equal(tts_openai_build(&c, &p, &r), 0);
  b = json_loadb(r.body, r.body_len, 0, NULL);
  assert_string_equal(json_string_value(json_object_get(b, "voice")), "nova");
  assert_null(json_object_get(b, "speed"));
  json_decref(b);
  http_request_clear(&r);
}

static void elevenlabs_streams_pcm_16000_for_the_voice(void **state) {
  struct svc_conf c = conf("ElevenLabs text-to-speech", "https://api.elevenlabs.io", "eleven_flash_v2_5",
                           "21m00Tcm4TlvDq8ikWAM");
  struct tts_params p = {.text = "Hi there", .language = "en", .rate = 100};
  struct http_request r;
  assert_int_equal(tts_elevenlabs_build(&c, &p, &r), 0);
  assert_string_equal(r.url, "https://api.elevenlabs.io/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream"
                             "?output_format=pcm_16000");
  assert_string_equal(http_request_header(&r, "xi-api-key"), "k-123");
  assert_null(http_request_header(&r, "Authorization"));
  json_t *b = json_loadb(r.body, r.body_len, 0, NULL);
  assert_string_equal(json_string_value(json_object_get(b, "text")), "Hi there");
  assert_string_equal(json_string_value(json_object_get(b, "model_id")), "eleven_flash_v2_5");
  json_decref(b);
  http_request_clear(&r);
  p.voice = "../admin"; /* a voice id goes into the path: nothing but letters, digits, - and _ */
  assert_int_equal(tts_elevenlabs_build(&c, &p, &r), -EINVAL);
  assert_null(r.url);
}

static void azure_sends_escaped_ssml_for_the_language(void **state) {
  struct svc_conf c = conf("Azure Speech", "https://eastus.tts.speech.microsoft.com", "", "");
  struct tts_params p = {.text = "1 < 2 & \"x\"", .language = "zh", .rate = 120};
  struct http_request r;
  assert_int_equal(tts_azure_build(&c, &p, &r), 0);
  assert_string_equal(r.url, "https://eastus.tts.speech.microsoft.com/cognitiveservices/v1");
  assert_string_equal(http_request_header(&r, "Ocp-Apim-Subscription-Key"), "k-123");
  assert_string_equal(http_request_header(&r, "X-Microsoft-OutputFormat"), "raw-16khz-16bit-mono-pcm");
  assert_string_equal(http_request_header(&r, "Content-Type"), "application/ssml+xml");
  assert_string_equal(r.body, "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' "
                              "xml:lang='zh-CN'><voice name='zh-CN-XiaoxiaoNeural'><prosody rate='+20%'>"
                              "1 &lt; 2 &amp; &quot;x&quot;</prosody></voice></speak>");
  http_request_clear(&r);
  snprintf(c.voice, sizeof c.voice, "en-GB-SoniaNeural");
  p = (struct tts_params){.text = "Hello", .language = "en-GB", .rate = 100};
  assert_int_equal(tts_azure_build(&c, &p, &r), 0);
  assert_string_equal(r.body, "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' "
                              "xml:lang='en-GB'><voice name='en-GB-SoniaNeural'>Hello</voice></speak>");
  http_request_clear(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(openai_speech_asks_for_pcm),
      cmocka_unit_test(elevenlabs_streams_pcm_16000_for_the_voice),
      cmocka_unit_test(azure_sends_escaped_ssml_for_the_language),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
