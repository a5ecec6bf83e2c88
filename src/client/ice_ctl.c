/*
 * The controlling ICE agent of the client.
 *
 * Nomination is aggressive: every check carries USE-CANDIDATE, so the first
 * one that succeeds both finds and selects the path. An ICE-lite server
 * (ours) follows the nomination of the check it answers; a full agent
 * (Janus) accepts it too. Before a path is chosen each candidate is checked
 * every CHECK_MS; the transaction ids of the last few checks are kept so a
 * late response still counts. A response is accepted only when its
 * transaction id is one of ours and its MESSAGE-INTEGRITY verifies with the
 * peer's password (RFC 8445 7.2.5.2).
 *
 * Once selected, the path gets a consent check every CONSENT_MS; 30 s with
 * no answer to them is consent lost (RFC 7675 5.1).
 *
 * Checks from the peer are answered like any agent's: USERNAME must be
 * "<our ufrag>:<theirs>" and MESSAGE-INTEGRITY verify with our password. A
 * peer that also claims the controlling role with a larger tie-breaker
 * wins it (RFC 8445 7.3.1.1); we then stop nominating, which a controlled
 * client cannot do anyway, and keep answering.
 */
#include "client/ice_ctl.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtc/ice.h"
#include "rtc/stun.h"

#define CHECK_MS 50
#define CONSENT_MS 2000
#define CONSENT_LOST_MS 30000
#define TX_KEEP 8
/* host candidate, local preference 65535, component 1; peer-reflexive type for PRIORITY */
#define CHECK_PRIORITY ((110u << 24) | (65535u << 8) | 255u)

struct cand {
  struct sockaddr_storage addr;
  uint64_t next_ms;
  uint8_t tx[TX_KEEP][12];
  int ntx;
};

struct icectl {
  char ufrag[9], pwd[25];
  char remote_ufrag[257], remote_pwd[257];
  struct cand cands[ICECTL_MAX_CANDIDATES];
  int ncands;
  int selected; /* index, -1 before */
  int controlled; /* lost a role conflict */
  uint64_t tie_breaker;
  uint64_t started_ms, last_consent_ms;
};

struct icectl *icectl_new(uint64_t now_ms) {
  struct icectl *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  ice_random_chars(a->ufrag, 8);
  ice_random_chars(a->pwd, 24);
  RAND_bytes((unsigned char *)&a->tie_breaker, sizeof a->tie_breaker);
  a->selected = -1;
  a->started_ms = a->last_consent_ms = now_ms;
  return a;
}

void icectl_free(struct icectl *a) { free(a); }
const char *icectl_local_ufrag(const struct icectl *a) { return a->ufrag; }
const char *icectl_local_pwd(const struct icectl *a) { return a->pwd; }

void icectl_set_remote(struct icectl *a, const char *ufrag, const char *pwd) {
  snprintf(a->remote_ufrag, sizeof a->remote_ufrag, "%s", ufrag);
  snprintf(a->remote_pwd, sizeof a->remote_pwd, "%s", pwd);
}

