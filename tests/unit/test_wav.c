/* wav: reading every supported encoding, refusing broken files, writing, resampling. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/wav.h"

/* A minimal RIFF/WAVE in memory: fmt (16 or 40 bytes), optional LIST, data. */
static size_t make_wav(uint8_t *out, int format, int channels, int rate, int bits,
                       const void *data, uint32_t data_len, int extensible, int junk) {
  size_t o = 12;
  memcpy(out, "RIFF\0\0\0\0WAVE", 12);
  if (junk) {
    memcpy(out + o, "LIST\x03\0\0\0abc\0", 12); /* odd size: padded */
    o += 12;
  }
  uint32_t fmt_len = extensible ? 40 : 16;
  memcpy(out + o, "fmt ", 4);
  memcpy(out + o + 4, &fmt_len, 4);
  uint8_t *f = out + o + 8;
  memset(f, 0, fmt_len);
  uint16_t tag = extensible ? 0xFFFE : (uint16_t)format, ch = (uint16_t)channels, b = (uint16_t)bits;
  uint16_t align = (uint16_t)(channels * bits / 8);
  uint32_t r = (uint32_t)rate, br = (uint32_t)(rate * align);
  memcpy(f, &tag, 2);
  memcpy(f + 2, &ch, 2);
  memcpy(f + 4, &r, 4);
  memcpy(f + 8, &br, 4);
  memcpy(f + 12, &align, 2);
  memcpy(f + 14, &b, 2);
  if (extensible) {
    uint16_t sub = (uint16_t)format;
    memcpy(f + 24, &sub, 2);
  }
  o += 8 + fmt_len;
  memcpy(out + o, "data", 4);
  memcpy(out + o + 4, &data_len, 4);
  memcpy(out + o + 8, data, data_len);
  return o + 8 + data_len;
}

static void reads_16_bit_stereo(void **state) {
  int16_t d[] = {100, -100, 32767, -32768};
  uint8_t buf[256];
  size_t n = make_wav(buf, 1, 2, 16000, 16, d, sizeof d, 0, 1);
  struct wav w;
  char err[128];
  assert_int_equal(wav_parse(buf, n, &w, err, sizeof err), 0);
  assert_int_equal(w.rate, 16000);
  assert_int_equal(w.channels, 2);
  assert_int_equal(w.frames, 2);
  assert_int_equal(w.pcm[2], 32767);
  assert_int_equal(w.pcm[3], -32768);
  wav_free(&w);
}

static void reads_8_24_32_bit_and_float(void **state) {
  uint8_t buf[256];
  struct wav w;
  char err[128];
  uint8_t u8[] = {128, 255, 0};
  size_t n = make_wav(buf, 1, 1, 8000, 8, u8, sizeof u8, 0, 0);
  assert_int_equal(wav_parse(buf, n, &w, err, sizeof err), 0);
  assert_int_equal(w.pcm[0], 0);
  assert_int_equal(w.pcm[1], 127 * 256);
  assert_int_equal(w.pcm[2], -32768);
  wav_free(&w);
  uint8_t s24[] = {0x00, 0x34, 0x12, 0x00, 0x00, 0x80};
  n = make_wav(buf, 1, 1, 48000, 24, s24, sizeof s24, 1, 0);
  assert_int_equal(wav_parse(buf, n, &w, err, sizeof err), 0);
  assert_int_equal(w.pcm[0], 0x1234);
  assert_int_equal(w.pcm[1], -32768);
  wav_free(&w);
  float fl[] = {0.5f, -1.5f};
  n = make_wav(buf, 3, 1, 44100, 32, fl, sizeof fl, 0, 0);
  assert_int_equal(wav_parse(buf, n, &w, err, sizeof err), 0);
  assert_int_equal(w.pcm[0], 16384);
  assert_int_equal(w.pcm[1], -32768); /* clipped */
  wav_free(&w);
}

