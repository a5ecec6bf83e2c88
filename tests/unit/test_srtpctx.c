/*
 * srtpctx: the RFC 3711 and RFC 7714 vectors; round trips under both
 * profiles; tampering, replay, too old and garbage rejected; ROC rollover,
 * reordering within the window, header extensions, the SSRC cap; and, when
 * libsrtp2 is installed, interop with it both ways.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rtc/dtls.h"
#include "rtc/rtcp.h"
#include "rtc/rtp.h"
#include "rtc/srtpctx.h"


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

/* ---- RFC vectors ---- */

/* Not in the header: the vectors start from session keys or single labels. */
int srtpctx_derive(const uint8_t *mkey, const uint8_t *msalt, size_t saltlen, uint8_t label,
                   uint8_t *out, size_t n);
int srtpctx_new_session(struct srtpctx **out, int profile, const uint8_t *key,
                        const uint8_t *salt, const uint8_t *auth);

static size_t unhex(uint8_t *out, const char *s) {
  size_t n = 0;
  while (*s) {
    if (*s == ' ') { s++; continue; }
    unsigned v;
    sscanf(s, "%2x", &v);
    out[n++] = (uint8_t)v;
    s += 2;
  }
  return n;
}

static void rfc3711_b3_key_derivation(void **state) {
  uint8_t mk[16], ms[14], want[20], got[20];
  unhex(mk, "E1F97A0D3E018BE0D64FA32C06DE4139");
  unhex(ms, "0EC675AD498AFEEBB6960B3AABE6");
  assert_int_equal(srtpctx_derive(mk, ms, 14, 0, got, 16), 0);
  unhex(want, "C61E7A93744F39EE10734AFE3FF7A087");
  assert_memory_equal(got, want, 16);
  assert_int_equal(srtpctx_derive(mk, ms, 14, 2, got, 14), 0);
  unhex(want, "30CBBC08863D8C85D49DB34A9AE1");
  assert_memory_equal(got, want, 14);
  assert_int_equal(srtpctx_derive(mk, ms, 14, 1, got, 20), 0);
  unhex(want, "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4");
  assert_memory_equal(got, want, 20);
}

/* B.2: the keystream for SSRC 0, ROC 0, SEQ 0 is what encrypts a zero payload. */
static void rfc3711_b2_keystream(void **state) {
  uint8_t key[16], salt[14], auth[20] = {0}, p[256] = {0}, want[48];
  unhex(key, "2B7E151628AED2A6ABF7158809CF4F3C");
  unhex(salt, "F0F1F2F3F4F5F6F7F8F9FAFBFCFD");
  unhex(want, "E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB"
              "41E95B3BB0A2E8DD477901E4FCA894C0");
  struct srtpctx *c;
  assert_int_equal(srtpctx_new_session(&c, DTLS_SRTP_AES128_CM_SHA1_80, key, salt, auth), 0);
  p[0] = 0x80;
  size_t n = 12 + 48;
  assert_int_equal(srtpctx_protect_rtp(c, p, &n, sizeof p), 0);
  assert_int_equal(n, 12 + 48 + 10);
  assert_memory_equal(p + 12, want, 48);
  srtpctx_free(c);
}

/* RFC 7714 16.1.1: AEAD_AES_128_GCM protection of one RTP packet. */
static void rfc7714_gcm_rtp(void **state) {
  uint8_t key[16], salt[12], plain[64], want[80], p[256];
  unhex(key, "000102030405060708090a0b0c0d0e0f");
  unhex(salt, "517569642070726f2071756f");
  size_t pn = unhex(plain, "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973"
                           "20646976 69736120 696e2070 61727465 73207472 6573");
  size_t wn = unhex(want, "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca"
                          "be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833 899d7f27"
                          "beb16a91 52cf765e e4390cce");
  struct srtpctx *c;
  assert_int_equal(srtpctx_new_session(&c, DTLS_SRTP_AEAD_AES_128_GCM, key, salt, NULL), 0);
  memcpy(p, plain, pn);
  size_t n = pn;
  assert_int_equal(srtpctx_protect_rtp(c, p, &n, sizeof p), 0);
  assert_int_equal(n, wn);
  assert_memory_equal(p, want, wn);
  assert_int_equal(srtpctx_unprotect_rtp(c, p, &n), 0);
  assert_int_equal(n, pn);
  assert_memory_equal(p, plain, pn);
  srtpctx_free(c);
}

