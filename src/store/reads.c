/*
 * reads: list, get and delete for the history API.
 *
 * The list is newest first and paged by a cursor that names the last call
 * of the page (created_ms and id): the next page is everything strictly
 * after it in (created_ms DESC, id DESC) order, so pages neither repeat nor
 * skip a call when several share a millisecond or when calls arrive while
 * someone pages. The cursor is base64url of "created_ms:id", opaque to
 * clients and checked like any input.
 *
 * The WHERE clause is built from the filters actually given, each with its
 * own numbered parameter, so the database can use its indexes. Text search
 * is a LIKE over transcripts and replies (ILIKE on PostgreSQL) with the
 * query's %, _ and \ escaped, so they match themselves. It is a scan of
 * the turns, fine for the history of a service, not a full-text index.
 *
 * Cells come back as text and are parsed with full checks; a number that
 * does not parse is shown as null rather than failing the whole page.
 */
#include "store/reads.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store.h"
#include "store/text.h"
#include "store/writes.h"

#define PREVIEW_CHARS 100

/* ---- cursor ---------------------------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_value(char c) {
  const char *p = c ? strchr(b64, c) : NULL;
  return p ? (int)(p - b64) : -1;
}

int store_cursor_encode(int64_t created_ms, const char *id, char *out, size_t cap) {
  char raw[STORE_ID_MAX + 32];
  int n = snprintf(raw, sizeof raw, "%" PRId64 ":%s", created_ms, id);
  if (n < 0 || (size_t)n >= sizeof raw || ((size_t)n + 2) / 3 * 4 + 1 > cap) return -ENOSPC;
  size_t o = 0;
  for (int i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)(unsigned char)raw[i] << 16;
    if (i + 1 < n) v |= (uint32_t)(unsigned char)raw[i + 1] << 8;
    if (i + 2 < n) v |= (unsigned char)raw[i + 2];
    out[o++] = b64[(v >> 18) & 63];
    out[o++] = b64[(v >> 12) & 63];
    if (i + 1 < n) out[o++] = b64[(v >> 6) & 63];
    if (i + 2 < n) out[o++] = b64[v & 63];
  }
  out[o] = '\0';
  return 0;
}

/* Decodes unpadded base64url into raw (cap bytes, NUL added); returns the length or -EINVAL. */
static int b64_decode(const char *in, char *raw, size_t cap) {
  size_t len = strlen(in), o = 0;
  if (len % 4 == 1 || (len / 4) * 3 + 3 >= cap) return -EINVAL;
  for (size_t i = 0; i < len; i += 4) {
    uint32_t v = 0;
    size_t k = len - i < 4 ? len - i : 4;
    for (size_t j = 0; j < k; j++) {
      int d = b64_value(in[i + j]);
      if (d < 0) return -EINVAL;
      v |= (uint32_t)d << (18 - 6 * j);
    }
    raw[o++] = (char)(v >> 16);
    if (k > 2) raw[o++] = (char)(v >> 8);
    if (k > 3) raw[o++] = (char)v;
  }
  raw[o] = '\0';
  return (int)o;
}

int store_cursor_decode(const char *cursor, int64_t *created_ms, char *id) {
  char raw[STORE_ID_MAX + 32];
  int n = b64_decode(cursor, raw, sizeof raw);
  if (n <= 0 || memchr(raw, '\0', (size_t)n)) return -EINVAL;
  char *colon = strchr(raw, ':');
  if (!colon || colon == raw || !colon[1] || strlen(colon + 1) > STORE_ID_MAX) return -EINVAL;
  *colon = '\0';
  char *end;
  errno = 0;
  long long ms = strtoll(raw, &end, 10);
  if (errno || *end || raw[0] < '0' || raw[0] > '9') return -EINVAL;
  if (store_utf8_size(colon + 1) != strlen(colon + 1)) return -EINVAL;
  *created_ms = ms;
  memcpy(id, colon + 1, strlen(colon + 1) + 1); /* fits: its length was checked above */
  return 0;
}

/* ---- arguments ------------------------------------------------------------------------- */

