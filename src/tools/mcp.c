/*
 * mcp: a Model Context Protocol client over Streamable HTTP, on the control
 * loop.
 *
 * Every message is a JSON-RPC 2.0 object POSTed to the server's one URL.
 * The server may answer a request with plain JSON or with an event stream
 * that carries the answer, often after notifications of its own, and it
 * may ask us things (a ping) on that stream. So each POST is an
 * "exchange": its body is read the same way whatever form it takes, every
 * message in it is dispatched, and the exchange is over for its owner when
 * the answer with its id has been seen, even if the stream goes on (the
 * rest is still read, so that the connection can be reused).
 *
 * Nothing that starts or stops a transfer may run inside the HTTP client's
 * head and data callbacks (libcurl refuses calls into its multi handle
 * from inside its own callbacks). So those callbacks only record what
 * arrived and kick a zero-delay timer; the reactions (handing an answer to
 * its owner, listing again after notifications/tools/list_changed,
 * answering the server's requests) run from that timer or from the
 * transfer's done callback, where the client is free to start and cancel.
 * It also means no user callback ever runs inside an HTTP callback.
 *
 * The session: initialize (no session id yet); its answer's Mcp-Session-Id
 * header, if any, goes on every later request, with MCP-Protocol-Version;
 * then the notifications/initialized notification; then tools/list, page
 * by page along nextCursor, and the tools are announced. A GET on the same
 * URL opens a stream the server may use for list_changed between our
 * requests (405: it has none; that is fine). A 404 to a request carrying
 * the session id means the server has forgotten the session: a new one is
 * started at once, and a tools/call that got the 404 (which the server
 * therefore never ran) is sent again once in the new session.
 *
 * A server that is down or answers something we cannot read is logged and
 * tried again after a growing delay (0.5 s doubling to 30 s); its tools are
 * withdrawn (announced as an empty list) until it answers again. A
 * tools/call is never retried by the HTTP client: a tool may have effects.
 * Everything read from the server is bounded: an answer to tools/list
 * 1 MB, to tools/call 64 KB, 128 tools per server.
 */
#include "tools/mcp.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "core/log.h"
#include "net/http_client.h"
#include "net/sse.h"

#define MCP_VERSION "2025-06-18"
#define MCP_SERVICE "MCP server"
#define LIST_MAX (1024 * 1024)    /* bytes of one tools/list answer */
#define RESULT_MAX (64 * 1024)    /* bytes of one tools/call answer */
#define SMALL_MAX (64 * 1024)     /* initialize, notifications, our replies */
#define TOOLS_MAX 128
#define PAGES_MAX 64
#define NAME_MAX_LEN 128
#define SESSION_MAX 256
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define STREAM_SHORT_MS 1000      /* a GET stream that ended sooner failed */
#define CALL_TIMEOUT_MS 10000     /* when the caller gives none */

/* The versions we speak, newest first; the first is the one we ask for. */
static const char *const versions[] = {MCP_VERSION, "2025-03-26", NULL};

enum xkind { X_INIT, X_INITIALIZED, X_LIST, X_CALL, X_STREAM, X_NOTE };

/* One HTTP request and the messages its answer carries. */
struct exchange {
  struct mcp_client *c;
  struct exchange *prev, *next;
  enum xkind kind;
  struct http_transfer *t;
  struct mcp_call *call; /* X_CALL: the call waiting for it, NULL once told */
  json_int_t id;         /* our request's id; 0 for a notification or the GET stream */
  size_t max, got;       /* bytes allowed (0: any) and received */
  int sse, completed, wrong_type;
  struct sse_parser *parser;
  char *body;            /* a JSON answer, gathered */
  size_t len;
  json_t *answer;        /* the response to `id`, once seen */
  char *session;         /* X_INIT: the Mcp-Session-Id header of the answer */
  char err[200];         /* why the answer was refused while it came */
};

/* How an exchange ended, for its owner. */
struct outcome {
  json_t *answer;      /* the JSON-RPC response, or NULL */
  const char *session; /* X_INIT */
  long status;
  int rc, wrong_type;
  const char *err;     /* NULL: an answer, or an accepted notification */
};

enum state { ST_BACKOFF, ST_CONNECTING, ST_READY, ST_DEAD };

