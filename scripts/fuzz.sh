#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang, ASan+UBSan) into build-fuzz/ and runs each for
# a while, starting from the seed corpus in tests/fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh            20 seconds per target
#   scripts/fuzz.sh --short    10 seconds per target (the test command)
#   scripts/fuzz.sh 3600       an hour per target
#   FUZZ_TARGETS="fuzz_config" scripts/fuzz.sh 600     only some targets
#
# New inputs found go to build-fuzz/corpus/<target>/ (kept between runs; the seeds in tests/ are
# only read). Any crash, sanitizer report, leak, timeout or out-of-memory fails the script, and the
# input is left as build-fuzz/artifacts/<target>-crash-... (replay: build-fuzz/<target> <file>).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=20
case "${1:-}" in
  "") ;;
  --short) seconds=10 ;;
  *[!0-9]* ) echo "usage: $0 [seconds|--short]" >&2; exit 2 ;;
  *) seconds="$1" ;;
esac

cxx="${FUZZ_CXX:-}"
if [ -z "$cxx" ]; then
  for candidate in clang++-14 clang++; do
    if command -v "$candidate" >/dev/null; then cxx="$candidate"; break; fi
  done
fi
[ -n "$cxx" ] || { echo "fuzz: clang++ not found (Debian: clang, libclang-rt-14-dev)" >&2; exit 1; }

build=build-fuzz
CXX="$cxx" cmake -S tests/fuzz -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2

# Longest input per target: the request targets go past the 64 KB header limit.
declare -A max_len=([fuzz_request]=70000 [fuzz_forward]=70000 [fuzz_config]=16384
                    [fuzz_driver_url]=1024 [fuzz_redis_reply]=8192 [fuzz_access_log]=4096
                    [fuzz_dead_message]=8192 [fuzz_proxy_header]=4200
                    [fuzz_h2_request]=8192 [fuzz_h2_backend_request]=16384
                    [fuzz_tls_records]=2048 [fuzz_trailers]=90000)
targets=(${FUZZ_TARGETS:-fuzz_request fuzz_forward fuzz_config fuzz_driver_url fuzz_redis_reply
         fuzz_access_log fuzz_dead_message fuzz_proxy_header fuzz_h2_request
         fuzz_h2_backend_request fuzz_tls_records fuzz_trailers})
mkdir -p "$build/artifacts"
status=0
for target in "${targets[@]}"; do
  mkdir -p "$build/corpus/$target"
  echo "== fuzz: $target for ${seconds}s ==" >&2
  log="$build/$target.log"
  dict=()
  [ -f "tests/fuzz/$target.dict" ] && dict=(-dict="tests/fuzz/$target.dict")
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$build/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -max_len="${max_len[$target]:-4096}" -print_final_stats=1 "${dict[@]}" \
       -artifact_prefix="$build/artifacts/$target-" \
       "$build/corpus/$target" "tests/fuzz/corpus/$target" >"$log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^stat::new_units_added|^stat::peak_rss_mb" "$log" \
      | sed "s/^/  /" >&2 || true
  else
    status=1
    echo "fuzz: $target FAILED (log: $log)" >&2
    tail -n 60 "$log" >&2
  fi
done
[ "$status" -eq 0 ] && echo "fuzz: no crashes" >&2
exit "$status"
