"""Hostile and broken surroundings (docs/security.md): a Redis that is down or hangs, malformed
routing data, slow and oversized clients, connection caps, request smuggling, Host header
injection and X-Forwarded-* trust.

Run: cd tests/integration && HIPACHE_BINARY=/work/main/build/hipache \
         python3 -m unittest -v test_security
"""
import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
import unittest

import harness

MB = 1024 * 1024


# --------------------------------------------------------------------------- helpers

def read_response(f):
    """Reads one HTTP response from a binary file object. Returns (status, headers dict with
    lowercased names, body, header list) or None when the connection closed first."""
    line = f.readline(100000)
    if not line:
        return None
    parts = line.split(None, 2)
    status = int(parts[1])
    headers = []
    while True:
        h = f.readline(100000)
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers.append((name.strip().lower(), value.strip()))
    d = dict(headers)
    body = b""
    if 100 <= status < 200 or status in (204, 304):
        pass
    elif d.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b""):
                    pass
                break
            body += f.read(size)
            f.readline()
    elif "content-length" in d:
        body = f.read(int(d["content-length"]))
    else:
        body = f.read()
    return status, d, body, headers


def parse_status(raw):
    """The status code of the first response in raw bytes, or None when there is none."""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


def connection_closed(sock, timeout):
    """Waits up to `timeout` for the peer to close; returns True when it did."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.time()))
        if not ready:
            return False
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, OSError):
            return True
    return False


def child_pids(pid):
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                pids.append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return pids


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def redis_error_lines(text):
    """Log lines about Redis at warning level or above ("... [pid] error: redis (read) ...")."""
    return [l for l in text.splitlines()
            if re.search(r"\] (error|warning|critical): ", l) and "redis" in l.lower()]


class RecordingBackend:
    """A raw backend that records every byte it receives, per connection. It reads one request
    (framed by Content-Length or chunked, as its own head says), answers 200 "ok" with
    Connection: close, then keeps recording until the proxy closes."""

    def __init__(self, testcase, respond=True):
        self.respond = respond
        self.received = []        # one bytearray per connection
        self.closed_at = []       # time the proxy closed each connection (or None)
        self.lock = threading.Lock()
        self.raw = testcase.raw_backend(self._script)
        self.url = self.raw.url

    def _script(self, conn):
        with self.lock:
            idx = len(self.received)
            self.received.append(bytearray())
            self.closed_at.append(None)
        data = self.received[idx]
        conn.settimeout(3)

        def recv():
            chunk = conn.recv(65536)
            if not chunk:
                self.closed_at[idx] = time.time()
            data.extend(chunk)
            return chunk

        try:
            while b"\r\n\r\n" not in data:
                if not recv():
                    return
            head, _, _ = bytes(data).partition(b"\r\n\r\n")
            lower = head.lower()
            if self.respond:
                if b"transfer-encoding: chunked" in lower:
                    while not bytes(data).endswith(b"0\r\n\r\n"):
                        if not recv():
                            return
                else:
                    m = re.search(rb"\r\ncontent-length:\s*(\d+)", lower)
                    need = len(head) + 4 + (int(m.group(1)) if m else 0)
                    while len(data) < need:
                        if not recv():
                            return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n"
                             b"\r\nok")
            conn.settimeout(10)
            while recv():
                pass
        except (socket.timeout, OSError):
            pass

    def all_bytes(self):
        with self.lock:
            return b"".join(bytes(d) for d in self.received)

    def heads(self):
        return [bytes(d).partition(b"\r\n\r\n")[0] for d in self.received]


class HangingServer:
    """Accepts TCP connections and never answers (a hung "Redis")."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def stop(self):
        with contextlib.suppress(OSError):
            self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()


