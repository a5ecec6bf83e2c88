/*
 * ASR backend "openai": OpenAI-compatible /audio/transcriptions.
 *
 * Whisper-style services (OpenAI, Groq, whisper.cpp's server, the
 * faster-whisper servers) transcribe a whole file, so the session keeps the
 * utterance's 16 kHz PCM in memory while the caller speaks and, the moment
 * the end of speech is decided, sends it as a WAV file built in memory in a
 * multipart/form-data POST (no temporary file) with the model, language,
 * prompt and response_format=json. The reply's "text" is the final result;
 * there are no partials.
 *
 * The session lives on a media worker, which only appends each fed frame
 * to the session's buffer. The request (a copy of the whole utterance, a
 * few hundred kilobytes) is built on the control loop, where its transfer
 * runs anyway: the worker's part of finishing is one message.
 */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "engines/service.h"

#define MAX_SECONDS 120 /* longer utterances are cut: no service takes unbounded uploads */
#define MAX_REPLY (1024 * 1024)

struct session {
  struct asr_session base; /* first: the eng_job is at offset 0 */
  struct svc_call call;
  const struct svc_conf *conf;
  char language[16];
  int16_t *pcm;
  size_t n, cap;
  int finished, truncated;
  char *reply;
  size_t reply_len;
};

#define SESSION_OF_CALL(sc) ((struct session *)((char *)(sc) - offsetof(struct session, call)))

/* Whisper takes ISO 639-1 codes: "zh-CN" is sent as "zh". */
static void base_language(char *out, size_t outlen, const char *lang) {
  size_t n = lang ? strcspn(lang, "-_") : 0;
  snprintf(out, outlen, "%.*s", (int)n, lang ? lang : "");
}

/* Writes n samples as 16-bit little-endian, as WAV wants, whatever the host is. */
static void put_le16(FILE *f, const int16_t *pcm, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  fwrite(pcm, sizeof *pcm, n, f); /* already the wire's order: one bulk copy */
#else
  uint8_t buf[1024];
  while (n) {
    size_t k = n < sizeof buf / 2 ? n : sizeof buf / 2;
    for (size_t i = 0; i < k; i++) {
      buf[2 * i] = (uint8_t)((uint16_t)pcm[i] & 0xff);
      buf[2 * i + 1] = (uint8_t)((uint16_t)pcm[i] >> 8);
    }
    fwrite(buf, 2, k, f);
    pcm += k;
    n -= k;
  }
#endif
}

static void add_field(FILE *f, const char *boundary, const char *name, const char *value) {
  fprintf(f, "--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n", boundary, name, value);
}

int asr_openai_build(const struct svc_conf *c, const char *language, const int16_t *pcm, size_t n,
                     struct http_request *out) {
  svc_request_post(c, out);
  char boundary[64], lang[16];
  snprintf(boundary, sizeof boundary, "tingshuo-%016llx",
           (unsigned long long)(uv_hrtime() ^ ((uintptr_t)pcm * 0x9E3779B97F4A7C15ull)));
  base_language(lang, sizeof lang, language);
  char *body = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&body, &len);
  if (!f) return -ENOMEM;
  add_field(f, boundary, "model", c->model);
  if (*lang) add_field(f, boundary, "language", lang);
  if (c->prompt[0]) add_field(f, boundary, "prompt", c->prompt);
  add_field(f, boundary, "response_format", "json");
  fprintf(f, "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audio.wav\"\r\n"
             "Content-Type: audio/wav\r\n\r\n", boundary);
  uint8_t wav[44];
  svc_wav_header(wav, n, ASR_RATE);
  fwrite(wav, 1, sizeof wav, f);
  put_le16(f, pcm, n);
  fprintf(f, "\r\n--%s--\r\n", boundary);
  if (svc_request_memstream(out, f, &body, &len)) return -ENOMEM;
  int rc = http_request_set_url(out, "%s/audio/transcriptions", c->base_url);
  if (!rc) rc = http_request_add_header(out, "Content-Type: multipart/form-data; boundary=%s", boundary);
  if (!rc) rc = http_request_add_header(out, "Accept: application/json");
  if (!rc && c->key[0]) rc = http_request_add_header(out, "Authorization: Bearer %s", c->key);
  if (rc) http_request_clear(out);
  return rc;
}

/* ---- home thread ---- */

static void deliver_final(struct eng_job *j, void *arg) {
  struct asr_session *s = (struct asr_session *)j;
  s->cb.final(s->cb.user, arg);
}

static void deliver_error(struct eng_job *j, void *arg) {
  struct asr_session *s = (struct asr_session *)j;
  s->cb.error(s->cb.user, arg);
}

/* ---- control loop ---- */

static int on_data(struct svc_call *sc, const char *buf, size_t len) {
  struct session *s = SESSION_OF_CALL(sc);
  if (s->reply_len + len > MAX_REPLY) return -EMSGSIZE;
  char *p = realloc(s->reply, s->reply_len + len + 1);
  if (!p) return -ENOMEM;
  memcpy(p + s->reply_len, buf, len);
  s->reply = p;
  s->reply_len += len;
  p[s->reply_len] = '\0';
  return 0;
}

