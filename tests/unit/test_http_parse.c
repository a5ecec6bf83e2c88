/* http_parse: request heads are taken whole or refused with the right status, never guessed at. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/http_parse.h"

static int parse(const char *s, struct http_head *h) { return http_head_parse(s, strlen(s), h); }

/* The status a head is refused with, or 0 when it parses (and is freed). */
static int refusal(const char *s) {
  struct http_head h;
  int rc = parse(s, &h);
  if (rc == 0) {
    http_head_free(&h);
    return 0;
  }
  if (rc != -EBADMSG) fail_msg("\"%s\": rc %d, not a refusal", s, rc);
  assert_null(h.mem);
  assert_non_null(h.error);
  return h.status;
}

static void expect_refused(const char *s, int status) {
  int got = refusal(s);
  if (got != status) fail_msg("\"%s\": status %d, expected %d", s, got, status);
}

static const char CHROME[] =
    "GET /call/room%201?lang=zh-CN&x=a+b HTTP/1.1\r\n"
    "Host: example.com:8443\r\n"
    "Connection: keep-alive\r\n"
    "sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\"\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language:   zh-CN,zh;q=0.9  \r\n"
    "\r\n"
    "trailing body bytes";

static void a_head_arrives_in_pieces_and_parses_once_complete(void **state) {
  (void)state;
  size_t whole = strlen(CHROME);
  size_t head = (size_t)(strstr(CHROME, "\r\n\r\n") - CHROME) + 4;
  struct http_head h;
  for (size_t n = 0; n < head; n++) {
    /* Each prefix in its own allocation, so a read past it is caught under ASan. */
    char *p = malloc(n ? n : 1);
    memcpy(p, CHROME, n);
    int rc = http_head_parse(p, n, &h);
    free(p);
    if (rc != -EAGAIN) fail_msg("prefix of %zu bytes: rc %d (%s)", n, rc, h.error ? h.error : "");
    assert_null(h.mem);
  }
  for (size_t n = head; n <= whole; n++) {
    assert_int_equal(http_head_parse(CHROME, n, &h), 0);
    assert_int_equal(h.head_len, head);
    http_head_free(&h);
  }
  assert_int_equal(http_head_parse(CHROME, whole, &h), 0);
  assert_string_equal(h.method, "GET");
  assert_string_equal(h.target, "/call/room%201?lang=zh-CN&x=a+b");
  assert_string_equal(h.path, "/call/room 1");
  assert_int_equal(h.version_minor, 1);
  assert_int_equal(h.nfields, 7);
  assert_string_equal(h.fields[0].name, "host");
  assert_string_equal(http_head_field(&h, "host"), "example.com:8443");
  assert_string_equal(http_head_field(&h, "accept-language"), "zh-CN,zh;q=0.9");
  assert_string_equal(http_head_field(&h, "user-agent"),
                      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36");
  assert_null(http_head_field(&h, "Host")); /* names are looked up lower-case */
  assert_int_equal(h.content_length, -1);
  assert_true(h.keep_alive);
  assert_null(h.upgrade);
  http_head_free(&h);
  http_head_free(&h); /* freeing twice is harmless */
  assert_null(h.mem);
}

static void paths_are_decoded_and_normalised(void **state) {
  (void)state;
  static const struct {
    const char *target, *path;
  } cases[] = {
      {"/", "/"},
      {"/a/b/c/./../../g", "/a/g"},
      {"/a/../b", "/b"},
      {"//b", "/b"},
      {"/a//b///c", "/a/b/c"},
      {"/..", "/"},
      {"/../../etc/passwd", "/etc/passwd"},
      {"/a/%2e%2e/%2E%2E/%2e%2e/x", "/x"},
      {"/a/", "/a/"},
      {"/a/.", "/a/"},
      {"/a/..", "/"},
      {"/a/b/..", "/a/"},
      {"/a/./b", "/a/b"},
      {"/..a/b..", "/..a/b.."},
      {"/a%2Fb", "/a/b"},
      {"/a%2f..%2fb", "/b"},
      {"/%E4%BD%A0%E5%A5%BD", "/\xe4\xbd\xa0\xe5\xa5\xbd"},
      {"/a+b%20c", "/a+b c"},
      {"/x?y=1", "/x"},
      {"/x#frag", "/x"},
      {"/x/?q#f", "/x/"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", cases[i].target);
    struct http_head h;
    assert_int_equal(parse(req, &h), 0);
    if (strcmp(h.path, cases[i].path) != 0)
      fail_msg("%s: path \"%s\", expected \"%s\"", cases[i].target, h.path, cases[i].path);
    assert_string_equal(h.target, cases[i].target);
    http_head_free(&h);
  }
  const char *bad[] = {"/a%", "/a%2", "/a%zz", "/a%00b", "/a%0d%0a", "/a%7f", "/a%1F"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char req[128];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", bad[i]);
    expect_refused(req, 400);
  }
}

static void smuggling_ambiguities_are_refused(void **state) {
  (void)state;
  /* CL with TE, whichever comes first */
  expect_refused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                 400);
  expect_refused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                 400);
  expect_refused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 411);
  expect_refused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
  /* two different lengths, in two fields or one */
  expect_refused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
  expect_refused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", 400);
  const char *bad_cl[] = {"", "-1", "+5", "5a", "0x5", "5,", ",5", "5 5", "99999999999999999999", "1e3"};
  for (size_t i = 0; i < sizeof bad_cl / sizeof *bad_cl; i++) {
    char req[128];
    snprintf(req, sizeof req, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %s\r\n\r\n", bad_cl[i]);
    struct http_head h;
    assert_int_equal(parse(req, &h), -EBADMSG);
    assert_int_equal(h.status, 400);
    assert_string_equal(h.error, "bad Content-Length");
  }
  /* whitespace before the colon, folded lines */
  expect_refused("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  continued\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tcontinued\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost: h\r\n: empty name\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost: h\r\nno colon\r\n\r\n", 400);
  /* Host: missing on 1.1, repeated on any version */
  expect_refused("GET / HTTP/1.1\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400);
  assert_int_equal(refusal("GET / HTTP/1.0\r\n\r\n"), 0);
  /* request-line spacing */
  expect_refused("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_refused("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
  expect_refused(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_refused("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_refused("GETTINGVERYLONG1 / HTTP/1.1\r\nHost: h\r\n\r\n", 400); /* 16-letter method */
  assert_int_equal(refusal("GETTINGVERYLONG / HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
  expect_refused("GET x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_refused("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400);

  /* equal lengths, repeated or listed, are one length */
  struct http_head h;
  assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 5, 5\r\n\r\n", &h), 0);
  assert_int_equal(h.content_length, 5);
  http_head_free(&h);
  assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n", &h), 0);
  assert_int_equal(h.content_length, INT64_MAX);
  http_head_free(&h);
  assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", &h), 0);
  assert_int_equal(h.content_length, 0);
  http_head_free(&h);
}

static void long_targets_get_414_before_the_line_ends(void **state) {
  (void)state;
  size_t cap = HTTP_URI_MAX + 200;
  char *buf = malloc(cap);
  memcpy(buf, "GET /", 5);
  memset(buf + 5, 'a', cap - 5);
  struct http_head h;
  /* a target of exactly HTTP_URI_MAX bytes is still waiting for its end */
  assert_int_equal(http_head_parse(buf, 4 + HTTP_URI_MAX, &h), -EAGAIN);
  /* one more byte of it is refused, although the line has not ended */
  assert_int_equal(http_head_parse(buf, 4 + HTTP_URI_MAX + 1, &h), -EBADMSG);
  assert_int_equal(h.status, 414);
  assert_null(h.mem);
  /* and a whole line with that target too */
  memcpy(buf + 4 + HTTP_URI_MAX + 1, " HTTP/1.1\r\nHost: h\r\n\r\n", 22);
  assert_int_equal(http_head_parse(buf, 4 + HTTP_URI_MAX + 1 + 22, &h), -EBADMSG);
  assert_int_equal(h.status, 414);
  /* the longest target is taken */
  memcpy(buf + 4 + HTTP_URI_MAX, " HTTP/1.1\r\nHost: h\r\n\r\n", 22);
  assert_int_equal(http_head_parse(buf, 4 + HTTP_URI_MAX + 22, &h), 0);
  assert_int_equal(strlen(h.target), HTTP_URI_MAX);
  http_head_free(&h);
  free(buf);
}

static void big_heads_get_431(void **state) {
  (void)state;
  char *buf = malloc(HTTP_HEAD_MAX + 100);
  size_t n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
  /* Fill so that the blank line ends exactly at HTTP_HEAD_MAX: accepted. */
  size_t fill = HTTP_HEAD_MAX - n - 4;
  memset(buf + n, 'x', fill);
  memcpy(buf + n + fill, "\r\n\r\n", 4);
  struct http_head h;
  assert_int_equal(http_head_parse(buf, HTTP_HEAD_MAX, &h), 0);
  assert_int_equal(h.head_len, HTTP_HEAD_MAX);
  http_head_free(&h);
  /* One byte more and it is too large, whether or not its end has come. */
  memset(buf + n, 'x', fill + 1);
  memcpy(buf + n + fill + 1, "\r\n\r\n", 4);
  assert_int_equal(http_head_parse(buf, HTTP_HEAD_MAX - 1, &h), -EAGAIN);
  assert_int_equal(http_head_parse(buf, HTTP_HEAD_MAX, &h), -EBADMSG);
  assert_int_equal(h.status, 431);
  assert_int_equal(http_head_parse(buf, HTTP_HEAD_MAX + 1, &h), -EBADMSG);
  assert_int_equal(h.status, 431);
  free(buf);

  /* too many fields, though small */
  char many[4096];
  size_t m = (size_t)sprintf(many, "GET / HTTP/1.1\r\nHost: h\r\n");
  for (int i = 1; i < HTTP_MAX_FIELDS; i++) m += (size_t)sprintf(many + m, "a%d: v\r\n", i);
  strcpy(many + m, "\r\n");
  assert_int_equal(parse(many, &h), 0);
  assert_int_equal(h.nfields, HTTP_MAX_FIELDS);
  http_head_free(&h);
  strcpy(many + m, "one-more: v\r\n\r\n");
  expect_refused(many, 431);

  /* endless empty lines before the request line count too */
  char *empty = malloc(HTTP_HEAD_MAX + 1);
  memset(empty, '\n', HTTP_HEAD_MAX + 1);
  assert_int_equal(http_head_parse(empty, HTTP_HEAD_MAX - 1, &h), -EAGAIN);
  assert_int_equal(http_head_parse(empty, HTTP_HEAD_MAX + 1, &h), -EBADMSG);
  assert_int_equal(h.status, 431);
  free(empty);
}

static void versions_other_than_1_0_and_1_1(void **state) {
  (void)state;
  const char *v505[] = {"HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/9.9"};
  for (size_t i = 0; i < sizeof v505 / sizeof *v505; i++) {
    char req[128];
    snprintf(req, sizeof req, "GET / %s\r\nHost: h\r\n\r\n", v505[i]);
    struct http_head h;
    assert_int_equal(parse(req, &h), -EBADMSG);
    assert_int_equal(h.status, 505);
    assert_string_equal(h.error, "HTTP version not supported");
  }
  const char *v400[] = {"HTTP/1.10", "HTTP/1", "HTTP/11", "http/1.1", "HTTP/1.x", "HTTPS/1.1", "", "HTTP/1.1x"};
  for (size_t i = 0; i < sizeof v400 / sizeof *v400; i++) {
    char req[128];
    snprintf(req, sizeof req, "GET / %s\r\nHost: h\r\n\r\n", v400[i]);
    expect_refused(req, 400);
  }
  /* a wrong version is refused before the line ends */
  struct http_head h;
  assert_int_equal(parse("GET / HTTX", &h), -EBADMSG);
  assert_int_equal(parse("GET / HTTP/1.", &h), -EAGAIN);
  assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &h), 0);
  assert_int_equal(h.version_minor, 0);
  http_head_free(&h);
  expect_refused("GET /\r\n\r\n", 400); /* HTTP/0.9 has no version at all */
}

static void keep_alive_and_upgrade_follow_connection_tokens(void **state) {
  (void)state;
  static const struct {
    const char *req;
    int keep_alive;
    const char *upgrade;
  } cases[] = {
      {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 1, NULL},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 0, NULL},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", 0, NULL},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo\r\nConnection: close\r\n\r\n", 0, NULL},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", 1, NULL},
      {"GET / HTTP/1.0\r\n\r\n", 0, NULL},
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1, NULL},
      {"GET / HTTP/1.0\r\nConnection: foo,  Keep-Alive \r\n\r\n", 1, NULL},
      {"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 1, "websocket"},
      {"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", 1,
       "websocket"},
      {"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
       1, "websocket"},
      {"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", 1, NULL},
      {"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgraded\r\n\r\n", 1, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    struct http_head h;
    assert_int_equal(parse(cases[i].req, &h), 0);
    if (h.keep_alive != cases[i].keep_alive) fail_msg("case %zu: keep_alive %d", i, h.keep_alive);
    if (cases[i].upgrade) assert_string_equal(h.upgrade, cases[i].upgrade);
    else if (h.upgrade) fail_msg("case %zu: upgrade \"%s\"", i, h.upgrade);
    http_head_free(&h);
  }
  assert_true(http_list_has(" a ,\tB\t, c", "b"));
  assert_true(http_list_has("close", "CLOSE"));
  assert_false(http_list_has("closer, xclose", "close"));
  assert_false(http_list_has("", "close"));
  assert_false(http_list_has(NULL, "close"));
}

static void query_parameters_are_decoded_in_order(void **state) {
  (void)state;
  struct http_head h;
  assert_int_equal(
      parse("GET /p?b=2&a=1&&c&d=&e=x%3Dy%26z&f=a+b%2B&g==h&%E4%BD%A0=%E5%A5%BD&b=3#frag HTTP/1.1\r\nHost: h\r\n\r\n",
            &h),
      0);
  static const char *want[][2] = {{"b", "2"},     {"a", "1"},   {"c", ""},       {"d", ""},
                                  {"e", "x=y&z"}, {"f", "a b+"}, {"g", "=h"},    {"\xe4\xbd\xa0", "\xe5\xa5\xbd"},
                                  {"b", "3"}};
  assert_int_equal(h.nargs, 9);
  for (int i = 0; i < 9; i++) {
    assert_string_equal(h.args[i].name, want[i][0]);
    assert_string_equal(h.args[i].value, want[i][1]);
  }
  assert_string_equal(http_head_arg(&h, "b"), "2"); /* the first */
  assert_null(http_head_arg(&h, "B"));
  assert_null(http_head_arg(&h, "frag"));
  assert_string_equal(h.path, "/p");
  http_head_free(&h);

  const char *bad[] = {"/?a=%", "/?a=%4", "/?a=%g1", "/?%00=1", "/?a=%00"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char req[128];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", bad[i]);
    expect_refused(req, 400);
  }
  char req[1024] = "GET /?";
  for (int i = 0; i < HTTP_MAX_ARGS; i++) sprintf(req + strlen(req), "a=%d&", i);
  strcat(req, " HTTP/1.1\r\nHost: h\r\n\r\n");
  assert_int_equal(parse(req, &h), 0);
  assert_int_equal(h.nargs, HTTP_MAX_ARGS);
  http_head_free(&h);
  strcpy(strstr(req, " HTTP/1.1"), "x HTTP/1.1\r\nHost: h\r\n\r\n");
  expect_refused(req, 400);
}

static void absolute_form_targets(void **state) {
  (void)state;
  static const struct {
    const char *target, *path, *arg_a;
  } cases[] = {
      {"http://example.com/a/b?a=1", "/a/b", "1"},
      {"https://example.com:8443/x/../y", "/y", NULL},
      {"HTTP://example.com", "/", NULL},
      {"http://example.com?a=2", "/", "2"},
      {"http://[::1]:80/v", "/v", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", cases[i].target);
    struct http_head h;
    assert_int_equal(parse(req, &h), 0);
    assert_string_equal(h.target, cases[i].target);
    assert_string_equal(h.path, cases[i].path);
    if (cases[i].arg_a) assert_string_equal(http_head_arg(&h, "a"), cases[i].arg_a);
    else assert_null(http_head_arg(&h, "a"));
    http_head_free(&h);
  }
  expect_refused("GET http:///a HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_refused("GET http://user@h/a HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_refused("GET ftp://h/a HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_refused("GET example.com:80 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  /* asterisk-form is for OPTIONS alone */
  struct http_head h;
  assert_int_equal(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &h), 0);
  assert_string_equal(h.target, "*");
  assert_string_equal(h.path, "/");
  http_head_free(&h);
  expect_refused("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_refused("OPTIONS *a HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void control_characters_are_refused(void **state) {
  (void)state;
  for (int c = 0; c < 0x20; c++) {
    if (c == '\t' || c == '\n' || c == '\r') continue;
    char req[128];
    int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: h\r\nX-A: a%cb\r\n\r\n", c ? c : '@');
    if (c == 0) *strchr(req, '@') = '\0';
    struct http_head h;
    assert_int_equal(http_head_parse(req, (size_t)n, &h), -EBADMSG);
    assert_int_equal(h.status, 400);
  }
  expect_refused("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f\r\n\r\n", 400);
  /* a bare CR, in a value, a name or the request line */
  expect_refused("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHo\rst: h\r\n\r\n", 400);
  expect_refused("GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\rHost: h\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n", 400);
  expect_refused("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_refused("GET /\xe4 HTTP/1.1\r\nHost: h\r\n\r\n", 400); /* raw non-ASCII in the target */
  /* refused as soon as seen, before the head ends */
  struct http_head h;
  assert_int_equal(parse("GET / HTTP/1.1\r\nX-A: a\x01", &h), -EBADMSG);
  assert_int_equal(parse("GET / HTTP/1.1\r\nX-A : a", &h), -EBADMSG);
  /* obs-text and tabs are fine in values */
  assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nX-A: \t\xe4\xbd\xa0 \tb\t \r\n\r\n", &h), 0);
  assert_string_equal(http_head_field(&h, "x-a"), "\xe4\xbd\xa0 \tb");
  http_head_free(&h);
}

static void bare_lf_line_ends(void **state) {
  (void)state;
  struct http_head h;
  const char *req = "\r\n\nPOST /up HTTP/1.1\nHost: h\r\nContent-Length: 3\n\nabcGET";
  assert_int_equal(parse(req, &h), 0);
  assert_string_equal(h.method, "POST");
  assert_int_equal(h.content_length, 3);
  assert_int_equal(h.head_len, strlen(req) - 6);
  assert_memory_equal(req + h.head_len, "abc", 3);
  http_head_free(&h);
  /* a lone CR at the end may still become a CRLF */
  assert_int_equal(parse("\r", &h), -EAGAIN);
  assert_int_equal(parse("GET / HTTP/1.0\r", &h), -EAGAIN);
  assert_int_equal(parse("GET / HTTP/1.0\r\n\r", &h), -EAGAIN);
  assert_int_equal(parse("GET / HTTP/1.0\r\n\n", &h), 0);
  assert_int_equal(h.head_len, 17);
  http_head_free(&h);
  assert_int_equal(parse("", &h), -EAGAIN);
  assert_int_equal(parse("\rx", &h), -EBADMSG);
}

static void the_first_of_a_pipelined_pair_is_parsed_alone(void **state) {
  (void)state;
  const char *two = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
  struct http_head h;
  assert_int_equal(parse(two, &h), 0);
  assert_string_equal(h.path, "/a");
  size_t first = h.head_len;
  http_head_free(&h);
  assert_int_equal(parse(two + first, &h), 0);
  assert_string_equal(h.path, "/b");
  assert_int_equal(first + h.head_len, strlen(two));
  http_head_free(&h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_head_arrives_in_pieces_and_parses_once_complete),
      cmocka_unit_test(paths_are_decoded_and_normalised),
      cmocka_unit_test(smuggling_ambiguities_are_refused),
      cmocka_unit_test(long_targets_get_414_before_the_line_ends),
      cmocka_unit_test(big_heads_get_431),
      cmocka_unit_test(versions_other_than_1_0_and_1_1),
      cmocka_unit_test(keep_alive_and_upgrade_follow_connection_tokens),
      cmocka_unit_test(query_parameters_are_decoded_in_order),
      cmocka_unit_test(absolute_form_targets),
      cmocka_unit_test(control_characters_are_refused),
      cmocka_unit_test(bare_lf_line_ends),
      cmocka_unit_test(the_first_of_a_pipelined_pair_is_parsed_alone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
