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
#include "core/log.h"
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
  long long tts_chars_first; /* of the first usage event alone */
  double asr_seconds;
  /* the caller's turns (final transcripts that start one) and the latest `latency` of a turn */
  int turns;
  char last_turn[1024];
  int latencies, speculated, llm_wasted;
  double endpoint_ms;
};

static void on_home(struct mailbox *mb, struct mailbox_msg *m, void *u) { free(m); }

static void on_event(void *user, char *json) {
  struct sim *s = user;
  json_t *ev = json_loads(json, 0, NULL);
  if (getenv("TS_TEST_DEBUG") && !strstr(json, "\"level\"")) fprintf(stderr, "%d %s\n", s->frame, json);
  free(json);
  const char *type = json_string_value(json_object_get(ev, "type"));
  if (type && !strcmp(type, "reply")) {
    s->replies++;
    s->interrupted += json_is_true(json_object_get(ev, "interrupted"));
    snprintf(s->last_reply, sizeof s->last_reply, "%s", json_string_value(json_object_get(ev, "text")));
  } else if (type && !strcmp(type, "usage")) {
    if (!s->usages++) s->tts_chars_first = json_integer_value(json_object_get(ev, "tts_chars"));
    s->usage_turn = (int)json_integer_value(json_object_get(ev, "turn"));
    s->tts_chars += json_integer_value(json_object_get(ev, "tts_chars"));
    s->tts_chars_cached += json_integer_value(json_object_get(ev, "tts_chars_cached"));
    s->llm_tokens += json_integer_value(json_object_get(ev, "llm_input_tokens")) +
                     json_integer_value(json_object_get(ev, "llm_output_tokens"));
    s->asr_seconds += json_number_value(json_object_get(ev, "asr_seconds"));
  } else if (type && !strcmp(type, "transcript") && json_object_get(ev, "turn")) {
    s->turns++;
    snprintf(s->last_turn, sizeof s->last_turn, "%s", json_string_value(json_object_get(ev, "text")));
  } else if (type && !strcmp(type, "latency") && json_integer_value(json_object_get(ev, "turn")) > 0 &&
             !json_object_get(ev, "barge_in_ms")) {
    s->latencies++;
    s->speculated = json_is_true(json_object_get(ev, "speculated"));
    s->llm_wasted += (int)json_integer_value(json_object_get(ev, "llm_wasted"));
    s->endpoint_ms = json_number_value(json_object_get(ev, "endpoint_ms"));
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

/* The call starts: the agent greets with `greeting` ("": none), then listens. */
static void sim_start_greeting(struct sim *s, const char *script, int delay_ms, double gain,
                               const char *greeting) {
  memset(s, 0, sizeof *s);
  config_defaults(&s->cfg);
  snprintf(s->cfg.asr, sizeof s->cfg.asr, "scripted");
  snprintf(s->cfg.llm, sizeof s->cfg.llm, "fixed");
  snprintf(s->cfg.tts, sizeof s->cfg.tts, "tone");
  snprintf(s->cfg.asr_prompt, sizeof s->cfg.asr_prompt, "%s", script);
  snprintf(s->cfg.greeting, sizeof s->cfg.greeting, "%s", greeting);
  s->cfg.idle_prompt_ms = s->cfg.idle_hangup_ms = 0;
  assert_int_equal(uv_loop_init(&s->loop), 0);
  assert_int_equal(mailbox_new(&s->home, &s->loop, on_home, s), 0);
  assert_int_equal(pool_new(&s->pool, 2), 0);
  char err[256];
  struct engine_env env = {&s->cfg, s->pool, s->home, NULL};
  assert_int_equal(engines_open(&s->eng, &env, err, sizeof err), 0);
  struct agent_host host = {on_event, on_end, on_kick, s};
  assert_int_equal(voice_agent_new(&s->va, "test", &s->cfg, s->eng, s->home, NULL, &host), 0);
  voice_agent_start(s->va);
  assert_int_equal(resampler_new(&s->down, 48000, 16000, 3), 0);
  s->delay_frames = delay_ms / 20;
  s->gain = gain;
}

static void sim_start(struct sim *s, const char *script, int delay_ms, double gain) {
  sim_start_greeting(s, script, delay_ms, gain, "");
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

/* The caller says `text` after `pad` silent frames, then the agent answers;
 * returns the frame the reply's audio started. */
static int ask_after(struct sim *s, const char *text, int pad) {
  int frames;
  int16_t *speech = caller_speech(text, &frames);
  for (int f = 0; f < pad; f++) step(s, NULL);
  for (int f = 0; f < frames; f++) step(s, speech + (size_t)f * FI);
  free(speech);
  for (int f = 0; f < 300; f++)
    if (step(s, NULL)) return s->frame;
  fail_msg("no reply within 6 s");
  return -1;
}

static int ask(struct sim *s, const char *text) { return ask_after(s, text, 10); }

/* Runs until the reply event arrives (or `limit` frames). */
static void until_reply(struct sim *s, int limit) {
  int before = s->replies;
  for (int f = 0; f < limit && s->replies == before; f++) step(s, NULL);
}

/*
 * The reply's echo alone never starts a turn: three echo paths, three
 * loudnesses, and the reply starting at different moments of the call (the
 * question asked after more or less silence, the turn ended after a
 * shorter or longer pause), since what the echo canceller knows when the
 * echo arrives (the delay, the echo's return, whether its filter has been
 * seen to work) depends on when its estimates fell relative to the reply.
 */
static void own_echo_never_interrupts(void **state) {
  static const int delays[] = {100, 200, 300};
  static const double gains[] = {0.5, 0.25, 0.1}; /* -6, -12, -20 dB */
  static const struct { int pad, pause_ms; } timings[] = {{10, 0}, {13, 400}, {17, 640}, {22, 600}};
  int falses = 0;
  print_message("false onsets, the question after N silent frames, the turn ended after a pause "
                "of M ms (0: the default):");
  for (size_t t = 0; t < 4; t++) print_message(" %d/%d", timings[t].pad, timings[t].pause_ms);
  print_message("\n");
  for (size_t d = 0; d < 3; d++) {
    for (size_t g = 0; g < 3; g++) {
      char row[128];
      int len = snprintf(row, sizeof row, "%3d ms %3.0f dB:", delays[d], 20 * log10(gains[g]));
      for (size_t t = 0; t < 4; t++) {
        struct sim s;
        sim_start(&s, "what can you do", delays[d], gains[g]);
        if (timings[t].pause_ms) s.cfg.endpoint_min_ms = timings[t].pause_ms;
        ask_after(&s, "What can you do?", timings[t].pad);
        int users_before = s.user_states;
        until_reply(&s, 2000);
        int n = s.user_states - users_before; /* the AI paused for its own echo */
        len += snprintf(row + len, sizeof row - (size_t)len, " %d", n);
        falses += n + s.interrupted;
        assert_int_equal(s.replies, 1);
        sim_stop(&s);
      }
      print_message("%s\n", row);
    }
  }
  assert_int_equal(falses, 0);
}

/* What became of an interruption. */
struct barge {
  int stopped_ms;    /* from the caller's first loud frame to the AI's silence; -1: never */
  int from_onset_ms; /* from the onset the agent reported to the AI's silence */
  int cut, answered; /* the reply ended interrupted; the interruption had its answer */
};

/*
 * The caller says "Wait a moment, please." `offset` frames into the
 * agent's `nth` reply (1: the call's first) over its echo (200 ms, -10.5
 * dB).
 */
static struct barge interrupt_reply(int nth, int offset) {
  static const char *scripts[] = {"what can you do|wait a moment please",
                                  "what can you do|what can you do|wait a moment please"};
  struct sim s;
  sim_start(&s, scripts[nth > 1], 200, 0.3);
  for (int i = 1; i < nth; i++) {
    ask(&s, "What can you do?");
    until_reply(&s, 2000);
  }
  ask(&s, "What can you do?");
  for (int f = 0; f < offset; f++) step(&s, NULL);
  int frames;
  int16_t *speech = caller_speech("Wait a moment, please.", &frames);
  int began = -1, stop_frame = -1;
  struct barge b = {-1, -1, 0, 0};
  for (int f = 0; f < frames; f++) {
    const int16_t *fr = speech + (size_t)f * FI;
    double e = 0;
    for (int i = 0; i < FI; i++) e += (double)fr[i] * fr[i];
    if (began < 0 && 10 * log10(e / FI / (32768.0 * 32768.0) + 1e-12) > -40) began = f;
    int spoke = step(&s, fr);
    if (!spoke && began >= 0 && b.stopped_ms < 0) {
      b.stopped_ms = (f - began) * 20;
      stop_frame = s.frame;
    }
  }
  free(speech);
  if (b.stopped_ms >= 0) {
    b.from_onset_ms = (stop_frame - s.onset_frame) * 20;
    until_reply(&s, 300);
    b.cut = s.interrupted == 1;
    until_reply(&s, 1500); /* the answer to the interruption */
    b.answered = s.replies == nth + 1;
  }
  sim_stop(&s);
  return b;
}

/*
 * The caller interrupts a reply at any moment of it, the first reply of a
 * call or a later one: the AI's audio stops within 800 ms of their first
 * syllable, and within 100 ms of the onset the agent detected (detection
 * itself takes longer over double talk).
 */
static void real_speech_interrupts_over_the_echo(void **state) {
  struct barge b[2][10];
  print_message("caller starts N frames into the reply: ms to the AI's silence (after the onset)\n");
  for (int nth = 1; nth <= 2; nth++) {
    char row[512];
    int len = snprintf(row, sizeof row, "%s reply:", nth == 1 ? "first" : "later");
    for (int i = 0; i < 10; i++) {
      struct barge *x = &b[nth - 1][i];
      *x = interrupt_reply(nth, 10 * (i + 1));
      char cell[16] = "never";
      if (x->stopped_ms >= 0) snprintf(cell, sizeof cell, "%d", x->stopped_ms);
      len += snprintf(row + len, sizeof row - (size_t)len, " %d:%s(%d)%s", 10 * (i + 1), cell,
                      x->from_onset_ms, x->stopped_ms < 0 || (x->cut && x->answered) ? "" : "!");
    }
    print_message("%s\n", row);
  }
  for (int nth = 1; nth <= 2; nth++)
    for (int i = 0; i < 10; i++) {
      const struct barge *x = &b[nth - 1][i];
      assert_true(x->stopped_ms >= 0 && x->stopped_ms <= 800);
      assert_true(x->from_onset_ms <= 100);
      assert_true(x->cut && x->answered);
    }
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

/*
 * Synthesis runs just ahead of playback, so a reply cut off in its first sentence never had
 * the later ones synthesised (nor billed). The greeting's first sentence is some 5 s of the
 * tone engine's speech; the caller cuts in after 1 s of it, long before the second is due
 * (500 ms before the first runs out).
 */
static void interrupted_reply_was_synthesised_only_as_far_as_needed(void **state) {
  static const char first[] = "Welcome to the test line of the voice server, where every word is spoken.";
  char greeting[256];
  snprintf(greeting, sizeof greeting, "%s How can I help you today? Ask me anything.", first);
  struct sim s;
  sim_start_greeting(&s, "stop there", 200, 0.1, greeting);
  int f = 0;
  while (f < 100 && !step(&s, NULL)) f++;
  for (f = 0; f < 50; f++) step(&s, NULL);
  int frames;
  int16_t *speech = caller_speech("Stop there, please.", &frames);
  for (f = 0; f < frames; f++) step(&s, speech + (size_t)f * FI);
  free(speech);
  until_reply(&s, 2000);
  assert_int_equal(s.interrupted, 1);
  print_message("the interrupted greeting (%zu characters) synthesised %lld\n", strlen(greeting),
                s.tts_chars_first);
  assert_true(s.usages >= 1);
  assert_int_equal(s.tts_chars_first, (long long)strlen(first));
  sim_stop(&s);
}

static int frame_quiet(const int16_t *fr) {
  double e = 0;
  for (int i = 0; i < FI; i++) e += (double)fr[i] * fr[i];
  return 10 * log10(e / FI / (32768.0 * 32768.0) + 1e-12) < -50;
}

/* The caller says `first`, pauses exactly `pause_ms` (the voice's own silence around the
 * words is cut), says `second`; the sim then runs until the reply has been played. */
static void say_in_two_parts(struct sim *s, const char *first, int pause_ms, const char *second) {
  int n1, n2, from = 0;
  int16_t *a = caller_speech(first, &n1), *b = caller_speech(second, &n2);
  while (n1 > 0 && frame_quiet(a + (size_t)(n1 - 1) * FI)) n1--;
  while (from < n2 && frame_quiet(b + (size_t)from * FI)) from++;
  for (int f = 0; f < 10; f++) step(s, NULL);
  for (int f = 0; f < n1; f++) step(s, a + (size_t)f * FI);
  for (int f = 0; f < pause_ms / 20; f++) step(s, NULL);
  for (int f = from; f < n2; f++) step(s, b + (size_t)f * FI);
  free(a);
  free(b);
  until_reply(s, 1500);
}

/* A finished question is answered after the short silence, with the reply made during it. */
static void finished_question_is_answered_quickly(void **state) {
  struct sim s;
  sim_start(&s, "what time is it", 200, 0.1);
  ask(&s, "What time is it?");
  until_reply(&s, 2000);
  print_message("endpoint %.0f ms, speculated %d\n", s.endpoint_ms, s.speculated);
  assert_int_equal(s.latencies, 1);
  assert_true(s.endpoint_ms >= s.cfg.endpoint_min_ms && s.endpoint_ms < s.cfg.endpoint_min_ms + 60);
  assert_true(s.speculated);
  assert_int_equal(s.llm_wasted, 0);
  sim_stop(&s);
}

/* "... a table for" [700 ms] "two people": one turn, one reply, nothing said in the pause. */
static void pause_after_open_phrase_keeps_the_turn(void **state) {
  struct sim s;
  sim_start(&s, "i would like to book a table for|two people", 200, 0.1);
  say_in_two_parts(&s, "I would like to book a table for", 700, "two people.");
  assert_int_equal(s.turns, 1);
  assert_string_equal(s.last_turn, "i would like to book a table for two people");
  assert_int_equal(s.replies, 1);
  assert_int_equal(s.latencies, 1);
  assert_int_equal(s.llm_wasted, 0); /* an open phrase is not worth a reply in advance */
  sim_stop(&s);
}

/* A pause after words that looked finished: the reply made in it is dropped unheard when the
 * caller goes on, and the one turn is answered. */
static void speculative_reply_is_dropped_when_the_caller_goes_on(void **state) {
  struct sim s;
  sim_start(&s, "what time is it|in london", 200, 0.1);
  s.cfg.endpoint_min_ms = 1000; /* judged at 500 ms: room in the pause to go on */
  say_in_two_parts(&s, "What time is it", 560, "in London?");
  assert_int_equal(s.turns, 1);
  assert_string_equal(s.last_turn, "what time is it in london");
  assert_int_equal(s.replies, 1);
  assert_int_equal(s.interrupted, 0);
  assert_int_equal(s.llm_wasted, 1);
  sim_stop(&s);
}

/* speculate = off: nothing is asked for before the turn ends; it still ends. */
static void speculate_off_prepares_nothing_early(void **state) {
  struct sim s;
  sim_start(&s, "what time is it", 200, 0.1);
  snprintf(s.cfg.speculate, sizeof s.cfg.speculate, "off");
  ask(&s, "What time is it?");
  until_reply(&s, 2000);
  assert_int_equal(s.latencies, 1);
  assert_false(s.speculated);
  assert_true(s.endpoint_ms >= s.cfg.endpoint_min_ms && s.endpoint_ms <= s.cfg.endpoint_ms + 40);
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
      cmocka_unit_test(interrupted_reply_was_synthesised_only_as_far_as_needed),
      cmocka_unit_test(finished_question_is_answered_quickly),
      cmocka_unit_test(pause_after_open_phrase_keeps_the_turn),
      cmocka_unit_test(speculative_reply_is_dropped_when_the_caller_goes_on),
      cmocka_unit_test(speculate_off_prepares_nothing_early),
  };
  if (getenv("TS_TEST_DEBUG")) log_configure(LOG_DEBUG, 0); /* the agent's reasoning, to stderr */
  if (tts_flite_voices_acquire() != 0) return 1; /* the caller's voice */
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  tts_flite_voices_release();
  return failed;
}
