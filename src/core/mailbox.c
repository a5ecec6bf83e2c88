/*
 * Mailbox between threads.
 *
 * Control messages (a call added, a call ended, an event for a page) cross
 * threads a few times per call, not per packet, so a mutex-protected list
 * is the simple and right tool: the mutex is held for two pointer writes.
 * The consumer takes the whole list at once and runs it without the lock,
 * so a slow handler never blocks producers. uv_async_send coalesces
 * wake-ups, which is why the consumer drains everything each time.
 */
#include "core/mailbox.h"

#include <errno.h>
#include <stdlib.h>

struct mailbox {
  uv_async_t async;
  uv_mutex_t lock;
  struct mailbox_msg *head, *tail;
  mailbox_cb cb;
  void *user;
  void (*drop)(struct mailbox_msg *msg);
};

static struct mailbox_msg *take_all(struct mailbox *mb) {
  uv_mutex_lock(&mb->lock);
  struct mailbox_msg *list = mb->head;
  mb->head = mb->tail = NULL;
  uv_mutex_unlock(&mb->lock);
  return list;
}

static void on_async(uv_async_t *a) {
  struct mailbox *mb = a->data;
  for (struct mailbox_msg *m = take_all(mb); m;) {
    struct mailbox_msg *next = m->next;
    m->next = NULL;
    if (m->type == MAILBOX_RUN) ((struct mailbox_run *)m)->fn((struct mailbox_run *)m, 1);
    else mb->cb(mb, m, mb->user);
    m = next;
  }
}

int mailbox_new(struct mailbox **out, uv_loop_t *loop, mailbox_cb cb, void *user) {
  struct mailbox *mb = calloc(1, sizeof *mb);
  if (!mb) return -ENOMEM;
  if (uv_mutex_init(&mb->lock)) {
    free(mb);
    return -ENOMEM;
  }
  int rc = uv_async_init(loop, &mb->async, on_async);
  if (rc) {
    uv_mutex_destroy(&mb->lock);
    free(mb);
    return rc;
  }
  mb->async.data = mb;
  mb->cb = cb;
  mb->user = user;
  *out = mb;
  return 0;
}

void mailbox_post(struct mailbox *mb, struct mailbox_msg *msg) {
  msg->next = NULL;
  uv_mutex_lock(&mb->lock);
  if (mb->tail) mb->tail->next = msg;
  else mb->head = msg;
  mb->tail = msg;
  uv_mutex_unlock(&mb->lock);
  uv_async_send(&mb->async);
}

static void on_closed(uv_handle_t *h) {
  struct mailbox *mb = h->data;
  for (struct mailbox_msg *m = take_all(mb); m;) {
    struct mailbox_msg *next = m->next;
    if (m->type == MAILBOX_RUN) ((struct mailbox_run *)m)->fn((struct mailbox_run *)m, 0);
    else if (mb->drop) mb->drop(m);
    m = next;
  }
  uv_mutex_destroy(&mb->lock);
  free(mb);
}

void mailbox_close(struct mailbox *mb, void (*drop)(struct mailbox_msg *msg)) {
  mb->drop = drop;
  uv_close((uv_handle_t *)&mb->async, on_closed);
}
