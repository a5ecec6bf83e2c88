/*
 * The tool registry and how a tool is called.
 *
 * The registry is the tools file's tools (fixed at start) followed by each
 * MCP server's (they come and go as servers answer and change their lists).
 * Calls snapshot the list, so what the model was offered stays the same
 * for the whole reply even if a server changes its list meanwhile; the
 * snapshot is rebuilt under a lock on the control loop and handed out by
 * reference count to any thread.
 *
 * A call is a job in the sense of engines/job.h. Built-ins answer at once
 * (still through the home mailbox: callbacks never run inside
 * tools_call). A webhook is an HTTP POST run by engines/service.c's
 * plumbing on the control loop; it is never retried, because a webhook may
 * book or charge something and the second copy would do it twice. An MCP
 * call is posted to the control loop too and run by that server's client.
 * Whatever goes wrong becomes an error result the model can read and
 * explain: the words name what failed, never the URL or a header, which
 * may carry credentials.
 *
 * Jobs hold a reference on the registry, so a call still on its way when
 * the server shuts down finds its tool's settings in place.
 */
#include "tools/tools.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "core/log.h"
#include "core/prom.h"
#include "engines/service.h"
#include "tools/mcp.h"
#include "tools/toolfile.h"

#define MAX_TOOL_STATS 64 /* tools with metrics of their own; the rest count as "other" */

enum err_kind { ERR_TIMEOUT, ERR_HTTP, ERR_CONNECTION, ERR_INVALID, ERR_TOOL, ERR_MCP, ERR_N };
static const char *const err_names[ERR_N] = {"timeout", "http", "connection", "invalid", "tool", "mcp"};

struct tool_stats {
  char name[72];
  _Atomic uint64_t calls, errors[ERR_N];
  struct prom_histogram duration;
};

/* A webhook's connection settings, in the shape engines/service.c runs requests with. */
struct webhook {
  struct svc_conf conf;
  char service[96]; /* "webhook <name>", for the HTTP client's messages and metrics */
};

struct mcp_item {
  char *name, *description, *parameters;
};

struct mcp_server {
  struct tools *t;
  size_t index;
  char *url;
  struct mcp_client *c;
  struct mcp_item *items; /* under t->lock */
  size_t nitems;
};

struct list_meta {
  enum tools_kind kind;
  size_t index; /* TOOLS_MCP: the server; otherwise the file's tool */
};

struct tools_list {
  atomic_int refs;
  size_t n;
  struct llm_tool *items; /* strings owned */
  struct list_meta *meta;
};

struct tools {
  atomic_int refs; /* the owner's, and one per job */
  const struct config *cfg;
  struct mailbox *control;
  struct toolfile file;
  struct webhook **hooks; /* per file tool; NULL for built-ins */
  pthread_mutex_t lock;   /* current, servers' items, stats */
  struct tools_list *current;
  struct mcp_server *servers;
  size_t nservers;
  struct tool_stats *stats[MAX_TOOL_STATS];
  size_t nstats;
  struct tool_stats other;
  struct tool_job *mcp_running; /* control loop: MCP calls that hold a job reference */
  int closed;                   /* control loop */
};

struct tool_job {
  struct eng_job job; /* first */
  struct tools *t;
  struct tool_cb cb;
  struct tool_stats *st;
  uint64_t started_ns;
  char name[72];
  int timeout_ms;
  int quiet; /* the error was logged already */
  /* webhook */
  const struct tool_def *def;
  struct svc_call call;
  char *body;
  size_t len;
  int too_big;
  /* MCP */
  size_t server;
  char *args;
  struct mcp_call *mcall;
  struct tool_job *prev, *next;
};

struct result_msg {
  int is_error;
  char json[];
};

/* ---- the registry's life ---- */

static void list_release_locked(struct tools_list *l);

static void tools_ref(struct tools *t) { atomic_fetch_add(&t->refs, 1); }

static void mcp_items_free(struct mcp_item *items, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(items[i].name);
    free(items[i].description);
    free(items[i].parameters);
  }
  free(items);
}

