#!/usr/bin/env bash
# Installs what tingshuo needs on Debian 12, skipping what is already there.
#   scripts/deps.sh run    build and run the server with the embedded engines
#   scripts/deps.sh test   the above plus the test tools (cmocka, libsrtp2 as the SRTP reference,
#                          chromium, firefox-esr, node packages, clang with libFuzzer for scripts/fuzz.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_PKGS=(
  build-essential cmake pkg-config
  libuv1-dev libwebsockets-dev libssl-dev libopus-dev libspeexdsp-dev
  libcurl4-openssl-dev libjansson-dev openssl libsqlite3-dev libpq-dev libogg-dev
  libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us flite1-dev libespeak-ng-dev espeak-ng-data
  libhiredis-dev
)
TEST_PKGS=(
  libcmocka-dev libsrtp2-dev chromium firefox-esr sox curl flite pocketsphinx postgresql prometheus opus-tools sqlite3
  redis-server
  fonts-wqy-microhei
  clang libclang-rt-14-dev
)

mode=${1:-run}
want=("${RUN_PKGS[@]}")
[ "$mode" = test ] && want+=("${TEST_PKGS[@]}")
command -v node >/dev/null || want+=(nodejs)
command -v npm >/dev/null || want+=(npm)

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tingshuo needs these Debian packages: ${missing[*]}" >&2
    echo "run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$mode" = test ]; then
  # Node packages go into the project's own node_modules, pinned by package-lock.json.
  if [ ! -f node_modules/.tingshuo-stamp ] || [ package-lock.json -nt node_modules/.tingshuo-stamp ]; then
    npm ci --no-audit --no-fund --loglevel=error
    touch node_modules/.tingshuo-stamp
  fi
fi
