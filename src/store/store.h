/*
 * store: the durable record of every call, on SQLite or PostgreSQL.
 *
 * Nothing that touches the database runs on a media worker or on the control
 * loop. Writers (any thread) copy what they want stored into an event and
 * queue it; one store thread owns the database connection, takes whatever
 * is queued, and writes it in one transaction. If the database is slow or
 * down the events wait, bounded by cfg->records_queue: past the bound the
 * oldest turn events are dropped and counted, never a caller blocked.
 *
 * Reads (the history API) are queued to the same thread, ahead of any
 * backlog of writes, and answered on the loop given to store_open, through
 * a mailbox, as JSON ready to send (shapes in docs/api.md).
 *
 * Times are milliseconds since the Unix epoch (UTC).
 */
#ifndef TS_STORE_STORE_H
#define TS_STORE_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"

struct store;

/*
 * What a call or a turn used of the services, in the units they bill in.
 * LLM tokens as the service reported them: input counts every prompt token,
 * cached those of them read from its prompt cache, cache_write those
 * written to it. TTS characters synthesised by the backend, and those
 * played from the TTS cache instead. Seconds of caller audio recognised.
 * `reported` 0 = nothing known (stored as NULL, shown as null).
 */
struct store_usage {
  int reported;
  int64_t llm_input_tokens, llm_cached_tokens, llm_cache_write_tokens, llm_output_tokens;
  int64_t tts_chars, tts_chars_cached;
  double asr_seconds;
};

/* Adds b to a (saturating; a becomes reported when b is). */
void store_usage_add(struct store_usage *a, const struct store_usage *b);

/* A call as it is stored. Strings may be NULL (stored as NULL); they are copied. */
struct store_call {
  const char *id;
  int64_t created_ms, connected_ms, ended_ms; /* 0 = not (yet) */
  const char *end_reason;
  const char *node;        /* the server that ran it (host name); NULL = store_node() */
  const char *remote_addr; /* the caller's address as signaling saw it */
  const char *user_agent;
  const char *agent;       /* voice | echo */
  const char *asr, *asr_model, *llm, *llm_model, *tts, *tts_model, *tts_voice, *language;
  const char *settings_json; /* the offer's per-call settings, a JSON object's text */
  int64_t packets_received, packets_lost;
  const char *recording;   /* file name under data_dir/recordings, NULL when none */
  /* Only at the end: what the whole call used, and what that cost at the prices then
   * configured. currency NULL = not priced: the cost is stored as NULL. */
  struct store_usage usage;
  const char *currency;
  double cost;
};

/* A latency figure that does not apply is STORE_ABSENT. */
#define STORE_ABSENT (-1.0)

/*
 * One exchange of a call: a caller's turn and the reply to it, or a reply
 * alone (the greeting, an idle prompt). `index` counts from 0 in the order
 * they happened; storing the same (call_id, index) again replaces it, so a
 * turn can be stored as soon as its transcript is known and again when its
 * reply has been spoken.
 */
struct store_turn {
  const char *call_id;
  int index;
  int64_t at_ms;          /* when the caller finished speaking, or the reply began */
  const char *transcript; /* the caller's final words; NULL for a reply alone */
  const char *reply;      /* what was spoken (only what was heard, when interrupted) */
  int interrupted;
  double endpoint_ms, asr_ms, llm_first_token_ms, llm_first_sentence_ms, tts_first_audio_ms,
      voice_to_voice_ms, overhead_ms, barge_in_ms, onset_lag_ms;
  const char *error;      /* an engine's error during the turn, NULL when none */
  int tts_cached;         /* the reply's first sentence came from the TTS cache: 1, 0, -1 unknown */
  struct store_usage usage; /* what producing the reply used */
  /* The tools called for the reply, in order: a JSON array's text (docs/api.md has the
   * shape), NULL when none; stored as given. tool_call_count = how many calls the turn
   * made, which may exceed the array's length when calls were left out of it. */
  const char *tool_calls_json;
  int tool_call_count;
};

/* Sets every latency figure of `t` to STORE_ABSENT, tts_cached to -1 and everything else
 * to 0/NULL. */
void store_turn_init(struct store_turn *t);

