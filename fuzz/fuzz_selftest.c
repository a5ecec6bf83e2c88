/*
 * fuzz_selftest: a target that fails on purpose, for the test that proves
 * a failing input makes a replay fail (and so CTest with it).
 */
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FUZZ_CHECK(!(size >= 5 && memcmp(data, "crash", 5) == 0));
  return 0;
}
