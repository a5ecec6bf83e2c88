/*
 * pocketsphinx backend (and the scripted load-test ASR): speech synthesised
 * with flite is recognised, partials come before the final, decoders are
 * shared and reused, a released session never calls back, and the same
 * audio gives the same words whatever a decoder heard before.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include <cmocka.h>

#include "engine_loop.h"

#include "core/config.h"
#include "core/mailbox.h"
#include "core/pool.h"
#include "agent/turn.h"
#include "client/wav.h"
#include "engines/asr.h"
#include "engines/tts/flite_voices.h"

extern const struct asr_backend asr_pocketsphinx, asr_scripted;

#define PIECE (ASR_RATE / 50) /* 20 ms */

/* Two decoders at most: the third session waits. */
static int setup(void **state) {
  engine_loop_setup(state);
  struct engine_loop *f = *state;
  f->cfg.inference_threads = 1;
  return 0;
}

/* ---- speech to feed ---- */

struct speech {
  int16_t *pcm;
  size_t n;
};

/* flite's voice, resampled to 16 kHz, with 300 ms of faint noise either side. */
static struct speech say(const char *text) {
  assert_int_equal(tts_flite_voices_acquire(), 0);
  int16_t *raw;
  size_t n;
  int rate;
  assert_int_equal(tts_flite_render(tts_flite_voice("slt"), text, &raw, &n, &rate), 0);
  tts_flite_voices_release();
  size_t out_n = (size_t)((double)n * ASR_RATE / rate), pad = ASR_RATE * 3 / 10;
  struct speech s = {calloc(out_n + 2 * pad, sizeof(int16_t)), out_n + 2 * pad};
  unsigned seed = 7;
  for (size_t i = 0; i < s.n; i++) s.pcm[i] = (int16_t)(rand_r(&seed) % 9 - 4);
  for (size_t i = 0; i < out_n; i++) {
    double x = (double)i * rate / ASR_RATE;
    size_t k = (size_t)x;
    double frac = x - (double)k, a = raw[k], b = k + 1 < n ? raw[k + 1] : a;
    s.pcm[pad + i] = (int16_t)(a + (b - a) * frac);
  }
  free(raw);
  return s;
}

/* ---- what a session reported ---- */

struct report {
  struct engine_loop *f;
  int partials, finals, errors;
  int partial_after_final, released, after_release;
  char final[512], last_partial[512];
  uint64_t started_ns, first_partial_ns, final_ns;
};

static void on_partial(void *user, const char *text) {
  struct report *r = user;
  if (r->released) r->after_release++;
  if (r->finals) r->partial_after_final = 1;
  if (!r->partials++) r->first_partial_ns = uv_hrtime();
  snprintf(r->last_partial, sizeof r->last_partial, "%s", text);
}

static void on_final(void *user, const char *text) {
  struct report *r = user;
  if (r->released) r->after_release++;
  r->finals++;
  r->final_ns = uv_hrtime();
  snprintf(r->final, sizeof r->final, "%s", text);
}

static void on_error(void *user, const char *message) {
  struct report *r = user;
  if (r->released) r->after_release++;
  r->errors++;
  fprintf(stderr, "asr error: %s\n", message);
}

static struct asr_session *start(void *engine, const struct asr_backend *be, struct engine_loop *f,
                                 struct report *r) {
  memset(r, 0, sizeof *r);
  r->f = f;
  struct asr_cb cb = {on_partial, on_final, on_error, r};
  struct asr_params p = {.language = "en"};
  struct asr_session *s = NULL;
  assert_int_equal(be->start(engine, &p, f->mb, &cb, &s), 0);
  assert_non_null(s);
  r->started_ns = uv_hrtime();
  return s;
}

static void feed_all(struct asr_session *s, const struct speech *sp) {
  for (size_t off = 0; off < sp->n; off += PIECE)
    asr_feed(s, sp->pcm + off, sp->n - off < PIECE ? sp->n - off : PIECE);
}

/* Feeds 20 ms every 10 ms from a timer, as a call would (at twice the pace). */
struct pacer {
  struct asr_session *s;
  const struct speech *sp;
  size_t off;
  int fed_all;
  uint64_t finished_ns;
};

