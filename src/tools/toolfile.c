/*
 * Reading `tools_file`.
 *
 * Each entry is checked field by field against a short list of the fields
 * its kind may have; anything else is an error, not ignored, so that a
 * misspelt "say_while_runing" is found at start rather than on a call.
 * Header values that come from the environment are read here, once: a
 * variable that is not set is an error now instead of a webhook that
 * silently goes out without its key.
 */
#include "tools/toolfile.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The built-ins' words to the model, unless the file gives its own description. */
static const char end_call_description[] =
    "Hang up the phone call. Use it only once the conversation is over: after the caller says "
    "goodbye or asks to end the call, and after you have said goodbye yourself.";
static const char end_call_parameters[] =
    "{\"type\":\"object\",\"properties\":{\"reason\":{\"type\":\"string\",\"description\":"
    "\"Why the call ends, in a few words.\"}}}";
static const char get_time_description[] =
    "Get the current date, time and weekday where this service runs, with its timezone.";
static const char get_time_parameters[] = "{\"type\":\"object\",\"properties\":{}}";
static const char default_parameters[] = "{\"type\":\"object\",\"properties\":{}}";

/* Where an error is: "tools_file: tool 2 "name": " (or "(no name)"). */
struct where {
  size_t index; /* from 1 */
  const char *name;
  char *err;
  size_t errlen;
};

static int fail(const struct where *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const struct where *w, const char *fmt, ...) {
  char what[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (w->name) snprintf(w->err, w->errlen, "tools_file: tool %zu \"%s\": %s", w->index, w->name, what);
  else snprintf(w->err, w->errlen, "tools_file: tool %zu (no name): %s", w->index, what);
  return -EINVAL;
}

int toolfile_name_ok(const char *name) {
  size_t n = 0;
  for (; name[n]; n++) {
    char c = name[n];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return 0;
  }
  return n >= 1 && n <= 64;
}

/* Every key of obj is one of `allowed` (NULL-terminated); else an error naming it under `prefix`. */
static int only_fields(const struct where *w, json_t *obj, const char *prefix,
                       const char *const *allowed) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    int ok = 0;
    for (size_t i = 0; allowed[i] && !ok; i++) ok = strcmp(key, allowed[i]) == 0;
    if (!ok) return fail(w, "unknown field \"%s%s\"", prefix, key);
  }
  return 0;
}

/* A non-empty string field, or absent when optional; *out is a copy (NULL when absent). */
static int string_field(const struct where *w, json_t *obj, const char *field, const char *label,
                        int required, char **out) {
  json_t *v = json_object_get(obj, field);
  *out = NULL;
  if (!v) return required ? fail(w, "%s is missing", label) : 0;
  if (!json_is_string(v) || json_string_length(v) == 0)
    return fail(w, "%s must be a non-empty string", label);
  if (strlen(json_string_value(v)) != json_string_length(v)) return fail(w, "%s holds a NUL", label);
  *out = strdup(json_string_value(v));
  return *out ? 0 : -ENOMEM;
}

static int parameters_field(const struct where *w, json_t *entry, struct tool_def *d) {
  json_t *p = json_object_get(entry, "parameters");
  if (!p) {
    d->parameters = strdup(default_parameters);
    return d->parameters ? 0 : -ENOMEM;
  }
  if (!json_is_object(p)) return fail(w, "parameters must be a JSON Schema object");
  const char *type = json_string_value(json_object_get(p, "type"));
  if (!type || strcmp(type, "object") != 0) return fail(w, "parameters must have \"type\": \"object\"");
  d->parameters = json_dumps(p, JSON_COMPACT);
  return d->parameters ? 0 : -ENOMEM;
}

/* A header name as HTTP allows one (a token). */
static int header_name_ok(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (*s <= ' ' || *s >= 127 || strchr("()<>@,;:\\\"/[]?={}", *s)) return 0;
  return 1;
}

