#!/usr/bin/env bash
# Does a cluster hold the sum of its nodes? `tingshuo bench --find-max`
# against one node alone, then against a cluster of two nodes on one Redis,
# one after the other on this machine.
#
# usage: bench/cluster.sh [--bin PATH] [--duration S] [--max-calls N]
#                         [--cores A,B] [--client-cpu N|none] [--json FILE]
#                         [-- EXTRA BENCH ARGS...]
#
# Alone: one `tingshuo serve` pinned to core A (taskset), one media worker,
# one inference thread, the load engines (scripted ASR, fixed reply, tone
# TTS), records off. Cluster: two such nodes, the first pinned to core A and
# the second to core B, registered in a private Redis (redis-server on a free
# loopback port, nothing saved to disk); the bench calls the first node only,
# which places each call on the less loaded node and redirects the client
# there. The same bench, with the same bounds, runs against both; the script
# prints both largest call counts, their ratio (2.0 = the cluster holds the
# sum of its two nodes), how the cluster's calls were split (each node's
# tingshuo_calls_started_total) and each server's CPU time over its run.
#
# Where the load client runs matters on a small machine: --client-cpu N pins
# it to core N (the default when the machine has a core beyond A and B: the
# first such core); with `none` (the default on a 2-core machine) it is not
# pinned, and in the cluster run it shares the two cores with the nodes,
# while alone it has most of core B to itself. The ratio then understates
# what the cluster holds; the summary says which it was.
#
# Writes JSON (default bench/out/cluster-<date>.json) with both runs' bench
# results; the servers' logs and each bench's own output go to the directory
# of the same name without .json. Not run by the tests. Needs redis-server,
# jq and node (for a free port). Every process started here is stopped on
# exit, however the script ends.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/tingshuo
duration=20
max_calls=""
cores="0,1"
client_cpu=""
json=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$(readlink -f "$2"); shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --max-calls) max_calls=$2; shift 2 ;;
    --cores) cores=$2; shift 2 ;;
    --client-cpu) client_cpu=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cluster.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "cluster.sh: no tingshuo binary at $bin (build first, or --bin)" >&2; exit 1; }
for tool in redis-server jq node taskset; do
  command -v "$tool" >/dev/null || { echo "cluster.sh: $tool is needed" >&2; exit 1; }
done
[[ "$cores" =~ ^([0-9]+),([0-9]+)$ ]] || { echo "cluster.sh: --cores takes two cores, A,B" >&2; exit 2; }
core_a=${BASH_REMATCH[1]}
core_b=${BASH_REMATCH[2]}
[ "$core_a" != "$core_b" ] || { echo "cluster.sh: --cores needs two different cores" >&2; exit 2; }
[[ "$duration" =~ ^[0-9]+$ ]] || { echo "cluster.sh: --duration takes whole seconds" >&2; exit 2; }
[ -z "$max_calls" ] || [[ "$max_calls" =~ ^[0-9]+$ ]] || { echo "cluster.sh: --max-calls takes a number" >&2; exit 2; }
if [ -z "$client_cpu" ]; then
  client_cpu=none
  for c in $(seq 0 $(($(nproc) - 1))); do
    if [ "$c" != "$core_a" ] && [ "$c" != "$core_b" ]; then client_cpu=$c; break; fi
  done
fi
[ "$client_cpu" = none ] || [[ "$client_cpu" =~ ^[0-9]+$ ]] || { echo "cluster.sh: --client-cpu takes a core or none" >&2; exit 2; }
for c in "$core_a" "$core_b" ${client_cpu/none/}; do
  taskset -c "$c" true 2>/dev/null || { echo "cluster.sh: cannot run on core $c (taskset)" >&2; exit 2; }
done
on_client=()
[ "$client_cpu" = none ] || on_client=(taskset -c "$client_cpu")

