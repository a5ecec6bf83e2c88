/*
 * WebSocket client on libwebsockets.
 *
 * Like the server side (net/http_server.c), lws runs on a libuv loop it
 * does not own. Each connection is a struct wsc given to lws as the wsi's
 * user data, so lws never allocates or frees it: it is freed by us when lws
 * reports the connection's end (CLIENT_CONNECTION_ERROR before it opened,
 * CLIENT_CLOSED after), which is also when on_close is called.
 *
 * Incoming fragments are gathered into one message (bounded); outgoing
 * messages wait in a queue until lws says the socket is writable.
 */
#include "client/ws_client.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct out_msg {
  struct out_msg *next;
  size_t len;
  unsigned char data[]; /* LWS_PRE bytes of headroom, then the text */
};

struct wsc {
  struct wsc_ctx *ctx;
  struct lws *wsi;
  struct wsc_handlers h;
  void *user;
  char *in;
  size_t in_len;
  struct out_msg *head, *tail;
  int closing, opened, in_connect, failed;
  char why[256];
};

struct wsc_ctx {
  struct lws_context *lws;
  struct lws_protocols protocols[2];
  void *loops[1];
  int insecure, stopping;
};

static void free_conn(struct wsc *c) {
  while (c->head) {
    struct out_msg *m = c->head;
    c->head = m->next;
    free(m);
  }
  free(c->in);
  free(c);
}

static void finish(struct wsc *c, const char *why) {
  if (c->in_connect) { /* reported by wsc_connect's return instead */
    c->failed = 1;
    snprintf(c->why, sizeof c->why, "%s", why);
    return;
  }
  if (c->h.on_close) c->h.on_close(c->user, why);
  free_conn(c);
}

static int on_receive(struct wsc *c, const void *in, size_t len) {
  if (lws_frame_is_binary(c->wsi)) return 0; /* the protocol is text only */
  if (c->in_len + len > WSC_MAX_MESSAGE) {
    snprintf(c->why, sizeof c->why, "message over %d bytes from the server", WSC_MAX_MESSAGE);
    return -1;
  }
  char *grown = realloc(c->in, c->in_len + len + 1);
  if (!grown) return -1;
  c->in = grown;
  memcpy(c->in + c->in_len, in, len);
  c->in_len += len;
  c->in[c->in_len] = '\0';
  if (!lws_is_final_fragment(c->wsi) || lws_remaining_packet_payload(c->wsi)) return 0;
  if (c->h.on_message) c->h.on_message(c->user, c->in, c->in_len);
  free(c->in);
  c->in = NULL;
  c->in_len = 0;
  return 0;
}

static int on_writable(struct wsc *c) {
  struct out_msg *m = c->head;
  if (!m) {
    if (!c->closing) return 0;
    lws_close_reason(c->wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
    return -1;
  }
  if (lws_write(c->wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT) < (int)m->len) return -1;
  c->head = m->next;
  if (!c->head) c->tail = NULL;
  free(m);
  if (c->head || c->closing) lws_callback_on_writable(c->wsi);
  return 0;
}

static int on_event(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
  struct wsc *c = user;
  switch (reason) {
  case LWS_CALLBACK_CLIENT_ESTABLISHED:
    c->opened = 1;
    if (c->h.on_open) c->h.on_open(c->user);
    if (c->head) lws_callback_on_writable(wsi);
    return 0;
  case LWS_CALLBACK_CLIENT_RECEIVE:
    return on_receive(c, in, len);
  case LWS_CALLBACK_CLIENT_WRITEABLE:
    return on_writable(c);
  case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    if (len >= 2) {
      const unsigned char *p = in;
      snprintf(c->why, sizeof c->why, "closed by the server (%d)", p[0] << 8 | p[1]);
    }
    return 0;
  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
    char why[300];
    snprintf(why, sizeof why, "%s", in ? (const char *)in : "connection failed");
    finish(c, why);
    return 0;
  }
  case LWS_CALLBACK_CLIENT_CLOSED:
    finish(c, c->why[0] ? c->why : c->closing ? "closed" : "connection closed by the server");
    return 0;
  default:
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
}

static void quiet_log(int level, const char *line) {}

int wsc_ctx_new(struct wsc_ctx **out, uv_loop_t *loop, int insecure, char *err, size_t errlen) {
  struct wsc_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return -ENOMEM;
  ctx->insecure = insecure;
  ctx->protocols[0] = (struct lws_protocols){.name = "tingshuo-client", .callback = on_event,
                                             .rx_buffer_size = 65536};
  lws_set_log_level(0, quiet_log); /* failures reach the caller through on_close */
  struct lws_context_creation_info ci = {0};
  ci.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  ctx->loops[0] = loop;
  ci.foreign_loops = ctx->loops;
  ci.port = CONTEXT_PORT_NO_LISTEN;
  ci.protocols = ctx->protocols;
  ci.pcontext = &ctx->lws;
  ci.fd_limit_per_thread = 4096;
  ctx->lws = lws_create_context(&ci);
  if (!ctx->lws) {
    snprintf(err, errlen, "libwebsockets could not start on libuv");
    free(ctx);
    return -EIO;
  }
  *out = ctx;
  return 0;
}

void wsc_ctx_stop(struct wsc_ctx *ctx) {
  if (ctx && ctx->lws && !ctx->stopping) {
    ctx->stopping = 1;
    lws_context_destroy(ctx->lws);
  }
}

int wsc_ctx_done(const struct wsc_ctx *ctx) { return !ctx || !ctx->lws; }

void wsc_ctx_free(struct wsc_ctx *ctx) {
  if (!ctx) return;
  if (ctx->lws) lws_context_destroy(ctx->lws);
  free(ctx);
}

int wsc_connect(struct wsc_ctx *ctx, const struct ws_url *url, const struct wsc_handlers *h,
                void *user, struct wsc **out) {
  struct wsc *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  c->ctx = ctx;
  c->h = *h;
  c->user = user;
  char host[300];
  snprintf(host, sizeof host, strchr(url->host, ':') ? "[%s]:%d" : "%s:%d", url->host, url->port);
  struct lws_client_connect_info i = {0};
  i.context = ctx->lws;
  i.address = url->host;
  i.port = url->port;
  i.path = url->path;
  i.host = host;
  i.origin = host;
  i.userdata = c;
  i.pwsi = &c->wsi;
  i.ietf_version_or_minus_one = -1;
  if (url->tls) {
    i.ssl_connection = LCCSCF_USE_SSL;
    if (ctx->insecure)
      i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                          LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
  }
  c->in_connect = 1;
  struct lws *wsi = lws_client_connect_via_info(&i);
  c->in_connect = 0;
  if (!wsi || c->failed) {
    free_conn(c);
    return -ECONNREFUSED;
  }
  *out = c;
  return 0;
}

int wsc_send(struct wsc *c, const char *text, size_t len) {
  if (c->closing) return -EPIPE;
  struct out_msg *m = malloc(sizeof *m + LWS_PRE + len);
  if (!m) return -ENOMEM;
  m->next = NULL;
  m->len = len;
  memcpy(m->data + LWS_PRE, text, len);
  if (c->tail) c->tail->next = m;
  else c->head = m;
  c->tail = m;
  if (c->opened) lws_callback_on_writable(c->wsi);
  return 0;
}

void wsc_close(struct wsc *c) {
  if (c->closing) return;
  c->closing = 1;
  if (c->opened) lws_callback_on_writable(c->wsi);
  else lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}
