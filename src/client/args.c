/*
 * Flag values. strtod/strtol with the whole string consumed: "10s" or
 * "1e" are errors rather than a silently different number.
 */
#include "client/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int args_number(const char *flag, const char *text, double min, double max, double *out,
                char *err, size_t errlen) {
  char *end = NULL;
  errno = 0;
  double v = text ? strtod(text, &end) : NAN;
  if (!text || !*text || errno || *end || !isfinite(v) || v < min || v > max) {
    snprintf(err, errlen, "%s: expected a number from %g to %g, got \"%s\"", flag, min, max,
             text ? text : "");
    return -EINVAL;
  }
  *out = v;
  return 0;
}

int args_int(const char *flag, const char *text, long min, long max, long *out, char *err,
             size_t errlen) {
  char *end = NULL;
  errno = 0;
  long v = text ? strtol(text, &end, 10) : 0;
  if (!text || !*text || errno || *end || v < min || v > max) {
    snprintf(err, errlen, "%s: expected a whole number from %ld to %ld, got \"%s\"", flag, min,
             max, text ? text : "");
    return -EINVAL;
  }
  *out = v;
  return 0;
}

int args_echo(const char *text, double *gain, int *delay_ms, char *err, size_t errlen) {
  const char *colon = text ? strchr(text, ':') : NULL;
  char g[64];
  if (!colon || (size_t)(colon - text) >= sizeof g) {
    snprintf(err, errlen, "--echo: expected GAIN:DELAY_MS (e.g. 0.3:150), got \"%s\"",
             text ? text : "");
    return -EINVAL;
  }
  memcpy(g, text, (size_t)(colon - text));
  g[colon - text] = '\0';
  double gv;
  long dv;
  if (args_number("--echo gain", g, 0, 4, &gv, err, errlen) ||
      args_int("--echo delay", colon + 1, 0, 2000, &dv, err, errlen))
    return -EINVAL;
  *gain = gv;
  *delay_ms = (int)dv;
  return 0;
}
