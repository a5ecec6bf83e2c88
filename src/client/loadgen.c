/*
 * The load generator.
 *
 * All calls live on one libuv loop (client/cloop.c) and are driven by its
 * 20 ms tick: no thread per call. Calls start 10 ms apart, and each waits a
 * random 0.2-2 s before its first turn, so that turns do not line up.
 *
 * The utterance is encoded once; every call sends the same Opus packets
 * (and a pre-encoded silence packet between turns), so a call costs the
 * client one Opus decode per received frame and no encode, unless the
 * speakerphone echo is on, which needs the real mix encoded per call. It
 * is encoded twice, as a browser would code it for the band the server's
 * answer asks for: full band, and wideband for a server whose
 * maxplaybackrate is 16 kHz or less.
 *
 * A call's script, one turn after another:
 *
 *   PAUSE   silence until the next turn is due;
 *   SPEAK   the utterance, frame by frame; its last frame is the end of
 *           the utterance;
 *   WAIT    for the first voiced frame of the reply (15 s, else the turn is
 *           unanswered): voice-to-voice is its arrival minus the end of the
 *           utterance; a `latency` event then gives the adjusted figure;
 *   REPLY   until the reply has been quiet for 700 ms, then PAUSE 0.3-1.5 s;
 *           on a barge-in turn, SPEAK again 800 ms into the reply.
 *
 * Barge-in stop time: from the onset of the barge-in utterance to the last
 * voiced reply frame after it, once the reply has been quiet for 300 ms;
 * a reply still voiced 3 s after the onset was not stopped.
 *
 * Frames are "voiced" above -45 dBFS, decoded on arrival. False
 * interruptions: `reply` events with interrupted=true when this call had no
 * barge-in pending (with --echo, the server mistaking its own voice for the
 * caller's).
 */
#include "client/loadgen.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "audio/opus_codec.h"
#include "client/caller.h"
#include "client/cloop.h"
#include "client/events.h"
#include "client/procstat.h"

#define VOICED_DB -45.0
#define START_SPACING_MS 10
#define REPLY_WAIT_MS 15000
#define REPLY_QUIET_MS 700
#define BARGE_AFTER_MS 800
#define BARGE_QUIET_MS 300
#define BARGE_GIVE_UP_MS 3000
#define SAMPLE_MS 500
#define MAX_PACKET 400
#define MEDIA_START_FRAMES 10 /* 200 ms from connected to the first frame */

/* The utterance and a pause in Opus, for one coded band. */
struct coding {
  uint8_t (*opus)[MAX_PACKET];
  uint16_t *len;
  uint8_t silence[MAX_PACKET];
  uint16_t silence_len;
};

struct loadgen_speech {
  int16_t *pcm;
  size_t frames;
  struct coding full, wide; /* wide: for a server that plays 16 kHz or less */
};

enum step { NOT_STARTED, PAUSE, SPEAK, WAIT, REPLY, DONE };

struct lcall {
  struct lg *lg;
  struct caller *caller;
  enum step step;
  uint64_t start_at, started_ms, connected_ms, next_turn_ms;
  size_t frame;
  int turn, barge_turn, ended;
  uint64_t utt_end_ms, reply_start_ms;
  double utt_end;                 /* monotonic ms, when the last frame went out */
  double last_voiced_rx;          /* monotonic ms */
  double barge_onset;             /* > 0 while a barge-in is being measured */
  int barge_pending, awaiting_adjust;
  double last_raw;
  unsigned seed;
};

struct lg {
  struct loadgen_params p;
  struct loadgen_result *r;
  struct cloop l;
  struct lcall *calls;
  int live, started;
  uint64_t t0, next_sample_ms, window_start_ms, window_end_ms;
  /* The time of the tick being run. A late loop runs its missed ticks in a
   * row with their own times, behind the clock; every call time is taken on
   * this one, so that "now - then" never goes negative. */
  uint64_t tick_ms;
  double server_cpu0, client_cpu0;
  long server_hwm0; /* the server's VmHWM when the run began */
  int window_open, window_closed;
};

/* --- speech -------------------------------------------------------------------- */

static double frame_db(const int16_t *pcm) {
  double s = 0;
  for (int i = 0; i < OPUSC_FRAME; i++) s += (double)pcm[i] * pcm[i];
  return 10 * log10(s / OPUSC_FRAME / (32768.0 * 32768.0) + 1e-12);
}

