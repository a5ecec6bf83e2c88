/*
 * HTTP, HTTPS and WebSocket server on libwebsockets, on the control loop.
 *
 * Why libwebsockets: it does HTTP/1.1, TLS, WebSocket framing and static
 * files correctly and can run on a libuv loop it does not own ("foreign
 * loop"), so the signaling, the REST API and the outbound HTTP client all
 * share one thread and need no locks.
 *
 * Layout: one lws context with explicit vhosts, "http" always and "https"
 * when configured. Each vhost has a single protocol, "tingshuo", that handles
 * both the dynamic HTTP requests (mounted at /healthz and /api) and the
 * WebSocket upgrade; lws binds an upgrade without Sec-WebSocket-Protocol to a
 * vhost's first protocol, which is this one. Upgrades to any path but /ws are
 * refused. Everything else under / is a file from web_root.
 *
 * WebSocket messages arrive in fragments; they are gathered into one buffer
 * (bounded by WS_MAX_MESSAGE) and handed over whole. Outgoing messages wait in
 * a per-connection queue until lws says the socket is writable; a peer that
 * stops reading is disconnected once its queue passes a bound, so one slow
 * browser cannot make the server grow without limit.
 */
#include "net/http_server.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "net/tls_files.h"

#ifndef TINGSHUO_WEB_ROOT
#define TINGSHUO_WEB_ROOT "web"
#endif

#define WS_MAX_QUEUED (1024 * 1024)
#define HTTP_BODY_MAX 16384

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
  char *in;       /* message being gathered */
  size_t in_len;
  struct out_msg *head, *tail;
  size_t queued;
  int closing;
};

/* lws per-session data: an HTTP request or a WebSocket connection. */
struct session {
  struct ws_conn *ws;
  unsigned char *body; /* LWS_PRE bytes of headroom, then the response body */
  size_t body_len;
  int status;
};

struct http_server {
  struct lws_context *ctx;
  struct lws_vhost *http_vh, *https_vh;
  struct http_handlers h;
  struct lws_protocols protocols[2];
  struct lws_http_mount mounts[3];
  char web_root[1024];
  char cert[1100], key[1100];
  char url[300], https_url[300];
  void *loops[1];
  int stopping;
};

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

/* Only /ws may become a WebSocket. */
static int ws_path_ok(struct lws *wsi) {
  char uri[64];
  if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0) return 0;
  return strcmp(uri, "/ws") == 0;
}

static int http_respond(struct http_server *srv, struct session *s, struct lws *wsi,
                        const char *path) {
  unsigned char hdr[LWS_PRE + 512], *p = hdr + LWS_PRE, *end = hdr + sizeof hdr;
  s->body = malloc(LWS_PRE + HTTP_BODY_MAX);
  if (!s->body) return -1;
  char *text = (char *)s->body + LWS_PRE;
  text[0] = '\0';
  s->status = srv->h.get ? srv->h.get(srv->h.user, path, text, HTTP_BODY_MAX) : 404;
  if (s->status == 404 && !text[0]) snprintf(text, HTTP_BODY_MAX, "{\"error\":\"not found\"}");
  s->body_len = strlen(text);
  if (lws_add_http_common_headers(wsi, (unsigned int)s->status, "application/json",
                                  s->body_len, &p, end) ||
      lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                  (const unsigned char *)"no-store", 8, &p, end) ||
      lws_finalize_write_http_header(wsi, hdr + LWS_PRE, &p, end))
    return -1;
  lws_callback_on_writable(wsi);
  return 0;
}

