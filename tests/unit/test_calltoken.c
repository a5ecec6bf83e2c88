/* calltoken: minting and checking call tokens, and refusing every altered or odd one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "app/calltoken.h"

#define SECRET "correct horse battery staple 42"
#define NOW 1800000000LL

static char err[256];

static int verify(const char *secret, const char *tok, struct calltoken *t) {
  err[0] = '\0';
  return calltoken_verify(secret, tok, strlen(tok), NOW, t, err, sizeof err);
}

/* The test's own base64url and signing, to build payloads the minter refuses to make. */
static void b64url(const unsigned char *in, size_t len, char *out) {
  static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < len) v |= in[i + 2];
    out[o++] = a[v >> 18 & 63];
    out[o++] = a[v >> 12 & 63];
    if (i + 1 < len) out[o++] = a[v >> 6 & 63];
    if (i + 2 < len) out[o++] = a[v & 63];
  }
  out[o] = '\0';
}

static char *signed_payload(const char *secret, const char *payload) {
  char *tok = malloc(strlen(payload) * 2 + 128);
  strcpy(tok, "v1.");
  b64url((const unsigned char *)payload, strlen(payload), tok + 3);
  unsigned char mac[32];
  unsigned int n = 32;
  HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)tok, strlen(tok), mac, &n);
  strcat(tok, ".");
  b64url(mac, 32, tok + strlen(tok));
  return tok;
}

static void round_trip_keeps_every_field(void **state) {
  json_t *settings = json_pack("{s:s,s:i}", "language", "zh", "rate", 120);
  char *tok = NULL;
  assert_int_equal(calltoken_mint(SECRET, NOW + 60, "visitor-17", settings, &tok), 0);
  assert_non_null(tok);
  assert_int_equal(strncmp(tok, "v1.", 3), 0);
  /* The format is documented for other languages: signed with the secret itself. */
  char *again = signed_payload(SECRET, "{\"exp\":1800000060,\"settings\":{\"language\":\"zh\","
                                       "\"rate\":120},\"sub\":\"visitor-17\"}");
  assert_string_equal(tok, again);
  struct calltoken t;
  assert_int_equal(verify(SECRET, tok, &t), 0);
  assert_int_equal(t.exp, NOW + 60);
  assert_string_equal(t.sub, "visitor-17");
  assert_true(json_equal(t.settings, settings));
  calltoken_clear(&t);
  assert_null(t.settings);
  json_decref(settings);
  free(tok);
  free(again);

  assert_int_equal(calltoken_mint(SECRET, NOW + 1, NULL, NULL, &tok), 0);
  assert_int_equal(verify(SECRET, tok, &t), 0);
  assert_string_equal(t.sub, "");
  assert_null(t.settings);
  calltoken_clear(&t);
  free(tok);
}

/* Every byte matters: flipping any one of them makes the token fail, never crash. */
static void tampering_with_any_part_is_refused(void **state) {
  json_t *settings = json_pack("{s:s}", "system_prompt", "be brief");
  char *tok = NULL;
  assert_int_equal(calltoken_mint(SECRET, NOW + 600, "abc", settings, &tok), 0);
  size_t len = strlen(tok);
  char *copy = malloc(len + 1);
  for (size_t i = 0; i < len; i++) {
    memcpy(copy, tok, len + 1);
    copy[i] = copy[i] == 'A' ? 'B' : 'A';
    struct calltoken t;
    int rc = verify(SECRET, copy, &t);
    assert_true(rc == -EINVAL || rc == -EACCES);
    assert_null(t.settings);
    assert_true(err[0] != '\0');
  }
  /* The payload swapped for another signed payload's, signature kept. */
  char *other = NULL;
  assert_int_equal(calltoken_mint(SECRET, NOW + 86400, "abc", NULL, &other), 0);
  const char *dot = strrchr(tok, '.'), *odot = strrchr(other, '.');
  char spliced[8192];
  snprintf(spliced, sizeof spliced, "%.*s%s", (int)(odot - other), other, dot);
  struct calltoken t;
  assert_int_equal(verify(SECRET, spliced, &t), -EACCES);
  assert_non_null(strstr(err, "signature"));
  /* Truncated anywhere. */
  for (size_t n = 0; n < len; n++) {
    err[0] = '\0';
    int rc = calltoken_verify(SECRET, tok, n, NOW, &t, err, sizeof err);
    assert_true(rc == -EINVAL || rc == -EACCES);
  }
  free(copy);
  free(other);
  free(tok);
  json_decref(settings);
}

static void expired_tokens_say_so(void **state) {
  char *tok = NULL;
  assert_int_equal(calltoken_mint(SECRET, NOW, NULL, NULL, &tok), 0);
  struct calltoken t;
  assert_int_equal(verify(SECRET, tok, &t), -ETIMEDOUT); /* exp is exclusive */
  assert_non_null(strstr(err, "expired"));
  assert_null(t.settings);
  assert_int_equal(calltoken_verify(SECRET, tok, strlen(tok), NOW - 1, &t, err, sizeof err), 0);
  calltoken_clear(&t);
  free(tok);
}

