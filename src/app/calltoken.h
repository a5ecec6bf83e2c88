/*
 * calltoken: short-lived permissions to start calls.
 *
 * With call_auth = token, /ws starts a call only for a caller holding a
 * token that this server's call_secret signed. A token is a bearer
 * credential: whoever holds it may start calls with it until it expires
 * (the per-address limits still apply), so it is minted short-lived and
 * per visitor. A customer's web backend
 * mints one per visitor (tingshuo token, POST /api/tokens, or its own code
 * following docs/security.md) and hands it to the page; the page cannot
 * forge one, lengthen it, or change the settings it carries.
 *
 * Wire form: "v1." base64url(JSON payload) "." base64url(HMAC-SHA256 of
 * everything before the second dot). The payload holds "exp" (Unix
 * seconds), optionally "sub" (who it was minted for, stored in the call's
 * record) and "settings" (call settings the page may not override).
 */
#ifndef TS_APP_CALLTOKEN_H
#define TS_APP_CALLTOKEN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define CALLTOKEN_MAX 4096   /* longest token accepted, bytes */
#define CALLTOKEN_SUB_MAX 128 /* sub: 1..127 printable ASCII characters */
#define CALLTOKEN_TTL_DEFAULT 300
#define CALLTOKEN_TTL_MAX 86400 /* longest lifetime tingshuo token and POST /api/tokens grant */

/* 1 when `secret` is long enough to sign tokens (16 bytes or more). */
int calltoken_secret_ok(const char *secret);

struct calltoken {
  int64_t exp;                      /* Unix seconds */
  char sub[CALLTOKEN_SUB_MAX];      /* "" = none */
  json_t *settings;                 /* object or NULL; owned, freed by calltoken_clear */
};

/*
 * Mints a token valid until `exp`. `sub` may be NULL; `settings` (may be
 * NULL) must be a JSON object and is copied. *out is malloc'd, NUL-ended.
 * Returns 0, -EINVAL (secret shorter than 16 bytes, exp not positive, bad
 * sub, settings not an object, or a token longer than CALLTOKEN_MAX) or
 * -ENOMEM.
 */
int calltoken_mint(const char *secret, int64_t exp, const char *sub, const json_t *settings,
                   char **out);

/*
 * Checks `token` (len bytes, not necessarily NUL-ended) against `secret` at
 * time `now`. Returns 0 and fills *out (calltoken_clear it), or -EINVAL
 * (malformed), -EACCES (bad signature) or -ETIMEDOUT (expired); `err` gets
 * a message fit for the caller (it never reveals the secret).
 */
int calltoken_verify(const char *secret, const char *token, size_t len, int64_t now,
                     struct calltoken *out, char *err, size_t errlen);

void calltoken_clear(struct calltoken *t);

#endif