struct mcp_client {
  struct http_client *http;
  uv_loop_t *loop;
  char *url;
  char label[160]; /* the URL without query or fragment, for logs */
  mcp_tools_fn on_tools;
  void *user;
  enum state state;
  char *session;
  const char *version;
  json_int_t next_id;
  struct exchange *xs;     /* every exchange in flight */
  struct exchange *setup;  /* initialize, initialized, or a tools/list page */
  struct exchange *stream; /* the GET stream */
  int stream_refused, stream_delay_ms;
  uint64_t stream_opened_ms;
  json_t *acc;             /* the tools of the pages read so far */
  int pages, list_again, truncated, announced, no_tools, expiries;
  int list_changed;        /* seen in a stream; the work timer lists again */
  json_t *replies;         /* messages to POST from the work timer */
  struct mcp_call *calls;
  int backoff_ms;
  uv_timer_t retry, reopen, work;
  int handles;
};

struct mcp_call {
  struct mcp_client *c;
  struct mcp_call *prev, *next;
  json_t *params; /* {name, arguments} */
  struct exchange *x;
  mcp_result_fn done;
  void *user;
  uv_timer_t timer; /* the deadline, or 0 ms to deliver `why` */
  int timeout_ms, resent;
  char why[240];
};

static void connect_start(struct mcp_client *c);
static void fail(struct mcp_client *c, const char *why);
static void finish(struct mcp_client *c, enum xkind kind, struct mcp_call *call, const struct outcome *o);

static void on_work(uv_timer_t *h);
static void on_call_timer(uv_timer_t *h);

static void kick(struct mcp_client *c) { uv_timer_start(&c->work, on_work, 0, 0); }

/* The server's text, fit for a log line: control characters become '?' (no forged lines). */
static const char *clean(const char *s, char *buf, size_t cap) {
  size_t i = 0;
  for (; s && s[i] && i + 1 < cap; i++) buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
  buf[i] = '\0';
  return buf;
}

/* ---- exchanges ---- */

static void exchange_free(struct exchange *x) {
  struct mcp_client *c = x->c;
  if (x->prev) x->prev->next = x->next;
  else c->xs = x->next;
  if (x->next) x->next->prev = x->prev;
  if (c->setup == x) c->setup = NULL;
  if (c->stream == x) c->stream = NULL;
  sse_parser_free(x->parser);
  free(x->body);
  json_decref(x->answer);
  free(x->session);
  free(x);
}

/* Ends an exchange without telling its owner. */
static void exchange_cancel(struct exchange *x) {
  if (!x) return;
  if (x->t) http_cancel(x->t);
  exchange_free(x);
}

/* A server's request to us: ping gets {}, anything else "method not found"
 * (we declared no capabilities, so it should ask nothing else). */
static void answer_request(struct mcp_client *c, json_t *m, const char *method) {
  json_t *id = json_object_get(m, "id");
  json_t *r = strcmp(method, "ping") == 0
                  ? json_pack("{s:s, s:O, s:{}}", "jsonrpc", "2.0", "id", id, "result")
                  : json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error", "code",
                              -32601, "message", "method not supported by this client");
  if (r && json_array_size(c->replies) < 16) json_array_append_new(c->replies, r);
  else json_decref(r);
  kick(c);
}

static void dispatch(struct exchange *x, json_t *m, int depth) {
  struct mcp_client *c = x->c;
  if (json_is_array(m) && depth == 0) { /* a batch (2025-03-26) */
    size_t i;
    json_t *v;
    json_array_foreach(m, i, v) dispatch(x, v, 1);
    return;
  }
  if (!json_is_object(m)) return;
  const char *method = json_string_value(json_object_get(m, "method"));
  json_t *id = json_object_get(m, "id");
  if (method && id) {
    answer_request(c, m, method);
  } else if (method) {
    if (strcmp(method, "notifications/tools/list_changed") == 0) {
      c->list_changed = 1;
      kick(c);
    }
  } else if (json_is_integer(id) && x->id && json_integer_value(id) == x->id && !x->answer &&
             (json_object_get(m, "result") || json_object_get(m, "error"))) {
    x->answer = json_incref(m);
    kick(c);
  }
}

static int on_event(void *user, const struct sse_event *ev) {
  struct exchange *x = user;
  if (strcmp(ev->type, "message") != 0) return 0;
  json_t *m = json_loadb(ev->data, ev->data_len, 0, NULL);
  if (!m) {
    log_debug("mcp", "%s: an event that is not JSON, ignored", x->c->label);
    return 0;
  }
  dispatch(x, m, 0);
  json_decref(m);
  return 0;
}

