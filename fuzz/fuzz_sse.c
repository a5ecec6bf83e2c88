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

static int on_event(void *user, const struct sse_event *ev) {
  struct fuzz_digest *d = user;
  FUZZ_CHECK(ev->type && ev->data && ev->id);
  FUZZ_CHECK(ev->data[ev->data_len] == '\0' && ev->data_len <= SSE_MAX_EVENT);
  fuzz_mix(d, ev->type, strlen(ev->type));
  fuzz_mix(d, ev->id, strlen(ev->id));
  fuzz_mix(d, ev->data, ev->data_len);
  d->n++;
  return 0;
}

static int feed(void *ctx, const uint8_t *piece, size_t len) {
  return sse_feed(ctx, (const char *)piece, len);
}

static int parse(const uint8_t *data, size_t size, int split, struct fuzz_digest *d,
                 int *pending) {
  struct sse_parser *p;
  FUZZ_CHECK(sse_parser_new(&p, on_event, d) == 0);
  int rc = fuzz_feed(data, size, split ? 7 : 0, feed, p);
  FUZZ_CHECK(rc == 0 || rc == -EMSGSIZE);
  FUZZ_CHECK(sse_events(p) == d->n);
  *pending = sse_pending(p);
  sse_parser_reset(p);
  FUZZ_CHECK(sse_events(p) == 0 && !sse_pending(p));
  sse_parser_free(p);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct fuzz_digest whole = {0}, pieces = {0};
  int pend_whole = 0, pend_pieces = 0;
  int rc_whole = parse(data, size, 0, &whole, &pend_whole);
  int rc_pieces = parse(data, size, 1, &pieces, &pend_pieces);
  FUZZ_CHECK(rc_whole == rc_pieces);
  if (rc_whole == 0) FUZZ_CHECK(pend_whole == pend_pieces);
  FUZZ_CHECK(whole.n == pieces.n && whole.h == pieces.h);
  return 0;
}
