#!/usr/bin/env bash
# hipache vs nginx vs HAProxy, side by side, in one run.  See bench/README.md.
#
#   bash bench/run.sh                 full run (3 rounds of 10 s per throughput figure)
#   BENCH_QUICK=1 bash bench/run.sh   smoke run (1 round of 2 s)
#
# Starts redis-server, two nginx backends, an upload sink and a WebSocket echo server
# (bench/servers.py), then hipache, nginx and HAProxy with equivalent settings, all on free
# loopback ports; runs bench/measure.py against the three proxies; prints the table and writes
# bench/results/latest.md.  Everything it started is stopped on exit.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
TRANSFER_MB="${BENCH_TRANSFER_MB:-1024}"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/results/latest.md}"

say() { echo "[bench] $*" >&2; }
die() { say "error: $*"; exit 1; }

# ------------------------------------------------------------------ packages
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if ((${#need[@]})); then
  say "installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
  # Debian starts the packaged services; this benchmark runs its own instances.
  for svc in nginx haproxy redis-server; do
    command -v systemctl >/dev/null 2>&1 && $sudo systemctl stop "$svc" >/dev/null 2>&1 || true
  done
fi
export PATH="$PATH:/usr/sbin:/sbin"

# ------------------------------------------------------------------ the proxy binary
if [ ! -x "$ROOT/build/hipache" ]; then
  say "build/hipache is missing: building it (profile-guided, as scripts/run.sh does)"
  bash "$ROOT/scripts/build.sh" release >/dev/null
fi

# ------------------------------------------------------------------ limits
hard="$(ulimit -Hn)"
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then want=65536; else want="$hard"; fi
ulimit -n 65536 2>/dev/null || ulimit -n "$want"
NOFILE="$(ulimit -n)"
((NOFILE >= 10000)) || die "ulimit -n is $NOFILE; 4,000 idle connections need at least 10,000"
# the nginx/haproxy connection limits must fit in the descriptor limit
MAXCONN=$(((NOFILE - 200) / 2))
((MAXCONN > 20000)) && MAXCONN=20000

# ------------------------------------------------------------------ cleanup
TMP="$(mktemp -d /tmp/hipache-bench.XXXXXX)"
PIDS=()
MEASURE_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$MEASURE_PID" ]; then   # the measuring client and its wrk, if one is running
    local kids
    kids="$(pgrep -P "$MEASURE_PID" || true)"
    kill -TERM "$MEASURE_PID" 2>/dev/null || true
    [ -z "$kids" ] || kill -TERM $kids 2>/dev/null || true
  fi
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    local left=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
    ((left)) || break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # name command...: start in the background, remember the pid
  local name="$1"; shift
  "$@" >>"$TMP/$name.out" 2>&1 &
  PIDS+=("$!")
  eval "PID_${name//-/_}=$!"
}

wait_port() { # name port
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  say "$1 is not listening on port $2; its output:"
  cat "$TMP/$1.out" >&2 || true
  exit 1
}

# ------------------------------------------------------------------ ports and files
read -r P_REDIS P_B1 P_B2 P_SINK P_WS P_HIPACHE P_NGINX P_HAPROXY P_HIPACHE_TLS P_NGINX_TLS \
  P_HAPROXY_TLS P_NGINX_H2C < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(12)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)

mkdir -p "$TMP/www" "$TMP/nginx-b1" "$TMP/nginx-b2" "$TMP/nginx-proxy"
truncate -s "${TRANSFER_MB}M" "$TMP/www/big"   # sparse: reads as zeros, costs no disk
# Read it once now: the first reader of a sparse file pays for filling the page cache, and that
# would be whichever proxy the download test runs first (it halved hipache's figure).
cat "$TMP/www/big" >/dev/null
cp "$ROOT/build/hipache" "$TMP/hipache"        # a rebuild during the run must not swap it
# One certificate for the three TLS listeners (h2 phase); HAProxy wants key and chain in one file.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
  -addext "subjectAltName=DNS:bench.test,IP:127.0.0.1" -keyout "$TMP/tls.key" -out "$TMP/tls.crt" \
  2>/dev/null
cat "$TMP/tls.crt" "$TMP/tls.key" >"$TMP/tls.pem"

# Every proxy's 2 workers/threads are bound one per CPU (the first two this script may use): left
# to float, two busy workers sometimes share a CPU and wait a scheduler tick for each other, and
# the p99 then measures the scheduler rather than the proxy.  hipache: server.cpuAffinity; nginx:
# worker_cpu_affinity; HAProxy: cpu-map.  BENCH_CPU_AFFINITY=0 leaves all three floating (hipache
# with its default server.cpuSpread: busy workers found on one CPU move apart).
read -r CPU_A CPU_B < <(python3 -c 'import os; c = sorted(os.sched_getaffinity(0)); print(c[0], c[min(1, len(c) - 1)])')
cpu_mask() { python3 -c "print(format(1 << $1, 'b'))"; }
if [ "${BENCH_CPU_AFFINITY:-1}" = 1 ]; then
  HIPACHE_AFFINITY=true
  NGINX_AFFINITY="worker_cpu_affinity $(cpu_mask "$CPU_A") $(cpu_mask "$CPU_B");"
  HAPROXY_AFFINITY="cpu-map 1/1 $CPU_A
  cpu-map 1/2 $CPU_B"
else
  HIPACHE_AFFINITY=false NGINX_AFFINITY="" HAPROXY_AFFINITY=""
fi

# two identical nginx backends: "ok" on every path, the big file on /big
for b in b1 b2; do
  port_var="P_${b^^}"
  cat >"$TMP/nginx-$b/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $NOFILE;
user root;
pid $TMP/nginx-$b/nginx.pid;
error_log $TMP/nginx-$b/error.log error;
events { worker_connections $MAXCONN; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 60s;
  keepalive_requests 1000000;
  client_body_temp_path $TMP/nginx-$b/client_body;
  proxy_temp_path $TMP/nginx-$b/proxy;
  fastcgi_temp_path $TMP/nginx-$b/fastcgi;
  uwsgi_temp_path $TMP/nginx-$b/uwsgi;
  scgi_temp_path $TMP/nginx-$b/scgi;
  server {
    listen 127.0.0.1:${!port_var} backlog=4096;
    root $TMP/www;
    location = /big { default_type application/octet-stream; }
    location / { default_type text/plain; return 200 "ok"; }
  }
}
EOF
done

# hipache: 2 workers, keep-alive to the backends, no access log (nginx and HAProxy log nothing)
cat >"$TMP/hipache.json" <<EOF
{
  "server": {
    "workers": 2,
    "httpKeepAlive": true,
    "maxSockets": 100,
    "tcpTimeout": 60,
    "accessLog": null,
    "memoryLimit": 0,
    "gracefulWait": 2,
    "cpuAffinity": $HIPACHE_AFFINITY,
    "http2": true
  },
  "http": { "port": $P_HIPACHE, "bind": ["127.0.0.1"] },
  "https": { "port": $P_HIPACHE_TLS, "bind": ["127.0.0.1"], "key": "$TMP/tls.key",
             "cert": "$TMP/tls.crt" },
  "driver": "redis://127.0.0.1:$P_REDIS",
  "user": "root"
}
EOF

# nginx: 2 workers, one upstream of both backends with keep-alive; streams bodies both ways
# (no request buffering, no temp files), like the other two
FWD='proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Port $server_port;
    proxy_set_header X-Forwarded-Proto $scheme;'
cat >"$TMP/nginx-proxy/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
$NGINX_AFFINITY
worker_rlimit_nofile $NOFILE;
user root;
pid $TMP/nginx-proxy/nginx.pid;
error_log $TMP/nginx-proxy/error.log error;
events { worker_connections $MAXCONN; }
http {
  access_log off;
  keepalive_timeout 60s;
  keepalive_requests 1000000;
  client_max_body_size 0;
  proxy_request_buffering off;
  proxy_max_temp_file_size 0;
  proxy_http_version 1.1;
  proxy_connect_timeout 5s;
  proxy_read_timeout 60s;
  proxy_send_timeout 60s;
  client_body_temp_path $TMP/nginx-proxy/client_body;
  proxy_temp_path $TMP/nginx-proxy/proxy;
  fastcgi_temp_path $TMP/nginx-proxy/fastcgi;
  uwsgi_temp_path $TMP/nginx-proxy/uwsgi;
  scgi_temp_path $TMP/nginx-proxy/scgi;
  upstream app {
    server 127.0.0.1:$P_B1;
    server 127.0.0.1:$P_B2;
    # idle connections kept per worker: above the 512 streams of the multiplexed h2 rows, or
    # nginx closes a backend connection after most of their requests (bench/README.md)
    keepalive 1024;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  upstream sink { server 127.0.0.1:$P_SINK; keepalive 100; }
  upstream ws { server 127.0.0.1:$P_WS; }
  server {
    listen 127.0.0.1:$P_NGINX backlog=4096;
    # h2 over TLS and h2c with prior knowledge (nginx needs a port of its own for h2c)
    listen 127.0.0.1:$P_NGINX_TLS ssl http2 backlog=4096;
    listen 127.0.0.1:$P_NGINX_H2C http2 backlog=4096;
    ssl_certificate $TMP/tls.crt;
    ssl_certificate_key $TMP/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;   # 1.22's default stops at TLS 1.2; the other two offer 1.3
    location / {
      proxy_pass http://app;
      proxy_set_header Connection "";
      $FWD
    }
    location /upload {
      proxy_pass http://sink;
      proxy_set_header Connection "";
      $FWD
    }
    location /ws {
      proxy_pass http://ws;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
      $FWD
    }
  }
}
EOF

# HAProxy: 2 threads, one backend of both servers, connection reuse to the servers
cat >"$TMP/haproxy.cfg" <<EOF
global
  nbthread 2
  $HAPROXY_AFFINITY
  maxconn $MAXCONN
  pidfile $TMP/haproxy.pid

defaults
  mode http
  maxconn $MAXCONN
  option http-keep-alive
  http-reuse always
  option forwardfor
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  timeout http-request 60s
  timeout tunnel 1h

frontend fe
  bind 127.0.0.1:$P_HAPROXY backlog 4096
  bind 127.0.0.1:$P_HAPROXY_TLS ssl crt $TMP/tls.pem alpn h2,http/1.1 backlog 4096
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Forwarded-Proto %[ssl_fc,iif(https,http)]
  use_backend sink if { path_beg /upload }
  use_backend ws if { path_beg /ws }
  default_backend app

backend app
  balance roundrobin
  server b1 127.0.0.1:$P_B1
  server b2 127.0.0.1:$P_B2

backend sink
  server s1 127.0.0.1:$P_SINK

backend ws
  server w1 127.0.0.1:$P_WS
EOF

# ------------------------------------------------------------------ start everything
say "work dir $TMP; ports: redis $P_REDIS, backends $P_B1 $P_B2, sink $P_SINK, ws echo $P_WS," \
    "hipache $P_HIPACHE, nginx $P_NGINX, haproxy $P_HAPROXY"
start redis redis-server --port "$P_REDIS" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$TMP" --daemonize no --maxclients 10000
wait_port redis "$P_REDIS"
start nginx-b1 nginx -p "$TMP/nginx-b1" -c "$TMP/nginx-b1/nginx.conf" -e "$TMP/nginx-b1/error.log"
start nginx-b2 nginx -p "$TMP/nginx-b2" -c "$TMP/nginx-b2/nginx.conf" -e "$TMP/nginx-b2/error.log"
start sink python3 "$BENCH_DIR/servers.py" sink "$P_SINK"
start wsecho python3 "$BENCH_DIR/servers.py" wsecho "$P_WS"
wait_port nginx-b1 "$P_B1"
wait_port nginx-b2 "$P_B2"
wait_port sink "$P_SINK"
wait_port wsecho "$P_WS"

versions="$(python3 - "$TMP/hipache" <<'EOF'
import json, subprocess, sys
def first(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return ((p.stdout or "") + (p.stderr or "")).strip().splitlines()[0]
    except Exception:
        return "?"
print(json.dumps({"hipache": first([sys.argv[1], "-V"]),
                  "nginx": first(["nginx", "-v"]).replace("nginx version: ", ""),
                  "haproxy": first(["haproxy", "-v"]).split(" - ")[0],
                  "redis": first(["redis-server", "--version"]).split(" sha=")[0],
                  "wrk": "wrk " + first(["wrk", "-v"]).split(" [")[0].replace("wrk ", ""),
                  "h2load": first(["h2load", "--version"]),
                  "openssl": first(["openssl", "version"])}))
EOF
)"

# ------------------------------------------------------------------ the proxies
# Each phase gets freshly started proxies, so memory one test left behind (allocator caches,
# connection pools) does not make the next one look cheaper.
start_proxies() {
  start hipache "$TMP/hipache" -c "$TMP/hipache.json"
  start nginx-proxy nginx -p "$TMP/nginx-proxy" -c "$TMP/nginx-proxy/nginx.conf" \
    -e "$TMP/nginx-proxy/error.log"
  start haproxy haproxy -db -f "$TMP/haproxy.cfg"
  wait_port hipache "$P_HIPACHE"
  wait_port nginx-proxy "$P_NGINX"
  wait_port haproxy "$P_HAPROXY"
  wait_port hipache "$P_HIPACHE_TLS"
  wait_port nginx-proxy "$P_NGINX_TLS"
  wait_port haproxy "$P_HAPROXY_TLS"
  sleep 1   # let every worker come up
  cat >"$TMP/targets.json" <<EOF
{
  "proxies": [
    {"name": "hipache", "port": $P_HIPACHE, "pid": $PID_hipache,
     "tls_port": $P_HIPACHE_TLS, "h2c_port": $P_HIPACHE},
    {"name": "nginx", "port": $P_NGINX, "pid": $PID_nginx_proxy,
     "tls_port": $P_NGINX_TLS, "h2c_port": $P_NGINX_H2C},
    {"name": "haproxy", "port": $P_HAPROXY, "pid": $PID_haproxy,
     "tls_port": $P_HAPROXY_TLS, "h2c_port": $P_HAPROXY}
  ],
  "redis_port": $P_REDIS,
  "backends": ["http://127.0.0.1:$P_B1", "http://127.0.0.1:$P_B2"],
  "sink": "http://127.0.0.1:$P_SINK",
  "wsecho": "http://127.0.0.1:$P_WS",
  "transfer_bytes": $((TRANSFER_MB * 1024 * 1024)),
  "lua": "$BENCH_DIR/vhosts.lua",
  "versions": $versions
}
EOF
}

stop_proxies() {
  local pids=("$PID_hipache" "$PID_nginx_proxy" "$PID_haproxy") pid p keep=()
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    [[ " ${pids[*]} " == *" $p "* ]] || keep+=("$p")
  done
  PIDS=("${keep[@]}")
}

# ------------------------------------------------------------------ measure
for phase in ${BENCH_PHASES:-throughput h2 idle websocket transfer}; do
  say "phase: $phase"
  start_proxies
  # in the background and waited for, so that Ctrl-C or a TERM reaches the trap at once
  python3 "$BENCH_DIR/measure.py" run "$TMP/targets.json" "$TMP/results.json" "$phase" &
  MEASURE_PID=$!
  wait "$MEASURE_PID" || die "measure.py failed in phase $phase (rc $?)"
  MEASURE_PID=""
  stop_proxies
done
mkdir -p "$(dirname "$RESULTS")"
cp "$TMP/results.json" "${RESULTS%.md}.json"
echo
python3 "$BENCH_DIR/measure.py" table "$TMP/results.json" "$RESULTS"
echo
say "written to $RESULTS"
# anything the proxies complained about during the run
for log in "$TMP/hipache.out" "$TMP/nginx-proxy/error.log" "$TMP/haproxy.out"; do
  [ -f "$log" ] || continue
  lines="$(grep -aiE 'error|warn|alert|crit|emerg' "$log" | grep -aivE 'invalidation link lost' || true)"
  if [ -n "$lines" ]; then
    say "$(basename "$(dirname "$log")")/$(basename "$log"): $(wc -l <<<"$lines") warning/error line(s), last ones:"
    tail -n 5 <<<"$lines" >&2
  fi
done
