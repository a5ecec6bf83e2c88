/*
 * tingshuo token [--ttl SECONDS] [--sub S] [--settings JSON|FILE] [--config FILE] [--KEY VALUE]
 *
 * Mints a call token with the call_secret the server would use: the same
 * --config file, TINGSHUO_* environment and flags as `tingshuo serve`, so an
 * operator on the server's machine can hand out a token, or a script can
 * take one for `tingshuo call --token` and `tingshuo bench --token`. The
 * token is the last line of stdout (`tingshuo token | tail -n 1`); what it
 * allows goes to the lines before it.
 */
#include "app/token_cmd.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/calls.h"
#include "app/calltoken.h"
#include "app/cli.h"
#include "client/args.h"

void token_cmd_usage(FILE *out) {
  fprintf(out,
          "Usage: tingshuo token [--ttl SECONDS] [--sub S] [--settings JSON|FILE] [--config FILE]\n\n"
          "Prints a call token signed with call_secret (read like `tingshuo serve` reads it: the\n"
          "--config file, TINGSHUO_CALL_SECRET, or --call-secret). The token is the last line of\n"
          "stdout. A server with call_auth = token starts a call only for a caller holding one.\n\n"
          "  --ttl SECONDS        how long it is valid (default %d, at most %d)\n"
          "  --sub S              who it is for (1-127 printable ASCII); kept in the call's record\n"
          "  --settings JSON|FILE per-call settings the page cannot override, e.g.\n"
          "                       '{\"language\":\"en\",\"system_prompt\":\"...\"}' (docs/protocol.md)\n"
          "  --config FILE, --KEY VALUE   server settings, as for tingshuo serve\n\n"
          "Exit status: 0 with a token, 2 on bad usage or no call_secret.\n",
          CALLTOKEN_TTL_DEFAULT, CALLTOKEN_TTL_MAX);
}

struct token_opts {
  long ttl_s;
  const char *sub, *settings;
  int nrest;
  char **rest; /* the other flags, for cli_load_config */
};

static int take(const char *flag, int argc, char **argv, int *i, const char **value, char *err,
                size_t errlen) {
  const char *a = argv[*i];
  size_t n = strlen(flag);
  if (a[n] == '=') {
    *value = a + n + 1;
    return 0;
  }
  if (*i + 1 >= argc) return snprintf(err, errlen, "%s needs a value", flag), -EINVAL;
  *value = argv[++*i];
  return 0;
}

static int is_flag(const char *a, const char *flag) {
  size_t n = strlen(flag);
  return strncmp(a, flag, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

static int parse_opts(int argc, char **argv, struct token_opts *o, char *err, size_t errlen) {
  o->ttl_s = CALLTOKEN_TTL_DEFAULT;
  for (int i = 0; i < argc; i++) {
    const char *v = NULL;
    int rc = 0;
    if (is_flag(argv[i], "--ttl")) {
      rc = take("--ttl", argc, argv, &i, &v, err, errlen);
      if (rc == 0) rc = args_int("--ttl", v, 1, CALLTOKEN_TTL_MAX, &o->ttl_s, err, errlen);
    } else if (is_flag(argv[i], "--sub")) {
      rc = take("--sub", argc, argv, &i, &o->sub, err, errlen);
    } else if (is_flag(argv[i], "--settings")) {
      rc = take("--settings", argc, argv, &i, &o->settings, err, errlen);
    } else {
      o->rest[o->nrest++] = argv[i];
    }
    if (rc) return rc;
  }
  return 0;
}

/* --settings takes JSON text or a file holding it. */
static json_t *load_settings(const char *arg, char *err, size_t errlen) {
  json_error_t je;
  json_t *v = arg[0] == '{' ? json_loads(arg, JSON_REJECT_DUPLICATES, &je)
                            : json_load_file(arg, JSON_REJECT_DUPLICATES, &je);
  if (!v) snprintf(err, errlen, "--settings: %s (line %d)", je.text, je.line);
  else if (!json_is_object(v)) {
    snprintf(err, errlen, "--settings: per-call settings must be a JSON object");
    json_decref(v);
    v = NULL;
  }
  return v;
}

int token_cmd_main(int argc, char **argv, char *const *envp) {
  for (int i = 0; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      token_cmd_usage(stdout);
      return 0;
    }
  struct token_opts o = {0};
  o.rest = calloc((size_t)argc + 1, sizeof *o.rest);
  char err[1024] = "";
  static struct config cfg; /* large */
  json_t *settings = NULL;
  char *token = NULL;
  int64_t exp = 0;
  int rc = o.rest ? parse_opts(argc, argv, &o, err, sizeof err) : -ENOMEM;
  if (rc == -ENOMEM) snprintf(err, sizeof err, "out of memory");
  if (rc == 0) rc = cli_load_config(&cfg, o.nrest, o.rest, envp, err, sizeof err);
  if (rc == 0 && o.settings && !(settings = load_settings(o.settings, err, sizeof err)))
    rc = -EINVAL;
  if (rc == 0)
    rc = calls_mint_token(&cfg, (int64_t)time(NULL), o.ttl_s, o.sub, settings, &token, &exp, err,
                          sizeof err);
  json_decref(settings);
  free(o.rest);
  if (rc) {
    fprintf(stderr, "tingshuo token: %s\n", err);
    return 2;
  }
  char at[32];
  time_t t = (time_t)exp;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
  printf("call token%s%s%s, valid %ld s until %s%s:\n%s\n", o.sub ? " for \"" : "",
         o.sub ? o.sub : "", o.sub ? "\"" : "", o.ttl_s, at, o.settings ? ", with settings" : "",
         token);
  free(token);
  return 0;
}
