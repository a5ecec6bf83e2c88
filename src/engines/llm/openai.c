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
 *
 * The request asks for usage (stream_options.include_usage): OpenAI then
 * sends one more chunk after the finish_reason, with an empty choices array
 * and the reply's token counts, prompt_tokens_details.cached_tokens among
 * them (OpenAI caches a prompt's prefix by itself once it is long enough;
 * the messages go system prompt first, then the conversation, nothing that
 * changes per request ahead of them, so one call's turns share a prefix).
 * DeepSeek reports its cache hits as usage.prompt_cache_hit_tokens instead.
 * Servers that ignore the option send no usage, and the reply simply has
 * none; one that sends usage on every chunk has its last counts kept.
 *
 * Tools go as `tools: [{type: "function", function: {name, description,
 * parameters}}]` (none when there are none; parallel_tool_calls is left to
 * the service). An assistant turn that called tools becomes one message with
 * `tool_calls` (content null when it said nothing), and each result a "tool"
 * message naming its tool_call_id; OpenAI has no error flag for a result,
 * so a failed one says so in its text. In the stream, delta.tool_calls[]
 * pieces carry an `index`: the first piece of an index holds the id and
 * function.name, later ones more of function.arguments, and several indexes
 * may take turns (parallel calls). The calls are complete at the
 * finish_reason ("tool_calls", though some servers say "stop") or at
 * [DONE]. A server that leaves out `index` has its pieces matched by id,
 * or added to the last call. A call without a result in the history gets
 * LLM_NO_RESULT, and a result whose call is not there is left out: either
 * would make the service refuse the request.
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/llm/llm_stream.h"

static json_t *tool_calls(const struct llm_turn *t) {
  json_t *calls = json_array();
  for (size_t k = 0; calls && k < t->ncalls; k++) {
    const struct llm_tool_call *c = &t->calls[k];
    if (!c->id || !c->name ||
        json_array_append_new(calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", c->id, "type", "function", "function",
                                               "name", c->name, "arguments", c->arguments ? c->arguments : "{}"))) {
      json_decref(calls);
      return NULL;
    }
  }
  return calls;
}

/* Turn i as a message; NULL for a result whose call is not in the history,
 * and sets *bad for text that is not UTF-8, a call without id or name, or no memory. */
static json_t *message(const struct llm_params *p, size_t i, int *bad) {
  const struct llm_turn *t = &p->turns[i];
  const char *text = t->text ? t->text : "";
  json_t *m = NULL;
  if (t->role == LLM_TOOL) {
    if (!llm_turn_answers(p, i)) return NULL;
    m = json_pack("{s:s,s:s,s:s}", "role", "tool", "tool_call_id", t->call_id, "content", text);
  } else if (t->role == LLM_ASSISTANT && t->ncalls) {
    m = json_pack("{s:s,s:o,s:o}", "role", "assistant", "content", *text ? json_string(text) : json_null(),
                  "tool_calls", tool_calls(t));
  } else {
    m = json_pack("{s:s,s:s}", "role", t->role == LLM_ASSISTANT ? "assistant" : "user", "content", text);
  }
  *bad |= !m;
  return m;
}

/* A result for each call of assistant turn `a` that has none. */
static int add_missing_results(json_t *msgs, const struct llm_params *p, size_t a) {
  const struct llm_turn *t = &p->turns[a];
  int bad = 0;
  for (size_t k = 0; !bad && k < t->ncalls; k++) {
    if (!llm_call_answered(p, a, t->calls[k].id))
      bad = json_array_append_new(msgs, json_pack("{s:s,s:s,s:s}", "role", "tool", "tool_call_id", t->calls[k].id,
                                                  "content", LLM_NO_RESULT));
  }
  return bad;
}

static json_t *tools(const struct llm_params *p) {
  json_t *list = json_array();
  for (size_t i = 0; list && i < p->ntools; i++) {
    const struct llm_tool *t = &p->tools[i];
    json_t *fn = t->name ? json_pack("{s:s,s:o}", "name", t->name, "parameters", llm_tool_schema(t)) : NULL;
    if (fn && t->description && *t->description &&
        json_object_set_new(fn, "description", json_string(t->description))) {
      json_decref(fn);
      fn = NULL;
    }
    if (!fn || json_array_append_new(list, json_pack("{s:s,s:o}", "type", "function", "function", fn))) {
      json_decref(list);
      return NULL;
    }
  }
  return list;
}

int llm_openai_build(const struct svc_conf *c, const struct llm_params *p, struct http_request *out) {
  svc_request_post(c, out);
  json_t *msgs = json_array();
  int bad = !msgs;
  if (!bad && p->system && *p->system)
    bad |= json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", p->system));
  size_t round = SIZE_MAX; /* the assistant turn whose round is open */
  for (size_t i = 0; !bad && i < p->nturns; i++) {
    json_t *m = message(p, i, &bad);
    if (m) bad |= json_array_append_new(msgs, m);
    if (p->turns[i].role == LLM_ASSISTANT && p->turns[i].ncalls) round = i;
    if (!bad && round != SIZE_MAX && i == llm_round_end(p, round)) {
      bad |= add_missing_results(msgs, p, round);
      round = SIZE_MAX;
    }
  }
  if (bad) {
    json_decref(msgs);
    return -EINVAL; /* text that is not UTF-8, or no memory */
  }
  json_t *root = json_pack("{s:s,s:b,s:{s:b},s:o,s:i,s:f}", "model", c->model, "stream", 1,
                           "stream_options", "include_usage", 1, "messages", msgs, "max_tokens",
                           p->max_tokens > 0 ? p->max_tokens : c->max_tokens, "temperature", p->temperature);
  if (root && p->ntools && json_object_set_new(root, "tools", tools(p))) {
    json_decref(root);
    root = NULL; /* a schema that is not a JSON object, text that is not UTF-8, or no memory */
  }
  int rc = svc_request_json(out, root);
  if (!rc) rc = http_request_set_url(out, "%s/chat/completions", c->base_url);
  if (!rc) rc = http_request_add_header(out, "Accept: text/event-stream");
  if (!rc && c->key[0]) {
    /* Azure OpenAI takes its key as api-key; everyone else as a bearer token. */
    if (strstr(c->base_url, ".azure.com")) rc = http_request_add_header(out, "api-key: %s", c->key);
    else rc = http_request_add_header(out, "Authorization: Bearer %s", c->key);
  }
  if (rc) http_request_clear(out);
  return rc;
}

