/*
 * store: the store's thread, its queue of writes and its queue of reads.
 *
 * Callers never touch the database. A writer copies its event into the
 * queue under the mutex and signals the condition variable; the thread
 * wakes, opens a transaction, takes everything waiting (up to BATCH_MAX)
 * and writes it, so a turn reaches the database moments after it was
 * queued and a SIGKILL of the server loses at most what was queued in
 * those moments. The transaction is opened *before* the batch is taken:
 * while the database is locked or unreachable, no event is held by the
 * thread, every one of them is waiting and the bound drops exactly the
 * oldest waiting turns.
 *
 * When a write fails the batch goes back to the front of the queue and is
 * tried again after a back-off (100 ms doubling to 5 s); a lost
 * PostgreSQL connection is reconnected on the same schedule. An event the
 * database refuses outright (a turn of a call it has never heard of) is
 * dropped alone, counted and logged, and the rest of the batch goes ahead,
 * so one bad event cannot stall the queue.
 *
 * Reads wait in their own queue, which the thread serves before a backlog
 * of writes: a read never waits for more than one transaction. When what
 * is queued fits one transaction and the database answers, it is written
 * first, so a read sees every event queued before it; behind a larger
 * backlog (after an outage) or while writes are failing, the read goes
 * first and may not see the newest events. Each read is one allocation
 * that goes to the thread, gets its answer, and returns to the caller's
 * loop as a mailbox closure; whatever path it takes it is answered exactly
 * once. While the database is down a read is answered -EIO at once,
 * without reaching the thread.
 *
 * The first time the database answers (in store_open, or later for a
 * PostgreSQL server that was down at start) the migrations run, and then
 * the calls this node left open in a crash are closed, before any queued
 * event is written, so a call begun by this run is never mistaken for one.
 */
#include "store/store.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mailbox.h"
#include "store/db.h"
#include "store/queue.h"
#include "store/reads.h"
#include "store/schema.h"
#include "store/writes.h"

#define BATCH_MAX 500
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define PURGE_CHUNK 500
#define PURGE_EVERY_MS (24 * 3600 * 1000ULL)
#define PURGE_RETRY_MS 60000
#define DAY_MS (24 * 3600 * 1000LL)

enum read_kind { READ_LIST, READ_GET, READ_DELETE };

struct read_req {
  struct mailbox_run run; /* how the answer goes back to the loop */
  struct read_req *next;  /* the store's read queue */
  enum read_kind kind;
  struct store_list_args list;
  char *call_id;
  store_result_cb cb;
  void *user;
  int status;
  json_t *result;
};

struct store {
  struct mailbox *mb; /* answers to reads, to the loop given to store_open */
  struct config cfg;
  char node[256];
  struct db *db;
  uv_thread_t thread;

  uv_mutex_t lock; /* everything from here to the next comment */
  uv_cond_t wake;
  struct store_queue q;
  struct read_req *reads, *reads_tail;
  int stopping;
  uint64_t flush_until;
  int connected;
  uint64_t written, errors, purged;

  /* Only the store's thread. */
  int prepared, failing;
  uint64_t retry_at, backoff_ms, purge_at, purge_round;
};

static int64_t wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ---- answering reads ------------------------------------------------------------------- */

static void read_free(struct read_req *r) {
  store_list_args_free(&r->list);
  free(r->call_id);
  json_decref(r->result);
  free(r);
}

/* On the loop: the caller's callback, once; a closing mailbox makes it -ECANCELED. */
static void deliver(struct mailbox_run *self, int run) {
  struct read_req *r = (struct read_req *)self;
  json_t *result = r->result;
  r->result = NULL;
  if (!run || r->status) {
    json_decref(result);
    result = NULL;
  }
  r->cb(r->user, run ? r->status : -ECANCELED, result);
  read_free(r);
}

/* From any thread while the mailbox is open. */
static void answer(struct store *st, struct read_req *r, int status, json_t *result) {
  r->status = status;
  r->result = result;
  r->run.hdr.type = MAILBOX_RUN;
  r->run.fn = deliver;
  mailbox_post(st->mb, &r->run.hdr);
}

/* ---- the database's state -------------------------------------------------------------- */

