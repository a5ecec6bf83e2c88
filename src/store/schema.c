/*
 * schema: versioned migrations.
 *
 * Migration N is a list of statements that takes a database from version
 * N-1 to N; schema_version holds one row per migration applied. At start
 * every missing migration runs in one transaction with the version rows,
 * so a database is always at a version this code knows, never halfway. A
 * database whose version is newer than this binary is left alone and the
 * start fails: an older binary writing to a newer schema could lose data
 * silently, which is worse than not starting.
 *
 * Several servers may share one PostgreSQL database and start together, so
 * the transaction first takes an advisory lock there; SQLite's BEGIN
 * IMMEDIATE already makes migrations one at a time.
 *
 * The SQL is the dialect both accept: BIGINT and DOUBLE PRECISION give
 * SQLite the integer and real affinities it needs, and 0/1 integers stand
 * for booleans. Times are milliseconds since the epoch.
 */
#include "store/schema.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/time.h>

static const char *const v1[] = {
    "CREATE TABLE calls ("
    " id TEXT PRIMARY KEY,"
    " created_ms BIGINT NOT NULL,"
    " connected_ms BIGINT, ended_ms BIGINT, end_reason TEXT,"
    " node TEXT, remote_addr TEXT, user_agent TEXT, agent TEXT,"
    " asr TEXT, asr_model TEXT, llm TEXT, llm_model TEXT,"
    " tts TEXT, tts_model TEXT, tts_voice TEXT, language TEXT, settings TEXT,"
    " packets_received BIGINT NOT NULL DEFAULT 0, packets_lost BIGINT NOT NULL DEFAULT 0,"
    " recording TEXT)",
    "CREATE TABLE turns ("
    " call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,"
    " idx INTEGER NOT NULL,"
    " at_ms BIGINT NOT NULL,"
    " transcript TEXT, reply TEXT, interrupted INTEGER NOT NULL DEFAULT 0,"
    " endpoint_ms DOUBLE PRECISION, asr_ms DOUBLE PRECISION,"
    " llm_first_token_ms DOUBLE PRECISION, llm_first_sentence_ms DOUBLE PRECISION,"
    " tts_first_audio_ms DOUBLE PRECISION, voice_to_voice_ms DOUBLE PRECISION,"
    " overhead_ms DOUBLE PRECISION, barge_in_ms DOUBLE PRECISION,"
    " onset_lag_ms DOUBLE PRECISION, error TEXT,"
    " PRIMARY KEY (call_id, idx))",
    /* Newest-first paging, and the time-range filter. */
    "CREATE INDEX calls_newest ON calls (created_ms DESC, id DESC)",
    "CREATE INDEX calls_end_reason ON calls (end_reason, created_ms DESC)",
    /* Crash recovery looks for this node's calls that never ended. */
    "CREATE INDEX calls_open ON calls (node) WHERE ended_ms IS NULL",
};

/*
 * What each call and each turn used of the services, and the call's estimated cost. All
 * NULL on rows written before: nothing is known of them, which is not the same as 0. A
 * column at a time, the only ALTER TABLE form SQLite takes.
 */
#define USAGE_COLUMNS(table)                                                                \
  "ALTER TABLE " table " ADD COLUMN llm_input_tokens BIGINT",                               \
      "ALTER TABLE " table " ADD COLUMN llm_cached_tokens BIGINT",                          \
      "ALTER TABLE " table " ADD COLUMN llm_cache_write_tokens BIGINT",                     \
      "ALTER TABLE " table " ADD COLUMN llm_output_tokens BIGINT",                          \
      "ALTER TABLE " table " ADD COLUMN tts_chars BIGINT",                                  \
      "ALTER TABLE " table " ADD COLUMN tts_chars_cached BIGINT",                           \
      "ALTER TABLE " table " ADD COLUMN asr_seconds DOUBLE PRECISION"