static void tools_unref(struct tools *t) {
  if (atomic_fetch_sub(&t->refs, 1) != 1) return;
  if (t->current) list_release_locked(t->current);
  for (size_t i = 0; i < t->nservers; i++) {
    mcp_items_free(t->servers[i].items, t->servers[i].nitems);
    free(t->servers[i].url);
  }
  free(t->servers);
  for (size_t i = 0; t->hooks && i < t->file.n; i++) free(t->hooks[i]);
  free(t->hooks);
  toolfile_free(&t->file);
  for (size_t i = 0; i < t->nstats; i++) free(t->stats[i]);
  pthread_mutex_destroy(&t->lock);
  free(t);
}

/* ---- metrics ---- */

static struct tool_stats *stats_new(const char *name) {
  struct tool_stats *st = calloc(1, sizeof *st);
  if (!st) return NULL;
  snprintf(st->name, sizeof st->name, "%s", name);
  prom_histogram_init(&st->duration, prom_latency_bounds, prom_latency_nbounds);
  return st;
}

/* The counters of `name`, made on first use; "other" once the table is full. */
static struct tool_stats *stats_for(struct tools *t, const char *name) {
  pthread_mutex_lock(&t->lock);
  struct tool_stats *st = NULL;
  for (size_t i = 0; i < t->nstats && !st; i++)
    if (strcmp(t->stats[i]->name, name) == 0) st = t->stats[i];
  if (!st && t->nstats < MAX_TOOL_STATS && (st = stats_new(name))) t->stats[t->nstats++] = st;
  pthread_mutex_unlock(&t->lock);
  return st ? st : &t->other;
}

static double seconds_since(uint64_t ns) { return (double)(uv_hrtime() - ns) / 1e9; }

static void write_stats(struct prom_buf *b, const struct tool_stats *st, int part) {
  if (part == 0) {
    prom_sample(b, "tingshuo_tool_calls_total", (double)atomic_load(&st->calls), "tool", st->name, NULL);
  } else if (part == 1) {
    for (int k = 0; k < ERR_N; k++)
      prom_sample(b, "tingshuo_tool_errors_total", (double)atomic_load(&st->errors[k]), "tool",
                  st->name, "kind", err_names[k], NULL);
  } else {
    prom_histogram_write(b, "tingshuo_tool_duration_seconds", &st->duration, "tool", st->name, NULL);
  }
}

void tools_write_metrics(const struct tools *tc, struct prom_buf *b) {
  if (!tc) return;
  struct tools *t = (struct tools *)tc; /* the lock is not part of what const promises */
  static const char *const names[3][3] = {
      {"tingshuo_tool_calls_total", "counter", "Tool calls the model made, by tool."},
      {"tingshuo_tool_errors_total", "counter",
       "Tool calls that ended in an error result, by tool and kind: timeout, http (a non-2xx "
       "answer), connection, invalid (an answer too large or not JSON, arguments not an object, "
       "an unknown tool), tool (an MCP tool reported an error), mcp (the MCP request failed)."},
      {"tingshuo_tool_duration_seconds", "histogram",
       "Tool calls from start to result, by tool (cancelled calls are not observed)."}};
  pthread_mutex_lock(&t->lock);
  int any = t->nstats > 0 || atomic_load(&t->other.calls) > 0; /* a server without tools shows none */
  for (int part = 0; part < 3 && any; part++) {
    prom_family(b, names[part][0], names[part][1], names[part][2]);
    for (size_t i = 0; i < t->nstats; i++) write_stats(b, t->stats[i], part);
    if (atomic_load(&t->other.calls)) write_stats(b, &t->other, part);
  }
  pthread_mutex_unlock(&t->lock);
}

/* ---- snapshots ---- */

static void list_release_locked(struct tools_list *l) {
  if (atomic_fetch_sub(&l->refs, 1) != 1) return;
  for (size_t i = 0; i < l->n; i++) {
    free((char *)l->items[i].name);
    free((char *)l->items[i].description);
    free((char *)l->items[i].parameters);
  }
  free(l->items);
  free(l->meta);
  free(l);
}

void tools_list_release(struct tools_list *l) {
  if (l) list_release_locked(l);
}

const struct llm_tool *tools_list_items(const struct tools_list *l, size_t *n) {
  *n = l ? l->n : 0;
  return l && l->n ? l->items : NULL;
}

static int list_has(const struct tools_list *l, const char *name) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->items[i].name, name) == 0) return 1;
  return 0;
}

