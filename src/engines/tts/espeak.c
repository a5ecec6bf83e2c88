/*
 * espeak-ng: embedded speech synthesis for every language flite does not
 * speak (Mandarin, Japanese, German, French...), 22050 Hz mono.
 *
 * espeak-ng is one global synthesiser per process: its voice, its rate and
 * its callback are process state, and it may synthesise one text at a
 * time. So the backend opens once per process (a second open is refused
 * with -EBUSY), and its jobs wait in the engine's own FIFO: a single
 * "drain" item on the inference pool speaks one job and, if more are
 * waiting, submits itself again. No caller ever waits on a lock held during
 * synthesis; a sentence simply queues behind the one being spoken, and
 * espeak-ng is fast (far faster than real time), so the queue stays short.
 *
 * Synthesis runs in synchronous mode: espeak_Synth calls our callback with
 * every ESPEAK_CHUNK_MS of audio as it is produced, and each piece is
 * posted home at once. Returning 1 from the callback aborts the text, which
 * is how cancellation stops a job mid-sentence; a job cancelled while
 * still queued is taken out of the queue.
 *
 * espeak-ng 1.51 cannot be initialised again after espeak_Terminate (its
 * queue thread deadlocks), so it is initialised once, on first open, and
 * left to the process's exit; closing the backend only lets it be opened
 * again.
 *
 * The voice is tts_params.voice, else the configured tts_voice, else the
 * one named by the language (zh -> cmn, zh-HK -> yue, otherwise espeak-ng's
 * voice of that language code, e.g. ja, de, fr, pt-br), falling back to the
 * bare language and then English.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <espeak-ng/speak_lib.h>

#include "core/log.h"
#include "core/pool.h"
#include "engines/tts.h"

#define ESPEAK_CHUNK_MS 40
#define ESPEAK_VOICE_MAX 128

extern const struct tts_backend tts_espeak;

/* espeak-ng's state is per process: initialised once, held by one engine. */
static atomic_flag espeak_in_use = ATOMIC_FLAG_INIT;
static pthread_once_t espeak_once = PTHREAD_ONCE_INIT;
static int espeak_sample_rate;

struct espeak_job;

struct espeak_engine {
  atomic_int refs; /* the opener's, one per job, one for the drain in flight */
  struct pool *pool;
  int sample_rate;
  int rate;                        /* configured, percent */
  char voice[ESPEAK_VOICE_MAX];    /* configured voice, "" = by language */
  uv_mutex_t lock;                 /* head, tail, busy, job->queued */
  struct espeak_job *head, *tail;
  int busy;                        /* a drain is queued or running */
  /* Touched only by the drain in flight. */
  char current_voice[ESPEAK_VOICE_MAX];
  int current_wpm;
};

struct espeak_job {
  struct tts_job base;
  struct espeak_engine *eng;
  struct espeak_job *next;
  int queued;
  char *text;
  char voice[ESPEAK_VOICE_MAX];
  char language[ESPEAK_VOICE_MAX];
  int wpm;
};

struct pcm_chunk {
  int rate;
  size_t n;
  int16_t pcm[];
};

static void drain(void *arg);
static void drain_drop(void *arg);

static void engine_unref(struct espeak_engine *e) {
  if (atomic_fetch_sub(&e->refs, 1) != 1) return;
  uv_mutex_destroy(&e->lock);
  free(e);
  atomic_flag_clear(&espeak_in_use);
}

/* ---- results, on the home loop ---- */

static void deliver_audio(struct eng_job *j, void *arg) {
  struct espeak_job *ej = (struct espeak_job *)j;
  struct pcm_chunk *c = arg;
  if (ej->base.cb.audio) ej->base.cb.audio(ej->base.cb.user, c->pcm, c->n, c->rate);
}

static void deliver_done(struct eng_job *j, void *arg) {
  struct espeak_job *ej = (struct espeak_job *)j;
  if (ej->base.cb.done) ej->base.cb.done(ej->base.cb.user);
}

static void deliver_error(struct eng_job *j, void *arg) {
  struct espeak_job *ej = (struct espeak_job *)j;
  if (ej->base.cb.error) ej->base.cb.error(ej->base.cb.user, arg);
}

/* ---- synthesis, on the pool, one job at a time ---- */

static int on_samples(short *wav, int n, espeak_EVENT *events) {
  struct espeak_job *j = events ? events->user_data : NULL;
  if (!j) return 0;
  if (eng_job_cancelled(&j->base.job)) return 1;
  if (!wav || n <= 0) return 0;
  struct pcm_chunk *c = malloc(sizeof *c + (size_t)n * sizeof c->pcm[0]);
  if (!c) return 1;
  c->rate = j->eng->sample_rate;
  c->n = (size_t)n;
  memcpy(c->pcm, wav, c->n * sizeof c->pcm[0]);
  eng_job_post(&j->base.job, deliver_audio, c);
  return 0;
}

