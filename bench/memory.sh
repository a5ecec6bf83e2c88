#!/usr/bin/env bash
# Where a call's memory goes: the server's heap per call, by the tingshuo
# function that asked for it.
#
# usage: bench/memory.sh [--bin PATH] [--calls A,B] [--duration S] [--out DIR]
#
# `tingshuo bench --calls N --server-pid PID` prints what N calls cost in
# resident memory, (peak - before) / N, but not what it is. This runs the
# server with the load engines (scripted ASR, fixed LLM reply, tone TTS, one
# media worker) under valgrind's massif twice, with A and then B calls
# (default 10 and 20) for S seconds (default 12), and prints the heap at
# each run's peak, attributed to the first tingshuo source line on each
# allocation's stack (a libopus or OpenSSL allocation counts where our code
# called into it), as (run B - run A) / (B - A): what one more call costs,
# with everything the calls share taken out. massif's own files and ms_print's
# reports are kept in DIR (default bench/out/memory-<date>/). A must be large
# enough that the calls, not the server's start-up, make its peak: 10 is.
# Under valgrind the server runs some 20 times slower, so a call may lose
# frames; the memory it holds is the same. Needs valgrind and node.
# Not run by the tests. Every process started here is stopped on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/tingshuo
counts=10,20
duration=12
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$(readlink -f "$2"); shift 2 ;;
    --calls) counts=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "memory.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "memory.sh: no tingshuo binary at $bin (build first, or --bin)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "memory.sh: valgrind is needed" >&2; exit 1; }
command -v node >/dev/null || { echo "memory.sh: node is needed" >&2; exit 1; }
IFS=, read -r small large <<< "$counts"
[ "${large:-0}" -gt "${small:-0}" ] || { echo "memory.sh: --calls A,B with B > A" >&2; exit 2; }
out=${out:-$root/bench/out/memory-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

work=$(mktemp -d /tmp/tingshuo-memory-bench.XXXXXX)
# shellcheck source=bench/serve.sh
. "$root/bench/serve.sh"
cleanup() {
  local status=$?
  trap "" INT TERM
  trap - EXIT
  bench_stop
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One run of $1 calls; massif's file is $out/massif-$1.out.
run() {
  local n=$1 wrapper=$work/massif-server
  printf '#!/bin/sh\nexec valgrind --tool=massif --depth=40 --threshold=0.01 --max-snapshots=200 --massif-out-file=%s "%s" "$@"\n' \
    "$out/massif-$n.out" "$bin" > "$wrapper"
  chmod +x "$wrapper"
  mkdir -p "$work/data-$n"
  bench_serve memory.sh "$work/server-$n.log" "$wrapper" --data-dir "$work/data-$n" \
    --asr scripted --llm fixed --tts tone --media-workers 1 --inference-threads 1 --log-level warn
  echo "== $n calls for $duration s, the server under massif"
  "$bin" bench "$url" --calls "$n" --duration "$duration" --server-pid "$server" \
    > "$out/bench-$n.txt" 2>&1 || true
  grep -E "connected|server memory" "$out/bench-$n.txt" || true
  kill -TERM "$server"
  wait "$server" || true
  server=""
  ms_print --threshold=0.01 "$out/massif-$n.out" > "$out/massif-$n.txt"
}

run "$small"
run "$large"
node "$root/bench/memory_summary.mjs" "$out/massif-$small.txt" "$small" "$out/massif-$large.txt" "$large" \
  "$root/src" | tee "$out/summary.txt"
