/*
 * LLM backend "openai": OpenAI-compatible chat completions, streamed.
 *
 * POST {llm_base_url}/chat/completions with "stream": true. The same wire
 * format is spoken by OpenAI, Azure OpenAI (v1 API), DeepSeek, Qwen
 * (DashScope compatible mode), Ollama, llama.cpp's server and vLLM, so one
 * backend serves them all: only the base URL, model and key differ.
 *
 * The response is Server-Sent Events whose data lines each hold a JSON
 * chunk; the reply's text is choices[0].delta.content, and the stream ends
 * with "data: [DONE]". Parsing happens on the control loop as bytes arrive;
 * each piece of text goes home at once as a token. A stream that stops
 * before [DONE] (or a finish_reason) is an error, as is a chunk that is not
 * JSON or an {"error": ...} object sent mid-stream.
 */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engines/service.h"
#include "net/sse.h"

struct engine {
  struct svc_conf conf;
};

struct job {
  struct llm_job base; /* first: the eng_job is at offset 0 */
  struct svc_call call;
  struct sse_parser *sse;
  int finished;        /* done went home */
  int finish_reason;   /* a chunk said the reply is complete */
  char err[512];       /* why the stream was given up */
};

#define JOB_OF_CALL(sc) ((struct job *)((char *)(sc) - offsetof(struct job, call)))

int llm_openai_build(const struct svc_conf *c, const struct llm_params *p, struct http_request *out) {
  memset(out, 0, sizeof *out);
  out->method = "POST";
  out->service = c->service;
  json_t *msgs = json_array();
  int bad = !msgs;
  if (!bad && p->system && *p->system)
    bad |= json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", p->system));
  for (size_t i = 0; !bad && i < p->nturns; i++) {
    const char *role = p->turns[i].role == LLM_ASSISTANT ? "assistant" : "user";
    bad |= json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", role, "content",
                                                 p->turns[i].text ? p->turns[i].text : ""));
  }
  if (bad) {
    json_decref(msgs);
    return -EINVAL; /* text that is not UTF-8, or no memory */
  }
  json_t *root = json_pack("{s:s,s:b,s:o,s:i,s:f}", "model", c->model, "stream", 1, "messages", msgs,
                           "max_tokens", p->max_tokens > 0 ? p->max_tokens : c->max_tokens,
                           "temperature", p->temperature);
  if (!root) return -EINVAL;
  out->body = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  int rc = out->body ? 0 : -ENOMEM;
  if (!rc) out->body_len = strlen(out->body);
  if (!rc) rc = http_request_set_url(out, "%s/chat/completions", c->base_url);
  if (!rc) rc = http_request_add_header(out, "Content-Type: application/json");
  if (!rc) rc = http_request_add_header(out, "Accept: text/event-stream");
  if (!rc && c->key[0]) {
    /* Azure OpenAI takes its key as api-key; everyone else as a bearer token. */
    if (strstr(c->base_url, ".azure.com")) rc = http_request_add_header(out, "api-key: %s", c->key);
    else rc = http_request_add_header(out, "Authorization: Bearer %s", c->key);
  }
  if (rc) http_request_clear(out);
  return rc;
}

/* ---- home thread ---- */

static void deliver_token(struct eng_job *j, void *arg) {
  struct llm_job *l = (struct llm_job *)j;
  l->cb.token(l->cb.user, arg);
}

static void deliver_done(struct eng_job *j, void *arg) {
  struct llm_job *l = (struct llm_job *)j;
  l->cb.done(l->cb.user, 0);
}

static void deliver_error(struct eng_job *j, void *arg) {
  struct llm_job *l = (struct llm_job *)j;
  l->cb.error(l->cb.user, arg);
}

/* ---- control loop ---- */

static int fail(struct job *o, const char *what) {
  snprintf(o->err, sizeof o->err, "%s: %s", o->call.conf->service, what);
  return -EBADMSG;
}

