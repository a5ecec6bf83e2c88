/*
 * pocketsphinx: embedded English speech recognition, from Debian's
 * pocketsphinx 0.8+5prealpha and its US English models.
 *
 * A decoder is expensive: creating one loads the acoustic model, the
 * language model and the dictionary (about half a second and tens of
 * megabytes). So the engine keeps a small set of decoders, creates the first
 * at open (which also proves the models are there), creates more on demand
 * up to a bound, and lends one to each utterance for its whole length. When
 * every decoder is lent out, a session that needs one parks in a FIFO and
 * is handed the next decoder returned.
 *
 * A session is fed on its home loop, but decodes on the inference pool: fed
 * audio goes to the session's own mutex-protected queue, and at most one
 * "drain" item per session is in flight, so frames reach the decoder in
 * order and a session never occupies two pool threads. A drain decodes
 * what is queued and, if more arrived meanwhile, submits itself again
 * rather than looping, so busy sessions take turns on the pool.
 *
 * Partial hypotheses are asked for at most every 200 ms of wall time
 * (ps_get_hyp runs a backtrace, which is not free) and posted only when
 * they change. After finish, the last drain ends the utterance and posts
 * the final hypothesis.
 *
 * Cancellation: the drain checks the job's cancelled flag between 20 ms
 * pieces, and the cancel hook hands back a decoder that no drain is using.
 * A decoder returned mid-utterance is marked so, and the next session
 * ends that utterance before starting its own, so cancelling never costs
 * the home loop any decoding.
 *
 * Channel normalisation: the decoder keeps a running estimate of the
 * cepstral mean (live CMN), updated at the end of every utterance. An
 * utterance that was cancelled, or in which nothing was recognised, is
 * mostly noise or silence, and learning from it wrecks the next one (a
 * decoder whose first utterance was a cancelled half second of silence
 * heard "please call my mother" as "please why"). So the estimate is saved
 * when an utterance starts and put back after such an utterance.
 *
 * Logging: sphinxbase logs through one process-wide FILE. Opening a decoder
 * with -logfn reopens that FILE, which would race with decoders logging on
 * other threads, so logging is switched off once (err_set_logfp(NULL))
 * instead.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <pocketsphinx.h>
#include <sphinxbase/err.h>
#include <sphinxbase/feat.h>

#include "core/log.h"
#include "core/pool.h"
#include "engines/asr.h"

#define PS_HMM TS_POCKETSPHINX_MODELDIR "/en-us/en-us"
#define PS_LM TS_POCKETSPHINX_MODELDIR "/en-us/en-us.lm.bin"
#define PS_DICT TS_POCKETSPHINX_MODELDIR "/en-us/cmudict-en-us.dict"
#define PS_PARTIAL_NS (200 * 1000000ULL)
#define PS_PIECE 320 /* samples decoded between cancellation checks: 20 ms */

extern const struct asr_backend asr_pocketsphinx;

struct decoder {
  struct decoder *next;
  cmd_ln_t *config;
  ps_decoder_t *ps;
  int in_utt; /* left mid-utterance by a cancelled session */
  cmn_t *cmn; /* the decoder's live CMN state, or NULL */
  mfcc_t *saved_mean, *saved_sum;
  int32 saved_nframe;
};

struct ps_session;

struct ps_engine {
  atomic_int refs; /* the opener's, plus one per session */
  struct pool *pool;
  uv_mutex_t lock; /* idle, count, waiters */
  uv_mutex_t create_lock; /* one ps_init at a time */
  struct decoder *idle;
  int count, max;
  struct ps_session *wait_head, *wait_tail;
};

struct chunk {
  struct chunk *next;
  size_t n;
  int16_t pcm[];
};

struct ps_session {
  struct asr_session base;
  struct ps_engine *eng;
  uv_mutex_t lock; /* queue, finishing, scheduled, dec */
  struct chunk *head, *tail;
  int finishing;   /* asr_finish was called: no more audio */
  int scheduled;   /* a drain is queued, running, or parked for a decoder */
  struct decoder *dec;
  /* Guarded by the engine's lock. */
  struct ps_session *next_waiter;
  int waiting;
  /* Touched only by the drain in flight. */
  int started, done;
  uint64_t last_check;
  char *last_partial;
  size_t samples;
  uint64_t busy_ns;
};

static void drain(void *arg);
static void drop(void *arg);

