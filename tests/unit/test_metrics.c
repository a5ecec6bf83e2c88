/* metrics: build info and process metrics read from /proc, and promtool accepts them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "app/metrics.h"
#include "promtool.h"

/* The value of the sample line that starts with `series ` ; -1 when absent. */
static double value_of(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
    if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
  }
  return -1;
}

static void process_metrics_are_real(void **state) {
  struct prom_buf b;
  prom_buf_init(&b);
  metrics_write(&b, NULL, NULL);
  assert_false(b.failed);
  assert_true(value_of(b.data, "tingshuo_build_info{version=\"" TINGSHUO_VERSION "\"}") == 1);
  double rss = value_of(b.data, "process_resident_memory_bytes");
  assert_true(rss > 1e5 && rss < 1e11);
  assert_true(value_of(b.data, "process_virtual_memory_bytes") >= rss);
  double start = value_of(b.data, "process_start_time_seconds"), now = (double)time(NULL);
  assert_true(start > now - 600 && start <= now + 1);
  assert_true(value_of(b.data, "process_cpu_seconds_total") >= 0);
  double fds = value_of(b.data, "process_open_fds");
  assert_true(fds >= 3 && fds < 1000);
  assert_true(value_of(b.data, "process_max_fds") >= fds);
  /* No store, no calls: nothing of theirs. */
  assert_null(strstr(b.data, "tingshuo_store_"));
  assert_null(strstr(b.data, "tingshuo_calls_active"));
  prom_buf_free(&b);
}

static void open_fds_counts_descriptors(void **state) {
  struct prom_buf b;
  prom_buf_init(&b);
  metrics_write(&b, NULL, NULL);
  double before = value_of(b.data, "process_open_fds");
  prom_buf_free(&b);
  FILE *f[3];
  for (int i = 0; i < 3; i++) assert_non_null(f[i] = fopen("/dev/null", "r"));
  prom_buf_init(&b);
  metrics_write(&b, NULL, NULL);
  assert_true(value_of(b.data, "process_open_fds") == before + 3);
  prom_buf_free(&b);
  for (int i = 0; i < 3; i++) fclose(f[i]);
}

static void promtool_accepts_them(void **state) {
  struct prom_buf b;
  prom_buf_init(&b);
  metrics_write(&b, NULL, NULL);
  assert_promtool_accepts(&b);
  prom_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(process_metrics_are_real),
      cmocka_unit_test(open_fds_counts_descriptors),
      cmocka_unit_test(promtool_accepts_them),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
