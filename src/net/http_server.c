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
 */
#include "net/http_server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "net/tls_files.h"

#ifndef TINGSHUO_WEB_ROOT
#define TINGSHUO_WEB_ROOT "web"
#endif

#define WS_MAX_QUEUED (1024 * 1024)
#define HTTP_CHUNK (16 * 1024)
#define HTTP_DISCARD_MAX (1024 * 1024)
#define HTTP_HEADER_MAX 8192 /* longest request header value kept */

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

struct http_server {
  struct lws_context *ctx;
  struct lws_vhost *http_vh, *https_vh, *metrics_vh;
  struct http_handlers h;
  struct lws_protocols protocols[2];
  struct lws_http_mount mounts[HTTP_MAX_MOUNTS + 1];
  struct lws_http_mount metrics_mount;
  char web_root[1024];
  char cert[1100], key[1100];
  char url[300], https_url[300], metrics_url[300];
  void *loops[1];
  int stopping;
};

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
 * HTTP/1.1 pipelining is not supported. lws parses whatever follows a
 * request as the next request as soon as it reads it, even while the first
 * is unanswered, and tears the first one's session down to do so; stopping
 * reading meanwhile is no way out, as lws 4.1 then never reports the
 * socket writable either. So a connection is marked busy from a request's
 * headers to the end of its answer, and a request that arrives on a busy
 * connection closes it (the mark is the wsi's opaque pointer, which lws
 * leaves alone on server connections). Browsers and common clients never
 * pipeline.
 */
static void set_busy(struct lws *wsi, struct http_server *srv) {
  lws_set_opaque_user_data(wsi, srv);
}

static int is_busy(struct lws *wsi) { return lws_get_opaque_user_data(wsi) != NULL; }

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
  req_detach(r);
  req_free(r);
  if (!wsi) {
    resp_free(p);
    return -ENOTCONN;
  }
  if (!p) {
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    return -ENOMEM;
  }
  if (head) p->end = p->off;
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
  int close_after = p->close_after;
  resp_free(p);
  s->resp = NULL;
  if (close_after) return -1;
  set_busy(wsi, NULL);
  /* This may free `s`: lws rebinds the protocol for the connection's next request. */
  return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- transactions ---- */

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
  if (lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0) return -2;
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno || end == v || *end || n < 0 || !isdigit((unsigned char)v[0])) return -2;
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
    log_warn("http", "a pipelined request: closing the connection");
    return -1;
  }
  set_busy(wsi, srv);
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

/* Only /ws may become a WebSocket. */
static int ws_path_ok(struct lws *wsi) {
  char uri[64];
  if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0) return 0;
  return strcmp(uri, "/ws") == 0;
}

static int on_event(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
  struct session *s = user;
  struct lws_vhost *vh = lws_get_vhost(wsi);
  struct http_server *srv = vh ? lws_get_vhost_user(vh) : NULL;
  switch (reason) {
  case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    return vh != srv->metrics_vh && ws_path_ok(wsi) ? 0 : -1;
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
  case LWS_CALLBACK_CLOSED_HTTP:
    session_release(s);
    return 0;
  default:
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
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
                                             .rx_buffer_size = 65536};
  return 0;
}

/* Splits "host:port" / "[v6]:port" into an interface string lws accepts. */
static int split_addr(const char *addr, char *host, size_t cap, int *port) {
  const char *colon = strrchr(addr, ':');
  if (!colon) return -EINVAL;
  const char *h = addr;
  size_t hl = (size_t)(colon - addr);
  if (*h == '[' && hl >= 2) h++, hl -= 2;
  if (hl >= cap) return -EINVAL;
  memcpy(host, h, hl);
  host[hl] = '\0';
  char *end;
  errno = 0;
  long p = strtol(colon + 1, &end, 10);
  if (errno || end == colon + 1 || *end || p < 0 || p > 65535) return -EINVAL;
  *port = (int)p;
  return 0;
}

