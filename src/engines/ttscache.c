/*
 * The TTS cache: one table of phrases, two tiers, one synthesis per phrase.
 *
 * Threads. Requests arrive on media workers, which must not wait: under the
 * cache's lock they only look a key up, link themselves to an entry and
 * post closures. Syntheses run on the control loop (every backend's speak
 * may be called there, and its callbacks then come home to it), where each
 * chunk is kept and copied out to every request waiting on the entry.
 * Files are read and written by inference-pool items. The lock is held for
 * table work, a copy of audio already made when a request joins late, and
 * mailbox posts; never across a backend call, a file operation or a
 * callback.
 *
 * Entries. An entry is in the table while it is being read from a file
 * (LOADING), synthesised (SYNTH) or held in memory (READY). Only READY
 * entries are on the LRU list and counted against the memory bound, so an
 * entry being made is never evicted. An entry's references (the table's,
 * its synthesis job's, each queued closure's) are counted under the lock.
 * The audio of a READY entry is immutable and reference-counted on its own,
 * so a hit keeps playing what it took even when the entry is evicted.
 *
 * Lifetime. The cache itself is reference-counted: its opener, every
 * request job, every queued closure or pool item and every synthesis job
 * hold one, so whatever outlives ttscache_free (a file write, a closure in
 * a mailbox) still finds it. ttscache_free stops the syntheses (their jobs
 * live on the control loop, so it runs there) before the backends close.
 *
 * The disk tier keeps an index of its files (name = key hash, size, order
 * of use) built by listing the directory at start, so a request learns
 * without touching the disk whether a file may hold its phrase. A file is
 * written to a temporary name and renamed, and is checked whole when read
 * (magic, length, checksum, the key text itself, which also rules out two
 * keys sharing a hash); anything wrong and it is deleted and made again.
 */
#include "engines/ttscache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "core/log.h"
#include "core/pool.h"
#include "core/prom.h"

#define TC_BUCKETS 1024
#define TC_MAGIC "TSTTSC1\n"
#define TC_HEADER 32 /* magic 8, key length 4, rate 4, samples 8, checksum 8 */
#define TC_PIECE_MS 100 /* a hit is handed over in pieces this long */
#define TC_NAME_LEN 20 /* 16 hex digits + ".tts" */

/* ---- audio, immutable once shared ---- */

struct tc_audio {
  atomic_int refs;
  int rate;
  size_t n, cap;
  int16_t pcm[];
};

static struct tc_audio *audio_ref(struct tc_audio *a) {
  atomic_fetch_add(&a->refs, 1);
  return a;
}

static void audio_unref(struct tc_audio *a) {
  if (a && atomic_fetch_sub(&a->refs, 1) == 1) free(a);
}

/* ---- the structures ---- */

enum { E_LOADING, E_SYNTH, E_READY };

struct tc_job;

struct tc_entry {
  struct tc_entry *hnext;       /* bucket chain, while linked */
  struct tc_entry *prev, *next; /* memory LRU, while READY and linked */
  struct tc_entry *fprev, *fnext; /* the cache's syntheses: control loop only */
  uint64_t hash;
  char *key;
  size_t keylen;
  int refs;
  int state;
  int linked;      /* in the table */
  int warm;        /* finish it even if nobody listens */
  int abandoned;   /* nobody listens: its synthesis is being stopped */
  int uncacheable; /* its rate changed, or memory ran out: stream it, keep nothing */
  int loader;      /* the request that made a LOADING entry is to be counted */
  struct ttscache *cache;
  struct tc_job *waiters;
  struct tc_audio *audio; /* SYNTH: growing, owned; READY: shared */
  /* the synthesis, made on the control loop */
  const struct tts_backend *be;
  void *engine;
  char *text, *voice, *language;
  int rate;
  struct tts_job *bjob;
};

struct tc_file {
  struct tc_file *hnext, *prev, *next;
  uint64_t hash;
  size_t bytes;
};

struct ttscache {
  atomic_int refs;
  uv_mutex_t lock;
  size_t mem_bound, disk_bound;
  char *dir; /* NULL: no disk tier */
  struct pool *pool;
  struct mailbox *control;
  int closed;
  struct tc_entry *table[TC_BUCKETS];
  struct tc_entry lru; /* sentinel: next is the most recently used */
  size_t mem_bytes, mem_entries;
  struct tc_file *files[TC_BUCKETS];
  struct tc_file flru;
  size_t disk_bytes, disk_entries;
  unsigned long tmp_seq;
  struct tc_entry flying; /* sentinel of the syntheses in flight: control loop only */
  _Atomic uint64_t hits_memory, hits_disk, misses, joined, evict_memory, evict_disk, corrupt,
      syntheses, warmups;
};

/* A request's job. */
struct tc_job {
  struct tts_job base;
  struct ttscache *cache;
  struct tc_entry *entry; /* while waiting on it; under the lock */
  struct tc_job *wprev, *wnext;
  struct tc_audio *audio; /* what a hit plays */
};

/* A closure for the control loop, or an item for the pool. */
struct tc_msg {
  struct mailbox_run run;
  struct ttscache *c;
  struct tc_entry *e;
  struct tc_audio *audio; /* a write's */
  char *key;              /* a write's */
  size_t keylen;
  uint64_t hash;
};

static void count(_Atomic uint64_t *n) { atomic_fetch_add_explicit(n, 1, memory_order_relaxed); }

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}
#define FNV_START 0xcbf29ce484222325ULL

/* ---- the cache's own lifetime ---- */

static void cache_ref(struct ttscache *c) { atomic_fetch_add(&c->refs, 1); }

