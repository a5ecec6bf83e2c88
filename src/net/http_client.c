/*
 * HTTP client: libcurl's multi interface on a libuv loop.
 *
 * libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when
 * it next needs a kick (CURLMOPT_TIMERFUNCTION); a uv_poll_t per socket and
 * one uv_timer_t turn those into curl_multi_socket_action calls, and after
 * each one the finished transfers are collected. Nothing blocks and no
 * thread is started per request (name resolution aside, which libcurl does
 * on its own resolver thread and caches; a warm connection needs none).
 *
 * Each transfer has one more uv_timer_t of its own, used first as the
 * first-byte deadline (libcurl has none for HTTP) and then, if the attempt
 * failed before a byte reached the caller, as the delay before the retry.
 * Handles close asynchronously, so a transfer's memory goes in its timer's
 * close callback, and the client's once its last handle has closed.
 *
 * Cancelling removes the easy handle from the multi handle at once; libcurl
 * then closes a connection whose response was not read to the end, which is
 * what tells the service to stop generating.
 *
 * A service that answers 429 (or 503) with Retry-After has asked for quiet,
 * and every call's requests share its limit: one call retrying alone would
 * not be enough if the other calls went on asking. So the client keeps a
 * hold per service and host until the time it named. A request started
 * while a hold runs never reaches the network: it waits when the rest of the
 * hold is short (at most HTTP_RETRY_AFTER_MAX_MS, what the caller would
 * wait for a retry anyway), and fails at once otherwise, so the caller hears
 * the apology now instead of after a round trip the service has refused in
 * advance.
 */
#include "net/http_client.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/prom.h"

/*
 * Metrics, per service host (the host[:port] of the URL, never the path):
 * at most MAX_METRIC_HOSTS of them, then "other", so a misconfiguration
 * cannot grow the label set without bound. Only the loop's thread touches
 * them, /metrics included, so they are plain fields (the histograms are
 * atomic anyway). Keep-warm HEAD requests open connections and are counted
 * as such, but are not requests anyone waits for: they stay out of
 * in-flight, outcomes and latency.
 */
#define MAX_METRIC_HOSTS 16

enum outcome { OUT_OK, OUT_HTTP_ERROR, OUT_TIMEOUT, OUT_ERROR, OUT_N };
static const char *const outcome_names[OUT_N] = {"ok", "http_error", "timeout", "error"};

struct host_metrics {
  char host[128];
  int in_flight;
  uint64_t cancelled, retries, connects;
  struct prom_histogram first_byte; /* request started -> first byte of a response body */
  struct prom_histogram duration[OUT_N]; /* request started -> done, by outcome */
};

struct warm {
  char *origin;  /* scheme://host[:port] */
  char *url;
  const char *service;
  uint64_t last_used_ms;
  int in_flight;
};

/*
 * A Retry-After being honoured: requests for `service` at `host` wait or
 * fail until `until_ms` (loop time). A small fixed table: a server talks to
 * a handful of services, and a full table gives up its oldest hold.
 */
#define MAX_HOLDS 16

struct hold {
  char host[128];
  const char *service; /* static, as in struct http_request */
  uint64_t until_ms;   /* 0: the slot is free */
};

struct sock {
  uv_poll_t poll;
  curl_socket_t fd;
  struct http_client *c;
  struct sock *prev, *next;
};

struct http_client {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;      /* libcurl's own timeouts */
  uv_timer_t warm_timer; /* touches idle warm connections */
  struct http_client_opts o;
  struct http_transfer *transfers;
  struct sock *socks;
  struct warm **warm;
  size_t nwarm;
  int handles; /* uv handles not yet closed */
  int closing;
  struct http_client_stats stats;
  struct host_metrics **hosts;
  size_t nhosts;
  struct hold holds[MAX_HOLDS];
};

struct http_transfer {
  struct http_client *c;
  struct http_transfer *prev, *next;
  CURL *easy;
  struct curl_slist *hdrs;
  struct http_request req;
  struct http_callbacks cb;
  struct host_metrics *hm; /* NULL when no memory was left for it */
  int metered;             /* not a keep-warm request */
  int first_byte_seen;
  uint64_t started_ns;
  uv_timer_t timer; /* first-byte deadline, then retry delay */
  int in_multi;
  int attempts;
  /* this attempt */
  int got_byte, head_done, stopped, first_byte_timeout;
  long status;
  int retry_after_ms;
  char *ebody;
  size_t ebody_len;
  /* all attempts */
  size_t delivered;
  char errbuf[CURL_ERROR_SIZE];
  char msg[512];
};

