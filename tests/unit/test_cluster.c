/*
 * The cluster registry against a real redis-server, started here on a free
 * loopback port with nothing saved (no system service is used). The test
 * kills it when it ends, and the kernel does if the test dies first
 * (PR_SET_PDEATHSIG).
 *
 * Other nodes are written into Redis by hand, as a node would write them,
 * so that their load, their draining and their death (an entry that is no
 * longer refreshed) are under the test's control. A synchronous hiredis
 * connection reads what the node under test wrote.
 */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <setjmp.h>
#include <cmocka.h>

#include "cluster/cluster.h"
#include "core/config.h"
#include "core/log.h"

struct fx {
  uv_loop_t loop;
  struct config cfg;
  struct cluster *cl;
  int port;
  pid_t redis;
  redisContext *rc;
  int calls;     /* what the node reports as its calls in progress */
  int draining;
  const char *live_call; /* each_call reports this one when set */
};

/* --- redis-server ------------------------------------------------------------------------- */

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len))
    return -1;
  close(fd);
  return ntohs(a.sin_port);
}

static pid_t start_redis(int port) {
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    int null = open("/dev/null", 1);
    if (null >= 0) dup2(null, 1);
    execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", (char *)NULL);
    _exit(127);
  }
  return pid;
}

static void stop_redis(struct fx *f) {
  if (f->rc) redisFree(f->rc);
  f->rc = NULL;
  if (f->redis > 0) {
    kill(f->redis, SIGKILL);
    waitpid(f->redis, NULL, 0);
  }
  f->redis = 0;
}

/* Starts it and connects the test's own client, waiting up to 5 s for it to listen. */
static int up_redis(struct fx *f) {
  f->redis = start_redis(f->port);
  for (int i = 0; i < 100 && f->redis > 0; i++) {
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", f->port, tv);
    if (c && !c->err) {
      redisReply *r = redisCommand(c, "PING");
      int ok = r && r->type == REDIS_REPLY_STATUS;
      freeReplyObject(r);
      if (ok) {
        f->rc = c;
        return 0;
      }
    }
    if (c) redisFree(c);
    usleep(50000);
  }
  return -1;
}

/* A command on the test's client; the reply (free it) or NULL. */
static redisReply *cmd(struct fx *f, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(f->rc, fmt, ap);
  va_end(ap);
  return r;
}

static void run(struct fx *f, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  freeReplyObject(redisvCommand(f->rc, fmt, ap));
  va_end(ap);
}

/* Another node, as it registers itself; it stays until its entry expires (ttl_s). */
static void fake_node(struct fx *f, const char *id, int calls, int max, int draining, int ttl_s) {
  char url[64];
  snprintf(url, sizeof url, "ws://%s.example:8080/ws", id);
  run(f, "HSET tingshuo:node:%s id %s url %s media 192.0.2.1 version test max_calls %d calls %d "
         "draining %d updated 0", id, id, url, max, calls, draining);
  run(f, "EXPIRE tingshuo:node:%s %d", id, ttl_s);
  run(f, "SADD tingshuo:nodes %s", id);
}

/* --- the loop ---------------------------------------------------------------------------- */

static void on_stop(uv_timer_t *t) { uv_stop(t->loop); }

