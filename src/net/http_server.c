/*
 * HTTP, HTTPS and WebSocket server on the control loop.
 *
 * The signaling, the REST API, the metrics and the outbound HTTP client all
 * run on one libuv loop, so they share state without locks. This file is
 * that loop's front door, and it is ours from accept() to close(): the
 * connection is a non-blocking socket watched by a uv_poll handle, TLS is
 * OpenSSL on that socket, a request head is parsed by http_parse, and a
 * WebSocket is framed by ws_frame. Owning it all means one place for every
 * limit a server facing strangers needs, and framing that holds a client to
 * RFC 6455 (an unmasked frame closes the connection with 1002).
 *
 * A connection moves through a few states: the TLS handshake (HTTPS only);
 * waiting for a request head; reading the request's body; waiting for the
 * application's answer; writing it; and, after an upgrade, being a
 * WebSocket. A connection that is done (an error answer, a close frame, no
 * keep-alive) is "finishing": what is queued is written, the sending side
 * is shut, and what the client still sends is read and dropped for
 * LINGER_MS, so that closing does not reset the connection before the
 * client has read the last answer.
 *
 * Requests. The application may answer long after its handler returned,
 * so a request is an object of its own that points to its connection;
 * whichever side ends first cuts the link. A request whose client has gone
 * is then owned by the application alone; its answer frees it and nothing
 * is written. The answer becomes a `response`, written as the socket takes
 * it: the head, then the body in chunks of HTTP_CHUNK from memory or from a
 * file, so a body of any size costs one chunk of buffer. One request is
 * served at a time: bytes of a pipelined request wait (up to a head's
 * worth) until the answer before them is written, so answers go out in
 * order, as RFC 9112 section 9.3.2 requires.
 *
 * Bodies: a request with a body is handed over when the body is complete.
 * Up to HTTP_REQ_BODY_MAX it is kept; up to HTTP_DISCARD_MAX it is read and
 * thrown away and the request answered 413, so the client reads the answer
 * on a healthy connection; anything larger, and a POST without a
 * Content-Length, is answered at once and the connection closed.
 *
 * WebSocket messages are gathered by the frame reader (bounded by
 * WS_MAX_MESSAGE) and handed over whole. Outgoing messages wait in a
 * per-connection queue until the socket takes them; a peer that stops
 * reading is disconnected once its queue passes a bound, so one slow
 * browser cannot make the server grow without limit.
 *
 * Limits. Connections at once (below the file-descriptor limit) and per
 * client address; a pause in accepting when accept() fails for want of
 * resources, instead of retrying at once, forever; the time a request's
 * head (and the TLS handshake before it) may take; the sizes of the request
 * line and head (414, 431); and, for WebSocket upgrades, the path, the
 * protocol version, the Origin (cross-site WebSocket hijacking and DNS
 * rebinding) and the WebSocket counts overall and per address. Each
 * deadline list holds one kind of deadline, now plus a constant, so a list
 * stays sorted by appending and one timer serves them all.
 */
#include "net/http_server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/num.h"
#include "core/prom.h"
#include "net/http_parse.h"
#include "net/tls_files.h"
#include "net/ws_frame.h"

#ifndef TINGSHUO_WEB_ROOT
#define TINGSHUO_WEB_ROOT "web"
#endif

#define WS_MAX_QUEUED (1024 * 1024)
#define HTTP_CHUNK (16 * 1024)
#define HTTP_DISCARD_MAX (1024 * 1024)
#define READ_CHUNK (16 * 1024)   /* one read from a socket */
#define READ_BUDGET (64 * 1024)  /* bytes read from one connection per wake-up, for fairness */
#define RESP_HEAD_MAX 4096       /* a response's status line and headers */

#define ACCEPT_BATCH 64          /* connections accepted per wake-up, for fairness */
#define ACCEPT_PAUSE_MIN_MS 50   /* first pause after accept() ran out of resources */
#define ACCEPT_PAUSE_MAX_MS 1000
#define LINGER_MS 1000           /* reading what a finished client still sends */
#define KEEPALIVE_MS 5000        /* an idle kept-alive connection waits this for its next request */
#define PEER_BUCKETS 1024
#define FD_RESERVE 64            /* descriptors kept for the process itself */
#define FD_PER_CALL 4            /* a call's AI-service connections and recording */
#define FD_RAISE_TO 65536        /* the soft descriptor limit is raised this far at most */
#define HTTP_CONNS_PER_IP 32     /* connections per address that are not WebSockets */

enum refusal { /* why a connection or a request was turned away; metric labels */
  REFUSE_CAPACITY, REFUSE_PER_IP, REFUSE_HEADER_TIMEOUT, REFUSE_URI_TOO_LONG,
  REFUSE_HEADERS_TOO_LARGE, REFUSE_ACCEPT_ERROR, REFUSE_BAD_REQUEST, REFUSE_TLS_HANDSHAKE,
  REFUSE_COUNT
};
static const char *const refusal_names[REFUSE_COUNT] = {
    "capacity", "per_ip", "header_timeout", "uri_too_long", "headers_too_large",
    "accept_error", "bad_request", "tls_handshake"};

enum ws_refusal {
  WS_REFUSE_PATH, WS_REFUSE_VERSION, WS_REFUSE_ORIGIN, WS_REFUSE_CAPACITY, WS_REFUSE_PER_IP,
  WS_REFUSE_COUNT
};
static const char *const ws_refusal_names[WS_REFUSE_COUNT] = {"path", "version", "origin",
                                                               "capacity", "per_ip"};

/* Why an open WebSocket was closed by the server for what its client sent; metric labels. */
enum ws_violation { WS_BAD_PROTOCOL, WS_BAD_UTF8, WS_TOO_BIG, WS_BINARY, WS_VIOLATION_COUNT };
static const char *const ws_violation_names[WS_VIOLATION_COUNT] = {"protocol", "utf8",
                                                                   "too_big", "binary"};

struct out_msg {
  struct out_msg *next;
  enum ws_opcode op;
  size_t len;
  unsigned char data[];
};

struct ws_conn {
  struct conn *conn;
  struct ws_reader *rd;
  void *data;
  char *user_agent;          /* of the upgrade request; NULL when none */
  struct http_head *upgrade; /* the upgrade request, while ws_open runs */
  struct out_msg *head, *tail;
  size_t queued;
  int closing;               /* our close frame is queued: nothing more goes out */
};

struct http_req {
  struct conn *conn;       /* NULL once the client has gone */
  struct http_head head;
  enum http_method method;
  enum http_listener listener;
  int tls;
  int handed_over;         /* the application has it */
  int verdict;             /* refused once its body has been read (405, 413), or 0 */
  const char *verdict_why, *verdict_headers;
  const char *hdr[HTTP_H_COUNT];
  int if_range;            /* an If-Range header came */
  char *body;
  size_t body_len, body_cap;
  char peer[INET6_ADDRSTRLEN];
};

/* An answer being written. */
struct response {
  int status;
  char type[128];
  char *headers;           /* extra "Name: value\r\n" lines, or NULL */
  char content_range[96];
  int ranges;              /* 1: send Accept-Ranges */
  int close_after;
  int head_only;           /* a HEAD request: the length, not the body */
  int headers_sent;
  char *mem;               /* the body in memory, or NULL */
  int fd;                  /* the body in a file, or -1 */
  uint64_t length;         /* Content-Length */
  uint64_t off, end;       /* next byte of the body to send, one past the last */
};

/* A client address, as limits count it: an IPv4 address, or an IPv6 /64. */
struct peer {
  struct peer *next;       /* in its hash bucket */
  unsigned char key[9];    /* 4 or 6, then the address or prefix */
  int conns;               /* connections that are not WebSockets */
  int ws;                  /* WebSocket connections */
};

enum listener_kind { LISTEN_HTTP, LISTEN_HTTPS, LISTEN_METRICS, LISTEN_COUNT };

struct listener {
  struct http_server *srv;
  enum listener_kind kind;
  uv_poll_t poll;
  int fd;                  /* -1 when not listening */
  int polling;
  char host[260];          /* as configured, lower-case, IPv6 in brackets */
  int port;                /* as bound */
};

enum conn_state {
  ST_TLS,    /* TLS handshake */
  ST_HEAD,   /* waiting for a request head */
  ST_BODY,   /* reading (or discarding) a request body */
  ST_ANSWER, /* the application has the request */
  ST_WRITE,  /* writing the answer */
  ST_WS,     /* a WebSocket */
};

/* The deadline lists (see the top); each has its own constant. */
enum conn_list { LIST_NONE, LIST_HEAD, LIST_IDLE, LIST_IO, LIST_LINGER, LIST_COUNT };

/* One accepted TCP connection. */
struct conn {
  struct http_server *srv;
  struct listener *l;
  struct peer *peer;
  uv_poll_t poll;
  int fd;
  SSL *ssl;                /* HTTPS */
  struct conn *all_prev, *all_next; /* every open connection */
  struct conn *prev, *next; /* in a deadline list while `listed` */
  enum conn_list listed;
  uint64_t deadline;
  enum conn_state st;
  int exempt;              /* loopback, not limited per address */
  int ws_counted;          /* counted as a WebSocket */
  int closed;              /* closed; the memory goes when libuv lets go of the handle */
  int finishing;           /* done: write what is queued, shut, linger */
  int shut;                /* the sending side is shut */
  int keep_alive;          /* the request being served lets another follow */
  int client_closes;       /* ... because its client said it would send no other */
  int http10;              /* the request is HTTP/1.0: keeping alive must be said */
  int close_when_flushed;  /* nothing more can come: no lingering (see resp_done) */
  int tls_wants_write;     /* OpenSSL needs the socket writable to go on reading */
  int events;              /* what the poll handle watches */
  char peer_addr[INET6_ADDRSTRLEN];
  char *in;                /* bytes read and not yet used */
  size_t in_len;
  unsigned char *out;      /* bytes to write */
  size_t out_len, out_off, out_cap;
  struct http_req *req;    /* the request being served */
  struct response *resp;   /* its answer, being written */
  uint64_t discard;        /* body bytes still to read and drop */
  struct ws_conn *ws;
};