static int x_head(void *user, long status, const char *ct) {
  struct exchange *x = user;
  if (x->kind == X_INIT) {
    const char *s = http_transfer_header(x->t, "Mcp-Session-Id");
    if (s && *s) {
      size_t n = strlen(s), i = 0;
      while (i < n && (unsigned char)s[i] >= 0x21 && (unsigned char)s[i] <= 0x7e) i++;
      if (i < n || n > SESSION_MAX) {
        snprintf(x->err, sizeof x->err, "a session id that is not 1 to %d visible ASCII characters",
                 SESSION_MAX);
        return 1;
      }
      x->session = strdup(s);
      if (!x->session) return 1;
    }
  }
  if (strncasecmp(ct, "text/event-stream", 17) == 0) {
    x->sse = 1;
    if (sse_parser_new(&x->parser, on_event, x) != 0) return 1;
    return 0;
  }
  if (x->kind != X_STREAM && strncasecmp(ct, "application/json", 16) == 0) return 0;
  char t[64];
  snprintf(x->err, sizeof x->err, "an answer of type \"%s\"", clean(ct, t, sizeof t));
  x->wrong_type = 1;
  return 1;
}

static int x_data(void *user, const char *buf, size_t len) {
  struct exchange *x = user;
  x->got += len;
  if (x->max && x->got > x->max) {
    snprintf(x->err, sizeof x->err, "an answer larger than %zu bytes", x->max);
    return 1;
  }
  if (x->sse) {
    int rc = sse_feed(x->parser, buf, len);
    if (rc) snprintf(x->err, sizeof x->err, "an event stream that could not be read (%s)", strerror(-rc));
    return rc;
  }
  char *p = realloc(x->body, x->len + len + 1);
  if (!p) return 1;
  memcpy(p + x->len, buf, len);
  x->body = p;
  x->len += len;
  p[x->len] = '\0';
  return 0;
}

/* What went wrong, when nothing answered the request. */
static const char *describe(struct exchange *x, const struct http_result *r, char *buf, size_t cap) {
  if (x->err[0]) return x->err;
  if (r->rc) return r->message ? r->message : "the request failed";
  if (r->status < 200 || r->status > 299) { /* with the start of what it said, for the operator */
    char said[101];
    clean(r->body_len && r->body ? r->body : "", said, sizeof said);
    snprintf(buf, cap, "HTTP %ld%s%s", r->status, said[0] ? ": " : "", said);
    return buf;
  }
  if (!x->id) return NULL; /* a notification, accepted */
  return x->len || x->sse ? "an answer that is not the JSON-RPC response" : "no answer to the request";
}

static void x_done(void *user, const struct http_result *r) {
  struct exchange *x = user;
  struct mcp_client *c = x->c;
  x->t = NULL;
  if (!x->sse && x->body && r->rc == 0 && r->status / 100 == 2 && !x->err[0]) {
    json_t *m = json_loadb(x->body, x->len, JSON_DECODE_ANY, NULL);
    if (m) dispatch(x, m, 0);
    else snprintf(x->err, sizeof x->err, "an answer that is not JSON");
    json_decref(m);
  }
  enum xkind kind = x->kind;
  struct mcp_call *call = x->call;
  int completed = x->completed;
  char buf[160], err[sizeof x->err + 64] = "";
  const char *why = x->answer ? NULL : describe(x, r, buf, sizeof buf);
  if (why) snprintf(err, sizeof err, "%s", why);
  struct outcome o = {.answer = json_incref(x->answer), .status = r->status, .rc = r->rc,
                      .wrong_type = x->wrong_type, .err = why ? err : NULL};
  char *session = x->session;
  x->session = NULL;
  o.session = session;
  exchange_free(x);
  if (!completed) finish(c, kind, call, &o);
  json_decref(o.answer);
  free(session);
}