static uint64_t now_ms(const struct http_client *c) { return uv_now(c->loop); }

/* A request with a timeout of its own: connecting within it (or the client's connect
 * timeout, if shorter), and the first byte and the whole response within it. */
static int connect_ms(const struct http_transfer *t) {
  int own = t->req.timeout_ms, client = t->c->o.connect_timeout_ms;
  return own > 0 && own < client ? own : client;
}
static int first_byte_ms(const struct http_transfer *t) {
  return t->req.timeout_ms > 0 ? t->req.timeout_ms : t->c->o.first_byte_timeout_ms;
}
static int total_ms(const struct http_transfer *t) {
  return t->req.timeout_ms > 0 ? t->req.timeout_ms : t->c->o.total_timeout_ms;
}
static double seconds_since(uint64_t ns) { return (double)(uv_hrtime() - ns) / 1e9; }

/* ---- requests ---- */

void http_request_clear(struct http_request *r) {
  free(r->url);
  r->url = NULL;
  for (int i = 0; i < HTTP_MAX_HEADERS && r->headers[i]; i++) {
    free(r->headers[i]);
    r->headers[i] = NULL;
  }
  free(r->body);
  r->body = NULL;
  r->body_len = 0;
}

static char *vformat(const char *fmt, va_list ap) {
  char *s = NULL;
  return vasprintf(&s, fmt, ap) < 0 ? NULL : s;
}

int http_request_set_url(struct http_request *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = vformat(fmt, ap);
  va_end(ap);
  if (!s) return -ENOMEM;
  free(r->url);
  r->url = s;
  return 0;
}

int http_request_add_header(struct http_request *r, const char *fmt, ...) {
  int i = 0;
  while (i < HTTP_MAX_HEADERS && r->headers[i]) i++;
  if (i == HTTP_MAX_HEADERS) return -ENOSPC;
  va_list ap;
  va_start(ap, fmt);
  char *s = vformat(fmt, ap);
  va_end(ap);
  if (!s) return -ENOMEM;
  r->headers[i] = s;
  return 0;
}

const char *http_request_header(const struct http_request *r, const char *name) {
  size_t n = strlen(name);
  for (int i = 0; i < HTTP_MAX_HEADERS && r->headers[i]; i++) {
    const char *h = r->headers[i];
    if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
      h += n + 1;
      while (*h == ' ') h++;
      return h;
    }
  }
  return NULL;
}

static const char *const secret_headers[] = {"authorization", "proxy-authorization", "x-api-key",
                                             "api-key", "xi-api-key", "ocp-apim-subscription-key",
                                             NULL};

int http_redact_header(const char *line, char *out, size_t outlen) {
  if (!outlen) return 0;
  const char *colon = strchr(line, ':');
  size_t n = colon ? (size_t)(colon - line) : strlen(line);
  for (int i = 0; colon && secret_headers[i]; i++) {
    if (strlen(secret_headers[i]) == n && strncasecmp(line, secret_headers[i], n) == 0) {
      snprintf(out, outlen, "%.*s: [redacted]", (int)n, line);
      return 1;
    }
  }
  snprintf(out, outlen, "%s", line);
  return 0;
}

/* ---- the loop glue ---- */

static void handle_gone(struct http_client *c);
static void poll_closed(uv_handle_t *h);

static void check_done(struct http_client *c);

static void on_poll(uv_poll_t *h, int status, int events) {
  struct sock *s = h->data;
  struct http_client *c = s->c;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  curl_multi_socket_action(c->multi, s->fd, flags, &running);
  check_done(c);
}

static void sock_unlink(struct sock *s) {
  struct http_client *c = s->c;
  if (s->prev) s->prev->next = s->next;
  else c->socks = s->next;
  if (s->next) s->next->prev = s->prev;
  s->prev = s->next = NULL;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, poll_closed);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
  struct http_client *c = userp;
  struct sock *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      if (c->multi) curl_multi_assign(c->multi, fd, NULL);
      sock_unlink(s);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s || uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    c->handles++;
    s->fd = fd;
    s->c = c;
    s->poll.data = s;
    s->next = c->socks;
    if (c->socks) c->socks->prev = s;
    c->socks = s;
    curl_multi_assign(c->multi, fd, s);
  }
  int ev = 0;
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  uv_poll_start(&s->poll, ev, on_poll);
  return 0;
}

static void on_curl_timer(uv_timer_t *t) {
  struct http_client *c = t->data;
  int running;
  curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(c);
}

