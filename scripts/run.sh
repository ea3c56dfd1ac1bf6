#!/usr/bin/env bash
# The run command: installs what is missing, builds, makes sure Redis answers (starting a local
# redis-server when the configured one is unreachable), then runs the proxy in the foreground.
#   scripts/run.sh [config file]      (default: config/config.json, port 8080)
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-config/config.json}"

# Installing and building print one line each; their full output goes to build/setup.log and is
# shown only when they fail.
mkdir -p build
setup_log=build/setup.log
: >"$setup_log"
# Runs "$@" with its output in the setup log, showing the build's progress (its "[ 42%]" lines)
# on one line when stderr is a terminal.
quietly() {
  local what="$1"; shift
  printf 'hipache: %s…' "$what" >&2
  "$@" >>"$setup_log" 2>&1 &
  local pid=$! status=0
  if [ -t 2 ]; then
    while kill -0 "$pid" 2>/dev/null; do
      local percent
      percent="$(grep -o '^\[ *[0-9]*%\]' "$setup_log" | tail -n 1 | tr -d '[] ')" || true
      printf '\rhipache: %s… %s' "$what" "$percent" >&2
      sleep 1
    done
  fi
  wait "$pid" || status=$?
  if [ "$status" -ne 0 ]; then
    printf '\nhipache: %s failed; the last lines of %s:\n\n' "$what" "$setup_log" >&2
    tail -n 60 "$setup_log" >&2
    exit "$status"
  fi
  if [ -t 2 ]; then
    printf '\rhipache: %s… done     \n' "$what" >&2
  else
    printf ' done\n' >&2
  fi
}
quietly "installing dependencies" bash scripts/install-deps.sh
quietly "building (this takes a few minutes on first run)" bash scripts/build.sh release

# Validate the config and read the Redis address and the HTTP port from its effective form.
effective="$(build/hipache --dry -c "$config")"
read -r redis_host redis_port redis_password http_port < <(python3 -c '
import json, sys, urllib.parse
c = json.loads(sys.stdin.read())
d = c["driver"][0] if isinstance(c["driver"], list) else c["driver"]
u = urllib.parse.urlsplit(d if "//" in d else "redis://")
binds = c.get("http", {}).get("bind") or [{"port": 8080}]
print(u.hostname or "127.0.0.1", u.port or 6379, u.password or "-", binds[0]["port"])
' <<<"$effective")

auth=()
[ "$redis_password" = "-" ] || auth=(-a "$redis_password" --no-auth-warning)
if ! redis-cli -h "$redis_host" -p "$redis_port" "${auth[@]}" ping >/dev/null 2>&1; then
  echo "hipache: no Redis at $redis_host:$redis_port; starting a local redis-server there" >&2
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --daemonize yes \
    --logfile "$PWD/build/redis.log" ${auth:+--requirepass "$redis_password"} >/dev/null
  for _ in $(seq 50); do
    redis-cli -p "$redis_port" "${auth[@]}" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis_host=127.0.0.1
fi

cat >&2 <<MSG

hipache is starting on http://127.0.0.1:$http_port (config: $config, Redis: $redis_host:$redis_port)
Add a frontend and try it from another terminal:
  redis-cli -h $redis_host -p $redis_port rpush frontend:www.example.test mysite http://127.0.0.1:9000
  python3 -m http.server 9000 &        # any HTTP server as the backend
  curl -H 'Host: www.example.test' http://127.0.0.1:$http_port/

MSG
exec build/hipache -c "$config"
