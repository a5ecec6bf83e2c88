/*
 * calls: the calls in progress, as the control loop sees them.
 *
 * Turns signaling messages into media-worker commands and worker events
 * into signaling messages: an offer becomes a call on the least-loaded
 * worker and an answer; a dropped WebSocket detaches the call, which waits
 * for a resume; a worker's "ended" becomes an `end` message.
 *
 * It also decides who may start a call (call tokens, per-address limits)
 * and how long a call may last (docs/security.md).
 */
#ifndef TS_APP_CALLS_H
#define TS_APP_CALLS_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "net/http_server.h"

struct calls;

struct store;
/* `store` (NULL when records are off) gets every call's record; the caller keeps it open
 * until calls_free. Fails (with `err`) when call tokens are required and call_secret is
 * missing or shorter than 16 characters. */
int calls_new(struct calls **out, uv_loop_t *loop, const struct config *cfg, struct store *store,
              char *err, size_t errlen);
/* Ends every call (telling each page) and stops the media workers. */
void calls_shutdown(struct calls *calls);
/* Shuts down if not done yet and frees everything; the loop must run afterwards. */
void calls_free(struct calls *calls);

/* A new connection, from within ws_open (it reads the upgrade's ?token=). Sets the
 * connection's data, which belongs to this module from now on; -ENOMEM: close it. */
int calls_open(struct calls *calls, struct ws_conn *conn);
void calls_offer(struct calls *calls, struct ws_conn *conn, json_t *msg);
void calls_hangup(struct calls *calls, struct ws_conn *conn);
/* An ice-candidate message: nothing to do (ICE-lite) but to say so when there is no call. */
void calls_candidate(struct calls *calls, struct ws_conn *conn);
void calls_resume(struct calls *calls, struct ws_conn *conn, json_t *msg);
/* The connection is going away; its call (if any) waits for a resume. */
void calls_detach(struct calls *calls, struct ws_conn *conn);

/* 1 when call_auth resolves to token (auto: when listen is not a loopback address). */
int calls_token_auth(const struct config *cfg);
/* Checks per-call settings for a call token: the offer's `config` fields, strictly (an
 * unknown field is an error). 0, or -EINVAL with `err` saying what is wrong. */
int calls_check_settings(const json_t *settings, char *err, size_t errlen);
/*
 * Mints a call token valid for ttl_s seconds from `now` (Unix seconds) with
 * cfg->call_secret, after checking every part: the secret (-ENOKEY when
 * unset or short), ttl_s (1..CALLTOKEN_TTL_MAX), `sub` and `settings`
 * (either may be NULL). 0 with the malloc'd token and its expiry, or a
 * negative errno with `err` fit for whoever asked.
 */
int calls_mint_token(const struct config *cfg, int64_t now, long ttl_s, const char *sub,
                     const json_t *settings, char **token, int64_t *exp, char *err,
                     size_t errlen);

int calls_count(const struct calls *calls);

struct cluster;
/* Cluster mode (docs/cluster.md): new calls may be redirected to other nodes, and a resume
 * of a call held elsewhere finds it. `cluster` (NULL: a single node) outlives the calls' use
 * of it: calls_shutdown before cluster_stop. */
void calls_set_cluster(struct calls *calls, struct cluster *cluster);

/*
 * Draining (docs/deploy.md#draining): from now on no new call is taken, an offer is refused
 * with `busy`, while the calls in progress, and their resume, go on. `on_end` (may be NULL)
 * is called on the loop each time one of them ends, with how many are left; it must not
 * shut the calls down from there. There is no way back: a draining server is on its way out.
 */
void calls_drain(struct calls *calls, void (*on_end)(void *user, int left), void *user);
int calls_draining(const struct calls *calls);

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