static void run_loop(struct fx *f, int ms) {
  uv_timer_t t;
  uv_timer_init(&f->loop, &t);
  uv_timer_start(&t, on_stop, (uint64_t)ms, 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* Runs the loop until cond(f) holds, at most `ms`; returns cond(f). */
static int run_until(struct fx *f, int (*cond)(struct fx *), int ms) {
  for (int waited = 0; waited < ms && !cond(f); waited += 100) run_loop(f, 100);
  return cond(f);
}

static int is_up(struct fx *f) { return cluster_redis_up(f->cl); }
static int is_down(struct fx *f) { return !cluster_redis_up(f->cl); }
static int sees_three(struct fx *f) { return cluster_nodes(f->cl) == 3; }
static int sees_four(struct fx *f) { return cluster_nodes(f->cl) == 4; }
static int sees_one(struct fx *f) { return cluster_nodes(f->cl) == 1; }

static int local_calls(void *user) { return ((struct fx *)user)->calls; }
static int local_draining(void *user) { return ((struct fx *)user)->draining; }
static void local_each(void *user, struct cluster *cl,
                       void (*emit)(struct cluster *, const char *)) {
  struct fx *f = user;
  if (f->live_call) emit(cl, f->live_call);
}

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof *f);
  f->port = free_port();
  if (f->port <= 0 || up_redis(f)) {
    fprintf(stderr, "redis-server could not be started on port %d\n", f->port);
    stop_redis(f);
    free(f);
    return -1;
  }
  uv_loop_init(&f->loop);
  config_defaults(&f->cfg);
  snprintf(f->cfg.cluster_redis_url, sizeof f->cfg.cluster_redis_url, "redis://127.0.0.1:%d",
           f->port);
  snprintf(f->cfg.node_id, sizeof f->cfg.node_id, "a");
  snprintf(f->cfg.public_url, sizeof f->cfg.public_url, "ws://a.example:8080/ws");
  f->cfg.max_calls = 10;
  char err[200];
  assert_int_equal(cluster_new(&f->cl, &f->loop, &f->cfg, NULL, NULL, err, sizeof err), 0);
  assert_non_null(f->cl);
  struct cluster_local local = {.user = f, .calls = local_calls, .draining = local_draining,
                                .each_call = local_each};
  cluster_set_local(f->cl, &local);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  cluster_stop(f->cl);
  run_loop(f, 50);
  cluster_free(f->cl);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  int busy = uv_loop_close(&f->loop);
  stop_redis(f);
  free(f);
  return busy ? -1 : 0;
}

static int start_up(struct fx *f) {
  cluster_start(f->cl);
  return run_until(f, is_up, 5000);
}

/* --- tests ------------------------------------------------------------------------------- */

static void registration_appears_with_its_fields_and_expiry(void **state) {
  struct fx *f = *state;
  f->calls = 3;
  assert_true(start_up(f));
  redisReply *r = cmd(f, "HGETALL tingshuo:node:a");
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  const char *want[][2] = {{"id", "a"}, {"url", "ws://a.example:8080/ws"}, {"max_calls", "10"},
                           {"calls", "3"}, {"draining", "0"}, {"version", TINGSHUO_VERSION}};
  for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
    int found = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
      if (!strcmp(r->element[i]->str, want[w][0])) {
        assert_string_equal(r->element[i + 1]->str, want[w][1]);
        found = 1;
      }
    assert_true(found);
  }
  freeReplyObject(r);
  r = cmd(f, "TTL tingshuo:node:a");
  assert_true(r->integer >= 1 && r->integer <= 3);
  freeReplyObject(r);
  r = cmd(f, "SISMEMBER tingshuo:nodes a");
  assert_int_equal(r->integer, 1);
  freeReplyObject(r);
  /* The live load and draining follow on the next ticks. */
  f->calls = 7;
  f->draining = 1;
  run_loop(f, 1300);
  r = cmd(f, "HMGET tingshuo:node:a calls draining");
  assert_string_equal(r->element[0]->str, "7");
  assert_string_equal(r->element[1]->str, "1");
  freeReplyObject(r);
  /* Leaving: the entry goes at once. */
  cluster_stop(f->cl);
  run_loop(f, 200);
  r = cmd(f, "EXISTS tingshuo:node:a");
  assert_int_equal(r->integer, 0);
  freeReplyObject(r);
}

static int b_left_the_set(struct fx *f) {
  redisReply *r = cmd(f, "SISMEMBER tingshuo:nodes b");
  int gone = r && r->type == REDIS_REPLY_INTEGER && r->integer == 0;
  freeReplyObject(r);
  return gone;
}

