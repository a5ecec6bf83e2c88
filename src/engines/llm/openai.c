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
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "engines/llm/llm_stream.h"

int llm_openai_build(const struct svc_conf *c, const struct llm_params *p, struct http_request *out) {
  svc_request_post(c, out);
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
  json_t *root = json_pack("{s:s,s:b,s:{s:b},s:o,s:i,s:f}", "model", c->model, "stream", 1,
                           "stream_options", "include_usage", 1, "messages", msgs, "max_tokens",
                           p->max_tokens > 0 ? p->max_tokens : c->max_tokens, "temperature", p->temperature);
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

static int on_event(struct llm_stream *s, const struct sse_event *ev) {
  if (strcmp(ev->data, "[DONE]") == 0) {
    llm_stream_end(s);
    return 0;
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
    if (json_is_string(json_object_get(choice, "finish_reason"))) llm_stream_complete(s);
    read_usage(s, usage); /* null on the other chunks, or absent: nothing */
    /* the usage chunk's choices are [], and a server may leave them out there */
    if (!usage && !json_is_array(choices))
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