class SecurityTestCase(harness.ProxyTestCase):
    def raw(self, data, timeout=5):
        return self.raw_exchange(data, timeout=timeout)

    def get(self, host, path="/", headers=None, timeout=10):
        return self.request("GET", path, host=host, headers=headers, timeout=timeout)

    def timed_get(self, host, path="/", headers=None, timeout=10):
        t0 = time.time()
        status, h, body = self.get(host, path, headers, timeout)
        return status, h, body, time.time() - t0

    def respawn_redis(self, extra_args=(), wait=True):
        """(Re)starts redis-server on the test's Redis port, optionally with extra arguments."""
        srv = self.redis_server
        with contextlib.suppress(Exception):
            srv.client.close()
        if srv.process.poll() is None:
            srv.process.terminate()
            srv.process.wait(5)
        args = ["redis-server", "--port", str(srv.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", srv.dir] + list(extra_args)
        srv.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        harness.wait_for_port(srv.port, process=srv.process)
        srv.client = harness.RedisClient(srv.port)
        self.redis = srv.client

    def kill_redis(self):
        srv = self.redis_server
        with contextlib.suppress(Exception):
            srv.client.close()
        srv.process.terminate()
        srv.process.wait(5)


# --------------------------------------------------------------------------- Redis outages

class RedisOutage(SecurityTestCase):
    def test_hung_redis_gives_quick_503(self):
        hang = HangingServer()
        self._stoppers.append(hang.stop)
        config = self.config(redisTimeout=0.5, routeCache=False)
        config["driver"] = "redis://127.0.0.1:%d" % hang.port
        self.start_proxy(config)
        for _ in range(3):
            status, headers, _, elapsed = self.timed_get("a.test", headers={"X-Debug": "1"})
            self.assertEqual(status, 503)
            self.assertLess(elapsed, 1.5)
            self.assertEqual(headers.get("cache-control"), "no-cache")
        # Concurrent clients: every one is answered, none hangs.
        results = []

        def one():
            try:
                results.append(self.timed_get("h%d.test" % len(results), timeout=5))
            except Exception as e:  # noqa: BLE001 - recorded as a failure below
                results.append(e)
        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual(len(results), 10)
        for r in results:
            self.assertNotIsInstance(r, Exception)
            self.assertEqual(r[0], 503)
            self.assertLess(r[3], 2.0)

    def test_paused_redis_cached_host_served_uncached_gets_503_then_recovers(self):
        # Redis 7 refuses DEBUG unless told otherwise.
        self.respawn_redis(["--enable-debug-command", "local"])
        backend = self.http_backend("one")
        self.redis.rpush("frontend:cached.test", "cached", backend.url)
        self.redis.rpush("frontend:uncached.test", "uncached", backend.url)
        self.start_proxy(redisTimeout=0.5)
        self.assertTrue(harness.wait_until(lambda: "route cache: live" in self.proxy.log(), 5),
                        self.proxy.log())
        for _ in range(2):
            self.assertEqual(self.get("cached.test")[0], 200)

        sleeper = harness.RedisClient(self.redis_server.port)
        self.addCleanup(sleeper.close)
        thread = threading.Thread(target=lambda: sleeper.call("DEBUG", "SLEEP", "3"),
                                  daemon=True)
        started = time.time()
        thread.start()
        time.sleep(0.3)
        status, _, _, elapsed = self.timed_get("uncached.test", timeout=6)
        self.assertEqual(status, 503)
        self.assertLess(elapsed, 0.5 + 1.0)
        for _ in range(3):
            status, _, _, elapsed = self.timed_get("cached.test", timeout=6)
            self.assertEqual(status, 200)
            self.assertLess(elapsed, 0.5 + 1.0)
        self.assertLess(time.time() - started, 3.0, "the checks above must run during the pause")
        thread.join(10)
        # Recovery without a restart.
        self.assertTrue(harness.wait_until(lambda: self.get("uncached.test")[0] == 200, 8))
        self.assertEqual(self.get("cached.test")[0], 200)

    def test_redis_down_no_log_flood_and_recovery(self):
        backend = self.http_backend("one")
        self.redis.rpush("frontend:a.test", "a", backend.url)
        self.start_proxy(redisTimeout=0.5)
        harness.wait_until(lambda: "route cache: live" in self.proxy.log(), 5)
        self.assertEqual(self.get("a.test")[0], 200)
        before = len(self.proxy.log())

        self.kill_redis()
        statuses = {}
        deadline = time.time() + 3.0
        for i in range(100):
            host = "a.test" if i % 2 == 0 else "u%d.test" % i
            status, _, _, elapsed = self.timed_get(host, timeout=5)
            self.assertLess(elapsed, 1.5, "request %d took %.2fs" % (i, elapsed))
            statuses.setdefault(host == "a.test", set()).add(status)
            time.sleep(max(0.0, (deadline - time.time()) / (100 - i)))
        self.assertEqual(statuses[True], {200}, "a known route keeps serving during the outage")
        self.assertEqual(statuses[False], {503})
        lines = redis_error_lines(self.proxy.log()[before:])
        self.assertLess(len(lines), 10, "\n".join(lines))

        self.respawn_redis()
        self.redis.rpush("frontend:u1.test", "u1", backend.url)
        self.assertTrue(harness.wait_until(lambda: self.get("u1.test")[0] == 200, 10),
                        "no recovery after Redis came back")

    def hang_redis(self, seconds, requests):
        """SIGSTOPs Redis for `seconds` while making `requests` requests (half to a cached host,
        half to unknown ones); returns the proxy's log written meanwhile."""
        backend = self.http_backend("one")
        self.redis.rpush("frontend:a.test", "a", backend.url)
        self.redis.rpush("frontend:later.test", "later", backend.url)
        self.start_proxy(redisTimeout=0.5)
        harness.wait_until(lambda: "route cache: live" in self.proxy.log(), 5)
        self.assertEqual(self.get("a.test")[0], 200)
        before = len(self.proxy.log())
        pid = self.redis_server.process.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            deadline = time.time() + seconds
            for i in range(requests):
                host = "a.test" if i % 2 == 0 else "u%d.test" % i
                status, _, _, elapsed = self.timed_get(host, timeout=5)
                self.assertLess(elapsed, 1.5, "request %d took %.2fs" % (i, elapsed))
                self.assertEqual(status, 200 if host == "a.test" else 503, host)
                time.sleep(max(0.0, (deadline - time.time()) / (requests - i)))
            return self.proxy.log()[before:]
        finally:
            os.kill(pid, signal.SIGCONT)

    def test_redis_hang_no_log_flood_and_recovery(self):
        """SIGSTOP: the kernel still accepts connections, Redis never answers."""
        log = self.hang_redis(3.0, 100)
        lines = redis_error_lines(log)
        self.assertLess(len(lines), 10, "\n".join(lines))
        self.assertTrue(harness.wait_until(lambda: self.get("later.test")[0] == 200, 10),
                        "no recovery after Redis came back")

    def test_redis_hang_is_one_outage_with_back_off(self):
        """A hung Redis accepts TCP connections: that is not a recovery. The outage is logged
        once (redis_connection.cpp: "Logged once per outage, not per attempt") and reconnection
        backs off instead of restarting at 100 ms after every accepted connect."""
        log = self.hang_redis(4.0, 40)
        errors = redis_error_lines(log)
        reconnected = [l for l in log.splitlines() if "reconnected" in l]
        self.assertLessEqual(len(errors), 2, "\n".join(errors))
        self.assertEqual(reconnected, [], "a connect to a Redis that never answers was logged "
                                          "as a reconnection:\n" + "\n".join(reconnected))


# --------------------------------------------------------------------------- malformed data

class MalformedRoutingData(SecurityTestCase):
    def setUp(self):
        super().setUp()
        self.backend = self.http_backend("good")
        self.redis.rpush("frontend:good.test", "good", self.backend.url)

    def error_log_count(self, host):
        return self.proxy.log().count("redis error reading the route of %s" % host)

    def test_frontend_of_wrong_type(self):
        self.redis.set("frontend:bad.test", "str")
        self.start_proxy()
        for _ in range(20):
            self.assertEqual(self.get("bad.test")[0], 503)
            self.assertEqual(self.get("good.test")[0], 200)
        self.assertTrue(harness.wait_until(lambda: self.error_log_count("bad.test") >= 1, 2))
        self.assertLessEqual(self.error_log_count("bad.test"), 2, self.proxy.log())

    def test_wrong_typed_wildcard_does_not_break_a_host_with_its_own_list(self):
        """A malformed key is an error for the hosts it would route, not for a host whose own
        exact list wins before the wildcard is consulted (SPEC 4.3: first non-empty list)."""
        self.redis.set("frontend:*.w.test", "str")
        self.redis.rpush("frontend:exact.w.test", "exact", self.backend.url)
        self.start_proxy()
        self.assertEqual(self.get("other.w.test")[0], 503)
        self.assertEqual(self.get("exact.w.test")[0], 200)

    def test_missing_list_falls_through_to_wildcard(self):
        self.redis.rpush("frontend:*.f.test", "wild", self.backend.url)
        self.start_proxy()
        status, _, body = self.get("x.f.test")
        self.assertEqual(status, 200)
        self.assertEqual(self.get("nothing.test")[0], 400)

    def test_identifier_only_list_is_502_for_that_host(self):
        self.redis.rpush("frontend:empty.test", "empty")
        self.start_proxy()
        self.assertEqual(self.get("empty.test")[0], 502)
        self.assertEqual(self.get("good.test")[0], 200)

    def test_garbage_backend_urls_are_502(self):
        garbage = ["not a url", "http://", "ftp://127.0.0.1:1", "http://127.0.0.1:99999",
                   "http://[::1", "http://127.0.0.1:abc", "\x00\xff"]
        for i, url in enumerate(garbage):
            self.redis.rpush("frontend:g%d.test" % i, "g%d" % i, url)
        self.start_proxy()
        for i, url in enumerate(garbage):
            with self.subTest(url=url):
                status, _, _ = self.get("g%d.test" % i)
                self.assertEqual(status, 502)
        self.assertEqual(self.get("good.test")[0], 200)

    def test_huge_list(self):
        self.redis.rpush("frontend:huge.test", "huge", *([self.backend.url] * 10000))
        self.start_proxy()
        t0 = time.time()
        for _ in range(5):
            self.assertEqual(self.get("huge.test")[0], 200)
        self.assertLess(time.time() - t0, 5)
        self.assertEqual(self.get("good.test")[0], 200)

    def test_garbage_dead_members_are_ignored(self):
        other = self.http_backend("other")
        self.redis.rpush("frontend:d.test", "d", self.backend.url, other.url)
        self.redis.sadd("dead:d.test", "abc", "-1", "2", "99", "18446744073709551617", "NaN",
                        "0x1", "")
        self.start_proxy()
        seen = set()
        for _ in range(30):
            status, _, body = self.get("d.test")
            self.assertEqual(status, 200)
            seen.add(json.loads(body)["backend"])
        self.assertEqual(seen, {"good", "other"})

    def test_dead_key_of_wrong_type(self):
        self.redis.rpush("frontend:dk.test", "dk", self.backend.url)
        self.redis.set("dead:dk.test", "1")
        self.start_proxy()
        for _ in range(10):
            self.assertEqual(self.get("dk.test")[0], 503)
            self.assertEqual(self.get("good.test")[0], 200)
        self.assertTrue(harness.wait_until(lambda: self.error_log_count("dk.test") >= 1, 2))
        self.assertLessEqual(self.error_log_count("dk.test"), 2)


# --------------------------------------------------------------------------- slow clients

class SlowClients(SecurityTestCase):
    def test_slowloris_header_trickle_is_cut_at_header_timeout(self):
        backend = self.http_backend()
        self.redis.rpush("frontend:a.test", "a", backend.url)
        self.start_proxy(headerTimeout=2, tcpTimeout=30)
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5) as s:
            t0 = time.time()
            s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: ")
            closed_at = None
            while time.time() - t0 < 8:
                try:
                    s.sendall(b"a")
                except OSError:
                    closed_at = time.time()
                    break
                if connection_closed(s, 0.5):
                    closed_at = time.time()
                    break
            self.assertIsNotNone(closed_at, "still open after 8 s of trickling")
            self.assertGreater(closed_at - t0, 1.5)
            self.assertLess(closed_at - t0, 3.5)
        self.assertEqual(backend.requests, [])

    def test_slowloris_on_kept_alive_connection(self):
        backend = self.http_backend()
        self.redis.rpush("frontend:a.test", "a", backend.url)
        self.start_proxy(headerTimeout=2, tcpTimeout=30)
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5) as s:
            f = s.makefile("rb")
            s.sendall(b"GET /first HTTP/1.1\r\nHost: a.test\r\n\r\n")
            self.assertEqual(read_response(f)[0], 200)
            t0 = time.time()
            s.sendall(b"G")
            closed_at = None
            while time.time() - t0 < 8:
                if connection_closed(s, 0.5):
                    closed_at = time.time()
                    break
                try:
                    s.sendall(b"E")
                except OSError:
                    closed_at = time.time()
                    break
            self.assertIsNotNone(closed_at)
            self.assertLess(closed_at - t0, 3.5)
        self.assertEqual(len(backend.requests), 1)

    def test_slow_post_body_stall_closes_client_and_backend(self):
        backend = RecordingBackend(self, respond=False)
        self.redis.rpush("frontend:a.test", "a", backend.url)
        self.start_proxy(tcpTimeout=1)
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5) as s:
            s.sendall(b"POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n"
                      + b"x" * 10)
            t0 = time.time()
            self.assertTrue(connection_closed(s, 4), "client connection still open")
            self.assertLess(time.time() - t0, 3.0)
        self.assertTrue(harness.wait_until(
            lambda: backend.closed_at and backend.closed_at[0] is not None, 3),
            "backend connection not closed")
        self.assertLess(backend.closed_at[0] - t0, 3.0)
        self.assertTrue(backend.all_bytes().endswith(b"x" * 10))


