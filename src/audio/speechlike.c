/*
 * Voicing and pitch motion: what tells a voice from other periodic sounds.
 *
 * Periodicity. The band signal is whitened with an order-8 linear predictor,
 * weakened by bandwidth expansion so that it flattens a noise's colour (a
 * fan's rumble) but not the narrow harmonic peaks of a voice. The
 * normalised cross-correlation of 30 ms of the residual with itself one
 * period back, maximised over the pitch lags, is the measure: voiced speech
 * mostly scores 0.5-0.95 even at 10 dB SNR, noise of any colour mostly
 * below 0.3.
 *
 * That alone cannot tell a voice from a beep, a dial tone, DTMF or a piano:
 * all are periodic, the steady ones more so than speech. What a voice does
 * and those do not is move its pitch all the time. The lag of the best
 * correlation, refined to a fraction of a sample by a parabola through its
 * neighbours, gives the pitch of every frame periodic enough to follow
 * (TRACK); its ratio to the pitch of the frame before and of the one before
 * that, folded into [0.75, 1.5) so that the lag search landing on twice or
 * half the period does not count as motion, is compared with three bounds:
 *
 *   both under HELD_RATIO (0.4 %): held. Synthesised tones and DTMF keep
 *     their lag to 0.01 %, a piano note to 0.1-0.3 % (it drifts as it
 *     decays).
 *   over JUMP_RATIO (5 %) from the frame before: a jump. A new note moves a
 *     semitone (5.9 %) or more; the pitch of a thump or a click is a
 *     different lag every frame.
 *   either from GLIDE_RATIO (0.6 %) up, the older one also within 5 %, and
 *     both frames clearly periodic (CLEAR): a glide. A talker's pitch moves
 *     0.5-5 % per 20 ms (intonation, jitter), also on what sounds like a
 *     steady vowel; comparing over 40 ms too catches a slow, steady glide.
 *     A weakly periodic frame's lag wanders by itself, so below CLEAR a
 *     move says nothing.
 *
 * The 8 kHz signal gives lags of 16-100 samples; the parabola resolves them
 * to about 0.02 sample on a clean tone, 0.03-0.1 % of the lag: well under
 * HELD_RATIO.
 */
#include "audio/speechlike.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LPC_ORDER 8
#define MIN_LAG 16  /* 500 Hz at 8 kHz */
#define MAX_LAG 100 /* 80 Hz */
#define WIN 240     /* 30 ms at 8 kHz */
#define HIST (LPC_ORDER + MAX_LAG + WIN)
#define LPC_GAMMA 0.8
#define HELD_RATIO 0.004
#define GLIDE_RATIO 0.006
#define JUMP_RATIO 0.05
#define TRACK 0.35 /* periodicity from which a frame's pitch is followed */
#define CLEAR 0.5  /* and from which its motion can be called a glide */

struct speechlike {
  float hist[HIST];              /* band signal at 8 kHz, oldest first */
  double lag;                    /* the last frame's refined pitch lag, 0 for none */
  double periodicity;            /* the last frame's */
  double tracked_lag[2];         /* the two frames before, while followed, else 0 */
  double tracked_periodicity;    /* the frame before's */
  enum speechlike_motion motion; /* the last frame's */
};

int speechlike_new(struct speechlike **out) {
  if (!out) return -EINVAL;
  *out = calloc(1, sizeof **out);
  return *out ? 0 : -ENOMEM;
}

void speechlike_free(struct speechlike *s) { free(s); }

/* Levinson-Durbin: predictor a[1..LPC_ORDER] from autocorrelation r. */
static void lpc(const double *r, double *a) {
  double err = r[0], tmp[LPC_ORDER + 1];
  memset(a, 0, (LPC_ORDER + 1) * sizeof *a);
  a[0] = 1;
  for (int i = 1; i <= LPC_ORDER && err > 0; i++) {
    double acc = r[i];
    for (int j = 1; j < i; j++) acc += a[j] * r[i - j];
    double k = -acc / err;
    memcpy(tmp, a, sizeof tmp);
    for (int j = 1; j < i; j++) a[j] = tmp[j] + k * tmp[i - j];
    a[i] = k;
    err *= 1 - k * k;
  }
}

