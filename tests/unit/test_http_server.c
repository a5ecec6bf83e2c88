/*
 * http_server: requests answered now and later, bodies of any size, files
 * with ranges, HEAD, body limits, 405 on files, and an answer that comes
 * after its client has gone (dropped, reported, nothing touched: ASan
 * watches). The server runs on a real libuv loop on this thread; a client
 * thread speaks raw HTTP/1.1 over blocking sockets, so every byte the
 * server sends is seen as sent.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "net/http_server.h"

#define BIG (1024 * 1024 + 123) /* not a multiple of the server's chunk */
#define MAX_EXCHANGES 8

struct exchange {
  char request[512];
  size_t extra_body;   /* bytes of 'x' sent after the request's headers */
  int hang_up;         /* close right after sending, without reading */
  int keep_alive;      /* read one response (by Content-Length) and send the next on this socket */
  int timed_out;       /* the server neither answered nor closed */
  int status;
  char *response;      /* headers and body as received */
  size_t len;
};

struct fixture {
  uv_loop_t loop;
  uv_async_t done;
  uv_timer_t late, stop;
  struct config cfg;
  struct http_server *srv;
  int port;
  char file[64];
  struct http_req *late_req;
  int late_rc, late_fired;
  int wait_after_ms;   /* the client waits this long before saying it is done */
  struct exchange ex[MAX_EXCHANGES];
  int nex;
};

/* ---- the application side, on the loop ---- */

static void on_late(uv_timer_t *t) {
  struct fixture *f = t->data;
  f->late_fired++;
  f->late_rc = http_reply(f->late_req, 200, "text/plain", NULL, "late", 4);
  f->late_req = NULL;
}

static void on_stop(uv_timer_t *t) {
  struct fixture *f = t->data;
  http_server_stop(f->srv);
}

static void on_request(void *user, struct http_req *req) {
  struct fixture *f = user;
  const char *path = http_req_path(req);
  if (http_req_method(req) == HTTP_OTHER) {
    http_reply(req, 405, "text/plain", "Allow: GET\r\n", "no", 2);
  } else if (strcmp(path, "/t/echo") == 0) {
    char body[256];
    size_t blen;
    const char *b = http_req_body(req, &blen);
    const char *a = http_req_query(req, "a"), *flag = http_req_query(req, "flag");
    int n = snprintf(body, sizeof body, "%s %s a=[%s] flag=[%s] none=[%s] body=%zu:%.8s peer=%s",
                     http_req_method_name(req), path, a ? a : "-", flag ? flag : "-",
                     http_req_query(req, "none") ? "?" : "-", blen, b, http_req_peer(req));
    http_reply(req, 200, "text/plain", "X-Echo: yes\r\n", body, (size_t)n);
  } else if (strcmp(path, "/t/big") == 0) {
    unsigned char *big = malloc(BIG);
    for (size_t i = 0; i < BIG; i++) big[i] = (unsigned char)(i * 7 % 251);
    http_reply_take(req, 200, "application/octet-stream", NULL, big, BIG);
  } else if (strcmp(path, "/t/late") == 0) {
    f->late_req = req;
    uv_timer_start(&f->late, on_late, 300, 0);
  } else if (strcmp(path, "/t/stop") == 0) { /* the server stops before the answer comes */
    f->late_req = req;
    uv_timer_start(&f->late, on_late, 300, 0);
    uv_timer_start(&f->stop, on_stop, 50, 0);
  } else if (strcmp(path, "/t/file") == 0) {
    if (http_reply_file(req, f->file, "application/octet-stream", NULL))
      http_reply(req, 500, "text/plain", NULL, "unreadable", 10);
  } else if (strcmp(path, "/t/missing") == 0) {
    const char *what = http_reply_file(req, "/nonexistent/file", "text/plain", NULL) == -ENOENT
                           ? "ENOENT"
                           : "other";
    http_reply(req, 404, "text/plain", NULL, what, strlen(what));
  } else {
    http_reply(req, 404, "text/plain", NULL, "nf", 2);
  }
}

