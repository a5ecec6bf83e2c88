/*
 * Acoustic echo cancellation for a call whose far end is us.
 *
 * A browser on a speakerphone sends back what we played, 100-500 ms later,
 * quieter and coloured by the loudspeaker, the room and the microphone.
 * Unlike a phone's own canceller we do not know that delay: it is the sum of
 * the network, two jitter buffers and the browser's audio stack. So the
 * work is split in two:
 *
 *   delay: every 5 ms block of what we sent and of what we received gets a
 *     log-energy value. Every 200 ms, while we have been talking, the last
 *     2 s of received envelope is correlated against the sent envelope at
 *     every lag up to max_delay_ms; a clear peak is the echo path delay.
 *     Speech envelopes are spiky enough (syllables) that the peak is sharp.
 *     The caller's voice is no echo of ours but correlates with it all the
 *     same (speech answers speech), so once the delay is sure the blocks it
 *     cannot explain are left out, and a far-off lag must win repeatedly
 *     before it replaces the delay: double talk teaches the estimator
 *     nothing, as it teaches a canceller's filter nothing. Loud blocks
 *     after longer than any echo path of our silence (the question before
 *     our first reply) are left out too, so the first estimate comes from
 *     the first half second of our speech, not once the question is 2 s old.
 *   cancellation: the sent audio, delayed by the estimate less a margin, is
 *     the reference for speexdsp's adaptive echo canceller (MDF), whose
 *     filter spans TAIL_MS: enough for the estimate's error and the
 *     colouring, short enough to be cheap and converge quickly. speexdsp's
 *     preprocessor then suppresses the residual the filter leaves.
 *
 * The module also says how loud the echo left in each frame may be, so the
 * VAD does not mistake it for the caller: the reference level around the
 * echo path delay plus the coupling from reference to output, tracked as a
 * low percentile of their difference while we talk (the caller talking too
 * can only raise the difference, so the tracker rises slowly and falls
 * quickly). That coupling holds only for the echo path the filter was
 * fitted to, so from the start of each of our talkspurts (when a jitter
 * buffer may have moved the echo) until the filter has been seen taking
 * the echo off again, the level is also at least the uncancelled echo,
 * from anywhere near the delay. A filter just (re)started takes nothing off
 * yet: its coupling starts at the echo's return measured over the last 2 s
 * at the new delay, not at the worst case, so a caller talking over our
 * first reply is heard as soon as the delay is found; and an output louder
 * than the microphone holds what the filter itself added, which counts as
 * echo. Until the delay is known, the estimate is
 * the loudest reference of the last max_delay_ms plus a blind coupling: the
 * loudest ratio of captured to sent level seen from 2 s to 0.5 s ago, over
 * at least 1 s of our speech (longer than any echo path), while we talked
 * (6 dB below the reference when there is no such history yet, so the echo
 * of the first words never counts as the caller). Most callers' browsers cancel
 * the echo themselves, and then no delay is ever found; the blind coupling
 * then falls to the room's noise and the caller can interrupt at normal
 * speaking level, while leaving out the last half second keeps a caller who
 * has just begun to talk over us from masking their own voice.
 *
 * The streams are aligned by sample count: the n-th sample captured is
 * compared with the n-th sample played, which holds as long as both are
 * fed every 20 ms from the start of the call.
 *
 * speexdsp's canceller and preprocessor hold 135 KB between them (the
 * filter's partitions, their spectra, the two-path weights), most of a
 * call's echo-cancelling memory, and they do nothing until an echo path
 * delay is known. So they are made then, when the canceller is first aimed
 * (it would have been reset there anyway): a call whose browser cancels its
 * own echo, as most do, never holds them. Should that allocation fail, the
 * frames pass through as before it, and the next estimate tries again.
 */
#include "audio/aec.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <speex/speex_echo.h>
#include <speex/speex_preprocess.h>

#define BLOCK 80                          /* 5 ms envelope blocks */
#define BLOCK_MS 5
#define BLOCKS_PER_FRAME (AEC_FRAME / BLOCK)
#define ENV_WIN 400                       /* 2 s of blocks correlated */
#define ESTIMATE_EVERY 10                 /* frames between delay estimates */
#define TAIL_MS 120                       /* echo canceller filter length */
#define PRE_MS 20                         /* reference starts this much before the estimate */
#define FAR_SLACK_MS 100                  /* sent audio kept beyond max_delay_ms: the reference
                                             is read at most max_delay_ms back from the frame
                                             captured, which trails the frame sent by a tick or two */
