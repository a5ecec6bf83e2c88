/*
 * llm_stream: one streamed chat reply, from the request leaving the home
 * thread to the last token, done or error arriving back there.
 *
 * The job holds the HTTP call and the SSE parser. Bytes reach the parser on
 * the control loop; each whole event goes to the protocol's handler. Once
 * the reply has ended (`finished`) later events and the transfer's end are
 * ignored, so exactly one done or error goes home. When the stream breaks,
 * the first reason recorded (`err`) is the message; failing that, a clean
 * body without the end event is "cut off", and anything else is the HTTP
 * failure in svc_error's words. Usage the handler recorded is posted just
 * ahead of done (closures arrive in the order posted), and only with done.
 *
 * A tool call is gathered here until complete, then posted home as one
 * allocation (the call and its three strings), so the home thread frees it
 * with the closure. Arguments are passed on as the model wrote them, even
 * when they are not JSON: the tool layer refuses them with an error the
 * model reads, which lets it try again, where dropping the call would leave
 * it waiting for a result that never comes. No arguments at all are "{}".
 */
#include "engines/llm/llm_stream.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A tool call being gathered, under the handler's key for it. */
struct pending_call {
  long key;
  char *id, *name, *args;
  size_t len, cap;
  int sent;
};

struct llm_stream {
  struct llm_job base; /* first: the eng_job is at offset 0 */
  struct svc_call call;
  const struct llm_stream_proto *proto;
  struct sse_parser *sse;
  int finished; /* done went home */
  int complete; /* the protocol said the reply is whole */
  int has_usage; /* the service reported at least one count */
  struct llm_usage usage;
  struct pending_call *calls; /* LLM_TOOL_CALLS_MAX of them, from the first call */
  size_t ncalls;
  char err[512]; /* why the stream was given up */
};

#define STREAM_OF_CALL(sc) ((struct llm_stream *)((char *)(sc) - offsetof(struct llm_stream, call)))

/* ---- home thread ---- */

static void deliver_token(struct eng_job *j, void *arg) {
  struct llm_job *l = (struct llm_job *)j;
  l->cb.token(l->cb.user, arg);
}

static void deliver_usage(struct eng_job *j, void *arg) {
  struct llm_job *l = (struct llm_job *)j;
  if (l->cb.usage) l->cb.usage(l->cb.user, arg);
}