struct dlist {
  struct conn *head, *tail;
};

struct http_server {
  struct listener l[LISTEN_COUNT];
  struct http_handlers h;
  SSL_CTX *tls;
  char web_root[1024];
  char cert[1100], key[1100];
  char url[300], https_url[300], metrics_url[300];
  uv_loop_t *loop;
  int stopping;
  int handles; /* the timers below are initialised */

  /* limits (see the top) */
  int max_conns, max_ws, max_ws_per_ip, conns_per_ip, limit_loopback;
  int header_timeout_ms;
  char allowed_origins[1024];
  /* state */
  struct peer *peers[PEER_BUCKETS];
  int n_conns, n_ws;
  struct conn *all;
  struct dlist lists[LIST_COUNT];
  uv_timer_t sweep, resume;
  int accept_pause_ms;                          /* 0 while accepting */
  char scratch[READ_CHUNK];                     /* every read lands here first */
  /* counters for /metrics */
  unsigned long long refused[REFUSE_COUNT], ws_refused[WS_REFUSE_COUNT];
  unsigned long long ws_violations[WS_VIOLATION_COUNT];
  unsigned long long accepted, accept_pauses;
};

static void conn_close(struct conn *c);
static void conn_watch(struct conn *c);
static void conn_finish(struct conn *c);
static void conn_list(struct conn *c, enum conn_list which);
static void conn_unlist(struct conn *c);
static int out_reserve(struct conn *c, size_t more);
static const char *status_text(int status);

/* ---- WebSocket connections ---- */

static void ws_free_queue(struct ws_conn *w) {
  while (w->head) {
    struct out_msg *m = w->head;
    w->head = m->next;
    free(m);
  }
  w->tail = NULL;
  w->queued = 0;
}

static void ws_free(struct ws_conn *w) {
  ws_free_queue(w);
  ws_reader_free(w->rd);
  free(w->user_agent);
  free(w);
}

static int ws_queue(struct ws_conn *w, enum ws_opcode op, const void *p, size_t len) {
  struct out_msg *m = malloc(sizeof *m + len);
  if (!m) return -ENOMEM;
  m->next = NULL;
  m->op = op;
  m->len = len;
  if (len) memcpy(m->data, p, len);
  if (w->tail) w->tail->next = m;
  else w->head = m;
  w->tail = m;
  w->queued += len;
  conn_watch(w->conn);
  return 0;
}

/* Queues our close frame; once it is written the connection finishes. */
static void ws_send_close(struct ws_conn *w, int code, const char *reason) {
  if (w->closing) return;
  w->closing = 1;
  uint8_t payload[WS_CONTROL_MAX];
  size_t n = code == WS_CLOSE_NO_STATUS ? 0 : ws_close_payload(payload, code, reason);
  if (ws_queue(w, WS_OP_CLOSE, payload, n)) conn_finish(w->conn); /* no memory: just go */
}

/*
 * A peer that does not read what is queued for it (messages, or pongs for
 * its own pings) is closed once the queue would pass WS_MAX_QUEUED: 1 then.
 */
static int ws_over_bound(struct ws_conn *w, size_t len) {
  if (w->queued + len <= WS_MAX_QUEUED) return 0;
  log_warn("ws", "%s: not reading, %zu bytes queued; closing", w->conn->peer_addr, w->queued);
  ws_free_queue(w); /* it would never be read */
  ws_send_close(w, WS_CLOSE_POLICY, "not reading");
  return 1;
}

int ws_conn_send(struct ws_conn *w, const char *text, size_t len) {
  if (w->closing || w->conn->closed) return -EPIPE;
  if (ws_over_bound(w, len)) return -ENOBUFS;
  return ws_queue(w, WS_OP_TEXT, text, len);
}

void ws_conn_close(struct ws_conn *w) {
  if (!w->conn->closed) ws_send_close(w, WS_CLOSE_NORMAL, NULL);
}

void ws_conn_set_data(struct ws_conn *w, void *data) { w->data = data; }
void *ws_conn_data(const struct ws_conn *w) { return w->data; }
const char *ws_conn_peer(const struct ws_conn *w) { return w->conn->peer_addr; }
const char *ws_conn_user_agent(const struct ws_conn *w) { return w->user_agent; }

int ws_conn_query(const struct ws_conn *w, const char *name, char *out, size_t cap) {
  const char *v = w->upgrade ? http_head_arg(w->upgrade, name) : NULL;
  if (!v) return -ENOENT;
  size_t len = strlen(v);
  if (len >= cap) return -ENOSPC;
  memcpy(out, v, len + 1);
  return (int)len;
}

/* The client broke the protocol: say why in a close frame and finish. */
static void ws_violation(struct conn *c, int code, const char *why) {
  struct ws_conn *w = c->ws;
  enum ws_violation v = code == WS_CLOSE_INVALID_DATA ? WS_BAD_UTF8
                        : code == WS_CLOSE_TOO_BIG    ? WS_TOO_BIG
                        : code == WS_CLOSE_UNSUPPORTED_DATA ? WS_BINARY
                                                            : WS_BAD_PROTOCOL;
  c->srv->ws_violations[v]++;
  log_info("ws", "%s: closing with %d: %s", c->peer_addr, code, why);
  if (w->closing) return conn_finish(c);
  ws_free_queue(w);
  ws_send_close(w, code, why);
}

static void ws_event(struct conn *c, const struct ws_event *ev) {
  struct ws_conn *w = c->ws;
  struct http_server *srv = c->srv;
  if (w->closing) return; /* our close is out: the client's answer to it is all that matters */
  switch (ev->op) {
  case WS_OP_TEXT:
    if (srv->h.ws_message) srv->h.ws_message(srv->h.user, w, (const char *)ev->data, ev->len);
    return;
  case WS_OP_BINARY:
    return ws_violation(c, WS_CLOSE_UNSUPPORTED_DATA, "text only");
  case WS_OP_PING:
    if (!ws_over_bound(w, ev->len) && ws_queue(w, WS_OP_PONG, ev->data, ev->len))
      conn_finish(c);
    return;
  case WS_OP_CLOSE: /* echo its code (RFC 6455 section 5.5.1), then finish */
    return ws_send_close(w, ev->close_code, NULL);
  default:
    return; /* a pong */
  }
}

/* WebSocket bytes: every one is taken, events delivered as they complete. */
static size_t use_ws(struct conn *c, const char *data, size_t len) {
  const uint8_t *p = (const uint8_t *)data;
  size_t off = 0;
  while (off < len && !c->closed && !c->finishing) {
    size_t used = 0;
    struct ws_event ev;
    int code = 0;
    int rc = ws_reader_feed(c->ws->rd, p + off, len - off, &used, &ev, &code);
    off += used;
    if (rc < 0) {
      ws_violation(c, code, ws_reader_error(c->ws->rd));
      return len;
    }
    if (rc == 0) break;
    ws_event(c, &ev);
  }
  return len;
}

/* The next queued frame into the output; 1, or 0 when nothing is queued. */
static int ws_refill(struct conn *c) {
  struct ws_conn *w = c->ws;
  struct out_msg *m = w->head;
  if (!m) return 0;
  if (out_reserve(c, WS_HEADER_MAX + m->len)) return -1;
  c->out_len += ws_frame_header(c->out + c->out_len, m->op, m->len);
  memcpy(c->out + c->out_len, m->data, m->len);
  c->out_len += m->len;
  w->head = m->next;
  if (!w->head) w->tail = NULL;
  w->queued -= m->len;
  if (m->op == WS_OP_CLOSE) conn_finish(c); /* nothing follows a close frame */
  free(m);
  return 1;
}

/* ---- requests ---- */

static const char *const header_names[HTTP_H_COUNT] = {
    [HTTP_H_AUTHORIZATION] = "authorization",
    [HTTP_H_COOKIE] = "cookie",
    [HTTP_H_RANGE] = "range",
    [HTTP_H_ORIGIN] = "origin",
    [HTTP_H_HOST] = "host",
    [HTTP_H_CONTENT_TYPE] = "content-type",
    [HTTP_H_ACCEPT_LANGUAGE] = "accept-language",
    [HTTP_H_X_FORWARDED_FOR] = "x-forwarded-for",
    [HTTP_H_X_REAL_IP] = "x-real-ip",
    [HTTP_H_FORWARDED] = "forwarded",
};

static void req_free(struct http_req *r) {
  if (!r) return;
  http_head_free(&r->head);
  free(r->body);
  free(r);
}

static enum http_method method_of(const char *name) {
  static const struct {
    const char *name;
    enum http_method m;
  } known[] = {{"GET", HTTP_GET}, {"HEAD", HTTP_HEAD}, {"POST", HTTP_POST},
               {"DELETE", HTTP_DELETE}};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strcmp(known[i].name, name) == 0) return known[i].m;
  return HTTP_OTHER;
}

/* A request made of a parsed head, which it takes over. */
static struct http_req *req_new(struct conn *c, struct http_head *hd) {
  struct http_req *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->conn = c;
  r->head = *hd;
  hd->mem = NULL;
  r->method = method_of(r->head.method);
  r->listener = c->l->kind == LISTEN_METRICS ? HTTP_LISTENER_METRICS : HTTP_LISTENER_MAIN;
  r->tls = c->ssl != NULL;
  for (int i = 0; i < HTTP_H_COUNT; i++) r->hdr[i] = http_head_field(&r->head, header_names[i]);
  r->if_range = http_head_field(&r->head, "if-range") != NULL;
  snprintf(r->peer, sizeof r->peer, "%s", c->peer_addr);
  return r;
}

