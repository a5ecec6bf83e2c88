/*
 * TTS backend "openai": OpenAI-compatible /audio/speech.
 *
 * POST {tts_base_url}/audio/speech with response_format "pcm": the body is
 * raw 24 kHz 16-bit little-endian mono, sent as it is synthesised, so
 * playback starts with the first bytes. Kokoro and other OpenAI-compatible
 * speech servers take the same request.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "engines/service.h"

#define RATE 24000

int tts_openai_build(const struct svc_conf *c, const struct tts_params *p, struct http_request *out) {
  svc_request_post(c, out);
  const char *voice = p->voice && *p->voice ? p->voice : c->voice;
  int rate = p->rate > 0 ? p->rate : c->rate;
  json_t *root = json_pack("{s:s,s:s,s:s,s:s}", "model", c->model, "input", p->text ? p->text : "",
                           "voice", voice, "response_format", "pcm");
  if (!root) return -EINVAL;
  if (rate > 0 && rate != 100) {
    double speed = rate / 100.0;
    json_object_set_new(root, "speed", json_real(speed < 0.25 ? 0.25 : speed > 4 ? 4 : speed));
  }
  int rc = svc_request_json(out, root);
  if (!rc) rc = http_request_set_url(out, "%s/audio/speech", c->base_url);
  if (!rc && c->key[0]) rc = http_request_add_header(out, "Authorization: Bearer %s", c->key);
  if (rc) http_request_clear(out);
  return rc;
}

static int speak(void *engine, const struct tts_params *p, struct mailbox *home, const struct tts_cb *cb,
                 struct tts_job **out) {
  return svc_tts_speak(engine, &tts_openai, RATE, tts_openai_build, p, home, cb, out);
}

static int open_engine(void **out, const struct engine_env *env, char *err, size_t errlen) {
  return svc_tts_open(out, env, "OpenAI speech", "https://api.openai.com/v1", "tts-1", "OPENAI_API_KEY",
                      "alloy", err, errlen);
}

const struct tts_backend tts_openai = {
    .name = "openai",
    .open = open_engine,
    .close = free,
    .speak = speak,
};
