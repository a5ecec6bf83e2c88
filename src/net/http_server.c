/*
 * HTTP, HTTPS and WebSocket server on libwebsockets, on the control loop.
 *
 * Why libwebsockets: it does HTTP/1.1, TLS, WebSocket framing and static
 * files correctly and can run on a libuv loop it does not own ("foreign
 * loop"), so the signaling, the REST API and the outbound HTTP client all
 * share one thread and need no locks.
 *
 * Layout: one lws context with explicit vhosts: "http" always, "https" when
 * configured, "metrics" when metrics_listen is set. Each vhost has a single
 * protocol, "tingshuo", that handles both the application's HTTP requests
 * (mounted at the handler's prefixes; on "metrics" at /) and the WebSocket
 * upgrade; lws binds an upgrade without Sec-WebSocket-Protocol to a vhost's
 * first protocol, which is this one. Upgrades to any path but /ws, or on the
 * metrics vhost, are refused. Everything else under / is a file from
 * web_root. What lws's file mount does not serve lands here unmounted: a
 * file it did not find (404), or a method it does not take (405; it takes
 * GET, HEAD and POST).
 *
 * Requests. lws's per-session data lives only as long as one transaction
 * (lws frees it when it rebinds the protocol or closes the connection), and
 * an application may answer a request long after the handler returned. So
 * the request is a separate object: the session points to it while the
 * connection waits for its answer, it points back to the connection, and
 * whichever side ends first cuts both links. A request whose client has
 * gone is then owned by the application alone; its answer frees it and
 * nothing is written. The answer itself moves into the session as a
 * `response` and is written when lws says the socket is writable: the
 * headers first, then the body in chunks of HTTP_CHUNK, from memory or
 * from a file, so a body of any size costs one chunk of buffer.
 *
 * Bodies: a request with a body is handed over when the body is complete.
 * Up to HTTP_REQ_BODY_MAX it is kept; up to HTTP_DISCARD_MAX it is read and
 * thrown away and the request answered 413, so the client reads the answer
 * on a healthy connection; anything larger, and a POST without a
 * Content-Length, is answered at once and the connection closed.
 *
 * WebSocket messages arrive in fragments; they are gathered into one buffer
 * (bounded by WS_MAX_MESSAGE) and handed over whole. Outgoing messages wait in
 * a per-connection queue until lws says the socket is writable; a peer that
 * stops reading is disconnected once its queue passes a bound, so one slow
 * browser cannot make the server grow without limit.
 *
 * Connections. The listening sockets are ours, not lws's: lws 4.1 retries a
 * failing accept() at once, forever, so running out of file descriptors
 * made it spin. We accept, count and admit each connection, then hand it to
 * lws (adoption). That gives one place for the limits: connections at once
 * (below the file-descriptor limit), connections per client address, a
 * pause in accepting when accept() fails for want of resources. Each
 * listener gets an lws context of its own, because lws picks a vhost for a
 * request by its Host header among the vhosts of one context, and adopted
 * sockets share one (non-)port: one context per listener means a Host
 * header can never move a request to another listener's vhost.
 *
 * On plain HTTP the first request's head is read here, before lws sees the
 * connection: a client that trickles its headers (slowloris) holds a few
 * bytes of ours and none of lws's header buffers, is cut off at
 * http_header_timeout_ms, and a request line or head that is too long is
 * answered 414 or 431 instead of lws's silent close. lws then gets the
 * socket with the bytes read so far. On HTTPS (TLS is lws's) the same
 * deadline is kept by a timer and lws's header buffers are sized to the
 * connection limit.
 *
 * WebSocket upgrades are checked before lws answers them: the path, the
 * protocol version, the Origin (cross-site WebSocket hijacking and DNS
 * rebinding), and the WebSocket limits overall and per address; a refusal
 * is a short HTTP answer with its status.
 */
#include "net/http_server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/num.h"
#include "core/prom.h"
#include "net/tls_files.h"

#ifndef TINGSHUO_WEB_ROOT
#define TINGSHUO_WEB_ROOT "web"
#endif

#define WS_MAX_QUEUED (1024 * 1024)
#define HTTP_CHUNK (16 * 1024)
#define HTTP_DISCARD_MAX (1024 * 1024)
#define HTTP_HEADER_MAX 8192 /* longest request header value kept */

#define ACCEPT_BATCH 64          /* connections accepted per wake-up, for fairness */
#define ACCEPT_PAUSE_MIN_MS 50   /* first pause after accept() ran out of resources */
#define ACCEPT_PAUSE_MAX_MS 1000
#define LINGER_MS 1000           /* reading what a refused client still sends */
#define PEER_BUCKETS 1024
#define FD_RESERVE 64            /* descriptors kept for the process itself */
#define FD_PER_CALL 4            /* a call's AI-service connections and recording */
#define HEADER_POOL_MAX 4096     /* lws header buffers at most, per listener */
#define FD_RAISE_TO 65536        /* the soft descriptor limit is raised this far at most */
#define HTTP_CONNS_PER_IP 32     /* connections per address that are not WebSockets */

enum refusal { /* why a connection or an upgrade was turned away; metric labels */
  REFUSE_CAPACITY, REFUSE_PER_IP, REFUSE_HEADER_TIMEOUT, REFUSE_URI_TOO_LONG,
  REFUSE_HEADERS_TOO_LARGE, REFUSE_ACCEPT_ERROR, REFUSE_COUNT
};
static const char *const refusal_names[REFUSE_COUNT] = {
    "capacity", "per_ip", "header_timeout", "uri_too_long", "headers_too_large",
    "accept_error"};

enum ws_refusal {
  WS_REFUSE_PATH, WS_REFUSE_VERSION, WS_REFUSE_ORIGIN, WS_REFUSE_CAPACITY, WS_REFUSE_PER_IP,
  WS_REFUSE_COUNT
};
static const char *const ws_refusal_names[WS_REFUSE_COUNT] = {"path", "version", "origin",
                                                               "capacity", "per_ip"};

struct out_msg {
  struct out_msg *next;
  size_t len;
  unsigned char data[]; /* LWS_PRE bytes of headroom, then the text */
};

struct ws_conn {
  struct http_server *srv;
  struct lws *wsi;
  void *data;
  char peer[64];
  char user_agent[256]; /* of the upgrade request, for call records; "" when none */
  char *in;       /* message being gathered */
  size_t in_len;
  struct out_msg *head, *tail;
  size_t queued;
  int closing;
};

struct http_req {
  struct lws *wsi;         /* NULL once the client has gone */
  struct session *session; /* NULL once the client has gone */
  enum http_method method;
  char method_name[16];
  enum http_listener listener;
  int tls;
  int handed_over;         /* the application has it */
  int verdict;             /* refused once its body has been read (405, 413), or 0 */
  const char *verdict_why, *verdict_headers;
  char *path;
  char **args;             /* "name=value", decoded */
  int nargs;
  char *hdr[HTTP_H_COUNT];
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
  int headers_sent;
  char *mem;               /* the body in memory, or NULL */
  int fd;                  /* the body in a file, or -1 */
  uint64_t length;         /* Content-Length */
  uint64_t off, end;       /* next byte of the body to send, one past the last */
  unsigned char buf[LWS_PRE + HTTP_CHUNK];
};

/* lws per-session data: an HTTP transaction or a WebSocket connection. */
struct session {
  struct ws_conn *ws;
  struct http_req *req;    /* gathering its body, or waiting for its answer */
  struct response *resp;   /* being written */
  int discarding;          /* answered before its body came: read and ignore the rest */
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
  struct lws_context *ctx; /* cleared by lws when its teardown is done */
  struct lws_vhost *vh;
  uv_poll_t poll;
  int fd;                  /* -1 when not listening */
  int polling;
  char host[260];          /* as configured, lower-case, IPv6 in brackets */
  int port;                /* as bound */
};

