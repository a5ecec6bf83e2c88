/*
 * The engines a server runs with.
 *
 * Backends register themselves in the three NULL-terminated lists below;
 * the configuration picks one of each by name. Opening happens once, at
 * start: a model that fails to load or a service URL that makes no sense
 * stops the server with a message, rather than failing the first call.
 *
 * The embedded TTS pairing is a policy of this file: flite speaks English
 * only, so when it is chosen, espeak-ng is opened beside it and speaks every
 * other language.
 */
#include "engines/engines.h"
#include "engines/service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Backends compiled in. Each list is NULL-terminated. */
extern const struct asr_backend asr_pocketsphinx, asr_scripted;
extern const struct llm_backend llm_local, llm_fixed;
extern const struct tts_backend tts_flite, tts_espeak, tts_tone;
const struct asr_backend *const asr_backends[] = {&asr_pocketsphinx, &asr_openai, &asr_scripted,
                                                  NULL};
const struct llm_backend *const llm_backends[] = {&llm_local, &llm_openai, &llm_anthropic,
                                                  &llm_fixed, NULL};
const struct tts_backend *const tts_backends[] = {&tts_flite,      &tts_espeak, &tts_openai,
                                                  &tts_elevenlabs, &tts_azure,  &tts_tone,
                                                  NULL};

struct engines {
  const struct asr_backend *asr;
  const struct llm_backend *llm;
  const struct tts_backend *tts, *tts_other;
  void *asr_state, *llm_state, *tts_state, *tts_other_state;
};

/* The backend lists share a layout: a pointer array whose elements start with `name`. */
static const void *find_backend(const void *const *list, const char *name) {
  for (size_t i = 0; list[i]; i++)
    if (strcmp(*(const char *const *)list[i], name) == 0) return list[i];
  return NULL;
}

static int missing(const char *kind, const char *name, char *err, size_t errlen) {
  snprintf(err, errlen, "%s engine \"%s\" is not available in this build", kind, name);
  return -ENOENT;
}

static int open_tts(struct engines *e, const struct engine_env *env, char *err, size_t errlen) {
  const char *name = env->cfg->tts;
  e->tts = find_backend((const void *const *)tts_backends, name);
  if (!e->tts) return missing("tts", name, err, errlen);
  int rc = e->tts->open(&e->tts_state, env, err, errlen);
  if (rc || strcmp(name, "flite") != 0) return rc;
  e->tts_other = find_backend((const void *const *)tts_backends, "espeak-ng");
  return e->tts_other ? e->tts_other->open(&e->tts_other_state, env, err, errlen) : 0;
}

int engines_open(struct engines **out, const struct engine_env *env, char *err, size_t errlen) {
  struct engines *e = calloc(1, sizeof *e);
  if (!e) return -ENOMEM;
  const struct config *cfg = env->cfg;
  int rc = 0;
  e->asr = find_backend((const void *const *)asr_backends, cfg->asr);
  if (!e->asr) rc = missing("asr", cfg->asr, err, errlen);
  if (rc == 0) rc = e->asr->open(&e->asr_state, env, err, errlen);
  if (rc == 0) {
    e->llm = find_backend((const void *const *)llm_backends, cfg->llm);
    rc = e->llm ? e->llm->open(&e->llm_state, env, err, errlen) : missing("llm", cfg->llm, err, errlen);
  }
  if (rc == 0) rc = open_tts(e, env, err, errlen);
  if (rc) {
    engines_close(e);
    return rc;
  }
  *out = e;
  return 0;
}

void engines_close(struct engines *e) {
  if (!e) return;
  if (e->asr && e->asr_state) e->asr->close(e->asr_state);
  if (e->llm && e->llm_state) e->llm->close(e->llm_state);
  if (e->tts && e->tts_state) e->tts->close(e->tts_state);
  if (e->tts_other && e->tts_other_state) e->tts_other->close(e->tts_other_state);
  free(e);
}

int engines_asr_start(struct engines *e, const struct asr_params *p, struct mailbox *home,
                      const struct asr_cb *cb, struct asr_session **out) {
  return e->asr->start(e->asr_state, p, home, cb, out);
}

int engines_llm_generate(struct engines *e, const struct llm_params *p, struct mailbox *home,
                         const struct llm_cb *cb, struct llm_job **out) {
  return e->llm->generate(e->llm_state, p, home, cb, out);
}

static int is_english(const char *language) {
  return !language || !*language || strncmp(language, "en", 2) == 0;
}

int engines_tts_speak(struct engines *e, const struct tts_params *p, struct mailbox *home,
                      const struct tts_cb *cb, struct tts_job **out) {
  if (e->tts_other && !is_english(p->language))
    return e->tts_other->speak(e->tts_other_state, p, home, cb, out);
  return e->tts->speak(e->tts_state, p, home, cb, out);
}

const char *engines_asr_name(const struct engines *e) { return e->asr->name; }
const char *engines_llm_name(const struct engines *e) { return e->llm->name; }
const char *engines_tts_name(const struct engines *e, const char *language) {
  return e->tts_other && !is_english(language) ? e->tts_other->name : e->tts->name;
}

void asr_feed(struct asr_session *s, const int16_t *pcm, size_t n) { s->be->feed(s, pcm, n); }
void asr_finish(struct asr_session *s) { s->be->finish(s); }
void asr_release(struct asr_session *s) {
  if (s) eng_job_release(&s->job);
}
void llm_release(struct llm_job *j) {
  if (j) eng_job_release(&j->job);
}
void tts_release(struct tts_job *j) {
  if (j) eng_job_release(&j->job);
}
