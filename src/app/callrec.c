/*
 * A call's record, built from its agent's events.
 *
 * The record is a list of rows in conversation order: a caller's turn with
 * the reply to it, or a reply alone (the greeting, an idle prompt, an
 * apology). The voice agent numbers caller turns in its events (`turn` on
 * the final transcript, the reply and the latency figures; 0 for a reply
 * alone), so a row is found by that number, not by guessing from the order
 * of events — which matters at a barge-in, where the new turn's transcript
 * arrives before the interrupted reply it cut short.
 *
 * A row is stored as soon as it has something (the transcript when the
 * caller stops speaking) and again each time it grows, so a crash loses at
 * most the row in progress; the store replaces a row stored twice.
 *
 * An engine error belongs to the row in progress when there is one (an LLM
 * failing during a turn), else to the next row (an ASR failure: the apology
 * that follows is a reply alone).
 *
 * What each reply used of the services comes in `usage` events when the
 * reply ends, and is added to its row (a reply dropped and asked again
 * sends one for each attempt) and to the call's totals. A reply alone has
 * no number of its own (turn 0), and its first-audio `latency` and its
 * `usage` may come before its `reply` event: a turn-0 `latency` without
 * barge_in_ms announces a new reply alone, and what arrives for turn 0
 * from then until its `reply` is held for the row that event makes. A
 * turn-0 `usage` with no reply alone in progress belongs to the latest
 * reply alone if it has none yet, else to no row (a reply dropped before
 * it was heard): the call's totals count it all the same. The totals and
 * the estimated cost, at the prices configured then, are written when the
 * call ends.
 *
 * The tools the model called while producing a reply come as a `tool_call`
 * and later its `tool_result`, both with the reply's `turn`; they are kept
 * on that row in the order they were made, each result joined to its call
 * by tool_call_id. A reply alone's row, and a caller turn's whose
 * transcript never came, is made after its tools ran, so calls for a turn
 * with no row yet are held until that row is made (a few turns' worth; a
 * turn that never gets a row keeps none). A row keeps at most
 * TOOL_CALLS_KEPT calls and at most TOOL_VALUE_MAX bytes of each argument
 * and result, so a tool that answers a megabyte cannot make a row the
 * database refuses; it says what it cut, and counts every call.
 */
#include "app/callrec.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/cost.h"

/* The latency figures of a `latency` event, in the order of struct store_turn. */
static const char *const figure_names[] = {
    "endpoint_ms",       "asr_ms",      "llm_first_token_ms", "llm_first_sentence_ms",
    "tts_first_audio_ms", "voice_to_voice_ms", "overhead_ms", "barge_in_ms", "onset_lag_ms",
};
#define NFIG (sizeof figure_names / sizeof figure_names[0])
enum { FIG_VOICE_TO_VOICE = 5, FIG_OVERHEAD = 6, FIG_BARGE_IN = 7, FIG_ONSET_LAG = 8 };

/* Stages shown by /metrics as tingshuo_turn_stage_seconds{stage}: the first five and overhead. */
static const char *const stage_labels[] = {
    "endpoint", "asr", "llm_first_token", "llm_first_sentence", "tts_first_audio", "overhead",
};
#define NSTAGE (sizeof stage_labels / sizeof stage_labels[0])

#define MAX_REASONS 24

struct callrec_metrics {
  struct cost_prices prices;
  int priced;
  double cost; /* estimated, in prices.currency, over every call ended */
  uint64_t started, turns, interrupted;
  uint64_t first_cached, first_synthesised; /* replies whose first sentence was (not) cached */
  uint64_t spec_used, spec_dropped; /* replies begun in a pause: heard, or dropped unheard */
  struct {
    char reason[40];
    uint64_t n;
  } ended[MAX_REASONS];
  int nreasons;
  struct prom_histogram stage[NSTAGE], voice_to_voice, barge_in, onset_lag;
};

/* The tool calls of one row: a JSON array of objects (NULL until the first), and how
 * many calls were made, which counts the ones past TOOL_CALLS_KEPT too. */