static void entry_free(struct tc_entry *e) {
  if (e->state == E_READY) audio_unref(e->audio);
  else free(e->audio);
  free(e->key);
  free(e->text);
  free(e->voice);
  free(e->language);
  free(e);
}

static void cache_unref(struct ttscache *c) {
  if (atomic_fetch_sub(&c->refs, 1) != 1) return;
  /* Nothing else holds an entry now: what is left is the table's alone. */
  for (size_t b = 0; b < TC_BUCKETS; b++) {
    for (struct tc_entry *e = c->table[b], *next; e; e = next) {
      next = e->hnext;
      entry_free(e);
    }
    for (struct tc_file *f = c->files[b], *next; f; f = next) {
      next = f->hnext;
      free(f);
    }
  }
  uv_mutex_destroy(&c->lock);
  free(c->dir);
  free(c);
}

/* Under the lock. Returns 1 when e was freed. */
static int entry_unref_locked(struct tc_entry *e) {
  if (--e->refs) return 0;
  entry_free(e);
  return 1;
}

static void entry_unref(struct ttscache *c, struct tc_entry *e) {
  uv_mutex_lock(&c->lock);
  entry_unref_locked(e);
  uv_mutex_unlock(&c->lock);
}

/* ---- lists, under the lock ---- */

static void list_unlink(struct tc_entry *e) {
  e->prev->next = e->next;
  e->next->prev = e->prev;
  e->prev = e->next = NULL;
}

static void list_front(struct tc_entry *head, struct tc_entry *e) {
  e->next = head->next;
  e->prev = head;
  head->next->prev = e;
  head->next = e;
}

static void file_unlink(struct tc_file *f) {
  f->prev->next = f->next;
  f->next->prev = f->prev;
}

static void file_front(struct tc_file *head, struct tc_file *f) {
  f->next = head->next;
  f->prev = head;
  head->next->prev = f;
  head->next = f;
}

static struct tc_entry *table_find(struct ttscache *c, uint64_t hash, const char *key, size_t len) {
  for (struct tc_entry *e = c->table[hash % TC_BUCKETS]; e; e = e->hnext)
    if (e->hash == hash && e->keylen == len && memcmp(e->key, key, len) == 0) return e;
  return NULL;
}

static void table_add(struct ttscache *c, struct tc_entry *e) {
  struct tc_entry **b = &c->table[e->hash % TC_BUCKETS];
  e->hnext = *b;
  *b = e;
  e->linked = 1;
  e->refs++;
}

static size_t entry_bytes(const struct tc_entry *e) {
  return e->audio->n * sizeof(int16_t) + e->keylen;
}

/* Takes e out of the table (and the memory tier) and drops the table's reference. */
static int table_remove(struct ttscache *c, struct tc_entry *e) {
  if (!e->linked) return 0;
  struct tc_entry **pp = &c->table[e->hash % TC_BUCKETS];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  e->hnext = NULL;
  e->linked = 0;
  if (e->state == E_READY && e->prev) {
    list_unlink(e);
    c->mem_bytes -= entry_bytes(e);
    c->mem_entries--;
  }
  return entry_unref_locked(e);
}

static struct tc_file *file_find(struct ttscache *c, uint64_t hash) {
  for (struct tc_file *f = c->files[hash % TC_BUCKETS]; f; f = f->hnext)
    if (f->hash == hash) return f;
  return NULL;
}

static void file_remove(struct ttscache *c, struct tc_file *f) {
  struct tc_file **pp = &c->files[f->hash % TC_BUCKETS];
  while (*pp != f) pp = &(*pp)->hnext;
  *pp = f->hnext;
  file_unlink(f);
  c->disk_bytes -= f->bytes;
  c->disk_entries--;
  free(f);
}

/* Records a file as the most recently used; existing or new. Returns -ENOMEM. */
static int file_note(struct ttscache *c, uint64_t hash, size_t bytes) {
  struct tc_file *f = file_find(c, hash);
  if (f) {
    file_unlink(f);
    c->disk_bytes -= f->bytes;
  } else {
    if (!(f = calloc(1, sizeof *f))) return -ENOMEM;
    f->hash = hash;
    f->hnext = c->files[hash % TC_BUCKETS];
    c->files[hash % TC_BUCKETS] = f;
    c->disk_entries++;
  }
  f->bytes = bytes;
  c->disk_bytes += bytes;
  file_front(&c->flru, f);
  return 0;
}

static void file_name(const struct ttscache *c, uint64_t hash, char *out, size_t len) {
  snprintf(out, len, "%s/%016llx.tts", c->dir, (unsigned long long)hash);
}

/* Evicts least recently used files past the bound; their hashes go to victims (up to max). */
static size_t disk_trim(struct ttscache *c, uint64_t *victims, size_t max) {
  size_t n = 0;
  while (c->disk_bytes > c->disk_bound && n < max && c->flru.prev != &c->flru) {
    struct tc_file *f = c->flru.prev;
    victims[n++] = f->hash;
    file_remove(c, f);
    count(&c->evict_disk);
  }
  return n;
}

static void unlink_files(struct ttscache *c, const uint64_t *hashes, size_t n) {
  char path[4096];
  for (size_t i = 0; i < n; i++) {
    file_name(c, hashes[i], path, sizeof path);
    unlink(path);
  }
}

/* ---- a request's job, on its home loop ---- */

struct tc_chunk {
  int rate;
  size_t n;
  int16_t pcm[];
};

static void job_audio(struct eng_job *j, void *arg) {
  struct tts_job *t = (struct tts_job *)j;
  struct tc_chunk *ch = arg;
  if (t->cb.audio) t->cb.audio(t->cb.user, ch->pcm, ch->n, ch->rate);
}

