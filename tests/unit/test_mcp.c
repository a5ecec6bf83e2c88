/*
 * The MCP client against the fixture server (tests/fixtures/tools/mcp.mjs,
 * spawned here), on one real libuv loop with the project's HTTP client:
 * the session handshake, paging through tools/list, tools/call answers
 * (text, isError, too large, late, an HTTP error that is not retried),
 * list_changed on the GET stream and inside a POST's event stream, answers
 * sent as event streams, an expired session, a server that is down at
 * first, garbage answers, and a cancelled call.
 * The fixture logs every message it sees, which is what most checks read.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/http_client.h"
#include "tools/mcp.h"
#include "node_fixture.h"


struct fx {
  pid_t node;
  int port;
  char base[128], url[160];
  uv_loop_t loop;
  uv_timer_t guard;
  struct http_client *http;
  struct config cfg;
  struct engine_env env;
};

static struct fx F;

/* ---- the fixture process ---- */

static pid_t spawn_at(int port, int *port_out) {
  return node_fixture_spawn("tools/mcp.mjs", port, NULL, port_out);
}

/* Blocking request to the fixture's control endpoints (not the client under test). */
static json_t *fixture(const char *path, const char *fmt, ...) {
  char body[4096] = "";
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
  }
  json_t *j = node_fixture_request(F.base, path, fmt ? body : NULL);
  assert_non_null(j);
  return j;
}

#define SCRIPT(...) json_decref(fixture("/_fixture/script", __VA_ARGS__))

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* How many logged messages have this JSON-RPC method ("GET" counts GET requests). */
static int count(const char *rpc) {
  json_t *log = fixture("/_fixture/log", NULL);
  size_t i;
  json_t *v;
  int n = 0;
  json_array_foreach(log, i, v) {
    if (strcmp(rpc, "GET") == 0 ? strcmp(str(v, "http"), "GET") == 0
                                : str(v, "rpc") && strcmp(str(v, "rpc"), rpc) == 0)
      n++;
  }
  json_decref(log);
  return n;
}

/* The n-th (0-based) logged message with this method, a new reference; NULL if none. */
static json_t *logged(const char *rpc, int nth) {
  json_t *log = fixture("/_fixture/log", NULL), *out = NULL;
  size_t i;
  json_t *v;
  json_array_foreach(log, i, v) {
    if (str(v, "rpc") && strcmp(str(v, "rpc"), rpc) == 0 && nth-- == 0) {
      out = json_incref(v);
      break;
    }
  }
  json_decref(log);
  return out;
}

/* ---- the loop ---- */

static void on_guard(uv_timer_t *t) {}

static int wait_until(volatile int *flag, int ms) {
  uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000;
  while (!*flag && uv_hrtime() < end) uv_run(&F.loop, UV_RUN_ONCE);
  return *flag;
}

static void spin(int ms) {
  int never = 0;
  wait_until(&never, ms);
}

/* Turns the loop until the fixture has logged `want` messages of `rpc`. */
static int wait_logged(const char *rpc, int want, int ms) {
  uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000;
  while (count(rpc) < want && uv_hrtime() < end) spin(20);
  return count(rpc) >= want;
}

/* ---- what the callbacks record ---- */

struct seen {
  int lists;          /* tools callbacks */
  int ntools;         /* in the last one */
  char names[1024];   /* the last one's names, comma separated */
  int schemas_ok;     /* every tool of the last one had an object inputSchema */
};

static void on_tools(void *u, json_t *tools) {
  struct seen *s = u;
  s->lists++;
  s->ntools = (int)json_array_size(tools);
  s->names[0] = '\0';
  s->schemas_ok = 1;
  size_t i, len = 0;
  json_t *t;
  json_array_foreach(tools, i, t) {
    len += (size_t)snprintf(s->names + len, sizeof s->names - len, "%s%s", i ? "," : "", str(t, "name"));
    if (len >= sizeof s->names) len = sizeof s->names - 1;
    if (!json_is_object(json_object_get(t, "inputSchema"))) s->schemas_ok = 0;
  }
}

