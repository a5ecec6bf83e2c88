/*
 * db: the little the store needs from a SQL database, for SQLite and
 * PostgreSQL alike.
 *
 * One SQL text serves both: parameters are written $1, $2, ... (PostgreSQL's
 * numbered parameters; SQLite reads them as named parameters), values are
 * typed text, 64-bit integers, doubles or NULL, and every answer comes back
 * as text, the way libpq gives it. A connection belongs to one thread at a
 * time.
 *
 * Failures are sorted into the two kinds the store treats differently:
 * -EINVAL means these values were refused (a constraint, bad data) and
 * would be refused again; -EIO is everything else (connection lost,
 * locked, disk trouble, a table or a permission missing), which may work
 * later, once someone has fixed it.
 */
#ifndef TS_STORE_DB_H
#define TS_STORE_DB_H

#include <stddef.h>
#include <stdint.h>

struct db;

enum db_kind { DB_SQLITE, DB_POSTGRES };

enum db_type { DB_NULL, DB_TEXT, DB_INT, DB_REAL };

/* A parameter. DB_TEXT with text == NULL is a NULL of type text. */
struct db_param {
  enum db_type type;
  const char *text;
  int64_t i;
  double d;
};

static inline struct db_param db_text(const char *s) {
  return (struct db_param){.type = DB_TEXT, .text = s};
}
static inline struct db_param db_int(int64_t v) {
  return (struct db_param){.type = DB_INT, .i = v};
}
static inline struct db_param db_real(double v) {
  return (struct db_param){.type = DB_REAL, .d = v};
}
static inline struct db_param db_null(void) { return (struct db_param){.type = DB_NULL}; }

/* Rows of an answer; a cell is NULL for SQL NULL. */
struct db_rows {
  int nrows, ncols;
  char **cells; /* nrows * ncols, row-major */
  int cap;      /* rows allocated */
};

/*
 * Opens `target`: a postgres:// or postgresql:// URL, else a SQLite file
 * path. A SQLite file that cannot be opened, or a URL libpq cannot parse,
 * fails with `err` filled in. A PostgreSQL server that does not answer does
 * not fail: the handle is returned unconnected (db_alive() is 0,
 * db_error() says why) and db_reconnect() tries again. Connecting waits at
 * most DB_CONNECT_TIMEOUT_S (a host name is looked up first, which can
 * take longer when DNS does not answer).
 */
#define DB_CONNECT_TIMEOUT_S 2
int db_open(struct db **out, const char *target, char *err, size_t errlen);
void db_close(struct db *db);

enum db_kind db_kind(const struct db *db);
/* Where it points, without a password: "SQLite /x/tingshuo.db", "PostgreSQL user@host:port/db". */
const char *db_describe(const struct db *db);
/* The last failure's message. */
const char *db_error(const struct db *db);

/*
 * From any thread: a time (db_now_ms clock) past which any wait for the
 * database gives up with -EIO; 0 = none. PostgreSQL gives up by dropping
 * the connection (the server rolls back what was open). This is what lets
 * the store stop in bounded time whatever the database is doing.
 */
void db_set_deadline(struct db *db, uint64_t deadline_ms);
/* Milliseconds on a monotonic clock. */
uint64_t db_now_ms(void);

/* 1 while the connection is believed usable (always 1 for SQLite). */
int db_alive(const struct db *db);
/* PostgreSQL: drops the connection and connects again; 0 or -EIO. SQLite: 0. */
int db_reconnect(struct db *db);

/*
 * Runs one statement. `rows` (may be NULL) receives the answer, to be freed
 * with db_rows_free; it is left empty on failure. 0, -EIO, -EINVAL or -ENOMEM.
 */
int db_exec(struct db *db, const char *sql, const struct db_param *params, int nparams,
            struct db_rows *rows);

/*
 * SQLite takes the write lock at BEGIN (BEGIN IMMEDIATE): a transaction
 * waits for the lock at its start, never halfway through.
 */
int db_begin(struct db *db);
int db_commit(struct db *db);
/* Never fails in a way the caller could act on; a dead connection is noticed by db_alive. */
void db_rollback(struct db *db);

/* The cell's text, or NULL for SQL NULL or a cell outside the answer. */
const char *db_cell(const struct db_rows *r, int row, int col);
/* A cell as an integer or a double: 0, -ENOENT when NULL, -EINVAL when it is not a number. */
int db_cell_int(const struct db_rows *r, int row, int col, int64_t *out);
int db_cell_real(const struct db_rows *r, int row, int col, double *out);
void db_rows_free(struct db_rows *r);

/* The case-insensitive LIKE of the backend: "ILIKE" on PostgreSQL, "LIKE" on SQLite. */
const char *db_ilike(const struct db *db);

#endif
