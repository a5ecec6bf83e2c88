/*
 * tingshuo: an AI voice call server.
 *
 *   tingshuo serve [flags]     run the server
 *   tingshuo call URL ...      one call from the command line
 *   tingshuo bench URL ...     many calls at once, measured
 *   tingshuo token [...]       a call token, for servers with call_auth = token
 *   tingshuo --help | --version
 *
 * main only picks the command and turns its arguments into a configuration;
 * each command lives in its own module.
 */
#include <stdio.h>
#include <string.h>

#include "app/bench_cmd.h"
#include "app/call_cmd.h"
#include "app/cli.h"
#include "app/serve.h"
#include "app/token_cmd.h"
#include "core/config.h"
#include "core/log.h"

extern char **environ;

static void usage(FILE *out) {
  fprintf(out,
          "tingshuo %s - talk with an AI over WebRTC\n\n"
          "Usage:\n"
          "  tingshuo serve [--config FILE] [--KEY VALUE...]   run the voice call server\n"
          "  tingshuo call URL --play IN.wav [...]             place one call, print its events\n"
          "  tingshuo bench URL --calls N --duration S [...]   load test: N concurrent calls\n"
          "  tingshuo token [--ttl S] [--sub S] [--settings J] print a call token (last line)\n"
          "  tingshuo --help                                  this text\n"
          "  tingshuo --version                               print the version\n\n"
          "Run `tingshuo serve --help` for every setting. Settings come from defaults,\n"
          "then the --config file, then TINGSHUO_* environment variables, then flags.\n",
          TINGSHUO_VERSION);
}

static void serve_usage(FILE *out) {
  fprintf(out,
          "Usage: tingshuo serve [--config FILE] [--KEY VALUE...]\n\n"
          "Runs the server: the web client, WebSocket signaling on /ws, GET /healthz, and\n"
          "the media workers. Stops cleanly on SIGINT or SIGTERM.\n\n"
          "  --config FILE            read settings from FILE (see tingshuo.conf.example)\n"
          "  --print-config-example   print an annotated file with every key and default\n\n"
          "Every setting below is also a config-file key (with underscores) and an\n"
          "environment variable TINGSHUO_<KEY>, e.g. --media-port = media_port =\n"
          "TINGSHUO_MEDIA_PORT. API keys are read only from the environment.\n\n");
  config_print_flags(out);
}

static int cmd_serve(int argc, char **argv) {
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--print-config-example") == 0) {
      config_print_example(stdout);
      return 0;
    }
  }
  struct config cfg;
  char err[1024];
  int rc = cli_load_config(&cfg, argc, argv, environ, err, sizeof err);
  if (rc == 1) {
    serve_usage(stdout);
    return 0;
  }
  if (rc < 0) {
    fprintf(stderr, "tingshuo: %s\n", err);
    return 2;
  }
  log_configure((enum log_level)log_level_parse(cfg.log_level), strcmp(cfg.log_format, "json") == 0);
  return serve_run(&cfg);
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
    printf("tingshuo %s\n", TINGSHUO_VERSION);
    return 0;
  }
  if (strcmp(argv[1], "serve") == 0) return cmd_serve(argc - 2, argv + 2);
  if (strcmp(argv[1], "call") == 0) return call_cmd_main(argc - 2, argv + 2);
  if (strcmp(argv[1], "bench") == 0) return bench_cmd_main(argc - 2, argv + 2);
  if (strcmp(argv[1], "token") == 0) return token_cmd_main(argc - 2, argv + 2, environ);
  fprintf(stderr, "tingshuo: unknown command \"%s\"; run `tingshuo --help`\n", argv[1]);
  return 2;
}
