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

/* `module` names the subsystem ("http", "media", ...). */
void log_write(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(enum log_level level, const char *module, const char *fmt, va_list ap);

#define log_error(mod, ...) log_write(LOG_ERROR, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_write(LOG_WARN, mod, __VA_ARGS__)
#define log_info(mod, ...) log_write(LOG_INFO, mod, __VA_ARGS__)
#define log_debug(mod, ...)                                                    \
  do {                                                                         \
    if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, mod, __VA_ARGS__);        \
  } while (0)

#endif
