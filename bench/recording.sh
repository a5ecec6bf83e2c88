#!/usr/bin/env bash
# What recording calls costs: server CPU per call with record_calls off and on.
#
# usage: bench/recording.sh [--bin PATH] [--calls N] [--duration S] [--rounds K]
#                           [--json FILE]
#
# Starts `tingshuo serve` with the load engines (scripted ASR, fixed LLM
# reply, tone TTS) on loopback, runs `tingshuo bench URL --calls N --duration
# S --server-pid PID` against it and stops it; K rounds, each with a run of
# record_calls off and one on, in the order off on, on off, off on, ... so
# that a steady drift in the machine's load falls on both alike. Every run
# gets a fresh server and data directory. The server CPU per call is the
# load client's figure: the server's CPU time over the steady part of the
# run (every call connected, none ended), in percent of one core, divided
# by N. On a shared machine that figure moves from run to run by more than
# recording costs, so the recorder thread's own CPU time (thread
# "ts-recorder", read from /proc) is printed too, per call: all of the cost
# except the workers' copying of packets. Prints each run, the mean of each
# mode and the difference, and the disk the recordings took per
# call-minute; writes the same as JSON (default
# bench/out/recording-<date>.json). Defaults: 100 calls, 30 s, 2 rounds.
# Not run by the tests: it takes minutes and measures the machine as well.
# Every process started here is stopped on exit, however the script ends.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/tingshuo
calls=100
duration=30
rounds=2
json=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$(readlink -f "$2"); shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "recording.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "recording.sh: no tingshuo binary at $bin (build first, or --bin)" >&2; exit 1; }
command -v jq >/dev/null || { echo "recording.sh: jq is needed" >&2; exit 1; }
json=${json:-$root/bench/out/recording-$(date +%Y%m%d-%H%M%S).json}
mkdir -p "$(dirname "$json")"

work=$(mktemp -d /tmp/tingshuo-recording-bench.XXXXXX)
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

# Starts a server with record_calls $1; sets $server and $url.
start_server() {
  local mode=$1 log=$work/server-$2.log
  rm -rf "$work/data"
  mkdir -p "$work/data"
  bench_serve recording.sh "$log" "$bin" --data-dir "$work/data" --max-calls 5000 \
    --asr scripted --llm fixed --tts tone --record-calls "$mode" --log-level warn
}

# CPU seconds of the server's thread named $1 so far (0 when there is none):
# schedstat's nanoseconds when the kernel keeps them, else stat's clock ticks.
thread_cpu() {
  local t comm ns rest line f
  for t in /proc/"$server"/task/*; do
    read -r comm < "$t/comm" 2>/dev/null || continue
    [ "$comm" = "$1" ] || continue
    if read -r ns rest < "$t/schedstat" 2>/dev/null; then
      echo "$ns" | awk '{printf "%.3f\n", $1 / 1e9}'
    else
      read -r line < "$t/stat"
      line=${line##*) }
      read -r -a f <<< "$line"
      echo $((f[11] + f[12])) "$(getconf CLK_TCK)" | awk '{printf "%.3f\n", $1 / $2}'
    fi
    return
  done
  echo 0
}

stop_server() {
  kill -TERM "$server"
  wait "$server" || { echo "recording.sh: the server exited with status $?" >&2; exit 1; }
  server=""
}

runs=()
for ((i = 1; i <= rounds; i++)); do
  order="off on"
  [ $((i % 2)) -eq 0 ] && order="on off"
  for mode in $order; do
    name=$mode-$i
    start_server "$mode" "$name"
    echo "== round $i, record_calls $mode: $calls calls for $duration s"
    "$bin" bench "$url" --calls "$calls" --duration "$duration" --server-pid "$server" \
      --json "$work/$name.json" > "$work/$name.txt" 2>&1 ||
      { echo "recording.sh: the bench failed:" >&2; tail -n 30 "$work/$name.txt" >&2; exit 1; }
    recorder_s=$(thread_cpu ts-recorder)
    stop_server
    bytes=0 files=0
    if [ -d "$work/data/recordings" ]; then
      bytes=$(du -sb "$work/data/recordings" | cut -f1)
      files=$(find "$work/data/recordings" -name '*.ogg' | wc -l)
    fi
    jq -c --arg mode "$mode" --argjson round "$i" --argjson bytes "$bytes" --argjson files "$files" \
      --argjson rec "$recorder_s" --argjson duration "$duration" \
      '{mode: $mode, round: $round, calls, connected, failed_calls, pass,
        recorder_cpu_s: $rec, recorder_cpu_percent_per_call: ($rec / $duration / .calls * 100),
        cpu_percent: .server.cpu_percent, cpu_percent_per_call: .server.cpu_percent_per_call,
        rss_per_call_kb: .server.rss_per_call_kb, lost_ratio: .frames.lost_ratio,
        jitter_p99_ms: .outbound_jitter_ms.p99, recordings: $files, recording_bytes: $bytes}' \
      "$work/$name.json" > "$work/$name.run"
    jq -r '"   server \(.cpu_percent | . * 10 | round / 10)% CPU, \(.cpu_percent_per_call | . * 1000 | round / 1000)% of a core per call; " +
           "p99 jitter \(.jitter_p99_ms) ms; \(.recordings) recordings, \(.recording_bytes) bytes; " +
           "recorder thread \(.recorder_cpu_s) s CPU"' "$work/$name.run"
    runs+=("$work/$name.run")
  done
done

jq -s --argjson calls "$calls" --argjson duration "$duration" '
  def mean(f): (map(f) | add / length);
  (map(select(.mode == "off"))) as $off | (map(select(.mode == "on"))) as $on |
  ($off | mean(.cpu_percent_per_call)) as $a | ($on | mean(.cpu_percent_per_call)) as $b |
  {calls: $calls, duration_s: $duration, runs: .,
   off: {cpu_percent_per_call: $a}, on: {cpu_percent_per_call: $b},
   difference: {cpu_percent_per_call: ($b - $a), relative_percent: (($b - $a) / $a * 100)},
   recorder_thread: {cpu_percent_per_call: ($on | mean(.recorder_cpu_percent_per_call)),
                     relative_percent: (($on | mean(.recorder_cpu_percent_per_call)) / $a * 100)},
   recording_bytes_per_call_minute: ($on | mean(.recording_bytes / $calls / ($duration + 0)) * 60)}
' "${runs[@]}" > "$json"

jq -r '
  "record_calls off: \(.off.cpu_percent_per_call | . * 1000 | round / 1000)% of a core per call (mean of \(.runs | map(select(.mode == "off")) | length) runs)",
  "record_calls on:  \(.on.cpu_percent_per_call | . * 1000 | round / 1000)% of a core per call",
  "difference:       \(.difference.cpu_percent_per_call | . * 1000 | round / 1000)% of a core per call (\(.difference.relative_percent | . * 10 | round / 10)%)",
  "recorder thread:  \(.recorder_thread.cpu_percent_per_call | . * 10000 | round / 10000)% of a core per call (\(.recorder_thread.relative_percent | . * 10 | round / 10)% of the cost of a call without recording)",
  "disk:             about \(.recording_bytes_per_call_minute / 1024 | round) KiB per call-minute"
' "$json"
echo "JSON: $json"