enum http_method http_req_method(const struct http_req *r) { return r->method; }
const char *http_req_method_name(const struct http_req *r) { return r->head.method; }
const char *http_req_path(const struct http_req *r) { return r->head.path; }
const char *http_req_header(const struct http_req *r, enum http_header h) {
  return h >= 0 && h < HTTP_H_COUNT ? r->hdr[h] : NULL;
}
const char *http_req_peer(const struct http_req *r) { return r->peer; }
int http_req_tls(const struct http_req *r) { return r->tls; }
enum http_listener http_req_listener(const struct http_req *r) { return r->listener; }
int http_req_gone(const struct http_req *r) { return r->conn == NULL; }

const char *http_req_body(const struct http_req *r, size_t *len) {
  if (len) *len = r->body_len;
  return r->body ? r->body : "";
}

const char *http_req_query(const struct http_req *r, const char *name) {
  return http_head_arg(&r->head, name);
}

/* ---- responses ---- */

static void resp_free(struct response *p) {
  if (!p) return;
  if (p->fd >= 0) close(p->fd);
  free(p->mem);
  free(p->headers);
  free(p);
}

static struct response *resp_new(int status, const char *type, const char *headers) {
  struct response *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->fd = -1;
  p->status = status;
  snprintf(p->type, sizeof p->type, "%s", type ? type : "application/octet-stream");
  if (headers && !(p->headers = strdup(headers))) {
    free(p);
    return NULL;
  }
  return p;
}

/*
 * Hands `p` to the request's connection and frees the request; a HEAD
 * request keeps the length but not the body. Without `p` (out of memory)
 * the connection finishes, so the client is not left waiting.
 */
static int submit(struct http_req *r, struct response *p) {
  struct conn *c = r->conn;
  int head = r->method == HTTP_HEAD;
  if (c && c->req == r) c->req = NULL;
  req_free(r);
  if (!c) {
    resp_free(p);
    return -ENOTCONN;
  }
  if (!p) {
    c->st = ST_WRITE;
    conn_finish(c);
    return -ENOMEM;
  }
  p->head_only = head;
  resp_free(c->resp);
  c->resp = p;
  c->st = ST_WRITE;
  conn_list(c, LIST_IO);
  conn_watch(c);
  return 0;
}

int http_reply_take(struct http_req *r, int status, const char *type, const char *headers,
                    void *body, size_t len) {
  struct response *p = r->conn ? resp_new(status, type, headers) : NULL;
  if (!p) {
    free(body);
    return submit(r, NULL);
  }
  p->mem = body;
  p->length = p->end = len;
  return submit(r, p);
}

int http_reply(struct http_req *r, int status, const char *type, const char *headers,
               const void *body, size_t len) {
  void *copy = NULL;
  if (len && r->conn) {
    copy = malloc(len);
    if (!copy) return submit(r, NULL);
    memcpy(copy, body, len);
  }
  return http_reply_take(r, status, type, headers, copy, len);
}

/* The server's own answers: a JSON error, closing the connection if asked to. */
static int answer_error(struct http_req *r, int status, const char *why, const char *headers,
                        int close_after) {
  char body[256];
  int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}", why);
  struct response *p = resp_new(status, "application/json", headers);
  char *mem = p ? strdup(body) : NULL;
  if (!mem) {
    resp_free(p);
    return submit(r, NULL);
  }
  p->mem = mem;
  p->length = p->end = (uint64_t)n;
  p->close_after = close_after;
  return submit(r, p);
}
static int parse_u64(const char **s, uint64_t *out) {
  const char *p = *s;
  uint64_t v = 0;
  if (!isdigit((unsigned char)*p)) return -1;
  for (; isdigit((unsigned char)*p); p++) {
    unsigned d = (unsigned)(*p - '0');
    v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d; /* saturates: huge is huge */
  }
  *out = v;
  *s = p;
  return 0;
}

int http_parse_range(const char *h, uint64_t size, uint64_t *first, uint64_t *last) {
  if (!h || strncasecmp(h, "bytes=", 6) != 0) return 0;
  const char *s = h + 6;
  s += strspn(s, " \t");
  if (strchr(s, ',')) return 0; /* several ranges: the whole file is a valid answer */
  uint64_t a = 0, b = 0;
  int has_a = *s != '-', has_b;
  if (has_a && parse_u64(&s, &a)) return 0;
  if (*s++ != '-') return 0;
  has_b = parse_u64(&s, &b) == 0;
  s += strspn(s, " \t");
  if (*s || (!has_a && !has_b)) return 0;
  if (!has_a) { /* the last b bytes */
    if (b == 0 || size == 0) return -1;
    *first = b >= size ? 0 : size - b;
    *last = size - 1;
    return 1;
  }
  if (has_b && b < a) return 0; /* malformed, so ignored */
  if (a >= size) return -1;
  *first = a;
  *last = has_b && b < size - 1 ? b : size - 1;
  return 1;
}

int http_reply_file(struct http_req *r, const char *path, const char *type,
                    const char *headers) {
  if (!r->conn) return submit(r, NULL), 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    return -ENOENT;
  }
  uint64_t size = (uint64_t)st.st_size, first = 0, last = 0;
  int range = r->hdr[HTTP_H_RANGE] && !r->if_range
                  ? http_parse_range(r->hdr[HTTP_H_RANGE], size, &first, &last)
                  : 0;
  if (range < 0) {
    close(fd);
    char *mem = strdup("{\"error\":\"range not satisfiable\"}");
    struct response *p = mem ? resp_new(416, "application/json", headers) : NULL;
    if (!p) return free(mem), submit(r, NULL), 0;
    p->mem = mem;
    p->length = p->end = strlen(mem);
    p->ranges = 1;
    snprintf(p->content_range, sizeof p->content_range, "bytes */%llu", (unsigned long long)size);
    return submit(r, p), 0;
  }
  struct response *p = resp_new(range ? 206 : 200, type, headers);
  if (!p) return close(fd), submit(r, NULL), 0;
  p->fd = fd;
  p->ranges = 1;
  p->off = range ? first : 0;
  p->end = range ? last + 1 : size;
  p->length = p->end - p->off;
  if (range)
    snprintf(p->content_range, sizeof p->content_range, "bytes %llu-%llu/%llu",
             (unsigned long long)first, (unsigned long long)last, (unsigned long long)size);
  return submit(r, p), 0;
}


/*
 * The application's "Name: value\r\n" lines, names in lower case as all of
 * ours are, each line ended properly; a line without a colon is skipped.
 * 0, or -1 when they do not fit.
 */
static int put_extra_headers(char *q, size_t cap, size_t *n, const char *lines) {
  while (lines && *lines) {
    size_t len = strcspn(lines, "\r\n");
    const char *colon = memchr(lines, ':', len);
    if (colon) {
      if (*n + len + 2 >= cap) return -1;
      memcpy(q + *n, lines, len);
      for (size_t i = 0; i < (size_t)(colon - lines); i++)
        q[*n + i] = (char)tolower((unsigned char)q[*n + i]);
      memcpy(q + *n + len, "\r\n", 2);
      *n += len + 2;
    }
    lines += len;
    lines += strspn(lines, "\r\n");
  }
  return 0;
}

