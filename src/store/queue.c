/*
 * queue: record events waiting for the database, bounded by dropping the
 * oldest waiting turns.
 *
 * Two lists thread through the same events: every waiting event in order,
 * doubly linked so one can leave from the middle, and the waiting turn
 * events alone in order, so the oldest turn is found at once however many
 * call events sit before it. An event the writer has taken is on neither
 * list but still counts against the bound (`writing`), so a batch in
 * flight cannot let the queue grow past it; when a batch comes back after
 * a failure the bound is applied again, and then the oldest turns are
 * those that came back.
 */
#include "store/queue.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "store/text.h"

static const size_t call_strings[] = {
    offsetof(struct store_call, id),          offsetof(struct store_call, end_reason),
    offsetof(struct store_call, node),        offsetof(struct store_call, remote_addr),
    offsetof(struct store_call, user_agent),  offsetof(struct store_call, agent),
    offsetof(struct store_call, asr),         offsetof(struct store_call, asr_model),
    offsetof(struct store_call, llm),         offsetof(struct store_call, llm_model),
    offsetof(struct store_call, tts),         offsetof(struct store_call, tts_model),
    offsetof(struct store_call, tts_voice),   offsetof(struct store_call, language),
    offsetof(struct store_call, settings_json), offsetof(struct store_call, recording),
    offsetof(struct store_call, currency),
};
static const size_t turn_strings[] = {
    offsetof(struct store_turn, call_id),
    offsetof(struct store_turn, transcript),
    offsetof(struct store_turn, reply),
    offsetof(struct store_turn, error),
    offsetof(struct store_turn, tool_calls_json),
};
#define COUNT(a) (sizeof a / sizeof *a)

static const char **field(void *base, size_t offset) {
  return (const char **)(void *)((char *)base + offset);
}

/* Room for the cleaned copies of the string fields of `src`. */
static size_t strings_size(const void *src, const size_t *offsets, size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    const char *s = *field((void *)src, offsets[i]);
    if (s) total += store_utf8_size(s) + 1;
  }
  return total;
}

/* Points the string fields of `dst` (a copy of the struct) at copies in `space`. */
static void copy_strings(void *dst, const size_t *offsets, size_t n, char *space) {
  for (size_t i = 0; i < n; i++) {
    const char **f = field(dst, offsets[i]);
    if (!*f) continue;
    const char *s = *f;
    size_t len = store_utf8_size(s);
    store_utf8_copy(space, s);
    *f = space;
    space += len + 1;
  }
}

static struct store_event *event_new(enum store_event_kind kind, size_t strings) {
  struct store_event *ev = calloc(1, sizeof *ev + strings);
  if (ev) ev->kind = kind;
  return ev;
}

/* Counts below 0 and seconds that are not a finite number >= 0 become 0. */
static void clean_usage(struct store_usage *u) {
  int64_t *counts[] = {&u->llm_input_tokens, &u->llm_cached_tokens, &u->llm_cache_write_tokens,
                       &u->llm_output_tokens, &u->tts_chars,        &u->tts_chars_cached};
  for (size_t i = 0; i < COUNT(counts); i++)
    if (*counts[i] < 0) *counts[i] = 0;
  if (!(isfinite(u->asr_seconds) && u->asr_seconds >= 0)) u->asr_seconds = 0;
}

struct store_event *store_event_call(enum store_event_kind kind, const struct store_call *c,
                                     const char *node) {
  struct store_call src = *c;
  if (!src.node) src.node = node;
  clean_usage(&src.usage);
  if (!(isfinite(src.cost) && src.cost >= 0)) src.currency = NULL; /* no cost to show */
  struct store_event *ev = event_new(kind, strings_size(&src, call_strings, COUNT(call_strings)));
  if (!ev) return NULL;
  ev->call = src;
  copy_strings(&ev->call, call_strings, COUNT(call_strings), (char *)(ev + 1));
  return ev;
}

struct store_event *store_event_connected(const char *call_id, int64_t at_ms) {
  struct store_call c = {.id = call_id, .connected_ms = at_ms};
  return store_event_call(EV_CALL_CONNECTED, &c, NULL);
}

static double figure(double v) { return isfinite(v) ? v : STORE_ABSENT; }

