/*
 * turn: the end-of-turn rule. What words leave a turn open, how digits and
 * the AI's question change that, the silence each verdict asks for, and
 * pitch contours that fall or stay level.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/turn.h"

static void expect_cue(const char *text, const char *ai_last, enum turn_cue want) {
  enum turn_cue got = turn_text_cue(text, ai_last);
  if (got != want)
    fail_msg("\"%s\" (after \"%s\"): %s, expected %s", text, ai_last ? ai_last : "",
             turn_cue_name(got), turn_cue_name(want));
}

static void finished_sentences_end_the_turn(void **state) {
  (void)state;
  static const char *const done[] = {
      "what time is it", "What is twelve plus eight?", "thank you", "hello there",
      "I'd like a table for two.", "what is ten minus four", "yes", "no thanks",
      "book it for tomorrow evening", "现在几点了", "我想订一张桌子。", "今天天气怎么样？",
      "好的", "可以吗", "I need one", "can you help me", "it is seven", "what is seven plus two",
      "tell me more", NULL};
  for (int i = 0; done[i]; i++) expect_cue(done[i], "", TURN_DONE);
}

static void open_phrases_keep_the_turn(void **state) {
  (void)state;
  static const char *const more[] = {
      "I'd like to book a table for", "and", "um", "because", "I want to go to the",
      "my number is four five six", "a table for.", "well, I think,", "what is two plus",
      "I'd", "so my name is", "Um.", "我想", "因为", "我的电话是一三八", "我要去那个",
      "还有", "the one with the", "call me at 555 1234", "could you tell me", "let me",
      "what is seven", "how much is 40", NULL};
  for (int i = 0; more[i]; i++) expect_cue(more[i], "", TURN_MORE);
}

static void digits_asked_for_keep_the_turn(void **state) {
  (void)state;
  expect_cue("five", "", TURN_DONE);
  expect_cue("five", "What is your phone number?", TURN_MORE);
  expect_cue("it is 4", "Could you read me the code on the card?", TURN_MORE);
  expect_cue("三", "请问您的电话号码是多少？", TURN_MORE);
  expect_cue("yes please", "Shall I read back your number?", TURN_DONE);
}

static void no_words_leave_it_to_the_pitch(void **state) {
  (void)state;
  expect_cue("", "", TURN_UNSURE);
  expect_cue("   ", "", TURN_UNSURE);
  expect_cue("...", "", TURN_UNSURE);
  expect_cue(NULL, "", TURN_UNSURE);
}

static void silence_follows_the_verdict(void **state) {
  (void)state;
  assert_int_equal(turn_silence_ms(TURN_DONE, TURN_PITCH_LEVEL, 250, 1200), 250);
  assert_int_equal(turn_silence_ms(TURN_MORE, TURN_PITCH_FALL, 250, 1200), 1200);
  int fall = turn_silence_ms(TURN_UNSURE, TURN_PITCH_FALL, 250, 1200);
  int level = turn_silence_ms(TURN_UNSURE, TURN_PITCH_LEVEL, 250, 1200);
  int unknown = turn_silence_ms(TURN_UNSURE, TURN_PITCH_UNKNOWN, 250, 1200);
  assert_true(fall > 250 && fall < level && level < 1200);
  assert_int_equal(unknown, level);
  /* a lower bound above the upper one: the upper one rules */
  assert_int_equal(turn_silence_ms(TURN_DONE, TURN_PITCH_FALL, 900, 600), 600);
}

static void a_doubtful_last_word_keeps_the_turn(void **state) {
  (void)state;
  /* "a table for it": finished by its words, but the recogniser doubts "it" */
  enum turn_cue cue = turn_text_cue("i'd like to book a table for it", "");
  assert_int_equal(cue, TURN_DONE);
  assert_int_equal(turn_cue_trusted(cue, 0.1f), TURN_MORE);
  assert_int_equal(turn_cue_trusted(cue, TURN_TRUST_MIN), TURN_DONE);
  assert_int_equal(turn_cue_trusted(cue, 0.95f), TURN_DONE);
  /* a recogniser that does not say is taken at its words */
  assert_int_equal(turn_cue_trusted(cue, -1), TURN_DONE);
  /* doubt never shortens a wait */
  assert_int_equal(turn_cue_trusted(TURN_MORE, 0.99f), TURN_MORE);
  assert_int_equal(turn_cue_trusted(TURN_UNSURE, 0.01f), TURN_UNSURE);
}

/* The pitch of `n` frames: f0 for the first two thirds, then a glide to f1; `pause` frames of none. */
static void contour(float *hz, int n, double f0, double f1, int pause) {
  int third = n / 3;
  for (int i = 0; i < n - third; i++) hz[i] = (float)f0;
  for (int i = 0; i < third; i++) hz[n - third + i] = (float)(f0 + (f1 - f0) * (i + 1) / third);
  for (int i = 0; i < pause; i++) hz[n + i] = 0;
}

static void pitch_falling_at_the_end_is_heard(void **state) {
  (void)state;
  float hz[40];
  contour(hz, 18, 180, 125, 5);
  assert_int_equal(turn_pitch_trend(hz, 23), TURN_PITCH_FALL);
  contour(hz, 18, 180, 182, 5);
  assert_int_equal(turn_pitch_trend(hz, 23), TURN_PITCH_LEVEL);
  contour(hz, 18, 150, 220, 5);
  assert_int_equal(turn_pitch_trend(hz, 23), TURN_PITCH_LEVEL);
  /* unvoiced frames between the syllables do not matter */
  contour(hz, 18, 200, 140, 5);
  for (int i = 1; i < 18; i += 4) hz[i] = 0;
  assert_int_equal(turn_pitch_trend(hz, 23), TURN_PITCH_FALL);
}

static void octave_slips_are_not_a_fall(void **state) {
  (void)state;
  float hz[24];
  contour(hz, 24, 160, 160, 0);
  hz[20] = hz[22] = 80; /* the tracker read twice the period in two frames */
  assert_int_equal(turn_pitch_trend(hz, 24), TURN_PITCH_LEVEL);
}

static void no_voice_no_pitch(void **state) {
  (void)state;
  float hz[20] = {0};
  assert_int_equal(turn_pitch_trend(hz, 20), TURN_PITCH_UNKNOWN);
  contour(hz, 3, 180, 120, 10); /* three voiced frames: too few to tell */
  assert_int_equal(turn_pitch_trend(hz, 13), TURN_PITCH_UNKNOWN);
  assert_int_equal(turn_pitch_trend(hz, 0), TURN_PITCH_UNKNOWN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(finished_sentences_end_the_turn),
      cmocka_unit_test(open_phrases_keep_the_turn),
      cmocka_unit_test(digits_asked_for_keep_the_turn),
      cmocka_unit_test(no_words_leave_it_to_the_pitch),
      cmocka_unit_test(silence_follows_the_verdict),
      cmocka_unit_test(a_doubtful_last_word_keeps_the_turn),
      cmocka_unit_test(pitch_falling_at_the_end_is_heard),
      cmocka_unit_test(octave_slips_are_not_a_fall),
      cmocka_unit_test(no_voice_no_pitch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
