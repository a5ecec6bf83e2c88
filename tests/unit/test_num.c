/* num: whole numbers from outside text are all digits, in range, or refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/num.h"

static int parse(const char *s, int min, int max, int *out) { return num_parse_int(s, strlen(s), min, max, out); }

static void plain_numbers_are_read(void **state) {
  int v = -1;
  assert_int_equal(parse("0", 0, 10, &v), 0);
  assert_int_equal(v, 0);
  assert_int_equal(parse("65535", 0, 65535, &v), 0);
  assert_int_equal(v, 65535);
  assert_int_equal(parse("007", 0, 10, &v), 0);
  assert_int_equal(v, 7);
  assert_int_equal(parse("-5", -10, 10, &v), 0);
  assert_int_equal(v, -5);
}

static void anything_but_digits_is_refused(void **state) {
  const char *bad[] = {"", " 1", "1 ", "+1", "1x", "x1", "0x10", "1.5", "1e3", "--1", "-", "１"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int v = 12345;
    if (parse(bad[i], -100, 100, &v) != -EINVAL) fail_msg("\"%s\" was not refused", bad[i]);
    assert_int_equal(v, 12345); /* untouched */
  }
  int v;
  assert_int_equal(parse("-1", 0, 10, &v), -EINVAL); /* no sign where negatives cannot be meant */
  assert_int_equal(num_parse_int(NULL, 0, 0, 1, &v), -EINVAL);
}

static void out_of_range_is_erange_not_wrapped(void **state) {
  int v = 3;
  assert_int_equal(parse("65536", 0, 65535, &v), -ERANGE);
  assert_int_equal(parse("2147483648", 0, 2147483647, &v), -ERANGE);
  assert_int_equal(parse("4294967297", 0, 100, &v), -ERANGE); /* wraps to 1 in 32 bits */
  assert_int_equal(parse("99999999999999999999999999", 0, 100, &v), -ERANGE);
  assert_int_equal(parse("-11", -10, 10, &v), -ERANGE);
  assert_int_equal(v, 3);
  /* a letter after an overflow is still a letter */
  assert_int_equal(parse("99999999999999999999999x", 0, 100, &v), -EINVAL);
}

static void the_span_ends_where_told(void **state) {
  int v;
  assert_int_equal(num_parse_int("123abc", 3, 0, 1000, &v), 0);
  assert_int_equal(v, 123);
  assert_int_equal(num_parse_int_str("42", 0, 100, &v), 0);
  assert_int_equal(v, 42);
}

static void sixty_four_bit_edges(void **state) {
  uint64_t u;
  assert_int_equal(num_parse_u64("18446744073709551615", 20, UINT64_MAX, &u), 0);
  assert_true(u == UINT64_MAX);
  assert_int_equal(num_parse_u64("18446744073709551616", 20, UINT64_MAX, &u), -ERANGE);
  int64_t i;
  assert_int_equal(num_parse_i64("-9223372036854775808", 20, INT64_MIN, INT64_MAX, &i), 0);
  assert_true(i == INT64_MIN);
  assert_int_equal(num_parse_i64("9223372036854775808", 19, INT64_MIN, INT64_MAX, &i), -ERANGE);
  assert_int_equal(num_parse_i64("-9223372036854775809", 20, INT64_MIN, INT64_MAX, &i), -ERANGE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(plain_numbers_are_read),
      cmocka_unit_test(anything_but_digits_is_refused),
      cmocka_unit_test(out_of_range_is_erange_not_wrapped),
      cmocka_unit_test(the_span_ends_where_told),
      cmocka_unit_test(sixty_four_bit_edges),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
