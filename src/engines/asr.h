/*
 * asr: speech recognition, streaming.
 *
 * One session per utterance: started at speech onset, fed 16 kHz mono PCM
 * while the caller speaks (partial hypotheses may come back meanwhile),
 * finished when the end of speech is decided, after which exactly one
 * `final` or `error` arrives. Callbacks run on the home loop, never inside
 * the call that caused them, and never after asr_release().
 */
#ifndef TS_ENGINES_ASR_H
#define TS_ENGINES_ASR_H

#include <stddef.h>
#include <stdint.h>

#include "engines/engine.h"
#include "engines/job.h"

#define ASR_RATE 16000

struct asr_params {
  const char *language; /* BCP 47-ish: "en", "zh"...; NULL = the configured one */
  const char *call_id;  /* the call it listens to, for log lines; NULL = none */
};

struct asr_cb {
  void (*partial)(void *user, const char *text);
  void (*final)(void *user, const char *text); /* "" when nothing was recognised */
  void (*error)(void *user, const char *message);
  void *user;
};

struct asr_backend;

/* Base of every backend's session struct (first member). */
struct asr_session {
  struct eng_job job;
  const struct asr_backend *be;
  struct asr_cb cb;
  /* engines.c's: the requester's callbacks, while `cb` points at its meter */
  struct asr_cb user_cb;
  struct eng_meter meter;
  char call_id[40]; /* engines.c's, from asr_params: the backends' log lines name the call */
  /* How sure the backend is of the final's last word: its posterior
   * probability, 0-1, set before `final` is posted; negative when the
   * backend cannot tell (engines.c starts it at -1). Read it with
   * asr_last_word_confidence from inside `final`. */
  float last_word_conf;
};

struct asr_backend {
  const char *name;
  int (*open)(void **engine, const struct engine_env *env, char *err, size_t errlen);
  void (*close)(void *engine);
  /* The backend allocates its session, calls eng_job_init and fills be/cb. */
  int (*start)(void *engine, const struct asr_params *p, struct mailbox *home,
               const struct asr_cb *cb, struct asr_session **out);
  void (*feed)(struct asr_session *s, const int16_t *pcm, size_t n);
  void (*finish)(struct asr_session *s);
};

/* Every ASR backend compiled in, NULL-terminated. */
extern const struct asr_backend *const asr_backends[];

/* Dispatch to the session's backend. */
void asr_feed(struct asr_session *s, const int16_t *pcm, size_t n);
void asr_finish(struct asr_session *s);
/*
 * The posterior probability of the last word of the session's final
 * hypothesis (0-1), valid from `final` on; negative when the backend gives
 * none (every one but pocketsphinx) or there were no words. The end-of-turn
 * rule uses it: a last word the recogniser doubts says little about whether
 * the caller's sentence is finished (docs/turns.md).
 */
float asr_last_word_confidence(const struct asr_session *s);
/* Cancels and lets go; no callback after this. NULL is fine. */
void asr_release(struct asr_session *s);

#endif
