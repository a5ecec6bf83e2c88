/*
 * api: the server's dynamic HTTP endpoints (docs/api.md).
 *
 * The history API (/api/calls...), the session login (/api/login,
 * /api/logout), /metrics, /healthz and the history page (/history). It
 * decides who may read conversations: loopback clients only, or, with
 * cfg->admin_token set, whoever presents that token (Bearer header or the
 * session cookie /api/login sets), loopback included.
 *
 * All functions run on the control loop's thread.
 */
#ifndef TS_APP_API_H
#define TS_APP_API_H

#include <stddef.h>

#include "core/config.h"
#include "net/http_server.h"

struct api;
struct signaling;
struct store;

/* `store` is NULL when records are off; `sig` and `cfg` outlive the api. */
int api_new(struct api **out, const struct config *cfg, struct signaling *sig,
            struct store *store, char *err, size_t errlen);
/* The store is about to close: from now on the history API answers 503. */
void api_stop(struct api *api);
/*
 * Frees the api. Every store read it started must have been answered
 * first: call it after store_close() and after the loop has run down.
 */
void api_free(struct api *api);

/* Fills the request side of `h`: the mount points and the handler. */
void api_http_handlers(struct api *api, struct http_handlers *h);

/* 1 when `ip` (text, as http_req_peer gives it) is a loopback address. */
int api_is_loopback(const char *ip);
/* 1 when a host, with or without a port ("localhost", "x.localhost", "127.0.0.1:8080",
 * "[::1]:80"), names this machine; NULL counts as loopback (HTTP/1.0 without Host). */
int api_host_is_loopback(const char *host);
/* Parses an API time: epoch milliseconds, or ISO 8601 (date, or date-time with Z or an offset). */
int api_parse_time(const char *text, long long *ms);
/* The HTTP server whose connection figures /metrics adds. */
void api_set_http_server(struct api *api, struct http_server *srv);
/* What POST /api/drain calls (on the loop, after the access check): it must start the drain
 * without stopping the HTTP server at once, so that the request's answer can still leave. */
void api_on_drain(struct api *api, void (*drain)(void *user), void *user);

#endif