struct row_tools {
  json_t *list;
  int count;
  size_t bytes; /* of the arguments and results kept */
};

/* Each tool event stores its row again, so a row's calls are kept small: a turn's few
 * calls fit whole, and a tool answering megabytes costs the queue no more than this. */
#define TOOL_CALLS_KEPT 32
#define TOOL_VALUE_MAX 4096 /* bytes of an argument's or a result's JSON text */
#define TOOL_ROW_MAX 32768  /* bytes of all of them in one row */
#define TOOL_NAME_MAX 128   /* bytes of a tool's name or a call's id */

struct row {
  int used;
  int index, turn_no;
  int64_t at_ms;
  char *transcript, *reply, *error;
  int interrupted;
  double fig[NFIG];
  int tts_cached; /* 1, 0, -1 unknown */
  struct store_usage usage;
  struct row_tools tools;
};

/* Tool calls of a turn whose row is not made yet (turn 0: the next reply alone). */
#define HELD_TURNS 4
struct held_tools {
  int used, turn;
  struct row_tools tools;
};

/* What came for a reply alone before its `reply` event made its row. */
struct alone_pending {
  int active; /* its first audio was reported, its reply not yet */
  double fig[NFIG];
  int tts_cached;
  struct store_usage usage;
};

/* Caller turns kept open: at a barge-in the new turn begins before the one it
 * interrupted has its reply, so two are open at once; four leave room. */
#define OPEN_TURNS 4

struct callrec {
  struct store *st;
  struct callrec_metrics *m;
  char id[40];
  int next_index;
  struct row turns[OPEN_TURNS]; /* caller turn n in slot n % OPEN_TURNS */
  int last_turn;                /* the latest caller turn's number, 0 before the first */
  struct row alone;             /* the latest reply alone */
  struct alone_pending next_alone;
  struct held_tools held[HELD_TURNS];
  char *pending_error;
  int64_t reply_started_ms; /* first sentence of the reply being spoken began */
  struct store_usage total; /* every usage event of the call */
};

int64_t callrec_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- metrics ---------------------------------------------------------------------- */

int callrec_metrics_new(struct callrec_metrics **out) {
  struct callrec_metrics *m = calloc(1, sizeof *m);
  if (!m) return -ENOMEM;
  for (size_t i = 0; i < NSTAGE; i++)
    prom_histogram_init(&m->stage[i], prom_latency_bounds, prom_latency_nbounds);
  prom_histogram_init(&m->voice_to_voice, prom_latency_bounds, prom_latency_nbounds);
  prom_histogram_init(&m->barge_in, prom_latency_bounds, prom_latency_nbounds);
  prom_histogram_init(&m->onset_lag, prom_latency_bounds, prom_latency_nbounds);
  *out = m;
  return 0;
}

void callrec_metrics_free(struct callrec_metrics *m) { free(m); }

void callrec_metrics_set_prices(struct callrec_metrics *m, const struct config *cfg) {
  cost_prices_from_config(&m->prices, cfg);
  m->priced = cost_priced(&m->prices);
}

/* End reasons are a small set of fixed strings; anything past MAX_REASONS counts as "other". */
static void count_end(struct callrec_metrics *m, const char *reason) {
  int i = 0;
  while (i < m->nreasons && strcmp(m->ended[i].reason, reason) != 0) i++;
  if (i == m->nreasons) {
    if (m->nreasons == MAX_REASONS) reason = "other", i = MAX_REASONS - 1;
    else snprintf(m->ended[m->nreasons++].reason, sizeof m->ended[0].reason, "%s", reason);
  }
  m->ended[i].n++;
}

