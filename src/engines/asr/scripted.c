/*
 * scripted: a load-test ASR backend. It recognises nothing.
 *
 * It exists so that a benchmark measures the server (media, VAD, turn
 * taking, the LLM and TTS paths) rather than a recogniser: the final text
 * of each utterance comes from the `asr_prompt` configuration value, a list
 * separated by '|' used in turn and cycling ("hello" when it is empty), and
 * is posted the moment finish is called. Audio is accepted and ignored; no
 * partials are given. Never choose it for real calls.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "engines/asr.h"

extern const struct asr_backend asr_scripted;

struct scripted_engine {
  atomic_int refs; /* the opener's, plus one per session */
  atomic_uint next;
  size_t count;
  char **lines;
};

struct scripted_session {
  struct asr_session base;
  struct scripted_engine *eng;
  int finished;
};

static void engine_unref(struct scripted_engine *e) {
  if (atomic_fetch_sub(&e->refs, 1) != 1) return;
  for (size_t i = 0; i < e->count; i++) free(e->lines[i]);
  free(e->lines);
  free(e);
}

static char *trimmed_copy(const char *s, size_t n) {
  while (n && (*s == ' ' || *s == '\t')) s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  return strndup(s, n);
}

/* Splits the prompt on '|'; an empty prompt means one line, "hello". */
static int load_lines(struct scripted_engine *e, const char *prompt) {
  if (!prompt || !*prompt) prompt = "hello";
  size_t n = 1;
  for (const char *p = prompt; *p; p++) n += *p == '|';
  e->lines = calloc(n, sizeof *e->lines);
  if (!e->lines) return -ENOMEM;
  const char *start = prompt;
  for (;;) {
    const char *bar = strchr(start, '|');
    size_t len = bar ? (size_t)(bar - start) : strlen(start);
    if (!(e->lines[e->count] = trimmed_copy(start, len))) return -ENOMEM;
    e->count++;
    if (!bar) return 0;
    start = bar + 1;
  }
}

static int scripted_open(void **engine, const struct engine_env *env, char *err, size_t errlen) {
  struct scripted_engine *e = calloc(1, sizeof *e);
  if (!e) return -ENOMEM;
  atomic_init(&e->refs, 1);
  atomic_init(&e->next, 0);
  if (load_lines(e, env->cfg ? env->cfg->asr_prompt : NULL)) {
    engine_unref(e);
    return -ENOMEM;
  }
  *engine = e;
  return 0;
}

static void scripted_close(void *engine) {
  if (engine) engine_unref(engine);
}

static void session_destroy(struct eng_job *j) {
  struct scripted_session *s = (struct scripted_session *)j;
  engine_unref(s->eng);
  free(s);
}

static void deliver_final(struct eng_job *j, void *arg) {
  struct scripted_session *s = (struct scripted_session *)j;
  if (s->base.cb.final) s->base.cb.final(s->base.cb.user, arg);
}

static int scripted_start(void *engine, const struct asr_params *p, struct mailbox *home,
                          const struct asr_cb *cb, struct asr_session **out) {
  struct scripted_engine *e = engine;
  struct scripted_session *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  eng_job_init(&s->base.job, home, session_destroy);
  s->base.be = &asr_scripted;
  s->base.cb = *cb;
  s->eng = e;
  atomic_fetch_add(&e->refs, 1);
  *out = &s->base;
  return 0;
}

static void scripted_feed(struct asr_session *s, const int16_t *pcm, size_t n) {}

static void scripted_finish(struct asr_session *base) {
  struct scripted_session *s = (struct scripted_session *)base;
  if (s->finished || eng_job_cancelled(&base->job)) return;
  s->finished = 1;
  struct scripted_engine *e = s->eng;
  unsigned i = atomic_fetch_add(&e->next, 1);
  char *text = strdup(e->lines[i % e->count]);
  if (text) eng_job_post(&base->job, deliver_final, text);
}

const struct asr_backend asr_scripted = {
    .name = "scripted",
    .open = scripted_open,
    .close = scripted_close,
    .start = scripted_start,
    .feed = scripted_feed,
    .finish = scripted_finish,
};
