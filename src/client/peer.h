/*
 * peer: the client side of one WebRTC audio call's media, on a libuv loop.
 *
 * Offers Opus with our ICE credentials and DTLS fingerprint (setup:active),
 * takes the answer, runs ICE as the controlling agent, DTLS as the client,
 * then SRTP both ways. The owner calls peer_tick() every 20 ms with what
 * the microphone says; received packets are measured on arrival (their
 * kernel receive time), decoded, and optionally played out through a
 * jitter buffer, whose output can also be mixed back into the microphone
 * (a speakerphone's echo).
 */
#ifndef TS_CLIENT_PEER_H
#define TS_CLIENT_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "audio/opus_codec.h"

struct dtls_ctx;
struct stats_hist;
struct peer;

enum peer_state { PEER_NEW, PEER_CHECKING, PEER_DTLS, PEER_CONNECTED, PEER_FAILED };

/* One received RTP packet, as measured on arrival. */
struct peer_rx {
  double arrival_ms;   /* monotonic clock (uv_hrtime), from the kernel's receive stamp */
  double level_db;     /* of the decoded frame, dBFS */
  uint16_t seq;
  int late;            /* more than PEER_LATE_MS behind its schedule */
};

#define PEER_LATE_MS 60.0

struct peer_params {
  struct dtls_ctx *dtls;       /* client role; shared by many peers on this thread */
  const char *fingerprint;     /* sha-256 of dtls's certificate */
  const char *local_ip;        /* host candidate to offer; NULL offers none */
  int playout;                 /* decode through a jitter buffer, one frame per tick */
  double echo_gain;            /* > 0: mix what is played back into the microphone */
  int echo_delay_ms;
  /* > 0: the echo's gain becomes this after echo_change_ms of the call's
   * audio, over 200 ms (a caller turning the volume up or down) */
  double echo_gain_later;
  int echo_change_ms;
  int connect_timeout_ms;      /* ICE + DTLS; 0 = 10 s */
  /* Send-side impairment, for recognition benches: each RTP packet is lost
   * with probability loss_pct / 100, or held back 0..jitter_ms (sent at the
   * first tick after that, so it may overtake or be overtaken); `seed`
   * makes a run repeatable (0: a fixed default). */
  double loss_pct;
  int jitter_ms;
  uint32_t seed;
  struct stats_hist *jitter_hist; /* optional: |inter-arrival - 20 ms| of every packet */
  void *user;
  void (*on_rx)(void *user, const struct peer_rx *rx);
  /* Every tick once connected: the played-out frame (NULL while nothing plays). */
  void (*on_playout)(void *user, const int16_t *pcm);
};

struct peer_counters {
  uint64_t sent, received, expected, late, decode_errors;
  double jitter_max_ms;
};

int peer_new(struct peer **out, uv_loop_t *loop, const struct peer_params *p, char *err,
             size_t errlen);
/* Closes the socket; the peer is freed when libuv has let go of it. */
void peer_close(struct peer *p);

/* The offer, malloc'd, the caller's to free. */
int peer_offer(struct peer *p, char **sdp);
/* The answer: starts ICE. -EBADMSG with `err` saying why it cannot be used. */
int peer_answer(struct peer *p, const char *sdp, char *err, size_t errlen);

/*
 * Every 20 ms. Before the call connects this drives ICE and DTLS timers;
 * after, it sends one frame: `opus` as it is when given (pre-encoded, and no
 * echo to mix in), else `pcm` (OPUSC_FRAME samples, NULL = silence) mixed
 * with the echo and encoded.
 */
void peer_tick(struct peer *p, uint64_t now_ms, const int16_t *pcm, const uint8_t *opus,
               size_t opus_len);

enum peer_state peer_state(const struct peer *p);
/* The answer's maxplaybackrate: code the microphone for at most this rate; 0 = the full band. */
int peer_max_playback_rate(const struct peer *p);
/* Why the peer failed. */
const char *peer_error(const struct peer *p);
void peer_counters(const struct peer *p, struct peer_counters *c);
int peer_local_port(const struct peer *p);

#endif