/*
 * Watches a plain-HTTP connection until its first request's head is in.
 * The bytes stay in the kernel: each look is a MSG_PEEK into the server's
 * scratch buffer, and SO_RCVLOWAT makes the socket readable again only
 * when more has come. So a connection trickling its head costs one small
 * struct, and lws later reads everything itself.
 */
struct prereader {
  uv_poll_t poll;
  struct conn *conn;       /* NULL once the connection no longer needs it */
  int lingering;           /* answered and refused: reading what still comes, then closing */
};

enum conn_list { LIST_NONE, LIST_WAITING, LIST_LINGERING };

/* One accepted TCP connection, from accept() to lws's last word on it. */
struct conn {
  struct http_server *srv;
  struct listener *l;
  struct peer *peer;
  struct lws *wsi;         /* once lws has it */
  struct prereader *pre;   /* while its first head is read here */
  struct conn *prev, *next; /* in a deadline list while `listed` */
  enum conn_list listed;   /* which deadline list it is in */
  uint64_t deadline;
  int fd;
  int exempt;              /* loopback, not limited per address */
  int ws;                  /* counted as a WebSocket */
  int busy;                /* an HTTP/1.1 request is waiting for its answer */
  int pipelined;           /* a request came while busy: close after the answer */
  struct http_req *held;   /* the busy request while lws rebinds its session */
  struct response *held_resp;
  int destroyed;           /* lws let go of it during adoption */
};

struct http_server {
  struct listener l[LISTEN_COUNT];
  struct lws_vhost *http_vh, *https_vh, *metrics_vh;
  struct http_handlers h;
  struct lws_protocols protocols[2];
  struct lws_http_mount mounts[HTTP_MAX_MOUNTS + 1];
  struct lws_http_mount metrics_mount;
  char web_root[1024];
  char cert[1100], key[1100];
  char url[300], https_url[300], metrics_url[300];
  void *loops[1];
  uv_loop_t *loop;
  int stopping;
  int handles; /* the timers below are initialised */
  int in_lws;  /* inside a callback from lws */

  /* limits (see the top) */
  int max_conns, max_ws, max_ws_per_ip, conns_per_ip, limit_loopback;
  int header_timeout_ms, header_pool;
  char allowed_origins[1024];
  /* state */
  struct peer *peers[PEER_BUCKETS];
  int n_conns, n_ws;
  struct conn *waiting_head, *waiting_tail;     /* first head due, by deadline */
  struct conn *linger_head, *linger_tail;       /* refused, closing, by deadline */
  uv_timer_t sweep, resume;
  int accept_pause_ms;                          /* 0 while accepting */
  struct conn *adopting;                        /* being handed to lws right now */
  char scratch[HTTP_HEAD_MAX];                  /* what prereaders peek at */
  /* counters for /metrics */
  unsigned long long refused[REFUSE_COUNT], ws_refused[WS_REFUSE_COUNT];
  unsigned long long accepted, accept_pauses;
};

static struct conn *conn_of(struct lws *wsi);
static void wsi_kill(struct lws *wsi);
static void resp_send_direct(struct response *p, struct lws *wsi);
static void conn_become_ws(struct conn *c);
static void conn_unlist(struct conn *c);

/* ---- WebSocket ---- */

static void ws_free_queue(struct ws_conn *c) {
  while (c->head) {
    struct out_msg *m = c->head;
    c->head = m->next;
    free(m);
  }
  c->tail = NULL;
  c->queued = 0;
}

