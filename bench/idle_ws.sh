#!/usr/bin/env bash
# What signaling connections cost live calls: `tingshuo bench` with a few
# calls, first alone, then while IDLE WebSocket connections (default 2000)
# are opened to the same server (starting 3 s into the calls, 100 at a
# time) and then sit open, doing nothing.
#
# usage: bench/idle_ws.sh [--bin PATH] [--calls N] [--idle N] [--duration S]
#
# The server runs with the load engines (scripted ASR, fixed LLM reply, tone
# TTS) so the calls cost little besides media. Prints each run's lost and
# late frames and outbound jitter (the bench's own summary lines) and the
# server's CPU. Compare the two runs of one invocation, not runs on different
# days: the machine's noise moves these. Not run by the tests. Every process
# started here is stopped on exit, however the script ends.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/tingshuo
calls=4
idle=2000
duration=20
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$(readlink -f "$2"); shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "idle_ws.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "idle_ws.sh: no tingshuo binary at $bin (build first, or --bin)" >&2; exit 1; }
command -v node >/dev/null || { echo "idle_ws.sh: node is needed" >&2; exit 1; }

. "$root/bench/serve.sh"
work=$(mktemp -d)
holder=""
cleanup() {
  [ -n "$holder" ] && kill "$holder" 2>/dev/null || true
  bench_stop
  rm -rf "$work"
}
trap cleanup EXIT

# Holds $idle WebSocket connections to $1 open until killed; prints "open N" once they are.
cat > "$work/idle.mjs" <<'EOF'
import { createRequire } from 'node:module';
const require = createRequire(process.env.ROOT + '/package.json');
const { WebSocket } = require('ws');
const [url, n] = [process.argv[2], Number(process.argv[3])];
let open = 0, failed = 0;
const all = [];
function one() {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on('open', () => { open++; resolve(); });
    ws.on('error', () => { failed++; resolve(); });
    ws.on('message', () => {}); // the hello
    all.push(ws);
  });
}
for (let i = 0; i < n; i += 100) await Promise.all(Array.from({ length: Math.min(100, n - i) }, one));
console.log(`open ${open} failed ${failed}`);
setInterval(() => {}, 1 << 30);
EOF

run() { # $1: label
  echo "== $1"
  "$bin" bench "$url" --calls "$calls" --duration "$duration" --server-pid "$server" 2>&1 |
    grep -iE "lost|late|jitter|cpu|failed|calls" || true
}

bench_serve idle_ws.sh "$work/server.log" "$bin" --data-dir "$work/data" --records off \
  --asr scripted --llm fixed --tts tone
run "$calls calls, no idle connections"
ws_url=${url/http:/ws:}ws
(sleep 3; ROOT=$root exec node "$work/idle.mjs" "$ws_url" "$idle" > "$work/idle.out" 2>&1) &
holder=$!
run "$calls calls, $idle WebSocket connections opened meanwhile and held"
echo "idle connections: $(cat "$work/idle.out" 2>/dev/null)"
