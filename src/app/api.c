/*
 * The server's dynamic HTTP endpoints: the history API, login, /metrics,
 * /healthz and /livez, POST /api/drain and the history page.
 *
 * Who gets in. Conversations are private, so there are two modes and never
 * a mix of "open" and "remote":
 *
 *  - No admin_token: only clients whose TCP peer address is loopback get
 *    in. Forwarding headers are never believed, but they are heeded: a
 *    request that carries X-Forwarded-For, X-Real-IP or Forwarded came
 *    through a proxy on this machine for somebody else, so it is refused.
 *    So is a loopback request whose Host is not a loopback name, which is
 *    what a DNS-rebinding page in the operator's browser would send.
 *  - admin_token set: every client must present it, loopback included,
 *    either as "Authorization: Bearer TOKEN" or as the session cookie that
 *    POST /api/login sets. Anyone else gets 401. Letting loopback in
 *    without the token would open the API to anyone who reaches the
 *    machine through a local reverse proxy, which is how remote access is
 *    usually built.
 *
 * The session cookie is stateless: "v1.<expiry ms>.<HMAC-SHA256>", keyed
 * with a key derived from admin_token. It survives restarts, expires by
 * itself after 12 h, and every cookie dies when the token changes. Logging
 * out removes it from the browser; a copy taken before stays valid until it
 * expires (changing the token is the way to revoke every session).
 *
 * CSRF: the cookie is SameSite=Strict, and on top of that a POST or DELETE
 * whose Origin names another site is refused, and one authenticated by the
 * cookie must carry an Origin (browsers send it on every POST and DELETE).
 *
 * Reads go to the store, which answers later on the loop; the request
 * waits in a small context meanwhile. If its client goes away the answer
 * is dropped by the HTTP server (http_reply returns -ENOTCONN).
 */
#include "app/api.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "app/calls.h"
#include "app/calltoken.h"
#include "app/metrics.h"
#include "app/signaling.h"
#include "core/log.h"
#include "core/prom.h"
#include "media/recorder.h"
#include "store/store.h"

#ifndef TINGSHUO_WEB_ROOT
#define TINGSHUO_WEB_ROOT "web"
#endif

#define COOKIE_NAME "tingshuo_session"
#define SESSION_S (12 * 3600)
#define ID_MAX 39      /* a call id: [0-9a-f]{1,39} */
#define QUERY_MAX 200  /* bytes of q */
#define CURSOR_MAX 256

/* Every dynamic answer: never cached, never sniffed. */
#define COMMON_HEADERS "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
#define PAGE_HEADERS                                                                             \
  COMMON_HEADERS "X-Frame-Options: DENY\r\nReferrer-Policy: same-origin\r\n"                     \
                 "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "     \
                 "form-action 'self'; frame-ancestors 'none'\r\n"
/* The history page itself: its scripts and styles are its own files. */
#define HISTORY_HEADERS COMMON_HEADERS "X-Frame-Options: DENY\r\nReferrer-Policy: same-origin\r\n"
#define TYPE_JSON "application/json"
#define TYPE_HTML "text/html; charset=utf-8"

struct api {
  const struct config *cfg;
  struct signaling *sig;
  struct store *store;
  int token_set;
  unsigned char token_digest[32]; /* SHA-256 of admin_token */
  unsigned char cookie_key[32];   /* HMAC key for session cookies, derived from admin_token */
  char history_page[1100];        /* web_root/history.html */
  int pending;                    /* store reads not answered yet */
  int stopping;                   /* the store is closing or closed */
  struct http_server *http;       /* for its figures in /metrics; NULL until set */
  void (*drain)(void *user);      /* POST /api/drain; NULL until set */
  void *drain_user;
};

/* A request waiting for the store. */
struct pending {
  struct api *api;
  struct http_req *req;
  char id[ID_MAX + 1];
  int recording; /* wants the call's recording, not its JSON */
};

static const char *const mounts[] = {"/api", "/healthz", "/livez", "/metrics", "/history",
                                     "/history.html", NULL};

/* ---- answers ---- */

/*
 * Every function that answers returns what http_reply does: 0, or
 * -ENOTCONN when the client had gone. The handlers pass it up.
 */
static int reply_error(struct http_req *req, int status, const char *msg, const char *headers) {
  char extra[512];
  snprintf(extra, sizeof extra, COMMON_HEADERS "%s", headers ? headers : "");
  json_t *j = json_pack("{s:s}", "error", msg);
  char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!text) return http_reply(req, 500, TYPE_JSON, extra, "{\"error\":\"out of memory\"}", 25);
  return http_reply_take(req, status, TYPE_JSON, extra, text, strlen(text));
}

/* Takes `j`. Numbers are written with 15 significant digits, so a figure stored from
 * a short decimal reads as it was written: a cost of 0.0123, not 0.012300000000000001. */
static int reply_json(struct http_req *req, int status, json_t *j, const char *headers) {
  char extra[1024];
  snprintf(extra, sizeof extra, COMMON_HEADERS "%s", headers ? headers : "");
  char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
  json_decref(j);
  if (!text) return reply_error(req, 500, "out of memory", NULL);
  return http_reply_take(req, status, TYPE_JSON, extra, text, strlen(text));
}