/* ---- Streams, windows, rollover ---- */

static size_t make_rtp_ssrc(uint8_t *p, uint16_t seq, uint32_t ssrc) {
  rtp_write_header(p, 0, 111, seq, seq * 960u, ssrc);
  for (int i = 0; i < 80; i++) p[12 + i] = (uint8_t)(i + seq);
  return 92;
}

static void send_ok(struct srtpctx *tx, struct srtpctx *rx, uint16_t seq) {
  uint8_t p[256], orig[256];
  size_t n = make_rtp(p, seq), n0 = n;
  memcpy(orig, p, n);
  assert_int_equal(srtpctx_protect_rtp(tx, p, &n, sizeof p), 0);
  assert_int_equal(srtpctx_unprotect_rtp(rx, p, &n), 0);
  assert_int_equal(n, n0);
  assert_memory_equal(p, orig, n);
}

static void rollover(int profile) {
  struct srtpctx *c, *s;
  pair(profile, &c, &s);
  /* Up to 65535, over the wrap with a gap, and on into ROC 1. */
  for (uint32_t seq = 65000; seq < 65536 + 3000; seq += 97) send_ok(c, s, (uint16_t)seq);
  /* A late packet from before the wrap (ROC 0) still decrypts: it is in the window. */
  uint8_t p[256];
  size_t n;
  uint8_t late[256];
  size_t ln = make_rtp(late, 65530);
  struct srtpctx *c2, *s2;
  pair(profile, &c2, &s2);
  send_ok(c2, s2, 65520);
  assert_int_equal(srtpctx_protect_rtp(c2, late, &ln, sizeof late), 0);
  send_ok(c2, s2, 65535);
  send_ok(c2, s2, 4); /* ROC 1 now */
  assert_int_equal(srtpctx_unprotect_rtp(s2, late, &ln), 0);
  /* ROC 1 is in the keystream: SEQ 5 at ROC 1 differs from SEQ 5 at ROC 0. */
  struct srtpctx *c3, *s3;
  pair(profile, &c3, &s3);
  uint8_t a[256];
  size_t an = make_rtp(a, 5);
  assert_int_equal(srtpctx_protect_rtp(c3, a, &an, sizeof a), 0);
  n = make_rtp(p, 5);
  assert_int_equal(srtpctx_protect_rtp(c2, p, &n, sizeof p), 0);
  assert_memory_not_equal(p + 12, a + 12, 16);
  assert_int_equal(srtpctx_unprotect_rtp(s2, p, &n), 0);
  srtpctx_free(c3);
  srtpctx_free(s3);
  srtpctx_free(c2);
  srtpctx_free(s2);
  srtpctx_free(c);
  srtpctx_free(s);
}

static void rollover_gcm(void **state) { rollover(DTLS_SRTP_AEAD_AES_128_GCM); }
static void rollover_cm80(void **state) { rollover(DTLS_SRTP_AES128_CM_SHA1_80); }

/* Packets delivered out of order within the window are accepted once each. */
static void reorder_and_window(void **state) {
  struct srtpctx *c, *s;
  pair(DTLS_SRTP_AES128_CM_SHA1_80, &c, &s);
  enum { N = 1200 };
  static uint8_t pk[N][256];
  static size_t len[N];
  for (int i = 0; i < N; i++) {
    len[i] = make_rtp(pk[i], (uint16_t)(100 + i));
    assert_int_equal(srtpctx_protect_rtp(c, pk[i], &len[i], sizeof pk[i]), 0);
  }
  /* 100..1099 reversed in blocks of 50, then the newest, then replays */
  for (int b = 0; b < 1000; b += 50)
    for (int i = b + 49; i >= b; i--) {
      uint8_t p[256];
      size_t n = len[i];
      memcpy(p, pk[i], n);
      assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), 0);
    }
  for (int i = 0; i < 1000; i += 37) {
    uint8_t p[256];
    size_t n = len[i];
    memcpy(p, pk[i], n);
    assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), -EACCES);
  }
  uint8_t p[256];
  size_t n = len[N - 1];
  memcpy(p, pk[N - 1], n);
  assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), 0); /* top is now index 1299 */
  /* 1099 is 200 behind and unseen: accepted; 1000 behind the top is the edge */
  n = len[1000];
  memcpy(p, pk[1000], n);
  assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), 0);
  n = len[N - 1 - 1023];
  memcpy(p, pk[N - 1 - 1023], n);
  assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), -EACCES); /* seen */
  srtpctx_free(c);
  srtpctx_free(s);
}

