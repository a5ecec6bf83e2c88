/*
 * store: call records on SQLite and on a real PostgreSQL server.
 *
 * The same tests run twice: against SQLite in a temporary data_dir, and
 * against a PostgreSQL 15 server this program starts on loopback with
 * tests/lib/pg.sh (each test gets an empty schema). A watchdog process
 * stops that server when this program ends, however it ends. Read results
 * arrive on a small libuv loop, as they would on the server's.
 *
 * "The database is unavailable" means, for PostgreSQL, the server stopped
 * (pg_ctl stop); for SQLite, another connection holding the write lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "core/config.h"
#include "store/db.h"
#include "store/schema.h"
#include "store/store.h"

#define PG_SCRIPT TS_SOURCE_DIR "/tests/lib/pg.sh"
#define T0 1700000000123LL /* 2023-11-14T22:13:20.123Z */

struct backend {
  int pg;
  char dir[256];
  char url[512];
  pid_t watchdog;
  int watch_fd;
};

struct fx {
  struct backend *b;
  uv_loop_t loop;
  struct config cfg;
  char dir[256];
  struct store *st;
  struct db *locker; /* SQLite: the connection holding the write lock */
};

/* ---- PostgreSQL for the suite ---------------------------------------------------------- */

/* Runs pg.sh CMD DIR; the first line it prints goes to out. 0 on success. */
static int pg_script(const char *cmd, const char *dir, char *out, size_t cap) {
  char line[1024];
  snprintf(line, sizeof line, "'%s' %s '%s'", PG_SCRIPT, cmd, dir);
  FILE *p = popen(line, "r");
  if (!p) return -1;
  if (out && cap) {
    out[0] = '\0';
    if (fgets(out, (int)cap, p)) out[strcspn(out, "\n")] = '\0';
  }
  char sink[256];
  while (fgets(sink, sizeof sink, p)) {
  }
  int status = pclose(p);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* A child that runs `pg.sh stop DIR` once our end of its pipe closes: at teardown or death. */
static int start_watchdog(struct backend *b) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC)) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    setsid(); /* a ^C to the test is not a ^C to its clean-up */
    dup2(fds[0], 0);
    execl("/bin/sh", "sh", "-c", "cat >/dev/null; exec \"$0\" stop \"$1\"", PG_SCRIPT, b->dir,
          (char *)NULL);
    _exit(127);
  }
  close(fds[0]);
  b->watchdog = pid;
  b->watch_fd = fds[1];
  return 0;
}

static int pg_group_setup(void **state) {
  struct backend *b = calloc(1, sizeof *b);
  snprintf(b->dir, sizeof b->dir, "/tmp/ts_store_pg_XXXXXX");
  if (!mkdtemp(b->dir) || start_watchdog(b)) return -1;
  b->pg = 1;
  *state = b;
  if (pg_script("start", b->dir, b->url, sizeof b->url) || strncmp(b->url, "postgres://", 11)) {
    fprintf(stderr, "PostgreSQL could not be started with %s\n", PG_SCRIPT);
    return -1;
  }
  return 0;
}

static int pg_group_teardown(void **state) {
  struct backend *b = *state;
  close(b->watch_fd);
  waitpid(b->watchdog, NULL, 0);
  struct stat sb;
  int gone = stat(b->dir, &sb) != 0;
  free(b);
  return gone ? 0 : -1;
}

static int sqlite_group_setup(void **state) {
  *state = calloc(1, sizeof(struct backend));
  return *state ? 0 : -1;
}

static int sqlite_group_teardown(void **state) {
  free(*state);
  return 0;
}

/* ---- each test ------------------------------------------------------------------------- */

static void direct_target(struct fx *f, char *out, size_t cap) {
  if (f->b->pg) snprintf(out, cap, "%s", f->b->url);
  else snprintf(out, cap, "%s/tingshuo.db", f->dir);
}

/* A connection of the test's own, beside the store's. */
static struct db *direct(struct fx *f) {
  char target[600], err[512];
  struct db *db = NULL;
  direct_target(f, target, sizeof target);
  assert_int_equal(db_open(&db, target, err, sizeof err), 0);
  assert_true(db_alive(db));
  return db;
}

static void direct_exec(struct fx *f, const char *sql) {
  struct db *db = direct(f);
  int rc = db_exec(db, sql, NULL, 0, NULL);
  if (rc) fprintf(stderr, "%s: %s\n", sql, db_error(db));
  assert_int_equal(rc, 0);
  db_close(db);
}

static int64_t scalar(struct fx *f, const char *sql) {
  struct db *db = direct(f);
  struct db_rows rows;
  assert_int_equal(db_exec(db, sql, NULL, 0, &rows), 0);
  int64_t v = -1;
  assert_int_equal(db_cell_int(&rows, 0, 0, &v), 0);
  db_rows_free(&rows);
  db_close(db);
  return v;
}

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof *f);
  f->b = *state;
  snprintf(f->dir, sizeof f->dir, "/tmp/ts_store_XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  assert_int_equal(uv_loop_init(&f->loop), 0);
  config_defaults(&f->cfg);
  snprintf(f->cfg.data_dir, sizeof f->cfg.data_dir, "%s", f->dir);
  if (f->b->pg) {
    snprintf(f->cfg.database_url, sizeof f->cfg.database_url, "%s", f->b->url);
    direct_exec(f, "DROP SCHEMA public CASCADE");
    direct_exec(f, "CREATE SCHEMA public");
  }
  *state = f;
  return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  return remove(path);
}

static void close_store(struct fx *f) {
  store_close(f->st, 3000);
  f->st = NULL;
  uv_run(&f->loop, UV_RUN_DEFAULT); /* the mailbox's close */
}

static int teardown(void **state) {
  struct fx *f = *state;
  if (f->locker) db_close(f->locker);
  if (f->st) close_store(f);
  if (f->b->pg) (void)pg_script("start", f->b->dir, NULL, 0); /* in case a test left it down */
  int rc = uv_loop_close(&f->loop);
  nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  *state = f->b;
  free(f);
  return rc ? -1 : 0;
}

static void open_store(struct fx *f) {
  char err[512];
  int rc = store_open(&f->st, &f->loop, &f->cfg, err, sizeof err);
  if (rc) fprintf(stderr, "store_open: %s\n", err);
  assert_int_equal(rc, 0);
}

static void tick(uv_timer_t *t) { (void)t; }