static void observe_latency(struct callrec_metrics *m, const double *fig) {
  if (fig[FIG_BARGE_IN] >= 0) {
    /* The second report of an interrupted turn: its stages were counted by the first. */
    prom_histogram_observe(&m->barge_in, fig[FIG_BARGE_IN] / 1000);
    if (fig[FIG_ONSET_LAG] >= 0) prom_histogram_observe(&m->onset_lag, fig[FIG_ONSET_LAG] / 1000);
    return;
  }
  for (size_t i = 0; i < NSTAGE; i++) {
    double v = fig[i < 5 ? i : FIG_OVERHEAD];
    if (v >= 0) prom_histogram_observe(&m->stage[i], v / 1000);
  }
  if (fig[FIG_VOICE_TO_VOICE] >= 0)
    prom_histogram_observe(&m->voice_to_voice, fig[FIG_VOICE_TO_VOICE] / 1000);
}

void callrec_metrics_write(const struct callrec_metrics *m, int active, struct prom_buf *b) {
  prom_family(b, "tingshuo_calls_active", "gauge", "Calls in progress.");
  prom_sample(b, "tingshuo_calls_active", active, NULL);
  prom_family(b, "tingshuo_calls_started_total", "counter", "Calls started (offers answered).");
  prom_sample(b, "tingshuo_calls_started_total", (double)m->started, NULL);
  prom_family(b, "tingshuo_calls_ended_total", "counter", "Calls ended, by end reason.");
  for (int i = 0; i < m->nreasons; i++)
    prom_sample(b, "tingshuo_calls_ended_total", (double)m->ended[i].n, "reason",
                m->ended[i].reason, NULL);
  prom_family(b, "tingshuo_turns_total", "counter", "Caller turns answered.");
  prom_sample(b, "tingshuo_turns_total", (double)m->turns, NULL);
  prom_family(b, "tingshuo_replies_interrupted_total", "counter",
              "Replies the caller cut short by speaking.");
  prom_sample(b, "tingshuo_replies_interrupted_total", (double)m->interrupted, NULL);
  prom_family(b, "tingshuo_turn_stage_seconds", "histogram",
              "Time each stage of a turn took (docs/agent.md defines them).");
  for (size_t i = 0; i < NSTAGE; i++)
    prom_histogram_write(b, "tingshuo_turn_stage_seconds", &m->stage[i], "stage",
                         stage_labels[i], NULL);
  prom_family(b, "tingshuo_voice_to_voice_seconds", "histogram",
              "Last voiced frame of the caller received to first reply frame sent.");
  prom_histogram_write(b, "tingshuo_voice_to_voice_seconds", &m->voice_to_voice, NULL);
  prom_family(b, "tingshuo_barge_in_stop_seconds", "histogram",
              "Caller's speech onset over a reply to the reply's last frame sent.");
  prom_histogram_write(b, "tingshuo_barge_in_stop_seconds", &m->barge_in, NULL);
  prom_family(b, "tingshuo_barge_in_onset_lag_seconds", "histogram",
              "How long the caller had been speaking when the onset was declared.");
  prom_histogram_write(b, "tingshuo_barge_in_onset_lag_seconds", &m->onset_lag, NULL);
  prom_family(b, "tingshuo_reply_first_sentences_total", "counter",
              "Replies begun, by where their first sentence's audio came from.");
  prom_sample(b, "tingshuo_reply_first_sentences_total", (double)m->first_cached, "source",
              "cached", NULL);
  prom_sample(b, "tingshuo_reply_first_sentences_total", (double)m->first_synthesised, "source",
              "synthesised", NULL);
  prom_family(b, "tingshuo_speculative_replies_total", "counter",
              "Replies begun in the caller's pause before their turn was over (speculate), by "
              "outcome: used, or dropped unheard because the caller went on.");
  prom_sample(b, "tingshuo_speculative_replies_total", (double)m->spec_used, "outcome", "used",
              NULL);
  prom_sample(b, "tingshuo_speculative_replies_total", (double)m->spec_dropped, "outcome",
              "dropped", NULL);
  prom_family(b, "tingshuo_estimated_cost_total", "counter",
              "Estimated cost of the calls ended, at the price_* keys, in their currency.");
  if (m->priced)
    prom_sample(b, "tingshuo_estimated_cost_total", m->cost, "currency", m->prices.currency,
                NULL);
}

