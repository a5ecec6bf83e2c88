/* serve: the `tingshuo serve` command. */
#ifndef TS_APP_SERVE_H
#define TS_APP_SERVE_H

#include "core/config.h"

/* Runs the server until SIGINT/SIGTERM; returns the process exit status. */
int serve_run(const struct config *cfg);

#endif