# --------------------------------------------------------------------------- limits

class Limits(SecurityTestCase):
    def setUp(self):
        super().setUp()
        self.backend = RecordingBackend(self)
        self.redis.rpush("frontend:a.test", "a", self.backend.url)
        self.start_proxy()

    def request_with_fields(self, count):
        fields = [b"Host: a.test"] + [b"X-H%d: v" % i for i in range(count - 1)]
        return b"GET / HTTP/1.1\r\n" + b"\r\n".join(fields) + b"\r\nConnection: close\r\n\r\n"

    def test_header_field_count(self):
        # Connection: close is one more field.
        self.assertEqual(parse_status(self.raw(self.request_with_fields(99))), 200)
        self.assertEqual(parse_status(self.raw(self.request_with_fields(100))), 431)
        self.assertEqual(len(self.backend.received), 1)

    def test_target_length(self):
        ok = b"/" + b"a" * (8 * 1024 - 1)
        self.assertEqual(parse_status(self.raw(
            b"GET " + ok + b" HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")), 200)
        long_target = b"/" + b"a" * 8999
        self.assertEqual(parse_status(self.raw(
            b"GET " + long_target + b" HTTP/1.1\r\nHost: a.test\r\n\r\n")), 414)
        self.assertEqual(len(self.backend.received), 1)

    def test_header_block_over_64kb(self):
        # Few fields, but 70 KB in all.
        fields = b"".join(b"X-Big%d: %s\r\n" % (i, b"v" * 7000) for i in range(10))
        raw = self.raw(b"GET / HTTP/1.1\r\nHost: a.test\r\n" + fields + b"\r\n")
        self.assertEqual(parse_status(raw), 431)
        one = self.raw(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: " + b"v" * 70000 + b"\r\n\r\n")
        self.assertEqual(parse_status(one), 431)
        self.assertEqual(self.backend.received, [])

    def test_200_pipelined_requests_answered_in_order(self):
        backend = self.http_backend("echo")
        self.redis.rpush("frontend:p.test", "p", backend.url)
        data = b"".join(b"GET /p%d HTTP/1.1\r\nHost: p.test\r\n\r\n" % i for i in range(200))
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10) as s:
            f = s.makefile("rb")
            s.sendall(data)
            for i in range(200):
                r = read_response(f)
                self.assertIsNotNone(r, "connection closed after %d responses" % i)
                self.assertEqual(r[0], 200)
                self.assertEqual(json.loads(r[2])["path"], "/p%d" % i)

    def test_huge_chunk_extension_does_not_grow_the_worker(self):
        """A chunk-size line that never ends must not be buffered without bound (SPEC 5: memory
        bounded per connection)."""
        workers = child_pids(self.proxy.process.pid)
        self.assertEqual(len(workers), 1)
        worker = workers[0]
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5;ext=")
            time.sleep(0.2)
            rss0 = rss_kb(worker)
            piece = b"a" * 65536
            refused = False
            for _ in range(256):  # 16 MB
                try:
                    s.sendall(piece)
                except OSError:
                    refused = True
                    break
            time.sleep(0.3)
            grown_kb = rss_kb(worker) - rss0
            if not refused:
                refused = connection_closed(s, 0.2)
        self.assertTrue(refused or grown_kb < 4096,
                        "worker grew by %d KB buffering one chunk-size line" % grown_kb)
        self.assertNotIn(b"aaaa", self.backend.all_bytes())

    def test_huge_chunk_extension_from_a_backend_does_not_grow_the_worker(self):
        """The same from a tenant's backend: its response is relayed with bounded memory."""
        def script(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=")
            time.sleep(0.3)
            conn.settimeout(5)
            for _ in range(256):  # 16 MB
                conn.sendall(b"a" * 65536)
            time.sleep(2)
        bad = self.raw_backend(script)
        self.redis.rpush("frontend:evil.test", "evil", bad.url)
        worker = child_pids(self.proxy.process.pid)[0]
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")
            time.sleep(0.2)
            rss0 = rss_kb(worker)
            time.sleep(1.5)
            grown_kb = rss_kb(worker) - rss0
        self.assertLess(grown_kb, 4096,
                        "worker grew by %d KB buffering one chunk-size line" % grown_kb)

    def test_unread_pipelined_backlog_is_not_buffered(self):
        """A client that pipelines megabytes of requests and reads nothing: the proxy reads one
        request at a time, so the backlog stays in the kernel, not in the worker."""
        backend = self.http_backend("echo")
        self.redis.rpush("frontend:p.test", "p", backend.url)
        worker = child_pids(self.proxy.process.pid)[0]
        one = b"GET /p HTTP/1.1\r\nHost: p.test\r\nX-Pad: " + b"x" * 900 + b"\r\n\r\n"
        block = one * 64
        # Warm up with the same traffic, read this time: the allocator's caches (and, in the ASan
        # build, its quarantine of freed memory) fill before the measurement, not during it.
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10) as s:
            f = s.makefile("rb")
            for _ in range(40):
                s.sendall(block)
                for _ in range(64):
                    self.assertIsNotNone(read_response(f))
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            time.sleep(0.2)
            rss0 = rss_kb(worker)
            s.setblocking(False)
            sent = 0
            deadline = time.time() + 1.5
            while time.time() < deadline and sent < 64 * MB:
                try:
                    sent += s.send(block)
                except BlockingIOError:
                    time.sleep(0.01)
            time.sleep(0.3)
            grown_kb = rss_kb(worker) - rss0
        self.assertGreater(sent, 256 * 1024)
        self.assertLess(grown_kb, 8192, "worker grew by %d KB (%d bytes pipelined)" %
                        (grown_kb, sent))


