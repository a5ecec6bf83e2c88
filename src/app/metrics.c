/*
 * /metrics: one scrape, gathered from the owners of the figures.
 *
 * There is no registry to register with: each module that counts keeps its
 * counters next to what it counts and has a *_write_metrics function, and
 * this file calls them in turn. A scrape happens every few seconds, so
 * reading /proc here, on the control loop, costs nothing worth caching.
 *
 * The process metrics use the names every Prometheus client library uses
 * (process_cpu_seconds_total, process_resident_memory_bytes, ...), so
 * dashboards made for other services work unchanged. A figure that cannot
 * be read (no /proc) is left out rather than made up.
 */
#include "app/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "app/calls.h"
#include "engines/engines.h"
#include "media/worker.h"
#include "net/http_client.h"
#include "store/store.h"

/* ---- reading /proc ---- */

/* The whole of a small file, NUL-terminated; 0 or -errno. */
static int read_small(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  if (!f) return -errno;
  size_t n = fread(buf, 1, cap - 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad) return -EIO;
  buf[n] = '\0';
  return 0;
}

/* A decimal unsigned number at *p, advancing past it; 0 or -EINVAL. */
static int parse_u64(const char **p, unsigned long long *out) {
  char *end;
  errno = 0;
  const char *s = *p;
  while (*s == ' ') s++;
  if (*s < '0' || *s > '9') return -EINVAL;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s) return -EINVAL;
  *p = end;
  *out = v;
  return 0;
}

/* Field `n` (1-based, as proc(5) numbers them) of /proc/self/stat. */
static int self_stat_field(int n, unsigned long long *out) {
  char buf[1024];
  if (read_small("/proc/self/stat", buf, sizeof buf)) return -EIO;
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
  if (!p || n < 3) return -EINVAL;
  p++;
  for (int field = 3; field < n; field++) { /* skip to field n */
    while (*p == ' ') p++;
    p += strcspn(p, " ");
    if (!*p) return -EINVAL;
  }
  return parse_u64(&p, out);
}

static int boot_time(unsigned long long *out) {
  char buf[8192];
  if (read_small("/proc/stat", buf, sizeof buf)) return -EIO;
  const char *p = strstr(buf, "\nbtime ");
  if (!p) return -EINVAL;
  p += 7;
  return parse_u64(&p, out);
}

static int open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -errno;
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory's own descriptor */
}

/* ---- the process ---- */

static void gauge(struct prom_buf *b, const char *name, const char *help, double v) {
  prom_family(b, name, "gauge", help);
  prom_sample(b, name, v, NULL);
}

static void write_memory(struct prom_buf *b) {
  char buf[256];
  unsigned long long size, resident;
  const char *p = buf;
  if (read_small("/proc/self/statm", buf, sizeof buf) || parse_u64(&p, &size) || parse_u64(&p, &resident))
    return;
  double page = (double)sysconf(_SC_PAGESIZE);
  gauge(b, "process_resident_memory_bytes", "Resident memory size in bytes.", (double)resident * page);
  gauge(b, "process_virtual_memory_bytes", "Virtual memory size in bytes.", (double)size * page);
}

static void write_process(struct prom_buf *b) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                 ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    prom_family(b, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    prom_sample(b, "process_cpu_seconds_total", cpu, NULL);
  }
  write_memory(b);
  unsigned long long start_ticks, btime;
  long hz = sysconf(_SC_CLK_TCK);
  if (hz > 0 && self_stat_field(22, &start_ticks) == 0 && boot_time(&btime) == 0)
    gauge(b, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
          (double)btime + (double)start_ticks / (double)hz);
  int fds = open_fds();
  if (fds >= 0) gauge(b, "process_open_fds", "Number of open file descriptors.", fds);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    gauge(b, "process_max_fds", "Maximum number of open file descriptors.", (double)rl.rlim_cur);
}

/* ---- the store ---- */

static void write_store(struct prom_buf *b, struct store *store) {
  struct store_stats st;
  store_get_stats(store, &st);
  gauge(b, "tingshuo_store_queue_depth", "Call record events waiting to be written to the database.",
        (double)st.queued);
  gauge(b, "tingshuo_store_connected", "1 while the database answers, 0 while it does not.", st.connected ? 1 : 0);
  prom_family(b, "tingshuo_store_events_written_total", "counter", "Call record events written to the database.");
  prom_sample(b, "tingshuo_store_events_written_total", (double)st.written, NULL);
  prom_family(b, "tingshuo_store_events_dropped_total", "counter",
              "Turn events dropped because the record queue was full.");
  prom_sample(b, "tingshuo_store_events_dropped_total", (double)st.dropped, NULL);
  prom_family(b, "tingshuo_store_errors_total", "counter", "Failed database operations (each is retried).");
  prom_sample(b, "tingshuo_store_errors_total", (double)st.errors, NULL);
}

void metrics_write(struct prom_buf *b, struct calls *calls, struct store *store) {
  prom_family(b, "tingshuo_build_info", "gauge", "Always 1; the labels say which build is running.");
  prom_sample(b, "tingshuo_build_info", 1, "version", TINGSHUO_VERSION, NULL);
  write_process(b);
  if (calls) {
    calls_write_metrics(calls, b);
    struct media_pool *pool = calls_pool(calls);
    struct engines *engines = calls_engines(calls);
    struct http_client *http = calls_http(calls);
    if (pool) media_pool_write_metrics(pool, b);
    if (engines) engines_write_metrics(engines, b);
    if (http) http_client_write_metrics(http, b);
  }
  if (store) write_store(b, store);
}
