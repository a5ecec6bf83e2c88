/* oggopus: self-delimiting framing, two-stream packets, and Ogg Opus files that decode to each
 * side's audio on its own channel at the tick it was given, concealment, granules, truncation. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <opus/opus.h>

#include "audio/oggopus.h"
#include "oggread.h"

#define LEFT_HZ 440.0
#define RIGHT_HZ 1000.0

struct pkt {
  uint8_t data[1500];
  int len;
};

static OpusEncoder *encoder(int bitrate, int vbr) {
  int err;
  OpusEncoder *e = opus_encoder_create(48000, 1, OPUS_APPLICATION_AUDIO, &err);
  assert_non_null(e);
  opus_encoder_ctl(e, OPUS_SET_BITRATE(bitrate));
  opus_encoder_ctl(e, OPUS_SET_VBR(vbr));
  return e;
}

/* CELT at full band only, so that frames of different content keep one TOC
 * configuration and the repacketizer can join them. */
static OpusEncoder *celt_encoder(int bitrate, int vbr) {
  int err;
  OpusEncoder *e = opus_encoder_create(48000, 1, OPUS_APPLICATION_RESTRICTED_LOWDELAY, &err);
  assert_non_null(e);
  opus_encoder_ctl(e, OPUS_SET_BITRATE(bitrate));
  opus_encoder_ctl(e, OPUS_SET_VBR(vbr));
  opus_encoder_ctl(e, OPUS_SET_BANDWIDTH(OPUS_BANDWIDTH_FULLBAND));
  return e;
}

/* `n` samples of a tone at `hz`, from sample `at` of its run; amp 0 is silence. */
static void tone(int16_t *pcm, int n, long at, double hz, double amp) {
  for (int i = 0; i < n; i++) pcm[i] = (int16_t)(amp * sin(2 * M_PI * hz * (double)(at + i) / 48000));
}

/* `count` 20 ms packets of a tone, from a fresh encoder. */
static struct pkt *tone_packets(int count, double hz) {
  struct pkt *p = calloc((size_t)count, sizeof *p);
  OpusEncoder *e = encoder(32000, 1);
  int16_t pcm[960];
  for (int i = 0; i < count; i++) {
    tone(pcm, 960, (long)i * 960, hz, 8000);
    p[i].len = opus_encode(e, pcm, 960, p[i].data, sizeof p[i].data);
    assert_true(p[i].len > 0);
  }
  opus_encoder_destroy(e);
  return p;
}

/* Writes `ticks` pairs to a temporary file, flushing every `flush_every`; a NULL side or a
 * zero length is "no packet this tick". Returns the path (static). */
static const char *write_file(int ticks, struct pkt **left, struct pkt **right, int flush_every) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/test_oggopus_XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  struct oggopus_writer *w;
  const char *tags[] = {"TITLE=test"};
  assert_int_equal(oggopus_writer_new(&w, fd, 1234, "tingshuo-test", tags, 1), 0);
  uint8_t buf[OGGOPUS_MAX_PAIR];
  for (int i = 0; i < ticks; i++) {
    const struct pkt *l = left[i], *r = right[i];
    int n = oggopus_pair(l ? l->data : NULL, l ? (size_t)l->len : 0, r ? r->data : NULL,
                         r ? (size_t)r->len : 0, buf, sizeof buf, NULL);
    assert_true(n > 0);
    assert_int_equal(oggopus_writer_add(w, buf, (size_t)n, i == ticks - 1), 0);
    if ((i + 1) % flush_every == 0) assert_int_equal(oggopus_writer_flush(w), 0);
  }
  assert_int_equal(oggopus_writer_flush(w), 0);
  assert_int_equal(oggopus_writer_samples(w), (uint64_t)ticks * 960);
  oggopus_writer_free(w);
  close(fd);
  return path;
}

/* --- the file ------------------------------------------------------------------ */