class MaxConnections(SecurityTestCase):
    def test_connection_cap_gives_503_then_recovers(self):
        backend = self.http_backend()
        self.redis.rpush("frontend:a.test", "a", backend.url)
        self.start_proxy(maxConnections=20, workers=1, headerTimeout=60, tcpTimeout=60)
        held = []
        try:
            for _ in range(20):
                s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5)
                s.sendall(b"GET / HTTP/1.1\r\n")
                held.append(s)
                time.sleep(0.01)
            time.sleep(0.3)
            with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
                r = read_response(s.makefile("rb"))
                self.assertIsNotNone(r)
                status, headers, _, _ = r
                self.assertEqual(status, 503)
                self.assertIn("retry-after", headers)
                self.assertEqual(headers.get("connection", "").lower(), "close")
                self.assertTrue(connection_closed(s, 2))
            # A held connection is still alive and gets served.
            f = held[0].makefile("rb")
            held[0].sendall(b"Host: a.test\r\nConnection: close\r\n\r\n")
            self.assertEqual(read_response(f)[0], 200)
            for s in held[:6]:
                s.close()
            time.sleep(0.3)
            self.assertEqual(self.get("a.test")[0], 200)
        finally:
            for s in held:
                s.close()


# --------------------------------------------------------------------------- smuggling

