/*
 * tone: a load-test TTS backend. It does not read the text.
 *
 * It exists so that a benchmark measures the server (pacing, Opus, SRTP,
 * turn taking) rather than a synthesiser: at open it has flite say one
 * short phrase and keeps the samples; for each sentence it returns that
 * speech looped or cut to about TONE_MS_PER_CHAR milliseconds per character
 * of text (so reply length still follows the text), posted at once in
 * 20 ms chunks. The audio is real speech, so a listener, a VAD or an echo
 * canceller on the far side treats it like the real thing. Never choose it
 * for real calls. It opts out of the TTS cache: its audio costs nothing to
 * make and would only fill the cache with copies of one phrase.
 *
 * The phrase is kept at flite's own rate (16 kHz), as a synthesiser hands
 * its audio over: the call's playout stores a reply at the engine's rate
 * and resamples each frame as it is sent, so a load test pays that cost and
 * holds that memory just as a call with a real engine does.
 *
 * One closure per sentence carries every chunk; it checks between chunks
 * whether a callback has released the job, so cancellation still stops the
 * audio at the next chunk.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/tts.h"
#include "engines/tts/flite_voices.h"

#define TONE_PHRASE "Thank you for calling. This is a test of the voice server."
#define TONE_MS_PER_CHAR 60
#define TONE_CHUNK_MS 20
#define TONE_SILENCE 300 /* samples quieter than this at either end are cut */

extern const struct tts_backend tts_tone;

struct tone_engine {
  atomic_int refs; /* the opener's, plus one per job */
  int16_t *pcm;
  size_t n;
  int rate;
};

struct tone_job {
  struct tts_job base;
  struct tone_engine *eng;
  size_t total; /* samples to play */
};

static void engine_unref(struct tone_engine *e) {
  if (atomic_fetch_sub(&e->refs, 1) != 1) return;
  free(e->pcm);
  free(e);
}

/* flite pads its speech with silence; the loop should be all voice. */
static void trim_silence(struct tone_engine *e) {
  size_t first = 0, end = e->n;
  while (first < end && abs(e->pcm[first]) < TONE_SILENCE) first++;
  while (end > first && abs(e->pcm[end - 1]) < TONE_SILENCE) end--;
  memmove(e->pcm, e->pcm + first, (end - first) * sizeof *e->pcm);
  e->n = end - first;
}

static int tone_open(void **engine, const struct engine_env *env, char *err, size_t errlen) {
  struct tone_engine *e = calloc(1, sizeof *e);
  if (!e) return -ENOMEM;
  atomic_init(&e->refs, 1);
  int rc = tts_flite_voices_acquire();
  if (rc == 0) {
    rc = tts_flite_render(tts_flite_voice("slt"), TONE_PHRASE, &e->pcm, &e->n, &e->rate);
    tts_flite_voices_release();
  }
  if (rc == 0) trim_silence(e);
  if (rc == 0 && (e->n == 0 || e->rate <= 0)) rc = -EIO;
  if (rc) {
    snprintf(err, errlen, "tone: could not synthesise its phrase with flite");
    free(e->pcm);
    free(e);
    return rc;
  }
  *engine = e;
  return 0;
}

static void tone_close(void *engine) {
  if (engine) engine_unref(engine);
}

static size_t utf8_chars(const char *s) {
  size_t n = 0;
  for (; s && *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

static void play(struct eng_job *j, void *arg) {
  struct tone_job *t = (struct tone_job *)j;
  const struct tone_engine *e = t->eng;
  size_t chunk = (size_t)e->rate * TONE_CHUNK_MS / 1000;
  int16_t *buf = malloc(chunk * sizeof *buf);
  if (!buf) {
    if (t->base.cb.error) t->base.cb.error(t->base.cb.user, "out of memory");
    return;
  }
  for (size_t done = 0; done < t->total && !eng_job_cancelled(j);) {
    size_t n = t->total - done < chunk ? t->total - done : chunk;
    for (size_t i = 0; i < n; i++) buf[i] = e->pcm[(done + i) % e->n];
    done += n;
    if (t->base.cb.audio) t->base.cb.audio(t->base.cb.user, buf, n, e->rate);
  }
  free(buf);
  if (!eng_job_cancelled(j) && t->base.cb.done) t->base.cb.done(t->base.cb.user);
}

static void job_destroy(struct eng_job *j) {
  struct tone_job *t = (struct tone_job *)j;
  struct tone_engine *e = t->eng;
  free(t);
  engine_unref(e);
}

static int tone_speak(void *engine, const struct tts_params *p, struct mailbox *home,
                      const struct tts_cb *cb, struct tts_job **out) {
  struct tone_engine *e = engine;
  struct tone_job *t = calloc(1, sizeof *t);
  if (!t) return -ENOMEM;
  atomic_fetch_add(&e->refs, 1);
  eng_job_init(&t->base.job, home, job_destroy);
  t->base.be = &tts_tone;
  t->base.cb = *cb;
  t->eng = e;
  t->total = utf8_chars(p->text) * (size_t)e->rate * TONE_MS_PER_CHAR / 1000;
  int rc = eng_job_post(&t->base.job, play, NULL);
  if (rc) {
    eng_job_unref(&t->base.job);
    return rc;
  }
  *out = &t->base;
  return 0;
}

const struct tts_backend tts_tone = {
    .name = "tone",
    .open = tone_open,
    .close = tone_close,
    .speak = tone_speak,
    .no_cache = 1, /* a loop of one kept phrase: caching would only duplicate it */
};
