/* resample: tone frequency and level survive every rate pair the call path uses; a
 * stream cut into chunks converts exactly as in one piece, and as a whole buffer does;
 * bad arguments are refused. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <speex/speex_resampler.h>

#include "audio/resample.h"

static const int PAIRS[][2] = {{48000, 16000}, {16000, 48000}, {22050, 48000}, {24000, 48000}};

static int16_t *tone(int rate, double hz, double amp, size_t n) {
  int16_t *x = malloc(n * sizeof *x);
  assert_non_null(x);
  for (size_t i = 0; i < n; i++) x[i] = (int16_t)lrint(amp * sin(2 * M_PI * hz * (double)i / rate));
  return x;
}

/* Amplitude of the component at hz (Goertzel), over n samples. */
static double amplitude_at(const int16_t *x, size_t n, int rate, double hz) {
  double w = 2 * M_PI * hz / rate, c = 2 * cos(w), s1 = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) {
    double s0 = x[i] + c * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  double re = s1 - s2 * cos(w), im = s2 * sin(w);
  return 2 * sqrt(re * re + im * im) / (double)n;
}

static size_t convert_chunked(int in_rate, int out_rate, const int16_t *in, size_t n,
                              size_t chunk, int16_t *out, size_t cap) {
  struct resampler *r;
  assert_int_equal(resampler_new(&r, in_rate, out_rate, 3), 0);
  size_t got = 0;
  for (size_t i = 0; i < n; i += chunk) {
    size_t len = n - i < chunk ? n - i : chunk;
    size_t room = len * (size_t)out_rate / (size_t)in_rate + 16;
    assert_true(got + room <= cap);
    got += resampler_process(r, in + i, len, out + got, room);
  }
  resampler_free(r);
  return got;
}

static void tone_keeps_frequency_and_level(void **state) {
  for (size_t p = 0; p < sizeof PAIRS / sizeof PAIRS[0]; p++) {
    int in_rate = PAIRS[p][0], out_rate = PAIRS[p][1];
    size_t n = (size_t)in_rate; /* one second */
    const double hz = 997, amp = 10000;
    int16_t *in = tone(in_rate, hz, amp, n);
    size_t cap = n * (size_t)out_rate / (size_t)in_rate + 4096;
    int16_t *out = malloc(cap * sizeof *out);
    size_t got = convert_chunked(in_rate, out_rate, in, n, (size_t)in_rate / 50, out, cap);
    /* All of the second comes out, less the filter's latency. */
    assert_true(got > (size_t)out_rate * 98 / 100 && got <= (size_t)out_rate + 16);
    /* Skip the filter's start-up, measure the tone in the rest. */
    size_t skip = (size_t)out_rate / 20, len = got - skip - (size_t)out_rate / 20;
    double a = amplitude_at(out + skip, len, out_rate, hz);
    double off = amplitude_at(out + skip, len, out_rate, hz * 1.05);
    assert_true(fabs(20 * log10(a / amp)) < 0.3);
    assert_true(off < amp * 0.02); /* the energy sits at the same frequency */
    free(in);
    free(out);
  }
}

