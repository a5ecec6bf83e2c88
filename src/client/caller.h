/*
 * caller: one call from the client side: the signaling WebSocket
 * (docs/protocol.md) and the peer that carries its media.
 *
 * caller_start connects, sends the offer when the socket opens, applies
 * the answer, and reports every server message to the owner. The owner
 * drives it with caller_tick every 20 ms. Whatever happens, on_end is
 * called exactly once, after which the owner calls caller_free.
 */
#ifndef TS_CLIENT_CALLER_H
#define TS_CLIENT_CALLER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "client/peer.h"
#include "client/url.h"
#include "client/ws_client.h"

struct caller;

struct caller_params {
  struct wsc_ctx *ws;
  const struct ws_url *url;
  struct peer_params peer;   /* peer.user and the peer callbacks are passed through */
  const json_t *config;      /* per-call settings for the offer, or NULL */
  const char *token;         /* call token for the offer (call_auth = token), or NULL; copied */
  int answer_timeout_ms;     /* 0 = 10 s */
  void *user;
  /* Every message from the server, parsed, with its type. */
  void (*on_message)(void *user, const char *type, json_t *msg);
  /* Media flows (DTLS finished on our side). */
  void (*on_connected)(void *user);
  /* The call is over: failed = 0 for a normal end (our hangup, the AI's goodbye). */
  void (*on_end)(void *user, int failed, const char *why);
};

int caller_start(struct caller **out, uv_loop_t *loop, const struct caller_params *p, char *err,
                 size_t errlen);
void caller_tick(struct caller *c, uint64_t now_ms, const int16_t *pcm, const uint8_t *opus,
                 size_t opus_len);
/* Ends the call normally: hangup, then the socket closes; on_end follows. */
void caller_hangup(struct caller *c);
void caller_free(struct caller *c);

int caller_connected(const struct caller *c);
const char *caller_call_id(const struct caller *c);
/* The answer's resume_secret, which a `resume` of this call needs; "" before the answer. */
const char *caller_resume_secret(const struct caller *c);
/* The media peer; NULL once the call has ended. */
struct peer *caller_peer(struct caller *c);
/* The peer's counters, live or as they were when the call ended. */
void caller_counters(const struct caller *c, struct peer_counters *out);

/* The address of this machine that routes to `host` (for our host candidate). */
int caller_local_ip(const char *host, char *out, size_t cap);

#endif
