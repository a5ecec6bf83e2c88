/* rtcp: RTCP compound packets (RFC 3550 6), what a voice call needs of them. */
#ifndef TS_RTC_RTCP_H
#define TS_RTC_RTCP_H

#include <stddef.h>
#include <stdint.h>

#include "rtc/rtp.h"

#define RTCP_SR 200
#define RTCP_RR 201
#define RTCP_SDES 202
#define RTCP_BYE 203
#define RTCP_BYE_MAX 8

struct rtcp_info {
  int has_sr;
  uint32_t sr_ssrc, sr_ntp_mid; /* for LSR in our next report */
  int nblocks;
  struct rtp_report_block blocks[4];
  int bye;                  /* a BYE was in the compound */
  int nbye;                 /* the sources it names (the first RTCP_BYE_MAX of them) */
  uint32_t bye_ssrc[RTCP_BYE_MAX];
};

/* Reads every packet of a compound; -EBADMSG when a length or count does not fit. */
int rtcp_parse(const uint8_t *p, size_t n, struct rtcp_info *info);

/*
 * Whether the compound says goodbye for `ssrc`: its BYE names that source
 * (RFC 3550 6.6). A compound need not carry a sender report (a browser that
 * has sent nothing yet, or one sending a receiver report, says BYE too), so
 * the BYE's own list is what counts.
 */
int rtcp_bye_names(const struct rtcp_info *info, uint32_t ssrc);

struct rtcp_sender_info {
  uint64_t ntp;
  uint32_t rtp_ts, packets, octets;
};

/*
 * SR (when `si` is non-NULL) or RR, with `rb` as its report block when
 * non-NULL, then SDES CNAME. Returns the length or -ENOSPC.
 */
int rtcp_build(uint8_t *out, size_t cap, uint32_t ssrc, const struct rtcp_sender_info *si,
               const struct rtp_report_block *rb, const char *cname);

/* Wall clock (ms since the Unix epoch) as a 64-bit NTP timestamp. */
uint64_t rtcp_ntp_from_ms(uint64_t unix_ms);

#endif
