/*
 * dtls_queue.h: datagrams in flight between two in-process DTLS sessions,
 * for tests that run handshakes without sockets. One queue per direction:
 * a session's send callback is dtls_queue_push with the queue as its user
 * pointer; dtls_queue_deliver hands everything queued to the other side.
 * drop_next loses that many datagrams (a lossy path); max_seen is the
 * largest datagram sent.
 */
#ifndef TS_TESTS_DTLS_QUEUE_H
#define TS_TESTS_DTLS_QUEUE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rtc/dtls.h"

#define DTLS_QUEUE_MAX 64

struct dtls_queue {
  uint8_t *pkt[DTLS_QUEUE_MAX];
  size_t len[DTLS_QUEUE_MAX];
  int n, drop_next, max_seen;
};

static inline void dtls_queue_push(void *user, const uint8_t *data, size_t len) {
  struct dtls_queue *q = user;
  if ((int)len > q->max_seen) q->max_seen = (int)len;
  if (q->drop_next > 0) {
    q->drop_next--;
    return;
  }
  assert_true(q->n < DTLS_QUEUE_MAX);
  q->pkt[q->n] = malloc(len);
  assert_non_null(q->pkt[q->n]);
  memcpy(q->pkt[q->n], data, len);
  q->len[q->n++] = len;
}

static inline void dtls_queue_deliver(struct dtls_queue *q, struct dtls_session *to) {
  int n = q->n;
  q->n = 0;
  for (int i = 0; i < n; i++) {
    dtls_session_handle(to, q->pkt[i], q->len[i]);
    free(q->pkt[i]);
  }
}

static inline void dtls_queue_drop(struct dtls_queue *q) {
  for (int i = 0; i < q->n; i++) free(q->pkt[i]);
  q->n = 0;
}

#endif
