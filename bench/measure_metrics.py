"""The measurements of bench/measure.py, each against one proxy: wrk throughput and latency,
h2load throughput over HTTP/2 (TLS and h2c), idle keep-alive connections, 1 GB upload and
download, WebSocket echo tunnels, and the time from a Redis write to the first request routed by
it. Definitions: bench/README.md.
"""
import math
import os
import re
import secrets
import selectors
import statistics
import subprocess
import time

from measure_clients import HttpConn, Redis, connect
from measure_proc import PeakSampler, settled_rss
from measure_settings import (H2_CONNECTIONS, IDLE_CONNS, ROUNDS, ROUTE_SAMPLES, SECONDS,
                              SMALL_HOST, UPLOAD_HOST, VHOSTS, WRK_CONNECTIONS, WS_HOST, WS_TUNNELS,
                              WS_WINDOW)


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


# --------------------------------------------------------------------------- h2load

H2_RPS = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
H2_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                         r"(\d+) failed, (\d+) errored, (\d+) timeout")
H2_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
H2_ALPN = re.compile(r"Application protocol: (\S+)")
H2_CIPHER = re.compile(r"Cipher: (\S+)")


# One TLS 1.3 suite for all: h2load offers AES-128 first, and hipache and HAProxy (server order)
# would pick AES-256 where nginx (client order) picks AES-128.
H2_TLS13_CIPHER = "TLS_AES_128_GCM_SHA256"


def h2load_command(port, tls, streams, seconds=None, requests=None, clients=H2_CONNECTIONS):
    """h2load over h2 (TLS, ALPN) or h2c (prior knowledge), :authority bench.test; for a
    duration (seconds) or a number of requests."""
    cmd = ["h2load", "-t1", "-c%d" % clients, "-m%d" % streams, "-H", ":authority: " + SMALL_HOST]
    if tls:
        cmd.append("--tls13-ciphers=" + H2_TLS13_CIPHER)
    cmd += ["-D", "%g" % seconds] if seconds else ["-n", str(requests)]
    cmd.append("%s://127.0.0.1:%d/" % ("https" if tls else "http", port))
    return cmd


def run_h2load(port, tls, streams, seconds=None, requests=None, clients=H2_CONNECTIONS):
    """Returns (req/s, problems, requests succeeded, TLS cipher or None). Raises when h2 was not
    spoken or nothing succeeded."""
    cmd = h2load_command(port, tls, streams, seconds, requests, clients)
    out = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=(seconds or 10) + 60).stdout
    rps, counts, status = H2_RPS.search(out), H2_REQUESTS.search(out), H2_STATUS.search(out)
    alpn = H2_ALPN.search(out)
    if not rps or not counts or not status:
        raise RuntimeError("could not parse h2load output:\n" + out)
    want = "h2" if tls else "h2c"
    if not alpn or alpn.group(1) != want:
        raise RuntimeError("h2load did not speak %s (%s)" % (want, alpn.group(0) if alpn else
                                                             "no application protocol"))
    done, ok, failed, errored, timeouts = (int(counts.group(i)) for i in range(3, 8))
    if not ok:
        raise RuntimeError("no request succeeded: " + counts.group(0))
    problems = []
    if failed or errored or timeouts:
        problems.append(counts.group(0))
    # h2load counts a status when the answer's HEADERS arrive and stops at the deadline, so a
    # round can end with one more 2xx than requests done; fewer, or any other status, is wrong.
    ok_statuses, *other_statuses = (int(x) for x in status.groups())
    if ok_statuses < ok or any(other_statuses):
        problems.append("%s; %s" % (counts.group(0), status.group(0)))
    cipher = H2_CIPHER.search(out)
    return float(rps.group(1)), problems, ok, cipher.group(1) if cipher else None


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