/* Appends formatted text; -1 when it does not fit. */
static int put(char *q, size_t cap, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int put(char *q, size_t cap, size_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(q + *n, cap - *n, fmt, ap);
  va_end(ap);
  if (k < 0 || (size_t)k >= cap - *n) return -1;
  *n += (size_t)k;
  return 0;
}

/* The status line and headers of `p` into the output. */
static int resp_write_head(struct conn *c, struct response *p) {
  if (out_reserve(c, RESP_HEAD_MAX)) return -1;
  char *q = (char *)c->out + c->out_len, date[64];
  size_t n = 0;
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  c->keep_alive = c->keep_alive && !p->close_after && !c->srv->stopping;
  int bodyless = p->status == 204 || p->status == 304; /* RFC 9110 section 8.6 */
  int fail = put(q, RESP_HEAD_MAX, &n, "HTTP/1.1 %d %s\r\ndate: %s\r\n", p->status,
                 status_text(p->status), date);
  if (!bodyless)
    fail |= put(q, RESP_HEAD_MAX, &n, "content-type: %s\r\ncontent-length: %llu\r\n", p->type,
                (unsigned long long)p->length);
  if (p->ranges) fail |= put(q, RESP_HEAD_MAX, &n, "accept-ranges: bytes\r\n");
  if (p->content_range[0])
    fail |= put(q, RESP_HEAD_MAX, &n, "content-range: %s\r\n", p->content_range);
  if (!c->keep_alive) fail |= put(q, RESP_HEAD_MAX, &n, "connection: close\r\n");
  else if (c->http10) fail |= put(q, RESP_HEAD_MAX, &n, "connection: keep-alive\r\n");
  fail |= put_extra_headers(q, RESP_HEAD_MAX, &n, p->headers);
  fail |= put(q, RESP_HEAD_MAX, &n, "\r\n");
  if (fail) {
    log_warn("http", "response headers do not fit in %d bytes", RESP_HEAD_MAX);
    return -1;
  }
  c->out_len += n;
  p->headers_sent = 1;
  if (p->head_only || bodyless) p->end = p->off;
  return 0;
}

static int resp_write_chunk(struct conn *c, struct response *p) {
  size_t n = p->end - p->off > HTTP_CHUNK ? HTTP_CHUNK : (size_t)(p->end - p->off);
  if (out_reserve(c, n)) return -1;
  unsigned char *dst = c->out + c->out_len;
  if (p->mem) {
    memcpy(dst, p->mem + p->off, n);
  } else {
    ssize_t got = pread(p->fd, dst, n, (off_t)p->off);
    if (got <= 0) {
      log_warn("http", "reading a response file: %s", got ? strerror(errno) : "it shrank");
      return -1;
    }
    n = (size_t)got;
  }
  c->out_len += n;
  p->off += n;
  return 0;
}

/* The answer has gone out: the next request, or the end. */
static void resp_done(struct conn *c) {
  resp_free(c->resp);
  c->resp = NULL;
  /* A client that asked for the close sends nothing more, so the close need not linger
   * (RFC 9112 section 9.6 lingers for a client that may still be sending). */
  c->close_when_flushed = c->client_closes && !c->in_len;
  if (!c->keep_alive) return conn_finish(c);
  c->st = ST_HEAD;
  conn_list(c, c->in_len ? LIST_HEAD : LIST_IDLE);
}

/* More of the answer into the output: 1, 0 when it is all out, -1 on error. */
static int resp_refill(struct conn *c) {
  struct response *p = c->resp;
  if (!p->headers_sent) return resp_write_head(c, p) ? -1 : 1;
  if (p->off < p->end) return resp_write_chunk(c, p) ? -1 : 1;
  resp_done(c);
  return 0;
}

/* ---- static files ---- */

static const char *mime_type(const char *path) {
  static const struct {
    const char *ext, *type;
  } types[] = {
      {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"}, {"mjs", "text/javascript; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},   {"json", "application/json"},
      {"svg", "image/svg+xml"},             {"png", "image/png"},
      {"jpg", "image/jpeg"},                {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},                 {"ico", "image/x-icon"},
      {"webp", "image/webp"},               {"txt", "text/plain; charset=utf-8"},
      {"wav", "audio/wav"},                 {"ogg", "audio/ogg"},
      {"opus", "audio/ogg"},                {"mp3", "audio/mpeg"},
      {"wasm", "application/wasm"},         {"woff2", "font/woff2"},
      {"webmanifest", "application/manifest+json"}, {"map", "application/json"},
  };
  const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
  if (!dot || (slash && dot < slash)) return "application/octet-stream";
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if (strcasecmp(dot + 1, types[i].ext) == 0) return types[i].type;
  return "application/octet-stream";
}

/*
 * A file from web_root. The path is normalised already, so it cannot climb
 * out; names starting with a dot (".git", ".env") are never served.
 */
static void serve_file(struct http_server *srv, struct http_req *r) {
  const char *path = r->head.path;
  char full[2048];
  size_t plen = strlen(path);
  int n = snprintf(full, sizeof full, "%s%s%s", srv->web_root, path,
                   path[plen - 1] == '/' ? "index.html" : "");
  if (strstr(path, "/.") || n < 0 || (size_t)n >= sizeof full ||
      http_reply_file(r, full, mime_type(full), "cache-control: no-cache\r\n") < 0)
    answer_error(r, 404, "not found", NULL, 0);
}

/* ---- serving a request ---- */

enum action { ACT_APP, ACT_FILE, ACT_REFUSE };

static void hand_over(struct http_server *srv, struct http_req *r) {
  r->handed_over = 1;
  if (srv->h.request) srv->h.request(srv->h.request_user, r); /* `r` may be gone after this */
  else answer_error(r, 404, "not found", NULL, 0);
}

/* Below one of the application's prefixes. */
static int mounted(const struct http_server *srv, const char *path) {
  for (int i = 0; srv->h.mounts[i]; i++) {
    size_t n = strlen(srv->h.mounts[i]);
    if (strncmp(path, srv->h.mounts[i], n) == 0 && (path[n] == '\0' || path[n] == '/')) return 1;
  }
  return 0;
}

/* The request and its body are in: answer it, or hand it over. */
static void request_ready(struct conn *c) {
  struct http_req *r = c->req;
  c->st = ST_ANSWER;
  conn_list(c, LIST_IO); /* HTTP_IDLE_TIMEOUT_S for the answer */
  if (r->verdict) answer_error(r, r->verdict, r->verdict_why, r->verdict_headers, 0);
  else if (r->listener == HTTP_LISTENER_MAIN && !mounted(c->srv, r->head.path))
    serve_file(c->srv, r);
  else hand_over(c->srv, r);
}

/*
 * A request's head is in. What can be refused without reading a body is
 * refused now; a body to be read is read first (see the top).
 */
static void request_begin(struct conn *c, struct http_head *hd) {
  struct http_server *srv = c->srv;
  struct http_req *r = req_new(c, hd);
  if (!r) {
    http_head_free(hd);
    c->st = ST_WRITE;
    return conn_finish(c);
  }
  c->req = r;
  int64_t cl = r->head.content_length;
  if (cl < 0 && r->method == HTTP_POST)
    return (void)answer_error(r, 411, "a POST needs a Content-Length", NULL, 1);
  if (cl > HTTP_DISCARD_MAX) return (void)answer_error(r, 413, "request body too large", NULL, 1);
  int is_file = r->listener == HTTP_LISTENER_MAIN && !mounted(srv, r->head.path);
  if (is_file && r->method != HTTP_GET && r->method != HTTP_HEAD) {
    r->verdict = 405;
    r->verdict_why = "method not allowed";
    r->verdict_headers = "Allow: GET, HEAD\r\n";
  } else if (cl > HTTP_REQ_BODY_MAX) {
    r->verdict = 413;
    r->verdict_why = "request body too large";
  }
  if (cl <= 0) return request_ready(c);
  if (is_file || r->verdict) {
    c->discard = (uint64_t)cl;
  } else if (!(r->body = malloc((size_t)cl + 1))) {
    return (void)answer_error(r, 500, "out of memory", NULL, 1);
  } else {
    r->body[0] = '\0';
    r->body_cap = (size_t)cl;
  }
  const char *expect = http_head_field(&r->head, "expect");
  if (expect && strcasecmp(expect, "100-continue") == 0 && r->head.version_minor == 1 &&
      out_reserve(c, 32) == 0) {
    memcpy(c->out + c->out_len, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->out_len += 25;
  }
  c->st = ST_BODY;
  conn_list(c, LIST_IO);
}

/* Body bytes: kept or dropped until the Content-Length is reached. */
static size_t use_body(struct conn *c, const char *data, size_t len) {
  struct http_req *r = c->req;
  size_t want = c->discard ? (size_t)c->discard : r->body_cap - r->body_len;
  size_t n = len < want ? len : want;
  if (c->discard) {
    c->discard -= n;
  } else {
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
  }
  conn_list(c, LIST_IO);
  if (n == want) request_ready(c);
  return n;
}

/*
 * "host[:port]" or "[v6]:port" of `len` bytes: the host lower-cased (IPv6
 * with its brackets) and the port, `defport` when absent. 0 or -1.
 */
static int hostport_parse(const char *s, size_t len, int defport, char *host, size_t cap,
                          int *port) {
  if (len && s[len - 1] == '/') len--; /* "https://a.example/" in a list */
  const char *end = s + len, *colon = NULL;
  size_t hlen;
  if (len && *s == '[') {
    const char *rb = memchr(s, ']', len);
    if (!rb) return -1;
    hlen = (size_t)(rb - s) + 1;
    if (rb + 1 < end) {
      if (rb[1] != ':') return -1;
      colon = rb + 1;
    }
  } else {
    colon = memchr(s, ':', len);
    hlen = colon ? (size_t)(colon - s) : len;
  }
  if (hlen == 0 || hlen >= cap) return -1;
  for (size_t i = 0; i < hlen; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch <= ' ' || ch == '/' || ch == '@' || ch >= 0x7f) return -1;
    host[i] = (char)tolower(ch);
  }
  host[hlen] = '\0';
  if (!colon) {
    *port = defport;
    return 0;
  }
  return num_parse_int(colon + 1, (size_t)(end - colon - 1), 1, 65535, port) ? -1 : 0;
}

struct origin {
  int https;
  char host[256];
  int port;
};

static int origin_parse(const char *s, size_t len, struct origin *o) {
  if (len > 7 && strncasecmp(s, "http://", 7) == 0) o->https = 0, s += 7, len -= 7;
  else if (len > 8 && strncasecmp(s, "https://", 8) == 0) o->https = 1, s += 8, len -= 8;
  else return -1;
  return hostport_parse(s, len, o->https ? 443 : 80, o->host, sizeof o->host, &o->port);
}

static int is_localhost(const char *host) {
  return strcmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0 ||
         strcmp(host, "[::1]") == 0;
}

/* An IP address written out cannot be re-pointed by DNS. */
static int is_ip_literal(const char *host) {
  unsigned char buf[16];
  char v6[64];
  size_t n = strlen(host);
  if (n > 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof v6) {
    memcpy(v6, host + 1, n - 2);
    v6[n - 2] = '\0';
    return inet_pton(AF_INET6, v6, buf) == 1;
  }
  return inet_pton(AF_INET, host, buf) == 1;
}

static int origin_listed(const char *list, const struct origin *o) {
  for (const char *p = list; *p;) {
    p += strspn(p, " ,");
    size_t n = strcspn(p, ",");
    size_t m = n;
    while (m && p[m - 1] == ' ') m--;
    struct origin e;
    if (m && origin_parse(p, m, &e) == 0 && e.https == o->https && e.port == o->port &&
        strcmp(e.host, o->host) == 0)
      return 1;
    p += n;
  }
  return 0;
}

/*
 * Whether a WebSocket may be opened from this Origin (see
 * docs/security.md, "Origins"). The server's own origin is the request's
 * Host under this listener's scheme, but only when that Host is ours for
 * certain: a literal IP address, localhost, or the host a listener was
 * configured with. Otherwise a page on a name its owner points at us (DNS
 * rebinding) would count as our own.
 */
static int origin_ok(struct http_server *srv, const struct http_head *hd,
                     const struct listener *l) {
  const char *raw = http_head_field(hd, "origin");
  if (!raw) return 1; /* not a browser */
  struct origin o;
  if (origin_parse(raw, strlen(raw), &o)) return 0; /* "null", or garbage */
  if (is_localhost(o.host) || origin_listed(srv->allowed_origins, &o)) return 1;
  int https = l->kind == LISTEN_HTTPS;
  if (o.https != https) return 0;
  const char *hosthdr = http_head_field(hd, "host");
  char host[256];
  int port;
  if (!hosthdr ||
      hostport_parse(hosthdr, strlen(hosthdr), https ? 443 : 80, host, sizeof host, &port) ||
      port != o.port || strcmp(host, o.host) != 0)
    return 0;
  return is_ip_literal(host) || strcasecmp(host, l->host) == 0;
}

/* The refusal to send, or 0 with *why untouched when the upgrade may go ahead. */
static int ws_verdict(struct conn *c, const struct http_head *hd, enum ws_refusal *why,
                      const char **msg, const char **headers) {
  struct http_server *srv = c->srv;
  const char *version = http_head_field(hd, "sec-websocket-version");
  *headers = NULL;
  if (c->l->kind == LISTEN_METRICS || strcmp(hd->path, "/ws") != 0) {
    *why = WS_REFUSE_PATH, *msg = "no WebSocket here";
    return 404;
  }
  if (!version || strcmp(version, "13") != 0) { /* RFC 6455 section 4.4 */
    *why = WS_REFUSE_VERSION, *msg = "unsupported WebSocket version";
    *headers = "sec-websocket-version: 13\r\n";
    return 426;
  }
  if (!origin_ok(srv, hd, c->l)) {
    *why = WS_REFUSE_ORIGIN, *msg = "origin not allowed";
    return 403;
  }
  if (srv->n_ws >= srv->max_ws) {
    *why = WS_REFUSE_CAPACITY, *msg = "too many connections";
    *headers = "retry-after: 10\r\n";
    return 503;
  }
  if (!c->exempt && srv->max_ws_per_ip && c->peer->ws >= srv->max_ws_per_ip) {
    *why = WS_REFUSE_PER_IP, *msg = "too many connections from your address";
    *headers = "retry-after: 10\r\n";
    return 429;
  }
  return 0;
}

static void conn_become_ws(struct conn *c) {
  c->ws_counted = 1;
  c->peer->conns--;
  c->peer->ws++;
  c->srv->n_ws++;
}

static void refuse(struct conn *c, int status, const char *why, const char *headers,
                   int count);

/* An upgrade to a WebSocket: refused with an answer, or switched (RFC 6455 section 4.2.2). */
static void ws_upgrade(struct conn *c, struct http_head *hd) {
  struct http_server *srv = c->srv;
  enum ws_refusal why;
  const char *msg, *headers, *key = http_head_field(hd, "sec-websocket-key");
  int status = ws_verdict(c, hd, &why, &msg, &headers);
  char accept[29];
  if (status) {
    srv->ws_refused[why]++;
    log_debug("ws", "refused an upgrade: %d %s", status, msg);
    refuse(c, status, msg, headers, -1);
  } else if (strcmp(hd->method, "GET") != 0 || hd->version_minor != 1 || !key ||
             ws_accept_key(key, accept)) {
    refuse(c, 400, "bad WebSocket handshake", NULL, REFUSE_BAD_REQUEST);
  } else {
    struct ws_conn *w = calloc(1, sizeof *w);
    const char *ua = http_head_field(hd, "user-agent");
    char head[160];
    int n = snprintf(head, sizeof head, "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                     "connection: Upgrade\r\nsec-websocket-accept: %s\r\n\r\n", accept);
    if (!w || ws_reader_new(&w->rd, WS_MAX_MESSAGE) || (ua && !(w->user_agent = strdup(ua))) ||
        out_reserve(c, (size_t)n)) {
      if (w) ws_free(w);
      refuse(c, 503, "out of memory", NULL, -1);
    } else {
      memcpy(c->out + c->out_len, head, (size_t)n);
      c->out_len += (size_t)n;
      w->conn = c;
      c->ws = w;
      c->st = ST_WS;
      conn_unlist(c);
      conn_become_ws(c);
      w->upgrade = hd; /* for ws_conn_query */
      if (srv->h.ws_open) srv->h.ws_open(srv->h.user, w);
      w->upgrade = NULL;
    }
  }
  http_head_free(hd);
}

/* Bytes of a request head: 0 while it is incomplete, else what the head took. */
static size_t use_head(struct conn *c, const char *data, size_t len) {
  struct http_head hd;
  int rc = http_head_parse(data, len, &hd);
  if (rc == -EAGAIN) {
    if (c->listed == LIST_IDLE) conn_list(c, LIST_HEAD); /* the next head has begun */
    return 0;
  }
  if (rc == -EBADMSG) {
    enum refusal why = hd.status == 414   ? REFUSE_URI_TOO_LONG
                       : hd.status == 431 ? REFUSE_HEADERS_TOO_LARGE
                                          : REFUSE_BAD_REQUEST;
    refuse(c, hd.status, hd.error, NULL, why);
    return len;
  }
  if (rc) {
    refuse(c, 503, "out of memory", NULL, -1);
    return len;
  }
  conn_unlist(c);
  c->keep_alive = hd.keep_alive;
  c->client_closes = !hd.keep_alive;
  c->http10 = hd.version_minor == 0;
  size_t used = hd.head_len;
  if (hd.upgrade && strcasecmp(hd.upgrade, "websocket") == 0) ws_upgrade(c, &hd);
  else request_begin(c, &hd);
  return used;
}

/* ---- connections ---- */

/* IPv4 (also IPv4-mapped) by address, IPv6 by /64: one machine often has a whole /64. */
static int peer_key(const struct sockaddr_storage *sa, unsigned char key[9], int *loopback) {
  memset(key, 0, 9);
  if (sa->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    key[0] = 4;
    memcpy(key + 1, &a->sin_addr, 4);
  } else if (sa->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      key[0] = 4;
      memcpy(key + 1, a->sin6_addr.s6_addr + 12, 4);
    } else {
      key[0] = 6;
      memcpy(key + 1, a->sin6_addr.s6_addr, 8);
      *loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
      return 0;
    }
  } else {
    return -EAFNOSUPPORT;
  }
  *loopback = key[1] == 127;
  return 0;
}

static unsigned peer_bucket(const unsigned char key[9]) {
  uint32_t h = 2166136261u;
  for (int i = 0; i < 9; i++) h = (h ^ key[i]) * 16777619u;
  return h % PEER_BUCKETS;
}

static struct peer *peer_get(struct http_server *srv, const unsigned char key[9]) {
  struct peer **b = &srv->peers[peer_bucket(key)];
  for (struct peer *p = *b; p; p = p->next)
    if (memcmp(p->key, key, 9) == 0) return p;
  struct peer *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  memcpy(p->key, key, 9);
  p->next = *b;
  *b = p;
  return p;
}

/* Forgets an address with nothing open. */
static void peer_put(struct http_server *srv, struct peer *p) {
  if (p->conns || p->ws) return;
  struct peer **b = &srv->peers[peer_bucket(p->key)];
  while (*b != p) b = &(*b)->next;
  *b = p->next;
  free(p);
}

static const char *status_text(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 401: return "Unauthorized";
  case 405: return "Method Not Allowed";
  case 409: return "Conflict";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 500: return "Internal Server Error";
  case 502: return "Bad Gateway";
  case 400: return "Bad Request";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 408: return "Request Timeout";
  case 414: return "URI Too Long";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Error";
  }
}

