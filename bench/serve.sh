# Sourced by the bench scripts: start a `tingshuo serve` on a free loopback
# port and stop it again.
#
#   bench_serve NAME LOG BIN ARGS...   starts BIN serve ARGS... with its output in LOG;
#                                      sets $server (its pid) and $url once it listens;
#                                      exits the script, saying why, if it does not
#   bench_stop                         SIGTERM, up to 5 s, then SIGKILL; clears $server
#
# NAME prefixes the messages ("records.sh: ...").
server=""
url=""

bench_serve() {
  local name=$1 log=$2 exe=$3
  shift 3
  "$exe" serve --listen 127.0.0.1:0 "$@" > "$log" 2>&1 &
  server=$!
  url=""
  for _ in $(seq 150); do
    url=$(sed -nE 's#.*open (http://[^ ]+) in a browser.*#\1#p' "$log" | head -n1)
    [ -n "$url" ] && return 0
    kill -0 "$server" 2>/dev/null || { echo "$name: the server exited:" >&2; tail -n 20 "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$name: the server did not start in 15 s" >&2
  exit 1
}

bench_stop() {
  [ -n "$server" ] || return 0
  kill -TERM "$server" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}
