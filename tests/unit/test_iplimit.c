/* iplimit: per-address concurrency and rate, keyed by address or /64, in bounded memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>

#include "app/iplimit.h"

static void keys_group_ipv6_by_64_and_unmap_ipv4(void **state) {
  char k[IPLIMIT_KEY_MAX];
  assert_int_equal(iplimit_key("203.0.113.7", k, sizeof k), 0);
  assert_string_equal(k, "203.0.113.7");
  assert_int_equal(iplimit_key("::ffff:203.0.113.7", k, sizeof k), 0);
  assert_string_equal(k, "203.0.113.7");
  assert_int_equal(iplimit_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", k, sizeof k), 0);
  assert_string_equal(k, "2001:db8:1:2::/64");
  char k2[IPLIMIT_KEY_MAX];
  assert_int_equal(iplimit_key("2001:db8:1:2::1", k2, sizeof k2), 0);
  assert_string_equal(k, k2);
  assert_int_equal(iplimit_key("2001:db8:1:3::1", k2, sizeof k2), 0);
  assert_string_not_equal(k, k2);
  assert_int_equal(iplimit_key("not an address", k, sizeof k), -EINVAL);
  assert_int_equal(iplimit_key("", k, sizeof k), -EINVAL);
}

static void concurrent_calls_are_capped_per_address(void **state) {
  struct iplimit *l;
  assert_int_equal(iplimit_new(&l, 2, 0, 16), 0);
  assert_int_equal(iplimit_acquire(l, "a", 0), 0);
  assert_int_equal(iplimit_acquire(l, "a", 0), 0);
  assert_int_equal(iplimit_acquire(l, "a", 0), -EBUSY);
  assert_int_equal(iplimit_acquire(l, "b", 0), 0); /* others are not affected */
  iplimit_release(l, "a");
  assert_int_equal(iplimit_acquire(l, "a", 0), 0);
  iplimit_release(l, "nobody"); /* harmless */
  iplimit_free(l);
}

static void rate_is_a_bucket_that_refills(void **state) {
  struct iplimit *l;
  assert_int_equal(iplimit_new(&l, 0, 3, 16), 0);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(iplimit_acquire(l, "a", 1000), 0);
    iplimit_release(l, "a");
  }
  assert_int_equal(iplimit_acquire(l, "a", 1000), -EAGAIN);
  /* One call's worth comes back every 20 s. */
  assert_int_equal(iplimit_acquire(l, "a", 20999), -EAGAIN);
  assert_int_equal(iplimit_acquire(l, "a", 21000), 0);
  assert_int_equal(iplimit_acquire(l, "a", 21000), -EAGAIN);
  /* A refused attempt costs nothing; after a long pause the bucket is full, not more. */
  assert_int_equal(iplimit_acquire(l, "a", 10ull * 24 * 3600 * 1000), 0);
  assert_int_equal(iplimit_acquire(l, "a", 10ull * 24 * 3600 * 1000), 0);
  assert_int_equal(iplimit_acquire(l, "a", 10ull * 24 * 3600 * 1000), 0);
  assert_int_equal(iplimit_acquire(l, "a", 10ull * 24 * 3600 * 1000), -EAGAIN);
  iplimit_free(l);
}

static void memory_stays_bounded(void **state) {
  struct iplimit *l;
  assert_int_equal(iplimit_new(&l, 1, 1000, 100), 0);
  char key[32];
  /* 10,000 addresses, each with one call that ends: never more than 100 remembered. */
  for (int i = 0; i < 10000; i++) {
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(iplimit_acquire(l, key, (uint64_t)i), 0);
    iplimit_release(l, key);
    assert_true(iplimit_size(l) <= 100);
  }
  /* A minute later every bucket is full again: a sweep forgets them all. */
  iplimit_sweep(l, 10000 + 60000);
  assert_int_equal(iplimit_size(l), 0);
  /* Addresses with calls in progress are kept; when all are, a newcomer is refused. */
  for (int i = 0; i < 100; i++) {
    snprintf(key, sizeof key, "busy%d", i);
    assert_int_equal(iplimit_acquire(l, key, 200000), 0);
  }
  assert_int_equal(iplimit_acquire(l, "newcomer", 200000), -ENOSPC);
  iplimit_sweep(l, 400000);
  assert_int_equal(iplimit_size(l), 100);
  iplimit_release(l, "busy7");
  assert_int_equal(iplimit_acquire(l, "newcomer", 400000), 0);
  assert_int_equal(iplimit_acquire(l, "busy7", 400000), -ENOSPC);
  assert_int_equal(iplimit_size(l), 100);
  iplimit_free(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(keys_group_ipv6_by_64_and_unmap_ipv4),
      cmocka_unit_test(concurrent_calls_are_capped_per_address),
      cmocka_unit_test(rate_is_a_bucket_that_refills),
      cmocka_unit_test(memory_stays_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
