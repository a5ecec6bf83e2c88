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
 * A session is fed on its home loop (a media worker), but decodes on the
 * inference pool. The worker must not wait, so feeding takes no lock: fed
 * audio goes into the session's ring, a single-producer single-consumer
 * queue of samples (the home loop writes, the one drain in flight reads;
 * two atomic positions, no lock). At most one "drain" item per session is
 * in flight, so frames reach the decoder in order and a session never
 * occupies two pool threads. Who may start a drain is decided by one
 * atomic state (idle, scheduled, closed), taken by compare-and-swap. The
 * home loop wakes a drain for the first audio (which takes a decoder), when
 * PS_SCAN samples are in (which starts the utterance, below), then once
 * PS_BATCH samples are waiting, and at finish, so the pool's queue (whose
 * short lock is the hand-off) is reached a few times a second per speaker,
 * not every frame.
 * A drain decodes what is waiting and, if enough arrived meanwhile, submits
 * itself again rather than looping, so busy sessions take turns on the pool.
 *
 * The ring holds PS_RING samples (16 s). Decoding keeps up with speech, so
 * it only fills when a session waits that long for a decoder on an
 * overloaded server; audio that does not fit is dropped, and logged once.
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
 * Channel normalisation (docs/asr.md): the acoustic model expects cepstra
 * from which the channel's mean has been taken away (CMN). Decoding live,
 * sphinxbase subtracts a running estimate that it updates at the end of
 * each utterance, so an utterance was heard through the mean of whatever
 * that decoder had heard before: another call's, the AI's echo, a cancelled
 * burst of noise. The same recording then gave different words depending
 * on which decoder it met, and the model's built-in initial mean, used
 * instead, fits telephone-level audio badly (more errors than either). So
 * each utterance is normalised by its own mean: decoding starts once
 * PS_SCAN samples (0.8 s) of it are in, or at its end if it is shorter,
 * from the mean of those samples' cepstra, computed by a second front end
 * the decoder owns. The front end's noise estimate (-remove_noise) was
 * carried over the same way (ps_start_utt keeps it; only a new stream
 * resets it), so each utterance is also a stream of its own. Nothing
 * carries over from one utterance to the next.
 * On the consistency bench (bench/asr_consistency.mjs) the word error rate
 * went from 33 % to 24 %, and a transcript is now a function of the
 * utterance's audio alone. The cost is latency only for utterances shorter
 * than PS_SCAN, decoded after their end (0.12-0.17 s of CPU per second).
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
#include <sphinxbase/ckd_alloc.h>
#include <sphinxbase/err.h>
#include <sphinxbase/fe.h>
#include <sphinxbase/feat.h>

#include "core/log.h"
#include "core/pool.h"
#include "engines/asr.h"
#include "engines/service.h"

#define PS_HMM TS_POCKETSPHINX_MODELDIR "/en-us/en-us"
#define PS_LM TS_POCKETSPHINX_MODELDIR "/en-us/en-us.lm.bin"
#define PS_DICT TS_POCKETSPHINX_MODELDIR "/en-us/cmudict-en-us.dict"
#define PS_PARTIAL_NS (200 * 1000000ULL)
#define PS_PIECE 320 /* samples decoded between cancellation checks: 20 ms */
#define PS_RING (1u << 18) /* samples a session holds undecoded: 16.4 s (a power of two) */
#define PS_BATCH (3 * 320) /* samples waiting that wake a drain: 60 ms */
/* Samples whose cepstral mean normalises the utterance. A longer window is more accurate
 * (1.5 s: 20 % WER against 24 %) but a question shorter than it is decoded only after it ends,
 * which costs the turn some 150 ms (docs/asr.md). */
#define PS_SCAN (ASR_RATE * 4 / 5)
#define PS_HOP 160 /* the front end's frame shift: 10 ms */

extern const struct asr_backend asr_pocketsphinx;

struct decoder {
  struct decoder *next;
  cmd_ln_t *config;
  ps_decoder_t *ps;
  int in_utt; /* left mid-utterance by a cancelled session */
  cmn_t *cmn; /* the decoder's live CMN state, or NULL */
  mfcc_t *init_mean; /* the model's initial estimate, when an utterance has no frames to scan */
  fe_t *scan_fe; /* a front end of the decoder's settings, to scan an utterance's start */
  mfcc_t **scan_cep; /* PS_SCAN / PS_HOP + 4 frames */
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
  char dump_dir[256]; /* TS_ASR_DUMP: each utterance's decoded audio as a WAV; "" = off */
  atomic_uint dumped;
};

/* Who runs the session's consumer side (the drain, the decoder). */
enum drain_state {
  DRAIN_IDLE,      /* nobody: the next to swap it to SCHEDULED starts a drain */
  DRAIN_SCHEDULED, /* a drain is queued, running, or parked for a decoder */
  DRAIN_CLOSED,    /* done, cancelled or failed: no drain will run again */
};

