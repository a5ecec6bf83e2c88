/*
 * flite: embedded English speech synthesis with CMU flite 2.2 and its US
 * English voices slt (the default), kal, awb and rms.
 *
 * Each sentence is one pool item. flite streams: with a "streaming_info"
 * feature on the utterance, the waveform generator calls back every
 * FLITE_CHUNK samples as it produces them, and each piece is posted home at
 * once, so playback starts long before the sentence is finished. The
 * callback returns "stop" once the job is cancelled, which ends synthesis
 * at the next piece.
 *
 * Thread safety. One voice serves every thread at once, so nothing a
 * synthesis does may write to it:
 *  - registering and unregistering voices (flite globals) happens under a
 *    process-wide lock, counted, before the first and after the last use;
 *  - per-synthesis settings (the streaming callback, the speaking rate)
 *    are set on the utterance's own features, never on the voice. The usual
 *    recipe of setting "streaming_info" on voice->features is a data race
 *    when two sentences are spoken at once;
 *  - flite 2.2's utt_init links the voice's features into the utterance
 *    (feat_link_into) rather than copying them, so reading them touches no
 *    reference count of the shared values.
 * The unit test speaks the same sentence on several threads at once and
 * checks that every copy is sample-identical to a lone synthesis.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/pool.h"
#include "engines/tts.h"
#include "engines/tts/flite_voices.h"

#define FLITE_CHUNK 800 /* samples per streamed piece: 50 ms at 16 kHz */

/* The voices' registration functions; flite ships no header for them. */
cst_voice *register_cmu_us_slt(const char *voxdir);
cst_voice *register_cmu_us_kal(const char *voxdir);
cst_voice *register_cmu_us_awb(const char *voxdir);
cst_voice *register_cmu_us_rms(const char *voxdir);
void unregister_cmu_us_slt(cst_voice *v);
void unregister_cmu_us_kal(cst_voice *v);
void unregister_cmu_us_awb(cst_voice *v);
void unregister_cmu_us_rms(cst_voice *v);

extern const struct tts_backend tts_flite;

/* ---- the process-wide voice registry ---- */

struct voice_entry {
  const char *name;
  cst_voice *(*reg)(const char *voxdir);
  void (*unreg)(cst_voice *v);
};

static const struct voice_entry voice_table[] = {
    {"slt", register_cmu_us_slt, unregister_cmu_us_slt},
    {"kal", register_cmu_us_kal, unregister_cmu_us_kal},
    {"awb", register_cmu_us_awb, unregister_cmu_us_awb},
    {"rms", register_cmu_us_rms, unregister_cmu_us_rms},
};
#define VOICES (sizeof voice_table / sizeof voice_table[0])

/* flite's own state is global; this mirrors it, guarded by registry_lock. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static int registry_users;
static cst_voice *registry[VOICES];

static void unregister_all(void) {
  for (size_t i = 0; i < VOICES; i++) {
    if (registry[i]) voice_table[i].unreg(registry[i]);
    registry[i] = NULL;
  }
}

int tts_flite_voices_acquire(void) {
  int rc = 0;
  pthread_mutex_lock(&registry_lock);
  if (registry_users == 0) {
    flite_init();
    for (size_t i = 0; i < VOICES && rc == 0; i++)
      if (!(registry[i] = voice_table[i].reg(NULL))) rc = -ENOMEM;
    if (rc) unregister_all();
  }
  if (rc == 0) registry_users++;
  pthread_mutex_unlock(&registry_lock);
  return rc;
}

void tts_flite_voices_release(void) {
  pthread_mutex_lock(&registry_lock);
  if (registry_users > 0 && --registry_users == 0) unregister_all();
  pthread_mutex_unlock(&registry_lock);
}

cst_voice *tts_flite_voice(const char *name) {
  if (!name || !*name) name = "slt";
  if (strncmp(name, "cmu_us_", 7) == 0) name += 7;
  cst_voice *v = NULL;
  pthread_mutex_lock(&registry_lock);
  for (size_t i = 0; i < VOICES; i++)
    if (strcmp(name, voice_table[i].name) == 0) v = registry[i];
  pthread_mutex_unlock(&registry_lock);
  return v;
}

int tts_flite_render(cst_voice *voice, const char *text, int16_t **pcm, size_t *n, int *rate) {
  cst_wave *w = flite_text_to_wave(text, voice);
  if (!w) return -EIO;
  size_t count = w->num_samples > 0 ? (size_t)w->num_samples : 0;
  *pcm = malloc(count ? count * sizeof **pcm : 1);
  if (!*pcm) {
    delete_wave(w);
    return -ENOMEM;
  }
  if (count) memcpy(*pcm, w->samples, count * sizeof **pcm);
  *n = count;
  *rate = w->sample_rate;
  delete_wave(w);
  return 0;
}

/* ---- the backend ---- */

struct flite_engine {
  atomic_int refs; /* the opener's, plus one per job */
  struct pool *pool;
  cst_voice *voice;
  int rate;
};

struct flite_job {
  struct tts_job base;
  struct flite_engine *eng;
  cst_voice *voice;
  float stretch;
  char *text;
};

struct pcm_chunk {
  int rate;
  size_t n;
  int16_t pcm[];
};

static void engine_unref(struct flite_engine *e) {
  if (atomic_fetch_sub(&e->refs, 1) != 1) return;
  tts_flite_voices_release();
  free(e);
}

static void deliver_audio(struct eng_job *j, void *arg) {
  struct flite_job *fj = (struct flite_job *)j;
  struct pcm_chunk *c = arg;
  if (fj->base.cb.audio) fj->base.cb.audio(fj->base.cb.user, c->pcm, c->n, c->rate);
}

