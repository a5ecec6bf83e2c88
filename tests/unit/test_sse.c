/* sse: framing, fields, comments, line endings, and every possible split of the input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/sse.h"

/* Events are recorded as "type|id|data" lines so whole streams compare as strings. */
struct rec {
  char out[8192];
  size_t len;
  int stop_after; /* 0 = never stop */
  int n;
};

static int on_event(void *user, const struct sse_event *ev) {
  struct rec *r = user;
  assert_int_equal(strlen(ev->data), ev->data_len);
  int w = snprintf(r->out + r->len, sizeof r->out - r->len, "%s|%s|%s\n", ev->type, ev->id, ev->data);
  assert_true(w > 0 && (size_t)w < sizeof r->out - r->len);
  r->len += (size_t)w;
  r->n++;
  return r->stop_after && r->n >= r->stop_after ? 42 : 0;
}

static void parse_in_pieces(const char *in, size_t piece, struct rec *r) {
  struct sse_parser *p;
  assert_int_equal(sse_parser_new(&p, on_event, r), 0);
  size_t n = strlen(in);
  for (size_t i = 0; i < n; i += piece)
    assert_int_equal(sse_feed(p, in + i, n - i < piece ? n - i : piece), 0);
  sse_parser_free(p);
}

static void expect(const char *in, const char *want) {
  struct rec r = {0};
  parse_in_pieces(in, strlen(in) + 1, &r);
  assert_string_equal(r.out, want);
}

static void data_lines_are_joined_with_newlines(void **state) {
  (void)state;
  expect("data: one\ndata: two\n\n", "message||one\ntwo\n");
  expect("data:no space\n\n", "message||no space\n");
  expect("data:  two spaces\n\n", "message|| two spaces\n");
}

static void event_and_id_fields_apply(void **state) {
  (void)state;
  expect("event: content_block_delta\nid: 7\ndata: {\"a\":1}\n\ndata: x\n\n",
         "content_block_delta|7|{\"a\":1}\nmessage|7|x\n");
}

static void comments_and_unknown_fields_are_ignored(void **state) {
  (void)state;
  expect(": keep-alive\nretry: 100\nfoo: bar\ndata: hi\n\n: another\n\n", "message||hi\n");
}

static void event_without_data_is_not_dispatched(void **state) {
  (void)state;
  expect("event: ping\n\ndata: after\n\n", "message||after\n");
  expect("data\n\n", "message||\n"); /* a bare field name is an empty value */
}

static void crlf_lf_and_cr_all_end_lines(void **state) {
  (void)state;
  expect("data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\r\n\n", "message||a\nmessage||b\nmessage||c\nmessage||d\n");
}

static void bom_at_start_is_skipped(void **state) {
  (void)state;
  expect("\xEF\xBB\xBF" "data: x\n\n", "message||x\n");
}

/* The stream every split must parse alike: CR, CRLF, multi-line data, UTF-8. */
static const char *const MIXED =
    ": hello\r\n"
    "event: message_start\r\n"
    "data: {\"type\":\"message_start\"}\r\n"
    "\r\n"
    "data: 你好\rdata: 世界\r\r"
    "id: 3\n"
    "data: [DONE]\n"
    "\n";

static void every_split_gives_the_same_events(void **state) {
  (void)state;
  struct rec whole = {0};
  parse_in_pieces(MIXED, strlen(MIXED), &whole);
  assert_string_equal(whole.out, "message_start||{\"type\":\"message_start\"}\nmessage||你好\n世界\nmessage|3|[DONE]\n");
  for (size_t piece = 1; piece < strlen(MIXED); piece++) {
    struct rec r = {0};
    parse_in_pieces(MIXED, piece, &r);
    assert_string_equal(r.out, whole.out);
  }
  /* and every two-way split */
  size_t n = strlen(MIXED);
  for (size_t cut = 0; cut <= n; cut++) {
    struct rec r = {0};
    struct sse_parser *p;
    assert_int_equal(sse_parser_new(&p, on_event, &r), 0);
    assert_int_equal(sse_feed(p, MIXED, cut), 0);
    assert_int_equal(sse_feed(p, MIXED + cut, n - cut), 0);
    assert_false(sse_pending(p));
    sse_parser_free(p);
    assert_string_equal(r.out, whole.out);
  }
}

static void cut_off_stream_is_pending(void **state) {
  (void)state;
  struct rec r = {0};
  struct sse_parser *p;
  assert_int_equal(sse_parser_new(&p, on_event, &r), 0);
  assert_int_equal(sse_feed(p, "data: whole\n\ndata: half", 23), 0);
  assert_int_equal(r.n, 1);
  assert_true(sse_pending(p));
  assert_int_equal(sse_events(p), 1);
  sse_parser_reset(p);
  assert_false(sse_pending(p));
  assert_int_equal(sse_feed(p, "data: again\n\n", 13), 0);
  sse_parser_free(p);
  assert_string_equal(r.out, "message||whole\nmessage||again\n");
}

static void callback_result_stops_parsing(void **state) {
  (void)state;
  struct rec r = {.stop_after = 1};
  struct sse_parser *p;
  assert_int_equal(sse_parser_new(&p, on_event, &r), 0);
  const char *in = "data: 1\n\ndata: 2\n\n";
  assert_int_equal(sse_feed(p, in, strlen(in)), 42);
  assert_int_equal(r.n, 1);
  sse_parser_free(p);
}

static void oversized_line_is_rejected(void **state) {
  (void)state;
  struct rec r = {0};
  struct sse_parser *p;
  assert_int_equal(sse_parser_new(&p, on_event, &r), 0);
  char *big = malloc(64 * 1024);
  memset(big, 'x', 64 * 1024);
  int rc = 0;
  assert_int_equal(sse_feed(p, "data: ", 6), 0);
  for (int i = 0; i < 17 && rc == 0; i++) rc = sse_feed(p, big, 64 * 1024);
  assert_int_equal(rc, -EMSGSIZE);
  free(big);
  sse_parser_free(p);
  assert_int_equal(r.n, 0);
}

static void binary_garbage_does_not_crash(void **state) {
  (void)state;
  struct rec r = {0};
  struct sse_parser *p;
  assert_int_equal(sse_parser_new(&p, on_event, &r), 0);
  uint32_t x = 12345;
  char junk[4096];
  for (int round = 0; round < 50; round++) {
    for (size_t i = 0; i < sizeof junk; i++) {
      x = x * 1103515245u + 12345u;
      junk[i] = (char)(x >> 16);
    }
    int rc = sse_feed(p, junk, sizeof junk);
    assert_true(rc == 0 || rc == -EMSGSIZE);
  }
  sse_parser_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(data_lines_are_joined_with_newlines),
      cmocka_unit_test(event_and_id_fields_apply),
      cmocka_unit_test(comments_and_unknown_fields_are_ignored),
      cmocka_unit_test(event_without_data_is_not_dispatched),
      cmocka_unit_test(crlf_lf_and_cr_all_end_lines),
      cmocka_unit_test(bom_at_start_is_skipped),
      cmocka_unit_test(every_split_gives_the_same_events),
      cmocka_unit_test(cut_off_stream_is_pending),
      cmocka_unit_test(callback_result_stops_parsing),
      cmocka_unit_test(oversized_line_is_rejected),
      cmocka_unit_test(binary_garbage_does_not_crash),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
