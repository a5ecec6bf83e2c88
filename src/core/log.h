/* log: one line per event, text or JSON lines, to stderr. */
#ifndef TS_CORE_LOG_H
#define TS_CORE_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Parse "error" | "warn" | "info" | "debug"; returns the level or -EINVAL. */
int log_level_parse(const char *name);
const char *log_level_name(enum log_level level);

/* Set once at start-up, before any thread is created. */
void log_configure(enum log_level level, int json);
int log_enabled(enum log_level level);

/*
 * Lines a thread may write in one second; the rest are counted, and so is a
 * line identical to the one before it (see log.c). Their total so far:
 */
#define LOG_BURST 200
unsigned long long log_suppressed(void);

/* `module` names the subsystem ("http", "media", ...). */
void log_write(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(enum log_level level, const char *module, const char *fmt, va_list ap);

/*
 * An event about one call: the call id is part of every such line ("call ID: ..."
 * in text, a "call" field in JSON), so one call's story can be grepped.
 */
void log_call_write(enum log_level level, const char *module, const char *call_id,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define log_call_error(mod, id, ...) log_call_write(LOG_ERROR, mod, id, __VA_ARGS__)
#define log_call_warn(mod, id, ...) log_call_write(LOG_WARN, mod, id, __VA_ARGS__)
#define log_call_info(mod, id, ...) log_call_write(LOG_INFO, mod, id, __VA_ARGS__)
#define log_call_debug(mod, id, ...)                                           \
  do {                                                                         \
    if (log_enabled(LOG_DEBUG)) log_call_write(LOG_DEBUG, mod, id, __VA_ARGS__); \
  } while (0)

#define log_error(mod, ...) log_write(LOG_ERROR, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_write(LOG_WARN, mod, __VA_ARGS__)
#define log_info(mod, ...) log_write(LOG_INFO, mod, __VA_ARGS__)
#define log_debug(mod, ...)                                                    \
  do {                                                                         \
    if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, mod, __VA_ARGS__);        \
  } while (0)

#endif