/* ---- decoders ---- */

static void cmn_save(struct decoder *d) {
  if (!d->cmn) return;
  memcpy(d->saved_mean, d->cmn->cmn_mean, (size_t)d->cmn->veclen * sizeof(mfcc_t));
  memcpy(d->saved_sum, d->cmn->sum, (size_t)d->cmn->veclen * sizeof(mfcc_t));
  d->saved_nframe = d->cmn->nframe;
}

static void cmn_restore(struct decoder *d) {
  if (!d->cmn) return;
  memcpy(d->cmn->cmn_mean, d->saved_mean, (size_t)d->cmn->veclen * sizeof(mfcc_t));
  memcpy(d->cmn->sum, d->saved_sum, (size_t)d->cmn->veclen * sizeof(mfcc_t));
  d->cmn->nframe = d->saved_nframe;
}

/* Ends an utterance nobody will use, and forgets what it taught the CMN. */
static void abandon_utterance(struct decoder *d) {
  if (!d->in_utt) return;
  ps_end_utt(d->ps);
  cmn_restore(d);
  d->in_utt = 0;
}

static void decoder_free(struct decoder *d) {
  if (!d) return;
  free(d->saved_mean);
  free(d->saved_sum);
  if (d->ps) ps_free(d->ps);
  if (d->config) cmd_ln_free_r(d->config);
  free(d);
}

/* Each decoder gets its own configuration: sphinxbase reference counts are
 * not atomic, so nothing is shared between decoders that run at once. */
static struct decoder *decoder_new(struct ps_engine *e) {
  struct decoder *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  uv_mutex_lock(&e->create_lock);
  d->config = cmd_ln_init(NULL, ps_args(), TRUE, "-hmm", PS_HMM, "-lm", PS_LM, "-dict", PS_DICT,
                          NULL);
  if (d->config) d->ps = ps_init(d->config);
  uv_mutex_unlock(&e->create_lock);
  if (!d->ps) {
    decoder_free(d);
    return NULL;
  }
  feat_t *feat = ps_get_feat(d->ps);
  cmn_t *cmn = feat ? feat->cmn_struct : NULL;
  if (cmn && cmn->veclen > 0) {
    d->saved_mean = calloc((size_t)cmn->veclen, sizeof(mfcc_t));
    d->saved_sum = calloc((size_t)cmn->veclen, sizeof(mfcc_t));
    if (!d->saved_mean || !d->saved_sum) {
      decoder_free(d);
      return NULL;
    }
    d->cmn = cmn;
  }
  return d;
}

/* Returns a decoder, NULL when the session was parked, or sets *failed. */
static struct decoder *decoder_get(struct ps_engine *e, struct ps_session *s, int *failed) {
  uv_mutex_lock(&e->lock);
  struct decoder *d = e->idle;
  if (d) {
    e->idle = d->next;
    d->next = NULL;
    uv_mutex_unlock(&e->lock);
    return d;
  }
  if (e->count < e->max) {
    e->count++;
    uv_mutex_unlock(&e->lock);
    d = decoder_new(e);
    if (!d) {
      uv_mutex_lock(&e->lock);
      e->count--;
      uv_mutex_unlock(&e->lock);
      *failed = 1;
    }
    return d;
  }
  s->waiting = 1;
  s->next_waiter = NULL;
  if (e->wait_tail) e->wait_tail->next_waiter = s;
  else e->wait_head = s;
  e->wait_tail = s;
  uv_mutex_unlock(&e->lock);
  return NULL;
}

static struct ps_session *pop_waiter(struct ps_engine *e) {
  struct ps_session *s = e->wait_head;
  if (s) {
    e->wait_head = s->next_waiter;
    if (!e->wait_head) e->wait_tail = NULL;
    s->next_waiter = NULL;
    s->waiting = 0;
  }
  return s;
}

/* Any thread: the decoder goes to the first parked session, or back to idle. */
static void decoder_put(struct ps_engine *e, struct decoder *d) {
  for (;;) {
    uv_mutex_lock(&e->lock);
    struct ps_session *w = pop_waiter(e);
    if (!w) {
      d->next = e->idle;
      e->idle = d;
      uv_mutex_unlock(&e->lock);
      return;
    }
    uv_mutex_unlock(&e->lock);
    uv_mutex_lock(&w->lock);
    w->dec = d;
    uv_mutex_unlock(&w->lock);
    if (pool_submit(e->pool, drain, drop, w) == 0) return;
    /* The pool is going away: the waiter will never run. */
    uv_mutex_lock(&w->lock);
    w->dec = NULL;
    w->scheduled = 0;
    uv_mutex_unlock(&w->lock);
    eng_job_unref(&w->base.job);
  }
}