static int list_add(struct tools_list *l, const char *name, const char *desc, const char *params,
                    enum tools_kind kind, size_t index) {
  struct llm_tool *it = &l->items[l->n];
  it->name = strdup(name);
  it->description = strdup(desc);
  it->parameters = strdup(params);
  l->meta[l->n] = (struct list_meta){kind, index};
  l->n++; /* counted even when a copy failed, so release frees what there is */
  return it->name && it->description && it->parameters ? 0 : -ENOMEM;
}

/* The file's tools, then each server's that do not clash with a name already there. */
static struct tools_list *list_build_locked(struct tools *t) {
  size_t cap = t->file.n;
  for (size_t s = 0; s < t->nservers; s++) cap += t->servers[s].nitems;
  struct tools_list *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  atomic_init(&l->refs, 1);
  l->items = calloc(cap ? cap : 1, sizeof *l->items);
  l->meta = calloc(cap ? cap : 1, sizeof *l->meta);
  int rc = l->items && l->meta ? 0 : -ENOMEM;
  for (size_t i = 0; i < t->file.n && !rc; i++) {
    const struct tool_def *d = &t->file.defs[i];
    rc = list_add(l, d->name, d->description, d->parameters, d->kind, i);
  }
  for (size_t s = 0; s < t->nservers && !rc; s++) {
    for (size_t i = 0; i < t->servers[s].nitems && !rc; i++) {
      const struct mcp_item *m = &t->servers[s].items[i];
      if (list_has(l, m->name)) {
        log_warn("tools", "MCP tool %s is left out: another tool has that name", m->name);
        continue;
      }
      rc = list_add(l, m->name, m->description, m->parameters, TOOLS_MCP, s);
    }
  }
  if (rc) {
    list_release_locked(l);
    return NULL;
  }
  return l;
}

/* Makes the current list anew; keeps the old one when out of memory. Takes the lock. */
static void list_rebuild(struct tools *t) {
  pthread_mutex_lock(&t->lock);
  struct tools_list *l = list_build_locked(t);
  if (l) {
    if (t->current) list_release_locked(t->current);
    t->current = l;
  } else {
    log_error("tools", "out of memory: the tool list was not updated");
  }
  pthread_mutex_unlock(&t->lock);
}

int tools_snapshot(struct tools *t, struct tools_list **out) {
  if (!t) {
    struct tools_list *l = calloc(1, sizeof *l);
    if (!l) return -ENOMEM;
    atomic_init(&l->refs, 1);
    *out = l;
    return 0;
  }
  pthread_mutex_lock(&t->lock);
  struct tools_list *l = t->current;
  atomic_fetch_add(&l->refs, 1);
  pthread_mutex_unlock(&t->lock);
  *out = l;
  return 0;
}

/* What name is, and its file index or MCP server. */
static enum tools_kind lookup(struct tools *t, const char *name, size_t *index) {
  enum tools_kind k = TOOLS_UNKNOWN;
  if (!t || !name) return k;
  pthread_mutex_lock(&t->lock);
  const struct tools_list *l = t->current;
  for (size_t i = 0; i < l->n && k == TOOLS_UNKNOWN; i++) {
    if (strcmp(l->items[i].name, name) == 0) {
      k = l->meta[i].kind;
      if (index) *index = l->meta[i].index;
    }
  }
  pthread_mutex_unlock(&t->lock);
  return k;
}

enum tools_kind tools_kind(struct tools *t, const char *name) { return lookup(t, name, NULL); }

int tools_filler(struct tools *t, const char *name, char *buf, size_t cap) {
  for (size_t i = 0; t && name && i < t->file.n; i++) {
    const struct tool_def *d = &t->file.defs[i];
    if (strcmp(d->name, name) == 0 && d->filler) {
      snprintf(buf, cap, "%s", d->filler);
      return 0;
    }
  }
  return -ENOENT;
}

/* ---- MCP servers' lists ---- */

/* One MCP tool object as an item; -EINVAL (with a warning) when it cannot be offered. */
static int mcp_item(const struct mcp_server *s, json_t *tool, struct mcp_item *out) {
  const char *name = json_string_value(json_object_get(tool, "name"));
  const char *desc = json_string_value(json_object_get(tool, "description"));
  json_t *schema = json_object_get(tool, "inputSchema");
  const char *type = json_string_value(json_object_get(schema, "type"));
  if (!name || !toolfile_name_ok(name)) {
    log_warn("tools", "MCP server %zu: a tool named \"%.64s\" is left out (names are 1 to 64 letters, "
             "digits, '_' or '-')", s->index + 1, name ? name : "");
    return -EINVAL;
  }
  if (schema && (!type || strcmp(type, "object") != 0)) {
    log_warn("tools", "MCP tool %s is left out: its inputSchema is not of type object", name);
    return -EINVAL;
  }
  out->name = strdup(name);
  out->description = strdup(desc ? desc : "");
  out->parameters = schema ? json_dumps(schema, JSON_COMPACT) : strdup("{\"type\":\"object\"}");
  return out->name && out->description && out->parameters ? 0 : -ENOMEM;
}