stamp=$(date +%Y%m%d-%H%M%S)
json=${json:-$root/bench/out/cluster-$stamp.json}
mkdir -p "$(dirname "$json")"
logs=${json%.json}
mkdir -p "$logs"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/tingshuo-cluster-bench.XXXXXX)
pids=()
cleanup() {
  local status=$? p
  trap "" INT TERM
  trap - EXIT
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

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# Stops one process started here: TERM (a node drains; it has no calls left), KILL after 10 s.
stop() {
  local p=$1 keep=() q
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  for q in "${pids[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
  pids=("${keep[@]}")
}

# CPU time (user + system) of a process so far, in clock ticks.
cpu_ticks() {
  local line f
  read -r line < "/proc/$1/stat" || { echo 0; return; }
  line=${line##*) }
  read -r -a f <<< "$line"
  echo $((f[11] + f[12]))
}

# start_node NAME CORE PORT ARGS...: a node pinned to CORE, listening on PORT; sets $node_pid
# and $node_url.
start_node() {
  local name=$1 core=$2 port=$3 log=$logs/$1.log
  shift 3
  mkdir -p "$work/$name"
  taskset -c "$core" "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/$name" \
    --media-workers 1 --inference-threads 1 --asr scripted --llm fixed --tts tone \
    --records off --max-calls 5000 --log-level warn "$@" > "$log" 2>&1 &
  node_pid=$!
  pids+=("$node_pid")
  node_url=http://127.0.0.1:$port/
  for _ in $(seq 150); do
    grep -q 'in a browser' "$log" 2>/dev/null && return 0
    kill -0 "$node_pid" 2>/dev/null || { echo "cluster.sh: $name exited:" >&2; tail -n 20 "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "cluster.sh: $name did not start in 15 s" >&2
  exit 1
}

# run_bench NAME URL PID: the find-max run; its JSON in $logs/NAME.json.
run_bench() {
  local name=$1 url=$2 pid=$3 status=0
  local args=(bench "$url" --find-max --duration "$duration" --server-pid "$pid" --json "$logs/$name.json")
  [ -n "$max_calls" ] && args+=(--max-calls "$max_calls")
  args+=("${extra[@]}")
  echo "== $name: ${on_client[*]} $bin ${args[*]}"
  "${on_client[@]}" "$bin" "${args[@]}" 2>&1 | tee "$logs/$name.bench.txt" || status=$?
  [ "$status" -eq 0 ] || echo "cluster.sh: the $name bench exited with status $status" >&2
}

started() { curl -sf "$1metrics" 2>/dev/null | sed -nE 's/^tingshuo_calls_started_total ([0-9]+).*/\1/p'; }

# --- one node alone ----------------------------------------------------------
start_node alone "$core_a" "$(free_port)"
alone_pid=$node_pid
t0=$(cpu_ticks "$alone_pid")
run_bench alone "$node_url" "$alone_pid"
alone_cpu=$(( $(cpu_ticks "$alone_pid") - t0 ))
stop "$alone_pid"

# --- two nodes on one Redis --------------------------------------------------
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' --appendonly no \
  --daemonize no --loglevel warning > "$logs/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
for i in $(seq 100); do
  redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
  kill -0 "$redis_pid" 2>/dev/null || { echo "cluster.sh: redis-server exited:" >&2; cat "$logs/redis.log" >&2; exit 1; }
  [ "$i" -eq 100 ] && { echo "cluster.sh: redis-server did not start" >&2; exit 1; }
  sleep 0.1
done
export TINGSHUO_CLUSTER_REDIS_URL=redis://127.0.0.1:$redis_port
declare -A pid_of url_of
for n in 1 2; do
  core=$core_a
  [ "$n" = 2 ] && core=$core_b
  port=$(free_port)
  # The public URL must name the port the node listens on: both are chosen here.
  start_node "node$n" "$core" "$port" --node-id "node$n" --public-url "ws://127.0.0.1:$port/ws"
  pid_of[$n]=$node_pid
  url_of[$n]=$node_url
done
unset TINGSHUO_CLUSTER_REDIS_URL
sleep 2 # both nodes registered, and each has read the other
c1=$(cpu_ticks "${pid_of[1]}")
c2=$(cpu_ticks "${pid_of[2]}")
run_bench cluster "${url_of[1]}" "${pid_of[1]}"
node1_cpu=$(( $(cpu_ticks "${pid_of[1]}") - c1 ))
node2_cpu=$(( $(cpu_ticks "${pid_of[2]}") - c2 ))
node1_calls=$(started "${url_of[1]}" || true)
node2_calls=$(started "${url_of[2]}" || true)
stop "${pid_of[1]}"
stop "${pid_of[2]}"
stop "$redis_pid"

# --- summary -----------------------------------------------------------------
hz=$(getconf CLK_TCK)
best() { jq -r '.find_max.max_calls // 0' "$1" 2>/dev/null || echo 0; }
for f in alone cluster; do [ -s "$logs/$f.json" ] || echo null > "$logs/$f.json"; done
alone_max=$(best "$logs/alone.json")
cluster_max=$(best "$logs/cluster.json")
jq -n --slurpfile alone "$logs/alone.json" --slurpfile cluster "$logs/cluster.json" \
  --argjson alone_max "$alone_max" --argjson cluster_max "$cluster_max" \
  --arg client "$client_cpu" --argjson core_a "$core_a" --argjson core_b "$core_b" \
  --argjson duration "$duration" --argjson cpus "$(nproc)" --argjson hz "$hz" \
  --argjson alone_cpu "$alone_cpu" --argjson n1cpu "$node1_cpu" --argjson n2cpu "$node2_cpu" \
  --argjson n1 "${node1_calls:-0}" --argjson n2 "${node2_calls:-0}" \
  'def setup_mean: [(.find_max.rounds // [])[] | .setup_ms | select(. != null)]
     | if length == 0 then null
       else ((map(.mean * .n) | add) / (map(.n) | add) * 10 | round / 10) end;
   {setup: {cpus: $cpus, node_cores: [$core_a, $core_b], client_cpu: (if $client == "none" then null else ($client | tonumber) end),
            duration_s: $duration, engines: "scripted/fixed/tone", records: false},
    alone: {max_calls: $alone_max, cpu_s: ($alone_cpu / $hz), bench: $alone[0]},
    cluster: {max_calls: $cluster_max,
              nodes: [{id: "node1", cpu_s: ($n1cpu / $hz), calls_started: $n1},
                      {id: "node2", cpu_s: ($n2cpu / $hz), calls_started: $n2}],
              bench: $cluster[0]},
    ratio: (if $alone_max > 0 then ($cluster_max / $alone_max) else null end)}
  | .alone.setup_ms_mean = (.alone.bench | setup_mean)
  | .cluster.setup_ms_mean = (.cluster.bench | setup_mean)' > "$json"

{
  echo
  echo "== cluster.sh summary ($(nproc) cores; nodes on cores $core_a and $core_b; client $( [ "$client_cpu" = none ] && echo unpinned || echo "on core $client_cpu"))"
  printf '  one node alone      %5d calls   (server CPU %.1f s over the run)\n' "$alone_max" "$(jq -n "$alone_cpu / $hz")"
  printf '  two-node cluster    %5d calls   (node1 CPU %.1f s, %s calls; node2 CPU %.1f s, %s calls)\n' \
    "$cluster_max" "$(jq -n "$node1_cpu / $hz")" "${node1_calls:-?}" "$(jq -n "$node2_cpu / $hz")" "${node2_calls:-?}"
  printf '  call setup, mean    %s ms alone, %s ms in the cluster (every round; the cluster'"'"'s include redirects)\n' \
    "$(jq -r '.alone.setup_ms_mean // "?"' "$json")" "$(jq -r '.cluster.setup_ms_mean // "?"' "$json")"
  if [ "$alone_max" -gt 0 ]; then
    printf '  ratio               %5.2f         (2.00 = the sum of two nodes)\n' "$(jq -n "$cluster_max / $alone_max")"
  fi
  [ "$client_cpu" = none ] && echo "  the client was not pinned: in the cluster run it shared both cores with the nodes"
  [ -n "$max_calls" ] && echo "  --max-calls $max_calls capped both ramps: a figure at the cap is not the edge"
  echo "  JSON: $json"
} | tee "$logs/summary.txt"
