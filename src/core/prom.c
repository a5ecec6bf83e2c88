/*
 * Prometheus text exposition format, version 0.0.4.
 *
 * A scrape is rare (every few seconds) and small (a few hundred lines), so
 * the text is built in one growing buffer and nothing is cached. What
 * matters is that the output is always valid: label values and help texts
 * are escaped the way the format asks (backslash, double quote and newline
 * in label values; backslash and newline in help), numbers are written so
 * that they read back exactly, and a histogram's buckets are cumulative
 * with its _count equal to its +Inf bucket even while other threads keep
 * observing into it.
 *
 * Histograms count in relaxed atomics, one bucket increment and one sum
 * increment per observation: cheap enough for a media worker's tick.
 */
#include "core/prom.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 5 ms to 10 s, denser where voice latencies live (0.2 s to 2 s). */
const double prom_latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4,
                                      0.5,   0.75, 1,     1.5,  2,   3,    5,   10};
const int prom_latency_nbounds = (int)(sizeof prom_latency_bounds / sizeof prom_latency_bounds[0]);

/* ---- the buffer ---- */

void prom_buf_init(struct prom_buf *b) { memset(b, 0, sizeof *b); }

void prom_buf_free(struct prom_buf *b) {
  free(b->data);
  prom_buf_init(b);
}

/* Room for `n` more bytes and a NUL; 0 or -1 (then b->failed). */
static int reserve(struct prom_buf *b, size_t n) {
  if (b->failed) return -1;
  if (b->len + n + 1 <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + n + 1) {
    if (cap > SIZE_MAX / 2) {
      b->failed = 1;
      return -1;
    }
    cap *= 2;
  }
  char *p = realloc(b->data, cap);
  if (!p) {
    b->failed = 1;
    return -1;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

static void put(struct prom_buf *b, const char *s, size_t n) {
  if (reserve(b, n)) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void puts_(struct prom_buf *b, const char *s) { put(b, s, strlen(s)); }

/* `s` with each byte in `special` written as a backslash escape ("\n" for a newline). */
static void put_escaped(struct prom_buf *b, const char *s, const char *special) {
  while (*s) {
    size_t n = strcspn(s, special);
    put(b, s, n);
    s += n;
    if (!*s) break;
    put(b, "\\", 1);
    put(b, *s == '\n' ? "n" : s, 1);
    s++;
  }
}

/* A number as the format spells it, short where that is exact; `s` holds 32 bytes. */
static void format_value(char *s, size_t size, double v) {
  if (isnan(v)) snprintf(s, size, "NaN");
  else if (isinf(v)) snprintf(s, size, v > 0 ? "+Inf" : "-Inf");
  else if (v == floor(v) && fabs(v) < 1e15) snprintf(s, size, "%.0f", v);
  else {
    snprintf(s, size, "%.15g", v);
    if (strtod(s, NULL) != v) snprintf(s, size, "%.17g", v);
  }
}

static void put_value(struct prom_buf *b, double v) {
  char s[32];
  format_value(s, sizeof s, v);
  puts_(b, s);
}

/* ---- lines ---- */

void prom_family(struct prom_buf *b, const char *name, const char *type, const char *help) {
  puts_(b, "# HELP ");
  puts_(b, name);
  put(b, " ", 1);
  put_escaped(b, help, "\\\n");
  puts_(b, "\n# TYPE ");
  puts_(b, name);
  put(b, " ", 1);
  puts_(b, type);
  put(b, "\n", 1);
}

/* name{k="v",...} from the pairs in `ap`, then the extra pair (NULL for none). */
static void put_series(struct prom_buf *b, const char *name, const char *suffix, va_list ap,
                       const char *extra_name, const char *extra_value) {
  puts_(b, name);
  puts_(b, suffix);
  int n = 0;
  for (const char *k; (k = va_arg(ap, const char *)) != NULL; n++) {
    const char *v = va_arg(ap, const char *);
    puts_(b, n ? "," : "{");
    puts_(b, k);
    puts_(b, "=\"");
    put_escaped(b, v ? v : "", "\\\"\n");
    put(b, "\"", 1);
  }
  if (extra_name) {
    puts_(b, n ? "," : "{");
    puts_(b, extra_name);
    puts_(b, "=\"");
    puts_(b, extra_value);
    put(b, "\"", 1);
    n++;
  }
  if (n) put(b, "}", 1);
  put(b, " ", 1);
}

void prom_sample(struct prom_buf *b, const char *name, double value, ...) {
  va_list ap;
  va_start(ap, value);
  put_series(b, name, "", ap, NULL, NULL);
  va_end(ap);
  put_value(b, value);
  put(b, "\n", 1);
}

/* ---- histograms ---- */

void prom_histogram_init(struct prom_histogram *h, const double *bounds, int nbounds) {
  h->bounds = bounds;
  h->nbounds = nbounds < 0 ? 0 : nbounds > PROM_MAX_BUCKETS ? PROM_MAX_BUCKETS : nbounds;
  for (int i = 0; i <= PROM_MAX_BUCKETS; i++) atomic_init(&h->buckets[i], 0);
  atomic_init(&h->sum_ns, 0);
}

void prom_histogram_observe(struct prom_histogram *h, double value) {
  if (isnan(value)) return;
  if (value < 0) value = 0;
  int i = 0;
  while (i < h->nbounds && value > h->bounds[i]) i++;
  atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
  double ns = value * 1e9;
  uint64_t add = ns >= 1.8e19 ? UINT64_MAX / 2 : (uint64_t)ns;
  atomic_fetch_add_explicit(&h->sum_ns, add, memory_order_relaxed);
}

static void histogram_line(struct prom_buf *b, const char *name, const char *suffix, va_list labels,
                           const char *le, double value) {
  va_list ap;
  va_copy(ap, labels);
  put_series(b, name, suffix, ap, le ? "le" : NULL, le);
  va_end(ap);
  put_value(b, value);
  put(b, "\n", 1);
}

void prom_histogram_write(struct prom_buf *b, const char *name, const struct prom_histogram *h, ...) {
  va_list labels;
  va_start(labels, h);
  uint64_t cumulative = 0;
  char le[32];
  for (int i = 0; i <= h->nbounds; i++) {
    cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    format_value(le, sizeof le, i < h->nbounds ? h->bounds[i] : INFINITY);
    histogram_line(b, name, "_bucket", labels, le, (double)cumulative);
  }
  double sum = (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9;
  histogram_line(b, name, "_sum", labels, NULL, sum);
  histogram_line(b, name, "_count", labels, NULL, (double)cumulative);
  va_end(labels);
}