struct result {
  int done, is_error;
  char json[200000];
};

static void on_result(void *u, const char *json, int is_error) {
  struct result *r = u;
  r->done++;
  r->is_error = is_error;
  snprintf(r->json, sizeof r->json, "%s", json);
}

/* The text of the first content item of a tools/call result. */
static const char *first_text(const struct result *r, char *buf, size_t cap) {
  json_t *j = json_loads(r->json, 0, NULL);
  const char *t = str(json_array_get(json_object_get(j, "content"), 0), "text");
  snprintf(buf, cap, "%s", t ? t : "");
  json_decref(j);
  return buf;
}

static struct mcp_client *start(struct seen *s) {
  struct mcp_client *c = NULL;
  assert_int_equal(mcp_client_new(&c, &F.env, F.url, on_tools, s), 0);
  return c;
}

static void stop(struct mcp_client *c) {
  mcp_client_free(c);
  spin(50); /* handles close */
}

static struct result *call(struct mcp_client *c, const char *name, const char *args, int timeout_ms) {
  struct result *r = calloc(1, sizeof *r);
  assert_int_equal(mcp_call_tool(c, name, args, timeout_ms, on_result, r, NULL), 0);
  assert_true(wait_until(&r->done, 10000));
  return r;
}

/* ---- tests ---- */

static void initialize_carries_the_session_to_every_later_request(void **state) {
  struct seen s = {0};
  struct mcp_client *c = start(&s);
  assert_true(wait_until(&s.lists, 5000));
  json_t *init = logged("initialize", 0), *note = logged("notifications/initialized", 0),
         *list = logged("tools/list", 0);
  assert_non_null(init);
  assert_non_null(note);
  assert_non_null(list);
  assert_true(json_is_null(json_object_get(init, "session")));
  assert_string_equal(str(json_object_get(init, "params"), "protocolVersion"), "2025-06-18");
  assert_non_null(strstr(str(init, "accept"), "application/json"));
  assert_non_null(strstr(str(init, "accept"), "text/event-stream"));
  /* The initialized notification and everything after carry the session and version. */
  assert_non_null(str(note, "session"));
  assert_true(json_is_null(json_object_get(note, "id")));
  assert_string_equal(str(list, "session"), str(note, "session"));
  assert_string_equal(str(note, "version"), "2025-06-18");
  assert_string_equal(str(list, "version"), "2025-06-18");
  json_decref(init);
  json_decref(note);
  json_decref(list);
  stop(c);
}

static void tools_list_follows_next_cursor(void **state) {
  struct seen s = {0};
  struct mcp_client *c = start(&s);
  assert_true(wait_until(&s.lists, 5000));
  /* five tools, two a page: three requests, the tools in the server's order */
  assert_int_equal(count("tools/list"), 3);
  assert_int_equal(s.ntools, 5);
  assert_string_equal(s.names, "echo,fail,slow,big,no_schema");
  assert_true(s.schemas_ok); /* no_schema got {"type": "object"} */
  json_t *third = logged("tools/list", 2);
  assert_string_equal(str(json_object_get(third, "params"), "cursor"), "4");
  json_decref(third);
  stop(c);
}

