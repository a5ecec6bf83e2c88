#!/usr/bin/env bash
# Runs a command in a private network namespace made for the benchmark.
#
# usage: bench/netns.sh COMMAND [ARGS...]     (as root)
#
# Janus gathers ICE candidates only on interfaces that are up, running and
# not loopback (it skips any interface flagged IFF_LOOPBACK, and libnice's own
# fallback skips loopback too), so on an ordinary machine its answer offers the
# machine's real addresses and never 127.0.0.1. The benchmark must keep every
# packet on loopback addresses, so it runs in a namespace of its own: `lo` is
# brought up, and a veth pair (bench0, bench1) is added with 127.0.0.2/32 on
# bench0. Janus is told to gather on bench0 only; its candidates are then
# 127.0.0.2, a local address that the kernel delivers over loopback like
# 127.0.0.1, and the namespace has no other interface a packet could leave by.
# The namespace goes away with the last process in it.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
if [ "${BENCH_NETNS:-}" = 1 ]; then exec "$@"; fi
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (unshare --net)" >&2; exit 1; }
export BENCH_NETNS=1
exec unshare --net -- bash -c '
  set -e
  ip link set lo up
  ip link add bench0 type veth peer name bench1
  ip addr add 127.0.0.2/32 dev bench0
  ip link set bench1 up
  ip link set bench0 up
  for i in all default bench0 bench1; do echo 1 > /proc/sys/net/ipv6/conf/$i/disable_ipv6 || true; done
  exec "$@"' netns "$@"
