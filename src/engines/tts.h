/*
 * tts: speech synthesis, streaming.
 *
 * One job per sentence. PCM arrives in chunks (mono, 16-bit, at the rate
 * the chunk names) as soon as the backend has them, then exactly one
 * `done` or `error`. Callbacks run on the home loop, never inside
 * tts_speak, and never after tts_release().
 */
#ifndef TS_ENGINES_TTS_H
#define TS_ENGINES_TTS_H

#include <stddef.h>
#include <stdint.h>

#include "engines/engine.h"
#include "engines/job.h"

struct tts_params {
  const char *text;
  const char *language; /* "en", "zh", ... */
  const char *voice;    /* backend-specific; NULL or "" = the configured one */
  int rate;             /* words per minute relative to normal: 100 = normal */
};

struct tts_cb {
  void (*audio)(void *user, const int16_t *pcm, size_t n, int sample_rate);
  void (*done)(void *user);
  void (*error)(void *user, const char *message);
  void *user;
};

struct tts_backend;

struct tts_job {
  struct eng_job job;
  const struct tts_backend *be;
  struct tts_cb cb;
  /* engines.c's: the requester's callbacks, while `cb` points at its meter */
  struct tts_cb user_cb;
  struct eng_meter meter;
  /* engines.c's: 1 when the TTS cache serves the audio (set before speak returns): finished
   * audio it holds, or a synthesis another request started. Such a request costs no
   * synthesis; its characters count as cached. */
  int cached;
};

struct tts_backend {
  const char *name;
  int (*open)(void **engine, const struct engine_env *env, char *err, size_t errlen);
  void (*close)(void *engine);
  /* Any thread; also the control loop's, where the TTS cache runs its syntheses. */
  int (*speak)(void *engine, const struct tts_params *p, struct mailbox *home,
               const struct tts_cb *cb, struct tts_job **out);
  /* 1: never cached (its audio is not worth keeping: the load-test `tone`). */
  int no_cache;
};

extern const struct tts_backend *const tts_backends[];

void tts_release(struct tts_job *j);

#endif
