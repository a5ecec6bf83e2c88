/*
 * The tool registry: the tools file is checked whole (each message names
 * the tool and the field), built-ins answer, webhooks run against the
 * fixture receiver (tests/fixtures/tools/webhook.mjs, spawned here), which
 * checks every signature the way docs/tools.md tells receivers to, and MCP
 * tools join the list from the fixture MCP server (tests/fixtures/tools/
 * mcp.mjs). One libuv loop is both the control loop and the calls' home
 * loop. The last test prints what a webhook round adds.
 */
#include <curl/curl.h>
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

#include "core/prom.h"
#include "net/http_client.h"
#include "node_fixture.h"
#include "tools/tools.h"


#define SECRET "fixture-secret"
#define SHOP_KEY "shop-key-1234"
#define CLIENT_FIRST_BYTE_MS 1000 /* the HTTP client's own; a webhook's timeout_ms replaces it */

struct fx {
  pid_t node, mcp;
  char base[128], mcp_base[128];
  char dir[64];
  char tools_path[128];
  uv_loop_t loop;
  uv_timer_t guard;
  struct mailbox *control, *home;
  struct http_client *http;
  struct config cfg;
  struct engine_env env;
};

static struct fx F;

/* ---- the fixture receiver ---- */

/* Starts a node script that prints its port; base becomes http://127.0.0.1:<port>. */
static int spawn_node(const char *name, const char *arg, pid_t *pid, char *base, size_t cap) {
  char script[256];
  snprintf(script, sizeof script, "tools/%s", name);
  int port = 0;
  *pid = node_fixture_spawn(script, 0, arg, &port);
  snprintf(base, cap, "http://127.0.0.1:%d", port);
  return *pid > 0 ? 0 : -1;
}

static int spawn_fixture(void) { return spawn_node("webhook.mjs", SECRET, &F.node, F.base, sizeof F.base); }

/* A blocking request to the fixture's own endpoints (not through the client under test). */
static json_t *fixture(const char *path, int post) {
  json_t *j = node_fixture_request(F.base, path, post ? "" : NULL);
  assert_non_null(j);
  return j;
}

static json_t *fixture_log(void) { return fixture("/_fixture/log", 0); }
static void fixture_reset(void) { json_decref(fixture("/_fixture/reset", 1)); }

/* ---- the loop and calls ---- */

static void on_msg(struct mailbox *mb, struct mailbox_msg *m, void *u) { free(m); }
static void drop_msg(struct mailbox_msg *m) { free(m); }
static void on_guard(uv_timer_t *t) {}

static void run_for(int ms) {
  uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000;
  while (uv_hrtime() < end) uv_run(&F.loop, UV_RUN_ONCE);
}

struct res {
  int done, calls, is_error;
  char *json;
};

static void on_result(void *user, const char *json, int is_error) {
  struct res *r = user;
  r->calls++;
  r->done = 1;
  r->is_error = is_error;
  free(r->json);
  r->json = strdup(json);
}

static struct tool_job *call(struct tools *t, const char *tool, const char *args, struct res *r) {
  memset(r, 0, sizeof *r);
  struct tool_request req = {.call_id = "call-42", .turn = 3, .tool = tool, .arguments = args,
                             .tool_call_id = "call_abc"};
  struct tool_cb cb = {.result = on_result, .user = r};
  struct tool_job *j = NULL;
  assert_int_equal(tools_call(t, &req, F.home, &cb, &j), 0);
  assert_non_null(j);
  assert_int_equal(r->done, 0); /* never inside the call */
  return j;
}

/* Calls and waits for the result; the job is released. */
static void call_wait(struct tools *t, const char *tool, const char *args, struct res *r) {
  struct tool_job *j = call(t, tool, args, r);
  uint64_t end = uv_hrtime() + 10000000000ull;
  while (!r->done && uv_hrtime() < end) uv_run(&F.loop, UV_RUN_ONCE);
  assert_true(r->done);
  tool_release(j);
}

static void res_free(struct res *r) {
  free(r->json);
  r->json = NULL;
}

/* ---- files ---- */