static void on_mcp_tools(void *user, json_t *tools) {
  struct mcp_server *s = user;
  struct tools *t = s->t;
  size_t n = json_array_size(tools), k = 0;
  struct mcp_item *items = calloc(n ? n : 1, sizeof *items);
  if (!items) return;
  for (size_t i = 0; i < n; i++) {
    int rc = mcp_item(s, json_array_get(tools, i), &items[k]);
    if (rc == -ENOMEM) {
      log_error("tools", "MCP server %zu: out of memory; its tool list was not updated", s->index + 1);
      mcp_items_free(items, k + 1); /* the failed item's parts too */
      return;
    }
    if (rc == 0) k++;
  }
  pthread_mutex_lock(&t->lock);
  struct mcp_item *old = s->items;
  size_t nold = s->nitems;
  s->items = items;
  s->nitems = k;
  pthread_mutex_unlock(&t->lock);
  mcp_items_free(old, nold);
  list_rebuild(t);
  log_info("tools", "MCP server %zu offers %zu tools", s->index + 1, k);
}

/* Splits cfg->mcp_servers (URLs, comma separated) and starts a client for each. */
static int open_servers(struct tools *t, const struct engine_env *env, char *err, size_t errlen) {
  char *list = strdup(env->cfg->mcp_servers), *save = NULL;
  if (!list) return -ENOMEM;
  size_t cap = 1;
  for (const char *p = list; *p; p++) cap += *p == ',';
  t->servers = calloc(cap, sizeof *t->servers);
  int rc = t->servers ? 0 : -ENOMEM;
  for (char *url = strtok_r(list, ", \t", &save); url && !rc; url = strtok_r(NULL, ", \t", &save)) {
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
      snprintf(err, errlen, "mcp_servers: server %zu is not an http:// or https:// URL", t->nservers + 1);
      rc = -EINVAL;
      break;
    }
    struct mcp_server *s = &t->servers[t->nservers];
    *s = (struct mcp_server){.t = t, .index = t->nservers, .url = strdup(url)};
    if (!s->url) rc = -ENOMEM;
    else t->nservers++;
  }
  free(list);
  for (size_t i = 0; i < t->nservers && !rc; i++) {
    rc = mcp_client_new(&t->servers[i].c, env, t->servers[i].url, on_mcp_tools, &t->servers[i]);
    if (rc) snprintf(err, errlen, "mcp_servers: server %zu: could not start its client (%s)", i + 1,
                     strerror(-rc));
  }
  if (rc == -ENOMEM) snprintf(err, errlen, "mcp_servers: out of memory");
  return rc;
}

/* ---- opening ---- */

static int open_hooks(struct tools *t, const struct engine_env *env, char *err, size_t errlen) {
  t->hooks = calloc(t->file.n ? t->file.n : 1, sizeof *t->hooks);
  if (!t->hooks) return -ENOMEM;
  for (size_t i = 0; i < t->file.n; i++) {
    const struct tool_def *d = &t->file.defs[i];
    if (d->kind != TOOLS_WEBHOOK) continue;
    if (!env->control || !env->http) {
      snprintf(err, errlen, "tools_file: tool %zu \"%s\": webhooks need the server's HTTP client", i + 1,
               d->name);
      return -EINVAL;
    }
    struct webhook *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    t->hooks[i] = h;
    snprintf(h->service, sizeof h->service, "webhook %s", d->name);
    h->conf.service = h->service;
    h->conf.http = env->http;
    h->conf.control = env->control;
  }
  return 0;
}