/* Turns the loop until done(f) or timeout_ms pass; returns done(f). */
static int spin_until(struct fx *f, int (*done)(struct fx *, void *), void *arg, int timeout_ms) {
  uv_timer_t t;
  uv_timer_init(&f->loop, &t);
  uv_timer_start(&t, tick, 5, 5);
  uv_update_time(&f->loop);
  uint64_t end = uv_now(&f->loop) + (uint64_t)timeout_ms;
  int ok;
  while (!(ok = done(f, arg)) && uv_now(&f->loop) < end) uv_run(&f->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  return ok;
}

static int idle(struct fx *f, void *arg) {
  struct store_stats s;
  store_get_stats(f->st, &s);
  return s.queued == 0;
}

static void wait_written(struct fx *f) { assert_true(spin_until(f, idle, NULL, 30000)); }

/* ---- reads ----------------------------------------------------------------------------- */

struct answer {
  int done, status;
  json_t *result;
};

static void on_answer(void *user, int status, json_t *result) {
  struct answer *a = user;
  a->done = 1;
  a->status = status;
  a->result = result;
}

static int answered(struct fx *f, void *arg) { return ((struct answer *)arg)->done; }

static json_t *await(struct fx *f, struct answer *a, int *status) {
  assert_false(a->done); /* never answered inside the call that asked */
  assert_true(spin_until(f, answered, a, 15000));
  *status = a->status;
  if (a->status) assert_null(a->result);
  return a->result;
}

static json_t *get_call(struct fx *f, const char *id, int *status) {
  struct answer a = {0};
  store_get_call(f->st, id, on_answer, &a);
  return await(f, &a, status);
}

static json_t *list_calls(struct fx *f, const struct store_query *q, int *status) {
  struct answer a = {0};
  store_list_calls(f->st, q, on_answer, &a);
  return await(f, &a, status);
}

static int delete_call(struct fx *f, const char *id, json_t **result) {
  struct answer a = {0};
  int status;
  store_delete_call(f->st, id, on_answer, &a);
  *result = await(f, &a, &status);
  return status;
}

/* {"call":{...}} of a call that must exist; the caller decrefs the returned top object. */
static json_t *must_get(struct fx *f, const char *id, json_t **call) {
  int status;
  json_t *top = get_call(f, id, &status);
  assert_int_equal(status, 0);
  *call = json_object_get(top, "call");
  assert_true(json_is_object(*call));
  return top;
}

static const char *str(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  assert_true(json_is_string(v));
  return json_string_value(v);
}

static void assert_null_field(json_t *o, const char *key) {
  assert_true(json_is_null(json_object_get(o, key)));
}

static double num(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  assert_true(json_is_number(v));
  return json_number_value(v);
}

/* ---- writes ---------------------------------------------------------------------------- */

static void begin_call(struct fx *f, const char *id, int64_t created, const char *node) {
  struct store_call c = {.id = id, .created_ms = created, .node = node, .agent = "voice",
                         .remote_addr = "127.0.0.1", .language = "en"};
  store_call_begin(f->st, &c);
}

static void end_call(struct fx *f, const char *id, int64_t ended, const char *reason) {
  struct store_call c = {.id = id, .ended_ms = ended, .end_reason = reason};
  store_call_end(f->st, &c);
}

static void put_turn(struct fx *f, const char *id, int index, int64_t at, const char *transcript,
                     const char *reply) {
  struct store_turn t;
  store_turn_init(&t);
  t.call_id = id;
  t.index = index;
  t.at_ms = at;
  t.transcript = transcript;
  t.reply = reply;
  store_turn_put(f->st, &t);
}

static int count_turns(struct fx *f, const char *id) {
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM turns WHERE call_id = '%s'", id);
  return (int)scalar(f, sql);
}

/* ---- the database coming and going ----------------------------------------------------- */

static void make_unavailable(struct fx *f) {
  if (f->b->pg) {
    assert_int_equal(pg_script("halt", f->b->dir, NULL, 0), 0);
    return;
  }
  f->locker = direct(f);
  assert_int_equal(db_begin(f->locker), 0); /* BEGIN IMMEDIATE: the write lock */
}

static void make_available(struct fx *f) {
  if (f->b->pg) {
    char url[512];
    assert_int_equal(pg_script("start", f->b->dir, url, sizeof url), 0);
    assert_string_equal(url, f->b->url);
    return;
  }
  db_rollback(f->locker);
  db_close(f->locker);
  f->locker = NULL;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void migrations_apply_on_a_fresh_database_and_not_again(void **state) {
  struct fx *f = *state;
  open_store(f);
  close_store(f);
  assert_int_equal(scalar(f, "SELECT MAX(version) FROM schema_version"), SCHEMA_VERSION);
  assert_int_equal(scalar(f, "SELECT COUNT(*) FROM schema_version"), SCHEMA_VERSION);
  assert_int_equal(scalar(f, "SELECT COUNT(*) FROM calls"), 0);
  open_store(f);
  begin_call(f, "m1", T0, NULL);
  wait_written(f);
  close_store(f);
  assert_int_equal(scalar(f, "SELECT COUNT(*) FROM schema_version"), SCHEMA_VERSION);
  assert_int_equal(scalar(f, "SELECT COUNT(*) FROM calls"), 1);
}

static void a_newer_schema_stops_the_start(void **state) {
  struct fx *f = *state;
  open_store(f);
  close_store(f);
  char sql[200];
  snprintf(sql, sizeof sql, "INSERT INTO schema_version (version, applied_ms) VALUES (%d, 0)",
           SCHEMA_VERSION + 5);
  direct_exec(f, sql);
  char err[512] = "";
  struct store *st = NULL;
  assert_int_equal(store_open(&st, &f->loop, &f->cfg, err, sizeof err), -ENOTSUP);
  assert_null(st);
  char newer[64], ours[64];
  snprintf(newer, sizeof newer, "version %d", SCHEMA_VERSION + 5);
  snprintf(ours, sizeof ours, "(version %d)", SCHEMA_VERSION);
  assert_non_null(strstr(err, newer));
  assert_non_null(strstr(err, ours));
  assert_int_equal(scalar(f, "SELECT COUNT(*) FROM schema_version"), SCHEMA_VERSION + 1);
}

static void a_call_and_its_turns_come_back_whole(void **state) {
  struct fx *f = *state;
  open_store(f);
  struct store_call c = {.id = "c1", .created_ms = T0, .remote_addr = "10.0.0.7",
                         .user_agent = "Mozilla/5.0 test", .agent = "voice",
                         .asr = "pocketsphinx", .llm = "local", .llm_model = "m1",
                         .tts = "flite", .tts_voice = "slt", .language = "en",
                         .settings_json = "{\"language\":\"en\",\"rate\":100}"};
  store_call_begin(f->st, &c);
  store_call_connected(f->st, "c1", T0 + 500);
  put_turn(f, "c1", 0, T0 + 600, NULL, "Hello!");
  struct store_turn t;
  store_turn_init(&t);
  t.call_id = "c1";
  t.index = 1;
  t.at_ms = T0 + 4000;
  t.transcript = "what is seven plus five";
  t.reply = "twelve";
  t.endpoint_ms = 300;
  t.asr_ms = 120.5;
  t.voice_to_voice_ms = 910.25;
  store_turn_put(f->st, &t);
  t.index = 2;
  t.transcript = "and times two";
  t.reply = "twen";
  t.interrupted = 1;
  t.barge_in_ms = 250;
  t.error = "tts timeout";
  store_turn_put(f->st, &t);
  struct store_call e = {.id = "c1", .ended_ms = T0 + 10500, .end_reason = "hangup",
                         .packets_received = 2100, .packets_lost = 3, .recording = "c1.ogg"};
  store_call_end(f->st, &e);
  wait_written(f);

  json_t *call, *top = must_get(f, "c1", &call);
  assert_string_equal(str(call, "id"), "c1");
  assert_string_equal(str(call, "created_at"), "2023-11-14T22:13:20.123Z");
  assert_string_equal(str(call, "connected_at"), "2023-11-14T22:13:20.623Z");
  assert_string_equal(str(call, "ended_at"), "2023-11-14T22:13:30.623Z");
  assert_true(num(call, "duration_s") == 10.0);
  assert_string_equal(str(call, "end_reason"), "hangup");
  assert_string_equal(str(call, "remote_addr"), "10.0.0.7");
  assert_string_equal(str(call, "user_agent"), "Mozilla/5.0 test");
  assert_string_equal(str(call, "node"), store_node(f->st));
  assert_string_equal(str(call, "agent"), "voice");
  assert_string_equal(str(call, "language"), "en");
  json_t *eng = json_object_get(call, "engines");
  assert_string_equal(str(eng, "asr"), "pocketsphinx");
  assert_null_field(eng, "asr_model");
  assert_string_equal(str(eng, "llm_model"), "m1");
  assert_string_equal(str(eng, "tts_voice"), "slt");
  json_t *set = json_object_get(call, "settings");
  assert_string_equal(str(set, "language"), "en");
  assert_true(num(set, "rate") == 100);
  assert_true(num(call, "packets_received") == 2100);
  assert_true(num(call, "packets_lost") == 3);
  assert_true(json_is_null(json_object_get(call, "recording"))); /* no file in data_dir */

  json_t *turns = json_object_get(call, "turns");
  assert_int_equal(json_array_size(turns), 3);
  json_t *t0 = json_array_get(turns, 0), *t1 = json_array_get(turns, 1),
         *t2 = json_array_get(turns, 2);
  assert_true(num(t0, "index") == 0);
  assert_null_field(t0, "transcript");
  assert_string_equal(str(t0, "reply"), "Hello!");
  assert_null_field(t0, "endpoint_ms");
  assert_null_field(t0, "barge_in_ms");
  assert_string_equal(str(t1, "at"), "2023-11-14T22:13:24.123Z");
  assert_string_equal(str(t1, "transcript"), "what is seven plus five");
  assert_true(json_is_false(json_object_get(t1, "interrupted")));
  assert_true(num(t1, "endpoint_ms") == 300);
  assert_true(num(t1, "asr_ms") == 120.5);
  assert_true(num(t1, "voice_to_voice_ms") == 910.25);
  assert_null_field(t1, "llm_first_token_ms");
  assert_null_field(t1, "onset_lag_ms");
  assert_null_field(t1, "error");
  assert_true(json_is_true(json_object_get(t2, "interrupted")));
  assert_true(num(t2, "barge_in_ms") == 250);
  assert_string_equal(str(t2, "error"), "tts timeout");
  json_decref(top);

  int status;
  struct store_query q = {0};
  json_t *list = list_calls(f, &q, &status);
  assert_int_equal(status, 0);
  json_t *calls = json_object_get(list, "calls");
  assert_int_equal(json_array_size(calls), 1);
  json_t *s = json_array_get(calls, 0);
  assert_string_equal(str(s, "id"), "c1");
  assert_true(num(s, "turns") == 3);
  assert_string_equal(str(s, "preview"), "what is seven plus five");
  assert_true(json_is_false(json_object_get(s, "recording"))); /* its file was never written */
  assert_true(num(s, "duration_s") == 10.0);
  assert_null_field(list, "next_cursor");
  json_decref(list);
}

static void a_turn_stored_again_replaces_the_first(void **state) {
  struct fx *f = *state;
  open_store(f);
  begin_call(f, "u1", T0, NULL);
  put_turn(f, "u1", 0, T0 + 100, "hello there", NULL);
  wait_written(f);
  put_turn(f, "u1", 0, T0 + 100, "hello there", "hi, how can I help?");
  wait_written(f);
  json_t *call, *top = must_get(f, "u1", &call);
  json_t *turns = json_object_get(call, "turns");
  assert_int_equal(json_array_size(turns), 1);
  assert_string_equal(str(json_array_get(turns, 0), "reply"), "hi, how can I help?");
  assert_string_equal(str(json_array_get(turns, 0), "transcript"), "hello there");
  json_decref(top);
  assert_int_equal(count_turns(f, "u1"), 1);
}

static void a_read_sees_the_events_queued_before_it(void **state) {
  struct fx *f = *state;
  open_store(f);
  begin_call(f, "w1", T0, NULL);
  for (int i = 0; i < 50; i++) put_turn(f, "w1", i, T0 + i, "hello", "hi");
  end_call(f, "w1", T0 + 100, "hangup");
  json_t *call, *top = must_get(f, "w1", &call); /* no waiting for the queue first */
  assert_int_equal(json_array_size(json_object_get(call, "turns")), 50);
  assert_string_equal(str(call, "end_reason"), "hangup");
  json_decref(top);
}

/* Every page of the list with `limit`; returns the ids in order. */
static int page_through(struct fx *f, int limit, char ids[][16], int max, int *pages) {
  char cursor[512] = "";
  int n = 0;
  *pages = 0;
  for (;;) {
    struct store_query q = {.limit = limit, .cursor = *cursor ? cursor : NULL};
    int status;
    json_t *page = list_calls(f, &q, &status);
    assert_int_equal(status, 0);
    (*pages)++;
    json_t *calls = json_object_get(page, "calls");
    assert_true(json_array_size(calls) <= (size_t)limit);
    for (size_t i = 0; i < json_array_size(calls) && n < max; i++)
      snprintf(ids[n++], 16, "%s", str(json_array_get(calls, i), "id"));
    json_t *next = json_object_get(page, "next_cursor");
    if (json_is_null(next)) {
      json_decref(page);
      return n;
    }
    snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
    json_decref(page);
    assert_true(*pages < 20);
  }
}

static void pages_follow_the_cursor_across_equal_times(void **state) {
  struct fx *f = *state;
  open_store(f);
  /* Five calls share T0, four T0 + 1, three T0 - 1: newest first, then id descending. */
  static const char *const expect[] = {"d", "c", "b", "a", "e4", "e3", "e2", "e1",
                                       "e0", "z2", "z1", "z0"};
  const char *t1[] = {"a", "b", "c", "d"}, *t0[] = {"e0", "e1", "e2", "e3", "e4"},
             *tm[] = {"z0", "z1", "z2"};
  for (int i = 0; i < 5; i++) begin_call(f, t0[i], T0, NULL);
  for (int i = 0; i < 4; i++) begin_call(f, t1[i], T0 + 1, NULL);
  for (int i = 0; i < 3; i++) begin_call(f, tm[i], T0 - 1, NULL);
  wait_written(f);
  char ids[20][16];
  int pages;
  int n = page_through(f, 5, ids, 20, &pages);
  assert_int_equal(n, 12);
  assert_int_equal(pages, 3);
  for (int i = 0; i < 12; i++) assert_string_equal(ids[i], expect[i]);
  n = page_through(f, 1, ids, 20, &pages);
  assert_int_equal(n, 12);
  for (int i = 0; i < 12; i++) assert_string_equal(ids[i], expect[i]);

  int status;
  const char *bad[] = {"!!!", "bm90IGEgY3Vyc29y" /* "not a cursor" */, "LTU6YQ" /* "-5:a" */,
                       "x"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    struct store_query q = {.cursor = bad[i]};
    assert_null(list_calls(f, &q, &status));
    assert_int_equal(status, -EINVAL);
  }
  struct store_query over = {.limit = 201}, under = {.limit = -1};
  assert_null(list_calls(f, &over, &status));
  assert_int_equal(status, -EINVAL);
  assert_null(list_calls(f, &under, &status));
  assert_int_equal(status, -EINVAL);
}

/* The ids the list answers for q, comma separated. */
static void ids_of(struct fx *f, const struct store_query *q, char *out, size_t cap) {
  int status;
  json_t *page = list_calls(f, q, &status);
  assert_int_equal(status, 0);
  out[0] = '\0';
  json_t *calls = json_object_get(page, "calls");
  for (size_t i = 0; i < json_array_size(calls); i++) {
    size_t len = strlen(out);
    snprintf(out + len, cap - len, "%s%s", i ? "," : "", str(json_array_get(calls, i), "id"));
  }
  json_decref(page);
}

static void every_filter_selects_its_calls(void **state) {
  struct fx *f = *state;
  open_store(f);
  const char *reasons[] = {"hangup", "error", "hangup", "timeout", "error"};
  char id[8];
  for (int i = 0; i < 5; i++) {
    snprintf(id, sizeof id, "f%d", i);
    begin_call(f, id, T0 + i * 1000, NULL);
    end_call(f, id, T0 + i * 1000 + 500, reasons[i]);
  }
  wait_written(f);
  char got[256];
  struct store_query range = {.from_ms = T0 + 1000, .to_ms = T0 + 3000};
  ids_of(f, &range, got, sizeof got);
  assert_string_equal(got, "f2,f1");
  struct store_query from = {.from_ms = T0 + 3000};
  ids_of(f, &from, got, sizeof got);
  assert_string_equal(got, "f4,f3");
  struct store_query to = {.to_ms = T0 + 1};
  ids_of(f, &to, got, sizeof got);
  assert_string_equal(got, "f0");
  struct store_query reason = {.end_reason = "error"};
  ids_of(f, &reason, got, sizeof got);
  assert_string_equal(got, "f4,f1");
  struct store_query both = {.end_reason = "hangup", .from_ms = T0 + 1};
  ids_of(f, &both, got, sizeof got);
  assert_string_equal(got, "f2");
  struct store_query none = {.end_reason = "no such reason"};
  ids_of(f, &none, got, sizeof got);
  assert_string_equal(got, "");
  int status;
  struct store_query backwards = {.from_ms = T0 + 3000, .to_ms = T0};
  assert_null(list_calls(f, &backwards, &status));
  assert_int_equal(status, -EINVAL);
}

static void text_search_finds_words_in_any_case_chinese_and_literal_wildcards(void **state) {
  struct fx *f = *state;
  open_store(f);
  struct {
    const char *id, *transcript, *reply;
  } calls[] = {
      {"s1", "What is SEVEN plus five", "twelve"},
      {"s2", "今天天气怎么样", "今天是晴天"},
      {"s3", "I am 100% sure", NULL},
      {"s4", "I am 1000 sure", NULL},
      {"s5", NULL, "use snake_case"},
      {"s6", NULL, "use snakeXcase"},
      {"s7", "look in C:\\dir", NULL},
  };
  for (int i = 0; i < 7; i++) {
    begin_call(f, calls[i].id, T0 + i, NULL);
    put_turn(f, calls[i].id, 0, T0 + i + 10, calls[i].transcript, calls[i].reply);
  }
  wait_written(f);
  struct {
    const char *q, *ids;
  } cases[] = {
      {"seven", "s1"},   {"plus FIVE", "s1"}, {"TWELVE", "s1"}, {"天气", "s2"},
      {"晴天", "s2"},    {"今天", "s2"},      {"0%", "s3"},     {"% s", "s3"},
      {"e_c", "s5"},     {"_", "s5"},         {":\\d", "s7"},   {"nothing like this", ""},
      {"1000", "s4"},    {"sure", "s4,s3"},
  };
  char got[256];
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    struct store_query q = {.text = cases[i].q};
    ids_of(f, &q, got, sizeof got);
    if (strcmp(got, cases[i].ids)) fprintf(stderr, "q=%s: got [%s]\n", cases[i].q, got);
    assert_string_equal(got, cases[i].ids);
  }
}

/* The recording's size is the file's; a call whose file is gone shows none. */
static void a_recording_is_shown_while_its_file_exists(void **state) {
  struct fx *f = *state;
  char recdir[512], rec[600];
  snprintf(recdir, sizeof recdir, "%s/recordings", f->dir);
  assert_int_equal(mkdir(recdir, 0700), 0);
  snprintf(rec, sizeof rec, "%s/r1.ogg", recdir);
  FILE *fp = fopen(rec, "w");
  assert_non_null(fp);
  for (int i = 0; i < 1234; i++) fputc('x', fp);
  fclose(fp);
  open_store(f);
  begin_call(f, "r1", T0, NULL);
  struct store_call e = {.id = "r1", .ended_ms = T0 + 9, .end_reason = "hangup",
                         .recording = "r1.ogg"};
  store_call_end(f->st, &e);
  wait_written(f);
  json_t *call, *top = must_get(f, "r1", &call);
  json_t *r = json_object_get(call, "recording");
  assert_string_equal(str(r, "url"), "/api/calls/r1/recording");
  assert_true(num(r, "bytes") == 1234);

  json_decref(top);
  assert_int_equal(unlink(rec), 0);
  top = must_get(f, "r1", &call);
  assert_true(json_is_null(json_object_get(call, "recording")));
  json_decref(top);
}

static void deleting_a_call_removes_its_turns_and_recording(void **state) {
  struct fx *f = *state;
  char recdir[512], rec[600];
  snprintf(recdir, sizeof recdir, "%s/recordings", f->dir);
  assert_int_equal(mkdir(recdir, 0700), 0);
  snprintf(rec, sizeof rec, "%s/d1.ogg", recdir);
  FILE *fp = fopen(rec, "w");
  assert_non_null(fp);
  fputs("OggS", fp);
  fclose(fp);
  open_store(f);
  begin_call(f, "d1", T0, NULL);
  begin_call(f, "d2", T0 + 1, NULL);
  put_turn(f, "d1", 0, T0 + 5, "one", "two");
  put_turn(f, "d1", 1, T0 + 6, "three", "four");
  put_turn(f, "d2", 0, T0 + 7, "keep", "me");
  struct store_call e = {.id = "d1", .ended_ms = T0 + 9, .end_reason = "hangup",
                         .recording = "d1.ogg"};
  store_call_end(f->st, &e);
  wait_written(f);
  json_t *res;
  assert_int_equal(delete_call(f, "d1", &res), 0);
  assert_string_equal(str(res, "deleted"), "d1");
  json_decref(res);
  assert_int_equal(access(rec, F_OK), -1);
  assert_int_equal(errno, ENOENT);
  int status;
  assert_null(get_call(f, "d1", &status));
  assert_int_equal(status, -ENOENT);
  assert_int_equal(count_turns(f, "d1"), 0);
  assert_int_equal(count_turns(f, "d2"), 1);
  assert_int_equal(delete_call(f, "d1", &res), -ENOENT);
  assert_int_equal(delete_call(f, "", &res), -ENOENT);
}

static void a_full_queue_drops_the_oldest_turns_and_counts_them(void **state) {
  struct fx *f = *state;
  f->cfg.records_queue = 20;
  open_store(f);
  begin_call(f, "q1", T0, NULL);
  wait_written(f);
  make_unavailable(f);
  for (int i = 0; i < 27; i++) put_turn(f, "q1", i, T0 + i, "words", "reply");
  end_call(f, "q1", T0 + 100, "hangup"); /* a call event is kept even past the bound */
  struct store_stats s;
  store_get_stats(f->st, &s);
  assert_int_equal(s.dropped, 8);
  assert_int_equal(s.queued, 20);
  make_available(f);
  wait_written(f);
  store_get_stats(f->st, &s);
  assert_int_equal(s.dropped, 8);
  json_t *call, *top = must_get(f, "q1", &call);
  json_t *turns = json_object_get(call, "turns");
  assert_int_equal(json_array_size(turns), 19);
  for (int i = 0; i < 19; i++) assert_true(num(json_array_get(turns, (size_t)i), "index") == 8 + i);
  assert_string_equal(str(call, "end_reason"), "hangup");
  json_decref(top);
}

struct writer {
  struct store *st;
  int n;
};

static void write_turns(void *arg) {
  struct writer *w = arg;
  for (int i = 0; i < w->n; i++) {
    struct store_turn t;
    store_turn_init(&t);
    t.call_id = i % 2 ? "o2" : "o1";
    t.index = i / 2;
    t.at_ms = T0 + i;
    t.transcript = "during the outage";
    store_turn_put(w->st, &t);
    uv_sleep(2);
  }
}

/* Turns the loop for `ms`. */
static void sleep_loop(struct fx *f, int ms) {
  struct answer never = {0};
  (void)spin_until(f, answered, &never, ms);
}

static void every_event_survives_the_database_going_away_and_back(void **state) {
  struct fx *f = *state;
  open_store(f);
  begin_call(f, "o1", T0, NULL);
  begin_call(f, "o2", T0, NULL);
  wait_written(f);
  struct writer w = {f->st, 300};
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, write_turns, &w), 0);
  sleep_loop(f, 150);
  make_unavailable(f);
  sleep_loop(f, 100);
  int status;
  json_t *r = get_call(f, "o1", &status);
  if (f->b->pg) assert_int_equal(status, -EIO); /* down: reads fail at once */
  else assert_int_equal(status, 0);               /* SQLite's WAL: reads go on beside the lock */
  json_decref(r);
  struct store_stats s;
  if (f->b->pg) {
    store_get_stats(f->st, &s);
    assert_int_equal(s.connected, 0);
  }
  sleep_loop(f, 700); /* longer than SQLite's wait for a lock: a write must fail */
  make_available(f);
  uv_thread_join(&th);
  end_call(f, "o1", T0 + 1000, "hangup");
  end_call(f, "o2", T0 + 1000, "hangup");
  wait_written(f);
  store_get_stats(f->st, &s);
  assert_int_equal(s.dropped, 0);
  assert_true(s.errors > 0); /* the outage was real */
  assert_int_equal(s.connected, 1);
  assert_int_equal(count_turns(f, "o1"), 150);
  assert_int_equal(count_turns(f, "o2"), 150);
  json_t *call, *top = must_get(f, "o2", &call);
  assert_string_equal(str(call, "end_reason"), "hangup");
  json_decref(top);
}

