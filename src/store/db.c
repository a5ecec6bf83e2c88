/*
 * db: the part of the database interface both backends share.
 *
 * The backends differ in how they talk to their library; everything the
 * store sees is the same: transactions are plain statements, answers are
 * rows of text cells, and numbers are read back out of the text with full
 * checks, because a cell is input like any other (a file someone edited, a
 * column someone altered) and a bad one must be an error, not a crash.
 */
#include "store/db_impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int db_open(struct db **out, const char *target, char *err, size_t errlen) {
  if (strncmp(target, "postgres://", 11) == 0 || strncmp(target, "postgresql://", 13) == 0)
    return db_pg_open(out, target, err, errlen);
  return db_sqlite_open(out, target, err, errlen);
}

void db_close(struct db *db) {
  if (db) db->ops->close(db);
}

enum db_kind db_kind(const struct db *db) { return db->kind; }
const char *db_describe(const struct db *db) { return db->describe; }
const char *db_error(const struct db *db) { return db->err; }
int db_alive(const struct db *db) { return db->ops->alive(db); }
int db_reconnect(struct db *db) { return db->ops->reconnect(db); }
void db_set_deadline(struct db *db, uint64_t deadline_ms) {
  atomic_store(&db->deadline_ms, deadline_ms);
}

uint64_t db_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int db_past_deadline(struct db *db) {
  uint64_t d = atomic_load(&db->deadline_ms);
  return d && db_now_ms() >= d;
}

const char *db_ilike(const struct db *db) { return db->kind == DB_POSTGRES ? "ILIKE" : "LIKE"; }

int db_exec(struct db *db, const char *sql, const struct db_param *params, int nparams,
            struct db_rows *rows) {
  if (rows) memset(rows, 0, sizeof *rows);
  int rc = db->ops->exec(db, sql, params, nparams, rows);
  if (rc && rows) db_rows_free(rows);
  return rc;
}

int db_begin(struct db *db) {
  return db_exec(db, db->kind == DB_SQLITE ? "BEGIN IMMEDIATE" : "BEGIN", NULL, 0, NULL);
}

int db_commit(struct db *db) { return db_exec(db, "COMMIT", NULL, 0, NULL); }

void db_rollback(struct db *db) {
  /* The error text of the statement that failed matters more than this one's. */
  char keep[sizeof db->err];
  memcpy(keep, db->err, sizeof keep);
  (void)db_exec(db, "ROLLBACK", NULL, 0, NULL);
  memcpy(db->err, keep, sizeof keep);
}

int db_rows_add(struct db_rows *r, int ncols, const char *const *cells, const size_t *lens) {
  if (r->nrows == r->cap) {
    int cap = r->cap ? r->cap * 2 : 16;
    char **grown = realloc(r->cells, (size_t)cap * (size_t)ncols * sizeof *grown);
    if (!grown) return -ENOMEM;
    r->cells = grown;
    r->cap = cap;
  }
  char **row = r->cells + (size_t)r->nrows * (size_t)ncols;
  for (int c = 0; c < ncols; c++) {
    row[c] = NULL;
    if (!cells[c]) continue;
    row[c] = malloc(lens[c] + 1);
    if (!row[c]) {
      for (int k = 0; k < c; k++) free(row[k]);
      return -ENOMEM;
    }
    memcpy(row[c], cells[c], lens[c]);
    row[c][lens[c]] = '\0';
  }
  r->ncols = ncols;
  r->nrows++;
  return 0;
}

void db_rows_free(struct db_rows *r) {
  if (!r) return;
  size_t n = (size_t)r->nrows * (size_t)r->ncols;
  for (size_t i = 0; i < n; i++) free(r->cells[i]);
  free(r->cells);
  memset(r, 0, sizeof *r);
}

const char *db_cell(const struct db_rows *r, int row, int col) {
  if (!r || row < 0 || row >= r->nrows || col < 0 || col >= r->ncols) return NULL;
  return r->cells[(size_t)row * (size_t)r->ncols + (size_t)col];
}

int db_cell_int(const struct db_rows *r, int row, int col, int64_t *out) {
  const char *s = db_cell(r, row, col);
  if (!s) return -ENOENT;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end) return -EINVAL;
  *out = v;
  return 0;
}

int db_cell_real(const struct db_rows *r, int row, int col, double *out) {
  const char *s = db_cell(r, row, col);
  if (!s) return -ENOENT;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !isfinite(v)) return -EINVAL;
  *out = v;
  return 0;
}
