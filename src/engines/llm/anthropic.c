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
 * come before it; only the tools (the same for every request) precede it.
 *
 * Usage: message_start's message.usage has input_tokens, which leaves out
 * the tokens read from the cache (cache_read_input_tokens) and written to
 * it (cache_creation_input_tokens); message_delta's usage has the running
 * output_tokens, and may repeat the input counts. Each later count replaces
 * the earlier one, and the three input counts add up to the prompt.
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/llm/llm_stream.h"

/* A message's content as blocks (a new reference): a string becomes one text block. */
static json_t *as_blocks(json_t *content) {
  if (json_is_array(content)) return json_incref(content);
  return json_pack("[{s:s,s:O}]", "type", "text", "text", content);
}

/* Appends a message, or joins it to the last one when that has the same
 * role: two texts with a line break between, anything else as one list of
 * blocks. Takes `content`. */
static int add_message(json_t *msgs, const char *role, json_t *content) {
  size_t n = json_array_size(msgs);
  json_t *last = n ? json_array_get(msgs, n - 1) : NULL;
  if (!content) return -1;
  if (!last || strcmp(json_string_value(json_object_get(last, "role")), role) != 0)
    return json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", role, "content", content));
  json_t *prev = json_object_get(last, "content");
  int rc = -1;
  if (json_is_string(prev) && json_is_string(content)) {
    char *joined = NULL;
    if (asprintf(&joined, "%s\n%s", json_string_value(prev), json_string_value(content)) >= 0)
      rc = json_object_set_new(last, "content", json_string(joined));
    free(joined);
  } else {
    json_t *blocks = as_blocks(prev), *more = as_blocks(content);
    rc = blocks && more ? json_array_extend(blocks, more) : -1;
    if (!rc) rc = json_object_set(last, "content", blocks);
    json_decref(blocks);
    json_decref(more);
  }
  json_decref(content);
  return rc;
}

/* A call's arguments as tool_use wants them: an object. */
static json_t *input_of(const struct llm_tool_call *c) {
  json_t *v = c->arguments ? json_loads(c->arguments, 0, NULL) : NULL;
  if (json_is_object(v)) return v;
  json_decref(v);
  return json_object();
}

/* An assistant turn with calls: [text?, tool_use...]. */
static json_t *call_blocks(const struct llm_turn *t) {
  json_t *blocks = json_array();
  if (blocks && t->text && *t->text &&
      json_array_append_new(blocks, json_pack("{s:s,s:s}", "type", "text", "text", t->text))) {
    json_decref(blocks);
    return NULL;
  }
  for (size_t k = 0; blocks && k < t->ncalls; k++) {
    const struct llm_tool_call *c = &t->calls[k];
    if (!c->id || !c->name ||
        json_array_append_new(blocks, json_pack("{s:s,s:s,s:s,s:o}", "type", "tool_use", "id", c->id, "name",
                                                c->name, "input", input_of(c)))) {
      json_decref(blocks);
      return NULL;
    }
  }
  return blocks;
}

static json_t *result_block(const struct llm_turn *t) {
  json_t *b = json_pack("{s:s,s:s}", "type", "tool_result", "tool_use_id", t->call_id);
  if (b && t->text && *t->text && json_object_set_new(b, "content", json_string(t->text))) {
    json_decref(b);
    return NULL;
  }
  if (b && t->is_error && json_object_set_new(b, "is_error", json_true())) {
    json_decref(b);
    return NULL;
  }
  return b ? json_pack("[o]", b) : NULL;
}

/* A result for each call of assistant turn `a` that has none. */
static int add_missing_results(json_t *msgs, const struct llm_params *p, size_t a) {
  const struct llm_turn *t = &p->turns[a];
  int bad = 0;
  for (size_t k = 0; !bad && k < t->ncalls; k++) {
    struct llm_turn none = {.role = LLM_TOOL, .text = LLM_NO_RESULT, .call_id = t->calls[k].id, .is_error = 1};
    if (!llm_call_answered(p, a, t->calls[k].id)) bad = add_message(msgs, "user", result_block(&none));
  }
  return bad;
}

static json_t *tools(const struct llm_params *p) {
  json_t *list = json_array();
  for (size_t i = 0; list && i < p->ntools; i++) {
    const struct llm_tool *t = &p->tools[i];
    json_t *tool = t->name ? json_pack("{s:s,s:o}", "name", t->name, "input_schema", llm_tool_schema(t)) : NULL;
    if (tool && t->description && *t->description &&
        json_object_set_new(tool, "description", json_string(t->description))) {
      json_decref(tool);
      tool = NULL;
    }
    if (tool && i + 1 == p->ntools && /* the end of the tools' part of the cached prefix */
        json_object_set_new(tool, "cache_control", json_pack("{s:s}", "type", "ephemeral"))) {
      json_decref(tool);
      tool = NULL;
    }
    if (!tool || json_array_append_new(list, tool)) {
      json_decref(list);
      return NULL;
    }
  }
  return list;
}