#define MIN_CORR 0.45                     /* a weaker peak is no estimate */
#define ACTIVE_DB -55.0                   /* far blocks louder than this count as talking */
#define FLOOR_DB -80.0                    /* envelopes are clipped here */
#define LEVELS 81                         /* 1 dB steps from FLOOR_DB to 0 dBFS */
#define SILENT_DB -120.0
#define WORST_COUPLING_DB -6.0            /* echo never louder than the reference less this */
#define RESIDUAL_MARGIN_DB 4.0
#define ENERGY_SMOOTH 0.1
#define COUPLING_FALL 0.05
#define COUPLING_RISE 0.02
#define COUPLING_CREEP 0.002
#define DOUBLE_TALK_DB 6.0
#define BLIND_FRAMES 100                  /* 2 s of blind coupling history */
#define BLIND_RECENT 25                   /* the newest 0.5 s is left out */
#define BLIND_MIN_SEEN 50                 /* 1 s of our speech before it is trusted */
#define TRUST_CORR 0.8                    /* a lag this clear is the echo path for sure */
#define NEAR_TALK_DB 6.0                  /* a block this far over any echo is the caller */
#define NEAR_TALK_SHARE 20                /* a window with more such blocks is mostly the caller */
#define SWITCH_MARGIN 0.05                /* a new lag must beat the current one by this */
#define SWITCH_CONFIRM 3                  /* ... in this many estimates in a row */
#define CLEAR_MARGIN 0.08                 /* ... or once, by this much, over TRUST_CORR */
#define NEAR_LAG_BLOCKS 4                 /* lags this close are the same path (20 ms) */
#define DOUBT_AFTER 15                    /* such windows in a row before the lag is doubted */
#define DRIFT_BLOCKS 20                   /* the echo may have moved this far (100 ms) */
#define SPAN_BLOCKS 4                     /* estimate error and reverberation (20 ms) */
#define RETURN_SHARE 0.8                  /* the echo's return is read this high in its spread */
#define RETURN_MIN_FRAMES 10              /* ... from at least this many frames of our speech */
#define PROVEN_ERLE_DB 10.0               /* the canceller works when it takes this much off */
#define PROVEN_FRAMES 3                   /* ... from this many frames of echo in a row */

struct aec {
  int max_delay;        /* samples */
  int16_t *far;         /* ring of sent samples */
  size_t far_len;
  uint64_t far_pos, near_pos; /* samples played, captured */
  float *far_env, *near_env;  /* rings of block envelopes, dB */
  size_t env_len;
  int delay;            /* samples, -1 unknown */
  double delay_corr;    /* the delay's correlation in the last window that taught anything */
  int cand, cand_n;     /* a different lag, and in how many estimates in a row it won */
  int doubt;            /* estimates in a row that were mostly the caller's voice */
  int align;            /* reference offset in use, samples, -1 none */
  int since_estimate;
  int idle; /* the last frame was passed through */
  double coupling_db, residual_db;
  double out_energy, ref_energy; /* smoothed, while we talk */
  double return_db, near_energy; /* the echo before cancelling: level below the reference */
  int fitted;             /* the filter has learnt from an echo since it was reset */
  int proven, proven_run; /* ... and has been seen to work since our talkspurt began */
  float blind[BLIND_FRAMES];     /* captured minus reference level per frame, dB; NAN = we were quiet */
  int blind_pos;
  SpeexEchoState *echo;
  SpeexPreprocessState *pre;
};

static double to_db(double mean_square) {
  double db = 10 * log10(mean_square / (32768.0 * 32768.0) + 1e-30);
  return db < SILENT_DB ? SILENT_DB : db;
}

static float block_db(const int16_t *x) {
  double s = 0;
  for (int i = 0; i < BLOCK; i++) s += (double)x[i] * x[i];
  double db = to_db(s / BLOCK);
  return (float)(db < FLOOR_DB ? FLOOR_DB : db);
}