static void another_secret_does_not_verify(void **state) {
  char *tok = NULL;
  assert_int_equal(calltoken_mint(SECRET, NOW + 60, NULL, NULL, &tok), 0);
  struct calltoken t;
  assert_int_equal(verify("another secret of some length", tok, &t), -EACCES);
  assert_null(strstr(err, SECRET));
  /* A short secret can neither mint nor verify. */
  assert_int_equal(verify("short", tok, &t), -EINVAL);
  char *bad = NULL;
  assert_int_equal(calltoken_mint("short", NOW + 60, NULL, NULL, &bad), -EINVAL);
  assert_null(bad);
  free(tok);
}

static void minting_refuses_bad_fields(void **state) {
  char *tok = NULL;
  char long_sub[200];
  memset(long_sub, 'x', sizeof long_sub - 1);
  long_sub[sizeof long_sub - 1] = '\0';
  assert_int_equal(calltoken_mint(SECRET, NOW, long_sub, NULL, &tok), -EINVAL);
  assert_int_equal(calltoken_mint(SECRET, NOW, "tab\there", NULL, &tok), -EINVAL);
  assert_int_equal(calltoken_mint(SECRET, NOW, "", NULL, &tok), -EINVAL);
  assert_int_equal(calltoken_mint(SECRET, 0, NULL, NULL, &tok), -EINVAL);
  json_t *arr = json_array();
  assert_int_equal(calltoken_mint(SECRET, NOW, NULL, arr, &tok), -EINVAL);
  json_decref(arr);
  /* Settings too large for a token. */
  char *big = malloc(8000);
  memset(big, 'p', 7999);
  big[7999] = '\0';
  json_t *s = json_pack("{s:s}", "system_prompt", big);
  assert_int_equal(calltoken_mint(SECRET, NOW, NULL, s, &tok), -EINVAL);
  assert_null(tok);
  json_decref(s);
  free(big);
}

/* Signed, but not what a token holds: each refused with a message naming the problem. */
static void signed_nonsense_is_refused(void **state) {
  static const struct {
    const char *payload, *says;
  } cases[] = {
      {"[1,2]", "not a JSON object"},
      {"not json", "not JSON"},
      {"{}", "exp"},
      {"{\"exp\":\"1900000000\"}", "exp"},
      {"{\"exp\":1.9e9}", "exp"},
      {"{\"exp\":-5}", "exp"},
      {"{\"exp\":1900000000,\"sub\":42}", "sub"},
      {"{\"exp\":1900000000,\"sub\":\"\"}", "sub"},
      {"{\"exp\":1900000000,\"sub\":\"new\\nline\"}", "sub"},
      {"{\"exp\":1900000000,\"sub\":\"caf\\u00e9\"}", "sub"},
      {"{\"exp\":1900000000,\"settings\":\"x\"}", "settings"},
      {"{\"exp\":1900000000,\"admin\":true}", "unknown field"},
      {"{\"exp\":1900000000,\"exp\":1900000001}", "not JSON"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *tok = signed_payload(SECRET, cases[i].payload);
    struct calltoken t;
    assert_int_equal(verify(SECRET, tok, &t), -EINVAL);
    if (!strstr(err, cases[i].says)) fail_msg("%s: \"%s\" lacks \"%s\"", cases[i].payload, err, cases[i].says);
    assert_null(t.settings);
    free(tok);
  }
}

static void malformed_and_huge_inputs_are_refused(void **state) {
  static const char *cases[] = {
      "",    "v1",  "v1.",   "v2.e30.AAAA", "v1..", "v1.e30", "v1.e30.",
      "v1.e30.a.b", "v1.e30!.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      "v1.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
      "v1.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", /* stray low bits */
      "v1.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* one short */
  };
  struct calltoken t;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(verify(SECRET, cases[i], &t), -EINVAL);
    assert_true(err[0] != '\0');
  }
  /* NUL inside the given length. */
  assert_int_equal(calltoken_verify(SECRET, "v1.e\0.x", 7, NOW, &t, err, sizeof err), -EINVAL);
  /* Huge: refused by length before anything else. */
  size_t n = 1 << 20;
  char *huge = malloc(n + 1);
  memset(huge, 'A', n);
  memcpy(huge, "v1.", 3);
  huge[n / 2] = '.';
  huge[n] = '\0';
  assert_int_equal(verify(SECRET, huge, &t), -EINVAL);
  assert_non_null(strstr(err, "longer"));
  free(huge);
  assert_int_equal(calltoken_verify(SECRET, NULL, 0, NOW, &t, err, sizeof err), -EINVAL);
  calltoken_clear(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trip_keeps_every_field),
      cmocka_unit_test(tampering_with_any_part_is_refused),
      cmocka_unit_test(expired_tokens_say_so),
      cmocka_unit_test(another_secret_does_not_verify),
      cmocka_unit_test(minting_refuses_bad_fields),
      cmocka_unit_test(signed_nonsense_is_refused),
      cmocka_unit_test(malformed_and_huge_inputs_are_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
