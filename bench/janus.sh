#!/usr/bin/env bash
# tingshuo against Janus's AudioBridge: the same load, the same client, one machine.
#
# usage: bench/janus.sh [--bin PATH] [--out DIR] [--duration S] [--timeout S]
#                       [--rate 16000|48000] [--pin] [--server-cpu N] [--client-cpu N]
#                       [--max-calls N] [--only janus|tingshuo] [-- EXTRA BENCH ARGS...]
#
# Runs `tingshuo bench URL --find-max --json FILE` first against Janus (Debian's
# package, configured by bench/janus_start.sh: AudioBridge and the HTTP
# transport only, one room per call) through bench/janus_adapter.mjs, which
# speaks tingshuo's signaling protocol; then against `tingshuo serve` with the
# load engines (scripted ASR, fixed LLM reply, tone TTS) when the build has
# them, else the echo agent. It prints both --find-max results and their ratio,
# and, measured here from /proc, each server's peak resident memory and CPU
# time over its run.
#
# Equal work: each Janus room runs at --rate (default 16000), the rate
# tingshuo's voice agent hears at (its answer asks for 16 kHz, and it decodes
# there); --rate 48000 gives Janus full-band rooms, the comparison for a
# server that hears at 48 kHz, such as tingshuo's echo agent (tingshuo's half
# always runs the voice agent with the load engines when the build has them).
# The rate is in the summary.
#
# Per core (--pin): each server is pinned to one core (--server-cpu, default
# 0) and the load client, with the adapter, to another (--client-cpu, default
# 1), with taskset; tingshuo then runs one media worker and one inference
# thread. The largest call count is then calls per server core, for both
# servers in the same run, and the load client can no longer take the
# server's CPU (without --pin, on a 2-core machine the client's share is what
# stops the ramp). --max-calls caps --find-max's ramp (a quick check).
#
# Everything runs inside bench/netns.sh's private network namespace, so every
# packet stays on 127.0.0.0/8. Needs root (apt-get, unshare). Each bench run is
# bounded by --timeout (default 1500 s); every process started here is stopped
# on exit, however the script ends. Results go to --out (default
# bench/out/<date>): janus.json, tingshuo.json, setup.json (rate, pinning),
# the servers' logs, summary.txt.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/tingshuo
out=""
duration=""
run_timeout=1500
only=""
rate=16000
pin=0
server_cpu=0
client_cpu=1
max_calls=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$(readlink -f "$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --timeout) run_timeout=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --pin) pin=1; shift ;;
    --server-cpu) server_cpu=$2; shift 2 ;;
    --client-cpu) client_cpu=$2; shift 2 ;;
    --max-calls) max_calls=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "janus.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
case "$only" in ""|janus|tingshuo) ;; *) echo "janus.sh: --only janus|tingshuo" >&2; exit 2 ;; esac
case "$rate" in 8000|12000|16000|24000|48000) ;; *) echo "janus.sh: --rate is one of 8000 12000 16000 24000 48000" >&2; exit 2 ;; esac
for v in "$server_cpu" "$client_cpu" ${max_calls:+"$max_calls"}; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "janus.sh: --server-cpu, --client-cpu and --max-calls take a number" >&2; exit 2; }
done
if [ "$pin" = 1 ]; then
  [ "$server_cpu" != "$client_cpu" ] || { echo "janus.sh: --pin needs two different cores" >&2; exit 2; }
  for c in "$server_cpu" "$client_cpu"; do
    taskset -c "$c" true 2>/dev/null || { echo "janus.sh: cannot run on core $c (taskset)" >&2; exit 2; }
  done
fi

