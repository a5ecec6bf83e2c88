/*
 * mailbox: messages from any thread to one libuv loop.
 *
 * A producer posts a message; the loop's uv_async_t wakes and the consumer
 * callback gets every pending message in order, on the loop's thread.
 * Messages are caller-allocated structs that start with struct mailbox_msg.
 */
#ifndef TS_CORE_MAILBOX_H
#define TS_CORE_MAILBOX_H

#include <uv.h>

struct mailbox_msg {
  struct mailbox_msg *next;
  int type;
};

struct mailbox;
typedef void (*mailbox_cb)(struct mailbox *mb, struct mailbox_msg *msg, void *user);

/*
 * A closure: a message whose type is MAILBOX_RUN is not given to the
 * consumer callback; the mailbox calls its `fn` on the loop's thread with
 * run = 1, or with run = 0 when the mailbox closes before it ran (then fn
 * only frees). Either way fn owns the message. This is how engines deliver
 * results to the loop a call lives on.
 */
#define MAILBOX_RUN (-1)
struct mailbox_run {
  struct mailbox_msg hdr; /* hdr.type = MAILBOX_RUN */
  void (*fn)(struct mailbox_run *self, int run);
};

/* Creates a mailbox whose consumer runs on `loop`. */
int mailbox_new(struct mailbox **out, uv_loop_t *loop, mailbox_cb cb, void *user);

/* From any thread. Ownership of `msg` passes to the consumer. Never fails. */
void mailbox_post(struct mailbox *mb, struct mailbox_msg *msg);

/*
 * On the loop's thread: closes the async handle. Messages still queued are
 * handed to `drop` (which frees them) once the handle has closed, and then
 * the mailbox frees itself. No post may happen after this.
 */
void mailbox_close(struct mailbox *mb, void (*drop)(struct mailbox_msg *msg));

#endif
