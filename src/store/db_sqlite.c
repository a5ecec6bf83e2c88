/*
 * db_sqlite: the database interface on SQLite, the default store.
 *
 * The file is opened in WAL mode with synchronous=NORMAL: a committed
 * transaction survives the process being killed (it is in the WAL, which
 * the next open replays); only a power cut can lose the last few, and
 * commits stay cheap because they do not wait for an fsync each. Readers
 * never block the writer. Foreign keys are switched on per connection
 * (SQLite's default is off) so deleting a call deletes its turns.
 *
 * The wait for a lock is short on purpose: the store's own thread is the
 * only writer, so a lock held by someone else (an operator's sqlite3
 * shell) is the unusual case; the store waits a little, gives up, and
 * retries the same batch later instead of blocking its thread for long.
 * The wait also ends at the deadline set with db_set_deadline.
 *
 * The store sends the same few statements over and over (a turn's upsert
 * is over a kilobyte of SQL), and parsing one costs SQLite more than
 * running it; so the last STMT_CACHE statements are kept prepared, found
 * again by their text, and reset after each use so none holds a read
 * transaction open between uses. One that failed is dropped, not reused.
 */
#include "store/db_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUSY_TIMEOUT_MS 500
#define BUSY_SLEEP_MS 5
#define STMT_CACHE 16

struct cached_stmt {
  char *sql;           /* NULL: a free slot */
  uint64_t hash, used; /* used: when it was last taken, for replacing the oldest */
  sqlite3_stmt *st;
};

struct db_sqlite {
  struct db base;
  sqlite3 *conn;
  struct cached_stmt cache[STMT_CACHE];
  uint64_t uses;
};

/* -EINVAL only when the values themselves were refused; anything else may pass later. */
static int classify(int rc) {
  switch (rc & 0xff) {
  case SQLITE_CONSTRAINT:
  case SQLITE_MISMATCH:
  case SQLITE_TOOBIG:
  case SQLITE_RANGE:
    return -EINVAL;
  case SQLITE_NOMEM:
    return -ENOMEM;
  default:
    return -EIO;
  }
}

static int fail(struct db_sqlite *s, int rc) {
  snprintf(s->base.err, sizeof s->base.err, "%s", sqlite3_errmsg(s->conn));
  return classify(rc);
}

static int bind_one(sqlite3_stmt *st, int i, const struct db_param *p) {
  char name[16];
  snprintf(name, sizeof name, "$%d", i + 1);
  int idx = sqlite3_bind_parameter_index(st, name);
  if (idx == 0) return SQLITE_OK; /* the statement does not use this one */
  switch (p->type) {
  case DB_TEXT:
    return p->text ? sqlite3_bind_text(st, idx, p->text, -1, SQLITE_STATIC)
                   : sqlite3_bind_null(st, idx);
  case DB_INT:
    return sqlite3_bind_int64(st, idx, p->i);
  case DB_REAL:
    return sqlite3_bind_double(st, idx, p->d);
  default:
    return sqlite3_bind_null(st, idx);
  }
}

static int add_row(sqlite3_stmt *st, struct db_rows *rows) {
  enum { MAX_COLS = 64 };
  int ncols = sqlite3_column_count(st);
  if (ncols > MAX_COLS) return -EINVAL;
  const char *cells[MAX_COLS];
  size_t lens[MAX_COLS];
  for (int c = 0; c < ncols; c++) {
    cells[c] = (const char *)sqlite3_column_text(st, c);
    lens[c] = (size_t)sqlite3_column_bytes(st, c);
    if (!cells[c] && sqlite3_column_type(st, c) != SQLITE_NULL) return -ENOMEM;
  }
  return db_rows_add(rows, ncols, cells, lens);
}

static uint64_t hash_text(const char *s) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static void drop_slot(struct cached_stmt *c) {
  sqlite3_finalize(c->st);
  free(c->sql);
  memset(c, 0, sizeof *c);
}