# --- outside the namespace: packages, then re-enter through netns.sh ---------
if [ "${BENCH_NETNS:-}" != 1 ]; then
  [ "$(id -u)" -eq 0 ] || { echo "janus.sh: run as root (it installs packages and makes a network namespace)" >&2; exit 1; }
  need=()
  command -v janus >/dev/null || need+=(janus)
  command -v opusenc >/dev/null || need+=(opus-tools)
  command -v sox >/dev/null || need+=(sox)
  command -v flite >/dev/null || command -v espeak-ng >/dev/null || need+=(flite)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt-cache policy janus | sed -n '1,3p'
    apt-get update -qq
    # policy-rc.d or not, the packaged service must not start: we run our own Janus.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${need[@]}"
    systemctl disable --now janus >/dev/null 2>&1 || true
  fi
  [ -x "$bin" ] || { echo "janus.sh: no tingshuo binary at $bin (build first, or --bin)" >&2; exit 1; }
  command -v node >/dev/null || { echo "janus.sh: node is needed for the adapter" >&2; exit 1; }
  out=${out:-$root/bench/out/$(date +%Y%m%d-%H%M%S)}
  mkdir -p "$out"
  args=(--bin "$bin" --out "$(readlink -f "$out")" --timeout "$run_timeout")
  [ -n "$duration" ] && args+=(--duration "$duration")
  [ -n "$only" ] && args+=(--only "$only")
  args+=(--rate "$rate" --server-cpu "$server_cpu" --client-cpu "$client_cpu")
  [ "$pin" = 1 ] && args+=(--pin)
  [ -n "$max_calls" ] && args+=(--max-calls "$max_calls")
  exec "$root/bench/netns.sh" "$0" "${args[@]}" -- "${extra[@]}"
fi

# --- inside the namespace ----------------------------------------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d /tmp/tingshuo-janus-bench.XXXXXX)
pids=()

