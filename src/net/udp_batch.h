/*
 * udp_batch: datagrams queued and sent together with one sendmmsg(2).
 *
 * A media worker sends one packet per call every 20 ms tick. One system
 * call per packet costs more than the packet itself, and on a virtual
 * machine far more; one system call for the whole tick also puts every
 * call's frame on the wire within the same few hundred microseconds.
 */
#ifndef TS_NET_UDP_BATCH_H
#define TS_NET_UDP_BATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define UDP_BATCH_MAX 64      /* datagrams per sendmmsg */
#define UDP_BATCH_SLOT 1600   /* the largest datagram queued; longer ones go alone */

struct udp_batch;

/* A batch for the datagram socket `fd` (not owned). */
int udp_batch_new(struct udp_batch **out, int fd);
void udp_batch_free(struct udp_batch *b);

/* Copies the datagram in; sends the batch when it is full. Returns 0, or a
 * negative errno when a datagram sent alone (too long for a slot) failed. */
int udp_batch_add(struct udp_batch *b, const uint8_t *data, size_t len, const struct sockaddr *to);

/* Sends what is queued. A datagram the kernel refuses (unreachable
 * address...) is dropped and the rest still go; when the socket's buffer is
 * full the rest are dropped, as a lost packet would be. Returns how many
 * were sent. */
int udp_batch_flush(struct udp_batch *b);

#endif
