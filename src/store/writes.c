/*
 * writes: record events into SQL.
 *
 * Every write can be repeated without harm. A batch whose COMMIT was sent
 * but whose answer was lost with the connection may or may not have been
 * committed; the store sends it again, so a call's begin and a turn are
 * upserts (INSERT ... ON CONFLICT DO UPDATE, which SQLite and PostgreSQL
 * both accept) and the rest are plain updates of fixed values.
 *
 * A time of 0 means "not yet" and is stored as NULL, except where a row
 * needs a time: a call begun or ended with 0 gets the store's clock.
 */
#include "store/writes.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

static struct db_param time_or_null(int64_t ms) { return ms > 0 ? db_int(ms) : db_null(); }

static struct db_param figure(double v) { return v == STORE_ABSENT ? db_null() : db_real(v); }

/* The seven usage parameters, in the order of the usage columns; NULLs when not reported. */
#define USAGE_PARAMS 7
static void usage_params(const struct store_usage *u, struct db_param *p) {
  int64_t counts[] = {u->llm_input_tokens, u->llm_cached_tokens, u->llm_cache_write_tokens,
                      u->llm_output_tokens, u->tts_chars, u->tts_chars_cached};
  for (int i = 0; i < USAGE_PARAMS - 1; i++) p[i] = u->reported ? db_int(counts[i]) : db_null();
  p[USAGE_PARAMS - 1] = u->reported ? db_real(u->asr_seconds) : db_null();
}

static int write_begin(struct db *db, const struct store_call *c, int64_t now_ms) {
  static const char sql[] =
      "INSERT INTO calls (id, created_ms, connected_ms, ended_ms, end_reason, node, remote_addr,"
      " user_agent, agent, asr, asr_model, llm, llm_model, tts, tts_model, tts_voice, language,"
      " settings, packets_received, packets_lost, recording)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,"
      " $19, $20, $21)"
      " ON CONFLICT (id) DO UPDATE SET created_ms = excluded.created_ms, node = excluded.node,"
      " remote_addr = excluded.remote_addr, user_agent = excluded.user_agent,"
      " agent = excluded.agent, asr = excluded.asr, asr_model = excluded.asr_model,"
      " llm = excluded.llm, llm_model = excluded.llm_model, tts = excluded.tts,"
      " tts_model = excluded.tts_model, tts_voice = excluded.tts_voice,"
      " language = excluded.language, settings = excluded.settings";
  struct db_param p[] = {
      db_text(c->id), db_int(c->created_ms > 0 ? c->created_ms : now_ms),
      time_or_null(c->connected_ms), time_or_null(c->ended_ms), db_text(c->end_reason),
      db_text(c->node), db_text(c->remote_addr), db_text(c->user_agent), db_text(c->agent),
      db_text(c->asr), db_text(c->asr_model), db_text(c->llm), db_text(c->llm_model),
      db_text(c->tts), db_text(c->tts_model), db_text(c->tts_voice), db_text(c->language),
      db_text(c->settings_json), db_int(c->packets_received), db_int(c->packets_lost),
      db_text(c->recording)};
  return db_exec(db, sql, p, (int)(sizeof p / sizeof *p), NULL);
}

static int write_connected(struct db *db, const struct store_call *c) {
  struct db_param p[] = {db_text(c->id), time_or_null(c->connected_ms)};
  return db_exec(db, "UPDATE calls SET connected_ms = $2 WHERE id = $1", p, 2, NULL);
}

static int write_end(struct db *db, const struct store_call *c, int64_t now_ms) {
  static const char sql[] =
      "UPDATE calls SET ended_ms = $2, end_reason = $3, packets_received = $4,"
      " packets_lost = $5, recording = $6,"
      " connected_ms = COALESCE(connected_ms, $7), cost = $8, currency = $9,"
      " llm_input_tokens = $10, llm_cached_tokens = $11, llm_cache_write_tokens = $12,"
      " llm_output_tokens = $13, tts_chars = $14, tts_chars_cached = $15, asr_seconds = $16"
      " WHERE id = $1";
  struct db_param p[9 + USAGE_PARAMS] = {db_text(c->id),
                                         db_int(c->ended_ms > 0 ? c->ended_ms : now_ms),
                                         db_text(c->end_reason),
                                         db_int(c->packets_received),
                                         db_int(c->packets_lost),
                                         db_text(c->recording),
                                         time_or_null(c->connected_ms),
                                         c->currency ? db_real(c->cost) : db_null(),
                                         db_text(c->currency)};
  usage_params(&c->usage, p + 9);
  return db_exec(db, sql, p, (int)(sizeof p / sizeof *p), NULL);
}