static int on_timer_change(CURLM *m, long timeout_ms, void *userp) {
  struct http_client *c = userp;
  if (c->closing) return 0;
  if (timeout_ms < 0) uv_timer_stop(&c->timer);
  else uv_timer_start(&c->timer, on_curl_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

/* ---- holds: a service's Retry-After, for every request to it ---- */

static void url_host(const char *url, char *out, size_t cap);

static struct hold *hold_find(struct http_client *c, const char *host, const char *service) {
  for (int i = 0; i < MAX_HOLDS; i++) {
    struct hold *h = &c->holds[i];
    if (h->until_ms && strcmp(h->service, service) == 0 && strcmp(h->host, host) == 0) return h;
  }
  return NULL;
}

/* A slot for a new hold: a free or lapsed one, else the one that ends first. */
static struct hold *hold_slot(struct http_client *c) {
  struct hold *best = &c->holds[0];
  for (int i = 0; i < MAX_HOLDS; i++) {
    struct hold *h = &c->holds[i];
    if (h->until_ms <= now_ms(c)) return h;
    if (h->until_ms < best->until_ms) best = h;
  }
  return best;
}

/* The service behind t asked for no requests for `ms` from now. */
static void hold_set(struct http_client *c, const struct http_transfer *t, int ms) {
  char host[128];
  url_host(t->req.url, host, sizeof host);
  uint64_t until = now_ms(c) + (uint64_t)ms;
  struct hold *h = hold_find(c, host, t->req.service);
  if (!h) {
    h = hold_slot(c);
    snprintf(h->host, sizeof h->host, "%s", host);
    h->service = t->req.service;
    h->until_ms = 0;
  }
  if (until > h->until_ms) h->until_ms = until;
  log_info("http", "%s at %s asked for no requests for %d ms", t->req.service, host, ms);
}

/* What is left of the hold on t's service, in ms; 0 when there is none. */
static uint64_t hold_left(struct http_client *c, const struct http_transfer *t) {
  char host[128];
  url_host(t->req.url, host, sizeof host);
  struct hold *h = hold_find(c, host, t->req.service);
  if (!h) return 0;
  if (h->until_ms <= now_ms(c)) {
    h->until_ms = 0; /* lapsed: the slot is free */
    return 0;
  }
  return h->until_ms - now_ms(c);
}

/* ---- transfers ---- */

static void attempt_start(struct http_transfer *t);

static size_t on_header(char *buf, size_t size, size_t n, void *user) {
  struct http_transfer *t = user;
  size_t len = size * n;
  if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) t->retry_after_ms = -1; /* a new response */
  if (len > 12 && strncasecmp(buf, "Retry-After:", 12) == 0) {
    char v[128];
    size_t vl = len - 12 < sizeof v - 1 ? len - 12 : sizeof v - 1;
    memcpy(v, buf + 12, vl);
    v[vl] = '\0';
    char *s = v, *end;
    while (isspace((unsigned char)*s)) s++;
    long secs = strtol(s, &end, 10);
    if (end != s && secs >= 0) {
      t->retry_after_ms = secs > 3600 ? 3600 * 1000 : (int)secs * 1000;
    } else {
      time_t when = curl_getdate(s, NULL);
      time_t now = time(NULL);
      if (when != -1) t->retry_after_ms = when <= now ? 0 : (when - now > 3600 ? 3600 : (int)(when - now)) * 1000;
    }
  }
  return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *user) {
  struct http_transfer *t = user;
  size_t len = size * n;
  if (len == 0) return 0; /* libcurl may call with nothing; callers need not expect it */
  if (!t->got_byte) {
    t->got_byte = 1;
    uv_timer_stop(&t->timer);
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
    if (t->metered && t->hm && !t->first_byte_seen) {
      t->first_byte_seen = 1;
      prom_histogram_observe(&t->hm->first_byte, seconds_since(t->started_ns));
    }
  }
  if (t->status < 200 || t->status > 299) {
    size_t room = HTTP_ERROR_BODY_MAX - t->ebody_len, take = len < room ? len : room;
    if (take) {
      char *p = realloc(t->ebody, t->ebody_len + take + 1);
      if (!p) return len;
      memcpy(p + t->ebody_len, buf, take);
      t->ebody = p;
      t->ebody_len += take;
      p[t->ebody_len] = '\0';
    }
    return len;
  }
  if (!t->head_done) {
    t->head_done = 1;
    const char *ct = NULL;
    curl_easy_getinfo(t->easy, CURLINFO_CONTENT_TYPE, &ct);
    if (t->cb.head && t->cb.head(t->cb.user, t->status, ct ? ct : "")) {
      t->stopped = 1;
      return 0;
    }
  }
  t->delivered += len;
  if (t->cb.data && t->cb.data(t->cb.user, buf, len)) {
    t->stopped = 1;
    return 0;
  }
  return len;
}

static void transfer_closed(uv_handle_t *h) {
  struct http_transfer *t = h->data;
  struct http_client *c = t->c;
  free(t);
  handle_gone(c);
}

/* The request is over: out of flight, and into its outcome's histogram, or
 * counted as cancelled (outcome -1). Once per request. */
static void meter_end(struct http_transfer *t, int outcome) {
  if (!t->metered || !t->hm) return;
  t->metered = 0;
  t->hm->in_flight--;
  if (outcome < 0) t->hm->cancelled++;
  else prom_histogram_observe(&t->hm->duration[outcome], seconds_since(t->started_ns));
}

/* Unlinks and frees (the memory itself goes when the timer has closed). */
static void transfer_destroy(struct http_transfer *t) {
  struct http_client *c = t->c;
  meter_end(t, -1); /* still running: cancelled, or the client is shutting down */
  if (t->in_multi) curl_multi_remove_handle(c->multi, t->easy);
  t->in_multi = 0;
  curl_easy_cleanup(t->easy);
  curl_slist_free_all(t->hdrs);
  http_request_clear(&t->req);
  free(t->ebody);
  if (t->prev) t->prev->next = t->next;
  else c->transfers = t->next;
  if (t->next) t->next->prev = t->prev;
  uv_timer_stop(&t->timer);
  uv_close((uv_handle_t *)&t->timer, transfer_closed);
}

static int is_retryable(const struct http_transfer *t, int rc) {
  if (t->req.no_retry || t->attempts >= 2 || t->delivered > 0 || t->stopped || t->c->closing) return 0;
  if (rc == -ETIMEDOUT || rc == -ECONNREFUSED || rc == -EPROTO || rc == -ECONNRESET) return 1;
  if (rc) return 0;
  long s = t->status;
  if (s == 429 || s == 503)
    return t->retry_after_ms <= HTTP_RETRY_AFTER_MAX_MS;
  return s == 408 || s == 500 || s == 502 || s == 504;
}

static int map_error(struct http_transfer *t, CURLcode code) {
  const char *svc = t->req.service;
  if (t->stopped) {
    snprintf(t->msg, sizeof t->msg, "%s: the response was not understood", svc);
    return -ECANCELED;
  }
  if (t->first_byte_timeout) {
    snprintf(t->msg, sizeof t->msg, "%s: no response within %d ms", svc,
             first_byte_ms(t));
    return -ETIMEDOUT;
  }
  switch (code) {
  case CURLE_OK:
    return 0;
  case CURLE_OPERATION_TIMEDOUT: {
    double connected = 0;
    curl_easy_getinfo(t->easy, CURLINFO_CONNECT_TIME, &connected);
    if (connected <= 0)
      snprintf(t->msg, sizeof t->msg, "%s: could not connect within %d ms", svc,
               connect_ms(t));
    else
      snprintf(t->msg, sizeof t->msg, "%s: the response took longer than %d ms", svc, total_ms(t));
    return -ETIMEDOUT;
  }
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT:
    snprintf(t->msg, sizeof t->msg, "%s: could not connect (%s)", svc,
             t->errbuf[0] ? t->errbuf : curl_easy_strerror(code));
    return -ECONNREFUSED;
  case CURLE_PARTIAL_FILE:
  case CURLE_GOT_NOTHING:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
    snprintf(t->msg, sizeof t->msg, "%s: the connection closed before the response ended", svc);
    return -EPROTO;
  default:
    snprintf(t->msg, sizeof t->msg, "%s: %s", svc, t->errbuf[0] ? t->errbuf : curl_easy_strerror(code));
    return -EIO;
  }
}

static void on_retry_timer(uv_timer_t *h) { attempt_start(h->data); }

static void finish_attempt(struct http_transfer *t, CURLcode code) {
  struct http_client *c = t->c;
  if (t->in_multi) curl_multi_remove_handle(c->multi, t->easy);
  t->in_multi = 0;
  uv_timer_stop(&t->timer);
  long conns = 0;
  curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &conns);
  c->stats.connects += (uint64_t)conns;
  if (t->hm) t->hm->connects += (uint64_t)conns;
  if (!t->got_byte || t->status == 0) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
  t->msg[0] = '\0';
  int rc = map_error(t, code);
  if (rc == 0 && (t->status == 429 || t->status == 503) && t->retry_after_ms > 0)
    hold_set(c, t, t->retry_after_ms);
  if (is_retryable(t, rc)) {
    int delay = t->retry_after_ms >= 0 && (t->status == 429 || t->status == 503) ? t->retry_after_ms
                                                                                : HTTP_RETRY_DELAY_MS;
    if (rc) log_info("http", "%s; retrying in %d ms", t->msg, delay);
    else log_info("http", "%s: HTTP %ld; retrying in %d ms", t->req.service, t->status, delay);
    c->stats.retries++;
    if (t->hm) t->hm->retries++;
    uv_timer_start(&t->timer, on_retry_timer, (uint64_t)delay, 0);
    return;
  }
  if (rc == 0 && (t->status < 200 || t->status > 299))
    snprintf(t->msg, sizeof t->msg, "%s: HTTP %ld", t->req.service, t->status);
  struct http_result r = {
      .rc = rc,
      .status = t->status,
      .message = t->msg[0] ? t->msg : NULL,
      .body = t->ebody ? t->ebody : "",
      .body_len = t->ebody_len,
      .retry_after_ms = t->retry_after_ms,
      .attempts = t->attempts,
  };
  meter_end(t, rc == -ETIMEDOUT ? OUT_TIMEOUT
               : rc                ? OUT_ERROR
               : t->status / 100 == 2 ? OUT_OK
                                      : OUT_HTTP_ERROR);
  if (t->cb.done) t->cb.done(t->cb.user, &r);
  transfer_destroy(t);
}

