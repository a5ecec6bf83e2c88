/*
 * fuzz_http_head: the bytes a client sends before its request body, as the
 * HTTP server hands them to the head parser while they arrive.
 *
 * The server parses the whole buffer again each time more comes, so what a
 * prefix says must agree with what the whole input says: a head refused
 * early stays refused, a head complete in a prefix is the same head in the
 * whole, and every prefix of a good head shorter than it is "more, please".
 * Each parse gets its bytes in an allocation of exactly their size, so a
 * read past `len` is caught under ASan. On success the strings must keep
 * the promises the header makes: a path starting with '/' that climbs
 * nowhere, lower-case field names, nothing longer than the input.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "net/http_parse.h"

struct outcome {
  int rc, status;
  size_t head_len;
  uint64_t digest; /* of method, target, path, fields and args */
};

static void mix(uint64_t *d, const char *s) {
  for (; *s; s++) *d = (*d ^ (unsigned char)*s) * 0x100000001b3ull;
  *d = (*d ^ 0xff) * 0x100000001b3ull;
}

static int lower_token(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if ((*s >= 'A' && *s <= 'Z') || (unsigned char)*s <= 0x20 || *s == ':' || *s == 0x7f) return 0;
  return 1;
}

static void check_path(const char *p) {
  FUZZ_CHECK(p && p[0] == '/');
  FUZZ_CHECK(!strstr(p, "//") && !strstr(p, "/../") && !strstr(p, "/./"));
  size_t n = strlen(p);
  FUZZ_CHECK(!(n >= 3 && strcmp(p + n - 3, "/..") == 0) && !(n >= 2 && strcmp(p + n - 2, "/.") == 0));
  for (size_t i = 0; i < n; i++) FUZZ_CHECK((unsigned char)p[i] >= 0x20 && p[i] != 0x7f);
}

static void check_good(const struct http_head *h, size_t size, struct outcome *o) {
  FUZZ_CHECK(h->mem && h->head_len <= size && h->head_len <= HTTP_HEAD_MAX);
  size_t mlen = strlen(h->method);
  FUZZ_CHECK(mlen >= 1 && mlen <= 15 && strlen(h->target) <= HTTP_URI_MAX);
  FUZZ_CHECK(h->version_minor == 0 || h->version_minor == 1);
  FUZZ_CHECK(h->keep_alive == 0 || h->keep_alive == 1);
  FUZZ_CHECK(h->content_length >= -1);
  check_path(h->path);
  FUZZ_CHECK(h->nfields >= 0 && h->nfields <= HTTP_MAX_FIELDS);
  FUZZ_CHECK(h->nargs >= 0 && h->nargs <= HTTP_MAX_ARGS);
  uint64_t d = 14695981039346656037ull;
  mix(&d, h->method);
  mix(&d, h->target);
  mix(&d, h->path);
  for (int i = 0; i < h->nfields; i++) {
    const char *v = h->fields[i].value;
    size_t vlen = strlen(v);
    FUZZ_CHECK(lower_token(h->fields[i].name));
    FUZZ_CHECK(vlen == 0 || (v[0] != ' ' && v[0] != '\t' && v[vlen - 1] != ' ' && v[vlen - 1] != '\t'));
    FUZZ_CHECK(http_head_field(h, h->fields[i].name) != NULL);
    mix(&d, h->fields[i].name);
    mix(&d, v);
  }
  for (int i = 0; i < h->nargs; i++) {
    FUZZ_CHECK(http_head_arg(h, h->args[i].name) != NULL);
    mix(&d, h->args[i].name);
    mix(&d, h->args[i].value);
  }
  if (h->upgrade) FUZZ_CHECK(h->upgrade == http_head_field(h, "upgrade"));
  o->digest = d;
}

static struct outcome parse(const uint8_t *data, size_t size) {
  char *buf = malloc(size ? size : 1);
  FUZZ_CHECK(buf != NULL);
  if (size) memcpy(buf, data, size);
  struct http_head h;
  struct outcome o = {0};
  o.rc = http_head_parse(buf, size, &h);
  FUZZ_CHECK(o.rc == 0 || o.rc == -EAGAIN || o.rc == -EBADMSG || o.rc == -ENOMEM);
  if (o.rc == 0) {
    o.head_len = h.head_len;
    check_good(&h, size, &o);
    http_head_free(&h);
    FUZZ_CHECK(h.mem == NULL);
    http_head_free(&h);
  } else {
    FUZZ_CHECK(h.mem == NULL);
    if (o.rc == -EBADMSG) {
      o.status = h.status;
      FUZZ_CHECK(h.error != NULL);
      FUZZ_CHECK(h.status == 400 || h.status == 411 || h.status == 414 || h.status == 431 ||
                 h.status == 501 || h.status == 505);
    }
  }
  free(buf);
  return o;
}

/* What a prefix of `cut` bytes may say, given what the whole said. */
static void check_prefix(const uint8_t *data, size_t cut, const struct outcome *whole) {
  struct outcome p = parse(data, cut);
  if (p.rc == -ENOMEM || whole->rc == -ENOMEM) return;
  if (p.rc == 0) /* complete already: the whole holds the same head */
    FUZZ_CHECK(whole->rc == 0 && whole->head_len == p.head_len && whole->digest == p.digest);
  if (p.rc == -EBADMSG) FUZZ_CHECK(whole->rc == -EBADMSG); /* once wrong, always wrong */
  if (whole->rc == 0 && cut < whole->head_len) FUZZ_CHECK(p.rc == -EAGAIN);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct outcome whole = parse(data, size);
  size_t cuts[8] = {0, size / 2, size ? size - 1 : 0, 1};
  int ncuts = 4;
  if (whole.rc == 0 && whole.head_len > 0) {
    cuts[ncuts++] = whole.head_len - 1;
    cuts[ncuts++] = whole.head_len;
  }
  uint32_t x = 2166136261u;
  for (size_t i = 0; i < size && i < 64; i++) x = (x ^ data[i]) * 16777619u;
  cuts[ncuts++] = size ? x % size : 0;
  cuts[ncuts++] = size ? (x >> 13) % size : 0;
  for (int i = 0; i < ncuts; i++)
    if (cuts[i] < size) check_prefix(data, cuts[i], &whole);
  return 0;
}