static void engine_unref(struct ps_engine *e) {
  if (atomic_fetch_sub(&e->refs, 1) != 1) return;
  while (e->idle) {
    struct decoder *d = e->idle;
    e->idle = d->next;
    decoder_free(d);
  }
  uv_mutex_destroy(&e->create_lock);
  uv_mutex_destroy(&e->lock);
  free(e);
}

/* ---- results, on the home loop ---- */

static void deliver_partial(struct eng_job *j, void *arg) {
  struct ps_session *s = (struct ps_session *)j;
  if (s->base.cb.partial) s->base.cb.partial(s->base.cb.user, arg);
}

static void deliver_final(struct eng_job *j, void *arg) {
  struct ps_session *s = (struct ps_session *)j;
  if (s->base.cb.final) s->base.cb.final(s->base.cb.user, arg);
}

static void deliver_error(struct eng_job *j, void *arg) {
  struct ps_session *s = (struct ps_session *)j;
  if (s->base.cb.error) s->base.cb.error(s->base.cb.user, arg);
}

static void post_text(struct ps_session *s, eng_job_fn fn, const char *text) {
  char *copy = strdup(text ? text : "");
  if (copy) eng_job_post(&s->base.job, fn, copy);
}

/* ---- the drain, on a pool thread ---- */

static void maybe_partial(struct ps_session *s) {
  uint64_t now = uv_hrtime();
  if (now - s->last_check < PS_PARTIAL_NS) return;
  s->last_check = now;
  const char *hyp = ps_get_hyp(s->dec->ps, NULL);
  if (!hyp || !*hyp || (s->last_partial && strcmp(hyp, s->last_partial) == 0)) return;
  char *copy = strdup(hyp);
  if (!copy) return;
  free(s->last_partial);
  s->last_partial = copy;
  post_text(s, deliver_partial, copy);
}

/* CPU time of this thread: what decoding costs, whatever else the machine does. */
static uint64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void decode(struct ps_session *s, struct chunk *list) {
  uint64_t t0 = cpu_ns();
  for (struct chunk *c = list; c && !eng_job_cancelled(&s->base.job); c = c->next) {
    for (size_t off = 0; off < c->n && !eng_job_cancelled(&s->base.job); off += PS_PIECE) {
      size_t n = c->n - off < PS_PIECE ? c->n - off : PS_PIECE;
      ps_process_raw(s->dec->ps, c->pcm + off, n, FALSE, FALSE);
      s->samples += n;
      maybe_partial(s);
    }
  }
  s->busy_ns += cpu_ns() - t0;
  while (list) {
    struct chunk *next = list->next;
    free(list);
    list = next;
  }
}

static void end_utterance(struct ps_session *s) {
  uint64_t t0 = cpu_ns();
  ps_end_utt(s->dec->ps);
  s->dec->in_utt = 0;
  s->busy_ns += cpu_ns() - t0;
  const char *hyp = ps_get_hyp(s->dec->ps, NULL);
  if (!hyp || !*hyp) cmn_restore(s->dec);
  post_text(s, deliver_final, hyp);
  s->done = 1;
  if (s->samples)
    log_call_debug("asr", s->base.call_id,
                   "pocketsphinx: %.2f s of audio decoded in %.0f ms of CPU (real-time factor %.3f)",
                   s->samples / (double)ASR_RATE, s->busy_ns / 1e6,
                   s->busy_ns / 1e9 / (s->samples / (double)ASR_RATE));
}

enum ready { READY, NOT_NOW, PARKED };

/* Gets and prepares a decoder. After PARKED the session belongs to the
 * waiting list: decoder_put (or the cancel hook) takes it from there. */