static void header_tags_and_granules(void **state) {
  enum { T = 120 };
  struct pkt *a = tone_packets(T, LEFT_HZ), *b = tone_packets(T, RIGHT_HZ);
  struct pkt *left[T], *right[T];
  for (int i = 0; i < T; i++) left[i] = &a[i], right[i] = &b[i];
  const char *path = write_file(T, left, right, 50);
  struct oggread r;
  assert_int_equal(oggread_file(path, &r, -1), 0);
  unlink(path);

  /* OpusHead: version 1, 2 channels, pre-skip 312, 48 kHz, gain 0, family 1, 2 streams, 0 coupled,
   * L=0 R=1. */
  assert_int_equal(r.head_len, 23);
  const uint8_t head[23] = {'O', 'p', 'u', 's', 'H', 'e', 'a', 'd', 1, 2, 0x38, 1, 0x80, 0xbb, 0, 0,
                            0, 0, 1, 2, 0, 0, 1};
  assert_memory_equal(r.head, head, 23);
  assert_memory_equal(r.tags, "OpusTags", 8);
  assert_non_null(memmem(r.tags, (size_t)r.tags_len, "tingshuo-test", 13));
  assert_non_null(memmem(r.tags, (size_t)r.tags_len, "TITLE=test", 10));

  /* Headers alone on the first two pages; then audio pages, each flush ending one, each
   * page's granule position the end of its last packet in 48 kHz samples. */
  assert_true(r.bos_first);
  assert_int_equal(r.granule[0], 0);
  assert_int_equal(r.granule[1], 0);
  assert_int_equal(r.done[1], 0);
  int ends_50 = 0, ends_100 = 0;
  for (int p = 2; p < r.pages; p++) {
    assert_true(r.done[p] > r.done[p - 1]); /* packets never span pages here */
    assert_int_equal(r.granule[p], (int64_t)r.done[p] * 960);
    ends_50 += r.done[p] == 50;
    ends_100 += r.done[p] == 100;
  }
  assert_int_equal(ends_50 + ends_100, 2);
  assert_int_equal(r.granule[r.pages - 1], T * 960);
  assert_true(r.eos_last);
  assert_int_equal(r.eos_pages, 1);
  assert_int_equal(r.packets, T);
  assert_int_equal(r.decode_errors, 0);
  assert_int_equal(r.frames, (size_t)T * 960);
  oggread_free(&r);
  free(a);
  free(b);
}

/* Left: nothing for 30 ticks, then a 440 Hz tone. Right: a 1 kHz tone for 60 ticks, then
 * nothing. Each channel holds its own tone only, starting at the very tick it was given. */
static void each_side_on_its_channel_in_time(void **state) {
  enum { T = 100, LEFT_FROM = 30, RIGHT_UNTIL = 60 };
  struct pkt *a = tone_packets(T - LEFT_FROM, LEFT_HZ), *b = tone_packets(RIGHT_UNTIL, RIGHT_HZ);
  struct pkt *left[T], *right[T];
  for (int i = 0; i < T; i++) {
    left[i] = i >= LEFT_FROM ? &a[i - LEFT_FROM] : NULL;
    right[i] = i < RIGHT_UNTIL ? &b[i] : NULL;
  }
  const char *path = write_file(T, left, right, 50);
  struct oggread r;
  assert_int_equal(oggread_file(path, &r, -1), 0);
  unlink(path);
  assert_int_equal(r.frames, (size_t)T * 960);

  size_t first_left = T;
  for (size_t f = 0; f < T && first_left == T; f++)
    if (oggread_rms(&r, 0, f) > 100) first_left = f;
  assert_int_equal(first_left, LEFT_FROM); /* nothing before: a decoder with no history conceals to zeros */
  for (size_t f = LEFT_FROM + 2; f < T; f++) {
    double mine = oggread_tone(&r, 0, f, LEFT_HZ), other = oggread_tone(&r, 0, f, RIGHT_HZ);
    assert_true(mine > 4000);
    assert_true(other < mine * 0.05);
  }
  assert_true(oggread_rms(&r, 1, 0) > 100); /* the right side starts at once */
  for (size_t f = 2; f < RIGHT_UNTIL; f++) {
    double mine = oggread_tone(&r, 1, f, RIGHT_HZ), other = oggread_tone(&r, 1, f, LEFT_HZ);
    assert_true(mine > 4000);
    assert_true(other < mine * 0.05);
  }
  /* After its last packet the right side is concealed: the tone fades out. */
  double before = oggread_rms(&r, 1, RIGHT_UNTIL - 1);
  assert_true(oggread_rms(&r, 1, RIGHT_UNTIL) > before * 0.5);
  for (size_t f = RIGHT_UNTIL + 10; f < T; f++) assert_true(oggread_rms(&r, 1, f) < before * 0.1);
  oggread_free(&r);
  free(a);
  free(b);
}

