/*
 * Media workers.
 *
 * A worker is a thread running its own libuv loop with one UDP socket. All
 * of a call's packets arrive on that socket; RFC 7983 demultiplexing sorts
 * them: STUN checks name their call in USERNAME ("<our ufrag>:<theirs>"),
 * and once a check from an address is authenticated, DTLS and SRTP from that
 * address are routed to the same call through the address map.
 *
 * One timer per worker paces every call: each 20 ms tick, every call sends
 * exactly one frame (speech, or encoded silence, made on the tick before),
 * all of them in one sendmmsg; then every call pulls one frame from its
 * jitter buffer, runs its DTLS, RTCP and consent timers and makes its next
 * frame. The tick is scheduled against an absolute clock so that it does
 * not drift, and a late tick catches up (up to 100 ms) so RTP timestamps
 * keep real time. Workers tick out of phase with each other (two workers:
 * 10 ms apart), so their busy moments do not compete for the same cores.
 *
 * Calls are created by the control thread and posted here; ends and ICE
 * restarts are requests posted the same way. A worker never blocks: no
 * locks, no engine work, no disk.
 */
#include "media/worker.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "agent/agents.h"
#include "core/log.h"
#include "core/prom.h"
#include "media/addrmap.h"
#include "media/call.h"
#include "media/recorder.h"
#include "net/udp_batch.h"
#include "rtc/dtls.h"
#include "rtc/rtp.h"
#include "rtc/srtpctx.h"
#include "rtc/stun.h"

#define TICK_MS 20
#define MAX_CATCHUP 5
#define COLLECT_TICKS 50 /* calls' counters reach the worker's metrics once a second */

enum worker_cmd { CMD_ADD = 1, CMD_END, CMD_RESTART, CMD_STOP };

struct worker_msg {
  struct mailbox_msg hdr;
  struct media_call *call; /* CMD_ADD */
  char call_id[40];
  char reason[64];
  char ufrag[SDP_ICE_MAX + 1], pwd[SDP_ICE_MAX + 1]; /* CMD_RESTART: the peer's new credentials */
};

struct call_node {
  struct call_node *next;
  struct media_call *call;
};

/*
 * What /metrics reads of a worker. Only the worker's thread writes them
 * (so a relaxed load and store is enough, no read-modify-write); calls
 * count in plain fields of their own and hand the difference over once a
 * second and when they end, so a packet costs nothing here.
 */
struct worker_metrics {
  _Atomic uint64_t rtp_received, rtp_lost, rtp_late, rtp_sent;
  _Atomic uint64_t concealed, recovered, dropped, srtp_failures;
  _Atomic uint64_t ticks_dropped; /* 20 ms ticks given up after falling too far behind */
  struct prom_histogram tick_lag; /* how late each tick ran after it was due */
};

/* Tick lag: a tick runs within a millisecond of its time unless the thread is starved. */
static const double tick_lag_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25};

struct worker {
  struct media_pool *pool;
  int index;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_udp_t udp;
  struct udp_batch *batch; /* the tick's frames, sent together */
  int batching;            /* in the tick's send pass: packets go to the batch */
  uv_timer_t tick;
  struct mailbox *mb;
  struct addrmap *addrs;
  struct call_node *calls;
  atomic_int ncalls;
  struct dtls_ctx *dtls;
  uint64_t next_tick_ms;
  unsigned ticks;
  struct worker_metrics m;
  int port;
  int loop_ready, started, stopped;
  uint8_t rxbuf[2048];
};

struct media_pool {
  struct worker *w;
  int n;
  const struct config *cfg;
  const struct agent_ops *agent; /* what answers every call: cfg->agent's table */
  struct engines *engines;
  struct mailbox *control;
  struct dtls_cert *cert;
  int srtp_ready;
  struct recorder *recorder; /* record_calls on: the thread that writes recordings */
};

/* --- events to the control loop ------------------------------------------ */

/* A new event for the control loop about call_id; NULL when memory is short. */
static struct media_event *event_new(enum media_event_type type, const char *call_id,
                                     const char *reason) {
  struct media_event *ev = calloc(1, sizeof *ev);
  if (!ev) return NULL;
  ev->hdr.type = type;
  snprintf(ev->call_id, sizeof ev->call_id, "%s", call_id);
  snprintf(ev->reason, sizeof ev->reason, "%s", reason ? reason : "");
  return ev;
}

