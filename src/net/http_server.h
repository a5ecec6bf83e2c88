/*
 * http_server: the control loop's HTTP, HTTPS and WebSocket front door.
 *
 * It runs on the caller's libuv loop. It serves the browser client from
 * web_root, hands every request under the application's mount points to one
 * request handler, and WebSocket connections on /ws, whose text messages are
 * handed to the application one whole message at a time.
 *
 * A request is an object the application owns from the moment the handler
 * receives it until it answers it, exactly once, with http_reply(),
 * http_reply_take() or http_reply_file(): now, inside the handler, or later
 * from any callback on the loop. If the client goes away first, the request
 * stays valid and the answer, when it comes, is dropped and frees it.
 *
 * Connections are accepted here and limited before they are served: how
 * many at once (from the file-descriptor limit), per client address, how
 * long a request's head may take and how large it may be, and which
 * WebSocket upgrades are let through (path, version, Origin, how many).
 * docs/security.md lists each limit.
 *
 * All functions run on the loop's thread only.
 */
#ifndef TS_NET_HTTP_SERVER_H
#define TS_NET_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "net/http_parse.h" /* HTTP_URI_MAX, HTTP_HEAD_MAX */

struct http_server;
struct http_req;
struct ws_conn;
struct prom_buf;

/* Largest WebSocket message accepted; a larger one closes the connection (1009). */
#define WS_MAX_MESSAGE (256 * 1024)
/* Largest request body accepted; a larger one is answered 413. */
#define HTTP_REQ_BODY_MAX (16 * 1024)
/* Seconds a request may wait for its answer, or a response for the client to read on. */
#define HTTP_IDLE_TIMEOUT_S 30

enum http_method { HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_DELETE, HTTP_OTHER };

/* The request headers an application can read. */
enum http_header {
  HTTP_H_AUTHORIZATION,
  HTTP_H_COOKIE,
  HTTP_H_RANGE,
  HTTP_H_ORIGIN,
  HTTP_H_HOST,
  HTTP_H_CONTENT_TYPE,
  HTTP_H_ACCEPT_LANGUAGE,
  HTTP_H_X_FORWARDED_FOR, /* these three say a proxy relayed the request */
  HTTP_H_X_REAL_IP,
  HTTP_H_FORWARDED,
  HTTP_H_COUNT
};

/* Which listener a request came in on. */
enum http_listener {
  HTTP_LISTENER_MAIN,    /* cfg->listen or cfg->https_listen */
  HTTP_LISTENER_METRICS, /* cfg->metrics_listen: every path reaches the handler */
};

#define HTTP_MAX_MOUNTS 8

struct http_handlers {
  void *user; /* for the ws_ callbacks */
  void (*ws_open)(void *user, struct ws_conn *conn);
  void (*ws_message)(void *user, struct ws_conn *conn, const char *text, size_t len);
  /* After this returns `conn` is freed; drop every pointer to it. */
  void (*ws_close)(void *user, struct ws_conn *conn);

  /*
   * Path prefixes ("/api", "/healthz") whose requests, of any method, go to
   * `request`; each matches itself and what lies below it ("/api/..."). The
   * strings must outlive the server. Every other path is a file from
   * web_root (GET and HEAD; other methods get 405).
   */
  const char *mounts[HTTP_MAX_MOUNTS + 1]; /* NULL-terminated */
  void *request_user;
  /* A request to answer (see the top of this file). NULL answers 404 to all. */
  void (*request)(void *request_user, struct http_req *req);
};

/*
 * Starts listening on cfg->listen and, if set, cfg->https_listen (with
 * cfg->tls_cert/tls_key, or a self-signed certificate generated into
 * cfg->data_dir), and cfg->metrics_listen. Raises the process's soft
 * file-descriptor limit to its hard limit (the connection limit is derived
 * from it). Returns 0 or a negative errno with `err` filled in.
 */
int http_server_start(struct http_server **out, uv_loop_t *loop, const struct config *cfg,
                      const struct http_handlers *handlers, char *err, size_t errlen);