static void set_connected(struct store *st, int connected) {
  uv_mutex_lock(&st->lock);
  st->connected = connected;
  uv_mutex_unlock(&st->lock);
}

static void count_error(struct store *st) {
  uv_mutex_lock(&st->lock);
  st->errors++;
  uv_mutex_unlock(&st->lock);
}

static void schedule_retry(struct store *st) {
  st->backoff_ms = st->backoff_ms ? st->backoff_ms * 2 : BACKOFF_MIN_MS;
  if (st->backoff_ms > BACKOFF_MAX_MS) st->backoff_ms = BACKOFF_MAX_MS;
  st->retry_at = db_now_ms() + st->backoff_ms;
}

static size_t waiting(struct store *st) {
  uv_mutex_lock(&st->lock);
  size_t n = st->q.waiting + st->q.writing;
  uv_mutex_unlock(&st->lock);
  return n;
}

/*
 * A database operation failed: count it, log it (a warning the first time,
 * until the database answers again), notice a connection that is gone,
 * and schedule the retry. `why` is NULL for the database's own message.
 */
static void failed(struct store *st, const char *what, const char *why) {
  count_error(st);
  if (!why) why = db_error(st->db);
  if (!st->failing)
    log_warn("store", "%s failed on %s: %s; %zu record event(s) wait, retrying", what,
             db_describe(st->db), why, waiting(st));
  else
    log_debug("store", "%s failed again: %s", what, why);
  st->failing = 1;
  if (!db_alive(st->db)) set_connected(st, 0);
  schedule_retry(st);
}

static void recovered(struct store *st) {
  if (st->failing) log_info("store", "%s answers again", db_describe(st->db));
  st->failing = 0;
  st->backoff_ms = 0;
  st->retry_at = 0;
}

/* Migrations and crash recovery, once per run, on the first connection. */
static int prepare(struct store *st, char *err, size_t errlen) {
  if (st->prepared) return 0;
  int rc = schema_migrate(st->db, err, errlen);
  if (rc) return rc;
  int64_t closed = 0;
  rc = store_recover_calls(st->db, st->node, &closed);
  if (rc) {
    snprintf(err, errlen, "closing calls left open: %s", db_error(st->db));
    return rc;
  }
  if (closed)
    log_info("store", "%lld call(s) of %s left open by a crash are now ended (\"%s\")",
             (long long)closed, st->node, STORE_REASON_STOPPED);
  st->prepared = 1;
  return 0;
}

static void try_connect(struct store *st) {
  char err[512] = "";
  int rc = db_alive(st->db) ? 0 : db_reconnect(st->db);
  if (!rc) rc = prepare(st, err, sizeof err);
  if (rc == -ENOTSUP && !st->failing) log_error("store", "%s", err);
  if (rc) {
    failed(st, "connecting", *err ? err : NULL);
    return;
  }
  set_connected(st, 1);
  recovered(st);
}

/* ---- writing --------------------------------------------------------------------------- */

static const char *kind_name(enum store_event_kind k) {
  return k == EV_CALL_BEGIN ? "call begin" : k == EV_CALL_CONNECTED ? "call connected"
         : k == EV_CALL_END ? "call end" : "turn";
}

/* Takes `ev` out of the batch list for good: the database refused it. */
static void refuse(struct store *st, struct store_event **link) {
  struct store_event *ev = *link;
  *link = ev->next;
  log_call_warn("store", ev->kind == EV_TURN ? ev->turn.call_id : ev->call.id,
                "its %s record was refused and dropped: %s", kind_name(ev->kind), db_error(st->db));
  free(ev);
  uv_mutex_lock(&st->lock);
  store_queue_done(&st->q, 1);
  st->errors++;
  uv_mutex_unlock(&st->lock);
}

/* Runs the batch inside the open transaction: 0, or the failure with *bad at the event. */
static int write_all(struct store *st, struct store_event **batch, struct store_event ***bad) {
  int64_t now = wall_ms();
  for (struct store_event **link = batch; *link; link = &(*link)->next) {
    int rc = store_write_event(st->db, *link, now);
    if (rc) {
      *bad = link;
      return rc;
    }
  }
  return db_commit(st->db);
}