int tools_open(struct tools **out, const struct engine_env *env, char *err, size_t errlen) {
  const struct config *cfg = env->cfg;
  if (errlen) err[0] = '\0';
  struct tools *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "tools: out of memory");
    return -ENOMEM;
  }
  atomic_init(&t->refs, 1);
  t->cfg = cfg;
  t->control = env->control;
  pthread_mutex_init(&t->lock, NULL);
  snprintf(t->other.name, sizeof t->other.name, "other");
  prom_histogram_init(&t->other.duration, prom_latency_bounds, prom_latency_nbounds);
  int timeout = cfg->tool_timeout_ms > 0 ? cfg->tool_timeout_ms : 5000;
  int rc = cfg->tools_file[0] ? toolfile_load(&t->file, cfg->tools_file, timeout, err, errlen) : 0;
  if (!rc) rc = open_hooks(t, env, err, errlen);
  for (size_t i = 0; i < t->file.n && !rc; i++) stats_for(t, t->file.defs[i].name);
  if (!rc && !(t->current = list_build_locked(t))) rc = -ENOMEM;
  if (!rc && cfg->mcp_servers[0]) rc = open_servers(t, env, err, errlen);
  if (rc == -ENOMEM && errlen && !err[0]) snprintf(err, errlen, "tools: out of memory");
  if (rc) {
    tools_close(t);
    return rc;
  }
  if (t->file.n || t->nservers)
    log_info("tools", "%zu tools from %s, %zu MCP servers", t->file.n,
             cfg->tools_file[0] ? cfg->tools_file : "(no file)", t->nservers);
  *out = t;
  return 0;
}

void tools_close(struct tools *t) {
  if (!t) return;
  t->closed = 1;
  for (size_t i = 0; i < t->nservers; i++) {
    mcp_client_free(t->servers[i].c); /* its calls end without a callback */
    t->servers[i].c = NULL;
  }
  while (t->mcp_running) {
    struct tool_job *j = t->mcp_running;
    t->mcp_running = j->next;
    j->mcall = NULL;
    j->prev = j->next = NULL;
    eng_job_unref(&j->job); /* the call's */
  }
  tools_unref(t);
}

/* ---- results ---- */

static void deliver(struct eng_job *job, void *arg) {
  struct tool_job *j = (struct tool_job *)job;
  struct result_msg *m = arg;
  j->cb.result(j->cb.user, m->json, m->is_error);
}

/* The call is over: metrics, a log line for errors, and the result on its way home. Once. */
static void finish(struct tool_job *j, const char *json, int is_error, enum err_kind kind) {
  if (j->st) {
    prom_histogram_observe(&j->st->duration, seconds_since(j->started_ns));
    if (is_error) atomic_fetch_add(&j->st->errors[kind], 1);
  }
  size_t n = strlen(json);
  struct result_msg *m = malloc(sizeof *m + n + 1);
  if (m) {
    m->is_error = is_error;
    memcpy(m->json, json, n + 1);
  }
  if (!m || eng_job_post(&j->job, deliver, m) != 0) /* a failed post has freed m */
    log_error("tools", "%s: out of memory; the result is lost", j->name);
}

static void finish_error(struct tool_job *j, enum err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Cuts a UTF-8 sequence that a bounded print left incomplete at the end of s. */
static void utf8_trim(char *s) {
  size_t n = strlen(s), i = n;
  while (i > 0 && n - i < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
  if (i == 0 || ((unsigned char)s[i - 1] & 0x80) == 0) return; /* ASCII last, or nothing to check */
  unsigned char lead = (unsigned char)s[i - 1];
  size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  if (n - (i - 1) < want) s[i - 1] = '\0';
}

static void finish_error(struct tool_job *j, enum err_kind kind, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  utf8_trim(msg);
  json_t *o = json_pack("{s:s}", "error", msg); /* NULL too for text that is not UTF-8 */
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!j->quiet) log_info("tools", "%s: %s", j->name, msg);
  finish(j, text ? text : "{\"error\":\"the tool failed\"}", 1, kind);
  free(text);
}

/* ---- built-ins ---- */

static void get_time(struct tool_job *j) {
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  char stamp[32], date[16], clock[8], weekday[16], iso[64];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  strftime(date, sizeof date, "%Y-%m-%d", &tm);
  strftime(clock, sizeof clock, "%H:%M", &tm);
  static const char *const days[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday",
                                     "Friday", "Saturday"};
  snprintf(weekday, sizeof weekday, "%s", days[tm.tm_wday % 7]);
  long off = tm.tm_gmtoff, a = off < 0 ? -off : off;
  snprintf(iso, sizeof iso, "%s%c%02ld:%02ld", stamp, off < 0 ? '-' : '+', a / 3600, a % 3600 / 60);
  json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "datetime", iso, "date", date, "time", clock,
                        "weekday", weekday, "timezone", tm.tm_zone ? tm.tm_zone : "");
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (text) finish(j, text, 0, 0);
  else finish_error(j, ERR_INVALID, "out of memory");
  free(text);
}

