/*
 * engine: what every engine backend is given when it opens.
 *
 * Backends are opened once at server start (models load then, connections
 * to services are warmed then) and shared by every call. CPU-heavy work goes
 * to the inference pool; HTTP backends run their transfers on the control
 * loop, reached by posting closures (struct mailbox_run) to `control`.
 */
#ifndef TS_ENGINES_ENGINE_H
#define TS_ENGINES_ENGINE_H

#include "core/config.h"
#include "core/mailbox.h"

struct pool;
struct http_client;

struct engine_env {
  const struct config *cfg;
  struct pool *pool;          /* inference threads */
  struct mailbox *control;    /* the control loop's mailbox */
  struct http_client *http;   /* the control loop's HTTP client; use only on that loop */
};

#endif
