/*
 * llm tools: tool calling in the two chat services' wire formats.
 *
 * First the requests as built (tools offered, a whole round of calls and
 * results in the history, for OpenAI chat completions and Anthropic
 * Messages), then the streams: both backends through the engine interface
 * against the fixture server (tests/fixtures/services/server.mjs, spawned
 * here) on one libuv loop, which sends calls as each service does: one,
 * several in parallel, arguments in many pieces, text before the calls,
 * arguments that are not JSON, too many calls, arguments too long; and a
 * second request carrying the results, answered from them.
 */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "node_fixture.h"
#include "engines/engines.h"
#include "engines/llm/llm_stream.h"
#include "engines/service.h"
#include "net/http_client.h"


/* ---- requests as built ---- */

static const char *ORDER_SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"order_id\":{\"type\":\"string\"}},\"required\":[\"order_id\"]}";

static const struct llm_tool TOOLS[] = {
    {.name = "get_order_status", .description = "Look up an order by its number.", .parameters = NULL},
    {.name = "get_time", .description = NULL, .parameters = NULL},
};

static const struct llm_tool_call CALLS[] = {
    {.id = "call_1", .name = "get_order_status", .arguments = "{\"order_id\":\"A17\"}"},
    {.id = "call_2", .name = "get_time", .arguments = "not json"},
};

/* user, assistant (text + two calls), two results (the second failed), assistant, user */
static const struct llm_turn ROUND[] = {
    {.role = LLM_USER, .text = "Where is my order A17?"},
    {.role = LLM_ASSISTANT, .text = "Let me check.", .calls = CALLS, .ncalls = 2},
    {.role = LLM_TOOL, .text = "{\"status\":\"shipped\"}", .call_id = "call_1", .tool_name = "get_order_status"},
    {.role = LLM_TOOL, .text = "{\"error\":\"bad arguments\"}", .call_id = "call_2", .tool_name = "get_time",
     .is_error = 1},
    {.role = LLM_ASSISTANT, .text = "It has shipped."},
    {.role = LLM_USER, .text = "Thanks!"},
};

static struct svc_conf conf(const char *service) {
  struct svc_conf c = {.service = service, .max_tokens = 150, .temperature = 0.7};
  snprintf(c.base_url, sizeof c.base_url, "https://api.example.com/v1");
  snprintf(c.model, sizeof c.model, "m");
  return c;
}

static json_t *build(int anthropic, const struct llm_params *p, int *rc) {
  struct svc_conf c = conf(anthropic ? "Anthropic Messages" : "OpenAI chat completions");
  struct http_request r;
  *rc = anthropic ? llm_anthropic_build(&c, p, &r) : llm_openai_build(&c, p, &r);
  if (*rc) return NULL;
  json_t *b = json_loadb(r.body, r.body_len, 0, NULL);
  http_request_clear(&r);
  assert_non_null(b);
  return b;
}

static const char *str_at(json_t *v, const char *name) { return json_string_value(json_object_get(v, name)); }

