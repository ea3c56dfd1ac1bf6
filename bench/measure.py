#!/usr/bin/env python3
"""Runs the measurements of bench/run.sh against proxies that are already running, and prints
the comparison table.  Standard library only; wrk does the HTTP load.

    measure.py run TARGETS.json RESULTS.json PHASE
                                               one phase (throughput, idle, websocket,
                                               transfer) against freshly started proxies;
                                               results accumulate in RESULTS.json
    measure.py table RESULTS.json [OUT.md]     the table, on stdout and into OUT.md

TARGETS.json (written by run.sh):
    {"proxies": [{"name": "hipache", "port": 8080, "pid": 123}, ...],
     "redis_port": 6379, "backends": ["http://127.0.0.1:9001", ...],
     "sink": "http://127.0.0.1:9003", "wsecho": "http://127.0.0.1:9004",
     "transfer_bytes": 1073741824, "lua": "bench/vhosts.lua"}

Settings come from the environment (see bench/README.md): BENCH_ROUNDS, BENCH_SECONDS,
BENCH_QUICK, BENCH_IDLE_CONNS, BENCH_WS_TUNNELS, BENCH_WS_WINDOW, BENCH_VHOSTS,
BENCH_ROUTE_SAMPLES.
"""

import json
import math
import os
import re
import secrets
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time

# --------------------------------------------------------------------------- settings

QUICK = os.environ.get("BENCH_QUICK", "0") not in ("", "0")
ROUNDS = int(os.environ.get("BENCH_ROUNDS") or (1 if QUICK else 3))
SECONDS = float(os.environ.get("BENCH_SECONDS") or (2 if QUICK else 10))
IDLE_CONNS = int(os.environ.get("BENCH_IDLE_CONNS") or 4000)
WS_TUNNELS = int(os.environ.get("BENCH_WS_TUNNELS") or 1000)
WS_WINDOW = int(os.environ.get("BENCH_WS_WINDOW") or 1)      # messages in flight per tunnel
VHOSTS = int(os.environ.get("BENCH_VHOSTS") or 10000)
ROUTE_SAMPLES = int(os.environ.get("BENCH_ROUTE_SAMPLES") or 50)
WRK_CONNECTIONS = 64
SMALL_HOST = "bench.test"
UPLOAD_HOST = "upload.test"
WS_HOST = "ws.test"


