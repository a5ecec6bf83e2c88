/* ws_frame: RFC 6455 framing as the server reads it (in every split of the input), the
 * frame and close writers, and the handshake key. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/ws_frame.h"

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d}; /* the mask of RFC 6455 section 5.7 */

/* A client frame: first byte `b0` (FIN, RSV, opcode), masked with KEY; returns its size. */
static size_t frame(uint8_t *out, uint8_t b0, const void *payload, size_t len) {
  size_t n = 0;
  out[n++] = b0;
  if (len < 126) {
    out[n++] = (uint8_t)(0x80 | len);
  } else if (len <= 0xFFFF) {
    out[n++] = 0x80 | 126;
    out[n++] = (uint8_t)(len >> 8);
    out[n++] = (uint8_t)len;
  } else {
    out[n++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) out[n++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  memcpy(out + n, KEY, 4);
  n += 4;
  const uint8_t *p = payload;
  for (size_t i = 0; i < len; i++) out[n + i] = p[i] ^ KEY[i & 3];
  return n + len;
}

/* What a reader made of a stream: its events, one a line, then the final result. */
struct log {
  char s[4096];
  size_t len;
};

static void logf_(struct log *l, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(l->s + l->len, sizeof l->s - l->len, fmt, ap);
  va_end(ap);
  assert_true(w >= 0 && (size_t)w < sizeof l->s - l->len);
  l->len += (size_t)w;
}

/* Long payloads are logged as their length and this hash. */
static uint32_t fnv(const uint8_t *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
  return h;
}

static void log_event(struct log *l, const struct ws_event *ev) {
  static const char tag[16] = {[WS_OP_TEXT] = 'T', [WS_OP_BINARY] = 'B', [WS_OP_CLOSE] = 'C',
                               [WS_OP_PING] = 'P', [WS_OP_PONG] = 'O'};
  assert_non_null(ev->data);
  logf_(l, "%c%zu:", tag[ev->op & 15] ? tag[ev->op & 15] : '?', ev->len);
  if (ev->len <= 64) {
    for (size_t i = 0; i < ev->len; i++)
      logf_(l, ev->data[i] >= 0x20 && ev->data[i] < 0x7f ? "%c" : "\\x%02x", ev->data[i]);
  } else {
    logf_(l, "#%08x", (unsigned)fnv(ev->data, ev->len));
  }
  if (ev->op == WS_OP_CLOSE) {
    assert_non_null(ev->reason);
    logf_(l, "|%d|%.*s", ev->close_code, (int)ev->reason_len, ev->reason);
  }
  logf_(l, "\n");
}

/* Feeds one piece, in its own allocation so a read past it is caught, until it is all taken. */
static int feed_piece(struct ws_reader *r, const uint8_t *data, size_t n, struct log *l,
                      int *code) {
  uint8_t *buf = malloc(n ? n : 1);
  assert_non_null(buf);
  if (n) memcpy(buf, data, n);
  size_t off = 0;
  int rc = 0;
  do {
    struct ws_event ev;
    size_t used = 12345;
    rc = ws_reader_feed(r, buf + off, n - off, &used, &ev, code);
    assert_true(used <= n - off);
    if (rc == 1) {
      assert_true(used > 0);
      log_event(l, &ev);
    } else if (rc == 0) {
      assert_int_equal(used, n - off);
    }
    off += used;
  } while (rc == 1 && off < n);
  free(buf);
  return rc < 0 ? rc : 0;
}

/* Runs `in` through a fresh reader cut at `cuts` (increasing offsets); returns the log. */
static void run_cut(const uint8_t *in, size_t len, size_t max, const size_t *cuts, size_t ncuts,
                    struct log *l) {
  struct ws_reader *r;
  assert_int_equal(ws_reader_new(&r, max), 0);
  l->len = 0;
  l->s[0] = '\0';
  size_t start = 0;
  int rc = 0, code = 0;
  for (size_t i = 0; i <= ncuts && rc == 0; i++) {
    size_t end = i < ncuts ? cuts[i] : len;
    rc = feed_piece(r, in + start, end - start, l, &code);
    start = end;
  }
  if (rc < 0)
    logf_(l, "error %d close %d (%s)\n", rc, code, ws_reader_error(r));
  else
    assert_string_equal(ws_reader_error(r), "");
  ws_reader_free(r);
}

static void run(const uint8_t *in, size_t len, size_t max, struct log *l) {
  run_cut(in, len, max, NULL, 0, l);
}

/* The stream in one piece, a byte at a time, and cut at every pair of places: one log. */
static void assert_any_split_gives(const uint8_t *in, size_t len, size_t max, const char *want) {
  struct log l;
  run(in, len, max, &l);
  assert_string_equal(l.s, want);
  size_t *bytes = malloc((len ? len : 1) * sizeof *bytes);
  assert_non_null(bytes);
  for (size_t i = 0; i < len; i++) bytes[i] = i + 1;
  run_cut(in, len, max, bytes, len ? len - 1 : 0, &l);
  assert_string_equal(l.s, want);
  free(bytes);
  for (size_t a = 0; a <= len; a++)
    for (size_t b = a; b <= len; b++) {
      size_t cuts[2] = {a, b};
      run_cut(in, len, max, cuts, 2, &l);
      assert_string_equal(l.s, want);
    }
}

static void the_rfc_6455_section_5_7_masked_hello_is_a_text_message(void **state) {
  (void)state;
  /* As printed in the RFC: "Hello" under the key 37 fa 21 3d. */
  const uint8_t in[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  assert_any_split_gives(in, sizeof in, 1024, "T5:Hello\n");
  /* The same bytes as a pong. */
  uint8_t pong[sizeof in];
  memcpy(pong, in, sizeof in);
  pong[0] = 0x8a;
  assert_any_split_gives(pong, sizeof pong, 1024, "O5:Hello\n");
}

static void the_rfc_6455_section_5_7_fragments_and_ping_made_masked_are_read(void **state) {
  (void)state;
  uint8_t in[64];
  size_t n = 0;
  n += frame(in + n, 0x01, "Hel", 3);
  n += frame(in + n, 0x89, "Hello", 5);
  n += frame(in + n, 0x80, "lo", 2);
  assert_any_split_gives(in, n, 1024, "P5:Hello\nT5:Hello\n");
}

static void an_unmasked_frame_is_a_protocol_error(void **state) {
  (void)state;
  const uint8_t in[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}; /* section 5.7, unmasked */
  assert_any_split_gives(in, sizeof in, 1024, "error -71 close 1002 (unmasked frame)\n");
  /* A good frame before it is still delivered. */
  uint8_t two[32];
  size_t n = frame(two, 0x82, "ab", 2);
  memcpy(two + n, in, sizeof in);
  assert_any_split_gives(two, n + sizeof in, 1024,
                         "B2:ab\nerror -71 close 1002 (unmasked frame)\n");
}

static void an_event_leaves_the_rest_of_the_input_for_the_next_call(void **state) {
  (void)state;
  uint8_t in[64];
  size_t first = frame(in, 0x81, "one", 3);
  size_t n = first + frame(in + first, 0x81, "two", 3);
  struct ws_reader *r;
  assert_int_equal(ws_reader_new(&r, 64), 0);
  struct ws_event ev;
  size_t used;
  int code = 0;
  assert_int_equal(ws_reader_feed(r, in, n, &used, &ev, &code), 1);
  assert_int_equal(used, first);
  assert_int_equal(ev.op, WS_OP_TEXT);
  assert_memory_equal(ev.data, "one", 3);
  assert_int_equal(ws_reader_feed(r, in + first, n - first, &used, &ev, &code), 1);
  assert_int_equal(used, n - first);
  assert_memory_equal(ev.data, "two", 3);
  assert_int_equal(ws_reader_feed(r, in, 0, &used, &ev, &code), 0);
  assert_int_equal(used, 0);
  ws_reader_free(r);
}

static void a_message_cut_at_every_byte_boundary_reassembles(void **state) {
  (void)state;
  /* Text with multi-byte characters in four fragments (a 16-bit length among them, a
   * character split between two), a ping between, then a binary message and a close. */
  uint8_t big[300];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)('a' + i % 26);
  static uint8_t in[1024];
  size_t n = 0;
  n += frame(in + n, 0x01, "h\xc3\xa9", 3);
  n += frame(in + n, 0x00, big, sizeof big);
  n += frame(in + n, 0x89, "", 0);
  n += frame(in + n, 0x00, "\xe2\x82", 2);
  n += frame(in + n, 0x80, "\xac!", 2);
  n += frame(in + n, 0x82, "\x00\xff\x80", 3);
  n += frame(in + n, 0x88, "\x03\xe8" "bye", 5);
  uint8_t text[307] = "h\xc3\xa9";
  memcpy(text + 3, big, sizeof big);
  memcpy(text + 303, "\xe2\x82\xac!", 4);
  char want[256];
  snprintf(want, sizeof want, "P0:\nT307:#%08x\nB3:\\x00\\xff\\x80\nC5:\\x03\\xe8bye|1000|bye\n",
           (unsigned)fnv(text, sizeof text));
  assert_any_split_gives(in, n, 4096, want);
}

static void control_frames_between_fragments_are_delivered(void **state) {
  (void)state;
  uint8_t in[128];
  size_t n = 0;
  n += frame(in + n, 0x02, "ab", 2);
  n += frame(in + n, 0x89, "p", 1);
  n += frame(in + n, 0x00, "cd", 2);
  n += frame(in + n, 0x8a, "", 0);
  n += frame(in + n, 0x88, "\x03\xe9", 2);
  n += frame(in + n, 0x80, "ef", 2);
  assert_any_split_gives(in, n, 6, "P1:p\nO0:\nC2:\\x03\\xe9|1001|\nB6:abcdef\n");
}

static void zero_length_messages_and_fragments_are_events(void **state) {
  (void)state;
  uint8_t in[64];
  size_t n = 0;
  n += frame(in + n, 0x81, "", 0);
  n += frame(in + n, 0x82, "", 0);
  n += frame(in + n, 0x01, "", 0);
  n += frame(in + n, 0x00, "x", 1);
  n += frame(in + n, 0x80, "", 0);
  n += frame(in + n, 0x88, "", 0);
  assert_any_split_gives(in, n, 1, "T0:\nB0:\nT1:x\nC0:|1005|\n");
  /* A reader allowing nothing but empty messages still takes them. */
  assert_any_split_gives(in, frame(in, 0x81, "", 0), 0, "T0:\n");
}

static void a_message_over_the_limit_is_refused_from_its_header(void **state) {
  (void)state;
  uint8_t in[512];
  uint8_t payload[200] = {0};
  /* Exactly the limit is fine, twice in a row (the buffer is reused or renewed). */
  size_t n = frame(in, 0x82, payload, 100);
  n += frame(in + n, 0x82, payload, 100);
  char want[64];
  snprintf(want, sizeof want, "B100:#%08x\nB100:#%08x\n", (unsigned)fnv(payload, 100),
           (unsigned)fnv(payload, 100));
  assert_any_split_gives(in, n, 100, want);
  /* One byte over: refused with the header alone, no payload needed. */
  frame(in, 0x82, payload, 101);
  assert_any_split_gives(in, 6, 100, "error -90 close 1009 (message too big)\n");
  /* Over by the sum of the fragments, the second header is the one refused. */
  n = frame(in, 0x02, payload, 60);
  size_t second = frame(in + n, 0x80, payload, 41);
  (void)second;
  assert_any_split_gives(in, n + 6, 100, "error -90 close 1009 (message too big)\n");
  /* A 64-bit length of a terabyte is refused without reading (or storing) anything more. */
  const uint8_t huge[] = {0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0};
  assert_any_split_gives(huge, sizeof huge, 1 << 20, "error -90 close 1009 (message too big)\n");
  /* Control frames do not count against the message limit. */
  n = frame(in, 0x89, payload, 125);
  snprintf(want, sizeof want, "P125:#%08x\n", (unsigned)fnv(payload, 125));
  assert_any_split_gives(in, n, 10, want);
}

static void sixteen_and_sixty_four_bit_lengths_are_read(void **state) {
  (void)state;
  /* Section 5.7's 256-byte and 64 KiB binary frames, masked. */
  size_t sizes[] = {126, 256, 65535, 65536, 70000};
  uint8_t *payload = malloc(70000), *in = malloc(70000 + 14);
  assert_non_null(payload);
  assert_non_null(in);
  for (size_t i = 0; i < 70000; i++) payload[i] = (uint8_t)(i * 7);
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = frame(in, 0x82, payload, sizes[k]);
    assert_int_equal(n - sizes[k], sizes[k] <= 0xFFFF ? 8 : 14);
    struct ws_reader *r;
    assert_int_equal(ws_reader_new(&r, 1 << 20), 0);
    struct ws_event ev;
    size_t used, off = 0;
    int rc = 0, code = 0;
    /* In pieces of 1000 bytes, as a socket might give them. */
    while (rc == 0 && off < n) {
      size_t piece = n - off < 1000 ? n - off : 1000;
      rc = ws_reader_feed(r, in + off, piece, &used, &ev, &code);
      off += used;
    }
    assert_int_equal(rc, 1);
    assert_int_equal(off, n);
    assert_int_equal(ev.op, WS_OP_BINARY);
    assert_int_equal(ev.len, sizes[k]);
    assert_memory_equal(ev.data, payload, sizes[k]);
    ws_reader_free(r);
  }
  free(payload);
  free(in);
}

static void invalid_utf8_text_closes_with_1007(void **state) {
  (void)state;
  static const char *bad[] = {
      "\x80",             /* a lone continuation byte */
      "\xc0\x80",         /* overlong NUL */
      "\xc1\xbf",         /* overlong */
      "\xe0\x9f\xbf",     /* overlong 3-byte */
      "\xed\xa0\x80",     /* a surrogate */
      "\xed\xbf\xbf",     /* a surrogate */
      "\xf0\x8f\xbf\xbf", /* overlong 4-byte */
      "\xf4\x90\x80\x80", /* past U+10FFFF */
      "\xf5\x80\x80\x80", /* past U+10FFFF */
      "\xff",
      "ok\xe2\x82",       /* ends inside a character */
  };
  uint8_t in[64];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t n = frame(in, 0x81, bad[i], strlen(bad[i]));
    struct log l;
    run(in, n, 64, &l);
    assert_true(strncmp(l.s, "error -84 close 1007 (", 22) == 0);
    /* As binary the same bytes are fine. */
    n = frame(in, 0x82, bad[i], strlen(bad[i]));
    run(in, n, 64, &l);
    assert_true(l.s[0] == 'B');
  }
  /* A euro sign split between fragments, and the largest code point, are valid. */
  size_t n = frame(in, 0x01, "\xe2", 1);
  n += frame(in + n, 0x00, "\x82", 1);
  n += frame(in + n, 0x80, "\xac\xf4\x8f\xbf\xbf", 5);
  assert_any_split_gives(in, n, 64, "T7:\\xe2\\x82\\xac\\xf4\\x8f\\xbf\\xbf\n");
  /* A bad byte fails the message at once, before its final fragment. */
  n = frame(in, 0x01, "a\xff", 2);
  assert_any_split_gives(in, n, 64, "error -84 close 1007 (text is not UTF-8)\n");
}

