/*
 * /proc readers.
 *
 * /proc/PID/stat's second field is the command name in parentheses, which
 * may itself hold spaces and parentheses; the fields after it are found
 * from the last ')'. utime and stime are fields 14 and 15, in clock ticks.
 */
#include "client/procstat.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/num.h"

int procstat_parse_stat(const char *text, long ticks_per_s, double *cpu_s) {
  const char *p = strrchr(text, ')');
  if (!p || ticks_per_s <= 0) return -EBADMSG;
  p++;
  /* fields 3.. follow; utime is field 14, i.e. the 12th after the ')' */
  uint64_t utime = 0, stime = 0;
  for (int field = 3; field <= 15; field++) {
    while (*p == ' ') p++;
    size_t n = strcspn(p, " \n");
    if (n == 0) return -EBADMSG;
    /* only the two counts are read; the fields before them (a state letter, a tpgid of -1) are skipped */
    if (field == 14 && num_parse_u64(p, n, UINT64_MAX, &utime)) return -EBADMSG;
    if (field == 15 && num_parse_u64(p, n, UINT64_MAX, &stime)) return -EBADMSG;
    p += n;
  }
  *cpu_s = (double)(utime + stime) / (double)ticks_per_s;
  return 0;
}

/* "Name:\t  1234 kB" */
static int field_kb(const char *text, const char *name, long *out) {
  const char *p = strstr(text, name);
  if (!p || (p != text && p[-1] != '\n')) return -ENOENT;
  p += strlen(name);
  p += strspn(p, " \t");
  int64_t v;
  if (num_parse_i64(p, strspn(p, "0123456789"), 0, LONG_MAX, &v)) return -EBADMSG;
  *out = (long)v;
  return 0;
}

int procstat_parse_status(const char *text, long *rss_kb, long *threads) {
  if (field_kb(text, "VmRSS:", rss_kb)) return -EBADMSG;
  if (field_kb(text, "Threads:", threads)) *threads = 0;
  return 0;
}

int procstat_parse_hwm(const char *text, long *hwm_kb) {
  return field_kb(text, "VmHWM:", hwm_kb) ? -EBADMSG : 0;
}

static int slurp(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  if (!f) return -errno;
  size_t n = fread(buf, 1, cap - 1, f);
  fclose(f);
  buf[n] = '\0';
  return 0;
}

int procstat_read(pid_t pid, struct procstat *out) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int rc = slurp(path, buf, sizeof buf);
  if (rc) return rc;
  if ((rc = procstat_parse_stat(buf, sysconf(_SC_CLK_TCK), &out->cpu_s))) return rc;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  if ((rc = slurp(path, buf, sizeof buf))) return rc;
  if (procstat_parse_hwm(buf, &out->hwm_kb)) out->hwm_kb = 0;
  return procstat_parse_status(buf, &out->rss_kb, &out->threads);
}
