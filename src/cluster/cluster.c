/*
 * The cluster registry on Redis.
 *
 * Why Redis and why this shape: operators already run it, its key expiry is
 * exactly the failure detector a registry needs (a node that stops
 * refreshing disappears by itself, whether it crashed or lost its network),
 * and one pipelined round trip a second carries both the node's own entry
 * and the whole list. Placement then reads memory only, so Redis being slow
 * or gone never delays an answer; the worst it does is make placement local,
 * as on a single node.
 *
 * Keys (docs/cluster.md):
 *   tingshuo:node:<id>   hash, expires after NODE_TTL_S unless refreshed
 *   tingshuo:nodes       set of ids; members whose hash expired are removed
 *   tingshuo:call:<id>   the node id that holds a call, while it runs
 *
 * Redis is never trusted to answer: a tick whose replies have not come
 * back within REPLY_TIMEOUT_MS drops the connection, and connecting again
 * waits 0.5, 1, 2, 4, then 5 s between tries. A state change is logged
 * once. A host name in the URL is resolved with uv_getaddrinfo first,
 * since hiredis would resolve it on the loop.
 */
#include "cluster/cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#pragma GCC diagnostic pop

#include "core/log.h"
#include "core/prom.h"

#define TICK_MS 1000
#define NODE_TTL_S 3
#define REPLY_TIMEOUT_MS 2000
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 5000
#define MAX_NODES 256
/* Calls sent to a node that its own count may not show yet: at most this many remembered. */
#define SENT_MAX 128
/* A node's count includes a caller we sent it this long before the node wrote it (the
 * caller's second WebSocket and offer take a few ms); and anything older than SENT_FORGET_MS,
 * whatever the clocks say. */
#define SENT_ARRIVAL_MS 250
#define SENT_FORGET_MS 5000
/* A call's key outlives it by this much when max_call_s bounds it; 1 day when nothing does. */
#define CALL_KEY_SLACK_S 60
#define CALL_KEY_UNBOUNDED_S 86400

/*
 * Reads every live node in one round trip, dropping set members whose hash has expired. A
 * hash with less than ARGV[2] ms to live has missed a refresh or more: its node is left out
 * already, so that a dead node is out of the lists within NODE_TTL_S of its last refresh
 * (read every TICK_MS), on Redis's clock alone. One late refresh is forgiven.
 */
static const char READ_NODES_LUA[] =
    "local out = {}\n"
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  local key = ARGV[1] .. id\n"
    "  local h = redis.call('HGETALL', key)\n"
    "  if #h == 0 then redis.call('SREM', KEYS[1], id)\n"
    "  elseif redis.call('PTTL', key) > tonumber(ARGV[2]) then out[#out + 1] = h end\n"
    "end\n"
    "return out\n";
/* A node in the list was refreshed within the last two ticks. */
#define LIVE_PTTL_MS (NODE_TTL_S * 1000 - 2 * TICK_MS)

enum redis_state { R_DOWN, R_RESOLVING, R_CONNECTING, R_UP };

struct node {
  char id[128];
  char url[1024];
  int calls, max_calls, draining;
  int64_t updated;          /* when it wrote `calls` (Unix ms, its clock) */
  int64_t sent[SENT_MAX];   /* when we sent it callers it had not counted then, oldest first */
  int nsent;
};

/* An address lookup in flight; orphaned (cl = NULL) when the cluster stops first. */
struct resolve {
  uv_getaddrinfo_t req;
  struct cluster *cl;
};

struct cluster {
  uv_loop_t *loop;
  const struct config *cfg;
  struct cluster_redis_addr addr;
  char id[128];
  char url[1024];
  char media[256];
  char node_key[160];
  struct cluster_local local;
  int draining;
  int stopped;

  uv_timer_t tick;
  int tick_open;
  redisAsyncContext *ac;
  redisAsyncContext *closing_ac; /* leaving: disconnecting once its last replies are in */
  enum redis_state state;
  int logged_up; /* the last state logged: 1 up, 0 down, -1 nothing yet */
  uint64_t state_since, retry_at, backoff_ms;
  uint64_t tick_sent_ms; /* the pipeline in flight since then; 0 when none */
  struct resolve *resolving;

