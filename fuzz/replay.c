/*
 * replay: runs stored inputs through a fuzz target without libFuzzer.
 *
 *   fuzz_replay_NAME PATH...
 *
 * Each PATH is a file or a directory, walked recursively (files in name
 * order, so a failure is reproducible). Every file is read whole and passed
 * to LLVMFuzzerTestOneInput once. A crash or a broken check aborts the
 * process, which is the failure CTest sees; a path that cannot be read, or
 * no input at all, is a failure too, so a misplaced corpus cannot pass
 * silently. Built with the target in every build, it lets the sanitizer
 * build check each stored input on every test run.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path, size_t *count) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  for (size_t got; buf && (got = fread(buf + len, 1, cap - len, f)) > 0;) {
    len += got;
    if (len == cap) {
      uint8_t *bigger = realloc(buf, cap * 2);
      if (!bigger) free(buf);
      buf = bigger, cap *= 2;
    }
  }
  int bad = ferror(f) || !buf;
  fclose(f);
  if (bad) {
    fprintf(stderr, "replay: %s: read failed\n", path);
    free(buf);
    return -1;
  }
  /* An exact-size copy, so a read past the input is past an allocation. */
  uint8_t *input = malloc(len ? len : 1);
  if (!input) {
    free(buf);
    return -1;
  }
  memcpy(input, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(input, len);
  free(input);
  (*count)++;
  return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int run_path(const char *path, size_t *count) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) return run_file(path, count);
  struct dirent **names;
  int n = scandir(path, &names, NULL, by_name);
  if (n < 0) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  int rc = 0;
  for (int i = 0; i < n; i++) {
    const char *name = names[i]->d_name;
    if (rc == 0 && name[0] != '.') {
      size_t need = strlen(path) + strlen(name) + 2;
      char *child = malloc(need);
      if (!child) rc = -1;
      else {
        snprintf(child, need, "%s/%s", path, name);
        rc = run_path(child, count);
        free(child);
      }
    }
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
    return 2;
  }
  size_t count = 0;
  for (int i = 1; i < argc; i++)
    if (run_path(argv[i], &count) != 0) return 1;
  if (count == 0) {
    fprintf(stderr, "replay: no inputs found\n");
    return 1;
  }
  printf("replayed %zu inputs\n", count);
  return 0;
}