static void the_utf8_check_is_strict(void **state) {
  (void)state;
  static const struct {
    const char *s;
    int ok;
  } cases[] = {
      {"", 1},
      {"plain", 1},
      {"\xc2\x80", 1},
      {"\xdf\xbf", 1},
      {"\xe0\xa0\x80", 1},
      {"\xed\x9f\xbf", 1},
      {"\xee\x80\x80", 1},
      {"\xef\xbf\xbf", 1},
      {"\xf0\x90\x80\x80", 1},
      {"\xf4\x8f\xbf\xbf", 1},
      {"\xc2", 0},
      {"\xc2\xc2", 0},
      {"\xe0\x80\x80", 0},
      {"\xed\xa0\x80", 0},
      {"\xf0\x80\x80\x80", 0},
      {"\xf4\x90\x80\x80", 0},
      {"\xf8\x88\x80\x80\x80", 0},
      {"\xfe", 0},
      {"a\x80", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_int_equal(ws_utf8_valid((const uint8_t *)cases[i].s, strlen(cases[i].s)), cases[i].ok);
}

static void assert_refused(const uint8_t *in, size_t n, const char *why) {
  struct log l;
  char want[128];
  snprintf(want, sizeof want, "error -71 close 1002 (%s)\n", why);
  run(in, n, 1024, &l);
  assert_string_equal(l.s, want);
}

static void reserved_bits_and_unknown_opcodes_are_refused(void **state) {
  (void)state;
  uint8_t in[32];
  for (uint8_t rsv = 0x10; rsv <= 0x40; rsv <<= 1) {
    size_t n = frame(in, (uint8_t)(0x81 | rsv), "x", 1);
    assert_refused(in, n, "reserved bits set");
  }
  static const uint8_t unknown[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
  for (size_t i = 0; i < sizeof unknown; i++) {
    size_t n = frame(in, (uint8_t)(0x80 | unknown[i]), "x", 1);
    assert_refused(in, n, "unknown opcode");
  }
}

static void frames_out_of_place_are_refused(void **state) {
  (void)state;
  uint8_t in[512], payload[200] = {0};
  size_t n = frame(in, 0x09, "x", 1);
  assert_refused(in, n, "fragmented control frame");
  n = frame(in, 0x88, payload, 126);
  assert_refused(in, n, "control frame too long");
  n = frame(in, 0x80, "x", 1);
  assert_refused(in, n, "continuation outside a message");
  /* A continuation after a finished message has nothing to continue either. */
  n = frame(in, 0x81, "a", 1);
  n += frame(in + n, 0x80, "b", 1);
  struct log l;
  run(in, n, 1024, &l);
  assert_string_equal(l.s, "T1:a\nerror -71 close 1002 (continuation outside a message)\n");
  n = frame(in, 0x01, "a", 1);
  n += frame(in + n, 0x82, "b", 1);
  assert_refused(in, n, "new message inside a fragmented one");
  const uint8_t top[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0};
  assert_refused(top, sizeof top, "length has its top bit set");
}

static void close_codes_and_reasons_are_checked(void **state) {
  (void)state;
  uint8_t in[160], p[130];
  static const int allowed[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                1013, 1014, 3000, 3999, 4000, 4999};
  static const int refused[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
  for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
    p[0] = (uint8_t)(allowed[i] >> 8);
    p[1] = (uint8_t)allowed[i];
    memcpy(p + 2, "why", 3);
    size_t n = frame(in, 0x88, p, 5);
    struct log l;
    run(in, n, 16, &l);
    char want[64];
    snprintf(want, sizeof want, "|%d|why\n", allowed[i]);
    assert_non_null(strstr(l.s, want));
  }
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    p[0] = (uint8_t)(refused[i] >> 8);
    p[1] = (uint8_t)refused[i];
    assert_refused(in, frame(in, 0x88, p, 2), "close code not allowed");
  }
  assert_refused(in, frame(in, 0x88, "\x03", 1), "close payload of one byte");
  struct log l;
  run(in, frame(in, 0x88, "\x03\xe8\xc3(", 4), 16, &l);
  assert_string_equal(l.s, "error -84 close 1007 (close reason is not UTF-8)\n");
  /* A full 123-byte reason, multi-byte characters in it. */
  size_t n = ws_close_payload(p, 1000, "\xc3\xa9t\xc3\xa9");
  assert_int_equal(n, 7);
  assert_any_split_gives(in, frame(in, 0x88, p, n), 16,
                         "C7:\\x03\\xe8\\xc3\\xa9t\\xc3\\xa9|1000|\xc3\xa9t\xc3\xa9\n");
  assert_any_split_gives(in, frame(in, 0x88, "", 0), 16, "C0:|1005|\n");
}

static void errors_are_sticky(void **state) {
  (void)state;
  const uint8_t bad[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
  uint8_t good[16];
  size_t n = frame(good, 0x81, "ok", 2);
  struct ws_reader *r;
  assert_int_equal(ws_reader_new(&r, 64), 0);
  struct ws_event ev;
  size_t used;
  int code = 0;
  assert_string_equal(ws_reader_error(r), "");
  assert_int_equal(ws_reader_feed(r, bad, sizeof bad, &used, &ev, &code), -EPROTO);
  assert_int_equal(code, WS_CLOSE_PROTOCOL_ERROR);
  assert_int_equal(used, 2); /* the header that broke the protocol, no further */
  for (int i = 0; i < 3; i++) {
    code = 0;
    used = 99;
    assert_int_equal(ws_reader_feed(r, good, n, &used, &ev, &code), -EPROTO);
    assert_int_equal(code, WS_CLOSE_PROTOCOL_ERROR);
    assert_int_equal(used, 0);
  }
  assert_string_equal(ws_reader_error(r), "unmasked frame");
  ws_reader_free(r);

  /* The same for an error found in a payload. */
  assert_int_equal(ws_reader_new(&r, 64), 0);
  uint8_t text[16];
  size_t tn = frame(text, 0x81, "\xff", 1);
  assert_int_equal(ws_reader_feed(r, text, tn, &used, &ev, &code), -EILSEQ);
  assert_int_equal(code, WS_CLOSE_INVALID_DATA);
  assert_int_equal(ws_reader_feed(r, good, n, &used, &ev, &code), -EILSEQ);
  ws_reader_free(r);
}

static void a_big_message_then_small_ones_are_each_whole(void **state) {
  (void)state;
  /* The big message's buffer is dropped after delivery; the next messages must not see it. */
  size_t big = 20000;
  uint8_t *payload = malloc(big), *in = malloc(big + 64);
  assert_non_null(payload);
  assert_non_null(in);
  memset(payload, 'z', big);
  size_t n = frame(in, 0x82, payload, big);
  size_t second = n;
  n += frame(in + n, 0x81, "small", 5);
  struct ws_reader *r;
  assert_int_equal(ws_reader_new(&r, big), 0);
  struct ws_event ev;
  size_t used;
  int code;
  assert_int_equal(ws_reader_feed(r, in, n, &used, &ev, &code), 1);
  assert_int_equal(used, second);
  assert_int_equal(ev.len, big);
  assert_memory_equal(ev.data, payload, big);
  assert_int_equal(ws_reader_feed(r, in + second, n - second, &used, &ev, &code), 1);
  assert_int_equal(ev.len, 5);
  assert_memory_equal(ev.data, "small", 5);
  assert_int_equal(ws_reader_feed(r, in + second, n - second, &used, &ev, &code), 1);
  assert_memory_equal(ev.data, "small", 5);
  ws_reader_free(r);
  free(payload);
  free(in);
}

static void frame_headers_use_the_shortest_length(void **state) {
  (void)state;
  uint8_t h[WS_HEADER_MAX];
  assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 0), 2);
  assert_memory_equal(h, "\x81\x00", 2);
  assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 125), 2);
  assert_memory_equal(h, "\x81\x7d", 2);
  assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 126), 4);
  assert_memory_equal(h, "\x82\x7e\x00\x7e", 4);
  assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 65535), 4);
  assert_memory_equal(h, "\x82\x7e\xff\xff", 4);
  assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 65536), 10);
  assert_memory_equal(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
  assert_int_equal(ws_frame_header(h, WS_OP_CLOSE, 0x0102030405ull), 10);
  assert_memory_equal(h, "\x88\x7f\x00\x00\x00\x01\x02\x03\x04\x05", 10);
  assert_int_equal(ws_frame_header(h, WS_OP_PONG, 5), 2);
  assert_memory_equal(h, "\x8a\x05", 2);
}