static void a_refused_event_does_not_hold_up_the_rest(void **state) {
  struct fx *f = *state;
  open_store(f);
  begin_call(f, "r1", T0, NULL);
  put_turn(f, "ghost", 0, T0, "a call never begun", NULL); /* no such call: refused */
  put_turn(f, "r1", 0, T0 + 1, "still written", NULL);
  put_turn(f, "r1", 1, T0 + 2, "bad \xff byte", NULL);      /* cleaned, not refused */
  wait_written(f);
  struct store_stats s;
  store_get_stats(f->st, &s);
  assert_true(s.errors >= 1);
  assert_int_equal(count_turns(f, "ghost"), 0);
  assert_int_equal(count_turns(f, "r1"), 2);
  json_t *call, *top = must_get(f, "r1", &call);
  assert_string_equal(str(json_array_get(json_object_get(call, "turns"), 1), "transcript"),
                      "bad \xEF\xBF\xBD byte");
  json_decref(top);
}

static void retention_purges_old_calls_with_their_recordings(void **state) {
  struct fx *f = *state;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  int64_t now = (int64_t)tv.tv_sec * 1000;
  char recdir[512], old_rec[600], new_rec[600];
  snprintf(recdir, sizeof recdir, "%s/recordings", f->dir);
  assert_int_equal(mkdir(recdir, 0700), 0);
  snprintf(old_rec, sizeof old_rec, "%s/old.ogg", recdir);
  snprintf(new_rec, sizeof new_rec, "%s/new.ogg", recdir);
  fclose(fopen(old_rec, "w"));
  fclose(fopen(new_rec, "w"));
  open_store(f);
  begin_call(f, "old", now - 3 * 86400000LL, NULL);
  put_turn(f, "old", 0, now - 3 * 86400000LL + 10, "long ago", NULL);
  struct store_call e = {.id = "old", .ended_ms = now - 3 * 86400000LL + 20,
                         .end_reason = "hangup", .recording = "old.ogg"};
  store_call_end(f->st, &e);
  begin_call(f, "new", now - 3600000, NULL);
  e.id = "new";
  e.ended_ms = now - 3500000;
  e.recording = "new.ogg";
  store_call_end(f->st, &e);
  wait_written(f);
  close_store(f);
  f->cfg.retention_days = 2;
  open_store(f);
  struct store_stats s;
  for (int i = 0; i < 300; i++) {
    store_get_stats(f->st, &s);
    if (s.purged) break;
    uv_sleep(10);
  }
  assert_int_equal(s.purged, 1);
  int status;
  assert_null(get_call(f, "old", &status));
  assert_int_equal(status, -ENOENT);
  assert_int_equal(count_turns(f, "old"), 0);
  assert_int_equal(access(old_rec, F_OK), -1);
  assert_int_equal(access(new_rec, F_OK), 0);
  json_t *call, *top = must_get(f, "new", &call);
  json_decref(top);
}