static void openai_request_offers_tools_and_carries_a_round(void **state) {
  struct llm_tool tools[2] = {TOOLS[0], TOOLS[1]};
  tools[0].parameters = ORDER_SCHEMA;
  struct llm_params p = {.system = "Be brief.", .turns = ROUND, .nturns = 6, .tools = tools, .ntools = 2};
  int rc;
  json_t *b = build(0, &p, &rc);
  json_t *t = json_object_get(b, "tools");
  assert_int_equal(json_array_size(t), 2);
  json_t *fn = json_object_get(json_array_get(t, 0), "function");
  assert_string_equal(str_at(json_array_get(t, 0), "type"), "function");
  assert_string_equal(str_at(fn, "name"), "get_order_status");
  assert_string_equal(str_at(fn, "description"), "Look up an order by its number.");
  assert_string_equal(json_string_value(json_array_get(json_object_get(json_object_get(fn, "parameters"), "required"), 0)),
                      "order_id");
  fn = json_object_get(json_array_get(t, 1), "function");
  assert_null(json_object_get(fn, "description"));
  assert_string_equal(str_at(json_object_get(fn, "parameters"), "type"), "object"); /* none given: an empty object */
  assert_null(json_object_get(b, "parallel_tool_calls"));                            /* the service's default */

  json_t *m = json_object_get(b, "messages");
  assert_int_equal(json_array_size(m), 7); /* system + 6 */
  json_t *a = json_array_get(m, 2);
  assert_string_equal(str_at(a, "role"), "assistant");
  assert_string_equal(str_at(a, "content"), "Let me check.");
  json_t *tc = json_object_get(a, "tool_calls");
  assert_int_equal(json_array_size(tc), 2);
  assert_string_equal(str_at(json_array_get(tc, 0), "id"), "call_1");
  assert_string_equal(str_at(json_array_get(tc, 0), "type"), "function");
  assert_string_equal(str_at(json_object_get(json_array_get(tc, 0), "function"), "arguments"), "{\"order_id\":\"A17\"}");
  assert_string_equal(str_at(json_object_get(json_array_get(tc, 1), "function"), "arguments"), "not json"); /* as made */
  for (int i = 0; i < 2; i++) {
    json_t *res = json_array_get(m, 3 + i);
    assert_string_equal(str_at(res, "role"), "tool");
    assert_string_equal(str_at(res, "tool_call_id"), CALLS[i].id);
    assert_string_equal(str_at(res, "content"), ROUND[2 + i].text);
  }
  assert_string_equal(str_at(json_array_get(m, 5), "content"), "It has shipped.");
  json_decref(b);

  /* calls without text: content null; no tools offered: no "tools" */
  struct llm_turn quiet[] = {ROUND[0], {.role = LLM_ASSISTANT, .calls = CALLS, .ncalls = 1}, ROUND[2]};
  p = (struct llm_params){.turns = quiet, .nturns = 3};
  b = build(0, &p, &rc);
  assert_null(json_object_get(b, "tools"));
  assert_true(json_is_null(json_object_get(json_array_get(json_object_get(b, "messages"), 1), "content")));
  json_decref(b);
}

static void anthropic_request_offers_tools_and_carries_a_round(void **state) {
  struct llm_tool tools[2] = {TOOLS[0], TOOLS[1]};
  tools[0].parameters = ORDER_SCHEMA;
  struct llm_params p = {.system = "Be brief.", .turns = ROUND, .nturns = 6, .tools = tools, .ntools = 2};
  int rc;
  json_t *b = build(1, &p, &rc);
  json_t *t = json_object_get(b, "tools");
  assert_int_equal(json_array_size(t), 2);
  assert_string_equal(str_at(json_array_get(t, 0), "name"), "get_order_status");
  assert_string_equal(str_at(json_object_get(json_array_get(t, 0), "input_schema"), "type"), "object");
  assert_null(json_object_get(json_array_get(t, 0), "cache_control"));
  /* the last tool closes a cached prefix; the system prompt keeps its own mark */
  assert_string_equal(str_at(json_object_get(json_array_get(t, 1), "cache_control"), "type"), "ephemeral");
  assert_string_equal(str_at(json_object_get(json_array_get(json_object_get(b, "system"), 0), "cache_control"), "type"),
                      "ephemeral");

  json_t *m = json_object_get(b, "messages");
  assert_int_equal(json_array_size(m), 5); /* user, assistant, user (both results), assistant, user */
  json_t *blocks = json_object_get(json_array_get(m, 1), "content");
  assert_int_equal(json_array_size(blocks), 3);
  assert_string_equal(str_at(json_array_get(blocks, 0), "text"), "Let me check.");
  json_t *use = json_array_get(blocks, 1);
  assert_string_equal(str_at(use, "type"), "tool_use");
  assert_string_equal(str_at(use, "id"), "call_1");
  assert_string_equal(str_at(json_object_get(use, "input"), "order_id"), "A17");
  /* arguments that are not an object go as {} */
  assert_int_equal(json_object_size(json_object_get(json_array_get(blocks, 2), "input")), 0);
  assert_true(json_is_object(json_object_get(json_array_get(blocks, 2), "input")));

  json_t *results = json_array_get(m, 2);
  assert_string_equal(str_at(results, "role"), "user");
  json_t *rb = json_object_get(results, "content");
  assert_int_equal(json_array_size(rb), 2);
  assert_string_equal(str_at(json_array_get(rb, 0), "type"), "tool_result");
  assert_string_equal(str_at(json_array_get(rb, 0), "tool_use_id"), "call_1");
  assert_string_equal(str_at(json_array_get(rb, 0), "content"), "{\"status\":\"shipped\"}");
  assert_null(json_object_get(json_array_get(rb, 0), "is_error"));
  assert_true(json_is_true(json_object_get(json_array_get(rb, 1), "is_error")));
  assert_string_equal(str_at(json_array_get(m, 4), "content"), "Thanks!");
  json_decref(b);
}

