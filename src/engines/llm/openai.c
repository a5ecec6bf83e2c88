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
  json_t *root = json_pack("{s:s,s:b,s:o,s:i,s:f}", "model", c->model, "stream", 1, "messages", msgs,
                           "max_tokens", p->max_tokens > 0 ? p->max_tokens : c->max_tokens,
                           "temperature", p->temperature);
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

static int on_event(struct llm_stream *s, const struct sse_event *ev) {
  if (strcmp(ev->data, "[DONE]") == 0) {
    llm_stream_end(s);
    return 0;
  }
  json_t *root = json_loadb(ev->data, ev->data_len, 0, NULL);
  if (!root) return llm_stream_fail(s, "malformed stream (an event is not JSON)");
  int rc = 0;
  json_t *err = json_object_get(root, "error");
  if (err) {
    const char *m = json_string_value(json_object_get(err, "message"));
    char what[400];
    snprintf(what, sizeof what, "error in the stream: %s", m ? m : "unknown");
    rc = llm_stream_fail(s, what);
  } else {
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *delta = json_object_get(choice, "delta");
    const char *text = json_string_value(json_object_get(delta, "content"));
    llm_stream_token(s, text);
    if (json_is_string(json_object_get(choice, "finish_reason"))) llm_stream_complete(s);
    if (!choice && !json_is_array(json_object_get(root, "choices")))
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