static int write_turn(struct db *db, const struct store_turn *t) {
  static const char sql[] =
      "INSERT INTO turns (call_id, idx, at_ms, transcript, reply, interrupted, endpoint_ms,"
      " asr_ms, llm_first_token_ms, llm_first_sentence_ms, tts_first_audio_ms,"
      " voice_to_voice_ms, overhead_ms, barge_in_ms, onset_lag_ms, error, tts_cached,"
      " llm_input_tokens, llm_cached_tokens, llm_cache_write_tokens, llm_output_tokens,"
      " tts_chars, tts_chars_cached, asr_seconds, tool_calls, tool_call_count)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
      " $18, $19, $20, $21, $22, $23, $24, $25, $26)"
      " ON CONFLICT (call_id, idx) DO UPDATE SET at_ms = excluded.at_ms,"
      " transcript = excluded.transcript, reply = excluded.reply,"
      " interrupted = excluded.interrupted, endpoint_ms = excluded.endpoint_ms,"
      " asr_ms = excluded.asr_ms, llm_first_token_ms = excluded.llm_first_token_ms,"
      " llm_first_sentence_ms = excluded.llm_first_sentence_ms,"
      " tts_first_audio_ms = excluded.tts_first_audio_ms,"
      " voice_to_voice_ms = excluded.voice_to_voice_ms, overhead_ms = excluded.overhead_ms,"
      " barge_in_ms = excluded.barge_in_ms, onset_lag_ms = excluded.onset_lag_ms,"
      " error = excluded.error, tts_cached = excluded.tts_cached,"
      " llm_input_tokens = excluded.llm_input_tokens,"
      " llm_cached_tokens = excluded.llm_cached_tokens,"
      " llm_cache_write_tokens = excluded.llm_cache_write_tokens,"
      " llm_output_tokens = excluded.llm_output_tokens, tts_chars = excluded.tts_chars,"
      " tts_chars_cached = excluded.tts_chars_cached, asr_seconds = excluded.asr_seconds,"
      " tool_calls = excluded.tool_calls, tool_call_count = excluded.tool_call_count";
  struct db_param p[17 + USAGE_PARAMS + 2] = {
      db_text(t->call_id),          db_int(t->index),
      db_int(t->at_ms),             db_text(t->transcript),
      db_text(t->reply),            db_int(t->interrupted ? 1 : 0),
      figure(t->endpoint_ms),       figure(t->asr_ms),
      figure(t->llm_first_token_ms), figure(t->llm_first_sentence_ms),
      figure(t->tts_first_audio_ms), figure(t->voice_to_voice_ms),
      figure(t->overhead_ms),       figure(t->barge_in_ms),
      figure(t->onset_lag_ms),      db_text(t->error),
      t->tts_cached >= 0 ? db_int(t->tts_cached) : db_null()};
  usage_params(&t->usage, p + 17);
  p[17 + USAGE_PARAMS] = db_text(t->tool_calls_json);
  p[18 + USAGE_PARAMS] = t->tool_call_count > 0 ? db_int(t->tool_call_count) : db_null();
  return db_exec(db, sql, p, (int)(sizeof p / sizeof *p), NULL);
}

int store_write_event(struct db *db, const struct store_event *ev, int64_t now_ms) {
  switch (ev->kind) {
  case EV_CALL_BEGIN:
    return write_begin(db, &ev->call, now_ms);
  case EV_CALL_CONNECTED:
    return write_connected(db, &ev->call);
  case EV_CALL_END:
    return write_end(db, &ev->call, now_ms);
  case EV_TURN:
    return write_turn(db, &ev->turn);
  }
  return -EINVAL;
}

/* A crashed call's usage is what its stored turns add up to; its cost stays unknown. */
#define SUM_OF_TURNS(col) \
  " " col " = (SELECT SUM(t." col ") FROM turns t WHERE t.call_id = calls.id)"

int store_recover_calls(struct db *db, const char *node, int64_t *closed) {
  static const char sql[] =
      "UPDATE calls SET end_reason = '" STORE_REASON_STOPPED "',"
      " ended_ms = COALESCE((SELECT MAX(t.at_ms) FROM turns t WHERE t.call_id = calls.id),"
      " connected_ms, created_ms),"
      SUM_OF_TURNS("llm_input_tokens") "," SUM_OF_TURNS("llm_cached_tokens") ","
      SUM_OF_TURNS("llm_cache_write_tokens") "," SUM_OF_TURNS("llm_output_tokens") ","
      SUM_OF_TURNS("tts_chars") "," SUM_OF_TURNS("tts_chars_cached") ","
      SUM_OF_TURNS("asr_seconds")
      " WHERE node = $1 AND ended_ms IS NULL RETURNING id";
  struct db_param p[] = {db_text(node)};
  struct db_rows rows;
  int rc = db_exec(db, sql, p, 1, &rows);
  if (rc) return rc;
  *closed = rows.nrows;
  db_rows_free(&rows);
  return 0;
}

void store_remove_recording(const struct config *cfg, const char *file) {
  char path[2048];
  if (!file || store_recording_path(cfg, file, path, sizeof path) || !*path) return;
  if (unlink(path) && errno != ENOENT)
    log_warn("store", "cannot remove the recording %s: %s", path, strerror(errno));
}

int store_purge_calls(struct db *db, const struct config *cfg, int64_t cutoff_ms, int max,
                      int *purged) {
  static const char sql[] =
      "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE created_ms < $1"
      " ORDER BY created_ms LIMIT $2) RETURNING recording";
  struct db_param p[] = {db_int(cutoff_ms), db_int(max)};
  struct db_rows rows;
  int rc = db_exec(db, sql, p, 2, &rows);
  if (rc) return rc;
  for (int r = 0; r < rows.nrows; r++) store_remove_recording(cfg, db_cell(&rows, r, 0));
  *purged = rows.nrows;
  db_rows_free(&rows);
  return 0;
}
