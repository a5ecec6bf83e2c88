/*
 * One call, client side.
 *
 * The order of a call (docs/protocol.md): the socket opens, the offer goes
 * out at once (the server's hello is not waited for, so any server that
 * speaks the protocol works, including an adapter in front of another
 * media server), the answer starts ICE, the peer finishes DTLS, media
 * flows. The end comes from whichever happens first: our hangup, the
 * server's `end`, an `error` that is not an engine's (those are reported
 * and the call goes on), a peer failure, the socket closing, or no answer
 * in time. A failure is kept as a message for the owner; the socket is
 * closed; on_end is called once the socket is gone, so the owner never
 * frees a caller that lws still points to.
 *
 * A node of a cluster may answer the offer with `redirect` (docs/cluster.md):
 * the caller connects to the node it names and sends the same offer there,
 * marked redirected, and closes the first socket. Each socket has a small
 * link of its own as the lws user, so that the old one's close, which comes
 * later, is told apart from the current one's; a link left open when the
 * caller is freed is orphaned and frees itself when it closes.
 */
#include "client/caller.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_REDIRECTS 3

/* One signaling socket; c = NULL once its caller is gone. */
struct link {
  struct caller *c;
  struct wsc *ws;
};

struct caller {
  uv_loop_t *loop;
  struct caller_params prm;
  struct ws_url url;
  struct wsc *ws;             /* the current socket, link->ws; NULL once it closed */
  struct link *link;          /* the current socket's link */
  struct link *old[MAX_REDIRECTS]; /* sockets left for a redirect, until they close */
  int redirects;
  struct peer *peer;
  json_t *config;
  char *token;
  char call_id[64];
  char resume_secret[80];
  int opened, answered, connected, ending, ended, failed, hung_up;
  uint64_t started_ms;
  struct peer_counters final; /* kept when the peer closes */
  char why[600];
};

static void end_with(struct caller *c, int failed, const char *fmt, const char *arg) {
  if (c->ending) return;
  c->ending = 1;
  c->failed = failed;
  snprintf(c->why, sizeof c->why, fmt, arg);
  if (c->ws) wsc_close(c->ws);
}

static void send_json(struct caller *c, json_t *msg) {
  char *text = json_dumps(msg, JSON_COMPACT);
  if (text && c->ws) wsc_send(c->ws, text, strlen(text));
  free(text);
  json_decref(msg);
}

static void ws_open(void *user) {
  struct link *l = user;
  struct caller *c = l->c;
  if (!c || l != c->link) return;
  c->opened = 1;
  char *sdp = NULL;
  if (peer_offer(c->peer, &sdp)) {
    end_with(c, 1, "%s", "cannot build the offer");
    return;
  }
  json_t *offer = json_pack("{s:s,s:s}", "type", "offer", "sdp", sdp);
  if (c->config) json_object_set(offer, "config", c->config);
  if (c->token) json_object_set_new(offer, "token", json_string(c->token));
  if (c->redirects) json_object_set_new(offer, "redirected", json_true());
  send_json(c, offer);
  free(sdp);
}

static void on_answer(struct caller *c, json_t *msg) {
  const char *sdp = json_string_value(json_object_get(msg, "sdp"));
  const char *id = json_string_value(json_object_get(msg, "call_id"));
  const char *secret = json_string_value(json_object_get(msg, "resume_secret"));
  char err[300];
  if (!sdp) {
    end_with(c, 1, "%s", "the server's answer has no sdp");
    return;
  }
  snprintf(c->call_id, sizeof c->call_id, "%s", id ? id : "");
  snprintf(c->resume_secret, sizeof c->resume_secret, "%s", secret ? secret : "");
  if (peer_answer(c->peer, sdp, err, sizeof err)) {
    end_with(c, 1, "%s", err);
    return;
  }
  c->answered = 1;
}