/* --- rows --------------------------------------------------------------------------- */

static void tools_clear(struct row_tools *t) {
  json_decref(t->list);
  memset(t, 0, sizeof *t);
}

static void row_clear(struct row *w) {
  tools_clear(&w->tools);
  free(w->transcript);
  free(w->reply);
  free(w->error);
  memset(w, 0, sizeof *w);
}

static void row_start(struct callrec *r, struct row *w, int turn_no, int64_t at_ms) {
  row_clear(w);
  w->used = 1;
  w->index = r->next_index++;
  w->turn_no = turn_no;
  w->at_ms = at_ms;
  for (size_t i = 0; i < NFIG; i++) w->fig[i] = STORE_ABSENT;
  w->tts_cached = -1;
  w->error = r->pending_error;
  r->pending_error = NULL;
}

static void set_text(char **field, const char *text) {
  char *copy = text ? strdup(text) : NULL;
  if (text && !copy) return; /* out of memory: the row keeps what it had */
  free(*field);
  *field = copy;
}

/* "a" then "b": a second error in the same row is added, not lost. */
static void add_error(char **field, const char *msg) {
  if (!*field) {
    set_text(field, msg);
    return;
  }
  size_t n = strlen(*field) + strlen(msg) + 3;
  char *joined = malloc(n);
  if (!joined) return;
  snprintf(joined, n, "%s; %s", *field, msg);
  free(*field);
  *field = joined;
}

static void row_put(struct callrec *r, const struct row *w) {
  if (!r->st || !w->used) return;
  struct store_turn t;
  store_turn_init(&t);
  t.call_id = r->id;
  t.index = w->index;
  t.at_ms = w->at_ms;
  t.transcript = w->transcript;
  t.reply = w->reply;
  t.interrupted = w->interrupted;
  t.error = w->error;
  double *figs[NFIG] = {&t.endpoint_ms,       &t.asr_ms,      &t.llm_first_token_ms,
                        &t.llm_first_sentence_ms, &t.tts_first_audio_ms, &t.voice_to_voice_ms,
                        &t.overhead_ms,       &t.barge_in_ms, &t.onset_lag_ms};
  for (size_t i = 0; i < NFIG; i++) *figs[i] = w->fig[i];
  t.tts_cached = w->tts_cached;
  t.usage = w->usage;
  char *tools = w->tools.list ? json_dumps(w->tools.list, JSON_COMPACT) : NULL;
  t.tool_calls_json = tools; /* out of memory: the row goes without its calls this time */
  t.tool_call_count = w->tools.count;
  store_turn_put(r->st, &t);
  free(tools);
}

/* The row a `turn` number names: a caller turn still open, or the latest reply alone for 0. */
static struct row *row_for(struct callrec *r, int turn_no) {
  if (turn_no == 0) return r->alone.used ? &r->alone : NULL;
  struct row *w = &r->turns[turn_no % OPEN_TURNS];
  return w->used && w->turn_no == turn_no ? w : NULL;
}

/* The tool calls held for turn n, or NULL. */
static struct held_tools *held_for(struct callrec *r, int turn_no) {
  for (int i = 0; i < HELD_TURNS; i++)
    if (r->held[i].used && r->held[i].turn == turn_no) return &r->held[i];
  return NULL;
}

/* A new row takes the tool calls that came for it before it was made. */
static void take_held(struct callrec *r, struct row *w, int turn_no) {
  struct held_tools *h = held_for(r, turn_no);
  if (!h) return;
  tools_clear(&w->tools);
  w->tools = h->tools;
  memset(h, 0, sizeof *h);
}

/* A new row for caller turn n (its slot's previous turn is long finished). */
static struct row *start_turn(struct callrec *r, int turn_no, int64_t at_ms) {
  struct row *w = &r->turns[turn_no % OPEN_TURNS];
  row_start(r, w, turn_no, at_ms);
  take_held(r, w, turn_no);
  if (turn_no > r->last_turn) r->last_turn = turn_no;
  return w;
}

