/*
 * ws_client: WebSocket client connections on a libuv loop, through
 * libwebsockets (ws:// and wss://). Text messages, whole, both ways.
 *
 * One wsc_ctx (one lws context) carries any number of connections; all
 * functions run on the loop's thread.
 */
#ifndef TS_CLIENT_WS_CLIENT_H
#define TS_CLIENT_WS_CLIENT_H

#include <stddef.h>
#include <uv.h>

#include "client/url.h"

#define WSC_MAX_MESSAGE (256 * 1024)

struct wsc_ctx;
struct wsc;

/* insecure: accept any server certificate (self-signed test servers). */
int wsc_ctx_new(struct wsc_ctx **out, uv_loop_t *loop, int insecure, char *err, size_t errlen);
/*
 * Tears the context down. lws does that asynchronously on a loop it does
 * not own: run the loop until wsc_ctx_done() says so, then wsc_ctx_free().
 * Close every connection first.
 */
void wsc_ctx_stop(struct wsc_ctx *ctx);
int wsc_ctx_done(const struct wsc_ctx *ctx);
void wsc_ctx_free(struct wsc_ctx *ctx);

struct wsc_handlers {
  void (*on_open)(void *user);
  void (*on_message)(void *user, const char *text, size_t len);
  /* Exactly once per connection that wsc_connect started; `why` says what
   * happened ("connection refused...", "closed by the server (1000)").
   * The connection is freed after it returns. */
  void (*on_close)(void *user, const char *why);
};

/* Starts connecting; 0 or a negative errno (then no callback follows). */
int wsc_connect(struct wsc_ctx *ctx, const struct ws_url *url, const struct wsc_handlers *h,
                void *user, struct wsc **out);
/* Queues a text message. */
int wsc_send(struct wsc *c, const char *text, size_t len);
/* Closes normally; on_close follows. */
void wsc_close(struct wsc *c);

#endif