static void post_event(struct worker *w, enum media_event_type type, const char *call_id,
                       const char *reason, const char *ufrag, const char *pwd) {
  struct media_event *ev = event_new(type, call_id, reason);
  if (!ev) return;
  snprintf(ev->ufrag, sizeof ev->ufrag, "%s", ufrag ? ufrag : "");
  snprintf(ev->pwd, sizeof ev->pwd, "%s", pwd ? pwd : "");
  mailbox_post(w->pool->control, &ev->hdr);
}

void media_event_free(struct media_event *ev) {
  if (!ev) return;
  free(ev->json);
  free(ev);
}

/* An agent's event: handed to the control loop as it is. */
static void post_agent_event(void *user, const char *call_id, char *json) {
  struct worker *w = user;
  struct media_event *ev = event_new(MEDIA_EV_AGENT, call_id, NULL);
  if (!ev) {
    free(json);
    return;
  }
  ev->json = json;
  mailbox_post(w->pool->control, &ev->hdr);
}

/* The end of a call, with its media summary; posted once the call is freed. */
static struct media_event *ended_event(struct media_call *c, const char *reason) {
  struct media_event *ev = event_new(MEDIA_EV_ENDED, media_call_id(c), reason);
  if (ev) media_call_get_summary(c, &ev->summary);
  return ev;
}

/* --- metrics ---------------------------------------------------------------- */

static void add(_Atomic uint64_t *a, uint64_t n) {
  if (n) atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + n, memory_order_relaxed);
}

static void collect(struct worker *w, struct media_call *c) {
  struct media_counters d = {0};
  media_call_take_counters(c, &d);
  add(&w->m.rtp_received, d.rtp_received);
  add(&w->m.rtp_lost, d.rtp_lost);
  add(&w->m.rtp_late, d.rtp_late);
  add(&w->m.rtp_sent, d.rtp_sent);
  add(&w->m.concealed, d.concealed);
  add(&w->m.recovered, d.recovered);
  add(&w->m.dropped, d.dropped);
  add(&w->m.srtp_failures, d.srtp_failures);
}

/* --- the call list ---------------------------------------------------------- */

static struct call_node **find_node(struct worker *w, const char *call_id) {
  struct call_node **pp = &w->calls;
  while (*pp && strcmp(media_call_id((*pp)->call), call_id) != 0) pp = &(*pp)->next;
  return pp;
}

static struct media_call *find_by_ufrag(struct worker *w, const char *ufrag, size_t len) {
  for (struct call_node *n = w->calls; n; n = n->next) {
    const char *u = media_call_ufrag(n->call);
    if (strlen(u) == len && memcmp(u, ufrag, len) == 0) return n->call;
  }
  return NULL;
}

static void remove_call(struct worker *w, struct call_node **pp, const char *reason, int notify) {
  struct call_node *n = *pp;
  *pp = n->next;
  addrmap_remove_value(w->addrs, n->call);
  collect(w, n->call);
  atomic_fetch_sub(&w->ncalls, 1);
  struct media_event *ev = notify ? ended_event(n->call, reason) : NULL;
  log_call_info("media", media_call_id(n->call), "ended: %s", reason);
  /* Freed before the end is reported: by the time the control loop hears
   * of it, the call's engine requests are released (and counted so). */
  media_call_free(n->call);
  free(n);
  if (ev) mailbox_post(w->pool->control, &ev->hdr);
}

/* --- packets ------------------------------------------------------------------- */

static void send_packet(void *user, const uint8_t *data, size_t len, const struct sockaddr *to) {
  struct worker *w = user;
  if (w->batching) {
    udp_batch_add(w->batch, data, len, to);
    return;
  }
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int rc = uv_udp_try_send(&w->udp, &b, 1, to);
  if (rc < 0 && rc != UV_EAGAIN) log_debug("media", "send failed: %s", uv_strerror(rc));
}

