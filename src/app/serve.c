/*
 * The server process.
 *
 * One libuv loop, the control loop, owns the HTTP/WebSocket server and the
 * signaling. Shutdown is cooperative: listeners and connections are closed,
 * the loop runs until every handle is closed, and every allocation is
 * freed, so that LeakSanitizer can hold the server to zero leaked bytes. A
 * timer bounds that to one second; a signal during it exits at once.
 *
 * SIGTERM is how a service manager or an orchestrator stops a node, and
 * stopping a node must not drop the calls it carries: it drains first (as
 * does POST /api/drain). A draining server takes no new calls and answers
 * 503 on /healthz, while the calls in progress go on; once the last has
 * ended, or drain_timeout_s has passed, the shutdown above runs and ends
 * what is left with "server shutting down". SIGINT is a person at a
 * terminal pressing Ctrl-C, who wants the server to stop now: it shuts down
 * at once, as does a second SIGTERM during a drain, or SIGTERM with
 * drain_timeout_s = 0. A SIGTERM after a drain asked over HTTP is the
 * service manager's stop following the request: it only joins the drain.
 */
#include "app/serve.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/api.h"
#include "app/calls.h"
#include "app/signaling.h"
#include "cluster/cluster.h"
#include "core/log.h"
#include "net/http_server.h"
#include "store/store.h"

#define SHUTDOWN_GRACE_MS 900
/* Of the grace period, how long the pages' `end` messages may take to leave
 * before the connections are torn down (idle connections make it wait all of it). */
#define SHUTDOWN_DRAIN_MS 100
/* Of the grace period, what the store may spend writing the last records. */
#define STORE_FLUSH_MS 300
/* Once a drain has no call left to wait for: how long before the shutdown, so that the last
 * answers (the last call's `end`, the drain request's reply) leave before the listeners close. */
#define DRAIN_SETTLE_MS 50

/* Who started the drain: a SIGTERM during a SIGTERM's drain stops at once. */
enum drain_cause { DRAIN_NONE, DRAIN_SIGNAL, DRAIN_API };

struct serve {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm;
  uv_timer_t grace;
  uv_timer_t drain; /* polls until the calls' connections have closed */
  uint64_t drain_until;
  struct http_server *http;
  struct signaling *sig;
  struct store *store; /* NULL when records are off */
  struct api *api;
  struct cluster *cluster; /* NULL unless cluster_redis_url is set */
  int stopping;
  const struct config *cfg;
  uv_timer_t drain_end; /* a drain's end: drain_timeout_s, or DRAIN_SETTLE_MS once idle */
  enum drain_cause draining;
};

static void close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void close_walk(uv_handle_t *h, void *arg) { close_handle(h); }

static void on_grace_expired(uv_timer_t *t) {
  log_warn("serve", "shutdown took longer than %d ms; stopping the loop", SHUTDOWN_GRACE_MS);
  uv_stop(t->loop);
}

/* Stopping the HTTP server drops what connections still have queued, so the calls'
 * `end` messages get a moment to be written and their connections to close. */
static void on_drain(uv_timer_t *t) {
  struct serve *s = t->data;
  if (s->sig && signaling_connections(s->sig) > 0 && uv_now(t->loop) < s->drain_until) return;
  uv_timer_stop(t);
  if (s->http) http_server_stop(s->http);
}

static void begin_shutdown(struct serve *s) {
  s->stopping = 1;
  log_info("serve", "shutting down");
  if (s->sig) signaling_shutdown(s->sig); /* the calls' last records are queued now */
  cluster_stop(s->cluster);
  api_stop(s->api);
  store_close(s->store, STORE_FLUSH_MS);
  s->store = NULL;
  /* From now, not from when this loop turn began: ending the calls and the store's flush can
   * take longer than the drain. The first check comes after a poll, where the HTTP server
   * writes. */
  uv_update_time(&s->loop);
  s->drain_until = uv_now(&s->loop) + SHUTDOWN_DRAIN_MS;
  uv_timer_start(&s->drain, on_drain, 5, 5);
  uv_timer_start(&s->grace, on_grace_expired, SHUTDOWN_GRACE_MS, 0);
  uv_unref((uv_handle_t *)&s->grace);
}

static void stop_now(struct serve *s) {
  uv_timer_stop(&s->drain_end);
  /* Stop watching signals so the loop can end once the HTTP server has closed. */
  uv_unref((uv_handle_t *)&s->sigint);
  uv_unref((uv_handle_t *)&s->sigterm);
  begin_shutdown(s);
}

static void on_drain_end(uv_timer_t *t) {
  struct serve *s = t->data;
  int left = calls_count(signaling_calls(s->sig));
  if (left > 0)
    log_warn("serve", "draining: drain_timeout_s (%d s) reached with %d call%s in progress",
             s->cfg->drain_timeout_s, left, left == 1 ? "" : "s");
  else
    log_info("serve", "drained: no call in progress");
  stop_now(s);
}

static void on_drained_call(void *user, int left) {
  struct serve *s = user;
  log_info("serve", "draining: a call ended, %d in progress", left);
  if (left == 0) uv_timer_start(&s->drain_end, on_drain_end, DRAIN_SETTLE_MS, 0);
}

