/*
 * db_pg: the database interface on PostgreSQL, through libpq.
 *
 * Every statement is sent with PQsendQueryParams, the values as text and
 * their types named (text, int8, float8), so one SQL text with $n
 * parameters serves both backends and PostgreSQL never has to guess a
 * type. Connecting and waiting for an answer are done with libpq's
 * asynchronous calls and poll(), in short slices, because the store's
 * thread must be able to give up: connecting takes at most
 * DB_CONNECT_TIMEOUT_S, and any wait ends at the deadline set with
 * db_set_deadline (the store's shutdown). TCP keepalives and
 * tcp_user_timeout make a server that vanished from the network an error
 * rather than a wait without end; settings in the URL win over these.
 *
 * A lost connection is not repaired here: the statement fails with -EIO,
 * db_alive() turns 0, and the store decides when to db_reconnect().
 */
#include "store/db_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define MAX_PARAMS 64
#define SLICE_MS 50
#define OID_TEXT 25
#define OID_INT8 20
#define OID_FLOAT8 701

struct db_pg {
  struct db base;
  PGconn *conn;
  char *url;
};

static void set_err(struct db_pg *p, const char *msg) {
  snprintf(p->base.err, sizeof p->base.err, "%s", msg && *msg ? msg : "unknown error");
  size_t n = strlen(p->base.err);
  while (n && (p->base.err[n - 1] == '\n' || p->base.err[n - 1] == ' ')) p->base.err[--n] = '\0';
}

/* Notices ("relation already exists, skipping") are not for stderr. */
static void on_notice(void *arg, const char *message) {
  log_debug("store", "postgresql: %s", message);
}

/*
 * Waits until the connection's socket is ready for `events`, the deadline
 * passes or `until_ms` (db_now_ms clock, 0 = no limit) passes: 0, or -ETIMEDOUT.
 */
static int wait_socket(struct db_pg *p, PGconn *c, short events, uint64_t until_ms) {
  for (;;) {
    if (db_past_deadline(&p->base) || (until_ms && db_now_ms() >= until_ms)) return -ETIMEDOUT;
    struct pollfd pfd = {.fd = PQsocket(c), .events = events};
    if (pfd.fd < 0) return 0; /* libpq will report the failure itself */
    int n = poll(&pfd, 1, SLICE_MS);
    if (n > 0 || (n < 0 && errno != EINTR)) return 0;
  }
}

static int connect_now(struct db_pg *p) {
  /* Earlier keywords are defaults: the expanded URL (dbname) overrides them. */
  const char *const keys[] = {"keepalives_idle", "keepalives_interval", "keepalives_count",
                              "tcp_user_timeout", "application_name", "dbname", NULL};
  const char *const values[] = {"30", "10", "3", "30000", "tingshuo", p->url, NULL};
  PGconn *c = PQconnectStartParams(keys, values, 1);
  if (!c) {
    set_err(p, "out of memory");
    return -EIO;
  }
  uint64_t until = db_now_ms() + DB_CONNECT_TIMEOUT_S * 1000;
  PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
  while (PQstatus(c) != CONNECTION_BAD && ps != PGRES_POLLING_OK && ps != PGRES_POLLING_FAILED) {
    short events = ps == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    if (wait_socket(p, c, events, until)) {
      set_err(p, "timed out connecting");
      PQfinish(c);
      return -EIO;
    }
    ps = PQconnectPoll(c);
  }
  if (PQstatus(c) != CONNECTION_OK) {
    set_err(p, PQerrorMessage(c));
    PQfinish(c);
    return -EIO;
  }
  PQsetNoticeProcessor(c, on_notice, NULL);
  p->conn = c;
  return 0;
}

static int alive(const struct db *db) {
  const struct db_pg *p = (const struct db_pg *)db;
  return p->conn && PQstatus(p->conn) == CONNECTION_OK;
}

static int reconnect(struct db *db) {
  struct db_pg *p = (struct db_pg *)db;
  if (p->conn) PQfinish(p->conn);
  p->conn = NULL;
  return connect_now(p);
}

/* Only data exceptions (22) and integrity violations (23) are about the values themselves. */
static int classify(struct db_pg *p, const PGresult *res) {
  if (PQstatus(p->conn) != CONNECTION_OK) return -EIO;
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  if (!state) return res ? -EIO : -ENOMEM;
  return strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 ? -EINVAL : -EIO;
}

static int collect(const PGresult *res, struct db_rows *rows) {
  enum { MAX_COLS = 64 };
  int ncols = PQnfields(res), nrows = PQntuples(res);
  if (ncols > MAX_COLS) return -EINVAL;
  const char *cells[MAX_COLS];
  size_t lens[MAX_COLS];
  for (int r = 0; r < nrows; r++) {
    for (int c = 0; c < ncols; c++) {
      cells[c] = PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
      lens[c] = (size_t)PQgetlength(res, r, c);
    }
    int rc = db_rows_add(rows, ncols, cells, lens);
    if (rc) return rc;
  }
  rows->ncols = ncols;
  return 0;
}