  struct node nodes[MAX_NODES];
  struct node fresh[MAX_NODES]; /* the next list, being parsed */
  int nnodes;
  uint64_t list_at; /* uv_now of the last list; 0 = never */
  uint64_t redirects_placement, redirects_resume;
};

/* --- configuration ------------------------------------------------------------------------- */

static int fail(char *err, size_t errlen, const char *what) {
  snprintf(err, errlen, "cluster_redis_url: %s", what);
  return -EINVAL;
}

int cluster_parse_url(const char *url, struct cluster_redis_addr *a, char *err, size_t errlen) {
  memset(a, 0, sizeof *a);
  a->port = 6379;
  if (strncmp(url, "rediss://", 9) == 0)
    return fail(err, errlen, "TLS (rediss://) is not supported by this hiredis; use redis://");
  if (strncmp(url, "redis://", 8) != 0) return fail(err, errlen, "must start with redis://");
  const char *p = url + 8, *end = p + strcspn(p, "/");
  const char *at = memchr(p, '@', (size_t)(end - p));
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *pw = colon ? colon + 1 : p;
    size_t ulen = colon ? (size_t)(colon - p) : 0, plen = (size_t)(at - pw);
    if (ulen >= sizeof a->user || plen >= sizeof a->password)
      return fail(err, errlen, "user or password too long");
    memcpy(a->user, p, ulen);
    memcpy(a->password, pw, plen);
    p = at + 1;
  }
  const char *hend = end, *port = NULL;
  if (*p == '[') { /* [IPv6]:port */
    const char *rb = memchr(p, ']', (size_t)(end - p));
    if (!rb) return fail(err, errlen, "unclosed [ in the host");
    p++;
    hend = rb;
    if (rb + 1 < end && rb[1] == ':') port = rb + 2;
  } else {
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (colon) hend = colon, port = colon + 1;
  }
  if (hend == p || (size_t)(hend - p) >= sizeof a->host) return fail(err, errlen, "bad host");
  memcpy(a->host, p, (size_t)(hend - p));
  if (port) {
    char *stop;
    long v = strtol(port, &stop, 10);
    if (stop == port || stop != end || v < 1 || v > 65535) return fail(err, errlen, "bad port");
    a->port = (int)v;
  }
  if (*end == '/' && end[1]) {
    char *stop;
    long v = strtol(end + 1, &stop, 10);
    if (*stop || v < 0 || v > 1000000) return fail(err, errlen, "the path must be a database number");
    a->db = (int)v;
  }
  return 0;
}

/* "host:port" → its port, or 0. */
static int listen_port(const char *listen) {
  const char *colon = strrchr(listen, ':');
  long v = colon ? strtol(colon + 1, NULL, 10) : 0;
  return v > 0 && v < 65536 ? (int)v : 0;
}

/* The host part of "host:port" (brackets dropped), "" when it is a wildcard. */
static void listen_host(const char *listen, char *out, size_t cap) {
  const char *colon = strrchr(listen, ':');
  size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
  if (n >= 2 && listen[0] == '[') listen++, n -= 2;
  snprintf(out, cap, "%.*s", (int)n, listen);
  if (!strcmp(out, "0.0.0.0") || !strcmp(out, "::") || !strcmp(out, "*")) out[0] = '\0';
}

static void host_name(char *out, size_t cap) {
  if (gethostname(out, cap - 1)) snprintf(out, cap, "localhost");
  out[cap - 1] = '\0';
}

void cluster_default_id(const struct config *cfg, int http_port, char *out, size_t cap) {
  char host[128];
  host_name(host, sizeof host);
  snprintf(out, cap, "%s:%d", host, http_port ? http_port : listen_port(cfg->listen));
}

