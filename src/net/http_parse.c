/*
 * HTTP/1.x request heads.
 *
 * The server calls the parser again with the whole buffer each time bytes
 * arrive, so a call must cost O(len) and decide three things: is the head
 * complete, is something already wrong, or is more needed. It works in two
 * passes. The first walks the lines once (memchr for each LF), checks every
 * complete line fully and the unfinished last one as far as it goes, and
 * notes where the pieces are; it allocates nothing, so an incomplete or
 * refused head leaves nothing to free. Only a complete head reaches the
 * second pass, which copies the pieces into one block, decodes the path and
 * the query and checks what needs the whole head (Content-Length against
 * Transfer-Encoding, Host).
 *
 * The unfinished line is refused only for what no later byte could repair
 * (a sixth letter "HTTP/" cannot become, a space before a colon), so a good
 * head fed a byte at a time is -EAGAIN until its blank line and then the
 * same as fed whole; the fuzz target checks that.
 *
 * The path is decoded before its dot segments are removed, so "%2e%2e" is a
 * ".." like any other and nothing climbs above "/"; a decoded "%2F" is then
 * a separator, which a server mapping paths to files wants anyway.
 */
#include "net/http_parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/num.h"

#define METHOD_MAX 15
/* The longest good request line, its CR included: method SP target SP "HTTP/1.1" CR. */
#define REQUEST_LINE_MAX (METHOD_MAX + 1 + HTTP_URI_MAX + 1 + 8 + 1)

struct span {
  size_t off, len;
};

/* Where the first pass found things, as offsets into the caller's buffer. */
struct scan {
  const char *buf;
  struct span method, target, version;
  int nfields;
  struct span name[HTTP_MAX_FIELDS], value[HTTP_MAX_FIELDS];
  size_t head_len;
};

/* One malloc'd block that every string of the head is copied into. */
struct arena {
  char *p;
  size_t used, cap;
};

static int refuse(struct http_head *h, int status, const char *why) {
  http_head_free(h);
  h->status = status;
  h->error = why;
  return -EBADMSG;
}

static int is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

/* A field value's bytes: visible ASCII, blanks and obs-text; no control character. */
static int is_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* ---- first pass: lines ---- */

/* Does `v` (n bytes) start like "HTTP/d.d"? */
static int version_prefix_ok(const char *v, size_t n) {
  static const char shape[] = "HTTP/d.d";
  for (size_t i = 0; i < n && i < 8; i++) {
    int digit = shape[i] == 'd';
    if (digit ? !(v[i] >= '0' && v[i] <= '9') : v[i] != shape[i]) return 0;
  }
  return n <= 8;
}

/*
 * Finds the path and query inside a target (the part after the authority in
 * absolute-form). *pq is set to an empty span when the target has no path.
 */
static int target_form(const char *t, size_t n, const char *method, size_t mlen, struct span *pq) {
  if (n == 1 && t[0] == '*') {
    /* Only OPTIONS asks about the server as a whole. */
    if (mlen != 7 || memcmp(method, "OPTIONS", 7) != 0) return -1;
    *pq = (struct span){0, 0};
    return 0;
  }
  if (t[0] == '/') {
    *pq = (struct span){0, n};
    return 0;
  }
  size_t i;
  if (n >= 7 && strncasecmp(t, "http://", 7) == 0) i = 7;
  else if (n >= 8 && strncasecmp(t, "https://", 8) == 0) i = 8;
  else return -1;
  size_t host = i;
  while (i < n && t[i] != '/' && t[i] != '?' && t[i] != '#') {
    if (t[i] == '@') return -1; /* userinfo has no place in an http URI (RFC 9110 4.2.4) */
    i++;
  }
  if (i == host) return -1;
  *pq = (struct span){i, n - i};
  return 0;
}