static void a_node_whose_refresh_stops_drops_out(void **state) {
  struct fx *f = *state;
  assert_true(start_up(f));
  fake_node(f, "b", 0, 10, 0, 3);
  fake_node(f, "c", 0, 10, 0, 3);
  assert_true(run_until(f, sees_three, 3000));
  /* Neither refreshes: out of the list once they have missed refreshes (within 3 s), and
   * out of the set once their hashes have expired. */
  assert_true(run_until(f, sees_one, 5000));
  assert_true(run_until(f, b_left_the_set, 3000));
}

static void placement_picks_the_least_loaded_and_itself_on_ties(void **state) {
  struct fx *f = *state;
  char url[256];
  assert_true(start_up(f));
  fake_node(f, "b", 5, 10, 0, 30);
  fake_node(f, "c", 4, 20, 0, 30); /* 20 %: the least loaded other node */
  fake_node(f, "d", 0, 10, 1, 30); /* empty but draining */
  assert_true(run_until(f, sees_four, 3000));
  f->calls = 2; /* 20 %: a tie, kept here */
  assert_int_equal(cluster_place(f->cl, url, sizeof url), CLUSTER_HERE);
  f->calls = 3; /* 30 %: c */
  assert_int_equal(cluster_place(f->cl, url, sizeof url), CLUSTER_THERE);
  assert_string_equal(url, "ws://c.example:8080/ws");
  f->draining = 1; /* a draining node sends even a tie away */
  f->calls = 0;
  assert_int_equal(cluster_place(f->cl, url, sizeof url), CLUSTER_THERE);
  f->draining = 0;
  /* Everyone full (d draining): busy. */
  fake_node(f, "b", 10, 10, 0, 30);
  fake_node(f, "c", 20, 20, 0, 30);
  f->calls = 10;
  run_loop(f, 1100);
  assert_int_equal(cluster_place(f->cl, url, sizeof url), CLUSTER_FULL);
  /* Full here, room there. */
  fake_node(f, "b", 9, 10, 0, 30);
  run_loop(f, 1100);
  assert_int_equal(cluster_place(f->cl, url, sizeof url), CLUSTER_THERE);
  assert_string_equal(url, "ws://b.example:8080/ws");
}

static void pending_placements_spread_a_burst(void **state) {
  struct fx *f = *state;
  char url[256];
  f->cfg.max_calls = 100;
  f->calls = 20;
  assert_true(start_up(f));
  fake_node(f, "b", 0, 100, 0, 30);
  fake_node(f, "c", 0, 100, 0, 30);
  assert_true(run_until(f, sees_three, 3000));
  int to_b = 0, to_c = 0, here = 0;
  for (int i = 0; i < 60; i++) { /* all between two ticks: the list does not change */
    enum cluster_placement p = cluster_place(f->cl, url, sizeof url);
    if (p == CLUSTER_HERE) here++, f->calls++;
    else if (!strcmp(url, "ws://b.example:8080/ws")) to_b++;
    else if (!strcmp(url, "ws://c.example:8080/ws")) to_c++;
  }
  /* b and c fill up to this node's 20, then the three share the other 20 in turn. */
  assert_int_equal(to_b + to_c + here, 60);
  assert_true(to_b >= 26 && to_c >= 26);
  assert_true(abs(to_b - to_c) <= 1);
  assert_true(here >= 6 && here <= 7);
  /* What was sent still counts after the next list (b and c have not reported it yet). */
  run_loop(f, 1100);
  to_b = to_c = here = 0;
  for (int i = 0; i < 30; i++) {
    enum cluster_placement p = cluster_place(f->cl, url, sizeof url);
    if (p == CLUSTER_HERE) here++, f->calls++;
    else if (!strcmp(url, "ws://b.example:8080/ws")) to_b++;
    else to_c++;
  }
  assert_true(here >= 9 && here <= 11); /* without the carried counts: 0 here, 30 there */
  assert_true(abs(to_b - to_c) <= 1);
  /* Once b writes a count made after those callers would have arrived, they are in it: here,
   * none came, so b is empty again and takes the next call. */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  fake_node(f, "b", 0, 100, 0, 30);
  run(f, "HSET tingshuo:node:b updated %lld", (long long)ts.tv_sec * 1000 + 1000);
  run_loop(f, 1100);
  assert_int_equal(cluster_place(f->cl, url, sizeof url), CLUSTER_THERE);
  assert_string_equal(url, "ws://b.example:8080/ws");
}

