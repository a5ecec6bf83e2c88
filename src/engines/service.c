/*
 * Service backends' shared plumbing: settings, the trip of a request to the
 * control loop and back, and error messages without secrets.
 *
 * Reference counting follows engines/job.h: svc_call_start takes one job
 * reference for the transfer (first held by the start closure, then by the
 * running transfer, let go when it ends or is cancelled); svc_call_cancel
 * takes one for the abort closure. Both closures go through the same
 * mailbox in order, so an abort always finds the transfer its start made,
 * or finds the job cancelled before it started and nothing to abort.
 */
#include "engines/service.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/redact.h"

/* ---- settings ---- */

static void copy(char *dst, size_t size, const char *src) { snprintf(dst, size, "%s", src ? src : ""); }

int svc_conf_init(struct svc_conf *c, const struct engine_env *env, const char *service,
                  const char *base_url, const char *default_base, const char *model,
                  const char *default_model, const char *key_env, const char *default_env,
                  char *err, size_t errlen) {
  c->service = service;
  if (!env->control || !env->http) {
    snprintf(err, errlen, "%s needs the server's HTTP client", service);
    return -EINVAL;
  }
  c->http = env->http;
  c->control = env->control;
  copy(c->base_url, sizeof c->base_url, base_url && *base_url ? base_url : default_base);
  size_t n = strlen(c->base_url);
  while (n > 0 && c->base_url[n - 1] == '/') c->base_url[--n] = '\0';
  if (strncmp(c->base_url, "http://", 7) != 0 && strncmp(c->base_url, "https://", 8) != 0) {
    snprintf(err, errlen, "%s: base URL \"%s\" is not an http:// or https:// URL", service, c->base_url);
    return -EINVAL;
  }
  copy(c->model, sizeof c->model, model && *model ? model : default_model);
  const char *var = key_env && *key_env ? key_env : default_env;
  const char *key = var && *var ? getenv(var) : NULL;
  copy(c->key, sizeof c->key, key);
  if (!key || !*key)
    log_warn("engines", "%s: environment variable %s is not set; requests carry no API key", service,
             var ? var : "(none)");
  return 0;
}

int svc_conf_new(struct svc_conf **out, const struct engine_env *env, const char *service,
                 const char *base_url, const char *default_base, const char *model,
                 const char *default_model, const char *key_env, const char *default_env,
                 char *err, size_t errlen) {
  struct svc_conf *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  int rc = svc_conf_init(c, env, service, base_url, default_base, model, default_model, key_env,
                         default_env, err, errlen);
  if (rc) {
    free(c);
    return rc;
  }
  *out = c;
  return 0;
}

struct warm_msg {
  struct mailbox_run run;
  struct http_client *http;
  const char *service;
  char url[];
};

static void warm_run(struct mailbox_run *r, int run) {
  struct warm_msg *m = (struct warm_msg *)r;
  if (run) http_client_keep_warm(m->http, m->url, m->service);
  free(m);
}

void svc_conf_warm(const struct svc_conf *c) {
  size_t n = strlen(c->base_url);
  struct warm_msg *m = calloc(1, sizeof *m + n + 1);
  if (!m) return;
  m->run.hdr.type = MAILBOX_RUN;
  m->run.fn = warm_run;
  m->http = c->http;
  m->service = c->service;
  memcpy(m->url, c->base_url, n + 1);
  mailbox_post(c->control, &m->run.hdr);
}

/* ---- building a request ---- */

void svc_request_post(const struct svc_conf *c, struct http_request *out) {
  memset(out, 0, sizeof *out);
  out->method = "POST";
  out->service = c->service;
}

int svc_request_json(struct http_request *out, json_t *root) {
  if (!root) return -EINVAL;
  out->body = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  if (!out->body) return -ENOMEM;
  out->body_len = strlen(out->body);
  return http_request_add_header(out, "Content-Type: application/json");
}

int svc_request_memstream(struct http_request *out, FILE *f, char **body, size_t *len) {
  int bad = ferror(f);
  if (fclose(f) != 0 || bad) {
    free(*body);
    *body = NULL;
    return -ENOMEM;
  }
  out->body = *body;
  out->body_len = *len;
  return 0;
}

/* ---- a request on the control loop ---- */

static int on_head(void *user, long status, const char *ct) {
  struct svc_call *sc = user;
  return sc->ops->head ? sc->ops->head(sc, status, ct) : 0;
}

static int on_data(void *user, const char *buf, size_t len) {
  struct svc_call *sc = user;
  return sc->ops->data ? sc->ops->data(sc, buf, len) : 0;
}