/* --- events ------------------------------------------------------------------------- */

static int turn_of(json_t *ev) {
  json_t *t = json_object_get(ev, "turn");
  return json_is_integer(t) ? (int)json_integer_value(t) : -1;
}

static void on_transcript(struct callrec *r, json_t *ev) {
  int n = turn_of(ev);
  const char *text = json_string_value(json_object_get(ev, "text"));
  if (!json_is_true(json_object_get(ev, "final")) || n <= 0 || !text) return;
  struct row *w = row_for(r, n); /* the same turn again: the caller went on before the reply */
  if (!w) {
    w = start_turn(r, n, callrec_now_ms());
    r->m->turns++;
  }
  set_text(&w->transcript, text);
  row_put(r, w);
}

/* The reply alone whose first audio was reported gets what was held for it. */
static void take_pending_alone(struct callrec *r, struct row *w) {
  struct alone_pending *p = &r->next_alone;
  if (!p->active) return;
  for (size_t i = 0; i < NFIG; i++)
    if (p->fig[i] != STORE_ABSENT) w->fig[i] = p->fig[i];
  w->tts_cached = p->tts_cached;
  store_usage_add(&w->usage, &p->usage);
  memset(p, 0, sizeof *p);
}

static void on_reply(struct callrec *r, json_t *ev) {
  int n = turn_of(ev);
  const char *text = json_string_value(json_object_get(ev, "text"));
  int64_t started = r->reply_started_ms ? r->reply_started_ms : callrec_now_ms();
  r->reply_started_ms = 0;
  if (n < 0 || !text) return;
  struct row *w = n > 0 ? row_for(r, n) : NULL;
  if (!w && n > 0) {
    w = start_turn(r, n, started); /* a turn whose transcript never came */
  } else if (!w) {
    w = &r->alone;
    row_start(r, w, 0, started);
    take_pending_alone(r, w);
    take_held(r, w, 0);
  }
  set_text(&w->reply, text);
  w->interrupted = json_is_true(json_object_get(ev, "interrupted"));
  if (w->interrupted) r->m->interrupted++;
  row_put(r, w);
}

static void on_latency(struct callrec *r, json_t *ev) {
  double fig[NFIG];
  for (size_t i = 0; i < NFIG; i++) {
    json_t *v = json_object_get(ev, figure_names[i]);
    fig[i] = json_is_number(v) ? json_number_value(v) : STORE_ABSENT;
  }
  json_t *c = json_object_get(ev, "tts_cached");
  int cached = json_is_boolean(c) ? json_is_true(c) : -1;
  int n = turn_of(ev);
  int first = fig[FIG_BARGE_IN] == STORE_ABSENT; /* the report at the reply's first audio */
  if (first && cached == 1) r->m->first_cached++;
  if (first && cached == 0) r->m->first_synthesised++;
  if (first && json_is_true(json_object_get(ev, "speculated"))) r->m->spec_used++;
  json_t *wasted = json_object_get(ev, "llm_wasted");
  if (first && json_is_integer(wasted) && json_integer_value(wasted) > 0)
    r->m->spec_dropped += (uint64_t)json_integer_value(wasted);
  /* The stage histograms are of caller turns; a reply alone has no stages before its TTS. */
  if (n != 0 || !first) observe_latency(r->m, fig);
  if (n == 0 && first) { /* a reply alone begins: its row is made by its reply event */
    struct alone_pending *p = &r->next_alone;
    memset(p, 0, sizeof *p);
    p->active = 1;
    memcpy(p->fig, fig, sizeof p->fig);
    p->tts_cached = cached;
    return;
  }
  struct row *w = n >= 0 ? row_for(r, n) : NULL;
  if (!w) return;
  for (size_t i = 0; i < NFIG; i++)
    if (fig[i] != STORE_ABSENT) w->fig[i] = fig[i];
  if (cached >= 0) w->tts_cached = cached;
  row_put(r, w);
}

