/*
 * http_parse: an HTTP/1.x request head (RFC 9112), read from bytes a client sent.
 *
 * The head is judged as it comes: a request line or head too long is
 * refused before its end arrives, so a client cannot make the server hold
 * more than HTTP_HEAD_MAX bytes of it. What the server must not guess about
 * is refused rather than repaired (RFC 9112 section 11 on request
 * smuggling): two different Content-Lengths, a Content-Length beside a
 * Transfer-Encoding, whitespace before a field's colon, folded lines, a
 * missing or repeated Host on HTTP/1.1, control characters, a path that
 * decodes to a NUL or a control character.
 *
 * The path comes percent-decoded and normalised (RFC 3986 section 5.2.4,
 * empty segments dropped), so "/a/../b" and "//b" are "/b" and no path
 * climbs above "/". The query's parameters come decoded too ('+' is a
 * space), in the order sent.
 */
#ifndef TS_NET_HTTP_PARSE_H
#define TS_NET_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Longest request target; a longer one is answered 414. */
#define HTTP_URI_MAX 4096
/* Largest request head (request line and headers); a larger one is answered 431. */
#define HTTP_HEAD_MAX 8192
/* Header fields in one head; more is answered 431. */
#define HTTP_MAX_FIELDS 100
/* Query parameters in one target; more is answered 400. */
#define HTTP_MAX_ARGS 64

struct http_field {
  const char *name;  /* lower-case */
  const char *value; /* without the blanks around it */
};

struct http_arg {
  const char *name, *value; /* decoded; value "" for "?a" and "?a=" */
};

struct http_head {
  const char *method;  /* as sent ("GET"); methods are case-sensitive */
  const char *target;  /* as sent */
  const char *path;    /* decoded and normalised, always starting with '/' */
  int version_minor;   /* HTTP/1.0 or HTTP/1.1 */
  int nfields;
  struct http_field fields[HTTP_MAX_FIELDS];
  int nargs;
  struct http_arg args[HTTP_MAX_ARGS];
  int64_t content_length; /* -1 when absent */
  int keep_alive;      /* the connection may carry another request after this one */
  const char *upgrade; /* the Upgrade field when Connection names "upgrade", else NULL */
  size_t head_len;     /* bytes of the input the head took, its blank line included */
  /* After -EBADMSG: the status to answer with (400, 411, 414, 431, 501, 505) and why. */
  int status;
  const char *error;
  char *mem;           /* holds every string above; freed by http_head_free */
};

/*
 * Parses the head at the start of `buf` (`len` bytes received so far).
 * Returns 0 when it is complete and good (h->head_len says where the body
 * starts; free it with http_head_free), -EAGAIN when more bytes are needed
 * and nothing seen so far is wrong, -EBADMSG with h->status and h->error
 * set when it must be refused (nothing to free), -ENOMEM. A bare LF is
 * taken as a line end, as RFC 9112 section 2.2 allows.
 */
int http_head_parse(const char *buf, size_t len, struct http_head *h);
void http_head_free(struct http_head *h);

/* The first field called `lname` (lower-case), or NULL. */
const char *http_head_field(const struct http_head *h, const char *lname);
/* The first query parameter called `name`, or NULL. */
const char *http_head_arg(const struct http_head *h, const char *name);

/*
 * Percent-decodes `n` bytes of `src` into `dst` (`cap` bytes) and ends it
 * with a NUL; '+' is a space when `plus` (query strings and form bodies).
 * Returns the decoded length, or -1 for a malformed escape, one that decodes
 * to a NUL (it would cut the C string short), or a result that does not fit.
 */
long http_pct_decode(const char *src, size_t n, char *dst, size_t cap, int plus);

/* 1 if the comma-separated `list` (a field value) holds `token`, compared without case. */
int http_list_has(const char *list, const char *token);

#endif
