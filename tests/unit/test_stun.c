/* stun + ice: RFC 5769 test vectors, building, and the ICE-lite responder. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rtc/ice.h"
#include "rtc/stun.h"

static const char *vector_pwd = "VOkJxbRl1RmTxUk/WvJxBt";

/* RFC 5769 2.1 */
static const uint8_t req[] = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf};

/* RFC 5769 2.2 */
static const uint8_t resp4[] = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96};

/* RFC 5769 2.3 */
static const uint8_t resp6[] = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c};

static void rfc5769_request(void **state) {
  struct stun_msg m;
  assert_int_equal(stun_parse(req, sizeof req, &m), 0);
  assert_int_equal(m.cls, STUN_REQUEST);
  assert_int_equal(m.method, STUN_BINDING);
  assert_int_equal(m.username_len, 9);
  assert_memory_equal(m.username, "evtj:h6vY", 9);
  assert_int_equal(m.priority, 0x6e0001ff);
  assert_true(m.has_controlled);
  assert_true(m.tie_breaker == 0x932ff9b151263b36ull);
  assert_int_equal(stun_check_fingerprint(&m), 0);
  assert_int_equal(stun_check_integrity(&m, vector_pwd), 0);
  assert_int_equal(stun_check_integrity(&m, "wrong password"), -EACCES);
}

static void rfc5769_ipv4_response_and_rebuild(void **state) {
  struct stun_msg m;
  assert_int_equal(stun_parse(resp4, sizeof resp4, &m), 0);
  assert_int_equal(m.cls, STUN_SUCCESS);
  assert_int_equal(stun_check_fingerprint(&m), 0);
  assert_int_equal(stun_check_integrity(&m, vector_pwd), 0);
  assert_true(m.has_xor_mapped);
  struct sockaddr_in *in = (struct sockaddr_in *)&m.xor_mapped;
  assert_int_equal(ntohs(in->sin_port), 32853);
  assert_int_equal(ntohl(in->sin_addr.s_addr), 0xc0000201); /* 192.0.2.1 */
  /* Our writer reproduces the vector byte for byte. */
  uint8_t out[128];
  struct stun_writer w;
  stun_begin(&w, out, sizeof out, STUN_SUCCESS, STUN_BINDING, resp4 + 8);
  stun_put(&w, STUN_ATTR_SOFTWARE, "test vector", 11);
  w.buf[w.len - 1] = 0x20; /* the vector pads with a space */
  stun_put_xor_address(&w, (struct sockaddr *)in);
  int n = stun_finish(&w, vector_pwd);
  assert_int_equal(n, sizeof resp4);
  assert_memory_equal(out, resp4, sizeof resp4);
}

static void rfc5769_ipv6_response_and_rebuild(void **state) {
  struct stun_msg m;
  assert_int_equal(stun_parse(resp6, sizeof resp6, &m), 0);
  assert_int_equal(stun_check_fingerprint(&m), 0);
  assert_int_equal(stun_check_integrity(&m, vector_pwd), 0);
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&m.xor_mapped;
  assert_int_equal(in6->sin6_family, AF_INET6);
  assert_int_equal(ntohs(in6->sin6_port), 32853);
  char ip[64];
  inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
  assert_string_equal(ip, "2001:db8:1234:5678:11:2233:4455:6677");
  uint8_t out[128];
  struct stun_writer w;
  stun_begin(&w, out, sizeof out, STUN_SUCCESS, STUN_BINDING, resp6 + 8);
  stun_put(&w, STUN_ATTR_SOFTWARE, "test vector", 11);
  w.buf[w.len - 1] = 0x20;
  stun_put_xor_address(&w, (struct sockaddr *)in6);
  assert_int_equal(stun_finish(&w, vector_pwd), (int)sizeof resp6);
  assert_memory_equal(out, resp6, sizeof resp6);
}

static void malformed_messages(void **state) {
  struct stun_msg m;
  uint8_t b[sizeof req];
  memcpy(b, req, sizeof b);
  b[4] ^= 1; /* cookie */
  assert_int_equal(stun_parse(b, sizeof b, &m), -EBADMSG);
  assert_int_equal(stun_parse(req, sizeof req - 4, &m), -EBADMSG); /* length mismatch */
  memcpy(b, req, sizeof b);
  b[23] = 0xff; /* SOFTWARE length runs past the end */
  assert_int_equal(stun_parse(b, sizeof b, &m), -EBADMSG);
  memcpy(b, req, sizeof b);
  b[sizeof b - 1] ^= 1; /* fingerprint */
  assert_int_equal(stun_parse(b, sizeof b, &m), 0);
  assert_int_equal(stun_check_fingerprint(&m), -EBADMSG);
  memcpy(b, req, sizeof b);
  b[30] ^= 1; /* a byte covered by MESSAGE-INTEGRITY */
  assert_int_equal(stun_parse(b, sizeof b, &m), 0);
  assert_int_equal(stun_check_integrity(&m, vector_pwd), -EACCES);
  assert_int_equal(stun_parse(req, 10, &m), -EBADMSG);
}

