/*
 * The inference pool: a fixed set of threads taking plain function calls
 * from one FIFO.
 *
 * Engine work items are coarse (a few milliseconds of recognition, one
 * sentence of synthesis), so a single mutex and condition variable around
 * a linked list costs nothing next to the work itself. Submitting never
 * blocks beyond that mutex, which is why event loops may submit freely.
 *
 * Shutdown takes the queue away under the lock, so an item is either run
 * or dropped, never both: the threads finish what they are running and
 * exit, the queued items get their drop function. Stopping and freeing
 * are separate steps so that threads which still hold the pointer (media
 * workers with calls in progress) can keep calling pool_submit, harmlessly,
 * until they are gone too. An item that submits more work while the pool is going away
 * is told so (-ESHUTDOWN) and keeps ownership of its argument.
 */
#include "core/pool.h"

#include <errno.h>
#include <stdlib.h>
#include <uv.h>

struct pool_item {
  struct pool_item *next;
  pool_fn fn, drop;
  void *arg;
};

struct pool {
  uv_mutex_t lock;
  uv_cond_t wake;
  struct pool_item *head, *tail;
  int queued, running;
  int stopping, joined;
  int nthreads;
  uv_thread_t *threads;
};

/* Called with the lock held; NULL once the pool is stopping. */
static struct pool_item *next_item(struct pool *p) {
  while (!p->head && !p->stopping) uv_cond_wait(&p->wake, &p->lock);
  if (p->stopping) return NULL;
  struct pool_item *it = p->head;
  p->head = it->next;
  if (!p->head) p->tail = NULL;
  p->queued--;
  p->running++;
  return it;
}

static void worker(void *arg) {
  struct pool *p = arg;
  uv_mutex_lock(&p->lock);
  for (struct pool_item *it; (it = next_item(p));) {
    uv_mutex_unlock(&p->lock);
    it->fn(it->arg);
    free(it);
    uv_mutex_lock(&p->lock);
    p->running--;
  }
  uv_mutex_unlock(&p->lock);
}

static void stop_threads(struct pool *p, int started) {
  uv_mutex_lock(&p->lock);
  p->stopping = 1;
  uv_cond_broadcast(&p->wake);
  uv_mutex_unlock(&p->lock);
  for (int i = 0; i < started; i++) uv_thread_join(&p->threads[i]);
}

static void destroy(struct pool *p) {
  uv_cond_destroy(&p->wake);
  uv_mutex_destroy(&p->lock);
  free(p->threads);
  free(p);
}

int pool_new(struct pool **out, int threads) {
  if (threads < 1) threads = 1;
  struct pool *p = calloc(1, sizeof *p);
  if (!p) return -ENOMEM;
  p->threads = calloc((size_t)threads, sizeof *p->threads);
  if (!p->threads || uv_mutex_init(&p->lock)) {
    free(p->threads);
    free(p);
    return -ENOMEM;
  }
  if (uv_cond_init(&p->wake)) {
    uv_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
    return -ENOMEM;
  }
  for (int i = 0; i < threads; i++) {
    int rc = uv_thread_create(&p->threads[i], worker, p);
    if (rc) {
      stop_threads(p, i);
      destroy(p);
      return rc;
    }
  }
  p->nthreads = threads;
  *out = p;
  return 0;
}

int pool_submit(struct pool *p, pool_fn fn, pool_fn drop, void *arg) {
  struct pool_item *it = malloc(sizeof *it);
  if (!it) return -ENOMEM;
  it->next = NULL;
  it->fn = fn;
  it->drop = drop;
  it->arg = arg;
  uv_mutex_lock(&p->lock);
  if (p->stopping) {
    uv_mutex_unlock(&p->lock);
    free(it);
    return -ESHUTDOWN;
  }
  if (p->tail) p->tail->next = it;
  else p->head = it;
  p->tail = it;
  p->queued++;
  uv_cond_signal(&p->wake);
  uv_mutex_unlock(&p->lock);
  return 0;
}

int pool_pending(struct pool *p) {
  uv_mutex_lock(&p->lock);
  int n = p->queued + p->running;
  uv_mutex_unlock(&p->lock);
  return n;
}

void pool_stop(struct pool *p) {
  if (!p) return;
  uv_mutex_lock(&p->lock);
  int joined = p->joined;
  p->stopping = 1;
  struct pool_item *list = p->head;
  p->head = p->tail = NULL;
  p->queued = 0;
  p->joined = 1;
  uv_cond_broadcast(&p->wake);
  uv_mutex_unlock(&p->lock);
  /* Drops run before the join so a drop may not wait on a running item;
   * running items that submit now get -ESHUTDOWN and clean up themselves. */
  while (list) {
    struct pool_item *next = list->next;
    if (list->drop) list->drop(list->arg);
    free(list);
    list = next;
  }
  if (!joined)
    for (int i = 0; i < p->nthreads; i++) uv_thread_join(&p->threads[i]);
}

void pool_free(struct pool *p) {
  if (!p) return;
  pool_stop(p);
  destroy(p);
}
