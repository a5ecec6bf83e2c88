/*
 * Batched UDP sends.
 *
 * Datagrams are copied into fixed slots (a frame of audio is about a
 * hundred bytes, so the copy costs nothing next to a system call) so that
 * the caller's buffer is free again at once and the batch owns everything
 * it will send. sendmmsg stops at the first datagram that fails and
 * reports how many went before it; the flush then skips that one and goes
 * on, so one bad destination never silences the other calls of the tick.
 */
#include "net/udp_batch.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct udp_batch {
  int fd;
  int n;
  struct mmsghdr msg[UDP_BATCH_MAX];
  struct iovec iov[UDP_BATCH_MAX];
  struct sockaddr_storage to[UDP_BATCH_MAX];
  uint8_t data[UDP_BATCH_MAX][UDP_BATCH_SLOT];
};

int udp_batch_new(struct udp_batch **out, int fd) {
  struct udp_batch *b = calloc(1, sizeof *b);
  if (!b) return -ENOMEM;
  b->fd = fd;
  *out = b;
  return 0;
}

void udp_batch_free(struct udp_batch *b) { free(b); }

static socklen_t addr_len(const struct sockaddr *sa) {
  return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

int udp_batch_add(struct udp_batch *b, const uint8_t *data, size_t len, const struct sockaddr *to) {
  if (len > UDP_BATCH_SLOT) {
    ssize_t r = sendto(b->fd, data, len, MSG_DONTWAIT, to, addr_len(to));
    return r < 0 ? -errno : 0;
  }
  int i = b->n++;
  memcpy(b->data[i], data, len);
  memcpy(&b->to[i], to, addr_len(to));
  b->iov[i] = (struct iovec){.iov_base = b->data[i], .iov_len = len};
  b->msg[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &b->to[i], .msg_namelen = addr_len(to),
                                           .msg_iov = &b->iov[i], .msg_iovlen = 1}};
  if (b->n == UDP_BATCH_MAX) udp_batch_flush(b);
  return 0;
}

int udp_batch_flush(struct udp_batch *b) {
  int done = 0, sent = 0;
  while (done < b->n) {
    int r = sendmmsg(b->fd, b->msg + done, (unsigned)(b->n - done), MSG_DONTWAIT);
    if (r > 0) {
      done += r;
      sent += r;
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
      log_debug("net", "send buffer full: %d datagrams dropped", b->n - done);
      break;
    } else {
      log_debug("net", "datagram dropped: %s", strerror(r < 0 ? errno : EIO));
      done++;
    }
  }
  b->n = 0;
  return sent;
}