/* A count of a usage event: an integer 0..1e12, else 0 (the field is ignored). */
static int64_t usage_count(json_t *ev, const char *key) {
  json_t *v = json_object_get(ev, key);
  json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;
  return n >= 0 && n <= 1000000000000LL ? (int64_t)n : 0;
}

static void on_usage(struct callrec *r, json_t *ev) {
  json_t *sec = json_object_get(ev, "asr_seconds");
  double asr = json_is_number(sec) ? json_number_value(sec) : 0;
  struct store_usage u = {
      .reported = 1,
      .llm_input_tokens = usage_count(ev, "llm_input_tokens"),
      .llm_cached_tokens = usage_count(ev, "llm_cached_tokens"),
      .llm_cache_write_tokens = usage_count(ev, "llm_cache_write_tokens"),
      .llm_output_tokens = usage_count(ev, "llm_output_tokens"),
      .tts_chars = usage_count(ev, "tts_chars"),
      .tts_chars_cached = usage_count(ev, "tts_chars_cached"),
      .asr_seconds = isfinite(asr) && asr >= 0 && asr <= 1e7 ? asr : 0};
  store_usage_add(&r->total, &u);
  int n = turn_of(ev);
  struct row *w = NULL;
  if (n > 0) {
    w = row_for(r, n);
  } else if (n == 0 && r->next_alone.active) {
    store_usage_add(&r->next_alone.usage, &u);
    return;
  } else if (n == 0 && r->alone.used && !r->alone.usage.reported) {
    w = &r->alone;
  }
  if (!w) return;
  store_usage_add(&w->usage, &u);
  row_put(r, w);
}

/* The caller's sentence plus its error id, "(e-...)", which leads to the log line that has
 * the detail: the record never holds an upstream service's own text. */
static void on_error(struct callrec *r, json_t *ev) {
  const char *text = json_string_value(json_object_get(ev, "message"));
  const char *code = json_string_value(json_object_get(ev, "code"));
  const char *id = json_string_value(json_object_get(ev, "error_id"));
  if (!text || !code || strcmp(code, "engine") != 0) return;
  char msg[512];
  if (id) snprintf(msg, sizeof msg, "%s (%s)", text, id);
  else snprintf(msg, sizeof msg, "%s", text);
  struct row *w = row_for(r, r->last_turn);
  if (w && !w->reply) { /* the turn being answered */
    add_error(&w->error, msg);
    row_put(r, w);
  } else {
    add_error(&r->pending_error, msg);
  }
}

/* --- tool calls ----------------------------------------------------------------------- */

/* The longest prefix of UTF-8 `s` that fits `max` bytes, cut between characters. */
static size_t utf8_cut(const char *s, size_t len, size_t max) {
  if (len <= max) return len;
  size_t n = max;
  while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
  return n;
}

/* A string field of the event, cut to TOOL_NAME_MAX bytes; "" when it is not a string. */
static json_t *short_text(json_t *ev, const char *key) {
  json_t *v = json_object_get(ev, key);
  const char *s = json_is_string(v) ? json_string_value(v) : "";
  size_t len = json_is_string(v) ? json_string_length(v) : 0;
  return json_stringn_nocheck(s, utf8_cut(s, len, TOOL_NAME_MAX));
}

/*
 * Sets entry[key] to the event's value as it is when its JSON text fits the room left,
 * else to the first bytes of that text (of the string itself, for a string) that fit,
 * with entry[key_truncated] = true. A missing value is null. The room is TOOL_VALUE_MAX,
 * less when the row's values are near TOOL_ROW_MAX together; what is kept is taken from it.
 */
static void put_value(struct row_tools *t, json_t *entry, const char *key, json_t *v) {
  size_t room = TOOL_ROW_MAX - t->bytes;
  if (room > TOOL_VALUE_MAX) room = TOOL_VALUE_MAX;
  char *dumped = v && !json_is_string(v) ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  const char *text = json_is_string(v) ? json_string_value(v) : dumped;
  if (!text) { /* missing (or out of memory) */
    json_object_set_new(entry, key, json_null());
    return;
  }
  size_t len = json_is_string(v) ? json_string_length(v) : strlen(text);
  size_t keep = utf8_cut(text, len, room);
  t->bytes += keep;
  if (keep == len) {
    json_object_set(entry, key, v);
  } else {
    char flag[48];
    snprintf(flag, sizeof flag, "%s_truncated", key);
    json_object_set_new(entry, key, json_stringn_nocheck(text, keep));
    json_object_set_new(entry, flag, json_true());
  }
  free(dumped);
}

