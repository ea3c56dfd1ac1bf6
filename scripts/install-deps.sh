#!/usr/bin/env bash
# Installs the Debian packages hipache needs to build, test and run, when they are missing
# (clang and its runtime for the libFuzzer targets, valgrind for the leak check; the HTTP/2,
# gRPC, Sentinel, PROXY protocol and status-page tests use nghttp2, grpcio, redis-sentinel,
# haproxy and chromium).
set -euo pipefail

packages=(build-essential cmake pkg-config libboost1.81-dev libhiredis-dev libssl-dev
          nlohmann-json3-dev libspdlog-dev libjemalloc-dev libgtest-dev redis-server redis-tools
          python3 curl clang libclang-rt-14-dev valgrind libnghttp2-dev nghttp2-client python3-h2
          python3-grpcio redis-sentinel haproxy chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "hipache: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
