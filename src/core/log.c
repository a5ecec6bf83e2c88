/*
 * Logging.
 *
 * Every event is exactly one line on stderr so that journald, docker logs and
 * `grep` all see whole events. Two formats: a human one
 *
 *   2026-11-24T10:00:00.123Z INFO  http: listening on http://127.0.0.1:8080/
 *
 * and JSON lines ({"ts":...,"level":...,"module":...,"msg":...}) for log
 * collectors. The line is formatted into a stack buffer and written with a
 * single write(2), so lines from different threads never interleave.
 *
 * Secrets never reach this module: API keys are read from the environment by
 * the engines that use them and are never formatted into messages.
 *
 * Floods. A fault that repeats in a loop (accept() failing for want of file
 * descriptors, a peer resending garbage) must not turn the log into the
 * outage: a line identical to the one the same thread wrote just before is
 * counted instead of written, and the count comes out as one "last message
 * repeated N times" line when the line changes, or with a repeat once a
 * second has passed (a count still pending when a thread falls silent stays
 * in log_suppressed() and /metrics). Beyond
 * that, a thread writes at most LOG_BURST lines a second; the rest are
 * counted and reported as "N lines suppressed" the next second. The state is
 * per thread, so threads never wait on each other to log.
 *
 * The level and format are configuration, set once before threads start;
 * they, and the count of suppressed lines, are the only globals here.
 */
#include "core/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum log_level g_level = LOG_INFO;
static int g_json = 0;
static atomic_ullong g_suppressed;

/* What this thread wrote last, and what it held back since. */
struct flood {
  uint64_t last_hash;      /* of level, module, call and message */
  int have_last;
  unsigned long repeats;   /* identical lines not written since */
  int64_t repeat_since_ms; /* when the first of them came */
  enum log_level level;
  char module[32];
  int64_t window_ms;       /* start of the current one-second budget */
  int written;             /* lines written in it */
  unsigned long dropped;   /* lines over the budget in it */
};
static _Thread_local struct flood t_flood;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *name) {
  for (int i = 0; i <= LOG_DEBUG; i++)
    if (strcasecmp(name, level_names[i]) == 0) return i;
  return -EINVAL;
}

const char *log_level_name(enum log_level level) {
  return level <= LOG_DEBUG ? level_names[level] : "?";
}

void log_configure(enum log_level level, int json) {
  g_level = level;
  g_json = json;
}

int log_enabled(enum log_level level) { return level <= g_level; }

/* Appends `s` to buf as JSON string content, escaping what JSON requires. */
static size_t json_escape(char *buf, size_t cap, size_t pos, const char *s) {
  for (; *s && pos + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      buf[pos++] = '\\';
      buf[pos++] = (char)c;
    } else if (c < 0x20) {
      pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", c);
    } else {
      buf[pos++] = (char)c;
    }
  }
  return pos;
}

static void format_time(char *out, size_t cap) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* FNV-1a over the parts that make two lines "the same". */
static uint64_t hash_str(uint64_t h, const char *s) {
  for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return (h ^ 0xff) * 1099511628211ULL; /* a separator, so "ab"+"c" differs from "a"+"bc" */
}

/* Formats one line and writes it with a single write(2). */
static void emit(enum log_level level, const char *module, const char *call, const char *msg) {
  char line[4096], ts[40];
  format_time(ts, sizeof ts);
  size_t n;
  if (g_json) {
    n = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"", ts,
                         log_level_name(level));
    n = json_escape(line, sizeof line, n, module);
    if (call) {
      n += (size_t)snprintf(line + n, sizeof line - n, "\",\"call\":\"");
      n = json_escape(line, sizeof line, n, call);
    }
    n += (size_t)snprintf(line + n, sizeof line - n, "\",\"msg\":\"");
    n = json_escape(line, sizeof line, n, msg);
    n += (size_t)snprintf(line + n, sizeof line - n, "\"}\n");
  } else {
    n = (size_t)snprintf(line, sizeof line, "%s %-5s %s: %s%s%s%s\n", ts, log_level_name(level),
                         module, call ? "call " : "", call ? call : "", call ? ": " : "", msg);
  }
  if (n >= sizeof line) {
    n = sizeof line;
    line[n - 1] = '\n';
  }
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;
}

/* Writes what this thread held back: the repeats of its last line. */
static void flush_repeats(struct flood *f, int64_t now) {
  if (!f->repeats) return;
  char msg[96];
  snprintf(msg, sizeof msg, "last message repeated %lu times", f->repeats);
  emit(f->level, f->module, NULL, msg);
  f->repeats = 0;
  f->repeat_since_ms = now;
}

/*
 * Whether this line may be written now (see the top). Called with the
 * line's hash; writes the summaries that are due first, so they come out
 * in order.
 */
static int admit(struct flood *f, uint64_t hash, enum log_level level, const char *module) {
  int64_t now = now_ms();
  if (now - f->window_ms >= 1000) {
    if (f->dropped) {
      char msg[96];
      snprintf(msg, sizeof msg, "%lu lines suppressed (over %d a second)", f->dropped, LOG_BURST);
      emit(LOG_WARN, "log", NULL, msg);
    }
    f->window_ms = now;
    f->written = 0;
    f->dropped = 0;
  }
  if (f->have_last && hash == f->last_hash) {
    if (!f->repeats) f->repeat_since_ms = now;
    f->repeats++;
    atomic_fetch_add_explicit(&g_suppressed, 1, memory_order_relaxed);
    if (now - f->repeat_since_ms >= 1000) flush_repeats(f, now);
    return 0;
  }
  flush_repeats(f, now);
  f->last_hash = hash;
  f->have_last = 1;
  f->level = level;
  snprintf(f->module, sizeof f->module, "%s", module);
  if (f->written >= LOG_BURST) {
    f->dropped++;
    atomic_fetch_add_explicit(&g_suppressed, 1, memory_order_relaxed);
    return 0;
  }
  f->written++;
  return 1;
}

unsigned long long log_suppressed(void) {
  return atomic_load_explicit(&g_suppressed, memory_order_relaxed);
}

/* The one writer: `call` (NULL when the event is about no call) goes in front
 * of the message as "call ID: " in text, and as its own field in JSON, so
 * `grep ID` and a JSON query find the same lines. */
static void write_event(enum log_level level, const char *module, const char *call,
                        const char *fmt, va_list ap) {
  if (!log_enabled(level)) return;
  if (call && !*call) call = NULL; /* a session that was never told its call */
  char msg[2048];
  vsnprintf(msg, sizeof msg, fmt, ap);
  /* One event, one line: a message must not smuggle in a line break. */
  for (char *p = msg; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  uint64_t seed = 14695981039346656037ULL + (uint64_t)level * 2 + (uint64_t)g_json;
  uint64_t h = hash_str(hash_str(hash_str(seed, module), call), msg);
  if (admit(&t_flood, h, level, module)) emit(level, module, call, msg);
}

void log_vwrite(enum log_level level, const char *module, const char *fmt, va_list ap) {
  write_event(level, module, NULL, fmt, ap);
}

void log_call_write(enum log_level level, const char *module, const char *call_id,
                    const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  write_event(level, module, call_id, fmt, ap);
  va_end(ap);
}

void log_write(enum log_level level, const char *module, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_vwrite(level, module, fmt, ap);
  va_end(ap);
}