static const char *const v2[] = {
    USAGE_COLUMNS("calls"),
    /* The cost is kept, not recomputed: a later change of prices does not rewrite history. */
    "ALTER TABLE calls ADD COLUMN cost DOUBLE PRECISION",
    "ALTER TABLE calls ADD COLUMN currency TEXT",
    USAGE_COLUMNS("turns"),
    "ALTER TABLE turns ADD COLUMN tts_cached INTEGER",
};

/*
 * The tools the model called while producing each turn's reply: one JSON array per turn,
 * written with the turn (a turn's calls are few and always read together, so a table of
 * their own would only add a join), and their number, which the call list adds up
 * without parsing any JSON. NULL on the turns written before: none are known.
 */
static const char *const v3[] = {
    "ALTER TABLE turns ADD COLUMN tool_calls TEXT",
    "ALTER TABLE turns ADD COLUMN tool_call_count INTEGER",
};

struct migration {
  const char *const *sql;
  size_t n;
};

static const struct migration migrations[SCHEMA_VERSION] = {
    {v1, sizeof v1 / sizeof *v1},
    {v2, sizeof v2 / sizeof *v2},
    {v3, sizeof v3 / sizeof *v3},
};

static int64_t now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int current_version(struct db *db, int64_t *version, char *err, size_t errlen) {
  int rc = db_exec(db,
                   "CREATE TABLE IF NOT EXISTS schema_version"
                   " (version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)",
                   NULL, 0, NULL);
  struct db_rows rows;
  if (!rc) rc = db_exec(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", NULL, 0, &rows);
  if (rc) {
    snprintf(err, errlen, "reading the schema version: %s", db_error(db));
    return rc;
  }
  rc = db_cell_int(&rows, 0, 0, version);
  db_rows_free(&rows);
  if (rc) snprintf(err, errlen, "reading the schema version: not a number");
  return rc ? -EINVAL : 0;
}

static int apply(struct db *db, int version, char *err, size_t errlen) {
  const struct migration *m = &migrations[version - 1];
  for (size_t i = 0; i < m->n; i++) {
    int rc = db_exec(db, m->sql[i], NULL, 0, NULL);
    if (rc) {
      snprintf(err, errlen, "migration %d, statement %zu: %s", version, i + 1, db_error(db));
      return rc;
    }
  }
  struct db_param p[] = {db_int(version), db_int(now_ms())};
  int rc = db_exec(db, "INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)", p, 2,
                   NULL);
  if (rc) snprintf(err, errlen, "migration %d: %s", version, db_error(db));
  return rc;
}

static int migrate_locked(struct db *db, char *err, size_t errlen) {
  if (db_kind(db) == DB_POSTGRES) {
    int rc = db_exec(db, "SELECT pg_advisory_xact_lock(7242301)", NULL, 0, NULL);
    if (rc) {
      snprintf(err, errlen, "locking for migrations: %s", db_error(db));
      return rc;
    }
  }
  int64_t version;
  int rc = current_version(db, &version, err, errlen);
  if (rc) return rc;
  if (version < 0) {
    snprintf(err, errlen, "the database's schema_version holds %" PRId64 ", not a version",
             version);
    return -EINVAL;
  }
  if (version > SCHEMA_VERSION) {
    snprintf(err, errlen,
             "the database schema is version %" PRId64 ", newer than this tingshuo knows "
             "(version %d): run a newer tingshuo, or point it at another database",
             version, SCHEMA_VERSION);
    return -ENOTSUP;
  }
  for (int v = (int)version + 1; v <= SCHEMA_VERSION && !rc; v++) rc = apply(db, v, err, errlen);
  return rc;
}

int schema_migrate(struct db *db, char *err, size_t errlen) {
  int rc = db_begin(db);
  if (rc) {
    snprintf(err, errlen, "starting migrations: %s", db_error(db));
    return rc;
  }
  rc = migrate_locked(db, err, errlen);
  if (rc) {
    db_rollback(db);
    return rc;
  }
  rc = db_commit(db);
  if (rc) {
    snprintf(err, errlen, "committing migrations: %s", db_error(db));
    db_rollback(db);
  }
  return rc;
}