static int http_write_body(struct session *s, struct lws *wsi) {
  if (!s->body) return -1;
  int n = lws_write(wsi, s->body + LWS_PRE, s->body_len, LWS_WRITE_HTTP_FINAL);
  free(s->body);
  s->body = NULL;
  if (n < (int)s->body_len) return -1;
  return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int on_event(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
  struct session *s = user;
  struct lws_vhost *vh = lws_get_vhost(wsi);
  struct http_server *srv = vh ? lws_get_vhost_user(vh) : NULL;
  switch (reason) {
  case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    return ws_path_ok(wsi) ? 0 : -1;
  case LWS_CALLBACK_ESTABLISHED:
    return ws_established(srv, s, wsi);
  case LWS_CALLBACK_RECEIVE:
    return s->ws ? ws_receive(s->ws, in, len) : -1;
  case LWS_CALLBACK_SERVER_WRITEABLE:
    return s->ws ? ws_writable(s->ws) : 0;
  case LWS_CALLBACK_CLOSED:
    ws_closed(srv, s);
    return 0;
  case LWS_CALLBACK_HTTP: {
    /* `in` is the path below the mount point; rebuild the full one. */
    char uri[256];
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0) return -1;
    return http_respond(srv, s, wsi, uri);
  }
  case LWS_CALLBACK_HTTP_WRITEABLE:
    return http_write_body(s, wsi);
  case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
  case LWS_CALLBACK_CLOSED_HTTP:
    if (s) {
      free(s->body);
      s->body = NULL;
    }
    return 0;
  default:
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
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

/* lws's own log lines, routed into ours. */
static void lws_log(int level, const char *line) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s", line);
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
  log_write(level == LLL_ERR ? LOG_ERROR : LOG_WARN, "lws", "%s", msg);
}

static void setup_mounts(struct http_server *srv) {
  struct lws_http_mount *m = srv->mounts;
  m[0] = (struct lws_http_mount){.mountpoint = "/healthz", .mountpoint_len = 8,
                                 .origin = "tingshuo", .origin_protocol = LWSMPRO_CALLBACK};
  m[1] = (struct lws_http_mount){.mountpoint = "/api", .mountpoint_len = 4,
                                 .origin = "tingshuo", .origin_protocol = LWSMPRO_CALLBACK};
  m[2] = (struct lws_http_mount){.mountpoint = "/", .mountpoint_len = 1, .origin = srv->web_root,
                                 .def = "index.html", .origin_protocol = LWSMPRO_FILE,
                                 .cache_max_age = 0};
  m[0].mount_next = &m[1];
  m[1].mount_next = &m[2];
  srv->protocols[0] = (struct lws_protocols){.name = "tingshuo", .callback = on_event,
                                             .per_session_data_size = sizeof(struct session),
                                             .rx_buffer_size = 65536};
}

/* Splits "host:port" / "[v6]:port" into an interface string lws accepts. */
static int split_addr(const char *addr, char *host, size_t cap, int *port) {
  const char *colon = strrchr(addr, ':');
  if (!colon) return -EINVAL;
  const char *h = addr;
  size_t hl = (size_t)(colon - addr);
  if (*h == '[') h++, hl -= 2;
  if (hl >= cap) return -EINVAL;
  memcpy(host, h, hl);
  host[hl] = '\0';
  *port = atoi(colon + 1);
  return 0;
}

static struct lws_vhost *make_vhost(struct http_server *srv, const char *name, const char *addr,
                                    int tls, char *url, size_t urlcap, char *err, size_t errlen) {
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
  vi.mounts = srv->mounts;
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

int http_server_start(struct http_server **out, uv_loop_t *loop, const struct config *cfg,
                      const struct http_handlers *handlers, char *err, size_t errlen) {
  struct http_server *srv = calloc(1, sizeof *srv);
  if (!srv) return -ENOMEM;
  srv->h = *handlers;
  snprintf(srv->web_root, sizeof srv->web_root, "%s",
           cfg->web_root[0] ? cfg->web_root : TINGSHUO_WEB_ROOT);
  setup_mounts(srv);
  lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
  int tls = cfg->https_listen[0] != '\0';
  int rc = 0;
  if (tls) rc = tls_files_ensure(cfg, srv->cert, sizeof srv->cert, srv->key, sizeof srv->key,
                                 err, errlen);
  if (rc == 0) rc = create_context(srv, loop, tls, err, errlen);
  if (rc == 0) {
    srv->http_vh = make_vhost(srv, "http", cfg->listen, 0, srv->url, sizeof srv->url, err, errlen);
    if (!srv->http_vh) rc = -EADDRINUSE;
  }
  if (rc == 0 && tls) {
    srv->https_vh = make_vhost(srv, "https", cfg->https_listen, 1, srv->https_url,
                               sizeof srv->https_url, err, errlen);
    if (!srv->https_vh) rc = -EADDRINUSE;
  }
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