static int try_voice(struct espeak_engine *e, const char *name) {
  if (!*name) return -1;
  if (strcmp(name, e->current_voice) == 0) return 0;
  if (espeak_SetVoiceByName(name) != EE_OK) return -1;
  snprintf(e->current_voice, sizeof e->current_voice, "%s", name);
  return 0;
}

/* The language's voice name: zh -> cmn, zh-hk -> yue, else the code itself. */
static void voice_for_language(const char *language, char *out, size_t len) {
  char lang[ESPEAK_VOICE_MAX];
  size_t i = 0;
  for (; language && language[i] && i + 1 < sizeof lang; i++)
    lang[i] = (char)(language[i] == '_' ? '-' : tolower((unsigned char)language[i]));
  lang[i] = 0;
  if (strcmp(lang, "zh-hk") == 0 || strcmp(lang, "zh-yue") == 0 || strcmp(lang, "yue") == 0)
    snprintf(out, len, "yue");
  else if (strncmp(lang, "zh", 2) == 0 || strncmp(lang, "cmn", 3) == 0)
    snprintf(out, len, "cmn");
  else
    snprintf(out, len, "%s", *lang ? lang : "en");
}

static void choose_voice(struct espeak_engine *e, struct espeak_job *j) {
  char by_lang[ESPEAK_VOICE_MAX], primary[ESPEAK_VOICE_MAX];
  voice_for_language(j->language, by_lang, sizeof by_lang);
  snprintf(primary, sizeof primary, "%s", by_lang);
  primary[strcspn(primary, "-")] = 0;
  if (try_voice(e, j->voice) == 0 || try_voice(e, by_lang) == 0 || try_voice(e, primary) == 0)
    return;
  try_voice(e, "en");
}

static void speak_one(struct espeak_engine *e, struct espeak_job *j) {
  choose_voice(e, j);
  if (j->wpm != e->current_wpm) {
    espeak_SetParameter(espeakRATE, j->wpm, 0);
    e->current_wpm = j->wpm;
  }
  espeak_ERROR rc = espeak_Synth(j->text, strlen(j->text) + 1, 0, POS_CHARACTER, 0,
                                 espeakCHARS_UTF8, NULL, j);
  if (eng_job_cancelled(&j->base.job)) return;
  if (rc == EE_OK) eng_job_post(&j->base.job, deliver_done, NULL);
  else eng_job_post(&j->base.job, deliver_error, strdup("espeak-ng could not synthesise the text"));
}

static struct espeak_job *pop(struct espeak_engine *e) {
  struct espeak_job *j = e->head;
  if (j) {
    e->head = j->next;
    if (!e->head) e->tail = NULL;
    j->next = NULL;
    j->queued = 0;
  }
  return j;
}

static void drain(void *arg) {
  struct espeak_engine *e = arg;
  uv_mutex_lock(&e->lock);
  struct espeak_job *j = pop(e);
  uv_mutex_unlock(&e->lock);
  if (j) {
    if (!eng_job_cancelled(&j->base.job)) speak_one(e, j);
    eng_job_unref(&j->base.job);
  }
  uv_mutex_lock(&e->lock);
  int again = e->head != NULL;
  if (!again) e->busy = 0;
  uv_mutex_unlock(&e->lock);
  if (again && pool_submit(e->pool, drain, drain_drop, e) == 0) return;
  if (again) drain_drop(e);
  else engine_unref(e);
}

/* The pool is going away: nothing queued will be spoken. */
static void drain_drop(void *arg) {
  struct espeak_engine *e = arg;
  uv_mutex_lock(&e->lock);
  struct espeak_job *list = e->head;
  e->head = e->tail = NULL;
  for (struct espeak_job *j = list; j; j = j->next) j->queued = 0;
  e->busy = 0;
  uv_mutex_unlock(&e->lock);
  while (list) {
    struct espeak_job *next = list->next;
    eng_job_unref(&list->base.job);
    list = next;
  }
  engine_unref(e);
}

/* ---- jobs, on their home loop ---- */

static void job_destroy(struct eng_job *j) {
  struct espeak_job *ej = (struct espeak_job *)j;
  struct espeak_engine *e = ej->eng;
  free(ej->text);
  free(ej);
  engine_unref(e);
}

/* A job cancelled before its turn leaves the queue at once. */
static void job_cancel(struct eng_job *j) {
  struct espeak_job *ej = (struct espeak_job *)j;
  struct espeak_engine *e = ej->eng;
  int unqueued = 0;
  uv_mutex_lock(&e->lock);
  if (ej->queued) {
    struct espeak_job **pp = &e->head, *prev = NULL;
    while (*pp != ej) {
      prev = *pp;
      pp = &(*pp)->next;
    }
    *pp = ej->next;
    if (e->tail == ej) e->tail = prev;
    ej->next = NULL;
    ej->queued = 0;
    unqueued = 1;
  }
  uv_mutex_unlock(&e->lock);
  if (unqueued) eng_job_unref(j);
}

