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
  svc_request_post(c, out);
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
  int rc = svc_request_json(out, root);
  if (!rc)
    rc = http_request_set_url(out, "%s/v1/text-to-speech/%s/stream?output_format=pcm_%d", c->base_url,
                              voice, RATE);
  if (!rc && c->key[0]) rc = http_request_add_header(out, "xi-api-key: %s", c->key);
  if (rc) http_request_clear(out);
  return rc;
}

static int speak(void *engine, const struct tts_params *p, struct mailbox *home, const struct tts_cb *cb,
                 struct tts_job **out) {
  return svc_tts_speak(engine, &tts_elevenlabs, RATE, tts_elevenlabs_build, p, home, cb, out);
}

static int open_engine(void **out, const struct engine_env *env, char *err, size_t errlen) {
  /* the default voice is "Rachel", one every account has */
  return svc_tts_open(out, env, "ElevenLabs text-to-speech", "https://api.elevenlabs.io", "eleven_flash_v2_5",
                      "ELEVENLABS_API_KEY", "21m00Tcm4TlvDq8ikWAM", err, errlen);
}

const struct tts_backend tts_elevenlabs = {
    .name = "elevenlabs",
    .open = open_engine,
    .close = free,
    .speak = speak,
};
