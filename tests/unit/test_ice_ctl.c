/* ice_ctl: the client's controlling agent against our ICE-lite agent, and its answers. */
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

#include "client/ice_ctl.h"
#include "rtc/ice.h"
#include "rtc/stun.h"

static struct sockaddr_in addr(const char *ip, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

struct pair {
  struct icectl *c;
  struct ice_agent *s;
  struct sockaddr_in client, server;
};

static void make_pair(struct pair *p) {
  p->c = icectl_new(1000);
  p->s = ice_agent_new(1000, 30000);
  assert_non_null(p->c);
  assert_non_null(p->s);
  p->client = addr("10.0.0.2", 40000);
  p->server = addr("10.0.0.1", 50000);
  ice_set_remote(p->s, icectl_local_ufrag(p->c), icectl_local_pwd(p->c));
  icectl_set_remote(p->c, ice_local_ufrag(p->s), ice_local_pwd(p->s));
  assert_int_equal(icectl_add_candidate(p->c, (struct sockaddr *)&p->server), 0);
}

static void free_pair(struct pair *p) {
  icectl_free(p->c);
  ice_agent_free(p->s);
}

static void first_check_selects_the_path_on_both_sides(void **state) {
  struct pair p;
  make_pair(&p);
  uint8_t chk[600], resp[600];
  struct sockaddr_storage to;
  int n = icectl_poll(p.c, 1000, chk, sizeof chk, &to);
  assert_true(n > 0);
  assert_memory_equal(&((struct sockaddr_in *)&to)->sin_addr, &p.server.sin_addr, 4);
  assert_int_equal(icectl_poll(p.c, 1010, chk + 300, 300, &to), 0); /* not due yet */
  struct stun_msg m;
  assert_int_equal(stun_parse(chk, (size_t)n, &m), 0);
  assert_true(m.use_candidate && m.has_controlling && m.has_priority);
  size_t rl;
  int r = ice_handle(p.s, chk, (size_t)n, (struct sockaddr *)&p.client, 1000, resp, sizeof resp, &rl);
  assert_true(r & ICE_SELECTED);
  assert_null(icectl_selected(p.c));
  size_t ol;
  uint8_t out[600];
  r = icectl_handle(p.c, resp, rl, (struct sockaddr *)&p.server, 1001, out, sizeof out, &ol);
  assert_int_equal(r, ICECTL_SELECTED);
  assert_non_null(icectl_selected(p.c));
  /* the same response again selects nothing new */
  assert_int_equal(icectl_handle(p.c, resp, rl, (struct sockaddr *)&p.server, 1002, out, sizeof out, &ol), ICECTL_DROP);
  assert_false(icectl_failed(p.c, 20000, 10000));
  free_pair(&p);
}

static void responses_that_are_not_ours_are_ignored(void **state) {
  struct pair p;
  make_pair(&p);
  uint8_t chk[600], resp[600], out[600];
  struct sockaddr_storage to;
  int n = icectl_poll(p.c, 1000, chk, sizeof chk, &to);
  size_t rl, ol;
  ice_handle(p.s, chk, (size_t)n, (struct sockaddr *)&p.client, 1000, resp, sizeof resp, &rl);
  /* from another address */
  struct sockaddr_in other = addr("10.0.0.9", 50000);
  assert_int_equal(icectl_handle(p.c, resp, rl, (struct sockaddr *)&other, 1001, out, sizeof out, &ol), ICECTL_DROP);
  /* signed with another password */
  struct ice_agent *imposter = ice_agent_new(1000, 30000);
  ice_set_remote(imposter, icectl_local_ufrag(p.c), icectl_local_pwd(p.c));
  struct stun_msg req;
  assert_int_equal(stun_parse(chk, (size_t)n, &req), 0);
  uint8_t forged[600];
  int fl = stun_binding_success(&req, (struct sockaddr *)&p.client, ice_local_pwd(imposter), forged, sizeof forged);
  assert_true(fl > 0);
  assert_int_equal(icectl_handle(p.c, forged, (size_t)fl, (struct sockaddr *)&p.server, 1001, out, sizeof out, &ol), ICECTL_DROP);
  assert_null(icectl_selected(p.c));
  ice_agent_free(imposter);
  /* never answered: ICE fails after the timeout */
  assert_false(icectl_failed(p.c, 5000, 10000));
  assert_true(icectl_failed(p.c, 11001, 10000));
  free_pair(&p);
}

static void answers_the_peers_checks_like_a_full_agent(void **state) {
  struct pair p;
  make_pair(&p);
  /* a controlled peer's check: USERNAME ours:theirs, signed with our password */
  char user[64];
  snprintf(user, sizeof user, "%s:%s", icectl_local_ufrag(p.c), ice_local_ufrag(p.s));
  uint8_t tx[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, chk[600], out[600];
  struct stun_writer w;
  stun_begin(&w, chk, sizeof chk, STUN_REQUEST, STUN_BINDING, tx);
  stun_put(&w, STUN_ATTR_USERNAME, user, strlen(user));
  stun_put_u32(&w, STUN_ATTR_PRIORITY, 12345);
  stun_put_u64(&w, STUN_ATTR_ICE_CONTROLLED, 42);
  int n = stun_finish(&w, icectl_local_pwd(p.c));
  assert_true(n > 0);
  size_t ol;
  int r = icectl_handle(p.c, chk, (size_t)n, (struct sockaddr *)&p.server, 1000, out, sizeof out, &ol);
  assert_int_equal(r, ICECTL_RESPOND);
  struct stun_msg m;
  assert_int_equal(stun_parse(out, ol, &m), 0);
  assert_int_equal(m.cls, STUN_SUCCESS);
  assert_int_equal(stun_check_integrity(&m, icectl_local_pwd(p.c)), 0);
  assert_true(m.has_xor_mapped);
  /* the same check signed with a wrong password: 401 */
  stun_begin(&w, chk, sizeof chk, STUN_REQUEST, STUN_BINDING, tx);
  stun_put(&w, STUN_ATTR_USERNAME, user, strlen(user));
  n = stun_finish(&w, "wrong-password-wrong-pw");
  r = icectl_handle(p.c, chk, (size_t)n, (struct sockaddr *)&p.server, 1000, out, sizeof out, &ol);
  assert_int_equal(r, ICECTL_RESPOND);
  assert_int_equal(stun_parse(out, ol, &m), 0);
  assert_int_equal(m.error_code, 401);
  /* garbage is dropped */
  assert_int_equal(icectl_handle(p.c, (const uint8_t *)"\0\1junkjunkjunkjunkjunk", 22,
                                 (struct sockaddr *)&p.server, 1000, out, sizeof out, &ol), ICECTL_DROP);
  free_pair(&p);
}

static void candidates_are_bounded(void **state) {
  struct icectl *c = icectl_new(0);
  struct sockaddr_in a = addr("10.0.0.1", 1);
  for (int i = 0; i < ICECTL_MAX_CANDIDATES; i++) assert_int_equal(icectl_add_candidate(c, (struct sockaddr *)&a), 0);
  assert_int_equal(icectl_add_candidate(c, (struct sockaddr *)&a), -ENOSPC);
  struct sockaddr bad = {.sa_family = AF_UNIX};
  assert_int_equal(icectl_add_candidate(c, &bad), -EINVAL);
  icectl_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(first_check_selects_the_path_on_both_sides),
      cmocka_unit_test(responses_that_are_not_ours_are_ignored),
      cmocka_unit_test(answers_the_peers_checks_like_a_full_agent),
      cmocka_unit_test(candidates_are_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
