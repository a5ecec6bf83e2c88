/* api: the time filters it accepts and the addresses it counts as loopback. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "app/api.h"

static long long parsed(const char *text) {
  long long ms = -1;
  assert_int_equal(api_parse_time(text, &ms), 0);
  return ms;
}

static void times_in_every_accepted_form(void **state) {
  assert_int_equal(parsed("0"), 0);
  assert_int_equal(parsed("1796008935304"), 1796008935304LL);
  assert_int_equal(parsed("1970-01-01"), 0);
  assert_int_equal(parsed("2026-11-29T15:06:36.123Z"), 1795964796123LL);
  assert_int_equal(parsed("2026-11-29T15:06:36Z"), 1795964796000LL);
  assert_int_equal(parsed("2026-11-29T15:06Z"), 1795964760000LL);
  assert_int_equal(parsed("2026-11-29 15:06:36.1z"), 1795964796100LL);
  assert_int_equal(parsed("2026-11-29T23:06:36.123+08:00"), 1795964796123LL);
  assert_int_equal(parsed("2026-11-29T10:06:36.123-0500"), 1795964796123LL);
  assert_int_equal(parsed("2026-11-29T16:06:36.123456789+01"), 1795964796123LL);
  assert_int_equal(parsed("2024-02-29"), 1709164800000LL); /* a leap day */
  assert_int_equal(parsed("1969-12-31T23:59:59Z"), -1000);
}

static void malformed_times_are_refused(void **state) {
  static const char *bad[] = {
      "",  "abc", "2026-11-29T15:06:36",  /* no zone: ambiguous */
      "2026-13-01", "2026-02-29", "2026-11-31", "2026-11-29T24:00Z", "2026-11-29T15:60Z",
      "2026-11-29T15:06:61Z", "2026-11-29T15:06:36.Z", "2026-11-29T15:06:36.1234567890Z",
      "2026-11-29T15:06:36+25:00", "2026-11-29T15:06:36Zjunk", "2026-1-29", "-5",
      "1234567890123456", /* more epoch digits than any sane time */
      "2026-11-29T", "+2026-11-29",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    long long ms = 42;
    if (api_parse_time(bad[i], &ms) != -EINVAL) fail_msg("accepted \"%s\"", bad[i]);
    assert_int_equal(ms, 42);
  }
}

static void loopback_addresses(void **state) {
  assert_true(api_is_loopback("127.0.0.1"));
  assert_true(api_is_loopback("127.255.3.4"));
  assert_true(api_is_loopback("::1"));
  assert_true(api_is_loopback("::ffff:127.0.0.1"));
  assert_false(api_is_loopback("128.0.0.1"));
  assert_false(api_is_loopback("10.0.0.1"));
  assert_false(api_is_loopback("192.0.2.2"));
  assert_false(api_is_loopback("::2"));
  assert_false(api_is_loopback("::ffff:10.0.0.1"));
  assert_false(api_is_loopback("::127.0.0.1")); /* IPv4-compatible, not mapped */
  assert_false(api_is_loopback("localhost"));   /* a name is not an address */
  assert_false(api_is_loopback("unknown"));
  assert_false(api_is_loopback(""));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(times_in_every_accepted_form),
      cmocka_unit_test(malformed_times_are_refused),
      cmocka_unit_test(loopback_addresses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