static int ws_gather(struct ws_conn *c, const void *in, size_t len) {
  if (c->in_len + len > WS_MAX_MESSAGE) {
    log_warn("ws", "%s: message over %d bytes, closing", c->peer, WS_MAX_MESSAGE);
    lws_close_reason(c->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
    return -1;
  }
  char *grown = realloc(c->in, c->in_len + len + 1);
  if (!grown) return -1;
  c->in = grown;
  memcpy(c->in + c->in_len, in, len);
  c->in_len += len;
  c->in[c->in_len] = '\0';
  return 0;
}

static int ws_receive(struct ws_conn *c, const void *in, size_t len) {
  if (lws_frame_is_binary(c->wsi)) {
    lws_close_reason(c->wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                     (unsigned char *)"text only", 9);
    return -1;
  }
  if (ws_gather(c, in, len)) return -1;
  if (!lws_is_final_fragment(c->wsi) || lws_remaining_packet_payload(c->wsi)) return 0;
  if (c->srv->h.ws_message) c->srv->h.ws_message(c->srv->h.user, c, c->in, c->in_len);
  free(c->in);
  c->in = NULL;
  c->in_len = 0;
  return 0;
}

static int ws_writable(struct ws_conn *c) {
  struct out_msg *m = c->head;
  if (!m) return c->closing ? -1 : 0;
  if (lws_write(c->wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT) < (int)m->len) return -1;
  c->head = m->next;
  if (!c->head) c->tail = NULL;
  c->queued -= m->len;
  free(m);
  if (c->head || c->closing) lws_callback_on_writable(c->wsi);
  return 0;
}

static int ws_established(struct http_server *srv, struct session *s, struct lws *wsi) {
  struct ws_conn *c = calloc(1, sizeof *c);
  if (!c) return -1;
  c->srv = srv;
  c->wsi = wsi;
  lws_get_peer_simple(wsi, c->peer, sizeof c->peer);
  if (lws_hdr_copy(wsi, c->user_agent, sizeof c->user_agent, WSI_TOKEN_HTTP_USER_AGENT) < 0)
    c->user_agent[0] = '\0';
  s->ws = c;
  conn_become_ws(conn_of(wsi));
  if (srv->h.ws_open) srv->h.ws_open(srv->h.user, c);
  return 0;
}

static void ws_closed(struct http_server *srv, struct session *s) {
  struct ws_conn *c = s->ws;
  if (!c) return;
  if (srv->h.ws_close) srv->h.ws_close(srv->h.user, c);
  ws_free_queue(c);
  free(c->in);
  free(c);
  s->ws = NULL;
}

int ws_conn_send(struct ws_conn *c, const char *text, size_t len) {
  if (c->closing) return -EPIPE;
  if (c->queued + len > WS_MAX_QUEUED) {
    log_warn("ws", "%s: not reading, %zu bytes queued; closing", c->peer, c->queued);
    ws_conn_close(c);
    return -ENOBUFS;
  }
  struct out_msg *m = malloc(sizeof *m + LWS_PRE + len);
  if (!m) return -ENOMEM;
  m->next = NULL;
  m->len = len;
  memcpy(m->data + LWS_PRE, text, len);
  if (c->tail) c->tail->next = m;
  else c->head = m;
  c->tail = m;
  c->queued += len;
  lws_callback_on_writable(c->wsi);
  return 0;
}

void ws_conn_close(struct ws_conn *c) {
  if (c->closing) return;
  c->closing = 1;
  lws_close_reason(c->wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
  lws_callback_on_writable(c->wsi);
}

void ws_conn_set_data(struct ws_conn *c, void *data) { c->data = data; }
void *ws_conn_data(const struct ws_conn *c) { return c->data; }
const char *ws_conn_peer(const struct ws_conn *c) { return c->peer; }
const char *ws_conn_user_agent(const struct ws_conn *c) {
  return c->user_agent[0] ? c->user_agent : NULL;
}

/* ---- requests ---- */

static void req_free(struct http_req *r) {
  if (!r) return;
  free(r->path);
  for (int i = 0; i < r->nargs; i++) free(r->args[i]);
  free(r->args);
  for (int i = 0; i < HTTP_H_COUNT; i++) free(r->hdr[i]);
  free(r->body);
  free(r);
}

/* Cuts the links between a request and its connection. */
static void req_detach(struct http_req *r) {
  if (r->session) r->session->req = NULL;
  r->session = NULL;
  r->wsi = NULL;
}

static const enum lws_token_indexes header_tokens[HTTP_H_COUNT] = {
    [HTTP_H_AUTHORIZATION] = WSI_TOKEN_HTTP_AUTHORIZATION,
    [HTTP_H_COOKIE] = WSI_TOKEN_HTTP_COOKIE,
    [HTTP_H_RANGE] = WSI_TOKEN_HTTP_RANGE,
    [HTTP_H_ORIGIN] = WSI_TOKEN_ORIGIN,
    [HTTP_H_HOST] = WSI_TOKEN_HOST,
    [HTTP_H_CONTENT_TYPE] = WSI_TOKEN_HTTP_CONTENT_TYPE,
    [HTTP_H_ACCEPT_LANGUAGE] = WSI_TOKEN_HTTP_ACCEPT_LANGUAGE,
    [HTTP_H_X_FORWARDED_FOR] = WSI_TOKEN_X_FORWARDED_FOR,
    [HTTP_H_X_REAL_IP] = WSI_TOKEN_HTTP_X_REAL_IP,
    [HTTP_H_FORWARDED] = WSI_TOKEN_COUNT, /* not one of lws's tokens: a custom header */
};

/* A header's whole value, malloc'd; NULL when absent or absurdly long. */
static char *copy_header(struct lws *wsi, enum lws_token_indexes tok) {
  static const char custom[] = "forwarded:"; /* lws keeps unknown names lower-case */
  int is_custom = tok == WSI_TOKEN_COUNT;
  int n = is_custom ? lws_hdr_custom_length(wsi, custom, (int)sizeof custom - 1)
                    : lws_hdr_total_length(wsi, tok);
  if (n < 0 || (n == 0 && !is_custom) || n > HTTP_HEADER_MAX) return NULL;
  char *v = malloc((size_t)n + 1);
  int got = !v ? -1
            : is_custom ? lws_hdr_custom_copy(wsi, v, n + 1, custom, (int)sizeof custom - 1)
                        : lws_hdr_copy(wsi, v, n + 1, tok);
  if (got < 0) {
    free(v);
    v = NULL;
  }
  return v;
}

static int copy_args(struct http_req *r, struct lws *wsi) {
  int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
  if (total <= 0) return 0;
  char *frag = malloc((size_t)total + 1);
  if (!frag) return -ENOMEM;
  int rc = 0;
  for (int i = 0; lws_hdr_copy_fragment(wsi, frag, total + 1, WSI_TOKEN_HTTP_URI_ARGS, i) >= 0;
       i++) {
    char **grown = realloc(r->args, sizeof *grown * (size_t)(r->nargs + 1));
    char *arg = grown ? strdup(frag) : NULL;
    if (grown) r->args = grown;
    if (!arg) {
      rc = -ENOMEM;
      break;
    }
    r->args[r->nargs++] = arg;
  }
  free(frag);
  return rc;
}

static enum http_method method_of(struct lws *wsi, int meth, char *name, size_t cap) {
  static const struct {
    int meth;
    const char *name;
    enum http_method m;
  } known[] = {{LWSHUMETH_GET, "GET", HTTP_GET},         {LWSHUMETH_POST, "POST", HTTP_POST},
               {LWSHUMETH_OPTIONS, "OPTIONS", HTTP_OTHER}, {LWSHUMETH_PUT, "PUT", HTTP_OTHER},
               {LWSHUMETH_PATCH, "PATCH", HTTP_OTHER},   {LWSHUMETH_DELETE, "DELETE", HTTP_DELETE},
               {LWSHUMETH_CONNECT, "CONNECT", HTTP_OTHER}, {LWSHUMETH_HEAD, "HEAD", HTTP_HEAD}};
  if (meth == LWSHUMETH_COLON_PATH) {
    /* HTTP/2 names the method in a pseudo-header. */
    if (lws_hdr_copy(wsi, name, (int)cap, WSI_TOKEN_HTTP_COLON_METHOD) <= 0)
      snprintf(name, cap, "?");
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
      if (strcmp(known[i].name, name) == 0) return known[i].m;
    return HTTP_OTHER;
  }
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    if (known[i].meth == meth) {
      snprintf(name, cap, "%s", known[i].name);
      return known[i].m;
    }
  }
  snprintf(name, cap, "?");
  return HTTP_OTHER;
}

/* The TCP peer, from the socket itself: no header can claim another address. */
static void peer_address(struct lws *wsi, char *out, size_t cap) {
  struct sockaddr_storage sa;
  socklen_t len = sizeof sa;
  snprintf(out, cap, "unknown");
  lws_sockfd_type fd = lws_get_socket_fd(lws_get_network_wsi(wsi));
  if (fd < 0 || getpeername(fd, (struct sockaddr *)&sa, &len)) return;
  if (sa.ss_family == AF_INET)
    inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, out, (socklen_t)cap);
  else if (sa.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, out, (socklen_t)cap);
}

static struct http_req *req_new(struct http_server *srv, struct lws *wsi) {
  char *uri = NULL;
  int uri_len = 0;
  int meth = lws_http_get_uri_and_method(wsi, &uri, &uri_len);
  if (meth < 0 || !uri || uri_len <= 0) return NULL;
  struct http_req *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->wsi = wsi;
  r->method = method_of(wsi, meth, r->method_name, sizeof r->method_name);
  struct lws_vhost *vh = lws_get_vhost(wsi);
  r->listener = vh == srv->metrics_vh ? HTTP_LISTENER_METRICS : HTTP_LISTENER_MAIN;
  r->tls = vh == srv->https_vh;
  r->path = strndup(uri, (size_t)uri_len);
  for (int i = 0; i < HTTP_H_COUNT; i++) r->hdr[i] = copy_header(wsi, header_tokens[i]);
  r->if_range = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_IF_RANGE) > 0;
  peer_address(wsi, r->peer, sizeof r->peer);
  if (!r->path || copy_args(r, wsi)) {
    req_free(r);
    return NULL;
  }
  return r;
}

enum http_method http_req_method(const struct http_req *r) { return r->method; }
const char *http_req_method_name(const struct http_req *r) { return r->method_name; }
const char *http_req_path(const struct http_req *r) { return r->path; }
const char *http_req_header(const struct http_req *r, enum http_header h) {
  return h >= 0 && h < HTTP_H_COUNT ? r->hdr[h] : NULL;
}
const char *http_req_peer(const struct http_req *r) { return r->peer; }
int http_req_tls(const struct http_req *r) { return r->tls; }
enum http_listener http_req_listener(const struct http_req *r) { return r->listener; }
int http_req_gone(const struct http_req *r) { return r->wsi == NULL; }

const char *http_req_body(const struct http_req *r, size_t *len) {
  if (len) *len = r->body_len;
  return r->body ? r->body : "";
}

const char *http_req_query(const struct http_req *r, const char *name) {
  size_t n = strlen(name);
  for (int i = 0; i < r->nargs; i++) {
    const char *a = r->args[i];
    if (strncmp(a, name, n) == 0 && (a[n] == '=' || a[n] == '\0')) return a[n] ? a + n + 1 : "";
  }
  return NULL;
}

/* ---- responses ---- */

static int is_h2_stream(struct lws *wsi) { return lws_get_network_wsi(wsi) != wsi; }

/*
 * HTTP/1.1 pipelining: the first request is answered, then the connection
 * is closed. lws parses whatever follows a request as the next request as
 * soon as it reads it, even while the first is unanswered, and tears the
 * first one's session down to do so; stopping reading meanwhile is no way
 * out, as lws 4.1 then never reports the socket writable either. So an
 * HTTP/1.1 connection is marked busy from a request's headers to the end of
 * its answer. When lws drops the session of a busy connection, the request
 * and its answer are held on the connection; the request that follows is
 * not served, the held one is put back in its place, and its answer goes
 * out with "Connection: close" (the client sends the rest again on a new
 * connection, as RFC 9112 section 9.3.2 expects). That answer is written
 * straight to the socket, as far as the socket takes it at once: while lws
 * holds the request that followed it never reports the socket writable.
 * Browsers and common clients never pipeline. HTTP/2 streams are
 * independent and never busy. Static files are lws's own business.
 */
