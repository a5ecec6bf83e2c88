/*
 * Per-address call limits.
 *
 * A chained hash table keyed by the address text. Its size is bounded by
 * `capacity`: when full, the least recently used address with no call in
 * progress is forgotten (which forgives it the rest of its minute, the
 * cheaper mistake than refusing strangers because of old entries). An
 * address with a call in progress is never forgotten, so the limits of those
 * hold; such entries are at most the server's call limit.
 *
 * The bucket is kept in integer units of 1/60000 call so that refilling by
 * per_min calls a minute is exact: each millisecond adds per_min units and a
 * call costs 60000.
 */
#include "app/iplimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNIT_MS 60000

struct ip_entry {
  struct ip_entry *next;
  char key[IPLIMIT_KEY_MAX];
  int active;      /* calls in progress */
  int64_t credit;  /* bucket, in 1/60000 call */
  uint64_t at_ms;  /* when credit was last brought up to date */
};

struct iplimit {
  int per_ip, per_min;
  size_t capacity, count, nbuckets;
  struct ip_entry **buckets;
};

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

int iplimit_new(struct iplimit **out, int per_ip, int per_min, size_t capacity) {
  struct iplimit *l = calloc(1, sizeof *l);
  if (!l) return -ENOMEM;
  l->per_ip = per_ip;
  l->per_min = per_min;
  l->capacity = capacity ? capacity : 1;
  l->nbuckets = 64;
  while (l->nbuckets < l->capacity && l->nbuckets < (1u << 20)) l->nbuckets <<= 1;
  l->buckets = calloc(l->nbuckets, sizeof *l->buckets);
  if (!l->buckets) {
    free(l);
    return -ENOMEM;
  }
  *out = l;
  return 0;
}

void iplimit_free(struct iplimit *l) {
  if (!l) return;
  for (size_t i = 0; i < l->nbuckets; i++) {
    for (struct ip_entry *e = l->buckets[i], *n; e; e = n) {
      n = e->next;
      free(e);
    }
  }
  free(l->buckets);
  free(l);
}

int iplimit_key(const char *ip, char *key, size_t cap) {
  struct in_addr a4;
  struct in6_addr a6;
  char text[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, ip, &a4) == 1) {
    inet_ntop(AF_INET, &a4, text, sizeof text);
  } else if (inet_pton(AF_INET6, ip, &a6) == 1) {
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
      inet_ntop(AF_INET, &a6.s6_addr[12], text, sizeof text);
    } else {
      memset(&a6.s6_addr[8], 0, 8); /* the /64 */
      inet_ntop(AF_INET6, &a6, text, sizeof text);
      return snprintf(key, cap, "%s/64", text) < (int)cap ? 0 : -ENOSPC;
    }
  } else {
    return -EINVAL;
  }
  return snprintf(key, cap, "%s", text) < (int)cap ? 0 : -ENOSPC;
}

static struct ip_entry **slot(struct iplimit *l, const char *key) {
  struct ip_entry **pp = &l->buckets[hash(key) & (l->nbuckets - 1)];
  while (*pp && strcmp((*pp)->key, key) != 0) pp = &(*pp)->next;
  return pp;
}

static int64_t full(const struct iplimit *l) { return (int64_t)l->per_min * UNIT_MS; }

static void refill(const struct iplimit *l, struct ip_entry *e, uint64_t now_ms) {
  if (now_ms > e->at_ms) {
    uint64_t dt = now_ms - e->at_ms; /* a minute or more fills it: no overflow below */
    e->credit = dt >= UNIT_MS ? full(l) : e->credit + (int64_t)dt * l->per_min;
    if (e->credit > full(l)) e->credit = full(l);
  }
  e->at_ms = now_ms;
}

static int idle(const struct iplimit *l, struct ip_entry *e, uint64_t now_ms) {
  refill(l, e, now_ms);
  return e->active == 0 && e->credit >= full(l);
}

static void unlink_free(struct iplimit *l, struct ip_entry **pp) {
  struct ip_entry *e = *pp;
  *pp = e->next;
  free(e);
  l->count--;
}

void iplimit_sweep(struct iplimit *l, uint64_t now_ms) {
  for (size_t i = 0; i < l->nbuckets; i++) {
    struct ip_entry **pp = &l->buckets[i];
    while (*pp) {
      if (idle(l, *pp, now_ms)) unlink_free(l, pp);
      else pp = &(*pp)->next;
    }
  }
}

/* Room for one more: forget the longest-unused address with no call in progress. */
static int make_room(struct iplimit *l, uint64_t now_ms) {
  iplimit_sweep(l, now_ms);
  if (l->count < l->capacity) return 0;
  struct ip_entry **oldest = NULL;
  for (size_t i = 0; i < l->nbuckets; i++)
    for (struct ip_entry **pp = &l->buckets[i]; *pp; pp = &(*pp)->next)
      if ((*pp)->active == 0 && (!oldest || (*pp)->at_ms < (*oldest)->at_ms)) oldest = pp;
  if (!oldest) return -ENOSPC;
  unlink_free(l, oldest);
  return 0;
}

int iplimit_acquire(struct iplimit *l, const char *key, uint64_t now_ms) {
  if (strlen(key) >= IPLIMIT_KEY_MAX) return -EINVAL;
  struct ip_entry *e = *slot(l, key);
  if (e) {
    refill(l, e, now_ms);
  } else { /* a new address: it has a full bucket and no call, so it passes */
    if (l->count >= l->capacity && make_room(l, now_ms)) return -ENOSPC;
    e = calloc(1, sizeof *e);
    if (!e) return -ENOMEM;
    snprintf(e->key, sizeof e->key, "%s", key);
    e->credit = full(l);
    e->at_ms = now_ms;
    struct ip_entry **head = &l->buckets[hash(key) & (l->nbuckets - 1)];
    e->next = *head;
    *head = e;
    l->count++;
  }
  if (l->per_ip && e->active >= l->per_ip) return -EBUSY;
  if (l->per_min && e->credit < UNIT_MS) return -EAGAIN;
  e->active++;
  e->credit -= l->per_min ? UNIT_MS : 0;
  return 0;
}

void iplimit_release(struct iplimit *l, const char *key) {
  struct ip_entry *e = *slot(l, key);
  if (e && e->active > 0) e->active--;
}

size_t iplimit_size(const struct iplimit *l) { return l->count; }