/* Starts an exchange: POSTs `msg` (taken), or GETs the stream when msg is NULL. */
static struct exchange *exchange_start(struct mcp_client *c, enum xkind kind, json_t *msg, size_t max) {
  struct exchange *x = calloc(1, sizeof *x);
  struct http_request req = {.method = msg ? "POST" : "GET", .service = MCP_SERVICE};
  if (!x) goto fail;
  x->c = c;
  x->kind = kind;
  x->max = max;
  json_t *id = msg ? json_object_get(msg, "id") : NULL;
  x->id = json_is_integer(id) && json_object_get(msg, "method") ? json_integer_value(id) : 0;
  if (msg) {
    req.body = json_dumps(msg, JSON_COMPACT);
    if (!req.body) goto fail;
    req.body_len = strlen(req.body);
    if (http_request_add_header(&req, "Content-Type: application/json") ||
        http_request_add_header(&req, "Accept: application/json, text/event-stream"))
      goto fail;
  } else if (http_request_add_header(&req, "Accept: text/event-stream")) {
    goto fail;
  }
  if (http_request_set_url(&req, "%s", c->url) ||
      (c->session && http_request_add_header(&req, "Mcp-Session-Id: %s", c->session)) ||
      (c->version && http_request_add_header(&req, "MCP-Protocol-Version: %s", c->version)))
    goto fail;
  /* A tool may book or send something: never sent twice. The stream is
   * reopened by us, on our terms. */
  req.no_retry = kind == X_CALL || kind == X_STREAM;
  struct http_callbacks cb = {.head = x_head, .data = x_data, .done = x_done, .user = x};
  if (http_start(c->http, &req, &cb, &x->t) != 0) { /* req is cleared either way */
    free(x);
    json_decref(msg);
    return NULL;
  }
  json_decref(msg);
  x->next = c->xs;
  if (c->xs) c->xs->prev = x;
  c->xs = x;
  return x;
fail:
  http_request_clear(&req);
  free(x);
  json_decref(msg);
  return NULL;
}

/* A request (id > 0) or a notification (id 0) to POST; params taken (NULL: none). */
static json_t *message(struct mcp_client *c, const char *method, json_t *params, int request) {
  json_t *m = json_pack("{s:s, s:s}", "jsonrpc", "2.0", "method", method);
  if (m && request) json_object_set_new(m, "id", json_integer(++c->next_id));
  if (m && params) json_object_set(m, "params", params);
  json_decref(params);
  return m;
}

/* ---- tools ---- */

static void add_tool(struct mcp_client *c, json_t *tool) {
  const char *name = json_string_value(json_object_get(tool, "name"));
  if (!name || !*name || strlen(name) > NAME_MAX_LEN) {
    log_warn("mcp", "%s: a tool without a usable name (1 to %d bytes), left out", c->label,
             NAME_MAX_LEN);
    return;
  }
  size_t i;
  json_t *v;
  json_array_foreach(c->acc, i, v) {
    if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0) {
      char n[NAME_MAX_LEN + 1];
      log_warn("mcp", "%s: tool %s listed twice; the first is kept", c->label, clean(name, n, sizeof n));
      return;
    }
  }
  if (json_array_size(c->acc) >= TOOLS_MAX) {
    if (!c->truncated) log_warn("mcp", "%s: more than %d tools; the rest are left out", c->label, TOOLS_MAX);
    c->truncated = 1;
    return;
  }
  json_t *schema = json_object_get(tool, "inputSchema");
  const char *desc = json_string_value(json_object_get(tool, "description"));
  json_t *copy = json_is_object(schema) ? json_deep_copy(schema) : json_pack("{s:s}", "type", "object");
  json_t *t =
      json_pack("{s:s, s:s, s:o}", "name", name, "description", desc ? desc : "", "inputSchema", copy);
  if (t) json_array_append_new(c->acc, t);
}

static void announce(struct mcp_client *c, json_t *tools) {
  c->announced = json_array_size(tools) > 0;
  c->on_tools(c->user, tools);
}

static void list_page(struct mcp_client *c, const char *cursor) {
  json_t *params = cursor ? json_pack("{s:s}", "cursor", cursor) : NULL;
  json_t *m = message(c, "tools/list", params, 1);
  c->setup = m ? exchange_start(c, X_LIST, m, LIST_MAX) : NULL;
  if (!c->setup) fail(c, "tools/list could not be sent");
}

static void list_start(struct mcp_client *c) {
  json_decref(c->acc);
  c->acc = json_array();
  c->pages = c->truncated = c->list_again = 0;
  if (!c->acc) fail(c, "out of memory");
  else list_page(c, NULL);
}