static void set_busy(struct lws *wsi, int busy) {
  struct conn *c = lws_get_network_wsi(wsi) == wsi ? conn_of(wsi) : NULL;
  if (c) c->busy = busy;
}

static int is_busy(struct lws *wsi) {
  struct conn *c = lws_get_network_wsi(wsi) == wsi ? conn_of(wsi) : NULL;
  return c && c->busy;
}

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
 * the connection is closed, so the client is not left waiting.
 */
static int submit(struct http_req *r, struct response *p) {
  struct lws *wsi = r->wsi;
  struct session *s = r->session;
  int head = r->method == HTTP_HEAD;
  struct conn *c = wsi && lws_get_network_wsi(wsi) == wsi ? conn_of(wsi) : NULL;
  if (c && c->held == r) c->held = NULL; /* held across a pipelined request */
  req_detach(r);
  req_free(r);
  if (!wsi) {
    resp_free(p);
    return -ENOTCONN;
  }
  if (!p) {
    wsi_kill(wsi);
    return -ENOMEM;
  }
  if (head) p->end = p->off;
  if (!s) { /* its session comes back with the next request (see pipelining) */
    if (!c || c->held_resp) {
      resp_free(p);
      wsi_kill(wsi);
      return -ENOTCONN;
    }
    c->held_resp = p;
    return 0;
  }
  if (c && c->pipelined) { /* see pipelining */
    resp_send_direct(p, wsi);
    resp_free(p);
    return 0;
  }
  resp_free(s->resp);
  s->resp = p;
  lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, HTTP_IDLE_TIMEOUT_S);
  lws_callback_on_writable(wsi);
  return 0;
}

int http_reply_take(struct http_req *r, int status, const char *type, const char *headers,
                    void *body, size_t len) {
  struct response *p = r->wsi ? resp_new(status, type, headers) : NULL;
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
  if (len && r->wsi) {
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
  if (!r->wsi) return submit(r, NULL), 0;
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

/* lws wants header names lower-case (HTTP/2 requires it) and ending in ':'. */
static int add_header(struct lws *wsi, const char *name, size_t nlen, const char *value,
                      size_t vlen, unsigned char **q, unsigned char *end) {
  char lname[64];
  if (nlen == 0 || nlen + 2 > sizeof lname) return -1;
  for (size_t i = 0; i < nlen; i++) lname[i] = (char)tolower((unsigned char)name[i]);
  lname[nlen] = ':';
  lname[nlen + 1] = '\0';
  return lws_add_http_header_by_name(wsi, (const unsigned char *)lname,
                                     (const unsigned char *)value, (int)vlen, q, end)
             ? -1
             : 0;
}

/* The application's "Name: value\r\n" lines; a line without a colon is skipped. */
static int add_extra_headers(struct lws *wsi, const char *lines, unsigned char **q,
                             unsigned char *end) {
  while (lines && *lines) {
    size_t len = strcspn(lines, "\r\n");
    const char *colon = memchr(lines, ':', len);
    if (colon) {
      const char *v = colon + 1, *stop = lines + len;
      while (v < stop && (*v == ' ' || *v == '\t')) v++;
      if (add_header(wsi, lines, (size_t)(colon - lines), v, (size_t)(stop - v), q, end))
        return -1;
    }
    lines += len;
    lines += strspn(lines, "\r\n");
  }
  return 0;
}

static int resp_write_headers(struct response *p, struct lws *wsi) {
  unsigned char *start = p->buf + LWS_PRE, *q = start, *end = p->buf + sizeof p->buf;
  int mux = is_h2_stream(wsi);
  if (lws_add_http_common_headers(wsi, (unsigned)p->status, p->type, p->length, &q, end) ||
      (p->ranges && add_header(wsi, "accept-ranges", 13, "bytes", 5, &q, end)) ||
      (p->content_range[0] && add_header(wsi, "content-range", 13, p->content_range,
                                         strlen(p->content_range), &q, end)) ||
      (p->close_after && !mux && add_header(wsi, "connection", 10, "close", 5, &q, end)) ||
      add_extra_headers(wsi, p->headers, &q, end) || lws_finalize_http_header(wsi, &q, end)) {
    log_warn("http", "response headers do not fit in %d bytes", HTTP_CHUNK);
    return -1;
  }
  int flags = LWS_WRITE_HTTP_HEADERS;
  if (p->off == p->end) flags |= LWS_WRITE_H2_STREAM_END; /* no body follows */
  int n = (int)(q - start);
  if (lws_write(wsi, start, (size_t)n, (enum lws_write_protocol)flags) != n) return -1;
  p->headers_sent = 1;
  return 0;
}

static int resp_write_chunk(struct response *p, struct lws *wsi) {
  size_t n = p->end - p->off > HTTP_CHUNK ? HTTP_CHUNK : (size_t)(p->end - p->off);
  unsigned char *dst = p->buf + LWS_PRE;
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
  int last = p->off + n == p->end;
  if (lws_write(wsi, dst, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < (int)n) return -1;
  p->off += n;
  return 0;
}

/* One write per writable callback: the headers, then a chunk at a time. */
static int http_writable(struct session *s, struct lws *wsi) {
  struct response *p = s->resp;
  if (!p) return 0; /* the answer has not come yet */
  if (p->headers_sent ? resp_write_chunk(p, wsi) : resp_write_headers(p, wsi)) return -1;
  lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, HTTP_IDLE_TIMEOUT_S);
  if (p->off < p->end) {
    lws_callback_on_writable(wsi);
    return 0;
  }
  struct conn *c = conn_of(wsi);
  int close_after = p->close_after || (c && c->pipelined && lws_get_network_wsi(wsi) == wsi);
  resp_free(p);
  s->resp = NULL;
  if (close_after) return -1;
  set_busy(wsi, 0);
  /* This may free `s`: lws rebinds the protocol for the connection's next request. */
  return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- transactions ---- */

/*
 * lws drops a transaction's session when the next request on the
 * connection arrives, answered or not: a busy connection keeps the request
 * and its answer (see pipelining above).
 */
static void session_hold(struct session *s, struct lws *wsi) {
  struct conn *c = lws_get_network_wsi(wsi) == wsi ? conn_of(wsi) : NULL;
  if (!s || !c || !c->busy || (!s->req && !s->resp) || c->held || c->held_resp) return;
  c->held = s->req;
  c->held_resp = s->resp;
  if (c->held) c->held->session = NULL;
  s->req = NULL;
  s->resp = NULL;
}

static const char *status_text(int status);

static int send_some(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Writes `p` to the socket (see pipelining above) and has lws close the connection. */
static void resp_send_direct(struct response *p, struct lws *wsi) {
  int fd = lws_get_socket_fd(wsi);
  char head[2048];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %llu\r\n%s%s%s%s"
                   "connection: close\r\n%s\r\n",
                   p->status, status_text(p->status), p->type, (unsigned long long)p->length,
                   p->ranges ? "accept-ranges: bytes\r\n" : "",
                   p->content_range[0] ? "content-range: " : "", p->content_range,
                   p->content_range[0] ? "\r\n" : "", p->headers ? p->headers : "");
  int ok = fd >= 0 && n > 0 && (size_t)n < sizeof head && send_some(fd, head, (size_t)n) == 0;
  while (ok && p->off < p->end) {
    size_t len = p->end - p->off > HTTP_CHUNK ? HTTP_CHUNK : (size_t)(p->end - p->off);
    const void *src = p->mem ? (const void *)(p->mem + p->off) : p->buf;
    if (!p->mem) {
      ssize_t got = pread(p->fd, p->buf, len, (off_t)p->off);
      if (got <= 0) break;
      len = (size_t)got;
    }
    ok = send_some(fd, src, len) == 0;
    p->off += len;
  }
  wsi_kill(wsi);
}

/* The request that follows a busy one: the held one takes its place. */
static int session_pipelined(struct session *s, struct lws *wsi) {
  struct conn *c = conn_of(wsi);
  if (!c) return -1;
  c->pipelined = 1;
  if (c->held || c->held_resp) {
    if (s->req || s->resp) return -1; /* cannot happen: lws gave a fresh session */
    s->req = c->held;
    s->resp = c->held_resp;
    if (s->req) s->req->session = s;
    c->held = NULL;
    c->held_resp = NULL;
  }
  if (s->resp) {
    resp_send_direct(s->resp, wsi);
    resp_free(s->resp);
    s->resp = NULL;
  }
  return 0;
}

static void session_release(struct session *s) {
  if (!s) return;
  struct http_req *r = s->req;
  if (r) {
    req_detach(r);
    if (!r->handed_over) req_free(r); /* the application never saw it */
  }
  resp_free(s->resp);
  s->resp = NULL;
}

/* Below one of the application's prefixes, with lws's own matching rule. */
static int mounted(const struct http_server *srv, const char *path) {
  for (int i = 0; srv->h.mounts[i]; i++) {
    size_t n = strlen(srv->h.mounts[i]);
    if (strncmp(path, srv->h.mounts[i], n) == 0 && (path[n] == '\0' || path[n] == '/')) return 1;
  }
  return 0;
}

/* -1: absent; -2: not a number; else the length. */
static long long content_length(struct lws *wsi) {
  char v[32];
  if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0) return -1;
  int len = lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_HTTP_CONTENT_LENGTH);
  int64_t n;
  if (len <= 0 || num_parse_i64(v, (size_t)len, 0, INT64_MAX, &n)) return -2;
  return n;
}

static int hand_over(struct http_server *srv, struct http_req *r) {
  r->handed_over = 1;
  lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, HTTP_IDLE_TIMEOUT_S);
  if (srv->h.request) srv->h.request(srv->h.request_user, r); /* `r` may be gone after this */
  else answer_error(r, 404, "not found", NULL, 0);
  return 0;
}

