/* playout: the AI's outgoing speech queue, segments and what was heard of them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/playout.h"
#include "audio/resample.h"

#include <math.h>

static void fill(struct playout *p, const char *text, int frames, int rate) {
  size_t n = (size_t)frames * (size_t)rate / 50;
  int16_t *pcm = malloc(n * sizeof *pcm);
  for (size_t i = 0; i < n; i++) pcm[i] = 1000;
  assert_int_equal(playout_begin_segment(p, text), 0);
  assert_int_equal(playout_append(p, pcm, n, rate), 0);
  playout_end_segment(p);
  free(pcm);
}

static void frames_come_out_in_order_and_segments_are_announced(void **state) {
  struct playout *p;
  assert_int_equal(playout_new(&p), 0);
  fill(p, "Hello there.", 10, PLAYOUT_RATE);
  fill(p, "How are you?", 10, PLAYOUT_RATE);
  int16_t pcm[PLAYOUT_FRAME];
  const char *started;
  int announced = 0, frames = 0;
  while (playout_take(p, pcm, &started)) {
    frames++;
    if (started) {
      announced++;
      assert_string_equal(started, announced == 1 ? "Hello there." : "How are you?");
      assert_int_equal(frames, announced == 1 ? 1 : 11);
    }
  }
  assert_int_equal(frames, 20);
  assert_int_equal(announced, 2);
  assert_true(playout_drained(p));
  playout_free(p);
}

static void other_rates_are_resampled_to_48k(void **state) {
  struct playout *p;
  assert_int_equal(playout_new(&p), 0);
  fill(p, "Sixteen.", 50, 16000);   /* one second */
  fill(p, "Twenty-two.", 50, 22050);
  size_t q = playout_queued(p);
  assert_true(q > 2 * 48000 - 400 && q < 2 * 48000 + 400);
  playout_free(p);
}

static void played_text_follows_the_audio(void **state) {
  struct playout *p;
  assert_int_equal(playout_new(&p), 0);
  fill(p, "one two three four", 10, PLAYOUT_RATE);
  fill(p, "five six seven eight", 10, PLAYOUT_RATE);
  int16_t pcm[PLAYOUT_FRAME];
  const char *started;
  char text[256];
  int complete;
  for (int i = 0; i < 15; i++) playout_take(p, pcm, &started);
  playout_played_text(p, text, sizeof text, &complete);
  assert_string_equal(text, "one two three four five six");
  assert_false(complete);
  while (playout_take(p, pcm, &started)) {}
  playout_played_text(p, text, sizeof text, &complete);
  assert_string_equal(text, "one two three four five six seven eight");
  assert_true(complete);
  playout_free(p);
}

static void chinese_counts_characters(void **state) {
  struct playout *p;
  assert_int_equal(playout_new(&p), 0);
  fill(p, "今天天气很好", 12, PLAYOUT_RATE);
  int16_t pcm[PLAYOUT_FRAME];
  const char *started;
  char text[256];
  int complete;
  for (int i = 0; i < 6; i++) playout_take(p, pcm, &started);
  playout_played_text(p, text, sizeof text, &complete);
  assert_string_equal(text, "今天天");
  playout_free(p);
}

static void clear_forgets_everything(void **state) {
  struct playout *p;
  assert_int_equal(playout_new(&p), 0);
  fill(p, "Hello.", 10, PLAYOUT_RATE);
  playout_clear(p);
  int16_t pcm[PLAYOUT_FRAME];
  const char *started;
  assert_int_equal(playout_take(p, pcm, &started), 0);
  assert_true(playout_drained(p));
  assert_int_equal(playout_begin_segment(p, "Open."), 0);
  assert_false(playout_drained(p));
  playout_free(p);
}

/* A voiced, wandering signal at `rate`. */
static int16_t *voice_at(int rate, size_t n) {
  int16_t *pcm = malloc(n * sizeof *pcm);
  for (size_t i = 0; i < n; i++) {
    double t = (double)i / rate;
    pcm[i] = (int16_t)(5000 * sin(2 * M_PI * (150 + 40 * sin(2 * M_PI * 3 * t)) * t) +
                       2000 * sin(2 * M_PI * 1234 * t));
  }
  return pcm;
}

/* Kept at 16 kHz and resampled as taken, the frames are exactly those of
 * resampling the whole reply at once, however the engine chunked it; the
 * last, partial frame is padded with silence. */