/* Eight partial sums, so the compiler can keep the lanes independent. */
static double dot(const float *a, const float *b, int n) {
  float s[8] = {0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
  double t = 0;
  for (; i < n; i++) t += (double)a[i] * b[i];
  for (int j = 0; j < 8; j++) t += s[j];
  return t;
}

/* The history whitened: e[n] for n = 0 .. HIST - LPC_ORDER - 1. Returns 0 on digital silence. */
static int whiten(const float *x, float *e) {
  double r[LPC_ORDER + 1], a[LPC_ORDER + 1];
  for (int k = 0; k <= LPC_ORDER; k++) r[k] = dot(x + k, x, HIST - k);
  if (r[0] <= 1e-3 * HIST) return 0;
  r[0] *= 1.0001; /* keeps the predictor stable on pure tones */
  lpc(r, a);
  /* Bandwidth expansion: the whitening flattens broad spectral shapes (the
   * colour of a noise) but leaves most of the narrow harmonic peaks a voice
   * has; a full-strength predictor would notch them out too. */
  float af[LPC_ORDER + 1];
  double g = 1;
  for (int k = 0; k <= LPC_ORDER; k++, g *= LPC_GAMMA) af[k] = (float)(a[k] * g);
  for (int n = LPC_ORDER; n < HIST; n++) {
    float acc = x[n];
    for (int k = 1; k <= LPC_ORDER; k++) acc += af[k] * x[n - k];
    e[n - LPC_ORDER] = acc;
  }
  return 1;
}

/* The vertex of the parabola through (-1, y0), (0, y1), (1, y2), as an offset. */
static double vertex(double y0, double y1, double y2) {
  double d = y0 - 2 * y1 + y2;
  if (d >= 0) return 0;
  double off = 0.5 * (y0 - y2) / d;
  return off < -0.5 ? -0.5 : off > 0.5 ? 0.5 : off;
}

/* The best lag's correlation into s->periodicity, the refined lag into s->lag. */
static void find_pitch(struct speechlike *s, const float *e) {
  const float *cur = e + MAX_LAG; /* the newest WIN samples */
  double ex = dot(cur, cur, WIN), ey = dot(cur - MIN_LAG, cur - MIN_LAG, WIN);
  double c[MAX_LAG + 2] = {0}, best = 0;
  int at = 0;
  for (int lag = MIN_LAG; lag <= MAX_LAG; lag++) {
    const float *past = cur - lag;
    if (lag > MIN_LAG) /* slide the past window one sample back */
      ey += (double)past[0] * past[0] - (double)past[WIN] * past[WIN];
    double xy = dot(cur, past, WIN);
    c[lag] = xy > 0 && ex > 0 && ey > 0 ? xy / sqrt(ex * ey) : 0;
    if (c[lag] > best) best = c[at = lag];
  }
  /* a best lag at either end of the search is no pitch to follow */
  if (at > MIN_LAG && at < MAX_LAG) s->lag = at + vertex(c[at - 1], c[at], c[at + 1]);
  s->periodicity = best;
}

double speechlike_pitch_hz(const struct speechlike *s) {
  return s && s->lag > 0 ? SPEECHLIKE_RATE / s->lag : 0;
}

/* |log| of the lag ratio, folded so that an octave error is no motion. */
static double moved(double lag, double before) {
  double r = lag / before;
  if (r >= 1.5) r /= 2; /* the search found twice or half the period */
  if (r < 0.75) r *= 2;
  return fabs(log(r));
}

/* Classifies the newest frame's pitch against the two before it. */
static enum speechlike_motion classify(struct speechlike *s) {
  double lag1 = s->tracked_lag[0], lag2 = s->tracked_lag[1], clear1 = s->tracked_periodicity;
  int have = s->periodicity >= TRACK && s->lag > 0;
  s->tracked_lag[1] = have ? lag1 : 0;
  s->tracked_lag[0] = have ? s->lag : 0;
  s->tracked_periodicity = s->periodicity;
  if (!have || lag1 <= 0) return SPEECHLIKE_UNKNOWN;
  double d1 = moved(s->lag, lag1), d2 = lag2 > 0 ? moved(s->lag, lag2) : d1;
  if (d1 > JUMP_RATIO) return SPEECHLIKE_JUMP;
  if (d1 < HELD_RATIO && d2 < HELD_RATIO) return SPEECHLIKE_HELD;
  /* a weakly periodic frame's lag wanders by itself: no evidence either way */
  if (s->periodicity < CLEAR || clear1 < CLEAR) return SPEECHLIKE_UNKNOWN;
  if (d1 >= GLIDE_RATIO || (d2 >= GLIDE_RATIO && d2 <= JUMP_RATIO)) return SPEECHLIKE_GLIDE;
  return SPEECHLIKE_UNKNOWN;
}

double speechlike_analyse(struct speechlike *s, const float *frame) {
  if (!s || !frame) return 0;
  memmove(s->hist, s->hist + SPEECHLIKE_FRAME, (HIST - SPEECHLIKE_FRAME) * sizeof s->hist[0]);
  memcpy(s->hist + HIST - SPEECHLIKE_FRAME, frame, SPEECHLIKE_FRAME * sizeof s->hist[0]);
  s->lag = s->periodicity = 0;
  float e[HIST - LPC_ORDER];
  if (whiten(s->hist, e)) find_pitch(s, e);
  s->motion = classify(s);
  return s->periodicity;
}

enum speechlike_motion speechlike_motion(const struct speechlike *s) {
  return s ? s->motion : SPEECHLIKE_UNKNOWN;
}