static void chunks_match_one_piece(void **state) {
  for (size_t p = 0; p < sizeof PAIRS / sizeof PAIRS[0]; p++) {
    int in_rate = PAIRS[p][0], out_rate = PAIRS[p][1];
    size_t n = (size_t)in_rate / 2;
    int16_t *in = malloc(n * sizeof *in);
    srand(7);
    /* a sweep plus a little noise: something that would show a seam */
    for (size_t i = 0; i < n; i++) {
      double t = (double)i / in_rate;
      in[i] = (int16_t)lrint(8000 * sin(2 * M_PI * (200 + 1500 * t) * t) + (rand() % 200 - 100));
    }
    size_t cap = n * (size_t)out_rate / (size_t)in_rate + 4096;
    int16_t *whole = malloc(cap * sizeof *whole), *parts = malloc(cap * sizeof *parts);
    size_t a = convert_chunked(in_rate, out_rate, in, n, n, whole, cap);
    /* odd chunk sizes, as a TTS engine hands them over */
    size_t b = convert_chunked(in_rate, out_rate, in, n, 333, parts, cap);
    assert_int_equal(a, b);
    int maxdiff = 0;
    for (size_t i = 0; i < a; i++) {
      int d = abs(whole[i] - parts[i]);
      if (d > maxdiff) maxdiff = d;
    }
    assert_true(maxdiff <= 1); /* identical but for rounding */
    /* and no step bigger than the sweep itself can make */
    for (size_t i = 1; i < b; i++) assert_true(abs(parts[i] - parts[i - 1]) < 8000);
    free(in);
    free(whole);
    free(parts);
  }
}

static void reset_forgets_history(void **state) {
  struct resampler *r;
  assert_int_equal(resampler_new(&r, 48000, 16000, 3), 0);
  int16_t *loud = tone(48000, 1000, 20000, 960);
  int16_t zeros[960] = {0}, out[400];
  resampler_process(r, loud, 960, out, sizeof out / sizeof out[0]);
  resampler_reset(r);
  size_t got = resampler_process(r, zeros, 960, out, sizeof out / sizeof out[0]);
  for (size_t i = 0; i < got; i++) assert_int_equal(out[i], 0);
  free(loud);
  resampler_free(r);
}

static void small_output_is_bounded(void **state) {
  struct resampler *r;
  assert_int_equal(resampler_new(&r, 16000, 48000, 3), 0);
  int16_t in[320] = {0}, out[100];
  assert_true(resampler_process(r, in, 320, out, 100) <= 100);
  resampler_free(r);
}

static void a_whole_buffer_converts_as_a_stream_and_ends_in_a_frame_of_zeros(void **state) {
  for (size_t p = 0; p < sizeof PAIRS / sizeof PAIRS[0]; p++) {
    int in_rate = PAIRS[p][0], out_rate = PAIRS[p][1];
    size_t n = (size_t)in_rate / 3;
    int16_t *in = tone(in_rate, 440, 12000, n), *whole, *streamed;
    size_t got, cap = n * (size_t)out_rate / (size_t)in_rate + 4096;
    assert_non_null(streamed = malloc(cap * sizeof *streamed));
    size_t want = convert_chunked(in_rate, out_rate, in, n, n, streamed, cap);
    assert_int_equal(resampler_convert(in, n, in_rate, out_rate, 3, &whole, &got), 0);
    assert_int_equal(got, want);
    assert_memory_equal(whole, streamed, got * sizeof *whole);
    for (int i = 0; i < out_rate / 50; i++) assert_int_equal(whole[got + (size_t)i], 0);
    free(in);
    free(whole);
    free(streamed);
  }
  int16_t *out;
  size_t got;
  assert_int_equal(resampler_convert(NULL, 0, 0, 16000, 3, &out, &got), -EINVAL);
}

/* Speech-like: a wandering voiced tone, a high one and a little noise. */
static int16_t *speechlike(int rate, size_t n) {
  int16_t *x = malloc(n * sizeof *x);
  assert_non_null(x);
  uint32_t seed = 1;
  for (size_t i = 0; i < n; i++) {
    double t = (double)i / rate;
    seed = seed * 1664525u + 1013904223u;
    x[i] = (int16_t)lrint(6000 * sin(2 * M_PI * (140 + 50 * sin(2 * M_PI * 2 * t)) * t) +
                          2500 * sin(2 * M_PI * 0.37 * rate * t) + (double)(seed >> 20) - 2048);
  }
  return x;
}

/* Whole factors up to 48 kHz at quality 3 run our own fixed-point filter,
 * built as speexdsp builds its quality 3: the same samples but for rounding,
 * with the same delay. */