/* The statement for `sql`, prepared now or earlier: its slot, or NULL with *rc set. */
static struct cached_stmt *take_stmt(struct db_sqlite *s, const char *sql, int *rc) {
  uint64_t h = hash_text(sql);
  struct cached_stmt *oldest = &s->cache[0];
  for (int i = 0; i < STMT_CACHE; i++) {
    struct cached_stmt *c = &s->cache[i];
    if (c->sql && c->hash == h && strcmp(c->sql, sql) == 0) {
      c->used = ++s->uses;
      return c;
    }
    if (!c->sql || (oldest->sql && c->used < oldest->used)) oldest = c;
  }
  if (oldest->sql) drop_slot(oldest);
  char *copy = strdup(sql);
  if (!copy) {
    *rc = SQLITE_NOMEM;
    return NULL;
  }
  *rc = sqlite3_prepare_v2(s->conn, sql, -1, &oldest->st, NULL);
  if (*rc != SQLITE_OK) {
    sqlite3_finalize(oldest->st);
    oldest->st = NULL;
    free(copy);
    return NULL;
  }
  oldest->sql = copy;
  oldest->hash = h;
  oldest->used = ++s->uses;
  return oldest;
}

static int exec_stmt(struct db *db, const char *sql, const struct db_param *params,
                     int nparams, struct db_rows *rows) {
  struct db_sqlite *s = (struct db_sqlite *)db;
  int rc = SQLITE_OK;
  struct cached_stmt *c = take_stmt(s, sql, &rc);
  if (!c) return fail(s, rc);
  sqlite3_stmt *st = c->st;
  for (int i = 0; i < nparams && rc == SQLITE_OK; i++) rc = bind_one(st, i, &params[i]);
  int out = 0;
  if (rc != SQLITE_OK) out = fail(s, rc);
  while (!out && (rc = sqlite3_step(st)) == SQLITE_ROW)
    if (rows) out = add_row(st, rows);
  if (!out && rc != SQLITE_DONE) out = fail(s, rc);
  if (out == -ENOMEM) snprintf(s->base.err, sizeof s->base.err, "out of memory");
  if (out) {
    drop_slot(c);
  } else {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st); /* the bound text is the caller's, and goes with the call */
  }
  return out;
}

/* SQLite's busy handler: 1 = wait and try again, 0 = give up with SQLITE_BUSY. */
static int on_busy(void *arg, int count) {
  struct db *db = arg;
  if (db_past_deadline(db) || count * BUSY_SLEEP_MS >= BUSY_TIMEOUT_MS) return 0;
  usleep(BUSY_SLEEP_MS * 1000);
  return 1;
}

static int alive(const struct db *db) { return 1; }
static int reconnect(struct db *db) { return 0; }

static void close_db(struct db *db) {
  struct db_sqlite *s = (struct db_sqlite *)db;
  for (int i = 0; i < STMT_CACHE; i++)
    if (s->cache[i].sql) drop_slot(&s->cache[i]);
  sqlite3_close_v2(s->conn);
  free(s);
}

static const struct db_ops ops = {close_db, alive, reconnect, exec_stmt};

static int configure(struct db_sqlite *s) {
  /* journal_mode answers with a row; the others answer nothing. */
  static const char *const pragmas[] = {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                                        "PRAGMA foreign_keys=ON"};
  int rc = sqlite3_busy_handler(s->conn, on_busy, &s->base);
  if (rc != SQLITE_OK) return fail(s, rc);
  for (size_t i = 0; i < sizeof pragmas / sizeof *pragmas; i++) {
    struct db_rows rows;
    rc = db_exec(&s->base, pragmas[i], NULL, 0, &rows);
    const char *mode = db_cell(&rows, 0, 0);
    int wal_refused = i == 0 && !rc && (!mode || strcmp(mode, "wal"));
    db_rows_free(&rows);
    if (wal_refused) {
      snprintf(s->base.err, sizeof s->base.err, "the file system does not allow WAL mode");
      return -EIO;
    }
    if (rc) return rc;
  }
  return 0;
}

int db_sqlite_open(struct db **out, const char *path, char *err, size_t errlen) {
  struct db_sqlite *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  s->base.ops = &ops;
  s->base.kind = DB_SQLITE;
  snprintf(s->base.describe, sizeof s->base.describe, "SQLite %s", path);
  /* Conversations are private: a new file is the owner's alone (its WAL gets the same mode). */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) close(fd);
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path, &s->conn, flags, NULL);
  int out_rc = 0;
  if (rc != SQLITE_OK) out_rc = s->conn ? fail(s, rc) : -ENOMEM;
  else out_rc = configure(s);
  if (out_rc) {
    snprintf(err, errlen, "cannot open the SQLite database %s: %s", path,
             s->conn ? s->base.err : "out of memory");
    close_db(&s->base);
    return out_rc == -ENOMEM ? -ENOMEM : -EIO;
  }
  *out = &s->base;
  return 0;
}