/* A tick without a packet is a zero-length frame: the player conceals it exactly as a mono
 * decoder told of a lost packet would, and the stream goes on. */
static void missing_ticks_are_concealed(void **state) {
  enum { T = 80, GAP_FROM = 40, GAP_TO = 45 };
  struct pkt *a = tone_packets(T, LEFT_HZ), *b = tone_packets(T, RIGHT_HZ);
  struct pkt *left[T], *right[T];
  for (int i = 0; i < T; i++) {
    left[i] = i >= GAP_FROM && i < GAP_TO ? NULL : &a[i];
    right[i] = &b[i];
  }
  const char *path = write_file(T, left, right, 50);
  struct oggread r;
  assert_int_equal(oggread_file(path, &r, -1), 0);
  unlink(path);
  assert_int_equal(r.decode_errors, 0);
  assert_int_equal(r.frames, (size_t)T * 960);

  int err;
  OpusDecoder *mono = opus_decoder_create(48000, 1, &err);
  int16_t pcm[960];
  for (int i = 0; i < T; i++) {
    int n = left[i] ? opus_decode(mono, a[i].data, a[i].len, pcm, 960, 0)
                    : opus_decode(mono, NULL, 0, pcm, 960, 0);
    assert_int_equal(n, 960);
    for (int k = 0; k < 960; k++) assert_int_equal(r.pcm[2 * (i * 960 + k)], pcm[k]);
  }
  opus_decoder_destroy(mono);
  /* Concealment continues the tone at first; it is not a hole. */
  assert_true(oggread_rms(&r, 0, GAP_FROM) > 1000);
  oggread_free(&r);
  free(a);
  free(b);
}

/* A crash leaves the pages written so far: they decode, up to the last complete page. */
static void truncated_file_plays_to_its_last_page(void **state) {
  enum { T = 150 };
  struct pkt *a = tone_packets(T, LEFT_HZ), *b = tone_packets(T, RIGHT_HZ);
  struct pkt *left[T], *right[T];
  for (int i = 0; i < T; i++) left[i] = &a[i], right[i] = &b[i];
  const char *path = write_file(T, left, right, 50);
  struct oggread full;
  assert_int_equal(oggread_file(path, &full, -1), 0);
  FILE *f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fclose(f);

  /* Cut anywhere: every complete page plays, the rest is ignored. */
  struct oggread cut;
  for (long at = size - 1; at > size / 3; at -= 97) {
    assert_int_equal(oggread_file(path, &cut, at), 0);
    int last = cut.pages - 1, whole = 0;
    for (int p = 0; p < full.pages; p++)
      if (full.end[p] <= at) whole = full.done[p];
    assert_int_equal(cut.packets, whole);
    assert_int_equal(cut.packets, cut.done[last]);
    assert_int_equal(cut.granule[last], (int64_t)cut.packets * 960);
    assert_int_equal(cut.decode_errors, 0);
    assert_false(cut.eos_last);
    assert_memory_equal(cut.pcm, full.pcm, (size_t)cut.packets * 960 * 2 * sizeof(int16_t));
    oggread_free(&cut);
  }
  unlink(path);
  oggread_free(&full);
  free(a);
  free(b);
}

/* --- packets ----------------------------------------------------------------------- */

/* Packets of each TOC code, from `frame` samples per frame, joined by the repacketizer. */
static int join(OpusEncoder *e, int frame, int count, const double *amps, uint8_t *out) {
  OpusRepacketizer *rp = opus_repacketizer_create();
  uint8_t parts[6][1500];
  int16_t pcm[960];
  for (int i = 0; i < count; i++) {
    tone(pcm, frame, (long)i * frame, LEFT_HZ, amps[i]);
    int n = opus_encode(e, pcm, frame, parts[i], sizeof parts[i]);
    assert_true(n > 0);
    assert_int_equal(opus_repacketizer_cat(rp, parts[i], n), OPUS_OK);
  }
  int len = opus_repacketizer_out(rp, out, 1500);
  opus_repacketizer_destroy(rp);
  assert_true(len > 0);
  return len;
}

/* `sd` (self-delimited) followed by a 20 ms packet is a valid two-stream packet whose left
 * channel decodes exactly like `orig` on its own. */