/* The calls of turn n: its row's, or those held for it (made when `make`), or NULL. */
static struct row_tools *tools_of(struct callrec *r, int turn_no, int make, struct row **row) {
  *row = turn_no > 0 ? row_for(r, turn_no) : NULL;
  if (*row) return &(*row)->tools;
  struct held_tools *h = held_for(r, turn_no);
  if (h || !make) return h ? &h->tools : NULL;
  for (int i = 0; i < HELD_TURNS; i++) /* a free slot, else the oldest turn's goes */
    if (!h || !r->held[i].used || (h->used && r->held[i].turn < h->turn)) h = &r->held[i];
  tools_clear(&h->tools);
  h->used = 1;
  h->turn = turn_no;
  return &h->tools;
}

/* A new call at the end of `t`; NULL when the row keeps no more (it is counted anyway). */
static json_t *add_call(struct row_tools *t, json_t *ev) {
  t->count++;
  if (!t->list && !(t->list = json_array())) return NULL;
  if (json_array_size(t->list) >= TOOL_CALLS_KEPT) return NULL;
  json_t *e = json_object();
  if (!e || json_array_append_new(t->list, e)) return NULL;
  json_object_set_new(e, "tool", short_text(ev, "tool"));
  json_object_set_new(e, "tool_call_id", short_text(ev, "tool_call_id"));
  put_value(t, e, "arguments", json_object_get(ev, "arguments"));
  json_object_set_new(e, "result", json_null());
  json_object_set_new(e, "is_error", json_null());
  json_object_set_new(e, "ms", json_null());
  return e;
}

/* The latest call in `t` with this id that has no result yet. */
static json_t *find_call(struct row_tools *t, const char *id) {
  for (size_t i = t && t->list ? json_array_size(t->list) : 0; i-- > 0;) {
    json_t *e = json_array_get(t->list, i);
    const char *eid = json_string_value(json_object_get(e, "tool_call_id"));
    if (eid && strcmp(eid, id) == 0 && json_is_null(json_object_get(e, "is_error"))) return e;
  }
  return NULL;
}

static void on_tool_call(struct callrec *r, json_t *ev) {
  int n = turn_of(ev);
  struct row *w;
  struct row_tools *t = n >= 0 ? tools_of(r, n, 1, &w) : NULL;
  if (!t) return;
  add_call(t, ev);
  if (w) row_put(r, w);
}

static void on_tool_result(struct callrec *r, json_t *ev) {
  int n = turn_of(ev);
  if (n < 0) return;
  json_t *idv = json_object_get(ev, "tool_call_id");
  char id[TOOL_NAME_MAX + 1];
  const char *s = json_is_string(idv) ? json_string_value(idv) : "";
  size_t len = utf8_cut(s, strlen(s), TOOL_NAME_MAX);
  memcpy(id, s, len);
  id[len] = '\0';
  /* Its call is held, or on the turn's row, or on the reply alone made since (turn 0). */
  struct row *w = NULL;
  struct row_tools *held = tools_of(r, n, 0, &w);
  struct row_tools *t = held;
  json_t *e = find_call(held, id);
  if (!e && n == 0 && r->alone.used && (e = find_call(&r->alone.tools, id))) {
    w = &r->alone;
    t = &r->alone.tools;
  }
  if (!e) { /* a result whose call was not kept: kept alone while there is room */
    t = tools_of(r, n, 1, &w);
    if (!t || (t->list && json_array_size(t->list) >= TOOL_CALLS_KEPT)) return;
    if (!(e = add_call(t, ev))) return;
  }
  json_t *ms = json_object_get(ev, "ms");
  put_value(t, e, "result", json_object_get(ev, "result"));
  json_object_set_new(e, "is_error", json_boolean(json_is_true(json_object_get(ev, "is_error"))));
  json_object_set_new(e, "ms", json_is_integer(ms) && json_integer_value(ms) >= 0
                                   ? json_integer(json_integer_value(ms)) : json_null());
  if (w) row_put(r, w);
}