int aec_new(struct aec **out, int max_delay_ms) {
  if (!out) return -EINVAL;
  *out = NULL;
  if (max_delay_ms < 20 || max_delay_ms > 1000) return -EINVAL;
  struct aec *a = calloc(1, sizeof *a);
  if (!a) return -ENOMEM;
  a->max_delay = max_delay_ms * AEC_RATE / 1000;
  a->far_len = (size_t)(a->max_delay + FAR_SLACK_MS * AEC_RATE / 1000);
  a->env_len = ENV_WIN + (size_t)(max_delay_ms / BLOCK_MS) + 2 * BLOCKS_PER_FRAME;
  a->far = calloc(a->far_len, sizeof *a->far);
  a->far_env = calloc(a->env_len, sizeof *a->far_env);
  a->near_env = calloc(a->env_len, sizeof *a->near_env);
  if (!a->far || !a->far_env || !a->near_env) {
    aec_free(a);
    return -ENOMEM;
  }
  for (size_t i = 0; i < a->env_len; i++) a->far_env[i] = a->near_env[i] = (float)FLOOR_DB;
  for (int i = 0; i < BLIND_FRAMES; i++) a->blind[i] = NAN;
  a->delay = a->align = a->cand = -1;
  a->coupling_db = a->return_db = WORST_COUPLING_DB;
  a->residual_db = SILENT_DB;
  *out = a;
  return 0;
}

/* speexdsp's canceller and residual suppressor, made when first aimed. */
static int make_canceller(struct aec *a) {
  if (a->echo) return 0;
  SpeexEchoState *echo = speex_echo_state_init(AEC_FRAME, TAIL_MS * AEC_RATE / 1000);
  SpeexPreprocessState *pre = speex_preprocess_state_init(AEC_FRAME, AEC_RATE);
  if (!echo || !pre) {
    if (pre) speex_preprocess_state_destroy(pre);
    if (echo) speex_echo_state_destroy(echo);
    return -ENOMEM;
  }
  int rate = AEC_RATE, off = 0, suppress = -40, active = -15;
  speex_echo_ctl(echo, SPEEX_ECHO_SET_SAMPLING_RATE, &rate);
  speex_preprocess_ctl(pre, SPEEX_PREPROCESS_SET_ECHO_STATE, echo);
  speex_preprocess_ctl(pre, SPEEX_PREPROCESS_SET_AGC, &off);
  speex_preprocess_ctl(pre, SPEEX_PREPROCESS_SET_DEREVERB, &off);
  speex_preprocess_ctl(pre, SPEEX_PREPROCESS_SET_ECHO_SUPPRESS, &suppress);
  speex_preprocess_ctl(pre, SPEEX_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE, &active);
  a->echo = echo;
  a->pre = pre;
  return 0;
}

int aec_cancelling(const struct aec *a) { return a && a->echo; }

void aec_free(struct aec *a) {
  if (!a) return;
  if (a->pre) speex_preprocess_state_destroy(a->pre);
  if (a->echo) speex_echo_state_destroy(a->echo);
  free(a->far);
  free(a->far_env);
  free(a->near_env);
  free(a);
}

void aec_playback(struct aec *a, const int16_t *far) {
  if (!a || !far) return;
  for (int b = 0; b < BLOCKS_PER_FRAME; b++)
    a->far_env[(a->far_pos / BLOCK + (uint64_t)b) % a->env_len] = block_db(far + b * BLOCK);
  size_t at = (size_t)(a->far_pos % a->far_len), first = a->far_len - at; /* two pieces at most */
  if (first > AEC_FRAME) first = AEC_FRAME;
  memcpy(a->far + at, far, first * sizeof *far);
  memcpy(a->far, far + first, (AEC_FRAME - first) * sizeof *far);
  a->far_pos += AEC_FRAME;
}

void aec_unplay(struct aec *a) {
  if (a && a->far_pos >= AEC_FRAME) a->far_pos -= AEC_FRAME;
}

/* The sent samples from `pos` (stream index) on, n of them; 0 for those
 * outside the ring's reach. One division, not one per sample. */