/* The caller spoke again before the model answered the results: one user message, results first. */
static void anthropic_joins_words_after_results(void **state) {
  struct llm_turn turns[] = {ROUND[0], {.role = LLM_ASSISTANT, .calls = CALLS, .ncalls = 1}, ROUND[2],
                             {.role = LLM_USER, .text = "hello?"}};
  struct llm_params p = {.turns = turns, .nturns = 4, .tools = TOOLS, .ntools = 2};
  int rc;
  json_t *b = build(1, &p, &rc);
  json_t *m = json_object_get(b, "messages");
  assert_int_equal(json_array_size(m), 3);
  json_t *a = json_object_get(json_array_get(m, 1), "content");
  assert_int_equal(json_array_size(a), 1); /* no empty text block */
  json_t *u = json_object_get(json_array_get(m, 2), "content");
  assert_int_equal(json_array_size(u), 2);
  assert_string_equal(str_at(json_array_get(u, 0), "type"), "tool_result");
  assert_string_equal(str_at(json_array_get(u, 1), "type"), "text");
  assert_string_equal(str_at(json_array_get(u, 1), "text"), "hello?");
  json_decref(b);
}

/* A result whose call fell out of the history window (or was a left-out greeting's) is dropped. */
static void results_without_their_call_are_dropped(void **state) {
  for (int anthropic = 0; anthropic < 2; anthropic++) {
    struct llm_params p = {.turns = ROUND + 2, .nturns = 4}; /* starts at the results */
    int rc;
    json_t *b = build(anthropic, &p, &rc);
    json_t *m = json_object_get(b, "messages");
    size_t n = json_array_size(m);
    for (size_t i = 0; i < n; i++) {
      const char *role = str_at(json_array_get(m, i), "role");
      assert_string_not_equal(role, "tool");
      assert_false(json_is_array(json_object_get(json_array_get(m, i), "content")));
    }
    json_decref(b);
  }
}

/* The caller spoke while a tool still ran: its call gets a result saying so, ahead of the words. */
static void a_call_without_its_result_gets_one(void **state) {
  struct llm_turn turns[] = {ROUND[0], ROUND[1], ROUND[2], {.role = LLM_USER, .text = "hello?"}};
  struct llm_params p = {.turns = turns, .nturns = 4};
  int rc;
  json_t *b = build(0, &p, &rc);
  json_t *m = json_object_get(b, "messages");
  assert_int_equal(json_array_size(m), 5); /* user, assistant, tool, tool (made), user */
  assert_string_equal(str_at(json_array_get(m, 3), "role"), "tool");
  assert_string_equal(str_at(json_array_get(m, 3), "tool_call_id"), "call_2");
  assert_string_equal(str_at(json_array_get(m, 3), "content"), LLM_NO_RESULT);
  assert_string_equal(str_at(json_array_get(m, 4), "content"), "hello?");
  json_decref(b);

  b = build(1, &p, &rc);
  m = json_object_get(b, "messages");
  assert_int_equal(json_array_size(m), 3);
  json_t *u = json_object_get(json_array_get(m, 2), "content");
  assert_int_equal(json_array_size(u), 3); /* the result, the one made, the words */
  assert_string_equal(str_at(json_array_get(u, 1), "tool_use_id"), "call_2");
  assert_true(json_is_true(json_object_get(json_array_get(u, 1), "is_error")));
  assert_string_equal(str_at(json_array_get(u, 2), "text"), "hello?");
  json_decref(b);

  /* the calls are the last thing (no result, no words yet): still answered */
  p.nturns = 2;
  b = build(1, &p, &rc);
  m = json_object_get(b, "messages");
  assert_int_equal(json_array_size(m), 3);
  assert_int_equal(json_array_size(json_object_get(json_array_get(m, 2), "content")), 2);
  json_decref(b);
}

