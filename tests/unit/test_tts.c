/*
 * Embedded TTS backends: flite (English) and espeak-ng (every language)
 * stream non-silent speech of plausible length at their rate, in chunks
 * before `done`, stop calling back once released; flite voices are safe to
 * share between threads; the tone load-test backend loops its cached phrase
 * to the length of the text.
 */
#include <errno.h>
#include <math.h>
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
#include "engines/tts.h"

extern const struct tts_backend tts_flite, tts_espeak, tts_tone;

/* ---- what a job delivered ---- */

struct take {
  struct tts_job *job;
  int chunks, done, errors, released, after_release, after_done, rate_changed;
  int release_after; /* release from inside the audio callback after this many chunks */
  int rate;
  size_t samples, cap, max_chunk, min_chunk;
  int16_t *pcm;
  uint64_t start_ns, first_ns, done_ns;
  int *order; /* shared sequence counter, for ordering between jobs */
  int first_seq, done_seq;
};

static void on_audio(void *user, const int16_t *pcm, size_t n, int rate) {
  struct take *t = user;
  if (t->released) t->after_release++;
  if (t->done) t->after_done++;
  if (!t->chunks++) {
    t->first_ns = uv_hrtime();
    t->rate = rate;
    if (t->order) t->first_seq = (*t->order)++;
  }
  if (rate != t->rate) t->rate_changed = 1;
  if (n > t->max_chunk) t->max_chunk = n;
  if (!t->min_chunk || n < t->min_chunk) t->min_chunk = n;
  if (t->samples + n > t->cap) {
    t->cap = (t->samples + n) * 2;
    t->pcm = realloc(t->pcm, t->cap * sizeof *t->pcm);
  }
  memcpy(t->pcm + t->samples, pcm, n * sizeof *pcm);
  t->samples += n;
  if (t->release_after && t->chunks == t->release_after) {
    t->released = 1;
    tts_release(t->job);
  }
}

static void on_done(void *user) {
  struct take *t = user;
  if (t->released) t->after_release++;
  t->done++;
  t->done_ns = uv_hrtime();
  if (t->order) t->done_seq = (*t->order)++;
}

static void on_error(void *user, const char *message) {
  struct take *t = user;
  if (t->released) t->after_release++;
  t->errors++;
  fprintf(stderr, "tts error: %s\n", message);
}

static void speak(const struct tts_backend *be, void *engine, struct engine_loop *f, struct take *t,
                  const char *text, const char *language, const char *voice, int rate) {
  struct tts_cb cb = {on_audio, on_done, on_error, t};
  struct tts_params p = {text, language, voice, rate};
  t->start_ns = uv_hrtime();
  assert_int_equal(be->speak(engine, &p, f->mb, &cb, &t->job), 0);
  assert_non_null(t->job);
  assert_int_equal(t->chunks + t->done, 0); /* never inside speak */
}

static double rms(const struct take *t) {
  double s = 0;
  for (size_t i = 0; i < t->samples; i++) s += (double)t->pcm[i] * t->pcm[i];
  return t->samples ? sqrt(s / (double)t->samples) : 0;
}

static void *open_backend(const struct tts_backend *be, struct engine_loop *f) {
  char err[256] = "";
  void *engine = NULL;
  int rc = be->open(&engine, &f->env, err, sizeof err);
  if (rc) fail_msg("%s: %s", be->name, err);
  return engine;
}

/* Speaks one sentence, checks it, prints time to first chunk and real-time factor. */
static void check_sentence(const struct tts_backend *be, void *engine, struct engine_loop *f,
                           const char *text, const char *language, int expect_rate,
                           double min_seconds, double max_seconds) {
  struct take t = {0};
  double cpu0 = engine_loop_cpu_seconds();
  speak(be, engine, f, &t, text, language, NULL, 100);
  engine_loop_spin(f, &t.done, 10000);
  double cpu = engine_loop_cpu_seconds() - cpu0;
  assert_int_equal(t.done, 1);
  assert_int_equal(t.errors, 0);
  assert_int_equal(t.after_done, 0);
  assert_int_equal(t.rate, expect_rate);
  assert_false(t.rate_changed);
  assert_true(t.chunks >= 3); /* streamed, not one block at the end */
  assert_true(t.first_ns < t.done_ns);
  double seconds = t.samples / (double)t.rate;
  assert_true(seconds >= min_seconds && seconds <= max_seconds);
  assert_true(rms(&t) > 300);
  printf("%s [%s]: %.2f s of speech at %d Hz in %d chunks; first chunk after %.1f ms, "
         "done after %.1f ms; real-time factor %.3f per core\n",
         be->name, language, seconds, t.rate, t.chunks, (t.first_ns - t.start_ns) / 1e6,
         (t.done_ns - t.start_ns) / 1e6, cpu / seconds);
  tts_release(t.job);
  free(t.pcm);
}