static void on_done(void *user, const struct http_result *r) {
  struct svc_call *sc = user;
  struct eng_job *job = sc->job;
  sc->t = NULL;
  if (r->rc == -ETIMEDOUT) atomic_store(&job->timed_out, 1);
  if (r->rc != -ESHUTDOWN && !eng_job_cancelled(job)) sc->ops->done(sc, r);
  eng_job_unref(job); /* the transfer's reference; sc may be gone after this */
}

struct call_msg {
  struct mailbox_run run;
  struct svc_call *sc;
};

static void start_run(struct mailbox_run *r, int run) {
  struct svc_call *sc = ((struct call_msg *)r)->sc;
  free(r);
  if (run && !eng_job_cancelled(sc->job)) {
    struct http_callbacks cb = {.head = on_head, .data = on_data, .done = on_done, .user = sc};
    int rc = http_start(sc->conf->http, &sc->req, &cb, &sc->t);
    if (rc == 0) return; /* the transfer holds the reference now */
    char msg[256];
    snprintf(msg, sizeof msg, "%s: could not start the request (%s)", sc->conf->service, strerror(-rc));
    struct http_result res = {.rc = rc, .message = msg, .body = "", .retry_after_ms = -1};
    sc->ops->done(sc, &res);
  }
  eng_job_unref(sc->job);
}

static void cancel_run(struct mailbox_run *r, int run) {
  struct svc_call *sc = ((struct call_msg *)r)->sc;
  struct eng_job *job = sc->job;
  free(r);
  if (run && sc->t) {
    http_cancel(sc->t);
    sc->t = NULL;
    eng_job_unref(job); /* the transfer's */
  }
  eng_job_unref(job); /* this closure's */
}

static int post(struct svc_call *sc, void (*fn)(struct mailbox_run *, int)) {
  struct call_msg *m = calloc(1, sizeof *m);
  if (!m) return -ENOMEM;
  m->run.hdr.type = MAILBOX_RUN;
  m->run.fn = fn;
  m->sc = sc;
  eng_job_ref(sc->job);
  mailbox_post(sc->conf->control, &m->run.hdr);
  return 0;
}

void svc_call_init(struct svc_call *sc, struct eng_job *job, const struct svc_conf *conf,
                   const struct svc_call_ops *ops) {
  memset(sc, 0, sizeof *sc);
  sc->job = job;
  sc->conf = conf;
  sc->ops = ops;
}

int svc_call_start(struct svc_call *sc) {
  if (!sc->req.service) sc->req.service = sc->conf->service;
  return post(sc, start_run);
}

void svc_call_cancel(struct svc_call *sc) {
  if (post(sc, cancel_run) != 0)
    log_error("engines", "%s: out of memory; the request runs to its end", sc->conf->service);
}

void svc_call_clear(struct svc_call *sc) { http_request_clear(&sc->req); }

int svc_post_text(struct eng_job *j, eng_job_fn fn, const char *text, size_t len) {
  char *copy_ = strndup(text, len);
  if (!copy_) return -ENOMEM;
  return eng_job_post(j, fn, copy_);
}

/* ---- messages ---- */

static int keyish_char(int ch) { return isalnum(ch) || ch == '-' || ch == '_' || ch == '*' || ch == '.'; }

/* An API key's shape: the sk-/sk_ prefix of OpenAI, Anthropic and ElevenLabs keys, or a long token. */
static int looks_like_key(const char *s, size_t n) {
  if (n >= 5 && (strncmp(s, "sk-", 3) == 0 || strncmp(s, "sk_", 3) == 0)) return 1;
  if (n < 32) return 0;
  int digits = 0, letters = 0;
  for (size_t i = 0; i < n; i++) {
    digits += isdigit((unsigned char)s[i]) != 0;
    letters += isalpha((unsigned char)s[i]) != 0;
  }
  return digits > 0 && letters > 0;
}

/* The key in any case or part (core/redact.h) from text into msg; without memory, the mask alone. */
static void redact_key(const struct svc_conf *c, const char *text, char *msg, size_t size) {
  struct redact *r = NULL;
  if (!c || !c->key[0]) {
    memmove(msg, text, strlen(text) + 1);
    return;
  }
  if (redact_new(&r) == 0 && redact_add(r, c->key) == 0) redact_text(r, text, msg, size);
  else snprintf(msg, size, "%s", REDACT_MASK);
  redact_free(r);
}

