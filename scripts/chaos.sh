#!/usr/bin/env bash
# Chaos test: the real binary under load while backends, workers and Redis are killed and
# restarted and the master is sent SIGHUP (tests/chaos/chaos.py; expectations in
# docs/testing.md).
#
#   scripts/chaos.sh            20 s (the test command's short form)
#   scripts/chaos.sh 300        five minutes
#   HIPACHE_BINARY=build-asan/hipache scripts/chaos.sh      another build
# Extra options go to chaos.py: scripts/chaos.sh 120 --threads 16 --interval 1.5
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true
binary="${HIPACHE_BINARY:-build/hipache}"
exec python3 tests/chaos/chaos.py --duration "$seconds" --binary "$binary" "$@"