/* One transaction: 0 when it was written (or an event refused), -EIO when it must wait. */
static int write_batch(struct store *st) {
  if (db_begin(st->db)) {
    failed(st, "writing records", NULL);
    return -EIO;
  }
  struct store_event *batch, **bad = NULL;
  uv_mutex_lock(&st->lock);
  size_t n = store_queue_take(&st->q, BATCH_MAX, &batch);
  uv_mutex_unlock(&st->lock);
  int rc = write_all(st, &batch, &bad);
  if (rc) db_rollback(st->db);
  if (rc == -EINVAL && bad) { /* that one event, not the database: drop it, retry the rest */
    refuse(st, bad);
    n--;
  }
  uv_mutex_lock(&st->lock);
  if (rc) store_queue_unget(&st->q, batch, n);
  else {
    store_queue_done(&st->q, n);
    st->written += n;
  }
  uv_mutex_unlock(&st->lock);
  if (!rc) {
    for (struct store_event *ev = batch, *next; ev; ev = next) {
      next = ev->next;
      free(ev);
    }
    recovered(st);
    return 0;
  }
  if (rc == -EINVAL && bad) return 0;
  failed(st, "writing records", NULL);
  return -EIO;
}

/* ---- retention ------------------------------------------------------------------------- */

static void purge_some(struct store *st) {
  int64_t cutoff = wall_ms() - (int64_t)st->cfg.retention_days * DAY_MS;
  int n = 0;
  if (store_purge_calls(st->db, &st->cfg, cutoff, PURGE_CHUNK, &n)) {
    failed(st, "purging old calls", NULL);
    st->purge_at = db_now_ms() + PURGE_RETRY_MS;
    return;
  }
  uv_mutex_lock(&st->lock);
  st->purged += (uint64_t)n;
  uv_mutex_unlock(&st->lock);
  st->purge_round += (uint64_t)n;
  if (n == PURGE_CHUNK) return; /* more to do; reads and writes get a turn first */
  if (st->purge_round)
    log_info("store", "retention: purged %llu call(s) older than %d days",
             (unsigned long long)st->purge_round, st->cfg.retention_days);
  st->purge_round = 0;
  st->purge_at = db_now_ms() + PURGE_EVERY_MS;
}

/* ---- the thread ------------------------------------------------------------------------ */

static void serve_read(struct store *st, struct read_req *r) {
  json_t *result = NULL;
  int rc = -EIO;
  uv_mutex_lock(&st->lock);
  int up = st->connected;
  uv_mutex_unlock(&st->lock);
  if (up && r->kind == READ_LIST) rc = store_read_list(st->db, &st->cfg, &r->list, &result);
  else if (up && r->kind == READ_GET) rc = store_read_get(st->db, &st->cfg, r->call_id, &result);
  else if (up) rc = store_read_delete(st->db, &st->cfg, r->call_id, &result);
  if (up && rc == -EIO) failed(st, "reading records", NULL);
  answer(st, r, rc, result);
}

enum work { WORK_NONE, WORK_READ, WORK_CONNECT, WORK_WRITE, WORK_PURGE };

/* Under the lock: what to do now, or how long to sleep (*sleep_ms, 0 = until woken). */
static enum work next_work(struct store *st, uint64_t *sleep_ms) {
  uint64_t now = db_now_ms(), until = 0;
  *sleep_ms = 0;
  int retry_due = now >= st->retry_at;
  if (st->reads) {
    int small = st->q.waiting > 0 && st->q.waiting <= BATCH_MAX;
    return st->connected && retry_due && small ? WORK_WRITE : WORK_READ;
  }
  if (!st->connected) {
    if (retry_due) return WORK_CONNECT;
    until = st->retry_at;
  } else {
    if (st->q.waiting && retry_due) return WORK_WRITE;
    if (st->q.waiting) until = st->retry_at;
    if (st->cfg.retention_days > 0) {
      if (now >= st->purge_at && retry_due) return WORK_PURGE;
      uint64_t at = st->purge_at > st->retry_at ? st->purge_at : st->retry_at;
      if (!until || at < until) until = at;
    }
  }
  if (until) *sleep_ms = until > now ? until - now : 1;
  return WORK_NONE;
}

