/*
 * queue: the record events waiting for the database.
 *
 * Writers copy what they want stored into an event (one allocation that
 * holds the strings too) and push it; the store's thread takes a batch
 * from the front, writes it, and either reports it done or puts it back at
 * the front to try again. Past the bound the oldest waiting turn events go,
 * because a call's begin and end hold what a record is (who, when, how it
 * ended) and are few, while turns come many per call. The queue does no
 * locking: the store holds its mutex around every call.
 */
#ifndef TS_STORE_QUEUE_H
#define TS_STORE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

enum store_event_kind { EV_CALL_BEGIN, EV_CALL_CONNECTED, EV_CALL_END, EV_TURN };

struct store_event {
  struct store_event *prev, *next; /* the queue, oldest first; a batch uses next */
  struct store_event *tnext;       /* the waiting turn events, oldest first */
  enum store_event_kind kind;
  struct store_call call;          /* CALL_*; CONNECTED fills id and connected_ms */
  struct store_turn turn;          /* TURN */
};

/*
 * Copies of what the writers gave, strings cleaned to valid UTF-8, in one
 * allocation freed with free(). A call without a node gets `node`.
 * NULL when out of memory.
 */
struct store_event *store_event_call(enum store_event_kind kind, const struct store_call *c,
                                     const char *node);
struct store_event *store_event_connected(const char *call_id, int64_t at_ms);
struct store_event *store_event_turn(const struct store_turn *t);

struct store_queue {
  struct store_event *head, *tail;   /* waiting */
  struct store_event *thead, *ttail; /* waiting turns */
  size_t waiting, writing;           /* writing: taken and not yet done */
  size_t bound;
  uint64_t dropped;
};

void store_queue_init(struct store_queue *q, size_t bound);
/* Adds `ev` at the back, then drops the oldest waiting turns while over the bound. */
void store_queue_push(struct store_queue *q, struct store_event *ev);
/* Takes up to `max` events from the front as a list linked by next; returns how many. */
size_t store_queue_take(struct store_queue *q, size_t max, struct store_event **batch);
/* Puts a taken list (in its order) back at the front, then applies the bound. */
void store_queue_unget(struct store_queue *q, struct store_event *batch, size_t n);
/* `n` taken events are finished with (written, or refused and freed). */
void store_queue_done(struct store_queue *q, size_t n);
/* Frees every waiting event; returns how many there were. */
size_t store_queue_clear(struct store_queue *q);

#endif