/* Drops the connection when a wait has to be abandoned; the server rolls back. */
static int give_up(struct db_pg *p, const char *why) {
  set_err(p, why);
  PQfinish(p->conn);
  p->conn = NULL;
  return -EIO;
}

/* The statement's result (or NULL with the error in p->base.err), waiting in slices. */
static PGresult *await_result(struct db_pg *p, int *rc) {
  PGresult *first = NULL;
  for (;;) {
    while (!PQisBusy(p->conn)) {
      PGresult *r = PQgetResult(p->conn);
      if (!r) return first;
      if (first) PQclear(r);
      else first = r;
    }
    if (wait_socket(p, p->conn, POLLIN, 0)) {
      PQclear(first);
      *rc = give_up(p, "gave up waiting for the database");
      return NULL;
    }
    if (!PQconsumeInput(p->conn)) {
      PQclear(first);
      set_err(p, PQerrorMessage(p->conn));
      *rc = -EIO;
      return NULL;
    }
  }
}

static void text_params(const struct db_param *params, int n, const char **values, Oid *types,
                        char (*numbers)[32]) {
  for (int i = 0; i < n; i++) {
    const struct db_param *x = &params[i];
    values[i] = x->type == DB_TEXT ? x->text : NULL;
    types[i] = x->type == DB_TEXT   ? OID_TEXT
               : x->type == DB_INT  ? OID_INT8
               : x->type == DB_REAL ? OID_FLOAT8
                                    : 0;
    if (x->type == DB_INT) snprintf(numbers[i], sizeof numbers[i], "%" PRId64, x->i);
    if (x->type == DB_REAL) snprintf(numbers[i], sizeof numbers[i], "%.17g", x->d);
    if (x->type == DB_INT || x->type == DB_REAL) values[i] = numbers[i];
  }
}

static int exec_stmt(struct db *db, const char *sql, const struct db_param *params,
                     int nparams, struct db_rows *rows) {
  struct db_pg *p = (struct db_pg *)db;
  if (!alive(db)) {
    set_err(p, "not connected");
    return -EIO;
  }
  if (nparams > MAX_PARAMS) return -EINVAL;
  const char *values[MAX_PARAMS];
  Oid types[MAX_PARAMS];
  char numbers[MAX_PARAMS][32];
  text_params(params, nparams, values, types, numbers);
  if (!PQsendQueryParams(p->conn, sql, nparams, types, values, NULL, NULL, 0)) {
    set_err(p, PQerrorMessage(p->conn));
    return PQstatus(p->conn) == CONNECTION_OK ? -EINVAL : -EIO;
  }
  int rc = 0;
  PGresult *res = await_result(p, &rc);
  if (rc) return rc;
  ExecStatusType status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
    if (rows) rc = collect(res, rows);
    if (rc) set_err(p, rc == -ENOMEM ? "out of memory" : "too many columns");
  } else {
    set_err(p, res ? PQresultErrorMessage(res) : PQerrorMessage(p->conn));
    rc = classify(p, res);
  }
  PQclear(res);
  return rc;
}

static void close_db(struct db *db) {
  struct db_pg *p = (struct db_pg *)db;
  if (p->conn) PQfinish(p->conn);
  free(p->url);
  free(p);
}

static const struct db_ops ops = {close_db, alive, reconnect, exec_stmt};

/* "PostgreSQL user@host:port/dbname" from the URL, leaving the password out. */
static int describe(struct db_pg *p, char *err, size_t errlen) {
  char *msg = NULL;
  PQconninfoOption *opts = PQconninfoParse(p->url, &msg);
  if (!opts) {
    snprintf(err, errlen, "database_url is not a valid PostgreSQL URL: %s",
             msg ? msg : "out of memory");
    size_t n = strlen(err);
    if (n && err[n - 1] == '\n') err[n - 1] = '\0';
    PQfreemem(msg);
    return -EINVAL;
  }
  const char *user = "", *host = "localhost", *port = "5432", *dbname = "";
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val || !*o->val) continue;
    if (!strcmp(o->keyword, "user")) user = o->val;
    else if (!strcmp(o->keyword, "host")) host = o->val;
    else if (!strcmp(o->keyword, "port")) port = o->val;
    else if (!strcmp(o->keyword, "dbname")) dbname = o->val;
  }
  snprintf(p->base.describe, sizeof p->base.describe, "PostgreSQL %s%s%s:%s/%s", user,
           *user ? "@" : "", host, port, dbname);
  PQconninfoFree(opts);
  return 0;
}

int db_pg_open(struct db **out, const char *url, char *err, size_t errlen) {
  struct db_pg *p = calloc(1, sizeof *p);
  if (!p || !(p->url = strdup(url))) {
    free(p);
    return -ENOMEM;
  }
  p->base.ops = &ops;
  p->base.kind = DB_POSTGRES;
  int rc = describe(p, err, errlen);
  if (rc) {
    close_db(&p->base);
    return rc;
  }
  (void)connect_now(p); /* not answering is not an error: see db.h */
  *out = &p->base;
  return 0;
}
