/*
 * The check every exposition test ends with: Debian's promtool, the
 * Prometheus project's own linter, must accept the text without a word.
 * Include after <cmocka.h>.
 */
#ifndef TINGSHUO_TESTS_PROMTOOL_H
#define TINGSHUO_TESTS_PROMTOOL_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/prom.h"

static inline void assert_promtool_accepts(const struct prom_buf *b) {
  if (access("/usr/bin/promtool", X_OK) != 0)
    fail_msg("/usr/bin/promtool is missing: scripts/deps.sh test installs it (Debian's prometheus)");
  char path[] = "/tmp/tingshuo_promtool_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, b->data, b->len), (ssize_t)b->len);
  close(fd);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < %s 2>&1", path);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char out[4096];
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = '\0';
  int status = pclose(p);
  unlink(path);
  if (status != 0 || n != 0) fail_msg("promtool: status %d: %s", status, out);
}

#endif