static void job_done(struct eng_job *j, void *arg) {
  struct tts_job *t = (struct tts_job *)j;
  if (t->cb.done) t->cb.done(t->cb.user);
}

static void job_error(struct eng_job *j, void *arg) {
  struct tts_job *t = (struct tts_job *)j;
  if (t->cb.error) t->cb.error(t->cb.user, arg ? arg : "out of memory");
}

/* A hit: the whole phrase in pieces, then done; a callback may release the job between them. */
static void job_play(struct eng_job *j, void *arg) {
  struct tc_job *w = (struct tc_job *)j;
  const struct tc_audio *a = w->audio;
  size_t piece = (size_t)a->rate * TC_PIECE_MS / 1000;
  if (piece == 0) piece = 1;
  for (size_t at = 0; at < a->n && !eng_job_cancelled(j); at += piece) {
    size_t k = a->n - at < piece ? a->n - at : piece;
    if (w->base.cb.audio) w->base.cb.audio(w->base.cb.user, a->pcm + at, k, a->rate);
  }
  if (!eng_job_cancelled(j) && w->base.cb.done) w->base.cb.done(w->base.cb.user);
}

static void job_destroy(struct eng_job *j) {
  struct tc_job *w = (struct tc_job *)j;
  struct ttscache *c = w->cache;
  audio_unref(w->audio);
  free(w);
  cache_unref(c);
}

static void waiter_add(struct tc_entry *e, struct tc_job *w) {
  w->entry = e;
  w->wprev = NULL;
  w->wnext = e->waiters;
  if (e->waiters) e->waiters->wprev = w;
  e->waiters = w;
}

static void waiter_remove(struct tc_job *w) {
  struct tc_entry *e = w->entry;
  if (w->wprev) w->wprev->wnext = w->wnext;
  else e->waiters = w->wnext;
  if (w->wnext) w->wnext->wprev = w->wprev;
  w->wprev = w->wnext = NULL;
  w->entry = NULL;
}

/* Under the lock: a copy of pcm to every waiter. */
static void fan_audio(struct tc_entry *e, const int16_t *pcm, size_t n, int rate) {
  for (struct tc_job *w = e->waiters; w; w = w->wnext) {
    struct tc_chunk *ch = malloc(sizeof *ch + n * sizeof ch->pcm[0]);
    if (!ch) {
      eng_job_post(&w->base.job, job_error, NULL);
      continue;
    }
    ch->rate = rate;
    ch->n = n;
    memcpy(ch->pcm, pcm, n * sizeof *pcm);
    eng_job_post(&w->base.job, job_audio, ch);
  }
}

/* Under the lock: the end (done, or an error when message is set) to every waiter, who leave. */
static void fan_end(struct tc_entry *e, const char *message, int timed_out) {
  while (e->waiters) {
    struct tc_job *w = e->waiters;
    waiter_remove(w);
    if (!message) {
      eng_job_post(&w->base.job, job_done, NULL);
      continue;
    }
    if (timed_out) atomic_store(&w->base.job.timed_out, 1);
    eng_job_post(&w->base.job, job_error, strdup(message));
  }
}

/* Under the lock: finished audio to every waiter, who leave. */
static void fan_play(struct tc_entry *e) {
  while (e->waiters) {
    struct tc_job *w = e->waiters;
    waiter_remove(w);
    w->audio = audio_ref(e->audio);
    eng_job_post(&w->base.job, job_play, NULL);
  }
}

/* ---- the memory tier, under the lock ---- */

/* e has its final audio: READY, in memory if it fits, else out of the table. */
static void mem_keep(struct ttscache *c, struct tc_entry *e) {
  e->state = E_READY;
  size_t bytes = entry_bytes(e);
  if (c->closed || !e->linked || bytes > c->mem_bound) {
    table_remove(c, e);
    return;
  }
  list_front(&c->lru, e);
  c->mem_bytes += bytes;
  c->mem_entries++;
  while (c->mem_bytes > c->mem_bound && c->lru.prev != e) {
    table_remove(c, c->lru.prev);
    count(&c->evict_memory);
  }
}

/* ---- the disk tier: files ---- */

static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* The file's bytes: header, key, samples little-endian. */
static unsigned char *encode(const char *key, size_t keylen, const struct tc_audio *a,
                             size_t *len) {
  *len = TC_HEADER + keylen + a->n * 2;
  unsigned char *buf = malloc(*len);
  if (!buf) return NULL;
  unsigned char *p = buf + TC_HEADER;
  memcpy(p, key, keylen);
  p += keylen;
  for (size_t i = 0; i < a->n; i++) {
    uint16_t s = (uint16_t)a->pcm[i];
    *p++ = (unsigned char)(s & 0xff);
    *p++ = (unsigned char)(s >> 8);
  }
  memcpy(buf, TC_MAGIC, 8);
  put32(buf + 8, (uint32_t)keylen);
  put32(buf + 12, (uint32_t)a->rate);
  put64(buf + 16, a->n);
  put64(buf + 24, fnv(FNV_START, buf + TC_HEADER, *len - TC_HEADER));
  return buf;
}