static void write_tools(const char *text) {
  FILE *f = fopen(F.tools_path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  snprintf(F.cfg.tools_file, sizeof F.cfg.tools_file, "%s", F.tools_path);
}

static int open_text(const char *text, struct tools **t, char *err, size_t errlen) {
  write_tools(text);
  err[0] = '\0';
  return tools_open(t, &F.env, err, errlen);
}

/* Every webhook mode of the fixture as a tool, plus the built-ins. */
static struct tools *open_fixture_tools(const char *secret) {
  char text[4096];
  snprintf(text, sizeof text,
           "{\"tools\": ["
           "{\"name\": \"get_order_status\", \"description\": \"Look up an order.\","
           " \"parameters\": {\"type\": \"object\", \"properties\": {\"order_id\": {\"type\": \"string\"}}},"
           " \"webhook\": {\"url\": \"%1$s/hook/ok\", \"timeout_ms\": 5000,"
           "  \"headers\": {\"X-Api-Key\": {\"env\": \"TS_TEST_SHOP_KEY\"}, \"X-Shop\": \"north\"}},"
           " \"say_while_running\": \"One moment.\"},"
           "{\"name\": \"fail\", \"description\": \"d\", \"webhook\": {\"url\": \"%1$s/hook/500\"}},"
           "{\"name\": \"missing\", \"description\": \"d\", \"webhook\": {\"url\": \"%1$s/hook/404\"}},"
           "{\"name\": \"huge\", \"description\": \"d\", \"webhook\": {\"url\": \"%1$s/hook/huge\"}},"
           "{\"name\": \"notjson\", \"description\": \"d\", \"webhook\": {\"url\": \"%1$s/hook/notjson\"}},"
           "{\"name\": \"empty\", \"description\": \"d\", \"webhook\": {\"url\": \"%1$s/hook/empty\"}},"
           "{\"name\": \"hang\", \"description\": \"d\", \"webhook\": {\"url\": \"%1$s/hook/hang\", \"timeout_ms\": 300}},"
           "{\"name\": \"stuck\", \"description\": \"d\", \"webhook\": {\"url\": \"%1$s/hook/hang\", \"timeout_ms\": 30000}},"
           "{\"name\": \"leaky\", \"description\": \"d\", \"webhook\": {\"url\": \"%1$s/hook/leaky\","
           "  \"headers\": {\"X-Api-Key\": {\"env\": \"TS_TEST_SHOP_KEY\"}}}},"
           "{\"name\": \"wordy\", \"description\": \"d\", \"webhook\": {\"url\": \"%1$s/hook/wordy\"}},"
           "{\"name\": \"slow\", \"description\": \"d\", \"webhook\": {\"url\": \"%1$s/hook/slow?ms=%2$d\", \"timeout_ms\": 5000}},"
           "{\"name\": \"nowhere\", \"description\": \"d\", \"webhook\": {\"url\": \"http://127.0.0.1:9/x\"}},"
           "{\"builtin\": \"end_call\"}, {\"builtin\": \"get_time\"}]}",
           F.base, CLIENT_FIRST_BYTE_MS + 500);
  snprintf(F.cfg.tools_secret, sizeof F.cfg.tools_secret, "%s", secret);
  struct tools *t = NULL;
  char err[512];
  int rc = open_text(text, &t, err, sizeof err);
  if (rc) fprintf(stderr, "%s\n", err);
  assert_int_equal(rc, 0);
  fixture_reset();
  return t;
}

/* ---- validation ---- */

static void file_errors_name_the_tool_and_field(void **state) {
  static const char *const cases[][2] = {
      {"{\"tools\":[{\"builtin\":\"end_call\"},{\"name\":\"get_order_status\",\"description\":\"d\","
       "\"webhook\":{\"url\":\"ftp://shop/x\"}}]}",
       "tools_file: tool 2 \"get_order_status\": webhook.url must be http:// or https://"},
      {"{\"tools\":[{\"name\":\"a\",\"description\":\"d\",\"webhook\":{\"url\":\"http://x/\"},\"colour\":1}]}",
       "tools_file: tool 1 \"a\": unknown field \"colour\""},
      {"{\"tools\":[{\"name\":\"a\",\"description\":\"d\",\"webhook\":{\"url\":\"http://x/\",\"retries\":2}}]}",
       "tools_file: tool 1 \"a\": unknown field \"webhook.retries\""},
      {"{\"tools\":[{\"name\":\"get order\",\"description\":\"d\",\"webhook\":{\"url\":\"http://x/\"}}]}",
       "tools_file: tool 1 \"get order\": name must be 1 to 64 letters"},
      {"{\"tools\":[{\"name\":\"a\",\"description\":\"d\",\"webhook\":{\"url\":\"http://x/\"}},"
       "{\"name\":\"a\",\"description\":\"d\",\"webhook\":{\"url\":\"http://y/\"}}]}",
       "tools_file: tool 2 \"a\": name is used by tool 1 too"},
      {"{\"tools\":[{\"builtin\":\"get_time\"},{\"builtin\":\"get_time\"}]}",
       "tools_file: tool 2 \"get_time\": name is used by tool 1 too"},
      {"{\"tools\":[{\"name\":\"a\",\"description\":\"d\",\"parameters\":{\"type\":\"string\"},"
       "\"webhook\":{\"url\":\"http://x/\"}}]}",
       "tools_file: tool 1 \"a\": parameters must have \"type\": \"object\""},
      {"{\"tools\":[{\"name\":\"a\",\"description\":\"d\",\"parameters\":[],\"webhook\":{\"url\":\"http://x/\"}}]}",
       "tools_file: tool 1 \"a\": parameters must be a JSON Schema object"},
      {"{\"tools\":[{\"name\":\"a\",\"description\":\"d\",\"webhook\":{\"url\":\"http://x/\","
       "\"headers\":{\"X-Api-Key\":{\"env\":\"TS_TEST_UNSET_VARIABLE\"}}}}]}",
       "tools_file: tool 1 \"a\": webhook.headers.X-Api-Key: environment variable TS_TEST_UNSET_VARIABLE is not set"},
      {"{\"tools\":[{\"name\":\"a\",\"description\":\"d\",\"webhook\":{\"url\":\"http://x/\","
       "\"headers\":{\"X-Api-Key\":7}}}]}",
       "tools_file: tool 1 \"a\": webhook.headers.X-Api-Key must be a string or {\"env\": \"VARIABLE\"}"},
      {"{\"tools\":[{\"name\":\"a\",\"description\":\"d\",\"webhook\":{\"url\":\"http://x/\","
       "\"headers\":{\"Content-Type\":\"text/plain\"}}}]}",
       "tools_file: tool 1 \"a\": webhook.headers.Content-Type is set by the server"},
      {"{\"tools\":[{\"name\":\"a\",\"description\":\"d\",\"webhook\":{\"url\":\"http://x/\",\"timeout_ms\":0}}]}",
       "tools_file: tool 1 \"a\": webhook.timeout_ms must be an integer from 1 to 60000"},
      {"{\"tools\":[{\"name\":\"a\",\"webhook\":{\"url\":\"http://x/\"}}]}",
       "tools_file: tool 1 \"a\": description is missing"},
      {"{\"tools\":[{\"name\":\"a\",\"description\":\"d\"}]}", "tools_file: tool 1 \"a\": webhook is missing"},
      {"{\"tools\":[{\"name\":\"a\",\"description\":\"d\",\"webhook\":\"http://x/\"}]}",
       "tools_file: tool 1 \"a\": webhook must be an object"},
      {"{\"tools\":[{\"name\":\"a\",\"description\":\"d\",\"say_while_running\":\"\",\"webhook\":{\"url\":\"http://x/\"}}]}",
       "tools_file: tool 1 \"a\": say_while_running must be a non-empty string"},
      {"{\"tools\":[{\"description\":\"d\",\"webhook\":{\"url\":\"http://x/\"}}]}",
       "tools_file: tool 1 (no name): name is missing"},
      {"{\"tools\":[{\"builtin\":\"end_call\"},{\"builtin\":\"transfer\"}]}",
       "tools_file: tool 2 \"transfer\": builtin must be \"end_call\" or \"get_time\""},
      {"{\"tools\":[{\"builtin\":\"end_call\",\"webhook\":{}}]}",
       "tools_file: tool 1 \"end_call\": unknown field \"webhook\""},
      {"{\"tools\":[42]}", "tools_file: tool 1 (no name): must be an object"},
      {"{\"tools\":{}}", "must be an object with one field, \"tools\": [...]"},
      {"{\"tools\":[], \"extra\": 1}", "must be an object with one field, \"tools\": [...]"},
      {"{\"tools\":[", "line 1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct tools *t = (struct tools *)0x1;
    char err[512];
    int rc = open_text(cases[i][0], &t, err, sizeof err);
    if (!strstr(err, cases[i][1])) fprintf(stderr, "case %zu: got \"%s\"\n", i, err);
    assert_true(rc < 0);
    assert_ptr_equal(t, (struct tools *)0x1); /* untouched */
    assert_non_null(strstr(err, cases[i][1]));
  }
}

static void a_missing_file_is_an_error(void **state) {
  snprintf(F.cfg.tools_file, sizeof F.cfg.tools_file, "%s/none.json", F.dir);
  struct tools *t = NULL;
  char err[512] = "";
  assert_true(tools_open(&t, &F.env, err, sizeof err) < 0);
  assert_non_null(strstr(err, "tools_file: "));
  assert_non_null(strstr(err, "none.json"));
}

static void a_good_file_with_every_field_loads(void **state) {
  struct tools *t = NULL;
  char err[512];
  int rc = open_text(
      "{\"tools\": ["
      "{\"name\": \"get_order_status\", \"description\": \"Look up an order by its number.\","
      " \"parameters\": {\"type\": \"object\", \"properties\": {\"order_id\": {\"type\": \"string\"}},"
      "  \"required\": [\"order_id\"]},"
      " \"webhook\": {\"url\": \"https://shop.example/hooks/order?k=1\", \"timeout_ms\": 3000,"
      "  \"headers\": {\"X-Api-Key\": {\"env\": \"TS_TEST_SHOP_KEY\"}, \"X-Shop\": \"north\"}},"
      " \"say_while_running\": \"One moment, let me check that.\"},"
      "{\"name\": \"book-slot_2\", \"description\": \"Book.\", \"webhook\": {\"url\": \"http://10.0.0.5:8080/b\"}},"
      "{\"builtin\": \"end_call\", \"description\": \"Hang up when done.\"}, {\"builtin\": \"get_time\"}]}",
      &t, err, sizeof err);
  if (rc) fprintf(stderr, "%s\n", err);
  assert_int_equal(rc, 0);
  struct tools_list *l;
  assert_int_equal(tools_snapshot(t, &l), 0);
  size_t n;
  const struct llm_tool *it = tools_list_items(l, &n);
  assert_int_equal(n, 4);
  assert_string_equal(it[0].name, "get_order_status");
  assert_string_equal(it[0].description, "Look up an order by its number.");
  json_t *p = json_loads(it[0].parameters, 0, NULL);
  assert_string_equal(json_string_value(json_object_get(p, "type")), "object");
  assert_non_null(json_object_get(json_object_get(p, "properties"), "order_id"));
  json_decref(p);
  assert_string_equal(it[1].name, "book-slot_2");
  p = json_loads(it[1].parameters, 0, NULL); /* none given: an empty object schema */
  assert_string_equal(json_string_value(json_object_get(p, "type")), "object");
  json_decref(p);
  assert_string_equal(it[2].name, "end_call");
  assert_string_equal(it[2].description, "Hang up when done.");
  assert_non_null(strstr(it[2].parameters, "\"reason\""));
  assert_string_equal(it[3].name, "get_time");
  assert_true(strlen(it[3].description) > 10);
  assert_int_equal(tools_kind(t, "get_order_status"), TOOLS_WEBHOOK);
  assert_int_equal(tools_kind(t, "end_call"), TOOLS_END_CALL);
  assert_int_equal(tools_kind(t, "get_time"), TOOLS_GET_TIME);
  assert_int_equal(tools_kind(t, "launch_rockets"), TOOLS_UNKNOWN);
  char buf[64];
  assert_int_equal(tools_filler(t, "get_order_status", buf, sizeof buf), 0);
  assert_string_equal(buf, "One moment, let me check that.");
  assert_int_equal(tools_filler(t, "book-slot_2", buf, sizeof buf), -ENOENT);
  tools_close(t); /* the snapshot outlives the registry */
  assert_string_equal(it[1].name, "book-slot_2");
  tools_list_release(l);
}

static void no_file_means_no_tools(void **state) {
  F.cfg.tools_file[0] = '\0';
  struct tools *t = NULL;
  char err[256];
  assert_int_equal(tools_open(&t, &F.env, err, sizeof err), 0);
  struct tools_list *l;
  assert_int_equal(tools_snapshot(t, &l), 0);
  size_t n = 9;
  assert_null(tools_list_items(l, &n));
  assert_int_equal(n, 0);
  tools_list_release(l);
  tools_close(t);
}

/* ---- built-ins ---- */

static void builtins_answer(void **state) {
  struct tools *t = open_fixture_tools("");
  struct res r;
  call_wait(t, "end_call", "{\"reason\": \"the caller said goodbye\"}", &r);
  assert_int_equal(r.is_error, 0);
  assert_string_equal(r.json, "{\"ok\":true}");
  res_free(&r);
  call_wait(t, "get_time", "", &r); /* no arguments at all is {} */
  assert_int_equal(r.is_error, 0);
  json_t *v = json_loads(r.json, 0, NULL);
  assert_non_null(v);
  const char *dt = json_string_value(json_object_get(v, "datetime"));
  assert_non_null(dt); /* 2026-11-29T21:45:00+01:00 */
  assert_int_equal(strlen(dt), 25);
  assert_int_equal(dt[10], 'T');
  assert_true(dt[19] == '+' || dt[19] == '-');
  assert_int_equal(dt[22], ':');
  assert_int_equal(strncmp(dt, json_string_value(json_object_get(v, "date")), 10), 0);
  const char *wd = json_string_value(json_object_get(v, "weekday"));
  assert_non_null(wd);
  assert_non_null(strstr("Sunday Monday Tuesday Wednesday Thursday Friday Saturday", wd));
  assert_non_null(json_string_value(json_object_get(v, "timezone")));
  json_decref(v);
  res_free(&r);
  json_t *log = fixture_log();
  assert_int_equal(json_array_size(log), 0); /* built-ins never leave the server */
  json_decref(log);
  tools_close(t);
}

static void bad_arguments_and_unknown_tools_are_error_results(void **state) {
  struct tools *t = open_fixture_tools(SECRET);
  static const char *const bad[] = {"[1, 2]", "\"order\"", "not json", "{\"order_id\": "};
  struct res r;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    call_wait(t, "get_order_status", bad[i], &r);
    assert_int_equal(r.is_error, 1);
    assert_string_equal(r.json, "{\"error\":\"the arguments were not a JSON object\"}");
    res_free(&r);
  }
  call_wait(t, "end_call", "[]", &r);
  assert_int_equal(r.is_error, 1);
  res_free(&r);
  call_wait(t, "launch_rockets", "{}", &r);
  assert_int_equal(r.is_error, 1);
  assert_string_equal(r.json, "{\"error\":\"there is no tool named launch_rockets\"}");
  res_free(&r);
  call_wait(NULL, "get_time", "{}", &r); /* no registry: nothing is known */
  assert_int_equal(r.is_error, 1);
  assert_string_equal(r.json, "{\"error\":\"there is no tool named get_time\"}");
  res_free(&r);
  json_t *log = fixture_log();
  assert_int_equal(json_array_size(log), 0); /* no request went out */
  json_decref(log);
  struct prom_buf b;
  prom_buf_init(&b);
  tools_write_metrics(t, &b);
  assert_non_null(strstr(b.data, "tingshuo_tool_errors_total{tool=\"get_order_status\",kind=\"invalid\"} 4\n"));
  assert_non_null(strstr(b.data, "tingshuo_tool_calls_total{tool=\"(unknown)\"} 1\n"));
  prom_buf_free(&b);
  tools_close(t);
}

/* ---- webhooks ---- */

static void the_signature_known_answer(void **state) {
  char sig[128];
  assert_int_equal(tools_sign(SECRET, 1700000000, "{\"a\":1}", 7, sig, sizeof sig), 0);
  assert_string_equal(sig, "t=1700000000,v1=25f010990f9d9e96c5a58c8fbbf3af2ce19827691f03a68d5a9c691c266a9f5c");
  assert_int_equal(tools_sign(SECRET, 1700000000, "{\"a\":1}", 7, sig, 20), -ENOSPC);
}

static void a_webhook_round_trip_is_signed(void **state) {
  struct tools *t = open_fixture_tools(SECRET);
  struct res r;
  call_wait(t, "get_order_status", "{\"order_id\": \"A-17\"}", &r);
  assert_int_equal(r.is_error, 0);
  json_t *v = json_loads(r.json, 0, NULL);
  assert_string_equal(json_string_value(json_object_get(v, "status")), "shipped");
  assert_string_equal(json_string_value(json_object_get(v, "order_id")), "A-17");
  json_decref(v);
  res_free(&r);

  json_t *log = fixture_log();
  assert_int_equal(json_array_size(log), 1);
  json_t *e = json_array_get(log, 0);
  assert_true(json_is_true(json_object_get(e, "verified")));
  json_t *body = json_object_get(e, "body"), *h = json_object_get(e, "headers");
  assert_string_equal(json_string_value(json_object_get(body, "call_id")), "call-42");
  assert_int_equal(json_integer_value(json_object_get(body, "turn")), 3);
  assert_string_equal(json_string_value(json_object_get(body, "tool")), "get_order_status");
  assert_string_equal(json_string_value(json_object_get(body, "tool_call_id")), "call_abc");
  assert_string_equal(json_string_value(json_object_get(json_object_get(body, "arguments"), "order_id")), "A-17");
  const char *ts = json_string_value(json_object_get(body, "timestamp"));
  assert_non_null(ts);
  assert_int_equal(ts[strlen(ts) - 1], 'Z');
  assert_string_equal(json_string_value(json_object_get(h, "content-type")), "application/json");
  assert_string_equal(json_string_value(json_object_get(h, "x-api-key")), SHOP_KEY);
  assert_string_equal(json_string_value(json_object_get(h, "x-shop")), "north");
  assert_non_null(strstr(json_string_value(json_object_get(h, "x-tingshuo-signature")), ",v1="));
  json_decref(log);

  struct prom_buf b;
  prom_buf_init(&b);
  tools_write_metrics(t, &b);
  assert_non_null(strstr(b.data, "tingshuo_tool_calls_total{tool=\"get_order_status\"} 1\n"));
  assert_non_null(strstr(b.data, "tingshuo_tool_duration_seconds_count{tool=\"get_order_status\"} 1\n"));
  assert_non_null(strstr(b.data, "tingshuo_tool_errors_total{tool=\"get_order_status\",kind=\"http\"} 0\n"));
  prom_buf_free(&b);
  tools_close(t);
}

static void a_wrong_secret_is_refused_by_the_receiver(void **state) {
  struct tools *t = open_fixture_tools("not-the-secret");
  struct res r;
  call_wait(t, "get_order_status", "{\"order_id\": \"A-17\"}", &r);
  assert_int_equal(r.is_error, 1);
  assert_string_equal(r.json, "{\"error\":\"the tool failed (HTTP 401): bad signature\"}");
  res_free(&r);
  json_t *log = fixture_log();
  assert_int_equal(json_array_size(log), 1);
  assert_true(json_is_false(json_object_get(json_array_get(log, 0), "verified")));
  json_decref(log);
  tools_close(t);
  /* no secret: no signature header at all */
  t = open_fixture_tools("");
  call_wait(t, "get_order_status", "{}", &r);
  res_free(&r);
  log = fixture_log();
  assert_null(json_object_get(json_object_get(json_array_get(log, 0), "headers"), "x-tingshuo-signature"));
  json_decref(log);
  tools_close(t);
}

/* Each failure is one error result in plain words, and one request: webhooks are never retried. */
static void failures_are_error_results_sent_once(void **state) {
  static const struct {
    const char *tool, *json, *kind;
  } cases[] = {
      {"fail", "{\"error\":\"the tool failed (HTTP 500): the order system is down\"}", "http"},
      {"missing", "{\"error\":\"the tool failed (HTTP 404): no such order\"}", "http"},
      {"huge", "{\"error\":\"the tool's answer was larger than 65536 bytes\"}", "invalid"},
      {"notjson", "{\"error\":\"the tool's answer was not valid JSON\"}", "invalid"},
      {"hang", "{\"error\":\"the tool did not answer within 300 ms\"}", "timeout"},
  };
  struct tools *t = open_fixture_tools(SECRET);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    fixture_reset();
    struct res r;
    call_wait(t, cases[i].tool, "{\"order_id\": \"A-17\"}", &r);
    assert_int_equal(r.is_error, 1);
    assert_string_equal(r.json, cases[i].json);
    assert_int_equal(r.calls, 1);
    res_free(&r);
    run_for(HTTP_RETRY_DELAY_MS + 300); /* long enough for a retry to have been sent */
    json_t *log = fixture_log();
    assert_int_equal(json_array_size(log), 1);
    json_decref(log);
    char line[160];
    snprintf(line, sizeof line, "tingshuo_tool_errors_total{tool=\"%s\",kind=\"%s\"} 1\n", cases[i].tool,
             cases[i].kind);
    struct prom_buf b;
    prom_buf_init(&b);
    tools_write_metrics(t, &b);
    assert_non_null(strstr(b.data, line));
    prom_buf_free(&b);
  }
  tools_close(t);
}