static int copy_filter(const char *s, size_t max, char **out) {
  *out = NULL;
  if (!s || !*s) return 0;
  if (strlen(s) > max || store_utf8_size(s) != strlen(s)) return -EINVAL;
  *out = strdup(s);
  return *out ? 0 : -ENOMEM;
}

int store_list_args_parse(const struct store_query *q, struct store_list_args *a) {
  memset(a, 0, sizeof *a);
  if (q->from_ms < 0 || q->to_ms < 0 || (q->from_ms && q->to_ms && q->to_ms <= q->from_ms))
    return -EINVAL;
  if (q->limit < 0 || q->limit > STORE_LIMIT_MAX) return -EINVAL;
  a->from_ms = q->from_ms;
  a->to_ms = q->to_ms;
  a->limit = q->limit ? q->limit : STORE_LIMIT_DEFAULT;
  if (q->cursor && *q->cursor) {
    if (strlen(q->cursor) > 2 * STORE_ID_MAX) return -EINVAL;
    if (store_cursor_decode(q->cursor, &a->cursor_ms, a->cursor_id)) return -EINVAL;
    a->has_cursor = 1;
  }
  int rc = copy_filter(q->end_reason, STORE_ID_MAX, &a->end_reason);
  if (!rc) rc = copy_filter(q->text, STORE_TEXT_MAX, &a->text);
  if (rc) store_list_args_free(a);
  return rc;
}

void store_list_args_free(struct store_list_args *a) {
  free(a->end_reason);
  free(a->text);
  a->end_reason = a->text = NULL;
}

/* ---- JSON from cells ------------------------------------------------------------------- */

enum {
  C_ID, C_CREATED, C_CONNECTED, C_ENDED, C_REASON, C_REMOTE, C_AGENT, C_LANGUAGE,
  C_RECORDING, C_NODE, C_UA, C_ASR, C_ASR_MODEL, C_LLM, C_LLM_MODEL,
  C_TTS, C_TTS_MODEL, C_TTS_VOICE, C_SETTINGS, C_RX, C_LOST, C_TURNS, C_PREVIEW,
  C_COST, C_CURRENCY, C_USAGE, /* and the six usage columns after it */
  C_TOOL_CALLS = C_USAGE + 7
};

/* The usage columns of calls and turns, in the order usage() reads them. */
#define USAGE_COLUMNS(t)                                                                    \
  t "llm_input_tokens, " t "llm_cached_tokens, " t "llm_cache_write_tokens, "              \
  t "llm_output_tokens, " t "tts_chars, " t "tts_chars_cached, " t "asr_seconds"

#define CALL_COLUMNS                                                                        \
  "c.id, c.created_ms, c.connected_ms, c.ended_ms, c.end_reason, c.remote_addr, c.agent,"  \
  " c.language, c.recording, c.node, c.user_agent, c.asr, c.asr_model,"                    \
  " c.llm, c.llm_model, c.tts, c.tts_model, c.tts_voice, c.settings, c.packets_received,"  \
  " c.packets_lost,"                                                                       \
  " (SELECT COUNT(*) FROM turns t WHERE t.call_id = c.id),"                                \
  " (SELECT CASE WHEN t.transcript <> '' THEN t.transcript ELSE t.reply END FROM turns t"  \
  "  WHERE t.call_id = c.id AND (t.transcript <> '' OR t.reply <> '')"                     \
  "  ORDER BY CASE WHEN t.transcript <> '' THEN 0 ELSE 1 END, t.idx LIMIT 1),"            \
  " c.cost, c.currency, " USAGE_COLUMNS("c.") ","                                        \
  " (SELECT COALESCE(SUM(t.tool_call_count), 0) FROM turns t WHERE t.call_id = c.id)"

/* Sets o[key] = v; a NULL v (out of memory) marks the object bad. */
static void put(json_t *o, const char *key, json_t *v, int *bad) {
  if (!v || json_object_set_new(o, key, v)) *bad = 1;
}

static json_t *cell_text(const struct db_rows *r, int row, int col) {
  return store_json_text(db_cell(r, row, col));
}

static json_t *cell_time(const struct db_rows *r, int row, int col) {
  int64_t ms;
  if (db_cell_int(r, row, col, &ms) || ms <= 0) return json_null();
  char iso[64];
  store_iso_time(ms, iso, sizeof iso);
  return json_string(iso);
}