static void far_copy(const struct aec *a, int64_t pos, int16_t *out, int n) {
  int64_t oldest = (int64_t)(a->far_pos > a->far_len ? a->far_pos - a->far_len : 0);
  int i = 0;
  for (; i < n && pos + i < oldest; i++) out[i] = 0;
  size_t at = i < n ? (size_t)((uint64_t)(pos + i) % a->far_len) : 0;
  for (; i < n && (uint64_t)(pos + i) < a->far_pos; i++) {
    out[i] = a->far[at];
    if (++at == a->far_len) at = 0;
  }
  for (; i < n; i++) out[i] = 0;
}

/* Envelope of the sent block `blk`, the floor outside what the ring holds. */
static float far_env_at(const struct aec *a, int64_t blk) {
  uint64_t have = a->far_pos / BLOCK;
  if (blk < 0 || (uint64_t)blk >= have || have - (uint64_t)blk > a->env_len) return (float)FLOOR_DB;
  return a->far_env[(uint64_t)blk % a->env_len];
}

/* The level that a tenth of the window's received blocks stay under: the
 * room between words, whatever its noise. */
static double near_floor_db(const struct aec *a, int64_t start) {
  int bins[LEVELS] = {0};
  for (int64_t j = start; j < start + ENV_WIN; j++) {
    int b = (int)(a->near_env[(uint64_t)j % a->env_len] - FLOOR_DB);
    bins[b < 0 ? 0 : b >= LEVELS ? LEVELS - 1 : b]++;
  }
  int seen = 0, b = 0;
  while (b < LEVELS - 1 && (seen += bins[b]) < ENV_WIN / 10) b++;
  return FLOOR_DB + b;
}

/* Marks the received blocks of the window that the echo near the current
 * delay cannot explain: louder than anything sent around their echo time,
 * and above the room. That is the caller's voice, on its own or over ours
 * (double talk). "Near" is generous (DRIFT_BLOCKS either way), so that an
 * echo path that has just grown or shrunk, as a browser's jitter buffer
 * does, still counts as echo. Returns how many were marked. */
static int mark_near_talk(const struct aec *a, int64_t start, unsigned char *talk) {
  int64_t d = a->delay / BLOCK;
  double room = near_floor_db(a, start) + 2 * NEAR_TALK_DB;
  int n = 0;
  for (int64_t j = start; j < start + ENV_WIN; j++) {
    float near = a->near_env[(uint64_t)j % a->env_len], far = (float)FLOOR_DB;
    talk[j - start] = 0;
    if (near <= room || near <= ACTIVE_DB) continue;
    for (int64_t b = j - d - DRIFT_BLOCKS; b <= j - d + DRIFT_BLOCKS; b++) {
      float e = far_env_at(a, b);
      if (e > far) far = e;
    }
    talk[j - start] = near > far + NEAR_TALK_DB;
    n += talk[j - start];
  }
  return n;
}

/* Marks the received blocks of the window that nothing we sent can have
 * echoed, as mark_near_talk marks the ones the echo cannot explain: loud,
 * after max_delay_ms of our silence, such as the caller's question before
 * our first reply. Left in, they hold the first estimate back for the 2 s
 * they take to leave the window, while the caller may already be talking
 * over us with the conservative "delay unknown" level in force. */
static void mark_unechoed(const struct aec *a, int64_t start, unsigned char *talk) {
  int max_lag = a->max_delay / BLOCK;
  double room = near_floor_db(a, start) + 2 * NEAR_TALK_DB;
  int64_t last = start - max_lag - 1; /* the last block we talked in, as far as it matters */
  for (int64_t b = start - max_lag; b < start; b++)
    if (far_env_at(a, b) > ACTIVE_DB) last = b;
  for (int64_t j = start; j < start + ENV_WIN; j++) {
    float near = a->near_env[(uint64_t)j % a->env_len];
    if (far_env_at(a, j) > ACTIVE_DB) last = j;
    if (j - last > max_lag && near > room && near > ACTIVE_DB) talk[j - start] = 1;
  }
}

/* Pearson correlation of the last ENV_WIN received blocks against the sent
 * ones at every lag: the best lag and its correlation, and the current
 * delay's (0 when there is none). Blocks marked in `talk` (may be NULL) are
 * taken as the room's floor: the caller's voice says nothing about the echo
 * path. Returns 0, or -1 when the window is flat. */