static const char english[] = "Hello, this is a test of the speech synthesiser. "
                              "It should sound clear and natural.";

/* ---- flite ---- */

static void flite_streams_english(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_backend(&tts_flite, f);
  check_sentence(&tts_flite, engine, f, english, "en", 16000, 3.0, 9.0);
  check_sentence(&tts_flite, engine, f, "What time is it?", "en", 16000, 0.6, 3.0);
  tts_flite.close(engine);
}

static size_t speak_length(void *engine, struct engine_loop *f, const char *voice, int rate,
                           int *sample_rate) {
  struct take t = {0};
  speak(&tts_flite, engine, f, &t, english, "en", voice, rate);
  engine_loop_spin(f, &t.done, 10000);
  assert_int_equal(t.done, 1);
  assert_true(rms(&t) > 300);
  *sample_rate = t.rate;
  tts_release(t.job);
  free(t.pcm);
  return t.samples;
}

static void flite_rate_and_voices(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_backend(&tts_flite, f);
  int sr;
  size_t normal = speak_length(engine, f, NULL, 100, &sr);
  size_t fast = speak_length(engine, f, NULL, 200, &sr);
  size_t slow = speak_length(engine, f, "slt", 50, &sr);
  assert_true(fast < normal * 0.7);
  assert_true(slow > normal * 1.5);
  const char *voices[] = {"kal", "awb", "rms", "cmu_us_slt", "no-such-voice"};
  const int rates[] = {8000, 16000, 16000, 16000, 16000};
  for (int i = 0; i < 5; i++) {
    size_t n = speak_length(engine, f, voices[i], 100, &sr);
    assert_int_equal(sr, rates[i]);
    assert_true(n / (double)sr > 2.5);
  }
  tts_flite.close(engine);

  snprintf(f->cfg.tts_voice, sizeof f->cfg.tts_voice, "nobody");
  char err[128];
  void *bad = NULL;
  assert_int_equal(tts_flite.open(&bad, &f->env, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "nobody"));
}

static void flite_release_stops_callbacks(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_backend(&tts_flite, f);
  struct take t = {.release_after = 2};
  speak(&tts_flite, engine, f, &t, english, "en", NULL, 100);
  engine_loop_spin(f, &t.released, 10000);
  assert_true(t.released);
  engine_loop_spin(f, NULL, 500);
  assert_int_equal(t.after_release, 0);
  assert_int_equal(t.done, 0);
  assert_int_equal(pool_pending(f->pool), 0);
  /* Released before it ever ran. */
  struct take u = {0};
  speak(&tts_flite, engine, f, &u, english, "en", NULL, 100);
  u.released = 1;
  tts_release(u.job);
  engine_loop_spin(f, NULL, 300);
  assert_int_equal(u.after_release, 0);
  /* Blank text is done at once, with no audio. */
  struct take v = {0};
  speak(&tts_flite, engine, f, &v, "  ", "en", NULL, 100);
  engine_loop_spin(f, &v.done, 1000);
  assert_int_equal(v.done, 1);
  assert_int_equal(v.chunks, 0);
  tts_release(v.job);
  free(t.pcm);
  free(u.pcm);
  tts_flite.close(engine);
}

static double rms_of(const int16_t *pcm, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)pcm[i] * pcm[i];
  return n ? sqrt(s / (double)n) : 0;
}

/* Whatever the text, a job ends with done or error, never a crash. */
static void flite_survives_odd_text(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_backend(&tts_flite, f);
  char longtext[2048];
  size_t off = 0;
  while (off + sizeof english < sizeof longtext) off += (size_t)snprintf(longtext + off, sizeof longtext - off, "%s ", english);
  const char *texts[] = {"12:45, $3.50, 1999, 3rd, e.g. Dr. Smith", "!!! ??? ... ---", "café naïve ☃ 你好 😀",
                         "\x01\x02\t\n", "a", longtext};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    struct take t = {0};
    speak(&tts_flite, engine, f, &t, texts[i], "en", NULL, 100);
    engine_loop_spin(f, &t.done, 20000);
    assert_int_equal(t.done + t.errors, 1);
    tts_release(t.job);
    free(t.pcm);
  }
  tts_flite.close(engine);
}