/* ---- webhooks ---- */

int tools_sign(const char *secret, long long t, const char *body, size_t len, char *out, size_t cap) {
  char prefix[32];
  int np = snprintf(prefix, sizeof prefix, "%lld.", t);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0;
  char *msg = malloc((size_t)np + len + 1);
  if (!msg) return -ENOMEM;
  memcpy(msg, prefix, (size_t)np);
  memcpy(msg + np, body, len);
  int ok = HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, (size_t)np + len,
                mac, &maclen) != NULL;
  free(msg);
  if (!ok) return -EIO;
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  for (unsigned int i = 0; i < maclen; i++) snprintf(hex + 2 * i, 3, "%02x", mac[i]);
  int n = snprintf(out, cap, "t=%lld,v1=%s", t, hex);
  return n < 0 || (size_t)n >= cap ? -ENOSPC : 0;
}

#define JOB_OF_CALL(sc) ((struct tool_job *)((char *)(sc) - offsetof(struct tool_job, call)))

static int hook_data(struct svc_call *sc, const char *buf, size_t len) {
  struct tool_job *j = JOB_OF_CALL(sc);
  if (j->len + len > TOOLS_RESULT_MAX) {
    j->too_big = 1;
    return -EFBIG;
  }
  char *p = realloc(j->body, j->len + len + 1);
  if (!p) return -ENOMEM;
  memcpy(p + j->len, buf, len);
  j->body = p;
  j->len += len;
  p[j->len] = '\0';
  return 0;
}

/* A 2xx answer: any JSON value is the result; an empty body means it simply worked. */
static void hook_answer(struct tool_job *j) {
  if (j->len == 0) {
    finish(j, "{\"ok\":true}", 0, 0);
    return;
  }
  json_t *v = json_loadb(j->body, j->len, JSON_DECODE_ANY, NULL);
  char *text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  json_decref(v);
  if (text) finish(j, text, 0, 0);
  else finish_error(j, ERR_INVALID, "the tool's answer was not valid JSON");
  free(text);
}

/* Whether text holds a secret of the tool's: a header value or the signing key. */
static int holds_secret(const struct tool_job *j, const char *text) {
  const struct tool_def *d = j->def;
  for (size_t i = 0; i < d->nheaders; i++) {
    const char *v = strchr(d->headers[i], ':') + 2; /* "Name: value" */
    if (strlen(v) >= 4 && strcasestr(text, v)) return 1;
  }
  const char *secret = j->t->cfg->tools_secret;
  return secret[0] && strcasestr(text, secret) != NULL;
}

/*
 * The webhook's own words from an error body ({"error": "..."},
 * {"error": {"message": "..."}} or {"message": "..."}), or "": "no such
 * order" helps the model say something useful. Words that echo one of the
 * tool's secrets are left out whole.
 */
static void error_words(const struct tool_job *j, const struct http_result *r, char *out, size_t cap) {
  out[0] = '\0';
  json_t *v = r->body_len ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
  json_t *e = json_object_get(v, "error");
  const char *s = json_is_string(e) ? json_string_value(e)
                  : json_is_object(e) ? json_string_value(json_object_get(e, "message"))
                                      : json_string_value(json_object_get(v, "message"));
  if (s && *s && !holds_secret(j, s)) snprintf(out, cap, ": %.200s", s);
  json_decref(v);
}

