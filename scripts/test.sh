#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test, first on the
# release build, then on the ASan+UBSan build; then a short libFuzzer run of every fuzz target
# and a Memcheck run of the unit tests and the proxy under load (docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
for flavour in release asan; do
  echo "== hipache tests: $flavour build ==" >&2
  bash scripts/build.sh "$flavour"
  dir=build
  [ "$flavour" = asan ] && dir=build-asan
  # A small ASan quarantine: the default one (256 MB) keeps freed memory resident, which the
  # bounded-memory streaming tests would read as growth.
  (cd "$dir" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=16 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --output-on-failure -j2 --timeout 300)
done
echo "== hipache tests: fuzzing (short) ==" >&2
bash scripts/fuzz.sh --short
echo "== hipache tests: valgrind ==" >&2
bash scripts/valgrind.sh
echo "hipache: all tests passed" >&2