/* The request line, whole (`complete`) or as far as it has come. */
static int request_line(struct scan *s, size_t pos, size_t n, int complete, struct http_head *h) {
  const char *p = s->buf + pos;
  if (!complete && n > REQUEST_LINE_MAX) return refuse(h, 414, "request target too long");
  size_t i = 0;
  while (i < n && is_tchar((unsigned char)p[i])) i++;
  if (i > METHOD_MAX) return refuse(h, 400, "bad method");
  if (i == n) return complete ? refuse(h, 400, "bad request line") : 0;
  if (p[i] != ' ' || i == 0) return refuse(h, 400, "bad request line");
  s->method = (struct span){pos, i};

  size_t t = ++i;
  while (i < n && p[i] >= 0x21 && p[i] <= 0x7e) i++;
  if (i - t > HTTP_URI_MAX) return refuse(h, 414, "request target too long");
  if (i == n) return complete ? refuse(h, 400, "bad request line") : 0;
  if (p[i] != ' ' || i == t) return refuse(h, 400, "bad request line");
  s->target = (struct span){pos + t, i - t};
  struct span pq;
  if (target_form(p + t, i - t, p, s->method.len, &pq) != 0)
    return refuse(h, 400, "bad request target");

  size_t v = ++i;
  if (!version_prefix_ok(p + v, n - v)) return refuse(h, 400, "bad request line");
  if (!complete) return 0;
  if (n - v != 8) return refuse(h, 400, "bad request line");
  if (memcmp(p + v, "HTTP/1.", 7) != 0 || (p[v + 7] != '0' && p[v + 7] != '1'))
    return refuse(h, 505, "HTTP version not supported");
  s->version = (struct span){pos + v, 8};
  return 0;
}

/* A field line, whole or as far as it has come; a whole empty one is not passed here. */
static int field_line(struct scan *s, size_t pos, size_t n, int complete, struct http_head *h) {
  const char *p = s->buf + pos;
  if (n == 0) return 0;
  /* obs-fold: a continuation line would let two parsers disagree on where a field ends */
  if (is_blank(p[0])) return refuse(h, 400, "folded header line");
  size_t i = 0;
  while (i < n && is_tchar((unsigned char)p[i])) i++;
  if (i == n) return complete ? refuse(h, 400, "header line without a colon") : 0;
  if (p[i] != ':') {
    if (is_blank(p[i])) return refuse(h, 400, "whitespace before a header's colon");
    return refuse(h, 400, "bad header name");
  }
  if (i == 0) return refuse(h, 400, "empty header name");
  for (size_t j = i + 1; j < n; j++)
    if (!is_value_char((unsigned char)p[j])) return refuse(h, 400, "control character in a header");
  if (!complete) return 0;
  if (s->nfields == HTTP_MAX_FIELDS) return refuse(h, 431, "too many header fields");
  size_t a = i + 1, b = n;
  while (a < b && is_blank(p[a])) a++;
  while (b > a && is_blank(p[b - 1])) b--;
  s->name[s->nfields] = (struct span){pos, i};
  s->value[s->nfields] = (struct span){pos + a, b - a};
  s->nfields++;
  return 0;
}

/* Empty lines before the request line (RFC 9112 2.2); stops before a CR that may start one. */
static size_t skip_empty_lines(const char *buf, size_t limit) {
  size_t pos = 0;
  for (;;) {
    if (pos < limit && buf[pos] == '\n') pos++;
    else if (pos + 1 < limit && buf[pos] == '\r' && buf[pos + 1] == '\n') pos += 2;
    else return pos;
  }
}

static int scan_lines(struct scan *s, size_t len, struct http_head *h) {
  /* Bytes past HTTP_HEAD_MAX cannot belong to a head we accept: never look at them. */
  size_t limit = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
  size_t pos = skip_empty_lines(s->buf, limit);
  for (int first = 1;; first = 0) {
    const char *lf = memchr(s->buf + pos, '\n', limit - pos);
    size_t end = lf ? (size_t)(lf - s->buf) : limit;
    size_t n = end - pos;
    /* A CR ending an unfinished line may be half of its CRLF; any other CR stays and is refused. */
    if (n && s->buf[pos + n - 1] == '\r') n--;
    if (!first && lf && n == 0) {
      s->head_len = end + 1;
      return 0;
    }
    int rc = first ? request_line(s, pos, n, lf != NULL, h) : field_line(s, pos, n, lf != NULL, h);
    if (rc) return rc;
    if (!lf) break;
    pos = end + 1;
  }
  if (len >= HTTP_HEAD_MAX) return refuse(h, 431, "request head too large");
  return -EAGAIN;
}

/* ---- second pass: strings ---- */

static char *arena_put(struct arena *a, const char *src, size_t n) {
  if (a->cap - a->used < n + 1) return NULL; /* the sizing in build() makes this unreachable */
  char *d = a->p + a->used;
  memcpy(d, src, n);
  d[n] = '\0';
  a->used += n + 1;
  return d;
}

long http_pct_decode(const char *src, size_t n, char *dst, size_t cap, int plus) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (o + 1 >= cap) return -1;
    unsigned char c = (unsigned char)src[i];
    if (c == '%') {
      if (n - i < 3) return -1;
      int h1 = hexval((unsigned char)src[i + 1]), h2 = hexval((unsigned char)src[i + 2]);
      if (h1 < 0 || h2 < 0) return -1;
      c = (unsigned char)(h1 * 16 + h2);
      if (c == 0) return -1;
      i += 2;
    } else if (plus && c == '+') {
      c = ' ';
    }
    dst[o++] = (char)c;
  }
  if (o >= cap) return -1;
  dst[o] = '\0';
  return (long)o;
}

