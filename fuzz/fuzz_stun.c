/*
 * fuzz_stun: a datagram from anyone that reaches a media port and looks like
 * STUN.
 *
 * The input is one UDP payload. It goes where the worker sends it: the
 * RFC 7983 test, the full parse, the FINGERPRINT and MESSAGE-INTEGRITY
 * checks, the username peek that routes a check to its call, and the
 * ICE-lite responder. The key is RFC 5769's sample password, so the RFC's
 * sample request in the corpus passes integrity and the fuzzer starts from
 * a message the code accepts all the way. Whatever we send back must itself
 * be a well-formed STUN message that passes our own checks.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "fuzz.h"
#include "rtc/ice.h"
#include "rtc/stun.h"

#define KEY "VOkJxbRl1RmTxUk/WvJxBt"

/* A response we built must parse, carry the request's transaction and pass our checks. */
static void check_reply(const struct stun_msg *req, const uint8_t *out, int n, int signed_) {
  if (n < 0) return;
  struct stun_msg m;
  FUZZ_CHECK(stun_is_stun(out, (size_t)n));
  FUZZ_CHECK(stun_parse(out, (size_t)n, &m) == 0);
  FUZZ_CHECK(memcmp(m.txid, req->txid, 12) == 0);
  FUZZ_CHECK(stun_check_fingerprint(&m) == 0);
  if (signed_) FUZZ_CHECK(stun_check_integrity(&m, KEY) == 0);
}

static void parse_and_answer(const uint8_t *p, size_t n) {
  struct stun_msg m;
  if (stun_parse(p, n, &m) != 0) return;
  FUZZ_CHECK(m.len == n && m.data == p);
  if (m.username) FUZZ_CHECK(m.username >= p && m.username + m.username_len <= p + n);
  FUZZ_CHECK(m.mi_offset < n && m.fp_offset < n);
  FUZZ_CHECK(m.nunknown >= 0 && m.nunknown <= 8);
  (void)stun_check_fingerprint(&m);
  int authentic = stun_check_integrity(&m, KEY) == 0;

  struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons(50000)};
  v4.sin_addr.s_addr = htonl(0xc0000201);
  struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(3478)};
  inet_pton(AF_INET6, "2001:db8::1", &v6.sin6_addr);
  uint8_t out[1500];
  if (m.cls == STUN_REQUEST && m.method == STUN_BINDING) {
    check_reply(&m, out, stun_binding_success(&m, (struct sockaddr *)&v4, KEY, out, sizeof out), 1);
    check_reply(&m, out, stun_binding_success(&m, (struct sockaddr *)&v6, NULL, out, sizeof out), 0);
  }
  check_reply(&m, out, stun_binding_error(&m, 420, authentic ? KEY : NULL, out, sizeof out),
              authentic);
  check_reply(&m, out, stun_binding_error(&m, 400, NULL, out, sizeof out), 0);
  /* A short output buffer is an error, never an overrun. */
  uint8_t tiny[24];
  FUZZ_CHECK(stun_binding_error(&m, 487, KEY, tiny, sizeof tiny) < 0);
}

/*
 * Makes a parsed message look as if the peer knew this agent's random
 * credentials: the username's first part becomes our ufrag and
 * MESSAGE-INTEGRITY and FINGERPRINT are recomputed. Without it the fuzzer
 * could never get past the HMAC into the responder's authenticated paths.
 */
static void sign_for(struct ice_agent *a, uint8_t *p, size_t n) {
  struct stun_msg m;
  if (stun_parse(p, n, &m) != 0) return;
  const char *ufrag = ice_local_ufrag(a), *pwd = ice_local_pwd(a);
  size_t ul = strlen(ufrag);
  if (m.username && m.username_len > ul) {
    uint8_t *u = p + (m.username - p);
    memcpy(u, ufrag, ul);
    u[ul] = ':';
    if (m.username_len == ul + 5) memcpy(u + ul + 1, "evtj", 4);
  }
  if (m.mi_offset) {
    uint8_t hdr_len[2] = {p[2], p[3]};
    size_t covered = m.mi_offset + 24 - STUN_HEADER;
    p[2] = (uint8_t)(covered >> 8), p[3] = (uint8_t)covered;
    unsigned int maclen = 0;
    HMAC(EVP_sha1(), pwd, (int)strlen(pwd), p, m.mi_offset, p + m.mi_offset + 4, &maclen);
    p[2] = hdr_len[0], p[3] = hdr_len[1];
  }
  if (m.fp_offset) {
    uint32_t crc = stun_crc32(p, m.fp_offset) ^ 0x5354554eu;
    uint8_t *f = p + m.fp_offset + 4;
    f[0] = (uint8_t)(crc >> 24), f[1] = (uint8_t)(crc >> 16), f[2] = (uint8_t)(crc >> 8),
    f[3] = (uint8_t)crc;
  }
}

/* The ICE-lite agent as a worker runs it: remote credentials known, our password random. */
static void ice_agent_sees(uint8_t *p, size_t n, int sign) {
  struct ice_agent *a = ice_agent_new(1000, 30000);
  FUZZ_CHECK(a != NULL);
  ice_set_remote(a, "evtj", KEY);
  if (sign) sign_for(a, p, n);
  struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(40000)};
  from.sin_addr.s_addr = htonl(0x7f000001);
  uint8_t out[1500];
  size_t out_len = 0;
  int r = ice_handle(a, p, n, (struct sockaddr *)&from, 2000, out, sizeof out, &out_len);
  if (r & ICE_RESPOND) {
    FUZZ_CHECK(out_len > 0 && out_len <= sizeof out);
    FUZZ_CHECK(stun_is_stun(out, out_len));
  }
  /* A path is selected only by an authenticated check, and then it is the sender's. */
  if (r & ICE_SELECTED) {
    FUZZ_CHECK(sign && (r & ICE_AUTHENTICATED));
    FUZZ_CHECK(memcmp(ice_selected(a), &from, sizeof from) == 0);
  }
  if (!sign) FUZZ_CHECK(!(r & ICE_AUTHENTICATED) && ice_selected(a) == NULL);
  FUZZ_CHECK(!ice_expired(a, 2000));
  ice_agent_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A private copy of exactly `size` bytes: the sanitizers see any read past the datagram. */
  uint8_t *p = malloc(size ? size : 1);
  if (!p) return 0;
  if (size) memcpy(p, data, size);
  (void)stun_is_stun(p, size);
  const char *user = NULL;
  size_t ulen = 0;
  if (stun_peek_username(p, size, &user, &ulen) == 0 && user)
    FUZZ_CHECK((const uint8_t *)user >= p && (const uint8_t *)user + ulen <= p + size);
  parse_and_answer(p, size);
  ice_agent_sees(p, size, 0);
  ice_agent_sees(p, size, 1);
  free(p);
  return 0;
}
