/*
 * RTCP.
 *
 * The server sends a compound packet about once a second per call: a
 * sender report once it has sent audio (so the browser can sync and measure
 * round-trip time), with a report block on the browser's stream whose loss
 * fraction makes the browser's Opus encoder turn its in-band FEC up, and an
 * SDES CNAME, which RFC 3550 requires in every compound. It reads the
 * browser's reports for the loss it sees on our stream, which steers our
 * encoder the same way.
 */
#include "rtc/rtcp.h"

#include <errno.h>
#include <string.h>

static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static void read_block(const uint8_t *b, struct rtp_report_block *rb) {
  rb->ssrc = rd32(b);
  rb->fraction_lost = b[4];
  int32_t lost = (int32_t)(rd32(b + 4) & 0xffffff);
  if (lost & 0x800000) lost -= 0x1000000;
  rb->cumulative_lost = lost;
  rb->highest_seq = rd32(b + 8);
  rb->jitter = rd32(b + 12);
  rb->lsr = rd32(b + 16);
  rb->dlsr = rd32(b + 20);
}

static void read_blocks(const uint8_t *b, int count, struct rtcp_info *info) {
  for (int i = 0; i < count && info->nblocks < 4; i++) read_block(b + 24 * i, &info->blocks[info->nblocks++]);
}

int rtcp_parse(const uint8_t *p, size_t n, struct rtcp_info *info) {
  memset(info, 0, sizeof *info);
  if (n < 4) return -EBADMSG;
  for (size_t off = 0; off < n;) {
    if (off + 4 > n || (p[off] >> 6) != 2) return -EBADMSG;
    int count = p[off] & 0x1f, type = p[off + 1];
    size_t len = 4 * ((size_t)(p[off + 2] << 8 | p[off + 3]) + 1);
    if (off + len > n) return -EBADMSG;
    const uint8_t *b = p + off;
    if (type == RTCP_SR) {
      if (len < 28 + 24 * (size_t)count) return -EBADMSG;
      info->has_sr = 1;
      info->sr_ssrc = rd32(b + 4);
      info->sr_ntp_mid = (rd32(b + 8) << 16) | (rd32(b + 12) >> 16);
      read_blocks(b + 28, count, info);
    } else if (type == RTCP_RR) {
      if (len < 8 + 24 * (size_t)count) return -EBADMSG;
      read_blocks(b + 8, count, info);
    } else if (type == RTCP_BYE) {
      if (len < 4 + 4 * (size_t)count) return -EBADMSG;
      info->bye = 1;
      for (int i = 0; i < count && info->nbye < RTCP_BYE_MAX; i++) info->bye_ssrc[info->nbye++] = rd32(b + 4 + 4 * i);
    }
    off += len;
  }
  return 0;
}

int rtcp_bye_names(const struct rtcp_info *info, uint32_t ssrc) {
  for (int i = 0; i < info->nbye; i++)
    if (info->bye_ssrc[i] == ssrc) return 1;
  return 0;
}

uint64_t rtcp_ntp_from_ms(uint64_t unix_ms) {
  uint64_t secs = unix_ms / 1000 + 2208988800ull; /* 1900 -> 1970 */
  uint64_t frac = ((unix_ms % 1000) << 32) / 1000;
  return secs << 32 | frac;
}

static void write_block(uint8_t *b, const struct rtp_report_block *rb) {
  wr32(b, rb->ssrc);
  wr32(b + 4, (uint32_t)rb->fraction_lost << 24 | ((uint32_t)rb->cumulative_lost & 0xffffff));
  wr32(b + 8, rb->highest_seq);
  wr32(b + 12, rb->jitter);
  wr32(b + 16, rb->lsr);
  wr32(b + 20, rb->dlsr);
}

static void header(uint8_t *p, int count, int type, size_t len) {
  p[0] = (uint8_t)(0x80 | count);
  p[1] = (uint8_t)type;
  size_t words = len / 4 - 1;
  p[2] = (uint8_t)(words >> 8), p[3] = (uint8_t)words;
}

int rtcp_build(uint8_t *out, size_t cap, uint32_t ssrc, const struct rtcp_sender_info *si,
               const struct rtp_report_block *rb, const char *cname) {
  size_t cn = strlen(cname);
  if (cn > 255) return -EINVAL;
  size_t first = (si ? 28 : 8) + (rb ? 24 : 0);
  size_t sdes = (8 + 2 + cn + 1 + 3) & ~(size_t)3; /* chunk + end marker, padded to 32 bits */
  if (first + sdes > cap) return -ENOSPC;
  memset(out, 0, first + sdes);
  header(out, rb ? 1 : 0, si ? RTCP_SR : RTCP_RR, first);
  wr32(out + 4, ssrc);
  size_t at = 8;
  if (si) {
    wr32(out + 8, (uint32_t)(si->ntp >> 32));
    wr32(out + 12, (uint32_t)si->ntp);
    wr32(out + 16, si->rtp_ts);
    wr32(out + 20, si->packets);
    wr32(out + 24, si->octets);
    at = 28;
  }
  if (rb) write_block(out + at, rb);
  uint8_t *s = out + first;
  header(s, 1, RTCP_SDES, sdes);
  wr32(s + 4, ssrc);
  s[8] = 1; /* CNAME */
  s[9] = (uint8_t)cn;
  memcpy(s + 10, cname, cn);
  return (int)(first + sdes);
}
