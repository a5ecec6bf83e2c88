/*
 * Call tokens: an HMAC-SHA256 over a small JSON payload.
 *
 * Why this shape and not JWT: a JWT carries its own algorithm choice, which
 * is how "alg: none" and key-confusion attacks happen. Here the version
 * prefix fixes the algorithm, so there is nothing to negotiate, and the
 * format is small enough that a customer's backend can mint tokens in a
 * dozen lines of any language (docs/security.md shows how).
 *
 * Verification goes from cheap and safe to expensive: length, shape and
 * base64url first, then the signature (compared in constant time), and only
 * then is the payload parsed as JSON, so a stranger's bytes reach the JSON
 * parser only when they were signed with our secret. The payload is still
 * checked strictly, since a backend with a bug can sign nonsense: exactly
 * the fields documented, each of its type. The base64url decoder takes only
 * the canonical form (no padding, no stray bits), so a token has one
 * spelling and a tampered one never verifies by accident.
 */
#include "app/calltoken.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "v1."
#define PREFIX_LEN 3
#define MAC_LEN 32
#define MAC_B64_LEN 43 /* 32 bytes, base64url without padding */
#define SECRET_MIN 16

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Writes base64url of `in` without padding to `out` (room for 4*len/3+3); returns its length. */
static size_t b64url_encode(const unsigned char *in, size_t len, char *out) {
  size_t o = 0, i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = B64[v >> 18 & 63];
    out[o++] = B64[v >> 12 & 63];
    out[o++] = B64[v >> 6 & 63];
    out[o++] = B64[v & 63];
  }
  if (len - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = B64[v >> 18 & 63];
    out[o++] = B64[v >> 12 & 63];
  } else if (len - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = B64[v >> 18 & 63];
    out[o++] = B64[v >> 12 & 63];
    out[o++] = B64[v >> 6 & 63];
  }
  out[o] = '\0';
  return o;
}

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

/* Decodes canonical base64url into `out` (room for 3*len/4 bytes); -1 when not canonical. */
static long b64url_decode(const char *in, size_t len, unsigned char *out) {
  if (len % 4 == 1) return -1;
  uint32_t acc = 0;
  int bits = 0;
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    int v = b64_value(in[i]);
    if (v < 0) return -1;
    acc = (acc << 6 | (uint32_t)v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits & 0xff);
    }
  }
  if (bits && (acc & ((1u << bits) - 1))) return -1; /* leftover bits must be zero */
  return (long)o;
}

static void sign(const char *secret, const char *msg, size_t len, unsigned char mac[MAC_LEN]) {
  unsigned int n = MAC_LEN;
  HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, len, mac, &n);
}

static int sub_ok(const char *s, size_t len) {
  if (len == 0 || len >= CALLTOKEN_SUB_MAX) return 0;
  for (size_t i = 0; i < len; i++)
    if (s[i] < 0x20 || s[i] > 0x7e) return 0;
  return 1;
}

int calltoken_secret_ok(const char *secret) { return secret && strlen(secret) >= SECRET_MIN; }

int calltoken_mint(const char *secret, int64_t exp, const char *sub, const json_t *settings,
                   char **out) {
  *out = NULL;
  if (!calltoken_secret_ok(secret) || exp <= 0 || (sub && !sub_ok(sub, strlen(sub))) ||
      (settings && !json_is_object(settings)))
    return -EINVAL;
  json_t *p = json_pack("{s:I}", "exp", (json_int_t)exp);
  if (p && sub) json_object_set_new(p, "sub", json_string(sub));
  if (p && settings) json_object_set_new(p, "settings", json_deep_copy(settings));
  char *text = p ? json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(p);
  if (!text) return -ENOMEM;
  size_t tlen = strlen(text);
  size_t cap = PREFIX_LEN + (tlen + 2) / 3 * 4 + 1 + MAC_B64_LEN + 1;
  char *tok = malloc(cap);
  if (!tok) {
    free(text);
    return -ENOMEM;
  }
  memcpy(tok, PREFIX, PREFIX_LEN);
  size_t n = PREFIX_LEN + b64url_encode((const unsigned char *)text, tlen, tok + PREFIX_LEN);
  free(text);
  unsigned char mac[MAC_LEN];
  sign(secret, tok, n, mac);
  tok[n++] = '.';
  b64url_encode(mac, MAC_LEN, tok + n);
  if (strlen(tok) > CALLTOKEN_MAX) { /* settings too large for a token */
    free(tok);
    return -EINVAL;
  }
  *out = tok;
  return 0;
}