static int method_not_allowed(struct http_req *req, const char *allow) {
  char h[64];
  snprintf(h, sizeof h, "Allow: %s\r\n", allow);
  return reply_error(req, 405, "method not allowed", h);
}

static int is_get(const struct http_req *req) {
  return http_req_method(req) == HTTP_GET || http_req_method(req) == HTTP_HEAD;
}

/* ---- time ---- */

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static long long days_from_civil(long long y, int m, int d) {
  y -= m <= 2;
  long long era = (y >= 0 ? y : y - 399) / 400;
  long long yoe = y - era * 400;
  long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int days_in_month(long long y, int m) {
  static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : days[m - 1];
}

/* Exactly `n` digits at *s into *out, advancing. */
static int digits(const char **s, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)(*s)[i])) return -1;
    v = v * 10 + ((*s)[i] - '0');
  }
  *s += n;
  *out = v;
  return 0;
}

/* "Z", "+08:00", "+0800", "-05"; the offset in minutes. */
static int parse_zone(const char *s, int *minutes) {
  if ((s[0] == 'Z' || s[0] == 'z') && !s[1]) return *minutes = 0, 0;
  if (s[0] != '+' && s[0] != '-') return -1;
  int sign = s[0] == '-' ? -1 : 1, hh, mm = 0;
  s++;
  if (digits(&s, 2, &hh) || hh > 23) return -1;
  if (*s == ':') s++;
  if (*s && (digits(&s, 2, &mm) || mm > 59)) return -1;
  if (*s) return -1;
  *minutes = sign * (hh * 60 + mm);
  return 0;
}

/* "HH:MM[:SS[.fff]]" then a zone; milliseconds since midnight, UTC-corrected by the zone. */
static int parse_clock(const char *s, long long *ms) {
  int hh, mi, ss = 0, frac = 0, zone;
  if (digits(&s, 2, &hh) || *s++ != ':' || digits(&s, 2, &mi) || hh > 23 || mi > 59) return -1;
  if (*s == ':') {
    s++;
    if (digits(&s, 2, &ss) || ss > 59) return -1;
    if (*s == '.' || *s == ',') {
      s++;
      int n = 0;
      for (; isdigit((unsigned char)*s); s++, n++)
        if (n < 3) frac = frac * 10 + (*s - '0');
      if (n == 0 || n > 9) return -1;
      for (; n < 3; n++) frac *= 10;
    }
  }
  if (parse_zone(s, &zone)) return -1;
  *ms = ((long long)hh * 3600 + mi * 60 + ss - (long long)zone * 60) * 1000 + frac;
  return 0;
}