static void a_16k_reply_comes_out_as_resampling_it_whole_would_give(void **state) {
  const size_t n = 16000 + 100; /* one second and a bit */
  int16_t *in = voice_at(16000, n);
  int16_t *whole;
  size_t whole_n;
  assert_int_equal(resampler_convert(in, n, 16000, 48000, 3, &whole, &whole_n), 0);
  struct playout *p;
  assert_int_equal(playout_new(&p), 0);
  assert_int_equal(playout_begin_segment(p, "Sixteen."), 0);
  for (size_t at = 0, chunk = 137; at < n; at += chunk)
    assert_int_equal(playout_append(p, in + at, at + chunk < n ? chunk : n - at, 16000), 0);
  playout_end_segment(p);
  assert_int_equal(playout_queued(p), n * 3);
  assert_true(playout_memory(p) < n * 2 * 2); /* stored at 16 kHz, with room to grow */
  int16_t pcm[PLAYOUT_FRAME];
  const char *started;
  size_t frames = 0;
  while (playout_take(p, pcm, &started)) {
    size_t at = frames * PLAYOUT_FRAME, full = at + PLAYOUT_FRAME <= n * 3;
    if (full) assert_memory_equal(pcm, whole + at, sizeof pcm);
    else assert_memory_equal(pcm, whole + at, (n * 3 - at) * sizeof *pcm);
    frames++;
  }
  assert_int_equal(frames, 51);
  assert_true(playout_drained(p));
  assert_int_equal(playout_memory(p), 0); /* played out: the audio memory is given back */
  playout_free(p);
  free(whole);
  free(in);
}

/* 48 kHz audio is passed through untouched. */
static void audio_at_48k_is_sent_as_it_came(void **state) {
  int16_t *in = voice_at(48000, 4800);
  struct playout *p;
  assert_int_equal(playout_new(&p), 0);
  assert_int_equal(playout_begin_segment(p, "Full band."), 0);
  assert_int_equal(playout_append(p, in, 4800, 48000), 0);
  int16_t pcm[PLAYOUT_FRAME];
  const char *started;
  for (int f = 0; f < 5; f++) {
    assert_int_equal(playout_take(p, pcm, &started), 1);
    assert_memory_equal(pcm, in + f * PLAYOUT_FRAME, sizeof pcm);
  }
  assert_int_equal(playout_take(p, pcm, &started), 0);
  playout_free(p);
  free(in);
}

/* An engine changing rate mid-reply: what is queued and what follows play at
 * 48 kHz, the words heard still follow the audio, and the next reply is
 * stored at its own rate again. */
static void a_rate_change_mid_reply_keeps_the_words_in_step(void **state) {
  struct playout *p;
  assert_int_equal(playout_new(&p), 0);
  fill(p, "one two three four", 50, 16000);
  int16_t pcm[PLAYOUT_FRAME];
  const char *started;
  for (int i = 0; i < 25; i++) assert_int_equal(playout_take(p, pcm, &started), 1);
  fill(p, "five six seven eight", 50, 22050);
  size_t q = playout_queued(p);
  assert_true(q > 3 * 24000 - 400 && q < 3 * 24000 + 400);
  char text[128];
  int complete;
  playout_played_text(p, text, sizeof text, &complete);
  assert_string_equal(text, "one two");
  for (int i = 0; i < 50; i++) assert_int_equal(playout_take(p, pcm, &started), 1);
  playout_played_text(p, text, sizeof text, &complete);
  assert_string_equal(text, "one two three four five six");
  assert_false(complete);
  playout_clear(p);
  fill(p, "Again.", 50, 24000);
  assert_int_equal(playout_queued(p), 50 * 960);
  assert_true(playout_memory(p) < 50 * 960 * 2); /* at 24 kHz, not 48 */
  playout_free(p);
}

/* Signal to noise of `got` against `want`, in dB. */
static double snr_db(const int16_t *want, const int16_t *got, size_t n) {
  double sig = 0, err = 0;
  for (size_t i = 0; i < n; i++) {
    sig += (double)want[i] * want[i];
    err += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
  }
  return 10 * log10(sig / (err + 1e-9));
}

/* The delay of a resampler at quality 3, in its input samples. */
static int delay_of(int in_rate, int out_rate) {
  struct resampler *r;
  assert_int_equal(resampler_new(&r, in_rate, out_rate, 3), 0);
  int d = resampler_input_latency(r);
  resampler_free(r);
  return d;
}

/* A reply kept at 16 kHz hands out, with each frame, the stored samples
 * behind it: the whole stream delayed by the resamplers' delays (up, and
 * back down), frame by frame, partial frames (an engine falling behind)
 * included. */