static void fuzz_parser(void **state) {
  uint8_t b[sizeof req];
  unsigned seed = 7;
  for (int i = 0; i < 200000; i++) {
    memcpy(b, req, sizeof b);
    int flips = 1 + rand_r(&seed) % 4;
    for (int k = 0; k < flips; k++) b[rand_r(&seed) % sizeof b] ^= (uint8_t)(1 << (rand_r(&seed) % 8));
    size_t n = (size_t)(rand_r(&seed) % 4 == 0 ? rand_r(&seed) % sizeof b : sizeof b);
    struct stun_msg m;
    if (stun_parse(b, n, &m) == 0) {
      stun_check_fingerprint(&m);
      stun_check_integrity(&m, vector_pwd);
    }
  }
}

/* --- ICE-lite ------------------------------------------------------------------ */

static struct sockaddr_in addr4(const char *ip, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

/* A browser's check toward `a`. */
static int check(uint8_t *buf, size_t cap, struct ice_agent *a, const char *remote_ufrag,
                 const char *pwd, int use_candidate, int controlled) {
  uint8_t txid[12];
  for (int i = 0; i < 12; i++) txid[i] = (uint8_t)rand();
  struct stun_writer w;
  char user[128];
  snprintf(user, sizeof user, "%s:%s", ice_local_ufrag(a), remote_ufrag);
  stun_begin(&w, buf, cap, STUN_REQUEST, STUN_BINDING, txid);
  stun_put(&w, STUN_ATTR_USERNAME, user, strlen(user));
  stun_put_u32(&w, STUN_ATTR_PRIORITY, 0x7e7f00ff);
  stun_put_u64(&w, controlled ? STUN_ATTR_ICE_CONTROLLED : STUN_ATTR_ICE_CONTROLLING, 42);
  if (use_candidate) stun_put(&w, STUN_ATTR_USE_CANDIDATE, NULL, 0);
  return stun_finish(&w, pwd);
}

static void ice_answers_and_selects(void **state) {
  struct ice_agent *a = ice_agent_new(1000, 30000);
  assert_int_equal(strlen(ice_local_ufrag(a)), 8);
  assert_int_equal(strlen(ice_local_pwd(a)), 24);
  ice_set_remote(a, "peer", "peerpassword0123456789ab");
  uint8_t in[256], out[256];
  size_t olen;
  struct sockaddr_in from = addr4("192.0.2.10", 50000);
  int n = check(in, sizeof in, a, "peer", ice_local_pwd(a), 0, 0);
  int r = ice_handle(a, in, (size_t)n, (struct sockaddr *)&from, 1100, out, sizeof out, &olen);
  assert_int_equal(r, ICE_RESPOND | ICE_AUTHENTICATED);
  assert_null(ice_selected(a));
  struct stun_msg m;
  assert_int_equal(stun_parse(out, olen, &m), 0);
  assert_int_equal(m.cls, STUN_SUCCESS);
  assert_int_equal(stun_check_integrity(&m, ice_local_pwd(a)), 0);
  assert_int_equal(stun_check_fingerprint(&m), 0);
  assert_memory_equal(&((struct sockaddr_in *)&m.xor_mapped)->sin_addr, &from.sin_addr, 4);

  n = check(in, sizeof in, a, "peer", ice_local_pwd(a), 1, 0);
  r = ice_handle(a, in, (size_t)n, (struct sockaddr *)&from, 1200, out, sizeof out, &olen);
  assert_int_equal(r, ICE_RESPOND | ICE_AUTHENTICATED | ICE_SELECTED);
  assert_non_null(ice_selected(a));

  /* The network changes: a nomination from a new address moves the path. */
  struct sockaddr_in6 from6 = {.sin6_family = AF_INET6, .sin6_port = htons(40000)};
  inet_pton(AF_INET6, "2001:db8::5", &from6.sin6_addr);
  n = check(in, sizeof in, a, "peer", ice_local_pwd(a), 1, 0);
  r = ice_handle(a, in, (size_t)n, (struct sockaddr *)&from6, 1300, out, sizeof out, &olen);
  assert_true(r & ICE_SELECTED);
  assert_int_equal(ice_selected(a)->sa_family, AF_INET6);
  assert_int_equal(stun_parse(out, olen, &m), 0);
  assert_int_equal(m.xor_mapped.ss_family, AF_INET6);

  assert_false(ice_expired(a, 1250)); /* a clock reading from before the last check */
  assert_false(ice_expired(a, 1300 + 29999));
  assert_true(ice_expired(a, 1300 + 30000));
  ice_agent_free(a);
}

static void ice_rejects_bad_checks(void **state) {
  struct ice_agent *a = ice_agent_new(0, 30000);
  ice_set_remote(a, "peer", "x");
  uint8_t in[256], out[256];
  size_t olen;
  struct sockaddr_in from = addr4("192.0.2.10", 50000);
  struct stun_msg m;
  /* wrong password: 401 */
  int n = check(in, sizeof in, a, "peer", "not the password", 0, 0);
  assert_int_equal(ice_handle(a, in, (size_t)n, (struct sockaddr *)&from, 1, out, sizeof out, &olen), ICE_RESPOND);
  assert_int_equal(stun_parse(out, olen, &m), 0);
  assert_int_equal(m.cls, STUN_ERROR);
  assert_int_equal(m.error_code, 401);
  /* wrong remote ufrag: 401 */
  n = check(in, sizeof in, a, "someone-else", ice_local_pwd(a), 0, 0);
  ice_handle(a, in, (size_t)n, (struct sockaddr *)&from, 1, out, sizeof out, &olen);
  stun_parse(out, olen, &m);
  assert_int_equal(m.error_code, 401);
  /* no USERNAME: 400 */
  uint8_t txid[12] = {1};
  struct stun_writer w;
  stun_begin(&w, in, sizeof in, STUN_REQUEST, STUN_BINDING, txid);
  n = stun_finish(&w, NULL);
  ice_handle(a, in, (size_t)n, (struct sockaddr *)&from, 1, out, sizeof out, &olen);
  stun_parse(out, olen, &m);
  assert_int_equal(m.error_code, 400);
  /* the peer also claims to be controlled: 487 */
  n = check(in, sizeof in, a, "peer", ice_local_pwd(a), 0, 1);
  ice_handle(a, in, (size_t)n, (struct sockaddr *)&from, 1, out, sizeof out, &olen);
  stun_parse(out, olen, &m);
  assert_int_equal(m.error_code, 487);
  /* an unknown comprehension-required attribute: 420 listing it */
  stun_begin(&w, in, sizeof in, STUN_REQUEST, STUN_BINDING, txid);
  char user[64];
  snprintf(user, sizeof user, "%s:peer", ice_local_ufrag(a));
  stun_put(&w, STUN_ATTR_USERNAME, user, strlen(user));
  stun_put_u32(&w, 0x7777, 1);
  n = stun_finish(&w, ice_local_pwd(a));
  ice_handle(a, in, (size_t)n, (struct sockaddr *)&from, 1, out, sizeof out, &olen);
  stun_parse(out, olen, &m);
  assert_int_equal(m.error_code, 420);
  /* no fingerprint at all: not for us, dropped */
  assert_int_equal(ice_handle(a, req, 20, (struct sockaddr *)&from, 1, out, sizeof out, &olen), ICE_DROP);
  /* nothing authenticated arrived: expires 30 s after start */
  assert_true(ice_expired(a, 30000));
  ice_agent_free(a);
}

static void ice_restart_changes_credentials(void **state) {
  struct ice_agent *a = ice_agent_new(0, 30000);
  ice_set_remote(a, "old", "oldpwd");
  char old_ufrag[16], old_pwd[32];
  snprintf(old_ufrag, sizeof old_ufrag, "%s", ice_local_ufrag(a));
  snprintf(old_pwd, sizeof old_pwd, "%s", ice_local_pwd(a));
  uint8_t in[256], out[256];
  size_t olen;
  struct sockaddr_in from = addr4("192.0.2.10", 50000);
  int n = check(in, sizeof in, a, "old", old_pwd, 1, 0);
  assert_true(ice_handle(a, in, (size_t)n, (struct sockaddr *)&from, 10, out, sizeof out, &olen) & ICE_SELECTED);
  ice_restart(a, "new", "newpwd", 20000);
  assert_string_not_equal(old_ufrag, ice_local_ufrag(a));
  assert_non_null(ice_selected(a)); /* media keeps flowing meanwhile */
  assert_false(ice_expired(a, 40000));
  /* old credentials no longer work */
  n = check(in, sizeof in, a, "old", old_pwd, 1, 0);
  assert_int_equal(ice_handle(a, in, (size_t)n, (struct sockaddr *)&from, 20001, out, sizeof out, &olen), ICE_RESPOND);
  struct sockaddr_in from2 = addr4("198.51.100.4", 60000);
  n = check(in, sizeof in, a, "new", ice_local_pwd(a), 1, 0);
  assert_true(ice_handle(a, in, (size_t)n, (struct sockaddr *)&from2, 20002, out, sizeof out, &olen) & ICE_SELECTED);
  ice_agent_free(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rfc5769_request),
      cmocka_unit_test(rfc5769_ipv4_response_and_rebuild),
      cmocka_unit_test(rfc5769_ipv6_response_and_rebuild),
      cmocka_unit_test(malformed_messages),
      cmocka_unit_test(fuzz_parser),
      cmocka_unit_test(ice_answers_and_selects),
      cmocka_unit_test(ice_rejects_bad_checks),
      cmocka_unit_test(ice_restart_changes_credentials),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
