/* srtpctx: round trips under both profiles, tampering, replay and garbage rejected. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rtc/dtls.h"
#include "rtc/rtcp.h"
#include "rtc/rtp.h"
#include "rtc/srtpctx.h"

static int setup(void **state) { return srtpctx_global_init(); }
static int teardown(void **state) { srtpctx_global_shutdown(); return 0; }

static void pair(int profile, struct srtpctx **client, struct srtpctx **server) {
  uint8_t km[60];
  size_t len = profile == DTLS_SRTP_AEAD_AES_128_GCM ? 56 : 60;
  for (size_t i = 0; i < len; i++) km[i] = (uint8_t)(i * 7 + 3);
  assert_int_equal(srtpctx_new(client, profile, km, len, 1), 0);
  assert_int_equal(srtpctx_new(server, profile, km, len, 0), 0);
}

static size_t make_rtp(uint8_t *p, uint16_t seq) {
  rtp_write_header(p, 0, 111, seq, seq * 960u, 0x11223344);
  for (int i = 0; i < 80; i++) p[12 + i] = (uint8_t)(i + seq);
  return 92;
}

static void round_trip(int profile) {
  struct srtpctx *c, *s;
  pair(profile, &c, &s);
  uint8_t p[256], orig[256];
  for (uint16_t seq = 1; seq < 50; seq++) {
    size_t n = make_rtp(p, seq), n0 = n;
    memcpy(orig, p, n);
    assert_int_equal(srtpctx_protect_rtp(c, p, &n, sizeof p), 0);
    assert_true(n > n0);
    assert_memory_not_equal(p + 12, orig + 12, 16); /* encrypted */
    assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), 0);
    assert_int_equal(n, n0);
    assert_memory_equal(p, orig, n);
    /* and the other direction */
    n = make_rtp(p, seq);
    assert_int_equal(srtpctx_protect_rtp(s, p, &n, sizeof p), 0);
    assert_int_equal(srtpctx_unprotect_rtp(c, p, &n), 0);
  }
  /* tampered */
  size_t n = make_rtp(p, 100);
  srtpctx_protect_rtp(c, p, &n, sizeof p);
  p[20] ^= 1;
  assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), -EACCES);
  /* replayed */
  n = make_rtp(p, 101);
  srtpctx_protect_rtp(c, p, &n, sizeof p);
  memcpy(orig, p, n);
  size_t n2 = n;
  assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), 0);
  assert_int_equal(srtpctx_unprotect_rtp(s, orig, &n2), -EACCES);
  /* our own packets are not accepted as the peer's */
  n = make_rtp(p, 102);
  srtpctx_protect_rtp(c, p, &n, sizeof p);
  assert_int_equal(srtpctx_unprotect_rtp(c, p, &n), -EACCES);
  /* RTCP */
  struct rtp_report_block rb = {.ssrc = 1, .fraction_lost = 10};
  n = (size_t)rtcp_build(p, sizeof p, 0x11223344, NULL, &rb, "cname");
  size_t plain = n;
  assert_int_equal(srtpctx_protect_rtcp(c, p, &n, sizeof p), 0);
  assert_int_equal(srtpctx_unprotect_rtcp(s, p, &n), 0);
  assert_int_equal(n, plain);
  struct rtcp_info info;
  assert_int_equal(rtcp_parse(p, n, &info), 0);
  assert_int_equal(info.blocks[0].fraction_lost, 10);
  /* garbage */
  unsigned seed = 9;
  for (int i = 0; i < 20000; i++) {
    size_t gl = (size_t)rand_r(&seed) % 200;
    for (size_t k = 0; k < gl; k++) p[k] = (uint8_t)rand_r(&seed);
    if (gl) p[0] = 0x80;
    srtpctx_unprotect_rtp(s, p, &gl);
  }
  n = 200;
  assert_int_equal(srtpctx_protect_rtp(c, p, &n, 210), -ENOSPC);
  srtpctx_free(c);
  srtpctx_free(s);
}

static void round_trip_gcm(void **state) { round_trip(DTLS_SRTP_AEAD_AES_128_GCM); }
static void round_trip_cm80(void **state) { round_trip(DTLS_SRTP_AES128_CM_SHA1_80); }

static void bad_parameters(void **state) {
  struct srtpctx *c;
  uint8_t km[60] = {0};
  assert_int_equal(srtpctx_new(&c, 99, km, 60, 0), -EINVAL);
  assert_int_equal(srtpctx_new(&c, DTLS_SRTP_AES128_CM_SHA1_80, km, 56, 0), -EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trip_gcm),
      cmocka_unit_test(round_trip_cm80),
      cmocka_unit_test(bad_parameters),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