static int correlate(const struct aec *a, int64_t start, const unsigned char *talk,
                     int *best_lag, double *best, double *current) {
  int max_lag = a->max_delay / BLOCK, cur_lag = a->delay >= 0 ? a->delay / BLOCK : -1;
  /* far[k] is the sent block start - max_lag + k, so lag L starts at max_lag - L */
  float far[ENV_WIN + 1000 / BLOCK_MS * 2], near[ENV_WIN];
  for (int k = 0; k < ENV_WIN + max_lag; k++) far[k] = far_env_at(a, start - max_lag + k);
  double mean = 0, vn = 0;
  double floor = talk ? near_floor_db(a, start) : 0;
  for (int k = 0; k < ENV_WIN; k++) {
    near[k] = talk && talk[k] ? (float)floor : a->near_env[(uint64_t)(start + k) % a->env_len];
    mean += near[k];
  }
  mean /= ENV_WIN;
  for (int k = 0; k < ENV_WIN; k++) { /* centred, so the covariance is a plain dot product */
    near[k] -= (float)mean;
    vn += (double)near[k] * near[k];
  }
  if (vn <= 1e-3) return -1;
  double sf = 0, sff = 0;
  *best_lag = -1;
  *best = *current = 0;
  for (int k = max_lag; k < max_lag + ENV_WIN; k++) {
    sf += far[k];
    sff += (double)far[k] * far[k];
  }
  for (int lag = 0; lag <= max_lag; lag++) {
    const float *x = far + max_lag - lag;
    if (lag > 0) { /* slide the far window one block back */
      sf += x[0] - x[ENV_WIN];
      sff += (double)x[0] * x[0] - (double)x[ENV_WIN] * x[ENV_WIN];
    }
    float acc[8] = {0};
    for (int k = 0; k < ENV_WIN; k += 8)
      for (int j = 0; j < 8; j++) acc[j] += x[k + j] * near[k + j];
    double sfn = 0;
    for (int j = 0; j < 8; j++) sfn += acc[j];
    double vf = sff - sf * sf / ENV_WIN;
    if (vf <= 1e-3) continue;
    double c = sfn / sqrt(vf * vn);
    if (lag == cur_lag) *current = c;
    if (c > *best) {
      *best = c;
      *best_lag = lag;
    }
  }
  return 0;
}

/* Takes the window's best lag, `lag` (correlation `best`; the current delay
 * scored `current`), as the delay, as a candidate to replace it, or not. */
static void consider_lag(struct aec *a, int lag, double best, double current, int sure) {
  if (a->delay < 0 || abs(lag - a->delay / BLOCK) <= NEAR_LAG_BLOCKS) {
    a->delay = lag * BLOCK; /* the first estimate, or a refinement */
    a->delay_corr = best;
    a->cand_n = 0;
    if (!sure && best >= TRUST_CORR) a->doubt = 0; /* it won with nothing left out */
    return;
  }
  a->delay_corr = current;
  if (best < current + SWITCH_MARGIN) {
    a->cand_n = 0;
    return;
  }
  if (a->cand_n > 0 && abs(lag - a->cand) <= NEAR_LAG_BLOCKS) a->cand_n++;
  else a->cand_n = 1;
  a->cand = lag;
  /* a peak this clear, the caller's voice left out, is the path moving */
  int clear = best >= TRUST_CORR && best >= current + CLEAR_MARGIN;
  if (clear || a->cand_n >= SWITCH_CONFIRM) {
    a->delay = lag * BLOCK;
    a->delay_corr = best;
    a->cand_n = 0;
    a->doubt = 0;
  }
}

/* Updates a->delay from the last 2 s, while we have been talking.
 *
 * The caller's voice is what misleads this: speech that follows ours (a
 * caller answering, or talking on after interrupting) lines up with our
 * speech at a longer lag than the echo's about as well as the echo does,
 * so a window holding it can crown a lag hundreds of ms off; the canceller,
 * aimed there, then passes the next reply's echo untouched while the
 * residual level, read at that lag, says there is none. So, once a lag is
 * sure, the blocks of the window that its echo cannot explain are left out;
 * and a lag far from the current one must win several windows in a row, by
 * a margin, before the canceller is re-aimed (one window will do when its
 * peak is clear). A sure lag that leaves much of window after window
 * unexplained for long is doubted, so that a wrong one, or an echo path
 * that jumped further than DRIFT_BLOCKS, cannot lock itself in: the window
 * is then taken whole again. */