/* RFC 3986 5.2.4 with empty segments dropped; `out` has room for n + 2 bytes. */
static size_t normalise(const char *in, size_t n, char *out) {
  size_t o = 0, i = 0;
  out[o++] = '/';
  while (i < n) {
    while (i < n && in[i] == '/') i++;
    size_t seg = i;
    while (i < n && in[i] != '/') i++;
    size_t slen = i - seg;
    if (slen == 0) break;
    if (slen == 1 && in[seg] == '.') continue; /* out already ends with '/' */
    if (slen == 2 && in[seg] == '.' && in[seg + 1] == '.') {
      if (o > 1) {
        o--; /* the '/' after the last segment */
        while (out[o - 1] != '/') o--;
      }
      continue;
    }
    memcpy(out + o, in + seg, slen);
    o += slen;
    if (i < n) out[o++] = '/';
  }
  out[o] = '\0';
  return o;
}

static int build_path(struct arena *a, const char *pq, size_t n, struct http_head *h) {
  size_t plen = strcspn(pq, "?#");
  if (plen > n) plen = n;
  char tmp[HTTP_URI_MAX + 1];
  long d = http_pct_decode(pq, plen, tmp, sizeof tmp, 0);
  if (d < 0) return refuse(h, 400, "bad escape in the path");
  for (long i = 0; i < d; i++) {
    unsigned char c = (unsigned char)tmp[i];
    if (c < 0x20 || c == 0x7f) return refuse(h, 400, "control character in the path");
  }
  if (a->cap - a->used < (size_t)d + 2) return -ENOMEM;
  char *out = a->p + a->used;
  a->used += normalise(tmp, (size_t)d, out) + 1;
  h->path = out;
  return 0;
}

static int build_arg(struct arena *a, const char *p, size_t n, struct http_head *h) {
  if (h->nargs == HTTP_MAX_ARGS) return refuse(h, 400, "too many query parameters");
  const char *eq = memchr(p, '=', n);
  size_t nlen = eq ? (size_t)(eq - p) : n;
  size_t vlen = eq ? n - nlen - 1 : 0;
  if (a->cap - a->used < n + 2) return -ENOMEM;
  char *name = a->p + a->used;
  long dn = http_pct_decode(p, nlen, name, nlen + 1, 1);
  if (dn < 0) return refuse(h, 400, "bad escape in the query");
  char *value = name + dn + 1;
  long dv = http_pct_decode(eq ? eq + 1 : "", vlen, value, vlen + 1, 1);
  if (dv < 0) return refuse(h, 400, "bad escape in the query");
  a->used += (size_t)dn + (size_t)dv + 2;
  h->args[h->nargs++] = (struct http_arg){name, value};
  return 0;
}

static int build_query(struct arena *a, const char *pq, size_t n, struct http_head *h) {
  const char *q = memchr(pq, '?', n);
  if (!q) return 0;
  const char *end = pq + n;
  const char *hash = memchr(q, '#', (size_t)(end - q));
  if (hash) end = hash;
  for (const char *p = q + 1; p < end;) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    size_t plen = amp ? (size_t)(amp - p) : (size_t)(end - p);
    if (plen) {
      int rc = build_arg(a, p, plen, h);
      if (rc) return rc;
    }
    p += plen + 1;
  }
  return 0;
}

/* Every Content-Length, and every item of each, must be the same number. */
static int content_length(struct http_head *h) {
  for (int i = 0; i < h->nfields; i++) {
    if (strcmp(h->fields[i].name, "content-length") != 0) continue;
    const char *p = h->fields[i].value;
    for (;;) {
      size_t n = strcspn(p, ",");
      size_t a = 0, b = n;
      while (a < b && is_blank(p[a])) a++;
      while (b > a && is_blank(p[b - 1])) b--;
      int64_t v;
      if (num_parse_i64(p + a, b - a, 0, INT64_MAX, &v) != 0) return -1;
      if (h->content_length >= 0 && v != h->content_length) return -1;
      h->content_length = v;
      if (p[n] == '\0') break;
      p += n + 1;
    }
  }
  return 0;
}

static int host_count(const struct http_head *h) {
  int n = 0;
  for (int i = 0; i < h->nfields; i++) n += strcmp(h->fields[i].name, "host") == 0;
  return n;
}

