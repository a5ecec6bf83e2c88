/*
 * voice agent: turn-taking, barge-in and echo robustness, driven frame by
 * frame as the media tick drives it.
 *
 * The caller's side is simulated: what the agent says goes into a delay
 * line and comes back attenuated, as through a speakerphone, mixed with the
 * caller's own speech (a flite voice other than the agent's). The engines
 * are the load-test ones (scripted ASR, fixed LLM, tone TTS, which plays
 * real pre-synthesised speech), so the outcome depends on the agent's
 * audio front end and turn logic alone.
 */
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "agent/voice.h"
#include "audio/resample.h"
#include "core/pool.h"
#include "engines/engines.h"
#include "engines/tts/flite_voices.h"


#define F VOICE_FRAME     /* a frame sent, 48 kHz */
#define FI VOICE_IN_FRAME  /* a frame heard, 16 kHz */
#define MAX_DELAY_FRAMES 32

struct sim {
  uv_loop_t loop;
  struct mailbox *home;
  struct pool *pool;
  struct engines *eng;
  struct config cfg;
  struct voice_agent *va;
  int16_t delay[MAX_DELAY_FRAMES][FI]; /* what the caller's speaker played, at 16 kHz */
  struct resampler *down;
  int delay_frames, head;
  double gain;
  /* what happened */
  int replies, interrupted, user_states, ended;
  int onset_frame; /* the frame of the last user_speaking state */
  char last_reply[1024], end_reason[32];
  int frame;
  /* `usage` events, summed; the turn of the last one */
  int usages, usage_turn;
  long long tts_chars, tts_chars_cached, llm_tokens;
  double asr_seconds;
};

static void on_home(struct mailbox *mb, struct mailbox_msg *m, void *u) { free(m); }

static void on_event(void *user, char *json) {
  struct sim *s = user;
  json_t *ev = json_loads(json, 0, NULL);
  free(json);
  const char *type = json_string_value(json_object_get(ev, "type"));
  if (type && !strcmp(type, "reply")) {
    s->replies++;
    s->interrupted += json_is_true(json_object_get(ev, "interrupted"));
    snprintf(s->last_reply, sizeof s->last_reply, "%s", json_string_value(json_object_get(ev, "text")));
  } else if (type && !strcmp(type, "usage")) {
    s->usages++;
    s->usage_turn = (int)json_integer_value(json_object_get(ev, "turn"));
    s->tts_chars += json_integer_value(json_object_get(ev, "tts_chars"));
    s->tts_chars_cached += json_integer_value(json_object_get(ev, "tts_chars_cached"));
    s->llm_tokens += json_integer_value(json_object_get(ev, "llm_input_tokens")) +
                     json_integer_value(json_object_get(ev, "llm_output_tokens"));
    s->asr_seconds += json_number_value(json_object_get(ev, "asr_seconds"));
  } else if (type && !strcmp(type, "state")) {
    if (!strcmp(json_string_value(json_object_get(ev, "state")), "user_speaking")) {
      s->user_states++;
      s->onset_frame = s->frame;
    }
  }
  json_decref(ev);
}

static void on_end(void *user, const char *reason) {
  struct sim *s = user;
  s->ended = 1;
  snprintf(s->end_reason, sizeof s->end_reason, "%s", reason);
}

static void on_kick(void *user) {}

static void sim_start(struct sim *s, const char *script, int delay_ms, double gain) {
  memset(s, 0, sizeof *s);
  config_defaults(&s->cfg);
  snprintf(s->cfg.asr, sizeof s->cfg.asr, "scripted");
  snprintf(s->cfg.llm, sizeof s->cfg.llm, "fixed");
  snprintf(s->cfg.tts, sizeof s->cfg.tts, "tone");
  snprintf(s->cfg.asr_prompt, sizeof s->cfg.asr_prompt, "%s", script);
  s->cfg.idle_prompt_ms = s->cfg.idle_hangup_ms = 0;
  assert_int_equal(uv_loop_init(&s->loop), 0);
  assert_int_equal(mailbox_new(&s->home, &s->loop, on_home, s), 0);
  assert_int_equal(pool_new(&s->pool, 2), 0);
  char err[256];
  struct engine_env env = {&s->cfg, s->pool, s->home, NULL};
  assert_int_equal(engines_open(&s->eng, &env, err, sizeof err), 0);
  struct voice_host host = {on_event, on_end, on_kick, s};
  assert_int_equal(voice_agent_new(&s->va, "test", &s->cfg, s->eng, s->home, NULL, &host), 0);
  voice_agent_start(s->va);
  assert_int_equal(resampler_new(&s->down, 48000, 16000, 3), 0);
  s->delay_frames = delay_ms / 20;
  s->gain = gain;
}