cleanup() {
  local status=$?
  trap "" INT TERM  # a second signal (timeout sends one to the whole group) must not cut cleanup short
  trap - EXIT
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Drops a pid from the list cleanup stops.
forget() {
  local keep=() q
  for q in "${pids[@]}"; do [ "$q" = "$1" ] || keep+=("$q"); done
  pids=("${keep[@]}")
}

# Stops one process started here (TERM, then KILL after 5 s) and forgets it.
stop() {
  local p=$1
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  forget "$p"
}

# Waits until FILE has a line matching REGEX; prints the first match's group 1.
wait_line() {
  local file=$1 regex=$2 pid=$3 what=$4
  for _ in $(seq 150); do
    if [ -s "$file" ]; then
      local m
      m=$(sed -nE "s#.*${regex}.*#\\1#p" "$file" | head -n1)
      if [ -n "$m" ]; then echo "$m"; return 0; fi
    fi
    kill -0 "$pid" 2>/dev/null || { echo "janus.sh: $what exited:" >&2; tail -n 20 "$file" >&2; return 1; }
    sleep 0.1
  done
  echo "janus.sh: $what did not start in 15 s" >&2
  tail -n 20 "$file" >&2
  return 1
}

# Prefixes for the servers' and the client's command lines: taskset with
# --pin, nothing without.
on_server=()
on_client=()
if [ "$pin" = 1 ]; then
  on_server=(taskset -c "$server_cpu")
  on_client=(taskset -c "$client_cpu")
fi
printf '{"rate":%d,"pin":%s,"server_cpu":%s,"client_cpu":%s,"max_calls":%s}\n' "$rate" \
  "$([ "$pin" = 1 ] && echo true || echo false)" \
  "$([ "$pin" = 1 ] && echo "$server_cpu" || echo null)" \
  "$([ "$pin" = 1 ] && echo "$client_cpu" || echo null)" \
  "${max_calls:-null}" > "$out/setup.json"

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# Samples a process's resident memory (peak) and CPU time while it runs.
# Writes "peak_rss_kb cpu_seconds" to FILE when PID is gone or the sampler is stopped.
# Bash builtins only, no process per sample: on a loaded 2-core machine a
# few forks a second (awk, sleep) were enough to push the servers' p99
# jitter from 4 to 11 ms and to change the result being measured.
sample_proc() {
  local pid=$1 file=$2 peak=0 ticks=0 hz key val rest line nap
  hz=$(getconf CLK_TCK)
  exec {nap}<> <(:) # a pipe we also hold open for writing: read -t on it is a sleep
  trap 'write_sample' TERM
  write_sample() {
    awk -v t="$ticks" -v h="$hz" -v p="$peak" 'BEGIN {printf "%d %.1f\n", p, t / h}' > "$file"
    exit 0
  }
  while [ -r "/proc/$pid/stat" ]; do
    while read -r key val rest; do
      if [ "$key" = VmRSS: ]; then [ "$val" -gt "$peak" ] && peak=$val; break; fi
    done < "/proc/$pid/status" 2>/dev/null || true
    if read -r line < "/proc/$pid/stat" 2>/dev/null; then
      line=${line##*) }         # after the command name: field 3 (state) on
      read -r -a f <<< "$line"
      ticks=$((f[11] + f[12]))  # utime + stime, fields 14 and 15
    fi
    read -r -t 0.5 -u "$nap" _ || true
  done
  write_sample
}

# Runs the load client against URL; NAME names the output files.
run_bench() {
  local name=$1 url=$2 server_pid=$3
  local args=(bench "$url" --find-max --json "$out/$name.json" --server-pid "$server_pid")
  [ -n "$duration" ] && args+=(--duration "$duration")
  [ -n "$max_calls" ] && args+=(--max-calls "$max_calls")
  args+=("${extra[@]}")
  sample_proc "$server_pid" "$work/$name.proc" &
  local sampler=$!
  pids+=("$sampler")
  echo "== $name: $bin ${args[*]}"
  local status=0
  : > "$out/$name.bench.txt" # there before the follower below opens it
  # In the background, so that a signal to this script is handled at once
  # (bash runs traps only between foreground commands); timeout passes the
  # TERM from cleanup on to the client.
  timeout --kill-after=10 "$run_timeout" "${on_client[@]}" "$bin" "${args[@]}" > "$out/$name.bench.txt" 2>&1 &
  local client=$!
  pids+=("$client")
  tail -n +1 -f --pid="$client" "$out/$name.bench.txt" &
  local follower=$!
  pids+=("$follower")
  wait "$client" || status=$?
  wait "$follower" || true
  stop "$sampler"
  forget "$client"
  forget "$follower"
  cp "$work/$name.proc" "$out/$name.proc" 2>/dev/null || echo "0 0" > "$out/$name.proc"
  [ "$status" -eq 0 ] || echo "janus.sh: the $name bench exited with status $status" >&2
  return 0
}

# --- Janus -------------------------------------------------------------------
if [ "$only" != tingshuo ]; then
  janus_port=$(free_port)
  "${on_server[@]}" "$root/bench/janus_start.sh" "$work/janus" "$janus_port" > "$out/janus.log" 2>&1 &
  janus_pid=$!
  pids+=("$janus_pid")
  for i in $(seq 100); do
    curl -sf "http://127.0.0.1:$janus_port/janus/info" >/dev/null 2>&1 && break
    kill -0 "$janus_pid" 2>/dev/null || { echo "janus.sh: Janus exited:" >&2; tail -n 30 "$out/janus.log" >&2; exit 1; }
    [ "$i" -eq 100 ] && { echo "janus.sh: Janus's HTTP API did not come up" >&2; exit 1; }
    sleep 0.1
  done
  "${on_client[@]}" node "$root/bench/janus_adapter.mjs" --listen 127.0.0.1:0 \
    --janus "http://127.0.0.1:$janus_port/janus" --rate "$rate" \
    --play "$work/janus/prompt.opus" > "$out/adapter.log" 2>&1 &
  adapter_pid=$!
  pids+=("$adapter_pid")
  adapter_url=$(wait_line "$out/adapter.log" 'listening on (http://[^ ]+)' "$adapter_pid" adapter)
  run_bench janus "${adapter_url/http:/ws:}" "$janus_pid"
  stop "$adapter_pid"
  stop "$janus_pid"
fi

# --- tingshuo ----------------------------------------------------------------
if [ "$only" != janus ]; then
  help=$("$bin" serve --help 2>&1 || true)
  if grep -q -- '--asr' <<<"$help" && grep -q 'scripted' <<<"$help" && grep -q -- '--tts' <<<"$help"; then
    engines=(--asr scripted --llm fixed --tts tone)
  else
    engines=(--agent echo)
  fi
  threads=()
  [ "$pin" = 1 ] && threads=(--media-workers 1 --inference-threads 1)
  mkdir -p "$work/data"
  "${on_server[@]}" "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" --max-calls 5000 \
    "${threads[@]}" "${engines[@]}" > "$out/tingshuo.log" 2>&1 &
  ts_pid=$!
  pids+=("$ts_pid")
  ts_url=$(wait_line "$out/tingshuo.log" 'open (http://[^ ]+) in a browser' "$ts_pid" tingshuo)
  echo "tingshuo engines: ${engines[*]} ${threads[*]}" | tee "$out/tingshuo.engines"
  run_bench tingshuo "${ts_url/http:/ws:}" "$ts_pid"
  stop "$ts_pid"
fi

# --- summary -----------------------------------------------------------------
node "$root/bench/janus_summary.mjs" "$out" | tee "$out/summary.txt"