static int header_value(const struct where *w, const char *name, json_t *v, const char **out) {
  if (json_is_string(v)) {
    *out = json_string_value(v);
  } else if (json_is_object(v) && json_object_size(v) == 1 && json_is_string(json_object_get(v, "env"))) {
    const char *var = json_string_value(json_object_get(v, "env"));
    *out = getenv(var);
    if (!*out || !**out)
      return fail(w, "webhook.headers.%s: environment variable %s is not set", name, var);
  } else {
    return fail(w, "webhook.headers.%s must be a string or {\"env\": \"VARIABLE\"}", name);
  }
  if (strpbrk(*out, "\r\n")) return fail(w, "webhook.headers.%s: the value holds a line break", name);
  return 0;
}

static int headers_field(const struct where *w, json_t *hook, struct tool_def *d) {
  json_t *h = json_object_get(hook, "headers");
  if (!h) return 0;
  if (!json_is_object(h)) return fail(w, "webhook.headers must be an object");
  if (json_object_size(h) > TOOLFILE_MAX_HEADERS)
    return fail(w, "webhook.headers: at most %d headers", TOOLFILE_MAX_HEADERS);
  const char *name;
  json_t *v;
  json_object_foreach(h, name, v) {
    if (!header_name_ok(name)) return fail(w, "webhook.headers: \"%s\" is not a header name", name);
    if (strcasecmp(name, "Content-Type") == 0 || strcasecmp(name, "X-Tingshuo-Signature") == 0 ||
        strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Host") == 0)
      return fail(w, "webhook.headers.%s is set by the server", name);
    const char *value = NULL;
    int rc = header_value(w, name, v, &value);
    if (rc) return rc;
    if (asprintf(&d->headers[d->nheaders], "%s: %s", name, value) < 0) {
      d->headers[d->nheaders] = NULL;
      return -ENOMEM;
    }
    d->nheaders++;
  }
  return 0;
}

static int url_ok(const char *url) {
  const char *host = strncmp(url, "http://", 7) == 0    ? url + 7
                     : strncmp(url, "https://", 8) == 0 ? url + 8
                                                        : NULL;
  if (!host || !*host || *host == '/') return 0;
  for (const char *p = url; *p; p++)
    if (*p <= ' ' || *p >= 127) return 0;
  return 1;
}

static int webhook_field(const struct where *w, json_t *entry, struct tool_def *d, int default_timeout) {
  static const char *const fields[] = {"url", "timeout_ms", "headers", NULL};
  json_t *hook = json_object_get(entry, "webhook");
  if (!hook) return fail(w, "webhook is missing (or give \"builtin\")");
  if (!json_is_object(hook)) return fail(w, "webhook must be an object");
  int rc = only_fields(w, hook, "webhook.", fields);
  if (!rc) rc = string_field(w, hook, "url", "webhook.url", 1, &d->url);
  if (rc) return rc;
  if (!url_ok(d->url)) return fail(w, "webhook.url must be http:// or https:// with a host, without spaces");
  json_t *t = json_object_get(hook, "timeout_ms");
  d->timeout_ms = default_timeout;
  if (t) {
    if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > TOOLFILE_MAX_TIMEOUT_MS)
      return fail(w, "webhook.timeout_ms must be an integer from 1 to %d", TOOLFILE_MAX_TIMEOUT_MS);
    d->timeout_ms = (int)json_integer_value(t);
  }
  return headers_field(w, hook, d);
}

static int builtin_entry(struct where *w, json_t *entry, struct tool_def *d) {
  static const char *const fields[] = {"builtin", "description", NULL};
  const char *b = json_string_value(json_object_get(entry, "builtin"));
  if (!b) return fail(w, "builtin must be a string");
  w->name = b;
  const char *desc = NULL, *params = NULL;
  if (strcmp(b, "end_call") == 0) {
    d->kind = TOOLS_END_CALL;
    desc = end_call_description;
    params = end_call_parameters;
  } else if (strcmp(b, "get_time") == 0) {
    d->kind = TOOLS_GET_TIME;
    desc = get_time_description;
    params = get_time_parameters;
  } else {
    return fail(w, "builtin must be \"end_call\" or \"get_time\"");
  }
  int rc = only_fields(w, entry, "", fields);
  if (!rc) rc = string_field(w, entry, "description", "description", 0, &d->description);
  if (rc) return rc;
  d->name = strdup(b);
  if (!d->description) d->description = strdup(desc);
  d->parameters = strdup(params);
  return d->name && d->description && d->parameters ? 0 : -ENOMEM;
}