/* ---- the session ---- */

static void session_reset(struct mcp_client *c) {
  exchange_cancel(c->setup);
  exchange_cancel(c->stream);
  free(c->session);
  c->session = NULL;
  c->version = NULL;
  json_decref(c->acc);
  c->acc = NULL;
}

static void on_retry(uv_timer_t *h) { connect_start(h->data); }

/* The server is down or talks nonsense: log, withdraw its tools, try later. */
static void fail(struct mcp_client *c, const char *why) {
  if (c->state == ST_DEAD) return;
  session_reset(c);
  c->state = ST_BACKOFF;
  c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
  if (c->backoff_ms > BACKOFF_MAX_MS) c->backoff_ms = BACKOFF_MAX_MS;
  log_warn("mcp", "%s: %s; trying again in %d ms", c->label, why, c->backoff_ms);
  uv_timer_start(&c->retry, on_retry, (uint64_t)c->backoff_ms, 0);
  /* Calls waiting for a session end now (from their timers, not from here). */
  for (struct mcp_call *k = c->calls; k; k = k->next) {
    if (k->x || k->why[0]) continue;
    snprintf(k->why, sizeof k->why, "the tool server is unavailable: %s", why);
    uv_timer_start(&k->timer, on_call_timer, 0, 0);
  }
  if (c->announced) {
    json_t *none = json_array();
    announce(c, none);
    json_decref(none);
  }
}

/* 404 on a request with our session id: the server forgot the session. */
static void session_expired(struct mcp_client *c) {
  if (c->state != ST_READY) return;
  if (++c->expiries > 1) { /* twice without a listing in between: something else is wrong */
    fail(c, "the session was not found again (HTTP 404)");
    return;
  }
  log_info("mcp", "%s: session expired; starting a new one", c->label);
  session_reset(c);
  connect_start(c);
}

static void connect_start(struct mcp_client *c) {
  session_reset(c);
  c->state = ST_CONNECTING;
  json_t *params = json_pack("{s:s, s:{}, s:{s:s, s:s}}", "protocolVersion", MCP_VERSION, "capabilities",
                             "clientInfo", "name", "tingshuo", "version", TINGSHUO_VERSION);
  json_t *m = params ? message(c, "initialize", params, 1) : NULL;
  c->setup = m ? exchange_start(c, X_INIT, m, SMALL_MAX) : NULL;
  if (!c->setup) fail(c, "initialize could not be sent");
}

/* The RPC's error, or NULL; the JSON-RPC error's message in buf. */
static const char *rpc_error(const struct outcome *o, const char *what, char *buf, size_t cap) {
  if (!o->answer) {
    snprintf(buf, cap, "%s: %s", what, o->err ? o->err : "no answer");
    return buf;
  }
  json_t *e = json_object_get(o->answer, "error");
  if (e) {
    const char *msg = json_string_value(json_object_get(e, "message"));
    char m[121];
    long long code = (long long)json_integer_value(json_object_get(e, "code"));
    snprintf(buf, cap, "%s: the server answered error %lld (%s)", what, code,
             clean(msg ? msg : "no message", m, sizeof m));
    return buf;
  }
  if (!json_is_object(json_object_get(o->answer, "result"))) {
    snprintf(buf, cap, "%s: a result that is not an object", what);
    return buf;
  }
  return NULL;
}

static void init_done(struct mcp_client *c, const struct outcome *o) {
  char buf[320];
  const char *why = rpc_error(o, "initialize", buf, sizeof buf);
  if (why) {
    fail(c, why);
    return;
  }
  json_t *res = json_object_get(o->answer, "result");
  const char *v = json_string_value(json_object_get(res, "protocolVersion"));
  c->version = NULL;
  for (int i = 0; v && versions[i]; i++)
    if (strcmp(v, versions[i]) == 0) c->version = versions[i];
  if (!c->version) {
    char vb[41];
    snprintf(buf, sizeof buf, "initialize: protocol version \"%s\" is not one this client speaks",
             clean(v ? v : "(none)", vb, sizeof vb));
    fail(c, buf);
    return;
  }
  c->no_tools = !json_is_object(json_object_get(json_object_get(res, "capabilities"), "tools"));
  free(c->session);
  c->session = o->session ? strdup(o->session) : NULL;
  json_t *m = message(c, "notifications/initialized", NULL, 0);
  c->setup = m ? exchange_start(c, X_INITIALIZED, m, SMALL_MAX) : NULL;
  if (!c->setup) fail(c, "notifications/initialized could not be sent");
}

