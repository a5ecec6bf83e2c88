/*
 * cloop: the event loop a client command runs on: libuv, the WebSocket
 * client context, the DTLS client certificate, SIGINT/SIGTERM, and a tick
 * every 20 ms on an absolute schedule (a late tick is followed by quicker
 * ones, so the average rate stays exactly 50 per second).
 */
#ifndef TS_CLIENT_CLOOP_H
#define TS_CLIENT_CLOOP_H

#include <stdint.h>
#include <uv.h>

#include "client/ws_client.h"

struct dtls_cert;
struct dtls_ctx;

#define CLOOP_TICK_MS 20

struct cloop {
  uv_loop_t loop;
  struct dtls_cert *cert;
  struct dtls_ctx *dtls;
  struct wsc_ctx *ws;
  uv_timer_t tick;
  uv_signal_t sigint, sigterm;
  uint64_t next_ms;
  int stopping;
  void *user;
  void (*on_tick)(void *user, uint64_t now_ms);
  void (*on_signal)(void *user, int signum);
};

int cloop_init(struct cloop *l, int insecure, char *err, size_t errlen);
/* Runs until cloop_stop() and everything it closes has closed. */
void cloop_run(struct cloop *l);
/* Stops the tick and the WebSocket context (end every call first). */
void cloop_stop(struct cloop *l);
void cloop_free(struct cloop *l);
/* Milliseconds on the loop's monotonic clock, fresh. */
uint64_t cloop_now(struct cloop *l);
const char *cloop_fingerprint(const struct cloop *l);

#endif