/* A whole HTTP/1.1 answer that ends the connection; its length, or -1 if it does not fit. */
static int format_refusal(char *out, size_t cap, int status, const char *why, const char *headers) {
  char body[160];
  int blen = snprintf(body, sizeof body, "{\"error\":\"%s\"}", why);
  int n = snprintf(out, cap,
                   "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                   "connection: close\r\n%s\r\n%s",
                   status, status_text(status), blen, headers ? headers : "", body);
  return n < 0 || (size_t)n >= cap ? -1 : n;
}


/* The refusal of a request as a whole answer into the output; the connection then finishes. */
static void refuse(struct conn *c, int status, const char *why, const char *headers,
                   int count) {
  if (count >= 0) c->srv->refused[count]++;
  char buf[512];
  int n = format_refusal(buf, sizeof buf, status, why, headers);
  if (n > 0 && out_reserve(c, (size_t)n) == 0) {
    memcpy(c->out + c->out_len, buf, (size_t)n);
    c->out_len += (size_t)n;
  }
  conn_finish(c);
}

/* ---- deadlines ---- */

static void on_sweep(uv_timer_t *t);

static uint64_t list_timeout(const struct http_server *srv, enum conn_list which) {
  switch (which) {
  case LIST_HEAD: return (uint64_t)srv->header_timeout_ms;
  case LIST_LINGER: return LINGER_MS;
  case LIST_IDLE: return KEEPALIVE_MS;
  default: return HTTP_IDLE_TIMEOUT_S * 1000u; /* LIST_IO */
  }
}

/* The sweep timer runs when the earliest deadline of any list is due. */
static void sweep_arm(struct http_server *srv) {
  if (srv->stopping || !srv->handles) return;
  uint64_t due = UINT64_MAX;
  for (int i = LIST_HEAD; i < LIST_COUNT; i++)
    if (srv->lists[i].head && srv->lists[i].head->deadline < due)
      due = srv->lists[i].head->deadline;
  if (due == UINT64_MAX) {
    uv_timer_stop(&srv->sweep);
    return;
  }
  uint64_t now = uv_now(srv->loop);
  uv_timer_start(&srv->sweep, on_sweep, due > now ? due - now : 0, 0);
}