static void on_error(struct caller *c, json_t *msg) {
  const char *code = json_string_value(json_object_get(msg, "code"));
  const char *text = json_string_value(json_object_get(msg, "message"));
  if (code && strcmp(code, "engine") == 0) return; /* the call goes on */
  char why[300];
  snprintf(why, sizeof why, "the server refused: %s: %s", code ? code : "error",
           text ? text : "(no message)");
  end_with(c, 1, "%s", why);
}

static void on_end_msg(struct caller *c, json_t *msg) {
  const char *reason = json_string_value(json_object_get(msg, "reason"));
  if (!reason) reason = "no reason given";
  int normal = (c->hung_up && strcmp(reason, "hangup") == 0) || strcmp(reason, "goodbye") == 0;
  end_with(c, !normal, normal ? "the call ended: %s" : "the server ended the call: %s", reason);
}

static const struct wsc_handlers handlers;

/* Moves the signaling to the node the server named; the offer goes again once it opens. */
static void follow_redirect(struct caller *c, json_t *msg) {
  const char *url = json_string_value(json_object_get(msg, "url"));
  struct ws_url to;
  char err[300];
  if (c->redirects >= MAX_REDIRECTS) {
    end_with(c, 1, "%s", "too many redirects");
    return;
  }
  if (!url || ws_url_parse(url, &to, err, sizeof err)) {
    end_with(c, 1, "the server redirected to a bad URL: %s", url ? err : "(none)");
    return;
  }
  struct link *l = calloc(1, sizeof *l);
  if (!l) {
    end_with(c, 1, "%s", "out of memory");
    return;
  }
  l->c = c;
  if (wsc_connect(c->prm.ws, &to, &handlers, l, &l->ws)) {
    free(l);
    end_with(c, 1, "cannot connect to the node the server redirected to: %s", url);
    return;
  }
  struct link *was = c->link;
  c->old[c->redirects++] = was;
  c->link = l;
  c->ws = l->ws;
  c->url = to;
  c->opened = 0;
  wsc_close(was->ws);
}

static void ws_message(void *user, const char *text, size_t len) {
  struct link *l = user;
  struct caller *c = l->c;
  if (!c || l != c->link) return; /* a socket we left */
  json_t *msg = json_loadb(text, len, 0, NULL);
  const char *type = json_string_value(json_object_get(msg, "type"));
  if (!json_is_object(msg) || !type) {
    json_decref(msg);
    return; /* not ours to judge: skip what we cannot read */
  }
  if (strcmp(type, "redirect") == 0 && !c->answered && !c->ending) {
    follow_redirect(c, msg);
    json_decref(msg);
    return; /* the owner sees the call, not where it went */
  }
  if (strcmp(type, "answer") == 0 && !c->answered) on_answer(c, msg);
  else if (strcmp(type, "error") == 0) on_error(c, msg);
  else if (strcmp(type, "end") == 0) on_end_msg(c, msg);
  if (c->prm.on_message) c->prm.on_message(c->prm.user, type, msg);
  json_decref(msg);
}

static void ws_close(void *user, const char *why) {
  struct link *l = user;
  struct caller *c = l->c;
  int current = c && l == c->link;
  for (int i = 0; c && !current && i < c->redirects; i++) /* one left for a redirect */
    if (c->old[i] == l) c->old[i] = NULL;
  free(l);
  if (!current) return;
  c->link = NULL;
  c->ws = NULL;
  if (!c->ending) {
    c->ending = 1;
    c->failed = 1;
    if (!c->opened)
      snprintf(c->why, sizeof c->why, "cannot connect to %s://%.100s:%d%.100s (%.100s)",
               c->url.tls ? "wss" : "ws", c->url.host, c->url.port,
               c->url.path, why);
    else
      snprintf(c->why, sizeof c->why, "%s%s", c->answered ? "" : "no answer: ", why);
  }
  c->ended = 1;
  peer_counters(c->peer, &c->final);
  peer_close(c->peer); /* its socket would keep the loop running */
  c->peer = NULL;
  if (c->prm.on_end) c->prm.on_end(c->prm.user, c->failed, c->why);
}