static struct read_req *pop_read(struct store *st) {
  struct read_req *r = st->reads;
  if (r) st->reads = r->next;
  if (!st->reads) st->reads_tail = NULL;
  return r;
}

static void cancel_reads(struct store *st) {
  uv_mutex_lock(&st->lock);
  struct read_req *list = st->reads;
  st->reads = st->reads_tail = NULL;
  uv_mutex_unlock(&st->lock);
  for (struct read_req *r = list, *next; r; r = next) {
    next = r->next;
    answer(st, r, -ECANCELED, NULL);
  }
}

/* At close: write what waits until the queue is empty, a write fails or time is up. */
static void flush(struct store *st) {
  for (;;) {
    uv_mutex_lock(&st->lock);
    int more = st->q.waiting > 0 && st->connected && db_now_ms() < st->flush_until;
    uv_mutex_unlock(&st->lock);
    if (!more || write_batch(st)) break;
  }
  uv_mutex_lock(&st->lock);
  size_t lost = store_queue_clear(&st->q);
  uv_mutex_unlock(&st->lock);
  if (lost) log_warn("store", "%zu record event(s) could not be written before stopping", lost);
}

static void thread_main(void *arg) {
  struct store *st = arg;
  uv_mutex_lock(&st->lock);
  while (!st->stopping) {
    uint64_t sleep_ms;
    enum work w = next_work(st, &sleep_ms);
    struct read_req *r = w == WORK_READ ? pop_read(st) : NULL;
    if (w == WORK_NONE) {
      if (sleep_ms) uv_cond_timedwait(&st->wake, &st->lock, sleep_ms * 1000000ULL);
      else uv_cond_wait(&st->wake, &st->lock);
      continue;
    }
    uv_mutex_unlock(&st->lock);
    if (r) serve_read(st, r);
    else if (w == WORK_CONNECT) try_connect(st);
    else if (w == WORK_WRITE) (void)write_batch(st);
    else purge_some(st);
    uv_mutex_lock(&st->lock);
  }
  uv_mutex_unlock(&st->lock);
  cancel_reads(st);
  flush(st);
}

/* ---- open and close -------------------------------------------------------------------- */

/* mkdir -p */
static int make_dirs(const char *path) {
  char buf[PATH_MAX];
  if (!*path) return -EINVAL;
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -ENAMETOOLONG;
  for (char *p = buf + 1;; p++) {
    if (*p && *p != '/') continue;
    char c = *p;
    *p = '\0';
    if (mkdir(buf, 0700) && errno != EEXIST) return -errno;
    if (!c) return 0;
    *p = c;
  }
}

static void drop_msg(struct mailbox_msg *msg) { free(msg); }
static void ignore_msg(struct mailbox *mb, struct mailbox_msg *msg, void *user) { free(msg); }

static void destroy(struct store *st) {
  if (st->mb) mailbox_close(st->mb, drop_msg);
  db_close(st->db);
  uv_mutex_destroy(&st->lock);
  uv_cond_destroy(&st->wake);
  free(st);
}

static int open_db(struct store *st, char *err, size_t errlen) {
  char path[PATH_MAX + 32];
  const char *target = st->cfg.database_url;
  if (!*target) {
    int rc = make_dirs(st->cfg.data_dir);
    if (rc) {
      snprintf(err, errlen, "cannot create data_dir %s: %s", st->cfg.data_dir, strerror(-rc));
      return rc;
    }
    snprintf(path, sizeof path, "%s/tingshuo.db", st->cfg.data_dir);
    target = path;
  }
  int rc = db_open(&st->db, target, err, errlen);
  if (rc) return rc;
  if (!db_alive(st->db)) {
    log_warn("store", "%s does not answer (%s); records wait in the queue until it does",
             db_describe(st->db), db_error(st->db));
    return 0;
  }
  rc = prepare(st, err, errlen);
  if (!rc) st->connected = 1;
  if (rc && rc != -ENOTSUP && !db_alive(st->db)) {
    log_warn("store", "%s went away while starting (%s); the store keeps trying",
             db_describe(st->db), err);
    rc = 0;
  }
  return rc;
}