/* ---- control loop ---- */

/* A chunk's usage object, when it holds any count. A cached count larger
 * than the prompt cannot be right and is dropped. */
static void read_usage(struct llm_stream *s, json_t *usage) {
  struct llm_usage u = llm_stream_usage(s);
  int any = llm_stream_count(usage, "prompt_tokens", &u.input_tokens);
  /* DeepSeek names its cache hits apart; its prompt_tokens counts them too, as OpenAI's does */
  any |= llm_stream_count(json_object_get(usage, "prompt_tokens_details"), "cached_tokens", &u.cached_tokens) ||
         llm_stream_count(usage, "prompt_cache_hit_tokens", &u.cached_tokens);
  any |= llm_stream_count(usage, "completion_tokens", &u.output_tokens);
  if (u.cached_tokens > u.input_tokens) u.cached_tokens = 0;
  if (any) llm_stream_set_usage(s, &u);
}

/* One delta.tool_calls[] piece. */
static int read_tool_call(struct llm_stream *s, json_t *tc) {
  json_t *fn = json_object_get(tc, "function"), *index = json_object_get(tc, "index");
  const char *id = json_string_value(json_object_get(tc, "id"));
  double d = json_number_value(index);
  long key = json_is_number(index) && d >= 0 && d < 1e6 && d == (long)d ? (long)d : llm_stream_tool_key(s, id);
  int rc = llm_stream_tool_begin(s, key, id, json_string_value(json_object_get(fn, "name")));
  json_t *args = json_object_get(fn, "arguments");
  if (!rc && json_is_string(args)) {
    rc = llm_stream_tool_args(s, key, json_string_value(args), json_string_length(args));
  } else if (!rc && json_is_object(args)) { /* a server that sends the object itself */
    char *text = json_dumps(args, JSON_COMPACT);
    rc = text ? llm_stream_tool_args(s, key, text, strlen(text)) : llm_stream_fail(s, "out of memory for a tool call");
    free(text);
  }
  return rc;
}

static int on_event(struct llm_stream *s, const struct sse_event *ev) {
  if (strcmp(ev->data, "[DONE]") == 0) {
    int rc = llm_stream_tools_flush(s);
    if (!rc) llm_stream_end(s);
    return rc;
  }
  json_t *root = llm_stream_json(ev);
  if (!root) return llm_stream_fail(s, "malformed stream (an event is not JSON)");
  int rc = 0;
  json_t *err = json_object_get(root, "error");
  if (err) {
    const char *m = json_string_value(json_object_get(err, "message"));
    char what[400];
    snprintf(what, sizeof what, "error in the stream: %s", m ? m : "unknown");
    rc = llm_stream_fail(s, what);
  } else {
    json_t *choices = json_object_get(root, "choices"), *usage = json_object_get(root, "usage");
    json_t *choice = json_array_get(choices, 0);
    json_t *delta = json_object_get(choice, "delta");
    const char *text = json_string_value(json_object_get(delta, "content"));
    llm_stream_token(s, text);
    json_t *tcs = json_object_get(delta, "tool_calls"), *tc;
    size_t k;
    json_array_foreach(tcs, k, tc) {
      if (!rc) rc = read_tool_call(s, tc);
    }
    if (!rc && json_is_string(json_object_get(choice, "finish_reason"))) {
      rc = llm_stream_tools_flush(s);
      llm_stream_complete(s);
    }
    read_usage(s, usage); /* null on the other chunks, or absent: nothing */
    /* the usage chunk's choices are [], and a server may leave them out there */
    if (!rc && !usage && !json_is_array(choices))
      rc = llm_stream_fail(s, "malformed stream (a chunk has no choices)");
  }
  json_decref(root);
  return rc;
}

/* ---- the backend ---- */

static const struct llm_stream_proto proto = {
    .be = &llm_openai, .end_event = "[DONE]", .build = llm_openai_build, .event = on_event};

static int generate(void *engine, const struct llm_params *p, struct mailbox *home,
                    const struct llm_cb *cb, struct llm_job **out) {
  return llm_stream_generate(&proto, engine, p, home, cb, out);
}

static int open_engine(void **out, const struct engine_env *env, char *err, size_t errlen) {
  return llm_stream_open(out, env, "OpenAI chat completions", "https://api.openai.com/v1", "gpt-4o-mini",
                         "OPENAI_API_KEY", err, errlen);
}

const struct llm_backend llm_openai = {
    .name = "openai",
    .open = open_engine,
    .close = llm_stream_close,
    .generate = generate,
};