/* The audio in a file's bytes, if they are whole and hold this key; else NULL. */
static struct tc_audio *decode(const unsigned char *buf, size_t len, const char *key,
                               size_t keylen) {
  if (len < TC_HEADER || memcmp(buf, TC_MAGIC, 8) != 0) return NULL;
  uint32_t klen = get32(buf + 8), rate = get32(buf + 12);
  uint64_t n = get64(buf + 16);
  if (klen != keylen || rate == 0 || rate > 384000 || n > (len - TC_HEADER) / 2) return NULL;
  if (len != TC_HEADER + (size_t)klen + (size_t)n * 2) return NULL;
  if (get64(buf + 24) != fnv(FNV_START, buf + TC_HEADER, len - TC_HEADER)) return NULL;
  if (memcmp(buf + TC_HEADER, key, keylen) != 0) return NULL;
  struct tc_audio *a = malloc(sizeof *a + (size_t)n * sizeof a->pcm[0]);
  if (!a) return NULL;
  atomic_init(&a->refs, 1);
  a->rate = (int)rate;
  a->n = a->cap = (size_t)n;
  const unsigned char *p = buf + TC_HEADER + klen;
  for (size_t i = 0; i < a->n; i++, p += 2) a->pcm[i] = (int16_t)(uint16_t)(p[0] | (p[1] << 8));
  return a;
}

static int write_all(int fd, const unsigned char *p, size_t len) {
  while (len) {
    ssize_t k = write(fd, p, len);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -EIO;
    p += k;
    len -= (size_t)k;
  }
  return 0;
}

/* Reads a whole file into a buffer. -ENOENT when it is not there. */
static int read_all(const char *path, unsigned char **out, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  int rc = fstat(fd, &st) ? -errno : 0;
  unsigned char *buf = NULL;
  size_t size = rc == 0 && st.st_size > 0 ? (size_t)st.st_size : 0, got = 0;
  if (rc == 0 && !(buf = malloc(size ? size : 1))) rc = -ENOMEM;
  while (rc == 0 && got < size) {
    ssize_t k = read(fd, buf + got, size - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break; /* shorter than it said: decode refuses it */
    got += (size_t)k;
  }
  close(fd);
  if (rc) {
    free(buf);
    return rc;
  }
  *out = buf;
  *len = got;
  return 0;
}

/* Deletes the files past the disk bound, a batch at a time, unlinking with the lock let go. */
static void disk_enforce(struct ttscache *c) {
  uint64_t victims[64];
  for (;;) {
    uv_mutex_lock(&c->lock);
    size_t n = disk_trim(c, victims, sizeof victims / sizeof victims[0]);
    uv_mutex_unlock(&c->lock);
    if (!n) return;
    unlink_files(c, victims, n);
  }
}

static void msg_free(struct tc_msg *m) {
  audio_unref(m->audio);
  free(m->key);
  free(m);
}

/* ---- the disk tier: pool items ---- */

static void disk_write_drop(void *arg) {
  struct tc_msg *m = arg;
  struct ttscache *c = m->c;
  msg_free(m);
  cache_unref(c);
}

/* Written under a temporary name, then renamed: the real name only ever holds a whole file. */
static void disk_write(void *arg) {
  struct tc_msg *m = arg;
  struct ttscache *c = m->c;
  char path[4096], tmp[4096];
  size_t len = 0;
  unsigned char *buf = encode(m->key, m->keylen, m->audio, &len);
  uv_mutex_lock(&c->lock);
  unsigned long seq = ++c->tmp_seq;
  uv_mutex_unlock(&c->lock);
  file_name(c, m->hash, path, sizeof path);
  snprintf(tmp, sizeof tmp, "%s/%016llx.%ld-%lu.tmp", c->dir, (unsigned long long)m->hash,
           (long)getpid(), seq);
  int rc = buf ? 0 : -ENOMEM;
  if (rc == 0) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) rc = -errno;
    else {
      rc = write_all(fd, buf, len);
      if (close(fd) != 0 && rc == 0) rc = -EIO;
      if (rc == 0 && rename(tmp, path) != 0) rc = -errno;
      if (rc) unlink(tmp);
    }
  }
  free(buf);
  if (rc == 0) {
    uv_mutex_lock(&c->lock);
    rc = file_note(c, m->hash, len);
    uv_mutex_unlock(&c->lock);
    if (rc) unlink(path); /* a file the index does not know would escape the bound */
    disk_enforce(c);
  } else {
    log_warn("engines", "tts cache: cannot write %s: %s", path, strerror(-rc));
  }
  disk_write_drop(m);
}

static void start_run(struct mailbox_run *r, int run);

/*
 * Under the lock: the file held nothing usable (or was not read). The
 * entry's synthesis starts instead, unless nobody wants it any more; the
 * read's message becomes the start closure. Returns 1 when it did not:
 * the caller then frees m and lets go of its cache reference, unlocked.
 */
static int load_failed(struct ttscache *c, struct tc_entry *e, struct tc_msg *m) {
  if (e->loader) count(&c->misses);
  e->loader = 0;
  if (c->closed || (!e->waiters && !e->warm)) {
    fan_end(e, "the TTS cache is closing", 0);
    table_remove(c, e);
    entry_unref_locked(e);
    return 1;
  }
  e->state = E_SYNTH;
  m->run.hdr.type = MAILBOX_RUN;
  m->run.fn = start_run;
  mailbox_post(c->control, &m->run.hdr);
  return 0;
}

/* The pool is shutting down: nothing read, nothing deleted. */
static void disk_read_drop(void *arg) {
  struct tc_msg *m = arg;
  struct ttscache *c = m->c;
  uv_mutex_lock(&c->lock);
  int drop = load_failed(c, m->e, m);
  uv_mutex_unlock(&c->lock);
  if (drop) {
    msg_free(m);
    cache_unref(c);
  }
}

