/*
 * job: the life of one engine request (a recognition, a generation, a
 * synthesis), shared by every backend.
 *
 * A job is made and used on its home loop (the loop of the call that asked
 * for it), while its work runs elsewhere: on an inference-pool thread, or
 * on the control loop for HTTP services. Results travel home as closures
 * posted to the home mailbox. Two rules make that safe:
 *
 *  - reference counting: the requester holds one reference, and every
 *    closure and every piece of outstanding work holds one more, so the job
 *    is freed by whoever lets go last, on whatever thread;
 *  - cancellation: once the requester has released the job (which cancels
 *    it), no callback reaches the requester again, even if a result was
 *    already on its way. Backends poll eng_job_cancelled() to stop early.
 *
 * Backends embed struct eng_job as the first member of their own struct.
 */
#ifndef TS_ENGINES_JOB_H
#define TS_ENGINES_JOB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mailbox.h"

struct eng_job {
  atomic_int refs;
  atomic_int cancelled;
  struct mailbox *home;
  void (*destroy)(struct eng_job *j); /* frees the backend's struct */
  /* Optional: called on the home thread by eng_job_release, before the
   * requester's reference goes, so work in flight can be stopped at once
   * (an HTTP transfer aborted, a synthesis told to stop). */
  void (*on_cancel)(struct eng_job *j);
  /* Set by a service backend before it reports an error that was a timeout (for metrics). */
  atomic_int timed_out;
};

/*
 * How engines.c measures a request (in the backend's base struct, zeroed
 * by the backend's calloc): which backend's counters it goes to, and when
 * it started. Untouched for requests started without engines.c (tests).
 */
struct eng_stats;
struct eng_meter {
  struct eng_stats *stats;
  uint64_t started_ns;
  int ended; /* a result or an error was delivered */
};

/* One reference, held by the requester. */
void eng_job_init(struct eng_job *j, struct mailbox *home, void (*destroy)(struct eng_job *j));
void eng_job_ref(struct eng_job *j);
/* Any thread; destroys the job when the last reference goes. */
void eng_job_unref(struct eng_job *j);
/* Home thread: cancels and drops the requester's reference. */
void eng_job_release(struct eng_job *j);
int eng_job_cancelled(struct eng_job *j);

typedef void (*eng_job_fn)(struct eng_job *j, void *arg);

/*
 * Any thread: runs fn(j, arg) on the home loop unless the job is cancelled
 * by then. `arg` (may be NULL) is heap memory that is free()d after fn ran
 * or was skipped. Returns 0, or -ENOMEM (then arg has been freed).
 */
int eng_job_post(struct eng_job *j, eng_job_fn fn, void *arg);

#endif
