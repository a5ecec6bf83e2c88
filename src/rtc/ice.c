/*
 * ICE-lite.
 *
 * A lite agent has only host candidates, never sends checks, and is always
 * the controlled side (RFC 8445 2.5). Its whole job is to answer the
 * browser's checks correctly and to follow the browser's choice of path:
 *
 *  - a Binding request whose USERNAME is "<our ufrag>:<their ufrag>" and
 *    whose MESSAGE-INTEGRITY verifies with our password is authenticated
 *    and answered with XOR-MAPPED-ADDRESS; its arrival refreshes consent;
 *  - USE-CANDIDATE on an authenticated check makes its source the
 *    selected path (the browser nominated it); a later nomination from
 *    another address moves the path, which is how a network change or an
 *    ICE restart switches the call over;
 *  - without a valid FINGERPRINT a packet is not STUN for us: dropped;
 *    missing USERNAME or MESSAGE-INTEGRITY gets 400, a wrong user or
 *    password 401 (RFC 8489 9.1.3), an unknown comprehension-required
 *    attribute 420, and a peer that also claims to be controlled 487;
 *  - the call is over when no authenticated check arrived for the consent
 *    timeout (30 s, RFC 7675 5.1), or none at all since the start.
 */
#include "rtc/ice.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtc/stun.h"

#define UFRAG_LEN 8
#define PWD_LEN 24

struct ice_agent {
  char ufrag[UFRAG_LEN + 1], pwd[PWD_LEN + 1];
  char remote_ufrag[257], remote_pwd[257];
  struct sockaddr_storage selected;
  int has_selected;
  uint64_t last_consent_ms;
  int timeout_ms;
};

void ice_random_chars(char *out, size_t n) {
  static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  unsigned char r[256];
  while (n) {
    size_t k = n < sizeof r ? n : sizeof r;
    RAND_bytes(r, (int)k);
    for (size_t i = 0; i < k; i++) *out++ = set[r[i] & 63];
    n -= k;
  }
  *out = '\0';
}

static void new_credentials(struct ice_agent *a) {
  ice_random_chars(a->ufrag, UFRAG_LEN);
  ice_random_chars(a->pwd, PWD_LEN);
}

struct ice_agent *ice_agent_new(uint64_t now_ms, int timeout_ms) {
  struct ice_agent *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  new_credentials(a);
  a->last_consent_ms = now_ms;
  a->timeout_ms = timeout_ms;
  return a;
}

void ice_agent_free(struct ice_agent *a) { free(a); }
const char *ice_local_ufrag(const struct ice_agent *a) { return a->ufrag; }
const char *ice_local_pwd(const struct ice_agent *a) { return a->pwd; }

void ice_set_remote(struct ice_agent *a, const char *ufrag, const char *pwd) {
  snprintf(a->remote_ufrag, sizeof a->remote_ufrag, "%s", ufrag);
  snprintf(a->remote_pwd, sizeof a->remote_pwd, "%s", pwd);
}

void ice_restart(struct ice_agent *a, const char *remote_ufrag, const char *remote_pwd,
                 uint64_t now_ms) {
  new_credentials(a);
  ice_set_remote(a, remote_ufrag, remote_pwd);
  a->last_consent_ms = now_ms; /* give the peer a full timeout to come back */
}

/* USERNAME must be "<our ufrag>:<their ufrag>". */
static int username_ok(const struct ice_agent *a, const struct stun_msg *m) {
  size_t ul = strlen(a->ufrag), rl = strlen(a->remote_ufrag);
  if (m->username_len < ul + 1 || memcmp(m->username, a->ufrag, ul) != 0 || m->username[ul] != ':')
    return 0;
  if (!rl) return 1; /* their ufrag not known yet: accept any */
  return m->username_len == ul + 1 + rl && memcmp(m->username + ul + 1, a->remote_ufrag, rl) == 0;
}

static int respond(int rc, size_t *out_len, int flags) {
  if (rc < 0) return ICE_DROP;
  *out_len = (size_t)rc;
  return ICE_RESPOND | flags;
}

int ice_handle(struct ice_agent *a, const uint8_t *pkt, size_t len, const struct sockaddr *from,
               uint64_t now_ms, uint8_t *out, size_t cap, size_t *out_len) {
  struct stun_msg m;
  if (stun_parse(pkt, len, &m) || stun_check_fingerprint(&m)) return ICE_DROP;
  if (m.cls != STUN_REQUEST || m.method != STUN_BINDING) return ICE_DROP; /* indications, stray responses */
  if (!m.username || !m.mi_offset) return respond(stun_binding_error(&m, 400, NULL, out, cap), out_len, 0);
  if (!username_ok(a, &m) || stun_check_integrity(&m, a->pwd))
    return respond(stun_binding_error(&m, 401, NULL, out, cap), out_len, 0);
  if (m.nunknown) return respond(stun_binding_error(&m, 420, a->pwd, out, cap), out_len, 0);
  /* A lite agent is always controlled; a peer claiming the same role is in conflict. */
  if (m.has_controlled) return respond(stun_binding_error(&m, 487, a->pwd, out, cap), out_len, 0);
  int flags = ICE_AUTHENTICATED;
  a->last_consent_ms = now_ms;
  if (m.use_candidate) {
    size_t sl = from->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (!a->has_selected || memcmp(&a->selected, from, sl) != 0) flags |= ICE_SELECTED;
    memset(&a->selected, 0, sizeof a->selected);
    memcpy(&a->selected, from, sl);
    a->has_selected = 1;
  }
  return respond(stun_binding_success(&m, from, a->pwd, out, cap), out_len, flags);
}

const struct sockaddr *ice_selected(const struct ice_agent *a) {
  return a->has_selected ? (const struct sockaddr *)&a->selected : NULL;
}

int ice_expired(const struct ice_agent *a, uint64_t now_ms) {
  /* `now` may trail a time taken on another thread's clock: that is not expiry. */
  return now_ms > a->last_consent_ms && now_ms - a->last_consent_ms >= (uint64_t)a->timeout_ms;
}