static void estimate_delay(struct aec *a) {
  int64_t end = (int64_t)(a->near_pos / BLOCK), start = end - ENV_WIN;
  if (start < 0) return;
  int active = 0;
  for (int64_t j = start; j < end; j++) active += far_env_at(a, j) > ACTIVE_DB;
  if (active < ENV_WIN / 5) return; /* we have hardly talked: nothing to learn */
  unsigned char talk[ENV_WIN];
  int sure = a->delay >= 0 && a->delay_corr >= TRUST_CORR && a->doubt < DOUBT_AFTER;
  if (sure) a->doubt = mark_near_talk(a, start, talk) > NEAR_TALK_SHARE ? a->doubt + 1 : 0;
  else memset(talk, 0, sizeof talk);
  mark_unechoed(a, start, talk);
  int lag;
  double best, current;
  if (correlate(a, start, talk, &lag, &best, &current) == 0 && lag >= 0 && best >= MIN_CORR)
    consider_lag(a, lag, best, current, sure);
}


/* How far below the reference the echo arrived over the last 2 s, at the
 * current delay, frame by frame as known_residual reads it: a high
 * percentile, which the caller talking over us can only raise, and which a
 * wrong delay raises too (the envelopes do not line up). The worst case
 * when we said too little to tell. */
static double window_return_db(const struct aec *a) {
  int bins[LEVELS] = {0}, n = 0;
  int64_t end = (int64_t)(a->near_pos / BLOCK), d = a->delay / BLOCK;
  for (int64_t j = end - ENV_WIN; j + BLOCKS_PER_FRAME <= end; j += BLOCKS_PER_FRAME) {
    float ref = (float)FLOOR_DB;
    for (int64_t b = j - d - SPAN_BLOCKS; b < j - d + BLOCKS_PER_FRAME + SPAN_BLOCKS; b++)
      if (far_env_at(a, b) > ref) ref = far_env_at(a, b);
    if (ref <= ACTIVE_DB) continue;
    double e = 0;
    for (int k = 0; k < BLOCKS_PER_FRAME; k++)
      e += pow(10, a->near_env[(uint64_t)(j + k) % a->env_len] / 10);
    int b = (int)lround(10 * log10(e / BLOCKS_PER_FRAME) - ref - FLOOR_DB);
    bins[b < 0 ? 0 : b >= LEVELS ? LEVELS - 1 : b]++;
    n++;
  }
  if (n < RETURN_MIN_FRAMES) return WORST_COUPLING_DB;
  int seen = 0, b = 0;
  while (b < LEVELS - 1 && (seen += bins[b]) < n * RETURN_SHARE) b++;
  return FLOOR_DB + b;
}

/* A canceller that learns from scratch. Until it has learnt anything its
 * output is the echo as it arrives, so its coupling starts at the echo's
 * return as measured over the last 2 s, which promises nothing that needs
 * proving; the worst case instead would hide a caller who talks over the
 * first second or two of the call's first reply. */
static void restart(struct aec *a) {
  speex_echo_state_reset(a->echo);
  a->coupling_db = window_return_db(a);
  if (a->coupling_db < a->return_db) a->return_db = a->coupling_db;
  a->out_energy = a->ref_energy = a->near_energy = 0;
  a->fitted = a->proven_run = 0;
  a->proven = 1;
}

/* Re-aims the canceller when the echo has left the span its filter covers. */
static void follow_delay(struct aec *a) {
  if (a->delay < 0) return;
  int pre = PRE_MS * AEC_RATE / 1000, tail = TAIL_MS * AEC_RATE / 1000;
  if (a->align >= 0 && a->delay >= a->align + pre / 2 && a->delay <= a->align + tail / 2) return;
  if (make_canceller(a)) return; /* no memory: pass through, and try again next time */
  a->align = a->delay > pre ? a->delay - pre : 0;
  restart(a);
}

/* Loudest sent block that can echo into the frame now being captured, with
 * `slack` blocks of doubt about the delay either side. */
