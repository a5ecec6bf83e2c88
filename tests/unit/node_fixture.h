/*
 * node_fixture: a test's stand-in server written in node
 * (tests/fixtures/services/server.mjs, the servers in tests/fixtures/tools): spawned
 * with its port as the first argument, its port read back from the first
 * line it prints, its control endpoints (/_fixture/...) driven with
 * blocking requests that are not the client under test.
 *
 * Header-only, for the unit tests that need one (they include it once).
 */
#ifndef TS_TESTS_NODE_FIXTURE_H
#define TS_TESTS_NODE_FIXTURE_H

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Spawns `node TS_FIXTURES/<script> <port> [extra]` (port 0 = any); *port_out is the port it
 * listens on. Returns the pid, or -1. */
static pid_t node_fixture_spawn(const char *script, int port, const char *extra, int *port_out) {
  *port_out = 0;
  int fds[2];
  if (pipe(fds) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  char path[1024], portarg[16];
  snprintf(path, sizeof path, "%s/%s", TS_FIXTURES, script);
  snprintf(portarg, sizeof portarg, "%d", port);
  char *argv[] = {"node", path, portarg, (char *)extra, NULL};
  pid_t pid;
  int rc = posix_spawnp(&pid, "node", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return -1;
  }
  char line[32] = {0};
  size_t n = 0;
  while (n < sizeof line - 1 && read(fds[0], line + n, 1) == 1 && line[n] != '\n') n++;
  close(fds[0]);
  *port_out = (int)strtol(line, NULL, 10);
  return *port_out > 0 ? pid : -1;
}

static void node_fixture_stop(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
}

struct node_fixture_buf {
  char *p;
  size_t n;
};

static size_t node_fixture_collect(char *d, size_t s, size_t n, void *u) {
  struct node_fixture_buf *b = u;
  char *grown = realloc(b->p, b->n + s * n + 1);
  if (!grown) return 0;
  b->p = grown;
  memcpy(b->p + b->n, d, s * n);
  b->n += s * n;
  b->p[b->n] = '\0';
  return s * n;
}

/* GET (body NULL) or POST `body` to base + path; the answer parsed as JSON, or NULL. */
static json_t *node_fixture_request(const char *base, const char *path, const char *body) {
  char url[512];
  snprintf(url, sizeof url, "%s%s", base, path);
  CURL *e = curl_easy_init();
  if (!e) return NULL;
  struct node_fixture_buf b = {0};
  curl_easy_setopt(e, CURLOPT_URL, url);
  if (body) curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, node_fixture_collect);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
  CURLcode rc = curl_easy_perform(e);
  curl_easy_cleanup(e);
  json_t *j = rc == CURLE_OK ? json_loads(b.p ? b.p : "null", JSON_DECODE_ANY, NULL) : NULL;
  free(b.p);
  return j;
}

#endif