struct store_event *store_event_turn(const struct store_turn *t) {
  struct store_event *ev = event_new(EV_TURN, strings_size(t, turn_strings, COUNT(turn_strings)));
  if (!ev) return NULL;
  ev->turn = *t;
  double *figures[] = {&ev->turn.endpoint_ms,          &ev->turn.asr_ms,
                       &ev->turn.llm_first_token_ms,   &ev->turn.llm_first_sentence_ms,
                       &ev->turn.tts_first_audio_ms,   &ev->turn.voice_to_voice_ms,
                       &ev->turn.overhead_ms,          &ev->turn.barge_in_ms,
                       &ev->turn.onset_lag_ms};
  for (size_t i = 0; i < COUNT(figures); i++) *figures[i] = figure(*figures[i]);
  clean_usage(&ev->turn.usage);
  if (ev->turn.tts_cached != 0 && ev->turn.tts_cached != 1) ev->turn.tts_cached = -1;
  if (ev->turn.tool_call_count < 0) ev->turn.tool_call_count = 0;
  copy_strings(&ev->turn, turn_strings, COUNT(turn_strings), (char *)(ev + 1));
  return ev;
}

void store_queue_init(struct store_queue *q, size_t bound) {
  memset(q, 0, sizeof *q);
  q->bound = bound;
}

static void unlink_waiting(struct store_queue *q, struct store_event *ev) {
  if (ev->prev) ev->prev->next = ev->next;
  else q->head = ev->next;
  if (ev->next) ev->next->prev = ev->prev;
  else q->tail = ev->prev;
  ev->prev = ev->next = NULL;
  q->waiting--;
}

static void drop_oldest_turns(struct store_queue *q) {
  while (q->waiting + q->writing > q->bound && q->thead) {
    struct store_event *ev = q->thead;
    q->thead = ev->tnext;
    if (!q->thead) q->ttail = NULL;
    unlink_waiting(q, ev);
    free(ev);
    q->dropped++;
  }
}

void store_queue_push(struct store_queue *q, struct store_event *ev) {
  ev->next = ev->tnext = NULL;
  ev->prev = q->tail;
  if (q->tail) q->tail->next = ev;
  else q->head = ev;
  q->tail = ev;
  q->waiting++;
  if (ev->kind == EV_TURN) {
    if (q->ttail) q->ttail->tnext = ev;
    else q->thead = ev;
    q->ttail = ev;
  }
  drop_oldest_turns(q);
}

size_t store_queue_take(struct store_queue *q, size_t max, struct store_event **batch) {
  struct store_event *first = q->head, *last = NULL;
  size_t n = 0;
  for (struct store_event *ev = q->head; ev && n < max; ev = ev->next, n++) {
    last = ev;
    if (ev->kind == EV_TURN) { /* the turns leave the front of their list too */
      q->thead = ev->tnext;
      if (!q->thead) q->ttail = NULL;
      ev->tnext = NULL;
    }
  }
  *batch = n ? first : NULL;
  if (!n) return 0;
  q->head = last->next;
  if (q->head) q->head->prev = NULL;
  else q->tail = NULL;
  last->next = NULL;
  q->waiting -= n;
  q->writing += n;
  return n;
}

void store_queue_unget(struct store_queue *q, struct store_event *batch, size_t n) {
  struct store_event *last = NULL, *tfirst = NULL, *tlast = NULL;
  for (struct store_event *ev = batch; ev; ev = ev->next) {
    ev->prev = last;
    last = ev;
    if (ev->kind != EV_TURN) continue;
    if (tlast) tlast->tnext = ev;
    else tfirst = ev;
    tlast = ev;
  }
  if (!last) return;
  last->next = q->head;
  if (q->head) q->head->prev = last;
  else q->tail = last;
  q->head = batch;
  if (tlast) {
    tlast->tnext = q->thead;
    if (!q->thead) q->ttail = tlast;
    q->thead = tfirst;
  }
  q->writing -= n;
  q->waiting += n;
  drop_oldest_turns(q);
}

void store_queue_done(struct store_queue *q, size_t n) { q->writing -= n; }

size_t store_queue_clear(struct store_queue *q) {
  size_t n = 0;
  for (struct store_event *ev = q->head, *next; ev; ev = next, n++) {
    next = ev->next;
    free(ev);
  }
  q->head = q->tail = q->thead = q->ttail = NULL;
  q->waiting = 0;
  return n;
}
