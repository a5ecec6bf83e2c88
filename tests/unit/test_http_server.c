/*
 * http_server: requests answered now and later, bodies of any size, files
 * with ranges, HEAD, body limits, 405 on files, and an answer that comes
 * after its client has gone (dropped, reported, nothing touched: ASan
 * watches); pipelined requests, answered in order; files from web_root and
 * nothing outside it; the limits a stranger meets: request line
 * and head sizes, the header deadline, many half-open connections, and the
 * checks on a WebSocket upgrade (path, version, Origin, how many). The
 * server runs on a real libuv loop on this thread; a client thread speaks
 * raw HTTP/1.1 over blocking sockets, so every byte the server sends is
 * seen as sent.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/prom.h"
#include "net/http_server.h"

#define BIG (1024 * 1024 + 123) /* not a multiple of the server's chunk */
#define MAX_EXCHANGES 12

struct exchange {
  char request[HTTP_HEAD_MAX + 4096];
  size_t extra_body;   /* bytes of 'x' sent after the request's headers */
  int hang_up;         /* close right after sending, without reading */
  int keep_alive;      /* read one response (by Content-Length) and send the next on this socket */
  int upgrade;         /* read the response's head only; the connection stays open */
  int keep_open;       /* leave the socket open until the client is done; next on a new one */
  int pause_ms;        /* wait this long before reading the answer */
  int64_t answer_ms;   /* from the request sent to the answer (or close) */
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
  int half_open;       /* connections the client opens first and leaves unfinished */
  int wait_before_ms;  /* the client waits this long before its first connection */
  int ws_opened;
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

static void on_ws_open(void *user, struct ws_conn *conn) {
  struct fixture *f = user;
  f->ws_opened++;
  (void)conn;
}

static void on_request(void *user, struct http_req *req) {
  struct fixture *f = user;
  const char *path = http_req_path(req);
  if (http_req_method(req) == HTTP_OTHER) {
    http_reply(req, 405, "text/plain", "Allow: GET\r\n", "no", 2);
  } else if (strcmp(path, "/t/echo") == 0) {
    char body[2048];
    size_t blen;
    const char *b = http_req_body(req, &blen);
    const char *a = http_req_query(req, "a"), *flag = http_req_query(req, "flag");
    snprintf(body, sizeof body, "%s %s a=[%s] flag=[%s] none=[%s] body=%zu:%.8s peer=%s",
                     http_req_method_name(req), path, a ? a : "-", flag ? flag : "-",
                     http_req_query(req, "none") ? "?" : "-", blen, b, http_req_peer(req));
    http_reply(req, 200, "text/plain", "X-Echo: yes\r\n", body, strlen(body));
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

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void exchange_run_on(int fd, struct exchange *x) {
  int64_t t0 = mono_ms();
  if (write(fd, x->request, strlen(x->request)) < 0) x->status = -1;
  if (x->pause_ms) usleep((useconds_t)x->pause_ms * 1000);
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
      if (x->upgrade && strstr(x->response, "\r\n\r\n")) break;
    }
    x->answer_ms = mono_ms() - t0;
    x->response[x->len] = '\0';
    if (x->len > 12 && strncmp(x->response, "HTTP/1.", 7) == 0)
      x->status = (int)strtol(x->response + 9, NULL, 10);
  }
}

static void *client_main(void *arg) {
  struct fixture *f = arg;
  int fd = -1;
  int kept[MAX_EXCHANGES], nkept = 0;
  if (f->wait_before_ms) usleep((useconds_t)f->wait_before_ms * 1000);
  int *idle = f->half_open ? calloc((size_t)f->half_open, sizeof *idle) : NULL;
  for (int i = 0; i < f->half_open; i++) {
    idle[i] = connect_to(f->port);
    static const char part[] = "GET / HTTP/1.1\r\nHost: t\r\n";
    if (idle[i] >= 0 && write(idle[i], part, sizeof part - 1) < 0) close(idle[i]);
  }
  for (int i = 0; i < f->nex; i++) {
    if (fd < 0) fd = connect_to(f->port);
    exchange_run_on(fd, &f->ex[i]);
    if (f->ex[i].keep_open) {
      kept[nkept++] = fd;
      fd = -1;
    } else if (!f->ex[i].keep_alive) {
      close(fd);
      fd = -1;
    }
  }
  if (fd >= 0) close(fd);
  for (int i = 0; i < f->half_open; i++)
    if (idle[i] >= 0) close(idle[i]);
  for (int i = 0; i < nkept; i++) close(kept[i]);
  free(idle);
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
  *state = f;
  return 0;
}

/* Tests that change the configuration start the server themselves. */
static void start_server(struct fixture *f) {
  struct http_handlers h = {.user = f, .ws_open = on_ws_open, .mounts = {"/t", NULL},
                            .request_user = f, .request = on_request};
  char err[256];
  assert_int_equal(http_server_start(&f->srv, &f->loop, &f->cfg, &h, err, sizeof err), 0);
  const char *port = strrchr(http_server_url(f->srv), ':');
  f->port = (int)strtol(port + 1, NULL, 10);
}

static int setup_started(void **state) {
  setup(state);
  start_server(*state);
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  if (f->srv) http_server_stop(f->srv);
  uv_close((uv_handle_t *)&f->done, NULL);
  uv_close((uv_handle_t *)&f->late, NULL);
  uv_close((uv_handle_t *)&f->stop, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  if (f->srv) http_server_free(f->srv);
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

static void put_file(const char *dir, const char *name, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(text, fp);
  fclose(fp);
}

/*
 * Files from web_root: the index for a directory, the type by extension,
 * HEAD; nothing above web_root however the path is spelled, and no file
 * whose name starts with a dot.
 */
static void web_root_files_are_served_and_nothing_outside_it(void **state) {
  struct fixture *f = *state;
  char top[] = "/tmp/ts-web-XXXXXX", root[600];
  assert_non_null(mkdtemp(top));
  snprintf(root, sizeof root, "%s/www", top);
  assert_int_equal(mkdir(root, 0700), 0);
  put_file(top, "outside.txt", "secret outside");
  put_file(root, "index.html", "<p>hi</p>");
  put_file(root, "app.js", "let a = 1;");
  put_file(root, ".env", "KEY=1");
  snprintf(f->cfg.web_root, sizeof f->cfg.web_root, "%s/", root);
  start_server(f);
  add(f, GET("/", ""));
  add(f, GET("/app.js", ""));
  add(f, "HEAD /app.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  add(f, GET("/../outside.txt", ""));
  add(f, GET("/%%2e%%2e/outside.txt", ""));
  add(f, GET("/app.js/..%%2f..%%2f../outside.txt", ""));
  add(f, GET("/.env", ""));
  add(f, GET("/nothing.html", ""));
  run_client(f);
  assert_int_equal(f->ex[0].status, 200);
  assert_true(has_header(&f->ex[0], "content-type: text/html"));
  assert_string_equal(body_of(&f->ex[0]), "<p>hi</p>");
  assert_int_equal(f->ex[1].status, 200);
  assert_true(has_header(&f->ex[1], "content-type: text/javascript"));
  assert_string_equal(body_of(&f->ex[1]), "let a = 1;");
  assert_int_equal(f->ex[2].status, 200);
  assert_true(has_header(&f->ex[2], "content-length: 10"));
  assert_string_equal(body_of(&f->ex[2]), "");
  for (int i = 3; i < 8; i++) {
    assert_int_equal(f->ex[i].status, 404);
    assert_null(strstr(f->ex[i].response, "secret"));
    assert_null(strstr(f->ex[i].response, "KEY="));
  }
  char path[700];
  const char *names[] = {"www/index.html", "www/app.js", "www/.env", "outside.txt", "www", ""};
  for (int i = 0; names[i][0]; i++) {
    snprintf(path, sizeof path, "%s/%s", top, names[i]);
    assert_int_equal(i == 4 ? rmdir(path) : unlink(path), 0);
  }
  assert_int_equal(rmdir(top), 0);
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

static int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; p && (p = strstr(p, needle)); p++) n++;
  return n;
}

/*
 * Pipelining (RFC 9112 section 9.3.2): requests sent back to back are each
 * answered, whole and once, in the order they came, even when the first
 * answer comes late; the last asks for the close. Nothing else is hurt.
 */
static void pipelined_requests_are_answered_in_order(void **state) {
  struct fixture *f = *state;
  add(f, "GET /t/late HTTP/1.1\r\nHost: t\r\n\r\n"
         "GET /t/echo?a=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  add(f, "GET /t/echo?a=1 HTTP/1.1\r\nHost: t\r\n\r\n"
         "GET /t/echo?a=2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  add(f, GET("/t/echo?a=after", ""));
  run_client(f);
  for (int i = 0; i < 2; i++) {
    assert_false(f->ex[i].timed_out); /* closed after the second answer */
    assert_int_equal(count_of(f->ex[i].response, "HTTP/1.1 200 "), 2);
    assert_int_equal(count_of(f->ex[i].response, "content-length"), 2);
    assert_int_equal(count_of(f->ex[i].response, "connection: close"), 1);
  }
  const char *late = strstr(f->ex[0].response, "\r\n\r\nlate");
  const char *echo0 = strstr(f->ex[0].response, "a=[0]");
  assert_non_null(late);
  assert_non_null(echo0);
  assert_true(late < echo0);
  assert_int_equal(f->late_fired, 1);
  assert_int_equal(f->late_rc, 0);
  const char *one = strstr(f->ex[1].response, "a=[1]"), *two = strstr(f->ex[1].response, "a=[2]");
  assert_true(one && two && one < two);
  assert_non_null(strstr(body_of(&f->ex[2]), "a=[after]"));
}

static void long_request_lines_get_414_and_huge_heads_431(void **state) {
  struct fixture *f = *state;
  char path[HTTP_URI_MAX + 100];
  memset(path, 'a', sizeof path - 1);
  path[sizeof path - 1] = '\0';
  add(f, "GET /t/echo?%s HTTP/1.1\r\nHost: t\r\n\r\n", path);
  char big[HTTP_HEAD_MAX + 100];
  memset(big, 'b', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  add(f, "GET /t/echo HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n", big);
  path[1000] = '\0'; /* long, but within the limit */
  add(f, "GET /t/echo?a=%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
  run_client(f);
  assert_int_equal(f->ex[0].status, 414);
  assert_true(has_header(&f->ex[0], "connection: close"));
  assert_int_equal(f->ex[1].status, 431);
  assert_int_equal(f->ex[2].status, 200);
  struct prom_buf b;
  prom_buf_init(&b);
  http_server_write_metrics(f->srv, &b);
  assert_non_null(strstr(b.data, "tingshuo_http_refused_total{reason=\"uri_too_long\"} 1"));
  assert_non_null(strstr(b.data, "tingshuo_http_refused_total{reason=\"headers_too_large\"} 1"));
  prom_buf_free(&b);
}

/* A head that is not finished within http_header_timeout_ms is answered 408 and closed. */
static void a_slow_head_is_cut_off_at_the_deadline(void **state) {
  struct fixture *f = *state;
  f->cfg.http_header_timeout_ms = 1000;
  start_server(f);
  struct exchange *x = add(f, "GET /t/echo HTTP/1.1\r\nHost: t\r\n");
  run_client(f);
  assert_int_equal(x->status, 408);
  assert_true(x->answer_ms >= 900 && x->answer_ms < 2500);
}

/* Far more half-open connections than a pool of 64 header buffers would hold: others get in. */
static void half_open_connections_do_not_lock_others_out(void **state) {
  struct fixture *f = *state;
  f->half_open = 300;
  struct exchange *x = add(f, GET("/t/echo?a=still", ""));
  run_client(f);
  assert_int_equal(x->status, 200);
  assert_true(x->answer_ms < 1000);
}

/* With limit_loopback on, one address gets HTTP_CONNS_PER_IP connections at most. */
static void connections_per_address_are_limited(void **state) {
  struct fixture *f = *state;
  f->cfg.limit_loopback = 1;
  start_server(f);
  f->half_open = 40;
  add(f, GET("/t/echo", ""));
  run_client(f);
  assert_int_not_equal(f->ex[0].status, 200); /* closed at accept: this address has 32 */
  struct prom_buf b;
  prom_buf_init(&b);
  http_server_write_metrics(f->srv, &b);
  assert_null(strstr(b.data, "tingshuo_http_refused_total{reason=\"per_ip\"} 0"));
  prom_buf_free(&b);
  f->half_open = 0; /* they are closed now: the address is welcome again */
  for (int i = 0; i < f->nex; i++) free(f->ex[i].response);
  f->nex = 0;
  memset(f->ex, 0, sizeof f->ex);
  add(f, GET("/t/echo", ""));
  f->wait_before_ms = 200; /* the server sees them close */
  run_client(f);
  assert_int_equal(f->ex[0].status, 200);
}

#define UPGRADE(origin_host, extra)                                                       \
  "GET /ws HTTP/1.1\r\nHost: " origin_host "\r\nUpgrade: websocket\r\n"                  \
  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" extra "\r\n"

static struct exchange *upgrade(struct fixture *f, const char *req) {
  struct exchange *x = add(f, "%s", req);
  x->upgrade = 1;
  return x;
}

static void websocket_upgrades_are_checked(void **state) {
  struct fixture *f = *state;
  snprintf(f->cfg.allowed_origins, sizeof f->cfg.allowed_origins,
           "https://shop.example, http://partner.example:8080");
  start_server(f);
  char host[64];
  snprintf(host, sizeof host, "127.0.0.1:%d", f->port);
#define V13 "Sec-WebSocket-Version: 13\r\n"
  struct exchange *ok_no_origin = upgrade(f, UPGRADE("t", V13));
  struct exchange *v99 = upgrade(f, UPGRADE("t", "Sec-WebSocket-Version: 99\r\n"));
  struct exchange *path = add(f, "GET /elsewhere HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                                 "Connection: Upgrade\r\nSec-WebSocket-Key: "
                                 "dGhlIHNhbXBsZSBub25jZQ==\r\n" V13 "\r\n");
  path->upgrade = 1;
  struct exchange *evil = upgrade(f, UPGRADE("t", V13 "Origin: https://evil.example\r\n"));
  struct exchange *local = upgrade(f, UPGRADE("t", V13 "Origin: http://localhost:5173\r\n"));
  struct exchange *listed = upgrade(f, UPGRADE("t", V13 "Origin: https://shop.example\r\n"));
  struct exchange *port = upgrade(f, UPGRADE("t", V13 "Origin: http://partner.example:9090\r\n"));
  /* DNS rebinding: the page's name now points at us; its Host matches its Origin. */
  struct exchange *rebound =
      upgrade(f, UPGRADE("evil.example:8080", V13 "Origin: http://evil.example:8080\r\n"));
  struct exchange *own = add(f, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Key: "
                                "dGhlIHNhbXBsZSBub25jZQ==\r\n" V13 "Origin: http://%s\r\n\r\n",
                             host, host);
  own->upgrade = 1;
  struct exchange *null = upgrade(f, UPGRADE("t", V13 "Origin: null\r\n"));
  run_client(f);
  assert_int_equal(ok_no_origin->status, 101);
  assert_int_equal(v99->status, 426);
  assert_true(has_header(v99, "sec-websocket-version: 13"));
  assert_int_equal(path->status, 404);
  assert_int_equal(evil->status, 403);
  assert_non_null(strstr(body_of(evil), "origin"));
  assert_int_equal(local->status, 101);
  assert_int_equal(listed->status, 101);
  assert_int_equal(port->status, 403);
  assert_int_equal(rebound->status, 403);
  assert_int_equal(own->status, 101);
  assert_int_equal(null->status, 403);
  assert_int_equal(f->ws_opened, 4);
  struct prom_buf b;
  prom_buf_init(&b);
  http_server_write_metrics(f->srv, &b);
  assert_non_null(strstr(b.data, "tingshuo_ws_refused_total{reason=\"origin\"} 4"));
  assert_non_null(strstr(b.data, "tingshuo_ws_refused_total{reason=\"version\"} 1"));
  prom_buf_free(&b);
}

/* WebSockets kept open (keep_open) while the next is tried. */
static void websocket_limits_refuse_with_503_overall_and_429_per_address(void **state) {
  struct fixture *f = *state;
  f->cfg.max_ws_connections = 2;
  f->cfg.max_ws_per_ip = 1;
  start_server(f);
  /* Loopback is exempt from the per-address limit, not from the overall one. */
  struct exchange *a = upgrade(f, UPGRADE("t", V13)), *b = upgrade(f, UPGRADE("t", V13)),
                  *c = upgrade(f, UPGRADE("t", V13));
  a->keep_open = b->keep_open = 1;
  run_client(f);
  assert_int_equal(a->status, 101);
  assert_int_equal(b->status, 101);
  assert_int_equal(c->status, 503);
  assert_true(has_header(c, "retry-after: "));
}

static void websocket_limits_per_address_apply_to_loopback_on_request(void **state) {
  struct fixture *f = *state;
  f->cfg.max_ws_per_ip = 1;
  f->cfg.limit_loopback = 1;
  start_server(f);
  struct exchange *a = upgrade(f, UPGRADE("t", V13)), *b = upgrade(f, UPGRADE("t", V13));
  a->keep_open = 1;
  add(f, GET("/t/echo", "")); /* plain HTTP from the same address still works */
  run_client(f);
  assert_int_equal(a->status, 101);
  assert_int_equal(b->status, 429);
  assert_non_null(strstr(body_of(b), "too many connections from your address"));
  assert_int_equal(f->ex[2].status, 200);
  struct prom_buf m;
  prom_buf_init(&m);
  http_server_write_metrics(f->srv, &m);
  assert_non_null(strstr(m.data, "tingshuo_ws_refused_total{reason=\"per_ip\"} 1"));
  prom_buf_free(&m);
}

/* The client of the test below: it holds the process's last free descriptor. */
struct emfile_client {
  struct fixture *f;
  int *fill;
  int nfill;
  int status;
};

static void *emfile_client_main(void *arg) {
  struct emfile_client *e = arg;
  int fd = connect_to(e->f->port);
  static const char req[] = GET("/t/echo?a=emfile", "");
  if (fd >= 0 && write(fd, req, sizeof req - 1) < 0) e->status = -1;
  usleep(300 * 1000); /* the server tries to accept meanwhile, and cannot */
  for (int i = 0; i < 64 && e->nfill; i++) close(e->fill[--e->nfill]);
  char buf[512] = "";
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (n > 12) e->status = (int)strtol(buf + 9, NULL, 10);
  if (fd >= 0) close(fd);
  uv_async_send(&e->f->done);
  return NULL;
}

static double metric(struct http_server *srv, const char *line_start) {
  struct prom_buf b;
  prom_buf_init(&b);
  http_server_write_metrics(srv, &b);
  const char *at = strstr(b.data, line_start);
  double v = at ? strtod(at + strlen(line_start), NULL) : -1;
  prom_buf_free(&b);
  return v;
}

/*
 * Out of file descriptors: accept() fails, and the server pauses accepting
 * (50 ms, then twice as long each time in a row) instead of retrying at
 * once, forever. When descriptors are free again, the waiting client is
 * served.
 */
static void out_of_descriptors_the_server_pauses_then_serves(void **state) {
  struct fixture *f = *state;
  struct emfile_client e = {.f = f};
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  e.fill = malloc(sizeof *e.fill * (size_t)rl.rlim_cur);
  int devnull = open("/dev/null", O_RDONLY);
  for (int fd; (fd = dup(devnull)) >= 0;) e.fill[e.nfill++] = fd;
  assert_int_equal(errno, EMFILE);
  close(e.fill[--e.nfill]); /* one for the client's socket */
  pthread_t th;
  pthread_create(&th, NULL, emfile_client_main, &e);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  while (e.nfill) close(e.fill[--e.nfill]);
  free(e.fill);
  close(devnull);
  assert_int_equal(e.status, 200);
  double pauses = metric(f->srv, "\ntingshuo_http_accept_pauses_total ");
  assert_true(pauses >= 1 && pauses <= 6); /* not thousands */
  assert_true(metric(f->srv, "\ntingshuo_http_refused_total{reason=\"accept_error\"} ") >= 1);
}

#define WITH_SERVER(t) cmocka_unit_test_setup_teardown(t, setup_started, teardown)
#define CONFIGURED(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

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
      WITH_SERVER(pipelined_requests_are_answered_in_order),
      CONFIGURED(web_root_files_are_served_and_nothing_outside_it),
      WITH_SERVER(long_request_lines_get_414_and_huge_heads_431),
      CONFIGURED(a_slow_head_is_cut_off_at_the_deadline),
      WITH_SERVER(half_open_connections_do_not_lock_others_out),
      CONFIGURED(connections_per_address_are_limited),
      CONFIGURED(websocket_upgrades_are_checked),
      CONFIGURED(websocket_limits_refuse_with_503_overall_and_429_per_address),
      CONFIGURED(websocket_limits_per_address_apply_to_loopback_on_request),
      WITH_SERVER(out_of_descriptors_the_server_pauses_then_serves),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