static void bad_tools_are_refused(void **state) {
  struct llm_tool bad[] = {{.name = "x", .parameters = "[1,2]"}};
  struct llm_tool nameless[] = {{.name = NULL}};
  struct llm_turn user[] = {{.role = LLM_USER, .text = "hi"}};
  for (int anthropic = 0; anthropic < 2; anthropic++) {
    int rc;
    struct llm_params p = {.turns = user, .nturns = 1, .tools = bad, .ntools = 1};
    assert_null(build(anthropic, &p, &rc));
    assert_int_equal(rc, -EINVAL);
    p.tools = nameless;
    assert_null(build(anthropic, &p, &rc));
    assert_int_equal(rc, -EINVAL);
    /* text that is not UTF-8 beside calls, a result that is not, a call without an id: refused, nothing leaks */
    struct llm_tool_call idless[] = {{.name = "get_time", .arguments = "{}"}};
    struct llm_turn bad_text[][3] = {
        {user[0], {.role = LLM_ASSISTANT, .text = "caf\xe9", .calls = CALLS, .ncalls = 2}, user[0]},
        {user[0], {.role = LLM_ASSISTANT, .calls = CALLS, .ncalls = 1},
         {.role = LLM_TOOL, .text = "caf\xe9", .call_id = "call_1"}},
        {user[0], {.role = LLM_ASSISTANT, .calls = idless, .ncalls = 1}, user[0]},
    };
    for (int k = 0; k < 3; k++) {
      p = (struct llm_params){.turns = bad_text[k], .nturns = 3};
      assert_null(build(anthropic, &p, &rc));
      assert_int_equal(rc, -EINVAL);
    }
  }
}

/* ---- streams, against the fixture ---- */

#define KEY "sk-test-Tools0123456789abcdef"

struct fx {
  pid_t node;
  char base[128];
  uv_loop_t loop;
  uv_timer_t guard;
  struct mailbox *control, *home;
  struct http_client *http;
  struct config cfg;
  struct engine_env env;
};

static struct fx F;

static int spawn_fixture(void) {
  int port;
  F.node = node_fixture_spawn("services/server.mjs", 0, NULL, &port);
  snprintf(F.base, sizeof F.base, "http://127.0.0.1:%d", port);
  return F.node > 0 ? 0 : -1;
}

/* The fixture's control endpoint (blocking; not the client under test): POSTs `body`, or GETs. */
static json_t *fixture(const char *path, const char *body) {
  json_t *j = node_fixture_request(F.base, path, body);
  assert_non_null(j);
  return j;
}

static void script(const char *json) { json_decref(fixture("/_fixture/script", json)); }

/* The n-th chat request's log entry since the last reset (a new reference). */
static json_t *chat_entry(size_t n) {
  json_t *log = fixture("/_fixture/log", NULL), *out = NULL, *v;
  size_t i, seen = 0;
  json_array_foreach(log, i, v) {
    const char *s = str_at(v, "service");
    if ((strcmp(s, "openai-chat") == 0 || strcmp(s, "anthropic") == 0) && seen++ == n) out = json_incref(v);
  }
  json_decref(log);
  assert_non_null(out);
  return out;
}

static void on_msg(struct mailbox *mb, struct mailbox_msg *m, void *u) { free(m); }
static void drop_msg(struct mailbox_msg *m) { free(m); }
static void on_guard(uv_timer_t *t) {}

/* What one reply delivered, in order: "T" per token, "C" per call, "D" done, "E" error. */
struct rec {
  char text[1024];
  char seq[128];
  struct llm_tool_call calls[20];
  char *owned[60];
  size_t ncalls, nowned;
  uint64_t call_ns; /* when the first call reached home */
  int done, errors;
  char err[512];
};

static void mark(struct rec *r, char c) {
  size_t n = strlen(r->seq);
  if (n + 1 < sizeof r->seq) r->seq[n] = c;
}

static void on_token(void *u, const char *t) {
  struct rec *r = u;
  if (r->seq[0] == 0 || r->seq[strlen(r->seq) - 1] != 'T') mark(r, 'T'); /* a run of tokens is one T */
  strncat(r->text, t, sizeof r->text - strlen(r->text) - 1);
}

static const char *keep(struct rec *r, const char *s) {
  assert_true(r->nowned < 60);
  return r->owned[r->nowned++] = strdup(s);
}

static void on_tool_call(void *u, const struct llm_tool_call *c) {
  struct rec *r = u;
  mark(r, 'C');
  if (!r->ncalls) r->call_ns = uv_hrtime();
  assert_true(r->ncalls < 20);
  r->calls[r->ncalls++] = (struct llm_tool_call){keep(r, c->id), keep(r, c->name), keep(r, c->arguments)};
}