static int fail(int rc, char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return rc;
}

/* The payload's fields, strictly: exp (required), sub and settings (optional), nothing else. */
static int read_payload(json_t *p, struct calltoken *out, char *err, size_t errlen) {
  if (!json_is_object(p)) return fail(-EINVAL, err, errlen, "malformed call token: payload is not a JSON object");
  const char *key;
  json_t *v;
  json_object_foreach(p, key, v) {
    if (strcmp(key, "exp") && strcmp(key, "sub") && strcmp(key, "settings"))
      return fail(-EINVAL, err, errlen, "malformed call token: unknown field \"%.32s\"", key);
  }
  json_t *exp = json_object_get(p, "exp");
  if (!json_is_integer(exp) || json_integer_value(exp) <= 0)
    return fail(-EINVAL, err, errlen, "malformed call token: \"exp\" must be a positive integer");
  json_t *sub = json_object_get(p, "sub");
  if (sub && (!json_is_string(sub) || !sub_ok(json_string_value(sub), json_string_length(sub))))
    return fail(-EINVAL, err, errlen,
                "malformed call token: \"sub\" must be 1 to %d printable ASCII characters",
                CALLTOKEN_SUB_MAX - 1);
  json_t *settings = json_object_get(p, "settings");
  if (settings && !json_is_object(settings))
    return fail(-EINVAL, err, errlen, "malformed call token: \"settings\" must be an object");
  out->exp = (int64_t)json_integer_value(exp);
  if (sub) snprintf(out->sub, sizeof out->sub, "%s", json_string_value(sub));
  if (settings) out->settings = json_incref(settings);
  return 0;
}

int calltoken_verify(const char *secret, const char *token, size_t len, int64_t now,
                     struct calltoken *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (!calltoken_secret_ok(secret))
    return fail(-EINVAL, err, errlen, "call tokens are not set up on this server");
  if (!token || len == 0) return fail(-EINVAL, err, errlen, "no call token");
  if (len > CALLTOKEN_MAX)
    return fail(-EINVAL, err, errlen, "malformed call token: longer than %d bytes", CALLTOKEN_MAX);
  if (len < PREFIX_LEN || memcmp(token, PREFIX, PREFIX_LEN) != 0)
    return fail(-EINVAL, err, errlen, "malformed call token: it does not start with \"v1.\"");
  const char *body = token + PREFIX_LEN, *end = token + len;
  const char *dot = memchr(body, '.', (size_t)(end - body));
  if (!dot || memchr(dot + 1, '.', (size_t)(end - dot - 1)) || dot == body)
    return fail(-EINVAL, err, errlen, "malformed call token: expected v1.PAYLOAD.SIGNATURE");
  for (const char *c = body; c < dot; c++)
    if (b64_value(*c) < 0)
      return fail(-EINVAL, err, errlen, "malformed call token: bad payload encoding");
  unsigned char mac[MAC_LEN + 3], want[MAC_LEN];
  size_t maclen = (size_t)(end - dot - 1);
  if (maclen != MAC_B64_LEN || b64url_decode(dot + 1, maclen, mac) != MAC_LEN)
    return fail(-EINVAL, err, errlen, "malformed call token: bad signature encoding");
  sign(secret, token, (size_t)(dot - token), want);
  if (CRYPTO_memcmp(mac, want, MAC_LEN) != 0)
    return fail(-EACCES, err, errlen, "call token signature does not match (forged, altered, or "
                                      "signed with another secret)");
  /* Signed by us from here on; still checked, as a backend can sign nonsense. */
  unsigned char text[CALLTOKEN_MAX];
  long tlen = b64url_decode(body, (size_t)(dot - body), text);
  if (tlen < 0) return fail(-EINVAL, err, errlen, "malformed call token: bad payload encoding");
  json_error_t je;
  json_t *p = json_loadb((const char *)text, (size_t)tlen, JSON_REJECT_DUPLICATES, &je);
  if (!p) return fail(-EINVAL, err, errlen, "malformed call token: payload is not JSON");
  int rc = read_payload(p, out, err, errlen);
  json_decref(p);
  if (rc) {
    calltoken_clear(out);
    return rc;
  }
  if (out->exp <= now) {
    long long ago = (long long)(now - out->exp);
    calltoken_clear(out);
    return fail(-ETIMEDOUT, err, errlen, "call token expired %lld s ago", ago);
  }
  return 0;
}

void calltoken_clear(struct calltoken *t) {
  if (!t) return;
  json_decref(t->settings);
  memset(t, 0, sizeof *t);
}
