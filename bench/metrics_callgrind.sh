#!/usr/bin/env bash
# Instructions a worker executes for N small keep-alive requests, under callgrind: a count the
# load of a shared machine does not move (bench/README.md, "The cost of counting metrics").
#   bash bench/metrics_callgrind.sh BINARY N [FRONTEND_METRICS]  -> the worker's total Ir
# FRONTEND_METRICS > 0 adds the admin listener with admin.frontendMetrics set to it.
# Run it at two N for each binary: the difference of the totals over the difference of N is the
# cost of one request (start-up and shutdown cancel out).
set -euo pipefail
BIN=$1
N=$2
FRONTEND_METRICS=${3:-0}
D=$(mktemp -d /tmp/hipache-callgrind.XXXXXX)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RP=$(free_port)
HP=$(free_port)
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
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
PY
BPID=$!
trap 'kill "$RPID" "$BPID" 2>/dev/null || true; rm -rf "$D"' EXIT
sleep 0.5
redis-cli -p "$RP" rpush frontend:bench.test b "http://127.0.0.1:$BP" >/dev/null
cat >"$D/c.json" <<J
{"server": {"workers": 1, "httpKeepAlive": true, "accessLog": null, "memoryLimit": 0,
            "gracefulWait": 1},
 "http": {"port": $HP, "bind": ["127.0.0.1"]}, "https": {"bind": []},
 "driver": "redis://127.0.0.1:$RP", "user": "root"$ADMIN}
J
valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$D/cg.%p" "$BIN" \
  -c "$D/c.json" 2>"$D/valgrind.log" &
HPID=$!
for _ in $(seq 100); do
  curl -s -o /dev/null -H 'Host: bench.test' "127.0.0.1:$HP/" && break
  sleep 0.3
done
python3 - "$HP" "$N" <<'PY'
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
for _ in range(int(sys.argv[2])):
    conn.request("GET", "/", headers={"Host": "bench.test"})
    response = conn.getresponse()
    response.read()
    assert response.status == 200, response.status
PY
kill -TERM "$HPID"
wait "$HPID" || true
# The master's file and the worker's: the worker is the one that served (the larger total).
for f in "$D"/cg.*; do grep -m1 '^totals:' "$f" | awk '{print $2}'; done | sort -n | tail -1