static void disk_read(void *arg) {
  struct tc_msg *m = arg;
  struct ttscache *c = m->c;
  struct tc_entry *e = m->e; /* its hash and key never change */
  char path[4096];
  file_name(c, e->hash, path, sizeof path);
  unsigned char *buf = NULL;
  size_t len = 0;
  int rc = read_all(path, &buf, &len);
  struct tc_audio *a = rc == 0 ? decode(buf, len, e->key, e->keylen) : NULL;
  free(buf);
  int bad = rc == 0 && !a;
  if (bad) {
    log_warn("engines", "tts cache: %s is damaged or holds another phrase; made again", path);
    unlink(path);
  }
  if (a) utimensat(AT_FDCWD, path, NULL, 0); /* its use, for the order after a restart */
  uv_mutex_lock(&c->lock);
  struct tc_file *f = file_find(c, e->hash);
  if (a) {
    if (f) {
      file_unlink(f);
      file_front(&c->flru, f);
    }
    if (e->loader) count(&c->hits_disk);
    e->audio = a;
    e->state = E_READY;
    fan_play(e);
    mem_keep(c, e);
    entry_unref_locked(e);
  } else {
    if (bad) count(&c->corrupt);
    if (f && (bad || rc == -ENOENT)) file_remove(c, f);
    if (!load_failed(c, e, m)) m = NULL;
  }
  uv_mutex_unlock(&c->lock);
  if (m) {
    msg_free(m);
    cache_unref(c);
  }
}

/* ---- syntheses, on the control loop ---- */

/* Lets go of an entry's synthesis: its job, and the references it held. */
static void flight_end(struct ttscache *c, struct tc_entry *e) {
  if (!e->bjob) return;
  struct tts_job *j = e->bjob;
  e->bjob = NULL;
  e->fprev->fnext = e->fnext;
  e->fnext->fprev = e->fprev;
  e->fprev = e->fnext = NULL;
  eng_job_release(&j->job);
  entry_unref(c, e);
  cache_unref(c);
}

static void b_audio(void *user, const int16_t *pcm, size_t n, int rate) {
  struct tc_entry *e = user;
  struct ttscache *c = e->cache;
  uv_mutex_lock(&c->lock);
  if (!e->abandoned && n) {
    struct tc_audio *a = e->audio;
    size_t have = a ? a->n : 0;
    if (a && have && a->rate != rate) e->uncacheable = 1;
    if (!e->uncacheable && (!a || have + n > a->cap)) {
      size_t cap = a ? a->cap * 2 : 0;
      if (cap < have + n) cap = have + n;
      struct tc_audio *b = realloc(a, sizeof *b + cap * sizeof b->pcm[0]);
      if (!b) {
        e->uncacheable = 1;
      } else {
        if (!a) {
          atomic_init(&b->refs, 1);
          b->n = 0;
        }
        b->cap = cap;
        e->audio = a = b;
      }
    }
    if (!e->uncacheable) {
      memcpy(a->pcm + a->n, pcm, n * sizeof *pcm);
      a->n += n;
      a->rate = rate;
    } else {
      table_remove(c, e); /* a late request could not be given the start: it synthesises anew */
    }
    fan_audio(e, pcm, n, rate);
  }
  uv_mutex_unlock(&c->lock);
}

/* Done (message NULL) or failed: tell the waiters, keep the audio if it is whole. */
static void b_end(struct tc_entry *e, const char *message) {
  struct ttscache *c = e->cache;
  struct tc_msg *w = NULL;
  uv_mutex_lock(&c->lock);
  if (!e->abandoned) {
    fan_end(e, message, e->bjob && atomic_load(&e->bjob->job.timed_out));
    int keep = !message && !e->uncacheable && e->audio && e->audio->n && !c->closed;
    if (keep) {
      struct tc_audio *a = e->audio;
      if (a->cap > a->n) {
        struct tc_audio *b = realloc(a, sizeof *b + a->n * sizeof b->pcm[0]);
        if (b) e->audio = a = b;
        a->cap = a->n;
      }
      if (c->dir && entry_bytes(e) + TC_HEADER <= c->disk_bound && (w = calloc(1, sizeof *w)) &&
          (w->key = malloc(e->keylen))) {
        w->c = c;
        w->audio = audio_ref(a);
        memcpy(w->key, e->key, e->keylen);
        w->keylen = e->keylen;
        w->hash = e->hash;
        cache_ref(c);
      } else if (w) {
        free(w);
        w = NULL;
      }
      mem_keep(c, e);
    } else {
      table_remove(c, e);
    }
  }
  uv_mutex_unlock(&c->lock);
  if (w && pool_submit(c->pool, disk_write, disk_write_drop, w) != 0) disk_write_drop(w);
  flight_end(c, e);
}

static void b_done(void *user) { b_end(user, NULL); }

static void b_error(void *user, const char *message) {
  b_end(user, message && *message ? message : "speech synthesis failed");
}

static void start_run(struct mailbox_run *r, int run) {
  struct tc_msg *m = (struct tc_msg *)r;
  struct ttscache *c = m->c;
  struct tc_entry *e = m->e;
  uv_mutex_lock(&c->lock);
  int go = run && !c->closed && !e->abandoned;
  if (!go) {
    fan_end(e, "the TTS cache is closing", 0);
    table_remove(c, e);
  }
  uv_mutex_unlock(&c->lock);
  if (go) {
    struct tts_params p = {e->text, e->language, e->voice, e->rate};
    struct tts_cb cb = {b_audio, b_done, b_error, e};
    int rc = e->be->speak(e->engine, &p, c->control, &cb, &e->bjob);
    if (rc == 0) {
      /* The closure's references are the synthesis's now. */
      e->fnext = c->flying.fnext;
      e->fprev = &c->flying;
      c->flying.fnext->fprev = e;
      c->flying.fnext = e;
      count(&c->syntheses);
      msg_free(m);
      return;
    }
    e->bjob = NULL;
    char msg[128];
    snprintf(msg, sizeof msg, "%s: could not start synthesis (%s)", e->be->name, strerror(-rc));
    uv_mutex_lock(&c->lock);
    fan_end(e, msg, 0);
    table_remove(c, e);
    uv_mutex_unlock(&c->lock);
  }
  entry_unref(c, e);
  msg_free(m);
  cache_unref(c);
}