/* ---- the client side, on its own thread ---- */

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Whether buf holds a whole response: headers, then Content-Length bytes. */
static int response_complete(const char *buf, size_t len) {
  const char *end = strstr(buf, "\r\n\r\n"), *cl = strstr(buf, "content-length: ");
  if (!end || !cl || cl > end) return 0;
  return (size_t)(end + 4 - buf) + (size_t)strtol(cl + 16, NULL, 10) <= len;
}

static void exchange_run_on(int fd, struct exchange *x) {
  if (write(fd, x->request, strlen(x->request)) < 0) x->status = -1;
  char filler[4096];
  memset(filler, 'x', sizeof filler);
  for (size_t sent = 0; sent < x->extra_body;) {
    size_t n = x->extra_body - sent < sizeof filler ? x->extra_body - sent : sizeof filler;
    ssize_t w = write(fd, filler, n);
    if (w <= 0) break;
    sent += (size_t)w;
  }
  if (!x->hang_up) {
    size_t cap = 4096;
    x->response = malloc(cap);
    for (;;) {
      if (x->len + 4097 > cap) x->response = realloc(x->response, cap *= 2);
      ssize_t n = read(fd, x->response + x->len, 4096);
      if (n < 0) x->timed_out = 1;
      if (n <= 0) break;
      x->len += (size_t)n;
      x->response[x->len] = '\0';
      if (x->keep_alive && response_complete(x->response, x->len)) break;
    }
    x->response[x->len] = '\0';
    if (x->len > 12 && strncmp(x->response, "HTTP/1.", 7) == 0)
      x->status = (int)strtol(x->response + 9, NULL, 10);
  }
}

static void *client_main(void *arg) {
  struct fixture *f = arg;
  int fd = -1;
  for (int i = 0; i < f->nex; i++) {
    if (fd < 0) fd = connect_to(f->port);
    exchange_run_on(fd, &f->ex[i]);
    if (!f->ex[i].keep_alive) {
      close(fd);
      fd = -1;
    }
  }
  if (fd >= 0) close(fd);
  if (f->wait_after_ms) usleep((useconds_t)f->wait_after_ms * 1000);
  uv_async_send(&f->done);
  return NULL;
}

static void on_done(uv_async_t *a) { uv_stop(a->loop); }

/* ---- fixture ---- */

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof *f);
  uv_loop_init(&f->loop);
  uv_async_init(&f->loop, &f->done, on_done);
  uv_timer_init(&f->loop, &f->late);
  uv_timer_init(&f->loop, &f->stop);
  f->late.data = f->stop.data = f;
  config_defaults(&f->cfg);
  snprintf(f->cfg.listen, sizeof f->cfg.listen, "127.0.0.1:0");
  snprintf(f->file, sizeof f->file, "/tmp/ts-http-test-XXXXXX");
  int fd = mkstemp(f->file);
  for (int i = 0; i < 1000; i++) {
    char c = (char)('a' + i % 26);
    assert_int_equal(write(fd, &c, 1), 1);
  }
  close(fd);
  struct http_handlers h = {.mounts = {"/t", NULL}, .request_user = f, .request = on_request};
  char err[256];
  assert_int_equal(http_server_start(&f->srv, &f->loop, &f->cfg, &h, err, sizeof err), 0);
  const char *port = strrchr(http_server_url(f->srv), ':');
  f->port = (int)strtol(port + 1, NULL, 10);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  http_server_stop(f->srv);
  uv_close((uv_handle_t *)&f->done, NULL);
  uv_close((uv_handle_t *)&f->late, NULL);
  uv_close((uv_handle_t *)&f->stop, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  http_server_free(f->srv);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  for (int i = 0; i < f->nex; i++) free(f->ex[i].response);
  unlink(f->file);
  free(f);
  return 0;
}

