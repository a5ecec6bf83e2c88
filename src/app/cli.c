/*
 * Command-line flags.
 *
 * Every configuration key is also a flag: key `media_port` is
 * `--media-port 10000` or `--media-port=10000`. --config is read first
 * whatever its position, so that flags override the file regardless of
 * order on the command line.
 */
#include "app/cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* "--foo-bar=x" / "--foo-bar x" -> key "foo_bar", value "x"; advances *i. */
static int split_flag(int argc, char **argv, int *i, char *key, size_t cap, const char **value,
                      char *err, size_t errlen) {
  const char *arg = argv[*i];
  if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
    snprintf(err, errlen, "unexpected argument \"%s\" (flags look like --name value)", arg);
    return -EINVAL;
  }
  const char *name = arg + 2, *eq = strchr(name, '=');
  size_t len = eq ? (size_t)(eq - name) : strlen(name);
  if (len >= cap) {
    snprintf(err, errlen, "unknown flag \"%s\"", arg);
    return -EINVAL;
  }
  for (size_t k = 0; k < len; k++) key[k] = name[k] == '-' ? '_' : name[k];
  key[len] = '\0';
  if (eq) {
    *value = eq + 1;
  } else if (*i + 1 < argc) {
    *value = argv[++*i];
  } else {
    snprintf(err, errlen, "flag %s needs a value", arg);
    return -EINVAL;
  }
  return 0;
}

static int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

int cli_load_config(struct config *cfg, int argc, char **argv, char *const *envp, char *err,
                    size_t errlen) {
  config_defaults(cfg);
  const char *file = NULL;
  for (int i = 0; i < argc; i++) {
    if (is_help(argv[i])) return 1;
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) file = argv[i + 1];
    else if (strncmp(argv[i], "--config=", 9) == 0) file = argv[i] + 9;
  }
  int rc = file ? config_load_file(cfg, file, err, errlen) : 0;
  if (rc == 0) rc = config_load_env(cfg, envp, err, errlen);
  for (int i = 0; rc == 0 && i < argc; i++) {
    char key[64], origin[128];
    const char *value;
    rc = split_flag(argc, argv, &i, key, sizeof key, &value, err, errlen);
    if (rc || strcmp(key, "config") == 0) continue;
    snprintf(origin, sizeof origin, "flag --%.60s", key);
    for (char *p = origin + 7; *p; p++)
      if (*p == '_') *p = '-';
    if (!config_has_key(key)) {
      snprintf(err, errlen, "unknown %s (tingshuo serve --help lists the flags)", origin);
      return -EINVAL;
    }
    rc = config_set(cfg, key, value, origin, err, errlen);
  }
  return rc;
}