static void hook_done(struct svc_call *sc, const struct http_result *r) {
  struct tool_job *j = JOB_OF_CALL(sc);
  char words[224];
  if (r->rc == 0 && r->status / 100 == 2) {
    hook_answer(j);
  } else if (r->rc == -ECANCELED && j->too_big) {
    finish_error(j, ERR_INVALID, "the tool's answer was larger than %d bytes", TOOLS_RESULT_MAX);
  } else if (r->rc == -ETIMEDOUT) {
    finish_error(j, ERR_TIMEOUT, "the tool did not answer within %d ms", j->timeout_ms);
  } else if (r->rc == 0) {
    error_words(j, r, words, sizeof words);
    finish_error(j, ERR_HTTP, "the tool failed (HTTP %ld)%s", r->status, words);
  } else if (r->rc == -EAGAIN) {
    finish_error(j, ERR_HTTP, "the tool's service is rate limited; try again later");
  } else {
    char m[512];
    snprintf(m, sizeof m, "%s", r->message ? r->message : "failed");
    svc_scrub(sc->conf, m, sizeof m);
    log_info("tools", "%s: the tool's service could not be reached (%s)", j->name, m);
    j->quiet = 1; /* logged with the detail the model is not told */
    finish_error(j, ERR_CONNECTION, "the tool's service could not be reached");
  }
}

static const struct svc_call_ops hook_ops = {.data = hook_data, .done = hook_done};

static void hook_cancel(struct eng_job *job) { svc_call_cancel(&((struct tool_job *)job)->call); }

/* The POST body: who asks, for what, with which arguments. */
static json_t *hook_body(const struct tool_request *r, json_t *args) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char stamp[40], iso[64];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(iso, sizeof iso, "%s.%03dZ", stamp, (int)(ts.tv_nsec / 1000000));
  return json_pack("{s:s, s:i, s:s, s:s, s:O, s:s}", "call_id", r->call_id ? r->call_id : "", "turn",
                   r->turn, "tool", r->tool, "tool_call_id", r->tool_call_id ? r->tool_call_id : "",
                   "arguments", args, "timestamp", iso);
}

static int hook_request(struct tool_job *j, const struct tool_def *d, const struct tool_request *r,
                        json_t *args) {
  struct http_request *req = &j->call.req;
  int rc = svc_request_json(req, hook_body(r, args));
  if (!rc) rc = http_request_set_url(req, "%s", d->url);
  const char *secret = j->t->cfg->tools_secret;
  if (!rc && secret[0]) {
    char sig[128];
    rc = tools_sign(secret, (long long)time(NULL), req->body, req->body_len, sig, sizeof sig);
    if (!rc) rc = http_request_add_header(req, "X-Tingshuo-Signature: %s", sig);
  }
  for (size_t i = 0; i < d->nheaders && !rc; i++) rc = http_request_add_header(req, "%s", d->headers[i]);
  req->timeout_ms = d->timeout_ms;
  req->no_retry = 1;
  return rc;
}

static int hook_start(struct tool_job *j, size_t index, const struct tool_request *r, json_t *args) {
  const struct tool_def *d = &j->t->file.defs[index];
  struct webhook *h = j->t->hooks[index];
  j->def = d;
  j->timeout_ms = d->timeout_ms;
  svc_call_init(&j->call, &j->job, &h->conf, &hook_ops);
  svc_request_post(&h->conf, &j->call.req);
  int rc = hook_request(j, d, r, args);
  if (!rc) rc = svc_call_start(&j->call);
  if (!rc) j->job.on_cancel = hook_cancel;
  return rc;
}

/* ---- MCP calls (control loop) ---- */

struct job_msg {
  struct mailbox_run run;
  struct tool_job *j;
};

static void running_unlink(struct tool_job *j) {
  if (j->prev) j->prev->next = j->next;
  else j->t->mcp_running = j->next;
  if (j->next) j->next->prev = j->prev;
  j->prev = j->next = NULL;
}

static void on_mcp_result(void *user, const char *result_json, int is_error) {
  struct tool_job *j = user;
  j->mcall = NULL;
  running_unlink(j);
  if (!eng_job_cancelled(&j->job)) {
    json_t *v = json_loads(result_json, 0, NULL);
    int tool_error = json_is_true(json_object_get(v, "isError"));
    json_decref(v);
    if (strlen(result_json) > TOOLS_RESULT_MAX)
      finish_error(j, ERR_INVALID, "the tool's answer was larger than %d bytes", TOOLS_RESULT_MAX);
    else
      finish(j, result_json, is_error || tool_error, tool_error ? ERR_TOOL : ERR_MCP);
  }
  eng_job_unref(&j->job); /* the call's */
}