/* Too old: more than 1024 behind the newest, never seen, still refused. */
static void too_old(void **state) {
  struct srtpctx *c, *s;
  pair(DTLS_SRTP_AEAD_AES_128_GCM, &c, &s);
  uint8_t old[256], p[256];
  size_t on = make_rtp(old, 10);
  assert_int_equal(srtpctx_protect_rtp(c, old, &on, sizeof old), 0);
  send_ok(c, s, 9);
  send_ok(c, s, 11 + 1024);
  size_t n = on;
  memcpy(p, old, n);
  assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), -EACCES);
  srtpctx_free(c);
  srtpctx_free(s);
}

/* CSRCs and a header extension stay in the clear and in the authenticated part. */
static void header_extension(int profile) {
  struct srtpctx *c, *s;
  pair(profile, &c, &s);
  uint8_t p[256], orig[256];
  rtp_write_header(p, 1, 111, 7, 960, 0x11223344);
  p[0] |= 0x10 | 2; /* X, CC = 2 */
  memset(p + 12, 0xc5, 8);
  const uint8_t ext[] = {0xbe, 0xde, 0x00, 0x02, 0x10, 0xff, 0x22, 0x01, 0x02, 0, 0, 0};
  memcpy(p + 20, ext, sizeof ext);
  size_t hdr = 20 + sizeof ext, n = hdr + 40;
  for (size_t i = hdr; i < n; i++) p[i] = (uint8_t)i;
  memcpy(orig, p, n);
  size_t n0 = n;
  assert_int_equal(srtpctx_protect_rtp(c, p, &n, sizeof p), 0);
  assert_memory_equal(p, orig, hdr);
  assert_memory_not_equal(p + hdr, orig + hdr, 40);
  uint8_t t[256];
  size_t tn = n;
  memcpy(t, p, n);
  t[hdr - 1] ^= 1; /* the extension is authenticated */
  assert_int_equal(srtpctx_unprotect_rtp(s, t, &tn), -EACCES);
  assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), 0);
  assert_int_equal(n, n0);
  assert_memory_equal(p, orig, n);
  /* an extension longer than the packet */
  n = make_rtp(p, 8);
  p[0] |= 0x10;
  p[14] = 0xff;
  assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), -EBADMSG);
  srtpctx_free(c);
  srtpctx_free(s);
}

static void header_extension_gcm(void **state) { header_extension(DTLS_SRTP_AEAD_AES_128_GCM); }
static void header_extension_cm80(void **state) { header_extension(DTLS_SRTP_AES128_CM_SHA1_80); }

/* Eight SSRCs a direction; a ninth is refused both ways. */
static void ssrc_cap(void **state) {
  struct srtpctx *c, *s;
  pair(DTLS_SRTP_AES128_CM_SHA1_80, &c, &s);
  uint8_t p[256];
  for (uint32_t k = 0; k < 9; k++) {
    size_t n = make_rtp_ssrc(p, 1, 0x1000 + k);
    int rc = srtpctx_protect_rtp(c, p, &n, sizeof p);
    if (k < 8) {
      assert_int_equal(rc, 0);
      assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), 0);
    } else {
      assert_int_not_equal(rc, 0);
    }
  }
  /* the receiver's ninth: a sender with its own slots left */
  struct srtpctx *c2, *s2;
  pair(DTLS_SRTP_AES128_CM_SHA1_80, &c2, &s2);
  size_t n = make_rtp_ssrc(p, 2, 0x2000);
  assert_int_equal(srtpctx_protect_rtp(c2, p, &n, sizeof p), 0);
  assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), -EACCES);
  srtpctx_free(c2);
  srtpctx_free(s2);
  srtpctx_free(c);
  srtpctx_free(s);
}