class Smuggling(SecurityTestCase):
    def setUp(self):
        super().setUp()
        self.backend = RecordingBackend(self)
        self.redis.rpush("frontend:a.test", "a", self.backend.url)
        self.redis.rpush("frontend:b.test", "b", self.backend.url)
        self.start_proxy(headerTimeout=2)

    def settle(self):
        time.sleep(0.2)

    def assert_refused(self, request, allow_close=False, allow_backend_head=False):
        """400 (or a plain close when allow_close) and nothing ambiguous at the backend."""
        before = len(self.backend.received)
        raw = self.raw(request, timeout=4)
        status = parse_status(raw)
        if allow_close and status is None:
            self.assertEqual(raw, b"")
        else:
            self.assertEqual(status, 400, raw[:200])
        self.settle()
        new = self.backend.received[before:]
        if not allow_backend_head:
            self.assertEqual(new, [], "the backend was contacted")
        return raw, [bytes(d) for d in new]

    def test_sanity(self):
        raw = self.raw(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n"
                       b"Connection: close\r\n\r\nhello")
        self.assertEqual(parse_status(raw), 200)

    def test_content_length_and_transfer_encoding(self):
        for order in ([b"Content-Length: 5", b"Transfer-Encoding: chunked"],
                      [b"Transfer-Encoding: chunked", b"Content-Length: 5"]):
            with self.subTest(order=order):
                self.assert_refused(b"POST / HTTP/1.1\r\nHost: a.test\r\n" + b"\r\n".join(order)
                                    + b"\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.test"
                                    b"\r\n\r\n")
        self.assertNotIn(b"/smuggled", self.backend.all_bytes())

    def test_differing_duplicate_content_length(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n"
                            b"Content-Length: 6\r\n\r\nhello!")
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5, 6\r\n\r\n"
                            b"hello!")

    def test_identical_duplicate_content_length_never_reaches_backend_twice(self):
        """Accepted or refused; if accepted, the backend must see exactly one Content-Length."""
        for framing in (b"Content-Length: 5\r\nContent-Length: 5\r\n",
                        b"Content-Length: 5, 5\r\n"):
            with self.subTest(framing=framing):
                before = len(self.backend.received)
                raw = self.raw(b"POST / HTTP/1.1\r\nHost: a.test\r\n" + framing +
                               b"Connection: close\r\n\r\nhello")
                self.assertIn(parse_status(raw), (200, 400))
                self.settle()
                for head in self.backend.heads()[before:]:
                    values = re.findall(rb"(?im)^content-length:[ \t]*(.*?)[ \t]*\r?$", head)
                    self.assertEqual(values, [b"5"], head)

    def test_signed_content_length(self):
        for value in (b"+5", b"-5", b" 5x", b"0x5"):
            with self.subTest(value=value):
                self.assert_refused(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: " +
                                    value + b"\r\n\r\nhello")

    def test_bad_chunk_size(self):
        for body in (b"zz\r\nhello\r\n0\r\n\r\n", b"-5\r\nhello\r\n0\r\n\r\n",
                     b"5 5\r\nhello\r\n0\r\n\r\n"):
            with self.subTest(body=body):
                _, seen = self.assert_refused(
                    b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + body, allow_close=True, allow_backend_head=True)
                for data in seen:
                    # At most the header went out; never a body byte, never a whole request.
                    self.assertNotIn(b"hello", data)
                    self.assertFalse(data.endswith(b"0\r\n\r\n"), data)

    def test_bad_chunk_extension(self):
        for ext in (b"5;a=b c", b"5;\x01", b"5;=x", b'5;a="unterminated'):
            with self.subTest(ext=ext):
                _, seen = self.assert_refused(
                    b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + ext + b"\r\nhello\r\n0\r\n\r\n", allow_close=True, allow_backend_head=True)
                for data in seen:
                    self.assertNotIn(b"hello", data)

    def test_bare_lf(self):
        # A header line ended by a bare LF inside a CRLF request: refused.
        self.assert_refused(b"GET / HTTP/1.1\r\nHost: a.test\nX-Smuggled: 1\r\n\r\n")
        self.assert_refused(b"GET / HTTP/1.1\nHost: a.test\r\n\r\n")
        # A header block ended by CRLF LF, followed by what would be a second request.
        self.assert_refused(b"GET / HTTP/1.1\r\nHost: a.test\r\n\nGET /smuggled HTTP/1.1\r\n"
                            b"Host: a.test\r\n\r\n")
        self.assertNotIn(b"/smuggled", self.backend.all_bytes())
        # A request in bare LFs only: the request line is already refused.
        t0 = time.time()
        self.assert_refused(b"GET / HTTP/1.1\nHost: a.test\n\n")
        self.assertLess(time.time() - t0, 1.5)

    def test_obs_fold(self):
        before = len(self.backend.received)
        raw = self.raw(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Folded: one\r\n two\r\n"
                       b"Connection: close\r\n\r\n")
        status = parse_status(raw)
        self.assertIn(status, (200, 400))
        self.settle()
        for head in self.backend.heads()[before:]:
            self.assertNotIn(b"\r\n ", head)
            self.assertNotIn(b"\r\n\t", head)
            if status == 200:
                self.assertIn(b"X-Folded: one two", head)

    def test_transfer_encoding_not_ending_in_chunked(self):
        for te in (b"chunked, identity", b"gzip", b"identity", b"chunked\r\nTransfer-Encoding: gzip"):
            with self.subTest(te=te):
                self.assert_refused(b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: " +
                                    te + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")

    def test_space_before_colon(self):
        self.assert_refused(b"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length : 5\r\n\r\nhello")
        self.assert_refused(b"GET / HTTP/1.1\r\nHost : a.test\r\n\r\n")

    # ----------------------------------------------------------------- Host header injection

    def test_two_host_headers(self):
        self.assert_refused(b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n")
        self.assert_refused(b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n")

    def test_absolute_form_target_wins_over_host(self):
        raw = self.raw(b"GET http://b.test/p?q=1 HTTP/1.1\r\nHost: a.test\r\n"
                       b"Connection: close\r\n\r\n")
        self.assertEqual(parse_status(raw), 200)
        self.settle()
        head = self.backend.heads()[-1]
        self.assertTrue(head.startswith(b"GET /p?q=1 HTTP/1.1\r\n"), head)
        hosts = re.findall(rb"(?im)^host:[ \t]*(.*?)[ \t]*\r?$", head)
        self.assertEqual(hosts, [b"b.test"])
        lines = self.access_log_lines(expected=1)
        self.assertIn('"b"', lines[-1])  # the b.test frontend's identifier

    def test_absolute_form_without_authority(self):
        self.assert_refused(b"GET http:///p HTTP/1.1\r\nHost: a.test\r\n\r\n")

    def test_absolute_form_userinfo_is_not_forwarded(self):
        raw = self.raw(b"GET http://user:pw@b.test HTTP/1.1\r\nHost: a.test\r\n"
                       b"Connection: close\r\n\r\n")
        self.assertEqual(parse_status(raw), 200)
        self.settle()
        head = self.backend.heads()[-1]
        self.assertTrue(head.startswith(b"GET / HTTP/1.1\r\n"), head)
        self.assertEqual(re.findall(rb"(?im)^host:[ \t]*(.*?)[ \t]*\r?$", head), [b"b.test"])
        self.assertNotIn(b"pw", head)

    def test_absolute_form_that_is_not_an_absolute_uri(self):
        # RFC 9112 section 3.2.2: absolute-URI, which has no fragment; its authority becomes Host.
        for target in (b"http://b.test/p#frag", b"http://b.te{st/", b"http://[::1/p",
                       b"http://b.test:8x/", b"http://b.test:99999/", b"http://b.test:8x"):
            with self.subTest(target=target):
                self.assert_refused(b"GET " + target + b" HTTP/1.1\r\nHost: a.test\r\n\r\n")


# --------------------------------------------------------------------------- X-Forwarded-*

SPOOFED = {"X-Forwarded-For": "1.2.3.4", "X-Real-IP": "1.2.3.4", "X-Forwarded-Proto": "https",
           "X-Forwarded-Protocol": "https", "X-Forwarded-Port": "443"}


class ForwardedTrust(SecurityTestCase):
    def seen(self, trust=None, headers=SPOOFED, **server):
        backend = self.http_backend()
        self.redis.rpush("frontend:a.test", "a", backend.url)
        if trust is not None:
            server["trustProxies"] = trust
        self.start_proxy(**server)
        status, _, body = self.get("a.test", headers=headers)
        self.assertEqual(status, 200)
        return json.loads(body)["headers"]

    def test_unset_keeps_client_headers(self):
        h = self.seen()
        for name, value in SPOOFED.items():
            self.assertEqual(h[name], value, name)
        # The log writes the X-Real-IP value as forwarded, IPv4 with the ::ffff: prefix.
        self.assertTrue(self.access_log_lines(expected=1)[0].startswith("::ffff:1.2.3.4 "))

    def test_untrusted_client_headers_replaced(self):
        h = self.seen(["10.0.0.0/8"])
        self.assertEqual(h["X-Forwarded-For"], "::ffff:127.0.0.1")
        self.assertEqual(h["X-Real-IP"], "::ffff:127.0.0.1")
        self.assertEqual(h["X-Forwarded-Proto"], "http")
        self.assertEqual(h["X-Forwarded-Protocol"], "http")
        self.assertEqual(h["X-Forwarded-Port"], str(self.proxy.port))
        self.assertTrue(self.access_log_lines(expected=1)[0].startswith("::ffff:127.0.0.1 "))

    def test_untrusted_client_other_forwarding_headers_dropped(self):
        """Other forwarding headers a backend may trust (X-Forwarded-Host, RFC 7239 Forwarded)
        are forwarded headers too: an untrusted client must not be able to set them."""
        h = self.seen(["10.0.0.0/8"], headers={"X-Forwarded-Host": "evil.test",
                                               "Forwarded": "for=1.2.3.4;proto=https"})
        self.assertNotIn("X-Forwarded-Host", h)
        self.assertNotIn("Forwarded", h)

    def test_trusted_proxy_appends(self):
        h = self.seen(["127.0.0.1"])
        self.assertEqual(h["X-Forwarded-For"], "1.2.3.4, ::ffff:127.0.0.1")
        self.assertEqual(h["X-Real-IP"], "1.2.3.4")
        self.assertEqual(h["X-Forwarded-Proto"], "https")
        self.assertEqual(h["X-Forwarded-Port"], "443")

    def test_trusted_proxy_without_headers_gets_peer(self):
        h = self.seen(["127.0.0.0/8"], headers={})
        self.assertEqual(h["X-Forwarded-For"], "::ffff:127.0.0.1")
        self.assertEqual(h["X-Real-IP"], "::ffff:127.0.0.1")


if __name__ == "__main__":
    unittest.main()
