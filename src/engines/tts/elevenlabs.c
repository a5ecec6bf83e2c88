/*
 * TTS backend "elevenlabs": ElevenLabs text-to-speech, streamed.
 *
 * POST {tts_base_url}/v1/text-to-speech/{voice}/stream?output_format=pcm_16000
 * with the key in xi-api-key: the body is raw 16 kHz 16-bit little-endian
 * mono PCM, streamed as it is generated. The default model is the
 * low-latency multilingual one.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "engines/service.h"

#define RATE 16000

int tts_elevenlabs_build(const struct svc_conf *c, const struct tts_params *p, struct http_request *out) {
  memset(out, 0, sizeof *out);
  out->method = "POST";
  out->service = c->service;
  const char *voice = p->voice && *p->voice ? p->voice : c->voice;
  for (const char *v = voice; *v; v++) /* voice ids are path segments: keep them plain */
    if (!isalnum((unsigned char)*v) && *v != '-' && *v != '_') return -EINVAL;
  int rate = p->rate > 0 ? p->rate : c->rate;
  json_t *root = json_pack("{s:s,s:s}", "text", p->text ? p->text : "", "model_id", c->model);
  if (!root) return -EINVAL;
  if (rate > 0 && rate != 100) {
    double speed = rate / 100.0; /* ElevenLabs accepts 0.7 .. 1.2 */
    json_object_set_new(root, "voice_settings",
                        json_pack("{s:f}", "speed", speed < 0.7 ? 0.7 : speed > 1.2 ? 1.2 : speed));
  }
  out->body = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  int rc = out->body ? 0 : -ENOMEM;
  if (!rc) out->body_len = strlen(out->body);
  if (!rc)
    rc = http_request_set_url(out, "%s/v1/text-to-speech/%s/stream?output_format=pcm_%d", c->base_url,
                              voice, RATE);
  if (!rc) rc = http_request_add_header(out, "Content-Type: application/json");
  if (!rc && c->key[0]) rc = http_request_add_header(out, "xi-api-key: %s", c->key);
  if (rc) http_request_clear(out);
  return rc;
}

static int speak(void *engine, const struct tts_params *p, struct mailbox *home, const struct tts_cb *cb,
                 struct tts_job **out) {
  return svc_tts_speak(engine, &tts_elevenlabs, RATE, tts_elevenlabs_build, p, home, cb, out);
}

static int open_engine(void **out, const struct engine_env *env, char *err, size_t errlen) {
  const struct config *cfg = env->cfg;
  struct svc_conf *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  int rc = svc_conf_init(c, env, "ElevenLabs text-to-speech", cfg->tts_base_url, "https://api.elevenlabs.io",
                         cfg->tts_model, "eleven_flash_v2_5", cfg->tts_api_key_env, "ELEVENLABS_API_KEY",
                         err, errlen);
  if (rc) {
    free(c);
    return rc;
  }
  /* "Rachel", one of the voices every account has */
  snprintf(c->voice, sizeof c->voice, "%s", cfg->tts_voice[0] ? cfg->tts_voice : "21m00Tcm4TlvDq8ikWAM");
  c->rate = cfg->tts_rate;
  svc_conf_warm(c);
  *out = c;
  return 0;
}

static void close_engine(void *engine) { free(engine); }

const struct tts_backend tts_elevenlabs = {
    .name = "elevenlabs",
    .open = open_engine,
    .close = close_engine,
    .speak = speak,
};
