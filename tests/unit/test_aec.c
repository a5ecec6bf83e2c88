/*
 * aec: the far end is flite speech; the microphone hears it again 100, 200
 * or 300 ms later, 6 to 20 dB down, low-passed and with a reflection, over a
 * little room noise. Checks that the delay is found, reports the echo return
 * loss enhancement (ERLE), that a VAD fed the output and aec_residual_db never
 * starts a turn on the echo alone, and that a second talker over the echo
 * (double talk) still does. Ends with ns per frame.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <cmocka.h>

#include "../fixtures/audio/signals.h"
#include "audio/aec.h"
#include "audio/vad.h"

static const struct vad_config VAD_DEFAULTS = {12, 60, 600, 200};

static const char *AI_LINES[] = {
    "Hello, thank you for calling. How can I help you today?",
    "Our opening hours are nine to five, Monday to Friday.",
    "I can book that table for you. Which time would suit you best?",
    "Certainly, let me check the calendar for next week.",
};

/* The AI's side: its lines with 600 ms pauses, at -20 dBFS, 1 s of silence first. */
static float *ai_speech(size_t *n) {
  size_t cap = SIG_MS(40000), pos = SIG_MS(1000);
  float *x = sig_alloc(cap);
  for (size_t i = 0; i < sizeof AI_LINES / sizeof AI_LINES[0]; i++) {
    size_t len;
    float *s = sig_flite(AI_LINES[i], 0, &len);
    assert_non_null(s);
    assert_true(pos + len + SIG_MS(600) < cap);
    memcpy(x + pos, s, len * sizeof *s);
    pos += len + SIG_MS(600);
    free(s);
  }
  sig_set_level(x + SIG_MS(1000), pos - SIG_MS(1000), -20);
  *n = pos + SIG_MS(1000);
  return x;
}

/* What the microphone hears of it: delayed, attenuated, low-passed (two poles
 * at 2.5 kHz), with a reflection 12 ms later and 9 dB down. */
static void echo_path(const float *far, float *mic, size_t n, int delay_ms, double atten_db) {
  double g = pow(10, -atten_db / 20), a = exp(-2 * M_PI * 2500.0 / SIG_RATE), l1 = 0, l2 = 0;
  size_t d = SIG_MS(delay_ms), refl = SIG_MS(12);
  for (size_t i = 0; i < n; i++) {
    double x = i >= d ? far[i - d] : 0;
    if (i >= d + refl) x += 0.35 * far[i - d - refl];
    l1 = a * l1 + (1 - a) * x;
    l2 = a * l2 + (1 - a) * l1;
    mic[i] += (float)(g * l2 * 1.4);
  }
}

struct result {
  double erle_db;
  int delay_ms;
  int onsets;
  long first_onset_ms;
  double ns_per_frame;
};