static enum ready ensure_decoder(struct ps_session *s) {
  if (!s->dec) {
    uv_mutex_lock(&s->lock);
    int empty = !s->head, fin = s->finishing;
    uv_mutex_unlock(&s->lock);
    if (empty) {
      /* Finished without a sample of audio: nothing to decode. */
      if (fin) post_text(s, deliver_final, "");
      s->done = fin;
      return NOT_NOW;
    }
    int failed = 0;
    struct decoder *d = decoder_get(s->eng, s, &failed);
    if (!d && !failed) return PARKED;
    if (!d) {
      post_text(s, deliver_error, "pocketsphinx could not create a decoder");
      s->done = 1;
      return NOT_NOW;
    }
    uv_mutex_lock(&s->lock);
    s->dec = d;
    uv_mutex_unlock(&s->lock);
  }
  if (!s->started) {
    abandon_utterance(s->dec);
    cmn_save(s->dec);
    if (ps_start_utt(s->dec->ps) < 0) {
      s->dec->in_utt = 0;
      post_text(s, deliver_error, "pocketsphinx could not start an utterance");
      s->done = 1;
      return NOT_NOW;
    }
    s->dec->in_utt = 1;
    s->started = 1;
    s->last_check = uv_hrtime();
  }
  return READY;
}

static void drain(void *arg) {
  struct ps_session *s = arg;
  if (!eng_job_cancelled(&s->base.job) && !s->done) {
    enum ready r = ensure_decoder(s);
    if (r == PARKED) return;
    if (r == READY) {
      uv_mutex_lock(&s->lock);
      struct chunk *list = s->head;
      s->head = s->tail = NULL;
      int fin = s->finishing;
      uv_mutex_unlock(&s->lock);
      decode(s, list);
      if (fin && !eng_job_cancelled(&s->base.job)) end_utterance(s);
    }
  }
  struct decoder *give_back = NULL;
  int again = 0;
  uv_mutex_lock(&s->lock);
  if (eng_job_cancelled(&s->base.job) || s->done) {
    give_back = s->dec;
    s->dec = NULL;
    s->scheduled = 0;
  } else if (s->head || s->finishing) {
    again = 1;
  } else {
    s->scheduled = 0;
  }
  uv_mutex_unlock(&s->lock);
  if (give_back) decoder_put(s->eng, give_back);
  if (again && pool_submit(s->eng->pool, drain, drop, s) == 0) return;
  eng_job_unref(&s->base.job);
}

/* The pool went away with our drain queued. */
static void drop(void *arg) {
  struct ps_session *s = arg;
  uv_mutex_lock(&s->lock);
  struct decoder *d = s->dec;
  s->dec = NULL;
  s->scheduled = 0;
  uv_mutex_unlock(&s->lock);
  if (d) decoder_put(s->eng, d);
  eng_job_unref(&s->base.job);
}

/* ---- the session, on its home loop ---- */

static void free_chunks(struct chunk *c) {
  while (c) {
    struct chunk *next = c->next;
    free(c);
    c = next;
  }
}

static void session_destroy(struct eng_job *j) {
  struct ps_session *s = (struct ps_session *)j;
  if (s->dec) decoder_put(s->eng, s->dec);
  free_chunks(s->head);
  free(s->last_partial);
  uv_mutex_destroy(&s->lock);
  engine_unref(s->eng);
  free(s);
}

static void session_cancel(struct eng_job *j) {
  struct ps_session *s = (struct ps_session *)j;
  struct ps_engine *e = s->eng;
  int parked = 0;
  uv_mutex_lock(&e->lock);
  if (s->waiting) {
    struct ps_session **pp = &e->wait_head, *prev = NULL;
    while (*pp != s) {
      prev = *pp;
      pp = &(*pp)->next_waiter;
    }
    *pp = s->next_waiter;
    if (e->wait_tail == s) e->wait_tail = prev;
    s->waiting = 0;
    parked = 1;
  }
  uv_mutex_unlock(&e->lock);
  struct decoder *d = NULL;
  uv_mutex_lock(&s->lock);
  struct chunk *queued = s->head;
  s->head = s->tail = NULL;
  if (!s->scheduled || parked) {
    d = s->dec;
    s->dec = NULL;
    s->scheduled = 0;
  }
  uv_mutex_unlock(&s->lock);
  free_chunks(queued);
  if (d) decoder_put(e, d);
  if (parked) eng_job_unref(&s->base.job);
}

static void fail(struct ps_session *s, int rc) {
  char msg[96];
  snprintf(msg, sizeof msg, "speech recognition unavailable (%s)", strerror(-rc));
  post_text(s, deliver_error, msg);
}