static void recording_paths_are_plain_names_only(void **state) {
  struct fx *f = *state;
  char out[2048], want[2048];
  assert_int_equal(store_recording_path(&f->cfg, "3f9a0c1d.ogg", out, sizeof out), 0);
  snprintf(want, sizeof want, "%s/recordings/3f9a0c1d.ogg", f->dir);
  assert_string_equal(out, want);
  const char *bad[] = {"../x.ogg", "a/b.ogg", "..", ".", "", ".hidden", "a..b",
                       "x\\y",     "/etc/passwd", "a b", "c\xc3\xa4.ogg", NULL};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    strcpy(out, "unchanged");
    assert_int_equal(store_recording_path(&f->cfg, bad[i], out, sizeof out), -EINVAL);
    assert_string_equal(out, "");
  }
  char small[8];
  assert_int_equal(store_recording_path(&f->cfg, "a.ogg", small, sizeof small), -ENOSPC);
  assert_string_equal(small, "");
}

static void a_crash_leaves_no_call_of_this_node_open(void **state) {
  struct fx *f = *state;
  open_store(f);
  begin_call(f, "mine", T0, NULL);
  store_call_connected(f->st, "mine", T0 + 100);
  put_turn(f, "mine", 0, T0 + 1000, NULL, "Hello!");
  put_turn(f, "mine", 1, T0 + 2000, "hi", "how can I help");
  begin_call(f, "quiet", T0, NULL);
  store_call_connected(f->st, "quiet", T0 + 50);
  begin_call(f, "early", T0 + 7, NULL);
  begin_call(f, "theirs", T0, "another-node");
  begin_call(f, "done", T0, NULL);
  end_call(f, "done", T0 + 300, "hangup");
  wait_written(f);
  close_store(f); /* the calls were never ended, as after a SIGKILL */
  open_store(f);
  struct {
    const char *id, *ended, *reason;
  } want[] = {
      {"mine", "2023-11-14T22:13:22.123Z", "server stopped"},
      {"quiet", "2023-11-14T22:13:20.173Z", "server stopped"},
      {"early", "2023-11-14T22:13:20.130Z", "server stopped"},
      {"done", "2023-11-14T22:13:20.423Z", "hangup"},
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    json_t *call, *top = must_get(f, want[i].id, &call);
    assert_string_equal(str(call, "ended_at"), want[i].ended);
    assert_string_equal(str(call, "end_reason"), want[i].reason);
    json_decref(top);
  }
  json_t *call, *top = must_get(f, "theirs", &call);
  assert_null_field(call, "ended_at");
  assert_null_field(call, "end_reason");
  json_decref(top);
}

