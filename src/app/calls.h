/*
 * calls: the calls in progress, as the control loop sees them.
 *
 * Turns signaling messages into media-worker commands and worker events
 * into signaling messages: an offer becomes a call on the least-loaded
 * worker and an answer; a dropped WebSocket detaches the call, which waits
 * for a resume; a worker's "ended" becomes an `end` message.
 */
#ifndef TS_APP_CALLS_H
#define TS_APP_CALLS_H

#include <jansson.h>
#include <uv.h>

#include "core/config.h"
#include "net/http_server.h"

struct calls;

struct store;
/* `store` (NULL when records are off) gets every call's record; the caller keeps it open
 * until calls_free. */
int calls_new(struct calls **out, uv_loop_t *loop, const struct config *cfg, struct store *store,
              char *err, size_t errlen);
/* Ends every call (telling each page) and stops the media workers. */
void calls_shutdown(struct calls *calls);
/* Shuts down if not done yet and frees everything; the loop must run afterwards. */
void calls_free(struct calls *calls);

void calls_offer(struct calls *calls, struct ws_conn *conn, json_t *msg);
void calls_hangup(struct calls *calls, struct ws_conn *conn);
void calls_resume(struct calls *calls, struct ws_conn *conn, json_t *msg);
/* The connection is going away; its call (if any) waits for a resume. */
void calls_detach(struct calls *calls, struct ws_conn *conn);

int calls_count(const struct calls *calls);

/* What the calls run on, for /metrics; NULL where the agent has none (echo: no engines). */
struct media_pool *calls_pool(const struct calls *calls);
struct http_client *calls_http(const struct calls *calls);
struct engines *calls_engines(const struct calls *calls);

struct prom_buf;
/* Calls started and ended (by reason), turns, and every latency figure as a histogram. */
void calls_write_metrics(const struct calls *calls, struct prom_buf *b);

/* Sends a JSON message and drops the reference. */
void calls_send(struct ws_conn *conn, json_t *msg);
void calls_send_error(struct ws_conn *conn, const char *code, const char *message);

#endif