static int registered(struct fx *f) {
  redisReply *r = f->rc ? cmd(f, "EXISTS tingshuo:node:a") : NULL;
  int yes = r && r->integer == 1;
  freeReplyObject(r);
  return yes;
}

static void redis_restarted_the_node_registers_again(void **state) {
  struct fx *f = *state;
  char url[256];
  f->calls = 5;
  assert_true(start_up(f));
  fake_node(f, "b", 0, 10, 0, 30);
  run_loop(f, 1100);
  assert_int_equal(cluster_place(f->cl, url, sizeof url), CLUSTER_THERE);
  f->live_call = "c0ffee"; /* began while Redis is away */
  stop_redis(f);
  assert_true(run_until(f, is_down, 5000));
  /* Meanwhile, calls are placed here. */
  assert_int_equal(cluster_place(f->cl, url, sizeof url), CLUSTER_HERE);
  cluster_call_started(f->cl, "c0ffee"); /* lost: Redis is down */
  assert_int_equal(up_redis(f), 0);
  assert_true(run_until(f, is_up, 8000));
  assert_true(registered(f));
  redisReply *r = cmd(f, "GET tingshuo:call:c0ffee");
  assert_int_equal(r->type, REDIS_REPLY_STRING);
  assert_string_equal(r->str, "a");
  freeReplyObject(r);
}

struct located {
  int calls;
  char url[256];
};

static void on_located(void *arg, const char *url) {
  struct located *l = arg;
  l->calls++;
  snprintf(l->url, sizeof l->url, "%s", url ? url : "(none)");
}

static void resume_finds_the_node_of_a_call(void **state) {
  struct fx *f = *state;
  assert_true(start_up(f));
  fake_node(f, "b", 0, 10, 0, 30);
  run_loop(f, 1100);
  run(f, "SET tingshuo:call:on-b b EX 60");
  struct located there = {0}, nowhere = {0}, here = {0};
  cluster_call_started(f->cl, "on-a");
  assert_int_equal(cluster_locate(f->cl, "on-b", on_located, &there), 0);
  assert_int_equal(cluster_locate(f->cl, "unknown", on_located, &nowhere), 0);
  assert_int_equal(cluster_locate(f->cl, "on-a", on_located, &here), 0);
  run_loop(f, 200);
  assert_int_equal(there.calls, 1);
  assert_string_equal(there.url, "ws://b.example:8080/ws");
  assert_int_equal(nowhere.calls, 1);
  assert_string_equal(nowhere.url, "(none)");
  assert_int_equal(here.calls, 1); /* ours, but not here any more: no redirect to itself */
  assert_string_equal(here.url, "(none)");
  redisReply *r = cmd(f, "TTL tingshuo:call:on-a");
  assert_true(r->integer > f->cfg.max_call_s);
  freeReplyObject(r);
  cluster_call_ended(f->cl, "on-a");
  run_loop(f, 200);
  r = cmd(f, "EXISTS tingshuo:call:on-a");
  assert_int_equal(r->integer, 0);
  freeReplyObject(r);
  /* A lookup in flight when the node stops is answered (with nothing). */
  struct located late = {0};
  assert_int_equal(cluster_locate(f->cl, "on-b", on_located, &late), 0);
  cluster_stop(f->cl);
  run_loop(f, 200);
  assert_int_equal(late.calls, 1);
}

