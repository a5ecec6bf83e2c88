/* rtp + rtcp: demultiplexing, header parsing, loss and jitter statistics, reports. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rtc/rtcp.h"
#include "rtc/rtp.h"

/* An Opus packet as Chrome sends it: one-byte header extensions (audio level, abs-send-time...). */
static const uint8_t chrome_pkt[] = {
    0x90, 0x6f, 0x12, 0x34, 0x00, 0x01, 0xe2, 0x40, 0xde, 0xad, 0xbe, 0xef, /* V=2 X=1 PT=111 */
    0xbe, 0xde, 0x00, 0x02,                                                 /* one-byte ext, 2 words */
    0x10, 0xff, 0x22, 0x12, 0x34, 0x56, 0x00, 0x00,                         /* id1 level, id2 abs-send-time */
    0x78, 0x01, 0x02, 0x03};                                               /* Opus payload */

static void demux_by_first_byte(void **state) {
  uint8_t p[32] = {0};
  assert_int_equal(rtp_demux(p, 20), RTP_DEMUX_STUN);
  p[0] = 22;
  assert_int_equal(rtp_demux(p, 20), RTP_DEMUX_DTLS);
  p[0] = 0x80, p[1] = 111;
  assert_int_equal(rtp_demux(p, 20), RTP_DEMUX_RTP);
  p[1] = 200;
  assert_int_equal(rtp_demux(p, 20), RTP_DEMUX_RTCP);
  p[0] = 100;
  assert_int_equal(rtp_demux(p, 20), RTP_DEMUX_UNKNOWN);
  assert_int_equal(rtp_demux(p, 0), RTP_DEMUX_UNKNOWN);
  p[0] = 0x80, p[1] = 111;
  assert_int_equal(rtp_demux(p, 5), RTP_DEMUX_UNKNOWN);
}

static void parses_chrome_packet(void **state) {
  struct rtp_header h;
  assert_int_equal(rtp_parse(chrome_pkt, sizeof chrome_pkt, &h), 0);
  assert_int_equal(h.pt, 111);
  assert_int_equal(h.seq, 0x1234);
  assert_int_equal(h.ts, 123456);
  assert_int_equal(h.ssrc, 0xdeadbeef);
  assert_int_equal(h.header_len, 24);
  assert_int_equal(h.payload_len, 4);
  assert_int_equal(h.payload[0], 0x78);
}

static void rejects_malformed(void **state) {
  struct rtp_header h;
  uint8_t p[sizeof chrome_pkt];
  memcpy(p, chrome_pkt, sizeof p);
  p[15] = 0x40; /* extension longer than the packet */
  assert_int_equal(rtp_parse(p, sizeof p, &h), -EBADMSG);
  memcpy(p, chrome_pkt, sizeof p);
  p[0] |= 0x0f; /* 15 CSRCs */
  assert_int_equal(rtp_parse(p, sizeof p, &h), -EBADMSG);
  memcpy(p, chrome_pkt, sizeof p);
  p[0] |= 0x20, p[sizeof p - 1] = 200; /* padding past the payload */
  assert_int_equal(rtp_parse(p, sizeof p, &h), -EBADMSG);
  p[0] = 0x40; /* version 1 */
  assert_int_equal(rtp_parse(p, sizeof p, &h), -EBADMSG);
  unsigned seed = 3;
  for (int i = 0; i < 100000; i++) {
    memcpy(p, chrome_pkt, sizeof p);
    p[rand_r(&seed) % sizeof p] = (uint8_t)rand_r(&seed);
    rtp_parse(p, (size_t)rand_r(&seed) % (sizeof p + 1), &h);
  }
}

static void write_then_parse(void **state) {
  uint8_t p[20];
  assert_int_equal(rtp_write_header(p, 1, 111, 65535, 0xfffffff0u, 42), 12);
  struct rtp_header h;
  assert_int_equal(rtp_parse(p, 20, &h), 0);
  assert_true(h.marker);
  assert_int_equal(h.seq, 65535);
  assert_int_equal(h.ts, 0xfffffff0u);
  assert_int_equal(h.payload_len, 8);
}

static void stats_count_loss_across_wrap(void **state) {
  struct rtp_stats s;
  rtp_stats_init(&s);
  uint16_t seq = 65500;
  uint32_t ts = 0;
  uint64_t t = 1000;
  int lost = 0;
  for (int i = 0; i < 200; i++, seq++, ts += 960, t += 20) {
    if (i > 10 && i % 10 == 0) { lost++; continue; } /* every tenth after the start */
    rtp_stats_update(&s, seq, ts, t, 48000);
  }
  struct rtp_report_block rb;
  rtp_stats_report(&s, 7, t, &rb);
  assert_int_equal(rb.cumulative_lost, lost);
  assert_int_equal(rb.highest_seq, 65536u + (uint16_t)(seq - 1));
  /* about 10% of the interval: 256 * 19 / 200 */
  assert_in_range(rb.fraction_lost, 20, 28);
  assert_true(rb.jitter < 5); /* perfectly paced */
  /* next interval: no loss */
  for (int i = 0; i < 50; i++, seq++, ts += 960, t += 20) rtp_stats_update(&s, seq, ts, t, 48000);
  rtp_stats_report(&s, 7, t, &rb);
  assert_int_equal(rb.fraction_lost, 0);
}

