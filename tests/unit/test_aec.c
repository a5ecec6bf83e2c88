/*
 * aec: the far end is flite speech; the microphone hears it again 100, 200
 * or 300 ms later, 6 to 20 dB down, low-passed and with a reflection, over a
 * little room noise. Checks that the delay is found, reports the echo return
 * loss enhancement (ERLE), that a VAD fed the output and aec_residual_db never
 * starts a turn on the echo alone, and that a second talker over the echo
 * (double talk) still does. Ends with ns per frame.
 *
 * Then calls played out frame by frame, the way the voice agent runs them:
 * the caller interrupts a reply, the AI's audio stops once the VAD has heard
 * 60 ms of them, and the next reply's echo must start no turn, however the
 * caller's words after the AI fell silent line up with what it had said,
 * and also when the echo grows 6 dB louder halfway (the volume turned up)
 * or its path moves between two replies (a jitter buffer re-synced).
 */
#include <errno.h>
#include <malloc.h>
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
  /* 480 ms: near the longest path looked for here (500), which the ring of sent audio
   * must still reach */
  const int delays[] = {100, 200, 300, 480};
  const double attens[] = {6, 12, 20};
  for (int di = 0; di < 4; di++)
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

/* --- calls with barge-ins ------------------------------------------------------------ */

#define CALL_S 40

/* One call: the AI's replies, the caller's turns and the room, 20 ms at a time. */
struct call_sim {
  struct aec *a;
  struct vad *v;
  float *played;     /* what the AI sent, as heard: silence while paused */
  size_t pos, len;   /* samples so far, capacity */
  int delay_ms;
  int delay_later;   /* the echo path's delay from the first reply of the call's second half */
  double gain;       /* echo path, linear */
  double gain_later; /* from the middle of the call on */
  uint64_t seed;
};

/* Runs one frame: `ai` (NULL = silence) goes out, the microphone hears its
 * echo plus `caller` (NULL = none) plus the room. Returns the VAD's event. */
static enum vad_event sim_frame(struct call_sim *c, const float *ai, const float *caller) {
  float mic[AEC_FRAME], noise[AEC_FRAME];
  int16_t f16[AEC_FRAME], n16[AEC_FRAME], out[AEC_FRAME];
  assert_true(c->pos + AEC_FRAME <= c->len);
  for (int i = 0; i < AEC_FRAME; i++) c->played[c->pos + (size_t)i] = ai ? ai[i] : 0;
  sig_pink(noise, AEC_FRAME, c->seed++);
  sig_set_level(noise, AEC_FRAME, -70);
  size_t d = SIG_MS(c->delay_ms);
  double g = c->pos >= c->len / 2 ? c->gain_later : c->gain;
  for (int i = 0; i < AEC_FRAME; i++) {
    size_t t = c->pos + (size_t)i;
    mic[i] = noise[i] + (caller ? caller[i] : 0) + (t >= d ? (float)(g * c->played[t - d]) : 0);
  }
  sig_to_pcm(c->played + c->pos, f16, AEC_FRAME);
  sig_to_pcm(mic, n16, AEC_FRAME);
  aec_playback(c->a, f16);
  aec_capture(c->a, n16, out);
  c->pos += AEC_FRAME;
  return vad_process(c->v, out, aec_residual_db(c->a));
}

/* Plays `reply`; the caller starts `caller` `barge_ms` into it (no caller: -1).
 * Returns the onsets heard before the caller spoke (the echo taken for
 * them); *stopped_ms gets how long after the caller's first frame the AI
 * fell silent (-1: it did not). */
