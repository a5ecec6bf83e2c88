/* opus_codec + jitter: FEC beats concealment under loss; reordering, duplicates, wrap, pauses. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <opus/opus.h>

#include "audio/jitter.h"
#include "audio/opus_codec.h"

#define FRAMES 250 /* 5 s */

/* A voiced, syllable-modulated signal: harmonics of 140 Hz, 4 Hz envelope. */
static void speechlike(int16_t *pcm, int frame) {
  for (int i = 0; i < OPUSC_FRAME; i++) {
    double t = (frame * OPUSC_FRAME + i) / 48000.0, v = 0;
    for (int h = 1; h <= 8; h++) v += sin(2 * M_PI * 140 * h * t + h) / h;
    double env = 0.55 + 0.45 * sin(2 * M_PI * 4 * t);
    pcm[i] = (int16_t)(6000 * v * env);
  }
}

struct packet { uint8_t data[400]; int len; };

static struct packet *encode_all(int16_t *orig, int loss_fraction) {
  struct opusc_enc *enc = opusc_enc_new(OPUSC_MIC, 32000);
  opusc_enc_adapt(enc, loss_fraction);
  struct packet *p = calloc(FRAMES, sizeof *p);
  for (int f = 0; f < FRAMES; f++) {
    speechlike(orig + f * OPUSC_FRAME, f);
    p[f].len = opusc_encode(enc, orig + f * OPUSC_FRAME, p[f].data, sizeof p[f].data);
    assert_true(p[f].len > 0);
  }
  opusc_enc_free(enc);
  return p;
}

/* Normalized cross-correlation at the best lag (codec delay) in 0..1000 samples. */
static double similarity(const int16_t *a, const int16_t *b, int n) {
  double best = -1;
  for (int lag = 0; lag <= 1000; lag += 4) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 2000; i + lag < n; i++) {
      ab += (double)a[i] * b[i + lag], aa += (double)a[i] * a[i], bb += (double)b[i + lag] * b[i + lag];
    }
    double c = ab / sqrt(aa * bb + 1e-9);
    if (c > best) best = c;
  }
  return best;
}

static void fec_beats_concealment(void **state) {
  int n = FRAMES * OPUSC_FRAME;
  int16_t *orig = calloc((size_t)n, 2), *fec_out = calloc((size_t)n + 4 * OPUSC_FRAME, 2), *plc_out = calloc((size_t)n, 2);
  struct packet *p = encode_all(orig, 51); /* the receiver reported 20% loss */
  unsigned seed = 12345;
  int lost[FRAMES] = {0};
  for (int f = 5; f < FRAMES; f++) lost[f] = rand_r(&seed) % 100 < 15 && !lost[f - 1]; /* isolated losses */

  struct jitter *jb = jitter_new();
  int out = 0;
  for (int f = 0; f < FRAMES; f++) {
    if (!lost[f]) jitter_put(jb, (uint16_t)(65500 + f), p[f].data, (size_t)p[f].len, (uint64_t)f * 20);
    if (jitter_get(jb, fec_out + out)) out += OPUSC_FRAME;
  }
  while (out < n && jitter_get(jb, fec_out + out)) out += OPUSC_FRAME;
  struct jitter_stats st;
  jitter_get_stats(jb, &st);
  assert_true(st.recovered > 10);
  jitter_free(jb);

  /* Compare, on the lost frames, each strategy with what the lost packet itself would have given. */
  struct opusc_dec *dec = opusc_dec_new(), *clean = opusc_dec_new();
  int16_t *clean_out = calloc((size_t)n, 2);
  for (int f = 0; f < FRAMES; f++) {
    opusc_decode(clean, p[f].data, (size_t)p[f].len, clean_out + f * OPUSC_FRAME, OPUSC_FRAME);
    if (lost[f]) opusc_conceal(dec, plc_out + f * OPUSC_FRAME, OPUSC_FRAME);
    else opusc_decode(dec, p[f].data, (size_t)p[f].len, plc_out + f * OPUSC_FRAME, OPUSC_FRAME);
  }
  opusc_dec_free(dec);
  opusc_dec_free(clean);
  double err_fec = 0, err_plc = 0, energy = 0;
  for (int f = 0; f < FRAMES - 2; f++) {
    if (!lost[f]) continue;
    for (int i = f * OPUSC_FRAME; i < (f + 1) * OPUSC_FRAME; i++) {
      double c = clean_out[i];
      err_fec += (fec_out[i] - c) * (fec_out[i] - c);
      err_plc += (plc_out[i] - c) * (plc_out[i] - c);
      energy += c * c;
    }
  }
  double snr_fec = 10 * log10(energy / err_fec), snr_plc = 10 * log10(energy / err_plc);
  print_message("lost frames: SNR with FEC %.1f dB, concealment only %.1f dB; %llu recovered\n",
                snr_fec, snr_plc, (unsigned long long)st.recovered);
  assert_true(snr_fec > snr_plc + 3.0);
  /* and the whole stream still resembles what was sent */
  assert_true(similarity(orig, fec_out, n - 2 * OPUSC_FRAME) > 0.7);
  free(clean_out);
  free(orig), free(fec_out), free(plc_out), free(p);
}