static void a_16k_reply_hands_out_the_samples_behind_each_frame(void **state) {
  const size_t n = 16000;
  int16_t *in = voice_at(16000, n);
  struct playout *p;
  assert_int_equal(playout_new(&p), 0);
  assert_int_equal(playout_begin_segment(p, "Sixteen."), 0);
  int16_t pcm[PLAYOUT_FRAME];
  const char *started;
  assert_null(playout_sent16(p));
  size_t lat = (size_t)(delay_of(16000, 48000) + delay_of(48000, 16000) / 3), got = 0, at = 0;
  assert_int_equal(lat, 48);
  int16_t *seen = calloc(n + 2 * PLAYOUT_FRAME16, sizeof *seen);
  /* 1000 samples, then the queue runs dry mid-frame, then the rest */
  size_t parts[] = {1000, n - 1000};
  for (int k = 0; k < 2; k++) {
    assert_int_equal(playout_append(p, in + at, parts[k], 16000), 0);
    at += parts[k];
    while (playout_take(p, pcm, &started)) {
      const int16_t *s16 = playout_sent16(p);
      assert_non_null(s16);
      size_t used = at - got < PLAYOUT_FRAME16 ? at - got : PLAYOUT_FRAME16;
      for (size_t i = used; i < PLAYOUT_FRAME16; i++) assert_int_equal(s16[i], 0);
      memcpy(seen + got, s16, used * sizeof *s16);
      got += used;
    }
    assert_null(playout_sent16(p)); /* the last take gave nothing */
  }
  assert_int_equal(got, n);
  for (size_t i = 0; i < lat; i++) assert_int_equal(seen[i], 0);
  assert_memory_equal(seen + lat, in, (n - lat) * sizeof *in);
  playout_free(p);
  free(seen);
  free(in);
}

/* The 16 kHz copy is what was sent, as the echo reference used to be made
 * from it: the sent 48 kHz stream resampled back down matches it, and
 * matches it much worse a sample either way. */
static void the_16k_copy_lines_up_with_the_sent_frames(void **state) {
  const size_t frames = 50, n = frames * PLAYOUT_FRAME16;
  int16_t *in = voice_at(16000, n);
  struct playout *p;
  assert_int_equal(playout_new(&p), 0);
  assert_int_equal(playout_begin_segment(p, "Sixteen."), 0);
  assert_int_equal(playout_append(p, in, n, 16000), 0);
  int16_t *sent = malloc(frames * PLAYOUT_FRAME * sizeof *sent);
  int16_t *copy = malloc(n * sizeof *copy);
  const char *started;
  for (size_t f = 0; f < frames; f++) {
    assert_int_equal(playout_take(p, sent + f * PLAYOUT_FRAME, &started), 1);
    memcpy(copy + f * PLAYOUT_FRAME16, playout_sent16(p), PLAYOUT_FRAME16 * sizeof *copy);
  }
  int16_t *down;
  size_t down_n;
  assert_int_equal(
      resampler_convert(sent, frames * PLAYOUT_FRAME, 48000, 16000, 3, &down, &down_n), 0);
  assert_true(down_n >= n);
  size_t skip = 100, len = n - 2 * skip; /* the start's transient left out */
  double at = snr_db(down + skip, copy + skip, len);
  double early = snr_db(down + skip - 1, copy + skip, len);
  double late = snr_db(down + skip + 1, copy + skip, len);
  assert_true(at > 40);
  assert_true(at > early + 6 && at > late + 6);
  /* kept at 24 or 48 kHz, there is no 16 kHz copy */
  playout_clear(p);
  fill(p, "Twenty-four.", 5, 24000);
  assert_int_equal(playout_take(p, sent, &started), 1);
  assert_null(playout_sent16(p));
  playout_clear(p);
  fill(p, "Forty-eight.", 5, 48000);
  assert_int_equal(playout_take(p, sent, &started), 1);
  assert_null(playout_sent16(p));
  playout_free(p);
  free(down);
  free(copy);
  free(sent);
  free(in);
}

/* The encoder's band follows the highest rate a reply's audio was made at. */
static void the_made_rate_is_the_highest_come_in(void **state) {
  (void)state;
  struct playout *p;
  assert_int_equal(playout_new(&p), 0);
  assert_int_equal(playout_made_rate(p), 0);
  fill(p, "a", 5, 16000);
  assert_int_equal(playout_made_rate(p), 16000);
  fill(p, "b", 5, 22050); /* espeak-ng after flite, in one reply */
  fill(p, "c", 5, 16000);
  assert_int_equal(playout_made_rate(p), 22050);
  playout_clear(p);
  assert_int_equal(playout_made_rate(p), 0);
  playout_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(frames_come_out_in_order_and_segments_are_announced),
      cmocka_unit_test(other_rates_are_resampled_to_48k),
      cmocka_unit_test(played_text_follows_the_audio),
      cmocka_unit_test(chinese_counts_characters),
      cmocka_unit_test(clear_forgets_everything),
      cmocka_unit_test(a_16k_reply_comes_out_as_resampling_it_whole_would_give),
      cmocka_unit_test(audio_at_48k_is_sent_as_it_came),
      cmocka_unit_test(a_rate_change_mid_reply_keeps_the_words_in_step),
      cmocka_unit_test(a_16k_reply_hands_out_the_samples_behind_each_frame),
      cmocka_unit_test(the_16k_copy_lines_up_with_the_sent_frames),
      cmocka_unit_test(the_made_rate_is_the_highest_come_in),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