/* ---- usage and cost -------------------------------------------------------------------- */

static struct store_usage some_usage(int64_t in, int64_t cached, int64_t written, int64_t out,
                                     int64_t chars, int64_t chars_cached, double asr_s) {
  return (struct store_usage){.reported = 1, .llm_input_tokens = in, .llm_cached_tokens = cached,
                              .llm_cache_write_tokens = written, .llm_output_tokens = out,
                              .tts_chars = chars, .tts_chars_cached = chars_cached,
                              .asr_seconds = asr_s};
}

static int64_t inum(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  assert_true(json_is_integer(v));
  return json_integer_value(v);
}

static void assert_usage(json_t *u, int64_t in, int64_t cached, int64_t written, int64_t out,
                         int64_t chars, int64_t chars_cached, double asr_s) {
  assert_true(json_is_object(u));
  assert_int_equal(inum(u, "llm_input_tokens"), in);
  assert_int_equal(inum(u, "llm_cached_tokens"), cached);
  assert_int_equal(inum(u, "llm_cache_write_tokens"), written);
  assert_int_equal(inum(u, "llm_output_tokens"), out);
  assert_int_equal(inum(u, "tts_chars"), chars);
  assert_int_equal(inum(u, "tts_chars_cached"), chars_cached);
  assert_float_equal(num(u, "asr_seconds"), asr_s, 1e-9);
}