/* The receiver's words reach the model, but never one of the tool's secrets, nor broken UTF-8. */
static void error_words_are_kept_clean(void **state) {
  struct tools *t = open_fixture_tools(SECRET);
  struct res r;
  call_wait(t, "leaky", "{}", &r);
  assert_int_equal(r.is_error, 1);
  assert_string_equal(r.json, "{\"error\":\"the tool failed (HTTP 403)\"}");
  res_free(&r);
  call_wait(t, "wordy", "{}", &r);
  assert_int_equal(r.is_error, 1);
  json_t *v = json_loads(r.json, 0, NULL);
  assert_non_null(v);
  const char *e = json_string_value(json_object_get(v, "error"));
  assert_int_equal(strncmp(e, "the tool failed (HTTP 404): a\xc3\xa9", 31), 0);
  assert_true(strlen(e) < 250);
  json_decref(v);
  res_free(&r);
  tools_close(t);
}

/* A webhook's timeout_ms is its own: longer than the client's first-byte timeout is fine. */
static void a_slow_answer_within_the_tools_timeout_arrives(void **state) {
  struct tools *t = open_fixture_tools(SECRET);
  struct res r;
  call_wait(t, "slow", "{\"order_id\": \"C-3\"}", &r);
  assert_int_equal(r.is_error, 0);
  assert_non_null(strstr(r.json, "\"order_id\":\"C-3\""));
  res_free(&r);
  tools_close(t);
}