/* SIGTERM or POST /api/drain: no new calls; the shutdown comes when the calls have ended. */
static void start_drain(struct serve *s, enum drain_cause cause) {
  if (s->stopping || s->draining) return;
  struct calls *calls = signaling_calls(s->sig);
  int n = calls_count(calls), timeout_s = s->cfg->drain_timeout_s;
  if (cause == DRAIN_SIGNAL && (n == 0 || timeout_s == 0)) {
    stop_now(s); /* nothing to wait for, or waiting is turned off */
    return;
  }
  s->draining = cause;
  calls_drain(calls, on_drained_call, s);
  log_info("serve", "draining: %d call%s in progress, at most %d s", n, n == 1 ? "" : "s",
           timeout_s);
  if (n > 0 && timeout_s > 0)
    uv_timer_start(&s->drain_end, on_drain_end, (uint64_t)timeout_s * 1000, 0);
  else /* a request's answer is still to be written: shut down just after */
    uv_timer_start(&s->drain_end, on_drain_end, DRAIN_SETTLE_MS, 0);
}

static void on_drain_request(void *user) {
  struct serve *s = user;
  if (!s->draining) log_info("serve", "drain asked over HTTP");
  start_drain(s, DRAIN_API);
}

static void on_signal(uv_signal_t *h, int signum) {
  struct serve *s = h->data;
  if (s->stopping) {
    log_warn("serve", "second signal: exiting now");
    exit(1);
  }
  log_info("serve", "received %s", strsignal(signum));
  if (signum == SIGTERM && s->draining == DRAIN_API) {
    log_info("serve", "already draining; another SIGTERM, or SIGINT, stops at once");
    s->draining = DRAIN_SIGNAL;
  } else if (signum == SIGTERM && !s->draining && s->sig) {
    start_drain(s, DRAIN_SIGNAL);
  } else {
    stop_now(s);
  }
}

static int ensure_dir(const char *dir) {
  if (mkdir(dir, 0700) == 0 || errno == EEXIST) return 0;
  log_error("serve", "cannot create data_dir \"%s\": %s", dir, strerror(errno));
  return -errno;
}

static void announce(struct serve *s) {
  const char *http = http_server_url(s->http), *https = http_server_https_url(s->http);
  log_info("serve", "tingshuo %s listening on %s%s%s", TINGSHUO_VERSION, http, *https ? " and " : "",
           https);
  if (*http_server_metrics_url(s->http))
    log_info("serve", "metrics on %smetrics", http_server_metrics_url(s->http));
  /* The one line meant for a person (and for the test harness) goes to stdout. */
  printf("tingshuo: open %s in a browser%s%s\n", http, *https ? "; from other machines use " : "",
         https);
  fflush(stdout);
}

static int start(struct serve *s, const struct config *cfg) {
  char err[512];
  int rc = ensure_dir(cfg->data_dir);
  if (rc == 0 && cfg->records && (rc = store_open(&s->store, &s->loop, cfg, err, sizeof err)))
    log_error("serve", "%s", err);
  if (rc == 0 && (rc = signaling_new(&s->sig, &s->loop, cfg, s->store, err, sizeof err)))
    log_error("serve", "%s", err);
  if (rc == 0 && (rc = api_new(&s->api, cfg, s->sig, s->store, err, sizeof err)))
    log_error("serve", "%s", err);
  if (rc) return rc;
  api_on_drain(s->api, on_drain_request, s);
  struct http_handlers h = signaling_handlers(s->sig);
  api_http_handlers(s->api, &h);
  rc = http_server_start(&s->http, &s->loop, cfg, &h, err, sizeof err);
  if (rc) log_error("serve", "%s", err);
  else api_set_http_server(s->api, s->http);
  /* Joins the cluster last: other nodes may send callers here from the first tick. */
  if (rc == 0 && (rc = cluster_new(&s->cluster, &s->loop, cfg, http_server_url(s->http),
                                   http_server_https_url(s->http), err, sizeof err)))
    log_error("serve", "%s", err);
  if (rc == 0 && s->cluster) {
    calls_set_cluster(signaling_calls(s->sig), s->cluster);
    rc = cluster_start(s->cluster);
  }
  return rc;
}

static void finish(struct serve *s) {
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  close_handle((uv_handle_t *)&s->grace);
  close_handle((uv_handle_t *)&s->drain);
  close_handle((uv_handle_t *)&s->drain_end);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  http_server_free(s->http);
  signaling_free(s->sig);
  cluster_free(s->cluster);
  if (uv_loop_close(&s->loop)) {
    uv_walk(&s->loop, close_walk, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
  }
  api_free(s->api); /* last: the store's final answers went through it */
}

int serve_run(const struct config *cfg) {
  struct serve s = {0};
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&s.loop);
  uv_signal_init(&s.loop, &s.sigint);
  uv_signal_init(&s.loop, &s.sigterm);
  uv_timer_init(&s.loop, &s.grace);
  uv_timer_init(&s.loop, &s.drain);
  uv_timer_init(&s.loop, &s.drain_end);
  s.drain.data = s.drain_end.data = &s;
  s.cfg = cfg;
  s.sigint.data = s.sigterm.data = &s;
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  int rc = start(&s, cfg);
  if (rc == 0) {
    announce(&s);
    uv_run(&s.loop, UV_RUN_DEFAULT);
  } else {
    if (s.sig) signaling_shutdown(s.sig);
    cluster_stop(s.cluster);
    api_stop(s.api);
    store_close(s.store, STORE_FLUSH_MS);
    s.store = NULL;
    if (s.http) http_server_stop(s.http);
  }
  finish(&s);
  log_info("serve", "stopped");
  return rc ? 1 : 0;
}