static void usage_and_cost_come_back_for_the_call_and_its_turns(void **state) {
  struct fx *f = *state;
  open_store(f);
  begin_call(f, "p1", T0, NULL);
  struct store_turn t;
  store_turn_init(&t);
  t.call_id = "p1";
  t.at_ms = T0 + 100;
  t.reply = "Hello!";
  t.tts_cached = 1;
  t.usage = some_usage(0, 0, 0, 0, 0, 6, 0);
  store_turn_put(f->st, &t);
  t.index = 1;
  t.transcript = "what is the time";
  t.reply = "It is noon.";
  t.tts_cached = 0;
  t.usage = some_usage(1200, 1024, 0, 9, 11, 0, 2.5);
  store_turn_put(f->st, &t);
  store_turn_init(&t); /* a turn no usage was reported for */
  t.call_id = "p1";
  t.index = 2;
  t.at_ms = T0 + 5000;
  t.transcript = "bye";
  store_turn_put(f->st, &t);
  struct store_call e = {.id = "p1", .ended_ms = T0 + 9000, .end_reason = "hangup",
                         .usage = some_usage(1200, 1024, 0, 9, 11, 6, 3.7),
                         .currency = "EUR", .cost = 0.0123};
  store_call_end(f->st, &e);
  begin_call(f, "p2", T0 + 1, NULL); /* ended unpriced */
  struct store_call e2 = {.id = "p2", .end_reason = "hangup",
                          .usage = some_usage(0, 0, 0, 0, 0, 0, 0)};
  store_call_end(f->st, &e2);
  begin_call(f, "p3", T0 + 2, NULL); /* not ended yet */
  wait_written(f);

  json_t *call, *top = must_get(f, "p1", &call);
  assert_true(num(call, "cost") == 0.0123);
  assert_string_equal(str(call, "currency"), "EUR");
  assert_usage(json_object_get(call, "usage"), 1200, 1024, 0, 9, 11, 6, 3.7);
  json_t *turns = json_object_get(call, "turns");
  json_t *t0 = json_array_get(turns, 0), *t1 = json_array_get(turns, 1),
         *t2 = json_array_get(turns, 2);
  assert_true(json_is_true(json_object_get(t0, "tts_cached")));
  assert_usage(json_object_get(t0, "usage"), 0, 0, 0, 0, 0, 6, 0);
  assert_true(json_is_false(json_object_get(t1, "tts_cached")));
  assert_usage(json_object_get(t1, "usage"), 1200, 1024, 0, 9, 11, 0, 2.5);
  assert_null_field(t2, "tts_cached");
  assert_null_field(t2, "usage");
  json_decref(top);

  top = must_get(f, "p2", &call);
  assert_null_field(call, "cost"); /* not priced: unknown, not free */
  assert_null_field(call, "currency");
  assert_usage(json_object_get(call, "usage"), 0, 0, 0, 0, 0, 0, 0);
  json_decref(top);
  top = must_get(f, "p3", &call);
  assert_null_field(call, "cost");
  assert_null_field(call, "usage");
  json_decref(top);

  int status;
  struct store_query q = {0};
  json_t *list = list_calls(f, &q, &status);
  assert_int_equal(status, 0);
  json_t *calls = json_object_get(list, "calls");
  assert_int_equal(json_array_size(calls), 3);
  json_t *s1 = json_array_get(calls, 2), *s2 = json_array_get(calls, 1);
  assert_string_equal(str(s1, "id"), "p1");
  assert_true(num(s1, "cost") == 0.0123);
  assert_string_equal(str(s1, "currency"), "EUR");
  assert_null_field(s2, "cost");
  assert_null(json_object_get(s1, "usage")); /* the summary carries the cost alone */
  json_decref(list);
}

/* Nonsense from a writer is cleaned, not stored: negative counts are 0, a cost that is
 * not a number leaves the call unpriced. */
static void bad_usage_figures_are_cleaned(void **state) {
  struct fx *f = *state;
  open_store(f);
  begin_call(f, "n1", T0, NULL);
  struct store_turn t;
  store_turn_init(&t);
  t.call_id = "n1";
  t.at_ms = T0;
  t.tts_cached = 7;
  t.usage = some_usage(-5, 3, -1, 2, -9, 1, -2.0);
  store_turn_put(f->st, &t);
  struct store_call e = {.id = "n1", .end_reason = "hangup", .currency = "USD",
                         .cost = -1.0, .usage = some_usage(1, 1, 1, 1, 1, 1, 0.0 / 0.0)};
  store_call_end(f->st, &e);
  wait_written(f);
  json_t *call, *top = must_get(f, "n1", &call);
  assert_null_field(call, "cost");
  assert_null_field(call, "currency");
  assert_usage(json_object_get(call, "usage"), 1, 1, 1, 1, 1, 1, 0);
  json_t *t0 = json_array_get(json_object_get(call, "turns"), 0);
  assert_null_field(t0, "tts_cached");
  assert_usage(json_object_get(t0, "usage"), 0, 3, 0, 2, 0, 1, 0);
  json_decref(top);
}

/* A crashed call's usage is what its stored turns add up to; its cost is not known. */
static void a_crash_leaves_usage_summed_from_the_turns(void **state) {
  struct fx *f = *state;
  open_store(f);
  begin_call(f, "k1", T0, NULL);
  struct store_turn t;
  store_turn_init(&t);
  t.call_id = "k1";
  t.at_ms = T0 + 10;
  t.usage = some_usage(100, 40, 10, 20, 30, 5, 1.5);
  store_turn_put(f->st, &t);
  t.index = 1;
  t.usage = some_usage(200, 150, 0, 25, 35, 0, 2.0);
  store_turn_put(f->st, &t);
  wait_written(f);
  close_store(f);
  open_store(f);
  json_t *call, *top = must_get(f, "k1", &call);
  assert_string_equal(str(call, "end_reason"), "server stopped");
  assert_usage(json_object_get(call, "usage"), 300, 190, 10, 45, 65, 5, 3.5);
  assert_null_field(call, "cost");
  json_decref(top);
}

/* The tables as version 1 made them, before usage was kept. */
static const char *const schema_v1[] = {
    "CREATE TABLE calls (id TEXT PRIMARY KEY, created_ms BIGINT NOT NULL,"
    " connected_ms BIGINT, ended_ms BIGINT, end_reason TEXT, node TEXT, remote_addr TEXT,"
    " user_agent TEXT, agent TEXT, asr TEXT, asr_model TEXT, llm TEXT, llm_model TEXT,"
    " tts TEXT, tts_model TEXT, tts_voice TEXT, language TEXT, settings TEXT,"
    " packets_received BIGINT NOT NULL DEFAULT 0, packets_lost BIGINT NOT NULL DEFAULT 0,"
    " recording TEXT)",
    "CREATE TABLE turns (call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,"
    " idx INTEGER NOT NULL, at_ms BIGINT NOT NULL, transcript TEXT, reply TEXT,"
    " interrupted INTEGER NOT NULL DEFAULT 0, endpoint_ms DOUBLE PRECISION,"
    " asr_ms DOUBLE PRECISION, llm_first_token_ms DOUBLE PRECISION,"
    " llm_first_sentence_ms DOUBLE PRECISION, tts_first_audio_ms DOUBLE PRECISION,"
    " voice_to_voice_ms DOUBLE PRECISION, overhead_ms DOUBLE PRECISION,"
    " barge_in_ms DOUBLE PRECISION, onset_lag_ms DOUBLE PRECISION, error TEXT,"
    " PRIMARY KEY (call_id, idx))",
    "CREATE INDEX calls_newest ON calls (created_ms DESC, id DESC)",
    "CREATE INDEX calls_end_reason ON calls (end_reason, created_ms DESC)",
    "CREATE INDEX calls_open ON calls (node) WHERE ended_ms IS NULL",
    "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    "INSERT INTO schema_version VALUES (1, 0)",
    "INSERT INTO calls (id, created_ms, ended_ms, end_reason, node, agent)"
    " VALUES ('old', 1700000000123, 1700000009123, 'hangup', 'n', 'voice')",
    "INSERT INTO turns (call_id, idx, at_ms, transcript, reply, voice_to_voice_ms)"
    " VALUES ('old', 0, 1700000001123, 'hello', 'hi', 700.5)",
};

/* A version 1 database with one call, made by hand as an older tingshuo left it. */
static void make_old_database(struct fx *f) {
  if (!f->b->pg) {
    char path[300];
    snprintf(path, sizeof path, "%s/tingshuo.db", f->dir);
    struct db *db = NULL;
    char err[256];
    assert_int_equal(db_open(&db, path, err, sizeof err), 0);
    db_close(db);
  }
  for (size_t i = 0; i < sizeof schema_v1 / sizeof *schema_v1; i++) direct_exec(f, schema_v1[i]);
}

