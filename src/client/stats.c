/*
 * Percentiles.
 *
 * Nearest rank (the smallest value with at least p% of the data at or
 * below it): what "p99 is 12 ms" means to a reader, with no interpolation
 * between two measurements that both happened.
 */
#include "client/stats.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void stats_samples_init(struct stats_samples *s) { memset(s, 0, sizeof *s); }

void stats_samples_free(struct stats_samples *s) {
  free(s->v);
  memset(s, 0, sizeof *s);
}

int stats_samples_add(struct stats_samples *s, double v) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    double *grown = realloc(s->v, cap * sizeof *grown);
    if (!grown) return -ENOMEM;
    s->v = grown;
    s->cap = cap;
  }
  s->v[s->n++] = v;
  s->sorted = 0;
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static size_t rank(double p, size_t n) {
  if (p <= 0) return 0;
  size_t r = (size_t)ceil(p / 100.0 * (double)n);
  return r == 0 ? 0 : (r > n ? n - 1 : r - 1);
}

double stats_samples_pct(struct stats_samples *s, double p) {
  if (!s->n) return NAN;
  if (!s->sorted) {
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    s->sorted = 1;
  }
  return s->v[rank(p, s->n)];
}

double stats_samples_mean(const struct stats_samples *s) {
  if (!s->n) return NAN;
  double sum = 0;
  for (size_t i = 0; i < s->n; i++) sum += s->v[i];
  return sum / (double)s->n;
}

int stats_samples_merge(struct stats_samples *into, const struct stats_samples *from) {
  for (size_t i = 0; i < from->n; i++)
    if (stats_samples_add(into, from->v[i])) return -ENOMEM;
  return 0;
}

struct stats_hist {
  uint64_t total;
  double max;
  uint32_t bins[STATS_HIST_BINS];
};

struct stats_hist *stats_hist_new(void) { return calloc(1, sizeof(struct stats_hist)); }
void stats_hist_free(struct stats_hist *h) { free(h); }

void stats_hist_add(struct stats_hist *h, double ms) {
  if (!(ms >= 0)) ms = 0; /* negative and NaN count as zero */
  double b = ms / STATS_HIST_BIN_MS;
  size_t i = b >= STATS_HIST_BINS - 1 ? STATS_HIST_BINS - 1 : (size_t)b;
  h->bins[i]++;
  h->total++;
  if (ms > h->max) h->max = ms;
}

uint64_t stats_hist_count(const struct stats_hist *h) { return h->total; }
double stats_hist_max(const struct stats_hist *h) { return h->total ? h->max : NAN; }

double stats_hist_pct(const struct stats_hist *h, double p) {
  if (!h->total) return NAN;
  uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->total), seen = 0;
  if (want == 0) want = 1;
  for (size_t i = 0; i < STATS_HIST_BINS; i++) {
    seen += h->bins[i];
    if (seen >= want) {
      double edge = (double)(i + 1) * STATS_HIST_BIN_MS;
      return edge < h->max ? edge : h->max;
    }
  }
  return h->max;
}

void stats_hist_merge(struct stats_hist *into, const struct stats_hist *from) {
  for (size_t i = 0; i < STATS_HIST_BINS; i++) into->bins[i] += from->bins[i];
  into->total += from->total;
  if (from->total && from->max > into->max) into->max = from->max;
}

void stats_hist_reset(struct stats_hist *h) { memset(h, 0, sizeof *h); }
