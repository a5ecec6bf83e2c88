/*
 * media call: a call driven in-process by a browser made of our own client
 * parts (DTLS client, SRTP), its packets handed straight to
 * media_call_on_packet and the call's replies straight back.
 *
 * - An RTCP BYE for the caller's stream ends the call as a hangup, whether
 *   its compound carries a sender report or only a receiver report, and
 *   whether or not any RTP came first.
 * - The offer's fingerprint may be sha-512: it reaches the DTLS check whole.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "media/call.h"
#include "rtc/dtls.h"
#include "rtc/rtcp.h"
#include "rtc/rtp.h"
#include "rtc/srtpctx.h"
#include "dtls_queue.h"

#define BROWSER_SSRC 0x5EED5EEDu

static void to_browser(void *user, const uint8_t *data, size_t len, const struct sockaddr *to) { dtls_queue_push(user, data, len); }
static void to_server(void *user, const uint8_t *data, size_t len) { dtls_queue_push(user, data, len); }
static void on_event(void *user, const char *call_id, char *json) { free(json); }

struct rig {
  struct dtls_cert *browser_cert, *server_cert;
  struct dtls_ctx *bctx, *sctx;
  struct dtls_session *browser;
  struct srtpctx *srtp;
  struct media_call *call;
  struct dtls_queue up, down; /* browser -> call, call -> browser */
  struct sockaddr_in from;
  uint64_t now;
};

static void pump(struct rig *r) {
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < r->up.n; i++)
      media_call_on_packet(r->call, r->up.pkt[i], r->up.len[i], (struct sockaddr *)&r->from, r->now);
    dtls_queue_drop(&r->up);
    for (int i = 0; i < r->down.n; i++)
      if (rtp_demux(r->down.pkt[i], r->down.len[i]) == RTP_DEMUX_DTLS)
        dtls_session_handle(r->browser, r->down.pkt[i], r->down.len[i]);
    dtls_queue_drop(&r->down);
    if (!r->up.n) break;
  }
}

/* A call whose offer named the browser's certificate by `alg`; connected, with the browser's SRTP. */
static void rig_up(struct rig *r, const char *alg) {
  memset(r, 0, sizeof *r);
  r->now = 1000;
  r->from.sin_family = AF_INET;
  r->from.sin_port = htons(5000);
  r->from.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(dtls_cert_new(&r->browser_cert), 0);
  assert_int_equal(dtls_cert_new(&r->server_cert), 0);
  assert_int_equal(dtls_ctx_new(&r->bctx, r->browser_cert, DTLS_ROLE_CLIENT), 0);
  assert_int_equal(dtls_ctx_new(&r->sctx, r->server_cert, DTLS_ROLE_SERVER), 0);
  struct media_call_params p = {.call_id = "bye-test", .remote_ufrag = "abcd",
                                .remote_pwd = "0123456789012345678901", .opus_pt = 111, .ssrc = 42};
  snprintf(p.remote_fp_alg, sizeof p.remote_fp_alg, "%s", alg);
  assert_int_equal(dtls_cert_fingerprint_as(r->browser_cert, alg, p.remote_fp, sizeof p.remote_fp), 0);
  r->call = media_call_new(&p, r->sctx, NULL, r->now);
  assert_non_null(r->call);
  media_call_attach(r->call, to_browser, on_event, &r->down);
  r->browser = dtls_session_new(r->bctx, "sha-256", dtls_cert_fingerprint(r->server_cert), to_server, &r->up);
  dtls_session_start(r->browser);
  pump(r);
  assert_null(media_call_end_reason(r->call));
  assert_int_equal(dtls_session_state(r->browser), DTLS_CONNECTED);
  uint8_t km[DTLS_MAX_KEYING];
  size_t kl = sizeof km;
  int profile;
  assert_int_equal(dtls_session_srtp_keys(r->browser, &profile, km, &kl), 0);
  assert_int_equal(srtpctx_new(&r->srtp, profile, km, kl, 1), 0);
}