static json_t *cell_int(const struct db_rows *r, int row, int col) {
  int64_t v;
  return db_cell_int(r, row, col, &v) ? json_null() : json_integer(v);
}

static json_t *cell_real(const struct db_rows *r, int row, int col) {
  double v;
  return db_cell_real(r, row, col, &v) ? json_null() : json_real(v);
}

/* {"llm_input_tokens":..,...,"asr_seconds":..} from the seven columns at `col`; null when
 * nothing was recorded (a call not yet finished, a row from before usage was kept). */
static json_t *usage(const struct db_rows *r, int row, int col) {
  static const char *const counts[] = {"llm_input_tokens",  "llm_cached_tokens",
                                       "llm_cache_write_tokens", "llm_output_tokens",
                                       "tts_chars",         "tts_chars_cached"};
  if (!db_cell(r, row, col)) return json_null();
  json_t *o = json_object();
  int bad = !o;
  if (bad) return NULL;
  for (int i = 0; i < 6; i++) put(o, counts[i], cell_int(r, row, col + i), &bad);
  put(o, "asr_seconds", cell_real(r, row, col + 6), &bad);
  if (bad) json_decref(o);
  return bad ? NULL : o;
}

/* The estimated cost: null when the call was not priced (or not finished). */
static json_t *cost(const struct db_rows *r, int row) {
  return db_cell(r, row, C_CURRENCY) ? cell_real(r, row, C_COST) : json_null();
}

static json_t *duration(const struct db_rows *r, int row) {
  int64_t start, end;
  if (db_cell_int(r, row, C_ENDED, &end)) return json_null();
  if (db_cell_int(r, row, C_CONNECTED, &start) && db_cell_int(r, row, C_CREATED, &start))
    return json_null();
  return json_real((double)(end - start) / 1000.0);
}

static json_t *preview(const struct db_rows *r, int row) {
  const char *s = db_cell(r, row, C_PREVIEW);
  if (!s) return json_null();
  size_t n = store_utf8_prefix(s, PREVIEW_CHARS);
  if (!s[n]) return store_json_text(s);
  char *cut = malloc(n + sizeof "\xE2\x80\xA6");
  if (!cut) return NULL;
  memcpy(cut, s, n);
  memcpy(cut + n, "\xE2\x80\xA6", sizeof "\xE2\x80\xA6"); /* an ellipsis */
  json_t *j = store_json_text(cut);
  free(cut);
  return j;
}

/* The size of the call's recording file, -1 when it has none or the file is gone
 * (it is written by another thread, and may have been removed by hand). */