void cluster_default_url(const struct config *cfg, int http_port, int https_port, char *out,
                         size_t cap) {
  int tls = cfg->https_listen[0] != '\0';
  const char *listen = tls ? cfg->https_listen : cfg->listen;
  int port = tls ? https_port : http_port;
  char host[256];
  snprintf(host, sizeof host, "%.*s", (int)strcspn(cfg->announce_address, ", "),
           cfg->announce_address);
  if (!host[0]) listen_host(listen, host, sizeof host);
  if (!host[0]) host_name(host, sizeof host);
  int v6 = strchr(host, ':') != NULL;
  snprintf(out, cap, "%s://%s%s%s:%d/ws", tls ? "wss" : "ws", v6 ? "[" : "", host, v6 ? "]" : "",
           port ? port : listen_port(listen));
}

int cluster_new(struct cluster **out, uv_loop_t *loop, const struct config *cfg,
                const char *http_url, const char *https_url, char *err, size_t errlen) {
  *out = NULL;
  if (!cfg->cluster_redis_url[0]) return 0;
  struct cluster_redis_addr addr;
  int rc = cluster_parse_url(cfg->cluster_redis_url, &addr, err, errlen);
  if (rc) return rc;
  struct cluster *cl = calloc(1, sizeof *cl);
  if (!cl) return -ENOMEM;
  cl->loop = loop;
  cl->cfg = cfg;
  cl->addr = addr;
  cl->logged_up = -1;
  int http_port = http_url ? listen_port(http_url) : 0;
  int https_port = https_url ? listen_port(https_url) : 0;
  if (cfg->node_id[0]) snprintf(cl->id, sizeof cl->id, "%s", cfg->node_id);
  else cluster_default_id(cfg, http_port, cl->id, sizeof cl->id);
  if (cfg->public_url[0]) snprintf(cl->url, sizeof cl->url, "%s", cfg->public_url);
  else cluster_default_url(cfg, http_port, https_port, cl->url, sizeof cl->url);
  snprintf(cl->media, sizeof cl->media, "%.255s",
           cfg->announce_address[0] ? cfg->announce_address : cfg->media_address);
  snprintf(cl->node_key, sizeof cl->node_key, "tingshuo:node:%s", cl->id);
  *out = cl;
  return 0;
}

void cluster_set_local(struct cluster *cl, const struct cluster_local *local) {
  if (cl) cl->local = *local;
}

void cluster_set_draining(struct cluster *cl, int draining) {
  if (cl) cl->draining = draining ? 1 : 0;
}

const char *cluster_node_id(const struct cluster *cl) { return cl->id; }
const char *cluster_public_url(const struct cluster *cl) { return cl->url; }

static int local_calls(const struct cluster *cl) {
  return cl->local.calls ? cl->local.calls(cl->local.user) : 0;
}

static int local_draining(const struct cluster *cl) {
  return cl->local.draining ? cl->local.draining(cl->local.user) != 0 : cl->draining;
}

/* --- the connection ---------------------------------------------------------------------- */

static void note_state(struct cluster *cl, int up, const char *why) {
  if (cl->logged_up == up) return;
  cl->logged_up = up;
  if (up)
    log_info("cluster", "Redis %s:%d reachable: node \"%s\" registered at %s", cl->addr.host,
             cl->addr.port, cl->id, cl->url);
  else
    log_warn("cluster", "Redis %s:%d unreachable (%s): placing calls here until it is back",
             cl->addr.host, cl->addr.port, why);
}

static void go_down(struct cluster *cl, const char *why) {
  cl->state = R_DOWN;
  cl->tick_sent_ms = 0;
  cl->nnodes = 0;
  cl->list_at = 0;
  uint64_t now = uv_now(cl->loop);
  cl->backoff_ms = cl->backoff_ms ? cl->backoff_ms * 2 : BACKOFF_MIN_MS;
  if (cl->backoff_ms > BACKOFF_MAX_MS) cl->backoff_ms = BACKOFF_MAX_MS;
  cl->retry_at = now + cl->backoff_ms;
  note_state(cl, 0, why);
}

/* Drops the connection we hold; hiredis answers its pending callbacks with NULL. */
static void drop(struct cluster *cl, const char *why) {
  redisAsyncContext *ac = cl->ac;
  cl->ac = NULL;
  if (ac) redisAsyncFree(ac);
  go_down(cl, why);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  struct cluster *cl = ac->data;
  if (cl && cl->closing_ac == ac) cl->closing_ac = NULL;
  if (!cl || cl->ac != ac) return; /* one we dropped ourselves */
  cl->ac = NULL;
  go_down(cl, status == REDIS_OK ? "closed" : ac->errstr[0] ? ac->errstr : "connection lost");
}