static void decodes_like_original(const uint8_t *orig, int len, const uint8_t *sd, int sdlen) {
  struct pkt *right = tone_packets(1, RIGHT_HZ);
  uint8_t ms[4000];
  memcpy(ms, sd, (size_t)sdlen);
  memcpy(ms + sdlen, right->data, (size_t)right->len);
  int err;
  unsigned char map[2] = {0, 1};
  OpusMSDecoder *md = opus_multistream_decoder_create(48000, 2, 2, 0, map, &err);
  OpusDecoder *l = opus_decoder_create(48000, 1, &err), *r = opus_decoder_create(48000, 1, &err);
  int16_t both[2 * 960], lp[960], rp[960];
  assert_int_equal(opus_multistream_decode(md, ms, sdlen + right->len, both, 960, 0), 960);
  assert_int_equal(opus_decode(l, orig, len, lp, 960, 0), 960);
  assert_int_equal(opus_decode(r, right->data, right->len, rp, 960, 0), 960);
  for (int k = 0; k < 960; k++) {
    assert_int_equal(both[2 * k], lp[k]);
    assert_int_equal(both[2 * k + 1], rp[k]);
  }
  opus_multistream_decoder_destroy(md);
  opus_decoder_destroy(l);
  opus_decoder_destroy(r);
  free(right);
}

static void check_self_delimit(const uint8_t *p, int len, int code, int extra) {
  assert_int_equal(p[0] & 3, code);
  uint8_t sd[1600];
  int n = oggopus_self_delimit(p, (size_t)len, sd, sizeof sd);
  assert_int_equal(n, len + extra);
  assert_int_equal(sd[0], p[0]);
  assert_int_equal(oggopus_self_delimit(p, (size_t)len, sd, (size_t)n - 1), -ENOSPC);
  decodes_like_original(p, len, sd, n);
}

static void self_delimiting_codes_0_to_3(void **state) {
  uint8_t p[1500];
  int16_t pcm[960];
  const double loud[4] = {8000, 8000, 8000, 8000}, mixed[4] = {0, 8000, 0, 8000};

  OpusEncoder *e = encoder(32000, 1);
  tone(pcm, 960, 0, LEFT_HZ, 8000);
  int len = opus_encode(e, pcm, 960, p, sizeof p); /* code 0: one length byte added */
  check_self_delimit(p, len, 0, 1);
  opus_encoder_destroy(e);

  e = encoder(200000, 0); /* code 0 with a frame over 251 bytes: a two-byte length */
  len = opus_encode(e, pcm, 960, p, sizeof p);
  assert_true(len >= 252);
  check_self_delimit(p, len, 0, 2);
  opus_encoder_destroy(e);

  e = celt_encoder(32000, 0); /* code 1: two 10 ms frames of one size (CBR) */
  len = join(e, 480, 2, loud, p);
  check_self_delimit(p, len, 1, 1);
  opus_encoder_destroy(e);

  e = celt_encoder(32000, 1); /* code 2: two 10 ms frames of different sizes */
  len = join(e, 480, 2, mixed, p);
  check_self_delimit(p, len, 2, 1);
  opus_encoder_destroy(e);

  e = celt_encoder(64000, 1); /* code 3, VBR: four 5 ms frames */
  len = join(e, 240, 4, mixed, p);
  assert_true(p[1] & 0x80);
  check_self_delimit(p, len, 3, 1);
  opus_encoder_destroy(e);

  e = celt_encoder(64000, 0); /* code 3, CBR */
  len = join(e, 240, 4, loud, p);
  assert_false(p[1] & 0x80);
  check_self_delimit(p, len, 3, 1);

  /* code 3 with padding: the padding goes, the frames stay. */
  tone(pcm, 960, 0, LEFT_HZ, 8000);
  len = opus_encode(e, pcm, 960, p, sizeof p);
  assert_int_equal(opus_packet_pad(p, len, len + 40), OPUS_OK);
  assert_true(p[1] & 0x40);
  uint8_t sd[1600];
  int n = oggopus_self_delimit(p, (size_t)len + 40, sd, sizeof sd);
  assert_true(n > 0 && n < len + 10);
  assert_false(sd[1] & 0x40);
  decodes_like_original(p, len + 40, sd, n);
  opus_encoder_destroy(e);
}