static void on_done(void *u, int hangup) {
  mark(u, 'D');
  ((struct rec *)u)->done++;
}

static void on_error(void *u, const char *m) {
  struct rec *r = u;
  mark(r, 'E');
  r->errors++;
  snprintf(r->err, sizeof r->err, "%s", m);
}

static void rec_free(struct rec *r) {
  for (size_t i = 0; i < r->nowned; i++) free(r->owned[i]);
  memset(r, 0, sizeof *r);
}

static struct engines *open_llm(const char *llm) {
  snprintf(F.cfg.asr, sizeof F.cfg.asr, "openai");
  snprintf(F.cfg.llm, sizeof F.cfg.llm, "%s", llm);
  snprintf(F.cfg.tts, sizeof F.cfg.tts, "openai");
  snprintf(F.cfg.tts_base_url, sizeof F.cfg.tts_base_url, "%s/v1", F.base);
  struct engines *e = NULL;
  char err[256] = "";
  if (engines_open(&e, &F.env, err, sizeof err)) fail_msg("engines_open: %s", err);
  return e;
}

static const char *system_prompt = "You are brief.";

/* One reply to `turns`, with the two tools offered; waits for done or error. */
static void run(struct engines *e, const struct llm_turn *turns, size_t nturns, struct rec *r) {
  struct llm_tool tools[2] = {TOOLS[0], TOOLS[1]};
  tools[0].parameters = ORDER_SCHEMA;
  struct llm_params p = {.system = system_prompt, .turns = turns, .nturns = nturns, .language = "en",
                         .max_tokens = 150, .temperature = 0.7, .tools = tools, .ntools = 2};
  struct llm_cb cb = {.token = on_token, .tool_call = on_tool_call, .done = on_done, .error = on_error, .user = r};
  struct llm_job *j;
  assert_int_equal(engines_llm_generate(e, &p, F.home, &cb, &j), 0);
  uint64_t end = uv_hrtime() + 8000000000ull;
  while (!r->done && !r->errors && uv_hrtime() < end) uv_run(&F.loop, UV_RUN_ONCE);
  llm_release(j);
  assert_true(r->done + r->errors == 1);
}

static const struct llm_turn ASK[] = {{.role = LLM_USER, .text = "Where is my order A17?"}};

static const char *BACKENDS[] = {"openai", "anthropic"};

static void a_single_call_streams_in_many_pieces(void **state) {
  for (int b = 0; b < 2; b++) {
    script("{\"reset\":true,\"toolCalls\":[{\"name\":\"get_order_status\",\"arguments\":{\"order_id\":\"A17\","
           "\"note\":\"a longer argument, so it takes many events\"}}]}");
    struct engines *e = open_llm(BACKENDS[b]);
    struct rec r = {0};
    run(e, ASK, 1, &r);
    if (r.errors) fail_msg("%s: %s", BACKENDS[b], r.err);
    assert_string_equal(r.seq, "CD");
    assert_int_equal(r.ncalls, 1);
    assert_string_equal(r.calls[0].name, "get_order_status");
    assert_string_equal(r.calls[0].arguments,
                        "{\"order_id\":\"A17\",\"note\":\"a longer argument, so it takes many events\"}");
    json_t *entry = chat_entry(0);
    assert_string_equal(r.calls[0].id, str_at(json_array_get(json_object_get(entry, "toolCalls"), 0), "id"));
    assert_true(json_integer_value(json_object_get(entry, "tokens")) > 20); /* the arguments came in many events */
    json_t *tools = json_object_get(json_object_get(entry, "request"), "tools");
    assert_int_equal(json_array_size(tools), 2);
    json_decref(entry);
    rec_free(&r);
    engines_close(e);
  }
}

static void parallel_calls_arrive_in_order(void **state) {
  for (int b = 0; b < 2; b++) {
    /* interleave: OpenAI's indexes take turns (Anthropic's blocks follow one another anyway) */
    script("{\"reset\":true,\"interleave\":true,\"toolCalls\":[{\"name\":\"get_order_status\",\"arguments\":"
           "{\"order_id\":\"A17\"}},{\"name\":\"get_time\",\"arguments\":{}},{\"name\":\"get_order_status\","
           "\"arguments\":{\"order_id\":\"B2\"}}]}");
    struct engines *e = open_llm(BACKENDS[b]);
    struct rec r = {0};
    run(e, ASK, 1, &r);
    if (r.errors) fail_msg("%s: %s", BACKENDS[b], r.err);
    assert_string_equal(r.seq, "CCCD");
    assert_string_equal(r.calls[0].arguments, "{\"order_id\":\"A17\"}");
    assert_string_equal(r.calls[1].name, "get_time");
    assert_string_equal(r.calls[1].arguments, "{}");
    assert_string_equal(r.calls[2].arguments, "{\"order_id\":\"B2\"}");
    assert_string_not_equal(r.calls[0].id, r.calls[2].id);
    rec_free(&r);
    engines_close(e);
  }
}

