#!/usr/bin/env bash
# Memcheck on the release binary: the unit tests, then the real binary (master and its workers)
# under a short scripted load, then SIGTERM. Fails on any Memcheck error or definite/possible
# leak in any process. docs/testing.md says what this can and cannot see.
#
#   scripts/valgrind.sh            unit tests + proxy run
#   scripts/valgrind.sh --proxy    only the proxy run
#   HIPACHE_BINARY=... HIPACHE_UNIT_TESTS=... scripts/valgrind.sh
# Logs: build-valgrind/ (one Memcheck log per process: vg.<pid>.log).
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${HIPACHE_BINARY:-build/hipache}"
unit_tests="${HIPACHE_UNIT_TESTS:-build/tests/hipache_unit_tests}"
out=build-valgrind
command -v valgrind >/dev/null || { echo "valgrind: not installed (Debian: valgrind)" >&2; exit 1; }
[ -x "$binary" ] || { echo "valgrind: no binary at $binary (scripts/build.sh first)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"

# A definite leak counts as an error (so it alone makes a process's ERROR SUMMARY non-zero).
# "Possibly lost" does not, here: a worker ends with _exit() while its coroutines are suspended,
# and a suspended coroutine frame is only pointed to in its middle (its promise), which Memcheck
# calls "possibly lost". The master exits normally: for it every kind of lost byte is checked
# below, and the unit tests must free everything. The release binary links jemalloc: the
# synonym has Memcheck replace jemalloc's malloc as it does glibc's, or it would see no heap.
vg=(valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1
    --track-origins=no --trace-children=yes --child-silent-after-fork=no --num-callers=30
    --soname-synonyms=somalloc=*jemalloc*)

status=0
if [ "${1:-}" != "--proxy" ]; then
  echo "== valgrind: unit tests ==" >&2
  if "${vg[@]}" --log-file="$out/unit.log" "$unit_tests" --gtest_brief=1 >"$out/unit.out" 2>&1; then
    grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|All heap blocks" \
      "$out/unit.log" | sed 's/^==[0-9]*== /  /' >&2
    if grep -qE "(indirectly|possibly) lost: [1-9]" "$out/unit.log"; then
      status=1
      echo "valgrind: the unit tests lose memory (log: $out/unit.log)" >&2
    fi
  else
    status=1
    echo "valgrind: unit tests FAILED (logs: $out/unit.log, $out/unit.out)" >&2
    tail -n 40 "$out/unit.out" >&2
    grep -B2 -A30 -E "Invalid|uninitialised|definitely lost in|possibly lost in" "$out/unit.log" \
      | head -n 120 >&2 || true
  fi
fi

echo "== valgrind: proxy (master + workers) under load ==" >&2
if ! HIPACHE_BINARY="$binary" VALGRIND_OUT="$out" VALGRIND_CMD="${vg[*]}" \
     PYTHONDONTWRITEBYTECODE=1 python3 - <<'PY'
"""Drives the binary under Memcheck: a few hundred requests of every kind the proxy answers
(proxied, streamed, chunked, keep-alive, client aborts, every error page), a route change, a
SIGUSR1 and a SIGHUP (so a worker drains and a new one starts), then SIGTERM."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.getcwd(), "tests", "integration"))
import harness  # noqa: E402
import socketserver  # noqa: E402

# The echo backend sees clients that go away on purpose (the aborts below): no tracebacks.
_handle_error = socketserver.BaseServer.handle_error
socketserver.BaseServer.handle_error = lambda self, request, address: (
    None if isinstance(sys.exc_info()[1], ConnectionError) else _handle_error(self, request, address))

out = os.environ["VALGRIND_OUT"]
binary = os.environ["HIPACHE_BINARY"]
vg = os.environ["VALGRIND_CMD"].split() + ["--log-file=%s/vg.%%p.log" % out]

redis = harness.RedisServer()
backend = harness.HttpBackend("echo")
backend_500 = harness.HttpBackend("five-hundred")
reset_backend = harness.RawBackend(lambda conn: (harness.read_request_head(conn),
                                                 harness.reset(conn)))
workdir = tempfile.mkdtemp(prefix="hipache-valgrind-")
port = harness.free_port()
config = {"server": {"workers": 1, "accessLog": os.path.join(workdir, "access.log"),
                     "tcpTimeout": 10, "deadBackendTTL": 2, "gracefulWait": 20},
          "http": {"port": port, "bind": ["127.0.0.1"]},
          "driver": redis.url(), "user": "root"}
config_path = os.path.join(workdir, "config.json")
with open(config_path, "w") as f:
    json.dump(config, f)
r = redis.client
r.rpush("frontend:a.test", "a", backend.url)
r.rpush("frontend:*.wild.test", "wild", backend.url)
r.rpush("frontend:refused.test", "refused", harness.refused_url(), harness.refused_url())
r.rpush("frontend:reset.test", "reset", reset_backend.url)
r.rpush("frontend:five.test", "five", backend_500.url)
r.rpush("frontend:badurl.test", "bad", "ftp://nope")

stderr = open(os.path.join(out, "hipache.log"), "wb")
proxy = subprocess.Popen(vg + [binary, "-c", config_path], stdout=subprocess.DEVNULL,
                         stderr=stderr)
problems = []
counts = {}


def record(kind, ok):
    total, good = counts.get(kind, (0, 0))
    counts[kind] = (total + 1, good + (1 if ok else 0))
    if not ok:
        problems.append(kind)


def request(method, path, host, body=None, headers=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Host": host}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def raw(data, timeout=30):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        reply = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except socket.timeout:
            pass
        return reply


try:
    harness.wait_for_port(port, timeout=120, process=proxy)
    deadline = time.time() + 120
    while True:  # the worker may come up after the master's listener
        try:
            if request("GET", "/", "a.test", timeout=10)[0] == 200:
                break
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError("the proxy does not route under valgrind")
        time.sleep(0.5)

    for i in range(120):
        status, body = request("GET", "/get/%d" % i, "a.test" if i % 2 else "x.wild.test")
        record("get 200", status == 200)
    for i in range(30):
        status, _ = request("POST", "/post", "a.test", body=os.urandom(1000 + 997 * i))
        record("post 200", status == 200)
    for size in (0, 1, 16384, 100000, 1000000):
        status, body = request("GET", "/?size=%d" % size, "a.test")
        record("sized body", status == 200 and len(body) == size)
    for i in range(5):
        status, body = request("GET", "/?size=50000&chunked=1", "a.test")
        record("chunked response", status == 200 and len(body) == 50000)
    for i in range(5):
        reply = raw(b"POST /c HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n"
                    b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        record("chunked request", reply.startswith(b"HTTP/1.1 200"))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(30):
        conn.request("GET", "/keepalive/%d" % i, headers={"Host": "a.test"})
        response = conn.getresponse()
        response.read()
        record("keep-alive", response.status == 200)
    conn.close()
    for i in range(10):  # the client goes away in the middle of a large response
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET /?size=5000000 HTTP/1.1\r\nHost: a.test\r\n\r\n")
            s.recv(10000)
        record("client abort", True)
    for i in range(20):
        status, _ = request("GET", "/", "unknown-%d.test" % i)
        record("unknown host", status >= 400)
    for i in range(10):
        status, _ = request("GET", "/", "refused.test")
        record("refused backend 502", status == 502)
    for i in range(10):
        status, _ = request("GET", "/", "reset.test")
        record("reset backend 502", status == 502)
    for i in range(5):
        status, _ = request("GET", "/?status=500", "five.test")
        record("backend 500", status in (500, 502))
    for i in range(5):
        status, _ = request("GET", "/", "badurl.test")
        record("bad backend url", status >= 500)
    for i in range(10):
        status, _ = request("GET", "/", "__ping__")
        record("ping", status == 200)
    for i in range(10):
        reply = raw(b"GET / HTTP/1.0\r\n\r\n")
        record("missing host 400", b" 400 " in reply.split(b"\r\n")[0])
    for garbage in (b"\x00\x01\x02 nonsense\r\n\r\n", b"GET / HTTP/9.9\r\nHost: a\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: -1\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
                    b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\n"):
        reply = raw(garbage)
        record("bad request 400", b" 400 " in reply.split(b"\r\n")[0])
    reply = raw(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: " + b"x" * 70000 + b"\r\n\r\n")
    record("header too large 431", b" 431 " in reply.split(b"\r\n")[0])
    reply = raw(b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: a.test\r\n\r\n")
    record("target too long 414", b" 414 " in reply.split(b"\r\n")[0])
    reply = raw(b"GET http://a.test/abs HTTP/1.1\r\nHost: other.test\r\n\r\n")
    record("absolute-form", reply.startswith(b"HTTP/1.1 200"))

    # A route change (invalidation), log reopening, then a reload (the worker drains and exits).
    r.rpush("frontend:late.test", "late", backend.url)
    time.sleep(0.5)
    status, _ = request("GET", "/", "late.test")
    record("route added", status == 200)
    # SIGUSR1 well before SIGHUP: under Memcheck a SIGUSR1 forwarded to a worker that is still
    # starting kills it (valgrind's signal emulation across fork; the native binary keeps the
    # signal blocked until its handler exists).
    proxy.send_signal(signal.SIGUSR1)
    time.sleep(2)
    proxy.send_signal(signal.SIGHUP)
    time.sleep(5)
    for i in range(30):
        status, _ = request("GET", "/after-reload/%d" % i, "a.test")
        record("after reload", status == 200)
except Exception as error:  # noqa: BLE001
    problems.append("load aborted: %r" % (error,))
finally:
    if proxy.poll() is None:
        proxy.send_signal(signal.SIGTERM)
        try:
            proxy.wait(120)
        except subprocess.TimeoutExpired:
            problems.append("the master did not stop within 120 s of SIGTERM")
            proxy.kill()
            proxy.wait()
    stderr.close()
    backend.stop()
    backend_500.stop()
    reset_backend.stop()
    redis.stop()


# ---------------------------------------------------------------- the Memcheck logs
import glob
import re

logs = {}
for path in glob.glob(os.path.join(out, "vg.*.log")):
    with open(path, errors="replace") as f:
        text = f.read()
    pid = int(re.search(r"vg\.(\d+)\.log$", path).group(1))
    parent = re.search(r"Parent PID: (\d+)", text)
    logs[pid] = {"path": path, "text": text, "parent": int(parent.group(1)) if parent else 0}


def number(text, kind, unit):
    m = re.search(r"%s lost: ([\d,]+) bytes in ([\d,]+) blocks" % kind, text)
    if not m:
        return 0
    return int(m.group(1 if unit == "bytes" else 2).replace(",", ""))


masters = [pid for pid, log in logs.items() if log["parent"] not in logs]
with open(os.path.join(out, "hipache.log"), errors="replace") as f:
    started = [int(p) for p in re.findall(r"worker (\d+) started", f.read())]
workers = [pid for pid in started if pid in logs]
if len(masters) != 1 or len(workers) < 2:
    problems.append("expected Memcheck logs for one master and two workers, got masters %s, "
                    "workers %s" % (masters, workers))
for pid in sorted(logs):
    log = logs[pid]
    role = "master" if pid in masters else "worker"
    summary = re.findall(r"ERROR SUMMARY: (\d+) errors", log["text"])
    lost = {kind: (number(log["text"], kind, "bytes"), number(log["text"], kind, "blocks"))
            for kind in ("definitely", "indirectly", "possibly")}
    freed = "All heap blocks were freed" in log["text"]
    print("  %s %d: %s errors; lost bytes/blocks: definitely %d/%d, indirectly %d/%d, "
          "possibly %d/%d%s" % (role, pid, summary[-1] if summary else "no summary",
                                *lost["definitely"], *lost["indirectly"], *lost["possibly"],
                                "; all heap blocks freed" if freed else ""), file=sys.stderr)
    if not summary:
        problems.append("%s %d: no Memcheck summary (did it finish?)" % (role, pid))
    elif summary[-1] != "0":
        problems.append("%s %d: %s Memcheck errors (%s)" % (role, pid, summary[-1], log["path"]))
        for block in re.findall(r"(==\d+== (?:Invalid|Conditional|Use of uninit|Mismatched|"
                                r"Syscall param|Source and dest|\d[\d,]* bytes in [\d,]+ blocks"
                                r" are definitely)[^\n]*(?:\n==\d+==  [^\n]*)*)",
                                log["text"])[:10]:
            print(block, file=sys.stderr)
    if role == "master" and (lost["indirectly"][0] or lost["possibly"][0]):
        problems.append("master %d loses memory at exit (%s)" % (pid, log["path"]))
    if "Process terminating with default action" in log["text"]:
        problems.append("%s %d was killed by a signal (%s)" % (role, pid, log["path"]))
# A worker's "possibly lost" blocks are its suspended coroutines at _exit(): a fixed set (the
# accept loop, the Redis connections, timers). The first worker served ~300 requests, the one
# started by SIGHUP ~30: a per-request leak of frames would make the first one's count larger.
if len(workers) >= 2:
    first, last = (number(logs[w]["text"], "possibly", "blocks") for w in (workers[0], workers[-1]))
    if first > last + 20:
        problems.append("worker %d has %d possibly lost blocks, worker %d %d: grows with load"
                        % (workers[0], first, workers[-1], last))

total = sum(t for t, _ in counts.values())
print("requests: %d" % total, file=sys.stderr)
for kind, (t, good) in counts.items():
    print("  %-22s %3d/%d" % (kind, good, t), file=sys.stderr)
print("master exit status: %s" % proxy.returncode, file=sys.stderr)
if proxy.returncode != 0:
    problems.append("master exit status %s" % proxy.returncode)
if problems:
    for problem in dict.fromkeys(problems):
        print("FAIL: %s" % problem, file=sys.stderr)
    sys.exit(1)
PY
then
  status=1
fi

if [ "$status" -eq 0 ]; then
  echo "valgrind: no errors, no leaks" >&2
else
  echo "valgrind: FAILED (logs in $out/)" >&2
fi
exit "$status"