/* Forged packets from unknown SSRCs do not use up the slots. */
static void forged_ssrcs_take_no_slot(void **state) {
  struct srtpctx *c, *s;
  pair(DTLS_SRTP_AEAD_AES_128_GCM, &c, &s);
  uint8_t p[256];
  for (uint32_t k = 0; k < 50; k++) {
    size_t n = make_rtp_ssrc(p, 1, 0x5000 + k);
    n += 16;
    assert_int_equal(srtpctx_unprotect_rtp(s, p, &n), -EACCES);
  }
  send_ok(c, s, 3);
  srtpctx_free(c);
  srtpctx_free(s);
}

/* SRTCP: both directions, replay and tamper refused. */
static void rtcp(int profile) {
  struct srtpctx *c, *s;
  pair(profile, &c, &s);
  struct srtpctx *ends[2][2] = {{c, s}, {s, c}};
  for (int d = 0; d < 2; d++)
    for (int i = 0; i < 5; i++) {
      uint8_t p[256], orig[256], again[256];
      struct rtp_report_block rb = {.ssrc = 1, .fraction_lost = (uint8_t)i};
      size_t n = (size_t)rtcp_build(p, 200, 0x55667788, NULL, &rb, "cname"), n0 = n;
      memcpy(orig, p, n);
      assert_int_equal(srtpctx_protect_rtcp(ends[d][0], p, &n, sizeof p), 0);
      assert_int_equal(n, n0 + (profile == DTLS_SRTP_AEAD_AES_128_GCM ? 20 : 14));
      assert_memory_not_equal(p + 8, orig + 8, n0 - 8);
      size_t an = n;
      memcpy(again, p, n);
      assert_int_equal(srtpctx_unprotect_rtcp(ends[d][1], p, &n), 0);
      assert_int_equal(n, n0);
      assert_memory_equal(p, orig, n);
      assert_int_equal(srtpctx_unprotect_rtcp(ends[d][1], again, &an), -EACCES);
    }
  uint8_t p[256];
  struct rtp_report_block rb = {.ssrc = 1};
  size_t n = (size_t)rtcp_build(p, 200, 0x55667788, NULL, &rb, "cname");
  assert_int_equal(srtpctx_protect_rtcp(c, p, &n, sizeof p), 0);
  p[n - 1] ^= 0x40;
  assert_int_equal(srtpctx_unprotect_rtcp(s, p, &n), -EACCES);
  n = 10;
  assert_int_equal(srtpctx_unprotect_rtcp(s, p, &n), -EBADMSG);
  srtpctx_free(c);
  srtpctx_free(s);
}

static void rtcp_gcm(void **state) { rtcp(DTLS_SRTP_AEAD_AES_128_GCM); }
static void rtcp_cm80(void **state) { rtcp(DTLS_SRTP_AES128_CM_SHA1_80); }

#ifdef TS_HAVE_LIBSRTP2
/*
 * Interop with libsrtp2, the implementation this one replaced: our client
 * context against libsrtp sessions keyed with the same halves of the keying
 * material, both ways, RTP across a ROC rollover and RTCP.
 */
#include "srtp_ref.h"

static srtp_t ref_session(int profile, const uint8_t *key, const uint8_t *salt, size_t saltlen,
                          int inbound) {
  srtp_t s;
  assert_int_equal(srtp_ref_session(&s, profile, key, salt, saltlen, inbound), srtp_err_status_ok);
  return s;
}

