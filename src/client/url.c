/*
 * Client URLs.
 *
 * Only what a WebSocket connection needs: scheme, host (a name, an IPv4
 * address or a bracketed IPv6 one), port (the scheme's default when
 * absent) and path. No user info, no fragments: they have no meaning here
 * and are refused rather than silently dropped.
 */
#include "client/url.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/num.h"

static int fail(char *err, size_t errlen, const char *text, const char *why) {
  snprintf(err, errlen, "bad URL \"%.200s\": %s", text, why);
  return -EINVAL;
}

static int parse_scheme(const char *text, struct ws_url *u, const char **rest) {
  static const struct { const char *name; int tls, port; } schemes[] = {
      {"ws://", 0, 80}, {"wss://", 1, 443}, {"http://", 0, 80}, {"https://", 1, 443}};
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
    size_t n = strlen(schemes[i].name);
    if (strncasecmp(text, schemes[i].name, n) == 0) {
      u->tls = schemes[i].tls;
      u->port = schemes[i].port;
      *rest = text + n;
      return 0;
    }
  }
  return -EINVAL;
}

static int parse_port(const char *p, size_t n, int *port) {
  return num_parse_int(p, n, 1, 65535, port) ? -EINVAL : 0;
}

/* host[:port] or [v6][:port], ending at `end`. */
static int parse_authority(const char *p, const char *end, struct ws_url *u, const char **why) {
  const char *host = p, *host_end, *port = NULL;
  if (*p == '[') {
    host = p + 1;
    host_end = memchr(host, ']', (size_t)(end - host));
    if (!host_end) return *why = "unclosed [", -EINVAL;
    if (host_end + 1 < end) {
      if (host_end[1] != ':') return *why = "junk after ]", -EINVAL;
      port = host_end + 2;
    }
  } else {
    host_end = memchr(p, ':', (size_t)(end - p));
    if (host_end) port = host_end + 1;
    else host_end = end;
  }
  size_t hl = (size_t)(host_end - host);
  if (hl == 0) return *why = "no host", -EINVAL;
  if (hl >= sizeof u->host) return *why = "host too long", -EINVAL;
  if (memchr(host, '@', hl)) return *why = "user info is not supported", -EINVAL;
  memcpy(u->host, host, hl);
  u->host[hl] = '\0';
  if (port && parse_port(port, (size_t)(end - port), &u->port))
    return *why = "bad port (1-65535)", -EINVAL;
  return 0;
}

int ws_url_parse(const char *text, struct ws_url *u, char *err, size_t errlen) {
  memset(u, 0, sizeof *u);
  const char *p, *why = NULL;
  if (!text || parse_scheme(text, u, &p))
    return fail(err, errlen, text ? text : "", "the scheme must be ws://, wss://, http:// or https://");
  const char *end = p + strcspn(p, "/?#");
  if (parse_authority(p, end, u, &why)) return fail(err, errlen, text, why);
  if (strchr(end, '#')) return fail(err, errlen, text, "fragments are not supported");
  const char *path = *end == '\0' || strcmp(end, "/") == 0 ? "/ws" : end;
  if (*path == '?') return fail(err, errlen, text, "a query needs a path");
  if (strlen(path) >= sizeof u->path) return fail(err, errlen, text, "path too long");
  snprintf(u->path, sizeof u->path, "%s", path);
  return 0;
}
