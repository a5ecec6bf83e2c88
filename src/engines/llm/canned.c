/*
 * Canned replies, streamed.
 *
 * Every token and the final `done` are separate closures posted to the
 * home mailbox at once; the job's cancelled flag, checked on arrival, is
 * what keeps a released job silent. A token ends after a space, or after
 * two characters in a run without spaces (Chinese), and never inside a
 * UTF-8 sequence.
 *
 * A backend that computes its answer on the inference pool makes its own
 * job and streams the answer into it with canned_post, from that thread.
 */
#include "engines/llm/canned.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CJK_TOKEN_CHARS 2

static void destroy(struct eng_job *j) { free(j); }

static void on_token(struct eng_job *j, void *arg) {
  struct llm_job *l = (struct llm_job *)j;
  l->cb.token(l->cb.user, arg);
}

static void on_done(struct eng_job *j, void *arg) {
  struct llm_job *l = (struct llm_job *)j;
  l->cb.done(l->cb.user, 0);
}

static void on_done_hangup(struct eng_job *j, void *arg) {
  struct llm_job *l = (struct llm_job *)j;
  l->cb.done(l->cb.user, 1);
}

/* Length of the token starting at s. */
static size_t token_len(const char *s) {
  size_t i = 0;
  int chars = 0;
  while (s[i]) {
    unsigned char b = (unsigned char)s[i];
    if (b == ' ') return i + 1;
    size_t n = 1;
    if (b >= 0x80) {
      while ((s[i + n] & 0xC0) == 0x80) n++;
      if (++chars == CJK_TOKEN_CHARS) return i + n;
    } else if (chars) {
      return i; /* ASCII after a run of wide characters starts a new token */
    }
    i += n;
  }
  return i;
}

int canned_post(struct llm_job *j, const char *text, int hangup) {
  int rc = 0;
  for (const char *p = text; *p && rc == 0;) {
    size_t n = token_len(p);
    char *tok = strndup(p, n);
    rc = tok ? eng_job_post(&j->job, on_token, tok) : -ENOMEM;
    p += n;
  }
  if (rc == 0) rc = eng_job_post(&j->job, hangup ? on_done_hangup : on_done, NULL);
  return rc;
}

int canned_reply(const struct llm_backend *be, const char *text, int hangup,
                 struct mailbox *home, const struct llm_cb *cb, struct llm_job **out) {
  struct llm_job *j = calloc(1, sizeof *j);
  if (!j) return -ENOMEM;
  eng_job_init(&j->job, home, destroy);
  j->be = be;
  j->cb = *cb;
  int rc = canned_post(j, text, hangup);
  if (rc) {
    eng_job_release(&j->job); /* what was posted arrives cancelled */
    return rc;
  }
  *out = j;
  return 0;
}