static void conn_unlist(struct conn *c) {
  if (!c || !c->listed) return;
  struct dlist *l = &c->srv->lists[c->listed];
  if (c->prev) c->prev->next = c->next;
  else l->head = c->next;
  if (c->next) c->next->prev = c->prev;
  else l->tail = c->prev;
  c->prev = c->next = NULL;
  c->listed = LIST_NONE;
}

/* (Re)starts the connection's deadline of kind `which`, at the end of its list. */
static void conn_list(struct conn *c, enum conn_list which) {
  struct http_server *srv = c->srv;
  conn_unlist(c);
  if (c->closed) return;
  struct dlist *l = &srv->lists[which];
  c->deadline = uv_now(srv->loop) + list_timeout(srv, which);
  c->listed = which;
  c->prev = l->tail;
  if (l->tail) l->tail->next = c;
  else l->head = c;
  l->tail = c;
  if (l->head == c) sweep_arm(srv);
}

/* ---- connection I/O ---- */

static int out_reserve(struct conn *c, size_t more) {
  if (c->out_cap - c->out_len >= more) return 0;
  size_t cap = c->out_len + more;
  unsigned char *grown = realloc(c->out, cap);
  if (!grown) return -1;
  c->out = grown;
  c->out_cap = cap;
  return 0;
}

/* Bytes read, 0 at the end of the stream, -EAGAIN, or another negative errno. */
static ssize_t conn_recv(struct conn *c, void *buf, size_t cap) {
  if (!c->ssl) {
    ssize_t n = recv(c->fd, buf, cap, 0);
    if (n >= 0) return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
  }
  size_t got = 0;
  ERR_clear_error();
  if (SSL_read_ex(c->ssl, buf, cap, &got)) return (ssize_t)got;
  switch (SSL_get_error(c->ssl, 0)) {
  case SSL_ERROR_WANT_READ: return -EAGAIN;
  case SSL_ERROR_WANT_WRITE: c->tls_wants_write = 1; return -EAGAIN;
  case SSL_ERROR_ZERO_RETURN: return 0;
  default: return -EIO; /* includes a TCP close without close_notify */
  }
}

/* Bytes written, -EAGAIN, or another negative errno. */
static ssize_t conn_send(struct conn *c, const void *buf, size_t len) {
  if (!c->ssl) {
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
  }
  size_t done = 0;
  ERR_clear_error();
  if (SSL_write_ex(c->ssl, buf, len, &done)) return (ssize_t)done;
  int e = SSL_get_error(c->ssl, 0);
  return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? -EAGAIN : -EIO;
}

/* Done with the connection: what is queued goes out, then it is shut (see the top). */
static void conn_finish(struct conn *c) {
  if (c->finishing || c->closed) return;
  c->finishing = 1;
  conn_list(c, LIST_IO); /* a client that does not read what is queued is not waited for */
  conn_watch(c);
}

static void conn_shut(struct conn *c) {
  c->shut = 1;
  if (c->ssl) {
    ERR_clear_error();
    SSL_shutdown(c->ssl); /* close_notify, if the socket takes it */
  }
  shutdown(c->fd, SHUT_WR);
  conn_list(c, LIST_LINGER);
}

static int conn_refill(struct conn *c) {
  if (c->st == ST_WRITE && c->resp) return resp_refill(c);
  if (c->st == ST_WS && c->ws) return ws_refill(c);
  return 0;
}

static int conn_has_output(const struct conn *c) {
  return c->out_off < c->out_len || (c->st == ST_WRITE && c->resp) ||
         (c->st == ST_WS && c->ws && c->ws->head) || (c->finishing && !c->shut);
}

/* Writes what there is to write; the bytes written, or -1 when the connection is broken. */
static ssize_t conn_flush(struct conn *c) {
  ssize_t total = 0;
  while (!c->closed) {
    if (c->out_off == c->out_len) {
      c->out_off = c->out_len = 0;
      int more = conn_refill(c);
      if (more < 0) return -1;
      if (more == 0) break;
    }
    ssize_t n = conn_send(c, c->out + c->out_off, c->out_len - c->out_off);
    if (n == -EAGAIN) {
      if (c->st == ST_WS && !c->listed) conn_list(c, LIST_IO); /* see ws_conn_send */
      return total;
    }
    if (n < 0) return -1;
    c->out_off += (size_t)n;
    total += n;
    if (c->listed == LIST_IO && !c->finishing) conn_list(c, LIST_IO); /* it is reading */
  }
  if (c->closed) return total;
  if (c->out_cap > RESP_HEAD_MAX || c->st == ST_WS) { /* an idle connection holds no buffer */
    free(c->out);
    c->out = NULL;
    c->out_cap = 0;
  }
  if (c->st == ST_WS && c->listed == LIST_IO && !c->finishing) conn_unlist(c);
  if (c->finishing && !c->shut) {
    if (c->close_when_flushed) conn_close(c);
    else conn_shut(c);
  }
  return total;
}

static int conn_wants_read(const struct conn *c) {
  if (c->closed) return 0;
  if (c->finishing || c->st == ST_HEAD || c->st == ST_BODY || c->st == ST_WS) return 1;
  return c->in_len < HTTP_HEAD_MAX; /* ST_ANSWER, ST_WRITE: a pipelined request waits here */
}

/* Hands bytes to the state they are for; returns how many were used. */
static size_t conn_use(struct conn *c, const char *data, size_t len) {
  size_t used = 0;
  while (used < len && !c->closed) {
    if (c->finishing) return len; /* read and dropped */
    size_t n;
    if (c->st == ST_HEAD) n = use_head(c, data + used, len - used);
    else if (c->st == ST_BODY) n = use_body(c, data + used, len - used);
    else if (c->st == ST_WS) n = use_ws(c, data + used, len - used);
    else break; /* waiting for an answer: the rest waits too */
    if (n == 0) break;
    used += n;
  }
  return c->closed ? len : used;
}

/* What was kept from earlier reads, given another chance. */
static void conn_use_kept(struct conn *c) {
  if (!c->in_len) return;
  size_t used = conn_use(c, c->in, c->in_len);
  if (c->closed) return;
  c->in_len -= used;
  if (c->in_len == 0) {
    free(c->in);
    c->in = NULL;
  } else if (used) {
    memmove(c->in, c->in + used, c->in_len);
  }
}

static int conn_keep(struct conn *c, const char *data, size_t len) {
  char *grown = realloc(c->in, c->in_len + len);
  if (!grown) return -1;
  memcpy(grown + c->in_len, data, len);
  c->in = grown;
  c->in_len += len;
  return 0;
}

/* Reads what the socket has (up to READ_BUDGET on plain sockets); -1 when it closed. */
static int conn_read(struct conn *c) {
  struct http_server *srv = c->srv;
  size_t budget = READ_BUDGET;
  while (conn_wants_read(c)) {
    ssize_t n = conn_recv(c, srv->scratch, sizeof srv->scratch);
    if (n == -EAGAIN) return 0;
    if (n <= 0) {
      conn_close(c); /* the client has gone, or closed after a finished answer */
      return -1;
    }
    if (c->in_len) {
      if (conn_keep(c, srv->scratch, (size_t)n)) return conn_close(c), -1;
      conn_use_kept(c);
    } else {
      size_t used = conn_use(c, srv->scratch, (size_t)n);
      if (!c->closed && used < (size_t)n && conn_keep(c, srv->scratch + used, (size_t)n - used))
        return conn_close(c), -1;
    }
    if (c->closed) return -1;
    /* OpenSSL may hold decrypted bytes the socket no longer signals: read those on. */
    if (!c->ssl && (budget = budget > (size_t)n ? budget - (size_t)n : 0) == 0) return 0;
  }
  return 0;
}

static int tls_handshake(struct conn *c) {
  ERR_clear_error();
  int rc = SSL_do_handshake(c->ssl);
  if (rc == 1) {
    c->st = ST_HEAD;
    return 0;
  }
  int e = SSL_get_error(c->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    c->tls_wants_write = e == SSL_ERROR_WANT_WRITE;
    return 0;
  }
  c->srv->refused[REFUSE_TLS_HANDSHAKE]++;
  log_debug("http", "%s: TLS handshake failed: %s", c->peer_addr,
            ERR_reason_error_string(ERR_peek_last_error()) ? ERR_reason_error_string(ERR_peek_last_error()) : "closed");
  conn_close(c);
  return -1;
}

/*
 * Everything the connection can do now: the handshake, writing, the bytes
 * kept from before, reading. A step can open the way for another (an
 * answer written lets the next request in), so it goes round while
 * something moved, a few times at most, for fairness.
 */
static void conn_pump(struct conn *c) {
  for (int round = 0; round < 4 && !c->closed; round++) {
    enum conn_state st = c->st;
    size_t in = c->in_len;
    int fin = c->finishing;
    c->tls_wants_write = 0;
    if (c->st == ST_TLS && (tls_handshake(c) || c->st == ST_TLS)) break;
    ssize_t wrote = conn_flush(c);
    if (wrote < 0) return conn_close(c);
    conn_use_kept(c);
    if (c->closed || conn_read(c)) return;
    if (!wrote && c->st == st && c->in_len == in && c->finishing == fin &&
        !(c->out_off < c->out_len))
      break;
  }
  conn_watch(c);
}

static void on_conn_event(uv_poll_t *h, int status, int events);