static void text_before_a_call_comes_first(void **state) {
  for (int b = 0; b < 2; b++) {
    script("{\"reset\":true,\"toolText\":\"Let me check that.\",\"toolCalls\":[{\"name\":\"get_time\"}]}");
    struct engines *e = open_llm(BACKENDS[b]);
    struct rec r = {0};
    run(e, ASK, 1, &r);
    if (r.errors) fail_msg("%s: %s", BACKENDS[b], r.err);
    assert_string_equal(r.seq, "TCD");
    assert_string_equal(r.text, "Let me check that.");
    assert_string_equal(r.calls[0].arguments, "{}");
    rec_free(&r);
    engines_close(e);
  }
}

/* Arguments that are not JSON go to the tool layer as written, which refuses them to the model. */
static void malformed_arguments_are_delivered_as_written(void **state) {
  for (int b = 0; b < 2; b++) {
    script("{\"reset\":true,\"toolCalls\":[{\"name\":\"get_order_status\",\"arguments\":\"{\\\"order_id\\\": 17\"}]}");
    struct engines *e = open_llm(BACKENDS[b]);
    struct rec r = {0};
    run(e, ASK, 1, &r);
    if (r.errors) fail_msg("%s: %s", BACKENDS[b], r.err);
    assert_string_equal(r.seq, "CD");
    assert_string_equal(r.calls[0].arguments, "{\"order_id\": 17");
    rec_free(&r);
    engines_close(e);
  }
}

/* The round trip: calls, then a request carrying the results, answered from them. */
static void results_go_back_and_the_answer_uses_them(void **state) {
  for (int b = 0; b < 2; b++) {
    script("{\"reset\":true,\"toolReply\":\"The order {order_id} is {status}.\",\"toolCalls\":[{\"name\":"
           "\"get_order_status\",\"arguments\":{\"order_id\":\"A17\"}},{\"name\":\"get_time\",\"arguments\":{}}]}");
    struct engines *e = open_llm(BACKENDS[b]);
    struct rec first = {0}, second = {0};
    run(e, ASK, 1, &first);
    assert_int_equal(first.ncalls, 2);
    struct llm_turn turns[] = {
        ASK[0],
        {.role = LLM_ASSISTANT, .calls = first.calls, .ncalls = 2},
        {.role = LLM_TOOL, .text = "{\"error\":\"the clock is broken\"}", .call_id = first.calls[1].id,
         .tool_name = "get_time", .is_error = 1},
        {.role = LLM_TOOL, .text = "{\"order_id\":\"A17\",\"status\":\"shipped\"}", .call_id = first.calls[0].id,
         .tool_name = "get_order_status"},
    };
    run(e, turns, 4, &second);
    if (second.errors) fail_msg("%s: %s", BACKENDS[b], second.err);
    assert_string_equal(second.seq, "TD");
    assert_string_equal(second.text, "The order A17 is shipped.");
    /* the fixture read both results, in the service's shape, ids matching the calls */
    json_t *entry = chat_entry(1);
    json_t *res = json_object_get(entry, "toolResults");
    assert_int_equal(json_array_size(res), 2);
    assert_string_equal(str_at(json_array_get(res, 0), "id"), first.calls[1].id);
    assert_string_equal(str_at(json_array_get(res, 1), "id"), first.calls[0].id);
    if (b == 1) assert_true(json_is_true(json_object_get(json_array_get(res, 0), "isError")));
    json_t *msgs = json_object_get(json_object_get(entry, "request"), "messages");
    assert_int_equal(json_array_size(msgs), b == 0 ? 5 : 3); /* OpenAI: system, user, assistant, 2 tool */
    json_decref(entry);
    rec_free(&first);
    rec_free(&second);
    engines_close(e);
  }
}