struct store_stats {
  uint64_t queued;      /* events waiting now */
  uint64_t written;     /* events written since start */
  uint64_t dropped;     /* turn events dropped because the queue was full */
  uint64_t errors;      /* failed database operations (each retried) */
  uint64_t purged;      /* calls deleted by retention since start */
  int connected;        /* 1 while the database answers */
};

/*
 * Opens the store for cfg (cfg->database_url, else SQLite at
 * cfg->data_dir/tingshuo.db) and starts its thread; results of reads are
 * delivered on `loop`. Migrations are applied before it returns. A
 * database whose schema is newer than this binary, or a SQLite file that
 * cannot be opened, fails with `err` filled in. A PostgreSQL server that
 * does not answer does not fail the start: the store keeps trying and
 * events wait in the queue meanwhile (logged as a warning).
 */
int store_open(struct store **out, uv_loop_t *loop, const struct config *cfg, char *err,
               size_t errlen);
/*
 * On the loop's thread: writes what is queued (for at most `flush_ms`),
 * stops the thread and frees the store; its mailbox is freed once the loop
 * has run the mailbox's close. Reads not yet answered get -ECANCELED (their
 * callbacks run on the loop after this returns). Takes at most about
 * flush_ms + 50 ms, whatever the database is doing. No writer may call in
 * after it (stop the media workers first). NULL is ignored.
 */
void store_close(struct store *st, int flush_ms);

/*
 * This server's name (its host name): the node of calls begun without one,
 * and the node whose calls a start after a crash closes.
 */
const char *store_node(const struct store *st);

/*
 * Writes: from any thread; never block on the database; copy what they are
 * given. `st` may be NULL (records off): they do nothing. A call without
 * an id, or a turn without a call id or with a negative index, is ignored.
 */
void store_call_begin(struct store *st, const struct store_call *c);
void store_call_connected(struct store *st, const char *call_id, int64_t at_ms);
/* Sets ended_ms, end_reason, the packet counts, the recording, the usage and the cost. */
void store_call_end(struct store *st, const struct store_call *c);
void store_turn_put(struct store *st, const struct store_turn *t);

void store_get_stats(struct store *st, struct store_stats *out);

/*
 * The history API's filters; zero/NULL/"" fields do not filter. Negative
 * times, to_ms <= from_ms, a limit outside 0..200, a malformed cursor, an
 * end_reason over 128 bytes or a text over 256 bytes (or either not UTF-8)
 * are -EINVAL.
 */
struct store_query {
  int64_t from_ms, to_ms;  /* created_ms in [from_ms, to_ms) */
  const char *end_reason;  /* exactly */
  const char *text;        /* substring of a transcript or reply, any case */
  const char *cursor;      /* next_cursor of the previous page */
  int limit;               /* 1..200; 0 = 50 */
};

/*
 * Answer of a read, on the store's loop, always after the call that asked
 * returned: status 0 with `result` (owned by the callback), or -ENOENT (no
 * such call), -EINVAL (bad cursor or filter), -EIO (the database failed
 * or is down), -ENOMEM (at once, when even the request cannot be
 * allocated), -ECANCELED (closing). A read sees every event queued before
 * it while the database keeps up; behind a backlog of more than one
 * transaction (500 events), or while writes are failing, it is served
 * first and may not see the newest ones.
 */
typedef void (*store_result_cb)(void *user, int status, json_t *result);

/* {"calls":[summary...],"next_cursor":string|null}, newest first. */
void store_list_calls(struct store *st, const struct store_query *q, store_result_cb cb, void *user);
/* {"call":{...,"turns":[...]}}. */
void store_get_call(struct store *st, const char *call_id, store_result_cb cb, void *user);
/* Removes the call, its turns and its recording file; result {"deleted":id}. */
void store_delete_call(struct store *st, const char *call_id, store_result_cb cb, void *user);

/*
 * data_dir/recordings/<file>: 0; or "" and -EINVAL when `file` is not a
 * plain file name (letters, digits, '.', '_', '-', not starting with '.',
 * no "..", at most 255 bytes), -ENOSPC when it does not fit `cap`.
 */
int store_recording_path(const struct config *cfg, const char *file, char *out, size_t cap);

#endif