/* Correlation of two signals' loudness, frame by frame. */
static double envelope_correlation(const int16_t *a, const int16_t *b, size_t n, size_t frame) {
  double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
  size_t k = 0;
  for (size_t off = 0; off + frame <= n; off += frame, k++) {
    double x = rms_of(a + off, frame), y = rms_of(b + off, frame);
    sx += x, sy += y, sxx += x * x, syy += y * y, sxy += x * y;
  }
  double cov = sxy - sx * sy / (double)k, vx = sxx - sx * sx / (double)k, vy = syy - sy * sy / (double)k;
  return cov / sqrt(vx * vy);
}

/*
 * Sentences spoken on several threads at once, with the voices shared, match
 * the same sentence spoken alone: sample for sample with kal (a diphone
 * voice, deterministic), and in length and loudness, frame by frame, with
 * slt and awb (their unvoiced sounds are excited with rand(), so samples
 * differ from run to run even on one thread).
 */
static void flite_voices_are_shared_safely(void **state) {
  struct engine_loop *f = *state;
  pool_free(f->pool);
  assert_int_equal(pool_new(&f->pool, 4), 0);
  f->env.pool = f->pool;
  void *engine = open_backend(&tts_flite, f);
  enum { V = 3, N = 12 };
  const char *voices[V] = {"kal", "slt", "awb"};
  struct take alone[V] = {{0}};
  for (int v = 0; v < V; v++) {
    speak(&tts_flite, engine, f, &alone[v], english, "en", voices[v], 100);
    engine_loop_spin(f, &alone[v].done, 10000);
    assert_int_equal(alone[v].done, 1);
  }
  struct take many[N] = {{0}};
  for (int i = 0; i < N; i++) speak(&tts_flite, engine, f, &many[i], english, "en", voices[i % V], 100);
  for (int i = 0; i < N; i++) engine_loop_spin(f, &many[i].done, 20000);
  for (int i = 0; i < N; i++) {
    const struct take *ref = &alone[i % V];
    assert_int_equal(many[i].done, 1);
    assert_int_equal(many[i].samples, ref->samples);
    if (i % V == 0) {
      assert_memory_equal(many[i].pcm, ref->pcm, ref->samples * sizeof *ref->pcm);
    } else {
      double c = envelope_correlation(ref->pcm, many[i].pcm, ref->samples, (size_t)ref->rate / 10);
      assert_true(c > 0.99); /* about 0.9997 between two lone runs */
    }
    tts_release(many[i].job);
    free(many[i].pcm);
  }
  for (int v = 0; v < V; v++) {
    tts_release(alone[v].job);
    free(alone[v].pcm);
  }
  tts_flite.close(engine);
}

/* ---- espeak-ng ---- */

static void espeak_streams_english_and_mandarin(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_backend(&tts_espeak, f);
  check_sentence(&tts_espeak, engine, f, english, "en", 22050, 3.0, 9.0);
  check_sentence(&tts_espeak, engine, f, "你好，今天天气很好。", "zh", 22050, 1.0, 5.0);
  check_sentence(&tts_espeak, engine, f, "Guten Tag, wie geht es Ihnen heute?", "de", 22050, 1.0,
                 5.0);
  check_sentence(&tts_espeak, engine, f, "こんにちは、元気ですか。", "ja", 22050, 0.5, 6.0);
  tts_espeak.close(engine);
}

static void espeak_speaks_one_job_at_a_time(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_backend(&tts_espeak, f);
  int order = 0;
  struct take t[3] = {{0}};
  const char *texts[3] = {english, "你好，今天天气很好。", "Bonjour, comment allez-vous ?"};
  const char *langs[3] = {"en", "zh-CN", "fr"};
  for (int i = 0; i < 3; i++) {
    t[i].order = &order;
    speak(&tts_espeak, engine, f, &t[i], texts[i], langs[i], NULL, 100);
  }
  for (int i = 0; i < 3; i++) engine_loop_spin(f, &t[i].done, 10000);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(t[i].done, 1);
    assert_true(rms(&t[i]) > 300);
    if (i) assert_true(t[i].first_seq > t[i - 1].done_seq); /* in order, never interleaved */
    tts_release(t[i].job);
    free(t[i].pcm);
  }
  /* Rate: twice as fast is clearly shorter. */
  struct take normal = {0}, fast = {0};
  speak(&tts_espeak, engine, f, &normal, english, "en", "en-us", 100);
  engine_loop_spin(f, &normal.done, 10000);
  speak(&tts_espeak, engine, f, &fast, english, "en", "en-us", 200);
  engine_loop_spin(f, &fast.done, 10000);
  assert_true(fast.samples < normal.samples * 0.7);
  tts_release(normal.job);
  tts_release(fast.job);
  free(normal.pcm);
  free(fast.pcm);

  char err[128];
  void *second = NULL;
  assert_int_equal(tts_espeak.open(&second, &f->env, err, sizeof err), -EBUSY);
  tts_espeak.close(engine);
}