static struct lws_vhost *make_vhost(struct http_server *srv, const char *name, const char *addr,
                                    int tls, const struct lws_http_mount *mounts, char *url,
                                    size_t urlcap, char *err, size_t errlen) {
  char host[256];
  int port;
  if (split_addr(addr, host, sizeof host, &port)) {
    snprintf(err, errlen, "bad address %s", addr);
    return NULL;
  }
  struct lws_context_creation_info vi = {0};
  vi.vhost_name = name;
  vi.port = port; /* 0: the kernel picks a free port, read back below */
  vi.iface = host;
  vi.protocols = srv->protocols;
  vi.mounts = mounts;
  vi.user = srv;
  vi.options = LWS_SERVER_OPTION_DISABLE_IPV6 * (strchr(host, ':') == NULL);
  if (tls) {
    vi.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT; /* per vhost: enables TLS on it */
    vi.ssl_cert_filepath = srv->cert;
    vi.ssl_private_key_filepath = srv->key;
  }
  struct lws_vhost *vh = lws_create_vhost(srv->ctx, &vi);
  if (!vh) {
    snprintf(err, errlen, "cannot listen on %s (in use, or not an address of this machine?)",
             addr);
    return NULL;
  }
  int bound = lws_get_vhost_listen_port(vh);
  const char *open = strchr(host, ':') ? "[" : "", *close = strchr(host, ':') ? "]" : "";
  const char *shown = strcmp(host, "0.0.0.0") == 0 ? "localhost" : host;
  snprintf(url, urlcap, "%s://%s%s%s:%d/", tls ? "https" : "http", open, shown, close, bound);
  return vh;
}

static int create_context(struct http_server *srv, uv_loop_t *loop, int tls, char *err,
                          size_t errlen) {
  struct lws_context_creation_info ci = {0};
  ci.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
               LWS_SERVER_OPTION_VALIDATE_UTF8;
  if (tls) ci.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  srv->loops[0] = loop;
  ci.foreign_loops = srv->loops;
  ci.port = CONTEXT_PORT_NO_LISTEN;
  ci.max_http_header_pool = 64;
  /* lws clears srv->ctx itself once its asynchronous teardown has finished. */
  ci.pcontext = &srv->ctx;
  srv->ctx = lws_create_context(&ci);
  if (!srv->ctx) {
    snprintf(err, errlen, "libwebsockets could not start on libuv "
                          "(is libwebsockets-evlib_uv.so installed?)");
    return -EIO;
  }
  return 0;
}

static int make_vhosts(struct http_server *srv, const struct config *cfg, int tls, char *err,
                       size_t errlen) {
  srv->http_vh = make_vhost(srv, "http", cfg->listen, 0, srv->mounts, srv->url, sizeof srv->url,
                            err, errlen);
  if (!srv->http_vh) return -EADDRINUSE;
  if (tls) {
    srv->https_vh = make_vhost(srv, "https", cfg->https_listen, 1, srv->mounts, srv->https_url,
                               sizeof srv->https_url, err, errlen);
    if (!srv->https_vh) return -EADDRINUSE;
  }
  if (cfg->metrics_listen[0]) {
    srv->metrics_vh = make_vhost(srv, "metrics", cfg->metrics_listen, 0, &srv->metrics_mount,
                                 srv->metrics_url, sizeof srv->metrics_url, err, errlen);
    if (!srv->metrics_vh) return -EADDRINUSE;
  }
  return 0;
}

int http_server_start(struct http_server **out, uv_loop_t *loop, const struct config *cfg,
                      const struct http_handlers *handlers, char *err, size_t errlen) {
  struct http_server *srv = calloc(1, sizeof *srv);
  if (!srv) return -ENOMEM;
  srv->h = *handlers;
  snprintf(srv->web_root, sizeof srv->web_root, "%s",
           cfg->web_root[0] ? cfg->web_root : TINGSHUO_WEB_ROOT);
  if (setup_mounts(srv)) {
    snprintf(err, errlen, "bad mount points for the HTTP server");
    free(srv);
    return -EINVAL;
  }
  lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
  int tls = cfg->https_listen[0] != '\0';
  int rc = 0;
  if (tls) rc = tls_files_ensure(cfg, srv->cert, sizeof srv->cert, srv->key, sizeof srv->key,
                                 err, errlen);
  if (rc == 0) rc = create_context(srv, loop, tls, err, errlen);
  if (rc == 0) rc = make_vhosts(srv, cfg, tls, err, errlen);
  if (rc) {
    http_server_stop(srv);
    *out = srv; /* the caller runs the loop to let lws close, then frees */
    return rc;
  }
  *out = srv;
  return 0;
}

const char *http_server_url(const struct http_server *srv) { return srv->url; }
const char *http_server_https_url(const struct http_server *srv) { return srv->https_url; }
const char *http_server_metrics_url(const struct http_server *srv) { return srv->metrics_url; }

/*
 * On a foreign loop lws tears down asynchronously: the first destroy closes
 * listeners and connections, the loop then runs their close callbacks, and
 * lws finishes and clears srv->ctx through pcontext.
 */
void http_server_stop(struct http_server *srv) {
  if (srv->ctx && !srv->stopping) {
    srv->stopping = 1;
    lws_context_destroy(srv->ctx);
  }
}

void http_server_free(struct http_server *srv) {
  if (!srv) return;
  if (srv->ctx) lws_context_destroy(srv->ctx); /* completes what stop began */
  free(srv);
}
