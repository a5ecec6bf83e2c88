#!/usr/bin/env bash
# Runs deploy/Dockerfile without a container runtime, to show that its build and run steps
# work on Debian 12 as written. It reads the Dockerfile itself (it does not keep a copy of
# its steps): each FROM starts a fresh Debian 12 root made with debootstrap (minbase, the
# nearest thing to debian:12-slim), RUN lines run in that root under chroot with the stage's
# ENV, COPY copies from the build context (minus .dockerignore) or from an earlier stage's
# root, and USER, WORKDIR, ENV, ENTRYPOINT, CMD and HEALTHCHECK are then used to start the
# final root's server as its non-root user, in a private network namespace, and to run the
# health check against it. Also checked: every library the binary loads is present, and no
# compiler or -dev package is in the final root.
#
# Not what Docker does: no layers, no image, no cgroup limits, no port publishing; the
# namespace is the network's only. Needs root, debootstrap (apt-get install debootstrap),
# unshare and ip, and the network to reach Debian's mirror. Slow (package downloads and a
# full build): not part of the test suite.
#
#   sudo deploy/check-dockerfile.sh [--keep] [--workdir DIR]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CONTEXT=$(dirname "$HERE")
DOCKERFILE=$HERE/Dockerfile
WORK=/var/tmp/tingshuo-check
KEEP=0
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
while [ $# -gt 0 ]; do
  case $1 in
    --keep) KEEP=1 ;;
    --workdir) WORK=$2; shift ;;
    *) echo "usage: $0 [--keep] [--workdir DIR]" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
for tool in debootstrap unshare ip chroot; do
  command -v $tool >/dev/null || { echo "$0: $tool is missing" >&2; exit 1; }
done

say() { printf '\n== %s\n' "$*"; }
mkdir -p "$WORK"

# One debootstrap per work directory; every stage starts from a copy of it.
BASE=$WORK/base.tar
if [ ! -f "$BASE" ]; then
  say "debootstrap --variant=minbase bookworm"
  rm -rf "$WORK/base"
  debootstrap --variant=minbase bookworm "$WORK/base" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log"; exit 1; }
  tar -C "$WORK/base" -cf "$BASE" .
  rm -rf "$WORK/base"
fi

MOUNTS=()
cleanup() {
  local m
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
  if [ $KEEP -eq 0 ]; then rm -rf "$WORK"/stage-*; fi
}
trap cleanup EXIT

new_root() { # DIR
  rm -rf "$1"
  mkdir -p "$1"
  tar -C "$1" -xf "$BASE"
  cp /etc/resolv.conf "$1/etc/resolv.conf"
  mount -t proc proc "$1/proc"; MOUNTS+=("$1/proc")
  mount --bind /dev "$1/dev"; MOUNTS+=("$1/dev")
}

# The Dockerfile as instructions: comments dropped, continuation lines joined.
mapfile -t INSTR < <(sed -e '/^[[:space:]]*#/d' "$DOCKERFILE" |
  awk '{ if (sub(/\\[[:space:]]*$/, "")) { buf = buf $0; next } print buf $0; buf = "" }' |
  grep -v '^[[:space:]]*$')

# Paths left out of the context, as tar patterns (.dockerignore is read the same way).
EXCLUDES=()
while read -r pat; do
  case $pat in ''|'#'*) continue ;; esac
  pat=${pat#/}
  if [[ $pat == '**/'* ]]; then
    EXCLUDES+=(--no-anchored "--exclude=${pat#\*\*/}")
  else
    EXCLUDES+=(--anchored "--exclude=./$pat")
  fi
done < <(cat "$CONTEXT/.dockerignore" 2>/dev/null || true)

declare -A STAGE_ROOT
STAGE=-1 ROOT="" ENVS=() USER_SPEC=root WORKDIR=/ ENTRY="" CMD="" HEALTH="" EXPOSED=""

# USER name[:group] as numbers from the root's own /etc/passwd and /etc/group.
numeric_user() { # ROOT SPEC
  local u=${2%%:*} g=${2#*:} uid gid
  [ "$g" = "$2" ] && g=""
  uid=$(awk -F: -v n="$u" '$1 == n || $3 == n { print $3; exit }' "$1/etc/passwd")
  gid=$(awk -F: -v n="$u" '$1 == n || $3 == n { print $4; exit }' "$1/etc/passwd")
  [ -n "$g" ] && gid=$(awk -F: -v n="$g" '$1 == n || $3 == n { print $3; exit }' "$1/etc/group")
  [ -n "$uid" ] && [ -n "$gid" ] || { echo "USER $2: not in $1/etc/passwd" >&2; return 1; }
  echo "$uid:$gid"
}

json_words() { # ["a", "b"] -> one word a line
  node -e 'for (const w of JSON.parse(process.argv[1])) console.log(w)' "$1" 2>/dev/null ||
    python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])))' "$1"
}