void loadgen_speech_free(struct loadgen_speech *s) {
  if (!s) return;
  free(s->pcm);
  free(s->full.opus);
  free(s->full.len);
  free(s->wide.opus);
  free(s->wide.len);
  free(s);
}

static struct opusc_enc *mic_encoder(int max_rate) {
  struct opusc_enc *enc = opusc_enc_new(OPUSC_MIC, 0);
  if (enc) opusc_enc_set_max_rate(enc, max_rate);
  return enc;
}

static int encode_all(const struct loadgen_speech *s, struct coding *k, int max_rate) {
  k->opus = malloc(s->frames * sizeof *k->opus);
  k->len = malloc(s->frames * sizeof *k->len);
  struct opusc_enc *enc = k->opus && k->len ? mic_encoder(max_rate) : NULL;
  if (!enc) return -ENOMEM;
  int16_t zeros[OPUSC_FRAME] = {0};
  int rc = 0;
  for (size_t i = 0; i < s->frames && rc == 0; i++) {
    int n = opusc_encode(enc, s->pcm + i * OPUSC_FRAME, k->opus[i], MAX_PACKET);
    if (n <= 0) rc = -EIO;
    else k->len[i] = (uint16_t)n;
  }
  opusc_enc_free(enc);
  /* Silence from an encoder that has only ever heard silence: a packet
   * taken right after speech would carry the tail of the last frame, and
   * repeated, it would sound like a buzz, not a pause. */
  if (rc || !(enc = mic_encoder(max_rate))) return rc ? rc : -ENOMEM;
  for (int i = 0; i < 25 && rc == 0; i++) {
    int n = opusc_encode(enc, zeros, k->silence, MAX_PACKET);
    if (n <= 0) rc = -EIO;
    else k->silence_len = (uint16_t)n;
  }
  opusc_enc_free(enc);
  return rc;
}

