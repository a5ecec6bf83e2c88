/*
 * http_client: outbound HTTP(S) to AI services, on the control loop.
 *
 * One libcurl multi handle driven by the loop's libuv handles (a uv_poll_t
 * per socket, one uv_timer_t), so a hundred concurrent requests cost no
 * thread. Response bodies stream to the caller as they arrive. Connections
 * stay alive in the multi handle's cache and are reused by later requests
 * to the same host; http_client_keep_warm() opens one at start and keeps it
 * open, so a turn does not pay a TCP and TLS handshake.
 *
 * Every function must be called on the loop's thread.
 *
 * A request that fails before any byte of a successful body has reached the
 * caller is retried once (connection failures, timeouts, 408, 429, 5xx); a
 * 429's Retry-After is honoured up to HTTP_RETRY_AFTER_MAX_MS. A request
 * marked no_retry is sent at most once, whatever happens.
 *
 * A Retry-After on a 429 or 503 also holds every other request to the same
 * service at the same host until it runs out: a request started during the
 * hold waits for its end when that is at most HTTP_RETRY_AFTER_MAX_MS away,
 * and otherwise ends at once with rc = -EAGAIN, without being sent.
 *
 * API keys travel in request headers and are never logged: the client
 * never turns on libcurl's verbose output, and http_redact_header() masks
 * the credential headers services use wherever a header is shown.
 */
#ifndef TS_NET_HTTP_CLIENT_H
#define TS_NET_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"

#define HTTP_MAX_HEADERS 16
#define HTTP_RETRY_AFTER_MAX_MS 3000
#define HTTP_RETRY_DELAY_MS 200    /* before retrying a failure that named no delay */
#define HTTP_ERROR_BODY_MAX 16384  /* kept of an error response's body */

struct http_client_opts {
  int connect_timeout_ms;
  int first_byte_timeout_ms; /* request sent -> first byte of the response body */
  int total_timeout_ms;
  int max_connections;       /* kept alive in the cache; 0 = 16 */
  int keep_warm_ms;          /* idle time after which a warm connection is touched; 0 = 25000 */
};

void http_client_opts_from_config(struct http_client_opts *o, const struct config *cfg);

struct http_client;

int http_client_new(struct http_client **out, uv_loop_t *loop, const struct http_client_opts *o);

/*
 * Ends every transfer (its `done` runs with rc = -ESHUTDOWN, so owners can
 * let go of what they tied to it), closes connections and the loop handles;
 * the client frees itself once they have closed.
 */
void http_client_free(struct http_client *c);

/*
 * A request. Strings are heap memory owned by the request until
 * http_start() takes them; http_request_clear() frees what is left.
 */
struct http_request {
  const char *method;   /* "POST", "GET", "HEAD"; static */
  const char *service;  /* names the service in messages, e.g. "OpenAI chat completions"; static */
  char *url;
  char *headers[HTTP_MAX_HEADERS + 1]; /* "Name: value", NULL-terminated */
  char *body;
  size_t body_len;
  /* Optional, per request (0 = the client's settings): */
  int timeout_ms; /* each attempt within this, connecting included: it replaces the client's
                     first-byte and total timeouts, and cuts its connect timeout if longer */
  int no_retry;   /* never sent twice: the request has effects (a webhook that books something) */
};

void http_request_clear(struct http_request *r);
int http_request_set_url(struct http_request *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int http_request_add_header(struct http_request *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Looks a header up by name (case-insensitive); returns its value or NULL. */
const char *http_request_header(const struct http_request *r, const char *name);

/* How a request ended. */
struct http_result {
  int rc;              /* 0: a whole response arrived (any status); negative errno otherwise
                          (-EAGAIN: not sent, the service's Retry-After has long to run) */
  long status;         /* HTTP status, 0 if none arrived */
  const char *message; /* rc != 0: what went wrong, naming the service; never a credential */
  const char *body;    /* status outside 2xx: the start of the error body (NUL-terminated) */
  size_t body_len;
  int retry_after_ms;  /* from Retry-After, -1 if absent; rc -EAGAIN: what is left of it */
  int attempts;
};

struct http_callbacks {
  /* A 2xx response's headers are in; non-zero stops the transfer (rc = -ECANCELED). */
  int (*head)(void *user, long status, const char *content_type);
  /* Bytes of a 2xx body, as they come; non-zero stops the transfer (rc = -ECANCELED). */
  int (*data)(void *user, const char *buf, size_t len);
  /* Exactly once, unless the transfer was cancelled. */
  void (*done)(void *user, const struct http_result *r);
  void *user;
};

struct http_transfer;

/*
 * Starts a request; takes ownership of req's strings (req is cleared) even
 * on failure. Returns 0 or a negative errno; callbacks never run inside.
 */
int http_start(struct http_client *c, struct http_request *req, const struct http_callbacks *cb,
               struct http_transfer **out);

/* Aborts at once, closing the connection; no callback runs afterwards. */
void http_cancel(struct http_transfer *t);

/*
 * Opens a connection to the origin of `url` now and keeps one open there:
 * when no request has gone to it for keep_warm_ms, a HEAD request touches
 * it again. Failures are logged, never fatal.
 */
int http_client_keep_warm(struct http_client *c, const char *url, const char *service);

/* Requests started and connections opened, for tests and metrics. */
struct http_client_stats {
  uint64_t requests, retries, connects;
};
void http_client_stats(const struct http_client *c, struct http_client_stats *out);

struct prom_buf;
/*
 * Per service host (host[:port] of the URL): requests in flight, duration
 * by outcome (ok, http_error, timeout, error), time to first byte,
 * cancellations, retries, connections. Keep-warm requests count only as
 * connections. On the loop's thread, like everything here.
 */
void http_client_write_metrics(const struct http_client *c, struct prom_buf *b);

/*
 * Copies one "Name: value" header line into out, masking the value when the
 * name is a credential (Authorization, x-api-key, api-key, xi-api-key,
 * Ocp-Apim-Subscription-Key). Returns 1 if masked, 0 if not.
 */
int http_redact_header(const char *line, char *out, size_t outlen);

/* The loop the client runs on, for callers that keep timers of their own. */
uv_loop_t *http_client_loop(const struct http_client *c);

/*
 * The value of a header of the response being received (by name,
 * case-insensitive), or NULL. Only inside the transfer's head, data or done
 * callbacks; the string lasts until the callback returns. For protocols
 * that keep state in response headers (an MCP session id).
 */
const char *http_transfer_header(struct http_transfer *t, const char *name);

#endif
