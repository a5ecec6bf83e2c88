/*
 * signaling: the JSON protocol spoken on /ws (docs/protocol.md).
 *
 * Parses each text message, checks it, and dispatches it by "type"; replies
 * and events go back as JSON text messages on the same connection.
 */
#ifndef TS_APP_SIGNALING_H
#define TS_APP_SIGNALING_H

#include <uv.h>

#include "core/config.h"
#include "net/http_server.h"

struct signaling;

struct store;
/* Also starts the media workers; `err` says what failed. Calls are recorded in `store`
 * (NULL: not recorded), which must stay open until signaling_free. */
int signaling_new(struct signaling **out, uv_loop_t *loop, const struct config *cfg,
                  struct store *store, char *err, size_t errlen);
/* Ends every call, telling each page and closing its connection once that is
 * sent, and stops the media workers; later messages are ignored. */
void signaling_shutdown(struct signaling *sig);
/* WebSocket connections open now (a shutdown waits for the calls' to close). */
unsigned signaling_connections(const struct signaling *sig);
void signaling_free(struct signaling *sig);

/* The WebSocket side of the http_handlers: connects /ws to this module. */
struct http_handlers signaling_handlers(struct signaling *sig);

/* The /healthz JSON: status, version, uptime, connections, calls, CPU time, resident memory;
 * returns its HTTP status: 200, or 503 while the server drains (not ready for new calls). */
int signaling_healthz(struct signaling *sig, char *body, size_t cap);
/* The call registry, for /metrics. */
struct calls *signaling_calls(struct signaling *sig);

#endif