int loadgen_speech_new(struct loadgen_speech **out, const int16_t *pcm, size_t n) {
  size_t frames = n / OPUSC_FRAME, first = frames, last = 0;
  for (size_t i = 0; i < frames; i++)
    if (frame_db(pcm + i * OPUSC_FRAME) > VOICED_DB) {
      if (first == frames) first = i;
      last = i;
    }
  if (first == frames) return -EINVAL;
  struct loadgen_speech *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  s->frames = last - first + 1;
  s->pcm = malloc(s->frames * OPUSC_FRAME * sizeof(int16_t));
  if (!s->pcm) {
    loadgen_speech_free(s);
    return -ENOMEM;
  }
  memcpy(s->pcm, pcm + first * OPUSC_FRAME, s->frames * OPUSC_FRAME * sizeof(int16_t));
  int rc = encode_all(s, &s->full, 0);
  if (rc == 0) rc = encode_all(s, &s->wide, 16000);
  if (rc) {
    loadgen_speech_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

int loadgen_speech_default(struct loadgen_speech **out) {
  /* Four "syllables" a second on a 140 Hz voice with falling harmonics. */
  size_t n = (size_t)(1.6 * OPUSC_RATE);
  int16_t *pcm = malloc(n * sizeof *pcm);
  if (!pcm) return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    double t = (double)i / OPUSC_RATE, v = 0;
    for (int h = 1; h <= 8; h++) v += sin(2 * M_PI * 140.0 * h * t) / h;
    double env = 0.55 + 0.45 * sin(2 * M_PI * 4.0 * t - M_PI / 2);
    pcm[i] = (int16_t)(v * env * 5000.0);
  }
  int rc = loadgen_speech_new(out, pcm, n);
  free(pcm);
  return rc;
}

double loadgen_speech_seconds(const struct loadgen_speech *s) {
  return (double)s->frames * 0.02;
}

/* --- measurements ------------------------------------------------------------------ */

static double mono_ms(void) { return (double)uv_hrtime() / 1e6; }

static double rand_ms(struct lcall *c, int lo, int hi) {
  return lo + (double)(rand_r(&c->seed) % (unsigned)(hi - lo + 1));
}

static void note_failure(struct lg *lg, const char *why) {
  struct loadgen_result *r = lg->r;
  for (int i = 0; i < r->nfailures; i++)
    if (strcmp(r->failures[i], why) == 0) return;
  if (r->nfailures < LOADGEN_MAX_FAILURES)
    snprintf(r->failures[r->nfailures++], sizeof r->failures[0], "%s", why);
}

static void on_rx(void *user, const struct peer_rx *rx) {
  struct lcall *c = user;
  if (rx->level_db <= VOICED_DB) return;
  c->last_voiced_rx = rx->arrival_ms;
  if (c->step != WAIT) return;
  double end = c->utt_end;
  if (rx->arrival_ms < end) return;
  c->step = REPLY;
  c->reply_start_ms = c->lg->tick_ms;
  if (!c->barge_turn) {
    c->last_raw = rx->arrival_ms - end;
    stats_samples_add(&c->lg->r->v2v_raw_ms, c->last_raw);
    c->awaiting_adjust = 1;
  }
}

static void on_message(void *user, const char *type, json_t *msg) {
  struct lcall *c = user;
  struct loadgen_result *r = c->lg->r;
  struct events_latency lat;
  if (events_latency(msg, &lat) == 0) {
    if (lat.voice_to_voice_ms >= 0 && lat.barge_in_ms < 0)
      stats_samples_add(&r->v2v_server_ms, lat.voice_to_voice_ms);
    if (c->awaiting_adjust && lat.endpoint_ms >= 0 && lat.barge_in_ms < 0) {
      stats_samples_add(&r->v2v_adjusted_ms, c->last_raw - lat.endpoint_ms);
      c->awaiting_adjust = 0;
    }
    return;
  }
  int interrupted = events_reply_interrupted(msg);
  if (interrupted == 1 && !c->barge_pending) r->false_interruptions++;
  if (interrupted >= 0) c->barge_pending = 0;
}

static void on_connected(void *user) {
  struct lcall *c = user;
  c->connected_ms = c->lg->tick_ms;
  c->lg->r->connected++;
  stats_samples_add(&c->lg->r->setup_ms, (double)(c->connected_ms - c->started_ms));
  c->step = PAUSE;
  c->next_turn_ms = c->connected_ms + (uint64_t)rand_ms(c, 200, 2000);
}

/*
 * Frames a connected call should have received: its sequence numbers say
 * how many the server sent, but not the ones it never sent. A server that
 * connects a call and then sends nothing, or stops early, would otherwise
 * look loss-free; so the expectation is also the call's time in media,
 * less MEDIA_START_FRAMES for the first frame to come.
 */
static uint64_t frames_expected(const struct lcall *c, const struct peer_counters *n) {
  if (!c->connected_ms) return n->expected;
  uint64_t ms = c->lg->tick_ms - c->connected_ms, by_time = ms / 20;
  by_time = by_time > MEDIA_START_FRAMES ? by_time - MEDIA_START_FRAMES : 0;
  return n->expected > by_time ? n->expected : by_time;
}

static void on_end(void *user, int failed, const char *why) {
  struct lcall *c = user;
  struct lg *lg = c->lg;
  struct peer_counters n;
  caller_counters(c->caller, &n);
  lg->r->expected += frames_expected(c, &n);
  lg->r->received += n.received;
  lg->r->late += n.late;
  lg->r->sent += n.sent;
  if (failed) {
    lg->r->failed++;
    note_failure(lg, why);
  }
  c->step = DONE;
  c->ended = 1;
  if (--lg->live == 0 && lg->started == lg->p.calls) cloop_stop(&lg->l);
}

/* --- the script ---------------------------------------------------------------------- */

static void begin_turn(struct lcall *c, uint64_t now, int barge) {
  c->step = SPEAK;
  c->frame = 0;
  c->turn++;
  c->barge_turn = barge;
  c->lg->r->turns++;
  if (barge) {
    c->barge_onset = mono_ms();
    c->barge_pending = 1;
  }
}

/* A barge-in counts once its outcome is known: one that the end of the
 * call cuts short says nothing about the server. */
static void follow_barge(struct lcall *c) {
  double now = mono_ms();
  if (c->barge_onset <= 0) return;
  if (now - c->last_voiced_rx >= BARGE_QUIET_MS) {
    double stop = c->last_voiced_rx - c->barge_onset;
    stats_samples_add(&c->lg->r->barge_stop_ms, stop > 0 ? stop : 0);
    c->lg->r->barge_attempts++;
    c->lg->r->barge_stopped++;
    c->barge_onset = 0;
  } else if (now - c->barge_onset > BARGE_GIVE_UP_MS) {
    c->lg->r->barge_attempts++; /* not stopped */
    c->barge_onset = 0;
  }
}

static void script(struct lcall *c, uint64_t now) {
  const struct loadgen_speech *sp = c->lg->p.speech;
  int barge_next = c->lg->p.barge_every > 0 && (c->turn + 1) % c->lg->p.barge_every == 0;
  follow_barge(c);
  switch (c->step) {
  case PAUSE:
    if (now >= c->next_turn_ms) begin_turn(c, now, 0);
    break;
  case WAIT:
    if (now - c->utt_end_ms > REPLY_WAIT_MS) {
      c->lg->r->unanswered++;
      c->step = PAUSE;
      c->next_turn_ms = now + (uint64_t)rand_ms(c, 300, 1500);
    }
    break;
  case REPLY:
    if (barge_next && !c->barge_turn && now - c->reply_start_ms >= BARGE_AFTER_MS) {
      begin_turn(c, now, 1);
    } else if (mono_ms() - c->last_voiced_rx >= REPLY_QUIET_MS) {
      c->step = PAUSE;
      c->next_turn_ms = now + (uint64_t)rand_ms(c, 300, 1500);
    }
    break;
  default:
    break;
  }
  (void)sp;
}

static void send_frame(struct lcall *c, uint64_t now) {
  const struct loadgen_speech *sp = c->lg->p.speech;
  int max_rate = peer_max_playback_rate(caller_peer(c->caller));
  const struct coding *k = max_rate && max_rate <= 16000 ? &sp->wide : &sp->full;
  if (c->step != SPEAK) {
    caller_tick(c->caller, now, NULL, k->silence, k->silence_len);
    return;
  }
  size_t i = c->frame++;
  caller_tick(c->caller, now, sp->pcm + i * OPUSC_FRAME, k->opus[i], k->len[i]);
  if (c->frame >= sp->frames) {
    c->utt_end_ms = now;
    c->utt_end = mono_ms();
    c->step = WAIT;
  }
}

/* --- the run ----------------------------------------------------------------------------- */

static void start_call(struct lg *lg, struct lcall *c, uint64_t now) {
  static char ip[64];
  if (!ip[0]) caller_local_ip(lg->p.url->host, ip, sizeof ip);
  struct caller_params cp = {
      .ws = lg->l.ws, .url = lg->p.url, .user = c, .on_message = on_message,
      .on_connected = on_connected, .on_end = on_end, .answer_timeout_ms = 15000,
      .token = lg->p.token,
      .peer = {.dtls = lg->l.dtls, .fingerprint = cloop_fingerprint(&lg->l),
               .local_ip = ip[0] ? ip : NULL, .echo_gain = lg->p.echo_gain,
               .echo_delay_ms = lg->p.echo_delay_ms, .echo_gain_later = lg->p.echo_gain_later,
               .echo_change_ms = (int)(lg->p.duration_s * 500), .connect_timeout_ms = 15000,
               .jitter_hist = lg->r->jitter, .user = c, .on_rx = on_rx}};
  char err[300];
  c->started_ms = now;
  c->step = NOT_STARTED;
  lg->started++;
  if (caller_start(&c->caller, &lg->l.loop, &cp, err, sizeof err)) {
    lg->r->failed++;
    note_failure(lg, err);
    c->ended = 1;
    c->step = DONE;
    if (lg->live == 0 && lg->started == lg->p.calls) cloop_stop(&lg->l);
    return;
  }
  lg->live++;
}

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

/* A peak between two samples shows in the server's high-water mark, once
 * that has risen above where it stood when the run began (before, it may
 * be an earlier run's). */
static void note_peak(struct lg *lg, const struct procstat *ps) {
  long peak = ps->rss_kb;
  if (ps->hwm_kb > lg->server_hwm0 && ps->hwm_kb > peak) peak = ps->hwm_kb;
  if (peak > lg->r->server_rss_peak_kb) lg->r->server_rss_peak_kb = peak;
}

/*
 * CPU is measured over the steady part of the run: from when every call
 * has had time to connect until the first call's duration runs out.
 */

static void sample(struct lg *lg, uint64_t now) {
  struct procstat ps;
  int have = lg->p.server_pid > 0 && procstat_read(lg->p.server_pid, &ps) == 0;
  if (have) note_peak(lg, &ps);
  if (!lg->window_open && now >= lg->window_start_ms) {
    lg->window_open = 1;
    lg->r->connected_at_measure = lg->r->connected;
    lg->server_cpu0 = have ? ps.cpu_s : -1;
    lg->client_cpu0 = self_cpu_s();
    lg->window_start_ms = now;
  } else if (lg->window_open && !lg->window_closed && now >= lg->window_end_ms) {
    lg->window_closed = 1;
    double secs = (double)(now - lg->window_start_ms) / 1000.0;
    lg->r->measured_s = secs;
    if (have && lg->server_cpu0 >= 0) lg->r->server_cpu_percent = 100.0 * (ps.cpu_s - lg->server_cpu0) / secs;
    lg->r->client_cpu_percent = 100.0 * (self_cpu_s() - lg->client_cpu0) / secs;
  }
}

static void on_tick(void *user, uint64_t now) {
  struct lg *lg = user;
  lg->tick_ms = now;
  for (int i = 0; i < lg->p.calls; i++) {
    struct lcall *c = &lg->calls[i];
    if (c->ended) continue;
    if (!c->caller) {
      if (now >= c->start_at) start_call(lg, c, now);
      continue;
    }
    if (c->connected_ms && now - c->connected_ms >= (uint64_t)(lg->p.duration_s * 1000)) {
      caller_hangup(c->caller);
      continue;
    }
    if (c->connected_ms) script(c, now);
    send_frame(c, now);
  }
  if (now >= lg->next_sample_ms) {
    sample(lg, now);
    lg->next_sample_ms = now + SAMPLE_MS;
  }
}

static void on_signal(void *user, int signum) {
  struct lg *lg = user;
  for (int i = 0; i < lg->p.calls; i++) {
    struct lcall *c = &lg->calls[i];
    if (c->caller && !c->ended) caller_hangup(c->caller);
    if (!c->caller) c->ended = 1, lg->started++, c->step = DONE;
  }
  if (lg->live == 0) cloop_stop(&lg->l);
}

static void result_init(struct loadgen_result *r, int calls) {
  memset(r, 0, sizeof *r);
  r->calls = calls;
  stats_samples_init(&r->setup_ms);
  stats_samples_init(&r->v2v_raw_ms);
  stats_samples_init(&r->v2v_adjusted_ms);
  stats_samples_init(&r->v2v_server_ms);
  stats_samples_init(&r->barge_stop_ms);
  r->server_cpu_percent = r->client_cpu_percent = -1;
}

void loadgen_result_free(struct loadgen_result *r) {
  stats_samples_free(&r->setup_ms);
  stats_samples_free(&r->v2v_raw_ms);
  stats_samples_free(&r->v2v_adjusted_ms);
  stats_samples_free(&r->v2v_server_ms);
  stats_samples_free(&r->barge_stop_ms);
  stats_hist_free(r->jitter);
  r->jitter = NULL;
}

int loadgen_run(const struct loadgen_params *p, struct loadgen_result *r, char *err,
                size_t errlen) {
  result_init(r, p->calls);
  struct lg *lg = calloc(1, sizeof *lg);
  r->jitter = stats_hist_new();
  if (!lg || !r->jitter || !(lg->calls = calloc((size_t)p->calls, sizeof *lg->calls))) {
    free(lg);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  lg->p = *p;
  lg->r = r;
  int rc = cloop_init(&lg->l, p->insecure, err, errlen);
  if (rc) {
    free(lg->calls);
    free(lg);
    return rc;
  }
  lg->l.user = lg;
  lg->l.on_tick = on_tick;
  lg->l.on_signal = on_signal;
  lg->t0 = cloop_now(&lg->l);
  uint64_t ramp = (uint64_t)p->calls * START_SPACING_MS;
  lg->window_start_ms = lg->t0 + ramp + 2000;
  lg->window_end_ms = lg->t0 + (uint64_t)(p->duration_s * 1000);
  if (lg->window_end_ms < lg->window_start_ms + 1000) lg->window_end_ms = lg->window_start_ms + 1000;
  struct procstat ps;
  if (p->server_pid > 0 && procstat_read(p->server_pid, &ps) == 0) {
    r->server_rss_base_kb = r->server_rss_peak_kb = ps.rss_kb;
    lg->server_hwm0 = ps.hwm_kb;
  }
  for (int i = 0; i < p->calls; i++) {
    lg->calls[i].lg = lg;
    lg->calls[i].start_at = lg->t0 + (uint64_t)i * START_SPACING_MS;
    lg->calls[i].seed = p->seed * 7919u + (unsigned)i;
  }
  cloop_run(&lg->l);
  if (p->server_pid > 0 && procstat_read(p->server_pid, &ps) == 0) note_peak(lg, &ps);
  for (int i = 0; i < p->calls; i++) caller_free(lg->calls[i].caller);
  cloop_free(&lg->l);
  free(lg->calls);
  free(lg);
  return 0;
}