struct ps_session {
  struct asr_session base;
  struct ps_engine *eng;
  /* The ring: samples [rpos, wpos) are waiting, at index pos % PS_RING.
   * Positions only grow. wpos is written by the home loop, rpos by the
   * drain in flight. */
  int16_t *ring;
  _Atomic size_t wpos, rpos;
  atomic_int finishing; /* asr_finish was called: no more audio */
  atomic_int sched;     /* enum drain_state */
  struct decoder *dec;  /* whoever set sched to SCHEDULED (or CLOSED from IDLE) owns it */
  int overflowed;       /* home loop: the ring was full once (logged) */
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

/*
 * The utterance's own cepstral mean, from its first n samples, replaces
 * whatever the decoder's estimate was; the running sums start again. With
 * no frame to go by (silence the front end dropped), the model's initial
 * estimate is used, so the result never depends on the decoder's past.
 */
static void cmn_from_audio(struct decoder *d, const int16_t *pcm, size_t n) {
  if (!d->cmn) return;
  int veclen = d->cmn->veclen;
  int32 nfr = PS_SCAN / PS_HOP + 2, last = 0;
  const int16 *p = pcm;
  size_t left = n;
  fe_start_stream(d->scan_fe); /* its noise estimate too starts from nothing */
  fe_start_utt(d->scan_fe);
  if (fe_process_frames(d->scan_fe, &p, &left, d->scan_cep, &nfr, NULL) < 0) nfr = 0;
  fe_end_utt(d->scan_fe, d->scan_cep[nfr], &last);
  nfr += last;
  for (int k = 0; k < veclen; k++) {
    double sum = 0;
    for (int32 t = 0; t < nfr; t++) sum += d->scan_cep[t][k];
    d->cmn->cmn_mean[k] = nfr > 0 ? (mfcc_t)(sum / nfr) : d->init_mean[k];
    d->cmn->sum[k] = 0;
  }
  d->cmn->nframe = 0;
}

/* Ends an utterance nobody will use. */
static void abandon_utterance(struct decoder *d) {
  if (!d->in_utt) return;
  ps_end_utt(d->ps);
  d->in_utt = 0;
}

static void decoder_free(struct decoder *d) {
  if (!d) return;
  free(d->init_mean);
  if (d->scan_cep) ckd_free_2d(d->scan_cep);
  if (d->scan_fe) fe_free(d->scan_fe);
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
    d->init_mean = calloc((size_t)cmn->veclen, sizeof(mfcc_t));
    d->scan_fe = fe_init_auto_r(d->config);
    if (!d->init_mean || !d->scan_fe || fe_get_output_size(d->scan_fe) != cmn->veclen) {
      decoder_free(d);
      return NULL;
    }
    d->scan_cep = (mfcc_t **)ckd_calloc_2d(PS_SCAN / PS_HOP + 4, (size_t)cmn->veclen, sizeof(mfcc_t));
    memcpy(d->init_mean, cmn->cmn_mean, (size_t)cmn->veclen * sizeof(mfcc_t));
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
    /* A parked session is SCHEDULED: taking it off the list makes it ours. */
    w->dec = d;
    if (pool_submit(e->pool, drain, drop, w) == 0) return;
    /* The pool is going away: the waiter will never run. */
    w->dec = NULL;
    atomic_store(&w->sched, DRAIN_CLOSED);
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

/* Decodes the ring up to `end`, handing each piece's room back to the home loop at once. */
static void decode(struct ps_session *s, size_t end) {
  uint64_t t0 = cpu_ns();
  size_t r = atomic_load_explicit(&s->rpos, memory_order_relaxed); /* ours */
  while (r < end && !eng_job_cancelled(&s->base.job)) {
    size_t at = r % PS_RING, n = end - r;
    if (n > PS_PIECE) n = PS_PIECE;
    if (n > PS_RING - at) n = PS_RING - at;
    ps_process_raw(s->dec->ps, s->ring + at, n, FALSE, FALSE);
    r += n;
    atomic_store_explicit(&s->rpos, r, memory_order_release);
    s->samples += n;
    maybe_partial(s);
  }
  s->busy_ns += cpu_ns() - t0;
}

/* Debugging aid: what the decoder was given, exactly, for listening and
 * for decoding again offline. Only utterances that fit the ring whole. */
static void dump_utterance(struct ps_session *s, const char *hyp) {
  struct ps_engine *e = s->eng;
  if (!e->dump_dir[0] || !s->samples || s->samples > PS_RING) return;
  char path[400];
  unsigned k = atomic_fetch_add(&e->dumped, 1);
  snprintf(path, sizeof path, "%s/utt-%s-%04u.wav", e->dump_dir,
           s->base.call_id[0] ? s->base.call_id : "none", k);
  FILE *f = fopen(path, "wb");
  if (!f) return;
  uint8_t hdr[44];
  svc_wav_header(hdr, s->samples, ASR_RATE);
  fwrite(hdr, 1, sizeof hdr, f);
  fwrite(s->ring, sizeof *s->ring, s->samples, f); /* little-endian hosts only: a debug aid */
  fclose(f);
  log_call_info("asr", s->base.call_id, "pocketsphinx: utterance %u (%.2f s) dumped to %s: \"%s\"",
                k, s->samples / (double)ASR_RATE, path, hyp ? hyp : "");
}

/* Fillers (<s>, </s>, <sil>, [NOISE], +BREATH+) are not words the caller said. */
static int is_filler(const char *w) { return !w || w[0] == '<' || w[0] == '[' || w[0] == '+'; }

/*
 * The posterior probability of the hypothesis's last word, from the
 * utterance's word lattice: the share of all the paths through it that
 * pass through that word there. A word the acoustics barely support, often
 * one added at the end of an utterance cut short ("a table for" heard as
 * "a table for it"), scores low. -1 when there are no words.
 */
static float last_word_posterior(ps_decoder_t *ps) {
  logmath_t *lmath = ps_get_logmath(ps);
  (void)ps_get_prob(ps); /* computes the lattice's posteriors, which the segments then carry */
  float conf = -1;
  for (ps_seg_t *seg = ps_seg_iter(ps); seg; seg = ps_seg_next(seg)) {
    if (is_filler(ps_seg_word(seg))) continue;
    int32 ascr, lscr, lback;
    conf = (float)logmath_exp(lmath, ps_seg_prob(seg, &ascr, &lscr, &lback));
  }
  return conf;
}

static void end_utterance(struct ps_session *s) {
  uint64_t t0 = cpu_ns();
  ps_end_utt(s->dec->ps);
  s->dec->in_utt = 0;
  const char *hyp = ps_get_hyp(s->dec->ps, NULL);
  char *text = strdup(hyp ? hyp : ""); /* the lattice work below may reuse the decoder's copy */
  s->base.last_word_conf = text && *text ? last_word_posterior(s->dec->ps) : -1;
  s->busy_ns += cpu_ns() - t0;
  dump_utterance(s, text);
  if (text) eng_job_post(&s->base.job, deliver_final, text);
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
    int fin = atomic_load(&s->finishing); /* before wpos: all audio precedes finishing */
    int empty = atomic_load(&s->wpos) == atomic_load_explicit(&s->rpos, memory_order_relaxed);
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
    s->dec = d;
  }
  if (!s->started) {
    /* The utterance starts once its first PS_SCAN samples (or all of it) are in. */
    int fin = atomic_load(&s->finishing); /* before wpos: all audio precedes finishing */
    size_t have = atomic_load(&s->wpos);
    if (!fin && have < PS_SCAN) return NOT_NOW;
    abandon_utterance(s->dec);
    cmn_from_audio(s->dec, s->ring, have < PS_SCAN ? have : PS_SCAN);
    ps_start_stream(s->dec->ps); /* the front end's noise estimate is this utterance's alone */
    if (s->dec->cmn)
      log_call_debug("asr", s->base.call_id, "pocketsphinx: utterance starts with CMN c0 %.2f c1 %.2f",
                     (double)s->dec->cmn->cmn_mean[0], (double)s->dec->cmn->cmn_mean[1]);
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

/* The consumer side's owner lets go for good: the decoder goes back. */
static void close_session(struct ps_session *s) {
  struct decoder *d = s->dec;
  s->dec = NULL;
  atomic_store(&s->sched, DRAIN_CLOSED);
  if (d) decoder_put(s->eng, d);
}

static void post_error(struct ps_session *s, int rc) {
  char msg[96];
  snprintf(msg, sizeof msg, "speech recognition unavailable (%s)", strerror(-rc));
  post_text(s, deliver_error, msg);
}

/* Whether a drain has something to do: enough audio (to start the utterance, or to
 * decode), the end of it, or a cancellation to tidy. */
static int work_waiting(struct ps_session *s) {
  size_t w = atomic_load(&s->wpos), waiting = w - atomic_load(&s->rpos);
  return (s->started ? waiting >= PS_BATCH : w >= PS_SCAN) || atomic_load(&s->finishing) ||
         eng_job_cancelled(&s->base.job);
}

static void drain(void *arg) {
  struct ps_session *s = arg;
  if (!eng_job_cancelled(&s->base.job) && !s->done) {
    enum ready r = ensure_decoder(s);
    if (r == PARKED) return;
    if (r == READY) {
      int fin = atomic_load(&s->finishing); /* before wpos: all audio precedes finishing */
      decode(s, atomic_load(&s->wpos));
      if (fin && !eng_job_cancelled(&s->base.job)) end_utterance(s);
    }
  }
  if (eng_job_cancelled(&s->base.job) || s->done) {
    close_session(s);
    eng_job_unref(&s->base.job);
    return;
  }
  /* Let go, then look again: audio fed while we were letting go either
   * shows up here or finds us idle and starts a drain itself. */
  atomic_store(&s->sched, DRAIN_IDLE);
  int idle = DRAIN_IDLE;
  if (work_waiting(s) && atomic_compare_exchange_strong(&s->sched, &idle, DRAIN_SCHEDULED)) {
    int rc = pool_submit(s->eng->pool, drain, drop, s); /* our reference goes with it */
    if (rc == 0) return;
    close_session(s);
    post_error(s, rc);
  }
  eng_job_unref(&s->base.job);
}

/* The pool went away with our drain queued. */
static void drop(void *arg) {
  struct ps_session *s = arg;
  close_session(s);
  eng_job_unref(&s->base.job);
}

/* ---- the session, on its home loop ---- */

static void session_destroy(struct eng_job *j) {
  struct ps_session *s = (struct ps_session *)j;
  if (s->dec) decoder_put(s->eng, s->dec);
  free(s->ring);
  free(s->last_partial);
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
  if (parked) { /* the waiting list's reference is ours now */
    atomic_store(&s->sched, DRAIN_CLOSED);
    eng_job_unref(&s->base.job);
    return;
  }
  /* Idle: no drain will come, so the decoder is handed back from here.
   * Otherwise the drain in flight sees the cancellation and does it. */
  int idle = DRAIN_IDLE;
  if (atomic_compare_exchange_strong(&s->sched, &idle, DRAIN_CLOSED)) close_session(s);
}

/* Home loop: starts a drain unless one is in flight (or none may run again). */
static void wake(struct ps_session *s) {
  int idle = DRAIN_IDLE;
  if (!atomic_compare_exchange_strong(&s->sched, &idle, DRAIN_SCHEDULED)) return;
  eng_job_ref(&s->base.job);
  int rc = pool_submit(s->eng->pool, drain, drop, s);
  if (rc == 0) return;
  /* Only when the server is stopping. The decoder, if any, goes back with the session. */
  atomic_store(&s->sched, DRAIN_CLOSED);
  eng_job_unref(&s->base.job);
  post_error(s, rc);
}

/* Home loop, every frame of speech: a copy into the ring and, now and then, a wake-up. */
static void ps_feed(struct asr_session *base, const int16_t *pcm, size_t n) {
  struct ps_session *s = (struct ps_session *)base;
  if (!n || eng_job_cancelled(&base->job) || atomic_load_explicit(&s->finishing, memory_order_relaxed) ||
      atomic_load_explicit(&s->sched, memory_order_relaxed) == DRAIN_CLOSED)
    return;
  size_t w = atomic_load_explicit(&s->wpos, memory_order_relaxed); /* ours */
  size_t r = atomic_load_explicit(&s->rpos, memory_order_acquire);
  if (n > PS_RING - (w - r)) {
    if (!s->overflowed)
      log_call_warn("asr", s->base.call_id,
                    "pocketsphinx: recognition is %.0f s behind the caller; audio dropped",
                    (w - r) / (double)ASR_RATE);
    s->overflowed = 1;
    return;
  }
  size_t at = w % PS_RING, first = n < PS_RING - at ? n : PS_RING - at;
  memcpy(s->ring + at, pcm, first * sizeof *pcm);
  memcpy(s->ring, pcm + first, (n - first) * sizeof *pcm);
  atomic_store(&s->wpos, w + n); /* publishes the samples; seq_cst, against the drain's letting go */
  if (w == 0 || (w < PS_SCAN && w + n >= PS_SCAN) || (w >= PS_SCAN && w + n - r >= PS_BATCH))
    wake(s);
}

static void ps_finish(struct asr_session *base) {
  struct ps_session *s = (struct ps_session *)base;
  if (eng_job_cancelled(&base->job) || atomic_load(&s->finishing)) return;
  atomic_store(&s->finishing, 1);
  wake(s);
}

static int ps_start(void *engine, const struct asr_params *p, struct mailbox *home,
                    const struct asr_cb *cb, struct asr_session **out) {
  struct ps_engine *e = engine;
  struct ps_session *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  s->ring = malloc(PS_RING * sizeof *s->ring);
  if (!s->ring) {
    free(s);
    return -ENOMEM;
  }
  atomic_init(&s->wpos, 0);
  atomic_init(&s->rpos, 0);
  atomic_init(&s->finishing, 0);
  atomic_init(&s->sched, DRAIN_IDLE);
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
  const char *dump = getenv("TS_ASR_DUMP");
  if (dump) snprintf(e->dump_dir, sizeof e->dump_dir, "%s", dump);
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