static void rig_down(struct rig *r) {
  dtls_queue_drop(&r->up);
  dtls_queue_drop(&r->down);
  media_call_free(r->call);
  srtpctx_free(r->srtp);
  dtls_session_free(r->browser);
  dtls_ctx_free(r->bctx);
  dtls_ctx_free(r->sctx);
  dtls_cert_free(r->browser_cert);
  dtls_cert_free(r->server_cert);
}

static void send_rtp(struct rig *r, uint16_t seq) {
  uint8_t pkt[256];
  size_t len = rtp_write_header(pkt, 0, 111, seq, (uint32_t)seq * 960, BROWSER_SSRC);
  memset(pkt + len, 0x55, 20);
  len += 20;
  assert_int_equal(srtpctx_protect_rtp(r->srtp, pkt, &len, sizeof pkt), 0);
  media_call_on_packet(r->call, pkt, len, (struct sockaddr *)&r->from, r->now += 20);
}

/* RR (or SR) + SDES, then a BYE naming `ssrc`, protected as SRTCP. */
static void send_bye(struct rig *r, int with_sr, uint32_t ssrc) {
  uint8_t pkt[512];
  struct rtcp_sender_info si = {.ntp = 1, .rtp_ts = 2, .packets = 3, .octets = 4};
  int n = rtcp_build(pkt, sizeof pkt - SRTPCTX_MAX_OVERHEAD - 8, BROWSER_SSRC, with_sr ? &si : NULL, NULL, "browser");
  assert_true(n > 0);
  size_t len = (size_t)n;
  const uint8_t bye[] = {0x81, RTCP_BYE, 0, 1, (uint8_t)(ssrc >> 24), (uint8_t)(ssrc >> 16), (uint8_t)(ssrc >> 8), (uint8_t)ssrc};
  memcpy(pkt + len, bye, sizeof bye);
  len += sizeof bye;
  assert_int_equal(srtpctx_protect_rtcp(r->srtp, pkt, &len, sizeof pkt), 0);
  media_call_on_packet(r->call, pkt, len, (struct sockaddr *)&r->from, r->now += 20);
}

static void bye_with_only_a_receiver_report_hangs_up(void **state) {
  struct rig r;
  rig_up(&r, "sha-256");
  for (uint16_t s = 1; s <= 5; s++) send_rtp(&r, s);
  assert_null(media_call_end_reason(r.call));
  send_bye(&r, 0, BROWSER_SSRC);
  assert_non_null(media_call_end_reason(r.call));
  assert_string_equal(media_call_end_reason(r.call), "hangup");
  rig_down(&r);
}

static void bye_before_any_rtp_hangs_up(void **state) {
  struct rig r;
  rig_up(&r, "sha-256");
  send_bye(&r, 0, BROWSER_SSRC);
  assert_non_null(media_call_end_reason(r.call));
  assert_string_equal(media_call_end_reason(r.call), "hangup");
  rig_down(&r);
}

static void bye_with_a_sender_report_hangs_up(void **state) {
  struct rig r;
  rig_up(&r, "sha-256");
  send_rtp(&r, 1);
  send_bye(&r, 1, BROWSER_SSRC);
  assert_non_null(media_call_end_reason(r.call));
  assert_string_equal(media_call_end_reason(r.call), "hangup");
  rig_down(&r);
}

static void bye_for_another_stream_does_not(void **state) {
  struct rig r;
  rig_up(&r, "sha-256");
  send_rtp(&r, 1);
  send_bye(&r, 0, 0x0BADBEEF); /* a stream the browser stopped: the call goes on */
  assert_null(media_call_end_reason(r.call));
  rig_down(&r);
}

static void a_sha512_offer_connects(void **state) {
  struct rig r;
  rig_up(&r, "sha-512"); /* asserts the call connected and did not end */
  rig_down(&r);
}

static int setup(void **state) { return srtpctx_global_init(); }
static int teardown(void **state) {
  srtpctx_global_shutdown();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(bye_with_only_a_receiver_report_hangs_up),
      cmocka_unit_test(bye_before_any_rtp_hangs_up),
      cmocka_unit_test(bye_with_a_sender_report_hangs_up),
      cmocka_unit_test(bye_for_another_stream_does_not),
      cmocka_unit_test(a_sha512_offer_connects),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