static void refuses_what_it_cannot_read(void **state) {
  uint8_t buf[256];
  struct wav w;
  char err[128];
  int16_t d[4] = {0};
  assert_int_equal(wav_parse((const uint8_t *)"RIFF", 4, &w, err, sizeof err), -EBADMSG);
  size_t n = make_wav(buf, 2 /* ADPCM */, 1, 8000, 4, d, sizeof d, 0, 0);
  assert_int_equal(wav_parse(buf, n, &w, err, sizeof err), -EBADMSG);
  assert_non_null(strstr(err, "unsupported encoding"));
  n = make_wav(buf, 1, 0, 8000, 16, d, sizeof d, 0, 0);
  assert_int_equal(wav_parse(buf, n, &w, err, sizeof err), -EBADMSG);
  n = make_wav(buf, 1, 1, 8000, 16, d, sizeof d, 0, 0);
  /* cut inside the fmt chunk */
  assert_int_equal(wav_parse(buf, 30, &w, err, sizeof err), -EBADMSG);
  /* every truncation is an error or a shorter file, never a crash */
  for (size_t cut = 0; cut < n; cut++) {
    if (wav_parse(buf, cut, &w, err, sizeof err) == 0) {
      assert_true(w.frames <= 4);
      wav_free(&w);
    }
  }
}

static void writes_what_it_reads_back(void **state) {
  char path[] = "/tmp/test_wav_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  struct wav_writer *ww;
  assert_int_equal(wav_writer_open(&ww, path, 48000, 1), 0);
  int16_t pcm[960];
  for (int i = 0; i < 960; i++) pcm[i] = (int16_t)(i * 30 - 14000);
  assert_int_equal(wav_writer_write(ww, pcm, 960), 0);
  assert_int_equal(wav_writer_write(ww, pcm, 480), 0);
  assert_int_equal(wav_writer_close(ww), 0);
  struct wav w;
  char err[256];
  assert_int_equal(wav_read(path, &w, err, sizeof err), 0);
  assert_int_equal(w.rate, 48000);
  assert_int_equal(w.frames, 1440);
  assert_memory_equal(w.pcm, pcm, sizeof pcm);
  wav_free(&w);
  unlink(path);
  assert_int_equal(wav_read(path, &w, err, sizeof err), -ENOENT);
  assert_non_null(strstr(err, path));
}

static void resamples_a_tone_to_48k_mono(void **state) {
  /* 1 s of 440 Hz at 16 kHz stereo, one channel silent: mono halves it. */
  struct wav in = {.rate = 16000, .channels = 2, .frames = 16000};
  in.pcm = malloc(sizeof(int16_t) * 32000);
  assert_non_null(in.pcm);
  for (int i = 0; i < 16000; i++) {
    in.pcm[2 * i] = (int16_t)(20000 * sin(2 * M_PI * 440 * i / 16000.0));
    in.pcm[2 * i + 1] = 0;
  }
  int16_t *out;
  size_t n;
  assert_int_equal(wav_mono48k(&in, &out, &n), 0);
  assert_true(n >= 47900 && n <= 48000);
  /* zero crossings give the frequency back: 880 per second */
  int crossings = 0;
  for (size_t i = 4800; i < 43200; i++) crossings += (out[i - 1] < 0) != (out[i] < 0);
  assert_true(abs(crossings - 704) <= 3); /* 0.8 s * 880 */
  double peak = 0;
  for (size_t i = 4800; i < 43200; i++) peak = fmax(peak, fabs((double)out[i]));
  assert_true(peak > 9000 && peak < 11000);
  free(out);
  free(in.pcm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(reads_16_bit_stereo),
      cmocka_unit_test(reads_8_24_32_bit_and_float),
      cmocka_unit_test(refuses_what_it_cannot_read),
      cmocka_unit_test(writes_what_it_reads_back),
      cmocka_unit_test(resamples_a_tone_to_48k_mono),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