static void tools_call_gives_text_and_is_error(void **state) {
  struct seen s = {0};
  struct mcp_client *c = start(&s);
  assert_true(wait_until(&s.lists, 5000));
  char buf[256];
  struct result *r = call(c, "echo", "{\"text\": \"order 42 has shipped\"}", 5000);
  assert_int_equal(r->is_error, 0);
  assert_string_equal(first_text(r, buf, sizeof buf), "order 42 has shipped");
  free(r);
  r = call(c, "fail", "{}", 5000);
  assert_int_equal(r->is_error, 1);
  assert_string_equal(first_text(r, buf, sizeof buf), "the order system is down");
  assert_non_null(strstr(r->json, "\"isError\":true"));
  free(r);
  r = call(c, "nope", "{}", 5000); /* a JSON-RPC error: the request failed */
  assert_int_equal(r->is_error, 1);
  assert_non_null(strstr(r->json, "\"error\""));
  assert_non_null(strstr(r->json, "unknown tool nope"));
  free(r);
  r = call(c, "big", "{\"bytes\": 100000}", 5000); /* over 64 KB */
  assert_int_equal(r->is_error, 1);
  assert_non_null(strstr(r->json, "larger than 65536 bytes"));
  free(r);
  r = call(c, "http500", "{}", 5000); /* a tool may have effects: sent once, not retried */
  assert_int_equal(r->is_error, 1);
  assert_non_null(strstr(r->json, "HTTP 500"));
  free(r);
  spin(400); /* longer than the HTTP client's retry delay */
  int sent = 0;
  json_t *log = fixture("/_fixture/log", NULL), *v;
  size_t i;
  json_array_foreach(log, i, v) {
    if (str(v, "rpc") && strcmp(str(v, "rpc"), "tools/call") == 0 &&
        strcmp(str(json_object_get(v, "params"), "name"), "http500") == 0)
      sent++;
  }
  json_decref(log);
  assert_int_equal(sent, 1);
  r = call(c, "slow", "{\"ms\": 3000}", 300); /* the caller's deadline */
  assert_int_equal(r->is_error, 1);
  assert_non_null(strstr(r->json, "within 300 ms"));
  free(r);
  /* Not a JSON object: refused at once, no callback. */
  struct result dummy = {0};
  assert_int_equal(mcp_call_tool(c, "echo", "[1]", 1000, on_result, &dummy, NULL), -EINVAL);
  assert_int_equal(mcp_call_tool(c, "echo", "{", 1000, on_result, &dummy, NULL), -EINVAL);
  /* The server asked to stop the late one. */
  assert_true(wait_logged("notifications/cancelled", 1, 3000));
  stop(c);
  assert_int_equal(dummy.done, 0);
}

static void list_changed_on_the_get_stream_lists_again(void **state) {
  struct seen s = {0};
  struct mcp_client *c = start(&s);
  assert_true(wait_until(&s.lists, 5000));
  assert_true(wait_logged("GET", 1, 5000));
  spin(100); /* the stream's headers reach the fixture's list of streams */
  json_t *r = fixture("/_fixture/change",
                      "{\"tools\": [{\"name\": \"book_table\", \"inputSchema\": {\"type\": \"object\"}}]}");
  assert_int_equal(json_integer_value(json_object_get(r, "streams")), 1);
  json_decref(r);
  int before = s.lists;
  uint64_t end = uv_hrtime() + 5000000000ull;
  while (s.lists == before && uv_hrtime() < end) uv_run(&F.loop, UV_RUN_ONCE);
  assert_int_equal(s.lists, before + 1);
  assert_string_equal(s.names, "book_table");
  json_t *get = fixture("/_fixture/log", NULL);
  size_t i;
  json_t *v;
  json_array_foreach(get, i, v) {
    if (strcmp(str(v, "http"), "GET") == 0) {
      assert_non_null(str(v, "session"));
      assert_string_equal(str(v, "accept"), "text/event-stream");
    }
  }
  json_decref(get);
  stop(c);
}

static void answers_as_event_streams_are_read(void **state) {
  SCRIPT("{\"mode\": \"sse\", \"get\": \"405\"}");
  struct seen s = {0};
  struct mcp_client *c = start(&s);
  assert_true(wait_until(&s.lists, 5000));
  assert_int_equal(s.ntools, 5);
  spin(200);
  assert_int_equal(count("GET"), 1); /* 405: not asked again */
  /* The next answer first carries a ping and list_changed: the ping is
   * answered, the tools are listed again, and the call still gets its result. */
  SCRIPT("{\"inPost\": true}");
  char buf[256];
  int lists = s.lists;
  struct result *r = call(c, "echo", "{\"text\": \"streamed\"}", 5000);
  assert_int_equal(r->is_error, 0);
  assert_string_equal(first_text(r, buf, sizeof buf), "streamed");
  free(r);
  uint64_t end = uv_hrtime() + 5000000000ull;
  while (s.lists == lists && uv_hrtime() < end) uv_run(&F.loop, UV_RUN_ONCE);
  assert_int_equal(s.lists, lists + 1);
  assert_true(wait_logged("response", 1, 3000));
  json_t *pong = logged("response", 0);
  assert_string_equal(str(pong, "id") ? str(pong, "id") : "", "ping-1");
  assert_true(json_is_object(json_object_get(pong, "result")));
  json_decref(pong);
  stop(c);
}