static void whole_factors_give_what_speexdsp_gives(void **state) {
  const int rates[] = {8000, 12000, 16000, 24000};
  for (size_t k = 0; k < sizeof rates / sizeof rates[0]; k++) {
    int in_rate = rates[k], f = 48000 / in_rate;
    size_t n = (size_t)in_rate / 2, cap = n * (size_t)f + 64;
    int16_t *in = speechlike(in_rate, n), *ours = malloc(cap * sizeof *ours);
    int16_t *theirs = malloc(cap * sizeof *theirs);
    size_t got = convert_chunked(in_rate, 48000, in, n, 137, ours, cap);
    assert_int_equal(got, n * (size_t)f);
    int err = 0;
    SpeexResamplerState *st = speex_resampler_init(1, (spx_uint32_t)in_rate, 48000, 3, &err);
    assert_non_null(st);
    spx_uint32_t in_len = (spx_uint32_t)n, out_len = (spx_uint32_t)cap;
    speex_resampler_process_int(st, 0, in, &in_len, theirs, &out_len);
    assert_int_equal(out_len, got);
    double sig = 0, diff = 0;
    for (size_t i = 0; i < got; i++) {
      sig += (double)theirs[i] * theirs[i];
      diff += ((double)ours[i] - theirs[i]) * ((double)ours[i] - theirs[i]);
    }
    assert_true(10 * log10(sig / (diff + 1e-9)) > 65);
    struct resampler *r;
    assert_int_equal(resampler_new(&r, in_rate, 48000, 3), 0);
    assert_int_equal(resampler_input_latency(r), (int)speex_resampler_get_input_latency(st));
    resampler_free(r);
    speex_resampler_destroy(st);
    free(theirs);
    free(ours);
    free(in);
  }
}

/* A full-scale square wave's ringing clips; it never wraps round to the
 * other sign. Reset forgets it. */
static void upsampling_clips_and_resets(void **state) {
  int16_t in[320], out[960 + 16], zeros[320] = {0};
  for (int i = 0; i < 320; i++) in[i] = (i / 40) % 2 ? INT16_MIN : INT16_MAX;
  struct resampler *r;
  assert_int_equal(resampler_new(&r, 16000, 48000, 3), 0);
  assert_int_equal(resampler_process(r, in, 320, out, 960 + 16), 960);
  for (int i = 0; i < 320 - 24; i++) {
    if (i % 40 < 8 || i % 40 > 32) continue; /* away from the edges (the delay is 24) */
    int level = ((i / 40) % 2) ? -1 : 1;
    for (int p = 0; p < 3; p++) assert_true(out[3 * (i + 24) + p] * level > 30000);
  }
  resampler_reset(r);
  assert_int_equal(resampler_process(r, zeros, 320, out, 960 + 16), 960);
  for (int i = 0; i < 960; i++) assert_int_equal(out[i], 0);
  resampler_free(r);
}

static void bad_arguments_refused(void **state) {
  struct resampler *r = (void *)1;
  assert_int_equal(resampler_new(&r, 0, 16000, 3), -EINVAL);
  assert_null(r);
  assert_int_equal(resampler_new(&r, 16000, 48000, 11), -EINVAL);
  assert_int_equal(resampler_new(&r, 16000, -1, 3), -EINVAL);
  assert_int_equal(resampler_new(NULL, 16000, 48000, 3), -EINVAL);
  resampler_free(NULL);
  resampler_reset(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(tone_keeps_frequency_and_level),
      cmocka_unit_test(chunks_match_one_piece),
      cmocka_unit_test(reset_forgets_history),
      cmocka_unit_test(small_output_is_bounded),
      cmocka_unit_test(a_whole_buffer_converts_as_a_stream_and_ends_in_a_frame_of_zeros),
      cmocka_unit_test(whole_factors_give_what_speexdsp_gives),
      cmocka_unit_test(upsampling_clips_and_resets),
      cmocka_unit_test(bad_arguments_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
