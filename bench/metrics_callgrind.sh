#!/usr/bin/env bash
# Instructions a worker executes for N small keep-alive requests, under callgrind: a count the
# load of a shared machine does not move (bench/README.md, "The cost of counting metrics").
#   bash bench/metrics_callgrind.sh BINARY N [FRONTEND_METRICS]  -> the worker's total Ir
# FRONTEND_METRICS > 0 adds the admin listener with admin.frontendMetrics set to it.
# Run it at two N for each binary: the difference of the totals over the difference of N is the
# cost of one request (start-up and shutdown cancel out).
# CALLGRIND_CLIENT=h2 (over TLS) or h2c: the N requests go over HTTP/2 instead, h2load on one
# connection with CALLGRIND_STREAMS (1) streams in flight. CALLGRIND_OUT=DIR keeps the worker's
# callgrind file there (for callgrind_annotate).
set -euo pipefail
BIN=$1
N=$2
FRONTEND_METRICS=${3:-0}
CLIENT=${CALLGRIND_CLIENT:-http1}
STREAMS=${CALLGRIND_STREAMS:-1}
D=$(mktemp -d /tmp/hipache-callgrind.XXXXXX)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RP=$(free_port)
HP=$(free_port)
SP=$(free_port)
BP=$(free_port)
AP=$(free_port)
ADMIN=""
if [ "$FRONTEND_METRICS" -gt 0 ]; then
  ADMIN=", \"admin\": {\"port\": $AP, \"frontendMetrics\": $FRONTEND_METRICS}"
fi
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$D" >/dev/null &
RPID=$!
python3 - "$BP" <<'PY' &
import http.server, sys
class Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):  # header and body in one write, as the nginx backends of run.sh
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
PY
BPID=$!
trap 'kill "$RPID" "$BPID" 2>/dev/null || true; rm -rf "$D"' EXIT
HTTPS='"https": {"bind": []}'
if [ "$CLIENT" = h2 ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench.test -keyout "$D/tls.key" -out "$D/tls.crt" 2>/dev/null
  HTTPS="\"https\": {\"port\": $SP, \"bind\": [\"127.0.0.1\"], \"key\": \"$D/tls.key\",
           \"cert\": \"$D/tls.crt\"}"
fi
sleep 0.5
redis-cli -p "$RP" rpush frontend:bench.test b "http://127.0.0.1:$BP" >/dev/null
cat >"$D/c.json" <<J
{"server": {"workers": 1, "httpKeepAlive": true, "accessLog": null, "memoryLimit": 0,
            "gracefulWait": 1},
 "http": {"port": $HP, "bind": ["127.0.0.1"]}, $HTTPS,
 "driver": "redis://127.0.0.1:$RP", "user": "root"$ADMIN}
J
valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$D/cg.%p" "$BIN" \
  -c "$D/c.json" 2>"$D/valgrind.log" &
HPID=$!
for _ in $(seq 100); do
  curl -s -o /dev/null -H 'Host: bench.test' "127.0.0.1:$HP/" && break
  sleep 0.3
done
case "$CLIENT" in
  h2 | h2c)
    URL="http://127.0.0.1:$HP/"
    [ "$CLIENT" = h2c ] || URL="https://127.0.0.1:$SP/"
    out=$(h2load -n "$N" -c 1 -m "$STREAMS" -H ':authority: bench.test' \
      --tls13-ciphers=TLS_AES_128_GCM_SHA256 "$URL")
    grep -q "status codes: $N 2xx" <<<"$out" || { echo "h2load: $out" >&2; exit 1; }
    ;;
  *)
python3 - "$HP" "$N" <<'PY'
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
for _ in range(int(sys.argv[2])):
    conn.request("GET", "/", headers={"Host": "bench.test"})
    response = conn.getresponse()
    response.read()
    assert response.status == 200, response.status
PY
    ;;
esac
kill -TERM "$HPID"
wait "$HPID" || true
# The master's file and the worker's: the worker is the one that served (the larger total).
worker=$(for f in "$D"/cg.*; do echo "$(grep -m1 '^totals:' "$f" | awk '{print $2}') $f"; done |
  sort -n | tail -1)
[ -z "${CALLGRIND_OUT:-}" ] || { mkdir -p "$CALLGRIND_OUT"; cp "${worker#* }" "$CALLGRIND_OUT/"; }
echo "${worker%% *}"