static void an_expired_session_is_started_again(void **state) {
  struct seen s = {0};
  struct mcp_client *c = start(&s);
  assert_true(wait_until(&s.lists, 5000));
  json_decref(fixture("/_fixture/expire", "{}"));
  char buf[256];
  struct result *r = call(c, "echo", "{\"text\": \"again\"}", 5000);
  assert_int_equal(r->is_error, 0); /* sent once more in the new session */
  assert_string_equal(first_text(r, buf, sizeof buf), "again");
  free(r);
  assert_int_equal(count("initialize"), 2);
  json_t *first = logged("tools/call", 0), *second = logged("tools/call", 1);
  assert_non_null(second);
  assert_string_not_equal(str(first, "session"), str(second, "session"));
  json_decref(first);
  json_decref(second);
  stop(c);
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

static void a_server_down_at_start_is_found_later(void **state) {
  int port = free_port();
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/mcp", port);
  struct seen s = {0};
  struct mcp_client *c = NULL;
  assert_int_equal(mcp_client_new(&c, &F.env, url, on_tools, &s), 0);
  spin(700);
  assert_int_equal(s.lists, 0);
  /* While it is down a call ends at once with the reason, not at its deadline. */
  struct result *r = calloc(1, sizeof *r);
  assert_int_equal(mcp_call_tool(c, "echo", "{}", 60000, on_result, r, NULL), 0);
  assert_true(wait_until(&r->done, 3000));
  assert_int_equal(r->is_error, 1);
  assert_non_null(strstr(r->json, "unavailable"));
  free(r);
  int got = 0;
  pid_t late = spawn_at(port, &got);
  assert_true(late > 0);
  assert_int_equal(got, port);
  assert_true(wait_until(&s.lists, 15000)); /* the next try after the back-off */
  assert_int_equal(s.ntools, 5);
  stop(c);
  node_fixture_stop(late);
}

static void garbage_answers_are_survived(void **state) {
  const char *kinds[] = {"text", "html", "badjson", "noresult", "oldversion", "badsession"};
  for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
    json_decref(fixture("/_fixture/reset", "{}"));
    SCRIPT("{\"garbage\": \"%s\"}", kinds[i]);
    struct seen s = {0};
    struct mcp_client *c = start(&s);
    assert_true(wait_logged("initialize", 2, 5000)); /* refused, then tried again */
    assert_int_equal(s.lists, 0);
    assert_int_equal(count("tools/list"), 0);
    SCRIPT("{\"garbage\": null}");
    assert_true(wait_until(&s.lists, 10000)); /* and it recovers */
    assert_int_equal(s.ntools, 5);
    stop(c);
  }
}

static void a_cancelled_call_never_calls_back(void **state) {
  struct seen s = {0};
  struct mcp_client *c = start(&s);
  assert_true(wait_until(&s.lists, 5000));
  struct result r = {0};
  struct mcp_call *k = NULL;
  assert_int_equal(mcp_call_tool(c, "slow", "{\"ms\": 800}", 5000, on_result, &r, &k), 0);
  assert_non_null(k);
  assert_true(wait_logged("tools/call", 1, 3000));
  mcp_call_cancel(k);
  assert_true(wait_logged("notifications/cancelled", 1, 3000));
  json_t *note = logged("notifications/cancelled", 0), *sent = logged("tools/call", 0);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(note, "params"), "requestId")),
                   json_integer_value(json_object_get(sent, "id")));
  json_decref(note);
  json_decref(sent);
  spin(1200); /* past the time the tool would have answered */
  assert_int_equal(r.done, 0);
  json_t *again = logged("tools/call", 0);
  assert_true(json_is_true(json_object_get(again, "aborted"))); /* the connection was closed */
  json_decref(again);
  /* A call in flight when the client goes away ends without a callback too. */
  assert_int_equal(mcp_call_tool(c, "slow", "{\"ms\": 500}", 5000, on_result, &r, NULL), 0);
  stop(c);
  spin(800);
  assert_int_equal(r.done, 0);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Calls reuse the connection. Not a benchmark with a bound (the machine is
 * shared): prints what a round trip costs on localhost, the fixture's own
 * work included. */
