/*
 * The TTS cache: a hit gives the very samples the backend made, and the
 * backend is asked once; the memory tier evicts least recently used
 * phrases at its bound; files survive a close and reopen, and a damaged
 * file or a temporary one left by a crash is ignored and made again; two
 * threads asking for a phrase while it is synthesised share one synthesis;
 * a synthesis nobody listens to any more is cancelled (unless it is a
 * warm-up); an error, or audio whose rate changes, is never kept; through
 * engines.c with flite, a warm-up makes the next request a hit, and the
 * load-test tone backend is not cached.
 *
 * Most tests use a backend written here, "counting", whose audio is a
 * function of the text (so a test knows what the right samples are) and
 * which either answers at once or waits for the test to hand out each
 * chunk, so "while it is being synthesised" is a state a test can hold.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "engine_loop.h"
#include "promtool.h"

#include "core/prom.h"
#include "engines/engines.h"
#include "engines/ttscache.h"

/* ---- the counting backend ---- */

#define CHUNK 400   /* samples per chunk */
#define CHUNKS 5    /* chunks per phrase */
#define CB_RATE 16000

struct cb_engine {
  atomic_int calls, cancels, destroyed;
  int manual;      /* the test posts the chunks (cb_step) */
  int fail;        /* one chunk, then an error */
  int change_rate; /* the last chunk at another rate */
  struct cb_job *last;
};

struct cb_job {
  struct tts_job base;
  struct cb_engine *eng;
  char text[256];
  int sent;
  int ended; /* its end was posted: a release now is no cancellation */
};