static int is_flite_voice(const char *name) {
  static const char *const flite_voices[] = {"slt", "kal", "awb", "rms"};
  if (strncmp(name, "cmu_us_", 7) == 0) return 1;
  for (size_t i = 0; i < sizeof flite_voices / sizeof flite_voices[0]; i++)
    if (strcmp(name, flite_voices[i]) == 0) return 1;
  return 0;
}

static int words_per_minute(int percent, int fallback) {
  if (percent <= 0) percent = fallback > 0 ? fallback : 100;
  int wpm = espeakRATE_NORMAL * percent / 100;
  if (wpm < espeakRATE_MINIMUM) wpm = espeakRATE_MINIMUM;
  if (wpm > espeakRATE_MAXIMUM) wpm = espeakRATE_MAXIMUM;
  return wpm;
}

static int espeak_speak(void *engine, const struct tts_params *p, struct mailbox *home,
                        const struct tts_cb *cb, struct tts_job **out) {
  struct espeak_engine *e = engine;
  struct espeak_job *j = calloc(1, sizeof *j);
  if (!j) return -ENOMEM;
  if (!(j->text = strdup(p->text ? p->text : ""))) {
    free(j);
    return -ENOMEM;
  }
  eng_job_init(&j->base.job, home, job_destroy);
  j->base.job.on_cancel = job_cancel;
  j->base.be = &tts_espeak;
  j->base.cb = *cb;
  j->eng = e;
  atomic_fetch_add(&e->refs, 1);
  const char *voice = p->voice && *p->voice && !is_flite_voice(p->voice) ? p->voice : e->voice;
  snprintf(j->voice, sizeof j->voice, "%s", voice);
  snprintf(j->language, sizeof j->language, "%s", p->language ? p->language : "");
  j->wpm = words_per_minute(p->rate, e->rate);
  *out = &j->base;

  eng_job_ref(&j->base.job); /* the queue's */
  uv_mutex_lock(&e->lock);
  j->queued = 1;
  if (e->tail) e->tail->next = j;
  else e->head = j;
  e->tail = j;
  int start = !e->busy;
  e->busy = 1;
  if (start) atomic_fetch_add(&e->refs, 1); /* the drain's */
  uv_mutex_unlock(&e->lock);
  if (start && pool_submit(e->pool, drain, drain_drop, e)) {
    drain_drop(e);
    eng_job_unref(&j->base.job);
    *out = NULL;
    return -ESHUTDOWN;
  }
  return 0;
}

static void initialise(void) {
  espeak_sample_rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ESPEAK_CHUNK_MS, NULL,
                                         espeakINITIALIZE_DONT_EXIT);
  if (espeak_sample_rate > 0) espeak_SetSynthCallback(on_samples);
}

static int espeak_open(void **engine, const struct engine_env *env, char *err, size_t errlen) {
  if (!env->pool) {
    snprintf(err, errlen, "espeak-ng needs the inference pool");
    return -EINVAL;
  }
  if (atomic_flag_test_and_set(&espeak_in_use)) {
    snprintf(err, errlen, "espeak-ng is already open in this process");
    return -EBUSY;
  }
  pthread_once(&espeak_once, initialise);
  int rate = espeak_sample_rate;
  if (rate <= 0) {
    snprintf(err, errlen, "espeak-ng: could not load its data (Debian package espeak-ng-data)");
    atomic_flag_clear(&espeak_in_use);
    return -ENOENT;
  }
  struct espeak_engine *e = calloc(1, sizeof *e);
  if (!e || uv_mutex_init(&e->lock)) {
    free(e);
    atomic_flag_clear(&espeak_in_use);
    return -ENOMEM;
  }
  atomic_init(&e->refs, 1);
  e->pool = env->pool;
  e->sample_rate = rate;
  e->rate = env->cfg ? env->cfg->tts_rate : 100;
  const char *voice = env->cfg ? env->cfg->tts_voice : "";
  if (*voice && !is_flite_voice(voice)) {
    if (espeak_SetVoiceByName(voice) != EE_OK) {
      snprintf(err, errlen, "espeak-ng has no voice \"%s\" (try espeak-ng --voices)", voice);
      engine_unref(e);
      return -EINVAL;
    }
    snprintf(e->voice, sizeof e->voice, "%s", voice);
    snprintf(e->current_voice, sizeof e->current_voice, "%s", voice);
  }
  *engine = e;
  return 0;
}

static void espeak_close(void *engine) {
  if (engine) engine_unref(engine);
}

const struct tts_backend tts_espeak = {
    .name = "espeak-ng",
    .open = espeak_open,
    .close = espeak_close,
    .speak = espeak_speak,
};