static void reorder_duplicates_and_wrap(void **state) {
  int16_t orig[10 * OPUSC_FRAME], pcm[OPUSC_FRAME];
  struct opusc_enc *enc = opusc_enc_new(OPUSC_MIC, 32000);
  uint8_t pkt[10][400];
  int len[10];
  for (int f = 0; f < 10; f++) {
    speechlike(orig + f * OPUSC_FRAME, f);
    len[f] = opusc_encode(enc, orig + f * OPUSC_FRAME, pkt[f], 400);
  }
  opusc_enc_free(enc);
  struct jitter *jb = jitter_new();
  int order[10] = {0, 2, 1, 3, 3, 5, 4, 6, 7, 8}; /* swapped pairs and a duplicate; 9 never comes */
  int got = 0;
  for (int i = 0; i < 10; i++) { /* one arrival per 20 ms, playout pulling alongside */
    jitter_put(jb, (uint16_t)(65533 + order[i]), pkt[order[i]], (size_t)len[order[i]], (uint64_t)i * 20);
    if (i >= 2) got += jitter_get(jb, pcm);
  }
  got += jitter_get(jb, pcm);
  struct jitter_stats st;
  jitter_get_stats(jb, &st);
  assert_int_equal(got, 9);
  assert_int_equal(st.duplicate, 1);
  assert_int_equal(st.played, 9);
  assert_int_equal(st.concealed, 0);
  /* nothing more arrives: a few frames are concealed, then playout pauses */
  int more = 0;
  for (int i = 0; i < 30; i++) more += jitter_get(jb, pcm);
  assert_true(more >= 10 && more <= 12);
  /* a late packet for a frame already played is dropped */
  jitter_put(jb, (uint16_t)(65533 + 2), pkt[2], (size_t)len[2], 1000);
  jitter_get_stats(jb, &st);
  assert_true(st.late >= 1 || st.received == 11);
  jitter_free(jb);
}

static void garbage_payloads_are_concealed(void **state) {
  struct jitter *jb = jitter_new();
  uint8_t junk[200];
  int16_t pcm[OPUSC_FRAME];
  unsigned seed = 4;
  for (int i = 0; i < 3000; i++) {
    for (size_t k = 0; k < sizeof junk; k++) junk[k] = (uint8_t)rand_r(&seed);
    jitter_put(jb, (uint16_t)i, junk, 1 + (size_t)rand_r(&seed) % sizeof junk, (uint64_t)i * 20);
    jitter_get(jb, pcm);
  }
  jitter_put(jb, 1, junk, 0, 0);
  jitter_put(jb, 2, junk, 5000, 0);
  jitter_free(jb);
}

/* jitter_last_packet names the packet each frame was decoded from, and nothing for frames
 * that were recovered, concealed, drained from a longer packet, or not played. */
static void last_packet_is_the_one_played(void **state) {
  int16_t pcm[OPUSC_FRAME], orig[OPUSC_FRAME];
  struct opusc_enc *enc = opusc_enc_new(OPUSC_MIC, 32000);
  opusc_enc_adapt(enc, 51);
  uint8_t pkt[12][400];
  int len[12];
  for (int f = 0; f < 12; f++) {
    speechlike(orig, f);
    len[f] = opusc_encode(enc, orig, pkt[f], 400);
  }
  opusc_enc_free(enc);
  const int lost[12] = {[5] = 1, [8] = 1, [9] = 1};
  struct jitter *jb = jitter_new();
  size_t n = 99;
  assert_int_equal(jitter_get(jb, pcm), 0);
  assert_null(jitter_last_packet(jb, &n));
  assert_int_equal(n, 0);
  for (int i = 0; i < 12; i++) {
    if (!lost[i]) jitter_put(jb, (uint16_t)(700 + i), pkt[i], (size_t)len[i], (uint64_t)i * 20);
    if (i == 0) continue;
    assert_int_equal(jitter_get(jb, pcm), 1); /* plays frame i - 1 */
    const uint8_t *p = jitter_last_packet(jb, &n);
    if (lost[i - 1]) {
      assert_null(p);
      assert_int_equal(n, 0);
    } else {
      assert_int_equal(n, (size_t)len[i - 1]);
      assert_memory_equal(p, pkt[i - 1], n);
    }
  }
  jitter_free(jb);

  /* 40 ms packets: the packet on its first frame, nothing on the second. */
  int err;
  OpusEncoder *e = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
  int16_t two[2 * OPUSC_FRAME];
  speechlike(two, 0);
  speechlike(two + OPUSC_FRAME, 1);
  uint8_t big[2][400];
  int blen[2];
  for (int i = 0; i < 2; i++) blen[i] = opus_encode(e, two, 2 * OPUSC_FRAME, big[i], 400);
  opus_encoder_destroy(e);
  jb = jitter_new();
  jitter_put(jb, 1, big[0], (size_t)blen[0], 0);
  jitter_put(jb, 2, big[1], (size_t)blen[1], 40);
  for (int f = 0; f < 4; f++) {
    assert_int_equal(jitter_get(jb, pcm), 1);
    const uint8_t *p = jitter_last_packet(jb, &n);
    if (f % 2) {
      assert_null(p);
    } else {
      assert_int_equal(n, (size_t)blen[f / 2]);
      assert_memory_equal(p, big[f / 2], n);
    }
  }
  jitter_free(jb);
}