/* The silence packet is what libopus codes digital silence as, and decodes to zeros even
 * right after loud audio, unlike concealment. */
static void silence_packet_is_silent(void **state) {
  size_t len;
  const uint8_t *sil = oggopus_silence(&len);
  OpusEncoder *e = celt_encoder(32000, 1);
  int16_t pcm[960] = {0};
  uint8_t p[100];
  int n = opus_encode(e, pcm, 960, p, sizeof p);
  opus_encoder_destroy(e);
  assert_int_equal((size_t)n, len);
  assert_memory_equal(p, sil, len);
  assert_int_equal(opus_packet_get_nb_samples(sil, (opus_int32)len, 48000), 960);

  struct pkt *loud = tone_packets(5, LEFT_HZ);
  int err;
  OpusDecoder *d = opus_decoder_create(48000, 1, &err);
  for (int i = 0; i < 5; i++) assert_int_equal(opus_decode(d, loud[i].data, loud[i].len, pcm, 960, 0), 960);
  for (int i = 0; i < 3; i++) assert_int_equal(opus_decode(d, sil, (opus_int32)len, pcm, 960, 0), 960);
  for (int k = 0; k < 960; k++) assert_int_equal(pcm[k], 0);
  opus_decoder_destroy(d);
  free(loud);
}

static void bad_packets_become_zero_frames(void **state) {
  uint8_t out[OGGOPUS_MAX_PAIR], sd[64];
  unsigned bad;
  /* Code 1 needs an even number of bytes after the TOC. */
  const uint8_t broken[4] = {0xF9, 1, 2, 3};
  assert_int_equal(oggopus_self_delimit(broken, 4, sd, sizeof sd), -EBADMSG);
  assert_int_equal(oggopus_self_delimit(broken, 0, sd, sizeof sd), -EBADMSG);

  struct pkt *good = tone_packets(1, RIGHT_HZ);
  int n = oggopus_pair(broken, 4, good->data, (size_t)good->len, out, sizeof out, &bad);
  assert_int_equal(bad, OGGOPUS_LEFT_BAD);
  assert_int_equal(n, 2 + good->len);
  assert_int_equal(out[0], 0xF8);
  assert_int_equal(out[1], 0);

  /* A 40 ms packet cannot share a packet with a 20 ms one. */
  OpusEncoder *e = encoder(32000, 1);
  int16_t pcm[1920];
  tone(pcm, 1920, 0, LEFT_HZ, 8000);
  uint8_t long_pkt[1500];
  int ll = opus_encode(e, pcm, 1920, long_pkt, sizeof long_pkt);
  opus_encoder_destroy(e);
  assert_true(oggopus_usable(good->data, (size_t)good->len));
  assert_false(oggopus_usable(long_pkt, (size_t)ll));
  assert_false(oggopus_usable(broken, 4));
  assert_false(oggopus_usable(NULL, 0));
  n = oggopus_pair(good->data, (size_t)good->len, long_pkt, (size_t)ll, out, sizeof out, &bad);
  assert_int_equal(bad, OGGOPUS_RIGHT_BAD);
  assert_int_equal(n, good->len + 1 + 1);
  assert_int_equal(out[n - 1], 0xF8);

  /* Nothing on either side: three bytes, and a valid 20 ms two-stream packet. */
  n = oggopus_pair(NULL, 0, NULL, 0, out, sizeof out, &bad);
  assert_int_equal(n, 3);
  assert_int_equal(bad, 0);
  int err;
  unsigned char map[2] = {0, 1};
  OpusMSDecoder *md = opus_multistream_decoder_create(48000, 2, 2, 0, map, &err);
  int16_t both[2 * 960];
  assert_int_equal(opus_multistream_decode(md, out, n, both, 960, 0), 960);
  opus_multistream_decoder_destroy(md);
  assert_int_equal(oggopus_pair(NULL, 0, NULL, 0, out, 2, &bad), -ENOSPC);
  free(good);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(header_tags_and_granules),
      cmocka_unit_test(each_side_on_its_channel_in_time),
      cmocka_unit_test(missing_ticks_are_concealed),
      cmocka_unit_test(truncated_file_plays_to_its_last_page),
      cmocka_unit_test(self_delimiting_codes_0_to_3),
      cmocka_unit_test(silence_packet_is_silent),
      cmocka_unit_test(bad_packets_become_zero_frames),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
