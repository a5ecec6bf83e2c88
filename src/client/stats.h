/*
 * stats: the distributions a benchmark reports.
 *
 * stats_samples keeps every value (voice-to-voice latencies: a few per
 * call) and gives exact percentiles. stats_hist counts values into fixed
 * 0.1 ms bins up to 10 s (per-packet figures: millions of them, constant
 * memory), with percentiles exact to a bin.
 */
#ifndef TS_CLIENT_STATS_H
#define TS_CLIENT_STATS_H

#include <stddef.h>
#include <stdint.h>

struct stats_samples {
  double *v;
  size_t n, cap;
  int sorted;
};

void stats_samples_init(struct stats_samples *s);
void stats_samples_free(struct stats_samples *s);
int stats_samples_add(struct stats_samples *s, double v);
/* The p-th percentile (0..100), nearest rank; NAN when empty. */
double stats_samples_pct(struct stats_samples *s, double p);
double stats_samples_mean(const struct stats_samples *s);
/* Appends all of `from`. */
int stats_samples_merge(struct stats_samples *into, const struct stats_samples *from);

#define STATS_HIST_BIN_MS 0.1
#define STATS_HIST_BINS 100001 /* the last bin holds everything from 10 s up */

struct stats_hist;
struct stats_hist *stats_hist_new(void);
void stats_hist_free(struct stats_hist *h);
void stats_hist_add(struct stats_hist *h, double ms);
uint64_t stats_hist_count(const struct stats_hist *h);
/* The p-th percentile (upper edge of its bin), NAN when empty. */
double stats_hist_pct(const struct stats_hist *h, double p);
double stats_hist_max(const struct stats_hist *h);
void stats_hist_merge(struct stats_hist *into, const struct stats_hist *from);
void stats_hist_reset(struct stats_hist *h);

#endif
