#!/usr/bin/env bash
# Configures and builds one flavour: scripts/build.sh [release|asan]  (build/ or build-asan/).
# release is profile-guided: a counting build in build-pgo/, a training run of it
# (scripts/pgo_train.sh: needs redis-server, h2load and curl, as scripts/install-deps.sh
# installs), then build/ laid out by those counts. HIPACHE_PGO=0 skips the first two steps (a
# quicker plain -O3 build, e.g. while editing).
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-release}"
case "$flavour" in
  release) dir=build; flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan) dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DHIPACHE_SANITIZE=ON) ;;
  *) echo "usage: $0 [release|asan]" >&2; exit 2 ;;
esac
if [ "$flavour" = release ] && [ "${HIPACHE_PGO:-1}" != 0 ]; then
  profiles="$PWD/build-pgo/profiles"
  cmake -S . -B build-pgo -DCMAKE_BUILD_TYPE=Release -DHIPACHE_TESTS=OFF \
    -DHIPACHE_PGO=generate -DHIPACHE_PGO_DIR="$profiles" >/dev/null
  cmake --build build-pgo -j2 --target hipache
  # Trained again only when the counting binary changed (a run with nothing edited does nothing).
  # Make does not track the counts: build/ rebuilds only what was edited, with the new counts.
  trained="$profiles/.trained"
  if [ ! -f "$trained" ] || [ build-pgo/hipache -nt "$trained" ]; then
    rm -rf "$profiles"
    echo "hipache: training run of the profile-guided build (scripts/pgo_train.sh)" >&2
    if bash scripts/pgo_train.sh build-pgo/hipache; then
      touch "$trained"
    else
      # The proxy still builds and works; it is only not laid out by a profile.
      echo "hipache: WARNING: the training run failed (above); building build/ without a profile" >&2
      rm -rf "$profiles"
    fi
  fi
  if [ -f "$trained" ]; then
    flags+=(-DHIPACHE_PGO=use -DHIPACHE_PGO_DIR="$profiles")
  else
    flags+=(-DHIPACHE_PGO=)
  fi
elif [ "$flavour" = release ]; then
  flags+=(-DHIPACHE_PGO=)
fi
cmake -S . -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j2