/*
 * A request's headers are in. What can be refused without reading a body
 * is refused now; a body to be read is read first (see the top).
 */
static int http_begin(struct http_server *srv, struct session *s, struct lws *wsi) {
  if (is_busy(wsi)) {
    log_debug("http", "a pipelined request: answering the first, then closing");
    return session_pipelined(s, wsi);
  }
  set_busy(wsi, 1);
  struct http_req *r = req_new(srv, wsi);
  if (!r) return -1;
  r->session = s;
  s->req = r;
  long long cl = content_length(wsi);
  if (cl == -2) return answer_error(r, 400, "bad Content-Length", NULL, 1), 0;
  if (cl == -1 && r->method == HTTP_POST)
    return answer_error(r, 411, "a POST needs a Content-Length", NULL, 1), 0;
  if (cl > HTTP_DISCARD_MAX) return answer_error(r, 413, "request body too large", NULL, 1), 0;
  if (r->listener == HTTP_LISTENER_MAIN && !mounted(srv, r->path)) {
    /* Not the application's: a GET or HEAD here is a file lws did not find. */
    int get = r->method == HTTP_GET || r->method == HTTP_HEAD;
    r->verdict = get ? 404 : 405;
    r->verdict_why = get ? "not found" : "method not allowed";
    r->verdict_headers = get ? NULL : "Allow: GET, HEAD\r\n";
  } else if (cl > HTTP_REQ_BODY_MAX) {
    r->verdict = 413;
    r->verdict_why = "request body too large";
  } else if (cl > 0) {
    r->body = malloc((size_t)cl + 1);
    if (!r->body) return -1;
    r->body[0] = '\0';
    r->body_cap = (size_t)cl;
  }
  if (cl > 0 || r->method == HTTP_POST) return 0; /* LWS_CALLBACK_HTTP_BODY_COMPLETION goes on */
  if (r->verdict) return answer_error(r, r->verdict, r->verdict_why, r->verdict_headers, 0), 0;
  return hand_over(srv, r);
}

static int http_body(struct session *s, const void *in, size_t len) {
  struct http_req *r = s->req;
  if (!r || !r->body || r->handed_over) return 0; /* answered already, or being discarded */
  if (len > r->body_cap - r->body_len) return -1;  /* more than Content-Length said */
  memcpy(r->body + r->body_len, in, len);
  r->body_len += len;
  r->body[r->body_len] = '\0';
  return 0;
}

static int http_body_done(struct http_server *srv, struct session *s) {
  struct http_req *r = s->req;
  if (!r || r->handed_over) return 0;
  if (r->verdict) return answer_error(r, r->verdict, r->verdict_why, r->verdict_headers, 0), 0;
  return hand_over(srv, r);
}

/* ---- client addresses ---- */

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

/* ---- connections ---- */

static void on_sweep(uv_timer_t *t);

/* The sweep timer runs when the earliest deadline of either list is due. */
static void sweep_arm(struct http_server *srv) {
  if (srv->stopping || !srv->handles) return;
  uint64_t due = UINT64_MAX;
  if (srv->waiting_head) due = srv->waiting_head->deadline;
  if (srv->linger_head && srv->linger_head->deadline < due) due = srv->linger_head->deadline;
  if (due == UINT64_MAX) {
    uv_timer_stop(&srv->sweep);
    return;
  }
  uint64_t now = uv_now(srv->loop);
  uv_timer_start(&srv->sweep, on_sweep, due > now ? due - now : 0, 0);
}

static void conn_unlist(struct conn *c) {
  if (!c || !c->listed) return;
  struct http_server *srv = c->srv;
  struct conn **head = c->listed == LIST_WAITING ? &srv->waiting_head : &srv->linger_head;
  struct conn **tail = c->listed == LIST_WAITING ? &srv->waiting_tail : &srv->linger_tail;
  if (c->prev) c->prev->next = c->next;
  else *head = c->next;
  if (c->next) c->next->prev = c->prev;
  else *tail = c->prev;
  c->prev = c->next = NULL;
  c->listed = LIST_NONE;
}

/* Each list holds one kind of deadline (now + a constant), so appending keeps it sorted. */
static void conn_list(struct conn *c, enum conn_list which, uint64_t deadline) {
  struct http_server *srv = c->srv;
  conn_unlist(c);
  struct conn **head = which == LIST_WAITING ? &srv->waiting_head : &srv->linger_head;
  struct conn **tail = which == LIST_WAITING ? &srv->waiting_tail : &srv->linger_tail;
  c->deadline = deadline;
  c->listed = which;
  c->prev = *tail;
  if (*tail) (*tail)->next = c;
  else *head = c;
  *tail = c;
  if (*head == c) sweep_arm(srv);
}

static void pre_closed(uv_handle_t *h) { free(h->data); }

static void pre_close(struct conn *c) {
  struct prereader *p = c->pre;
  if (!p) return;
  c->pre = NULL;
  p->conn = NULL;
  uv_close((uv_handle_t *)&p->poll, pre_closed); /* stops polling now, frees later */
}

/* Undoes what admitting `c` counted and frees it; the socket is the caller's business. */
static void conn_free(struct conn *c) {
  struct http_server *srv = c->srv;
  conn_unlist(c);
  pre_close(c);
  if (c->held) { /* its client is gone: the answer, if it comes, is dropped */
    c->held->wsi = NULL;
    c->held->session = NULL;
    if (!c->held->handed_over) req_free(c->held);
  }
  resp_free(c->held_resp);
  if (c->ws) {
    c->peer->ws--;
    srv->n_ws--;
  } else {
    c->peer->conns--;
  }
  peer_put(srv, c->peer);
  srv->n_conns--;
  free(c);
}

