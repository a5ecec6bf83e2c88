/* dtls: in-process handshakes between our client and server roles. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <uv.h>

#include "rtc/dtls.h"
#include "dtls_queue.h"

struct pair {
  struct dtls_cert *cc, *sc;
  struct dtls_ctx *cctx, *sctx;
  struct dtls_session *client, *server;
  struct dtls_queue to_server, to_client;
};

static void make_pair(struct pair *p, const char *client_profiles, int wrong_fp) {
  memset(p, 0, sizeof *p);
  assert_int_equal(dtls_cert_new(&p->cc), 0);
  assert_int_equal(dtls_cert_new(&p->sc), 0);
  assert_int_equal(strlen(dtls_cert_fingerprint(p->sc)), 95);
  assert_int_equal(dtls_ctx_new_profiles(&p->cctx, p->cc, DTLS_ROLE_CLIENT, client_profiles), 0);
  assert_int_equal(dtls_ctx_new(&p->sctx, p->sc, DTLS_ROLE_SERVER), 0);
  p->client = dtls_session_new(p->cctx, "sha-256", dtls_cert_fingerprint(p->sc), dtls_queue_push, &p->to_server);
  p->server = dtls_session_new(p->sctx, "sha-256",
                               wrong_fp ? dtls_cert_fingerprint(p->sc) : dtls_cert_fingerprint(p->cc),
                               dtls_queue_push, &p->to_client);
  assert_non_null(p->client);
  assert_non_null(p->server);
}

static void free_pair(struct pair *p) {
  dtls_queue_drop(&p->to_server);
  dtls_queue_drop(&p->to_client);
  dtls_session_free(p->client);
  dtls_session_free(p->server);
  dtls_ctx_free(p->cctx);
  dtls_ctx_free(p->sctx);
  dtls_cert_free(p->cc);
  dtls_cert_free(p->sc);
}

static void run_handshake(struct pair *p) {
  dtls_session_start(p->client);
  for (int round = 0; round < 20; round++) {
    dtls_queue_deliver(&p->to_server, p->server);
    dtls_queue_deliver(&p->to_client, p->client);
    if (dtls_session_state(p->client) != DTLS_HANDSHAKING && dtls_session_state(p->server) != DTLS_HANDSHAKING) break;
  }
}

static void check_keys(struct pair *p, int want_profile, size_t want_len) {
  uint8_t km1[DTLS_MAX_KEYING], km2[DTLS_MAX_KEYING];
  size_t l1 = sizeof km1, l2 = sizeof km2;
  int p1, p2;
  assert_int_equal(dtls_session_srtp_keys(p->client, &p1, km1, &l1), 0);
  assert_int_equal(dtls_session_srtp_keys(p->server, &p2, km2, &l2), 0);
  assert_int_equal(p1, want_profile);
  assert_int_equal(p2, want_profile);
  assert_int_equal(l1, want_len);
  assert_int_equal(l2, want_len);
  assert_memory_equal(km1, km2, l1);
}

static void handshake_gcm(void **state) {
  struct pair p;
  make_pair(&p, NULL, 0);
  run_handshake(&p);
  assert_int_equal(dtls_session_state(p.client), DTLS_CONNECTED);
  assert_int_equal(dtls_session_state(p.server), DTLS_CONNECTED);
  check_keys(&p, DTLS_SRTP_AEAD_AES_128_GCM, 56);
  assert_true(p.to_server.max_seen <= DTLS_MTU && p.to_client.max_seen <= DTLS_MTU);
  free_pair(&p);
}

static void handshake_cm80(void **state) {
  struct pair p;
  make_pair(&p, "SRTP_AES128_CM_SHA1_80", 0);
  run_handshake(&p);
  assert_int_equal(dtls_session_state(p.server), DTLS_CONNECTED);
  check_keys(&p, DTLS_SRTP_AES128_CM_SHA1_80, 60);
  free_pair(&p);
}

static void fingerprint_mismatch_fails(void **state) {
  struct pair p;
  make_pair(&p, NULL, 1);
  run_handshake(&p);
  assert_int_equal(dtls_session_state(p.server), DTLS_FAILED);
  assert_string_equal(dtls_session_error(p.server), "fingerprint mismatch");
  assert_int_not_equal(dtls_session_state(p.client), DTLS_CONNECTED == DTLS_FAILED);
  free_pair(&p);
}

static void lost_flight_is_retransmitted(void **state) {
  struct pair p;
  make_pair(&p, NULL, 0);
  p.to_client.drop_next = 100; /* the server's whole first flight is lost */
  dtls_session_start(p.client);
  dtls_queue_deliver(&p.to_server, p.server);
  dtls_queue_deliver(&p.to_client, p.client);
  p.to_client.drop_next = 0;
  assert_int_equal(dtls_session_state(p.client), DTLS_HANDSHAKING);
  long ms = dtls_session_timeout_ms(p.server);
  assert_true(ms >= 0 && ms <= 1000);
  long wait = ms + 5;
  struct timespec ts = {.tv_sec = wait / 1000, .tv_nsec = (wait % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  dtls_session_on_timer(p.server);
  assert_true(p.to_client.n > 0); /* the flight went again */
  for (int round = 0; round < 10; round++) {
    dtls_queue_deliver(&p.to_client, p.client);
    dtls_queue_deliver(&p.to_server, p.server);
  }
  /* The client may need its own retransmission if its reply was dropped; here nothing was. */
  assert_int_equal(dtls_session_state(p.client), DTLS_CONNECTED);
  assert_int_equal(dtls_session_state(p.server), DTLS_CONNECTED);
  free_pair(&p);
}

static void wait_ms(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/*
 * The server's last flight is lost: it is CONNECTED, the client is not, and
 * the client's retransmitted flight must still be answered, so the server
 * keeps its OpenSSL object until released. Released, it ignores DTLS.
 */
static void final_flight_answered_until_released(void **state) {
  struct pair p;
  make_pair(&p, NULL, 0);
  dtls_session_release(p.server); /* mid-handshake: a no-op */
  dtls_session_start(p.client);
  dtls_queue_deliver(&p.to_server, p.server); /* ClientHello */
  dtls_session_release(p.server);
  dtls_queue_deliver(&p.to_client, p.client); /* ServerHello ... ServerHelloDone */
  p.to_client.drop_next = 100;                /* the server's ChangeCipherSpec and Finished */
  dtls_queue_deliver(&p.to_server, p.server);
  p.to_client.drop_next = 0;
  assert_int_equal(dtls_session_state(p.server), DTLS_CONNECTED);
  assert_int_equal(dtls_session_state(p.client), DTLS_HANDSHAKING);

  long ms = dtls_session_timeout_ms(p.client);
  assert_true(ms >= 0);
  wait_ms(ms + 5);
  dtls_session_on_timer(p.client);
  assert_true(p.to_server.n > 0);
  struct dtls_queue again = {0}; /* the client's flight, kept to be sent once more */
  for (int i = 0; i < p.to_server.n; i++) dtls_queue_push(&again, p.to_server.pkt[i], p.to_server.len[i]);
  dtls_queue_deliver(&p.to_server, p.server);
  assert_true(p.to_client.n > 0); /* answered: the last flight went again */
  dtls_queue_deliver(&p.to_client, p.client);
  assert_int_equal(dtls_session_state(p.client), DTLS_CONNECTED);
  check_keys(&p, DTLS_SRTP_AEAD_AES_128_GCM, 56);

  dtls_session_release(p.server);
  uint8_t km[DTLS_MAX_KEYING];
  size_t kl = sizeof km;
  int profile;
  assert_int_equal(dtls_session_srtp_keys(p.server, &profile, km, &kl), -ENOENT);
  dtls_queue_deliver(&again, p.server);
  assert_int_equal(p.to_client.n, 0); /* released: nothing answers */
  assert_int_equal(dtls_session_state(p.server), DTLS_CONNECTED);
  assert_int_equal(dtls_session_timeout_ms(p.server), -1);
  dtls_session_release(p.server); /* twice: a no-op */
  free_pair(&p);
}

static void garbage_does_not_crash(void **state) {
  struct pair p;
  make_pair(&p, NULL, 0);
  unsigned seed = 11;
  uint8_t junk[1500];
  for (int i = 0; i < 2000; i++) {
    size_t n = 1 + (size_t)rand_r(&seed) % sizeof junk;
    for (size_t k = 0; k < n; k++) junk[k] = (uint8_t)rand_r(&seed);
    junk[0] = (uint8_t)(20 + rand_r(&seed) % 44);
    if (i % 3 == 0) { junk[1] = 0xfe; junk[2] = 0xfd; } /* DTLS 1.2 record version */
    dtls_session_handle(p.server, junk, n);
    if (dtls_session_state(p.server) != DTLS_HANDSHAKING) break;
  }
  /* Garbage may fail the server session but never crash it; a fresh pair still works. */
  free_pair(&p);
  make_pair(&p, NULL, 0);
  dtls_session_start(p.client);
  dtls_queue_deliver(&p.to_server, p.server);
  /* free mid-handshake: no leak */
  free_pair(&p);
}

/* A server session is made on the control thread and used on its worker: the
 * making thread must create no OpenSSL object from the worker's context. */
struct maker {
  struct pair *p;
  struct dtls_session *made;
};

static void make_server_session(void *arg) {
  struct maker *m = arg;
  m->made = dtls_session_new(m->p->sctx, "sha-256", dtls_cert_fingerprint(m->p->cc), dtls_queue_push,
                             &m->p->to_client);
}

static void session_made_on_another_thread_handshakes_on_its_owner(void **state) {
  struct pair p;
  make_pair(&p, NULL, 0);
  dtls_session_free(p.server);
  struct maker m = {&p, NULL};
  uv_thread_t t;
  assert_int_equal(uv_thread_create(&t, make_server_session, &m), 0);
  assert_int_equal(uv_thread_join(&t), 0);
  p.server = m.made;
  assert_non_null(p.server);
  assert_int_equal(dtls_session_timeout_ms(p.server), -1); /* nothing pending before first use */
  run_handshake(&p);
  assert_int_equal(dtls_session_state(p.server), DTLS_CONNECTED);
  check_keys(&p, DTLS_SRTP_AEAD_AES_128_GCM, 56);
  /* A session freed before any use (a call refused at once) owns nothing to free. */
  dtls_session_free(dtls_session_new(p.sctx, "sha-256", "AA", dtls_queue_push, &p.to_client));
  free_pair(&p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(handshake_gcm),
      cmocka_unit_test(handshake_cm80),
      cmocka_unit_test(fingerprint_mismatch_fails),
      cmocka_unit_test(lost_flight_is_retransmitted),
      cmocka_unit_test(final_flight_answered_until_released),
      cmocka_unit_test(garbage_does_not_crash),
      cmocka_unit_test(session_made_on_another_thread_handshakes_on_its_owner),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