static void call_send(struct mcp_call *k);
static void stream_open(struct mcp_client *c);

static void initialized_done(struct mcp_client *c, const struct outcome *o) {
  if (o->err) {
    char buf[320];
    snprintf(buf, sizeof buf, "notifications/initialized: %s", o->err);
    fail(c, buf);
    return;
  }
  c->state = ST_READY;
  for (struct mcp_call *k = c->calls; k; k = k->next)
    if (!k->x && !k->why[0]) call_send(k);
  if (c->no_tools) {
    log_info("mcp", "%s: connected; the server offers no tools", c->label);
    c->backoff_ms = c->expiries = 0;
    json_t *none = json_array();
    announce(c, none);
    json_decref(none);
    return;
  }
  stream_open(c);
  list_start(c);
}

static void list_done(struct mcp_client *c, const struct outcome *o) {
  char buf[320];
  if (o->status == 404 && c->session) {
    session_expired(c);
    return;
  }
  const char *why = rpc_error(o, "tools/list", buf, sizeof buf);
  json_t *res = o->answer ? json_object_get(o->answer, "result") : NULL;
  json_t *tools = json_object_get(res, "tools");
  if (!why && !json_is_array(tools)) why = "tools/list: a result without a tools array";
  if (why) {
    fail(c, why);
    return;
  }
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t) add_tool(c, t);
  const char *cursor = json_string_value(json_object_get(res, "nextCursor"));
  if (c->list_again) {
    list_start(c); /* changed while we read: start over */
    return;
  }
  if (cursor && !c->truncated) {
    if (++c->pages < PAGES_MAX) {
      list_page(c, cursor);
      return;
    }
    log_warn("mcp", "%s: more than %d pages of tools; the rest are left out", c->label, PAGES_MAX);
  }
  json_t *list = c->acc;
  c->acc = NULL;
  c->backoff_ms = c->expiries = 0;
  log_info("mcp", "%s: %zu tools", c->label, json_array_size(list));
  announce(c, list);
  json_decref(list);
}

static void list_changed(struct mcp_client *c) {
  if (c->state != ST_READY || c->no_tools) return; /* a connection under way lists anyway */
  if (c->setup) c->list_again = 1;
  else list_start(c);
}

/* ---- the GET stream ---- */

static void on_reopen(uv_timer_t *h) { stream_open(h->data); }

static void stream_open(struct mcp_client *c) {
  if (c->stream_refused || c->state != ST_READY || c->stream) return;
  c->stream = exchange_start(c, X_STREAM, NULL, 0);
  c->stream_opened_ms = uv_now(c->loop);
  if (!c->stream) uv_timer_start(&c->reopen, on_reopen, BACKOFF_MAX_MS, 0);
}

static void stream_done(struct mcp_client *c, const struct outcome *o) {
  if (c->state != ST_READY) return;
  if (o->status == 405) {
    log_debug("mcp", "%s: no stream for notifications (HTTP 405)", c->label);
    c->stream_refused = 1;
    return;
  }
  if (o->status == 404 && c->session) {
    session_expired(c);
    return;
  }
  if (o->wrong_type) {
    log_info("mcp", "%s: the server's GET answer is not an event stream; not listening on it", c->label);
    c->stream_refused = 1;
    return;
  }
  uint64_t lasted = uv_now(c->loop) - c->stream_opened_ms;
  if (lasted >= STREAM_SHORT_MS) {
    c->stream_delay_ms = 0; /* a stream that ran its time (timeouts end them): reopen now */
  } else if (o->rc == -ECONNREFUSED) {
    fail(c, o->err ? o->err : "the stream failed"); /* the server is gone */
    return;
  } else {
    c->stream_delay_ms = c->stream_delay_ms ? c->stream_delay_ms * 2 : BACKOFF_MIN_MS;
    if (c->stream_delay_ms > BACKOFF_MAX_MS) c->stream_delay_ms = BACKOFF_MAX_MS;
  }
  uv_timer_start(&c->reopen, on_reopen, (uint64_t)c->stream_delay_ms, 0);
}

/* ---- calls ---- */

static void call_closed(uv_handle_t *h) {
  struct mcp_call *k = h->data;
  json_decref(k->params);
  free(k);
}