static int16_t sample_of(const char *text, size_t i) {
  uint32_t h = 2166136261u;
  for (const char *p = text; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
  return (int16_t)((h + (uint32_t)i * 2654435761u) >> 16);
}

static void cb_deliver_audio(struct eng_job *j, void *arg) {
  struct cb_job *c = (struct cb_job *)j;
  int *rate = arg;
  int16_t pcm[CHUNK];
  for (size_t i = 0; i < CHUNK; i++) pcm[i] = sample_of(c->text, (size_t)c->sent * CHUNK + i);
  c->sent++;
  c->base.cb.audio(c->base.cb.user, pcm, CHUNK, *rate);
}
static void cb_deliver_done(struct eng_job *j, void *arg) {
  struct cb_job *c = (struct cb_job *)j;
  c->base.cb.done(c->base.cb.user);
}
static void cb_deliver_error(struct eng_job *j, void *arg) {
  struct cb_job *c = (struct cb_job *)j;
  c->base.cb.error(c->base.cb.user, "counting: refused");
}

static void cb_post_chunk(struct cb_job *c, int rate) {
  int *r = malloc(sizeof *r);
  *r = rate;
  eng_job_post(&c->base.job, cb_deliver_audio, r);
}

/* Posts chunk k (0-based) of the phrase, or the end after the last. */
static void cb_step(struct cb_job *c, int k) {
  c->ended = k >= CHUNKS;
  if (k < CHUNKS) cb_post_chunk(c, c->eng->change_rate && k == CHUNKS - 1 ? 22050 : CB_RATE);
  else eng_job_post(&c->base.job, cb_deliver_done, NULL);
}

static void cb_cancel(struct eng_job *j) {
  struct cb_job *c = (struct cb_job *)j;
  if (!c->ended) atomic_fetch_add(&c->eng->cancels, 1);
}

static void cb_destroy(struct eng_job *j) {
  struct cb_job *c = (struct cb_job *)j;
  atomic_fetch_add(&c->eng->destroyed, 1);
  free(c);
}

static int cb_speak(void *engine, const struct tts_params *p, struct mailbox *home,
                    const struct tts_cb *cb, struct tts_job **out);

static const struct tts_backend tts_counting = {.name = "counting", .speak = cb_speak};

static int cb_speak(void *engine, const struct tts_params *p, struct mailbox *home,
                    const struct tts_cb *cb, struct tts_job **out) {
  struct cb_engine *e = engine;
  struct cb_job *c = calloc(1, sizeof *c);
  eng_job_init(&c->base.job, home, cb_destroy);
  c->base.job.on_cancel = cb_cancel;
  c->base.be = &tts_counting;
  c->base.cb = *cb;
  c->eng = e;
  snprintf(c->text, sizeof c->text, "%s", p->text);
  atomic_fetch_add(&e->calls, 1);
  e->last = c;
  if (e->fail) {
    c->ended = 1;
    cb_post_chunk(c, CB_RATE);
    eng_job_post(&c->base.job, cb_deliver_error, NULL);
  } else if (!e->manual) {
    for (int k = 0; k <= CHUNKS; k++) cb_step(c, k);
  }
  *out = &c->base;
  return 0;
}

/* ---- what a request received ---- */

struct take {
  struct tts_job *job;
  int chunks, done, errors, released, after_release, rate, rate_changed, release_after;
  size_t samples, cap;
  int16_t *pcm;
};

static void on_audio(void *user, const int16_t *pcm, size_t n, int rate) {
  struct take *t = user;
  if (t->released) t->after_release++;
  if (!t->chunks++) t->rate = rate;
  if (rate != t->rate) t->rate_changed = 1;
  if (t->samples + n > t->cap) {
    t->cap = (t->samples + n) * 2;
    t->pcm = realloc(t->pcm, t->cap * sizeof *t->pcm);
  }
  memcpy(t->pcm + t->samples, pcm, n * sizeof *pcm);
  t->samples += n;
  if (t->release_after && t->chunks == t->release_after) {
    t->released = 1;
    tts_release(t->job);
  }
}
static void on_done(void *user) {
  struct take *t = user;
  if (t->released) t->after_release++;
  t->done++;
}
static void on_error(void *user, const char *message) {
  struct take *t = user;
  if (t->released) t->after_release++;
  t->errors++;
}

static int finished(const struct take *t) { return t->done || t->errors; }

/* The phrase the counting backend makes for text. */
static void assert_counting_audio(const struct take *t, const char *text) {
  assert_int_equal(t->rate, CB_RATE);
  assert_false(t->rate_changed);
  assert_int_equal(t->samples, CHUNK * CHUNKS);
  for (size_t i = 0; i < t->samples; i++)
    if (t->pcm[i] != sample_of(text, i)) fail_msg("sample %zu differs", i);
}

/* ---- fixture: the cache over the counting backend ---- */

struct fx {
  struct engine_loop *f;
  struct cb_engine eng;
  struct ttscache *c;
  char dir[256];
  size_t mem, disk;
};

static void fx_open(struct fx *x) {
  char err[256] = "";
  struct ttscache_opts o = {.mem_bytes = x->mem, .disk_bytes = x->disk, .dir = x->dir,
                            .pool = x->f->pool, .control = x->f->mb};
  if (ttscache_new(&x->c, &o, err, sizeof err)) fail_msg("ttscache_new: %s", err);
}

static void fx_init(struct fx *x, struct engine_loop *f, size_t mem, size_t disk) {
  memset(x, 0, sizeof *x);
  x->f = f;
  x->mem = mem;
  x->disk = disk;
  if (disk) {
    snprintf(x->dir, sizeof x->dir, "/tmp/ttscache-XXXXXX");
    assert_non_null(mkdtemp(x->dir));
  }
  fx_open(x);
}

static void fx_close(struct fx *x) {
  ttscache_free(x->c);
  x->c = NULL;
  engine_loop_spin(x->f, NULL, 20); /* closures the close left queued */
}

static void fx_done(struct fx *x) {
  if (x->c) fx_close(x);
  for (int i = 0; i < 500 && pool_pending(x->f->pool); i++) engine_loop_spin(x->f, NULL, 10);
  if (x->dir[0]) {
    DIR *d = opendir(x->dir);
    for (struct dirent *de; d && (de = readdir(d));) {
      if (de->d_name[0] == '.') continue;
      char path[512];
      snprintf(path, sizeof path, "%s/%s", x->dir, de->d_name);
      unlink(path);
    }
    if (d) closedir(d);
    rmdir(x->dir);
  }
}

static const struct ttscache_src *src_of(struct fx *x) {
  static struct ttscache_src s;
  s = (struct ttscache_src){&tts_counting, &x->eng, "m1", "v1", 100};
  return &s;
}

static enum ttscache_how ask(struct fx *x, struct mailbox *home, struct take *t, const char *text) {
  struct tts_cb cb = {on_audio, on_done, on_error, t};
  struct tts_params p = {text, "en", NULL, 0};
  enum ttscache_how how = -1;
  assert_int_equal(ttscache_speak(x->c, src_of(x), &p, home, &cb, &t->job, &how), 0);
  assert_int_equal(t->chunks + t->done + t->errors, 0); /* never inside speak */
  return how;
}

/* Asks, waits for the end, checks the audio is what the backend makes of `made`. */
static enum ttscache_how say_as(struct fx *x, const char *text, const char *made) {
  struct take t = {0};
  enum ttscache_how how = ask(x, x->f->mb, &t, text);
  engine_loop_spin(x->f, &t.done, 10000);
  assert_int_equal(t.done, 1);
  assert_int_equal(t.errors, 0);
  assert_counting_audio(&t, made);
  tts_release(t.job);
  free(t.pcm);
  return how;
}

static enum ttscache_how say(struct fx *x, const char *text) { return say_as(x, text, text); }

/* The names in the cache directory ending in `tail`; the first one into name. */
static int files(struct fx *x, const char *tail, char *name, size_t len) {
  int n = 0;
  DIR *d = opendir(x->dir);
  assert_non_null(d);
  for (struct dirent *de; (de = readdir(d));) {
    size_t k = strlen(de->d_name), m = strlen(tail);
    if (k < m || strcmp(de->d_name + k - m, tail) != 0) continue;
    if (!n++ && name) snprintf(name, len, "%s/%s", x->dir, de->d_name);
  }
  closedir(d);
  return n;
}

/* The pool writes files after the synthesis: waits for n of them. */
static void wait_files(struct fx *x, int n) {
  for (int i = 0; i < 1000 && files(x, ".tts", NULL, 0) < n; i++) engine_loop_spin(x->f, NULL, 10);
  assert_int_equal(files(x, ".tts", NULL, 0), n);
  for (int i = 0; i < 200 && pool_pending(x->f->pool); i++) engine_loop_spin(x->f, NULL, 10);
}

/* ---- tests ---- */

static void hit_after_miss_is_identical(void **state) {
  struct fx x;
  fx_init(&x, *state, 1 << 20, 0);
  assert_int_equal(say(&x, "Hello there."), TTSCACHE_MISS);
  /* Whitespace is normalised; case and punctuation are not. */
  assert_int_equal(say_as(&x, "  Hello \t there. \n", "Hello there."), TTSCACHE_HIT_MEMORY);
  assert_int_equal(atomic_load(&x.eng.calls), 1);
  assert_int_equal(say(&x, "hello there."), TTSCACHE_MISS);
  assert_int_equal(say(&x, "Hello there!"), TTSCACHE_MISS);
  assert_int_equal(atomic_load(&x.eng.calls), 3);

  /* A hit released from its first audio callback gets nothing more. */
  struct take t = {.release_after = 1};
  assert_int_equal(ask(&x, x.f->mb, &t, "Hello there."), TTSCACHE_HIT_MEMORY);
  engine_loop_spin(x.f, &t.released, 5000);
  engine_loop_spin(x.f, NULL, 50);
  assert_int_equal(t.chunks, 1);
  assert_int_equal(t.after_release, 0);
  free(t.pcm);

  /* The metrics say so. */
  struct prom_buf b;
  prom_buf_init(&b);
  ttscache_write_metrics(x.c, &b);
  assert_non_null(strstr(b.data, "tingshuo_tts_cache_hits_total{tier=\"memory\"} 2"));
  assert_non_null(strstr(b.data, "tingshuo_tts_cache_misses_total 3"));
  assert_non_null(strstr(b.data, "tingshuo_tts_cache_entries{tier=\"memory\"} 3"));
  assert_promtool_accepts(&b);
  prom_buf_free(&b);
  fx_done(&x);
}

static void memory_bound_evicts_least_recently_used(void **state) {
  struct fx x;
  /* A phrase is 4000 bytes of audio and a short key: two fit, three do not. */
  fx_init(&x, *state, 2 * CHUNK * CHUNKS * 2 + 200, 0);
  say(&x, "A.");
  say(&x, "B.");
  assert_int_equal(say(&x, "A."), TTSCACHE_HIT_MEMORY); /* A is the more recent now */
  assert_int_equal(say(&x, "C."), TTSCACHE_MISS);       /* evicts B */
  assert_int_equal(atomic_load(&x.eng.calls), 3);
  assert_int_equal(say(&x, "A."), TTSCACHE_HIT_MEMORY);
  assert_int_equal(say(&x, "C."), TTSCACHE_HIT_MEMORY);
  assert_int_equal(say(&x, "B."), TTSCACHE_MISS);
  assert_int_equal(atomic_load(&x.eng.calls), 4);
  struct prom_buf b;
  prom_buf_init(&b);
  ttscache_write_metrics(x.c, &b);
  assert_non_null(strstr(b.data, "tingshuo_tts_cache_evictions_total{tier=\"memory\"} 2"));
  assert_non_null(strstr(b.data, "tingshuo_tts_cache_entries{tier=\"memory\"} 2"));
  prom_buf_free(&b);
  fx_done(&x);
}

static void disk_cache_survives_reopen(void **state) {
  struct fx x;
  fx_init(&x, *state, 1 << 20, 1 << 20);
  assert_int_equal(say(&x, "Thank you for calling."), TTSCACHE_MISS);
  wait_files(&x, 1);
  fx_close(&x);
  fx_open(&x);
  assert_int_equal(say(&x, "Thank you for calling."), TTSCACHE_HIT_DISK);
  assert_int_equal(say(&x, "Thank you for calling."), TTSCACHE_HIT_MEMORY);
  assert_int_equal(atomic_load(&x.eng.calls), 1);

  /* Without a memory tier every hit is read from the file. */
  fx_close(&x);
  x.mem = 0;
  fx_open(&x);
  assert_int_equal(say(&x, "Thank you for calling."), TTSCACHE_HIT_DISK);
  assert_int_equal(say(&x, "Thank you for calling."), TTSCACHE_HIT_DISK);
  assert_int_equal(atomic_load(&x.eng.calls), 1);

  /* At a smaller disk bound the oldest file goes at the next start. */
  say(&x, "Second phrase.");
  wait_files(&x, 2);
  fx_close(&x);
  x.disk = CHUNK * CHUNKS * 2 + 200; /* one file */
  fx_open(&x);
  assert_int_equal(files(&x, ".tts", NULL, 0), 1);
  assert_int_equal(say(&x, "Second phrase."), TTSCACHE_HIT_DISK);
  assert_int_equal(atomic_load(&x.eng.calls), 2);
  fx_done(&x);
}

/* Rewrites a file: flips bytes from `at` on, or cuts it to `at` bytes. */
static void damage(const char *path, long at, int cut) {
  FILE *fp = fopen(path, "r+b");
  assert_non_null(fp);
  if (cut) {
    assert_int_equal(ftruncate(fileno(fp), at), 0);
  } else {
    fseek(fp, at, SEEK_SET);
    int ch = fgetc(fp);
    fseek(fp, at, SEEK_SET);
    fputc(ch ^ 0x5a, fp);
  }
  fclose(fp);
}

static void corrupt_file_is_ignored_and_replaced(void **state) {
  struct fx x;
  fx_init(&x, *state, 1 << 20, 1 << 20);
  const char *text = "We are sorry, please try again.";
  say(&x, text);
  wait_files(&x, 1);
  char path[512];
  files(&x, ".tts", path, sizeof path);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  /* Each damage in turn: a flipped sample (checksum), a cut file (length), bad magic. */
  const long at[] = {st.st_size - 3, st.st_size / 2, 0};
  const int cut[] = {0, 1, 0};
  for (int i = 0; i < 3; i++) {
    fx_close(&x);
    damage(path, at[i], cut[i]);
    fx_open(&x);
    int before = atomic_load(&x.eng.calls);
    say(&x, text); /* the right audio, made again */
    assert_int_equal(atomic_load(&x.eng.calls), before + 1);
    wait_files(&x, 1);
  }
  /* The replacement is good. */
  fx_close(&x);
  fx_open(&x);
  int before = atomic_load(&x.eng.calls);
  assert_int_equal(say(&x, text), TTSCACHE_HIT_DISK);
  assert_int_equal(atomic_load(&x.eng.calls), before);
  struct prom_buf b;
  prom_buf_init(&b);
  ttscache_write_metrics(x.c, &b);
  assert_non_null(strstr(b.data, "tingshuo_tts_cache_entries{tier=\"disk\"} 1"));
  prom_buf_free(&b);

  /* A file holding another key under this name (a hash collision) is not played. */
  fx_close(&x);
  char other[512];
  {
    struct fx y;
    fx_init(&y, x.f, 1 << 20, 1 << 20);
    say(&y, "A different phrase.");
    wait_files(&y, 1);
    files(&y, ".tts", other, sizeof other);
    fx_close(&y);
    assert_int_equal(rename(other, path), 0);
    fx_done(&y);
  }
  fx_open(&x);
  before = atomic_load(&x.eng.calls);
  say(&x, text);
  assert_int_equal(atomic_load(&x.eng.calls), before + 1);
  fx_done(&x);
}

static void half_written_temp_file_is_ignored(void **state) {
  struct fx x;
  fx_init(&x, *state, 1 << 20, 1 << 20);
  const char *text = "Good morning.";
  say(&x, text);
  wait_files(&x, 1);
  char path[512], tmp[600];
  files(&x, ".tts", path, sizeof path);
  fx_close(&x);
  /* A crash mid-write: half the file under a temporary name, nothing under the real one. */
  snprintf(tmp, sizeof tmp, "%.*s.999-1.tmp", (int)(strlen(path) - 4), path);
  assert_int_equal(rename(path, tmp), 0);
  struct stat st;
  assert_int_equal(stat(tmp, &st), 0);
  assert_int_equal(truncate(tmp, st.st_size / 2), 0);
  fx_open(&x);
  assert_int_equal(files(&x, ".tmp", NULL, 0), 0); /* cleared at start */
  assert_int_equal(say(&x, text), TTSCACHE_MISS);
  assert_int_equal(atomic_load(&x.eng.calls), 2);
  wait_files(&x, 1);
  fx_done(&x);
}

/* ---- two threads ---- */

struct other_thread {
  struct fx *x;
  const char *text;
  struct take t;
  enum ttscache_how how;
  atomic_int asked;
  pthread_t th;
};

static void other_drop(struct mailbox *mb, struct mailbox_msg *msg, void *user) { free(msg); }

/* A media worker of its own: a loop, a mailbox, one request, until it ends. */
static void *other_main(void *arg) {
  struct other_thread *o = arg;
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct mailbox *mb;
  mailbox_new(&mb, &loop, other_drop, NULL);
  struct tts_cb cb = {on_audio, on_done, on_error, &o->t};
  struct tts_params p = {o->text, "en", NULL, 0};
  int rc = ttscache_speak(o->x->c, src_of(o->x), &p, mb, &cb, &o->t.job, &o->how);
  atomic_store(&o->asked, rc == 0 ? 1 : -1);
  uv_timer_t tick;
  uv_timer_init(&loop, &tick);
  uv_timer_start(&tick, engine_loop_tick, 5, 5);
  for (int i = 0; rc == 0 && i < 2000 && !finished(&o->t); i++) uv_run(&loop, UV_RUN_ONCE);
  if (rc == 0) tts_release(o->t.job);
  uv_close((uv_handle_t *)&tick, NULL);
  mailbox_close(mb, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return NULL;
}

static void concurrent_requests_share_one_synthesis(void **state) {
  struct fx x;
  fx_init(&x, *state, 1 << 20, 0);
  x.eng.manual = 1;
  const char *text = "Please hold while I check.";
  struct take a = {0};
  assert_int_equal(ask(&x, x.f->mb, &a, text), TTSCACHE_MISS);
  engine_loop_spin(x.f, NULL, 20); /* the synthesis starts on the control loop */
  assert_int_equal(atomic_load(&x.eng.calls), 1);
  struct cb_job *job = x.eng.last;
  cb_step(job, 0);
  cb_step(job, 1);
  engine_loop_spin(x.f, NULL, 20);
  assert_int_equal(a.chunks, 2); /* streamed as it is made */

  /* Another thread asks now, mid-synthesis. */
  struct other_thread o = {.x = &x, .text = text};
  atomic_init(&o.asked, 0);
  assert_int_equal(pthread_create(&o.th, NULL, other_main, &o), 0);
  while (!atomic_load(&o.asked)) engine_loop_spin(x.f, NULL, 5);
  assert_int_equal(atomic_load(&o.asked), 1);
  assert_int_equal(o.how, TTSCACHE_JOINED);
  for (int k = 2; k <= CHUNKS; k++) cb_step(job, k);
  engine_loop_spin(x.f, &a.done, 5000);
  pthread_join(o.th, NULL);
  assert_int_equal(atomic_load(&x.eng.calls), 1);
  assert_int_equal(a.done, 1);
  assert_int_equal(o.t.done, 1);
  assert_counting_audio(&a, text);
  assert_counting_audio(&o.t, text);
  tts_release(a.job);
  free(a.pcm);
  free(o.t.pcm);
  assert_int_equal(say(&x, text), TTSCACHE_HIT_MEMORY);
  assert_int_equal(atomic_load(&x.eng.calls), 1);
  fx_done(&x);
}

static void cancelling_every_waiter_cancels_the_synthesis(void **state) {
  struct fx x;
  fx_init(&x, *state, 1 << 20, 0);
  x.eng.manual = 1;
  const char *text = "Let me think about that.";
  struct take a = {0}, b = {0};
  ask(&x, x.f->mb, &a, text);
  assert_int_equal(ask(&x, x.f->mb, &b, text), TTSCACHE_JOINED);
  engine_loop_spin(x.f, NULL, 20);
  struct cb_job *job = x.eng.last;
  cb_step(job, 0);
  engine_loop_spin(x.f, NULL, 20);
  assert_int_equal(b.chunks, 1);
  tts_release(a.job);
  engine_loop_spin(x.f, NULL, 20);
  assert_int_equal(atomic_load(&x.eng.cancels), 0); /* b still listens */
  tts_release(b.job);
  engine_loop_spin(x.f, NULL, 20);
  assert_int_equal(atomic_load(&x.eng.cancels), 1);
  assert_int_equal(atomic_load(&x.eng.destroyed), 1);
  free(a.pcm);
  free(b.pcm);
  /* Nothing of it was kept: the next request synthesises. */
  x.eng.manual = 0;
  assert_int_equal(say(&x, text), TTSCACHE_MISS);
  assert_int_equal(atomic_load(&x.eng.calls), 2);

  /* A warm-up's synthesis runs on when its last listener leaves. */
  x.eng.manual = 1;
  const char *warm = "One moment please.";
  struct tts_params p = {warm, "en", NULL, 0};
  enum ttscache_how how;
  assert_int_equal(ttscache_warm(x.c, src_of(&x), &p, &how), 0);
  assert_int_equal(how, TTSCACHE_MISS);
  struct take c = {0};
  assert_int_equal(ask(&x, x.f->mb, &c, warm), TTSCACHE_JOINED);
  engine_loop_spin(x.f, NULL, 20);
  job = x.eng.last;
  tts_release(c.job);
  engine_loop_spin(x.f, NULL, 20);
  assert_int_equal(atomic_load(&x.eng.cancels), 1);
  for (int k = 0; k <= CHUNKS; k++) cb_step(job, k);
  engine_loop_spin(x.f, NULL, 20);
  x.eng.manual = 0;
  assert_int_equal(say(&x, warm), TTSCACHE_HIT_MEMORY);
  assert_int_equal(atomic_load(&x.eng.calls), 3);
  free(c.pcm);
  fx_done(&x);
}

static void errors_and_rate_changes_are_not_cached(void **state) {
  struct fx x;
  fx_init(&x, *state, 1 << 20, 1 << 20);
  x.eng.fail = 1;
  struct take t = {0};
  ask(&x, x.f->mb, &t, "Broken.");
  engine_loop_spin(x.f, &t.errors, 5000);
  assert_int_equal(t.errors, 1);
  assert_int_equal(t.done, 0);
  tts_release(t.job);
  free(t.pcm);
  x.eng.fail = 0;
  assert_int_equal(say(&x, "Broken."), TTSCACHE_MISS);
  assert_int_equal(atomic_load(&x.eng.calls), 2);

  x.eng.change_rate = 1;
  struct take u = {0};
  ask(&x, x.f->mb, &u, "Changing.");
  engine_loop_spin(x.f, &u.done, 5000);
  assert_true(u.rate_changed); /* delivered as made */
  tts_release(u.job);
  free(u.pcm);
  x.eng.change_rate = 0;
  assert_int_equal(say(&x, "Changing."), TTSCACHE_MISS);
  assert_int_equal(atomic_load(&x.eng.calls), 4);
  wait_files(&x, 2); /* "Broken." and "Changing." as made the second time */
  fx_done(&x);
}

static void close_with_synthesis_in_flight(void **state) {
  struct fx x;
  fx_init(&x, *state, 1 << 20, 1 << 20);
  x.eng.manual = 1;
  struct tts_params p = {"Never finished.", "en", NULL, 0};
  enum ttscache_how how;
  assert_int_equal(ttscache_warm(x.c, src_of(&x), &p, &how), 0);
  engine_loop_spin(x.f, NULL, 20);
  cb_step(x.eng.last, 0);
  engine_loop_spin(x.f, NULL, 20);
  fx_close(&x);
  assert_int_equal(atomic_load(&x.eng.cancels), 1);
  assert_int_equal(atomic_load(&x.eng.destroyed), 1);
  fx_done(&x);
}

/* ---- through engines.c ---- */

static void engines_speak(struct engines *e, struct engine_loop *f, struct take *t,
                          const char *text, int cached) {
  struct tts_cb cb = {on_audio, on_done, on_error, t};
  struct tts_params p = {text, "en", NULL, 0};
  assert_int_equal(engines_tts_speak(e, &p, f->mb, &cb, &t->job), 0);
  assert_int_equal(t->job->cached, cached);
  assert_int_equal(t->chunks, 0);
  engine_loop_spin(f, &t->done, 10000);
  assert_int_equal(t->done, 1);
  assert_int_equal(t->rate, 16000);
  assert_true(t->samples > 8000);
  tts_release(t->job);
}

/* flite, whose output differs a little from one synthesis to the next (noise in its excitation). */
static void engines_warm_then_speak_is_a_hit(void **state) {
  struct engine_loop *f = *state;
  char dir[] = "/tmp/ttscache-eng-XXXXXX";
  assert_non_null(mkdtemp(dir));
  snprintf(f->cfg.data_dir, sizeof f->cfg.data_dir, "%s", dir);
  snprintf(f->cfg.tts, sizeof f->cfg.tts, "flite");
  struct engines *e;
  char err[256];
  assert_int_equal(engines_open(&e, &f->env, err, sizeof err), 0);

  /* A hit is the very audio the miss streamed. */
  const char *said = "Hello, how can I help?";
  struct take t[3] = {{0}};
  engines_speak(e, f, &t[0], said, 0);
  engines_speak(e, f, &t[1], said, 1);
  assert_int_equal(t[1].samples, t[0].samples);
  assert_memory_equal(t[1].pcm, t[0].pcm, t[0].samples * sizeof(int16_t));

  /* Warmed, then asked for. */
  const char *warm = "Sorry, I did not catch that.";
  struct tts_params p = {warm, "en", NULL, 0};
  assert_int_equal(engines_tts_warm(e, &p), 0);
  for (int i = 0; i < 1000; i++) {
    struct prom_buf b;
    prom_buf_init(&b);
    engines_write_metrics(e, &b);
    int ready = strstr(b.data, "tingshuo_tts_cache_entries{tier=\"memory\"} 2") != NULL;
    prom_buf_free(&b);
    if (ready) break;
    engine_loop_spin(f, NULL, 10);
  }
  engines_speak(e, f, &t[2], warm, 1);

  struct prom_buf b;
  prom_buf_init(&b);
  engines_write_metrics(e, &b);
  assert_non_null(strstr(b.data, "tingshuo_tts_cache_hits_total{tier=\"memory\"} 2"));
  assert_non_null(strstr(b.data, "tingshuo_tts_cache_misses_total 1"));
  assert_non_null(strstr(b.data, "tingshuo_tts_cache_warmups_total 1"));
  assert_non_null(strstr(b.data, "tingshuo_tts_cache_syntheses_total 2"));
  char line[160];
  snprintf(line, sizeof line, "backend=\"flite\",source=\"cached\"} %zu", strlen(said) + strlen(warm));
  assert_non_null(strstr(b.data, line));
  snprintf(line, sizeof line, "backend=\"flite\",source=\"synthesised\"} %zu", strlen(said) + strlen(warm));
  assert_non_null(strstr(b.data, line));
  assert_promtool_accepts(&b);
  prom_buf_free(&b);
  for (int i = 0; i < 3; i++) free(t[i].pcm);
  pool_stop(f->pool);
  engines_close(e);
  engine_loop_spin(f, NULL, 20);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static void engines_tone_is_not_cached(void **state) {
  struct engine_loop *f = *state;
  snprintf(f->cfg.tts, sizeof f->cfg.tts, "tone");
  f->cfg.data_dir[0] = '\0';
  struct engines *e;
  char err[256];
  assert_int_equal(engines_open(&e, &f->env, err, sizeof err), 0);
  for (int i = 0; i < 2; i++) {
    struct take t = {0};
    struct tts_cb cb = {on_audio, on_done, on_error, &t};
    struct tts_params p = {"Same words.", "en", NULL, 0};
    assert_int_equal(engines_tts_speak(e, &p, f->mb, &cb, &t.job), 0);
    assert_int_equal(t.job->cached, 0);
    engine_loop_spin(f, &t.done, 5000);
    assert_int_equal(t.done, 1);
    tts_release(t.job);
    free(t.pcm);
  }
  struct tts_params p = {"Same words.", "en", NULL, 0};
  assert_int_equal(engines_tts_warm(e, &p), 0);
  struct prom_buf b;
  prom_buf_init(&b);
  engines_write_metrics(e, &b);
  assert_non_null(strstr(b.data, "tingshuo_tts_cache_misses_total 0"));
  assert_non_null(strstr(b.data, "tingshuo_tts_cache_warmups_total 0"));
  prom_buf_free(&b);
  engines_close(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      ENGINE_LOOP_TEST(hit_after_miss_is_identical),
      ENGINE_LOOP_TEST(memory_bound_evicts_least_recently_used),
      ENGINE_LOOP_TEST(disk_cache_survives_reopen),
      ENGINE_LOOP_TEST(corrupt_file_is_ignored_and_replaced),
      ENGINE_LOOP_TEST(half_written_temp_file_is_ignored),
      ENGINE_LOOP_TEST(concurrent_requests_share_one_synthesis),
      ENGINE_LOOP_TEST(cancelling_every_waiter_cancels_the_synthesis),
      ENGINE_LOOP_TEST(errors_and_rate_changes_are_not_cached),
      ENGINE_LOOP_TEST(close_with_synthesis_in_flight),
      ENGINE_LOOP_TEST(engines_warm_then_speak_is_a_hit),
      ENGINE_LOOP_TEST(engines_tone_is_not_cached),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
