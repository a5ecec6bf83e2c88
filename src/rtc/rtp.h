/*
 * rtp: RTP packets (RFC 3550), receive statistics, and RFC 7983
 * demultiplexing of everything that arrives on one WebRTC port.
 */
#ifndef TS_RTC_RTP_H
#define TS_RTC_RTP_H

#include <stddef.h>
#include <stdint.h>

enum rtp_demux_kind { RTP_DEMUX_UNKNOWN = 0, RTP_DEMUX_STUN, RTP_DEMUX_DTLS, RTP_DEMUX_RTP, RTP_DEMUX_RTCP };

/* By the first byte (RFC 7983) and, for RTP vs RTCP, the payload type (RFC 5761). */
enum rtp_demux_kind rtp_demux(const uint8_t *p, size_t n);

struct rtp_header {
  int marker, pt;
  uint16_t seq;
  uint32_t ts, ssrc;
  size_t header_len;        /* payload starts here */
  const uint8_t *payload;
  size_t payload_len;
};

/* -EBADMSG on anything malformed (version, CSRC/extension/padding overruns). */
int rtp_parse(const uint8_t *p, size_t n, struct rtp_header *h);
/* Writes a 12-byte header; returns 12. */
size_t rtp_write_header(uint8_t *p, int marker, int pt, uint16_t seq, uint32_t ts, uint32_t ssrc);

/* Receive statistics for one source, RFC 3550 A.1, A.3 and A.8. */
struct rtp_stats {
  uint16_t max_seq;
  uint32_t cycles, base_seq, bad_seq, received, expected_prior, received_prior;
  int probation, started;
  double jitter;           /* in timestamp units */
  int64_t last_transit;
  uint32_t last_sr_ntp_mid;  /* middle 32 bits of the last SR's NTP time */
  uint64_t last_sr_arrival_ms;
};

void rtp_stats_init(struct rtp_stats *s);
/* Returns 0 when the packet is in sequence (or acceptable), -1 to discard it. */
int rtp_stats_update(struct rtp_stats *s, uint16_t seq, uint32_t ts, uint64_t arrival_ms, int clock_hz);

struct rtp_report_block {
  uint32_t ssrc;
  uint8_t fraction_lost;   /* since the last report, out of 256 */
  int32_t cumulative_lost; /* 24-bit signed */
  uint32_t highest_seq, jitter, lsr, dlsr;
};

/* Fills a report block for the interval since the last call. */
void rtp_stats_report(struct rtp_stats *s, uint32_t ssrc, uint64_t now_ms,
                      struct rtp_report_block *rb);

#endif
