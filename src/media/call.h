/*
 * call: one WebRTC audio call on a media worker: ICE-lite, DTLS-SRTP,
 * RTP/RTCP, the jitter buffer and Opus both ways, 20 ms pacing, and the
 * agent that listens and speaks.
 *
 * A call is created on the control thread (so that its ICE credentials can
 * go into the answer at once), then handed to its worker; from then on only
 * that worker's thread touches it.
 */
#ifndef TS_MEDIA_CALL_H
#define TS_MEDIA_CALL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "media/worker.h"

struct dtls_ctx;
struct media_call;
struct recorder;

typedef void (*media_send_fn)(void *user, const uint8_t *data, size_t len,
                              const struct sockaddr *to);
/* An agent event for the page: ownership of the malloc'd JSON text passes. */
typedef void (*media_event_fn)(void *user, const char *call_id, char *json);

/* What a call is answered by (media/agent.h), and what its agent is made from. */
struct media_agent_env {
  const struct agent_ops *ops;
  const struct config *cfg;
  struct engines *engines; /* NULL for an agent that needs none */
  struct mailbox *home; /* the worker's mailbox, where engine results arrive */
  struct recorder *recorder; /* record_calls on: the pool's recorder (media/recorder.h), else NULL */
};

/* A new call, its agent made from `agent` (required); NULL when either cannot be made. */
struct media_call *media_call_new(const struct media_call_params *p, struct dtls_ctx *dtls,
                                  const struct media_agent_env *agent, uint64_t now_ms);
void media_call_free(struct media_call *c);

/* Where the call's packets and events go; set by the worker when it adopts the call. */
void media_call_attach(struct media_call *c, media_send_fn send, media_event_fn event, void *user);

const char *media_call_id(const struct media_call *c);
const char *media_call_ufrag(const struct media_call *c);
const char *media_call_pwd(const struct media_call *c);

/* A STUN packet whose USERNAME named this call. Returns 1 when it was an
 * authenticated check, so its source address now belongs to the call. */
int media_call_on_stun(struct media_call *c, const uint8_t *pkt, size_t len,
                       const struct sockaddr *from, uint64_t now_ms);
/* A DTLS, RTP or RTCP packet from an address that belongs to this call. */
void media_call_on_packet(struct media_call *c, uint8_t *pkt, size_t len,
                          const struct sockaddr *from, uint64_t now_ms);
/* Every 20 ms: one frame out, timers, reports. */
void media_call_tick(struct media_call *c, uint64_t now_ms);
/* Every 20 ms, after every call's media_call_tick: one frame heard. */
void media_call_tick_in(struct media_call *c);

/* Running totals of what a call's media did, for the worker's metrics. */
struct media_counters {
  uint64_t rtp_received, rtp_lost, rtp_late, rtp_sent; /* RTP from (sent: to) the caller */
  uint64_t concealed, recovered, dropped;              /* jitter buffer frames */
  uint64_t srtp_failures;                              /* SRTP/SRTCP packets refused */
};
/* Adds to `to` what the call counted since it was last asked; on its worker's thread. */
void media_call_take_counters(struct media_call *c, struct media_counters *to);

/* The call's media so far, for its record. */
void media_call_get_summary(const struct media_call *c, struct media_call_summary *out);

/* Non-NULL once the call has ended by itself (ICE timeout, DTLS failure...). */
const char *media_call_end_reason(const struct media_call *c);
/* 1 exactly once, on the tick after media first flows. */
int media_call_take_connected(struct media_call *c);

/* ICE restart: takes the peer's new credentials, makes new local ones. */
int media_call_restart_ice(struct media_call *c, const char *remote_ufrag,
                           const char *remote_pwd, uint64_t now_ms);

#endif
