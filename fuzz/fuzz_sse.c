/*
 * fuzz_sse: a streaming response from an AI service (or anything that
 * answers on its address), as the SSE parser sees it off the network.
 *
 * The stream is parsed twice: in one piece and cut into pieces whose sizes
 * come from the bytes themselves, so cuts land inside lines, between CR and
 * LF and inside UTF-8 characters. Framing must not depend on where the
 * network cut: both runs must give the same events and the same result.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "net/sse.h"

/* Events folded into a running hash with their count; field lengths are checked as they come. */
struct digest {
  uint64_t h;
  size_t n;
};

static void mix(struct digest *d, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) d->h = (d->h ^ b[i]) * 0x100000001b3ull;
  d->h = (d->h ^ 0xff) * 0x100000001b3ull; /* field separator */
}

static int on_event(void *user, const struct sse_event *ev) {
  struct digest *d = user;
  FUZZ_CHECK(ev->type && ev->data && ev->id);
  FUZZ_CHECK(ev->data[ev->data_len] == '\0' && ev->data_len <= SSE_MAX_EVENT);
  mix(d, ev->type, strlen(ev->type));
  mix(d, ev->id, strlen(ev->id));
  mix(d, ev->data, ev->data_len);
  d->n++;
  return 0;
}

static int parse(const uint8_t *data, size_t size, int split, struct digest *d, int *pending) {
  struct sse_parser *p;
  FUZZ_CHECK(sse_parser_new(&p, on_event, d) == 0);
  int rc = 0;
  uint32_t cut = 2166136261u;
  for (size_t off = 0; rc == 0 && off < size;) {
    size_t piece = size - off;
    if (split) {
      cut = (cut ^ data[off]) * 16777619u;
      piece = 1 + cut % 7;
      if (piece > size - off) piece = size - off;
    }
    /* Each piece in its own allocation, so reading past it is caught. */
    char *buf = malloc(piece);
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data + off, piece);
    rc = sse_feed(p, buf, piece);
    free(buf);
    off += piece;
  }
  FUZZ_CHECK(rc == 0 || rc == -EMSGSIZE);
  FUZZ_CHECK(sse_events(p) == d->n);
  *pending = sse_pending(p);
  sse_parser_reset(p);
  FUZZ_CHECK(sse_events(p) == 0 && !sse_pending(p));
  sse_parser_free(p);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct digest whole = {0}, pieces = {0};
  int pend_whole = 0, pend_pieces = 0;
  int rc_whole = parse(data, size, 0, &whole, &pend_whole);
  int rc_pieces = parse(data, size, 1, &pieces, &pend_pieces);
  FUZZ_CHECK(rc_whole == rc_pieces);
  if (rc_whole == 0) FUZZ_CHECK(pend_whole == pend_pieces);
  FUZZ_CHECK(whole.n == pieces.n && whole.h == pieces.h);
  return 0;
}
