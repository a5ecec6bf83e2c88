/*
 * fuzz_rtp: RTP packets as a media worker gets them once SRTP has
 * authenticated them, i.e. whatever a caller's browser chooses to send.
 *
 * The input is first one datagram for the RFC 7983 demultiplexer and the
 * header parser. Then it is read as a stream, each packet behind a 2-byte
 * length (a length past the end takes the rest; the seeds' streams are
 * written this way by make_seeds.c), and the stream goes where a call sends
 * its packets: receive statistics, the jitter buffer and the Opus decoder
 * behind it, one 20 ms tick per packet as the worker's clock would run.
 */
#include <string.h>

#include "audio/jitter.h"
#include "fuzz.h"
#include "rtc/rtp.h"

static void check_header(const uint8_t *p, size_t n) {
  struct rtp_header h;
  if (rtp_parse(p, n, &h) != 0) return;
  FUZZ_CHECK(h.header_len >= 12 && h.header_len <= n);
  FUZZ_CHECK(h.payload == p + h.header_len && h.header_len + h.payload_len <= n);
  FUZZ_CHECK(h.pt >= 0 && h.pt < 128);
}

static void play_stream(const uint8_t *data, size_t size) {
  struct jitter *jb = jitter_new();
  FUZZ_CHECK(jb != NULL);
  struct rtp_stats st;
  rtp_stats_init(&st);
  int16_t pcm[OPUSC_FRAME];
  uint64_t now = 1000;
  struct fuzz_in in = {data, size};
  while (in.n > 0) {
    size_t len = fuzz_take_byte(&in) << 8;
    len |= fuzz_take_byte(&in);
    if (len > in.n) len = in.n;
    /* Each packet in its own allocation, so reading past it is caught. */
    uint8_t *pkt = malloc(len ? len : 1);
    FUZZ_CHECK(pkt != NULL);
    memcpy(pkt, in.p, len);
    in.p += len, in.n -= len;
    struct rtp_header h;
    if (rtp_demux(pkt, len) == RTP_DEMUX_RTP && rtp_parse(pkt, len, &h) == 0 &&
        h.payload_len > 0 && rtp_stats_update(&st, h.seq, h.ts, now, 48000) == 0)
      jitter_put(jb, h.seq, h.payload, h.payload_len, now);
    free(pkt);
    if (jitter_get(jb, pcm) == 1) {
      size_t last_len = 0;
      const uint8_t *last = jitter_last_packet(jb, &last_len);
      if (last) FUZZ_CHECK(last_len > 0);
    }
    now += 20;
  }
  for (int i = 0; i < 20; i++, now += 20) (void)jitter_get(jb, pcm);
  struct rtp_report_block rb;
  rtp_stats_report(&st, 1234, now, &rb);
  FUZZ_CHECK(rb.ssrc == 1234);
  struct jitter_stats js;
  jitter_get_stats(jb, &js);
  FUZZ_CHECK(js.depth_ms >= 0 && js.target_ms >= 0);
  jitter_free(jb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *p = malloc(size ? size : 1);
  if (!p) return 0;
  if (size) memcpy(p, data, size);
  (void)rtp_demux(p, size);
  check_header(p, size);
  free(p);
  play_stream(data, size);
  return 0;
}
