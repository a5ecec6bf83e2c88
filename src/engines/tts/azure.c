/*
 * TTS backend "azure": Azure AI Speech text-to-speech REST.
 *
 * POST {tts_base_url}/cognitiveservices/v1 (the base names the resource's
 * region, e.g. https://eastus.tts.speech.microsoft.com) with SSML, the key
 * in Ocp-Apim-Subscription-Key and X-Microsoft-OutputFormat
 * raw-16khz-16bit-mono-pcm: the body is headerless PCM, streamed. The
 * voice is tts_voice, or a neural voice for the call's language.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/service.h"

#define RATE 16000

static const struct {
  const char *lang, *locale, *voice;
} voices[] = {
    {"en", "en-US", "en-US-JennyNeural"},   {"zh", "zh-CN", "zh-CN-XiaoxiaoNeural"},
    {"ja", "ja-JP", "ja-JP-NanamiNeural"},  {"ko", "ko-KR", "ko-KR-SunHiNeural"},
    {"de", "de-DE", "de-DE-KatjaNeural"},   {"fr", "fr-FR", "fr-FR-DeniseNeural"},
    {"es", "es-ES", "es-ES-ElviraNeural"},  {"it", "it-IT", "it-IT-ElsaNeural"},
    {"pt", "pt-BR", "pt-BR-FranciscaNeural"}, {"ru", "ru-RU", "ru-RU-SvetlanaNeural"},
};

static void xml_escape(FILE *f, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    case '\'': fputs("&apos;", f); break;
    default: fputc(*s, f);
    }
  }
}

int tts_azure_build(const struct svc_conf *c, const struct tts_params *p, struct http_request *out) {
  svc_request_post(c, out);
  const char *lang = p->language && *p->language ? p->language : "en";
  const char *locale = lang, *voice = p->voice && *p->voice ? p->voice : c->voice;
  for (size_t i = 0; i < sizeof voices / sizeof voices[0]; i++) {
    if (strncmp(lang, voices[i].lang, 2) == 0 && (lang[2] == '\0' || lang[2] == '-' || lang[2] == '_')) {
      if (!lang[2]) locale = voices[i].locale;
      if (!*voice) voice = voices[i].voice;
      break;
    }
  }
  if (!*voice) voice = voices[0].voice;
  int rate = p->rate > 0 ? p->rate : c->rate;
  char *body = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&body, &len);
  if (!f) return -ENOMEM;
  fputs("<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='", f);
  xml_escape(f, locale);
  fputs("'><voice name='", f);
  xml_escape(f, voice);
  fputs("'>", f);
  if (rate > 0 && rate != 100) fprintf(f, "<prosody rate='%+d%%'>", rate - 100);
  xml_escape(f, p->text ? p->text : "");
  if (rate > 0 && rate != 100) fputs("</prosody>", f);
  fputs("</voice></speak>", f);
  if (svc_request_memstream(out, f, &body, &len)) return -ENOMEM;
  int rc = http_request_set_url(out, "%s/cognitiveservices/v1", c->base_url);
  if (!rc) rc = http_request_add_header(out, "Content-Type: application/ssml+xml");
  if (!rc) rc = http_request_add_header(out, "X-Microsoft-OutputFormat: raw-16khz-16bit-mono-pcm");
  if (!rc && c->key[0]) rc = http_request_add_header(out, "Ocp-Apim-Subscription-Key: %s", c->key);
  if (rc) http_request_clear(out);
  return rc;
}

static int speak(void *engine, const struct tts_params *p, struct mailbox *home, const struct tts_cb *cb,
                 struct tts_job **out) {
  return svc_tts_speak(engine, &tts_azure, RATE, tts_azure_build, p, home, cb, out);
}

static int open_engine(void **out, const struct engine_env *env, char *err, size_t errlen) {
  /* no model: the voice and the output format say it all */
  return svc_tts_open(out, env, "Azure Speech", "https://eastus.tts.speech.microsoft.com", NULL,
                      "AZURE_SPEECH_KEY", "", err, errlen);
}

const struct tts_backend tts_azure = {
    .name = "azure",
    .open = open_engine,
    .close = free,
    .speak = speak,
};
