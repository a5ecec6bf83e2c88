/* hostaddr: which interface addresses a wildcard media socket offers, and in what order. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "net/hostaddr.h"

static uv_interface_address_t iface(const char *ip) {
  uv_interface_address_t a;
  memset(&a, 0, sizeof a);
  a.name = "test0";
  if (strchr(ip, ':')) {
    a.address.address6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &a.address.address6.sin6_addr);
  } else {
    a.address.address4.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a.address.address4.sin_addr);
  }
  return a;
}

/* What a laptop on a LAN lists, in the kernel's order: loopback first. */
static const char *const MACHINE[] = {"127.0.0.1",    "::1",         "192.168.1.20",
                                      "fe80::1",      "2001:db8::20", "169.254.3.4",
                                      "172.17.0.1",   "192.168.1.20"};
#define NMACHINE (int)(sizeof MACHINE / sizeof MACHINE[0])

static int pick(int ipv6, char (*out)[HOSTADDR_LEN], int max) {
  uv_interface_address_t ifs[NMACHINE];
  for (int i = 0; i < NMACHINE; i++) ifs[i] = iface(MACHINE[i]);
  return hostaddr_pick(ifs, NMACHINE, ipv6, out, max);
}

static void ipv4_socket_offers_lan_addresses_then_loopback(void **state) {
  char out[8][HOSTADDR_LEN];
  assert_int_equal(pick(0, out, 8), 3);
  assert_string_equal(out[0], "192.168.1.20"); /* once, though listed twice */
  assert_string_equal(out[1], "172.17.0.1");
  assert_string_equal(out[2], "127.0.0.1");
}

static void dual_stack_socket_adds_ipv6_before_any_loopback(void **state) {
  char out[8][HOSTADDR_LEN];
  assert_int_equal(pick(1, out, 8), 5);
  assert_string_equal(out[0], "192.168.1.20");
  assert_string_equal(out[1], "172.17.0.1");
  assert_string_equal(out[2], "2001:db8::20");
  assert_string_equal(out[3], "127.0.0.1");
  assert_string_equal(out[4], "::1"); /* link-local fe80::1 and 169.254.3.4 never */
}

static void a_short_list_keeps_the_best(void **state) {
  char out[2][HOSTADDR_LEN];
  assert_int_equal(pick(1, out, 2), 2);
  assert_string_equal(out[0], "192.168.1.20");
  assert_string_equal(out[1], "172.17.0.1");
}

static void loopback_alone_is_still_offered(void **state) {
  uv_interface_address_t lo = iface("127.0.0.1");
  char out[4][HOSTADDR_LEN];
  assert_int_equal(hostaddr_pick(&lo, 1, 0, out, 4), 1);
  assert_string_equal(out[0], "127.0.0.1");
  assert_int_equal(hostaddr_pick(NULL, 0, 0, out, 4), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ipv4_socket_offers_lan_addresses_then_loopback),
      cmocka_unit_test(dual_stack_socket_adds_ipv6_before_any_loopback),
      cmocka_unit_test(a_short_list_keeps_the_best),
      cmocka_unit_test(loopback_alone_is_still_offered),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
