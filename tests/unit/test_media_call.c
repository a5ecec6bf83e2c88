/*
 * media call: a call driven in-process by a browser made of our own client
 * parts (DTLS client, SRTP), its packets handed straight to
 * media_call_on_packet and the call's replies straight back.
 *
 * - An RTCP BYE for the caller's stream ends the call as a hangup, whether
 *   its compound carries a sender report or only a receiver report, and
 *   whether or not any RTP came first.
 * - The offer's fingerprint may be sha-512: it reaches the DTLS check whole.
 * - The call answers the browser's retransmitted last DTLS flight until the
 *   browser's first SRTP packet, and ignores DTLS after it (the OpenSSL
 *   object is freed).
 * - The encoder codes only the band the agent's speech has (its out_rate):
 *   wideband for speech made at 16 kHz, the full band when it cannot tell.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <math.h>
#include <opus/opus.h>

#include "agent/agents.h"
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
  int lose_round; /* pump loses what the call sends in this round (0: none) */
  struct sockaddr_in from;
  uint64_t now;
};

static void pump(struct rig *r) {
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < r->up.n; i++)
      media_call_on_packet(r->call, r->up.pkt[i], r->up.len[i], (struct sockaddr *)&r->from, r->now);
    dtls_queue_drop(&r->up);
    if (round + 1 == r->lose_round) dtls_queue_drop(&r->down);
    for (int i = 0; i < r->down.n; i++)
      if (rtp_demux(r->down.pkt[i], r->down.len[i]) == RTP_DEMUX_DTLS)
        dtls_session_handle(r->browser, r->down.pkt[i], r->down.len[i]);
    dtls_queue_drop(&r->down);
    if (!r->up.n) break;
  }
}

/* A call whose offer named the browser's certificate by `alg`, its handshake
 * run, losing what the call sends in pump round `lose_round` (0: nothing). */
static void rig_start_with(struct rig *r, const char *alg, int lose_round, const struct agent_ops *ops) {
  memset(r, 0, sizeof *r);
  r->lose_round = lose_round;
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
  struct media_agent_env env = {.ops = ops ? ops : agent_ops_find("echo")};
  r->call = media_call_new(&p, r->sctx, &env, r->now);
  assert_non_null(r->call);
  media_call_attach(r->call, to_browser, on_event, &r->down);
  r->browser = dtls_session_new(r->bctx, "sha-256", dtls_cert_fingerprint(r->server_cert), to_server, &r->up);
  dtls_session_start(r->browser);
  pump(r);
}

static void rig_start(struct rig *r, const char *alg, int lose_round) { rig_start_with(r, alg, lose_round, NULL); }

/* Once the browser is connected: its SRTP. */
static void rig_keys(struct rig *r) {
  assert_null(media_call_end_reason(r->call));
  assert_int_equal(dtls_session_state(r->browser), DTLS_CONNECTED);
  uint8_t km[DTLS_MAX_KEYING];
  size_t kl = sizeof km;
  int profile;
  assert_int_equal(dtls_session_srtp_keys(r->browser, &profile, km, &kl), 0);
  assert_int_equal(srtpctx_new(&r->srtp, profile, km, kl, 1), 0);
}

