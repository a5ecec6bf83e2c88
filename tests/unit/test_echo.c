/*
 * echo agent: records an utterance, plays it back after the pause, ignores
 * clicks; behind the media layer's table (media/agent.h) it is found by
 * name, hears at 48 kHz and gives silence as zeros.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/agents.h"
#include "agent/echo.h"

static void noise(int16_t *pcm, double amp, unsigned *seed) {
  for (int i = 0; i < ECHO_FRAME; i++) pcm[i] = (int16_t)(amp * ((rand_r(seed) / (double)RAND_MAX) * 2 - 1));
}

static void tone(int16_t *pcm, double amp, int frame) {
  for (int i = 0; i < ECHO_FRAME; i++) {
    double t = (frame * ECHO_FRAME + i) / 48000.0;
    pcm[i] = (int16_t)(amp * sin(2 * M_PI * 220 * t) * (0.6 + 0.4 * sin(2 * M_PI * 4 * t)));
  }
}

/* Feeds silence-speech-silence; returns frames spoken back and checks the content. */
static void utterance_is_played_back_after_pause(void **state) {
  struct echo_agent *ea = echo_agent_new();
  int16_t in[ECHO_FRAME], out[ECHO_FRAME];
  unsigned seed = 1;
  for (int f = 0; f < 50; f++) { noise(in, 30, &seed); echo_agent_hear(ea, in); assert_int_equal(echo_agent_speak(ea, out), 0); }
  for (int f = 0; f < 50; f++) { tone(in, 8000, f); echo_agent_hear(ea, in); assert_int_equal(echo_agent_speak(ea, out), 0); }
  int spoke_at = -1;
  for (int f = 0; f < 40 && spoke_at < 0; f++) {
    noise(in, 30, &seed);
    echo_agent_hear(ea, in);
    if (echo_agent_speaking(ea)) spoke_at = f;
  }
  assert_true(spoke_at >= 28 && spoke_at <= 31); /* 600 ms hangover */
  int n = 0, loud = 0;
  while (echo_agent_speak(ea, out)) {
    double s = 0;
    for (int i = 0; i < ECHO_FRAME; i++) s += (double)out[i] * out[i];
    loud += sqrt(s / ECHO_FRAME) > 1000;
    n++;
  }
  assert_true(loud >= 48 && loud <= 51);
  assert_true(n >= 55 && n <= 70); /* speech, pre-roll and 200 ms of tail */
  assert_false(echo_agent_speaking(ea));
  echo_agent_free(ea);
}

static void clicks_are_not_speech(void **state) {
  struct echo_agent *ea = echo_agent_new();
  int16_t in[ECHO_FRAME], out[ECHO_FRAME];
  unsigned seed = 2;
  for (int f = 0; f < 200; f++) {
    if (f % 50 == 25) tone(in, 20000, f);
    else noise(in, 30, &seed);
    echo_agent_hear(ea, in);
    assert_int_equal(echo_agent_speak(ea, out), 0);
  }
  echo_agent_free(ea);
}

static void missing_frames_count_as_silence(void **state) {
  struct echo_agent *ea = echo_agent_new();
  int16_t in[ECHO_FRAME];
  for (int f = 0; f < 20; f++) { tone(in, 8000, f); echo_agent_hear(ea, in); }
  for (int f = 0; f < 31; f++) echo_agent_hear(ea, NULL);
  assert_true(echo_agent_speaking(ea));
  echo_agent_free(ea);
}

static void agents_are_found_by_name(void **state) {
  assert_ptr_equal(agent_ops_find("echo"), &echo_agent_ops);
  assert_ptr_equal(agent_ops_find("voice"), &voice_agent_ops);
  assert_null(agent_ops_find("parrot"));
  assert_null(agent_ops_find(NULL));
  assert_int_equal(echo_agent_ops.in_rate, 48000);
  assert_int_equal(voice_agent_ops.in_rate, 16000);
  assert_null(echo_agent_ops.speak_again); /* it never kicks its host */
}

/* Through the table, as a call drives it: the utterance comes back, and silence is zeros. */
static void table_plays_back_and_gives_silence_as_zeros(void **state) {
  const struct agent_ops *ops = agent_ops_find("echo");
  void *agent = NULL;
  struct agent_params p = {.call_id = "echo-test"};
  assert_int_equal(ops->create(&agent, &p), 0);
  int16_t in[ECHO_FRAME], out[ECHO_FRAME];
  int spoken = 0, silent_nonzero = 0;
  for (int f = 0; f < 200; f++) {
    if (f >= 10 && f < 40) tone(in, 8000, f);
    else memset(in, 0, sizeof in);
    ops->hear(agent, f % 7 == 3 ? NULL : in);
    memset(out, 0x7f, sizeof out);
    if (ops->speak(agent, out)) spoken++;
    else for (int i = 0; i < ECHO_FRAME; i++) silent_nonzero += out[i] != 0;
  }
  assert_true(spoken >= 30);
  assert_int_equal(silent_nonzero, 0);
  ops->destroy(agent);
  ops->destroy(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(utterance_is_played_back_after_pause),
      cmocka_unit_test(clicks_are_not_speech),
      cmocka_unit_test(missing_frames_count_as_silence),
      cmocka_unit_test(agents_are_found_by_name),
      cmocka_unit_test(table_plays_back_and_gives_silence_as_zeros),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