static void pace(uv_timer_t *t) {
  struct pacer *p = t->data;
  size_t n = p->sp->n - p->off < PIECE ? p->sp->n - p->off : PIECE;
  asr_feed(p->s, p->sp->pcm + p->off, n);
  p->off += n;
  if (p->off >= p->sp->n) {
    p->fed_all = 1;
    p->finished_ns = uv_hrtime();
    asr_finish(p->s);
    uv_timer_stop(t);
  }
}

static void assert_words(const char *text, const char *const *words) {
  for (; *words; words++)
    if (!strstr(text, *words)) fail_msg("\"%s\" not in the transcript \"%s\"", *words, text);
}

/* Waits for a session's one final and checks it holds the words. */
static void expect_final(struct engine_loop *f, struct report *r, const char *const *words) {
  engine_loop_spin(f, &r->finals, 20000);
  assert_int_equal(r->finals, 1);
  assert_int_equal(r->errors, 0);
  assert_words(r->final, words);
}

static void *open_ps(struct engine_loop *f) {
  char err[256] = "";
  void *engine = NULL;
  int rc = asr_pocketsphinx.open(&engine, &f->env, err, sizeof err);
  if (rc) fail_msg("open: %s", err);
  return engine;
}

struct sentence {
  const char *text;
  const char *words[4];
};

static const struct sentence sentences[] = {
    {"what time is it", {"what", "time", NULL}},
    {"the weather is nice today", {"weather", "today", NULL}},
    {"please call my mother tomorrow morning", {"mother", "tomorrow", NULL}},
};

static void recognises_paced_speech_with_partials_first(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_ps(f);
  int partials = 0;
  for (size_t i = 0; i < sizeof sentences / sizeof sentences[0]; i++) {
    struct speech sp = say(sentences[i].text);
    struct report r;
    struct asr_session *s = start(engine, &asr_pocketsphinx, f, &r);
    struct pacer p = {s, &sp, 0, 0, 0};
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    t.data = &p;
    uv_timer_start(&t, pace, 10, 10);
    engine_loop_spin(f, &r.finals, 20000);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(r.finals, 1);
    assert_int_equal(r.errors, 0);
    assert_words(r.final, sentences[i].words);
    assert_false(r.partial_after_final);
    if (r.partials) assert_true(r.first_partial_ns < r.final_ns);
    double seconds = (r.final_ns - r.started_ns) / 1e9;
    assert_true(r.partials <= 5 * seconds + 2); /* at most ~5 a second */
    printf("pocketsphinx: \"%s\" -> \"%s\", %d partials in %.2f s (last \"%s\"), final "
           "%.0f ms after finish\n", sentences[i].text, r.final, r.partials, seconds,
           r.last_partial, (r.final_ns - p.finished_ns) / 1e6);
    partials += r.partials;
    asr_release(s);
    free(sp.pcm);
  }
  assert_true(partials >= 2);
  asr_pocketsphinx.close(engine);
}

/* Three sessions at once with two decoders: the third waits, then reuses one. */
static void decodes_sessions_at_once_and_measures_speed(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_ps(f);
  enum { N = 3 };
  struct speech sp[N];
  struct report r[N];
  struct asr_session *s[N];
  double audio = 0;
  for (int i = 0; i < N; i++) {
    sp[i] = say(sentences[i].text);
    audio += sp[i].n / (double)ASR_RATE;
  }
  /* One session alone first. The process's CPU time over the audio's length is
   * the real-time factor of one core, whatever else shares the machine. */
  double cpu0 = engine_loop_cpu_seconds();
  s[0] = start(engine, &asr_pocketsphinx, f, &r[0]);
  feed_all(s[0], &sp[2]);
  asr_finish(s[0]);
  expect_final(f, &r[0], sentences[2].words);
  double cpu = engine_loop_cpu_seconds() - cpu0, length = sp[2].n / (double)ASR_RATE;
  double wall = (r[0].final_ns - r[0].started_ns) / 1e9;
  printf("pocketsphinx: real-time factor %.3f per core (%.2f s of CPU for %.2f s of audio; "
         "%.2f s wall, all audio fed at once)\n", cpu / length, cpu, length, wall);
  assert_true(cpu / length < 1.0);
  asr_release(s[0]);

  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < N; i++) {
    s[i] = start(engine, &asr_pocketsphinx, f, &r[i]);
    feed_all(s[i], &sp[i]);
    asr_finish(s[i]);
  }
  for (int i = 0; i < N; i++) engine_loop_spin(f, &r[i].finals, 30000);
  wall = (uv_hrtime() - t0) / 1e9;
  for (int i = 0; i < N; i++) {
    assert_int_equal(r[i].finals, 1);
    assert_int_equal(r[i].errors, 0);
    assert_words(r[i].final, sentences[i].words);
    asr_release(s[i]);
    free(sp[i].pcm);
  }
  printf("pocketsphinx: %d sessions at once, %.2f s of audio in %.2f s on 2 threads "
         "(includes loading a second decoder)\n", N, audio, wall);
  asr_pocketsphinx.close(engine);
}

