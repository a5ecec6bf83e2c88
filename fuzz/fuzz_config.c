/*
 * fuzz_config: a configuration file.
 *
 * Not a network input, but one an operator edits by hand and that may come
 * from a template or a deployment tool. The input is the file, read
 * through a memory-backed descriptor so nothing touches the disk. The
 * loader promises that a file it refuses changes nothing: the settings
 * after a failed load must be byte for byte the ones before it. The same
 * lines are also given as environment entries (TINGSHUO_KEY=value), the
 * other way settings come in as free text.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/config.h"
#include "fuzz.h"

static void load_file(const uint8_t *data, size_t size) {
  int fd = memfd_create("fuzz-config", MFD_CLOEXEC);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  static struct config cfg, before; /* large: kept off the stack */
  config_defaults(&cfg);
  before = cfg;
  char err[512] = "";
  int rc = config_load_file(&cfg, path, err, sizeof err);
  close(fd);
  if (rc != 0) {
    FUZZ_CHECK(rc < 0 && err[0] != '\0');
    FUZZ_CHECK(memcmp(&cfg, &before, sizeof cfg) == 0);
  }
}

/* Each line becomes one entry; those not starting with TINGSHUO_ get the prefix. */
static void load_env(const uint8_t *data, size_t size) {
  enum { MAX_VARS = 64 };
  char *vars[MAX_VARS + 1] = {0};
  int n = 0;
  for (size_t off = 0; off < size && n < MAX_VARS;) {
    const uint8_t *nl = memchr(data + off, '\n', size - off);
    size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
    if (!memchr(data + off, '\0', len)) {
      int prefixed = len >= 9 && memcmp(data + off, "TINGSHUO_", 9) == 0;
      char *v = malloc(len + 10);
      FUZZ_CHECK(v != NULL);
      snprintf(v, len + 10, "%s%.*s", prefixed ? "" : "TINGSHUO_", (int)len, data + off);
      vars[n++] = v;
    }
    off += len + 1;
  }
  static struct config cfg, before;
  config_defaults(&cfg);
  before = cfg;
  char err[512] = "";
  if (config_load_env(&cfg, vars, err, sizeof err) != 0)
    FUZZ_CHECK(err[0] != '\0' && memcmp(&cfg, &before, sizeof cfg) == 0);
  for (int i = 0; i < n; i++) free(vars[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  load_file(data, size);
  load_env(data, size);
  return 0;
}