static void cancel_run(struct mailbox_run *r, int run) {
  struct tc_msg *m = (struct tc_msg *)r;
  struct ttscache *c = m->c;
  struct tc_entry *e = m->e;
  (void)run; /* either way the synthesis goes: the loop is its home */
  flight_end(c, e);
  entry_unref(c, e);
  msg_free(m);
  cache_unref(c);
}

/* Under the lock: nobody will hear it; keep nothing of it and stop it on the control loop. */
static void abandon(struct ttscache *c, struct tc_entry *e) {
  e->abandoned = 1;
  table_remove(c, e);
  struct tc_msg *m = calloc(1, sizeof *m);
  if (!m) return; /* it runs to its end, unheard and unkept */
  m->run.hdr.type = MAILBOX_RUN;
  m->run.fn = cancel_run;
  m->c = c;
  m->e = e;
  e->refs++;
  cache_ref(c);
  mailbox_post(c->control, &m->run.hdr);
}

/* The requester's release, on its home thread. */
static void job_cancel(struct eng_job *j) {
  struct tc_job *w = (struct tc_job *)j;
  struct ttscache *c = w->cache;
  uv_mutex_lock(&c->lock);
  struct tc_entry *e = w->entry;
  if (e) {
    waiter_remove(w);
    if (!e->waiters && !e->warm && e->state == E_SYNTH && !e->abandoned) abandon(c, e);
  }
  uv_mutex_unlock(&c->lock);
}

/* ---- requests ---- */

