/*
 * Engine jobs: reference counts and delivery to the home loop.
 *
 * A posted closure takes a reference so that the job outlives the trip
 * across threads; the cancelled flag is checked on arrival, on the home
 * thread, which is the only thread that sets it, so a released job never
 * calls back.
 */
#include "engines/job.h"

#include <errno.h>
#include <stdlib.h>

struct job_closure {
  struct mailbox_run run;
  struct eng_job *job;
  eng_job_fn fn;
  void *arg;
};

void eng_job_init(struct eng_job *j, struct mailbox *home, void (*destroy)(struct eng_job *j)) {
  atomic_init(&j->refs, 1);
  atomic_init(&j->cancelled, 0);
  j->home = home;
  j->destroy = destroy;
  j->on_cancel = NULL;
  atomic_init(&j->timed_out, 0);
}

void eng_job_ref(struct eng_job *j) { atomic_fetch_add(&j->refs, 1); }

void eng_job_unref(struct eng_job *j) {
  if (j && atomic_fetch_sub(&j->refs, 1) == 1) j->destroy(j);
}

void eng_job_release(struct eng_job *j) {
  if (!j) return;
  atomic_store(&j->cancelled, 1);
  if (j->on_cancel) j->on_cancel(j);
  eng_job_unref(j);
}

int eng_job_cancelled(struct eng_job *j) { return atomic_load(&j->cancelled); }

static void deliver(struct mailbox_run *r, int run) {
  struct job_closure *c = (struct job_closure *)r;
  if (run && !eng_job_cancelled(c->job)) c->fn(c->job, c->arg);
  free(c->arg);
  eng_job_unref(c->job);
  free(c);
}

int eng_job_post(struct eng_job *j, eng_job_fn fn, void *arg) {
  struct job_closure *c = calloc(1, sizeof *c);
  if (!c) {
    free(arg);
    return -ENOMEM;
  }
  c->run.hdr.type = MAILBOX_RUN;
  c->run.fn = deliver;
  c->job = j;
  c->fn = fn;
  c->arg = arg;
  eng_job_ref(j);
  mailbox_post(j->home, &c->run.hdr);
  return 0;
}