static void an_empty_answer_means_done(void **state) {
  struct tools *t = open_fixture_tools(SECRET);
  struct res r;
  call_wait(t, "empty", "{}", &r);
  assert_int_equal(r.is_error, 0);
  assert_string_equal(r.json, "{\"ok\":true}");
  res_free(&r);
  tools_close(t);
}

static void an_unreachable_webhook_names_no_url(void **state) {
  struct tools *t = open_fixture_tools(SECRET);
  struct res r;
  call_wait(t, "nowhere", "{}", &r);
  assert_int_equal(r.is_error, 1);
  assert_string_equal(r.json, "{\"error\":\"the tool's service could not be reached\"}");
  res_free(&r);
  tools_close(t);
}

static int entry_closed(void) {
  json_t *log = fixture_log();
  int closed = json_array_size(log) == 1 && json_is_true(json_object_get(json_array_get(log, 0), "closedEarly"));
  json_decref(log);
  return closed;
}

static int entry_arrived(void) {
  json_t *log = fixture_log();
  int n = (int)json_array_size(log);
  json_decref(log);
  return n;
}

static void cancelling_mid_request_closes_it_without_a_callback(void **state) {
  struct tools *t = open_fixture_tools(SECRET);
  struct res r;
  struct tool_job *j = call(t, "stuck", "{}", &r);
  uint64_t end = uv_hrtime() + 5000000000ull;
  while (!entry_arrived() && uv_hrtime() < end) uv_run(&F.loop, UV_RUN_ONCE);
  assert_int_equal(entry_arrived(), 1);
  tool_release(j);
  end = uv_hrtime() + 5000000000ull;
  while (!entry_closed() && uv_hrtime() < end) uv_run(&F.loop, UV_RUN_ONCE);
  assert_true(entry_closed()); /* the receiver saw the connection go */
  run_for(200);
  assert_int_equal(r.calls, 0);
  tools_close(t);
}