static int64_t recording_size(const struct config *cfg, const struct db_rows *r, int row) {
  char path[2048];
  struct stat sb;
  const char *file = db_cell(r, row, C_RECORDING);
  if (!file || !*file || store_recording_path(cfg, file, path, sizeof path) || !*path ||
      stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
    return -1;
  return (int64_t)sb.st_size;
}

static json_t *summary(const struct config *cfg, const struct db_rows *r, int row) {
  json_t *o = json_object();
  int bad = !o;
  if (bad) return NULL;
  put(o, "id", cell_text(r, row, C_ID), &bad);
  put(o, "created_at", cell_time(r, row, C_CREATED), &bad);
  put(o, "connected_at", cell_time(r, row, C_CONNECTED), &bad);
  put(o, "ended_at", cell_time(r, row, C_ENDED), &bad);
  put(o, "duration_s", duration(r, row), &bad);
  put(o, "end_reason", cell_text(r, row, C_REASON), &bad);
  put(o, "remote_addr", cell_text(r, row, C_REMOTE), &bad);
  put(o, "agent", cell_text(r, row, C_AGENT), &bad);
  put(o, "language", cell_text(r, row, C_LANGUAGE), &bad);
  put(o, "turns", cell_int(r, row, C_TURNS), &bad);
  put(o, "tool_calls", cell_int(r, row, C_TOOL_CALLS), &bad);
  put(o, "preview", preview(r, row), &bad);
  put(o, "recording", json_boolean(recording_size(cfg, r, row) >= 0), &bad);
  put(o, "cost", cost(r, row), &bad);
  put(o, "currency", cell_text(r, row, C_CURRENCY), &bad);
  if (bad) json_decref(o);
  return bad ? NULL : o;
}

static json_t *engines(const struct db_rows *r, int row) {
  static const struct {
    const char *key;
    int col;
  } fields[] = {{"asr", C_ASR}, {"asr_model", C_ASR_MODEL}, {"llm", C_LLM},
                {"llm_model", C_LLM_MODEL}, {"tts", C_TTS}, {"tts_model", C_TTS_MODEL},
                {"tts_voice", C_TTS_VOICE}};
  json_t *o = json_object();
  int bad = !o;
  for (size_t i = 0; o && i < sizeof fields / sizeof *fields; i++)
    put(o, fields[i].key, cell_text(r, row, fields[i].col), &bad);
  if (bad) json_decref(o);
  return bad ? NULL : o;
}

static json_t *settings(const struct db_rows *r, int row) {
  const char *s = db_cell(r, row, C_SETTINGS);
  json_t *j = s ? json_loads(s, 0, NULL) : NULL;
  if (json_is_object(j)) return j;
  json_decref(j);
  return json_null();
}

static json_t *recording(const struct config *cfg, const struct db_rows *r, int row) {
  int64_t size = recording_size(cfg, r, row);
  if (size < 0) return json_null();
  const char *id = db_cell(r, row, C_ID);
  char url[STORE_ID_MAX * 3 + 64];
  snprintf(url, sizeof url, "/api/calls/%s/recording", id ? id : "");
  json_t *o = json_object();
  int bad = !o;
  if (bad) return NULL;
  put(o, "url", store_json_text(url), &bad);
  put(o, "bytes", json_integer(size), &bad);
  if (bad) json_decref(o);
  return bad ? NULL : o;
}

static int whole_call(const struct config *cfg, const struct db_rows *r, json_t *turns,
                      json_t **out) {
  json_t *o = summary(cfg, r, 0);
  int bad = !o;
  if (bad) return -ENOMEM;
  put(o, "node", cell_text(r, 0, C_NODE), &bad);
  put(o, "user_agent", cell_text(r, 0, C_UA), &bad);
  put(o, "engines", engines(r, 0), &bad);
  put(o, "settings", settings(r, 0), &bad);
  put(o, "packets_received", cell_int(r, 0, C_RX), &bad);
  put(o, "packets_lost", cell_int(r, 0, C_LOST), &bad);
  put(o, "recording", recording(cfg, r, 0), &bad);
  put(o, "usage", usage(r, 0, C_USAGE), &bad);
  put(o, "turns", json_incref(turns), &bad);
  json_t *wrap = bad ? NULL : json_object();
  if (!wrap) {
    json_decref(o);
    return -ENOMEM;
  }
  put(wrap, "call", o, &bad);
  if (bad) {
    json_decref(wrap);
    return -ENOMEM;
  }
  *out = wrap;
  return 0;
}

/* ---- turns ----------------------------------------------------------------------------- */

static const char *const figures[] = {"endpoint_ms",        "asr_ms",
                                      "llm_first_token_ms", "llm_first_sentence_ms",
                                      "tts_first_audio_ms", "voice_to_voice_ms",
                                      "overhead_ms",        "barge_in_ms",
                                      "onset_lag_ms"};
#define NFIGURES (int)(sizeof figures / sizeof *figures)

/* The turn's tool calls as written (an array of objects); [] for none, for a turn from
 * before they were kept, and for a cell that is not such an array (edited by hand). */
static json_t *tool_calls(const struct db_rows *r, int row, int col) {
  const char *s = db_cell(r, row, col);
  json_t *list = s ? json_loads(s, 0, NULL) : NULL;
  if (!json_is_array(list)) {
    json_decref(list);
    return json_array();
  }
  for (size_t i = json_array_size(list); i-- > 0;)
    if (!json_is_object(json_array_get(list, i))) json_array_remove(list, i);
  return list;
}

static json_t *turn(const struct db_rows *r, int row) {
  json_t *o = json_object();
  int bad = !o;
  if (bad) return NULL;
  int64_t interrupted = 0;
  (void)db_cell_int(r, row, 4, &interrupted);
  put(o, "index", cell_int(r, row, 0), &bad);
  put(o, "at", cell_time(r, row, 1), &bad);
  put(o, "transcript", cell_text(r, row, 2), &bad);
  put(o, "reply", cell_text(r, row, 3), &bad);
  put(o, "interrupted", json_boolean(interrupted != 0), &bad);
  for (int i = 0; i < NFIGURES; i++) put(o, figures[i], cell_real(r, row, 5 + i), &bad);
  put(o, "error", cell_text(r, row, 5 + NFIGURES), &bad);
  int64_t cached;
  put(o, "tts_cached",
      db_cell_int(r, row, 6 + NFIGURES, &cached) ? json_null() : json_boolean(cached != 0), &bad);
  put(o, "usage", usage(r, row, 7 + NFIGURES), &bad);
  put(o, "tool_calls", tool_calls(r, row, 14 + NFIGURES), &bad);
  int64_t made = 0;
  (void)db_cell_int(r, row, 15 + NFIGURES, &made); /* NULL: none */
  put(o, "tool_call_count", json_integer(made > 0 ? made : 0), &bad);
  if (bad) json_decref(o);
  return bad ? NULL : o;
}

static int read_turns(struct db *db, const char *call_id, json_t **out) {
  static const char sql[] =
      "SELECT idx, at_ms, transcript, reply, interrupted, endpoint_ms, asr_ms,"
      " llm_first_token_ms, llm_first_sentence_ms, tts_first_audio_ms, voice_to_voice_ms,"
      " overhead_ms, barge_in_ms, onset_lag_ms, error, tts_cached, " USAGE_COLUMNS("")
      ", tool_calls, tool_call_count FROM turns WHERE call_id = $1 ORDER BY idx";
  struct db_param p[] = {db_text(call_id)};
  struct db_rows rows;
  if (db_exec(db, sql, p, 1, &rows)) return -EIO;
  json_t *list = json_array();
  int bad = !list;
  for (int i = 0; !bad && i < rows.nrows; i++) bad = json_array_append_new(list, turn(&rows, i));
  db_rows_free(&rows);
  if (bad) {
    json_decref(list);
    return -ENOMEM;
  }
  *out = list;
  return 0;
}

/* ---- the three reads ------------------------------------------------------------------- */

static int plausible_id(const char *id) {
  return id && *id && strlen(id) <= STORE_ID_MAX && store_utf8_size(id) == strlen(id);
}

int store_read_get(struct db *db, const struct config *cfg, const char *call_id, json_t **out) {
  if (!plausible_id(call_id)) return -ENOENT;
  struct db_param p[] = {db_text(call_id)};
  struct db_rows rows;
  if (db_exec(db, "SELECT " CALL_COLUMNS " FROM calls c WHERE c.id = $1", p, 1, &rows))
    return -EIO;
  int rc = rows.nrows ? 0 : -ENOENT;
  json_t *turns = NULL;
  if (!rc) rc = read_turns(db, call_id, &turns);
  if (!rc) rc = whole_call(cfg, &rows, turns, out);
  json_decref(turns);
  db_rows_free(&rows);
  return rc;
}

int store_read_delete(struct db *db, const struct config *cfg, const char *call_id,
                      json_t **out) {
  if (!plausible_id(call_id)) return -ENOENT;
  struct db_param p[] = {db_text(call_id)};
  struct db_rows rows;
  if (db_exec(db, "DELETE FROM calls WHERE id = $1 RETURNING recording", p, 1, &rows))
    return -EIO;
  int found = rows.nrows > 0;
  if (found) store_remove_recording(cfg, db_cell(&rows, 0, 0));
  db_rows_free(&rows);
  if (!found) return -ENOENT;
  json_t *o = json_object();
  int bad = !o;
  if (o) put(o, "deleted", store_json_text(call_id), &bad);
  if (bad) {
    json_decref(o);
    return -ENOMEM;
  }
  *out = o;
  return 0;
}

struct sql_buf {
  char text[4096];
  size_t len;
  struct db_param params[8];
  int n;
};

static void sql_add(struct sql_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sql_add(struct sql_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b->text + b->len, sizeof b->text - b->len, fmt, ap);
  va_end(ap);
  if (n > 0) b->len += (size_t)n; /* the fixed clauses always fit */
}

/* Adds a parameter; returns its number for the SQL. */
static int sql_param(struct sql_buf *b, struct db_param p) {
  b->params[b->n] = p;
  return ++b->n;
}

/* "%text%" with %, _ and \ escaped by \; NULL when out of memory. */
static char *like_pattern(const char *text) {
  char *p = malloc(strlen(text) * 2 + 3);
  if (!p) return NULL;
  size_t o = 0;
  p[o++] = '%';
  for (const char *s = text; *s; s++) {
    if (*s == '%' || *s == '_' || *s == '\\') p[o++] = '\\';
    p[o++] = *s;
  }
  p[o++] = '%';
  p[o] = '\0';
  return p;
}

static void build_list(struct sql_buf *b, struct db *db, const struct store_list_args *a,
                       const char *pattern) {
  sql_add(b, "SELECT " CALL_COLUMNS " FROM calls c WHERE 1 = 1");
  if (a->from_ms) sql_add(b, " AND c.created_ms >= $%d", sql_param(b, db_int(a->from_ms)));
  if (a->to_ms) sql_add(b, " AND c.created_ms < $%d", sql_param(b, db_int(a->to_ms)));
  if (a->end_reason) sql_add(b, " AND c.end_reason = $%d", sql_param(b, db_text(a->end_reason)));
  if (pattern) {
    int n = sql_param(b, db_text(pattern));
    const char *like = db_ilike(db);
    sql_add(b,
            " AND EXISTS (SELECT 1 FROM turns t WHERE t.call_id = c.id AND"
            " (t.transcript %s $%d ESCAPE '\\' OR t.reply %s $%d ESCAPE '\\'))",
            like, n, like, n);
  }
  if (a->has_cursor) {
    int ms = sql_param(b, db_int(a->cursor_ms)), id = sql_param(b, db_text(a->cursor_id));
    sql_add(b, " AND (c.created_ms < $%d OR (c.created_ms = $%d AND c.id < $%d))", ms, ms, id);
  }
  sql_add(b, " ORDER BY c.created_ms DESC, c.id DESC LIMIT $%d",
          sql_param(b, db_int(a->limit + 1)));
}

/* The cursor after row `row`, or JSON null. */
static json_t *next_cursor(const struct db_rows *r, int row) {
  int64_t ms;
  const char *id = db_cell(r, row, C_ID);
  char cursor[2 * STORE_ID_MAX + 64];
  if (!id || db_cell_int(r, row, C_CREATED, &ms) ||
      store_cursor_encode(ms, id, cursor, sizeof cursor))
    return json_null();
  return json_string(cursor);
}

int store_read_list(struct db *db, const struct config *cfg, const struct store_list_args *a,
                    json_t **out) {
  char *pattern = NULL;
  if (a->text && !(pattern = like_pattern(a->text))) return -ENOMEM;
  struct sql_buf b = {.len = 0, .n = 0};
  build_list(&b, db, a, pattern);
  struct db_rows rows;
  int rc = db_exec(db, b.text, b.params, b.n, &rows) ? -EIO : 0;
  free(pattern);
  if (rc) return rc;
  int shown = rows.nrows > a->limit ? a->limit : rows.nrows;
  json_t *calls = json_array();
  int bad = !calls;
  for (int i = 0; !bad && i < shown; i++) bad = json_array_append_new(calls, summary(cfg, &rows, i));
  json_t *cursor = rows.nrows > a->limit ? next_cursor(&rows, shown - 1) : json_null();
  db_rows_free(&rows);
  json_t *o = json_object();
  bad |= !o;
  if (o) {
    put(o, "calls", calls, &bad);
    put(o, "next_cursor", cursor, &bad);
  } else {
    json_decref(calls);
    json_decref(cursor);
  }
  if (bad) {
    json_decref(o);
    return -ENOMEM;
  }
  *out = o;
  return 0;
}