static void mcp_start_run(struct mailbox_run *r, int run) {
  struct tool_job *j = ((struct job_msg *)r)->j;
  free(r);
  struct tools *t = j->t;
  if (run && !eng_job_cancelled(&j->job) && !t->closed) {
    int rc = mcp_call_tool(t->servers[j->server].c, j->name, j->args, j->timeout_ms, on_mcp_result, j,
                           &j->mcall);
    if (rc == 0) {
      j->next = t->mcp_running;
      if (j->next) j->next->prev = j;
      t->mcp_running = j;
      return; /* the call holds the reference now */
    }
    finish_error(j, ERR_MCP, "the tool's server could not be asked (%s)", strerror(-rc));
  }
  eng_job_unref(&j->job);
}

static void mcp_cancel_run(struct mailbox_run *r, int run) {
  struct tool_job *j = ((struct job_msg *)r)->j;
  free(r);
  if (run && j->mcall) {
    mcp_call_cancel(j->mcall);
    j->mcall = NULL;
    running_unlink(j);
    eng_job_unref(&j->job); /* the call's */
  }
  eng_job_unref(&j->job); /* this closure's */
}

static int post_control(struct tool_job *j, void (*fn)(struct mailbox_run *, int)) {
  struct job_msg *m = calloc(1, sizeof *m);
  if (!m) return -ENOMEM;
  m->run.hdr.type = MAILBOX_RUN;
  m->run.fn = fn;
  m->j = j;
  eng_job_ref(&j->job);
  mailbox_post(j->t->control, &m->run.hdr);
  return 0;
}

static void mcp_cancel(struct eng_job *job) {
  if (post_control((struct tool_job *)job, mcp_cancel_run) != 0)
    log_error("tools", "out of memory; an MCP call runs to its end");
}

static int mcp_start(struct tool_job *j, size_t server, const char *args) {
  j->server = server;
  j->timeout_ms = j->t->cfg->tool_timeout_ms > 0 ? j->t->cfg->tool_timeout_ms : 5000;
  j->args = strdup(args);
  int rc = j->args ? post_control(j, mcp_start_run) : -ENOMEM;
  if (!rc) j->job.on_cancel = mcp_cancel;
  return rc;
}

/* ---- calling ---- */

static void job_destroy(struct eng_job *job) {
  struct tool_job *j = (struct tool_job *)job;
  svc_call_clear(&j->call);
  free(j->body);
  free(j->args);
  if (j->t) tools_unref(j->t);
  free(j);
}

/* Runs the tool `kind`; an error result for anything the request itself gets wrong. */
static int dispatch(struct tool_job *j, enum tools_kind kind, size_t index, const struct tool_request *r) {
  json_error_t je;
  json_t *args = json_loads(r->arguments && *r->arguments ? r->arguments : "{}", JSON_DECODE_ANY, &je);
  int rc = 0;
  if (kind == TOOLS_UNKNOWN) finish_error(j, ERR_INVALID, "there is no tool named %.64s", j->name);
  else if (!json_is_object(args)) finish_error(j, ERR_INVALID, "the arguments were not a JSON object");
  else if (kind == TOOLS_END_CALL) finish(j, "{\"ok\":true}", 0, 0);
  else if (kind == TOOLS_GET_TIME) get_time(j);
  else if (kind == TOOLS_WEBHOOK) rc = hook_start(j, index, r, args);
  else rc = mcp_start(j, index, r->arguments && *r->arguments ? r->arguments : "{}");
  json_decref(args);
  return rc;
}

int tools_call(struct tools *t, const struct tool_request *r, struct mailbox *home,
               const struct tool_cb *cb, struct tool_job **out) {
  struct tool_job *j = calloc(1, sizeof *j);
  if (!j) return -ENOMEM;
  eng_job_init(&j->job, home, job_destroy);
  if (t) tools_ref(t);
  j->t = t;
  j->cb = *cb;
  j->started_ns = uv_hrtime();
  snprintf(j->name, sizeof j->name, "%s", r->tool ? r->tool : "");
  size_t index = 0;
  enum tools_kind kind = lookup(t, r->tool, &index); /* no registry: every tool is unknown */
  j->st = t ? stats_for(t, kind == TOOLS_UNKNOWN ? "(unknown)" : j->name) : NULL;
  if (j->st) atomic_fetch_add(&j->st->calls, 1);
  int rc = dispatch(j, kind, index, r);
  if (rc) {
    eng_job_unref(&j->job);
    return rc;
  }
  *out = j;
  return 0;
}

void tool_release(struct tool_job *j) {
  if (j) eng_job_release(&j->job);
}