int api_parse_time(const char *text, long long *ms) {
  const char *s = text;
  size_t n = strlen(s);
  if (n == 0) return -EINVAL;
  if (strspn(s, "0123456789") == n) { /* epoch milliseconds */
    if (n > 15) return -EINVAL;
    *ms = strtoll(s, NULL, 10);
    return 0;
  }
  int y, m, d;
  if (digits(&s, 4, &y) || *s++ != '-' || digits(&s, 2, &m) || *s++ != '-' ||
      digits(&s, 2, &d) || m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
    return -EINVAL;
  long long day_ms = days_from_civil(y, m, d) * 86400000LL, clock = 0;
  if (*s && ((*s != 'T' && *s != 't' && *s != ' ') || parse_clock(s + 1, &clock)))
    return -EINVAL;
  *ms = day_ms + clock;
  return 0;
}

static void format_time(int64_t ms, char *out, size_t cap) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* ---- credentials ---- */

static void sha256(const void *data, size_t len, unsigned char out[32]) {
  unsigned int n = 32;
  EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

static void hmac(const unsigned char *key, size_t keylen, const char *msg, unsigned char out[32]) {
  unsigned int n = 32;
  HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &n);
}

/* Compares digests, not the strings, so the time taken says nothing about the token. */
static int token_matches(const struct api *api, const char *presented, size_t len) {
  unsigned char d[32];
  sha256(presented, len, d);
  return CRYPTO_memcmp(d, api->token_digest, sizeof d) == 0;
}

static void hex(const unsigned char *b, size_t n, char *out) {
  static const char digitset[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digitset[b[i] >> 4];
    out[2 * i + 1] = digitset[b[i] & 15];
  }
  out[2 * n] = '\0';
}

/* "v1.<expiry>.<mac>" into out (at least 100 bytes). */
static void cookie_make(const struct api *api, int64_t expiry_ms, char *out, size_t cap) {
  char msg[40], mac_hex[65];
  unsigned char mac[32];
  snprintf(msg, sizeof msg, "v1.%lld", (long long)expiry_ms);
  hmac(api->cookie_key, sizeof api->cookie_key, msg, mac);
  hex(mac, sizeof mac, mac_hex);
  snprintf(out, cap, "%s.%s", msg, mac_hex);
}

/* One cookie value: well formed, not expired, and signed with the current key. */
static int cookie_valid(const struct api *api, const char *v, size_t len, int64_t now) {
  if (len < 5 || len > 100 || strncmp(v, "v1.", 3) != 0) return 0;
  const char *dot = memchr(v + 3, '.', len - 3);
  if (!dot || dot == v + 3 || (size_t)(v + len - dot - 1) != 64) return 0;
  char msg[40];
  size_t msglen = (size_t)(dot - v);
  if (msglen >= sizeof msg || strspn(v + 3, "0123456789") != msglen - 3) return 0;
  memcpy(msg, v, msglen);
  msg[msglen] = '\0';
  long long expiry = strtoll(msg + 3, NULL, 10);
  if (msglen - 3 > 15 || expiry <= now || expiry > now + (SESSION_S + 60) * 1000LL) return 0;
  unsigned char mac[32];
  char want[65];
  hmac(api->cookie_key, sizeof api->cookie_key, msg, mac);
  hex(mac, sizeof mac, want);
  return CRYPTO_memcmp(want, dot + 1, 64) == 0;
}

/* Any tingshuo_session cookie in the Cookie header that is valid. */
static int has_session(const struct api *api, const char *header) {
  const size_t nlen = strlen(COOKIE_NAME);
  int64_t now = wall_ms();
  for (const char *p = header; p && *p;) {
    p += strspn(p, " \t;");
    size_t len = strcspn(p, ";");
    if (len > nlen && strncmp(p, COOKIE_NAME "=", nlen + 1) == 0) {
      size_t vlen = len - nlen - 1;
      while (vlen && (p[nlen + 1 + vlen - 1] == ' ' || p[nlen + 1 + vlen - 1] == '\t')) vlen--;
      if (cookie_valid(api, p + nlen + 1, vlen, now)) return 1;
    }
    p += len;
  }
  return 0;
}

/* The token of "Authorization: Bearer TOKEN"; NULL for another scheme. */
static const char *bearer(const char *authz, size_t *len) {
  if (!authz || strncasecmp(authz, "Bearer", 6) != 0 || (authz[6] != ' ' && authz[6] != '\t'))
    return NULL;
  const char *t = authz + 6 + strspn(authz + 6, " \t");
  size_t n = strlen(t);
  while (n && (t[n - 1] == ' ' || t[n - 1] == '\t')) n--;
  *len = n;
  return t;
}

/* ---- access ---- */

int api_is_loopback(const char *ip) {
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, ip, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  if (inet_pton(AF_INET6, ip, &a6) != 1) return 0;
  if (IN6_IS_ADDR_LOOPBACK(&a6)) return 1;
  return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

int api_host_is_loopback(const char *host) {
  if (!host) return 1; /* HTTP/1.0 without Host: nothing a browser would send */
  char h[256];
  size_t n;
  if (host[0] == '[') {
    n = strcspn(host + 1, "]");
    if (n >= sizeof h || host[1 + n] != ']') return 0;
    memcpy(h, host + 1, n);
  } else {
    n = strcspn(host, ":");
    if (n >= sizeof h) return 0;
    memcpy(h, host, n);
  }
  h[n] = '\0';
  if (strcasecmp(h, "localhost") == 0) return 1;
  if (n > 10 && strcasecmp(h + n - 10, ".localhost") == 0) return 1;
  return api_is_loopback(h);
}

static int proxied(const struct http_req *req) {
  return http_req_header(req, HTTP_H_X_FORWARDED_FOR) || http_req_header(req, HTTP_H_X_REAL_IP) ||
         http_req_header(req, HTTP_H_FORWARDED);
}

/* The Origin header names the site the request was sent to (compared with Host). */
static int origin_matches_host(const char *origin, const char *host) {
  const char *sep = origin ? strstr(origin, "://") : NULL;
  if (!sep || !host) return 0;
  const char *o = sep + 3;
  size_t olen = strcspn(o, "/");
  return olen == strlen(host) && strncasecmp(o, host, olen) == 0;
}

enum access { LET_IN, NEED_TOKEN, LOOPBACK_ONLY, CROSS_SITE };

static enum access check_access(const struct api *api, const struct http_req *req) {
  int unsafe = http_req_method(req) == HTTP_POST || http_req_method(req) == HTTP_DELETE;
  const char *origin = http_req_header(req, HTTP_H_ORIGIN);
  const char *host = http_req_header(req, HTTP_H_HOST);
  if (unsafe && origin && !origin_matches_host(origin, host)) return CROSS_SITE;
  if (!api->token_set) {
    if (!api_is_loopback(http_req_peer(req)) || proxied(req) || !api_host_is_loopback(host))
      return LOOPBACK_ONLY;
    return LET_IN;
  }
  size_t len = 0;
  const char *authz = http_req_header(req, HTTP_H_AUTHORIZATION);
  if (authz) { /* a credential given explicitly decides, right or wrong */
    const char *t = bearer(authz, &len);
    return t && token_matches(api, t, len) ? LET_IN : NEED_TOKEN;
  }
  if (!has_session(api, http_req_header(req, HTTP_H_COOKIE))) return NEED_TOKEN;
  return unsafe && !origin ? CROSS_SITE : LET_IN;
}

static const char *WWW_AUTH = "WWW-Authenticate: Bearer realm=\"tingshuo\"\r\n";

/* The JSON answer for a request that may not pass. */
static int refuse_json(struct http_req *req, enum access a) {
  if (a == NEED_TOKEN) return reply_error(req, 401, "the admin token is required", WWW_AUTH);
  if (a == CROSS_SITE) return reply_error(req, 403, "cross-site request refused", NULL);
  return reply_error(req, 403, "only loopback clients get in while admin_token is not set", NULL);
}

/* ---- pages: login and refusal ---- */

static int wants_chinese(const struct http_req *req) {
  const char *lang = http_req_query(req, "lang");
  if (lang) return strncasecmp(lang, "zh", 2) == 0;
  const char *al = http_req_header(req, HTTP_H_ACCEPT_LANGUAGE);
  return al && strncasecmp(al + strspn(al, " "), "zh", 2) == 0;
}

struct page_text {
  const char *lang, *title, *lead, *label, *button, *wrong, *loopback;
};

static const struct page_text page_en = {
    .lang = "en",
    .title = "Sign in · tingshuo",
    .lead = "Call history is private. Enter the admin token set on the server.",
    .label = "Admin token",
    .button = "Sign in",
    .wrong = "That token is not right.",
    .loopback = "Call history answers only on the server itself (loopback) while no admin token "
                "is set. Set admin_token to open it to other machines.",
};
static const struct page_text page_zh = {
    .lang = "zh-CN",
    .title = "登录 · tingshuo",
    .lead = "通话记录是私密的。请输入服务器上设置的管理令牌。",
    .label = "管理令牌",
    .button = "登录",
    .wrong = "令牌不正确。",
    .loopback = "未设置管理令牌时，通话记录只对本机（回环地址）开放。"
                "设置 admin_token 后才能从其他机器访问。",
};

/* Where a signed-in form returns: /history or /history/<id>, nothing else (no open redirect). */
static const char *safe_next(const char *next) {
  if (!next || strncmp(next, "/history", 8) != 0) return "/history";
  const char *rest = next + 8;
  if (*rest == '\0') return next;
  size_t idlen = strlen(rest + 1);
  if (*rest == '/' && idlen <= ID_MAX && strspn(rest + 1, "0123456789abcdef") == idlen) return next;
  return "/history";
}

static const char PAGE_STYLE[] =
    "body{font:16px/1.5 system-ui,sans-serif;margin:0;display:grid;place-items:center;"
    "min-height:100vh;background:#f6f7f9;color:#1b1f24}"
    "main{background:#fff;padding:2rem;border-radius:12px;box-shadow:0 1px 4px #0002;"
    "max-width:22rem;width:calc(100% - 4rem)}"
    "h1{font-size:1.25rem;margin:0 0 .5rem}"
    "label{display:block;font-weight:600;margin:1rem 0 .25rem}"
    "input{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;border:1px solid #8a939e;"
    "border-radius:6px}button{margin-top:1rem;padding:.5rem 1.25rem;font:inherit;border:0;"
    "border-radius:6px;background:#0b5cad;color:#fff;cursor:pointer}"
    ".err{color:#b3261e}@media(prefers-color-scheme:dark){body{background:#111418;color:#e6e8eb}"
    "main{background:#1b1f24}input{background:#111418;color:inherit}.err{color:#ff8a80}}";

/* The small sign-in form /history shows without a session; `next` is already safe. */
static int reply_login_page(struct http_req *req, int status, const char *next, int wrong) {
  const struct page_text *t = wants_chinese(req) ? &page_zh : &page_en;
  char *html = NULL;
  int n = asprintf(&html,
                   "<!doctype html><html lang=\"%s\"><head><meta charset=\"utf-8\">"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                   "<title>%s</title><style>%s</style></head><body><main>"
                   "<h1>%s</h1><p>%s</p>"
                   "<form method=\"post\" action=\"/api/login\">"
                   "<input type=\"hidden\" name=\"next\" value=\"%s\">"
                   "<label for=\"token\">%s</label>"
                   "<input id=\"token\" name=\"token\" type=\"password\" required autofocus "
                   "autocomplete=\"current-password\"%s>%s%s%s"
                   "<button type=\"submit\">%s</button></form></main></body></html>",
                   t->lang, t->title, PAGE_STYLE, t->title, t->lead, next, t->label,
                   wrong ? " aria-invalid=\"true\" aria-describedby=\"err\"" : "",
                   wrong ? "<p id=\"err\" class=\"err\" role=\"alert\">" : "",
                   wrong ? t->wrong : "", wrong ? "</p>" : "", t->button);
  char headers[1024];
  snprintf(headers, sizeof headers, PAGE_HEADERS "%s", status == 401 ? WWW_AUTH : "");
  if (n < 0) return reply_error(req, 500, "out of memory", NULL);
  return http_reply_take(req, status, TYPE_HTML, headers, html, (size_t)n);
}

static int reply_loopback_page(struct http_req *req) {
  const struct page_text *t = wants_chinese(req) ? &page_zh : &page_en;
  char *html = NULL;
  int n = asprintf(&html,
                   "<!doctype html><html lang=\"%s\"><head><meta charset=\"utf-8\">"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                   "<title>tingshuo</title><style>%s</style></head><body><main><p>%s</p></main>"
                   "</body></html>",
                   t->lang, PAGE_STYLE, t->loopback);
  if (n < 0) return reply_error(req, 500, "out of memory", NULL);
  return http_reply_take(req, 403, TYPE_HTML, PAGE_HEADERS, html, (size_t)n);
}

/* ---- login and logout ---- */

/* A field of an application/x-www-form-urlencoded body, decoded into out; -1 when absent or bad. */
static int form_field(const char *body, const char *name, char *out, size_t cap) {
  size_t nlen = strlen(name);
  for (const char *p = body; *p;) {
    size_t len = strcspn(p, "&");
    if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=')
      return http_pct_decode(p + nlen + 1, len - nlen - 1, out, cap, 1) < 0 ? -1 : 0;
    p += len + (p[len] == '&');
  }
  return -1;
}

static int content_type_is(const struct http_req *req, const char *type) {
  const char *ct = http_req_header(req, HTTP_H_CONTENT_TYPE);
  size_t n = strlen(type);
  return ct && strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static void session_cookie(const struct api *api, const struct http_req *req, int64_t expiry,
                           char *out, size_t cap) {
  char value[128] = "";
  if (expiry) cookie_make(api, expiry, value, sizeof value);
  snprintf(out, cap,
           "Set-Cookie: " COOKIE_NAME "=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Strict%s\r\n",
           value, expiry ? SESSION_S : 0, http_req_tls(req) ? "; Secure" : "");
}

static int on_login(struct api *api, struct http_req *req) {
  if (http_req_method(req) != HTTP_POST) return method_not_allowed(req, "POST");
  if (!api->token_set)
    return reply_error(req, 404, "no admin_token is set: there is nothing to sign in to", NULL);
  enum access a = check_access(api, req);
  if (a == CROSS_SITE) return refuse_json(req, a);
  int form = content_type_is(req, "application/x-www-form-urlencoded");
  const char *body = http_req_body(req, NULL);
  char token[512], next[128] = "/history";
  int got = -1;
  if (form) {
    got = form_field(body, "token", token, sizeof token);
    if (form_field(body, "next", next, sizeof next)) snprintf(next, sizeof next, "/history");
  } else if (content_type_is(req, "application/json")) {
    json_t *j = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
    const char *t = json_string_value(json_object_get(j, "token"));
    if (t && strlen(t) < sizeof token) got = 0, snprintf(token, sizeof token, "%s", t);
    json_decref(j);
  } else {
    return reply_error(req, 415, "send the token as JSON {\"token\":...} or as a form field", NULL);
  }
  if (got && !form) return reply_error(req, 400, "the body has no \"token\" string", NULL);
  if (got || !token_matches(api, token, strlen(token))) {
    log_warn("api", "failed sign-in from %s", http_req_peer(req));
    if (form) return reply_login_page(req, 401, safe_next(next), 1);
    return reply_error(req, 401, "wrong token", WWW_AUTH);
  }
  int64_t expiry = wall_ms() + SESSION_S * 1000LL;
  char headers[512], at[64];
  session_cookie(api, req, expiry, headers, sizeof headers);
  if (form) {
    size_t n = strlen(headers);
    snprintf(headers + n, sizeof headers - n, "Location: %s\r\n", safe_next(next));
    return reply_json(req, 303, json_pack("{s:b}", "ok", 1), headers);
  }
  format_time(expiry, at, sizeof at);
  return reply_json(req, 200, json_pack("{s:b,s:s}", "ok", 1, "expires_at", at), headers);
}

static int on_logout(struct api *api, struct http_req *req) {
  if (http_req_method(req) != HTTP_POST) return method_not_allowed(req, "POST");
  if (check_access(api, req) == CROSS_SITE) return refuse_json(req, CROSS_SITE);
  char headers[256];
  session_cookie(api, req, 0, headers, sizeof headers);
  return reply_json(req, 200, json_pack("{s:b}", "ok", 1), headers);
}

/* ---- the history page ---- */

static int on_history_page(struct api *api, struct http_req *req) {
  const char *path = http_req_path(req);
  if (!is_get(req)) return method_not_allowed(req, "GET, HEAD");
  if (strcmp(path, safe_next(path)) != 0 && strcmp(path, "/history/") != 0 &&
      strcmp(path, "/history.html") != 0)
    return reply_error(req, 404, "not found", NULL);
  enum access a = check_access(api, req);
  if (a == NEED_TOKEN) return reply_login_page(req, 401, safe_next(path), 0);
  if (a != LET_IN) return reply_loopback_page(req);
  if (http_reply_file(req, api->history_page, TYPE_HTML, HISTORY_HEADERS) == 0) return 0;
  log_error("api", "cannot read %s", api->history_page);
  return reply_error(req, 500, "the history page is missing from web_root", NULL);
}

/* ---- calls ---- */

static int valid_id(const char *id, size_t len) {
  if (len == 0 || len > ID_MAX) return 0;
  for (size_t i = 0; i < len; i++)
    if (!isdigit((unsigned char)id[i]) && (id[i] < 'a' || id[i] > 'f')) return 0;
  return 1;
}

/*
 * Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past
 * U+10FFFF), which a database's text type insists on: text it would refuse
 * is the client's mistake (400), not a database failure (503).
 */
static int valid_utf8(const unsigned char *s) {
  while (*s) {
    unsigned c = s[0], lo = 0x80, hi = 0xbf;
    int n = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2
          : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (n < 0) return 0;
    if (c == 0xe0) lo = 0xa0;      /* overlong */
    else if (c == 0xed) hi = 0x9f; /* surrogates */
    else if (c == 0xf0) lo = 0x90; /* overlong */
    else if (c == 0xf4) hi = 0x8f; /* past U+10FFFF */
    for (int i = 1; i <= n; i++) {
      unsigned b = s[i];
      if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xbf)) return 0;
    }
    s += n + 1;
  }
  return 1;
}

static struct pending *pending_new(struct api *api, struct http_req *req) {
  struct pending *p = calloc(1, sizeof *p);
  if (!p) {
    reply_error(req, 500, "out of memory", NULL);
    return NULL;
  }
  p->api = api;
  p->req = req;
  api->pending++;
  return p;
}

static void pending_done(struct pending *p) {
  p->api->pending--;
  free(p);
}

static int reply_store_error(struct http_req *req, int status) {
  switch (status) {
  case -ENOENT: return reply_error(req, 404, "no such call", NULL);
  case -EINVAL: return reply_error(req, 400, "bad cursor or filter", NULL);
  case -EIO: return reply_error(req, 503, "the database is not answering", "Retry-After: 5\r\n");
  case -ECANCELED: return reply_error(req, 503, "the server is shutting down", NULL);
  default: return reply_error(req, 500, "the store failed", NULL);
  }
}

static void on_store_json(void *user, int status, json_t *result) {
  struct pending *p = user;
  if (status) reply_store_error(p->req, status);
  else if (http_req_gone(p->req)) http_reply(p->req, 200, TYPE_JSON, NULL, NULL, 0); /* frees it */
  else reply_json(p->req, 200, json_incref(result), NULL);
  json_decref(result);
  pending_done(p);
}

static void on_store_recording(void *user, int status, json_t *result) {
  struct pending *p = user;
  struct http_req *req = p->req;
  char file[64], path[1200];
  json_t *rec = json_object_get(json_object_get(result, "call"), "recording");
  if (status) reply_store_error(req, status);
  else if (!json_is_object(rec) || recorder_file_name(p->id, file, sizeof file) ||
           store_recording_path(p->api->cfg, file, path, sizeof path) || !path[0])
    reply_error(req, 404, "this call has no recording", NULL);
  else if (http_reply_file(req, path, "audio/ogg", COMMON_HEADERS))
    reply_error(req, 404, "the recording file is missing", NULL);
  json_decref(result);
  pending_done(p);
}

/* Query parameters into q; a message for the client when one is bad. */
static const char *list_query(const struct http_req *req, struct store_query *q) {
  const char *v;
  long long ms;
  memset(q, 0, sizeof *q);
  if ((v = http_req_query(req, "limit"))) {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 1 || n > 200)
      return "limit must be a number from 1 to 200";
    q->limit = (int)n;
  }
  if ((v = http_req_query(req, "from")) && *v) {
    if (api_parse_time(v, &ms)) return "from must be epoch milliseconds or an ISO 8601 time";
    q->from_ms = ms;
  }
  if ((v = http_req_query(req, "to")) && *v) {
    if (api_parse_time(v, &ms)) return "to must be epoch milliseconds or an ISO 8601 time";
    q->to_ms = ms;
  }
  if (q->from_ms && q->to_ms && q->from_ms >= q->to_ms) return "from must be before to";
  if ((v = http_req_query(req, "reason")) && *v) {
    /* End reasons are short phrases: "hangup", "ice timeout", "ICE restart failed". */
    if (strlen(v) > 64 ||
        strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-") != strlen(v))
      return "reason is an end reason such as hangup, idle or ice timeout";
    q->end_reason = v;
  }
  if ((v = http_req_query(req, "q")) && *v) {
    if (strlen(v) > QUERY_MAX) return "q is longer than 200 bytes";
    if (!valid_utf8((const unsigned char *)v)) return "q is not UTF-8";
    q->text = v;
  }
  if ((v = http_req_query(req, "cursor")) && *v) {
    if (strlen(v) > CURSOR_MAX) return "bad cursor";
    q->cursor = v;
  }
  return NULL;
}

static int on_list(struct api *api, struct http_req *req) {
  if (!is_get(req)) return method_not_allowed(req, "GET, HEAD");
  struct store_query q;
  const char *bad = list_query(req, &q);
  if (bad) return reply_error(req, 400, bad, NULL);
  struct pending *p = pending_new(api, req);
  if (p) store_list_calls(api->store, &q, on_store_json, p);
  return 0;
}

/* /api/calls/{id} and /api/calls/{id}/recording. */
static int on_call(struct api *api, struct http_req *req, const char *rest) {
  size_t idlen = strcspn(rest, "/");
  const char *tail = rest + idlen;
  int recording = strcmp(tail, "/recording") == 0;
  if (!valid_id(rest, idlen) || (*tail && !recording))
    return reply_error(req, 404, "no such call", NULL);
  enum http_method m = http_req_method(req);
  if (recording ? !is_get(req) : !is_get(req) && m != HTTP_DELETE)
    return method_not_allowed(req, recording ? "GET, HEAD" : "GET, HEAD, DELETE");
  struct pending *p = pending_new(api, req);
  if (!p) return -ENOMEM;
  memcpy(p->id, rest, idlen);
  p->id[idlen] = '\0';
  p->recording = recording;
  if (recording) store_get_call(api->store, p->id, on_store_recording, p);
  else if (m == HTTP_DELETE) store_delete_call(api->store, p->id, on_store_json, p);
  else store_get_call(api->store, p->id, on_store_json, p);
  return 0;
}

/* ---- call tokens ---- */

/* POST /api/tokens {"ttl_s":..,"sub":..,"settings":{..}}: a call token for a customer's backend. */
static int on_tokens(struct api *api, struct http_req *req) {
  if (http_req_method(req) != HTTP_POST) return method_not_allowed(req, "POST");
  if (!content_type_is(req, TYPE_JSON))
    return reply_error(req, 415, "the body must be application/json", NULL);
  size_t len = 0;
  const char *body = http_req_body(req, &len);
  json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
  const char *key;
  json_t *v;
  if (!json_is_object(j)) {
    json_decref(j);
    return reply_error(req, 400, "the body must be a JSON object: {\"ttl_s\":300,\"sub\":\"...\","
                                 "\"settings\":{...}}, each field optional", NULL);
  }
  json_object_foreach(j, key, v) {
    if (strcmp(key, "ttl_s") && strcmp(key, "sub") && strcmp(key, "settings")) {
      char msg[120];
      snprintf(msg, sizeof msg, "unknown field \"%.40s\" (ttl_s, sub and settings are known)", key);
      json_decref(j);
      return reply_error(req, 400, msg, NULL);
    }
  }
  json_t *ttl = json_object_get(j, "ttl_s"), *sub = json_object_get(j, "sub"),
         *settings = json_object_get(j, "settings");
  const char *bad = ttl && !json_is_integer(ttl) ? "ttl_s must be an integer"
                    : sub && !json_is_string(sub) ? "sub must be a string"
                    : settings && !json_is_object(settings) ? "settings must be an object"
                                                            : NULL;
  if (bad) {
    json_decref(j);
    return reply_error(req, 400, bad, NULL);
  }
  json_int_t ttl_s = ttl ? json_integer_value(ttl) : CALLTOKEN_TTL_DEFAULT;
  if (ttl_s < 1 || ttl_s > CALLTOKEN_TTL_MAX) ttl_s = 0; /* refused below, with the bounds */
  char *token = NULL, err[200];
  int64_t exp = 0;
  int rc = calls_mint_token(api->cfg, (int64_t)time(NULL), (long)ttl_s, json_string_value(sub),
                            settings, &token, &exp, err, sizeof err);
  json_decref(j);
  if (rc) return reply_error(req, rc == -ENOKEY ? 409 : rc == -ENOMEM ? 500 : 400, err, NULL);
  char at[40];
  format_time(exp * 1000, at, sizeof at);
  json_t *answer = json_pack("{s:s,s:s,s:I}", "token", token, "expires_at", at, "exp",
                             (json_int_t)exp);
  free(token);
  return reply_json(req, 200, answer, NULL);
}

/* ---- draining ---- */

/* POST /api/drain: what SIGTERM does, for an operator or a hook that cannot send signals
 * (docs/api.md#post-apidrain). Asking again changes nothing; the answer says where the drain is. */
static int on_drain(struct api *api, struct http_req *req) {
  if (http_req_method(req) != HTTP_POST) return method_not_allowed(req, "POST");
  if (api->stopping) return reply_error(req, 503, "the server is shutting down", NULL);
  if (!api->drain) return reply_error(req, 501, "this server cannot drain", NULL);
  api->drain(api->drain_user);
  json_t *j = json_pack("{s:s,s:i,s:i}", "status", "draining", "calls",
                        calls_count(signaling_calls(api->sig)), "drain_timeout_s",
                        api->cfg->drain_timeout_s);
  return reply_json(req, 202, j, NULL);
}

static int on_api(struct api *api, struct http_req *req) {
  const char *path = http_req_path(req);
  if (strcmp(path, "/api/login") == 0) return on_login(api, req);
  if (strcmp(path, "/api/logout") == 0) return on_logout(api, req);
  enum access a = check_access(api, req);
  if (a != LET_IN) return refuse_json(req, a);
  if (strcmp(path, "/api/tokens") == 0) return on_tokens(api, req);
  if (strcmp(path, "/api/drain") == 0) return on_drain(api, req);
  int list = strcmp(path, "/api/calls") == 0;
  if (!list && strncmp(path, "/api/calls/", 11) != 0)
    return reply_error(req, 404, "not found", NULL);
  if (api->stopping) return reply_error(req, 503, "the server is shutting down", NULL);
  if (!api->store)
    return reply_error(req, 404, "call records are off on this server (records = off)", NULL);
  return list ? on_list(api, req) : on_call(api, req, path + 11);
}

/* ---- metrics and health ---- */

static int on_metrics(struct api *api, struct http_req *req) {
  if (!is_get(req)) return method_not_allowed(req, "GET, HEAD");
  struct prom_buf b;
  prom_buf_init(&b);
  metrics_write(&b, signaling_calls(api->sig), api->stopping ? NULL : api->store);
  if (api->http) http_server_write_metrics(api->http, &b);
  if (b.failed) {
    prom_buf_free(&b);
    return reply_error(req, 500, "out of memory", NULL);
  }
  size_t len = b.len;
  char *text = b.data; /* handed over: prom_buf_free is not called */
  return http_reply_take(req, 200, "text/plain; version=0.0.4; charset=utf-8", COMMON_HEADERS,
                         text, len);
}

/* /healthz is readiness (503 while draining); /livez, the same body, is liveness: a draining
 * server is alive and must not be restarted while its calls finish. */
static int on_healthz(struct api *api, struct http_req *req) {
  if (!is_get(req)) return method_not_allowed(req, "GET, HEAD");
  char body[512];
  int status = signaling_healthz(api->sig, body, sizeof body);
  if (strcmp(http_req_path(req), "/livez") == 0) status = 200;
  return http_reply(req, status, TYPE_JSON, COMMON_HEADERS, body, strlen(body));
}

/* ---- routing ---- */

static int under(const char *path, const char *prefix) {
  size_t n = strlen(prefix);
  return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int route(struct api *api, struct http_req *req) {
  const char *path = http_req_path(req);
  if (http_req_listener(req) == HTTP_LISTENER_METRICS) {
    /* The metrics listener is open to whoever reaches it, and serves nothing else. */
    if (strcmp(path, "/metrics") == 0) return on_metrics(api, req);
    return reply_error(req, 404, "this listener serves only /metrics", NULL);
  }
  if (strcmp(path, "/healthz") == 0 || strcmp(path, "/livez") == 0) return on_healthz(api, req);
  if (strcmp(path, "/metrics") == 0) {
    enum access a = check_access(api, req);
    return a == LET_IN ? on_metrics(api, req) : refuse_json(req, a);
  }
  if (under(path, "/history") || strcmp(path, "/history.html") == 0)
    return on_history_page(api, req);
  if (under(path, "/api")) return on_api(api, req);
  return reply_error(req, 404, "not found", NULL);
}

static void on_request(void *user, struct http_req *req) { route(user, req); }

void api_http_handlers(struct api *api, struct http_handlers *h) {
  for (size_t i = 0; mounts[i]; i++) h->mounts[i] = mounts[i];
  h->mounts[sizeof mounts / sizeof *mounts - 1] = NULL;
  h->request_user = api;
  h->request = on_request;
}

int api_new(struct api **out, const struct config *cfg, struct signaling *sig,
            struct store *store, char *err, size_t errlen) {
  struct api *api = calloc(1, sizeof *api);
  if (!api) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  api->cfg = cfg;
  api->sig = sig;
  api->store = store;
  api->token_set = cfg->admin_token[0] != '\0';
  if (api->token_set) {
    sha256(cfg->admin_token, strlen(cfg->admin_token), api->token_digest);
    hmac((const unsigned char *)cfg->admin_token, strlen(cfg->admin_token),
         "tingshuo session cookie key v1", api->cookie_key);
  }
  const char *root = cfg->web_root[0] ? cfg->web_root : TINGSHUO_WEB_ROOT;
  if (snprintf(api->history_page, sizeof api->history_page, "%s/history.html", root) >=
      (int)sizeof api->history_page) {
    snprintf(err, errlen, "web_root is too long");
    free(api);
    return -ENAMETOOLONG;
  }
  *out = api;
  return 0;
}

void api_stop(struct api *api) {
  if (api) api->stopping = 1;
}

void api_free(struct api *api) {
  if (!api) return;
  if (api->pending)
    log_error("api", "%d store reads still unanswered at exit", api->pending);
  free(api);
}

void api_set_http_server(struct api *api, struct http_server *srv) { api->http = srv; }

void api_on_drain(struct api *api, void (*drain)(void *user), void *user) {
  api->drain = drain;
  api->drain_user = user;
}