/* "http://127.0.0.1:8080/" with the port actually bound; "" when not listening. */
const char *http_server_url(const struct http_server *srv);
const char *http_server_https_url(const struct http_server *srv);
const char *http_server_metrics_url(const struct http_server *srv);

/*
 * Closes every connection and listener. The caller keeps running the loop
 * until it has no more active handles, then frees the server with
 * http_server_free. Requests still unanswered stay valid (see the top).
 */
void http_server_stop(struct http_server *srv);
void http_server_free(struct http_server *srv);

/*
 * The server's figures for /metrics: connections open and allowed, and
 * what was refused and why (docs/metrics.md).
 */
void http_server_write_metrics(const struct http_server *srv, struct prom_buf *b);

/* The request. Strings are valid until the request is answered. */
enum http_method http_req_method(const struct http_req *req);
const char *http_req_method_name(const struct http_req *req);
/* The path, percent-decoded and normalised ("/a/../b" is "/b"), without the query. */
const char *http_req_path(const struct http_req *req);
/* The first query parameter called `name`, percent-decoded; NULL when absent. */
const char *http_req_query(const struct http_req *req, const char *name);
/* A header's value, NULL when absent. */
const char *http_req_header(const struct http_req *req, enum http_header h);
/* The body (NUL-terminated, may hold other NULs), "" when none. */
const char *http_req_body(const struct http_req *req, size_t *len);
/* The TCP peer's IP address as text ("127.0.0.1", "::1"); never a forwarded header. */
const char *http_req_peer(const struct http_req *req);
int http_req_tls(const struct http_req *req);
enum http_listener http_req_listener(const struct http_req *req);
/* 1 once the client has gone: an answer would be dropped. */
int http_req_gone(const struct http_req *req);

/*
 * Answers and frees `req`. `type` is the Content-Type; `headers` is NULL or
 * extra header lines, each "Name: value\r\n". A HEAD request gets the
 * headers and Content-Length without the body. http_reply copies `body`;
 * http_reply_take takes a malloc'd `body` (freed with free()). Returns 0,
 * or -ENOTCONN when the client had gone and the answer was dropped.
 */
int http_reply(struct http_req *req, int status, const char *type, const char *headers,
               const void *body, size_t len);
int http_reply_take(struct http_req *req, int status, const char *type, const char *headers,
                    void *body, size_t len);

/*
 * Answers with a file's contents, with Accept-Ranges: a single-range Range
 * request gets 206 and Content-Range, an unsatisfiable one 416; several
 * ranges, a malformed Range or an If-Range get the whole file (200).
 * Returns 0 when `req` is answered (and freed; dropped if the client had
 * gone). If the file cannot be opened, or is not a regular file, nothing
 * is answered and a negative errno is returned: the caller still owns `req`.
 */
int http_reply_file(struct http_req *req, const char *path, const char *type,
                    const char *headers);

/*
 * Parses a Range header against a resource of `size` bytes: 1 with the
 * inclusive range [*first, *last] for one satisfiable range, 0 when the
 * header is to be ignored (malformed, several ranges, not "bytes="), -1 when
 * the range cannot be satisfied.
 */
int http_parse_range(const char *header, uint64_t size, uint64_t *first, uint64_t *last);

/* Queues a text message. -ENOBUFS when the peer is not reading and too much is queued. */
int ws_conn_send(struct ws_conn *conn, const char *text, size_t len);
/* Closes after the queued messages are written. */
void ws_conn_close(struct ws_conn *conn);
void ws_conn_set_data(struct ws_conn *conn, void *data);
void *ws_conn_data(const struct ws_conn *conn);
/* The peer's address as text, for logs. */
const char *ws_conn_peer(const struct ws_conn *conn);
/* The User-Agent of the WebSocket's upgrade request; NULL when it had none. */
const char *ws_conn_user_agent(const struct ws_conn *conn);
/*
 * Copies the upgrade request's first query parameter `name` (percent-decoded)
 * into `out` and returns its length; -ENOENT when absent, -ENOSPC when it does
 * not fit in `cap` bytes with its NUL. Only from within ws_open: the upgrade
 * request is let go of once the connection is open.
 */
int ws_conn_query(const struct ws_conn *conn, const char *name, char *out, size_t cap);

#endif
