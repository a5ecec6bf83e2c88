/*
 * db_impl: what db.c shares with the two backends, db_sqlite.c and db_pg.c.
 * Nothing outside those three files includes it.
 */
#ifndef TS_STORE_DB_IMPL_H
#define TS_STORE_DB_IMPL_H

#include <stdatomic.h>

#include "store/db.h"

struct db_ops {
  void (*close)(struct db *db);
  int (*alive)(const struct db *db);
  int (*reconnect)(struct db *db);
  int (*exec)(struct db *db, const char *sql, const struct db_param *params, int nparams,
              struct db_rows *rows);
};

/* The head of each backend's own struct. */
struct db {
  const struct db_ops *ops;
  enum db_kind kind;
  char describe[512];
  char err[512];
  _Atomic uint64_t deadline_ms; /* db_set_deadline */
};

/* 1 once the deadline set with db_set_deadline has passed. */
int db_past_deadline(struct db *db);

int db_sqlite_open(struct db **out, const char *path, char *err, size_t errlen);
int db_pg_open(struct db **out, const char *url, char *err, size_t errlen);

/* Appends one row of `ncols` cells (copied; NULL stays NULL) to `r`: 0 or -ENOMEM. */
int db_rows_add(struct db_rows *r, int ncols, const char *const *cells, const size_t *lens);

#endif
