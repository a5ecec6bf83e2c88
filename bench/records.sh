#!/usr/bin/env bash
# What call records cost: the most concurrent calls (`tingshuo bench --find-max`)
# with records off, on SQLite, and on PostgreSQL, one after the other on this
# machine, and optionally the same for an older binary.
#
# usage: bench/records.sh [--bin PATH] [--base-bin PATH] [--duration S]
#                         [--modes "off sqlite postgres"] [--json FILE]
#
# Each mode gets a fresh `tingshuo serve` with the load engines (scripted
# ASR, fixed LLM reply, tone TTS) and a fresh data directory; `postgres`
# also gets a private PostgreSQL server (tests/lib/pg.sh, as the tests
# start it), removed afterwards. --base-bin adds a mode `base`: that binary
# with its own defaults, to compare before and after a change. Prints each
# mode's largest call count within the bench's bounds and the server's CPU
# per call in the largest round that held, then the ratio of each to `off`;
# writes the same as JSON (default bench/out/records-<date>.json). The
# machine's noise moves a find-max result by a round or so: compare modes of
# one run, not runs. Not run by the tests. Every process started here is
# stopped on exit, however the script ends.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/tingshuo
base_bin=""
duration=20
modes="off sqlite postgres"
json=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$(readlink -f "$2"); shift 2 ;;
    --base-bin) base_bin=$(readlink -f "$2"); shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "records.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "records.sh: no tingshuo binary at $bin (build first, or --bin)" >&2; exit 1; }
command -v jq >/dev/null || { echo "records.sh: jq is needed (apt-get install jq)" >&2; exit 1; }
[ -n "$base_bin" ] && modes="base $modes"
json=${json:-$root/bench/out/records-$(date +%Y%m%d-%H%M%S).json}
mkdir -p "$(dirname "$json")"

work=$(mktemp -d /tmp/tingshuo-records-bench.XXXXXX)
pgdir=""
# shellcheck source=bench/serve.sh
. "$root/bench/serve.sh"
cleanup() {
  local status=$?
  bench_stop
  [ -n "$pgdir" ] && bash "$root/tests/lib/pg.sh" stop "$pgdir" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts the server for mode $1; sets $server and $url.
start_server() {
  local mode=$1 log=$work/server-$1.log exe=$bin
  local -a extra=()
  case "$mode" in
    base) exe=$base_bin ;;
    off) extra=(--records off) ;;
    sqlite) extra=(--records on) ;;
    postgres)
      pgdir=$work/pg
      extra=(--records on --database-url "$(bash "$root/tests/lib/pg.sh" start "$pgdir" | tail -n1)")
      ;;
  esac
  rm -rf "$work/data"
  mkdir -p "$work/data"
  bench_serve records.sh "$log" "$exe" --data-dir "$work/data" --max-calls 5000 \
    --asr scripted --llm fixed --tts tone --log-level warn "${extra[@]}"
}

# Calls stored by the run, to show the records were really written.
stored_calls() {
  case "$1" in
    sqlite) sqlite3 "$work/data/tingshuo.db" "SELECT COUNT(*) FROM calls" 2>/dev/null || echo "?" ;;
    postgres)
      runuser -u postgres -- psql -h "$pgdir" -p "$(cat "$pgdir/port")" -U postgres -tAc \
        "SELECT COUNT(*) FROM calls" postgres 2>/dev/null || echo "?" ;;
    *) echo "-" ;;
  esac
}

results="[]"
for mode in $modes; do
  echo "== $mode"
  start_server "$mode"
  out=$work/$mode.json
  "$bin" bench "$url" --find-max --duration "$duration" --server-pid "$server" --json "$out" \
    > "$work/$mode.out" 2>&1 || true
  grep -E "^find-max|held|broke" "$work/$mode.out" || tail -n 3 "$work/$mode.out"
  stored=$(stored_calls "$mode")
  bench_stop
  if [ "$mode" = postgres ]; then bash "$root/tests/lib/pg.sh" stop "$pgdir" >/dev/null; pgdir=""; fi
  max=$(jq '.find_max.max_calls // 0' "$out" 2>/dev/null || echo 0)
  cpu=$(jq --argjson n "$max" '[.find_max.rounds[]? | select(.calls == $n) | .server.cpu_percent_per_call] | last // null' "$out" 2>/dev/null || echo null)
  results=$(jq --arg m "$mode" --argjson max "$max" --argjson cpu "$cpu" --arg stored "$stored" \
    '. + [{mode: $m, max_calls: $max, server_cpu_percent_per_call: $cpu, calls_stored: $stored}]' <<<"$results")
done

echo
printf '%-9s %9s %18s %10s %13s\n' mode max_calls "cpu %/call (held)" "vs off" "calls stored"
off=$(jq '[.[] | select(.mode == "off") | .max_calls][0] // 0' <<<"$results")
jq -r --argjson off "$off" '.[] | [.mode, .max_calls, (.server_cpu_percent_per_call // "-"),
  (if $off > 0 then ((.max_calls / $off * 100 | round | tostring) + "%") else "-" end), .calls_stored] | @tsv' \
  <<<"$results" | while IFS=$'\t' read -r m n c r s; do
  printf '%-9s %9s %18s %10s %13s\n' "$m" "$n" "$c" "$r" "$s"
done
jq -n --argjson r "$results" --arg d "$duration" --arg when "$(date -u +%FT%TZ)" \
  '{when: $when, duration_s: ($d | tonumber), modes: $r}' > "$json"
echo "wrote $json"
