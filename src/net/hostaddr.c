/*
 * Candidate addresses of a wildcard-bound media socket.
 *
 * The order is the browser's preference: an ICE-lite server's candidates
 * get falling priorities in the order given (rtc/sdp.c), and a browser
 * nominates the best pair that works. Addresses other machines can reach
 * come first, so a LAN caller does not try loopback before its own path.
 * Loopback stays, last: on a machine with no network it is the only path,
 * and Chromium uses it.
 */
#include "net/hostaddr.h"

#include <netinet/in.h>
#include <string.h>

enum { SKIP = -1, V4 = 0, V6 = 1, V4_LOOPBACK = 2, V6_LOOPBACK = 3, RANKS = 4 };

/* The address's rank in the order above, its text in `ip`. */
static int rank(const uv_interface_address_t *a, int ipv6, char ip[HOSTADDR_LEN]) {
  if (a->address.address4.sin_family == AF_INET) {
    uint32_t v = ntohl(a->address.address4.sin_addr.s_addr);
    if ((v >> 16) == 0xa9fe) return SKIP; /* 169.254/16: link-local, never routed */
    if (uv_ip4_name(&a->address.address4, ip, HOSTADDR_LEN) != 0) return SKIP;
    return (v >> 24) == 127 ? V4_LOOPBACK : V4;
  }
  if (!ipv6 || a->address.address6.sin6_family != AF_INET6) return SKIP;
  const struct in6_addr *v = &a->address.address6.sin6_addr;
  if (IN6_IS_ADDR_LINKLOCAL(v)) return SKIP; /* would need a scope id */
  if (uv_ip6_name(&a->address.address6, ip, HOSTADDR_LEN) != 0) return SKIP;
  return IN6_IS_ADDR_LOOPBACK(v) ? V6_LOOPBACK : V6;
}

static int listed(char (*out)[HOSTADDR_LEN], int count, const char *ip) {
  for (int i = 0; i < count; i++)
    if (strcmp(out[i], ip) == 0) return 1;
  return 0;
}

int hostaddr_pick(const uv_interface_address_t *ifs, int n, int ipv6, char (*out)[HOSTADDR_LEN],
                  int max) {
  int count = 0;
  for (int r = V4; r < RANKS; r++) {
    for (int i = 0; i < n && count < max; i++) {
      char ip[HOSTADDR_LEN];
      if (rank(&ifs[i], ipv6, ip) != r || listed(out, count, ip)) continue;
      memcpy(out[count++], ip, HOSTADDR_LEN);
    }
  }
  return count;
}