/* Sets what the poll handle watches from what the connection waits for. */
static void conn_watch(struct conn *c) {
  if (c->closed) return;
  int ev = 0;
  if (c->st == ST_TLS || conn_wants_read(c)) ev |= UV_READABLE;
  else ev |= UV_DISCONNECT; /* not reading: still told when the client goes */
  if (c->tls_wants_write || conn_has_output(c)) ev |= UV_WRITABLE;
  if (ev == c->events) return;
  c->events = ev;
  uv_poll_start(&c->poll, ev, on_conn_event);
}

static void on_conn_event(uv_poll_t *h, int status, int events) {
  struct conn *c = h->data;
  if (c->closed) return;
  if (status < 0 || ((events & UV_DISCONNECT) && !(c->events & UV_READABLE)))
    return conn_close(c); /* an error, or hung up while we were not reading */
  conn_pump(c);
}

static void conn_freed(uv_handle_t *h) { free(h->data); }

/*
 * Closes the connection now: the application hears of its WebSocket going,
 * a request it still holds is cut loose (its answer will be dropped), and
 * what the connection counted is given back. The memory goes once libuv
 * lets go of the poll handle.
 */
static void conn_close(struct conn *c) {
  if (c->closed) return;
  struct http_server *srv = c->srv;
  c->closed = 1;
  conn_unlist(c);
  if (c->all_prev) c->all_prev->all_next = c->all_next;
  else srv->all = c->all_next;
  if (c->all_next) c->all_next->all_prev = c->all_prev;
  if (c->req) {
    c->req->conn = NULL;
    if (!c->req->handed_over) req_free(c->req);
    c->req = NULL;
  }
  resp_free(c->resp);
  c->resp = NULL;
  if (c->ws) {
    if (srv->h.ws_close) srv->h.ws_close(srv->h.user, c->ws);
    ws_free(c->ws);
    c->ws = NULL;
  }
  if (c->ws_counted) {
    c->peer->ws--;
    srv->n_ws--;
  } else {
    c->peer->conns--;
  }
  peer_put(srv, c->peer);
  srv->n_conns--;
  SSL_free(c->ssl);
  c->ssl = NULL;
  free(c->in);
  free(c->out);
  c->in = NULL;
  c->out = NULL;
  c->in_len = c->out_len = c->out_off = 0;
  uv_close((uv_handle_t *)&c->poll, conn_freed); /* stops watching the fd at once */
  close(c->fd);
}

static void on_sweep(uv_timer_t *t) {
  struct http_server *srv = t->data;
  uint64_t now = uv_now(srv->loop);
  for (int i = LIST_HEAD; i < LIST_COUNT; i++) {
    struct dlist *l = &srv->lists[i];
    while (l->head && l->head->deadline <= now) {
      struct conn *c = l->head;
      conn_unlist(c);
      if (i == LIST_HEAD && c->st == ST_HEAD && !c->finishing) {
        refuse(c, 408, "request headers took too long", NULL, REFUSE_HEADER_TIMEOUT);
      } else {
        if (i == LIST_HEAD) srv->refused[REFUSE_HEADER_TIMEOUT]++; /* a TLS handshake */
        conn_close(c);
      }
    }
  }
  sweep_arm(srv);
}

/* ---- accepting ---- */

static void on_listen(uv_poll_t *h, int status, int events);

static void listeners_poll(struct http_server *srv, int on) {
  for (int i = 0; i < LISTEN_COUNT; i++) {
    struct listener *l = &srv->l[i];
    if (l->fd < 0 || l->polling == on) continue;
    if (on) uv_poll_start(&l->poll, UV_READABLE, on_listen);
    else uv_poll_stop(&l->poll);
    l->polling = on;
  }
}

static void on_resume(uv_timer_t *t) {
  struct http_server *srv = t->data;
  if (!srv->stopping) listeners_poll(srv, 1);
}

/*
 * accept() failed for want of descriptors or memory. The pending
 * connection stays in the kernel's queue, so trying again at once would
 * fail again, forever: stop accepting for a while, longer each time in a
 * row, and let connections close meanwhile.
 */
static void accept_pause(struct http_server *srv, int err) {
  srv->accept_pause_ms = srv->accept_pause_ms ? srv->accept_pause_ms * 2 : ACCEPT_PAUSE_MIN_MS;
  if (srv->accept_pause_ms > ACCEPT_PAUSE_MAX_MS) srv->accept_pause_ms = ACCEPT_PAUSE_MAX_MS;
  srv->refused[REFUSE_ACCEPT_ERROR]++;
  srv->accept_pauses++;
  log_warn("http", "accept: %s; not accepting for %d ms (%d connections open)", strerror(err),
           srv->accept_pause_ms, srv->n_conns);
  listeners_poll(srv, 0);
  uv_timer_start(&srv->resume, on_resume, (uint64_t)srv->accept_pause_ms, 0);
}

static void peer_text(const struct sockaddr_storage *sa, char *out, size_t cap) {
  snprintf(out, cap, "unknown");
  if (sa->ss_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
  else if (sa->ss_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap);
}

/* A connection the limits let in; 0, or -1 with nothing taken. */
static int conn_start(struct listener *l, struct conn *c) {
  struct http_server *srv = l->srv;
  if (uv_poll_init(srv->loop, &c->poll, c->fd)) return -1;
  c->poll.data = c;
  if (l->kind == LISTEN_HTTPS) {
    c->ssl = SSL_new(srv->tls);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
      SSL_free(c->ssl);
      uv_close((uv_handle_t *)&c->poll, conn_freed);
      return 1; /* the handle frees c */
    }
    SSL_set_accept_state(c->ssl);
    c->st = ST_TLS;
  } else {
    c->st = ST_HEAD;
  }
  c->all_next = srv->all;
  if (srv->all) srv->all->all_prev = c;
  srv->all = c;
  return 0;
}

static void conn_admit(struct listener *l, int fd, const struct sockaddr_storage *sa) {
  struct http_server *srv = l->srv;
  unsigned char key[9];
  int loopback = 0;
  struct peer *p = NULL;
  enum refusal why = REFUSE_CAPACITY;
  if (peer_key(sa, key, &loopback) == 0 && srv->n_conns < srv->max_conns &&
      (p = peer_get(srv, key)) != NULL) {
    int exempt = loopback && !srv->limit_loopback;
    int over = !exempt && p->conns >= srv->conns_per_ip;
    struct conn *c = over ? NULL : calloc(1, sizeof *c);
    if (c) {
      *c = (struct conn){.srv = srv, .l = l, .peer = p, .fd = fd, .exempt = exempt};
      peer_text(sa, c->peer_addr, sizeof c->peer_addr);
      int started = conn_start(l, c);
      if (started == 0) {
        p->conns++;
        srv->n_conns++;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_list(c, LIST_HEAD);
        conn_pump(c); /* the client has often sent its request already */
        return;
      }
      if (started < 0) free(c);
    }
    why = over ? REFUSE_PER_IP : REFUSE_CAPACITY;
    peer_put(srv, p);
  }
  srv->refused[why]++;
  log_debug("http", "refused a connection: %s", refusal_names[why]);
  close(fd);
}

static void on_listen(uv_poll_t *h, int status, int events) {
  (void)events;
  struct listener *l = h->data;
  struct http_server *srv = l->srv;
  if (status < 0) return;
  for (int i = 0; i < ACCEPT_BATCH && !srv->stopping; i++) {
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    int fd = accept4(l->fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO || errno == EPERM) continue;
      return accept_pause(srv, errno);
    }
    srv->accept_pause_ms = 0;
    srv->accepted++;
    conn_admit(l, fd, &sa);
  }
}

/* Splits "host:port" / "[v6]:port". */
static int split_addr(const char *addr, char *host, size_t cap, int *port) {
  const char *colon = strrchr(addr, ':');
  if (!colon) return -EINVAL;
  const char *h = addr;
  size_t hl = (size_t)(colon - addr);
  if (*h == '[' && hl >= 2) h++, hl -= 2;
  if (hl >= cap) return -EINVAL;
  memcpy(host, h, hl);
  host[hl] = '\0';
  return num_parse_int_str(colon + 1, 0, 65535, port) ? -EINVAL : 0;
}

/* A non-blocking listening socket on host:port; the fd or a negative errno. */
static int open_listener(const char *host, int port, int *bound) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  char ps[8];
  snprintf(ps, sizeof ps, "%d", port);
  struct addrinfo *res = NULL;
  if (getaddrinfo(host[0] ? host : NULL, ps, &hints, &res)) return -EADDRNOTAVAIL;
  int fd = -EADDRNOTAVAIL;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      fd = -errno;
      continue;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 511) == 0) break;
    int e = -errno;
    close(fd);
    fd = e;
  }
  freeaddrinfo(res);
  if (fd < 0) return fd;
  struct sockaddr_storage sa;
  socklen_t len = sizeof sa;
  getsockname(fd, (struct sockaddr *)&sa, &len);
  *bound = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                          : ((struct sockaddr_in *)&sa)->sin_port);
  return fd;
}


/* The HTTPS listener's TLS: TLS 1.2 and up, no renegotiation, buffers released when idle. */
static int tls_setup(struct http_server *srv, char *err, size_t errlen) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    snprintf(err, errlen, "cannot set up TLS");
    return -ENOMEM;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx, srv->cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, srv->key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    const char *why = ERR_reason_error_string(ERR_peek_last_error());
    snprintf(err, errlen, "cannot use the TLS certificate %s and key %s: %s", srv->cert,
             srv->key, why ? why : "unreadable");
    SSL_CTX_free(ctx);
    return -EINVAL;
  }
  srv->tls = ctx;
  return 0;
}