static void released_session_stops_and_gives_back_its_decoder(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_ps(f);
  struct speech sp = say(sentences[2].text);
  struct report r[3];
  struct asr_session *s[3];

  /* Released mid-stream while a drain is working. */
  s[0] = start(engine, &asr_pocketsphinx, f, &r[0]);
  feed_all(s[0], &sp);
  engine_loop_spin(f, NULL, 30);
  r[0].released = 1;
  asr_release(s[0]);

  /* Released between drains, holding a decoder mid-utterance. */
  s[1] = start(engine, &asr_pocketsphinx, f, &r[1]);
  asr_feed(s[1], sp.pcm, sp.n / 2);
  engine_loop_spin(f, NULL, 1500);
  r[1].released = 1;
  asr_release(s[1]);

  /* Released while waiting for a decoder. */
  struct report busy[2];
  struct asr_session *hold[2];
  for (int i = 0; i < 2; i++) {
    hold[i] = start(engine, &asr_pocketsphinx, f, &busy[i]);
    asr_feed(hold[i], sp.pcm, PIECE);
  }
  s[2] = start(engine, &asr_pocketsphinx, f, &r[2]);
  feed_all(s[2], &sp);
  asr_finish(s[2]);
  engine_loop_spin(f, NULL, 100);
  r[2].released = 1;
  asr_release(s[2]);
  for (int i = 0; i < 2; i++) asr_release(hold[i]);

  engine_loop_spin(f, NULL, 500);
  for (int i = 0; i < 3; i++) assert_int_equal(r[i].after_release, 0);

  /* Every decoder came back: a new session still decodes, after a cancelled utterance. */
  struct report ok;
  struct asr_session *again = start(engine, &asr_pocketsphinx, f, &ok);
  feed_all(again, &sp);
  asr_finish(again);
  expect_final(f, &ok, sentences[2].words);
  asr_release(again);
  free(sp.pcm);
  asr_pocketsphinx.close(engine);
}

/* A cancelled utterance of near silence must not teach the decoder's channel
 * normalisation anything: the next speaker is still understood. */
static void cancelled_silence_does_not_spoil_the_next_utterance(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_ps(f); /* one fresh decoder, reused by both sessions */
  struct speech sp = say(sentences[2].text);
  for (int round = 0; round < 2; round++) {
    struct report quiet;
    struct asr_session *s = start(engine, &asr_pocketsphinx, f, &quiet);
    asr_feed(s, sp.pcm, ASR_RATE * 3 / 10); /* the 300 ms of faint noise before the speech */
    engine_loop_spin(f, NULL, 300);
    asr_release(s);
  }
  struct report r;
  struct asr_session *s = start(engine, &asr_pocketsphinx, f, &r);
  feed_all(s, &sp);
  asr_finish(s);
  expect_final(f, &r, sentences[2].words);
  asr_release(s);
  free(sp.pcm);
  asr_pocketsphinx.close(engine);
}