/* What needs the whole head: framing, Host and the connection's fate. */
static int check_fields(struct http_head *h) {
  if (content_length(h) != 0) return refuse(h, 400, "bad Content-Length");
  const char *te = http_head_field(h, "transfer-encoding");
  if (te) {
    if (h->content_length >= 0) return refuse(h, 400, "Content-Length with Transfer-Encoding");
    /* A chunked body could be sent again with its length; other codings are not known. */
    if (http_list_has(te, "chunked")) return refuse(h, 411, "a body needs a Content-Length");
    return refuse(h, 501, "Transfer-Encoding is not supported");
  }
  int hosts = host_count(h);
  if (hosts > 1) return refuse(h, 400, "more than one Host");
  if (hosts == 0 && h->version_minor == 1) return refuse(h, 400, "no Host");
  int close = 0, keep = 0, upgrade = 0;
  for (int i = 0; i < h->nfields; i++) {
    if (strcmp(h->fields[i].name, "connection") != 0) continue;
    close |= http_list_has(h->fields[i].value, "close");
    keep |= http_list_has(h->fields[i].value, "keep-alive");
    upgrade |= http_list_has(h->fields[i].value, "upgrade");
  }
  h->keep_alive = h->version_minor == 1 ? !close : keep && !close;
  h->upgrade = upgrade ? http_head_field(h, "upgrade") : NULL;
  return 0;
}

static int copy_fields(struct arena *a, const struct scan *s, struct http_head *h) {
  for (int i = 0; i < s->nfields; i++) {
    char *name = arena_put(a, s->buf + s->name[i].off, s->name[i].len);
    const char *value = arena_put(a, s->buf + s->value[i].off, s->value[i].len);
    if (!name || !value) return -ENOMEM;
    for (char *c = name; *c; c++)
      if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
    h->fields[i] = (struct http_field){name, value};
  }
  h->nfields = s->nfields;
  return 0;
}

static int build(const struct scan *s, struct http_head *h) {
  /*
   * Method, target and fields are copies (each no longer than its line); the
   * path is at most the target plus "/" and a NUL; the args at most the
   * query plus two NULs each.
   */
  struct arena a = {NULL, 0, 4 * s->head_len + 2 * HTTP_MAX_ARGS + 64};
  a.p = malloc(a.cap);
  if (!a.p) return -ENOMEM;
  h->mem = a.p;
  h->head_len = s->head_len;
  h->version_minor = s->buf[s->version.off + 7] - '0';
  h->method = arena_put(&a, s->buf + s->method.off, s->method.len);
  h->target = arena_put(&a, s->buf + s->target.off, s->target.len);
  if (!h->method || !h->target) return -ENOMEM;
  struct span pq;
  target_form(h->target, s->target.len, h->method, s->method.len, &pq); /* checked in the first pass */
  int rc = build_path(&a, h->target + pq.off, pq.len, h);
  if (!rc) rc = build_query(&a, h->target + pq.off, pq.len, h);
  if (!rc) rc = copy_fields(&a, s, h);
  if (!rc) rc = check_fields(h);
  return rc;
}

int http_head_parse(const char *buf, size_t len, struct http_head *h) {
  memset(h, 0, sizeof *h);
  h->content_length = -1;
  struct scan s = {.buf = buf};
  int rc = scan_lines(&s, len, h);
  if (rc == 0) rc = build(&s, h);
  if (rc == -ENOMEM) http_head_free(h);
  return rc;
}

void http_head_free(struct http_head *h) {
  free(h->mem);
  memset(h, 0, sizeof *h);
  h->content_length = -1;
}

const char *http_head_field(const struct http_head *h, const char *lname) {
  for (int i = 0; i < h->nfields; i++)
    if (strcmp(h->fields[i].name, lname) == 0) return h->fields[i].value;
  return NULL;
}

const char *http_head_arg(const struct http_head *h, const char *name) {
  for (int i = 0; i < h->nargs; i++)
    if (strcmp(h->args[i].name, name) == 0) return h->args[i].value;
  return NULL;
}

int http_list_has(const char *list, const char *token) {
  if (!list) return 0;
  size_t tlen = strlen(token);
  for (const char *p = list;;) {
    size_t n = strcspn(p, ",");
    size_t a = 0, b = n;
    while (a < b && is_blank(p[a])) a++;
    while (b > a && is_blank(p[b - 1])) b--;
    if (b - a == tlen && strncasecmp(p + a, token, tlen) == 0) return 1;
    if (p[n] == '\0') return 0;
    p += n + 1;
  }
}