static void interop(int profile) {
  uint8_t km[60];
  size_t saltlen = profile == DTLS_SRTP_AEAD_AES_128_GCM ? 12 : 14, len = 2 * (16 + saltlen);
  for (size_t i = 0; i < len; i++) km[i] = (uint8_t)(i * 13 + 5);
  const uint8_t *ck = km, *sk = km + 16, *cs = km + 32, *ss = cs + saltlen;
  struct srtpctx *ours;
  assert_int_equal(srtpctx_new(&ours, profile, km, len, 1), 0);
  srtp_t ref_in = ref_session(profile, ck, cs, saltlen, 1);  /* hears our client half */
  srtp_t ref_out = ref_session(profile, sk, ss, saltlen, 0); /* speaks the server half */
  uint8_t p[256], orig[256];
  for (uint32_t seq = 64000; seq < 65536 + 2000; seq += 61) {
    size_t n = make_rtp(p, (uint16_t)seq), n0 = n;
    memcpy(orig, p, n);
    assert_int_equal(srtpctx_protect_rtp(ours, p, &n, sizeof p), 0);
    int in = (int)n;
    assert_int_equal(srtp_unprotect(ref_in, p, &in), srtp_err_status_ok);
    assert_int_equal(in, (int)n0);
    assert_memory_equal(p, orig, n0);
    in = (int)make_rtp(p, (uint16_t)seq);
    assert_int_equal(srtp_protect(ref_out, p, &in), srtp_err_status_ok);
    n = (size_t)in;
    assert_int_equal(srtpctx_unprotect_rtp(ours, p, &n), 0);
    assert_int_equal(n, n0);
    assert_memory_equal(p, orig, n0);
  }
  for (int i = 0; i < 20; i++) {
    struct rtp_report_block rb = {.ssrc = 1, .fraction_lost = (uint8_t)i};
    size_t n = (size_t)rtcp_build(p, 200, 0x11223344, NULL, &rb, "cname"), n0 = n;
    memcpy(orig, p, n);
    assert_int_equal(srtpctx_protect_rtcp(ours, p, &n, sizeof p), 0);
    int in = (int)n;
    assert_int_equal(srtp_unprotect_rtcp(ref_in, p, &in), srtp_err_status_ok);
    assert_int_equal(in, (int)n0);
    assert_memory_equal(p, orig, n0);
    in = (int)n0;
    assert_int_equal(srtp_protect_rtcp(ref_out, p, &in), srtp_err_status_ok);
    n = (size_t)in;
    assert_int_equal(srtpctx_unprotect_rtcp(ours, p, &n), 0);
    assert_int_equal(n, n0);
    assert_memory_equal(p, orig, n0);
  }
  srtp_dealloc(ref_in);
  srtp_dealloc(ref_out);
  srtpctx_free(ours);
}

static void interop_libsrtp_gcm(void **state) { interop(DTLS_SRTP_AEAD_AES_128_GCM); }
static void interop_libsrtp_cm80(void **state) { interop(DTLS_SRTP_AES128_CM_SHA1_80); }
#endif

static void round_trip_gcm(void **state) { round_trip(DTLS_SRTP_AEAD_AES_128_GCM); }
static void round_trip_cm80(void **state) { round_trip(DTLS_SRTP_AES128_CM_SHA1_80); }

static void bad_parameters(void **state) {
  struct srtpctx *c;
  uint8_t km[60] = {0};
  assert_int_equal(srtpctx_new(&c, 99, km, 60, 0), -EINVAL);
  assert_int_equal(srtpctx_new(&c, DTLS_SRTP_AES128_CM_SHA1_80, km, 56, 0), -EINVAL);
}

static int setup(void **state) {
#ifdef TS_HAVE_LIBSRTP2
  if (srtp_init() != srtp_err_status_ok) return -1;
#endif
  return srtpctx_global_init();
}

static int teardown(void **state) {
#ifdef TS_HAVE_LIBSRTP2
  srtp_shutdown();
#endif
  srtpctx_global_shutdown();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trip_gcm),
      cmocka_unit_test(round_trip_cm80),
      cmocka_unit_test(bad_parameters),
      cmocka_unit_test(rfc3711_b3_key_derivation),
      cmocka_unit_test(rfc3711_b2_keystream),
      cmocka_unit_test(rfc7714_gcm_rtp),
      cmocka_unit_test(rollover_gcm),
      cmocka_unit_test(rollover_cm80),
      cmocka_unit_test(reorder_and_window),
      cmocka_unit_test(too_old),
      cmocka_unit_test(header_extension_gcm),
      cmocka_unit_test(header_extension_cm80),
      cmocka_unit_test(ssrc_cap),
      cmocka_unit_test(forged_ssrcs_take_no_slot),
      cmocka_unit_test(rtcp_gcm),
      cmocka_unit_test(rtcp_cm80),
#ifdef TS_HAVE_LIBSRTP2
      cmocka_unit_test(interop_libsrtp_gcm),
      cmocka_unit_test(interop_libsrtp_cm80),
#endif
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
