/*
 * LLM backend "anthropic": the Anthropic Messages API, streamed.
 *
 * POST {llm_base_url}/messages with the key in x-api-key, the API version
 * in anthropic-version, "stream": true, the system prompt apart from the
 * messages. Messages must alternate and start with the user, so turns of
 * the same role are joined and leading assistant turns (a greeting) go.
 *
 * The stream is Server-Sent Events of typed JSON: message_start,
 * content_block_start, content_block_delta (text_delta carries the reply's
 * text), content_block_stop, message_delta, message_stop, and ping; an
 * `error` event (e.g. overloaded_error) ends it with a message. A stream
 * that stops before message_stop is an error.
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
  char err[512];       /* why the stream was given up */
};

#define JOB_OF_CALL(sc) ((struct job *)((char *)(sc) - offsetof(struct job, call)))

static int add_message(json_t *msgs, const char *role, const char *text) {
  size_t n = json_array_size(msgs);
  json_t *last = n ? json_array_get(msgs, n - 1) : NULL;
  if (last && strcmp(json_string_value(json_object_get(last, "role")), role) == 0) {
    const char *prev = json_string_value(json_object_get(last, "content"));
    char *joined = NULL;
    if (asprintf(&joined, "%s\n%s", prev, text) < 0) return -1;
    int rc = json_object_set_new(last, "content", json_string(joined));
    free(joined);
    return rc;
  }
  return json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", role, "content", text));
}

int llm_anthropic_build(const struct svc_conf *c, const struct llm_params *p, struct http_request *out) {
  memset(out, 0, sizeof *out);
  out->method = "POST";
  out->service = c->service;
  json_t *msgs = json_array();
  int bad = !msgs;
  for (size_t i = 0; !bad && i < p->nturns; i++) {
    const char *text = p->turns[i].text;
    int assistant = p->turns[i].role == LLM_ASSISTANT;
    if (!text || !*text || (assistant && json_array_size(msgs) == 0)) continue;
    bad |= add_message(msgs, assistant ? "assistant" : "user", text) != 0;
  }
  if (bad) {
    json_decref(msgs);
    return -EINVAL; /* text that is not UTF-8, or no memory */
  }
  double temperature = p->temperature > 1 ? 1 : p->temperature; /* Anthropic's range is 0..1 */
  json_t *root = json_pack("{s:s,s:i,s:b,s:f,s:o}", "model", c->model, "max_tokens",
                           p->max_tokens > 0 ? p->max_tokens : c->max_tokens, "stream", 1,
                           "temperature", temperature, "messages", msgs);
  if (root && p->system && *p->system && json_object_set_new(root, "system", json_string(p->system))) {
    json_decref(root);
    root = NULL;
  }
  if (!root) return -EINVAL;
  out->body = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  int rc = out->body ? 0 : -ENOMEM;
  if (!rc) out->body_len = strlen(out->body);
  if (!rc) rc = http_request_set_url(out, "%s/messages", c->base_url);
  if (!rc) rc = http_request_add_header(out, "Content-Type: application/json");
  if (!rc) rc = http_request_add_header(out, "Accept: text/event-stream");
  if (!rc) rc = http_request_add_header(out, "anthropic-version: 2023-06-01");
  if (!rc && c->key[0]) rc = http_request_add_header(out, "x-api-key: %s", c->key);
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
  json_t *root = json_loadb(ev->data, ev->data_len, 0, NULL);
  if (!root) return fail(o, "malformed stream (an event is not JSON)");
  const char *type = json_string_value(json_object_get(root, "type"));
  int rc = 0;
  if (!type) {
    rc = fail(o, "malformed stream (an event has no type)");
  } else if (strcmp(type, "content_block_delta") == 0) {
    json_t *delta = json_object_get(root, "delta");
    const char *dtype = json_string_value(json_object_get(delta, "type"));
    const char *text = json_string_value(json_object_get(delta, "text"));
    if (dtype && strcmp(dtype, "text_delta") == 0 && text && *text)
      svc_post_text(&o->base.job, deliver_token, text, strlen(text));
  } else if (strcmp(type, "message_stop") == 0) {
    o->finished = 1;
    eng_job_post(&o->base.job, deliver_done, NULL);
  } else if (strcmp(type, "error") == 0) {
    json_t *err = json_object_get(root, "error");
    const char *etype = json_string_value(json_object_get(err, "type"));
    const char *m = json_string_value(json_object_get(err, "message"));
    char what[400];
    snprintf(what, sizeof what, "error in the stream: %s%s%s", etype ? etype : "error", m ? ": " : "",
             m ? m : "");
    rc = fail(o, what);
  }
  /* message_start, content_block_start/stop, message_delta, ping: nothing to do */
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
  if (o->err[0]) snprintf(msg, sizeof msg, "%s", o->err);
  else if (r->rc == 0 && r->status / 100 == 2)
    snprintf(msg, sizeof msg, "%s: the stream was cut off before message_stop", sc->conf->service);
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
  o->base.be = &llm_anthropic;
  o->base.cb = *cb;
  svc_call_init(&o->call, &o->base.job, &e->conf, &ops);
  int rc = sse_parser_new(&o->sse, on_event, o);
  if (!rc) rc = llm_anthropic_build(&e->conf, p, &o->call.req);
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
  int rc = svc_conf_init(&e->conf, env, "Anthropic Messages", cfg->llm_base_url,
                         "https://api.anthropic.com/v1", cfg->llm_model, "claude-3-5-haiku-latest",
                         cfg->llm_api_key_env, "ANTHROPIC_API_KEY", err, errlen);
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

const struct llm_backend llm_anthropic = {
    .name = "anthropic",
    .open = open_engine,
    .close = close_engine,
    .generate = generate,
};
