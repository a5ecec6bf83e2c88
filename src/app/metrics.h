/*
 * metrics: the text of GET /metrics.
 *
 * Asks each part of the server for its own metrics (calls, media workers,
 * engines, HTTP client, store) and adds the process's: build, CPU, memory,
 * file descriptors, start time. Every metric is described in
 * docs/metrics.md.
 */
#ifndef TS_APP_METRICS_H
#define TS_APP_METRICS_H

#include "core/prom.h"

struct calls;
struct store;

/*
 * Appends every metric to b (check b->failed afterwards). On the control
 * loop's thread, where the calls and the HTTP client live. `calls` and
 * `store` may be NULL (records off: no store metrics).
 */
void metrics_write(struct prom_buf *b, struct calls *calls, struct store *store);

#endif