void svc_scrub(const struct svc_conf *c, char *msg, size_t size) {
  static const char mask[] = "[redacted]";
  char *out = malloc(size);
  if (!out || !size) {
    if (size) msg[0] = '\0'; /* no memory to scrub with: say nothing rather than leak */
    free(out);
    return;
  }
  size_t keylen = c && c->key[0] ? strlen(c->key) : 0, o = 0;
  for (size_t i = 0; msg[i] && o + 1 < size;) {
    size_t n = 0;
    if (keylen >= 4 && strncmp(msg + i, c->key, keylen) == 0) n = keylen;
    else if (keyish_char((unsigned char)msg[i]) && (i == 0 || !keyish_char((unsigned char)msg[i - 1]))) {
      while (msg[i + n] && keyish_char((unsigned char)msg[i + n])) n++;
      if (!looks_like_key(msg + i, n)) n = 0;
    }
    if (n) {
      for (size_t k = 0; k < sizeof mask - 1 && o + 1 < size; k++) out[o++] = mask[k];
      i += n;
    } else {
      out[o++] = msg[i++];
    }
  }
  out[o] = '\0';
  redact_key(c, out, msg, size);
  free(out);
}

/* The service's own words from an error body, or "" when it has none we can use. */
static void error_detail(const char *body, size_t len, char *out, size_t outlen) {
  out[0] = '\0';
  json_t *root = len ? json_loadb(body, len, 0, NULL) : NULL;
  if (root) {
    json_t *e = json_object_get(root, "error"), *d = json_object_get(root, "detail");
    const char *m = NULL;
    if (json_is_object(e)) m = json_string_value(json_object_get(e, "message"));
    else if (json_is_string(e)) m = json_string_value(e);
    if (!m && json_is_object(d)) m = json_string_value(json_object_get(d, "message"));
    else if (!m && json_is_string(d)) m = json_string_value(d);
    if (!m) m = json_string_value(json_object_get(root, "message"));
    if (m) snprintf(out, outlen, "%s", m);
    json_decref(root);
    return;
  }
  /* Plain text is shown, markup (an HTML error page) is not. */
  size_t i = 0;
  while (i < len && isspace((unsigned char)body[i])) i++;
  if (i == len || body[i] == '<') return;
  size_t o = 0;
  for (; i < len && o + 1 < outlen && o < 200; i++) {
    unsigned char ch = (unsigned char)body[i];
    out[o++] = ch < 0x20 ? ' ' : (char)ch;
  }
  while (o > 0 && out[o - 1] == ' ') o--;
  out[o] = '\0';
}

void svc_error(const struct svc_conf *c, const struct http_result *r, char *out, size_t outlen) {
  if (r->rc != 0 || r->status / 100 == 2) {
    snprintf(out, outlen, "%s", r->message ? r->message : "request failed");
  } else {
    char detail[512], extra[64] = "";
    error_detail(r->body, r->body_len, detail, sizeof detail);
    if (r->status == 429)
      snprintf(extra, sizeof extra, r->retry_after_ms >= 0 ? " (rate limited; retry after %d s)" : " (rate limited)",
               (r->retry_after_ms + 999) / 1000);
    else if (r->status == 401 || r->status == 403)
      snprintf(extra, sizeof extra, " (the API key was refused)");
    snprintf(out, outlen, "%s: HTTP %ld%s%s%s", c->service, r->status, extra, *detail ? ": " : "", detail);
  }
  svc_scrub(c, out, outlen);
}

void svc_wav_header(uint8_t h[44], size_t n, int rate) {
  uint32_t data = (uint32_t)(n * 2), byte_rate = (uint32_t)rate * 2;
  const uint32_t fields[] = {36 + data, 16, 1 | (1u << 16), (uint32_t)rate, byte_rate, 2 | (16u << 16), data};
  memcpy(h, "RIFF", 4);
  memcpy(h + 8, "WAVEfmt ", 8);
  memcpy(h + 36, "data", 4);
  const int at[] = {4, 16, 20, 24, 28, 32, 40};
  for (int f = 0; f < 7; f++)
    for (int b = 0; b < 4; b++) h[at[f] + b] = (uint8_t)(fields[f] >> (8 * b));
}

/* ---- streamed PCM speech ---- */

struct tts_stream {
  struct tts_job base; /* first: the eng_job is at offset 0 */
  struct svc_call call;
  int rate;
  int has_carry;
  uint8_t carry; /* the first byte of a sample whose second byte has not come yet */
  char err[256];
};

struct pcm_chunk {
  size_t n;
  int rate;
  int16_t pcm[];
};

#define STREAM_OF_CALL(sc) ((struct tts_stream *)((char *)(sc) - offsetof(struct tts_stream, call)))

static void tts_deliver_audio(struct eng_job *j, void *arg) {
  struct tts_job *t = (struct tts_job *)j;
  struct pcm_chunk *c = arg;
  t->cb.audio(t->cb.user, c->pcm, c->n, c->rate);
}

