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
 * The level and format are configuration, set once before threads start; they
 * are the only globals here.
 */
#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum log_level g_level = LOG_INFO;
static int g_json = 0;

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

/* The one writer: `call` (NULL when the event is about no call) goes in front
 * of the message as "call ID: " in text, and as its own field in JSON, so
 * `grep ID` and a JSON query find the same lines. */
static void write_event(enum log_level level, const char *module, const char *call,
                        const char *fmt, va_list ap) {
  if (!log_enabled(level)) return;
  if (call && !*call) call = NULL; /* a session that was never told its call */
  char msg[2048], line[4096], ts[40];
  vsnprintf(msg, sizeof msg, fmt, ap);
  /* One event, one line: a message must not smuggle in a line break. */
  for (char *p = msg; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
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
