#!/usr/bin/env bash
# The training run of the profile-guided release build (scripts/build.sh): runs the
# profile-generating binary under the traffic a proxy spends its time on, so the counts it writes
# at exit say which code is hot. All on free loopback ports, with a local redis-server and a small
# backend; everything started here is stopped on exit.
#   scripts/pgo_train.sh BINARY
# Traffic (h2load, against a proxy with two workers): HTTP/1.1 keep-alive GETs and POSTs, HTTP/2
# over TLS and h2c with one stream and with 16 streams per connection, POSTs over h2, and the
# error page of an unknown host.
set -euo pipefail
BIN=$1
for tool in redis-server redis-cli h2load openssl python3 curl; do
  command -v "$tool" >/dev/null ||
    { echo "pgo_train: $tool is missing (bash scripts/install-deps.sh)" >&2; exit 1; }
done
D=$(mktemp -d /tmp/hipache-pgo.XXXXXX)
PIDS=()
stop() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$D"
}
trap stop EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REDIS=$(free_port) HTTP=$(free_port) HTTPS=$(free_port) BACKEND=$(free_port)

redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no --dir "$D" >/dev/null &
PIDS+=($!)
python3 - "$BACKEND" <<'PY' &
import http.server, sys
class Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # not 5: 64 streams at once open up to 64 connections at once
Server(("127.0.0.1", int(sys.argv[1])), Backend).serve_forever()
PY
PIDS+=($!)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=train.test -keyout "$D/tls.key" -out "$D/tls.crt" 2>/dev/null
cat >"$D/config.json" <<JSON
{"server": {"workers": 2, "httpKeepAlive": true, "accessLog": "$D/access.log",
            "memoryLimit": 0, "gracefulWait": 1, "http2": true},
 "http": {"port": $HTTP, "bind": ["127.0.0.1"]},
 "https": {"port": $HTTPS, "bind": ["127.0.0.1"], "key": "$D/tls.key", "cert": "$D/tls.crt"},
 "driver": "redis://127.0.0.1:$REDIS", "user": "$(id -un)"}
JSON
for _ in $(seq 50); do redis-cli -p "$REDIS" ping >/dev/null 2>&1 && break; sleep 0.1; done
# The backend answers before the proxy starts: a refused connection would fail the first phase.
for _ in $(seq 100); do
  python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
    "$BACKEND" 2>/dev/null && break
  sleep 0.1
done
redis-cli -p "$REDIS" rpush frontend:train.test train "http://127.0.0.1:$BACKEND" >/dev/null

"$BIN" -c "$D/config.json" 2>"$D/hipache.log" &
HIPACHE=$!
PIDS=("$HIPACHE" "${PIDS[@]}")  # stopped first, so that it writes its counts while Redis is up
for _ in $(seq 100); do
  curl -sf -o /dev/null -H 'Host: train.test' "http://127.0.0.1:$HTTP/" && break
  sleep 0.2
done

head -c 4096 /dev/zero >"$D/body"
failed() {  # what h2load said, and what the proxy logged
  echo "pgo_train: h2load $1" >&2
  echo "pgo_train: the proxy's log:" >&2
  tail -n 20 "$D/hipache.log" >&2
  echo "pgo_train: answers other than 2xx in its access log:" >&2
  grep -v '" 2[0-9][0-9] ' "$D/access.log" | tail -n 10 >&2 || true
  exit 1
}
load() {  # h2load ARGS...: every request must get the status the phase expects
  local want=$1; shift
  local out
  out=$(h2load -c 4 "$@") || failed "$*: $out"
  grep -q "status codes: $want" <<<"$out" || failed "$*: $out"
}
for streams in 1 16; do
  load "8000 2xx" -n 8000 -m "$streams" -H ':authority: train.test' "https://127.0.0.1:$HTTPS/"
  load "8000 2xx" -n 8000 -m "$streams" -H ':authority: train.test' "http://127.0.0.1:$HTTP/"
done
load "2000 2xx" -n 2000 -m 4 -d "$D/body" -H ':authority: train.test' "https://127.0.0.1:$HTTPS/"
load "8000 2xx" --h1 -n 8000 -H ':authority: train.test' "http://127.0.0.1:$HTTP/"
load "2000 2xx" --h1 -n 2000 -d "$D/body" -H ':authority: train.test' "http://127.0.0.1:$HTTP/"
load "0 2xx, 0 3xx, 500 4xx" --h1 -n 500 -H ':authority: unknown.test' "http://127.0.0.1:$HTTP/"

kill -TERM "$HIPACHE"
wait "$HIPACHE" || { echo "pgo_train: hipache exited with $?: $(tail -5 "$D/hipache.log")" >&2; exit 1; }