/* Runs far/near through the canceller and a VAD fed its output. */
static void run(const float *far, const float *near, size_t n, const float *echo_only,
                struct result *r) {
  struct aec *a;
  struct vad *v;
  assert_int_equal(aec_new(&a, 500), 0);
  assert_int_equal(vad_new(&v, &VAD_DEFAULTS), 0);
  memset(r, 0, sizeof *r);
  r->first_onset_ms = -1;
  int16_t f16[AEC_FRAME], n16[AEC_FRAME], out[AEC_FRAME], e16[AEC_FRAME];
  double echo_e = 0, out_e = 0, ns = 0;
  size_t frames = n / AEC_FRAME;
  for (size_t f = 0; f < frames; f++) {
    sig_to_pcm(far + f * AEC_FRAME, f16, AEC_FRAME);
    sig_to_pcm(near + f * AEC_FRAME, n16, AEC_FRAME);
    struct timespec t0, t1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    aec_playback(a, f16);
    aec_capture(a, n16, out);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    ns += (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    if (getenv("TS_AEC_TRACE"))
      fprintf(stderr, "%6zu out %6.1f resid %6.1f delay %d\n", (f + 1) * 20,
              20 * log10(sig_rms(near + f * AEC_FRAME, AEC_FRAME) / 32768 + 1e-9),
              aec_residual_db(a), aec_delay_ms(a));
    if (vad_process(v, out, aec_residual_db(a)) == VAD_ONSET && r->onsets++ == 0)
      r->first_onset_ms = (long)(f + 1) * 20;
    if (getenv("TS_AEC_TRACE") && vad_in_speech(v))
      fprintf(stderr, "   in speech, vad level %.1f\n", vad_level_db(v));
    /* ERLE over the second half, where the echo is */
    if (echo_only && f >= frames / 2) {
      sig_to_pcm(echo_only + f * AEC_FRAME, e16, AEC_FRAME);
      for (int i = 0; i < AEC_FRAME; i++) {
        echo_e += (double)e16[i] * e16[i];
        out_e += (double)out[i] * out[i];
      }
    }
  }
  r->erle_db = out_e > 0 ? 10 * log10(echo_e / out_e) : 99;
  r->delay_ms = aec_delay_ms(a);
  r->ns_per_frame = ns / (double)frames;
  vad_free(v);
  aec_free(a);
}

static void echo_removed_and_never_a_turn(void **state) {
  size_t n;
  float *far = ai_speech(&n);
  const int delays[] = {100, 200, 300};
  const double attens[] = {6, 12, 20};
  for (int di = 0; di < 3; di++)
    for (int ai = 0; ai < 3; ai++) {
      float *echo = sig_alloc(n), *near = sig_alloc(n);
      echo_path(far, echo, n, delays[di], attens[ai]);
      sig_pink(near, n, (uint64_t)(di * 3 + ai));
      sig_set_level(near, n, -70);
      sig_mix(near, echo, n, 1);
      struct result r;
      run(far, near, n, echo, &r);
      printf("# delay %d ms, echo -%2.0f dB: estimate %d ms, ERLE %.1f dB, onsets %d, %.0f ns/frame\n",
             delays[di], attens[ai], r.delay_ms, r.erle_db, r.onsets, r.ns_per_frame);
      assert_true(abs(r.delay_ms - delays[di]) <= 10);
      assert_true(r.erle_db >= 10);
      assert_int_equal(r.onsets, 0);
      free(echo);
      free(near);
    }
  free(far);
}

static void caller_heard_over_the_echo(void **state) {
  size_t n;
  float *far = ai_speech(&n);
  size_t len;
  float *caller = sig_flite("Sorry, can I stop you there? I need to change my booking.", 1, &len);
  assert_non_null(caller);
  sig_set_level(caller, len, -20); /* as loud as the AI is sent: 6 dB over its loudest echo */
  const int delays[] = {100, 200, 300};
  for (int di = 0; di < 3; di++) {
    float *near = sig_alloc(n);
    sig_pink(near, n, 40 + (uint64_t)di);
    sig_set_level(near, n, -70);
    echo_path(far, near, n, delays[di], 6);
    /* the caller barges in 6 s into the call, while the AI is talking */
    size_t at = SIG_MS(6000);
    assert_true(at + len < n);
    sig_mix(near + at, caller, len, 1);
    size_t first = 0;
    while (first < len && fabsf(caller[first]) < 300) first++;
    long start_ms = (long)((at + first) * 1000 / SIG_RATE);
    struct result r;
    run(far, near, n, NULL, &r);
    printf("# double talk, delay %d ms: caller starts at %ld ms, first onset at %ld ms\n",
           delays[di], start_ms, r.first_onset_ms);
    assert_true(r.onsets >= 1);
    assert_true(r.first_onset_ms > start_ms && r.first_onset_ms <= start_ms + 400);
    free(near);
  }
  free(caller);
  free(far);
}

static void silence_passes_through(void **state) {
  struct aec *a;
  assert_int_equal(aec_new(&a, 500), 0);
  int16_t zero[AEC_FRAME] = {0}, out[AEC_FRAME];
  for (int f = 0; f < 100; f++) {
    aec_playback(a, zero);
    aec_capture(a, zero, out);
    for (int i = 0; i < AEC_FRAME; i++) assert_int_equal(out[i], 0);
  }
  assert_true(aec_residual_db(a) <= -119);
  assert_int_equal(aec_delay_ms(a), -1);
  aec_free(a);
}

static void bad_arguments_refused(void **state) {
  struct aec *a = (void *)1;
  assert_int_equal(aec_new(&a, 0), -EINVAL);
  assert_null(a);
  assert_int_equal(aec_new(NULL, 500), -EINVAL);
  assert_int_equal(aec_new(&a, 100000), -EINVAL);
  aec_free(NULL);
  aec_playback(NULL, NULL);
  aec_capture(NULL, NULL, NULL);
  assert_int_equal(aec_delay_ms(NULL), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(echo_removed_and_never_a_turn),
      cmocka_unit_test(caller_heard_over_the_echo),
      cmocka_unit_test(silence_passes_through),
      cmocka_unit_test(bad_arguments_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
