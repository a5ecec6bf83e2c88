/*
 * hostaddr: the addresses a media socket bound to every interface offers to
 * browsers as its ICE candidates.
 *
 * Browsers differ in which addresses they will use. Firefox gathers no
 * loopback candidates and pairs none (media.peerconnection.ice.loopback is
 * off), so a server that offers only 127.0.0.1 is out of its reach even on
 * the same machine, while Chromium gets through. Offering the interfaces'
 * own addresses lets both connect, locally and from the LAN: a browser on
 * this machine checks from one of them and the kernel delivers locally.
 */
#ifndef TS_NET_HOSTADDR_H
#define TS_NET_HOSTADDR_H

#include <uv.h>

#define HOSTADDR_LEN 64 /* room for any IPv6 address in text */

/* Picks from the interface list `ifs` (uv_interface_addresses: interfaces
 * that are up) at most `max` addresses into `out`, in the order a browser
 * should try them: IPv4 first, then IPv6 (only when `ipv6`, a socket bound
 * to ::), each family's loopback after every other address of both. Link-
 * local addresses (169.254/16, fe80::/10) are left out: they need a scope
 * or reach nothing. Duplicates are dropped. Returns the count. */
int hostaddr_pick(const uv_interface_address_t *ifs, int n, int ipv6, char (*out)[HOSTADDR_LEN],
                  int max);

#endif
