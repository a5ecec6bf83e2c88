/*
 * Secrets out of error text.
 *
 * Matching is by 8-character windows: every position of the text is
 * compared, case-folded, with every window of every secret, and the
 * characters a match covers are marked; each run of marked characters
 * becomes one mask. Any stretch of 8 or more characters taken from a
 * secret is covered by its windows, so it is masked whole, and a mask
 * never leaves a tail of the secret beside it. The cost (text length x
 * secret length x 8) is nothing for an error message, which is the only
 * place this runs.
 */
#include "core/redact.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WINDOW 8
#define MIN_SECRET 4
#define MAX_SECRETS 32

struct redact {
  char *secret[MAX_SECRETS]; /* lower-cased copies */
  size_t len[MAX_SECRETS];
  int n;
};

int redact_new(struct redact **out) {
  *out = calloc(1, sizeof **out);
  return *out ? 0 : -ENOMEM;
}

void redact_free(struct redact *r) {
  if (!r) return;
  for (int i = 0; i < r->n; i++) free(r->secret[i]);
  free(r);
}

int redact_add(struct redact *r, const char *secret) {
  size_t n = secret ? strlen(secret) : 0;
  if (n < MIN_SECRET) return 0;
  for (int i = 0; i < r->n; i++)
    if (r->len[i] == n && strncasecmp(r->secret[i], secret, n) == 0) return 0; /* already kept */
  if (r->n == MAX_SECRETS) return -ENOSPC;
  char *copy = malloc(n + 1);
  if (!copy) return -ENOMEM;
  for (size_t i = 0; i <= n; i++) copy[i] = (char)tolower((unsigned char)secret[i]);
  r->secret[r->n] = copy;
  r->len[r->n++] = n;
  return 0;
}

static int hex_value(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Adds the password as written and, when it is percent-encoded, as decoded. */
static int add_password(struct redact *r, const char *p, size_t n) {
  char raw[1024], decoded[1024];
  if (n >= sizeof raw) n = sizeof raw - 1;
  memcpy(raw, p, n);
  raw[n] = '\0';
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int hi = i + 2 < n && raw[i] == '%' ? hex_value((unsigned char)raw[i + 1]) : -1;
    int lo = hi >= 0 ? hex_value((unsigned char)raw[i + 2]) : -1;
    if (lo >= 0) {
      decoded[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      decoded[o++] = raw[i];
    }
  }
  decoded[o] = '\0';
  int rc = redact_add(r, raw);
  return rc ? rc : redact_add(r, decoded);
}

/* postgres://user:password@host/db, or the key=value form's password=... */
static int add_database_password(struct redact *r, const char *url) {
  const char *scheme = strstr(url, "://");
  if (scheme) {
    const char *auth = scheme + 3, *at = strchr(auth, '@'), *slash = strchr(auth, '/');
    if (!at || (slash && slash < at)) return 0;
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    return colon ? add_password(r, colon + 1, (size_t)(at - colon - 1)) : 0;
  }
  for (const char *p = strstr(url, "password"); p; p = strstr(p + 1, "password")) {
    const char *v = p + 8;
    while (*v == ' ') v++;
    if (*v != '=' || (p != url && !isspace((unsigned char)p[-1]))) continue;
    v++;
    while (*v == ' ') v++;
    if (*v == '\'') {
      const char *end = strchr(v + 1, '\'');
      return add_password(r, v + 1, end ? (size_t)(end - v - 1) : strlen(v + 1));
    }
    return add_password(r, v, strcspn(v, " \t"));
  }
  return 0;
}

int redact_add_config(struct redact *r, const struct config *cfg) {
  const char *envs[] = {cfg->asr_api_key_env, cfg->llm_api_key_env, cfg->tts_api_key_env};
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < sizeof envs / sizeof *envs; i++)
    if (envs[i][0]) rc = redact_add(r, getenv(envs[i]));
  if (rc == 0) rc = redact_add(r, cfg->admin_token);
  if (rc == 0) rc = redact_add(r, cfg->call_secret);
  if (rc == 0) rc = add_database_password(r, cfg->database_url);
  return rc;
}

static int same_folded(const char *text, const char *lower, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (tolower((unsigned char)text[i]) != (unsigned char)lower[i]) return 0;
  return 1;
}

/* Marks in `hit` every character of text that lies in a window of secret s. */
static void mark(const struct redact *r, int s, const char *text, size_t n, unsigned char *hit) {
  size_t len = r->len[s], w = len < WINDOW ? len : WINDOW;
  for (size_t i = 0; i + w <= n; i++)
    for (size_t j = 0; j + w <= len; j++)
      if (same_folded(text + i, r->secret[s] + j, w)) {
        memset(hit + i, 1, w);
        break;
      }
}

void redact_text(const struct redact *r, const char *text, char *out, size_t outlen) {
  if (!outlen) return;
  size_t n = strlen(text);
  unsigned char *hit = r && r->n ? calloc(n + 1, 1) : NULL;
  if (r && r->n && !hit) {
    snprintf(out, outlen, "%s", REDACT_MASK);
    return;
  }
  for (int s = 0; hit && s < r->n; s++) mark(r, s, text, n, hit);
  size_t o = 0;
  for (size_t i = 0; i < n && o + 1 < outlen;) {
    if (hit && hit[i]) {
      for (const char *m = REDACT_MASK; *m && o + 1 < outlen; m++) out[o++] = *m;
      while (i < n && hit[i]) i++;
    } else {
      out[o++] = text[i++];
    }
  }
  out[o] = '\0';
  free(hit);
}

void redact_error_id(char out[REDACT_ERROR_ID_SIZE]) {
  unsigned char b[6];
  if (RAND_bytes(b, sizeof b) != 1) memset(b, 0, sizeof b);
  snprintf(out, REDACT_ERROR_ID_SIZE, "e-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
}