static struct exchange *add(struct fixture *f, const char *fmt, ...) {
  struct exchange *x = &f->ex[f->nex++];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(x->request, sizeof x->request, fmt, ap);
  va_end(ap);
  return x;
}

static void run_client(struct fixture *f) {
  pthread_t th;
  pthread_create(&th, NULL, client_main, f);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
}

static const char *body_of(const struct exchange *x) {
  const char *b = x->response ? strstr(x->response, "\r\n\r\n") : NULL;
  return b ? b + 4 : "";
}

static int has_header(const struct exchange *x, const char *line) {
  const char *end = x->response ? strstr(x->response, "\r\n\r\n") : NULL;
  const char *at = x->response ? strstr(x->response, line) : NULL;
  return at && at < end;
}

#define GET(path, extra) "GET " path " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" extra "\r\n"

/* ---- tests ---- */

static void range_header_parsing(void **state) {
  uint64_t a, b;
  assert_int_equal(http_parse_range("bytes=0-9", 100, &a, &b), 1);
  assert_true(a == 0 && b == 9);
  assert_int_equal(http_parse_range("bytes=90-", 100, &a, &b), 1);
  assert_true(a == 90 && b == 99);
  assert_int_equal(http_parse_range("bytes=50-500", 100, &a, &b), 1);
  assert_true(a == 50 && b == 99);
  assert_int_equal(http_parse_range("bytes=-10", 100, &a, &b), 1);
  assert_true(a == 90 && b == 99);
  assert_int_equal(http_parse_range("bytes=-1000", 100, &a, &b), 1);
  assert_true(a == 0 && b == 99);
  assert_int_equal(http_parse_range("BYTES=1-1", 100, &a, &b), 1);
  assert_int_equal(http_parse_range("bytes=100-", 100, &a, &b), -1);
  assert_int_equal(http_parse_range("bytes=-0", 100, &a, &b), -1);
  assert_int_equal(http_parse_range("bytes=0-", 0, &a, &b), -1);
  assert_int_equal(http_parse_range("bytes=99999999999999999999999-", 100, &a, &b), -1);
  /* ignored: the whole resource is sent */
  assert_int_equal(http_parse_range("bytes=5-1", 100, &a, &b), 0);
  assert_int_equal(http_parse_range("bytes=0-1,5-6", 100, &a, &b), 0);
  assert_int_equal(http_parse_range("items=0-1", 100, &a, &b), 0);
  assert_int_equal(http_parse_range("bytes=-", 100, &a, &b), 0);
  assert_int_equal(http_parse_range("bytes=1-2x", 100, &a, &b), 0);
  assert_int_equal(http_parse_range("bytes=+1-2", 100, &a, &b), 0);
  assert_int_equal(http_parse_range(NULL, 100, &a, &b), 0);
}

