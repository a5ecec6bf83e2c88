/*
 * loadgen: many scripted calls from one event loop, measured from the
 * client side.
 *
 * Each call speaks an utterance, waits for the reply, listens to it and
 * pauses, again and again; every few turns it speaks while the reply is
 * playing (a barge-in). What it measures is described with the result
 * fields below and in docs/bench.md.
 */
#ifndef TS_CLIENT_LOADGEN_H
#define TS_CLIENT_LOADGEN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "client/stats.h"
#include "client/url.h"

/* The utterance every call speaks: trimmed to its voiced part, encoded once. */
struct loadgen_speech;
/* pcm: 48 kHz mono. -EINVAL when it holds no speech. */
int loadgen_speech_new(struct loadgen_speech **out, const int16_t *pcm, size_t n);
/* A built-in utterance: 1.6 s of a voiced, syllable-like signal. */
int loadgen_speech_default(struct loadgen_speech **out);
void loadgen_speech_free(struct loadgen_speech *s);
double loadgen_speech_seconds(const struct loadgen_speech *s);

struct loadgen_params {
  const struct ws_url *url;
  int calls;
  double duration_s;
  const struct loadgen_speech *speech;
  double echo_gain;     /* > 0: speakerphone echo */
  int echo_delay_ms;
  double echo_gain_later; /* > 0: the echo's gain from the middle of each call on */
  int barge_every;      /* every n-th turn is a barge-in; 0 = never */
  int insecure;
  const char *token;    /* call token sent with every offer, or NULL */
  pid_t server_pid;     /* > 0: sample its CPU and memory */
  unsigned seed;
  int quiet;
};

#define LOADGEN_MAX_FAILURES 5

struct loadgen_result {
  int calls, connected, failed;
  int connected_at_measure; /* connected when the measured window opened: all, for N to be concurrent */
  char failures[LOADGEN_MAX_FAILURES][160]; /* distinct reasons, first ones */
  int nfailures;
  struct stats_samples setup_ms;        /* start -> media connected */
  struct stats_samples v2v_raw_ms;      /* end of utterance -> first voiced reply frame */
  struct stats_samples v2v_adjusted_ms; /* minus the server's endpoint_ms */
  struct stats_samples v2v_server_ms;   /* as the server reported it */
  struct stats_samples barge_stop_ms;   /* barge-in onset -> reply audio stopped */
  uint64_t turns, unanswered, barge_attempts, barge_stopped, false_interruptions;
  uint64_t expected, received, late, sent;
  struct stats_hist *jitter;            /* |inter-arrival - 20 ms| */
  /* server, when server_pid was given (else cpu_percent < 0) */
  double server_cpu_percent, client_cpu_percent;
  /* RSS when the run began, and its peak during the run: the largest sample
   * or, when the server's high-water mark (VmHWM) rose during the run, that
   * mark, which no sampling interval can miss. */
  long server_rss_base_kb, server_rss_peak_kb;
  double measured_s;                    /* the window CPU was measured over */
};

/* Runs the load to completion. 0, or a negative errno when it could not start. */
int loadgen_run(const struct loadgen_params *p, struct loadgen_result *r, char *err,
                size_t errlen);
void loadgen_result_free(struct loadgen_result *r);

#endif
