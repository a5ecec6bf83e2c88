/*
 * Server-Sent Events parser.
 *
 * The parser keeps three growable buffers: the line being read (bytes may
 * arrive a few at a time), the data of the event being assembled, and its
 * type. A CR at the end of one chunk may be the first half of a CRLF whose
 * LF starts the next chunk, so `skip_lf` remembers it across calls. A UTF-8
 * byte order mark is allowed once, at the very start of the stream.
 */
#include "net/sse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct buf {
  char *p;
  size_t len, cap;
};

struct sse_parser {
  sse_event_cb cb;
  void *user;
  struct buf line, data, type, id;
  int skip_lf;      /* the previous byte was CR */
  int first_line;   /* the BOM may only start the first line */
  size_t events;
};

static int buf_append(struct buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > SSE_MAX_EVENT) return -EMSGSIZE;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -ENOMEM;
    b->p = p;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

static int buf_set(struct buf *b, const char *s, size_t n) {
  b->len = 0;
  return buf_append(b, s, n);
}

static const char *buf_str(const struct buf *b) { return b->p && b->len ? b->p : ""; }

int sse_parser_new(struct sse_parser **out, sse_event_cb cb, void *user) {
  if (!out || !cb) return -EINVAL;
  struct sse_parser *p = calloc(1, sizeof *p);
  if (!p) return -ENOMEM;
  p->cb = cb;
  p->user = user;
  p->first_line = 1;
  *out = p;
  return 0;
}

void sse_parser_free(struct sse_parser *p) {
  if (!p) return;
  free(p->line.p);
  free(p->data.p);
  free(p->type.p);
  free(p->id.p);
  free(p);
}

void sse_parser_reset(struct sse_parser *p) {
  p->line.len = p->data.len = p->type.len = p->id.len = 0;
  p->skip_lf = 0;
  p->first_line = 1;
  p->events = 0;
}

size_t sse_events(const struct sse_parser *p) { return p->events; }

int sse_pending(const struct sse_parser *p) {
  return p->line.len > 0 || p->data.len > 0 || p->type.len > 0;
}

static int dispatch(struct sse_parser *p) {
  if (p->data.len == 0) { /* no data field: nothing to dispatch */
    p->type.len = 0;
    return 0;
  }
  p->data.len--; /* every data line added a "\n"; the last one goes */
  p->data.p[p->data.len] = '\0';
  struct sse_event ev = {
      .type = p->type.len ? p->type.p : "message",
      .data = p->data.p,
      .data_len = p->data.len,
      .id = buf_str(&p->id),
  };
  p->events++;
  int rc = p->cb(p->user, &ev);
  p->data.len = 0;
  p->type.len = 0;
  return rc;
}

static int field(struct sse_parser *p, const char *name, size_t nlen, const char *value, size_t vlen) {
  if (nlen == 5 && memcmp(name, "event", 5) == 0) return buf_set(&p->type, value, vlen);
  if (nlen == 4 && memcmp(name, "data", 4) == 0) {
    int rc = buf_append(&p->data, value, vlen);
    return rc ? rc : buf_append(&p->data, "\n", 1);
  }
  if (nlen == 2 && memcmp(name, "id", 2) == 0 && !memchr(value, '\0', vlen))
    return buf_set(&p->id, value, vlen);
  return 0; /* "retry" and unknown fields are ignored */
}

static int process_line(struct sse_parser *p) {
  const char *s = p->line.p ? p->line.p : "";
  size_t n = p->line.len;
  if (p->first_line) {
    p->first_line = 0;
    if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
      s += 3;
      n -= 3;
    }
  }
  p->line.len = 0;
  if (n == 0) return dispatch(p);
  if (s[0] == ':') return 0; /* comment */
  const char *colon = memchr(s, ':', n);
  if (!colon) return field(p, s, n, "", 0);
  size_t nlen = (size_t)(colon - s);
  const char *v = colon + 1;
  size_t vlen = n - nlen - 1;
  if (vlen && *v == ' ') {
    v++;
    vlen--;
  }
  return field(p, s, nlen, v, vlen);
}

int sse_feed(struct sse_parser *p, const char *buf, size_t len) {
  size_t i = 0;
  while (i < len) {
    if (p->skip_lf) {
      p->skip_lf = 0;
      if (buf[i] == '\n') {
        i++;
        continue;
      }
    }
    size_t j = i;
    while (j < len && buf[j] != '\n' && buf[j] != '\r') j++;
    int rc = buf_append(&p->line, buf + i, j - i);
    if (rc) return rc;
    if (j == len) break;
    p->skip_lf = buf[j] == '\r';
    i = j + 1;
    rc = process_line(p);
    if (rc) return rc;
  }
  return 0;
}
