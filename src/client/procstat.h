/*
 * procstat: CPU time and resident memory of a process on this machine,
 * from /proc/PID/stat and /proc/PID/status (Linux).
 */
#ifndef TS_CLIENT_PROCSTAT_H
#define TS_CLIENT_PROCSTAT_H

#include <stddef.h>
#include <sys/types.h>

struct procstat {
  double cpu_s;   /* user + system, seconds */
  long rss_kb;    /* VmRSS */
  long hwm_kb;    /* VmHWM: the largest VmRSS since the process started (0 if absent) */
  long threads;
};

int procstat_read(pid_t pid, struct procstat *out);
/* The parsers, on the files' text. */
int procstat_parse_stat(const char *text, long ticks_per_s, double *cpu_s);
int procstat_parse_status(const char *text, long *rss_kb, long *threads);
/* VmHWM, the resident high-water mark; -EBADMSG when the line is missing or bad. */
int procstat_parse_hwm(const char *text, long *hwm_kb);

#endif