static size_t addr_len(const struct sockaddr *sa) {
  return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static int same_addr(const struct sockaddr *a, const struct sockaddr *b) {
  if (a->sa_family != b->sa_family) return 0;
  if (a->sa_family == AF_INET) {
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
  return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
}

int icectl_add_candidate(struct icectl *a, const struct sockaddr *addr) {
  if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) return -EINVAL;
  if (a->ncands >= ICECTL_MAX_CANDIDATES) return -ENOSPC;
  struct cand *c = &a->cands[a->ncands++];
  memset(c, 0, sizeof *c);
  memcpy(&c->addr, addr, addr_len(addr));
  return 0;
}

static int build_check(struct icectl *a, struct cand *c, uint8_t *out, size_t cap) {
  uint8_t *tx = c->tx[c->ntx % TX_KEEP];
  RAND_bytes(tx, 12);
  c->ntx++;
  char user[520];
  snprintf(user, sizeof user, "%s:%s", a->remote_ufrag, a->ufrag);
  struct stun_writer w;
  stun_begin(&w, out, cap, STUN_REQUEST, STUN_BINDING, tx);
  stun_put(&w, STUN_ATTR_USERNAME, user, strlen(user));
  stun_put_u32(&w, STUN_ATTR_PRIORITY, CHECK_PRIORITY);
  if (!a->controlled) {
    stun_put_u64(&w, STUN_ATTR_ICE_CONTROLLING, a->tie_breaker);
    stun_put(&w, STUN_ATTR_USE_CANDIDATE, NULL, 0);
  } else {
    stun_put_u64(&w, STUN_ATTR_ICE_CONTROLLED, a->tie_breaker);
  }
  int n = stun_finish(&w, a->remote_pwd);
  return n < 0 ? 0 : n;
}

int icectl_poll(struct icectl *a, uint64_t now_ms, uint8_t *out, size_t cap,
                struct sockaddr_storage *to) {
  if (!a->remote_pwd[0]) return 0;
  for (int i = 0; i < a->ncands; i++) {
    if (a->selected >= 0 && i != a->selected) continue;
    struct cand *c = &a->cands[i];
    if (now_ms < c->next_ms) continue;
    c->next_ms = now_ms + (a->selected >= 0 ? CONSENT_MS : CHECK_MS);
    memcpy(to, &c->addr, sizeof *to);
    return build_check(a, c, out, cap);
  }
  return 0;
}

static int ours(const struct cand *c, const uint8_t *tx) {
  int n = c->ntx < TX_KEEP ? c->ntx : TX_KEEP;
  for (int i = 0; i < n; i++)
    if (memcmp(c->tx[i], tx, 12) == 0) return 1;
  return 0;
}

/* Only from the address the check went to: RFC 8445 7.2.5.2.1, symmetric paths. */
static int on_response(struct icectl *a, const struct stun_msg *m, const struct sockaddr *from,
                       uint64_t now_ms) {
  for (int i = 0; i < a->ncands; i++) {
    if (!ours(&a->cands[i], m->txid)) continue;
    if (!same_addr((const struct sockaddr *)&a->cands[i].addr, from)) return ICECTL_DROP;
    if (!m->mi_offset || stun_check_integrity(m, a->remote_pwd)) return ICECTL_DROP;
    if (m->cls == STUN_ERROR) {
      if (m->error_code == 487) a->controlled = !a->controlled; /* RFC 8445 7.2.5.1 */
      return ICECTL_DROP;
    }
    a->last_consent_ms = now_ms;
    if (a->selected >= 0) return ICECTL_DROP;
    a->selected = i;
    a->cands[i].next_ms = now_ms + CONSENT_MS;
    return ICECTL_SELECTED;
  }
  return ICECTL_DROP;
}

static int username_ok(const struct icectl *a, const struct stun_msg *m) {
  size_t ul = strlen(a->ufrag);
  return m->username && m->username_len > ul && memcmp(m->username, a->ufrag, ul) == 0 &&
         m->username[ul] == ':';
}

static int on_request(struct icectl *a, const struct stun_msg *m, const struct sockaddr *from,
                      uint8_t *out, size_t cap, size_t *out_len) {
  int n;
  if (!m->username || !m->mi_offset) n = stun_binding_error(m, 400, NULL, out, cap);
  else if (!username_ok(a, m) || stun_check_integrity(m, a->pwd))
    n = stun_binding_error(m, 401, NULL, out, cap);
  else if (m->has_controlling && !a->controlled && a->tie_breaker >= m->tie_breaker)
    n = stun_binding_error(m, 487, a->pwd, out, cap);
  else {
    if (m->has_controlling && !a->controlled) a->controlled = 1;
    n = stun_binding_success(m, from, a->pwd, out, cap);
  }
  if (n < 0) return ICECTL_DROP;
  *out_len = (size_t)n;
  return ICECTL_RESPOND;
}

int icectl_handle(struct icectl *a, const uint8_t *pkt, size_t len, const struct sockaddr *from,
                  uint64_t now_ms, uint8_t *out, size_t cap, size_t *out_len) {
  struct stun_msg m;
  if (stun_parse(pkt, len, &m) || stun_check_fingerprint(&m) || m.method != STUN_BINDING)
    return ICECTL_DROP;
  if (m.cls == STUN_REQUEST) return on_request(a, &m, from, out, cap, out_len);
  if (m.cls == STUN_SUCCESS || m.cls == STUN_ERROR) return on_response(a, &m, from, now_ms);
  return ICECTL_DROP;
}

const struct sockaddr *icectl_selected(const struct icectl *a) {
  return a->selected >= 0 ? (const struct sockaddr *)&a->cands[a->selected].addr : NULL;
}

int icectl_failed(const struct icectl *a, uint64_t now_ms, int timeout_ms) {
  if (a->selected < 0) return now_ms > a->started_ms + (uint64_t)timeout_ms;
  return now_ms > a->last_consent_ms + CONSENT_LOST_MS;
}