def log(msg):
    print("[bench] " + msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc

def stat_fields(pid):
    """The fields of /proc/<pid>/stat after "(comm)" (state is [0], ppid [1]), or None."""
    try:
        with open("/proc/%s/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may contain spaces and parentheses
    return stat[stat.rfind(b")") + 2:].split()


def process_tree(root):
    """root and all its descendants (pids)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(entry)
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_of(pid):
    try:
        with open("/proc/%d/status" % pid, "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds_tree(root):
    """User + system CPU time of a process and all its descendants, in seconds."""
    ticks = 0
    for pid in process_tree(root):
        fields = stat_fields(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLOCK_TICK


def rss_tree(root):
    """Resident memory of a process and all its descendants, in bytes."""
    return sum(rss_of(p) for p in process_tree(root))


def settled_rss(root, wait=1.0):
    time.sleep(wait)
    return statistics.median(rss_tree(root) for _ in range(3))


class PeakSampler:
    """Samples the RSS of a process tree every `interval` seconds in a thread; keeps the peak."""

    def __init__(self, root, interval=0.02):
        self.root, self.interval = root, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        pids, refreshed = process_tree(self.root), time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - refreshed > 0.5:     # workers may be respawned
                pids, refreshed = process_tree(self.root), time.monotonic()
            self.peak = max(self.peak, sum(rss_of(p) for p in pids))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- tiny HTTP/RESP clients

def connect(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class HttpConn:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closed it."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buf = b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock, self.buf = None, b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def request(self, host, path="/", method="GET"):
        """Returns (status, body)."""
        for attempt in (1, 2):
            if self.sock is None:
                self.sock = connect(self.port)
            try:
                self.sock.sendall(("%s %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                                   % (method, path, host)).encode())
                return self._response()
            except (ConnectionError, OSError):
                self.close()          # a stale keep-alive connection: retry once on a new one
                if attempt == 2:
                    raise

    def _response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if b"chunked" in headers.get(b"transfer-encoding", b""):
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                line, _, self.buf = self.buf.partition(b"\r\n")
                size = int(line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        elif b"content-length" in headers:
            n = int(headers[b"content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        else:                                   # delimited by close
            try:
                while True:
                    self._fill()
            except ConnectionError:
                pass
            body, self.buf = self.buf, b""
            self.close()
        if headers.get(b"connection") == b"close" and self.sock:
            self.close()
        return status, body


class Redis:
    def __init__(self, port):
        self.sock = connect(port)
        self.rfile = self.sock.makefile("rb")

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def read_reply(self):
        line = self.rfile.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"-":
            raise RuntimeError("redis: " + rest.decode())
        if kind in (b"+", b":"):
            return rest
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.rfile.read(n + 2)[:-2]
        if kind == b"*":
            return [self.read_reply() for _ in range(max(int(rest), 0))]
        raise RuntimeError("redis: unexpected reply %r" % line)

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.read_reply()

    def pipeline(self, commands):
        self.sock.sendall(b"".join(self.encode(*c) for c in commands))
        return [self.read_reply() for _ in commands]


# --------------------------------------------------------------------------- wrk

WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_TOTAL = re.compile(r"(\d+) requests in ")
WRK_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def run_wrk(port, seconds, lua=None, host=SMALL_HOST):
    cmd = ["wrk", "-t1", "-c%d" % WRK_CONNECTIONS, "-d%gs" % seconds, "--latency",
           "-H", "Host: " + host]
    if lua:
        cmd += ["-s", lua]
    cmd.append("http://127.0.0.1:%d/" % port)
    env = dict(os.environ, BENCH_VHOSTS=str(VHOSTS))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                         timeout=seconds + 60).stdout
    rps, p99, total = WRK_RPS.search(out), WRK_P99.search(out), WRK_TOTAL.search(out)
    if not rps or not p99 or not total:
        raise RuntimeError("could not parse wrk output:\n" + out)
    bad = WRK_NON2XX.search(out)
    errors = WRK_ERRORS.search(out)
    problems = []
    if bad and int(bad.group(1)):
        problems.append("%s non-2xx responses" % bad.group(1))
    if errors and any(int(x) for x in errors.groups()):
        problems.append(errors.group(0))
    return (float(rps.group(1)), float(p99.group(1)) * UNIT_MS[p99.group(2)], problems,
            int(total.group(1)))


# --------------------------------------------------------------------------- idle keep-alive

def read_small_response(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before the response")
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(body) < n:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed in the body")
        body += data
    return int(head.split(b" ", 2)[1])


def idle_test(proxy, n=IDLE_CONNS, batch=200):
    before = settled_rss(proxy["pid"])
    request = ("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % SMALL_HOST).encode()
    socks, failures = [], 0
    try:
        for start in range(0, n, batch):
            group = [connect(proxy["port"]) for _ in range(min(batch, n - start))]
            for s in group:
                s.sendall(request)
            for s in group:
                if read_small_response(s) != 200:
                    failures += 1
            socks.extend(group)
        after = settled_rss(proxy["pid"], wait=2.0)
        # every connection must still be open: nothing may have been closed under us
        for s in socks:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    failures += 1
            except BlockingIOError:
                pass
    finally:
        for s in socks:
            s.close()
    if failures:
        raise RuntimeError("%d of %d idle connections failed or were closed" % (failures, n))
    return {"idle_rss_per_conn": (after - before) / n, "idle_rss_before": before,
            "idle_rss_after": after}


# --------------------------------------------------------------------------- 1 GB transfers

def upload_test(proxy, size):
    before = settled_rss(proxy["pid"])
    chunk = memoryview(bytes(1 << 20))
    with PeakSampler(proxy["pid"]) as sampler:
        s = connect(proxy["port"], timeout=60)
        t0 = time.perf_counter()
        s.sendall(("POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream"
                   "\r\nContent-Length: %d\r\n\r\n" % (UPLOAD_HOST, size)).encode())
        left = size
        while left:
            k = min(left, len(chunk))
            s.sendall(chunk[:k])
            left -= k
        status = read_small_response(s)
        elapsed = time.perf_counter() - t0
        s.close()
    if status != 200:
        raise RuntimeError("upload answered %d" % status)
    return {"upload_rss_growth": max(sampler.peak - before, 0), "upload_mbps": size / elapsed / 1e6}


def warm_backends(targets, size):
    """/big once from each backend directly. After the other phases, the first download through
    any proxy ran at a third of the speed of the next ones (whichever proxy went first), though
    the file was read at start: the first reader pays, so none of the proxies does."""
    for url in targets["backends"]:
        port = int(url.rsplit(":", 1)[1])
        s = connect(port, timeout=60)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: warm\r\nConnection: close\r\n\r\n")
        got = 0
        while True:
            data = s.recv(1 << 20)
            if not data:
                break
            got += len(data)
        s.close()
        if got < size:
            raise RuntimeError("warm-up: %s sent %d bytes of /big" % (url, got))


def download_test(proxy, size):
    before = settled_rss(proxy["pid"])
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with PeakSampler(proxy["pid"]) as sampler:
        s = connect(proxy["port"], timeout=60)
        t0 = time.perf_counter()
        s.sendall(("GET /big HTTP/1.1\r\nHost: %s\r\n\r\n" % SMALL_HOST).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = s.recv(65536)
            if not data:
                raise RuntimeError("download: closed before the response")
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            raise RuntimeError("download answered %d" % status)
        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        if not m:
            raise RuntimeError("download: no Content-Length in %r" % head)
        expected = int(m.group(1))
        got = len(rest)
        while got < expected:
            k = s.recv_into(view)
            if not k:
                break
            got += k
        elapsed = time.perf_counter() - t0
        s.close()
    if got != expected or expected != size:
        raise RuntimeError("download: got %d of %d bytes (file is %d)" % (got, expected, size))
    return {"download_rss_growth": max(sampler.peak - before, 0),
            "download_mbps": size / elapsed / 1e6}


# --------------------------------------------------------------------------- WebSocket tunnels

WS_PAYLOAD = b"0123456789abcdef0123456789abcdef"          # 32 bytes
WS_MASK = b"\x11\x22\x33\x44"
WS_FRAME = bytes((0x82, 0x80 | len(WS_PAYLOAD))) + WS_MASK + bytes(
    b ^ WS_MASK[i % 4] for i, b in enumerate(WS_PAYLOAD))
WS_ECHO = bytes((0x82, len(WS_PAYLOAD))) + WS_PAYLOAD     # what the server sends back
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def ws_open(port):
    s = connect(port)
    s.sendall(("GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (WS_HOST, WS_KEY)).encode())
    return s


def ws_finish_handshake(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = s.recv(4096)
        if not data:
            raise ConnectionError("closed during the handshake")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0] + b" ":
        raise RuntimeError("handshake answered %r" % head.split(b"\r\n", 1)[0])
    if rest:
        raise RuntimeError("unexpected bytes after the 101")


def ws_test(proxy, n=WS_TUNNELS, rounds=ROUNDS, seconds=SECONDS, batch=100):
    before = settled_rss(proxy["pid"])
    socks = []
    try:
        for start in range(0, n, batch):
            group = [ws_open(proxy["port"]) for _ in range(min(batch, n - start))]
            for s in group:
                ws_finish_handshake(s)
            socks.extend(group)
        # one echo on every tunnel, checked byte for byte
        for s in socks:
            s.sendall(WS_FRAME)
        for s in socks:
            got = b""
            while len(got) < len(WS_ECHO):
                data = s.recv(len(WS_ECHO) - len(got))
                if not data:
                    raise ConnectionError("tunnel closed before its first echo")
                got += data
            if got != WS_ECHO:
                raise RuntimeError("bad echo %r" % got)
        after = settled_rss(proxy["pid"])

        sel = selectors.DefaultSelector()
        pending = {}
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            pending[s] = 0
            s.send(WS_FRAME * WS_WINDOW)          # WS_WINDOW messages in flight per tunnel
        rates, lost = [], 0
        echo_len = len(WS_ECHO)
        for _ in range(rounds):
            count = 0
            t0 = time.perf_counter()
            deadline = t0 + seconds
            while True:
                now = time.perf_counter()
                if now >= deadline:
                    break
                for key, _ in sel.select(min(0.5, deadline - now)):
                    s = key.fileobj
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(s)
                        lost += 1
                        continue
                    got = pending[s] + len(data)
                    k = got // echo_len
                    pending[s] = got - k * echo_len
                    if k:
                        count += k
                        s.send(WS_FRAME * k)
            rates.append(count / (time.perf_counter() - t0))
        sel.close()
        if lost:
            raise RuntimeError("%d tunnels closed during the run" % lost)
    finally:
        for s in socks:
            s.close()
    return {"ws_rss_per_tunnel": (after - before) / n, "ws_msgs": rates}


# --------------------------------------------------------------------------- Redis write -> route

def route_latency(proxy, redis_port, backend, samples=ROUTE_SAMPLES, miss_first=False):
    redis = Redis(redis_port)
    http = HttpConn(proxy["port"])
    token = secrets.token_hex(4)
    delays, attempts = [], []
    try:
        for i in range(samples):
            host = "rt%d-%s%s.bench.test" % (i, token, "-m" if miss_first else "")
            if miss_first:
                status, _ = http.request(host)
                if status == 200:
                    raise RuntimeError("%s answered 200 before it was written" % host)
            t0 = time.perf_counter_ns()
            redis.call("RPUSH", "frontend:" + host, host, backend)
            tries = 0
            while True:
                tries += 1
                status, _ = http.request(host)
                if status == 200:
                    break
                if time.perf_counter_ns() - t0 > 10e9:
                    raise RuntimeError("%s still answers %d 10 s after the write" % (host, status))
            delays.append((time.perf_counter_ns() - t0) / 1e6)
            attempts.append(tries)
    finally:
        http.close()
        redis.sock.close()
    delays.sort()
    p90 = delays[max(math.ceil(0.9 * len(delays)) - 1, 0)]
    return {"median": statistics.median(delays), "p90": p90, "max_attempts": max(attempts)}


# --------------------------------------------------------------------------- the whole run

def check_routes(targets):
    """Fails early, with a readable message, when a proxy does not route what it should."""
    for p in targets["proxies"]:
        http = HttpConn(p["port"])
        for host, path in ((SMALL_HOST, "/"), ("vh1.bench.test", "/"),
                           ("vh%d.bench.test" % VHOSTS, "/")):
            status, body = http.request(host, path)
            if status != 200 or body != b"ok":
                raise SystemExit("%s: GET %s (Host %s) answered %d %r"
                                 % (p["name"], path, host, status, body[:200]))
        http.close()
        s = ws_open(p["port"])
        ws_finish_handshake(s)
        s.close()


def load_redis(targets):
    redis = Redis(targets["redis_port"])
    b = targets["backends"]
    cmds = [("DEL", "frontend:" + SMALL_HOST), ("RPUSH", "frontend:" + SMALL_HOST, "bench", *b),
            ("DEL", "frontend:" + UPLOAD_HOST), ("RPUSH", "frontend:" + UPLOAD_HOST, "upload",
                                                 targets["sink"]),
            ("DEL", "frontend:" + WS_HOST), ("RPUSH", "frontend:" + WS_HOST, "ws",
                                             targets["wsecho"])]
    for i in range(1, VHOSTS + 1):
        host = "vh%d.bench.test" % i
        cmds.append(("DEL", "frontend:" + host))
        cmds.append(("RPUSH", "frontend:" + host, "vh%d" % i, *b))
    for start in range(0, len(cmds), 2000):
        redis.pipeline(cmds[start:start + 2000])
    redis.sock.close()


def guarded(results, proxy, what, fn):
    """Runs one measurement; an exception becomes an error cell instead of ending the run."""
    if not alive(proxy["pid"]):
        msg = "error: process %d is gone" % proxy["pid"]
        log("%s %s: %s" % (proxy["name"], what, msg))
        return msg
    try:
        return fn()
    except Exception as e:          # noqa: BLE001 - reported in the table
        log("%s %s failed: %s" % (proxy["name"], what, e))
        return "error: %s" % str(e).splitlines()[0][:200]


PHASES = ("throughput", "idle", "websocket", "transfer")


def run(targets_path, out_path, phase):
    """One phase against freshly started proxies; results accumulate in out_path."""
    with open(targets_path) as f:
        targets = json.load(f)
    proxies = targets["proxies"]
    names = [p["name"] for p in proxies]
    if not os.path.exists(out_path):
        res = {"settings": {"rounds": ROUNDS, "seconds": SECONDS, "quick": QUICK,
                            "idle_conns": IDLE_CONNS, "ws_tunnels": WS_TUNNELS,
                            "ws_window": WS_WINDOW, "vhosts": VHOSTS,
                            "route_samples": ROUTE_SAMPLES, "wrk_connections": WRK_CONNECTIONS,
                            "transfer_bytes": targets["transfer_bytes"]},
               "versions": targets.get("versions", {}), "proxies": names,
               "rounds": {}, "values": {}, "notes": []}
    else:
        with open(out_path) as f:
            res = json.load(f)
    vals = res["values"]

    def put(metric, name, value):
        vals.setdefault(metric, {})[name] = value

    if not res.get("redis_loaded"):
        res["redis_loaded"] = True
        log("loading Redis: %d virtual hosts" % VHOSTS)
        load_redis(targets)
    check_routes(targets)

    if phase == "throughput":
        for p in proxies:
            put("rss_start", p["name"], rss_tree(p["pid"]))
        throughput_phase(targets, res, put)
        route_phase(targets, res, put)
    else:
        log("warm-up (1 s of wrk per proxy)")
        for p in proxies:
            guarded(res, p, "warm-up", lambda: run_wrk(p["port"], 1))
    if phase == "idle":
        for p in proxies:
            log("idle keep-alive: %s, %d connections" % (p["name"], IDLE_CONNS))
            out = guarded(res, p, "idle", lambda: idle_test(p))
            if isinstance(out, str):
                put("idle_rss_per_conn", p["name"], out)
                put("idle_rss_after", p["name"], out)
            else:
                for k, v in out.items():
                    put(k, p["name"], v)
    elif phase == "websocket":
        for p in proxies:
            log("WebSocket: %s, %d tunnels" % (p["name"], WS_TUNNELS))
            out = guarded(res, p, "websocket", lambda: ws_test(p))
            if isinstance(out, str):
                put("ws_rss_per_tunnel", p["name"], out)
                put("ws_msgs", p["name"], out)
            else:
                put("ws_rss_per_tunnel", p["name"], out["ws_rss_per_tunnel"])
                put("ws_msgs", p["name"], statistics.median(out["ws_msgs"]))
                res["rounds"].setdefault("ws_msgs", {})[p["name"]] = out["ws_msgs"]
    elif phase == "transfer":
        size = targets["transfer_bytes"]
        for test, fn in (("upload", upload_test), ("download", download_test)):
            if test == "download":
                warm_backends(targets, size)
            for p in proxies:
                log("%s: %s, %d MB" % (test, p["name"], size >> 20))
                out = guarded(res, p, test, lambda: fn(p, size))
                if isinstance(out, str):
                    put(test + "_rss_growth", p["name"], out)
                    put(test + "_mbps", p["name"], out)
                else:
                    for k, v in out.items():
                        put(k, p["name"], v)

    for p in proxies:
        if not alive(p["pid"]):
            res["notes"].append("%s: the process exited during the %s phase" % (p["name"], phase))
    with open(out_path, "w") as f:
        json.dump(res, f, indent=1)


def throughput_phase(targets, res, put):
    proxies = targets["proxies"]
    log("warm-up (1 s of each wrk run per proxy)")
    for p in proxies:
        guarded(res, p, "warm-up", lambda: run_wrk(p["port"], 1))
        guarded(res, p, "warm-up", lambda: run_wrk(p["port"], 1, lua=targets["lua"]))
    for metric, lua in (("small", None), ("vhosts", targets["lua"])):
        per = {p["name"]: [] for p in proxies}
        for r in range(ROUNDS):
            for p in proxies:       # rounds interleaved, so background noise hits all alike
                log("%s round %d/%d: %s (%gs)" % (metric, r + 1, ROUNDS, p["name"], SECONDS))
                cpu_before = cpu_seconds_tree(p["pid"])
                out = guarded(res, p, metric, lambda: run_wrk(p["port"], SECONDS, lua=lua))
                if isinstance(out, str):
                    per[p["name"]].append(out)
                    continue
                rps, p99, problems, total = out
                cpu_us = (cpu_seconds_tree(p["pid"]) - cpu_before) * 1e6 / max(total, 1)
                per[p["name"]].append([rps, p99, round(cpu_us, 2)])
                for problem in problems:
                    res["notes"].append("%s, %s round %d: %s" % (p["name"], metric, r + 1,
                                                                 problem))
        res["rounds"][metric] = per
        for n, rounds in per.items():
            ok = [x for x in rounds if not isinstance(x, str)]
            if not ok:
                for suffix in ("_rps", "_p99", "_cpu"):
                    put(metric + suffix, n, rounds[0])
                continue
            put(metric + "_rps", n, statistics.median(x[0] for x in ok))
            put(metric + "_p99", n, statistics.median(x[1] for x in ok))
            put(metric + "_cpu", n, statistics.median(x[2] for x in ok))


def route_phase(targets, res, put):
    for p in targets["proxies"]:
        if p["name"] != "hipache":
            for m in ("route_median", "route_p90", "route_miss_median", "route_miss_p90"):
                put(m, p["name"], "n/a")
            continue
        for miss, prefix in ((False, "route"), (True, "route_miss")):
            log("Redis write -> first routed request: %s, %d samples%s"
                % (p["name"], ROUTE_SAMPLES, " (host requested before)" if miss else ""))
            out = guarded(res, p, "route latency",
                          lambda: route_latency(p, targets["redis_port"], targets["backends"][0],
                                                miss_first=miss))
            if isinstance(out, str):
                put(prefix + "_median", p["name"], out)
                put(prefix + "_p90", p["name"], out)
            else:
                put(prefix + "_median", p["name"], out["median"])
                put(prefix + "_p90", p["name"], out["p90"])
                res["notes"].append("%s: Redis write -> route%s: at most %d request(s) per sample"
                                    % (p["name"], " after a miss" if miss else "",
                                       out["max_attempts"]))


# --------------------------------------------------------------------------- the table

MiB = 1 << 20
# key, label, formatter, better ("+" higher is better, "-" lower is better, "" neither)
ROWS = [
    ("small_rps", "Small responses: throughput (req/s)", lambda v: "{:,.0f}".format(v), "+"),
    ("small_p99", "Small responses: p99 latency (ms)", lambda v: "%.2f" % v, "-"),
    ("small_cpu", "Small responses: proxy CPU per request (µs)", lambda v: "%.1f" % v, "-"),
    ("vhosts_rps", "{vhosts} vhosts at random: throughput (req/s)",
     lambda v: "{:,.0f}".format(v), "+"),
    ("vhosts_p99", "{vhosts} vhosts at random: p99 latency (ms)", lambda v: "%.2f" % v, "-"),
    ("vhosts_cpu", "{vhosts} vhosts at random: proxy CPU per request (µs)",
     lambda v: "%.1f" % v, "-"),
    ("idle_rss_per_conn", "{idle} idle keep-alive conns: RSS per connection (bytes)",
     lambda v: "{:,.0f}".format(v), "-"),
    ("idle_rss_after", "{idle} idle keep-alive conns: total RSS (MiB)",
     lambda v: "%.1f" % (v / MiB), "-"),
    ("upload_rss_growth", "{transfer} upload: peak RSS growth (KiB)",
     lambda v: "{:,.0f}".format(v / 1024), "-"),
    ("upload_mbps", "{transfer} upload: throughput (MB/s)", lambda v: "{:,.0f}".format(v), "+"),
    ("download_rss_growth", "{transfer} download: peak RSS growth (KiB)",
     lambda v: "{:,.0f}".format(v / 1024), "-"),
    ("download_mbps", "{transfer} download: throughput (MB/s)", lambda v: "{:,.0f}".format(v),
     "+"),
    ("ws_msgs", "{ws} WebSocket echo tunnels: messages/s", lambda v: "{:,.0f}".format(v), "+"),
    ("ws_rss_per_tunnel", "{ws} WebSocket echo tunnels: RSS per tunnel (bytes)",
     lambda v: "{:,.0f}".format(v), "-"),
    ("route_median", "Redis write -> first routed request: median (ms)",
     lambda v: "%.3f" % v, "-"),
    ("route_p90", "Redis write -> first routed request: p90 (ms)", lambda v: "%.3f" % v, "-"),
    ("route_miss_median", "Same, host requested just before the write: median (ms)",
     lambda v: "%.3f" % v, "-"),
    ("route_miss_p90", "Same, host requested just before the write: p90 (ms)",
     lambda v: "%.3f" % v, "-"),
    ("rss_start", "Proxy RSS just started, all processes (MiB)",
     lambda v: "%.1f" % (v / MiB), "-"),
]


def cell(value, fmt):
    if value is None:
        return "-"
    if isinstance(value, str):
        return "n/a" if value == "n/a" else "ERROR"
    return fmt(value)


def ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b <= 0:
        return "n/a"
    return "%.2fx" % (a / b)


def render(res):
    s = res["settings"]
    size = s["transfer_bytes"]
    transfer = ("%g GB" % (size / (1 << 30))) if size >= (1 << 30) else "%d MB" % (size >> 20)
    names = res["proxies"]
    ours, others = names[0], names[1:]
    header = ["Metric"] + names + ["%s/%s" % (ours, o) for o in others]
    rows = []
    for key, label, fmt, better in ROWS:
        values = res["values"].get(key, {})
        label = label.format(vhosts="{:,}".format(s["vhosts"]), idle="{:,}".format(s["idle_conns"]),
                             ws="{:,}".format(s["ws_tunnels"]), transfer=transfer)
        label += {"+": " ↑", "-": " ↓", "": ""}[better]
        row = [label] + [cell(values.get(n), fmt) for n in names]
        row += [ratio(values.get(ours), values.get(o)) for o in others]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    table = [line(header), sep] + [line(r) for r in rows]

    out = ["# hipache benchmark: %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime()),
           "",
           "%s round(s) of %gs per throughput figure (median), wrk 1 thread / %d connections, "
           "%s mode, workers %s. ↑ higher is better, ↓ lower is better; ratios are %s divided by "
           "the other proxy (for ↓ rows a ratio below 1 favours %s)."
           % (s["rounds"], s["seconds"], s["wrk_connections"],
              "quick" if s["quick"] else "full",
              "bound one per CPU" if os.environ.get("BENCH_CPU_AFFINITY", "1") == "1"
              else "floating (BENCH_CPU_AFFINITY=0)", ours, ours),
           "", *table, ""]
    if res.get("versions"):
        out.append("Versions: " + "; ".join(res["versions"].values()))
        out.append("")
    errors = []
    for key, _, _, _ in ROWS:
        for n, v in res["values"].get(key, {}).items():
            if isinstance(v, str) and v != "n/a":
                errors.append("%s, %s: %s" % (n, key, v))
    if res["notes"] or errors:
        out.append("Notes:")
        out.extend("- " + x for x in res["notes"] + errors)
        out.append("")
    if res.get("rounds"):
        out.append("Per-round figures (req/s, p99 ms, proxy CPU µs per request; messages/s):")
        for metric, per in res["rounds"].items():
            for n, rounds in per.items():
                out.append("- %s %s: %s" % (metric, n, json.dumps(rounds)))
        out.append("")
    return "\n".join(out)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "run" and sys.argv[4] in PHASES:
        run(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) in (3, 4) and sys.argv[1] == "table":
        with open(sys.argv[2]) as f:
            text = render(json.load(f))
        print(text)
        if len(sys.argv) == 4:
            os.makedirs(os.path.dirname(os.path.abspath(sys.argv[3])), exist_ok=True)
            with open(sys.argv[3], "w") as f:
                f.write(text)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
