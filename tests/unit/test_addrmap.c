/* addrmap: IPv4 and IPv6 keys, replacement, removal by value, growth past tombstones. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "media/addrmap.h"

static struct sockaddr_in v4(const char *ip, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

static void put_get_replace_remove(void **state) {
  struct addrmap *m = addrmap_new();
  int a, b;
  struct sockaddr_in x = v4("10.0.0.1", 5000), y = v4("10.0.0.1", 5001);
  struct sockaddr_in6 z = {.sin6_family = AF_INET6, .sin6_port = htons(5000)};
  inet_pton(AF_INET6, "2001:db8::1", &z.sin6_addr);
  assert_int_equal(addrmap_put(m, (void *)&x, &a), 0);
  assert_int_equal(addrmap_put(m, (void *)&z, &b), 0);
  assert_ptr_equal(addrmap_get(m, (void *)&x), &a);
  assert_ptr_equal(addrmap_get(m, (void *)&z), &b);
  assert_null(addrmap_get(m, (void *)&y));
  assert_int_equal(addrmap_put(m, (void *)&x, &b), 0);
  assert_ptr_equal(addrmap_get(m, (void *)&x), &b);
  assert_int_equal(addrmap_count(m), 2);
  addrmap_remove_value(m, &b);
  assert_int_equal(addrmap_count(m), 0);
  assert_null(addrmap_get(m, (void *)&x));
  struct sockaddr bad = {.sa_family = AF_UNIX};
  assert_true(addrmap_put(m, &bad, &a) < 0);
  addrmap_free(m);
}

static void many_entries_and_churn(void **state) {
  struct addrmap *m = addrmap_new();
  static int vals[5000];
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 5000; i++) {
      struct sockaddr_in a = v4("192.0.2.7", 1000 + i);
      assert_int_equal(addrmap_put(m, (void *)&a, &vals[i]), 0);
    }
    for (int i = 0; i < 5000; i++) {
      struct sockaddr_in a = v4("192.0.2.7", 1000 + i);
      assert_ptr_equal(addrmap_get(m, (void *)&a), &vals[i]);
    }
    for (int i = 0; i < 5000; i += 500) addrmap_remove_value(m, &vals[i]);
    assert_int_equal(addrmap_count(m), 4990);
    for (int i = 0; i < 5000; i++) addrmap_remove_value(m, &vals[i]);
    assert_int_equal(addrmap_count(m), 0);
  }
  addrmap_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(put_get_replace_remove),
      cmocka_unit_test(many_entries_and_churn),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