static double reference_db(const struct aec *a, int slack) {
  int64_t first, last; /* block range */
  int64_t now = (int64_t)(a->near_pos / BLOCK);
  if (a->delay < 0) {
    first = now - a->max_delay / BLOCK - BLOCKS_PER_FRAME;
    last = now;
  } else {
    int64_t d = a->delay / BLOCK;
    first = now - d - slack;
    last = now - d + BLOCKS_PER_FRAME + slack;
  }
  float m = (float)FLOOR_DB;
  for (int64_t b = first; b < last; b++) {
    float e = far_env_at(a, b);
    if (e > m) m = e;
  }
  return m;
}

/* Whether everything the canceller's filter spans for this frame is silence:
 * then there is no echo to cancel and the frame is passed through, which
 * halves the cost of a call (the caller's turns). */
static int reference_silent(const struct aec *a) {
  int64_t end = ((int64_t)a->near_pos - a->align) / BLOCK + BLOCKS_PER_FRAME;
  int64_t first = end - (TAIL_MS / BLOCK_MS) - 2 * BLOCKS_PER_FRAME;
  for (int64_t b = first; b < end; b++)
    if (far_env_at(a, b) > FLOOR_DB) return 0;
  return 1;
}

/* After a pass-through stretch the canceller still holds the reference from
 * before it; clear that history with silence so it cannot echo back. Its
 * filter is that of the last talkspurt, and the echo path may have moved
 * since (a jitter buffer re-syncs between talkspurts): unproven until it
 * takes the echo off again. */
static void flush(struct aec *a) {
  int16_t zero[AEC_FRAME] = {0}, sink[AEC_FRAME];
  for (int i = 0; i <= TAIL_MS / 20 + 1; i++) speex_echo_cancellation(a->echo, zero, zero, sink);
  a->proven = !a->fitted;
  a->proven_run = 0;
}

static double frame_db(const int16_t *x) {
  double s = 0;
  for (int i = 0; i < AEC_FRAME; i++) s += (double)x[i] * x[i];
  return to_db(s / AEC_FRAME);
}

/* Records this frame's captured-to-sent ratio and returns the blind coupling. */
static double blind_coupling(struct aec *a, double near_db, double ref_db) {
  a->blind[a->blind_pos] = ref_db > ACTIVE_DB ? (float)(near_db - ref_db) : NAN;
  a->blind_pos = (a->blind_pos + 1) % BLIND_FRAMES;
  double worst = -INFINITY;
  int seen = 0;
  for (int i = 0; i < BLIND_FRAMES - BLIND_RECENT; i++) {
    float x = a->blind[(a->blind_pos + i) % BLIND_FRAMES]; /* oldest first */
    if (isnan(x)) continue;
    seen++;
    if (x > worst) worst = x;
  }
  /* Too little of our own speech yet to have heard its echo come back. */
  if (seen < BLIND_MIN_SEEN) return WORST_COUPLING_DB;
  worst += RESIDUAL_MARGIN_DB;
  return worst > WORST_COUPLING_DB ? WORST_COUPLING_DB : worst;
}

/* Asymmetric tracking of a level ratio: down quickly, up slowly, and hardly
 * at all far above it, which is the caller talking over us, not the echo
 * (creeping up only, in case the path did get louder). */
static void track(double *db, double x) {
  double rate = x < *db ? COUPLING_FALL : x < *db + DOUBLE_TALK_DB ? COUPLING_RISE : COUPLING_CREEP;
  *db += rate * (x - *db);
}

/* Whether the canceller has just been seen taking the echo off: frames that
 * hold the echo about as loud as the reference says it must be, with most
 * of it gone from the output. Frames where the echo is missing prove
 * nothing (the path may have moved away from where the filter looks). */
static void check_proven(struct aec *a, double near_db, double linear_db, double ref_db) {
  if (ref_db <= ACTIVE_DB || near_db <= ACTIVE_DB) return; /* no echo to judge by */
  if (near_db < ref_db + a->return_db - DOUBLE_TALK_DB) return;
  if (linear_db > near_db - PROVEN_ERLE_DB) a->proven_run = 0;
  else if (++a->proven_run >= PROVEN_FRAMES) a->proven = 1;
}