static void deliver_done(struct eng_job *j, void *arg) {
  struct flite_job *fj = (struct flite_job *)j;
  if (fj->base.cb.done) fj->base.cb.done(fj->base.cb.user);
}

static void deliver_error(struct eng_job *j, void *arg) {
  struct flite_job *fj = (struct flite_job *)j;
  if (fj->base.cb.error) fj->base.cb.error(fj->base.cb.user, arg);
}

static int on_piece(const cst_wave *w, int start, int size, int last,
                    cst_audio_streaming_info *asi) {
  struct flite_job *j = asi->userdata;
  if (eng_job_cancelled(&j->base.job)) return CST_AUDIO_STREAM_STOP;
  if (size <= 0) return CST_AUDIO_STREAM_CONT;
  struct pcm_chunk *c = malloc(sizeof *c + (size_t)size * sizeof c->pcm[0]);
  if (!c) return CST_AUDIO_STREAM_STOP;
  c->rate = w->sample_rate;
  c->n = (size_t)size;
  memcpy(c->pcm, w->samples + start, c->n * sizeof c->pcm[0]);
  eng_job_post(&j->base.job, deliver_audio, c);
  return CST_AUDIO_STREAM_CONT;
}

static void synthesise(void *arg) {
  struct flite_job *j = arg;
  if (!eng_job_cancelled(&j->base.job)) {
    cst_utterance *u = new_utterance();
    utt_set_input_text(u, j->text);
    utt_init(u, j->voice);
    cst_audio_streaming_info *asi = new_audio_streaming_info();
    asi->min_buffsize = FLITE_CHUNK;
    asi->asc = on_piece;
    asi->userdata = j;
    /* On the utterance, not the shared voice; the utterance frees asi. */
    feat_set(u->features, "streaming_info", audio_streaming_info_val(asi));
    feat_set_float(u->features, "duration_stretch", j->stretch);
    cst_utterance *done = utt_synth(u);
    delete_utterance(u);
    if (done) eng_job_post(&j->base.job, deliver_done, NULL);
    else if (!eng_job_cancelled(&j->base.job))
      eng_job_post(&j->base.job, deliver_error, strdup("flite could not synthesise the text"));
  }
  eng_job_unref(&j->base.job);
}

static void job_drop(void *arg) { eng_job_unref(&((struct flite_job *)arg)->base.job); }

static void job_destroy(struct eng_job *j) {
  struct flite_job *fj = (struct flite_job *)j;
  struct flite_engine *e = fj->eng;
  free(fj->text);
  free(fj);
  engine_unref(e);
}

static int blank(const char *s) {
  for (; s && *s; s++)
    if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') return 0;
  return 1;
}

static int clamp_rate(int rate, int fallback) {
  if (rate <= 0) rate = fallback > 0 ? fallback : 100;
  if (rate < 25) rate = 25;
  if (rate > 400) rate = 400;
  return rate;
}

static int flite_speak(void *engine, const struct tts_params *p, struct mailbox *home,
                       const struct tts_cb *cb, struct tts_job **out) {
  struct flite_engine *e = engine;
  struct flite_job *j = calloc(1, sizeof *j);
  if (!j) return -ENOMEM;
  j->text = strdup(p->text ? p->text : "");
  if (!j->text) {
    free(j);
    return -ENOMEM;
  }
  eng_job_init(&j->base.job, home, job_destroy);
  j->base.be = &tts_flite;
  j->base.cb = *cb;
  j->eng = e;
  atomic_fetch_add(&e->refs, 1);
  j->voice = p->voice && *p->voice ? tts_flite_voice(p->voice) : NULL;
  if (!j->voice) j->voice = e->voice;
  j->stretch = 100.0f / (float)clamp_rate(p->rate, e->rate);
  *out = &j->base;
  if (blank(j->text)) {
    eng_job_post(&j->base.job, deliver_done, NULL);
    return 0;
  }
  eng_job_ref(&j->base.job);
  int rc = pool_submit(e->pool, synthesise, job_drop, j);
  if (rc) {
    eng_job_unref(&j->base.job);
    eng_job_unref(&j->base.job);
    *out = NULL;
  }
  return rc;
}

static int flite_open(void **engine, const struct engine_env *env, char *err, size_t errlen) {
  if (!env->pool) {
    snprintf(err, errlen, "flite needs the inference pool");
    return -EINVAL;
  }
  if (tts_flite_voices_acquire()) {
    snprintf(err, errlen, "flite: could not load its voices");
    return -ENOMEM;
  }
  const char *name = env->cfg ? env->cfg->tts_voice : "";
  cst_voice *v = tts_flite_voice(name);
  if (!v) {
    snprintf(err, errlen, "flite has no voice \"%s\" (slt, kal, awb, rms)", name);
    tts_flite_voices_release();
    return -EINVAL;
  }
  struct flite_engine *e = calloc(1, sizeof *e);
  if (!e) {
    tts_flite_voices_release();
    return -ENOMEM;
  }
  atomic_init(&e->refs, 1);
  e->pool = env->pool;
  e->voice = v;
  e->rate = clamp_rate(env->cfg ? env->cfg->tts_rate : 100, 100);
  *engine = e;
  return 0;
}

static void flite_close(void *engine) {
  if (engine) engine_unref(engine);
}

const struct tts_backend tts_flite = {
    .name = "flite",
    .open = flite_open,
    .close = flite_close,
    .speak = flite_speak,
};