static void deliver_tool_call(struct eng_job *j, void *arg) {
  struct llm_job *l = (struct llm_job *)j;
  if (l->cb.tool_call) l->cb.tool_call(l->cb.user, arg);
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

void llm_stream_token(struct llm_stream *s, const char *text) {
  if (text && *text) svc_post_text(&s->base.job, deliver_token, text, strlen(text));
}

/* The reply is over: its usage, if any, then done. */
static void post_done(struct llm_stream *s) {
  struct llm_usage *u = s->has_usage ? malloc(sizeof *u) : NULL;
  if (u) {
    *u = s->usage;
    eng_job_post(&s->base.job, deliver_usage, u); /* lost with no memory: the reply still ends */
  }
  eng_job_post(&s->base.job, deliver_done, NULL);
}

void llm_stream_end(struct llm_stream *s) {
  s->finished = 1;
  post_done(s);
}

void llm_stream_complete(struct llm_stream *s) { s->complete = 1; }

int llm_stream_fail(struct llm_stream *s, const char *what) {
  snprintf(s->err, sizeof s->err, "%s: %s", s->call.conf->service, what);
  return -EBADMSG;
}

json_t *llm_stream_json(const struct sse_event *ev) {
  return json_loadb(ev->data, ev->data_len, JSON_DECODE_INT_AS_REAL, NULL);
}

int llm_stream_count(const json_t *obj, const char *name, long long *out) {
  json_t *v = json_object_get(obj, name);
  if (!json_is_number(v)) return 0;
  double d = json_number_value(v);
  if (!isfinite(d) || d < 0 || d > (double)LLM_USAGE_MAX || d != floor(d)) return 0;
  *out = (long long)d;
  return 1;
}

/* ---- tool calls ---- */

static struct pending_call *find_call(struct llm_stream *s, long key) {
  for (size_t i = 0; i < s->ncalls; i++)
    if (s->calls[i].key == key) return &s->calls[i];
  return NULL;
}

long llm_stream_tool_key(struct llm_stream *s, const char *id) {
  for (size_t i = 0; id && i < s->ncalls; i++)
    if (s->calls[i].id && strcmp(s->calls[i].id, id) == 0) return s->calls[i].key;
  if (!id && s->ncalls) return s->calls[s->ncalls - 1].key;
  return -1 - (long)s->ncalls;
}

static int set_once(struct llm_stream *s, char **field, const char *value) {
  if (!value || *field) return 0;
  if (strlen(value) > LLM_TOOL_NAME_MAX) return llm_stream_fail(s, "a tool call's id or name is too long");
  *field = strdup(value);
  return *field ? 0 : llm_stream_fail(s, "out of memory for a tool call");
}

/* Call `key`, begun if new; NULL after recording why not. */
static struct pending_call *get_call(struct llm_stream *s, long key) {
  struct pending_call *c = find_call(s, key);
  if (c) return c;
  if (!s->calls && !(s->calls = calloc(LLM_TOOL_CALLS_MAX, sizeof *s->calls))) {
    llm_stream_fail(s, "out of memory for a tool call");
    return NULL;
  }
  if (s->ncalls == LLM_TOOL_CALLS_MAX) {
    char what[80];
    snprintf(what, sizeof what, "the reply makes more than %d tool calls", LLM_TOOL_CALLS_MAX);
    llm_stream_fail(s, what);
    return NULL;
  }
  c = &s->calls[s->ncalls++];
  c->key = key;
  return c;
}

int llm_stream_tool_begin(struct llm_stream *s, long key, const char *id, const char *name) {
  struct pending_call *c = get_call(s, key);
  if (!c) return -EBADMSG;
  int rc = set_once(s, &c->id, id);
  return rc ? rc : set_once(s, &c->name, name);
}

int llm_stream_tool_args(struct llm_stream *s, long key, const char *piece, size_t len) {
  struct pending_call *c = get_call(s, key);
  if (!c) return -EBADMSG;
  if (len > LLM_TOOL_ARGS_MAX - c->len) {
    char what[80];
    snprintf(what, sizeof what, "a tool call's arguments are longer than %d bytes", LLM_TOOL_ARGS_MAX);
    return llm_stream_fail(s, what);
  }
  if (c->len + len + 1 > c->cap) {
    size_t cap = c->cap ? c->cap : 256;
    while (cap < c->len + len + 1) cap *= 2;
    char *grown = realloc(c->args, cap);
    if (!grown) return llm_stream_fail(s, "out of memory for a tool call");
    c->args = grown;
    c->cap = cap;
  }
  memcpy(c->args + c->len, piece, len);
  c->len += len;
  c->args[c->len] = '\0';
  return 0;
}

/* Arguments that are only blanks count as none. */
static const char *args_or_empty(const struct pending_call *c) {
  for (size_t i = 0; i < c->len; i++)
    if (!strchr(" \t\r\n", c->args[i])) return c->args;
  return "{}";
}

static int send_call(struct llm_stream *s, struct pending_call *c) {
  if (c->sent) return 0;
  c->sent = 1;
  if (!c->name || !*c->name) return llm_stream_fail(s, "a tool call has no name");
  char made_id[32];
  const char *id = c->id;
  if (!id || !*id) { /* some compatible servers leave it out; the result still needs one */
    snprintf(made_id, sizeof made_id, "call_%zu", (size_t)(c - s->calls));
    id = made_id;
  }
  const char *args = args_or_empty(c);
  size_t lid = strlen(id) + 1, lname = strlen(c->name) + 1, largs = strlen(args) + 1;
  struct llm_tool_call *out = malloc(sizeof *out + lid + lname + largs);
  if (!out) return llm_stream_fail(s, "out of memory for a tool call");
  char *p = (char *)(out + 1);
  out->id = memcpy(p, id, lid);
  out->name = memcpy(p + lid, c->name, lname);
  out->arguments = memcpy(p + lid + lname, args, largs);
  return eng_job_post(&s->base.job, deliver_tool_call, out) ? llm_stream_fail(s, "out of memory for a tool call") : 0;
}

int llm_stream_tool_finish(struct llm_stream *s, long key) {
  struct pending_call *c = find_call(s, key);
  return c ? send_call(s, c) : 0;
}

int llm_stream_tools_flush(struct llm_stream *s) {
  int rc = 0;
  for (size_t i = 0; !rc && i < s->ncalls; i++) rc = send_call(s, &s->calls[i]);
  return rc;
}

static void free_calls(struct llm_stream *s) {
  for (size_t i = 0; i < s->ncalls; i++) {
    free(s->calls[i].id);
    free(s->calls[i].name);
    free(s->calls[i].args);
  }
  free(s->calls);
}

/* ---- request helpers ---- */

json_t *llm_tool_schema(const struct llm_tool *t) {
  if (!t->parameters || !*t->parameters) return json_pack("{s:s,s:{}}", "type", "object", "properties");
  json_t *v = json_loads(t->parameters, 0, NULL);
  if (json_is_object(v)) return v;
  json_decref(v);
  return NULL;
}

int llm_turn_answers(const struct llm_params *p, size_t i) {
  const char *id = p->turns[i].call_id;
  while (i > 0 && p->turns[i - 1].role == LLM_TOOL) i--;
  if (!id || i == 0 || p->turns[i - 1].role != LLM_ASSISTANT) return 0;
  const struct llm_turn *a = &p->turns[i - 1];
  for (size_t k = 0; k < a->ncalls; k++)
    if (a->calls[k].id && strcmp(a->calls[k].id, id) == 0) return 1;
  return 0;
}

size_t llm_round_end(const struct llm_params *p, size_t a) {
  while (a + 1 < p->nturns && p->turns[a + 1].role == LLM_TOOL) a++;
  return a;
}

int llm_call_answered(const struct llm_params *p, size_t a, const char *id) {
  for (size_t i = a + 1, end = llm_round_end(p, a); id && i <= end; i++)
    if (p->turns[i].call_id && strcmp(p->turns[i].call_id, id) == 0) return 1;
  return 0;
}

struct llm_usage llm_stream_usage(const struct llm_stream *s) { return s->usage; }

void llm_stream_set_usage(struct llm_stream *s, const struct llm_usage *u) {
  s->usage = *u;
  s->has_usage = 1;
}

static int on_event(void *user, const struct sse_event *ev) {
  struct llm_stream *s = user;
  return s->finished ? 0 : s->proto->event(s, ev);
}

static int on_head(struct svc_call *sc, long status, const char *ct) {
  struct llm_stream *s = STREAM_OF_CALL(sc);
  if (strncasecmp(ct, "application/json", 16) == 0 || strncasecmp(ct, "text/html", 9) == 0)
    return llm_stream_fail(s, "the response is not an event stream");
  return 0;
}

static int on_data(struct svc_call *sc, const char *buf, size_t len) {
  struct llm_stream *s = STREAM_OF_CALL(sc);
  int rc = sse_feed(s->sse, buf, len);
  if (rc == -EMSGSIZE) llm_stream_fail(s, "malformed stream (an event is too long)");
  return rc;
}

static void on_done(struct svc_call *sc, const struct http_result *r) {
  struct llm_stream *s = STREAM_OF_CALL(sc);
  if (s->finished) return;
  int ok = r->rc == 0 && r->status / 100 == 2;
  if (ok && s->complete) {
    post_done(s);
    return;
  }
  char msg[768];
  if (s->err[0]) snprintf(msg, sizeof msg, "%s", s->err);
  else if (ok) snprintf(msg, sizeof msg, "%s: the stream was cut off before %s", sc->conf->service, s->proto->end_event);
  else svc_error(sc->conf, r, msg, sizeof msg);
  svc_scrub(sc->conf, msg, sizeof msg);
  svc_post_text(&s->base.job, deliver_error, msg, strlen(msg));
}

static const struct svc_call_ops ops = {.head = on_head, .data = on_data, .done = on_done};

/* ---- the job ---- */

static void stream_destroy(struct eng_job *j) {
  struct llm_stream *s = (struct llm_stream *)j;
  svc_call_clear(&s->call);
  sse_parser_free(s->sse);
  free_calls(s);
  free(s);
}

static void stream_cancel(struct eng_job *j) { svc_call_cancel(&((struct llm_stream *)j)->call); }

int llm_stream_generate(const struct llm_stream_proto *proto, void *engine, const struct llm_params *p,
                        struct mailbox *home, const struct llm_cb *cb, struct llm_job **out) {
  struct svc_conf *c = engine;
  struct llm_stream *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  eng_job_init(&s->base.job, home, stream_destroy);
  s->base.be = proto->be;
  s->base.cb = *cb;
  s->proto = proto;
  svc_call_init(&s->call, &s->base.job, c, &ops);
  int rc = sse_parser_new(&s->sse, on_event, s);
  if (!rc) rc = proto->build(c, p, &s->call.req);
  if (!rc) rc = svc_call_start(&s->call);
  if (rc) {
    eng_job_unref(&s->base.job);
    return rc;
  }
  s->base.job.on_cancel = stream_cancel;
  *out = &s->base;
  return 0;
}

/* ---- the engine ---- */

int llm_stream_open(void **out, const struct engine_env *env, const char *service, const char *default_base,
                    const char *default_model, const char *default_key_env, char *err, size_t errlen) {
  const struct config *cfg = env->cfg;
  struct svc_conf *c;
  int rc = svc_conf_new(&c, env, service, cfg->llm_base_url, default_base, cfg->llm_model, default_model,
                        cfg->llm_api_key_env, default_key_env, err, errlen);
  if (rc) return rc;
  c->max_tokens = cfg->llm_max_tokens;
  c->temperature = cfg->llm_temperature;
  svc_conf_warm(c);
  *out = c;
  return 0;
}

void llm_stream_close(void *engine) { free(engine); }