static void a_version_1_database_is_upgraded_keeping_its_calls(void **state) {
  struct fx *f = *state;
  make_old_database(f);
  open_store(f);
  assert_int_equal(scalar(f, "SELECT MAX(version) FROM schema_version"), SCHEMA_VERSION);
  json_t *call, *top = must_get(f, "old", &call);
  assert_string_equal(str(call, "end_reason"), "hangup");
  assert_null_field(call, "usage"); /* nothing is known of it: not zeros */
  assert_null_field(call, "cost");
  json_t *t0 = json_array_get(json_object_get(call, "turns"), 0);
  assert_string_equal(str(t0, "reply"), "hi");
  assert_true(num(t0, "voice_to_voice_ms") == 700.5);
  assert_null_field(t0, "usage");
  assert_null_field(t0, "tts_cached");
  json_decref(top);
  /* New records go in beside it. */
  begin_call(f, "new", T0 + 1, NULL);
  struct store_call e = {.id = "new", .end_reason = "hangup", .currency = "USD", .cost = 0.5,
                         .usage = some_usage(1, 0, 0, 1, 0, 0, 0)};
  store_call_end(f->st, &e);
  wait_written(f);
  top = must_get(f, "new", &call);
  assert_true(num(call, "cost") == 0.5);
  json_decref(top);
}

/* ---- tool calls ------------------------------------------------------------------------ */

static void put_tool_turn(struct fx *f, const char *id, int index, const char *json, int count) {
  struct store_turn t;
  store_turn_init(&t);
  t.call_id = id;
  t.index = index;
  t.at_ms = T0 + index;
  t.transcript = "where is my order";
  t.reply = "It has shipped.";
  t.tool_calls_json = json;
  t.tool_call_count = count;
  store_turn_put(f->st, &t);
}

static json_t *summary_of(json_t *list, const char *id) {
  json_t *calls = json_object_get(list, "calls"), *c;
  size_t i;
  json_array_foreach(calls, i, c) if (strcmp(str(c, "id"), id) == 0) return c;
  fail_msg("call %s not listed", id);
  return NULL;
}

static void tool_calls_come_back_with_their_turns_and_the_list_counts_them(void **state) {
  struct fx *f = *state;
  open_store(f);
  begin_call(f, "t1", T0, NULL);
  put_tool_turn(f, "t1", 0, NULL, 0);
  put_tool_turn(f, "t1", 1, "[{\"tool\":\"get_order_status\",\"tool_call_id\":\"call_1\","
                "\"arguments\":{\"order_id\":\"42\"},\"result\":{\"status\":\"shipped\"},"
                "\"is_error\":false,\"ms\":180},{\"tool\":\"lookup\",\"tool_call_id\":\"call_2\","
                "\"arguments\":\"{not json\",\"result\":{\"error\":\"timeout\"},\"is_error\":true,"
                "\"ms\":600}]", 2);
  /* A turn whose calls were more than its array keeps counts them all. */
  put_tool_turn(f, "t1", 2, "[{\"tool\":\"get_time\",\"tool_call_id\":\"c\",\"arguments\":{},"
                "\"result\":null,\"is_error\":null,\"ms\":null}]", 40);
  put_tool_turn(f, "t1", 3, "not json at all", 1); /* a cell edited by hand */
  begin_call(f, "t2", T0 + 1, NULL);
  put_tool_turn(f, "t2", 0, NULL, 0);
  wait_written(f);

  json_t *call, *top = must_get(f, "t1", &call);
  assert_int_equal(inum(call, "tool_calls"), 43);
  json_t *turns = json_object_get(call, "turns");
  json_t *none = json_object_get(json_array_get(turns, 0), "tool_calls");
  assert_true(json_is_array(none));
  assert_int_equal(json_array_size(none), 0);
  json_t *tc = json_object_get(json_array_get(turns, 1), "tool_calls");
  assert_int_equal(json_array_size(tc), 2);
  json_t *a = json_array_get(tc, 0), *b = json_array_get(tc, 1);
  assert_string_equal(str(a, "tool"), "get_order_status");
  assert_string_equal(str(a, "tool_call_id"), "call_1");
  assert_string_equal(str(json_object_get(a, "arguments"), "order_id"), "42");
  assert_string_equal(str(json_object_get(a, "result"), "status"), "shipped");
  assert_true(json_is_false(json_object_get(a, "is_error")));
  assert_int_equal(inum(a, "ms"), 180);
  assert_string_equal(str(b, "arguments"), "{not json");
  assert_true(json_is_true(json_object_get(b, "is_error")));
  json_t *pending = json_array_get(json_object_get(json_array_get(turns, 2), "tool_calls"), 0);
  assert_null_field(pending, "result");
  assert_null_field(pending, "is_error");
  assert_int_equal(json_array_size(json_object_get(json_array_get(turns, 3), "tool_calls")), 0);
  json_decref(top);

  int status;
  struct store_query q = {0};
  json_t *list = list_calls(f, &q, &status);
  assert_int_equal(status, 0);
  assert_int_equal(inum(summary_of(list, "t1"), "tool_calls"), 43);
  assert_int_equal(inum(summary_of(list, "t2"), "tool_calls"), 0);
  json_decref(list);

  /* Stored again, the turn's calls are replaced with the rest of it. */
  put_tool_turn(f, "t1", 1, NULL, 0);
  wait_written(f);
  top = must_get(f, "t1", &call);
  assert_int_equal(inum(call, "tool_calls"), 41);
  assert_int_equal(json_array_size(json_object_get(
                       json_array_get(json_object_get(call, "turns"), 1), "tool_calls")), 0);
  json_decref(top);
}

/* What version 2 added to version 1's tables, as an older tingshuo left them. */
static const char *const schema_v2_after_v1[] = {
    "ALTER TABLE calls ADD COLUMN llm_input_tokens BIGINT",
    "ALTER TABLE calls ADD COLUMN llm_cached_tokens BIGINT",
    "ALTER TABLE calls ADD COLUMN llm_cache_write_tokens BIGINT",
    "ALTER TABLE calls ADD COLUMN llm_output_tokens BIGINT",
    "ALTER TABLE calls ADD COLUMN tts_chars BIGINT",
    "ALTER TABLE calls ADD COLUMN tts_chars_cached BIGINT",
    "ALTER TABLE calls ADD COLUMN asr_seconds DOUBLE PRECISION",
    "ALTER TABLE calls ADD COLUMN cost DOUBLE PRECISION",
    "ALTER TABLE calls ADD COLUMN currency TEXT",
    "ALTER TABLE turns ADD COLUMN llm_input_tokens BIGINT",
    "ALTER TABLE turns ADD COLUMN llm_cached_tokens BIGINT",
    "ALTER TABLE turns ADD COLUMN llm_cache_write_tokens BIGINT",
    "ALTER TABLE turns ADD COLUMN llm_output_tokens BIGINT",
    "ALTER TABLE turns ADD COLUMN tts_chars BIGINT",
    "ALTER TABLE turns ADD COLUMN tts_chars_cached BIGINT",
    "ALTER TABLE turns ADD COLUMN asr_seconds DOUBLE PRECISION",
    "ALTER TABLE turns ADD COLUMN tts_cached INTEGER",
    "INSERT INTO schema_version VALUES (2, 0)",
    "UPDATE calls SET cost = 0.25, currency = 'USD', llm_input_tokens = 10, llm_cached_tokens = 0,"
    " llm_cache_write_tokens = 0, llm_output_tokens = 5, tts_chars = 7, tts_chars_cached = 0,"
    " asr_seconds = 1.5 WHERE id = 'old'",
    "UPDATE turns SET tts_cached = 1, llm_input_tokens = 10, llm_cached_tokens = 0,"
    " llm_cache_write_tokens = 0, llm_output_tokens = 5, tts_chars = 7, tts_chars_cached = 0,"
    " asr_seconds = 1.5 WHERE call_id = 'old'",
};