static void a_close_reason_is_cut_at_a_character_boundary(void **state) {
  (void)state;
  uint8_t p[WS_CONTROL_MAX + 8];
  memset(p, 0xAA, sizeof p);
  assert_int_equal(ws_close_payload(p, 1001, NULL), 2);
  assert_memory_equal(p, "\x03\xe9", 2);
  assert_int_equal(ws_close_payload(p, 4000, "going"), 7);
  assert_memory_equal(p, "\x0f\xa0going", 7);
  /* 2-byte characters: 123 bytes would cut one, so 122. */
  char reason[400] = "";
  for (int i = 0; i < 100; i++) strcat(reason, "\xc3\xa9");
  assert_int_equal(ws_close_payload(p, 1000, reason), 124);
  assert_true(ws_utf8_valid(p + 2, 122));
  /* 4-byte characters after one ASCII byte: 1 + 30 * 4 = 121 fit. */
  strcpy(reason, "x");
  for (int i = 0; i < 40; i++) strcat(reason, "\xf0\x9f\x98\x80");
  assert_int_equal(ws_close_payload(p, 1000, reason), 123);
  assert_true(ws_utf8_valid(p + 2, 121));
  /* Exactly 123 ASCII bytes fit whole; nothing is written past the payload. */
  memset(reason, 'a', 200);
  reason[200] = '\0';
  assert_int_equal(ws_close_payload(p, 1000, reason), WS_CONTROL_MAX);
  assert_int_equal(p[WS_CONTROL_MAX], 0xAA);
}