/* Decodes a whole utterance fed at once; its final goes to `out`. */
static void decode_once(void *engine, struct engine_loop *f, const int16_t *pcm, size_t n, char *out,
                        size_t cap) {
  struct report r;
  struct asr_session *s = start(engine, &asr_pocketsphinx, f, &r);
  for (size_t off = 0; off < n; off += PIECE) asr_feed(s, pcm + off, n - off < PIECE ? n - off : PIECE);
  asr_finish(s);
  engine_loop_spin(f, &r.finals, 20000);
  assert_int_equal(r.finals, 1);
  assert_int_equal(r.errors, 0);
  snprintf(out, cap, "%s", r.final);
  asr_release(s);
}

/* The same audio gives the same words whatever the decoder heard before it
 * (docs/asr.md): here the same sentence 20 dB quieter, which used to move
 * the decoder's channel mean so far that the sentence after it changed
 * ("please calm my mother"). Each utterance is normalised by its own mean,
 * so the quiet one is understood too. One decoder serves all three. */
static void same_audio_same_words_whatever_came_before(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_ps(f);
  struct speech sp = say(sentences[2].text);
  int16_t *quiet = malloc(sp.n * sizeof *quiet);
  assert_non_null(quiet);
  for (size_t i = 0; i < sp.n; i++) quiet[i] = (int16_t)(sp.pcm[i] / 10);
  char first[512], soft[512], again[512];
  decode_once(engine, f, sp.pcm, sp.n, first, sizeof first);
  decode_once(engine, f, quiet, sp.n, soft, sizeof soft);
  decode_once(engine, f, sp.pcm, sp.n, again, sizeof again);
  printf("pocketsphinx: \"%s\", then 20 dB quieter \"%s\", then again \"%s\"\n", first, soft, again);
  assert_string_equal(again, first);
  assert_words(soft, sentences[2].words);
  free(quiet);
  free(sp.pcm);
  asr_pocketsphinx.close(engine);
}

/*
 * The final's last word comes with its posterior probability, which the
 * end-of-turn rule reads (docs/turns.md): high for a word plainly said,
 * low for the word a decoder adds to finish a phrase cut short. Both clips
 * are what the voice agent fed the recogniser (tests/fixtures/audio/asr).
 */
static void last_word_confidence_tells_a_word_said_from_one_added(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_ps(f);
  static const char *const clips[] = {"what_time_is_it", "table_for_cut_short"};
  float conf[2];
  for (int i = 0; i < 2; i++) {
    char path[512], err[128];
    snprintf(path, sizeof path, "%s/audio/asr/%s.wav", TS_FIXTURES, clips[i]);
    struct wav w;
    assert_int_equal(wav_read(path, &w, err, sizeof err), 0);
    assert_int_equal(w.rate, ASR_RATE);
    struct report r;
    struct asr_session *s = start(engine, &asr_pocketsphinx, f, &r);
    for (size_t off = 0; off < w.frames; off += PIECE)
      asr_feed(s, w.pcm + off, w.frames - off < PIECE ? w.frames - off : PIECE);
    asr_finish(s);
    engine_loop_spin(f, &r.finals, 20000);
    assert_int_equal(r.finals, 1);
    conf[i] = asr_last_word_confidence(s);
    printf("pocketsphinx: \"%s\", last word %.3f\n", r.final, conf[i]);
    asr_release(s);
    wav_free(&w);
  }
  assert_true(conf[0] >= TURN_TRUST_MIN && conf[0] <= 1);
  assert_true(conf[1] >= 0 && conf[1] < TURN_TRUST_MIN);
  asr_pocketsphinx.close(engine);
}

/* An utterance longer than the session's ring (16.4 s) is decoded across the
 * ring's wrap. Filler speech is fed a second at a time, with time for the
 * decoder to keep up, up to half a sentence before the wrap; then the last
 * sentence goes in as one piece that the wrap splits, and is recognised. */
