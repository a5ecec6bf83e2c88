/*
 * fingerprints: an offer's a=fingerprint, whatever hash it names, reaches the
 * DTLS check whole, and the handshake passes exactly when it is right.
 * The offer takes the path of a real call: sdp_parse, then the copy into the
 * media call's parameters that signaling makes, then the server's session.
 */
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "media/worker.h"
#include "rtc/dtls.h"
#include "rtc/sdp.h"
#include "dtls_queue.h"

static char *offer_with(const char *ufrag, const char *pwd, const char *fp_line) {
  char *text = malloc(4096);
  snprintf(text, 4096,
           "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
           "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
           "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n%s\r\na=setup:actpass\r\na=mid:0\r\n"
           "a=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n",
           ufrag, pwd, fp_line);
  return text;
}

/* What signaling copies out of an offer for the media worker (app/calls.c). */
static void call_params(const struct sdp_session *s, struct media_call_params *p) {
  memset(p, 0, sizeof *p);
  snprintf(p->remote_ufrag, sizeof p->remote_ufrag, "%s", sdp_ice_ufrag(s));
  snprintf(p->remote_pwd, sizeof p->remote_pwd, "%s", sdp_ice_pwd(s));
  snprintf(p->remote_fp_alg, sizeof p->remote_fp_alg, "%s", sdp_fingerprint_alg(s));
  snprintf(p->remote_fp, sizeof p->remote_fp, "%s", sdp_fingerprint(s));
}

/* The browser (DTLS client, cert cc) calls the server (cert sc), which checks the offer's fingerprint. */
static enum dtls_state handshake_case(const char *alg, const char *offer_fp, int lower) {
  struct dtls_cert *cc, *sc;
  struct dtls_ctx *cctx, *sctx;
  assert_int_equal(dtls_cert_new(&cc), 0);
  assert_int_equal(dtls_cert_new(&sc), 0);
  assert_int_equal(dtls_ctx_new(&cctx, cc, DTLS_ROLE_CLIENT), 0);
  assert_int_equal(dtls_ctx_new(&sctx, sc, DTLS_ROLE_SERVER), 0);
  char fp[256], line[300], err[256];
  if (offer_fp) snprintf(fp, sizeof fp, "%s", offer_fp);
  else assert_int_equal(dtls_cert_fingerprint_as(cc, alg, fp, sizeof fp), 0);
  for (char *c = fp; lower && *c; c++) *c = (char)tolower((unsigned char)*c);
  snprintf(line, sizeof line, "a=fingerprint:%s %s", alg, fp);
  char *text = offer_with("abcd", "0123456789012345678901", line);
  struct sdp_session *s = NULL;
  if (sdp_parse(text, strlen(text), &s, err, sizeof err)) fail_msg("%s: %s", alg, err);
  struct media_call_params p;
  call_params(s, &p);
  assert_string_equal(p.remote_fp, fp); /* nothing cut on the way */

  struct dtls_queue to_server = {0}, to_client = {0};
  struct dtls_session *client = dtls_session_new(cctx, "sha-256", dtls_cert_fingerprint(sc), dtls_queue_push, &to_server);
  struct dtls_session *server = dtls_session_new(sctx, p.remote_fp_alg, p.remote_fp, dtls_queue_push, &to_client);
  dtls_session_start(client);
  for (int round = 0; round < 20 && dtls_session_state(server) == DTLS_HANDSHAKING; round++) {
    dtls_queue_deliver(&to_server, server);
    dtls_queue_deliver(&to_client, client);
  }
  enum dtls_state st = dtls_session_state(server);
  if (st == DTLS_FAILED) assert_string_equal(dtls_session_error(server), "fingerprint mismatch");
  dtls_queue_drop(&to_server);
  dtls_queue_drop(&to_client);
  dtls_session_free(client);
  dtls_session_free(server);
  dtls_ctx_free(cctx);
  dtls_ctx_free(sctx);
  dtls_cert_free(cc);
  dtls_cert_free(sc);
  sdp_session_free(s);
  free(text);
  return st;
}

static enum dtls_state handshake(const char *alg, const char *offer_fp) { return handshake_case(alg, offer_fp, 0); }
static enum dtls_state handshake_lower(const char *alg) { return handshake_case(alg, NULL, 1); }

static const char *const algs[] = {"sha-1", "sha-224", "sha-256", "sha-384", "sha-512"};
static const size_t lens[] = {59, 83, 95, 143, 191};

static void every_hash_is_checked_whole(void **state) {
  for (size_t i = 0; i < sizeof algs / sizeof *algs; i++)
    if (handshake(algs[i], NULL) != DTLS_CONNECTED) fail_msg("%s: the right fingerprint failed", algs[i]);
}

static void a_wrong_last_byte_fails_for_every_hash(void **state) {
  for (size_t i = 0; i < sizeof algs / sizeof *algs; i++) {
    /* a fingerprint of the right shape but not of this certificate: the last byte is where a cut one differs */
    char fp[200];
    memset(fp, 0, sizeof fp);
    for (size_t k = 0; k < lens[i]; k++) fp[k] = k % 3 == 2 ? ':' : 'A';
    if (handshake(algs[i], fp) != DTLS_FAILED) fail_msg("%s: a wrong fingerprint passed", algs[i]);
  }
}

/* RFC 8122 writes upper case; a lower-case fingerprint names the same certificate. */
static void lower_case_hex_matches_too(void **state) {
  struct dtls_cert *c;
  assert_int_equal(dtls_cert_new(&c), 0);
  char fp[200];
  assert_int_equal(dtls_cert_fingerprint_as(c, "sha-512", fp, sizeof fp), 0);
  assert_int_equal(strlen(fp), 191);
  assert_int_equal(dtls_cert_fingerprint_as(c, "md5", fp, sizeof fp), -EINVAL);
  assert_int_equal(dtls_cert_fingerprint_as(c, "sha-512", fp, 100), -ENOSPC);
  dtls_cert_free(c);
  assert_int_equal(handshake_lower("sha-384"), DTLS_CONNECTED);
}

static void ice_credentials_of_256_characters_arrive_whole(void **state) {
  char ufrag[SDP_ICE_MAX + 2], pwd[SDP_ICE_MAX + 2], err[256];
  memset(ufrag, 'u', SDP_ICE_MAX);
  ufrag[SDP_ICE_MAX] = '\0';
  memset(pwd, 'p', SDP_ICE_MAX);
  pwd[SDP_ICE_MAX] = '\0';
  const char *fp = "a=fingerprint:sha-256 11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:"
                   "11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00";
  char *text = offer_with(ufrag, pwd, fp);
  struct sdp_session *s = NULL;
  if (sdp_parse(text, strlen(text), &s, err, sizeof err)) fail_msg("%s", err);
  struct media_call_params p;
  call_params(s, &p);
  assert_string_equal(p.remote_ufrag, ufrag);
  assert_string_equal(p.remote_pwd, pwd);
  sdp_session_free(s);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_hash_is_checked_whole),
      cmocka_unit_test(a_wrong_last_byte_fails_for_every_hash),
      cmocka_unit_test(lower_case_hex_matches_too),
      cmocka_unit_test(ice_credentials_of_256_characters_arrive_whole),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