static void on_first_byte_timeout(uv_timer_t *h) {
  struct http_transfer *t = h->data;
  t->first_byte_timeout = 1;
  finish_attempt(t, CURLE_OPERATION_TIMEDOUT);
}

static void on_hold_timer(uv_timer_t *h);

/* The request ends without being sent: its service's hold has long to run. */
static void refuse_held(struct http_transfer *t, uint64_t left) {
  snprintf(t->msg, sizeof t->msg, "%s: rate limited; the service asked for no requests for another %d s",
           t->req.service, (int)((left + 999) / 1000));
  struct http_result r = {.rc = -EAGAIN, .message = t->msg, .body = "",
                          .retry_after_ms = (int)left, .attempts = t->attempts};
  meter_end(t, OUT_ERROR);
  if (t->cb.done) t->cb.done(t->cb.user, &r);
  transfer_destroy(t);
}

static void attempt_start(struct http_transfer *t) {
  struct http_client *c = t->c;
  uint64_t left = hold_left(c, t);
  if (left > 0) {
    /* Waits out a short hold; a long one is refused from the timer too, as
     * callbacks must not run inside http_start. */
    uv_timer_start(&t->timer, on_hold_timer, left <= HTTP_RETRY_AFTER_MAX_MS ? left : 0, 0);
    return;
  }
  t->attempts++;
  t->got_byte = t->head_done = t->stopped = t->first_byte_timeout = 0;
  t->status = 0;
  t->retry_after_ms = -1;
  free(t->ebody);
  t->ebody = NULL;
  t->ebody_len = 0;
  t->errbuf[0] = '\0';
  if (curl_multi_add_handle(c->multi, t->easy) != CURLM_OK) {
    snprintf(t->errbuf, sizeof t->errbuf, "could not start the request");
    finish_attempt(t, CURLE_FAILED_INIT);
    return;
  }
  t->in_multi = 1;
  uv_timer_start(&t->timer, on_first_byte_timeout, (uint64_t)first_byte_ms(t), 0);
}

