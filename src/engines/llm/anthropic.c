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
 *
 * Prompt caching: the system prompt goes as a list of one text block marked
 * cache_control ephemeral, so a call's turns after the first read it from
 * Anthropic's cache instead of paying for it again (when it is long enough
 * to be cached at all: below the model's minimum the mark is ignored). The
 * mark covers everything up to it, so nothing that changes per request may
 * come before it; it is the first thing the prompt holds.
 *
 * Usage: message_start's message.usage has input_tokens, which leaves out
 * the tokens read from the cache (cache_read_input_tokens) and written to
 * it (cache_creation_input_tokens); message_delta's usage has the running
 * output_tokens, and may repeat the input counts. Each later count replaces
 * the earlier one, and the three input counts add up to the prompt.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/llm/llm_stream.h"

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
  svc_request_post(c, out);
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
  if (root && p->system && *p->system &&
      json_object_set_new(root, "system", json_pack("[{s:s,s:s,s:{s:s}}]", "type", "text", "text", p->system,
                                                    "cache_control", "type", "ephemeral"))) {
    json_decref(root);
    root = NULL; /* not UTF-8, or no memory */
  }
  int rc = svc_request_json(out, root);
  if (!rc) rc = http_request_set_url(out, "%s/messages", c->base_url);
  if (!rc) rc = http_request_add_header(out, "Accept: text/event-stream");
  if (!rc) rc = http_request_add_header(out, "anthropic-version: 2023-06-01");
  if (!rc && c->key[0]) rc = http_request_add_header(out, "x-api-key: %s", c->key);
  if (rc) http_request_clear(out);
  return rc;
}

/* ---- control loop ---- */

/* A usage object of message_start or message_delta: what it holds replaces
 * what came before; what it lacks (or holds wrongly) is kept. */
static void read_usage(struct llm_stream *s, json_t *usage) {
  struct llm_usage u = llm_stream_usage(s);
  long long fresh = u.input_tokens - u.cached_tokens - u.cache_write_tokens;
  int any = llm_stream_count(usage, "input_tokens", &fresh);
  any |= llm_stream_count(usage, "cache_read_input_tokens", &u.cached_tokens);
  any |= llm_stream_count(usage, "cache_creation_input_tokens", &u.cache_write_tokens);
  any |= llm_stream_count(usage, "output_tokens", &u.output_tokens);
  u.input_tokens = fresh + u.cached_tokens + u.cache_write_tokens; /* each at most LLM_USAGE_MAX */
  if (any) llm_stream_set_usage(s, &u);
}

static int on_event(struct llm_stream *s, const struct sse_event *ev) {
  json_t *root = llm_stream_json(ev);
  if (!root) return llm_stream_fail(s, "malformed stream (an event is not JSON)");
  const char *type = json_string_value(json_object_get(root, "type"));
  int rc = 0;
  if (!type) {
    rc = llm_stream_fail(s, "malformed stream (an event has no type)");
  } else if (strcmp(type, "content_block_delta") == 0) {
    json_t *delta = json_object_get(root, "delta");
    const char *dtype = json_string_value(json_object_get(delta, "type"));
    const char *text = json_string_value(json_object_get(delta, "text"));
    if (dtype && strcmp(dtype, "text_delta") == 0) llm_stream_token(s, text);
  } else if (strcmp(type, "message_start") == 0) {
    read_usage(s, json_object_get(json_object_get(root, "message"), "usage"));
  } else if (strcmp(type, "message_delta") == 0) {
    read_usage(s, json_object_get(root, "usage"));
  } else if (strcmp(type, "message_stop") == 0) {
    llm_stream_end(s);
  } else if (strcmp(type, "error") == 0) {
    json_t *err = json_object_get(root, "error");
    const char *etype = json_string_value(json_object_get(err, "type"));
    const char *m = json_string_value(json_object_get(err, "message"));
    char what[400];
    snprintf(what, sizeof what, "error in the stream: %s%s%s", etype ? etype : "error", m ? ": " : "",
             m ? m : "");
    rc = llm_stream_fail(s, what);
  }
  /* content_block_start/stop, ping: nothing to do */
  json_decref(root);
  return rc;
}

/* ---- the backend ---- */

static const struct llm_stream_proto proto = {
    .be = &llm_anthropic, .end_event = "message_stop", .build = llm_anthropic_build, .event = on_event};

static int generate(void *engine, const struct llm_params *p, struct mailbox *home,
                    const struct llm_cb *cb, struct llm_job **out) {
  return llm_stream_generate(&proto, engine, p, home, cb, out);
}

static int open_engine(void **out, const struct engine_env *env, char *err, size_t errlen) {
  return llm_stream_open(out, env, "Anthropic Messages", "https://api.anthropic.com/v1",
                         "claude-3-5-haiku-latest", "ANTHROPIC_API_KEY", err, errlen);
}

const struct llm_backend llm_anthropic = {
    .name = "anthropic",
    .open = open_engine,
    .close = llm_stream_close,
    .generate = generate,
};
