/*
 * Signaling over WebSocket.
 *
 * Every message is one JSON object with a string "type". A message that is
 * not JSON, not an object, has no type, or has an unknown type is answered
 * with {"type":"error","code":...,"message":...} and otherwise ignored: the
 * connection and any call on it go on. Each handler gets the parsed object
 * and owns nothing of it.
 *
 * This module also writes the body of /healthz (served by app/api.c),
 * because the figures it reports (connections, calls in progress) live here.
 */
#include "app/signaling.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "app/calls.h"
#include "core/log.h"

struct signaling {
  uv_loop_t *loop;
  const struct config *cfg;
  struct calls *calls;
  uint64_t started_ms;
  unsigned connections;
  int stopping; /* the calls are gone; connections only wait to close */
};


static void on_ping(struct signaling *sig, struct ws_conn *conn, json_t *msg) {
  json_t *reply = json_pack("{s:s}", "type", "pong");
  json_t *id = json_object_get(msg, "id");
  if (id) json_object_set(reply, "id", id);
  calls_send(conn, reply);
}

static void on_offer(struct signaling *sig, struct ws_conn *conn, json_t *msg) {
  calls_offer(sig->calls, conn, msg);
}

static void on_candidate(struct signaling *sig, struct ws_conn *conn, json_t *msg) {
  calls_candidate(sig->calls, conn);
}

static void on_hangup(struct signaling *sig, struct ws_conn *conn, json_t *msg) {
  calls_hangup(sig->calls, conn);
}

static void on_resume(struct signaling *sig, struct ws_conn *conn, json_t *msg) {
  calls_resume(sig->calls, conn, msg);
}

struct handler {
  const char *type;
  void (*fn)(struct signaling *sig, struct ws_conn *conn, json_t *msg);
};

static const struct handler handlers[] = {
    {"ping", on_ping},     {"offer", on_offer},   {"ice-candidate", on_candidate},
    {"hangup", on_hangup}, {"resume", on_resume},
};

static void ws_message(void *user, struct ws_conn *conn, const char *text, size_t len) {
  struct signaling *sig = user;
  if (sig->stopping) return; /* the media workers are stopped: nothing can be served */
  json_error_t jerr;
  json_t *msg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!msg) {
    char why[256];
    snprintf(why, sizeof why, "not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
             jerr.column);
    calls_send_error(conn, "bad_json", why);
    return;
  }
  const char *type = json_string_value(json_object_get(msg, "type"));
  if (!json_is_object(msg) || !type) {
    calls_send_error(conn, "bad_message", "a message is a JSON object with a string \"type\"");
    json_decref(msg);
    return;
  }
  for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++) {
    if (strcmp(handlers[i].type, type) == 0) {
      handlers[i].fn(sig, conn, msg);
      json_decref(msg);
      return;
    }
  }
  char why[200];
  snprintf(why, sizeof why, "unknown message type \"%.64s\"", type);
  calls_send_error(conn, "unknown_type", why);
  json_decref(msg);
}

static void ws_open(void *user, struct ws_conn *conn) {
  struct signaling *sig = user;
  sig->connections++;
  log_debug("ws", "%s connected", ws_conn_peer(conn));
  if (sig->stopping) {
    ws_conn_close(conn);
    return;
  }
  if (calls_open(sig->calls, conn)) {
    calls_send_error(conn, "internal", "out of memory");
    ws_conn_close(conn);
    return;
  }
  calls_send(conn, json_pack("{s:s,s:s,s:s}", "type", "hello", "server", "tingshuo", "version",
                            TINGSHUO_VERSION));
}

static void ws_close(void *user, struct ws_conn *conn) {
  struct signaling *sig = user;
  sig->connections--;
  calls_detach(sig->calls, conn);
  log_debug("ws", "%s disconnected", ws_conn_peer(conn));
}

int signaling_healthz(struct signaling *sig, char *body, size_t cap) {
  /* CPU time and resident memory let a load test read the server's cost from outside. */
  uv_rusage_t ru = {0};
  size_t rss = 0;
  uv_getrusage(&ru);
  uv_resident_set_memory(&rss);
  double cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  /* Draining is "not ready": a load balancer or a readiness probe sends no new callers here,
   * while the calls in progress go on (docs/deploy.md#draining). */
  int draining = calls_draining(sig->calls);
  snprintf(body, cap,
           "{\"status\":\"%s\",\"version\":\"%s\",\"uptime_s\":%llu,\"connections\":%u,"
           "\"calls\":%d,\"cpu_s\":%.3f,\"rss_bytes\":%zu}",
           draining ? "draining" : "ok", TINGSHUO_VERSION,
           (unsigned long long)((uv_now(sig->loop) - sig->started_ms) / 1000), sig->connections,
           calls_count(sig->calls), cpu_s, rss);
  return draining ? 503 : 200;
}

struct calls *signaling_calls(struct signaling *sig) { return sig->calls; }

int signaling_new(struct signaling **out, uv_loop_t *loop, const struct config *cfg,
                  struct store *store, char *err, size_t errlen) {
  struct signaling *sig = calloc(1, sizeof *sig);
  if (!sig) return -ENOMEM;
  sig->loop = loop;
  sig->cfg = cfg;
  sig->started_ms = uv_now(loop);
  int rc = calls_new(&sig->calls, loop, cfg, store, err, errlen);
  if (rc) {
    free(sig);
    return rc;
  }
  *out = sig;
  return 0;
}

void signaling_shutdown(struct signaling *sig) {
  sig->stopping = 1;
  calls_shutdown(sig->calls);
}

unsigned signaling_connections(const struct signaling *sig) { return sig->connections; }

void signaling_free(struct signaling *sig) {
  if (!sig) return;
  calls_free(sig->calls);
  free(sig);
}

struct http_handlers signaling_handlers(struct signaling *sig) {
  return (struct http_handlers){.user = sig, .ws_open = ws_open, .ws_message = ws_message,
                                .ws_close = ws_close};
}