static int sim_reply(struct call_sim *c, const float *reply, size_t rlen, const float *caller,
                     size_t clen, long barge_ms, long *stopped_ms) {
  size_t rf = 0, cf = 0, barge = barge_ms < 0 ? (size_t)-1 : (size_t)barge_ms / 20;
  int falses = 0, paused = 0;
  *stopped_ms = -1;
  /* until the reply is over (or stopped), the caller is done and the echo has died */
  for (size_t f = 0;; f++) {
    int ai_left = !paused && (rf + 1) * AEC_FRAME <= rlen;
    int caller_on = f >= barge && (cf + 1) * AEC_FRAME <= clen;
    if (!ai_left && !caller_on && f > rf + (size_t)c->delay_ms / 20 + 10) break;
    enum vad_event ev = sim_frame(c, ai_left ? reply + rf++ * AEC_FRAME : NULL,
                                  caller_on ? caller + cf++ * AEC_FRAME : NULL);
    if (ev == VAD_ONSET && f < barge) {
      falses++;
      if (getenv("TS_AEC_TRACE"))
        fprintf(stderr, "false onset %zu ms into a reply at %zu ms, delay estimate %d ms\n",
                f * 20, c->pos * 1000 / SIG_RATE, aec_delay_ms(c->a));
    }
    if (!paused && vad_in_speech(c->v) && vad_voiced_ms(c->v) >= 60) {
      paused = 1; /* the voice agent withholds the next frame */
      if (f >= barge) *stopped_ms = (long)(f + 1 - barge) * 20;
    }
  }
  /* the caller's turn ends; the AI thinks for 800 ms */
  for (int i = 0; i < 40; i++) sim_frame(c, NULL, NULL);
  return falses;
}

static const char *REPLIES[] = {
    "Seven plus five is twelve. Is there anything else you would like to know?",
    "Twelve. You can ask me another sum whenever you like, I am happy to help.",
    "The answer is twelve. I can also tell you about the weather or the time.",
};

/* Reply, barge-in, reply, ... for a call; returns the false onsets (echo
 * taken for the caller) and checks that every barge-in stopped the AI;
 * *slowest_ms gets the longest a barge-in took to stop it. */
static int barge_in_call(int delay_ms, int later_ms, double gain_db, double later_db,
                         uint64_t seed, long *slowest_ms) {
  struct call_sim c = {.len = SIG_MS(CALL_S * 1000), .delay_ms = delay_ms, .seed = seed,
                       .delay_later = later_ms,
                       .gain = pow(10, gain_db / 20), .gain_later = pow(10, later_db / 20)};
  assert_int_equal(aec_new(&c.a, 600), 0);
  assert_int_equal(vad_new(&c.v, &VAD_DEFAULTS), 0);
  c.played = sig_alloc(c.len);
  size_t clen;
  float *caller = sig_flite("What is seven plus five?", 1, &clen);
  assert_non_null(caller);
  sig_set_level(caller, clen, -20);
  for (int i = 0; i < 25; i++) sim_frame(&c, NULL, NULL);
  int falses = 0;
  *slowest_ms = 0;
  for (int turn = 0;; turn++) {
    if (c.pos >= c.len / 2 && c.delay_later) c.delay_ms = c.delay_later; /* a jitter buffer re-synced */
    size_t rlen;
    float *reply = sig_flite(REPLIES[turn % 3], 0, &rlen);
    assert_non_null(reply);
    sig_set_level(reply, rlen, -20);
    if (c.pos + rlen + 2 * clen + SIG_MS(4000) >= c.len) {
      free(reply);
      break;
    }
    long stopped;
    int barge = turn % 2 == 1;
    falses += sim_reply(&c, reply, rlen, caller, clen, barge ? 1200 : -1, &stopped);
    if (barge) { /* the caller was heard over the echo, and soon */
      assert_true(falses > 0 || (stopped > 0 && stopped <= 400));
      if (stopped > *slowest_ms) *slowest_ms = stopped;
    } else { /* the caller's next turn, after the reply */
      falses += sim_reply(&c, reply, 0, caller, clen, 0, &stopped);
    }
    free(reply);
  }
  free(caller);
  free(c.played);
  vad_free(c.v);
  aec_free(c.a);
  return falses;
}

static void echo_after_a_barge_in_is_no_turn(void **state) {
  const int delays[] = {200, 300, 400, 80};
  const double gains[] = {-10.5, -10.5, -10.5, -4.4}; /* 0.3, 0.3, 0.3, 0.6 */
  for (int i = 0; i < 4; i++) {
    long slowest;
    int falses = barge_in_call(delays[i], 0, gains[i], gains[i], 70 + (uint64_t)i, &slowest);
    printf("# barge-ins, delay %d ms, echo %.1f dB: %d false onsets, barge-ins stopped the AI"
           " within %ld ms\n", delays[i], gains[i], falses, slowest);
    assert_int_equal(falses, 0);
  }
}