/* Unlinks the call and lets its memory go (once its timer has closed). */
static void call_release(struct mcp_call *k) {
  struct mcp_client *c = k->c;
  if (k->prev) k->prev->next = k->next;
  else c->calls = k->next;
  if (k->next) k->next->prev = k->prev;
  if (k->x) k->x->call = NULL;
  uv_close((uv_handle_t *)&k->timer, call_closed);
}

static void call_deliver(struct mcp_call *k, const char *json, int is_error) {
  mcp_result_fn done = k->done;
  void *user = k->user;
  call_release(k);
  done(user, json, is_error);
}

static void call_error(struct mcp_call *k, const char *why) {
  json_t *e = json_pack("{s:s}", "error", why);
  char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
  json_decref(e);
  call_deliver(k, s ? s : "{\"error\": \"out of memory\"}", 1);
  free(s);
}

/* Tells the server we no longer wait for request `id` (it may stop the tool). */
static void send_cancelled(struct mcp_client *c, json_int_t id, const char *reason) {
  if (c->state != ST_READY) return;
  json_t *p = json_pack("{s:I, s:s}", "requestId", id, "reason", reason);
  json_t *m = p ? message(c, "notifications/cancelled", p, 0) : NULL;
  if (m) exchange_start(c, X_NOTE, m, SMALL_MAX);
}

static void on_call_timer(uv_timer_t *h) {
  struct mcp_call *k = h->data;
  if (!k->why[0]) snprintf(k->why, sizeof k->why, "the tool gave no answer within %d ms", k->timeout_ms);
  if (k->x) {
    json_int_t id = k->x->id;
    exchange_cancel(k->x);
    k->x = NULL;
    send_cancelled(k->c, id, "timed out");
  }
  call_error(k, k->why);
}

static void call_send(struct mcp_call *k) {
  json_t *m = message(k->c, "tools/call", json_incref(k->params), 1);
  k->x = m ? exchange_start(k->c, X_CALL, m, RESULT_MAX) : NULL;
  if (k->x) {
    k->x->call = k;
    return;
  }
  snprintf(k->why, sizeof k->why, "the tool call could not be sent");
  uv_timer_start(&k->timer, on_call_timer, 0, 0);
}

static void call_done(struct mcp_client *c, struct mcp_call *k, const struct outcome *o) {
  k->x = NULL;
  if (o->rc == 0 && o->status == 404 && !k->resent &&
      ((c->state == ST_READY && c->session) || c->state == ST_CONNECTING)) {
    /* The session is gone, so the server never ran it: it goes again in the
     * new session (or ends with the reason if none can be had). */
    k->resent = 1;
    session_expired(c);
    return;
  }
  char buf[320];
  const char *why = rpc_error(o, "tools/call", buf, sizeof buf);
  if (why) {
    call_error(k, why);
    return;
  }
  json_t *res = json_object_get(o->answer, "result");
  char *s = json_dumps(res, JSON_COMPACT);
  if (!s) {
    call_error(k, "out of memory");
    return;
  }
  call_deliver(k, s, json_is_true(json_object_get(res, "isError")));
  free(s);
}

/* ---- the work timer ---- */

static void finish(struct mcp_client *c, enum xkind kind, struct mcp_call *call, const struct outcome *o) {
  if (o->rc == -ESHUTDOWN) c->state = ST_DEAD; /* the HTTP client is going away */
  switch (kind) {
  case X_INIT:
    if (c->state != ST_DEAD) init_done(c, o);
    break;
  case X_INITIALIZED:
    if (c->state != ST_DEAD) initialized_done(c, o);
    break;
  case X_LIST:
    if (c->state != ST_DEAD) list_done(c, o);
    break;
  case X_STREAM:
    if (c->state != ST_DEAD) stream_done(c, o);
    break;
  case X_CALL:
    if (call) call_done(c, call, o);
    break;
  case X_NOTE:
    if (o->err) log_debug("mcp", "%s: a notification or reply was refused: %s", c->label, o->err);
    break;
  }
}