static void send_tick(struct cluster *cl);
static void register_calls(struct cluster *cl);

static void on_connect(const redisAsyncContext *ac, int status) {
  struct cluster *cl = ac->data;
  if (!cl || cl->ac != ac) return;
  if (status != REDIS_OK) { /* hiredis frees the context after this returns */
    cl->ac = NULL;
    go_down(cl, ac->errstr[0] ? ac->errstr : "cannot connect");
    return;
  }
  cl->state = R_UP;
  cl->state_since = uv_now(cl->loop);
  register_calls(cl);
  send_tick(cl);
}

/* An AUTH or SELECT refused: the connection is of no use. */
static void on_setup_reply(redisAsyncContext *ac, void *r, void *priv) {
  struct cluster *cl = priv;
  redisReply *reply = r;
  if (!reply || reply->type != REDIS_REPLY_ERROR || cl->ac != ac) return;
  log_error("cluster", "Redis refused the connection's set-up: %s", reply->str);
  redisAsyncDisconnect(ac);
}

static void connect_to(struct cluster *cl, const char *ip) {
  redisAsyncContext *ac = redisAsyncConnect(ip, cl->addr.port);
  if (!ac || ac->err) {
    char why[160];
    snprintf(why, sizeof why, "%s", ac ? ac->errstr : "out of memory");
    if (ac) redisAsyncFree(ac);
    go_down(cl, why);
    return;
  }
  ac->data = cl;
  if (redisLibuvAttach(ac, cl->loop) != REDIS_OK) {
    redisAsyncFree(ac);
    go_down(cl, "cannot attach to the loop");
    return;
  }
  cl->ac = ac;
  cl->state = R_CONNECTING;
  cl->state_since = uv_now(cl->loop);
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  /* Queued now, written first once connected. */
  if (cl->addr.user[0])
    redisAsyncCommand(ac, on_setup_reply, cl, "AUTH %s %s", cl->addr.user, cl->addr.password);
  else if (cl->addr.password[0])
    redisAsyncCommand(ac, on_setup_reply, cl, "AUTH %s", cl->addr.password);
  if (cl->addr.db) redisAsyncCommand(ac, on_setup_reply, cl, "SELECT %d", cl->addr.db);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  struct resolve *r = req->data;
  struct cluster *cl = r->cl;
  char ip[64] = "";
  if (status == 0 && res) {
    if (res->ai_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof ip);
    else
      uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof ip);
  }
  uv_freeaddrinfo(res);
  free(r);
  if (!cl) return; /* stopped meanwhile */
  cl->resolving = NULL;
  if (!ip[0]) go_down(cl, status ? uv_strerror(status) : "no address");
  else connect_to(cl, ip);
}

static void start_connect(struct cluster *cl) {
  struct in6_addr a6;
  struct in_addr a4;
  if (inet_pton(AF_INET, cl->addr.host, &a4) == 1 || inet_pton(AF_INET6, cl->addr.host, &a6) == 1) {
    connect_to(cl, cl->addr.host);
    return;
  }
  struct resolve *r = calloc(1, sizeof *r);
  if (!r) {
    go_down(cl, "out of memory");
    return;
  }
  r->cl = cl;
  r->req.data = r;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
  int rc = uv_getaddrinfo(cl->loop, &r->req, on_resolved, cl->addr.host, NULL, &hints);
  if (rc) {
    free(r);
    go_down(cl, uv_strerror(rc));
    return;
  }
  cl->resolving = r;
  cl->state = R_RESOLVING;
  cl->state_since = uv_now(cl->loop);
}

/* --- the tick --------------------------------------------------------------------------------- */

static long long reply_int(const redisReply *v) {
  if (!v || v->type != REDIS_REPLY_STRING) return 0;
  return strtoll(v->str, NULL, 10);
}