static void espeak_release_stops_callbacks(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_backend(&tts_espeak, f);
  struct take mid = {.release_after = 2}, queued = {0}, last = {0};
  speak(&tts_espeak, engine, f, &mid, english, "en", NULL, 100);
  speak(&tts_espeak, engine, f, &queued, english, "en", NULL, 100);
  speak(&tts_espeak, engine, f, &last, "你好", "zh", NULL, 100);
  queued.released = 1;
  tts_release(queued.job);
  engine_loop_spin(f, &last.done, 10000);
  engine_loop_spin(f, NULL, 200);
  assert_true(mid.released);
  assert_int_equal(mid.after_release, 0);
  assert_int_equal(mid.done, 0);
  assert_int_equal(queued.after_release, 0);
  assert_int_equal(last.done, 1);
  assert_true(last.samples > 0);
  tts_release(last.job);
  free(mid.pcm);
  free(last.pcm);
  tts_espeak.close(engine);

  /* Closed with a job still in flight: the job finishes, then the engine goes. */
  engine = open_backend(&tts_espeak, f);
  struct take late = {0};
  speak(&tts_espeak, engine, f, &late, english, "en", NULL, 100);
  tts_espeak.close(engine);
  engine_loop_spin(f, &late.done, 10000);
  assert_int_equal(late.done, 1);
  tts_release(late.job);
  free(late.pcm);
  engine = open_backend(&tts_espeak, f); /* and it can be opened again */
  tts_espeak.close(engine);
}

/* ---- tone ---- */

static void tone_loops_cached_speech_to_the_text(void **state) {
  struct engine_loop *f = *state;
  void *engine = open_backend(&tts_tone, f);
  const char *texts[2] = {"Hi.", "This reply is long enough that the cached phrase has to be "
                                  "repeated to fill it, which is the point of this test."};
  for (int i = 0; i < 2; i++) {
    struct take t = {0};
    speak(&tts_tone, engine, f, &t, texts[i], "en", NULL, 100);
    engine_loop_spin(f, &t.done, 1000);
    assert_int_equal(t.done, 1);
    assert_int_equal(t.rate, 16000); /* flite's own rate, as a synthesiser hands it over */
    size_t expect = strlen(texts[i]) * 16000 * 60 / 1000;
    assert_int_equal(t.samples, expect);
    assert_int_equal(t.max_chunk, 320);
    assert_true(t.chunks >= 2 || expect <= 320);
    assert_true(rms(&t) > 300);
    assert_true((t.done_ns - t.start_ns) / 1e6 < 200); /* at once */
    tts_release(t.job);
    free(t.pcm);
  }
  /* Characters, not bytes. */
  struct take zh = {0};
  speak(&tts_tone, engine, f, &zh, "你好", "zh", NULL, 100);
  engine_loop_spin(f, &zh.done, 1000);
  assert_int_equal(zh.samples, 2 * 16000 * 60 / 1000);
  tts_release(zh.job);
  free(zh.pcm);
  /* Released from its own audio callback: nothing more. */
  struct take cut = {.release_after = 3};
  speak(&tts_tone, engine, f, &cut, texts[1], "en", NULL, 100);
  engine_loop_spin(f, NULL, 100);
  assert_int_equal(cut.chunks, 3);
  assert_int_equal(cut.after_release, 0);
  assert_int_equal(cut.done, 0);
  free(cut.pcm);
  tts_tone.close(engine);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      ENGINE_LOOP_TEST(flite_streams_english),
      ENGINE_LOOP_TEST(flite_rate_and_voices),
      ENGINE_LOOP_TEST(flite_release_stops_callbacks),
      ENGINE_LOOP_TEST(flite_voices_are_shared_safely),
      ENGINE_LOOP_TEST(flite_survives_odd_text),
      ENGINE_LOOP_TEST(espeak_streams_english_and_mandarin),
      ENGINE_LOOP_TEST(espeak_speaks_one_job_at_a_time),
      ENGINE_LOOP_TEST(espeak_release_stops_callbacks),
      ENGINE_LOOP_TEST(tone_loops_cached_speech_to_the_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