static void on_done(struct svc_call *sc, const struct http_result *r) {
  struct session *s = SESSION_OF_CALL(sc);
  char msg[768];
  if (r->rc == 0 && r->status / 100 == 2) {
    json_t *root = s->reply ? json_loadb(s->reply, s->reply_len, 0, NULL) : NULL;
    const char *text = json_string_value(json_object_get(root, "text"));
    if (text) {
      svc_post_text(&s->base.job, deliver_final, text, strlen(text));
      json_decref(root);
      return;
    }
    json_decref(root);
    snprintf(msg, sizeof msg, "%s: the response has no transcript (expected JSON with \"text\")",
             sc->conf->service);
  } else if (r->rc == -ECANCELED) {
    snprintf(msg, sizeof msg, "%s: the response is too large", sc->conf->service);
  } else {
    svc_error(sc->conf, r, msg, sizeof msg);
  }
  svc_scrub(sc->conf, msg, sizeof msg);
  svc_post_text(&s->base.job, deliver_error, msg, strlen(msg));
}

static const struct svc_call_ops ops = {.data = on_data, .done = on_done};

static void post_build_error(struct session *s, int rc) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: could not build the request (%s)", s->conf->service, strerror(-rc));
  svc_post_text(&s->base.job, deliver_error, msg, strlen(msg));
}

/* Control loop: the utterance becomes the request, which starts. */
static void build_and_start(struct session *s) {
  int rc = asr_openai_build(s->conf, s->language, s->pcm, s->n, &s->call.req);
  free(s->pcm); /* the request holds its own copy now */
  s->pcm = NULL;
  s->n = s->cap = 0;
  if (!rc) rc = svc_call_start(&s->call);
  if (rc) post_build_error(s, rc);
}

struct build_msg {
  struct mailbox_run run;
  struct session *s; /* holds a job reference */
};

static void build_run(struct mailbox_run *r, int run) {
  struct session *s = ((struct build_msg *)r)->s;
  free(r);
  if (run && !eng_job_cancelled(&s->base.job)) build_and_start(s);
  eng_job_unref(&s->base.job);
}

/* ---- the backend ---- */

static void session_destroy(struct eng_job *j) {
  struct session *s = (struct session *)j;
  svc_call_clear(&s->call);
  free(s->pcm);
  free(s->reply);
  free(s);
}

static void session_cancel(struct eng_job *j) {
  struct session *s = (struct session *)j;
  if (s->finished) svc_call_cancel(&s->call);
}

static int start(void *engine, const struct asr_params *p, struct mailbox *home, const struct asr_cb *cb,
                 struct asr_session **out) {
  const struct svc_conf *c = engine;
  struct session *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  eng_job_init(&s->base.job, home, session_destroy);
  s->base.be = &asr_openai;
  s->base.cb = *cb;
  s->base.job.on_cancel = session_cancel;
  s->conf = c;
  snprintf(s->language, sizeof s->language, "%s", c->language[0] ? c->language
                                                   : p && p->language ? p->language : "");
  svc_call_init(&s->call, &s->base.job, c, &ops);
  *out = &s->base;
  return 0;
}

static void feed(struct asr_session *base, const int16_t *pcm, size_t n) {
  struct session *s = (struct session *)base;
  if (s->finished) return;
  size_t room = (size_t)MAX_SECONDS * ASR_RATE - s->n;
  if (n > room) {
    if (!s->truncated)
      log_call_warn("asr", s->base.call_id, "%s: utterance longer than %d s is cut", s->conf->service,
                    MAX_SECONDS);
    s->truncated = 1;
    n = room;
  }
  if (s->n + n > s->cap) {
    size_t cap = s->cap ? s->cap * 2 : ASR_RATE * 4;
    while (cap < s->n + n) cap *= 2;
    int16_t *p = realloc(s->pcm, cap * sizeof *p);
    if (!p) return; /* the audio is lost; the transcript will say what survived */
    s->pcm = p;
    s->cap = cap;
  }
  memcpy(s->pcm + s->n, pcm, n * sizeof *pcm);
  s->n += n;
}

/* Home thread: from here on the buffer is the control loop's, until the request is built. */
static void finish(struct asr_session *base) {
  struct session *s = (struct session *)base;
  if (s->finished) return;
  s->finished = 1;
  struct build_msg *m = calloc(1, sizeof *m);
  if (!m) {
    post_build_error(s, -ENOMEM);
    return;
  }
  m->run.hdr.type = MAILBOX_RUN;
  m->run.fn = build_run;
  m->s = s;
  eng_job_ref(&s->base.job);
  mailbox_post(s->conf->control, &m->run.hdr);
}

static int open_engine(void **out, const struct engine_env *env, char *err, size_t errlen) {
  const struct config *cfg = env->cfg;
  struct svc_conf *c;
  int rc = svc_conf_new(&c, env, "OpenAI transcriptions", cfg->asr_base_url, "https://api.openai.com/v1",
                        cfg->asr_model, "whisper-1", cfg->asr_api_key_env, "OPENAI_API_KEY", err, errlen);
  if (rc) return rc;
  snprintf(c->language, sizeof c->language, "%s", cfg->asr_language);
  snprintf(c->prompt, sizeof c->prompt, "%s", cfg->asr_prompt);
  svc_conf_warm(c);
  *out = c;
  return 0;
}

const struct asr_backend asr_openai = {
    .name = "openai",
    .open = open_engine,
    .close = free,
    .start = start,
    .feed = feed,
    .finish = finish,
};