static void calls_reuse_the_connection_and_print_their_round_trip(void **state) {
  struct seen s = {0};
  struct mcp_client *c = start(&s);
  assert_true(wait_until(&s.lists, 5000));
  enum { N = 200 };
  uint64_t took[N];
  struct http_client_stats before, after;
  http_client_stats(F.http, &before);
  struct result *r = calloc(1, sizeof *r);
  for (int i = 0; i < N; i++) {
    r->done = 0;
    uint64_t t0 = uv_hrtime();
    assert_int_equal(mcp_call_tool(c, "echo", "{\"text\": \"hi\"}", 5000, on_result, r, NULL), 0);
    assert_true(wait_until(&r->done, 5000));
    took[i] = uv_hrtime() - t0;
    assert_int_equal(r->is_error, 0);
  }
  free(r);
  http_client_stats(F.http, &after);
  assert_true(after.connects - before.connects < 5); /* the connection is kept, not one per call */
  qsort(took, N, sizeof *took, cmp_u64);
  printf("# MCP tools/call round trip on localhost (JSON answers): median %.2f ms, p90 %.2f ms, "
         "max %.2f ms over %d calls\n",
         (double)took[N / 2] / 1e6, (double)took[N * 9 / 10] / 1e6, (double)took[N - 1] / 1e6, N);
  stop(c);
}

/* ---- setup ---- */

static int reset_fixture(void **state) {
  json_decref(fixture("/_fixture/reset", "{}"));
  return 0;
}

static int setup(void **state) {
  F.node = spawn_at(0, &F.port);
  if (F.node <= 0 || F.port <= 0) return -1;
  snprintf(F.base, sizeof F.base, "http://127.0.0.1:%d", F.port);
  snprintf(F.url, sizeof F.url, "%s/mcp", F.base);
  assert_int_equal(uv_loop_init(&F.loop), 0);
  uv_timer_init(&F.loop, &F.guard);
  uv_timer_start(&F.guard, on_guard, 20, 20);
  struct http_client_opts o = {.connect_timeout_ms = 1000, .first_byte_timeout_ms = 5000,
                               .total_timeout_ms = 30000};
  assert_int_equal(http_client_new(&F.http, &F.loop, &o), 0);
  config_defaults(&F.cfg);
  F.env = (struct engine_env){&F.cfg, NULL, NULL, F.http};
  return 0;
}

static int teardown(void **state) {
  http_client_free(F.http);
  uv_close((uv_handle_t *)&F.guard, NULL);
  uv_run(&F.loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&F.loop);
  node_fixture_stop(F.node);
  return rc;
}

#define T(fn) cmocka_unit_test_setup(fn, reset_fixture)

int main(void) {
  if (system("node --version >/dev/null 2>&1") != 0) {
    printf("# node not found: skipping the MCP tests\n");
    return 0;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      T(initialize_carries_the_session_to_every_later_request),
      T(tools_list_follows_next_cursor),
      T(tools_call_gives_text_and_is_error),
      T(list_changed_on_the_get_stream_lists_again),
      T(answers_as_event_streams_are_read),
      T(an_expired_session_is_started_again),
      T(a_server_down_at_start_is_found_later),
      T(garbage_answers_are_survived),
      T(a_cancelled_call_never_calls_back),
      T(calls_reuse_the_connection_and_print_their_round_trip),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  curl_global_cleanup();
  return rc;
}