static void sim_stop(struct sim *s) {
  voice_agent_free(s->va);
  resampler_free(s->down);
  pool_stop(s->pool);
  engines_close(s->eng);
  pool_free(s->pool);
  mailbox_close(s->home, NULL);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&s->loop), 0);
}

/* One 20 ms tick: the caller's mic carries `user` (or nothing) plus the echo. Returns 1 if the AI spoke. */
static int step(struct sim *s, const int16_t *user) {
  int16_t near[FI], out[F], out16[FI + 16] = {0};
  const int16_t *echo = s->delay[(s->head + MAX_DELAY_FRAMES - s->delay_frames) % MAX_DELAY_FRAMES];
  for (int i = 0; i < FI; i++) {
    double v = (user ? user[i] : 0) + s->gain * echo[i];
    near[i] = (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
  }
  voice_agent_hear(s->va, near);
  int spoke = voice_agent_speak(s->va, out);
  resampler_process(s->down, out, F, out16, FI + 16);
  memcpy(s->delay[s->head], out16, sizeof s->delay[0]);
  s->head = (s->head + 1) % MAX_DELAY_FRAMES;
  uv_run(&s->loop, UV_RUN_NOWAIT);
  uv_sleep(1); /* engine threads get a moment: the simulation runs ~10x real time */
  uv_run(&s->loop, UV_RUN_NOWAIT);
  s->frame++;
  return spoke;
}

/* Speech of a voice other than the agent's, at 16 kHz as the call decodes it; *frames set. */
static int16_t *caller_speech(const char *text, int *frames) {
  int16_t *raw;
  size_t n_raw;
  int rate;
  assert_int_equal(tts_flite_render(tts_flite_voice("awb"), text, &raw, &n_raw, &rate), 0);
  int16_t *pcm;
  size_t n;
  assert_int_equal(resampler_convert(raw, n_raw, rate, VOICE_IN_RATE, 3, &pcm, &n), 0);
  free(raw);
  *frames = (int)(n / FI);
  return pcm;
}

/* The caller says `text`, then the agent answers; returns the frame the reply's audio started. */
static int ask(struct sim *s, const char *text) {
  int frames;
  int16_t *speech = caller_speech(text, &frames);
  for (int f = 0; f < 10; f++) step(s, NULL);
  for (int f = 0; f < frames; f++) step(s, speech + (size_t)f * FI);
  free(speech);
  for (int f = 0; f < 300; f++)
    if (step(s, NULL)) return s->frame;
  fail_msg("no reply within 6 s");
  return -1;
}

/* Runs until the reply event arrives (or `limit` frames). */
static void until_reply(struct sim *s, int limit) {
  int before = s->replies;
  for (int f = 0; f < limit && s->replies == before; f++) step(s, NULL);
}

static void own_echo_never_interrupts(void **state) {
  static const int delays[] = {100, 200, 300};
  static const double gains[] = {0.5, 0.25, 0.1}; /* -6, -12, -20 dB */
  for (size_t d = 0; d < 3; d++) {
    for (size_t g = 0; g < 3; g++) {
      struct sim s;
      sim_start(&s, "what can you do", delays[d], gains[g]);
      ask(&s, "What can you do?");
      int users_before = s.user_states;
      until_reply(&s, 2000);
      print_message("echo %d ms at %.0f dB: %d replies, %d interrupted, %d false onsets\n",
                    delays[d], 20 * log10(gains[g]), s.replies, s.interrupted,
                    s.user_states - users_before);
      assert_int_equal(s.replies, 1);
      assert_int_equal(s.interrupted, 0);
      assert_int_equal(s.user_states, users_before);
      sim_stop(&s);
    }
  }
}

static void real_speech_interrupts_over_the_echo(void **state) {
  struct sim s;
  sim_start(&s, "what can you do|wait a moment please", 200, 0.3);
  ask(&s, "What can you do?");
  for (int f = 0; f < 25; f++) step(&s, NULL); /* half a second into the reply */
  int frames;
  int16_t *speech = caller_speech("Wait a moment, please.", &frames);
  int stopped_after = -1, began = -1, stop_frame = -1;
  for (int f = 0; f < frames; f++) {
    const int16_t *fr = speech + (size_t)f * FI;
    double e = 0;
    for (int i = 0; i < FI; i++) e += (double)fr[i] * fr[i];
    if (began < 0 && 10 * log10(e / FI / (32768.0 * 32768.0) + 1e-12) > -40) began = f;
    int spoke = step(&s, fr);
    if (!spoke && began >= 0 && stopped_after < 0) {
      stopped_after = f - began;
      stop_frame = s.frame;
    }
  }
  free(speech);
  print_message("AI audio stopped %d ms after the caller began, %d ms after the onset was "
                "detected\n", stopped_after * 20, (stop_frame - s.onset_frame) * 20);
  /* The bound is from the detected onset; detection itself takes longer over double talk. */
  assert_true(stopped_after >= 0 && stopped_after * 20 <= 800);
  assert_true(stop_frame - s.onset_frame <= 5);
  until_reply(&s, 300);
  assert_int_equal(s.interrupted, 1);
  until_reply(&s, 1500); /* the answer to the interruption */
  assert_int_equal(s.replies, 2);
  sim_stop(&s);
}

static void backchannel_resumes_the_reply(void **state) {
  struct sim s;
  sim_start(&s, "what can you do|uh-huh", 200, 0.1);
  ask(&s, "What can you do?");
  for (int f = 0; f < 25; f++) step(&s, NULL);
  int frames;
  int16_t *speech = caller_speech("Uh huh.", &frames);
  for (int f = 0; f < frames; f++) step(&s, speech + (size_t)f * FI);
  free(speech);
  int resumed = 0;
  for (int f = 0; f < 150 && !resumed; f++) resumed = step(&s, NULL);
  assert_true(resumed);
  until_reply(&s, 2000);
  assert_int_equal(s.replies, 1);
  assert_int_equal(s.interrupted, 0);
  sim_stop(&s);
}

static void short_noise_does_not_interrupt(void **state) {
  struct sim s;
  sim_start(&s, "what can you do|noise", 200, 0.1);
  ask(&s, "What can you do?");
  for (int f = 0; f < 25; f++) step(&s, NULL);
  int16_t click[FI];
  unsigned seed = 7;
  for (int f = 0; f < 4; f++) { /* 80 ms of loud noise: a knock on the table */
    for (int i = 0; i < FI; i++) click[i] = (int16_t)((rand_r(&seed) % 40000) - 20000);
    step(&s, click);
  }
  until_reply(&s, 2000);
  assert_int_equal(s.replies, 1);
  assert_int_equal(s.interrupted, 0);
  sim_stop(&s);
}

static void idle_caller_is_asked_then_left(void **state) {
  struct sim s;
  sim_start(&s, "hello", 200, 0.1);
  s.cfg.idle_prompt_ms = 1000;
  s.cfg.idle_hangup_ms = 4000;
  for (int f = 0; f < 1000 && !s.ended; f++) step(&s, NULL);
  assert_true(s.ended);
  assert_string_equal(s.end_reason, "idle");
  assert_int_equal(s.replies, 2); /* "are you still there?", then the farewell */
  sim_stop(&s);
}

/* One usage event per reply, with the turn it answered and what it used. */
static void usage_says_what_each_turn_used(void **state) {
  struct sim s;
  sim_start(&s, "what can you do", 200, 0.1);
  int frames;
  int16_t *speech = caller_speech("What can you do?", &frames);
  free(speech);
  ask(&s, "What can you do?");
  until_reply(&s, 2000);
  assert_int_equal(s.replies, 1);
  assert_int_equal(s.usages, 1);
  assert_int_equal(s.usage_turn, 1);
  /* Every character of the reply was synthesised (the chunker may drop the spaces
   * between sentences); tone is not cached; the fixed LLM reports no tokens. */
  long long reply = (long long)strlen(s.last_reply);
  print_message("reply of %lld characters: %lld synthesised, %.1f s of audio recognised "
                "(speech %.2f s)\n", reply, s.tts_chars, s.asr_seconds, frames * 0.02);
  assert_true(s.tts_chars <= reply && s.tts_chars >= reply - 8);
  assert_int_equal(s.tts_chars_cached, 0);
  assert_int_equal(s.llm_tokens, 0);
  /* The utterance and its pre-roll, no more than its speech plus the endpoint. */
  assert_true(s.asr_seconds >= frames * 0.02 * 0.7);
  assert_true(s.asr_seconds <= frames * 0.02 + 0.5 + s.cfg.endpoint_ms / 1000.0);
  voice_agent_free(s.va); /* nothing used since: no more usage */
  s.va = NULL;
  assert_int_equal(s.usages, 1);
  sim_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(own_echo_never_interrupts),
      cmocka_unit_test(real_speech_interrupts_over_the_echo),
      cmocka_unit_test(backchannel_resumes_the_reply),
      cmocka_unit_test(short_noise_does_not_interrupt),
      cmocka_unit_test(idle_caller_is_asked_then_left),
      cmocka_unit_test(usage_says_what_each_turn_used),
  };
  if (tts_flite_voices_acquire() != 0) return 1; /* the caller's voice */
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  tts_flite_voices_release();
  return failed;
}
