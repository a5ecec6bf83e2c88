/*
 * Address -> call table: open addressing with linear probing over a
 * power-of-two array that doubles when half full. Keys are the address
 * family, port and IP bytes; deletion uses tombstones so probe chains stay
 * intact, and a rebuild on growth clears them.
 */
#include "media/addrmap.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct key {
  uint16_t family, port;
  uint8_t ip[16];
};

struct slot {
  struct key key;
  void *value; /* NULL: empty */
  int tomb;
};

struct addrmap {
  struct slot *slots;
  size_t cap, used; /* used counts live entries and tombstones */
  int count;
};

static int make_key(const struct sockaddr *sa, struct key *k) {
  memset(k, 0, sizeof *k);
  k->family = sa->sa_family;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const void *)sa;
    k->port = in->sin_port;
    memcpy(k->ip, &in->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const void *)sa;
    k->port = in6->sin6_port;
    memcpy(k->ip, &in6->sin6_addr, 16);
  } else {
    return -EAFNOSUPPORT;
  }
  return 0;
}

static size_t hash(const struct key *k) {
  const uint8_t *p = (const uint8_t *)k;
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < sizeof *k; i++) h = (h ^ p[i]) * 1099511628211ull;
  return (size_t)h;
}

struct addrmap *addrmap_new(void) {
  struct addrmap *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->cap = 64;
  m->slots = calloc(m->cap, sizeof *m->slots);
  if (!m->slots) {
    free(m);
    return NULL;
  }
  return m;
}

void addrmap_free(struct addrmap *m) {
  if (!m) return;
  free(m->slots);
  free(m);
}

static struct slot *find(const struct addrmap *m, const struct key *k) {
  for (size_t i = hash(k) & (m->cap - 1), n = 0; n < m->cap; i = (i + 1) & (m->cap - 1), n++) {
    struct slot *s = &m->slots[i];
    if (!s->value && !s->tomb) return NULL;
    if (s->value && memcmp(&s->key, k, sizeof *k) == 0) return s;
  }
  return NULL;
}

static void insert(struct addrmap *m, const struct key *k, void *value) {
  size_t i = hash(k) & (m->cap - 1);
  while (m->slots[i].value) i = (i + 1) & (m->cap - 1);
  if (!m->slots[i].tomb) m->used++;
  m->slots[i] = (struct slot){.key = *k, .value = value};
  m->count++;
}

static int grow(struct addrmap *m) {
  /* Double when live entries fill a quarter; otherwise only sweep tombstones. */
  size_t cap = (size_t)m->count * 4 > m->cap ? m->cap * 2 : m->cap;
  struct slot *old = m->slots;
  size_t oldcap = m->cap;
  m->slots = calloc(cap, sizeof *m->slots);
  if (!m->slots) {
    m->slots = old;
    return -ENOMEM;
  }
  m->cap = cap;
  m->used = 0;
  m->count = 0;
  for (size_t i = 0; i < oldcap; i++)
    if (old[i].value) insert(m, &old[i].key, old[i].value);
  free(old);
  return 0;
}

int addrmap_put(struct addrmap *m, const struct sockaddr *addr, void *value) {
  struct key k;
  int rc = make_key(addr, &k);
  if (rc) return rc;
  struct slot *s = find(m, &k);
  if (s) {
    s->value = value;
    return 0;
  }
  if ((m->used + 1) * 2 > m->cap && (rc = grow(m))) return rc;
  insert(m, &k, value);
  return 0;
}

void *addrmap_get(const struct addrmap *m, const struct sockaddr *addr) {
  struct key k;
  if (make_key(addr, &k)) return NULL;
  struct slot *s = find(m, &k);
  return s ? s->value : NULL;
}

void addrmap_remove_value(struct addrmap *m, void *value) {
  for (size_t i = 0; i < m->cap; i++) {
    if (m->slots[i].value == value) {
      m->slots[i].value = NULL;
      m->slots[i].tomb = 1;
      m->count--;
    }
  }
}

int addrmap_count(const struct addrmap *m) { return m->count; }