static void requests_carry_method_path_query_body_and_peer(void **state) {
  struct fixture *f = *state;
  add(f, GET("/t/echo?a=x%%20y+z&flag", ""));
  add(f, "HEAD /t/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  add(f, "POST /t/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 11\r\n\r\n"
         "hello world");
  add(f, "DELETE /t/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  add(f, "PATCH /t/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  run_client(f);
  assert_int_equal(f->ex[0].status, 200);
  assert_string_equal(body_of(&f->ex[0]),
                      "GET /t/echo a=[x y z] flag=[] none=[-] body=0: peer=127.0.0.1");
  assert_true(has_header(&f->ex[0], "x-echo: yes"));
  assert_int_equal(f->ex[1].status, 200);
  assert_true(has_header(&f->ex[1], "content-length: 59"));
  assert_string_equal(body_of(&f->ex[1]), ""); /* HEAD: the length, not the body */
  assert_int_equal(f->ex[2].status, 200);
  const char *post = body_of(&f->ex[2]);
  assert_non_null(strstr(post, "POST /t/echo a=[-] flag=[-] none=[-] body=11:hello "));
  assert_non_null(strstr(body_of(&f->ex[3]), "DELETE /t/echo"));
  assert_int_equal(f->ex[4].status, 405);
}

static void a_large_body_arrives_whole(void **state) {
  struct fixture *f = *state;
  add(f, GET("/t/big", ""));
  run_client(f);
  assert_int_equal(f->ex[0].status, 200);
  const unsigned char *b = (const unsigned char *)body_of(&f->ex[0]);
  size_t got = f->ex[0].len - (size_t)((const char *)b - f->ex[0].response);
  assert_int_equal(got, BIG);
  size_t bad = 0;
  for (size_t i = 0; i < BIG; i++) bad += b[i] != (unsigned char)(i * 7 % 251);
  assert_int_equal(bad, 0);
}

static void a_late_answer_reaches_a_waiting_client(void **state) {
  struct fixture *f = *state;
  add(f, GET("/t/late", ""));
  run_client(f);
  assert_int_equal(f->late_fired, 1);
  assert_int_equal(f->late_rc, 0);
  assert_int_equal(f->ex[0].status, 200);
  assert_string_equal(body_of(&f->ex[0]), "late");
}

static void a_late_answer_to_a_client_that_left_is_dropped(void **state) {
  struct fixture *f = *state;
  add(f, GET("/t/late", ""))->hang_up = 1;
  f->wait_after_ms = 800; /* the answer comes at 300 ms */
  run_client(f);
  assert_int_equal(f->late_fired, 1);
  assert_int_equal(f->late_rc, -ENOTCONN);
  /* The server is still fine. */
  f->nex = 0;
  f->wait_after_ms = 0;
  memset(f->ex, 0, sizeof f->ex);
  add(f, GET("/t/echo", ""));
  run_client(f);
  assert_int_equal(f->ex[0].status, 200);
}

static void an_answer_after_the_server_stopped_is_dropped(void **state) {
  struct fixture *f = *state;
  add(f, GET("/t/stop", ""));
  f->wait_after_ms = 500;
  run_client(f);
  assert_false(f->ex[0].timed_out); /* closed, not left hanging */
  assert_int_equal(f->ex[0].len, 0);
  assert_int_equal(f->late_fired, 1);
  assert_int_equal(f->late_rc, -ENOTCONN);
}

static void files_answer_ranges_and_head(void **state) {
  struct fixture *f = *state;
  add(f, GET("/t/file", ""));
  add(f, GET("/t/file", "Range: bytes=26-30\r\n"));
  add(f, GET("/t/file", "Range: bytes=-3\r\n"));
  add(f, GET("/t/file", "Range: bytes=1000-\r\n"));
  add(f, GET("/t/file", "Range: bytes=0-1,4-5\r\n"));
  add(f, "HEAD /t/file HTTP/1.1\r\nHost: t\r\nConnection: close\r\nRange: bytes=0-9\r\n\r\n");
  add(f, GET("/t/missing", ""));
  run_client(f);
  assert_int_equal(f->ex[0].status, 200);
  assert_true(has_header(&f->ex[0], "accept-ranges: bytes"));
  assert_int_equal(strlen(body_of(&f->ex[0])), 1000);
  assert_int_equal(f->ex[1].status, 206);
  assert_true(has_header(&f->ex[1], "content-range: bytes 26-30/1000"));
  assert_string_equal(body_of(&f->ex[1]), "abcde");
  assert_int_equal(f->ex[2].status, 206);
  assert_string_equal(body_of(&f->ex[2]), "jkl"); /* bytes 997..999 */
  assert_int_equal(f->ex[3].status, 416);
  assert_true(has_header(&f->ex[3], "content-range: bytes */1000"));
  assert_int_equal(f->ex[4].status, 200);
  assert_int_equal(strlen(body_of(&f->ex[4])), 1000);
  assert_int_equal(f->ex[5].status, 206);
  assert_true(has_header(&f->ex[5], "content-length: 10"));
  assert_string_equal(body_of(&f->ex[5]), "");
  assert_int_equal(f->ex[6].status, 404);
  assert_string_equal(body_of(&f->ex[6]), "ENOENT");
}

static void bodies_are_bounded_and_files_take_only_get(void **state) {
  struct fixture *f = *state;
  struct exchange *x = add(f, "POST /t/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                              "Content-Length: %d\r\n\r\n", HTTP_REQ_BODY_MAX + 1);
  x->extra_body = HTTP_REQ_BODY_MAX + 1;
  x = add(f, "POST /t/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             "Content-Length: %d\r\n\r\n", HTTP_REQ_BODY_MAX);
  x->extra_body = HTTP_REQ_BODY_MAX;
  add(f, "POST /t/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  add(f, "POST /t/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 12x\r\n\r\n");
  add(f, "DELETE /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  run_client(f);
  assert_int_equal(f->ex[0].status, 413);
  assert_int_equal(f->ex[1].status, 200);
  assert_non_null(strstr(body_of(&f->ex[1]), "body=16384:xxxxxxxx"));
  assert_int_equal(f->ex[2].status, 411);
  assert_int_equal(f->ex[3].status, 400);
  assert_int_equal(f->ex[4].status, 405);
  assert_true(has_header(&f->ex[4], "allow: GET, HEAD"));
}

/* Keep-alive: one connection carries request after request, late answers included. */
static void one_connection_carries_several_requests(void **state) {
  struct fixture *f = *state;
  add(f, "GET /t/echo?a=1 HTTP/1.1\r\nHost: t\r\n\r\n")->keep_alive = 1;
  add(f, "GET /t/late HTTP/1.1\r\nHost: t\r\n\r\n")->keep_alive = 1;
  add(f, "POST /t/echo?a=3 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")->keep_alive = 1;
  add(f, "GET /t/echo?a=4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  run_client(f);
  assert_non_null(strstr(body_of(&f->ex[0]), "a=[1]"));
  assert_string_equal(body_of(&f->ex[1]), "late");
  assert_non_null(strstr(body_of(&f->ex[2]), "a=[3]"));
  assert_non_null(strstr(body_of(&f->ex[2]), "body=3:abc"));
  assert_non_null(strstr(body_of(&f->ex[3]), "a=[4]"));
}

/* Pipelining is refused by closing the connection: promptly, and nothing else is hurt. */
static void a_pipelined_request_closes_its_connection(void **state) {
  struct fixture *f = *state;
  add(f, "GET /t/late HTTP/1.1\r\nHost: t\r\n\r\nGET /t/echo HTTP/1.1\r\nHost: t\r\n\r\n");
  add(f, GET("/t/echo?a=after", ""));
  f->wait_after_ms = 500; /* lets the late answer come, to a connection that is gone */
  run_client(f);
  assert_false(f->ex[0].timed_out);
  assert_null(strstr(f->ex[0].response, "late"));
  assert_int_equal(f->late_fired, 1);
  assert_int_equal(f->late_rc, -ENOTCONN);
  assert_non_null(strstr(body_of(&f->ex[1]), "a=[after]"));
}

#define WITH_SERVER(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(range_header_parsing),
      WITH_SERVER(requests_carry_method_path_query_body_and_peer),
      WITH_SERVER(a_large_body_arrives_whole),
      WITH_SERVER(a_late_answer_reaches_a_waiting_client),
      WITH_SERVER(a_late_answer_to_a_client_that_left_is_dropped),
      WITH_SERVER(an_answer_after_the_server_stopped_is_dropped),
      WITH_SERVER(files_answer_ranges_and_head),
      WITH_SERVER(bodies_are_bounded_and_files_take_only_get),
      WITH_SERVER(one_connection_carries_several_requests),
      WITH_SERVER(a_pipelined_request_closes_its_connection),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
