/*
 * prom: metrics in the Prometheus text exposition format (version 0.0.4).
 *
 * Metrics are not a global registry: each module keeps its own counters
 * (atomics where another thread reads them) and writes them into a
 * prom_buf when /metrics is asked for. This module only knows the format
 * and the histogram type they share.
 */
#ifndef TS_CORE_PROM_H
#define TS_CORE_PROM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* A growing text buffer; after an allocation failure `failed` is set and writes are ignored. */
struct prom_buf {
  char *data;
  size_t len, cap;
  int failed;
};

void prom_buf_init(struct prom_buf *b);
void prom_buf_free(struct prom_buf *b);

/*
 * "# HELP name help" and "# TYPE name type"; type is counter, gauge or
 * histogram. Write it once per metric, before its samples.
 */
void prom_family(struct prom_buf *b, const char *name, const char *type, const char *help);
/*
 * One sample line: name{labels} value. After the value comes a list of
 * label name/value pairs that always ends with NULL:
 * prom_sample(b, "x_total", 3, "reason", "hangup", NULL), or
 * prom_sample(b, "x", 1, NULL) for none. Label values are escaped here.
 */
void prom_sample(struct prom_buf *b, const char *name, double value, ...)
    __attribute__((sentinel));

#define PROM_MAX_BUCKETS 20

/*
 * A histogram any thread may observe into and any thread may read (relaxed
 * atomics: a scrape may see an observation in its bucket but not yet in
 * the sum). _count is written as the sum of the buckets, so it always
 * equals the +Inf bucket. Bounds are upper bounds in base units (seconds),
 * increasing, at most PROM_MAX_BUCKETS; +Inf is implied.
 */
struct prom_histogram {
  const double *bounds;
  int nbounds;
  _Atomic uint64_t buckets[PROM_MAX_BUCKETS + 1]; /* not cumulative; the last is +Inf */
  _Atomic uint64_t sum_ns; /* sum in billionths of the base unit */
};

/* Bounds fit for latencies: 5 ms to 10 s. */
extern const double prom_latency_bounds[];
extern const int prom_latency_nbounds;

/* More than PROM_MAX_BUCKETS bounds are cut to the first PROM_MAX_BUCKETS. */
void prom_histogram_init(struct prom_histogram *h, const double *bounds, int nbounds);
/* Negative values count as 0; NaN is ignored. */
void prom_histogram_observe(struct prom_histogram *h, double value);
/* _bucket (cumulative, with le), _sum and _count lines; labels as in prom_sample. */
void prom_histogram_write(struct prom_buf *b, const char *name, const struct prom_histogram *h,
                          ...) __attribute__((sentinel));

#endif
