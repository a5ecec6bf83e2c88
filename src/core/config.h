/*
 * config: every setting of the server, from defaults, a file, the environment
 * and the command line, in that order of precedence (later wins).
 *
 * The set of keys is one table in config.c; the file syntax, the environment
 * names (key `foo_bar` -> TINGSHUO_FOO_BAR) and the command-line flags
 * (`--foo-bar VALUE`) all derive from it.
 */
#ifndef TS_CORE_CONFIG_H
#define TS_CORE_CONFIG_H

#include <stddef.h>
#include <stdio.h>

struct config {
  char listen[256];        /* HTTP address, host:port */
  char https_listen[256];  /* HTTPS address, host:port, empty = off */
  char tls_cert[1024];     /* PEM certificate for HTTPS, empty = self-signed */
  char tls_key[1024];      /* PEM private key for HTTPS */
  char data_dir[1024];     /* state: generated certificate, database */
  char web_root[1024];     /* the browser client's files */
  char log_level[16];
  char log_format[16];     /* text | json */
  char agent[32];          /* what answers a call */
  int media_workers;       /* 0 = one per core */
  char media_address[256]; /* UDP bind address for media */
  int media_port;          /* first worker's UDP port; worker i uses +i; 0 = any */
  char announce_address[1024]; /* addresses put in SDP candidates, comma separated */
  int max_calls;
  int ice_timeout_ms;      /* no consent checks for this long ends a call */
  int resume_timeout_ms;   /* a call whose WebSocket dropped waits this long */
};

/* Fills in every default. */
void config_defaults(struct config *cfg);

/*
 * Each loader returns 0 or a negative errno; on error `err` holds a message
 * that names the key, the value and where it came from (file and line, the
 * environment variable, or the flag).
 */
int config_load_file(struct config *cfg, const char *path, char *err, size_t errlen);
int config_load_env(struct config *cfg, char *const *envp, char *err, size_t errlen);
int config_set(struct config *cfg, const char *key, const char *value, const char *origin,
               char *err, size_t errlen);

/* True when `key` names a configuration key. */
int config_has_key(const char *key);

/* Writes "  --flag-name VALUE   help (default: x)" lines for --help. */
void config_print_flags(FILE *out);

/* Writes the annotated example configuration (tingshuo.conf.example). */
void config_print_example(FILE *out);

#endif