for line in "${INSTR[@]}"; do
  line=$(sed -e 's/^[[:space:]]*//' <<<"$line")
  op=${line%% *}
  arg=${line#* }
  case ${op^^} in
    FROM)
      STAGE=$((STAGE + 1))
      ROOT=$WORK/stage-$STAGE
      image=${arg%% *}
      [ "$image" = debian:12-slim ] || { echo "FROM $image: only debian:12-slim is stood in for" >&2; exit 1; }
      name=$(sed -n 's/.* [Aa][Ss] \([^ ]*\)$/\1/p' <<<"$arg")
      say "stage $STAGE${name:+ ($name)}: fresh Debian 12 root in $ROOT"
      new_root "$ROOT"
      [ -n "$name" ] && STAGE_ROOT[$name]=$ROOT
      STAGE_ROOT[$STAGE]=$ROOT
      ENVS=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "HOME=/root")
      USER_SPEC=root WORKDIR=/ ENTRY="" CMD="" HEALTH="" EXPOSED=""
      ;;
    RUN)
      say "RUN $arg"
      start=$(date +%s)
      chroot --userspec="$(numeric_user "$ROOT" "$USER_SPEC")" "$ROOT" /usr/bin/env -i "${ENVS[@]}" \
        /bin/sh -c "cd $WORKDIR && $arg" >"$ROOT.run.log" 2>&1 || { tail -40 "$ROOT.run.log"; exit 1; }
      tail -3 "$ROOT.run.log"
      echo "($(($(date +%s) - start)) s)"
      ;;
    COPY)
      from=""
      if [[ $arg == --from=* ]]; then from=${arg%% *}; from=${from#--from=}; arg=${arg#* }; fi
      src=${arg% *}
      dst=${arg##* }
      say "COPY ${from:+--from=$from }$src $dst"
      if [ -n "$from" ]; then
        srcpath=${STAGE_ROOT[$from]}$src
      elif [ "$src" = . ]; then
        srcpath=$WORK/context
        rm -rf "$srcpath"; mkdir -p "$srcpath"
        tar -C "$CONTEXT" "${EXCLUDES[@]}" -cf - . | tar -C "$srcpath" -xf -
        echo "context: $(du -sh "$srcpath" | cut -f1) after .dockerignore"
      else
        srcpath=$CONTEXT/$src
      fi
      if [ -d "$srcpath" ]; then
        mkdir -p "$ROOT$dst"
        cp -a "$srcpath/." "$ROOT$dst/"
      elif [[ $dst == */ ]]; then
        mkdir -p "$ROOT$dst"
        cp -a "$srcpath" "$ROOT$dst"
      else
        mkdir -p "$(dirname "$ROOT$dst")"
        cp -a "$srcpath" "$ROOT$dst"
      fi
      chroot "$ROOT" chown -R root:root "$dst"
      ;;
    ENV)
      # KEY=VALUE pairs, no quoting or spaces in values (what this Dockerfile uses).
      for kv in $arg; do ENVS+=("$kv"); done
      ;;
    USER) USER_SPEC=$arg ;;
    WORKDIR) WORKDIR=$arg ;;
    ENTRYPOINT) ENTRY=$arg ;;
    CMD) CMD=$arg ;;
    HEALTHCHECK) HEALTH=$(sed -n 's/.*[[:space:]]CMD[[:space:]]\(.*\)$/\1/p' <<<"$arg") ;;
    EXPOSE) EXPOSED="$EXPOSED $arg" ;;
    ARG|LABEL|VOLUME|STOPSIGNAL|SHELL) ;;
    *) echo "unhandled instruction: $op" >&2; exit 1 ;;
  esac