/* One node's HGETALL (field, value, ...) into `n`; 0 when it has an id. */
static int parse_node(const redisReply *h, struct node *n) {
  memset(n, 0, sizeof *n);
  if (h->type != REDIS_REPLY_ARRAY) return -1;
  for (size_t i = 0; i + 1 < h->elements; i += 2) {
    const redisReply *k = h->element[i], *v = h->element[i + 1];
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
    if (!strcmp(k->str, "id")) snprintf(n->id, sizeof n->id, "%s", v->str);
    else if (!strcmp(k->str, "url")) snprintf(n->url, sizeof n->url, "%s", v->str);
    else if (!strcmp(k->str, "calls")) n->calls = (int)reply_int(v);
    else if (!strcmp(k->str, "max_calls")) n->max_calls = (int)reply_int(v);
    else if (!strcmp(k->str, "draining")) n->draining = reply_int(v) != 0;
    else if (!strcmp(k->str, "updated")) n->updated = reply_int(v);
  }
  return n->id[0] ? 0 : -1;
}

static struct node *find_node(struct node *list, int n, const char *id) {
  for (int i = 0; i < n; i++)
    if (!strcmp(list[i].id, id)) return &list[i];
  return NULL;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The callers we sent `to` that its new count cannot include yet are carried over. */
static void carry_sent(struct node *to, const struct node *old) {
  int64_t counted = to->updated - SENT_ARRIVAL_MS, forget = wall_ms() - SENT_FORGET_MS;
  for (int i = 0; i < old->nsent; i++)
    if (old->sent[i] > counted && old->sent[i] > forget) to->sent[to->nsent++] = old->sent[i];
}

/* The new list replaces the old. */
static void take_list(struct cluster *cl, const redisReply *r) {
  struct node *fresh = cl->fresh;
  int n = 0;
  for (size_t i = 0; i < r->elements && n < MAX_NODES; i++) {
    if (parse_node(r->element[i], &fresh[n])) continue;
    struct node *old = find_node(cl->nodes, cl->nnodes, fresh[n].id);
    if (old) carry_sent(&fresh[n], old);
    n++;
  }
  memcpy(cl->nodes, fresh, (size_t)n * sizeof *fresh);
  cl->nnodes = n;
  cl->list_at = uv_now(cl->loop);
}

static void on_list(redisAsyncContext *ac, void *r, void *priv) {
  struct cluster *cl = priv;
  redisReply *reply = r;
  if (!reply || cl->ac != ac) return; /* dropped: go_down said so */
  cl->tick_sent_ms = 0;
  if (reply->type != REDIS_REPLY_ARRAY) {
    if (reply->type == REDIS_REPLY_ERROR) log_warn("cluster", "reading the nodes: %s", reply->str);
    return;
  }
  cl->backoff_ms = 0;
  take_list(cl, reply);
  note_state(cl, 1, NULL);
}

static void on_write(redisAsyncContext *ac, void *r, void *priv) {
  struct cluster *cl = priv;
  redisReply *reply = r;
  if (reply && reply->type == REDIS_REPLY_ERROR && cl->ac == ac)
    log_warn("cluster", "Redis: %s", reply->str);
}

/* Our entry, its expiry and our place in the set, then the list: one pipeline. */
static void send_tick(struct cluster *cl) {
  char calls[16], max[16], updated[24];
  snprintf(calls, sizeof calls, "%d", local_calls(cl));
  snprintf(max, sizeof max, "%d", cl->cfg->max_calls);
  snprintf(updated, sizeof updated, "%lld", (long long)wall_ms());
  const char *hset[] = {"HSET", cl->node_key, "id", cl->id, "url", cl->url, "media", cl->media,
                        "version", TINGSHUO_VERSION, "max_calls", max, "calls", calls,
                        "draining", local_draining(cl) ? "1" : "0", "updated", updated};
  redisAsyncCommandArgv(cl->ac, on_write, cl, (int)(sizeof hset / sizeof hset[0]), hset, NULL);
  redisAsyncCommand(cl->ac, on_write, cl, "EXPIRE %s %d", cl->node_key, NODE_TTL_S);
  redisAsyncCommand(cl->ac, on_write, cl, "SADD tingshuo:nodes %s", cl->id);
  redisAsyncCommand(cl->ac, on_list, cl, "EVAL %s 1 tingshuo:nodes tingshuo:node: %d",
                    READ_NODES_LUA, LIVE_PTTL_MS);
  cl->tick_sent_ms = uv_now(cl->loop);
}

static void on_tick(uv_timer_t *t) {
  struct cluster *cl = t->data;
  uint64_t now = uv_now(cl->loop);
  switch (cl->state) {
  case R_DOWN:
    if (now >= cl->retry_at) start_connect(cl);
    break;
  case R_RESOLVING:
    break; /* getaddrinfo has its own timeouts */
  case R_CONNECTING:
    if (now - cl->state_since > REPLY_TIMEOUT_MS) drop(cl, "connect timed out");
    break;
  case R_UP:
    if (cl->tick_sent_ms && now - cl->tick_sent_ms > REPLY_TIMEOUT_MS) drop(cl, "no reply in time");
    else if (!cl->tick_sent_ms) send_tick(cl);
    break;
  }
}

int cluster_start(struct cluster *cl) {
  uv_timer_init(cl->loop, &cl->tick);
  cl->tick.data = cl;
  cl->tick_open = 1;
  uv_timer_start(&cl->tick, on_tick, TICK_MS, TICK_MS);
  log_info("cluster", "node \"%s\" (%s) joining the cluster on Redis %s:%d", cl->id, cl->url,
           cl->addr.host, cl->addr.port);
  start_connect(cl);
  return 0;
}

void cluster_stop(struct cluster *cl) {
  if (!cl || cl->stopped) return;
  cl->stopped = 1;
  if (cl->tick_open) uv_close((uv_handle_t *)&cl->tick, NULL);
  cl->tick_open = 0;
  if (cl->resolving) cl->resolving->cl = NULL;
  cl->resolving = NULL;
  redisAsyncContext *ac = cl->ac;
  int up = ac && cl->state == R_UP;
  cl->ac = NULL;
  cl->state = R_DOWN;
  if (up && !cl->tick_sent_ms) {
    /* Redis answers: leave at once rather than in NODE_TTL_S, and disconnect once the replies
     * are in. cluster_free ends it anyway if they never come. */
    redisAsyncCommand(ac, NULL, NULL, "SREM tingshuo:nodes %s", cl->id);
    redisAsyncCommand(ac, NULL, NULL, "DEL %s", cl->node_key);
    cl->closing_ac = ac;
    redisAsyncDisconnect(ac);
  } else if (ac) {
    redisAsyncFree(ac); /* a Redis that does not answer must not hold the exit up */
  }
}

void cluster_free(struct cluster *cl) {
  if (!cl) return;
  cluster_stop(cl);
  if (cl->closing_ac) {
    redisAsyncContext *ac = cl->closing_ac;
    cl->closing_ac = NULL;
    redisAsyncFree(ac);
  }
  free(cl);
}

/* --- placement and calls ------------------------------------------------------------------- */

int cluster_redis_up(const struct cluster *cl) {
  return cl->state == R_UP && cl->list_at &&
         uv_now(cl->loop) - cl->list_at <= (uint64_t)NODE_TTL_S * 1000;
}

int cluster_nodes(const struct cluster *cl) { return cluster_redis_up(cl) ? cl->nnodes : 0; }

/* a.calls / a.max < b.calls / b.max, without division. */
static int less_loaded(long long ac, long long am, long long bc, long long bm) {
  return ac * bm < bc * am;
}

enum cluster_placement cluster_place(struct cluster *cl, char *url, size_t cap) {
  if (!cluster_redis_up(cl)) return CLUSTER_HERE;
  int mine = local_calls(cl), max = cl->cfg->max_calls;
  int here_ok = !local_draining(cl) && mine < max;
  struct node *best = NULL;
  long long bc = 0, bm = 1;
  for (int i = 0; i < cl->nnodes; i++) {
    struct node *n = &cl->nodes[i];
    int load = n->calls + n->nsent;
    if (!strcmp(n->id, cl->id) || n->draining || !n->url[0] || n->max_calls <= 0 ||
        load >= n->max_calls)
      continue;
    if (!best || less_loaded(load, n->max_calls, bc, bm)) best = n, bc = load, bm = n->max_calls;
  }
  if (here_ok && (!best || !less_loaded(bc, bm, mine, max))) return CLUSTER_HERE;
  if (!best) return here_ok ? CLUSTER_HERE : CLUSTER_FULL;
  if (best->nsent == SENT_MAX) /* the oldest is the likeliest to be counted by now */
    memmove(best->sent, best->sent + 1, (SENT_MAX - 1) * sizeof best->sent[0]);
  else
    best->nsent++;
  best->sent[best->nsent - 1] = wall_ms();
  snprintf(url, cap, "%s", best->url);
  return CLUSTER_THERE;
}

static long call_key_ttl(const struct cluster *cl) {
  if (!cl->cfg->max_call_s) return CALL_KEY_UNBOUNDED_S;
  return (long)cl->cfg->max_call_s + cl->cfg->resume_timeout_ms / 1000 + CALL_KEY_SLACK_S;
}

static void emit_call(struct cluster *cl, const char *call_id) {
  redisAsyncCommand(cl->ac, on_write, cl, "SET tingshuo:call:%s %s EX %ld", call_id, cl->id,
                    call_key_ttl(cl));
}

/* After (re)connecting: the calls that began while Redis was away become findable. */
static void register_calls(struct cluster *cl) {
  if (cl->local.each_call) cl->local.each_call(cl->local.user, cl, emit_call);
}

void cluster_call_started(struct cluster *cl, const char *call_id) {
  if (cl && cl->ac && cl->state == R_UP) emit_call(cl, call_id);
}

void cluster_call_ended(struct cluster *cl, const char *call_id) {
  if (cl && cl->ac && cl->state == R_UP)
    redisAsyncCommand(cl->ac, on_write, cl, "DEL tingshuo:call:%s", call_id);
}

struct locate {
  struct cluster *cl;
  cluster_locate_cb cb;
  void *arg;
};

static void on_located(redisAsyncContext *ac, void *r, void *priv) {
  struct locate *lo = priv;
  redisReply *reply = r;
  const char *url = NULL;
  struct cluster *cl = lo->cl;
  if (reply && reply->type == REDIS_REPLY_STRING && cl->ac == ac) {
    struct node *n = find_node(cl->nodes, cl->nnodes, reply->str);
    if (n && strcmp(n->id, cl->id) != 0 && n->url[0]) url = n->url;
  }
  lo->cb(lo->arg, url);
  free(lo);
}

int cluster_locate(struct cluster *cl, const char *call_id, cluster_locate_cb cb, void *arg) {
  if (!cl->ac || cl->state != R_UP) return -ENOTCONN;
  struct locate *lo = malloc(sizeof *lo);
  if (!lo) return -ENOMEM;
  *lo = (struct locate){cl, cb, arg};
  if (redisAsyncCommand(cl->ac, on_located, lo, "GET tingshuo:call:%s", call_id) != REDIS_OK) {
    free(lo);
    return -EIO;
  }
  return 0;
}

void cluster_count_redirect(struct cluster *cl, const char *reason) {
  if (!strcmp(reason, "resume")) cl->redirects_resume++;
  else cl->redirects_placement++;
}

void cluster_write_metrics(const struct cluster *cl, struct prom_buf *b) {
  prom_family(b, "tingshuo_cluster_nodes", "gauge",
              "Live nodes in the cluster as this node last read them (itself included).");
  prom_sample(b, "tingshuo_cluster_nodes", (double)cluster_nodes(cl), NULL);
  prom_family(b, "tingshuo_cluster_redis_up", "gauge",
              "1 when the cluster's Redis answered within the node expiry, else 0.");
  prom_sample(b, "tingshuo_cluster_redis_up", (double)cluster_redis_up(cl), NULL);
  prom_family(b, "tingshuo_cluster_redirects_total", "counter",
              "Callers sent to another node: placement of a new call, or resume of a call there.");
  prom_sample(b, "tingshuo_cluster_redirects_total", (double)cl->redirects_placement, "reason",
              "placement", NULL);
  prom_sample(b, "tingshuo_cluster_redirects_total", (double)cl->redirects_resume, "reason",
              "resume", NULL);
}