static void on_hold_timer(uv_timer_t *h) {
  struct http_transfer *t = h->data;
  uint64_t left = hold_left(t->c, t);
  if (left > HTTP_RETRY_AFTER_MAX_MS) refuse_held(t, left);
  else attempt_start(t); /* over, or short enough to wait for (again) */
}

static void check_done(struct http_client *c) {
  CURLMsg *m;
  int left;
  while (c->multi && (m = curl_multi_info_read(c->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    struct http_transfer *t = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
    if (t) finish_attempt(t, m->data.result);
  }
}

static int setup_easy(struct http_transfer *t) {
  CURL *e = t->easy;
  for (int i = 0; i < HTTP_MAX_HEADERS && t->req.headers[i]; i++) {
    struct curl_slist *l = curl_slist_append(t->hdrs, t->req.headers[i]);
    if (!l) return -ENOMEM;
    t->hdrs = l;
  }
  /* No "Expect: 100-continue" round trip before an upload. */
  struct curl_slist *l = curl_slist_append(t->hdrs, "Expect:");
  if (!l) return -ENOMEM;
  t->hdrs = l;
  curl_easy_setopt(e, CURLOPT_URL, t->req.url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->hdrs);
  curl_easy_setopt(e, CURLOPT_PRIVATE, t);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms(t));
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)total_ms(t));
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, 300L);
  curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, 600L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_USERAGENT, "tingshuo/" TINGSHUO_VERSION);
  if (strcmp(t->req.method, "POST") == 0) {
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->req.body ? t->req.body : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->req.body_len);
  } else if (strcmp(t->req.method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (strcmp(t->req.method, "GET") != 0) {
    return -EINVAL;
  }
  return 0;
}

static void touch_warm(struct http_client *c, const char *url) {
  for (size_t i = 0; i < c->nwarm; i++) {
    size_t n = strlen(c->warm[i]->origin);
    if (strncmp(url, c->warm[i]->origin, n) == 0 && (url[n] == '/' || url[n] == '\0'))
      c->warm[i]->last_used_ms = now_ms(c);
  }
}

/* ---- metrics ---- */

/* The host[:port] of a URL, without user info; "" when it has none. */
static void url_host(const char *url, char *out, size_t cap) {
  const char *p = strstr(url, "://");
  p = p ? p + 3 : url;
  size_t n = strcspn(p, "/?#");
  const char *at = memchr(p, '@', n);
  while (at) { /* the last '@' ends the user info */
    n -= (size_t)(at + 1 - p);
    p = at + 1;
    at = memchr(p, '@', n);
  }
  snprintf(out, cap, "%.*s", (int)n, p);
}

static struct host_metrics *host_new(const char *host) {
  struct host_metrics *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  snprintf(h->host, sizeof h->host, "%s", host);
  prom_histogram_init(&h->first_byte, prom_latency_bounds, prom_latency_nbounds);
  for (int i = 0; i < OUT_N; i++)
    prom_histogram_init(&h->duration[i], prom_latency_bounds, prom_latency_nbounds);
  return h;
}

/* The metrics of the URL's host, made on first use; NULL without memory. */
static struct host_metrics *host_metrics(struct http_client *c, const char *url) {
  char host[128];
  url_host(url, host, sizeof host);
  if (c->nhosts >= MAX_METRIC_HOSTS) snprintf(host, sizeof host, "other");
  for (size_t i = 0; i < c->nhosts; i++)
    if (strcmp(c->hosts[i]->host, host) == 0) return c->hosts[i];
  struct host_metrics **list = realloc(c->hosts, (c->nhosts + 1) * sizeof *list);
  if (!list) return NULL;
  c->hosts = list;
  struct host_metrics *h = host_new(host);
  if (h) c->hosts[c->nhosts++] = h;
  return h;
}

void http_client_write_metrics(const struct http_client *c, struct prom_buf *b) {
  prom_family(b, "tingshuo_http_client_requests_in_flight", "gauge",
              "Requests to AI services that have started and not ended, by service host.");
  for (size_t i = 0; i < c->nhosts; i++)
    prom_sample(b, "tingshuo_http_client_requests_in_flight", c->hosts[i]->in_flight, "host",
                c->hosts[i]->host, NULL);
  prom_family(b, "tingshuo_http_client_request_duration_seconds", "histogram",
              "Requests to AI services from start (first attempt) to end (last attempt), by host "
              "and outcome: ok (2xx), http_error (other status), timeout, error.");
  for (size_t i = 0; i < c->nhosts; i++)
    for (int o = 0; o < OUT_N; o++)
      prom_histogram_write(b, "tingshuo_http_client_request_duration_seconds", &c->hosts[i]->duration[o],
                           "host", c->hosts[i]->host, "outcome", outcome_names[o], NULL);
  prom_family(b, "tingshuo_http_client_first_byte_seconds", "histogram",
              "Requests to AI services from start to the first byte of a response body, by host.");
  for (size_t i = 0; i < c->nhosts; i++)
    prom_histogram_write(b, "tingshuo_http_client_first_byte_seconds", &c->hosts[i]->first_byte, "host",
                         c->hosts[i]->host, NULL);
  prom_family(b, "tingshuo_http_client_requests_cancelled_total", "counter",
              "Requests to AI services abandoned before they ended (a barge-in, a hangup), by host.");
  for (size_t i = 0; i < c->nhosts; i++)
    prom_sample(b, "tingshuo_http_client_requests_cancelled_total", (double)c->hosts[i]->cancelled, "host",
                c->hosts[i]->host, NULL);
  prom_family(b, "tingshuo_http_client_retries_total", "counter",
              "Requests to AI services tried a second time, by host.");
  for (size_t i = 0; i < c->nhosts; i++)
    prom_sample(b, "tingshuo_http_client_retries_total", (double)c->hosts[i]->retries, "host",
                c->hosts[i]->host, NULL);
  prom_family(b, "tingshuo_http_client_connections_total", "counter",
              "Connections opened to AI services (keep-warm included), by host.");
  for (size_t i = 0; i < c->nhosts; i++)
    prom_sample(b, "tingshuo_http_client_connections_total", (double)c->hosts[i]->connects, "host",
                c->hosts[i]->host, NULL);
}

/* ---- starting ---- */

static int start_transfer(struct http_client *c, struct http_request *req,
                          const struct http_callbacks *cb, struct http_transfer **out, int metered) {
  struct http_transfer *t = NULL;
  int rc = -EINVAL;
  if (!c || c->closing || !req->url || !req->method || !cb) goto fail;
  rc = -ENOMEM;
  t = calloc(1, sizeof *t);
  if (!t) goto fail;
  t->req = *req;
  memset(req, 0, sizeof *req);
  if (!t->req.service) t->req.service = "HTTP service";
  t->c = c;
  t->cb = *cb;
  t->easy = curl_easy_init();
  if (!t->easy) goto fail_t;
  rc = setup_easy(t);
  if (rc) goto fail_t;
  uv_timer_init(c->loop, &t->timer);
  t->timer.data = t;
  c->handles++;
  t->next = c->transfers;
  if (c->transfers) c->transfers->prev = t;
  c->transfers = t;
  c->stats.requests++;
  t->hm = host_metrics(c, t->req.url);
  t->metered = metered;
  t->started_ns = uv_hrtime();
  if (t->metered && t->hm) t->hm->in_flight++;
  touch_warm(c, t->req.url);
  log_debug("http", "%s %s (%s)", t->req.method, t->req.url, t->req.service);
  if (out) *out = t;
  attempt_start(t);
  return 0;
fail_t:
  if (t->easy) curl_easy_cleanup(t->easy);
  curl_slist_free_all(t->hdrs);
  http_request_clear(&t->req);
  free(t);
  return rc;
fail:
  http_request_clear(req);
  return rc;
}

int http_start(struct http_client *c, struct http_request *req, const struct http_callbacks *cb,
               struct http_transfer **out) {
  return start_transfer(c, req, cb, out, 1);
}

void http_cancel(struct http_transfer *t) {
  if (t) transfer_destroy(t);
}

/* ---- keeping connections warm ---- */

static void warm_done(void *user, const struct http_result *r) {
  struct warm *w = user;
  w->in_flight = 0;
  if (r->rc == -ESHUTDOWN) return;
  if (r->rc == -EAGAIN) log_debug("http", "warming %s: %s", w->service, r->message);
  else if (r->rc) log_warn("http", "warming %s: %s", w->service, r->message ? r->message : "failed");
  else log_debug("http", "%s: connection warm (HTTP %ld)", w->service, r->status);
}

static void warm_one(struct http_client *c, struct warm *w) {
  struct http_request req = {.method = "HEAD", .service = w->service};
  req.url = strdup(w->url);
  struct http_callbacks cb = {.done = warm_done, .user = w};
  struct http_transfer *t;
  if (req.url && start_transfer(c, &req, &cb, &t, 0) == 0) w->in_flight = 1;
  w->last_used_ms = now_ms(c);
}

static void on_warm_timer(uv_timer_t *h) {
  struct http_client *c = h->data;
  for (size_t i = 0; i < c->nwarm; i++)
    if (!c->warm[i]->in_flight && now_ms(c) - c->warm[i]->last_used_ms >= (uint64_t)c->o.keep_warm_ms)
      warm_one(c, c->warm[i]);
}

static char *origin_of(const char *url) {
  const char *p = strstr(url, "://");
  if (!p) return NULL;
  p += 3;
  size_t n = strcspn(p, "/?#");
  return strndup(url, (size_t)(p - url) + n);
}

int http_client_keep_warm(struct http_client *c, const char *url, const char *service) {
  char *origin = origin_of(url);
  if (!origin) return -EINVAL;
  for (size_t i = 0; i < c->nwarm; i++) {
    if (strcmp(c->warm[i]->origin, origin) == 0) {
      free(origin);
      return 0;
    }
  }
  struct warm **list = realloc(c->warm, (c->nwarm + 1) * sizeof *list);
  struct warm *w = calloc(1, sizeof *w);
  if (list) c->warm = list;
  if (!list || !w || !(w->url = strdup(url))) {
    free(w);
    free(origin);
    return -ENOMEM;
  }
  w->origin = origin;
  w->service = service;
  c->warm[c->nwarm++] = w;
  warm_one(c, w);
  if (!uv_is_active((uv_handle_t *)&c->warm_timer)) {
    uint64_t every = (uint64_t)c->o.keep_warm_ms / 2;
    uv_timer_start(&c->warm_timer, on_warm_timer, every, every);
  }
  return 0;
}

/* ---- the client ---- */

void http_client_opts_from_config(struct http_client_opts *o, const struct config *cfg) {
  *o = (struct http_client_opts){
      .connect_timeout_ms = cfg->http_connect_timeout_ms,
      .first_byte_timeout_ms = cfg->http_first_byte_timeout_ms,
      .total_timeout_ms = cfg->http_total_timeout_ms,
  };
}

int http_client_new(struct http_client **out, uv_loop_t *loop, const struct http_client_opts *o) {
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return -EIO;
  struct http_client *c = calloc(1, sizeof *c);
  if (!c) {
    curl_global_cleanup();
    return -ENOMEM;
  }
  c->loop = loop;
  c->o = *o;
  if (c->o.connect_timeout_ms <= 0) c->o.connect_timeout_ms = 3000;
  if (c->o.first_byte_timeout_ms <= 0) c->o.first_byte_timeout_ms = 10000;
  if (c->o.total_timeout_ms <= 0) c->o.total_timeout_ms = 60000;
  if (c->o.max_connections <= 0) c->o.max_connections = 16;
  if (c->o.keep_warm_ms <= 0) c->o.keep_warm_ms = 25000;
  c->multi = curl_multi_init();
  if (!c->multi) {
    free(c);
    curl_global_cleanup();
    return -ENOMEM;
  }
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)c->o.max_connections);
  uv_timer_init(loop, &c->timer);
  uv_timer_init(loop, &c->warm_timer);
  c->timer.data = c->warm_timer.data = c;
  c->handles = 2;
  *out = c;
  return 0;
}