static void a_version_2_database_is_upgraded_keeping_its_calls(void **state) {
  struct fx *f = *state;
  make_old_database(f);
  for (size_t i = 0; i < sizeof schema_v2_after_v1 / sizeof *schema_v2_after_v1; i++)
    direct_exec(f, schema_v2_after_v1[i]);
  open_store(f);
  assert_int_equal(scalar(f, "SELECT MAX(version) FROM schema_version"), 3);
  assert_int_equal(scalar(f, "SELECT COUNT(*) FROM schema_version"), 3);
  json_t *call, *top = must_get(f, "old", &call);
  assert_true(num(call, "cost") == 0.25);
  assert_usage(json_object_get(call, "usage"), 10, 0, 0, 5, 7, 0, 1.5);
  assert_int_equal(inum(call, "tool_calls"), 0); /* none known */
  json_t *t0 = json_array_get(json_object_get(call, "turns"), 0);
  assert_string_equal(str(t0, "reply"), "hi");
  assert_true(json_is_true(json_object_get(t0, "tts_cached")));
  assert_int_equal(json_array_size(json_object_get(t0, "tool_calls")), 0);
  json_decref(top);
  /* A turn with tool calls goes in beside it. */
  put_tool_turn(f, "old", 1, "[{\"tool\":\"get_time\",\"tool_call_id\":\"c1\",\"arguments\":{},"
                "\"result\":{\"now\":\"noon\"},\"is_error\":false,\"ms\":3}]", 1);
  wait_written(f);
  top = must_get(f, "old", &call);
  assert_int_equal(inum(call, "tool_calls"), 1);
  json_t *t1 = json_array_get(json_object_get(call, "turns"), 1);
  assert_string_equal(str(json_array_get(json_object_get(t1, "tool_calls"), 0), "tool"), "get_time");
  json_decref(top);
}

/* More distinct statements than a connection keeps prepared, each run again after others
 * pushed it out, give their own answers; one refused runs again once its values are fine. */
static void statements_answer_right_however_many_are_kept(void **state) {
  struct fx *f = *state;
  open_store(f);
  close_store(f);
  struct db *db = direct(f);
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 40; i++) {
      char sql[64];
      snprintf(sql, sizeof sql, "SELECT $1 + %d", i);
      struct db_param p[] = {db_int(round * 1000)};
      struct db_rows rows;
      assert_int_equal(db_exec(db, sql, p, 1, &rows), 0);
      int64_t v = -1;
      assert_int_equal(db_cell_int(&rows, 0, 0, &v), 0);
      assert_int_equal(v, round * 1000 + i);
      db_rows_free(&rows);
    }
  }
  static const char ins[] = "INSERT INTO calls (id, created_ms) VALUES ($1, $2)";
  struct db_param p[] = {db_text("s1"), db_int(T0)};
  assert_int_equal(db_exec(db, ins, p, 2, NULL), 0);
  assert_int_equal(db_exec(db, ins, p, 2, NULL), -EINVAL); /* the same id again */
  p[0] = db_text("s2");
  assert_int_equal(db_exec(db, ins, p, 2, NULL), 0);
  assert_int_equal(db_exec(db, "SELEKT 1", NULL, 0, NULL), -EIO);
  struct db_rows rows;
  assert_int_equal(db_exec(db, "SELECT COUNT(*) FROM calls WHERE id LIKE 's%'", NULL, 0, &rows), 0);
  int64_t n = 0;
  assert_int_equal(db_cell_int(&rows, 0, 0, &n), 0);
  assert_int_equal(n, 2);
  db_rows_free(&rows);
  db_close(db);
}

static void reads_pending_at_close_are_cancelled(void **state) {
  struct fx *f = *state;
  open_store(f);
  begin_call(f, "x1", T0, NULL);
  wait_written(f);
  struct answer a = {0}, b = {0};
  store_get_call(f->st, "x1", on_answer, &a);
  struct store_query q = {0};
  store_list_calls(f->st, &q, on_answer, &b);
  close_store(f);
  assert_true(a.done && b.done);
  assert_int_equal(a.status, -ECANCELED);
  assert_int_equal(b.status, -ECANCELED);
  assert_null(a.result);
}

#define SUITE(name, gsetup, gteardown)                                                      \
  const struct CMUnitTest name[] = {                                                        \
      cmocka_unit_test_setup_teardown(migrations_apply_on_a_fresh_database_and_not_again,   \
                                      setup, teardown),                                     \
      cmocka_unit_test_setup_teardown(a_newer_schema_stops_the_start, setup, teardown),     \
      cmocka_unit_test_setup_teardown(a_call_and_its_turns_come_back_whole, setup,          \
                                      teardown),                                            \
      cmocka_unit_test_setup_teardown(a_turn_stored_again_replaces_the_first, setup,        \
                                      teardown),                                            \
      cmocka_unit_test_setup_teardown(a_read_sees_the_events_queued_before_it, setup,       \
                                      teardown),                                            \
      cmocka_unit_test_setup_teardown(pages_follow_the_cursor_across_equal_times, setup,    \
                                      teardown),                                            \
      cmocka_unit_test_setup_teardown(every_filter_selects_its_calls, setup, teardown),     \
      cmocka_unit_test_setup_teardown(                                                      \
          text_search_finds_words_in_any_case_chinese_and_literal_wildcards, setup,         \
          teardown),                                                                        \
      cmocka_unit_test_setup_teardown(a_recording_is_shown_while_its_file_exists, setup,      \
                                      teardown),                                            \
      cmocka_unit_test_setup_teardown(deleting_a_call_removes_its_turns_and_recording,      \
                                      setup, teardown),                                     \
      cmocka_unit_test_setup_teardown(a_full_queue_drops_the_oldest_turns_and_counts_them,  \
                                      setup, teardown),                                     \
      cmocka_unit_test_setup_teardown(                                                      \
          every_event_survives_the_database_going_away_and_back, setup, teardown),          \
      cmocka_unit_test_setup_teardown(a_refused_event_does_not_hold_up_the_rest, setup,     \
                                      teardown),                                            \
      cmocka_unit_test_setup_teardown(retention_purges_old_calls_with_their_recordings,     \
                                      setup, teardown),                                     \
      cmocka_unit_test_setup_teardown(recording_paths_are_plain_names_only, setup,          \
                                      teardown),                                            \
      cmocka_unit_test_setup_teardown(a_crash_leaves_no_call_of_this_node_open, setup,      \
                                      teardown),                                            \
      cmocka_unit_test_setup_teardown(reads_pending_at_close_are_cancelled, setup,          \
                                      teardown),                                            \
      cmocka_unit_test_setup_teardown(usage_and_cost_come_back_for_the_call_and_its_turns,  \
                                      setup, teardown),                                     \
      cmocka_unit_test_setup_teardown(bad_usage_figures_are_cleaned, setup, teardown),      \
      cmocka_unit_test_setup_teardown(a_crash_leaves_usage_summed_from_the_turns, setup,    \
                                      teardown),                                            \
      cmocka_unit_test_setup_teardown(a_version_1_database_is_upgraded_keeping_its_calls,   \
                                      setup, teardown),                                     \
      cmocka_unit_test_setup_teardown(                                                      \
          tool_calls_come_back_with_their_turns_and_the_list_counts_them, setup, teardown), \
      cmocka_unit_test_setup_teardown(a_version_2_database_is_upgraded_keeping_its_calls,   \
                                      setup, teardown),                                     \
      cmocka_unit_test_setup_teardown(statements_answer_right_however_many_are_kept, setup,  \
                                      teardown),                                            \
  }

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  SUITE(sqlite_tests, sqlite_group_setup, sqlite_group_teardown);
  SUITE(pg_tests, pg_group_setup, pg_group_teardown);
  int failed = cmocka_run_group_tests_name("store on SQLite", sqlite_tests, sqlite_group_setup,
                                           sqlite_group_teardown);
  failed += cmocka_run_group_tests_name("store on PostgreSQL", pg_tests, pg_group_setup,
                                        pg_group_teardown);
  return failed;
}