static void tts_deliver_done(struct eng_job *j, void *arg) {
  struct tts_job *t = (struct tts_job *)j;
  t->cb.done(t->cb.user);
}

static void tts_deliver_error(struct eng_job *j, void *arg) {
  struct tts_job *t = (struct tts_job *)j;
  t->cb.error(t->cb.user, arg);
}

static int tts_head(struct svc_call *sc, long status, const char *ct) {
  struct tts_stream *s = STREAM_OF_CALL(sc);
  if (strncasecmp(ct, "application/json", 16) == 0 || strncasecmp(ct, "text/", 5) == 0) {
    snprintf(s->err, sizeof s->err, "%s: the response is %.60s, not audio", sc->conf->service, ct);
    return -EBADMSG;
  }
  return 0;
}

static int tts_data(struct svc_call *sc, const char *buf, size_t len) {
  struct tts_stream *s = STREAM_OF_CALL(sc);
  const uint8_t *b = (const uint8_t *)buf;
  if (len == 0) return 0; /* curl may call with nothing (an empty body): there is no b[0] */
  size_t n = (len + (size_t)s->has_carry) / 2;
  if (n == 0) {
    s->carry = b[0];
    s->has_carry = 1;
    return 0;
  }
  struct pcm_chunk *c = malloc(sizeof *c + n * sizeof(int16_t));
  if (!c) return -ENOMEM;
  c->n = n;
  c->rate = s->rate;
  size_t i = 0, k = 0;
  if (s->has_carry) {
    c->pcm[k++] = (int16_t)(uint16_t)(s->carry | (b[0] << 8));
    i = 1;
  }
  for (; k < n; k++, i += 2) c->pcm[k] = (int16_t)(uint16_t)(b[i] | (b[i + 1] << 8));
  s->has_carry = i < len;
  if (s->has_carry) s->carry = b[i];
  return eng_job_post(&s->base.job, tts_deliver_audio, c);
}

static void tts_done(struct svc_call *sc, const struct http_result *r) {
  struct tts_stream *s = STREAM_OF_CALL(sc);
  if (r->rc == 0 && r->status / 100 == 2) {
    eng_job_post(&s->base.job, tts_deliver_done, NULL);
    return;
  }
  char msg[768];
  if (r->rc == -ECANCELED && s->err[0]) snprintf(msg, sizeof msg, "%s", s->err);
  else svc_error(sc->conf, r, msg, sizeof msg);
  svc_scrub(sc->conf, msg, sizeof msg);
  svc_post_text(&s->base.job, tts_deliver_error, msg, strlen(msg));
}

static const struct svc_call_ops tts_ops = {.head = tts_head, .data = tts_data, .done = tts_done};

static void tts_destroy(struct eng_job *j) {
  struct tts_stream *s = (struct tts_stream *)j;
  svc_call_clear(&s->call);
  free(s);
}

static void tts_cancel(struct eng_job *j) { svc_call_cancel(&((struct tts_stream *)j)->call); }

int svc_tts_speak(const struct svc_conf *c, const struct tts_backend *be, int sample_rate,
                  svc_tts_build_fn build, const struct tts_params *p, struct mailbox *home,
                  const struct tts_cb *cb, struct tts_job **out) {
  struct tts_stream *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  eng_job_init(&s->base.job, home, tts_destroy);
  s->base.be = be;
  s->base.cb = *cb;
  s->rate = sample_rate;
  svc_call_init(&s->call, &s->base.job, c, &tts_ops);
  int rc = build(c, p, &s->call.req);
  if (!rc) rc = svc_call_start(&s->call);
  if (rc) {
    eng_job_unref(&s->base.job);
    return rc;
  }
  s->base.job.on_cancel = tts_cancel;
  *out = &s->base;
  return 0;
}

int svc_tts_open(void **out, const struct engine_env *env, const char *service, const char *default_base,
                 const char *default_model, const char *default_key_env, const char *default_voice,
                 char *err, size_t errlen) {
  const struct config *cfg = env->cfg;
  struct svc_conf *c;
  int rc = svc_conf_new(&c, env, service, cfg->tts_base_url, default_base, default_model ? cfg->tts_model : "",
                        default_model ? default_model : "", cfg->tts_api_key_env, default_key_env, err, errlen);
  if (rc) return rc;
  copy(c->voice, sizeof c->voice, cfg->tts_voice[0] ? cfg->tts_voice : default_voice);
  c->rate = cfg->tts_rate;
  svc_conf_warm(c);
  *out = c;
  return 0;
}