/* A call whose offer named the browser's certificate by `alg`; connected, with the browser's SRTP. */
static void rig_up(struct rig *r, const char *alg) {
  rig_start(r, alg, 0);
  rig_keys(r);
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

/* The browser's retransmission of its last flight, due when the call's
 * answer to it was lost: left in r->up. */
static void browser_retransmits(struct rig *r) {
  long ms = dtls_session_timeout_ms(r->browser);
  assert_true(ms >= 0);
  ms += 5;
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  dtls_queue_drop(&r->up);
  dtls_session_on_timer(r->browser);
  assert_true(r->up.n > 0);
}

/* What the call sends back to datagrams of the browser's; freed, counted. */
static int call_answers(struct rig *r, struct dtls_queue *q) {
  dtls_queue_drop(&r->down);
  for (int i = 0; i < q->n; i++)
    media_call_on_packet(r->call, q->pkt[i], q->len[i], (struct sockaddr *)&r->from, r->now);
  dtls_queue_drop(q);
  int n = r->down.n;
  for (int i = 0; i < n; i++) dtls_session_handle(r->browser, r->down.pkt[i], r->down.len[i]);
  dtls_queue_drop(&r->down);
  return n;
}

static void dtls_is_answered_until_the_browsers_srtp(void **state) {
  struct rig r;
  rig_start(&r, "sha-256", 2); /* the call's ChangeCipherSpec and Finished are lost */
  assert_int_equal(dtls_session_state(r.browser), DTLS_HANDSHAKING);
  browser_retransmits(&r);
  struct dtls_queue first = r.up; /* held back: it arrives late, after the browser's SRTP */
  memset(&r.up, 0, sizeof r.up);
  browser_retransmits(&r);
  assert_true(call_answers(&r, &r.up) > 0); /* connected, the call sends its last flight again */
  assert_int_equal(dtls_session_state(r.browser), DTLS_CONNECTED);
  rig_keys(&r);
  send_rtp(&r, 1);
  assert_int_equal(call_answers(&r, &first), 0); /* released: DTLS is ignored */
  assert_null(media_call_end_reason(r.call));
  send_bye(&r, 0, BROWSER_SSRC); /* SRTCP works as before */
  assert_string_equal(media_call_end_reason(r.call), "hangup");
  rig_down(&r);
}

/* An agent that always speaks (a tone over noise, every band busy) and says its speech was made at `rate`. */
struct talker {
  int rate;
  unsigned seed;
  double phase;
};
static struct talker *the_talker; /* the last made, for the test to steer */
static int talker_create(void **out, const struct agent_params *p) {
  *out = the_talker = calloc(1, sizeof(struct talker));
  return *out ? 0 : -ENOMEM;
}
static void talker_destroy(void *agent) { free(agent); }
static void talker_hear(void *agent, const int16_t *pcm) {}
static int talker_speak(void *agent, int16_t *pcm) {
  struct talker *t = agent;
  for (int i = 0; i < 960; i++) {
    t->phase += 2 * M_PI * 440 / 48000;
    pcm[i] = (int16_t)(6000 * sin(t->phase) + (int)(rand_r(&t->seed) % 4001) - 2000);
  }
  return 1;
}
static int talker_rate(void *agent) { return ((struct talker *)agent)->rate; }
static const struct agent_ops talker_ops = {.name = "talker", .in_rate = 48000, .create = talker_create,
                                            .destroy = talker_destroy, .hear = talker_hear,
                                            .speak = talker_speak, .out_rate = talker_rate};

/* Ticks `frames` frames; the Opus bandwidth of the last one sent. */
static int band_sent(struct rig *r, int frames) {
  int band = -1;
  for (int f = 0; f < frames; f++) {
    media_call_tick_in(r->call);
    dtls_queue_drop(&r->down);
    media_call_tick(r->call, r->now += 20);
    for (int i = 0; i < r->down.n; i++) {
      size_t len = r->down.len[i];
      struct rtp_header h;
      if (rtp_demux(r->down.pkt[i], len) != RTP_DEMUX_RTP) continue;
      assert_int_equal(srtpctx_unprotect_rtp(r->srtp, r->down.pkt[i], &len), 0);
      assert_int_equal(rtp_parse(r->down.pkt[i], len, &h), 0);
      band = opus_packet_get_bandwidth(h.payload);
    }
  }
  dtls_queue_drop(&r->down);
  return band;
}

static void the_band_coded_follows_the_agents_rate(void **state) {
  struct rig r;
  rig_start_with(&r, "sha-256", 0, &talker_ops);
  rig_keys(&r);
  struct talker *t = the_talker;
  assert_int_equal(band_sent(&r, 10), OPUS_BANDWIDTH_FULLBAND); /* 0: it cannot tell */
  t->rate = 16000;
  assert_int_equal(band_sent(&r, 10), OPUS_BANDWIDTH_WIDEBAND);
  t->rate = 24000;
  assert_int_equal(band_sent(&r, 10), OPUS_BANDWIDTH_SUPERWIDEBAND);
  t->rate = 48000;
  assert_int_equal(band_sent(&r, 10), OPUS_BANDWIDTH_FULLBAND);
  rig_down(&r);
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
      cmocka_unit_test(dtls_is_answered_until_the_browsers_srtp),
      cmocka_unit_test(the_band_coded_follows_the_agents_rate),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
