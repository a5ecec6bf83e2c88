/*
 * fuzz_calltoken: the call token a caller presents on /ws (query parameter
 * or first message), the one secret-protected thing a stranger can send.
 *
 * Every input is tried twice. As a token: forged, cut, re-encoded or
 * minted by our own code (the corpus), it must be refused or accepted with
 * a consistent result. As a payload: the input is signed here with the
 * server's secret, the way a customer's backend with a bug would sign
 * nonsense, so the fuzzer reaches the strict payload checks behind the
 * signature that it could never forge. No error text may contain the
 * secret, and a token that verifies must survive being minted again.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "app/calltoken.h"
#include "fuzz.h"

#define SECRET "fuzzing-secret-0123456789abcdef"
#define NOW 1800000000

static size_t b64url(const uint8_t *in, size_t n, char *out) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    acc = acc << 8 | in[i];
    bits += 8;
    while (bits >= 6) out[o++] = abc[(acc >> (bits -= 6)) & 63];
  }
  if (bits) out[o++] = abc[(acc << (6 - bits)) & 63];
  return o;
}

static void check_result(int rc, const struct calltoken *t, const char *err, const uint8_t *data,
                         size_t size) {
  FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -EACCES || rc == -ETIMEDOUT);
  /* The secret may come back only when the input itself spelled it out (an echoed field name). */
  FUZZ_CHECK(strstr(err, SECRET) == NULL || memmem(data, size, SECRET, strlen(SECRET)) != NULL);
  if (rc != 0) {
    FUZZ_CHECK(err[0] != '\0' && t->settings == NULL && t->exp == 0 && t->sub[0] == '\0');
    return;
  }
  FUZZ_CHECK(t->exp > NOW && strlen(t->sub) < CALLTOKEN_SUB_MAX);
  for (const char *c = t->sub; *c; c++) FUZZ_CHECK(*c >= 0x20 && *c <= 0x7e);
  FUZZ_CHECK(t->settings == NULL || json_is_object(t->settings));
  /* What verified can be minted again and verifies to the same facts. */
  char *again = NULL;
  int mrc = calltoken_mint(SECRET, t->exp, t->sub[0] ? t->sub : NULL, t->settings, &again);
  if (mrc != 0) {
    FUZZ_CHECK(mrc == -EINVAL && again == NULL); /* settings too large once re-encoded */
    return;
  }
  struct calltoken u;
  char err2[256] = "";
  FUZZ_CHECK(calltoken_verify(SECRET, again, strlen(again), NOW, &u, err2, sizeof err2) == 0);
  FUZZ_CHECK(u.exp == t->exp && strcmp(u.sub, t->sub) == 0);
  FUZZ_CHECK(json_equal(u.settings, t->settings) || (!u.settings && !t->settings));
  calltoken_clear(&u);
  free(again);
}

static void as_token(const uint8_t *data, size_t size) {
  char *tok = malloc(size ? size : 1); /* exactly `size` bytes, not NUL-ended */
  FUZZ_CHECK(tok != NULL);
  if (size) memcpy(tok, data, size);
  struct calltoken t;
  char err[256] = "";
  int rc = calltoken_verify(SECRET, tok, size, NOW, &t, err, sizeof err);
  check_result(rc, &t, err, data, size);
  calltoken_clear(&t);
  /* Another server's secret never accepts what ours signed. */
  rc = calltoken_verify("another-secret-0123456789abcdef", tok, size, NOW, &t, err, sizeof err);
  FUZZ_CHECK(rc != 0);
  calltoken_clear(&t);
  free(tok);
}

static void as_signed_payload(const uint8_t *data, size_t size) {
  if (size > CALLTOKEN_MAX) return;
  size_t cap = 3 + (size + 2) / 3 * 4 + 1 + 44;
  char *tok = malloc(cap);
  FUZZ_CHECK(tok != NULL);
  memcpy(tok, "v1.", 3);
  size_t n = 3 + b64url(data, size, tok + 3);
  uint8_t mac[32];
  unsigned int maclen = sizeof mac;
  HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const uint8_t *)tok, n, mac, &maclen);
  tok[n++] = '.';
  n += b64url(mac, sizeof mac, tok + n);
  struct calltoken t;
  char err[256] = "";
  int rc = calltoken_verify(SECRET, tok, n, NOW, &t, err, sizeof err);
  check_result(rc, &t, err, data, size);
  /* Properly signed: refused for what it says, never for its signature (unless too long). */
  FUZZ_CHECK(rc != -EACCES);
  calltoken_clear(&t);
  free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  as_token(data, size);
  as_signed_payload(data, size);
  return 0;
}
