/*
 * Signaling over WebSocket.
 *
 * Every message is one JSON object with a string "type". A message that is
 * not JSON, not an object, has no type, or has an unknown type is answered
 * with {"type":"error","code":...,"message":...} and otherwise ignored: the
 * connection and any call on it go on. Each handler gets the parsed object
 * and owns nothing of it.
 *
 * This module also answers the server's dynamic GETs (/healthz), because
 * the figures they report (calls in progress) live here.
 */
#include "app/signaling.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct signaling {
  uv_loop_t *loop;
  const struct config *cfg;
  uint64_t started_ms;
  unsigned connections;
};

static void send_json(struct ws_conn *conn, json_t *msg) {
  char *text = json_dumps(msg, JSON_COMPACT);
  if (text) {
    ws_conn_send(conn, text, strlen(text));
    free(text);
  }
  json_decref(msg);
}

static void send_error(struct ws_conn *conn, const char *code, const char *message) {
  send_json(conn, json_pack("{s:s,s:s,s:s}", "type", "error", "code", code, "message", message));
}

static void on_ping(struct signaling *sig, struct ws_conn *conn, json_t *msg) {
  json_t *reply = json_pack("{s:s}", "type", "pong");
  json_t *id = json_object_get(msg, "id");
  if (id) json_object_set(reply, "id", id);
  send_json(conn, reply);
}

struct handler {
  const char *type;
  void (*fn)(struct signaling *sig, struct ws_conn *conn, json_t *msg);
};

static const struct handler handlers[] = {
    {"ping", on_ping},
};

static void ws_message(void *user, struct ws_conn *conn, const char *text, size_t len) {
  struct signaling *sig = user;
  json_error_t jerr;
  json_t *msg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!msg) {
    char why[256];
    snprintf(why, sizeof why, "not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
             jerr.column);
    send_error(conn, "bad_json", why);
    return;
  }
  const char *type = json_string_value(json_object_get(msg, "type"));
  if (!json_is_object(msg) || !type) {
    send_error(conn, "bad_message", "a message is a JSON object with a string \"type\"");
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
  send_error(conn, "unknown_type", why);
  json_decref(msg);
}

static void ws_open(void *user, struct ws_conn *conn) {
  struct signaling *sig = user;
  sig->connections++;
  log_debug("ws", "%s connected", ws_conn_peer(conn));
  send_json(conn, json_pack("{s:s,s:s,s:s}", "type", "hello", "server", "tingshuo", "version",
                            TINGSHUO_VERSION));
}

static void ws_close(void *user, struct ws_conn *conn) {
  struct signaling *sig = user;
  sig->connections--;
  log_debug("ws", "%s disconnected", ws_conn_peer(conn));
}

static int http_get(void *user, const char *path, char *body, size_t cap) {
  struct signaling *sig = user;
  if (strcmp(path, "/healthz") == 0) {
    snprintf(body, cap,
             "{\"status\":\"ok\",\"version\":\"%s\",\"uptime_s\":%llu,\"connections\":%u}",
             TINGSHUO_VERSION, (unsigned long long)((uv_now(sig->loop) - sig->started_ms) / 1000),
             sig->connections);
    return 200;
  }
  return 404;
}

int signaling_new(struct signaling **out, uv_loop_t *loop, const struct config *cfg) {
  struct signaling *sig = calloc(1, sizeof *sig);
  if (!sig) return -ENOMEM;
  sig->loop = loop;
  sig->cfg = cfg;
  sig->started_ms = uv_now(loop);
  *out = sig;
  return 0;
}

void signaling_free(struct signaling *sig) { free(sig); }

struct http_handlers signaling_handlers(struct signaling *sig) {
  return (struct http_handlers){.user = sig, .get = http_get, .ws_open = ws_open,
                                .ws_message = ws_message, .ws_close = ws_close};
}