static void the_rfc_6455_section_1_3_accept_key_is_computed(void **state) {
  (void)state;
  char out[29];
  memset(out, 'x', sizeof out);
  assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
  assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  /* Surrounding blanks are not part of the key. */
  assert_int_equal(ws_accept_key(" \tdGhlIHNhbXBsZSBub25jZQ== \t", out), 0);
  assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void a_key_that_is_not_16_bytes_of_base64_is_refused(void **state) {
  (void)state;
  char out[29];
  static const char *bad[] = {
      "",
      "dGhlIHNhbXBsZSBub25jZQ=",      /* 23 characters */
      "dGhlIHNhbXBsZSBub25jZQ===",    /* 25 */
      "dGhlIHNhbXBsZSBub25jZQab",     /* 18 bytes, no padding */
      "dGhlIHNhbXBsZSBub25jZ=A=",     /* padding in the middle */
      "dGhlIHNhbXBsZSBub25j*Q==",     /* not base64 */
      "dGhlIHNhbXBs ZSBub25jZQ==",    /* a blank inside */
      "dGhlIHNhbXBsZSBub25jZQ==x",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(ws_accept_key(bad[i], out), -EINVAL);
  assert_int_equal(ws_accept_key(NULL, out), -EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_rfc_6455_section_5_7_masked_hello_is_a_text_message),
      cmocka_unit_test(the_rfc_6455_section_5_7_fragments_and_ping_made_masked_are_read),
      cmocka_unit_test(an_unmasked_frame_is_a_protocol_error),
      cmocka_unit_test(an_event_leaves_the_rest_of_the_input_for_the_next_call),
      cmocka_unit_test(a_message_cut_at_every_byte_boundary_reassembles),
      cmocka_unit_test(control_frames_between_fragments_are_delivered),
      cmocka_unit_test(zero_length_messages_and_fragments_are_events),
      cmocka_unit_test(a_message_over_the_limit_is_refused_from_its_header),
      cmocka_unit_test(sixteen_and_sixty_four_bit_lengths_are_read),
      cmocka_unit_test(invalid_utf8_text_closes_with_1007),
      cmocka_unit_test(the_utf8_check_is_strict),
      cmocka_unit_test(reserved_bits_and_unknown_opcodes_are_refused),
      cmocka_unit_test(frames_out_of_place_are_refused),
      cmocka_unit_test(close_codes_and_reasons_are_checked),
      cmocka_unit_test(errors_are_sticky),
      cmocka_unit_test(a_big_message_then_small_ones_are_each_whole),
      cmocka_unit_test(frame_headers_use_the_shortest_length),
      cmocka_unit_test(a_close_reason_is_cut_at_a_character_boundary),
      cmocka_unit_test(the_rfc_6455_section_1_3_accept_key_is_computed),
      cmocka_unit_test(a_key_that_is_not_16_bytes_of_base64_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