/* Every uv handle the client made has closed: the memory can go. */
static void handle_gone(struct http_client *c) {
  if (--c->handles > 0 || !c->closing) return;
  for (size_t i = 0; i < c->nwarm; i++) {
    free(c->warm[i]->origin);
    free(c->warm[i]->url);
    free(c->warm[i]);
  }
  free(c->warm);
  for (size_t i = 0; i < c->nhosts; i++) free(c->hosts[i]);
  free(c->hosts);
  free(c);
  curl_global_cleanup();
}

static void poll_closed(uv_handle_t *h) {
  struct sock *s = h->data;
  struct http_client *c = s->c;
  free(s);
  handle_gone(c);
}

static void timer_closed(uv_handle_t *h) { handle_gone(h->data); }

void http_client_free(struct http_client *c) {
  if (!c || c->closing) return;
  c->closing = 1;
  while (c->transfers) {
    struct http_transfer *t = c->transfers;
    snprintf(t->msg, sizeof t->msg, "%s: the server is shutting down", t->req.service);
    struct http_result r = {.rc = -ESHUTDOWN, .message = t->msg, .body = "", .retry_after_ms = -1,
                            .attempts = t->attempts};
    if (t->cb.done) t->cb.done(t->cb.user, &r);
    transfer_destroy(t);
  }
  curl_multi_cleanup(c->multi); /* closes cached connections, removing their sockets */
  c->multi = NULL;
  while (c->socks) sock_unlink(c->socks);
  uv_timer_stop(&c->timer);
  uv_timer_stop(&c->warm_timer);
  uv_close((uv_handle_t *)&c->timer, timer_closed);
  uv_close((uv_handle_t *)&c->warm_timer, timer_closed);
}

void http_client_stats(const struct http_client *c, struct http_client_stats *out) { *out = c->stats; }

uv_loop_t *http_client_loop(const struct http_client *c) { return c->loop; }

const char *http_transfer_header(struct http_transfer *t, const char *name) {
  struct curl_header *h = NULL;
  if (!t || !t->easy || curl_easy_header(t->easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK) return NULL;
  return h->value;
}