/* The event's type, read from its first field without parsing the whole text. */
static int type_is(const char *json, const char *type) {
  static const char prefix[] = "{\"type\":\"";
  size_t n = strlen(type);
  return strncmp(json, prefix, sizeof prefix - 1) == 0 &&
         strncmp(json + sizeof prefix - 1, type, n) == 0 && json[sizeof prefix - 1 + n] == '"';
}

void callrec_agent_event(struct callrec *r, const char *json) {
  if (!r || !json) return;
  if (type_is(json, "reply_partial")) {
    if (!r->reply_started_ms) r->reply_started_ms = callrec_now_ms();
    return;
  }
  static const struct {
    const char *type;
    void (*fn)(struct callrec *r, json_t *ev);
  } handlers[] = {{"transcript", on_transcript}, {"reply", on_reply},
                  {"latency", on_latency},       {"error", on_error},
                  {"usage", on_usage},           {"tool_call", on_tool_call},
                  {"tool_result", on_tool_result}};
  for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++) {
    if (!type_is(json, handlers[i].type)) continue;
    json_t *ev = json_loads(json, 0, NULL);
    if (json_is_object(ev)) handlers[i].fn(r, ev);
    json_decref(ev);
    return;
  }
}

/* --- the call ------------------------------------------------------------------------- */

struct callrec *callrec_new(struct store *st, struct callrec_metrics *m,
                            const struct callrec_start *s) {
  struct callrec *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->st = st;
  r->m = m;
  snprintf(r->id, sizeof r->id, "%s", s->id);
  m->started++;
  if (!st) return r;
  struct store_call c = {
      .id = s->id, .created_ms = callrec_now_ms(),
      .remote_addr = s->remote_addr, .user_agent = s->user_agent, .agent = s->agent,
      .asr = s->asr, .asr_model = s->asr_model, .llm = s->llm, .llm_model = s->llm_model,
      .tts = s->tts, .tts_model = s->tts_model, .tts_voice = s->tts_voice,
      .language = s->language, .settings_json = s->settings_json};
  store_call_begin(st, &c);
  return r;
}

void callrec_connected(struct callrec *r) {
  if (r && r->st) store_call_connected(r->st, r->id, callrec_now_ms());
}

void callrec_end(struct callrec *r, const char *reason, const struct media_call_summary *s) {
  if (!r) return;
  count_end(r->m, reason);
  if (r->pending_error) { /* an error with nothing after it still belongs to the call */
    row_start(r, &r->alone, 0, callrec_now_ms());
    row_put(r, &r->alone);
  }
  struct store_usage total = r->total;
  total.reported = 1; /* the record is finished: what was not reported was not used */
  double cost = r->m->priced ? cost_estimate(&r->m->prices, &total) : 0;
  r->m->cost += cost;
  if (r->st) {
    struct store_call c = {.id = r->id, .ended_ms = callrec_now_ms(), .end_reason = reason,
                           .usage = total, .cost = cost,
                           .currency = r->m->priced ? r->m->prices.currency : NULL};
    if (s) {
      c.packets_received = (int64_t)s->packets_received;
      c.packets_lost = (int64_t)s->packets_lost;
      c.recording = s->recording[0] ? s->recording : NULL;
    }
    store_call_end(r->st, &c);
  }
  for (int i = 0; i < OPEN_TURNS; i++) row_clear(&r->turns[i]);
  row_clear(&r->alone);
  for (int i = 0; i < HELD_TURNS; i++) tools_clear(&r->held[i].tools);
  free(r->pending_error);
  free(r);
}
