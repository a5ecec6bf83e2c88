/* opus_codec: silence packets are reused, the agent's voice is CELT unless there is loss, the band follows the receiver. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "audio/opus_codec.h"

static void tone(int16_t *pcm, int frame) {
  for (int i = 0; i < OPUSC_FRAME; i++)
    pcm[i] = (int16_t)(8000 * sin(2 * M_PI * 300 * (frame * OPUSC_FRAME + i) / 48000.0));
}

static double rms(const int16_t *pcm, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s += (double)pcm[i] * pcm[i];
  return sqrt(s / n);
}

static void silence_is_reused(enum opusc_kind kind) {
  struct opusc_enc *e = opusc_enc_new(kind, 0);
  struct opusc_dec *d = opusc_dec_new();
  int16_t pcm[OPUSC_FRAME], out[OPUSC_MAX_FRAME];
  uint8_t pkt[1500], last[1500];
  int last_len = 0, f = 0;
  for (; f < 10; f++) { /* speech first, so the encoder has history */
    tone(pcm, f);
    int n = opusc_encode(e, pcm, pkt, sizeof pkt);
    assert_true(n > 10);
    assert_int_equal(opusc_decode(d, pkt, (size_t)n, out, OPUSC_MAX_FRAME), OPUSC_FRAME);
  }
  memset(pcm, 0, sizeof pcm);
  int same = 0;
  for (int i = 0; i < 50; i++, f++) {
    int n = opusc_encode(e, pcm, pkt, sizeof pkt);
    assert_true(n > 0 && (i < 20 || n < 64)); /* CELT takes ~15 frames to reach its silence flag */
    same += n == last_len && memcmp(pkt, last, (size_t)n) == 0;
    memcpy(last, pkt, (size_t)n);
    last_len = n;
    assert_int_equal(opusc_decode(d, pkt, (size_t)n, out, OPUSC_MAX_FRAME), OPUSC_FRAME);
    if (i > 20) assert_true(rms(out, OPUSC_FRAME) < 1.0);
  }
  assert_true(same >= 28); /* from the settled frame on, one packet */
  double loud = 0;
  for (int i = 0; i < 5; i++, f++) {
    tone(pcm, f);
    int n = opusc_encode(e, pcm, pkt, sizeof pkt);
    assert_true(n > 10);
    assert_int_equal(opusc_decode(d, pkt, (size_t)n, out, OPUSC_MAX_FRAME), OPUSC_FRAME);
    loud = rms(out, OPUSC_FRAME);
  }
  assert_true(loud > 3000); /* a 8000-peak sine is about 5700 RMS */
  opusc_enc_free(e);
  opusc_dec_free(d);
}

static void silence_packets_are_reused_and_speech_follows(void **state) {
  silence_is_reused(OPUSC_MIC);
  silence_is_reused(OPUSC_AGENT);
}

/* Of a packet's TOC (RFC 6716 3.1): 0-11 SILK, 12-15 hybrid, 16-31 CELT. */
static int toc_config(const uint8_t *pkt) { return pkt[0] >> 3; }

/* Codes ten frames of a harmonic voice and returns the last packet's TOC config. */
static int code_voice(struct opusc_enc *e, int *frame) {
  int16_t pcm[OPUSC_FRAME];
  uint8_t pkt[1500];
  int n = 0;
  for (int i = 0; i < 10; i++, (*frame)++) {
    for (int k = 0; k < OPUSC_FRAME; k++) {
      double t = (*frame * OPUSC_FRAME + k) / 48000.0, v = 0;
      for (int h = 1; h <= 10; h++) v += sin(2 * M_PI * 150 * h * t) / h;
      pcm[k] = (int16_t)(5000 * v);
    }
    n = opusc_encode(e, pcm, pkt, sizeof pkt);
    assert_true(n > 10);
  }
  return toc_config(pkt);
}

static void agent_voice_is_celt_until_loss_is_reported(void **state) {
  struct opusc_enc *agent = opusc_enc_new(OPUSC_AGENT, 0), *mic = opusc_enc_new(OPUSC_MIC, 0);
  int f = 0, g = 0;
  assert_true(code_voice(agent, &f) >= 16);
  assert_true(code_voice(mic, &g) < 16); /* a microphone is SILK or hybrid, like a browser's */
  opusc_enc_adapt(agent, 26);            /* the receiver lost 10% */
  assert_true(code_voice(agent, &f) < 16);
  for (int i = 0; i < 30; i++) opusc_enc_adapt(agent, 0);
  assert_int_equal(opusc_enc_loss_percent(agent), 0);
  assert_true(code_voice(agent, &f) >= 16);
  opusc_enc_free(agent);
  opusc_enc_free(mic);
}

static void coded_band_follows_the_receivers_playback_rate(void **state) {
  struct opusc_enc *e = opusc_enc_new(OPUSC_MIC, 0);
  int f = 0;
  assert_int_equal(opusc_enc_set_max_rate(e, 16000), 0);
  int config = code_voice(e, &f);
  assert_true(config >= 8 && config <= 11); /* SILK wideband */
  opusc_enc_free(e);
}

/* The agent's 16 kHz speech: CELT wideband (configs 20-23), SILK wideband with FEC under
 * loss (8-11), and the full band (28-31) again once the limit is lifted. */
static void agent_band_follows_its_speech_rate(void **state) {
  struct opusc_enc *e = opusc_enc_new(OPUSC_AGENT, 0);
  int f = 0;
  assert_true(code_voice(e, &f) >= 28);
  assert_int_equal(opusc_enc_set_max_rate(e, 16000), 0);
  int config = code_voice(e, &f);
  assert_true(config >= 20 && config <= 23);
  opusc_enc_adapt(e, 26);
  config = code_voice(e, &f);
  assert_true(config >= 8 && config <= 11);
  for (int i = 0; i < 30; i++) opusc_enc_adapt(e, 0);
  assert_int_equal(opusc_enc_set_max_rate(e, 0), 0);
  assert_true(code_voice(e, &f) >= 28);
  opusc_enc_free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(silence_packets_are_reused_and_speech_follows),
      cmocka_unit_test(agent_voice_is_celt_until_loss_is_reported),
      cmocka_unit_test(coded_band_follows_the_receivers_playback_rate),
      cmocka_unit_test(agent_band_follows_its_speech_rate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
