/* playout: the AI's outgoing speech queue, segments and what was heard of them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/playout.h"

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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(frames_come_out_in_order_and_segments_are_announced),
      cmocka_unit_test(other_rates_are_resampled_to_48k),
      cmocka_unit_test(played_text_follows_the_audio),
      cmocka_unit_test(chinese_counts_characters),
      cmocka_unit_test(clear_forgets_everything),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
