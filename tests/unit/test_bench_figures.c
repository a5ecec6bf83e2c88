/* The bench's own figures: the codec floor it times, and the peak memory it reads from /proc. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "client/codecfloor.h"
#include "client/procstat.h"

/* Half a second of a voiced, wandering signal at 48 kHz. */
static int16_t *speech(size_t n) {
  int16_t *pcm = malloc(n * sizeof *pcm);
  for (size_t i = 0; i < n; i++) {
    double t = i / 48000.0, v = 0;
    for (int h = 1; h <= 6; h++) v += sin(2 * M_PI * (130 + 30 * sin(2 * M_PI * 2 * t)) * h * t) / h;
    pcm[i] = (int16_t)(7000 * v * (0.6 + 0.4 * sin(2 * M_PI * 4 * t)));
  }
  return pcm;
}

static void the_floor_is_fifty_decodes_and_encodes_a_second(void **state) {
  size_t n = 24000;
  int16_t *pcm = speech(n);
  struct codec_floor f;
  assert_int_equal(codec_floor_measure(pcm, n, 16000, 0.02, &f), 0);
  assert_int_equal(f.decode_rate, 16000);
  assert_true(f.decode_us > 0 && f.encode_us > 0);
  assert_true(f.frames >= 25);
  assert_true(fabs(f.percent_of_core - 100.0 * 50 * (f.decode_us + f.encode_us) / 1e6) < 1e-9);
  free(pcm);
}

static void the_floor_refuses_what_it_cannot_time(void **state) {
  size_t n = 24000;
  int16_t *pcm = speech(n);
  struct codec_floor f = {.percent_of_core = -7};
  assert_int_equal(codec_floor_measure(pcm, 9 * 960, 16000, 0.01, &f), -EINVAL); /* under 10 frames */
  assert_int_equal(codec_floor_measure(pcm, n, 22050, 0.01, &f), -EINVAL);      /* not an Opus rate */
  assert_true(f.percent_of_core == -7);                                         /* untouched */
  free(pcm);
}

static void the_high_water_mark_is_read_from_status(void **state) {
  const char *status = "Name:\ttingshuo\nVmPeak:\t  900000 kB\nVmHWM:\t   85340 kB\nVmRSS:\t   76428 kB\n"
                       "Threads:\t7\n";
  long hwm = 0, rss = 0, threads = 0;
  assert_int_equal(procstat_parse_hwm(status, &hwm), 0);
  assert_int_equal(hwm, 85340);
  assert_int_equal(procstat_parse_status(status, &rss, &threads), 0);
  assert_int_equal(rss, 76428);
  assert_int_equal(procstat_parse_hwm("Name:\tx\nVmRSS:\t 1 kB\n", &hwm), -EBADMSG);
  assert_int_equal(procstat_parse_hwm("Name:\tx\nVmHWM:\t kB\n", &hwm), -EBADMSG);
  /* A field named like it inside another line is not it. */
  assert_int_equal(procstat_parse_hwm("Name:\tVmHWM: 5 kB\n", &hwm), -EBADMSG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_floor_is_fifty_decodes_and_encodes_a_second),
      cmocka_unit_test(the_floor_refuses_what_it_cannot_time),
      cmocka_unit_test(the_high_water_mark_is_read_from_status),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