static int start_listener(struct http_server *srv, enum listener_kind kind, const char *addr,
                          char *url, size_t urlcap, char *err, size_t errlen) {
  struct listener *l = &srv->l[kind];
  char host[256];
  int port;
  if (split_addr(addr, host, sizeof host, &port)) {
    snprintf(err, errlen, "bad address %s", addr);
    return -EINVAL;
  }
  int fd = open_listener(host, port, &l->port);
  if (fd < 0) {
    snprintf(err, errlen, "cannot listen on %s (in use, or not an address of this machine?)",
             addr);
    return -EADDRINUSE;
  }
  l->fd = fd;
  snprintf(l->host, sizeof l->host, "%s%s%s", strchr(host, ':') ? "[" : "", host,
           strchr(host, ':') ? "]" : "");
  for (char *p = l->host; *p; p++) *p = (char)tolower((unsigned char)*p);
  uv_poll_init(srv->loop, &l->poll, fd);
  l->poll.data = l;
  uv_poll_start(&l->poll, UV_READABLE, on_listen);
  l->polling = 1;
  const char *shown = strcmp(host, "0.0.0.0") == 0 ? "localhost" : l->host;
  snprintf(url, urlcap, "%s://%s:%d/", kind == LISTEN_HTTPS ? "https" : "http", shown, l->port);
  return 0;
}
/*
 * How many connections the file-descriptor limit leaves room for. The soft
 * limit is raised to the hard one first (up to FD_RAISE_TO), as a server
 * that uses poll-style APIs may; what is left after FD_RESERVE and
 * FD_PER_CALL for each of max_calls is for connections, but never less than
 * a quarter of the limit. WebSockets get all of it but a little headroom,
 * so /healthz still answers when the WebSockets are full.
 */
static void plan_limits(struct http_server *srv, const struct config *cfg) {
  struct rlimit rl;
  long nofile = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    if (rl.rlim_cur < rl.rlim_max && rl.rlim_cur < FD_RAISE_TO) {
      struct rlimit want = rl;
      want.rlim_cur = rl.rlim_max < FD_RAISE_TO ? rl.rlim_max : FD_RAISE_TO;
      if (setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
    }
    nofile = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > FD_RAISE_TO ? FD_RAISE_TO
                                                                       : (long)rl.rlim_cur;
  }
  long want = FD_RESERVE + (long)FD_PER_CALL * cfg->max_calls;
  long room = nofile - want;
  if (room < nofile / 4) room = nofile / 4;
  srv->max_conns = room < 8 ? 8 : (int)room;
  int headroom = srv->max_conns / 8 < 4 ? 4 : srv->max_conns / 8 > 256 ? 256 : srv->max_conns / 8;
  int ws_room = srv->max_conns - headroom < 1 ? 1 : srv->max_conns - headroom;
  srv->max_ws = cfg->max_ws_connections ? cfg->max_ws_connections : ws_room;
  if (srv->max_ws > ws_room) {
    log_warn("http", "max_ws_connections %d is more than %ld file descriptors allow; using %d",
             cfg->max_ws_connections, nofile, ws_room);
    srv->max_ws = ws_room;
  }
  if (nofile - srv->max_conns < want)
    log_warn("http", "the file-descriptor limit (%ld) is low for max_calls %d: raise it "
             "(LimitNOFILE=, ulimit -n) to at least %ld", nofile, cfg->max_calls,
             want + srv->max_conns);
  srv->max_ws_per_ip = cfg->max_ws_per_ip;
  srv->conns_per_ip = HTTP_CONNS_PER_IP;
  srv->limit_loopback = cfg->limit_loopback;
  srv->header_timeout_ms = cfg->http_header_timeout_ms;
  snprintf(srv->allowed_origins, sizeof srv->allowed_origins, "%s", cfg->allowed_origins);
  log_info("http", "up to %d connections, %d of them WebSockets (file-descriptor limit %ld)",
           srv->max_conns, srv->max_ws, nofile);
}


int http_server_start(struct http_server **out, uv_loop_t *loop, const struct config *cfg,
                      const struct http_handlers *handlers, char *err, size_t errlen) {
  struct http_server *srv = calloc(1, sizeof *srv);
  if (!srv) return -ENOMEM;
  srv->h = *handlers;
  srv->loop = loop;
  for (int i = 0; i < LISTEN_COUNT; i++)
    srv->l[i] = (struct listener){.srv = srv, .kind = (enum listener_kind)i, .fd = -1};
  snprintf(srv->web_root, sizeof srv->web_root, "%s",
           cfg->web_root[0] ? cfg->web_root : TINGSHUO_WEB_ROOT);
  size_t wl = strlen(srv->web_root);
  while (wl > 1 && srv->web_root[wl - 1] == '/') srv->web_root[--wl] = '\0';
  for (int n = 0; srv->h.mounts[n]; n++) {
    if (n == HTTP_MAX_MOUNTS || srv->h.mounts[n][0] != '/') {
      snprintf(err, errlen, "bad mount points for the HTTP server");
      free(srv);
      return -EINVAL;
    }
  }
  uv_timer_init(loop, &srv->sweep);
  uv_timer_init(loop, &srv->resume);
  srv->sweep.data = srv->resume.data = srv;
  srv->handles = 1;
  plan_limits(srv, cfg);
  int tls = cfg->https_listen[0] != '\0';
  int rc = start_listener(srv, LISTEN_HTTP, cfg->listen, srv->url, sizeof srv->url, err, errlen);
  if (rc == 0 && tls)
    rc = tls_files_ensure(cfg, srv->cert, sizeof srv->cert, srv->key, sizeof srv->key, err,
                          errlen);
  if (rc == 0 && tls) rc = tls_setup(srv, err, errlen);
  if (rc == 0 && tls)
    rc = start_listener(srv, LISTEN_HTTPS, cfg->https_listen, srv->https_url,
                        sizeof srv->https_url, err, errlen);
  if (rc == 0 && cfg->metrics_listen[0])
    rc = start_listener(srv, LISTEN_METRICS, cfg->metrics_listen, srv->metrics_url,
                        sizeof srv->metrics_url, err, errlen);
  *out = srv;
  if (rc) http_server_stop(srv); /* the caller runs the loop to let the handles close, then frees */
  return rc;
}

const char *http_server_url(const struct http_server *srv) { return srv->url; }
const char *http_server_https_url(const struct http_server *srv) { return srv->https_url; }
const char *http_server_metrics_url(const struct http_server *srv) { return srv->metrics_url; }

void http_server_stop(struct http_server *srv) {
  if (srv->stopping) return;
  srv->stopping = 1;
  if (srv->handles) {
    uv_close((uv_handle_t *)&srv->sweep, NULL);
    uv_close((uv_handle_t *)&srv->resume, NULL);
  }
  for (int i = 0; i < LISTEN_COUNT; i++) {
    struct listener *l = &srv->l[i];
    if (l->fd >= 0) {
      uv_close((uv_handle_t *)&l->poll, NULL);
      close(l->fd);
      l->fd = -1;
    }
  }
  while (srv->all) conn_close(srv->all);
}

void http_server_free(struct http_server *srv) {
  if (!srv) return;
  SSL_CTX_free(srv->tls);
  for (int i = 0; i < PEER_BUCKETS; i++) {
    for (struct peer *p = srv->peers[i], *next; p; p = next) {
      next = p->next;
      free(p);
    }
  }
  free(srv);
}

/* ---- metrics ---- */

static void counter(struct prom_buf *b, const char *name, const char *help, double v) {
  prom_family(b, name, "counter", help);
  prom_sample(b, name, v, NULL);
}

static void gauge(struct prom_buf *b, const char *name, const char *help, double v) {
  prom_family(b, name, "gauge", help);
  prom_sample(b, name, v, NULL);
}

void http_server_write_metrics(const struct http_server *srv, struct prom_buf *b) {
  gauge(b, "tingshuo_http_connections", "TCP connections open on the HTTP(S) listeners, "
        "WebSockets included.", srv->n_conns);
  gauge(b, "tingshuo_http_connections_max", "Connections allowed at once (from the "
        "file-descriptor limit).", srv->max_conns);
  gauge(b, "tingshuo_ws_connections", "WebSocket connections open.", srv->n_ws);
  gauge(b, "tingshuo_ws_connections_max", "WebSocket connections allowed at once.", srv->max_ws);
  counter(b, "tingshuo_http_connections_accepted_total", "TCP connections accepted.",
          (double)srv->accepted);
  prom_family(b, "tingshuo_http_refused_total", "counter",
              "Connections closed or requests answered with an error before reaching the "
              "application, by reason.");
  for (int i = 0; i < REFUSE_COUNT; i++)
    prom_sample(b, "tingshuo_http_refused_total", (double)srv->refused[i], "reason",
                refusal_names[i], NULL);
  prom_family(b, "tingshuo_ws_refused_total", "counter", "WebSocket upgrades refused, by reason.");
  for (int i = 0; i < WS_REFUSE_COUNT; i++)
    prom_sample(b, "tingshuo_ws_refused_total", (double)srv->ws_refused[i], "reason",
                ws_refusal_names[i], NULL);
  prom_family(b, "tingshuo_ws_protocol_errors_total", "counter",
              "WebSockets the server closed because the client broke RFC 6455 or sent binary "
              "or oversized messages, by reason.");
  for (int i = 0; i < WS_VIOLATION_COUNT; i++)
    prom_sample(b, "tingshuo_ws_protocol_errors_total", (double)srv->ws_violations[i], "reason",
                ws_violation_names[i], NULL);
  counter(b, "tingshuo_http_accept_pauses_total", "Times accepting paused because accept() "
          "ran out of file descriptors or memory.", (double)srv->accept_pauses);
  counter(b, "tingshuo_log_lines_suppressed_total", "Log lines not written: repeats, and lines "
          "over the per-thread rate.", (double)log_suppressed());
}