static int webhook_entry(struct where *w, json_t *entry, struct tool_def *d, int default_timeout) {
  static const char *const fields[] = {"name", "description", "parameters", "webhook",
                                       "say_while_running", NULL};
  d->kind = TOOLS_WEBHOOK;
  w->name = json_string_value(json_object_get(entry, "name"));
  int rc = string_field(w, entry, "name", "name", 1, &d->name);
  if (rc) return rc;
  if (!toolfile_name_ok(d->name))
    return fail(w, "name must be 1 to 64 letters, digits, '_' or '-'");
  rc = only_fields(w, entry, "", fields);
  if (!rc) rc = string_field(w, entry, "description", "description", 1, &d->description);
  if (!rc) rc = parameters_field(w, entry, d);
  if (!rc) rc = string_field(w, entry, "say_while_running", "say_while_running", 0, &d->filler);
  if (!rc) rc = webhook_field(w, entry, d, default_timeout);
  return rc;
}

static int load_entry(struct toolfile *f, size_t i, json_t *entry, int default_timeout, char *err,
                      size_t errlen) {
  struct where w = {.index = i + 1, .err = err, .errlen = errlen};
  if (!json_is_object(entry)) return fail(&w, "must be an object");
  struct tool_def *d = &f->defs[i];
  int rc = json_object_get(entry, "builtin") ? builtin_entry(&w, entry, d)
                                              : webhook_entry(&w, entry, d, default_timeout);
  if (rc == -ENOMEM) snprintf(err, errlen, "tools_file: out of memory");
  if (rc) return rc;
  f->n = i + 1;
  for (size_t k = 0; k < i; k++)
    if (strcmp(f->defs[k].name, d->name) == 0)
      return fail(&w, "name is used by tool %zu too; names must be unique", k + 1);
  return 0;
}

static int load_root(struct toolfile *f, json_t *root, const char *path, int default_timeout,
                     char *err, size_t errlen) {
  json_t *list = json_is_object(root) ? json_object_get(root, "tools") : NULL;
  if (!json_is_array(list) || json_object_size(root) != 1) {
    snprintf(err, errlen, "tools_file: %s must be an object with one field, \"tools\": [...]", path);
    return -EINVAL;
  }
  size_t n = json_array_size(list);
  if (n > TOOLFILE_MAX_TOOLS) {
    snprintf(err, errlen, "tools_file: %s: at most %d tools", path, TOOLFILE_MAX_TOOLS);
    return -EINVAL;
  }
  f->defs = calloc(n ? n : 1, sizeof *f->defs);
  if (!f->defs) {
    snprintf(err, errlen, "tools_file: out of memory");
    return -ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    int rc = load_entry(f, i, json_array_get(list, i), default_timeout, err, errlen);
    if (rc) {
      f->n = i + 1; /* the failed entry's parts are freed too */
      return rc;
    }
  }
  return 0;
}

int toolfile_load(struct toolfile *out, const char *path, int default_timeout_ms, char *err,
                  size_t errlen) {
  memset(out, 0, sizeof *out);
  json_error_t je;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    if (je.line > 0)
      snprintf(err, errlen, "tools_file: %s: line %d: %s", path, je.line, je.text);
    else
      snprintf(err, errlen, "tools_file: %s: %s", path, je.text);
    return -EINVAL;
  }
  int rc = load_root(out, root, path, default_timeout_ms, err, errlen);
  json_decref(root);
  if (rc) toolfile_free(out);
  return rc;
}

static void def_free(struct tool_def *d) {
  free(d->name);
  free(d->description);
  free(d->parameters);
  free(d->filler);
  free(d->url);
  for (size_t i = 0; i < d->nheaders; i++) free(d->headers[i]);
}

void toolfile_free(struct toolfile *f) {
  for (size_t i = 0; i < f->n; i++) def_free(&f->defs[i]);
  free(f->defs);
  memset(f, 0, sizeof *f);
}
