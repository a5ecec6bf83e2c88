/*
 * fuzz: what every fuzz target shares.
 *
 * A target is one file, fuzz_NAME.c, defining LLVMFuzzerTestOneInput. The
 * same file is linked two ways: with libFuzzer (scripts/fuzz.sh, clang) to
 * search for new inputs, and with replay.c (gcc or clang, any build) so that
 * CTest runs every stored input through it on every test run. A target
 * therefore keeps no state between inputs that could change what the next
 * input does, and it reports a broken promise of the code under test by
 * aborting: that fails a replay in every build, sanitizer or not.
 */
#ifndef TS_FUZZ_FUZZ_H
#define TS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property the code promises; an input that breaks it is a finding. */
#define FUZZ_CHECK(cond)                                                                      \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond);          \
      abort();                                                                                \
    }                                                                                         \
  } while (0)

/* Reads bytes off the front of the input to steer a target (split points, choices). */
struct fuzz_in {
  const uint8_t *p;
  size_t n;
};

static inline unsigned fuzz_take_byte(struct fuzz_in *in) {
  if (in->n == 0) return 0;
  in->n--;
  return *in->p++;
}

#endif