int caller_start(struct caller **out, uv_loop_t *loop, const struct caller_params *p, char *err,
                 size_t errlen) {
  struct caller *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  c->loop = loop;
  c->prm = *p;
  c->url = *p->url;
  c->prm.url = &c->url;
  c->started_ms = uv_now(loop);
  if (p->config) c->config = json_deep_copy(p->config);
  int rc = 0;
  if (p->token && !(c->token = strdup(p->token))) rc = -ENOMEM;
  if (rc == 0) rc = peer_new(&c->peer, loop, &p->peer, err, errlen);
  if (rc == 0 && !(c->link = calloc(1, sizeof *c->link))) rc = -ENOMEM;
  if (rc == 0) {
    c->link->c = c;
    rc = wsc_connect(p->ws, &c->url, &handlers, c->link, &c->link->ws);
    c->ws = c->link->ws;
    if (rc) snprintf(err, errlen, "cannot connect to %s://%s:%d%s", p->url->tls ? "wss" : "ws",
                     p->url->host, p->url->port, p->url->path);
  }
  if (rc) {
    free(c->link);
    peer_close(c->peer);
    json_decref(c->config);
    free(c->token);
    free(c);
    return rc;
  }
  *out = c;
  return 0;
}

void caller_tick(struct caller *c, uint64_t now_ms, const int16_t *pcm, const uint8_t *opus,
                 size_t opus_len) {
  if (c->ending || !c->peer) return;
  int timeout = c->prm.answer_timeout_ms > 0 ? c->prm.answer_timeout_ms : 10000;
  if (!c->answered && now_ms > c->started_ms + (uint64_t)timeout) {
    end_with(c, 1, "%s", "no answer from the server in time");
    return;
  }
  peer_tick(c->peer, now_ms, pcm, opus, opus_len);
  enum peer_state st = peer_state(c->peer);
  if (st == PEER_FAILED) {
    end_with(c, 1, "%s", peer_error(c->peer));
  } else if (st == PEER_CONNECTED && !c->connected) {
    c->connected = 1;
    if (c->prm.on_connected) c->prm.on_connected(c->prm.user);
  }
}

void caller_hangup(struct caller *c) {
  if (c->ending) return;
  c->hung_up = 1;
  if (c->ws) send_json(c, json_pack("{s:s}", "type", "hangup"));
  end_with(c, 0, "%s", "hung up");
}

void caller_free(struct caller *c) {
  if (!c) return;
  for (int i = 0; i < c->redirects; i++)
    if (c->old[i]) c->old[i]->c = NULL;
  if (c->link) c->link->c = NULL;
  peer_close(c->peer);
  json_decref(c->config);
  free(c->token);
  free(c);
}

static const struct wsc_handlers handlers = {ws_open, ws_message, ws_close};

int caller_connected(const struct caller *c) { return c->connected; }
const char *caller_call_id(const struct caller *c) { return c->call_id; }
const char *caller_resume_secret(const struct caller *c) { return c->resume_secret; }
struct peer *caller_peer(struct caller *c) { return c->peer; }

void caller_counters(const struct caller *c, struct peer_counters *out) {
  if (c->peer) peer_counters(c->peer, out);
  else *out = c->final;
}

int caller_local_ip(const char *host, char *out, size_t cap) {
  struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
  if (getaddrinfo(host, "9", &hints, &res) || !res) return -EHOSTUNREACH;
  int rc = -EHOSTUNREACH;
  for (struct addrinfo *ai = res; ai && rc; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    /* connect() on UDP sends nothing: it only asks the kernel for the route. */
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
      const void *a = ss.ss_family == AF_INET6 ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                               : (void *)&((struct sockaddr_in *)&ss)->sin_addr;
      if (inet_ntop(ss.ss_family, a, out, (socklen_t)cap)) rc = 0;
    }
    close(fd);
  }
  freeaddrinfo(res);
  return rc;
}