static void utterance_longer_than_the_ring_is_decoded_across_its_wrap(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_ps(f);
  struct speech filler = say(sentences[1].text), last = say(sentences[2].text);
  const size_t ring = (size_t)1 << 18, total = ring - last.n / 2;
  int16_t *pcm = malloc(total * sizeof *pcm);
  assert_non_null(pcm);
  for (size_t i = 0; i < total; i++) pcm[i] = filler.pcm[i % filler.n];
  struct report r;
  struct asr_session *s = start(engine, &asr_pocketsphinx, f, &r);
  for (size_t off = 0; off < total; off += ASR_RATE) {
    size_t n = total - off < ASR_RATE ? total - off : ASR_RATE;
    for (size_t k = 0; k < n; k += PIECE) asr_feed(s, pcm + off + k, n - k < PIECE ? n - k : PIECE);
    engine_loop_spin(f, NULL, 150);
  }
  engine_loop_spin(f, NULL, 500);
  asr_feed(s, last.pcm, last.n);
  asr_finish(s);
  expect_final(f, &r, sentences[2].words);
  asr_release(s);
  free(pcm);
  free(filler.pcm);
  free(last.pcm);
  asr_pocketsphinx.close(engine);
}

static void finish_without_audio_gives_empty_final(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_ps(f);
  struct report r;
  struct asr_session *s = start(engine, &asr_pocketsphinx, f, &r);
  asr_finish(s);
  assert_int_equal(r.finals, 0); /* never inside the call */
  engine_loop_spin(f, &r.finals, 2000);
  assert_int_equal(r.finals, 1);
  assert_string_equal(r.final, "");
  asr_release(s);
  asr_release(NULL);
  asr_pocketsphinx.close(engine);
}

/* Engine closed while a session is still decoding: the session finishes safely. */
static void session_outlives_closed_engine(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_ps(f);
  struct speech sp = say(sentences[0].text);
  struct report r;
  struct asr_session *s = start(engine, &asr_pocketsphinx, f, &r);
  feed_all(s, &sp);
  asr_finish(s);
  asr_pocketsphinx.close(engine);
  expect_final(f, &r, sentences[0].words);
  asr_release(s);
  free(sp.pcm);
}

static void scripted_cycles_through_its_lines(void **state) {
  struct engine_loop *f = *state;
  snprintf(f->cfg.asr_prompt, sizeof f->cfg.asr_prompt, "what time is it | tell me a joke|bye");
  char err[128];
  void *engine = NULL;
  assert_int_equal(asr_scripted.open(&engine, &f->env, err, sizeof err), 0);
  const char *expect[] = {"what time is it", "tell me a joke", "bye", "what time is it"};
  int16_t silence[PIECE] = {0};
  for (int i = 0; i < 4; i++) {
    struct report r;
    struct asr_session *s = start(engine, &asr_scripted, f, &r);
    asr_feed(s, silence, PIECE);
    asr_finish(s);
    assert_int_equal(r.finals, 0);
    engine_loop_spin(f, &r.finals, 1000);
    assert_int_equal(r.finals, 1);
    assert_int_equal(r.partials, 0);
    assert_string_equal(r.final, expect[i]);
    asr_release(s);
  }
  /* A released session says nothing. */
  struct report r;
  struct asr_session *s = start(engine, &asr_scripted, f, &r);
  asr_finish(s);
  r.released = 1;
  asr_release(s);
  engine_loop_spin(f, NULL, 50);
  assert_int_equal(r.after_release, 0);
  asr_scripted.close(engine);

  f->cfg.asr_prompt[0] = 0;
  assert_int_equal(asr_scripted.open(&engine, &f->env, err, sizeof err), 0);
  s = start(engine, &asr_scripted, f, &r);
  asr_finish(s);
  engine_loop_spin(f, &r.finals, 1000);
  assert_string_equal(r.final, "hello");
  asr_release(s);
  asr_scripted.close(engine);
}

#define PS_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, engine_loop_teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      PS_TEST(recognises_paced_speech_with_partials_first),
      PS_TEST(decodes_sessions_at_once_and_measures_speed),
      PS_TEST(released_session_stops_and_gives_back_its_decoder),
      PS_TEST(cancelled_silence_does_not_spoil_the_next_utterance),
      PS_TEST(finish_without_audio_gives_empty_final),
      PS_TEST(same_audio_same_words_whatever_came_before),
      PS_TEST(last_word_confidence_tells_a_word_said_from_one_added),
      PS_TEST(utterance_longer_than_the_ring_is_decoded_across_its_wrap),
      PS_TEST(session_outlives_closed_engine),
      PS_TEST(scripted_cycles_through_its_lines),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
