/*
 * addrmap: which call a UDP source address belongs to.
 *
 * Media packets (DTLS, SRTP) carry nothing that names the call, only their
 * source address; the ICE check that came from that address said which call
 * it was. This table remembers that, for the lookup every packet needs.
 */
#ifndef TS_MEDIA_ADDRMAP_H
#define TS_MEDIA_ADDRMAP_H

#include <sys/socket.h>

struct addrmap;

struct addrmap *addrmap_new(void);
void addrmap_free(struct addrmap *m);
/* Maps `addr` to `value`, replacing what was there. -ENOMEM when full. */
int addrmap_put(struct addrmap *m, const struct sockaddr *addr, void *value);
void *addrmap_get(const struct addrmap *m, const struct sockaddr *addr);
/* Forgets every address mapped to `value`. */
void addrmap_remove_value(struct addrmap *m, void *value);
int addrmap_count(const struct addrmap *m);

#endif
