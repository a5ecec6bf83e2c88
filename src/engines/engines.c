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
 *
 * Every request goes through here, so this is where engine metrics are
 * counted, the same way for every backend: after a backend has started a
 * request, the request's callbacks are swapped for metering ones that count
 * its end (result, error, timeout) and pass it on; releasing a request that
 * had not ended counts it as cancelled. The swap is safe because callbacks
 * only ever run on the requester's thread, never inside the start call, and
 * backends read them from the request's base struct when they deliver.
 * Counters are atomics: every media worker's calls count into them.
 *
 * Speech goes through the TTS cache (engines/ttscache.h) when one is
 * configured and the backend does not opt out; the cache's job is metered
 * like a backend's.
 */
#include "engines/engines.h"
#include "engines/service.h"
#include "engines/ttscache.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/log.h"
#include "core/prom.h"
#include "core/redact.h"
#include "tools/tools.h"

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

/* One backend's requests. */
struct eng_stats {
  const char *kind, *backend;
  _Atomic uint64_t requests, errors, timeouts, cancelled;
  struct prom_histogram duration; /* start (ASR: finish) -> result or error */
  /* What the requests used, for cost: ASR samples at 16 kHz; LLM tokens as the
   * service reported them; TTS characters synthesised and served from the cache. */
  _Atomic uint64_t asr_samples;
  _Atomic uint64_t llm_input, llm_cached, llm_cache_write, llm_output;
  _Atomic uint64_t tts_chars, tts_chars_cached;
};

enum { ST_ASR, ST_LLM, ST_TTS, ST_TTS_OTHER, ST_N };