/*
 * The level of echo the frame may still hold once the delay is known: the
 * reference around the delay plus the coupling to the canceller's output.
 * Until the canceller has proven itself since our talkspurt began, the
 * coupling it learnt before is a promise made for another echo path: if the
 * path has moved, the output holds the echo whole, and the next reply would
 * cut itself off. So meanwhile the level is also at least the echo as it
 * arrives, uncancelled (its return below the reference, tracked like the
 * coupling), from anywhere DRIFT_BLOCKS around the delay.
 */
static double known_residual(struct aec *a, double ref_db, double near_db, double linear_db,
                             int cancelled) {
  if (ref_db > ACTIVE_DB) { /* learn only while we talk */
    a->out_energy += ENERGY_SMOOTH * (pow(10, linear_db / 10) - a->out_energy);
    a->ref_energy += ENERGY_SMOOTH * (pow(10, ref_db / 10) - a->ref_energy);
    a->near_energy += ENERGY_SMOOTH * (pow(10, near_db / 10) - a->near_energy);
    track(&a->coupling_db, 10 * log10((a->out_energy + 1e-12) / (a->ref_energy + 1e-12)));
    track(&a->return_db, 10 * log10((a->near_energy + 1e-12) / (a->ref_energy + 1e-12)));
  }
  if (cancelled) check_proven(a, near_db, linear_db, ref_db);
  if (cancelled && ref_db > ACTIVE_DB) a->fitted = 1;
  double r = ref_db + a->coupling_db + RESIDUAL_MARGIN_DB;
  if (!a->proven) {
    double whole = reference_db(a, DRIFT_BLOCKS) + a->return_db + RESIDUAL_MARGIN_DB;
    if (whole > r) r = whole;
  }
  /* An output louder than what came in holds what the filter added itself:
   * one still learning, or one that no longer fits, subtracts across its
   * whole span the echo of words whose echo is not there, and the level
   * read around the delay says nothing of it at the end of a phrase. */
  double added = pow(10, linear_db / 10) - pow(10, near_db / 10);
  if (cancelled && added > 0 && 10 * log10(added) + RESIDUAL_MARGIN_DB > r)
    r = 10 * log10(added) + RESIDUAL_MARGIN_DB;
  return r;
}

void aec_capture(struct aec *a, const int16_t *near, int16_t *out) {
  if (!a || !near || !out) return;
  int16_t in[AEC_FRAME], ref[AEC_FRAME];
  double linear_db = SILENT_DB; /* the linear canceller's output, before suppression */
  int cancelled = 0;
  memcpy(in, near, sizeof in);
  for (int b = 0; b < BLOCKS_PER_FRAME; b++)
    a->near_env[(a->near_pos / BLOCK + (uint64_t)b) % a->env_len] = block_db(in + b * BLOCK);
  double ref_db = reference_db(a, SPAN_BLOCKS);
  if (a->align >= 0 && !reference_silent(a)) {
    if (a->idle) flush(a);
    a->idle = 0;
    int64_t base = (int64_t)a->near_pos - a->align;
    far_copy(a, base, ref, AEC_FRAME);
    speex_echo_cancellation(a->echo, in, ref, out);
    linear_db = frame_db(out);
    cancelled = 1;
    speex_preprocess_run(a->pre, out);
  } else {
    memcpy(out, in, sizeof in);
    a->idle = 1;
  }
  a->near_pos += AEC_FRAME;

  if (ref_db <= FLOOR_DB && (a->proven || a->delay < 0 || reference_db(a, DRIFT_BLOCKS) <= FLOOR_DB))
    a->residual_db = SILENT_DB;
  else if (a->delay < 0)
    a->residual_db = ref_db + blind_coupling(a, frame_db(near), ref_db);
  else
    a->residual_db = known_residual(a, ref_db, frame_db(near), linear_db, cancelled);
  if (++a->since_estimate >= ESTIMATE_EVERY) {
    a->since_estimate = 0;
    estimate_delay(a);
    follow_delay(a);
  }
}

double aec_residual_db(const struct aec *a) { return a ? a->residual_db : SILENT_DB; }

int aec_delay_ms(const struct aec *a) {
  return a && a->delay >= 0 ? a->delay * 1000 / AEC_RATE : -1;
}
