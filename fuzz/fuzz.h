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
#include <string.h>

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

/* What a stream parser gave back, folded into a running hash with a count of events. */
struct fuzz_digest {
  uint64_t h;
  size_t n;
};

static inline void fuzz_mix(struct fuzz_digest *d, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) d->h = (d->h ^ b[i]) * 0x100000001b3ull;
  d->h = (d->h ^ 0xff) * 0x100000001b3ull; /* field separator */
}

/*
 * Hands `data` to `feed` whole (max_piece 0) or cut into pieces of 1 to
 * max_piece bytes whose sizes come from the bytes themselves, so cuts land
 * anywhere in the format. Each piece is in its own allocation, so reading
 * past it is caught. Stops at the first nonzero return of `feed`, and
 * returns it.
 */
static inline int fuzz_feed(const uint8_t *data, size_t size, size_t max_piece,
                            int (*feed)(void *ctx, const uint8_t *piece, size_t len),
                            void *ctx) {
  int rc = 0;
  uint32_t cut = 2166136261u;
  for (size_t off = 0; rc == 0 && off < size;) {
    size_t piece = size - off;
    if (max_piece) {
      cut = (cut ^ data[off]) * 16777619u;
      piece = 1 + cut % max_piece;
      if (piece > size - off) piece = size - off;
    }
    uint8_t *buf = malloc(piece ? piece : 1);
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data + off, piece);
    rc = feed(ctx, buf, piece);
    free(buf);
    off += piece;
  }
  return rc;
}

#endif