struct engines {
  const struct asr_backend *asr;
  const struct llm_backend *llm;
  const struct tts_backend *tts, *tts_other;
  void *asr_state, *llm_state, *tts_state, *tts_other_state;
  struct eng_stats stats[ST_N];
  struct redact *redact;
  const struct config *cfg;
  struct ttscache *tts_cache; /* NULL: no TTS cache */
  struct tools *tools;        /* what the LLM may call (tools/tools.h) */
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

static size_t megabytes(int n) { return n > 0 ? (size_t)n << 20 : 0; }

/* The cache, when either of its bounds is set; its files in data_dir/tts-cache. */
static int open_tts_cache(struct engines *e, const struct engine_env *env, char *err,
                          size_t errlen) {
  const struct config *cfg = env->cfg;
  if (cfg->tts_cache_mb <= 0 && cfg->tts_cache_disk_mb <= 0) return 0;
  if (!env->control) {
    log_warn("engines", "tts cache: off (no control loop)");
    return 0;
  }
  char dir[sizeof cfg->data_dir + 16] = "";
  if (cfg->data_dir[0]) snprintf(dir, sizeof dir, "%s/tts-cache", cfg->data_dir);
  struct ttscache_opts o = {.mem_bytes = megabytes(cfg->tts_cache_mb),
                            .disk_bytes = megabytes(cfg->tts_cache_disk_mb),
                            .dir = dir,
                            .pool = env->pool,
                            .control = env->control};
  return ttscache_new(&e->tts_cache, &o, err, errlen);
}

static void stats_init(struct eng_stats *st, const char *kind, const char *backend) {
  st->kind = kind;
  st->backend = backend;
  prom_histogram_init(&st->duration, prom_latency_bounds, prom_latency_nbounds);
}

int engines_open(struct engines **out, const struct engine_env *env, char *err, size_t errlen) {
  struct engines *e = calloc(1, sizeof *e);
  if (!e) return -ENOMEM;
  const struct config *cfg = env->cfg;
  e->cfg = cfg;
  int rc = redact_new(&e->redact);
  if (rc == 0) rc = redact_add_config(e->redact, cfg);
  if (rc) snprintf(err, errlen, "engines: out of memory");
  if (rc == 0) e->asr = find_backend((const void *const *)asr_backends, cfg->asr);
  if (rc == 0 && !e->asr) rc = missing("asr", cfg->asr, err, errlen);
  if (rc == 0) rc = e->asr->open(&e->asr_state, env, err, errlen);
  if (rc == 0) {
    e->llm = find_backend((const void *const *)llm_backends, cfg->llm);
    rc = e->llm ? e->llm->open(&e->llm_state, env, err, errlen) : missing("llm", cfg->llm, err, errlen);
  }
  if (rc == 0) rc = open_tts(e, env, err, errlen);
  if (rc == 0) rc = open_tts_cache(e, env, err, errlen);
  if (rc == 0) rc = tools_open(&e->tools, env, err, errlen);
  if (rc) {
    engines_close(e);
    return rc;
  }
  stats_init(&e->stats[ST_ASR], "asr", e->asr->name);
  stats_init(&e->stats[ST_LLM], "llm", e->llm->name);
  stats_init(&e->stats[ST_TTS], "tts", e->tts->name);
  stats_init(&e->stats[ST_TTS_OTHER], "tts", e->tts_other ? e->tts_other->name : NULL);
  *out = e;
  return 0;
}

void engines_close(struct engines *e) {
  if (!e) return;
  tools_close(e->tools);
  ttscache_free(e->tts_cache); /* its syntheses stop before their backends close */
  if (e->asr && e->asr_state) e->asr->close(e->asr_state);
  if (e->llm && e->llm_state) e->llm->close(e->llm_state);
  if (e->tts && e->tts_state) e->tts->close(e->tts_state);
  if (e->tts_other && e->tts_other_state) e->tts_other->close(e->tts_other_state);
  redact_free(e->redact); /* after the backends: their confs point at it */
  free(e);
}

const struct redact *engines_redact(const struct engines *e) { return e ? e->redact : NULL; }

struct tools *engines_tools(struct engines *e) { return e ? e->tools : NULL; }

/* ---- metering ---- */

static void count(_Atomic uint64_t *n) { atomic_fetch_add_explicit(n, 1, memory_order_relaxed); }

/* A request was asked for and its start returned rc (a failed start is an error); rc. */
static int count_start(struct eng_stats *st, int rc) {
  count(&st->requests);
  if (rc) count(&st->errors);
  return rc;
}

static void meter_init(struct eng_meter *m, struct eng_stats *st) {
  m->stats = st;
  m->started_ns = uv_hrtime();
}

static void meter_end(struct eng_meter *m, struct eng_job *j, int failed) {
  if (!m->stats || m->ended) return;
  m->ended = 1;
  if (failed) count(&m->stats->errors);
  if (failed && atomic_load(&j->timed_out)) count(&m->stats->timeouts);
  prom_histogram_observe(&m->stats->duration, (double)(uv_hrtime() - m->started_ns) / 1e9);
}

static void meter_release(struct eng_meter *m) {
  if (m->stats && !m->ended) count(&m->stats->cancelled);
}

static void asr_partial_m(void *user, const char *text) {
  struct asr_session *s = user;
  s->user_cb.partial(s->user_cb.user, text);
}

static void asr_final_m(void *user, const char *text) {
  struct asr_session *s = user;
  meter_end(&s->meter, &s->job, 0);
  s->user_cb.final(s->user_cb.user, text);
}

static void asr_error_m(void *user, const char *message) {
  struct asr_session *s = user;
  meter_end(&s->meter, &s->job, 1);
  s->user_cb.error(s->user_cb.user, message);
}

static void llm_token_m(void *user, const char *text) {
  struct llm_job *j = user;
  j->user_cb.token(j->user_cb.user, text);
}

static void add(_Atomic uint64_t *n, long long v) {
  if (v > 0) atomic_fetch_add_explicit(n, (uint64_t)v, memory_order_relaxed);
}

static void llm_usage_m(void *user, const struct llm_usage *u) {
  struct llm_job *j = user;
  struct eng_stats *st = j->meter.stats;
  add(&st->llm_input, u->input_tokens);
  add(&st->llm_cached, u->cached_tokens);
  add(&st->llm_cache_write, u->cache_write_tokens);
  add(&st->llm_output, u->output_tokens);
  if (j->user_cb.usage) j->user_cb.usage(j->user_cb.user, u);
}

static void llm_tool_call_m(void *user, const struct llm_tool_call *call) {
  struct llm_job *j = user;
  j->user_cb.tool_call(j->user_cb.user, call);
}

static void llm_done_m(void *user, int hangup) {
  struct llm_job *j = user;
  meter_end(&j->meter, &j->job, 0);
  j->user_cb.done(j->user_cb.user, hangup);
}

static void llm_error_m(void *user, const char *message) {
  struct llm_job *j = user;
  meter_end(&j->meter, &j->job, 1);
  j->user_cb.error(j->user_cb.user, message);
}

static void tts_audio_m(void *user, const int16_t *pcm, size_t n, int sample_rate) {
  struct tts_job *j = user;
  j->user_cb.audio(j->user_cb.user, pcm, n, sample_rate);
}

static void tts_done_m(void *user) {
  struct tts_job *j = user;
  meter_end(&j->meter, &j->job, 0);
  j->user_cb.done(j->user_cb.user);
}

static void tts_error_m(void *user, const char *message) {
  struct tts_job *j = user;
  meter_end(&j->meter, &j->job, 1);
  j->user_cb.error(j->user_cb.user, message);
}

/* A callback the requester left NULL stays NULL, since backends test for that. */
#define METERED(cb, fn) ((cb) ? (fn) : NULL)

/* ---- requests ---- */

int engines_asr_start(struct engines *e, const struct asr_params *p, struct mailbox *home,
                      const struct asr_cb *cb, struct asr_session **out) {
  int rc = e->asr->start(e->asr_state, p, home, cb, out);
  if (count_start(&e->stats[ST_ASR], rc)) return rc;
  struct asr_session *s = *out;
  snprintf(s->call_id, sizeof s->call_id, "%s", p && p->call_id ? p->call_id : "");
  s->last_word_conf = -1; /* until a backend that can tell says otherwise, at its final */
  meter_init(&s->meter, &e->stats[ST_ASR]);
  s->user_cb = s->cb;
  s->cb = (struct asr_cb){.partial = METERED(s->user_cb.partial, asr_partial_m),
                          .final = METERED(s->user_cb.final, asr_final_m),
                          .error = METERED(s->user_cb.error, asr_error_m),
                          .user = s};
  return 0;
}

int engines_llm_generate(struct engines *e, const struct llm_params *p, struct mailbox *home,
                         const struct llm_cb *cb, struct llm_job **out) {
  int rc = e->llm->generate(e->llm_state, p, home, cb, out);
  if (count_start(&e->stats[ST_LLM], rc)) return rc;
  struct llm_job *j = *out;
  meter_init(&j->meter, &e->stats[ST_LLM]);
  j->user_cb = j->cb;
  /* Usage is counted whether or not the requester wants it. */
  j->cb = (struct llm_cb){.token = METERED(j->user_cb.token, llm_token_m),
                          .usage = llm_usage_m,
                          .tool_call = METERED(j->user_cb.tool_call, llm_tool_call_m),
                          .done = METERED(j->user_cb.done, llm_done_m),
                          .error = METERED(j->user_cb.error, llm_error_m),
                          .user = j};
  return 0;
}

static size_t utf8_chars(const char *s) {
  size_t n = 0;
  for (; s && *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

static int is_english(const char *language) {
  return !language || !*language || strncmp(language, "en", 2) == 0;
}

/* The key settings of a request: its own voice and rate, else the configured ones. */
static void cache_src(const struct engines *e, const struct tts_backend *be, void *state,
                      const struct tts_params *p, struct ttscache_src *src) {
  src->be = be;
  src->engine = state;
  src->model = e->cfg->tts_model;
  src->voice = p->voice && *p->voice ? p->voice : e->cfg->tts_voice;
  src->rate = p->rate > 0 ? p->rate : e->cfg->tts_rate;
}

int engines_tts_speak(struct engines *e, const struct tts_params *p, struct mailbox *home,
                      const struct tts_cb *cb, struct tts_job **out) {
  int other = e->tts_other && !is_english(p->language);
  struct eng_stats *st = &e->stats[other ? ST_TTS_OTHER : ST_TTS];
  const struct tts_backend *be = other ? e->tts_other : e->tts;
  void *state = other ? e->tts_other_state : e->tts_state;
  enum ttscache_how how = TTSCACHE_MISS;
  int rc = -ENOTSUP, cached = 0;
  if (e->tts_cache && !be->no_cache) {
    struct ttscache_src src;
    cache_src(e, be, state, p, &src);
    rc = ttscache_speak(e->tts_cache, &src, p, home, cb, out, &how);
    cached = rc == 0 && how != TTSCACHE_MISS;
  }
  if (rc == -ENOTSUP) rc = be->speak(state, p, home, cb, out);
  if (count_start(st, rc)) return rc;
  struct tts_job *j = *out;
  j->cached = cached;
  add(cached ? &st->tts_chars_cached : &st->tts_chars, (long long)utf8_chars(p->text));
  meter_init(&j->meter, st);
  j->user_cb = j->cb;
  j->cb = (struct tts_cb){.audio = METERED(j->user_cb.audio, tts_audio_m),
                          .done = METERED(j->user_cb.done, tts_done_m),
                          .error = METERED(j->user_cb.error, tts_error_m),
                          .user = j};
  return 0;
}

int engines_tts_warm(struct engines *e, const struct tts_params *p) {
  if (!e || !e->tts_cache || !p || !p->text) return 0;
  int other = e->tts_other && !is_english(p->language);
  const struct tts_backend *be = other ? e->tts_other : e->tts;
  if (be->no_cache) return 0;
  struct ttscache_src src;
  cache_src(e, be, other ? e->tts_other_state : e->tts_state, p, &src);
  enum ttscache_how how = TTSCACHE_JOINED;
  int rc = ttscache_warm(e->tts_cache, &src, p, &how);
  /* What a warm-up synthesises is billed like any synthesis. */
  if (rc == 0 && how == TTSCACHE_MISS)
    add(&e->stats[other ? ST_TTS_OTHER : ST_TTS].tts_chars, (long long)utf8_chars(p->text));
  return rc == -ENOTSUP ? 0 : rc;
}

const char *engines_asr_name(const struct engines *e) { return e->asr->name; }
const char *engines_llm_name(const struct engines *e) { return e->llm->name; }
const char *engines_tts_name(const struct engines *e, const char *language) {
  return e->tts_other && !is_english(language) ? e->tts_other->name : e->tts->name;
}

void asr_feed(struct asr_session *s, const int16_t *pcm, size_t n) {
  if (s->meter.stats) add(&s->meter.stats->asr_samples, (long long)n);
  s->be->feed(s, pcm, n);
}
void asr_finish(struct asr_session *s) {
  /* Recognition time is what the caller waits for: from the end of speech. */
  if (s->meter.stats && !s->meter.ended) s->meter.started_ns = uv_hrtime();
  s->be->finish(s);
}
float asr_last_word_confidence(const struct asr_session *s) { return s->last_word_conf; }
void asr_release(struct asr_session *s) {
  if (!s) return;
  meter_release(&s->meter);
  eng_job_release(&s->job);
}
void llm_release(struct llm_job *j) {
  if (!j) return;
  meter_release(&j->meter);
  eng_job_release(&j->job);
}
void tts_release(struct tts_job *j) {
  if (!j) return;
  meter_release(&j->meter);
  eng_job_release(&j->job);
}

/* ---- metrics ---- */

/* One counter of struct eng_stats (at `offset`) for every backend opened. */
static void write_counter(const struct engines *e, struct prom_buf *b, const char *name,
                          const char *help, size_t offset) {
  prom_family(b, name, "counter", help);
  for (int i = 0; i < ST_N; i++) {
    const struct eng_stats *st = &e->stats[i];
    if (!st->backend) continue;
    const _Atomic uint64_t *v = (const _Atomic uint64_t *)((const char *)st + offset);
    prom_sample(b, name, (double)atomic_load_explicit(v, memory_order_relaxed), "kind", st->kind,
                "backend", st->backend, NULL);
  }
}

static double load(const _Atomic uint64_t *v) {
  return (double)atomic_load_explicit(v, memory_order_relaxed);
}

/* What the services were asked to do, by the units they bill in. */
static void write_usage(const struct engines *e, struct prom_buf *b) {
  const struct eng_stats *asr = &e->stats[ST_ASR], *llm = &e->stats[ST_LLM];
  prom_family(b, "tingshuo_asr_audio_seconds_total", "counter",
              "Seconds of caller audio given to speech recognition.");
  prom_sample(b, "tingshuo_asr_audio_seconds_total", load(&asr->asr_samples) / 16000.0, "backend",
              asr->backend, NULL);
  prom_family(b, "tingshuo_llm_tokens_total", "counter",
              "LLM tokens as the service reported them. input counts every prompt token; "
              "cached those read from the service's prompt cache, cache_write those written to it.");
  prom_sample(b, "tingshuo_llm_tokens_total", load(&llm->llm_input), "backend", llm->backend,
              "type", "input", NULL);
  prom_sample(b, "tingshuo_llm_tokens_total", load(&llm->llm_cached), "backend", llm->backend,
              "type", "cached", NULL);
  prom_sample(b, "tingshuo_llm_tokens_total", load(&llm->llm_cache_write), "backend",
              llm->backend, "type", "cache_write", NULL);
  prom_sample(b, "tingshuo_llm_tokens_total", load(&llm->llm_output), "backend", llm->backend,
              "type", "output", NULL);
  prom_family(b, "tingshuo_tts_characters_total", "counter",
              "Characters of text spoken: synthesised by the backend, or served from the TTS cache.");
  for (int i = ST_TTS; i <= ST_TTS_OTHER; i++) {
    const struct eng_stats *st = &e->stats[i];
    if (!st->backend) continue;
    prom_sample(b, "tingshuo_tts_characters_total", load(&st->tts_chars), "backend", st->backend,
                "source", "synthesised", NULL);
    prom_sample(b, "tingshuo_tts_characters_total", load(&st->tts_chars_cached), "backend",
                st->backend, "source", "cached", NULL);
  }
}

void engines_write_metrics(const struct engines *e, struct prom_buf *b) {
  write_usage(e, b);
  if (e->tts_cache) ttscache_write_metrics(e->tts_cache, b);
  tools_write_metrics(e->tools, b);
  write_counter(e, b, "tingshuo_engine_requests_total", "Engine requests started.",
                offsetof(struct eng_stats, requests));
  write_counter(e, b, "tingshuo_engine_errors_total",
                "Engine requests that failed (timeouts included).", offsetof(struct eng_stats, errors));
  write_counter(e, b, "tingshuo_engine_timeouts_total",
                "Engine requests that failed because a service did not answer in time.",
                offsetof(struct eng_stats, timeouts));
  write_counter(e, b, "tingshuo_engine_cancelled_total",
                "Engine requests abandoned before their result (barge-in, hangup).",
                offsetof(struct eng_stats, cancelled));
  prom_family(b, "tingshuo_engine_request_duration_seconds", "histogram",
              "Engine requests from start (ASR: the end of speech) to their result or error.");
  for (int i = 0; i < ST_N; i++)
    if (e->stats[i].backend)
      prom_histogram_write(b, "tingshuo_engine_request_duration_seconds", &e->stats[i].duration,
                           "kind", e->stats[i].kind, "backend", e->stats[i].backend, NULL);
}