static int init_sync(struct store *st) {
  if (uv_mutex_init(&st->lock)) return -ENOMEM;
  if (uv_cond_init(&st->wake)) {
    uv_mutex_destroy(&st->lock);
    return -ENOMEM;
  }
  return 0;
}

int store_open(struct store **out, uv_loop_t *loop, const struct config *cfg, char *err,
               size_t errlen) {
  if (errlen) *err = '\0';
  struct store *st = calloc(1, sizeof *st);
  if (!st || init_sync(st)) {
    free(st);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  st->cfg = *cfg;
  /* The node's name in a cluster, whose nodes share this database and may share a host: its
   * node_id, else (as the cluster names it) the host name and HTTP port. */
  if (cfg->node_id[0]) snprintf(st->node, sizeof st->node, "%s", cfg->node_id);
  else if (gethostname(st->node, sizeof st->node - 1)) snprintf(st->node, sizeof st->node, "localhost");
  const char *port = strrchr(cfg->listen, ':');
  size_t used = strlen(st->node);
  if (!cfg->node_id[0] && cfg->cluster_redis_url[0] && port)
    snprintf(st->node + used, sizeof st->node - used, "%s", port);
  store_queue_init(&st->q, cfg->records_queue > 0 ? (size_t)cfg->records_queue : 1);
  int rc = open_db(st, err, errlen);
  if (!rc && (rc = mailbox_new(&st->mb, loop, ignore_msg, st)))
    snprintf(err, errlen, "store: cannot create its mailbox: %s", uv_strerror(rc));
  if (!rc && (rc = uv_thread_create(&st->thread, thread_main, st)))
    snprintf(err, errlen, "store: cannot start its thread: %s", uv_strerror(rc));
  if (rc) {
    destroy(st);
    return rc;
  }
  log_info("store", "records go to %s", db_describe(st->db));
  *out = st;
  return 0;
}

void store_close(struct store *st, int flush_ms) {
  if (!st) return;
  uint64_t until = db_now_ms() + (uint64_t)(flush_ms > 0 ? flush_ms : 0);
  db_set_deadline(st->db, until); /* whatever the thread is waiting for ends by then */
  uv_mutex_lock(&st->lock);
  st->stopping = 1;
  st->flush_until = until;
  uv_cond_signal(&st->wake);
  uv_mutex_unlock(&st->lock);
  uv_thread_join(&st->thread);
  cancel_reads(st);               /* any that came after the thread's last look */
  store_queue_clear(&st->q);
  destroy(st);
}

/* ---- writers --------------------------------------------------------------------------- */

static void enqueue(struct store *st, struct store_event *ev) {
  if (!ev) {
    uv_mutex_lock(&st->lock);
    st->q.dropped++; /* out of memory: lost like a dropped event */
    uv_mutex_unlock(&st->lock);
    return;
  }
  uv_mutex_lock(&st->lock);
  store_queue_push(&st->q, ev);
  uv_cond_signal(&st->wake);
  uv_mutex_unlock(&st->lock);
}

void store_turn_init(struct store_turn *t) {
  memset(t, 0, sizeof *t);
  t->endpoint_ms = t->asr_ms = t->llm_first_token_ms = t->llm_first_sentence_ms =
      t->tts_first_audio_ms = t->voice_to_voice_ms = t->overhead_ms = t->barge_in_ms =
          t->onset_lag_ms = STORE_ABSENT;
  t->tts_cached = -1;
}

static int64_t add_count(int64_t a, int64_t b) {
  if (b <= 0) return a;
  return a > INT64_MAX - b ? INT64_MAX : a + b;
}

void store_usage_add(struct store_usage *a, const struct store_usage *b) {
  if (!b->reported) return;
  a->reported = 1;
  a->llm_input_tokens = add_count(a->llm_input_tokens, b->llm_input_tokens);
  a->llm_cached_tokens = add_count(a->llm_cached_tokens, b->llm_cached_tokens);
  a->llm_cache_write_tokens = add_count(a->llm_cache_write_tokens, b->llm_cache_write_tokens);
  a->llm_output_tokens = add_count(a->llm_output_tokens, b->llm_output_tokens);
  a->tts_chars = add_count(a->tts_chars, b->tts_chars);
  a->tts_chars_cached = add_count(a->tts_chars_cached, b->tts_chars_cached);
  if (b->asr_seconds > 0) a->asr_seconds += b->asr_seconds;
}

void store_call_begin(struct store *st, const struct store_call *c) {
  if (st && c && c->id && *c->id) enqueue(st, store_event_call(EV_CALL_BEGIN, c, st->node));
}

void store_call_connected(struct store *st, const char *call_id, int64_t at_ms) {
  if (st && call_id && *call_id) enqueue(st, store_event_connected(call_id, at_ms));
}

void store_call_end(struct store *st, const struct store_call *c) {
  if (st && c && c->id && *c->id) enqueue(st, store_event_call(EV_CALL_END, c, st->node));
}

void store_turn_put(struct store *st, const struct store_turn *t) {
  if (st && t && t->call_id && *t->call_id && t->index >= 0) enqueue(st, store_event_turn(t));
}

void store_get_stats(struct store *st, struct store_stats *out) {
  memset(out, 0, sizeof *out);
  if (!st) return;
  uv_mutex_lock(&st->lock);
  out->queued = st->q.waiting + st->q.writing;
  out->written = st->written;
  out->dropped = st->q.dropped;
  out->errors = st->errors;
  out->purged = st->purged;
  out->connected = st->connected;
  uv_mutex_unlock(&st->lock);
}

const char *store_node(const struct store *st) { return st->node; }

/* ---- readers --------------------------------------------------------------------------- */

static struct read_req *read_new(store_result_cb cb, void *user, enum read_kind kind) {
  struct read_req *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->kind = kind;
  r->cb = cb;
  r->user = user;
  return r;
}

/* Queues `r` for the thread, or answers it now when the database is down. */
static void submit(struct store *st, struct read_req *r) {
  uv_mutex_lock(&st->lock);
  int up = st->connected;
  if (up) {
    if (st->reads_tail) st->reads_tail->next = r;
    else st->reads = r;
    st->reads_tail = r;
    uv_cond_signal(&st->wake);
  }
  uv_mutex_unlock(&st->lock);
  if (!up) answer(st, r, -EIO, NULL);
}

void store_list_calls(struct store *st, const struct store_query *q, store_result_cb cb,
                      void *user) {
  struct read_req *r = read_new(cb, user, READ_LIST);
  if (!r) {
    cb(user, -ENOMEM, NULL);
    return;
  }
  struct store_query all = {0};
  int rc = store_list_args_parse(q ? q : &all, &r->list);
  if (rc) answer(st, r, rc, NULL);
  else submit(st, r);
}

static void by_id(struct store *st, const char *call_id, enum read_kind kind, store_result_cb cb,
                  void *user) {
  struct read_req *r = read_new(cb, user, kind);
  if (!r) {
    cb(user, -ENOMEM, NULL);
    return;
  }
  r->call_id = strdup(call_id ? call_id : "");
  if (!r->call_id) answer(st, r, -ENOMEM, NULL);
  else submit(st, r);
}

void store_get_call(struct store *st, const char *call_id, store_result_cb cb, void *user) {
  by_id(st, call_id, READ_GET, cb, user);
}

void store_delete_call(struct store *st, const char *call_id, store_result_cb cb, void *user) {
  by_id(st, call_id, READ_DELETE, cb, user);
}

/* ---- recordings ------------------------------------------------------------------------ */

/* A recording's name: letters, digits, '.', '_', '-'; not starting with '.'. */
static int plain_name(const char *file) {
  size_t n = strlen(file);
  if (n == 0 || n > 255 || file[0] == '.') return 0;
  for (const char *p = file; *p; p++) {
    char c = *p;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    if (!ok) return 0;
  }
  return !strstr(file, "..");
}

int store_recording_path(const struct config *cfg, const char *file, char *out, size_t cap) {
  if (cap) *out = '\0';
  if (!file || !plain_name(file)) return -EINVAL;
  int n = snprintf(out, cap, "%s/recordings/%s", cfg->data_dir, file);
  if (n < 0 || (size_t)n >= cap) {
    if (cap) *out = '\0';
    return -ENOSPC;
  }
  return 0;
}