/* A connection lws never had (or has let go of): close the socket ourselves. */
static void conn_drop(struct conn *c) {
  int fd = c->fd;
  conn_free(c);
  close(fd);
}

static struct conn *conn_of(struct lws *wsi) {
  struct lws *nwsi = lws_get_network_wsi(wsi);
  struct conn *c = nwsi ? lws_get_opaque_user_data(nwsi) : NULL;
  if (c || !nwsi) return c;
  /* Adopting with a read buffer serves the request before lws returns the wsi. */
  struct lws_vhost *vh = lws_get_vhost(nwsi);
  struct http_server *srv = vh ? lws_get_vhost_user(vh) : NULL;
  if (srv && srv->adopting && srv->adopting->wsi == nwsi) {
    lws_set_opaque_user_data(nwsi, srv->adopting);
    return srv->adopting;
  }
  return NULL;
}

static void conn_become_ws(struct conn *c) {
  if (!c || c->ws) return;
  c->ws = 1;
  c->peer->conns--;
  c->peer->ws++;
  c->srv->n_ws++;
}

/* lws has the connection now. */
static void conn_adopt(struct conn *c) {
  struct http_server *srv = c->srv;
  pre_close(c); /* libuv watches an fd once: ours stops before lws's starts */
  lws_adopt_desc_t d = {.vh = c->l->vh,
                        .type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | LWS_ADOPT_ALLOW_SSL,
                        .opaque = c};
  d.fd.sockfd = c->fd;
  srv->adopting = c;
  struct lws *wsi = lws_adopt_descriptor_vhost_via_info(&d);
  srv->adopting = NULL;
  if (c->destroyed || !c->wsi) { /* lws closed the socket: refused, or done already */
    conn_free(c);
    return;
  }
  if (wsi) lws_set_opaque_user_data(wsi, c);
}

