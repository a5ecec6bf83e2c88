/*
 * Ogg Opus from packets that are already coded.
 *
 * A call recording holds two voices that exist on the server only as Opus
 * packets: the caller's, as they arrive, and the AI's, as they are sent.
 * Decoding both and encoding a stereo file would cost a decoder and an
 * encoder per call and lose quality twice. Opus has a better answer: a
 * multistream packet (RFC 6716 Appendix B, RFC 7845 section 5.1.1) is just
 * the packets of several independent streams one after the other, every
 * one but the last in self-delimiting framing, which states the length
 * of its last frame so that the next stream's packet can follow. With
 * channel mapping family 1, two streams and no coupled ones, a player
 * decodes stream 0 to the left channel and stream 1 to the right. So
 * pairing costs a parse of the first packet and a copy of both.
 *
 * A tick where one side has no packet (lost, or the caller not heard yet)
 * gets a zero-length frame: a TOC byte alone, which the decoder treats as
 * a lost frame and conceals, fading out whatever was playing, exactly as
 * the live receiver did. Concealment never quite ends (CELT's settles on a
 * faint noise), so a side that stays without packets is given a coded
 * silence frame instead (oggopus_silence; the caller decides when). Every
 * stream of a multistream packet must last as long, so a packet that is
 * not exactly 20 ms long is replaced by a zero-length frame too.
 *
 * The writer keeps the page structure simple for players that seek by
 * bisection (browsers, over HTTP range requests): the headers on pages of
 * their own, then audio pages holding whatever was added since the last
 * flush, each with the granule position (48 kHz samples) of the last packet
 * it completes. The pre-skip is the encoder's delay, so that what plays at
 * time t of the file was heard at t after the first tick. Pages go out with
 * write(2) at each flush, so a process that dies leaves a file that plays
 * up to its last flush.
 */
#include "audio/oggopus.h"

#include <errno.h>
#include <ogg/ogg.h>
#include <opus/opus.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* TOC of a zero-length frame: config 31 (CELT, full band, 20 ms), code 0.
 * Only its duration matters: a decoder conceals in the mode it last used. */
#define ZERO_FRAME_TOC 0xF8

struct oggopus_writer {
  int fd;
  ogg_stream_state os;
  int64_t packetno;
  uint64_t samples;
};

/* --- packets -------------------------------------------------------------- */

/* An RFC 6716 section 3.2.1 frame length: one byte below 252, else two. */
static size_t put_length(uint8_t *p, size_t n) {
  if (n < 252) {
    p[0] = (uint8_t)n;
    return 1;
  }
  p[0] = (uint8_t)(252 + (n & 3));
  p[1] = (uint8_t)((n - p[0]) >> 2);
  return 2;
}

static size_t length_bytes(size_t n) { return n < 252 ? 1 : 2; }

int oggopus_self_delimit(const uint8_t *pkt, size_t len, uint8_t *out, size_t cap) {
  const unsigned char *frames[48];
  opus_int16 sizes[48];
  unsigned char toc;
  if (!pkt || len == 0 || len > OGGOPUS_MAX_SIDE) return -EBADMSG;
  int n = opus_packet_parse(pkt, (opus_int32)len, &toc, frames, sizes, NULL);
  if (n <= 0) return -EBADMSG;
  int code = pkt[0] & 3, vbr = code == 3 && (pkt[1] & 0x80);
  int stated = code == 2 || vbr ? n : 1; /* lengths written: all, or one for all */
  size_t need = 1 + (code == 3), o = 0;
  for (int i = 0; i < n; i++) need += (size_t)sizes[i];
  for (int i = n - stated; i < n; i++) need += length_bytes((size_t)sizes[i]);
  if (need > cap) return -ENOSPC;
  out[o++] = pkt[0];
  if (code == 3) out[o++] = (uint8_t)((vbr ? 0x80 : 0) | n); /* padding flag cleared */
  for (int i = n - stated; i < n; i++) o += put_length(out + o, (size_t)sizes[i]);
  for (int i = 0; i < n; i++) {
    memcpy(out + o, frames[i], (size_t)sizes[i]);
    o += (size_t)sizes[i];
  }
  return (int)o;
}

const uint8_t *oggopus_silence(size_t *len) {
  static const uint8_t silence[3] = {0xF8, 0xFF, 0xFE}; /* checked against libopus by the tests */
  *len = sizeof silence;
  return silence;
}

int oggopus_usable(const uint8_t *pkt, size_t len) {
  unsigned char toc;
  opus_int16 sizes[48];
  if (!pkt || len == 0 || len > OGGOPUS_MAX_SIDE) return 0;
  if (opus_packet_parse(pkt, (opus_int32)len, &toc, NULL, sizes, NULL) <= 0) return 0;
  return opus_packet_get_nb_samples(pkt, (opus_int32)len, OGGOPUS_RATE) == OGGOPUS_FRAME;
}

