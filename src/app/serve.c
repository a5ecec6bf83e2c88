/*
 * The server process.
 *
 * One libuv loop, the control loop, owns the HTTP/WebSocket server and the
 * signaling. Shutdown on SIGINT or SIGTERM is cooperative: listeners and
 * connections are closed, the loop runs until every handle is closed, and
 * every allocation is freed, so that LeakSanitizer can hold the server to
 * zero leaked bytes. A timer bounds that to one second; a second signal
 * exits at once.
 */
#include "app/serve.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/api.h"
#include "app/signaling.h"
#include "core/log.h"
#include "net/http_server.h"
#include "store/store.h"

#define SHUTDOWN_GRACE_MS 900
/* Of the grace period, how long the pages' `end` messages may take to leave
 * before the connections are torn down (idle connections make it wait all of it). */
#define SHUTDOWN_DRAIN_MS 100
/* Of the grace period, what the store may spend writing the last records. */
#define STORE_FLUSH_MS 300

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
  int stopping;
};

static void close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void close_walk(uv_handle_t *h, void *arg) { close_handle(h); }

static void on_grace_expired(uv_timer_t *t) {
  log_warn("serve", "shutdown took longer than %d ms; stopping the loop", SHUTDOWN_GRACE_MS);
  uv_stop(t->loop);
}

/* Tearing lws down drops what connections still have queued, so the calls'
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
  api_stop(s->api);
  store_close(s->store, STORE_FLUSH_MS);
  s->store = NULL;
  /* From now, not from when this loop turn began: ending the calls and the store's flush can
   * take longer than the drain. The first check comes after a poll, where lws writes. */
  uv_update_time(&s->loop);
  s->drain_until = uv_now(&s->loop) + SHUTDOWN_DRAIN_MS;
  uv_timer_start(&s->drain, on_drain, 5, 5);
  uv_timer_start(&s->grace, on_grace_expired, SHUTDOWN_GRACE_MS, 0);
  uv_unref((uv_handle_t *)&s->grace);
}

static void on_signal(uv_signal_t *h, int signum) {
  struct serve *s = h->data;
  if (s->stopping) {
    log_warn("serve", "second signal: exiting now");
    exit(1);
  }
  log_info("serve", "received %s", strsignal(signum));
  /* Stop watching signals so the loop can end once lws has closed. */
  uv_unref((uv_handle_t *)&s->sigint);
  uv_unref((uv_handle_t *)&s->sigterm);
  begin_shutdown(s);
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
  struct http_handlers h = signaling_handlers(s->sig);
  api_http_handlers(s->api, &h);
  rc = http_server_start(&s->http, &s->loop, cfg, &h, err, sizeof err);
  if (rc) log_error("serve", "%s", err);
  else api_set_http_server(s->api, s->http);
  return rc;
}

static void finish(struct serve *s) {
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  close_handle((uv_handle_t *)&s->grace);
  close_handle((uv_handle_t *)&s->drain);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  http_server_free(s->http);
  signaling_free(s->sig);
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
  s.drain.data = &s;
  s.sigint.data = s.sigterm.data = &s;
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  int rc = start(&s, cfg);
  if (rc == 0) {
    announce(&s);
    uv_run(&s.loop, UV_RUN_DEFAULT);
  } else {
    if (s.sig) signaling_shutdown(s.sig);
    api_stop(s.api);
    store_close(s.store, STORE_FLUSH_MS);
    s.store = NULL;
    if (s.http) http_server_stop(s.http);
  }
  finish(&s);
  log_info("serve", "stopped");
  return rc ? 1 : 0;
}