/* Anthropic: the last tool is marked, so the tools are cached with or without a system prompt,
 * and they come first, so the system prompt's mark caches them too. */
static void the_tools_are_in_the_cached_prefix(void **state) {
  struct engines *e = open_llm("anthropic");
  for (int with_system = 0; with_system < 2; with_system++) {
    script("{\"reset\":true,\"clearCache\":true}");
    system_prompt = with_system ? "You are brief." : NULL;
    struct rec r = {0};
    run(e, ASK, 1, &r);
    rec_free(&r);
    run(e, ASK, 1, &r);
    rec_free(&r);
    json_t *first = chat_entry(0), *second = chat_entry(1);
    json_int_t system_only = with_system ? (json_int_t)(strlen("You are brief.") + 3) / 4 : 0;
    json_int_t written = json_integer_value(json_object_get(json_object_get(first, "usage"), "cacheWrite"));
    json_int_t read = json_integer_value(json_object_get(json_object_get(second, "usage"), "cached"));
    assert_true(written > system_only); /* the tools' part of the prefix was written */
    assert_int_equal(read, written);
    json_decref(first);
    json_decref(second);
  }
  system_prompt = "You are brief.";
  engines_close(e);
}

static void too_many_calls_or_too_long_arguments_fail_the_reply(void **state) {
  char cmd[4096] = "{\"reset\":true,\"toolCalls\":[";
  for (int i = 0; i < LLM_TOOL_CALLS_MAX + 1; i++)
    strcat(cmd, i ? ",{\"name\":\"get_time\",\"arguments\":{}}" : "{\"name\":\"get_time\",\"arguments\":{}}");
  strcat(cmd, "]}");
  size_t long_len = LLM_TOOL_ARGS_MAX + 100;
  char *long_cmd = malloc(long_len + 200);
  assert_non_null(long_cmd);
  int n = snprintf(long_cmd, 200, "{\"reset\":true,\"argsChunk\":4000,\"toolCalls\":[{\"name\":\"get_time\","
                                  "\"arguments\":{\"pad\":\"");
  memset(long_cmd + n, 'x', long_len);
  strcpy(long_cmd + n + long_len, "\"}}]}");
  for (int b = 0; b < 2; b++) {
    struct engines *e = open_llm(BACKENDS[b]);
    script(cmd);
    struct rec r = {0};
    run(e, ASK, 1, &r);
    assert_int_equal(r.errors, 1);
    assert_non_null(strstr(r.err, "more than 16 tool calls"));
    assert_int_equal(r.done, 0);
    rec_free(&r);

    script(long_cmd);
    run(e, ASK, 1, &r);
    assert_int_equal(r.errors, 1);
    assert_int_equal(r.ncalls, 0);
    assert_non_null(strstr(r.err, "arguments are longer than 65536 bytes"));
    rec_free(&r);
    engines_close(e);
  }
  free(long_cmd);
}