static void on_stun(struct worker *w, const uint8_t *p, size_t n, const struct sockaddr *from,
                    uint64_t now) {
  const char *user;
  size_t user_len;
  if (stun_peek_username(p, n, &user, &user_len) != 0) return;
  const char *colon = memchr(user, ':', user_len);
  struct media_call *c = find_by_ufrag(w, user, colon ? (size_t)(colon - user) : user_len);
  if (!c) return; /* not ours: drop silently, as RFC 8445 allows */
  if (media_call_on_stun(c, p, n, from, now) == 1 && addrmap_get(w->addrs, from) != c)
    addrmap_put(w->addrs, from, c);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
                    unsigned flags) {
  struct worker *w = h->data;
  if (nread <= 0 || !from || (flags & UV_UDP_PARTIAL)) return;
  uint64_t now = uv_now(&w->loop);
  uint8_t *p = (uint8_t *)buf->base;
  size_t n = (size_t)nread;
  switch (rtp_demux(p, n)) {
  case RTP_DEMUX_STUN:
    on_stun(w, p, n, from, now);
    break;
  case RTP_DEMUX_DTLS:
  case RTP_DEMUX_RTP: {
    struct media_call *c = addrmap_get(w->addrs, from);
    if (c) media_call_on_packet(c, p, n, from, now);
    break;
  }
  default:
    break; /* garbage: dropped, costs one branch */
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct worker *w = h->data;
  *buf = uv_buf_init((char *)w->rxbuf, sizeof w->rxbuf);
}

/* --- the 20 ms tick ------------------------------------------------------------- */

/* Two passes: every call's ready frame goes out first, in one batch, so the
 * outbound pacing does not depend on how long any call's work takes; then
 * every call hears and makes its next frame. */
static void tick_calls(struct worker *w, uint64_t now) {
  w->batching = 1;
  for (struct call_node *n = w->calls; n; n = n->next) media_call_tick(n->call, now);
  udp_batch_flush(w->batch);
  w->batching = 0;
  int collecting = ++w->ticks % COLLECT_TICKS == 0;
  struct call_node **pp = &w->calls;
  while (*pp) {
    struct media_call *c = (*pp)->call;
    media_call_tick_in(c);
    if (collecting) collect(w, c);
    if (media_call_take_connected(c)) post_event(w, MEDIA_EV_CONNECTED, media_call_id(c), NULL, NULL, NULL);
    const char *reason = media_call_end_reason(c);
    if (reason) remove_call(w, pp, reason, 1);
    else pp = &(*pp)->next;
  }
}

static void on_tick(uv_timer_t *t) {
  struct worker *w = t->data;
  uv_update_time(&w->loop);
  uint64_t now = uv_now(&w->loop);
  /* uv_now is the same monotonic clock as uv_hrtime, in whole milliseconds. */
  uint64_t due_ns = w->next_tick_ms * 1000000, now_ns = uv_hrtime();
  prom_histogram_observe(&w->m.tick_lag, now_ns > due_ns ? (double)(now_ns - due_ns) / 1e9 : 0);
  if (now > w->next_tick_ms + (uint64_t)TICK_MS * MAX_CATCHUP) { /* too far behind */
    add(&w->m.ticks_dropped, (now - w->next_tick_ms) / TICK_MS);
    w->next_tick_ms = now;
  }
  while (w->next_tick_ms <= now) {
    tick_calls(w, w->next_tick_ms);
    w->next_tick_ms += TICK_MS;
  }
  uv_timer_start(&w->tick, on_tick, w->next_tick_ms - now, 0);
}

/* --- commands from the control loop ------------------------------------------------ */

static void adopt(struct worker *w, struct media_call *c) {
  struct call_node *n = calloc(1, sizeof *n);
  if (!n) {
    post_event(w, MEDIA_EV_ENDED, media_call_id(c), "out of memory", NULL, NULL);
    media_call_free(c);
    atomic_fetch_sub(&w->ncalls, 1);
    return;
  }
  media_call_attach(c, send_packet, post_agent_event, w);
  n->call = c;
  n->next = w->calls;
  w->calls = n;
}

/* A command that will never run still owns its call. */
static void drop_cmd(struct mailbox_msg *m) {
  struct worker_msg *msg = (struct worker_msg *)m;
  if (msg->call) media_call_free(msg->call);
  free(msg);
}

static void stop_worker(struct worker *w) {
  w->stopped = 1;
  while (w->calls) remove_call(w, &w->calls, "server shutting down", 0);
  uv_timer_stop(&w->tick);
  uv_close((uv_handle_t *)&w->tick, NULL);
  uv_close((uv_handle_t *)&w->udp, NULL);
  mailbox_close(w->mb, drop_cmd);
}

static void on_command(struct mailbox *mb, struct mailbox_msg *m, void *user) {
  struct worker *w = user;
  struct worker_msg *msg = (struct worker_msg *)m;
  struct call_node **pp;
  if (w->stopped) {
    drop_cmd(m);
    return;
  }
  switch (m->type) {
  case CMD_ADD:
    adopt(w, msg->call);
    break;
  case CMD_END:
    pp = find_node(w, msg->call_id);
    if (*pp) remove_call(w, pp, msg->reason, 1);
    break;
  case CMD_RESTART:
    pp = find_node(w, msg->call_id);
    if (*pp && media_call_restart_ice((*pp)->call, msg->ufrag, msg->pwd, uv_now(&w->loop)) == 0)
      post_event(w, MEDIA_EV_RESTARTED, msg->call_id, NULL, media_call_ufrag((*pp)->call),
                 media_call_pwd((*pp)->call));
    else
      post_event(w, MEDIA_EV_ENDED, msg->call_id, "ICE restart failed", NULL, NULL);
    break;
  case CMD_STOP:
    stop_worker(w);
    break;
  }
  free(msg);
}

static void run(void *arg) {
  struct worker *w = arg;
  uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* --- set-up ----------------------------------------------------------------------------- */

static int bind_udp(struct worker *w, const struct config *cfg, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  int port = cfg->media_port ? cfg->media_port + w->index : 0;
  int rc = strchr(cfg->media_address, ':')
               ? uv_ip6_addr(cfg->media_address, port, (struct sockaddr_in6 *)&ss)
               : uv_ip4_addr(cfg->media_address, port, (struct sockaddr_in *)&ss);
  if (rc == 0 && (rc = uv_udp_init(&w->loop, &w->udp)) == 0)
    w->udp.data = w; /* from here on the handle must be closed */
  if (rc == 0) rc = uv_udp_bind(&w->udp, (struct sockaddr *)&ss, 0);
  if (rc) {
    snprintf(err, errlen, "media worker %d cannot bind UDP %s port %d: %s", w->index,
             cfg->media_address, port, uv_strerror(rc));
    return rc;
  }
  int size = 1 << 20;
  uv_recv_buffer_size((uv_handle_t *)&w->udp, &size);
  uv_send_buffer_size((uv_handle_t *)&w->udp, &size);
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_udp_getsockname(&w->udp, (struct sockaddr *)&bound, &len);
  w->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  uv_os_fd_t fd;
  if ((rc = uv_fileno((uv_handle_t *)&w->udp, &fd)) == 0) rc = udp_batch_new(&w->batch, fd);
  if (rc) snprintf(err, errlen, "media worker %d: cannot set up sending", w->index);
  return rc;
}

static int worker_init(struct worker *w, const struct config *cfg, char *err, size_t errlen) {
  prom_histogram_init(&w->m.tick_lag, tick_lag_bounds,
                      (int)(sizeof tick_lag_bounds / sizeof tick_lag_bounds[0]));
  int rc = uv_loop_init(&w->loop);
  if (rc) return rc;
  w->loop_ready = 1;
  uv_timer_init(&w->loop, &w->tick);
  w->tick.data = w;
  w->addrs = addrmap_new();
  if (!w->addrs) return -ENOMEM;
  rc = bind_udp(w, cfg, err, errlen);
  if (rc) return rc;
  rc = mailbox_new(&w->mb, &w->loop, on_command, w);
  if (rc) return rc;
  rc = dtls_ctx_new(&w->dtls, w->pool->cert, DTLS_ROLE_SERVER);
  if (rc) {
    snprintf(err, errlen, "cannot set up DTLS");
    return rc;
  }
  uv_udp_recv_start(&w->udp, on_alloc, on_recv);
  /* Workers tick out of phase, so that their busy moments do not coincide
   * and each finds a core free when its tick is due. */
  uint64_t phase = TICK_MS + (uint64_t)(TICK_MS * w->index / w->pool->n);
  w->next_tick_ms = uv_now(&w->loop) + phase;
  uv_timer_start(&w->tick, on_tick, phase, 0);
  return 0;
}

/* Undoes worker_init for a worker whose thread never ran. */
static void worker_abandon(struct worker *w) {
  if (!w->loop_ready) return;
  if (w->mb) mailbox_close(w->mb, NULL);
  if (w->udp.data) uv_close((uv_handle_t *)&w->udp, NULL);
  uv_close((uv_handle_t *)&w->tick, NULL);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  uv_loop_close(&w->loop);
}

static void worker_free(struct worker *w) {
  udp_batch_free(w->batch);
  addrmap_free(w->addrs);
  dtls_ctx_free(w->dtls);
}

int media_pool_start(struct media_pool **out, const struct config *cfg, struct mailbox *control,
                     struct engines *engines, char *err, size_t errlen) {
  const struct agent_ops *agent = agent_ops_find(cfg->agent);
  if (!agent) {
    snprintf(err, errlen, "no agent called \"%s\"", cfg->agent);
    return -EINVAL;
  }
  struct media_pool *pool = calloc(1, sizeof *pool);
  if (!pool) return -ENOMEM;
  pool->cfg = cfg;
  pool->agent = agent;
  pool->engines = engines;
  pool->n = cfg->media_workers ? cfg->media_workers : (int)uv_available_parallelism();
  pool->control = control;
  pool->w = calloc((size_t)pool->n, sizeof *pool->w);
  int rc = pool->w ? srtpctx_global_init() : -ENOMEM;
  if (rc == 0) pool->srtp_ready = 1;
  if (rc == 0) rc = dtls_cert_new(&pool->cert);
  if (rc) snprintf(err, errlen, "cannot create the DTLS certificate");
  if (rc == 0 && cfg->record_calls)
    rc = recorder_start(&pool->recorder, cfg->data_dir, 0, err, errlen);
  for (int i = 0; rc == 0 && i < pool->n; i++) {
    struct worker *w = &pool->w[i];
    w->pool = pool;
    w->index = i;
    rc = worker_init(w, cfg, err, errlen);
    if (rc == 0) rc = uv_thread_create(&w->thread, run, w);
    if (rc) {
      worker_abandon(w);
      worker_free(w);
    } else {
      w->started = 1;
    }
  }
  if (rc) {
    media_pool_stop(pool);
    return rc;
  }
  *out = pool;
  return 0;
}

static void post_cmd(struct worker *w, struct worker_msg *msg, int type) {
  msg->hdr.type = type;
  mailbox_post(w->mb, &msg->hdr);
}

void media_pool_stop(struct media_pool *pool) {
  if (!pool) return;
  for (int i = 0; pool->w && i < pool->n; i++) {
    struct worker *w = &pool->w[i];
    if (!w->started) continue;
    struct worker_msg *msg = calloc(1, sizeof *msg);
    if (msg) post_cmd(w, msg, CMD_STOP);
    uv_thread_join(&w->thread);
    uv_loop_close(&w->loop);
    worker_free(w);
  }
  recorder_stop(pool->recorder); /* after the workers: their calls' last ticks are queued */
  dtls_cert_free(pool->cert);
  if (pool->srtp_ready) srtpctx_global_shutdown();
  free(pool->w);
  free(pool);
}

int media_pool_size(const struct media_pool *pool) { return pool->n; }
int media_pool_port(const struct media_pool *pool, int i) { return pool->w[i].port; }
const char *media_pool_fingerprint(const struct media_pool *pool) {
  return dtls_cert_fingerprint(pool->cert);
}

int media_pool_pick(const struct media_pool *pool) {
  int best = 0;
  for (int i = 1; i < pool->n; i++)
    if (atomic_load(&pool->w[i].ncalls) < atomic_load(&pool->w[best].ncalls)) best = i;
  return best;
}


int media_pool_calls(const struct media_pool *pool) {
  int n = 0;
  for (int i = 0; i < pool->n; i++) n += atomic_load(&pool->w[i].ncalls);
  return n;
}

/* One counter family, one sample per worker. */
static void write_counter(struct prom_buf *b, const struct media_pool *pool, const char *name,
                          const char *help, size_t offset) {
  prom_family(b, name, "counter", help);
  for (int i = 0; i < pool->n; i++) {
    char worker[16];
    snprintf(worker, sizeof worker, "%d", i);
    const _Atomic uint64_t *v = (const _Atomic uint64_t *)((const char *)&pool->w[i].m + offset);
    prom_sample(b, name, (double)atomic_load_explicit(v, memory_order_relaxed), "worker", worker, NULL);
  }
}

#define COUNTER(name, field, help) write_counter(b, pool, name, help, offsetof(struct worker_metrics, field))

void media_pool_write_metrics(const struct media_pool *pool, struct prom_buf *b) {
  char worker[16];
  prom_family(b, "tingshuo_media_calls_active", "gauge", "Calls on each media worker.");
  for (int i = 0; i < pool->n; i++) {
    snprintf(worker, sizeof worker, "%d", i);
    prom_sample(b, "tingshuo_media_calls_active", atomic_load(&pool->w[i].ncalls), "worker", worker, NULL);
  }
  prom_family(b, "tingshuo_media_tick_lag_seconds", "histogram",
              "How late each 20 ms media tick ran after it was due.");
  for (int i = 0; i < pool->n; i++) {
    snprintf(worker, sizeof worker, "%d", i);
    prom_histogram_write(b, "tingshuo_media_tick_lag_seconds", &pool->w[i].m.tick_lag, "worker", worker, NULL);
  }
  COUNTER("tingshuo_media_ticks_dropped_total", ticks_dropped,
          "Media ticks skipped because the worker fell more than 100 ms behind.");
  COUNTER("tingshuo_rtp_packets_received_total", rtp_received, "RTP packets received from callers.");
  COUNTER("tingshuo_rtp_packets_lost_total", rtp_lost,
          "RTP packets from callers that never arrived (RFC 3550 counting).");
  COUNTER("tingshuo_rtp_packets_late_total", rtp_late,
          "RTP packets from callers that arrived after their time to play.");
  COUNTER("tingshuo_rtp_packets_sent_total", rtp_sent, "RTP packets sent to callers.");
  COUNTER("tingshuo_jitter_frames_concealed_total", concealed,
          "20 ms frames the jitter buffer made up by packet-loss concealment.");
  COUNTER("tingshuo_jitter_frames_recovered_total", recovered,
          "20 ms frames the jitter buffer rebuilt from the next packet's forward error correction.");
  COUNTER("tingshuo_jitter_frames_dropped_total", dropped,
          "Frames the jitter buffer skipped to catch up after a burst.");
  COUNTER("tingshuo_srtp_failures_total", srtp_failures,
          "SRTP and SRTCP packets refused (failed authentication or replayed).");
  if (pool->recorder) recorder_write_metrics(pool->recorder, b);
}

/*
 * The time a call is created at, read on the control thread. A worker's
 * uv_now() is that worker's loop's field and only its thread may read it;
 * this is the same monotonic clock (libuv's loop time is uv_hrtime in
 * whole milliseconds), taken directly. It can run a tick ahead of the
 * worker's cached time, which the ICE and DTLS timers allow for.
 */
static uint64_t control_now_ms(void) { return uv_hrtime() / 1000000; }

int media_pool_add_call(struct media_pool *pool, int worker, const struct media_call_params *p,
                        char *ufrag, size_t ufrag_cap, char *pwd, size_t pwd_cap) {
  struct worker *w = &pool->w[worker];
  struct worker_msg *msg = calloc(1, sizeof *msg);
  if (!msg) return -ENOMEM;
  struct media_agent_env agent = {pool->agent, pool->cfg, pool->engines, w->mb, pool->recorder};
  msg->call = media_call_new(p, w->dtls, &agent, control_now_ms());
  if (!msg->call) {
    free(msg);
    return -ENOMEM;
  }
  snprintf(ufrag, ufrag_cap, "%s", media_call_ufrag(msg->call));
  snprintf(pwd, pwd_cap, "%s", media_call_pwd(msg->call));
  atomic_fetch_add(&w->ncalls, 1);
  post_cmd(w, msg, CMD_ADD);
  return 0;
}

void media_pool_end_call(struct media_pool *pool, int worker, const char *call_id,
                         const char *reason) {
  struct worker_msg *msg = calloc(1, sizeof *msg);
  if (!msg) return;
  snprintf(msg->call_id, sizeof msg->call_id, "%s", call_id);
  snprintf(msg->reason, sizeof msg->reason, "%s", reason);
  post_cmd(&pool->w[worker], msg, CMD_END);
}

void media_pool_restart_ice(struct media_pool *pool, int worker, const char *call_id,
                            const char *remote_ufrag, const char *remote_pwd) {
  struct worker_msg *msg = calloc(1, sizeof *msg);
  if (!msg) return;
  snprintf(msg->call_id, sizeof msg->call_id, "%s", call_id);
  snprintf(msg->ufrag, sizeof msg->ufrag, "%s", remote_ufrag);
  snprintf(msg->pwd, sizeof msg->pwd, "%s", remote_pwd);
  post_cmd(&pool->w[worker], msg, CMD_RESTART);
}