static void echo_turned_up_mid_call_is_no_turn(void **state) {
  long slowest;
  int falses = barge_in_call(200, 0, -10.5, -4.5, 90, &slowest);
  printf("# barge-ins, echo -10.5 dB then -4.5 dB: %d false onsets, barge-ins stopped the AI"
         " within %ld ms\n", falses, slowest);
  assert_int_equal(falses, 0);
}

/* The echo path moves between two replies, as when the browser's jitter
 * buffer re-syncs to our next talkspurt: the filter fitted to the old path
 * must not be trusted with the new one, nor the reply's first words taken
 * for the caller, whether the path grew or shrank, by a little (the
 * filter's span still holds it) or by more. */
static void echo_path_moved_between_replies_is_no_turn(void **state) {
  const int moves[][2] = {{290, 350}, {290, 320}, {350, 290}, {200, 380}, {380, 200}};
  for (int i = 0; i < 5; i++) {
    long slowest;
    int falses = barge_in_call(moves[i][0], moves[i][1], -10.5, -10.5, 100 + (uint64_t)i,
                               &slowest);
    printf("# barge-ins, echo path %d ms then %d ms: %d false onsets, barge-ins stopped the AI"
           " within %ld ms\n", moves[i][0], moves[i][1], falses, slowest);
    assert_int_equal(falses, 0);
  }
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

/* Bytes the process has from malloc, or -1 where the allocator keeps no
 * such count (a sanitizer's). */
static long heap_bytes(void) {
  struct mallinfo2 m = mallinfo2();
  return (long)(m.uordblks + m.hblkhd);
}
static int heap_counted(void) {
  long before = heap_bytes();
  void *probe = malloc(100000);
  long after = heap_bytes();
  free(probe);
  return probe && after - before >= 100000;
}

/* speexdsp's canceller is made when the first echo path is known, not
 * before: a call with no echo holds only the rings. */
static void the_canceller_is_made_once_an_echo_path_is_known(void **state) {
  size_t n;
  float *far = ai_speech(&n);
  float *echo = sig_alloc(n), *near = sig_alloc(n);
  echo_path(far, echo, n, 200, 12);
  sig_pink(near, n, 7);
  sig_set_level(near, n, -70);
  long before = heap_bytes();
  struct aec *a;
  assert_int_equal(aec_new(&a, 600), 0);
  long made = heap_bytes() - before;
  if (heap_counted()) assert_true(made < 48 * 1024); /* the rings: 0.92 s of audio, envelopes */
  assert_false(aec_cancelling(a));
  int16_t f16[AEC_FRAME], n16[AEC_FRAME], out[AEC_FRAME];
  size_t frames = n / AEC_FRAME;
  for (size_t f = 0; f < frames; f++) { /* no echo: nothing to aim at */
    sig_to_pcm(far + f * AEC_FRAME, f16, AEC_FRAME);
    sig_to_pcm(near + f * AEC_FRAME, n16, AEC_FRAME);
    aec_playback(a, f16);
    aec_capture(a, n16, out);
    assert_memory_equal(out, n16, sizeof out); /* passed through untouched */
  }
  assert_int_equal(aec_delay_ms(a), -1);
  assert_false(aec_cancelling(a));
  sig_mix(near, echo, n, 1);
  for (size_t f = 0; f < frames; f++) { /* the same again, heard back */
    sig_to_pcm(far + f * AEC_FRAME, f16, AEC_FRAME);
    sig_to_pcm(near + f * AEC_FRAME, n16, AEC_FRAME);
    aec_playback(a, f16);
    aec_capture(a, n16, out);
    assert_int_equal(aec_cancelling(a), aec_delay_ms(a) >= 0);
  }
  assert_true(abs(aec_delay_ms(a) - 200) <= 10);
  if (heap_counted()) assert_true(heap_bytes() - before > made + 100 * 1024);
  aec_free(a);
  free(echo);
  free(near);
  free(far);
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
  assert_false(aec_cancelling(NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(echo_removed_and_never_a_turn),
      cmocka_unit_test(caller_heard_over_the_echo),
      cmocka_unit_test(echo_after_a_barge_in_is_no_turn),
      cmocka_unit_test(echo_turned_up_mid_call_is_no_turn),
      cmocka_unit_test(echo_path_moved_between_replies_is_no_turn),
      cmocka_unit_test(silence_passes_through),
      cmocka_unit_test(the_canceller_is_made_once_an_echo_path_is_known),
      cmocka_unit_test(bad_arguments_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