int llm_anthropic_build(const struct svc_conf *c, const struct llm_params *p, struct http_request *out) {
  svc_request_post(c, out);
  json_t *msgs = json_array();
  int bad = !msgs;
  size_t round = SIZE_MAX; /* the assistant turn whose round is open, once sent */
  for (size_t i = 0; !bad && i < p->nturns; i++) {
    const struct llm_turn *t = &p->turns[i];
    const char *text = t->text;
    int assistant = t->role == LLM_ASSISTANT, calls = assistant && t->ncalls;
    if (t->role == LLM_TOOL) {
      /* answers a call only if that call was sent: not one of a left-out greeting */
      if (round != SIZE_MAX && llm_turn_answers(p, i)) bad |= add_message(msgs, "user", result_block(t)) != 0;
    } else if ((calls || (text && *text)) && !(assistant && json_array_size(msgs) == 0)) {
      bad |= add_message(msgs, assistant ? "assistant" : "user", calls ? call_blocks(t) : json_string(text)) != 0;
      round = calls ? i : SIZE_MAX;
    } else {
      round = SIZE_MAX;
    }
    if (!bad && round != SIZE_MAX && i == llm_round_end(p, round)) {
      bad |= add_missing_results(msgs, p, round) != 0;
      round = SIZE_MAX;
    }
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
  if (root && p->ntools && json_object_set_new(root, "tools", tools(p))) {
    json_decref(root);
    root = NULL; /* a schema that is not a JSON object, text that is not UTF-8, or no memory */
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

/* An event's content block index as the call's key; without one, the call with this id or the last. */
static long block_key(struct llm_stream *s, json_t *root, const char *id) {
  json_t *index = json_object_get(root, "index");
  double d = json_number_value(index);
  return json_is_number(index) && d >= 0 && d < 1e6 && d == (long)d ? (long)d : llm_stream_tool_key(s, id);
}

static int tool_use_start(struct llm_stream *s, json_t *root) {
  json_t *block = json_object_get(root, "content_block");
  const char *btype = json_string_value(json_object_get(block, "type"));
  if (!btype || strcmp(btype, "tool_use") != 0) return 0;
  const char *id = json_string_value(json_object_get(block, "id"));
  long key = block_key(s, root, id);
  int rc = llm_stream_tool_begin(s, key, id, json_string_value(json_object_get(block, "name")));
  json_t *input = json_object_get(block, "input");
  if (!rc && json_object_size(input) > 0) { /* the whole input given at once, not in deltas */
    char *text = json_dumps(input, JSON_COMPACT);
    rc = text ? llm_stream_tool_args(s, key, text, strlen(text)) : llm_stream_fail(s, "out of memory for a tool call");
    free(text);
  }
  return rc;
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
    json_t *piece = json_object_get(delta, "partial_json");
    if (dtype && strcmp(dtype, "text_delta") == 0) llm_stream_token(s, text);
    else if (dtype && strcmp(dtype, "input_json_delta") == 0 && json_is_string(piece))
      rc = llm_stream_tool_args(s, block_key(s, root, NULL), json_string_value(piece), json_string_length(piece));
  } else if (strcmp(type, "content_block_start") == 0) {
    rc = tool_use_start(s, root);
  } else if (strcmp(type, "content_block_stop") == 0) {
    rc = llm_stream_tool_finish(s, block_key(s, root, NULL));
  } else if (strcmp(type, "message_start") == 0) {
    read_usage(s, json_object_get(json_object_get(root, "message"), "usage"));
  } else if (strcmp(type, "message_delta") == 0) {
    read_usage(s, json_object_get(root, "usage"));
  } else if (strcmp(type, "message_stop") == 0) {
    rc = llm_stream_tools_flush(s); /* a block never stopped: its call goes as it is */
    if (!rc) llm_stream_end(s);
  } else if (strcmp(type, "error") == 0) {
    json_t *err = json_object_get(root, "error");
    const char *etype = json_string_value(json_object_get(err, "type"));
    const char *m = json_string_value(json_object_get(err, "message"));
    char what[400];
    snprintf(what, sizeof what, "error in the stream: %s%s%s", etype ? etype : "error", m ? ": " : "",
             m ? m : "");
    rc = llm_stream_fail(s, what);
  }
  /* ping, and text blocks starting and stopping: nothing to do */
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
