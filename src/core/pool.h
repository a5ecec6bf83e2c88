/*
 * pool: the inference pool, a few threads for CPU-heavy engine work
 * (speech recognition, speech synthesis) so that no event loop ever blocks.
 *
 * Work items are plain function calls. A backend that needs its items run
 * one at a time and in order (a recogniser fed frame after frame) keeps
 * its own queue and submits one "drain" item at a time.
 */
#ifndef TS_CORE_POOL_H
#define TS_CORE_POOL_H

struct pool;

typedef void (*pool_fn)(void *arg);

/* Starts `threads` threads (at least 1). */
int pool_new(struct pool **out, int threads);

/*
 * Any thread. Runs fn(arg) on a pool thread. When the pool is freed before
 * the item ran, drop(arg) is called instead (drop may be NULL). Returns
 * -ESHUTDOWN after pool_free has begun; the item is then not taken.
 */
int pool_submit(struct pool *p, pool_fn fn, pool_fn drop, void *arg);

/* Items queued or running, for metrics and tests. */
int pool_pending(struct pool *p);

/*
 * Stops taking work (pool_submit then returns -ESHUTDOWN), drops what is
 * queued and waits for running items. The pool stays allocated, so other
 * threads may still call pool_submit safely until pool_free.
 */
void pool_stop(struct pool *p);

/* Stops the pool if that was not done yet, and frees it. */
void pool_free(struct pool *p);

#endif
