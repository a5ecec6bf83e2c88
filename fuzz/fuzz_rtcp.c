/*
 * fuzz_rtcp: an RTCP compound packet as a media worker gets it once SRTCP
 * has authenticated it.
 *
 * Every count and length field is the sender's choice. Whatever the parser
 * makes of it must be self-consistent, and the report we would send back,
 * built from what it read, must parse again to the same facts.
 */
#include <string.h>

#include "fuzz.h"
#include "rtc/rtcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *p = malloc(size ? size : 1);
  if (!p) return 0;
  if (size) memcpy(p, data, size);
  struct rtcp_info info;
  int rc = rtcp_parse(p, size, &info);
  free(p);
  if (rc != 0) {
    FUZZ_CHECK(rc < 0);
    return 0;
  }
  FUZZ_CHECK(info.nblocks >= 0 && info.nblocks <= 4);

  struct rtp_report_block rb = info.nblocks ? info.blocks[0] : (struct rtp_report_block){0};
  rb.lsr = info.sr_ntp_mid;
  struct rtcp_sender_info si = {.ntp = rtcp_ntp_from_ms(1700000000000ull + info.sr_ssrc % 1000),
                                .rtp_ts = info.sr_ssrc, .packets = 1, .octets = 160};
  uint8_t out[256];
  int n = rtcp_build(out, sizeof out, info.sr_ssrc, info.has_sr ? &si : NULL, &rb, "fuzz-cname");
  FUZZ_CHECK(n > 0 && (size_t)n <= sizeof out);
  struct rtcp_info again;
  FUZZ_CHECK(rtcp_parse(out, (size_t)n, &again) == 0);
  FUZZ_CHECK(again.has_sr == info.has_sr && again.nblocks == 1 && !again.bye);
  FUZZ_CHECK(again.blocks[0].ssrc == rb.ssrc && again.blocks[0].highest_seq == rb.highest_seq);
  FUZZ_CHECK(again.blocks[0].fraction_lost == rb.fraction_lost);
  FUZZ_CHECK(again.blocks[0].cumulative_lost == rb.cumulative_lost);
  if (info.has_sr) FUZZ_CHECK(again.sr_ssrc == info.sr_ssrc);
  return 0;
}