int oggopus_pair(const uint8_t *left, size_t left_len, const uint8_t *right, size_t right_len,
                 uint8_t *out, size_t cap, unsigned *bad) {
  unsigned b = 0;
  if (left && left_len && !oggopus_usable(left, left_len)) b |= OGGOPUS_LEFT_BAD;
  if (right && right_len && !oggopus_usable(right, right_len)) b |= OGGOPUS_RIGHT_BAD;
  if (bad) *bad = b;
  if (!left || !left_len || (b & OGGOPUS_LEFT_BAD)) left_len = 0;
  if (!right || !right_len || (b & OGGOPUS_RIGHT_BAD)) right_len = 0;
  size_t o;
  if (left_len) {
    int n = oggopus_self_delimit(left, left_len, out, cap);
    if (n < 0) return n; /* -ENOSPC: the packet was checked already */
    o = (size_t)n;
  } else {
    if (cap < 2) return -ENOSPC;
    out[0] = ZERO_FRAME_TOC;
    out[1] = 0; /* self-delimited length of the one frame */
    o = 2;
  }
  size_t rn = right_len ? right_len : 1;
  if (cap - o < rn) return -ENOSPC;
  if (right_len) memcpy(out + o, right, right_len);
  else out[o] = ZERO_FRAME_TOC;
  return (int)(o + rn);
}

/* --- the Ogg stream ---------------------------------------------------------- */

static void put_le16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static int write_all(int fd, const unsigned char *p, long n) {
  while (n > 0) {
    ssize_t k = write(fd, p, (size_t)n);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return -errno;
    if (k == 0) return -EIO;
    p += k;
    n -= k;
  }
  return 0;
}

/* Writes every packet queued in the stream as pages. */
static int write_pages(struct oggopus_writer *w) {
  ogg_page pg;
  int rc = 0;
  while (rc == 0 && ogg_stream_flush(&w->os, &pg)) {
    rc = write_all(w->fd, pg.header, pg.header_len);
    if (rc == 0) rc = write_all(w->fd, pg.body, pg.body_len);
  }
  return rc;
}

static int add_header(struct oggopus_writer *w, uint8_t *data, size_t len) {
  ogg_packet op = {.packet = data, .bytes = (long)len, .b_o_s = w->packetno == 0,
                   .granulepos = 0, .packetno = w->packetno++};
  if (ogg_stream_packetin(&w->os, &op)) return -ENOMEM;
  return write_pages(w); /* each header ends its page, as RFC 7845 requires */
}

/* RFC 7845 section 5.1, mapping family 1: stream 0 is the left channel. */
static int write_head(struct oggopus_writer *w) {
  uint8_t h[23];
  memcpy(h, "OpusHead", 8);
  h[8] = 1;            /* version */
  h[9] = 2;            /* channels */
  put_le16(h + 10, OGGOPUS_PRE_SKIP);
  put_le32(h + 12, OGGOPUS_RATE);
  put_le16(h + 16, 0); /* output gain */
  h[18] = 1;           /* mapping family */
  h[19] = 2;           /* streams */
  h[20] = 0;           /* coupled streams */
  h[21] = 0;           /* left: stream 0 */
  h[22] = 1;           /* right: stream 1 */
  return add_header(w, h, sizeof h);
}

/* RFC 7845 section 5.2. */
static int write_tags(struct oggopus_writer *w, const char *vendor, const char *const *tags,
                      int ntags) {
  size_t len = 8 + 4 + strlen(vendor) + 4;
  for (int i = 0; i < ntags; i++) len += 4 + strlen(tags[i]);
  if (len > (1u << 20)) return -EINVAL;
  uint8_t *p = malloc(len);
  if (!p) return -ENOMEM;
  size_t o = 0, vn = strlen(vendor);
  memcpy(p, "OpusTags", 8);
  put_le32(p + 8, (uint32_t)vn);
  memcpy(p + 12, vendor, vn);
  o = 12 + vn;
  put_le32(p + o, (uint32_t)ntags);
  o += 4;
  for (int i = 0; i < ntags; i++) {
    size_t tn = strlen(tags[i]);
    put_le32(p + o, (uint32_t)tn);
    memcpy(p + o + 4, tags[i], tn);
    o += 4 + tn;
  }
  int rc = add_header(w, p, o);
  free(p);
  return rc;
}

int oggopus_writer_new(struct oggopus_writer **out, int fd, uint32_t serial, const char *vendor,
                       const char *const *tags, int ntags) {
  if (fd < 0 || !vendor || ntags < 0 || (ntags && !tags)) return -EINVAL;
  struct oggopus_writer *w = calloc(1, sizeof *w);
  if (!w) return -ENOMEM;
  w->fd = fd;
  if (ogg_stream_init(&w->os, (int)serial)) {
    free(w);
    return -ENOMEM;
  }
  int rc = write_head(w);
  if (rc == 0) rc = write_tags(w, vendor, tags, ntags);
  if (rc) {
    oggopus_writer_free(w);
    return rc;
  }
  *out = w;
  return 0;
}

int oggopus_writer_add(struct oggopus_writer *w, const uint8_t *pkt, size_t len, int eos) {
  if (!pkt || len == 0 || len > OGGOPUS_MAX_PAIR) return -EINVAL;
  w->samples += OGGOPUS_FRAME;
  ogg_packet op = {.packet = (unsigned char *)pkt, .bytes = (long)len, .e_o_s = !!eos,
                   .granulepos = (ogg_int64_t)w->samples, .packetno = w->packetno++};
  return ogg_stream_packetin(&w->os, &op) ? -ENOMEM : 0;
}

int oggopus_writer_flush(struct oggopus_writer *w) { return write_pages(w); }

uint64_t oggopus_writer_samples(const struct oggopus_writer *w) { return w->samples; }

void oggopus_writer_free(struct oggopus_writer *w) {
  if (!w) return;
  ogg_stream_clear(&w->os);
  free(w);
}
