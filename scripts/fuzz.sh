#!/usr/bin/env bash
# Runs one fuzz target with libFuzzer (docs/security.md, "Parsers and fuzzing").
#
#   scripts/fuzz.sh TARGET SECONDS     e.g. scripts/fuzz.sh sdp 600
#   scripts/fuzz.sh list               the targets
#
# Builds fuzz/fuzz_TARGET.c with clang, libFuzzer, AddressSanitizer and
# UndefinedBehaviorSanitizer in build-fuzz/ (the library is instrumented for
# coverage too), then fuzzes for SECONDS starting from fuzz/corpus/TARGET/.
# That corpus is only read: inputs that reach new code go to
# build-fuzz/work/TARGET/corpus/ and a crash to build-fuzz/work/TARGET/crashes/,
# both kept between runs and never committed. A crash is worth keeping: copy
# it to fuzz/corpus/TARGET/crash-NAME with the fix, and every test run
# replays it from then on. Exits 1 when the run found a crash.
#
# Environment: FUZZ_ARGS adds libFuzzer flags (e.g. "-jobs=2"); CC picks the
# compiler (default clang).
set -euo pipefail
cd "$(dirname "$0")/.."

targets() { ls fuzz/fuzz_*.c | sed 's|fuzz/fuzz_||; s|\.c$||' | grep -v '^selftest$'; }
if [ "${1:-}" = list ]; then targets; exit 0; fi
if [ $# -ne 2 ] || ! [[ $2 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 TARGET SECONDS   (targets: $(targets | tr '\n' ' '))" >&2
  exit 2
fi
target=$1 seconds=$2
if [ ! -f "fuzz/fuzz_$target.c" ]; then
  echo "no fuzz target '$target' (targets: $(targets | tr '\n' ' '))" >&2
  exit 2
fi
command -v "${CC:-clang}" >/dev/null || { echo "needs clang: scripts/deps.sh test" >&2; exit 1; }

build="build-fuzz"
if [ ! -f $build/CMakeCache.txt ]; then
  CC=${CC:-clang} cmake -S . -B $build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTINGSHUO_SANITIZE=ON \
    -DTINGSHUO_FUZZ=ON -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null
fi
cmake --build $build -j "${JOBS:-2}" --target "fuzz_$target" >/dev/null

work=$build/work/$target
mkdir -p "$work/corpus" "$work/crashes"
seeds=fuzz/corpus/$target
dict=()
[ -f "fuzz/$target.dict" ] && dict=(-dict="fuzz/$target.dict")
log=$work/last-run.log
before=$(ls "$work/crashes" | wc -l)

echo "fuzzing $target for ${seconds}s: seeds $seeds, work dir $work"
set +e
# shellcheck disable=SC2086
"$build/fuzz/fuzz_$target" "$work/corpus" "$seeds" "${dict[@]}" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -artifact_prefix="$work/crashes/" -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1
rc=$?
set -e

# The last status line carries coverage (cov), features (ft) and the corpus size.
status=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
echo "executions:   $(stat number_of_executed_units)"
echo "exec/s:       $(stat average_exec_per_sec)"
echo "new inputs:   $(stat new_units_added)"
echo "peak RSS MB:  $(stat peak_rss_mb)"
echo "last status:  ${status:-none}"
echo "corpus:       $(ls "$work/corpus" | wc -l) inputs in $work/corpus"
after=$(ls "$work/crashes" | wc -l)
if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
  echo "FINDING: libFuzzer exited with $rc; see $log"
  ls -t "$work/crashes" | head -n 5 | sed "s|^|  $work/crashes/|"
  grep -m 1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|fuzz check failed' "$log" || true
  exit 1
fi
echo "no crash"