static void redis_urls_and_defaults(void **state) {
  (void)state;
  struct cluster_redis_addr a;
  char err[200];
  assert_int_equal(cluster_parse_url("redis://h.example", &a, err, sizeof err), 0);
  assert_string_equal(a.host, "h.example");
  assert_int_equal(a.port, 6379);
  assert_int_equal(cluster_parse_url("redis://u:p%w@[::1]:7000/3", &a, err, sizeof err), 0);
  assert_string_equal(a.user, "u");
  assert_string_equal(a.password, "p%w");
  assert_string_equal(a.host, "::1");
  assert_int_equal(a.port, 7000);
  assert_int_equal(a.db, 3);
  assert_int_equal(cluster_parse_url("redis://:secret@10.0.0.1:6380", &a, err, sizeof err), 0);
  assert_string_equal(a.password, "secret");
  assert_string_equal(a.user, "");
  const char *bad[] = {"http://h", "rediss://h", "redis://", "redis://h:0", "redis://h:99999",
                       "redis://h:12x", "redis://h/db", "redis://[::1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(cluster_parse_url(bad[i], &a, err, sizeof err), -EINVAL);

  struct config cfg;
  config_defaults(&cfg);
  char url[300];
  snprintf(cfg.listen, sizeof cfg.listen, "0.0.0.0:8080");
  snprintf(cfg.announce_address, sizeof cfg.announce_address, "203.0.113.7, 10.0.0.2");
  cluster_default_url(&cfg, 0, 0, url, sizeof url);
  assert_string_equal(url, "ws://203.0.113.7:8080/ws");
  cluster_default_url(&cfg, 41234, 0, url, sizeof url); /* listen port 0: the one bound */
  assert_string_equal(url, "ws://203.0.113.7:41234/ws");
  cfg.announce_address[0] = '\0';
  snprintf(cfg.listen, sizeof cfg.listen, "10.1.2.3:9000");
  snprintf(cfg.https_listen, sizeof cfg.https_listen, "[::]:8443");
  snprintf(cfg.announce_address, sizeof cfg.announce_address, "2001:db8::1");
  cluster_default_url(&cfg, 9000, 0, url, sizeof url);
  assert_string_equal(url, "wss://[2001:db8::1]:8443/ws");
  char id[200], host[128];
  cluster_default_id(&cfg, 0, id, sizeof id);
  gethostname(host, sizeof host);
  assert_true(strncmp(id, host, strlen(host)) == 0);
  assert_string_equal(id + strlen(host), ":9000");

  /* Off by default: nothing is made. */
  config_defaults(&cfg);
  struct cluster *cl = (struct cluster *)&cfg;
  uv_loop_t loop;
  uv_loop_init(&loop);
  assert_int_equal(cluster_new(&cl, &loop, &cfg, NULL, NULL, err, sizeof err), 0);
  assert_null(cl);
  snprintf(cfg.cluster_redis_url, sizeof cfg.cluster_redis_url, "redis://h:nope");
  assert_int_equal(cluster_new(&cl, &loop, &cfg, NULL, NULL, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "port"));
  uv_loop_close(&loop);
}

int main(void) {
  log_configure(LOG_ERROR, 0);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(redis_urls_and_defaults),
      cmocka_unit_test_setup_teardown(registration_appears_with_its_fields_and_expiry, setup, teardown),
      cmocka_unit_test_setup_teardown(a_node_whose_refresh_stops_drops_out, setup, teardown),
      cmocka_unit_test_setup_teardown(placement_picks_the_least_loaded_and_itself_on_ties, setup, teardown),
      cmocka_unit_test_setup_teardown(pending_placements_spread_a_burst, setup, teardown),
      cmocka_unit_test_setup_teardown(redis_restarted_the_node_registers_again, setup, teardown),
      cmocka_unit_test_setup_teardown(resume_finds_the_node_of_a_call, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