/* A stream cut off in the middle of a call: an error, and the half call is not delivered. */
static void a_call_cut_off_is_an_error(void **state) {
  for (int b = 0; b < 2; b++) {
    script("{\"reset\":true,\"scenarios\":[\"cutoff\",\"cutoff\"],\"toolCalls\":[{\"name\":\"get_order_status\","
           "\"arguments\":{\"order_id\":\"A17\",\"note\":\"long enough to be cut in the middle\"}}]}");
    struct engines *e = open_llm(BACKENDS[b]);
    struct rec r = {0};
    run(e, ASK, 1, &r);
    assert_string_equal(r.seq, "E");
    rec_free(&r);
    engines_close(e);
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/*
 * What this layer adds between the service finishing a call and the call
 * reaching the home loop: from the fixture writing the event that completes
 * it (OpenAI's finish_reason chunk, Anthropic's content_block_stop; both
 * the third event from the end) to the tool_call callback. Printed, not
 * asserted (a shared machine); both clocks are CLOCK_MONOTONIC.
 */
static void latency_of_a_call_reaching_home(void **state) {
  enum { ROUNDS = 20 };
  for (int b = 0; b < 2; b++) {
    struct engines *e = open_llm(BACKENDS[b]);
    double ms[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
      script("{\"reset\":true,\"toolCalls\":[{\"name\":\"get_order_status\",\"arguments\":{\"order_id\":\"A17\"}}]}");
      struct rec r = {0};
      run(e, ASK, 1, &r);
      assert_int_equal(r.ncalls, 1);
      json_t *entry = chat_entry(0);
      json_t *writes = json_object_get(entry, "writeNs");
      size_t n = (size_t)json_integer_value(json_object_get(entry, "tokens"));
      assert_true(n >= 3 && n - 3 < json_array_size(writes));
      uint64_t written = strtoull(json_string_value(json_array_get(writes, n - 3)), NULL, 10);
      ms[i] = (double)(r.call_ns - written) / 1e6;
      json_decref(entry);
      rec_free(&r);
    }
    qsort(ms, ROUNDS, sizeof ms[0], cmp_double);
    printf("# %-9s tool call complete at the service -> at home (ms): p50 %.3f  p95 %.3f  max %.3f\n", BACKENDS[b],
           ms[ROUNDS / 2], ms[ROUNDS * 95 / 100], ms[ROUNDS - 1]);
    engines_close(e);
  }
}

static int setup_fixture(void **state) {
  if (spawn_fixture() != 0) return -1;
  setenv("TS_TEST_SERVICE_KEY", KEY, 1);
  assert_int_equal(uv_loop_init(&F.loop), 0);
  uv_timer_init(&F.loop, &F.guard);
  uv_timer_start(&F.guard, on_guard, 20, 20);
  assert_int_equal(mailbox_new(&F.control, &F.loop, on_msg, NULL), 0);
  assert_int_equal(mailbox_new(&F.home, &F.loop, on_msg, NULL), 0);
  struct http_client_opts o = {.connect_timeout_ms = 1000, .first_byte_timeout_ms = 3000, .total_timeout_ms = 10000};
  assert_int_equal(http_client_new(&F.http, &F.loop, &o), 0);
  config_defaults(&F.cfg);
  snprintf(F.cfg.llm_base_url, sizeof F.cfg.llm_base_url, "%s/v1", F.base);
  snprintf(F.cfg.asr_base_url, sizeof F.cfg.asr_base_url, "%s/v1", F.base);
  snprintf(F.cfg.llm_api_key_env, sizeof F.cfg.llm_api_key_env, "TS_TEST_SERVICE_KEY");
  snprintf(F.cfg.asr_api_key_env, sizeof F.cfg.asr_api_key_env, "TS_TEST_SERVICE_KEY");
  snprintf(F.cfg.tts_api_key_env, sizeof F.cfg.tts_api_key_env, "TS_TEST_SERVICE_KEY");
  F.env = (struct engine_env){&F.cfg, NULL, F.control, F.http};
  return 0;
}

static int teardown_fixture(void **state) {
  http_client_free(F.http);
  mailbox_close(F.control, drop_msg);
  mailbox_close(F.home, drop_msg);
  uv_close((uv_handle_t *)&F.guard, NULL);
  uv_run(&F.loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&F.loop);
  node_fixture_stop(F.node);
  return rc;
}

int main(void) {
  const struct CMUnitTest built[] = {
      cmocka_unit_test(openai_request_offers_tools_and_carries_a_round),
      cmocka_unit_test(anthropic_request_offers_tools_and_carries_a_round),
      cmocka_unit_test(anthropic_joins_words_after_results),
      cmocka_unit_test(results_without_their_call_are_dropped),
      cmocka_unit_test(a_call_without_its_result_gets_one),
      cmocka_unit_test(bad_tools_are_refused),
  };
  int rc = cmocka_run_group_tests_name("requests", built, NULL, NULL);
  if (system("node --version >/dev/null 2>&1") != 0) {
    printf("# node not found: skipping the streamed tool calls\n");
    return rc;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest streamed[] = {
      cmocka_unit_test(a_single_call_streams_in_many_pieces),
      cmocka_unit_test(parallel_calls_arrive_in_order),
      cmocka_unit_test(text_before_a_call_comes_first),
      cmocka_unit_test(malformed_arguments_are_delivered_as_written),
      cmocka_unit_test(results_go_back_and_the_answer_uses_them),
      cmocka_unit_test(the_tools_are_in_the_cached_prefix),
      cmocka_unit_test(too_many_calls_or_too_long_arguments_fail_the_reply),
      cmocka_unit_test(a_call_cut_off_is_an_error),
      cmocka_unit_test(latency_of_a_call_reaching_home),
  };
  rc |= cmocka_run_group_tests_name("streams", streamed, setup_fixture, teardown_fixture);
  curl_global_cleanup();
  return rc;
}
