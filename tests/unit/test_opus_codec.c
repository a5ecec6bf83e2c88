/* opus_codec: the encoder reuses its settled silence packet and picks up speech again at once. */
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

static void silence_packets_are_reused_and_speech_follows(void **state) {
  struct opusc_enc *e = opusc_enc_new(0);
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
    assert_true(n > 0 && (i < 10 || n < 64));
    same += n == last_len && memcmp(pkt, last, (size_t)n) == 0;
    memcpy(last, pkt, (size_t)n);
    last_len = n;
    assert_int_equal(opusc_decode(d, pkt, (size_t)n, out, OPUSC_MAX_FRAME), OPUSC_FRAME);
    if (i > 10) assert_true(rms(out, OPUSC_FRAME) < 1.0);
  }
  assert_true(same >= 44); /* from the settled frame on, one packet */
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(silence_packets_are_reused_and_speech_follows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
