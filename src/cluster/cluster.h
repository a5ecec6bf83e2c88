/*
 * cluster: the nodes of a tingshuo cluster, as this node sees them through
 * Redis (docs/cluster.md).
 *
 * Once a second the node writes its own entry (id, public URL, media
 * address, version, capacity, live load, draining) with a short expiry and
 * reads every live node's, so that placing a call never waits on Redis: it
 * reads a list at most about a second old. Finding the node of a call being
 * resumed is the one question that waits for an answer.
 *
 * Everything runs on the control loop (hiredis's asynchronous API through
 * its libuv adapter). When Redis cannot be reached the node works alone:
 * calls are placed here, nothing that runs is touched, and it connects
 * again with a growing pause.
 */
#ifndef TS_CLUSTER_CLUSTER_H
#define TS_CLUSTER_CLUSTER_H

#include <stddef.h>
#include <uv.h>

#include "core/config.h"

struct cluster;
struct prom_buf;

/* Where a new call goes. */
enum cluster_placement {
  CLUSTER_HERE,  /* this node: alone, tied for least loaded, or Redis unknown */
  CLUSTER_THERE, /* another node, whose public URL is given */
  CLUSTER_FULL,  /* every live node is full or draining */
};

/* What the node reports of itself, asked on every tick. */
struct cluster_local {
  void *user;
  /* The calls in progress on this node. */
  int (*calls)(void *user);
  /* 1 once the node drains (NULL: cluster_set_draining decides). */
  int (*draining)(void *user);
  /* Calls emit(cl, id) for each call in progress (to register them again after an outage). */
  void (*each_call)(void *user, struct cluster *cl, void (*emit)(struct cluster *, const char *));
};

/* *out = NULL (and 0) when cluster_redis_url is empty: a single node. -EINVAL with `err` for
 * a URL or setting that cannot work. `http_url` and `https_url` are where the server listens
 * (its bound ports, for a listen port of 0; "" or NULL when none). Nothing is connected until
 * cluster_start. */
int cluster_new(struct cluster **out, uv_loop_t *loop, const struct config *cfg,
                const char *http_url, const char *https_url, char *err, size_t errlen);
void cluster_set_local(struct cluster *cl, const struct cluster_local *local);
/* Registers and starts the once-a-second tick. */
int cluster_start(struct cluster *cl);
/* Leaves the registry (best effort, at once) and closes every handle; the loop must run. */
void cluster_stop(struct cluster *cl);
/* Stops if not done yet and frees; the loop must have run the closes (or not be run again). */
void cluster_free(struct cluster *cl);

/* A draining node is left out of placement, its own included. */
void cluster_set_draining(struct cluster *cl, int draining);

/*
 * Where a new call should go, from the list of the last tick, counting the
 * callers this node sent to each node that its last count could not include. With
 * CLUSTER_THERE `url` gets that node's public URL and the placement is
 * counted for it.
 */
enum cluster_placement cluster_place(struct cluster *cl, char *url, size_t cap);

/* The call registry used to resume a call on whichever node holds it. */
void cluster_call_started(struct cluster *cl, const char *call_id);
void cluster_call_ended(struct cluster *cl, const char *call_id);

/* url: the public URL of the live node that holds the call; NULL when none is known. */
typedef void (*cluster_locate_cb)(void *arg, const char *url);
/* Asks Redis which node holds `call_id`; cb is called exactly once, later (also when the
 * cluster stops meanwhile, with NULL). A negative errno (and no call) when Redis is down. */
int cluster_locate(struct cluster *cl, const char *call_id, cluster_locate_cb cb, void *arg);

/* A redirect was sent ("placement" or "resume"), for /metrics. */
void cluster_count_redirect(struct cluster *cl, const char *reason);

const char *cluster_node_id(const struct cluster *cl);
const char *cluster_public_url(const struct cluster *cl);
/* 1 when connected to Redis and the last node list arrived within the expiry. */
int cluster_redis_up(const struct cluster *cl);
/* Live nodes in the last list (this one included once registered). */
int cluster_nodes(const struct cluster *cl);

/* tingshuo_cluster_nodes, tingshuo_cluster_redis_up, tingshuo_cluster_redirects_total. */
void cluster_write_metrics(const struct cluster *cl, struct prom_buf *b);

/* Parses redis://[[user]:password@]host[:port][/db]; 0 or -EINVAL with `err`. */
struct cluster_redis_addr {
  char host[256];
  int port;
  char user[128];
  char password[256];
  int db;
};
int cluster_parse_url(const char *url, struct cluster_redis_addr *a, char *err, size_t errlen);

/* This node's id and public URL when the config leaves them empty (host name and HTTP port;
 * ws[s]://announce-or-listen-address:port/ws). A port of 0 is taken from the config. */
void cluster_default_id(const struct config *cfg, int http_port, char *out, size_t cap);
void cluster_default_url(const struct config *cfg, int http_port, int https_port, char *out,
                         size_t cap);

#endif
