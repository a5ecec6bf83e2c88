/*
 * The client's loop.
 *
 * The tick is a one-shot timer re-armed for the next multiple of 20 ms
 * after the first one, so lateness never accumulates into drift; when the
 * loop was held up past several ticks, they all run at once, as an RTP
 * sender catching up would.
 */
#include "client/cloop.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "rtc/dtls.h"
#include "rtc/srtpctx.h"

uint64_t cloop_now(struct cloop *l) {
  uv_update_time(&l->loop);
  return uv_now(&l->loop);
}

static void on_tick(uv_timer_t *timer) {
  struct cloop *l = timer->data;
  uint64_t now = cloop_now(l);
  for (int n = 0; now >= l->next_ms && n < 50 && !l->stopping; n++) {
    if (l->on_tick) l->on_tick(l->user, l->next_ms);
    l->next_ms += CLOOP_TICK_MS;
  }
  if (now >= l->next_ms) l->next_ms = now + CLOOP_TICK_MS; /* hopelessly behind: start over */
  uint64_t t = cloop_now(l);
  if (!l->stopping) uv_timer_start(&l->tick, on_tick, l->next_ms > t ? l->next_ms - t : 0, 0);
}

static void on_signal(uv_signal_t *s, int signum) {
  struct cloop *l = s->data;
  if (l->on_signal) l->on_signal(l->user, signum);
}

int cloop_init(struct cloop *l, int insecure, char *err, size_t errlen) {
  memset(l, 0, sizeof *l);
  if (uv_loop_init(&l->loop)) {
    snprintf(err, errlen, "cannot start an event loop");
    return -EIO;
  }
  int rc = srtpctx_global_init();
  if (rc == 0) rc = dtls_cert_new(&l->cert);
  if (rc == 0) rc = dtls_ctx_new(&l->dtls, l->cert, DTLS_ROLE_CLIENT);
  if (rc) snprintf(err, errlen, "cannot set up DTLS/SRTP");
  if (rc == 0) rc = wsc_ctx_new(&l->ws, &l->loop, insecure, err, errlen);
  if (rc) {
    cloop_free(l);
    return rc;
  }
  uv_timer_init(&l->loop, &l->tick);
  uv_signal_init(&l->loop, &l->sigint);
  uv_signal_init(&l->loop, &l->sigterm);
  l->tick.data = l->sigint.data = l->sigterm.data = l;
  uv_signal_start(&l->sigint, on_signal, SIGINT);
  uv_signal_start(&l->sigterm, on_signal, SIGTERM);
  l->next_ms = cloop_now(l) + CLOOP_TICK_MS;
  uv_timer_start(&l->tick, on_tick, CLOOP_TICK_MS, 0);
  return 0;
}

void cloop_run(struct cloop *l) { uv_run(&l->loop, UV_RUN_DEFAULT); }

void cloop_stop(struct cloop *l) {
  if (l->stopping) return;
  l->stopping = 1;
  uv_timer_stop(&l->tick);
  uv_close((uv_handle_t *)&l->tick, NULL);
  uv_close((uv_handle_t *)&l->sigint, NULL);
  uv_close((uv_handle_t *)&l->sigterm, NULL);
  wsc_ctx_stop(l->ws);
}

static void close_any(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void cloop_free(struct cloop *l) {
  wsc_ctx_free(l->ws);
  l->ws = NULL;
  uv_walk(&l->loop, close_any, NULL);
  uv_run(&l->loop, UV_RUN_DEFAULT);
  uv_loop_close(&l->loop);
  dtls_ctx_free(l->dtls);
  dtls_cert_free(l->cert);
  l->dtls = NULL;
  l->cert = NULL;
  srtpctx_global_shutdown();
}

const char *cloop_fingerprint(const struct cloop *l) { return dtls_cert_fingerprint(l->cert); }