/* Released before its start reached the control loop: nothing is sent. */
static void cancelling_at_once_sends_nothing(void **state) {
  struct tools *t = open_fixture_tools(SECRET);
  struct res r;
  tool_release(call(t, "get_order_status", "{}", &r));
  tool_release(call(t, "get_time", "{}", &r)); /* a built-in's result is on its way already */
  run_for(300);
  assert_int_equal(r.calls, 0);
  assert_int_equal(entry_arrived(), 0);
  tools_close(t);
}

/* A call still running when the registry closes keeps what it needs and ends cleanly. */
static void closing_with_a_call_in_flight(void **state) {
  struct tools *t = open_fixture_tools(SECRET);
  struct res r;
  struct tool_job *j = call(t, "get_order_status", "{\"order_id\": \"B-2\"}", &r);
  tools_close(t);
  uint64_t end = uv_hrtime() + 10000000000ull;
  while (!r.done && uv_hrtime() < end) uv_run(&F.loop, UV_RUN_ONCE);
  assert_true(r.done);
  assert_int_equal(r.is_error, 0);
  tool_release(j);
  res_free(&r);
}

static uint64_t ns_field(json_t *entry, const char *name) {
  const char *v = json_string_value(json_object_get(entry, name));
  return v ? strtoull(v, NULL, 10) : 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/*
 * What the server adds to a tool round, against the fixture (both clocks
 * are CLOCK_MONOTONIC): tools_call -> the receiver has the whole request,
 * and the receiver answers -> the result is home. Both include the
 * loopback and node's own HTTP handling, so they are upper bounds. Printed,
 * not asserted: the machine is shared.
 */
static void the_time_a_webhook_round_adds_is_printed(void **state) {
  enum { N = 30 };
  struct tools *t = open_fixture_tools(SECRET);
  uint64_t out_ns[N], in_ns[N];
  struct res r;
  call_wait(t, "get_order_status", "{\"order_id\": \"warm\"}", &r); /* a connection to reuse */
  res_free(&r);
  for (int i = 0; i < N; i++) {
    fixture_reset();
    uint64_t t0 = uv_hrtime();
    struct tool_job *j = call(t, "get_order_status", "{\"order_id\": \"A-17\"}", &r);
    while (!r.done) uv_run(&F.loop, UV_RUN_ONCE);
    uint64_t t3 = uv_hrtime();
    tool_release(j);
    assert_int_equal(r.is_error, 0);
    res_free(&r);
    json_t *log = fixture_log();
    json_t *e = json_array_get(log, 0);
    uint64_t t1 = ns_field(e, "receivedNs"), t2 = ns_field(e, "answeredNs");
    json_decref(log);
    assert_true(t0 < t1 && t1 <= t2 && t2 < t3);
    out_ns[i] = t1 - t0;
    in_ns[i] = t3 - t2;
  }
  qsort(out_ns, N, sizeof out_ns[0], cmp_u64);
  qsort(in_ns, N, sizeof in_ns[0], cmp_u64);
  printf("# webhook round over loopback, %d calls: tools_call -> request at the receiver "
         "p50 %.2f ms, max %.2f ms; receiver's answer -> result home p50 %.2f ms, max %.2f ms\n",
         N, out_ns[N / 2] / 1e6, out_ns[N - 1] / 1e6, in_ns[N / 2] / 1e6, in_ns[N - 1] / 1e6);
  tools_close(t);
}

/* ---- MCP tools through the registry ---- */

static int mcp_ready(struct tools *t) {
  uint64_t end = uv_hrtime() + 10000000000ull;
  while (tools_kind(t, "echo") != TOOLS_MCP && uv_hrtime() < end) uv_run(&F.loop, UV_RUN_ONCE);
  return tools_kind(t, "echo") == TOOLS_MCP;
}

static void mcp_tools_join_the_list_and_answer(void **state) {
  snprintf(F.cfg.mcp_servers, sizeof F.cfg.mcp_servers, "%s/mcp", F.mcp_base);
  struct tools *t = NULL;
  char err[512];
  /* the file's "big" comes first: the server's tool of that name is left out */
  int rc = open_text("{\"tools\": [{\"builtin\": \"get_time\"}, {\"name\": \"big\", \"description\": \"d\","
                     " \"webhook\": {\"url\": \"http://127.0.0.1:9/\"}}]}", &t, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_true(mcp_ready(t));
  struct tools_list *l;
  assert_int_equal(tools_snapshot(t, &l), 0);
  size_t n;
  const struct llm_tool *it = tools_list_items(l, &n);
  assert_int_equal(n, 6); /* get_time, big, then echo, fail, slow, no_schema */
  assert_string_equal(it[0].name, "get_time");
  assert_string_equal(it[1].name, "big");
  assert_string_equal(it[2].name, "echo");
  assert_non_null(strstr(it[2].parameters, "\"text\""));
  assert_string_equal(it[5].name, "no_schema");
  assert_string_equal(it[5].parameters, "{\"type\":\"object\"}");
  tools_list_release(l);
  assert_int_equal(tools_kind(t, "big"), TOOLS_WEBHOOK);

  struct res r;
  call_wait(t, "echo", "{\"text\": \"hello there\"}", &r);
  assert_int_equal(r.is_error, 0);
  assert_non_null(strstr(r.json, "hello there"));
  res_free(&r);
  call_wait(t, "fail", "{}", &r);
  assert_int_equal(r.is_error, 1);
  res_free(&r);
  call_wait(t, "echo", "[\"not\", \"an object\"]", &r);
  assert_int_equal(r.is_error, 1);
  assert_string_equal(r.json, "{\"error\":\"the arguments were not a JSON object\"}");
  res_free(&r);

  /* released mid-call: no callback */
  struct tool_job *j = call(t, "slow", "{\"ms\": 3000, \"text\": \"late\"}", &r);
  run_for(200);
  tool_release(j);
  run_for(200);
  assert_int_equal(r.calls, 0);

  struct prom_buf b;
  prom_buf_init(&b);
  tools_write_metrics(t, &b);
  assert_non_null(strstr(b.data, "tingshuo_tool_calls_total{tool=\"echo\"} 2\n"));
  assert_non_null(strstr(b.data, "tingshuo_tool_errors_total{tool=\"fail\",kind=\"tool\"} 1\n"));
  prom_buf_free(&b);

  /* closed with a call in flight: it ends without a callback, and nothing leaks */
  j = call(t, "slow", "{\"ms\": 3000, \"text\": \"late\"}", &r);
  run_for(200);
  tools_close(t);
  run_for(200);
  assert_int_equal(r.calls, 0);
  tool_release(j);
  F.cfg.mcp_servers[0] = '\0';
}

/* ---- setup ---- */

static int setup(void **state) {
  if (spawn_fixture() != 0) return -1;
  if (spawn_node("mcp.mjs", NULL, &F.mcp, F.mcp_base, sizeof F.mcp_base) != 0) return -1;
  setenv("TS_TEST_SHOP_KEY", SHOP_KEY, 1);
  unsetenv("TS_TEST_UNSET_VARIABLE");
  snprintf(F.dir, sizeof F.dir, "/tmp/test_tools.XXXXXX");
  if (!mkdtemp(F.dir)) return -1;
  snprintf(F.tools_path, sizeof F.tools_path, "%s/tools.json", F.dir);
  assert_int_equal(uv_loop_init(&F.loop), 0);
  uv_timer_init(&F.loop, &F.guard);
  uv_timer_start(&F.guard, on_guard, 20, 20);
  assert_int_equal(mailbox_new(&F.control, &F.loop, on_msg, NULL), 0);
  assert_int_equal(mailbox_new(&F.home, &F.loop, on_msg, NULL), 0);
  struct http_client_opts o = {.connect_timeout_ms = 1000, .first_byte_timeout_ms = CLIENT_FIRST_BYTE_MS,
                               .total_timeout_ms = 60000};
  assert_int_equal(http_client_new(&F.http, &F.loop, &o), 0);
  config_defaults(&F.cfg);
  F.env = (struct engine_env){&F.cfg, NULL, F.control, F.http};
  return 0;
}

static int teardown(void **state) {
  http_client_free(F.http);
  mailbox_close(F.control, drop_msg);
  mailbox_close(F.home, drop_msg);
  uv_close((uv_handle_t *)&F.guard, NULL);
  uv_run(&F.loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&F.loop);
  node_fixture_stop(F.node);
  node_fixture_stop(F.mcp);
  unlink(F.tools_path);
  rmdir(F.dir);
  return rc;
}

int main(void) {
  if (system("node --version >/dev/null 2>&1") != 0) {
    printf("# node not found: skipping the tool tests\n");
    return 0;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(file_errors_name_the_tool_and_field),
      cmocka_unit_test(a_missing_file_is_an_error),
      cmocka_unit_test(a_good_file_with_every_field_loads),
      cmocka_unit_test(no_file_means_no_tools),
      cmocka_unit_test(builtins_answer),
      cmocka_unit_test(bad_arguments_and_unknown_tools_are_error_results),
      cmocka_unit_test(the_signature_known_answer),
      cmocka_unit_test(a_webhook_round_trip_is_signed),
      cmocka_unit_test(a_wrong_secret_is_refused_by_the_receiver),
      cmocka_unit_test(failures_are_error_results_sent_once),
      cmocka_unit_test(error_words_are_kept_clean),
      cmocka_unit_test(a_slow_answer_within_the_tools_timeout_arrives),
      cmocka_unit_test(an_empty_answer_means_done),
      cmocka_unit_test(an_unreachable_webhook_names_no_url),
      cmocka_unit_test(cancelling_mid_request_closes_it_without_a_callback),
      cmocka_unit_test(cancelling_at_once_sends_nothing),
      cmocka_unit_test(closing_with_a_call_in_flight),
      cmocka_unit_test(mcp_tools_join_the_list_and_answer),
      cmocka_unit_test(the_time_a_webhook_round_adds_is_printed),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  curl_global_cleanup();
  return rc;
}
