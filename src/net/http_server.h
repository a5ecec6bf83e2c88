/*
 * http_server: the control loop's HTTP, HTTPS and WebSocket front door.
 *
 * libwebsockets runs on the caller's libuv loop. It serves the browser client
 * from web_root, GET /healthz and other dynamic GETs through a handler, and
 * WebSocket connections on /ws, whose text messages are handed to the
 * application one whole message at a time.
 *
 * All functions run on the loop's thread only.
 */
#ifndef TS_NET_HTTP_SERVER_H
#define TS_NET_HTTP_SERVER_H

#include <stddef.h>
#include <uv.h>

#include "core/config.h"

struct http_server;
struct ws_conn;

/* Largest WebSocket message accepted; a larger one closes the connection (1009). */
#define WS_MAX_MESSAGE (256 * 1024)

struct http_handlers {
  void *user;
  /*
   * A GET to /healthz or under /api/: write a JSON body into `body` (capacity
   * `cap`), return the HTTP status (200, 404, ...). NULL answers 404.
   */
  int (*get)(void *user, const char *path, char *body, size_t cap);
  void (*ws_open)(void *user, struct ws_conn *conn);
  void (*ws_message)(void *user, struct ws_conn *conn, const char *text, size_t len);
  /* After this returns `conn` is freed; drop every pointer to it. */
  void (*ws_close)(void *user, struct ws_conn *conn);
};

/*
 * Starts listening on cfg->listen and, if set, cfg->https_listen (with
 * cfg->tls_cert/tls_key, or a self-signed certificate generated into
 * cfg->data_dir). Returns 0 or a negative errno with `err` filled in.
 */
int http_server_start(struct http_server **out, uv_loop_t *loop, const struct config *cfg,
                      const struct http_handlers *handlers, char *err, size_t errlen);

/* "http://127.0.0.1:8080/" with the port actually bound; "" when not listening. */
const char *http_server_url(const struct http_server *srv);
const char *http_server_https_url(const struct http_server *srv);

/*
 * Closes every connection and listener. The caller keeps running the loop
 * until it has no more active handles, then frees the server with
 * http_server_free.
 */
void http_server_stop(struct http_server *srv);
void http_server_free(struct http_server *srv);

/* Queues a text message. -ENOBUFS when the peer is not reading and too much is queued. */
int ws_conn_send(struct ws_conn *conn, const char *text, size_t len);
/* Closes after the queued messages are written. */
void ws_conn_close(struct ws_conn *conn);
void ws_conn_set_data(struct ws_conn *conn, void *data);
void *ws_conn_data(const struct ws_conn *conn);
/* The peer's address as text, for logs. */
const char *ws_conn_peer(const struct ws_conn *conn);

#endif