/* Runs outside the HTTP client's callbacks: acts on what the streams brought. */
static void on_work(uv_timer_t *h) {
  struct mcp_client *c = h->data;
  for (;;) { /* each answer to its owner; the list may change under each */
    struct exchange *x = c->xs;
    while (x && (x->completed || !x->answer)) x = x->next;
    if (!x) break;
    x->completed = 1;
    if (c->setup == x) c->setup = NULL; /* its owner moves on; the rest of the stream drains */
    struct mcp_call *call = x->call;
    x->call = NULL;
    struct outcome o = {.answer = x->answer, .session = x->session, .status = 200};
    finish(c, x->kind, call, &o);
  }
  if (c->list_changed) {
    c->list_changed = 0;
    list_changed(c);
  }
  while (json_array_size(c->replies)) {
    json_t *m = json_incref(json_array_get(c->replies, 0));
    json_array_remove(c->replies, 0);
    if (c->state == ST_READY) exchange_start(c, X_NOTE, m, SMALL_MAX);
    else json_decref(m);
  }
}

/* ---- the API ---- */

static void client_closed(uv_handle_t *h) {
  struct mcp_client *c = h->data;
  if (--c->handles == 0) free(c);
}

int mcp_client_new(struct mcp_client **out, const struct engine_env *env, const char *url,
                   mcp_tools_fn on_tools, void *user) {
  *out = NULL;
  if (!env || !env->http || !url || !on_tools) return -EINVAL;
  if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) return -EINVAL;
  struct mcp_client *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  c->url = strdup(url);
  c->replies = json_array();
  if (!c->url || !c->replies) {
    free(c->url);
    json_decref(c->replies);
    free(c);
    return -ENOMEM;
  }
  c->http = env->http;
  c->loop = http_client_loop(env->http);
  c->on_tools = on_tools;
  c->user = user;
  snprintf(c->label, sizeof c->label, "%.*s", (int)strcspn(url, "?#"), url);
  uv_timer_t *timers[] = {&c->retry, &c->reopen, &c->work};
  for (int i = 0; i < 3; i++) {
    uv_timer_init(c->loop, timers[i]);
    timers[i]->data = c;
  }
  c->handles = 3;
  connect_start(c);
  *out = c;
  return 0;
}

void mcp_client_free(struct mcp_client *c) {
  if (!c) return;
  c->state = ST_DEAD;
  while (c->calls) call_release(c->calls);
  while (c->xs) exchange_cancel(c->xs);
  free(c->session);
  free(c->url);
  json_decref(c->acc);
  json_decref(c->replies);
  uv_close((uv_handle_t *)&c->retry, client_closed);
  uv_close((uv_handle_t *)&c->reopen, client_closed);
  uv_close((uv_handle_t *)&c->work, client_closed);
}

int mcp_call_tool(struct mcp_client *c, const char *name, const char *arguments_json, int timeout_ms,
                  mcp_result_fn done, void *user, struct mcp_call **out) {
  if (out) *out = NULL;
  if (!c || !name || !done) return -EINVAL;
  json_t *args = json_loads(arguments_json && *arguments_json ? arguments_json : "{}", 0, NULL);
  if (!json_is_object(args)) {
    json_decref(args);
    return -EINVAL;
  }
  struct mcp_call *k = calloc(1, sizeof *k);
  if (!k || !(k->params = json_pack("{s:s, s:o}", "name", name, "arguments", args))) {
    free(k);
    return -ENOMEM;
  }
  k->c = c;
  k->done = done;
  k->user = user;
  k->timeout_ms = timeout_ms > 0 ? timeout_ms : CALL_TIMEOUT_MS;
  uv_timer_init(c->loop, &k->timer);
  k->timer.data = k;
  k->next = c->calls;
  if (c->calls) c->calls->prev = k;
  c->calls = k;
  uv_timer_start(&k->timer, on_call_timer, (uint64_t)k->timeout_ms, 0);
  if (c->state == ST_READY) {
    call_send(k);
  } else if (c->state != ST_CONNECTING) { /* down: say so now rather than at the deadline */
    snprintf(k->why, sizeof k->why, "the tool server at %s is unavailable", c->label);
    uv_timer_start(&k->timer, on_call_timer, 0, 0);
  }
  if (out) *out = k;
  return 0;
}

void mcp_call_cancel(struct mcp_call *k) {
  if (!k) return;
  if (k->x) {
    json_int_t id = k->x->id;
    exchange_cancel(k->x);
    k->x = NULL;
    send_cancelled(k->c, id, "cancelled by the caller");
  }
  call_release(k);
}