static const char *status_text(int status) {
  switch (status) {
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
  case 503: return "Service Unavailable";
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

/*
 * Refuses a connection whose head is being read here: the answer goes out,
 * the sending side is shut, and what the client still sends is read and
 * dropped for LINGER_MS so that closing does not reset the connection
 * before the client has read the answer.
 */
static void pre_refuse(struct conn *c, int status, const char *why, enum refusal count) {
  struct http_server *srv = c->srv;
  srv->refused[count]++;
  char out[512];
  int n = format_refusal(out, sizeof out, status, why, NULL);
  if (n > 0) {
    ssize_t w = send(c->fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w; /* a client that cannot take 300 bytes gets nothing */
  }
  shutdown(c->fd, SHUT_WR);
  int one = 1;
  setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
  c->pre->lingering = 1;
  conn_list(c, LIST_LINGERING, uv_now(srv->loop) + LINGER_MS);
}

/*
 * Where the first request's head stands: 0 incomplete, -1 complete, or
 * the status to refuse it with. Only the sizes are judged here; lws parses.
 */
static int head_scan(const char *b, size_t len) {
  const char *nl = memchr(b, '\n', len);
  size_t line = nl ? (size_t)(nl - b) : len;
  if (line > HTTP_URI_MAX + 24) return 414; /* method, target, version */
  if (!nl) return 0;
  const char *sp = memchr(b, ' ', line);
  if (sp) {
    const char *target = sp + 1, *sp2 = memchr(target, ' ', line - (size_t)(target - b));
    size_t tlen = sp2 ? (size_t)(sp2 - target) : line - (size_t)(target - b);
    if (tlen > HTTP_URI_MAX) return 414;
  }
  for (const char *p = nl; p; p = memchr(p + 1, '\n', len - (size_t)(p + 1 - b))) {
    const char *q = p + 1;
    if (q < b + len && *q == '\r') q++;
    if (q < b + len && *q == '\n') return -1; /* a blank line ends the head */
    if (q >= b + len) break;
  }
  return len >= HTTP_HEAD_MAX ? 431 : 0;
}

static void pre_linger(struct conn *c) {
  char sink[4096];
  for (;;) {
    ssize_t n = recv(c->fd, sink, sizeof sink, 0);
    if (n > 0) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    conn_drop(c); /* end of stream or error: done */
    return;
  }
}

static void on_pre_readable(uv_poll_t *h, int status, int events) {
  struct prereader *p = h->data;
  struct conn *c = p->conn;
  if (!c) return;
  if (status < 0) return conn_drop(c);
  if (p->lingering) return pre_linger(c);
  /* A peek does not see the end of the stream while bytes wait before it. */
  int hung_up = (events & UV_DISCONNECT) != 0;
  char *buf = c->srv->scratch;
  ssize_t n = recv(c->fd, buf, HTTP_HEAD_MAX, MSG_PEEK);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) return conn_drop(c);
  int verdict = head_scan(buf, (size_t)n);
  if (verdict == 414) return pre_refuse(c, 414, "request line too long", REFUSE_URI_TOO_LONG);
  if (verdict == 431)
    return pre_refuse(c, 431, "request headers too large", REFUSE_HEADERS_TOO_LARGE);
  if (verdict == 0 && hung_up) return conn_drop(c); /* gone before finishing its head */
  int lowat = verdict < 0 ? 1 : (int)n + 1; /* incomplete: wake when more than this is in */
  if (setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat)) return conn_drop(c);
  if (verdict < 0) {
    conn_unlist(c);
    conn_adopt(c);
  }
}

static int pre_start(struct conn *c) {
  struct prereader *p = calloc(1, sizeof *p);
  if (!p) return -ENOMEM;
  int rc = uv_poll_init(c->srv->loop, &p->poll, c->fd);
  if (rc) {
    free(p);
    return rc;
  }
  p->poll.data = p;
  p->conn = c;
  c->pre = p;
  return uv_poll_start(&p->poll, UV_READABLE | UV_DISCONNECT, on_pre_readable);
}

static void on_sweep(uv_timer_t *t) {
  struct http_server *srv = t->data;
  uint64_t now = uv_now(srv->loop);
  while (srv->linger_head && srv->linger_head->deadline <= now) conn_drop(srv->linger_head);
  while (srv->waiting_head && srv->waiting_head->deadline <= now) {
    struct conn *c = srv->waiting_head;
    conn_unlist(c);
    if (c->pre) {
      pre_refuse(c, 408, "request headers took too long", REFUSE_HEADER_TIMEOUT);
    } else if (c->wsi) {
      srv->refused[REFUSE_HEADER_TIMEOUT]++;
      wsi_kill(c->wsi); /* may free c */
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

static void conn_admit(struct listener *l, int fd, const struct sockaddr_storage *sa) {
  struct http_server *srv = l->srv;
  unsigned char key[9];
  int loopback = 0;
  struct peer *p = NULL;
  enum refusal why = REFUSE_CAPACITY;
  if (peer_key(sa, key, &loopback) == 0 && srv->n_conns < srv->max_conns &&
      (p = peer_get(srv, key)) != NULL) {
    int exempt = loopback && !srv->limit_loopback;
    struct conn *c = !exempt && p->conns >= srv->conns_per_ip ? NULL : calloc(1, sizeof *c);
    if (c) {
      *c = (struct conn){.srv = srv, .l = l, .peer = p, .fd = fd, .exempt = exempt};
      p->conns++;
      srv->n_conns++;
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      conn_list(c, LIST_WAITING, uv_now(srv->loop) + (uint64_t)srv->header_timeout_ms);
      if (l->kind == LISTEN_HTTPS) conn_adopt(c);
      else if (pre_start(c)) conn_drop(c);
      return;
    }
    why = !exempt && p->conns >= srv->conns_per_ip ? REFUSE_PER_IP : REFUSE_CAPACITY;
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

/* ---- WebSocket upgrades ---- */

/* Only /ws may become a WebSocket. */
static int ws_path_ok(struct lws *wsi) {
  char uri[64];
  if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0) return 0;
  return strcmp(uri, "/ws") == 0;
}

/* RFC 6455 section 4.4: version 13 is the one there is. */
static int ws_version_ok(struct lws *wsi) {
  char v[8];
  return lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_VERSION) > 0 && strcmp(v, "13") == 0;
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
static int origin_ok(struct http_server *srv, struct lws *wsi, const struct listener *l) {
  int olen = lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN);
  if (olen <= 0) return 1; /* not a browser */
  char *raw = copy_header(wsi, WSI_TOKEN_ORIGIN);
  struct origin o;
  int ok = raw && origin_parse(raw, strlen(raw), &o) == 0;
  free(raw);
  if (!ok) return 0; /* "null", or garbage */
  if (is_localhost(o.host) || origin_listed(srv->allowed_origins, &o)) return 1;
  int https = l->kind == LISTEN_HTTPS;
  if (o.https != https) return 0;
  char *hosthdr = copy_header(wsi, WSI_TOKEN_HOST);
  char host[256];
  int port;
  ok = hosthdr && hostport_parse(hosthdr, strlen(hosthdr), https ? 443 : 80, host, sizeof host,
                                 &port) == 0;
  free(hosthdr);
  if (!ok || port != o.port || strcmp(host, o.host) != 0) return 0;
  return is_ip_literal(host) || strcasecmp(host, l->host) == 0;
}

/* The refusal to send, or 0 with *why untouched when the upgrade may go ahead. */
static int ws_verdict(struct http_server *srv, struct lws *wsi, enum ws_refusal *why,
                      const char **msg, const char **headers) {
  struct conn *c = conn_of(wsi);
  struct lws_vhost *vh = lws_get_vhost(wsi);
  *headers = NULL;
  if (vh == srv->metrics_vh || !c || !ws_path_ok(wsi)) {
    *why = WS_REFUSE_PATH, *msg = "no WebSocket here";
    return 404;
  }
  if (!ws_version_ok(wsi)) {
    *why = WS_REFUSE_VERSION, *msg = "unsupported WebSocket version";
    *headers = "sec-websocket-version: 13\r\n";
    return 426;
  }
  if (!origin_ok(srv, wsi, c->l)) {
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

/*
 * An HTTP/1.1 upgrade request, before lws answers it: refused with an
 * answer of ours and the connection closed (-1), or let through (0).
 */
static int ws_confirm(struct http_server *srv, struct lws *wsi, const char *upgrade) {
  struct conn *c = conn_of(wsi);
  conn_unlist(c); /* its head came */
  if (!upgrade || strcasecmp(upgrade, "websocket") != 0) return 0; /* h2c: lws's */
  enum ws_refusal why;
  const char *msg, *headers;
  int status = ws_verdict(srv, wsi, &why, &msg, &headers);
  if (!status) return 0;
  srv->ws_refused[why]++;
  log_debug("ws", "refused an upgrade: %d %s", status, msg);
  unsigned char buf[LWS_PRE + 512];
  int n = format_refusal((char *)buf + LWS_PRE, sizeof buf - LWS_PRE, status, msg, headers);
  if (n > 0) lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP);
  return -1; /* lws writes what is buffered before it closes */
}

/* The last word on an upgrade; over HTTP/2 the only one, and there a refusal resets the stream. */
static int ws_filter(struct http_server *srv, struct lws *wsi) {
  enum ws_refusal why;
  const char *msg, *headers;
  int status = ws_verdict(srv, wsi, &why, &msg, &headers);
  if (status && lws_get_network_wsi(wsi) != wsi) srv->ws_refused[why]++;
  return status ? -1 : 0;
}

/* lws's callback for a connection it is about to create or has freed. */
static int wsi_created(struct http_server *srv, struct lws *wsi) {
  if (srv && srv->adopting && !srv->adopting->wsi) srv->adopting->wsi = wsi;
  return 0;
}

static void wsi_destroyed(struct http_server *srv, struct lws *wsi) {
  struct conn *c = lws_get_opaque_user_data(wsi);
  if (!c && srv && srv->adopting && srv->adopting->wsi == wsi) c = srv->adopting;
  if (!c || c->wsi != wsi) return;
  lws_set_opaque_user_data(wsi, NULL);
  c->wsi = NULL;
  if (c == srv->adopting) c->destroyed = 1; /* conn_adopt frees it */
  else conn_free(c);
}

/*
 * Closes a connection. lws carries out a requested close from its own list
 * of timers, which it re-arms only on its way out of a callback: asked from
 * outside one (a timer of ours, a late answer) the close would wait for
 * lws's next wake-up, seconds away, so there it is done at once. Inside a
 * callback it must not be: lws still uses the connection.
 */
static void wsi_kill(struct lws *wsi) {
  struct lws_vhost *vh = lws_get_vhost(wsi);
  struct http_server *srv = vh ? lws_get_vhost_user(vh) : NULL;
  lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK,
                  srv && !srv->in_lws ? LWS_TO_KILL_SYNC : LWS_TO_KILL_ASYNC);
}

static int on_event_inner(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                          void *in, size_t len) {
  struct session *s = user;
  struct lws_vhost *vh = lws_get_vhost(wsi);
  struct http_server *srv = vh ? lws_get_vhost_user(vh) : NULL;
  switch (reason) {
  case LWS_CALLBACK_WSI_CREATE:
    return wsi_created(srv, wsi);
  case LWS_CALLBACK_WSI_DESTROY:
    wsi_destroyed(srv, wsi);
    return 0;
  case LWS_CALLBACK_FILTER_HTTP_CONNECTION:
    conn_unlist(conn_of(wsi)); /* its head came */
    return 0;
  case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
    return srv ? ws_confirm(srv, wsi, in) : -1;
  case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    return srv ? ws_filter(srv, wsi) : -1;
  case LWS_CALLBACK_ESTABLISHED:
    return ws_established(srv, s, wsi);
  case LWS_CALLBACK_RECEIVE:
    return s->ws ? ws_receive(s->ws, in, len) : -1;
  case LWS_CALLBACK_SERVER_WRITEABLE:
    return s->ws ? ws_writable(s->ws) : 0;
  case LWS_CALLBACK_CLOSED:
    ws_closed(srv, s);
    return 0;
  case LWS_CALLBACK_HTTP:
    return s ? http_begin(srv, s, wsi) : -1;
  case LWS_CALLBACK_HTTP_BODY:
    return s ? http_body(s, in, len) : -1;
  case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    return s ? http_body_done(srv, s) : -1;
  case LWS_CALLBACK_HTTP_WRITEABLE:
    return s ? http_writable(s, wsi) : 0;
  case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    session_hold(s, wsi);
    session_release(s);
    return 0;
  case LWS_CALLBACK_CLOSED_HTTP:
    session_release(s);
    return 0;
  default:
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
}

static int on_event(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
  struct lws_vhost *vh = lws_get_vhost(wsi);
  struct http_server *srv = vh ? lws_get_vhost_user(vh) : NULL;
  if (srv) srv->in_lws++;
  int rc = on_event_inner(wsi, reason, user, in, len);
  if (srv) srv->in_lws--;
  return rc;
}

/* lws's own log lines, routed into ours. */
static void lws_log(int level, const char *line) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s", line);
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
  log_write(level == LLL_ERR ? LOG_ERROR : LOG_WARN, "lws", "%s", msg);
}

static int setup_mounts(struct http_server *srv) {
  struct lws_http_mount *m = srv->mounts;
  int n = 0;
  for (; srv->h.mounts[n]; n++) {
    if (n == HTTP_MAX_MOUNTS || srv->h.mounts[n][0] != '/') return -EINVAL;
    m[n] = (struct lws_http_mount){.mountpoint = srv->h.mounts[n],
                                   .mountpoint_len = (unsigned char)strlen(srv->h.mounts[n]),
                                   .origin = "tingshuo", .origin_protocol = LWSMPRO_CALLBACK};
  }
  m[n] = (struct lws_http_mount){.mountpoint = "/", .mountpoint_len = 1, .origin = srv->web_root,
                                 .def = "index.html", .origin_protocol = LWSMPRO_FILE,
                                 .cache_max_age = 0};
  for (int i = 0; i < n; i++) m[i].mount_next = &m[i + 1];
  srv->metrics_mount = (struct lws_http_mount){.mountpoint = "/", .mountpoint_len = 1,
                                               .origin = "tingshuo",
                                               .origin_protocol = LWSMPRO_CALLBACK};
  srv->protocols[0] = (struct lws_protocols){.name = "tingshuo", .callback = on_event,
                                             .per_session_data_size = sizeof(struct session),
                                             /* Each WebSocket allocates one; messages are
                                              * gathered here (ws_gather), so a small one only
                                              * means more callbacks for a big message. */
                                             .rx_buffer_size = 4096,
                                             .tx_packet_size = 65536};
  return 0;
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

/* An lws context holding one vhost that serves what this listener accepts. */
static struct lws_vhost *listener_vhost(struct http_server *srv, struct listener *l,
                                        const char *name, const struct lws_http_mount *mounts) {
  int tls = l->kind == LISTEN_HTTPS;
  struct lws_context_creation_info ci = {0};
  ci.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
               LWS_SERVER_OPTION_VALIDATE_UTF8;
  if (tls) ci.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  ci.foreign_loops = srv->loops;
  ci.port = CONTEXT_PORT_NO_LISTEN;
  ci.max_http_header_pool = (unsigned short)srv->header_pool;
  ci.max_http_header_data = HTTP_HEAD_MAX + 1024;
  /* lws clears l->ctx itself once its asynchronous teardown has finished. */
  ci.pcontext = &l->ctx;
  l->ctx = lws_create_context(&ci);
  if (!l->ctx) return NULL;
  struct lws_context_creation_info vi = {0};
  vi.vhost_name = name;
  vi.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* the sockets are ours (see the top) */
  vi.protocols = srv->protocols;
  vi.mounts = mounts;
  vi.user = srv;
  vi.timeout_secs_ah_idle = (srv->header_timeout_ms + 999) / 1000;
  if (tls) {
    vi.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT; /* per vhost: enables TLS on it */
    vi.ssl_cert_filepath = srv->cert;
    vi.ssl_private_key_filepath = srv->key;
  }
  return lws_create_vhost(l->ctx, &vi);
}

static int start_listener(struct http_server *srv, enum listener_kind kind, const char *addr,
                          char *url, size_t urlcap, char *err, size_t errlen) {
  static const char *const names[LISTEN_COUNT] = {"http", "https", "metrics"};
  struct listener *l = &srv->l[kind];
  char host[256];
  int port;
  if (split_addr(addr, host, sizeof host, &port)) {
    snprintf(err, errlen, "bad address %s", addr);
    return -EINVAL;
  }
  l->vh = listener_vhost(srv, l, names[kind], kind == LISTEN_METRICS ? &srv->metrics_mount
                                                                     : srv->mounts);
  if (!l->vh) {
    snprintf(err, errlen, "libwebsockets could not set up the %s listener (is "
             "libwebsockets-evlib_uv.so installed?%s)", names[kind],
             kind == LISTEN_HTTPS ? " are the certificate and key readable PEM files?" : "");
    return -EIO;
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
  srv->header_pool = srv->max_conns < 64 ? 64
                     : srv->max_conns > HEADER_POOL_MAX ? HEADER_POOL_MAX : srv->max_conns;
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
  srv->loops[0] = loop;
  for (int i = 0; i < LISTEN_COUNT; i++)
    srv->l[i] = (struct listener){.srv = srv, .kind = (enum listener_kind)i, .fd = -1};
  snprintf(srv->web_root, sizeof srv->web_root, "%s",
           cfg->web_root[0] ? cfg->web_root : TINGSHUO_WEB_ROOT);
  if (setup_mounts(srv)) {
    snprintf(err, errlen, "bad mount points for the HTTP server");
    free(srv);
    return -EINVAL;
  }
  uv_timer_init(loop, &srv->sweep);
  uv_timer_init(loop, &srv->resume);
  srv->sweep.data = srv->resume.data = srv;
  srv->handles = 1;
  lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
  plan_limits(srv, cfg);
  int tls = cfg->https_listen[0] != '\0';
  int rc = start_listener(srv, LISTEN_HTTP, cfg->listen, srv->url, sizeof srv->url, err, errlen);
  srv->http_vh = srv->l[LISTEN_HTTP].vh;
  if (rc == 0 && tls)
    rc = tls_files_ensure(cfg, srv->cert, sizeof srv->cert, srv->key, sizeof srv->key, err,
                          errlen);
  if (rc == 0 && tls)
    rc = start_listener(srv, LISTEN_HTTPS, cfg->https_listen, srv->https_url,
                        sizeof srv->https_url, err, errlen);
  srv->https_vh = srv->l[LISTEN_HTTPS].vh;
  if (rc == 0 && cfg->metrics_listen[0])
    rc = start_listener(srv, LISTEN_METRICS, cfg->metrics_listen, srv->metrics_url,
                        sizeof srv->metrics_url, err, errlen);
  srv->metrics_vh = srv->l[LISTEN_METRICS].vh;
  *out = srv;
  if (rc) http_server_stop(srv); /* the caller runs the loop to let lws close, then frees */
  return rc;
}

const char *http_server_url(const struct http_server *srv) { return srv->url; }
const char *http_server_https_url(const struct http_server *srv) { return srv->https_url; }
const char *http_server_metrics_url(const struct http_server *srv) { return srv->metrics_url; }

/*
 * On a foreign loop lws tears down asynchronously: the first destroy closes
 * connections, the loop then runs their close callbacks, and lws finishes
 * and clears each listener's context through pcontext. Connections lws
 * never had are closed here.
 */
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
  struct conn *lists[2] = {srv->waiting_head, srv->linger_head};
  for (int i = 0; i < 2; i++) {
    for (struct conn *c = lists[i], *next; c; c = next) {
      next = c->next;
      if (c->pre) conn_drop(c);
    }
  }
  for (int i = 0; i < LISTEN_COUNT; i++)
    if (srv->l[i].ctx) lws_context_destroy(srv->l[i].ctx);
}

void http_server_free(struct http_server *srv) {
  if (!srv) return;
  for (int i = 0; i < LISTEN_COUNT; i++)
    if (srv->l[i].ctx) lws_context_destroy(srv->l[i].ctx); /* completes what stop began */
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
  counter(b, "tingshuo_http_accept_pauses_total", "Times accepting paused because accept() "
          "ran out of file descriptors or memory.", (double)srv->accept_pauses);
  counter(b, "tingshuo_log_lines_suppressed_total", "Log lines not written: repeats, and lines "
          "over the per-thread rate.", (double)log_suppressed());
}

/* ---- the upgrade request's query, for call tokens ---- */

int ws_conn_query(const struct ws_conn *c, const char *name, char *out, size_t cap) {
  size_t n = strlen(name);
  for (int i = 0;; i++) {
    int flen = lws_hdr_fragment_length(c->wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
    if (flen <= 0) return -ENOENT; /* no more arguments, or the request is gone */
    char *frag = malloc((size_t)flen + 1);
    if (!frag) return -ENOMEM;
    int len = lws_hdr_copy_fragment(c->wsi, frag, flen + 1, WSI_TOKEN_HTTP_URI_ARGS, i);
    int match = len >= 0 && (size_t)len > n && strncmp(frag, name, n) == 0 && frag[n] == '=';
    int rc = -ENOSPC;
    if (match && (size_t)len - n - 1 < cap) {
      memcpy(out, frag + n + 1, (size_t)len - n);
      rc = len - (int)n - 1;
    }
    free(frag);
    if (match) return rc;
  }
}
