/*
 * RTP.
 *
 * One UDP port carries STUN, DTLS, RTP and RTCP, told apart by the first
 * byte (RFC 7983: 0-3 STUN, 20-63 DTLS, 128-191 RTP/RTCP) and then, since
 * rtcp-mux puts RTCP on the same port, by the second byte: RTCP packet
 * types 192-223 never collide with the dynamic RTP payload types WebRTC
 * uses (RFC 5761 4).
 *
 * Receive statistics follow RFC 3550's appendix: sequence numbers are
 * extended with a cycle count so wraps are not losses, a source must show
 * two packets in order before it is trusted, a large jump is accepted only
 * when repeated, and interarrival jitter is the smoothed difference of
 * transit times in RTP clock units.
 */
#include "rtc/rtp.h"

#include <errno.h>
#include <string.h>

#define MAX_DROPOUT 3000
#define MAX_MISORDER 100
#define MIN_SEQUENTIAL 2

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

enum rtp_demux_kind rtp_demux(const uint8_t *p, size_t n) {
  if (n < 1) return RTP_DEMUX_UNKNOWN;
  if (p[0] <= 3) return n >= 20 ? RTP_DEMUX_STUN : RTP_DEMUX_UNKNOWN;
  if (p[0] >= 20 && p[0] <= 63) return n >= 13 ? RTP_DEMUX_DTLS : RTP_DEMUX_UNKNOWN;
  if (p[0] >= 128 && p[0] <= 191 && n >= 8) {
    if (p[1] >= 192 && p[1] <= 223) return RTP_DEMUX_RTCP;
    return n >= 12 ? RTP_DEMUX_RTP : RTP_DEMUX_UNKNOWN;
  }
  return RTP_DEMUX_UNKNOWN;
}

int rtp_parse(const uint8_t *p, size_t n, struct rtp_header *h) {
  if (n < 12 || (p[0] >> 6) != 2) return -EBADMSG;
  size_t off = 12 + 4 * (size_t)(p[0] & 0x0f);
  if (off > n) return -EBADMSG;
  if (p[0] & 0x10) { /* header extension: 4-byte header then length words */
    if (off + 4 > n) return -EBADMSG;
    off += 4 + 4 * (size_t)rd16(p + off + 2);
    if (off > n) return -EBADMSG;
  }
  size_t pad = 0;
  if (p[0] & 0x20) {
    pad = p[n - 1];
    if (pad == 0 || off + pad > n) return -EBADMSG;
  }
  h->marker = p[1] >> 7;
  h->pt = p[1] & 0x7f;
  h->seq = rd16(p + 2);
  h->ts = rd32(p + 4);
  h->ssrc = rd32(p + 8);
  h->header_len = off;
  h->payload = p + off;
  h->payload_len = n - off - pad;
  return 0;
}

size_t rtp_write_header(uint8_t *p, int marker, int pt, uint16_t seq, uint32_t ts, uint32_t ssrc) {
  p[0] = 0x80;
  p[1] = (uint8_t)((marker ? 0x80 : 0) | (pt & 0x7f));
  p[2] = (uint8_t)(seq >> 8), p[3] = (uint8_t)seq;
  p[4] = (uint8_t)(ts >> 24), p[5] = (uint8_t)(ts >> 16), p[6] = (uint8_t)(ts >> 8), p[7] = (uint8_t)ts;
  p[8] = (uint8_t)(ssrc >> 24), p[9] = (uint8_t)(ssrc >> 16), p[10] = (uint8_t)(ssrc >> 8),
  p[11] = (uint8_t)ssrc;
  return 12;
}

void rtp_stats_init(struct rtp_stats *s) { memset(s, 0, sizeof *s); }

static void init_seq(struct rtp_stats *s, uint16_t seq) {
  s->base_seq = seq;
  s->max_seq = seq;
  s->bad_seq = 1u << 16 | 1; /* so seq == bad_seq is false */
  s->cycles = 0;
  s->received = 0;
  s->received_prior = 0;
  s->expected_prior = 0;
}

static int update_seq(struct rtp_stats *s, uint16_t seq) {
  uint16_t udelta = (uint16_t)(seq - s->max_seq);
  if (s->probation) {
    if (seq == (uint16_t)(s->max_seq + 1)) {
      s->probation--;
      s->max_seq = seq;
      if (s->probation == 0) {
        init_seq(s, seq);
        s->received++;
        return 0;
      }
    } else {
      s->probation = MIN_SEQUENTIAL - 1;
      s->max_seq = seq;
    }
    return -1;
  }
  if (udelta < MAX_DROPOUT) {
    if (seq < s->max_seq) s->cycles += 1u << 16;
    s->max_seq = seq;
  } else if (udelta <= 65535 - MAX_MISORDER) {
    if (seq == s->bad_seq) {
      init_seq(s, seq); /* the source restarted */
    } else {
      s->bad_seq = (uint32_t)(seq + 1) & 0xffff;
      return -1;
    }
  }
  /* else: duplicate or reordered, counted */
  s->received++;
  return 0;
}

int rtp_stats_update(struct rtp_stats *s, uint16_t seq, uint32_t ts, uint64_t arrival_ms, int clock_hz) {
  if (!s->started) {
    init_seq(s, seq);
    s->max_seq = (uint16_t)(seq - 1);
    s->probation = MIN_SEQUENTIAL;
    s->started = 1;
  }
  int rc = update_seq(s, seq);
  int64_t arrival = (int64_t)(arrival_ms * (uint64_t)clock_hz / 1000);
  int64_t transit = arrival - (int64_t)ts;
  if (s->last_transit) {
    int64_t d = transit - s->last_transit;
    if (d < 0) d = -d;
    s->jitter += ((double)d - s->jitter) / 16.0;
  }
  s->last_transit = transit;
  return rc;
}

void rtp_stats_report(struct rtp_stats *s, uint32_t ssrc, uint64_t now_ms,
                      struct rtp_report_block *rb) {
  uint32_t extended_max = s->cycles + s->max_seq;
  uint32_t expected = s->received ? extended_max - s->base_seq + 1 : 0;
  int64_t lost = (int64_t)expected - s->received;
  if (lost > 0x7fffff) lost = 0x7fffff;
  if (lost < -0x800000) lost = -0x800000;
  uint32_t expected_interval = expected - s->expected_prior;
  uint32_t received_interval = s->received - s->received_prior;
  s->expected_prior = expected;
  s->received_prior = s->received;
  int64_t lost_interval = (int64_t)expected_interval - received_interval;
  memset(rb, 0, sizeof *rb);
  rb->ssrc = ssrc;
  rb->fraction_lost = expected_interval == 0 || lost_interval <= 0
                          ? 0 : (uint8_t)((lost_interval << 8) / expected_interval);
  rb->cumulative_lost = (int32_t)lost;
  rb->highest_seq = extended_max;
  rb->jitter = (uint32_t)s->jitter;
  rb->lsr = s->last_sr_ntp_mid;
  /* Delay since the last SR in units of 1/65536 s. */
  rb->dlsr = s->last_sr_arrival_ms ? (uint32_t)((now_ms - s->last_sr_arrival_ms) * 65536 / 1000) : 0;
}