static void encoder_adapts_to_loss(void **state) {
  struct opusc_enc *e = opusc_enc_new(OPUSC_AGENT, 0);
  assert_int_equal(opusc_enc_bitrate(e), 32000);
  opusc_enc_adapt(e, 64); /* 25% */
  assert_int_equal(opusc_enc_loss_percent(e), 25);
  assert_int_equal(opusc_enc_bitrate(e), 48000);
  for (int i = 0; i < 30; i++) opusc_enc_adapt(e, 0);
  assert_int_equal(opusc_enc_loss_percent(e), 0);
  assert_int_equal(opusc_enc_bitrate(e), 32000);
  opusc_enc_free(e);
}

/* Slots hold what each packet needs: a stream of small packets with large
 * ones among them (a sender raising its bitrate, 120 ms packets at 16 kHz)
 * plays every packet byte for byte, and decodes to the right length. */
static void slots_grow_to_the_packets_they_hold(void **state) {
  int err;
  OpusEncoder *lo = opus_encoder_create(48000, 1, OPUS_APPLICATION_AUDIO, &err);
  OpusEncoder *hi = opus_encoder_create(48000, 1, OPUS_APPLICATION_AUDIO, &err);
  opus_encoder_ctl(lo, OPUS_SET_BITRATE(24000));
  opus_encoder_ctl(hi, OPUS_SET_BITRATE(510000));
  opus_encoder_ctl(hi, OPUS_SET_VBR(0));
  int16_t orig[OPUSC_FRAME], pcm[OPUSC_FRAME];
  static uint8_t pkt[200][1275];
  int len[200];
  for (int f = 0; f < 200; f++) {
    speechlike(orig, f);
    len[f] = opus_encode(f % 7 == 3 ? hi : lo, orig, OPUSC_FRAME, pkt[f], sizeof pkt[f]);
    assert_true(len[f] > 0);
  }
  opus_encoder_destroy(lo);
  opus_encoder_destroy(hi);
  OpusEncoder *e;
  assert_true(len[3] > 500 && len[4] < 200); /* a large one among small ones */
  struct jitter *jb = jitter_new();
  size_t n;
  for (int f = 0; f < 200; f++) {
    jitter_put(jb, (uint16_t)(65500 + f), pkt[f], (size_t)len[f], (uint64_t)f * 20);
    if (f < 2) continue;
    assert_int_equal(jitter_get(jb, pcm), 1);
    const uint8_t *p = jitter_last_packet(jb, &n);
    assert_non_null(p);
    assert_int_equal(n, (size_t)len[f - 2]);
    assert_memory_equal(p, pkt[f - 2], n);
  }
  jitter_free(jb);

  /* 120 ms packets decoded at 16 kHz: six 20 ms frames of 320 samples each. */
  e = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
  int16_t six[6 * OPUSC_FRAME];
  for (int f = 0; f < 6; f++) speechlike(six + f * OPUSC_FRAME, f);
  uint8_t big[1275];
  int blen = opus_encode(e, six, 6 * OPUSC_FRAME, big, sizeof big);
  opus_encoder_destroy(e);
  assert_true(blen > 0);
  jb = jitter_new_rate(16000);
  jitter_put(jb, 1, big, (size_t)blen, 0);
  jitter_put(jb, 2, big, (size_t)blen, 120);
  int16_t p16[320];
  for (int f = 0; f < 12; f++) assert_int_equal(jitter_get(jb, p16), 1);
  struct jitter_stats st;
  jitter_get_stats(jb, &st);
  assert_int_equal(st.played, 2);
  assert_int_equal(st.concealed, 0);
  jitter_free(jb);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(fec_beats_concealment),
      cmocka_unit_test(reorder_duplicates_and_wrap),
      cmocka_unit_test(garbage_payloads_are_concealed),
      cmocka_unit_test(last_packet_is_the_one_played),
      cmocka_unit_test(slots_grow_to_the_packets_they_hold),
      cmocka_unit_test(encoder_adapts_to_loss),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