static void stats_measure_jitter(void **state) {
  struct rtp_stats s;
  rtp_stats_init(&s);
  uint64_t t = 0;
  for (int i = 0; i < 500; i++) {
    t = (uint64_t)i * 20 + (i % 2 ? 10 : 0); /* every other packet 10 ms late */
    rtp_stats_update(&s, (uint16_t)i, (uint32_t)i * 960, t, 48000);
  }
  struct rtp_report_block rb;
  rtp_stats_report(&s, 1, t, &rb);
  assert_in_range(rb.jitter, 400, 520); /* 10 ms = 480 units at 48 kHz */
}

static void rtcp_round_trip(void **state) {
  uint8_t buf[256];
  struct rtcp_sender_info si = {.ntp = rtcp_ntp_from_ms(1700000000123ull), .rtp_ts = 96000, .packets = 100, .octets = 8000};
  struct rtp_report_block rb = {.ssrc = 99, .fraction_lost = 25, .cumulative_lost = -3, .highest_seq = 70000, .jitter = 480, .lsr = 5, .dlsr = 6};
  int n = rtcp_build(buf, sizeof buf, 1234, &si, &rb, "call-cname");
  assert_true(n > 0 && n % 4 == 0);
  assert_int_equal(rtp_demux(buf, (size_t)n), RTP_DEMUX_RTCP);
  struct rtcp_info info;
  assert_int_equal(rtcp_parse(buf, (size_t)n, &info), 0);
  assert_true(info.has_sr);
  assert_int_equal(info.sr_ssrc, 1234);
  assert_int_equal(info.sr_ntp_mid, (uint32_t)(si.ntp >> 16));
  assert_int_equal(info.nblocks, 1);
  assert_int_equal(info.blocks[0].fraction_lost, 25);
  assert_int_equal(info.blocks[0].cumulative_lost, -3);
  assert_int_equal(info.blocks[0].jitter, 480);
  n = rtcp_build(buf, sizeof buf, 1234, NULL, &rb, "x");
  assert_int_equal(rtcp_parse(buf, (size_t)n, &info), 0);
  assert_false(info.has_sr);
  assert_int_equal(info.nblocks, 1);
  assert_int_equal(rtcp_build(buf, 20, 1, &si, &rb, "x"), -ENOSPC);
  buf[3] = 0x40; /* length beyond the buffer */
  assert_int_equal(rtcp_parse(buf, (size_t)n, &info), -EBADMSG);
  unsigned seed = 5;
  for (int i = 0; i < 100000; i++) {
    n = rtcp_build(buf, sizeof buf, 1234, &si, &rb, "call");
    buf[rand_r(&seed) % (unsigned)n] ^= (uint8_t)rand_r(&seed);
    rtcp_parse(buf, (size_t)(rand_r(&seed) % (n + 1)), &info);
  }
}

static size_t put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
  return 4;
}

/* A browser that hangs up before it sent anything, or while only receiving, says RR + SDES + BYE. */
static void bye_without_sender_report_names_its_source(void **state) {
  uint8_t buf[256];
  struct rtp_report_block rb = {.ssrc = 99};
  int n = rtcp_build(buf, sizeof buf, 0xCAFEF00D, NULL, &rb, "browser");
  assert_true(n > 0);
  size_t off = (size_t)n;
  buf[off++] = 0x80 | 2; /* V=2, two sources */
  buf[off++] = RTCP_BYE;
  buf[off++] = 0;
  buf[off++] = 2; /* length in words, minus one */
  off += put32(buf + off, 0x11111111);
  off += put32(buf + off, 0xCAFEF00D);
  struct rtcp_info info;
  assert_int_equal(rtcp_parse(buf, off, &info), 0);
  assert_false(info.has_sr);
  assert_true(info.bye);
  assert_true(rtcp_bye_names(&info, 0xCAFEF00D));
  assert_true(rtcp_bye_names(&info, 0x11111111));
  assert_false(rtcp_bye_names(&info, 0x22222222));
  /* a BYE that claims more sources than it holds is malformed */
  buf[n] = 0x80 | 3;
  assert_int_equal(rtcp_parse(buf, off, &info), -EBADMSG);
  /* with a sender report, the same */
  struct rtcp_sender_info si = {.ntp = 1, .rtp_ts = 2, .packets = 3, .octets = 4};
  n = rtcp_build(buf, sizeof buf, 7, &si, NULL, "x");
  off = (size_t)n;
  buf[off++] = 0x81;
  buf[off++] = RTCP_BYE;
  buf[off++] = 0;
  buf[off++] = 1;
  off += put32(buf + off, 7);
  assert_int_equal(rtcp_parse(buf, off, &info), 0);
  assert_true(info.has_sr && rtcp_bye_names(&info, 7));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(demux_by_first_byte),       cmocka_unit_test(parses_chrome_packet),
      cmocka_unit_test(rejects_malformed),         cmocka_unit_test(write_then_parse),
      cmocka_unit_test(stats_count_loss_across_wrap), cmocka_unit_test(stats_measure_jitter),
      cmocka_unit_test(rtcp_round_trip),
      cmocka_unit_test(bye_without_sender_report_names_its_source),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