static int on_event(void *user, const struct sse_event *ev) {
  struct job *o = user;
  if (o->finished) return 0;
  if (strcmp(ev->data, "[DONE]") == 0) {
    o->finished = 1;
    eng_job_post(&o->base.job, deliver_done, NULL);
    return 0;
  }
  json_t *root = json_loadb(ev->data, ev->data_len, 0, NULL);
  if (!root) return fail(o, "malformed stream (an event is not JSON)");
  int rc = 0;
  json_t *err = json_object_get(root, "error");
  if (err) {
    const char *m = json_string_value(json_object_get(err, "message"));
    char what[400];
    snprintf(what, sizeof what, "error in the stream: %s", m ? m : "unknown");
    rc = fail(o, what);
  } else {
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *delta = json_object_get(choice, "delta");
    const char *text = json_string_value(json_object_get(delta, "content"));
    if (text && *text) svc_post_text(&o->base.job, deliver_token, text, strlen(text));
    if (json_is_string(json_object_get(choice, "finish_reason"))) o->finish_reason = 1;
    if (!choice && !json_is_array(json_object_get(root, "choices")))
      rc = fail(o, "malformed stream (a chunk has no choices)");
  }
  json_decref(root);
  return rc;
}

static int on_head(struct svc_call *sc, long status, const char *ct) {
  struct job *o = JOB_OF_CALL(sc);
  if (strncasecmp(ct, "application/json", 16) == 0 || strncasecmp(ct, "text/html", 9) == 0)
    return fail(o, "the response is not an event stream");
  return 0;
}

static int on_data(struct svc_call *sc, const char *buf, size_t len) {
  struct job *o = JOB_OF_CALL(sc);
  int rc = sse_feed(o->sse, buf, len);
  if (rc == -EMSGSIZE) fail(o, "malformed stream (an event is too long)");
  return rc;
}

static void on_done(struct svc_call *sc, const struct http_result *r) {
  struct job *o = JOB_OF_CALL(sc);
  if (o->finished) return;
  char msg[768];
  if (r->rc == 0 && r->status / 100 == 2 && o->finish_reason) {
    eng_job_post(&o->base.job, deliver_done, NULL);
    return;
  }
  if (o->err[0]) snprintf(msg, sizeof msg, "%s", o->err);
  else if (r->rc == 0 && r->status / 100 == 2)
    snprintf(msg, sizeof msg, "%s: the stream was cut off before [DONE]", sc->conf->service);
  else svc_error(sc->conf, r, msg, sizeof msg);
  svc_scrub(sc->conf, msg, sizeof msg);
  svc_post_text(&o->base.job, deliver_error, msg, strlen(msg));
}

static const struct svc_call_ops ops = {.head = on_head, .data = on_data, .done = on_done};

/* ---- the backend ---- */

static void job_destroy(struct eng_job *j) {
  struct job *o = (struct job *)j;
  svc_call_clear(&o->call);
  sse_parser_free(o->sse);
  free(o);
}

static void job_cancel(struct eng_job *j) { svc_call_cancel(&((struct job *)j)->call); }

static int generate(void *engine, const struct llm_params *p, struct mailbox *home,
                    const struct llm_cb *cb, struct llm_job **out) {
  struct engine *e = engine;
  struct job *o = calloc(1, sizeof *o);
  if (!o) return -ENOMEM;
  eng_job_init(&o->base.job, home, job_destroy);
  o->base.be = &llm_openai;
  o->base.cb = *cb;
  svc_call_init(&o->call, &o->base.job, &e->conf, &ops);
  int rc = sse_parser_new(&o->sse, on_event, o);
  if (!rc) rc = llm_openai_build(&e->conf, p, &o->call.req);
  if (!rc) rc = svc_call_start(&o->call);
  if (rc) {
    eng_job_unref(&o->base.job);
    return rc;
  }
  o->base.job.on_cancel = job_cancel;
  *out = &o->base;
  return 0;
}

static int open_engine(void **out, const struct engine_env *env, char *err, size_t errlen) {
  const struct config *cfg = env->cfg;
  struct engine *e = calloc(1, sizeof *e);
  if (!e) return -ENOMEM;
  int rc = svc_conf_init(&e->conf, env, "OpenAI chat completions", cfg->llm_base_url,
                         "https://api.openai.com/v1", cfg->llm_model, "gpt-4o-mini",
                         cfg->llm_api_key_env, "OPENAI_API_KEY", err, errlen);
  if (rc) {
    free(e);
    return rc;
  }
  e->conf.max_tokens = cfg->llm_max_tokens;
  e->conf.temperature = cfg->llm_temperature;
  svc_conf_warm(&e->conf);
  *out = e;
  return 0;
}

static void close_engine(void *engine) { free(engine); }

const struct llm_backend llm_openai = {
    .name = "openai",
    .open = open_engine,
    .close = close_engine,
    .generate = generate,
};