/* Called with s->lock held and scheduled just set; submits a drain. */
static void schedule(struct ps_session *s) {
  eng_job_ref(&s->base.job);
  int rc = pool_submit(s->eng->pool, drain, drop, s);
  if (rc == 0) return;
  s->scheduled = 0;
  s->finishing = 1; /* nothing more will be decoded */
  eng_job_unref(&s->base.job);
  fail(s, rc);
}

static void ps_feed(struct asr_session *base, const int16_t *pcm, size_t n) {
  struct ps_session *s = (struct ps_session *)base;
  if (!n || eng_job_cancelled(&base->job)) return;
  struct chunk *c = malloc(sizeof *c + n * sizeof *pcm);
  if (!c) return;
  c->next = NULL;
  c->n = n;
  memcpy(c->pcm, pcm, n * sizeof *pcm);
  uv_mutex_lock(&s->lock);
  if (s->finishing) {
    uv_mutex_unlock(&s->lock);
    free(c);
    return;
  }
  if (s->tail) s->tail->next = c;
  else s->head = c;
  s->tail = c;
  if (!s->scheduled) {
    s->scheduled = 1;
    schedule(s);
  }
  uv_mutex_unlock(&s->lock);
}

static void ps_finish(struct asr_session *base) {
  struct ps_session *s = (struct ps_session *)base;
  if (eng_job_cancelled(&base->job)) return;
  uv_mutex_lock(&s->lock);
  if (!s->finishing) {
    s->finishing = 1;
    if (!s->scheduled) {
      s->scheduled = 1;
      schedule(s);
    }
  }
  uv_mutex_unlock(&s->lock);
}

static int ps_start(void *engine, const struct asr_params *p, struct mailbox *home,
                    const struct asr_cb *cb, struct asr_session **out) {
  struct ps_engine *e = engine;
  struct ps_session *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  if (uv_mutex_init(&s->lock)) {
    free(s);
    return -ENOMEM;
  }
  eng_job_init(&s->base.job, home, session_destroy);
  s->base.job.on_cancel = session_cancel;
  s->base.be = &asr_pocketsphinx;
  s->base.cb = *cb;
  s->eng = e;
  atomic_fetch_add(&e->refs, 1);
  *out = &s->base;
  return 0;
}

/* ---- the engine ---- */

static int inference_threads(const struct config *cfg) {
  if (cfg->inference_threads > 0) return cfg->inference_threads;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

static int ps_open(void **engine, const struct engine_env *env, char *err, size_t errlen) {
  if (!env->pool) {
    snprintf(err, errlen, "pocketsphinx needs the inference pool");
    return -EINVAL;
  }
  if (access(PS_HMM "/mdef", R_OK) || access(PS_LM, R_OK) || access(PS_DICT, R_OK)) {
    snprintf(err, errlen, "pocketsphinx: US English model not found under %s "
             "(Debian package pocketsphinx-en-us)", TS_POCKETSPHINX_MODELDIR);
    return -ENOENT;
  }
  struct ps_engine *e = calloc(1, sizeof *e);
  if (!e) return -ENOMEM;
  if (uv_mutex_init(&e->lock)) {
    free(e);
    return -ENOMEM;
  }
  if (uv_mutex_init(&e->create_lock)) {
    uv_mutex_destroy(&e->lock);
    free(e);
    return -ENOMEM;
  }
  atomic_init(&e->refs, 1);
  e->pool = env->pool;
  /* Decoders are lent per utterance, and utterances outnumber threads only
   * while people speak (decoding keeps up in real time), so twice the
   * thread count is plenty. */
  e->max = 2 * inference_threads(env->cfg);
  if (e->max < 2) e->max = 2;
  err_set_logfp(NULL);
  e->idle = decoder_new(e);
  if (!e->idle) {
    snprintf(err, errlen, "pocketsphinx: could not load the model from %s",
             TS_POCKETSPHINX_MODELDIR);
    engine_unref(e);
    return -EIO;
  }
  e->count = 1;
  *engine = e;
  return 0;
}

static void ps_close(void *engine) {
  if (engine) engine_unref(engine);
}

const struct asr_backend asr_pocketsphinx = {
    .name = "pocketsphinx",
    .open = ps_open,
    .close = ps_close,
    .start = ps_start,
    .feed = ps_feed,
    .finish = ps_finish,
};
