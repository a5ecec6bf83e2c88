/*
 * iplimit: how many calls one address may have at once, and start per minute.
 *
 * Addresses are keyed as the caller's network sees them: an IPv4 address
 * (also when it reaches us IPv4-mapped on an IPv6 socket) is one key, and an
 * IPv6 address counts by its /64, since one machine is routinely given a
 * whole /64 and could otherwise mint addresses at will.
 *
 * The rate is a token bucket holding `per_min` calls that refills at
 * per_min a minute, so a burst of per_min calls passes and then one every
 * 60/per_min seconds. An address with no call in progress and a full bucket
 * has nothing to remember and is dropped, on iplimit_sweep or when the table
 * is full; the table never holds more than its capacity.
 */
#ifndef TS_APP_IPLIMIT_H
#define TS_APP_IPLIMIT_H

#include <stddef.h>
#include <stdint.h>

#define IPLIMIT_KEY_MAX 48

struct iplimit;

/* per_ip: calls at once per address (0 = no limit); per_min: new calls a minute (0 = no
 * limit); capacity: addresses remembered at most. */
int iplimit_new(struct iplimit **out, int per_ip, int per_min, size_t capacity);
void iplimit_free(struct iplimit *l);

/* The key `ip` (text) is counted under; -EINVAL when it is not an IP address. */
int iplimit_key(const char *ip, char *key, size_t cap);

/*
 * A new call from `key` at `now_ms`: 0 and counted (iplimit_release it when it
 * ends), -EBUSY when the address has per_ip calls already, -EAGAIN when it
 * has started per_min calls in the last minute, -ENOSPC when every remembered
 * address has a call in progress and the table is full.
 */
int iplimit_acquire(struct iplimit *l, const char *key, uint64_t now_ms);
/* A call counted by iplimit_acquire has ended. */
void iplimit_release(struct iplimit *l, const char *key);
/* Forgets addresses with no call in progress and a full bucket. */
void iplimit_sweep(struct iplimit *l, uint64_t now_ms);
/* Addresses remembered now. */
size_t iplimit_size(const struct iplimit *l);

#endif
