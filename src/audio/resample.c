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
 */
#include "audio/resample.h"

#include <errno.h>
#include <stdlib.h>

#include <speex/speex_resampler.h>

struct resampler {
  SpeexResamplerState *st;
};

int resampler_new(struct resampler **out, int in_rate, int out_rate, int quality) {
  if (!out) return -EINVAL;
  *out = NULL;
  if (in_rate < 1000 || in_rate > 384000 || out_rate < 1000 || out_rate > 384000 ||
      quality < SPEEX_RESAMPLER_QUALITY_MIN || quality > SPEEX_RESAMPLER_QUALITY_MAX)
    return -EINVAL;
  struct resampler *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
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
  speex_resampler_destroy(r->st);
  free(r);
}

size_t resampler_process(struct resampler *r, const int16_t *in, size_t n, int16_t *out,
                         size_t cap) {
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
  if (r) speex_resampler_reset_mem(r->st);
}
