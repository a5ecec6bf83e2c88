/*
 * fuzz_ws_frame: what a WebSocket client sends, as the server's frame
 * reader sees it off the network.
 *
 * The bytes are read twice: in one piece, and cut into pieces whose sizes
 * come from the bytes themselves, so cuts land inside headers, extended
 * lengths, mask keys and UTF-8 characters. Framing must not depend on where
 * the network cut: both runs must give the same events, the same error and
 * the same close code. Along the way the reader's promises are checked:
 * it takes no more than it was given and always makes progress, messages
 * stay within the limit, control payloads within 125 bytes, text and close
 * reasons are UTF-8, close codes are ones a client may send, errors stick.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "net/ws_frame.h"

#define MAX_MESSAGE (64 * 1024)

static void check_event(const struct ws_event *ev, struct fuzz_digest *d) {
  FUZZ_CHECK(ev->data != NULL);
  switch (ev->op) {
  case WS_OP_TEXT:
    FUZZ_CHECK(ws_utf8_valid(ev->data, ev->len));
    /* fall through */
  case WS_OP_BINARY: FUZZ_CHECK(ev->len <= MAX_MESSAGE); break;
  case WS_OP_CLOSE:
    FUZZ_CHECK(ev->reason != NULL && ev->reason_len <= WS_CONTROL_MAX - 2);
    FUZZ_CHECK(ws_utf8_valid((const uint8_t *)ev->reason, ev->reason_len));
    FUZZ_CHECK(ev->close_code == WS_CLOSE_NO_STATUS ? ev->len == 0
                                                    : ev->len == ev->reason_len + 2);
    FUZZ_CHECK(ev->close_code == WS_CLOSE_NO_STATUS ||
               (ev->close_code >= 1000 && ev->close_code <= 4999));
    /* fall through */
  case WS_OP_PING:
  case WS_OP_PONG: FUZZ_CHECK(ev->len <= WS_CONTROL_MAX); break;
  default: FUZZ_CHECK(!"unexpected opcode in an event");
  }
  int op = ev->op, code = ev->close_code;
  fuzz_mix(d, &op, sizeof op);
  fuzz_mix(d, ev->data, ev->len);
  fuzz_mix(d, &code, sizeof code);
}

/* Feeds one piece until it is all taken or an error; returns 0 or the error. */
static int feed_piece(struct ws_reader *r, const uint8_t *p, size_t n, struct fuzz_digest *d,
                      int *code) {
  size_t off = 0;
  int rc;
  do {
    struct ws_event ev;
    size_t used = (size_t)-1;
    rc = ws_reader_feed(r, p + off, n - off, &used, &ev, code);
    FUZZ_CHECK(used <= n - off);
    if (rc == 1) {
      FUZZ_CHECK(used > 0); /* an event always ends on a byte of this call */
      check_event(&ev, d);
      d->n++;
    } else if (rc == 0) {
      FUZZ_CHECK(used == n - off);
    } else {
      FUZZ_CHECK(rc == -EPROTO || rc == -EILSEQ || rc == -EMSGSIZE || rc == -ENOMEM);
    }
    off += used;
  } while (rc == 1 && off < n);
  return rc < 0 ? rc : 0;
}

struct reading {
  struct ws_reader *r;
  struct fuzz_digest *d;
  int *code;
};

static int feed(void *ctx, const uint8_t *piece, size_t len) {
  struct reading *rd = ctx;
  return feed_piece(rd->r, piece, len, rd->d, rd->code);
}

static int read_all(const uint8_t *data, size_t size, int split, struct fuzz_digest *d,
                    int *code) {
  struct ws_reader *r;
  FUZZ_CHECK(ws_reader_new(&r, MAX_MESSAGE) == 0);
  struct reading rd = {r, d, code};
  int rc = fuzz_feed(data, size, split ? 23 : 0, feed, &rd);
  if (rc < 0) {
    /* Sticky: nothing more is taken and the same error comes back. */
    struct ws_event ev;
    size_t used = 1;
    int again = 0;
    FUZZ_CHECK(ws_reader_feed(r, data, size, &used, &ev, &again) == rc);
    FUZZ_CHECK(used == 0 && again == *code);
    FUZZ_CHECK(ws_reader_error(r)[0] != '\0');
  } else {
    FUZZ_CHECK(ws_reader_error(r)[0] == '\0');
  }
  ws_reader_free(r);
  return rc;
}

/* The writer's helpers on the same bytes: a close payload is a prefix cut at a character. */
static void check_writers(const uint8_t *data, size_t size) {
  char reason[256];
  size_t n = size < sizeof reason - 1 ? size : sizeof reason - 1;
  memcpy(reason, data, n);
  reason[n] = '\0';
  uint8_t p[WS_CONTROL_MAX];
  size_t len = ws_close_payload(p, 1000, reason);
  FUZZ_CHECK(len >= 2 && len <= WS_CONTROL_MAX && memcmp(p + 2, reason, len - 2) == 0);
  if (ws_utf8_valid((const uint8_t *)reason, strlen(reason)))
    FUZZ_CHECK(ws_utf8_valid(p + 2, len - 2));
  char accept[29];
  if (ws_accept_key(reason, accept) == 0) FUZZ_CHECK(strlen(accept) == 28);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct fuzz_digest whole = {0}, pieces = {0};
  int code_whole = 0, code_pieces = 0;
  int rc_whole = read_all(data, size, 0, &whole, &code_whole);
  int rc_pieces = read_all(data, size, 1, &pieces, &code_pieces);
  FUZZ_CHECK(rc_whole == rc_pieces && code_whole == code_pieces);
  FUZZ_CHECK(whole.n == pieces.n && whole.h == pieces.h);
  check_writers(data, size);
  return 0;
}