static int is_space(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* The text trimmed, each run of whitespace one space; NULL (errno-free) when blank or no memory. */
static char *normalise(const char *text, int *blank) {
  size_t len = text ? strlen(text) : 0, o = 0;
  char *out = malloc(len + 1);
  *blank = 0;
  if (!out) return NULL;
  for (size_t i = 0; i < len; i++) {
    if (!is_space(text[i])) out[o++] = text[i];
    else if (o && !is_space(text[i + 1]) && text[i + 1]) out[o++] = ' ';
  }
  out[o] = '\0';
  if (o == 0) {
    *blank = 1;
    free(out);
    return NULL;
  }
  return out;
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

/* A new entry for p: its key, and what its synthesis will need. */
static int entry_new(struct tc_entry **out, struct ttscache *c, const struct ttscache_src *src,
                     const struct tts_params *p) {
  int blank;
  char *text = normalise(p->text, &blank);
  if (!text) return blank ? -ENOTSUP : -ENOMEM;
  struct tc_entry *e = calloc(1, sizeof *e);
  if (!e) {
    free(text);
    return -ENOMEM;
  }
  e->text = text;
  e->cache = c;
  e->be = src->be;
  e->engine = src->engine;
  e->rate = p->rate;
  e->voice = dup_or_empty(p->voice);
  e->language = dup_or_empty(p->language);
  /* Fields apart by the unit separator, which no name or setting holds. */
  const char *model = src->model ? src->model : "", *voice = src->voice ? src->voice : "";
  int n = -1;
  if (e->voice && e->language)
    n = snprintf(NULL, 0, "%s\x1f%s\x1f%s\x1f%d\x1f%s\x1f%s", src->be->name, model, voice,
                 src->rate, e->language, text);
  if (n > 0 && (e->key = malloc((size_t)n + 1)))
    snprintf(e->key, (size_t)n + 1, "%s\x1f%s\x1f%s\x1f%d\x1f%s\x1f%s", src->be->name, model,
             voice, src->rate, e->language, text);
  if (!e->key) {
    entry_free(e);
    return -ENOMEM;
  }
  e->keylen = (size_t)n;
  e->hash = fnv(FNV_START, e->key, e->keylen);
  *out = e;
  return 0;
}

/*
 * Under the lock: a new entry, linked, starts: read from its file if the
 * index knows one, else synthesised. m becomes the pool item or closure.
 * Returns 1 when the pool item is to be submitted once the lock is let go.
 */
static int begin(struct ttscache *c, struct tc_entry *e, struct tc_msg *m, int request,
                 enum ttscache_how *how) {
  m->c = c;
  m->e = e;
  e->refs++;
  cache_ref(c);
  if (c->dir && file_find(c, e->hash)) {
    e->state = E_LOADING;
    e->loader = request;
    *how = TTSCACHE_HIT_DISK;
    return 1;
  }
  e->state = E_SYNTH;
  if (request) count(&c->misses);
  *how = TTSCACHE_MISS;
  m->run.hdr.type = MAILBOX_RUN;
  m->run.fn = start_run;
  mailbox_post(c->control, &m->run.hdr);
  return 0;
}

static void submit_read(struct ttscache *c, struct tc_msg *m) {
  if (pool_submit(c->pool, disk_read, disk_read_drop, m) != 0) disk_read_drop(m);
}

/* Under the lock: a request joins e's read or synthesis, with the audio it missed. */
static void join(struct ttscache *c, struct tc_entry *e, struct tc_job *w) {
  waiter_add(e, w);
  count(&c->joined);
  const struct tc_audio *a = e->audio;
  if (e->state != E_SYNTH || !a || !a->n) return;
  struct tc_chunk *ch = malloc(sizeof *ch + a->n * sizeof ch->pcm[0]);
  if (!ch) {
    waiter_remove(w);
    eng_job_post(&w->base.job, job_error, NULL);
    return;
  }
  ch->rate = a->rate;
  ch->n = a->n;
  memcpy(ch->pcm, a->pcm, a->n * sizeof a->pcm[0]);
  eng_job_post(&w->base.job, job_audio, ch);
}

static struct tc_job *job_new(struct ttscache *c, const struct tts_backend *be,
                              struct mailbox *home, const struct tts_cb *cb) {
  struct tc_job *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  eng_job_init(&w->base.job, home, job_destroy);
  w->base.job.on_cancel = job_cancel;
  w->base.be = be;
  w->base.cb = *cb;
  w->cache = c;
  cache_ref(c);
  return w;
}

/* Under the lock: a memory hit. The first audio leaves now, for the requester's next tick. */
static int hit(struct ttscache *c, struct tc_entry *e, struct tc_job *w) {
  list_unlink(e);
  list_front(&c->lru, e);
  w->audio = audio_ref(e->audio);
  count(&c->hits_memory);
  return eng_job_post(&w->base.job, job_play, NULL);
}

/*
 * Speak and warm share one lookup: under the lock, a finished phrase (a
 * hit for a requester, nothing to do for a warm-up), one being made (joined;
 * a warm-up marks it to be finished even if its requesters leave), or a new
 * entry begun. `w` is NULL for a warm-up. Takes `ne` and `m` when it adds
 * the entry (they are NULLed), and submits the disk read that may need.
 */
static int lookup(struct ttscache *c, struct tc_entry **ne, struct tc_msg **m, struct tc_job *w,
                  enum ttscache_how *how) {
  struct tc_msg *item = NULL;
  int rc = 0;
  uv_mutex_lock(&c->lock);
  struct tc_entry *e = c->closed ? NULL : table_find(c, (*ne)->hash, (*ne)->key, (*ne)->keylen);
  if (c->closed) {
    rc = -ESHUTDOWN;
  } else if (e && e->state == E_READY) {
    *how = TTSCACHE_HIT_MEMORY;
    if (w) rc = hit(c, e, w);
  } else if (e) {
    *how = TTSCACHE_JOINED;
    if (w) join(c, e, w);
    else e->warm = 1;
  } else {
    table_add(c, *ne);
    if (w) {
      waiter_add(*ne, w);
    } else {
      (*ne)->warm = 1;
      count(&c->warmups);
    }
    if (begin(c, *ne, *m, w != NULL, how)) item = *m;
    *ne = NULL;
    *m = NULL;
  }
  uv_mutex_unlock(&c->lock);
  if (item) submit_read(c, item);
  return rc;
}

int ttscache_speak(struct ttscache *c, const struct ttscache_src *src, const struct tts_params *p,
                   struct mailbox *home, const struct tts_cb *cb, struct tts_job **out,
                   enum ttscache_how *how) {
  struct tc_entry *ne = NULL;
  int rc = entry_new(&ne, c, src, p);
  if (rc) return rc;
  struct tc_msg *m = calloc(1, sizeof *m);
  struct tc_job *w = m ? job_new(c, src->be, home, cb) : NULL;
  if (!w) {
    entry_free(ne);
    free(m);
    return -ENOMEM;
  }
  rc = lookup(c, &ne, &m, w, how);
  if (ne) entry_free(ne);
  free(m);
  if (rc) {
    eng_job_unref(&w->base.job);
    return rc;
  }
  *out = &w->base;
  return 0;
}

int ttscache_warm(struct ttscache *c, const struct ttscache_src *src, const struct tts_params *p,
                  enum ttscache_how *how) {
  struct tc_entry *ne = NULL;
  int rc = entry_new(&ne, c, src, p);
  if (rc) return rc;
  struct tc_msg *m = calloc(1, sizeof *m);
  if (!m) {
    entry_free(ne);
    return -ENOMEM;
  }
  rc = lookup(c, &ne, &m, NULL, how);
  if (ne) entry_free(ne);
  free(m);
  return rc;
}

/* ---- opening and closing ---- */

struct found {
  uint64_t hash;
  size_t bytes;
  struct timespec mtime;
};

static int older(const void *a, const void *b) {
  const struct timespec *x = &((const struct found *)a)->mtime;
  const struct timespec *y = &((const struct found *)b)->mtime;
  if (x->tv_sec != y->tv_sec) return x->tv_sec < y->tv_sec ? -1 : 1;
  return (x->tv_nsec > y->tv_nsec) - (x->tv_nsec < y->tv_nsec);
}

/* "0123456789abcdef.tts" -> its hash; -1 for any other name. */
static int parse_name(const char *name, uint64_t *hash) {
  if (strlen(name) != TC_NAME_LEN || strcmp(name + 16, ".tts") != 0) return -1;
  uint64_t h = 0;
  for (int i = 0; i < 16; i++) {
    char ch = name[i];
    int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
    if (d < 0) return -1;
    h = (h << 4) | (uint64_t)d;
  }
  *hash = h;
  return 0;
}

static int ends_with(const char *s, const char *tail) {
  size_t n = strlen(s), k = strlen(tail);
  return n >= k && strcmp(s + n - k, tail) == 0;
}

/*
 * The index of the files already there, least recently used first (by
 * modification time, which a read renews). Temporary files are what a
 * crash left mid-write: deleted.
 */
static int scan(struct ttscache *c) {
  DIR *d = opendir(c->dir);
  if (!d) return -errno;
  struct found *list = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  for (struct dirent *de; rc == 0 && (de = readdir(d));) {
    uint64_t hash;
    struct stat st;
    if (ends_with(de->d_name, ".tmp")) {
      unlinkat(dirfd(d), de->d_name, 0);
      continue;
    }
    if (parse_name(de->d_name, &hash) || fstatat(dirfd(d), de->d_name, &st, 0) ||
        !S_ISREG(st.st_mode))
      continue;
    if (n == cap) {
      struct found *more = realloc(list, (cap ? cap * 2 : 64) * sizeof *list);
      if (!more) {
        rc = -ENOMEM;
        break;
      }
      list = more;
      cap = cap ? cap * 2 : 64;
    }
    list[n++] = (struct found){hash, (size_t)st.st_size, st.st_mtim};
  }
  closedir(d);
  if (n) qsort(list, n, sizeof *list, older);
  for (size_t i = 0; i < n && rc == 0; i++) rc = file_note(c, list[i].hash, list[i].bytes);
  free(list);
  return rc;
}

/* The disk tier's directory, made if missing; 0, or the tier is left off. */
static int open_dir(struct ttscache *c, const char *dir) {
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    log_warn("engines", "tts cache: cannot make %s (%s); no disk tier", dir, strerror(errno));
    return 0;
  }
  if (!(c->dir = strdup(dir))) return -ENOMEM;
  int rc = scan(c);
  if (rc == -ENOMEM) return rc;
  if (rc) {
    log_warn("engines", "tts cache: cannot read %s (%s); no disk tier", dir, strerror(-rc));
    free(c->dir);
    c->dir = NULL;
    return 0;
  }
  disk_enforce(c); /* the bound may have shrunk since the last run */
  return 0;
}

int ttscache_new(struct ttscache **out, const struct ttscache_opts *o, char *err, size_t errlen) {
  if (!o->control) {
    snprintf(err, errlen, "tts cache: needs the control loop");
    return -EINVAL;
  }
  struct ttscache *c = calloc(1, sizeof *c);
  if (!c || uv_mutex_init(&c->lock)) {
    free(c);
    snprintf(err, errlen, "tts cache: out of memory");
    return -ENOMEM;
  }
  atomic_init(&c->refs, 1);
  c->mem_bound = o->mem_bytes;
  c->disk_bound = o->disk_bytes;
  c->pool = o->pool;
  c->control = o->control;
  c->lru.next = c->lru.prev = &c->lru;
  c->flru.next = c->flru.prev = &c->flru;
  c->flying.fnext = c->flying.fprev = &c->flying;
  int rc = 0;
  if (o->disk_bytes && o->pool && o->dir && *o->dir) rc = open_dir(c, o->dir);
  if (rc) {
    snprintf(err, errlen, "tts cache: out of memory");
    cache_unref(c);
    return rc;
  }
  *out = c;
  return 0;
}

void ttscache_free(struct ttscache *c) {
  if (!c) return;
  uv_mutex_lock(&c->lock);
  c->closed = 1;
  for (size_t b = 0; b < TC_BUCKETS; b++)
    for (struct tc_entry *e = c->table[b]; e; e = e->hnext)
      fan_end(e, "the TTS cache is closing", 0);
  uv_mutex_unlock(&c->lock);
  while (c->flying.fnext != &c->flying) flight_end(c, c->flying.fnext);
  cache_unref(c);
}

/* ---- metrics ---- */

static double load(const _Atomic uint64_t *v) {
  return (double)atomic_load_explicit(v, memory_order_relaxed);
}

void ttscache_write_metrics(struct ttscache *c, struct prom_buf *b) {
  uv_mutex_lock(&c->lock);
  double mem_bytes = (double)c->mem_bytes, mem_entries = (double)c->mem_entries;
  double disk_bytes = (double)c->disk_bytes, disk_entries = (double)c->disk_entries;
  uv_mutex_unlock(&c->lock);
  const char *n = "tingshuo_tts_cache_hits_total";
  prom_family(b, n, "counter", "TTS requests served from finished audio, by the tier it was in.");
  prom_sample(b, n, load(&c->hits_memory), "tier", "memory", NULL);
  prom_sample(b, n, load(&c->hits_disk), "tier", "disk", NULL);
  n = "tingshuo_tts_cache_misses_total";
  prom_family(b, n, "counter", "TTS requests for a phrase the cache did not have: synthesised.");
  prom_sample(b, n, load(&c->misses), NULL);
  n = "tingshuo_tts_cache_joined_total";
  prom_family(b, n, "counter",
              "TTS requests that shared a synthesis or a file read already under way.");
  prom_sample(b, n, load(&c->joined), NULL);
  n = "tingshuo_tts_cache_warmups_total";
  prom_family(b, n, "counter", "Phrases put in the cache ahead of use (a synthesis or a read).");
  prom_sample(b, n, load(&c->warmups), NULL);
  n = "tingshuo_tts_cache_syntheses_total";
  prom_family(b, n, "counter", "Syntheses the cache started (misses and warm-ups).");
  prom_sample(b, n, load(&c->syntheses), NULL);
  n = "tingshuo_tts_cache_evictions_total";
  prom_family(b, n, "counter", "Phrases dropped from a tier to keep it within its bound.");
  prom_sample(b, n, load(&c->evict_memory), "tier", "memory", NULL);
  prom_sample(b, n, load(&c->evict_disk), "tier", "disk", NULL);
  n = "tingshuo_tts_cache_corrupt_files_total";
  prom_family(b, n, "counter", "Cache files found damaged or holding another phrase: deleted.");
  prom_sample(b, n, load(&c->corrupt), NULL);
  n = "tingshuo_tts_cache_bytes";
  prom_family(b, n, "gauge", "Bytes of speech (and keys) held, by tier; files with headers.");
  prom_sample(b, n, mem_bytes, "tier", "memory", NULL);
  prom_sample(b, n, disk_bytes, "tier", "disk", NULL);
  n = "tingshuo_tts_cache_entries";
  prom_family(b, n, "gauge", "Phrases held, by tier.");
  prom_sample(b, n, mem_entries, "tier", "memory", NULL);
  prom_sample(b, n, disk_entries, "tier", "disk", NULL);
}