done

FINAL=$ROOT
say "final root: $(du -shx "$FINAL" | cut -f1) (the debootstrap base alone: $(du -sh "$BASE" | cut -f1))"
echo "exposed:$EXPOSED"

say "libraries the binary loads"
bin=$(json_words "$ENTRY" | head -1)
if chroot "$FINAL" ldd "$bin" | grep 'not found'; then echo "missing libraries" >&2; exit 1; fi
echo "$(chroot "$FINAL" ldd "$bin" | wc -l) libraries, none missing"

say "no build tools in the final root"
devs=$(chroot "$FINAL" dpkg-query -W -f '${Package}\n' | grep -E -- '-dev$|^(gcc|cpp|g\+\+)(-[0-9]+)?$|^binutils|^cmake$|^make$' || true)
[ -z "$devs" ] || { echo "found: $devs" >&2; exit 1; }
echo "none"

say "start ENTRYPOINT + CMD as $USER_SPEC, then the HEALTHCHECK, in a private network namespace"
mapfile -t ARGV < <(json_words "$ENTRY"; json_words "$CMD")
secret=$(head -c 24 /dev/urandom | base64)
# As Docker does, HOME is the USER's home directory from the image's /etc/passwd.
home=$(awk -F: -v n="${USER_SPEC%%:*}" '$1 == n || $3 == n { print $6; exit }' "$FINAL/etc/passwd")
ENVS=("${ENVS[@]/#HOME=*/HOME=${home:-/}}")
USER_SPEC=$(numeric_user "$FINAL" "$USER_SPEC")
export FINAL USER_SPEC WORKDIR HEALTH
# The server's environment: the image's ENV plus what an operator passes with `docker run -e`.
printf '%s\n' "${ENVS[@]}" "TINGSHUO_CALL_SECRET=$secret" >"$WORK/run.env"
unshare --net bash -s -- "${ARGV[@]}" <<'EOS'
set -euo pipefail
ip link set lo up
mapfile -t envs <"$(dirname "$FINAL")/run.env"
chroot --userspec="$USER_SPEC" "$FINAL" /usr/bin/env -i "${envs[@]}" /bin/sh -c 'cd "$0" && exec "$@"' "$WORKDIR" "$@" \
  >"$FINAL.server.log" 2>&1 &
server=$!
ok=0
for i in $(seq 1 60); do
  if chroot --userspec="$USER_SPEC" "$FINAL" /usr/bin/env -i "${envs[@]}" /bin/sh -c "$HEALTH"; then ok=1; break; fi
  kill -0 $server 2>/dev/null || break
  sleep 0.5
done
[ $ok -eq 1 ] || { echo "HEALTHCHECK never passed; server log:"; cat "$FINAL.server.log"; kill $server 2>/dev/null; exit 1; }
echo "HEALTHCHECK passed after $i tries"
chroot "$FINAL" curl -fsS http://127.0.0.1:8080/healthz; echo
echo "server process: uid $(ps -o uid= -p $server | tr -d ' '), $(ps -o args= -p $server)"
page=$(chroot "$FINAL" curl -fsS http://127.0.0.1:8080/)
if [ "$page" = "$(cat "$FINAL/usr/share/tingshuo/web/index.html")" ]; then
  echo "/ serves /usr/share/tingshuo/web/index.html (no web_root set)"
else
  echo "/ is not the installed index.html" >&2; kill $server; exit 1
fi
t0=$(date +%s%N)
kill -TERM $server
wait $server && rc=0 || rc=$?
echo "SIGTERM: exit status $rc after $((($(date +%s%N) - t0) / 1000000)) ms"
echo "--- server log"; cat "$FINAL.server.log"
[ $rc -eq 0 ]
EOS
say "the Dockerfile's steps ran and the server answered its health check"
