"""Hostile and broken surroundings (docs/security.md): slow clients (slowloris, stalled bodies),
size limits (header fields, target, header block, chunk extensions, pipelined backlogs) with the
worker's memory bounded, and the connection cap.

Run: cd tests/integration && HIPACHE_BINARY=/work/main/build/hipache \
         python3 -m unittest -v test_security_limits
"""
import json
import os
import signal
import socket
import time
import unittest

import harness
from process_helpers import children
from security_helpers import (RecordingBackend, SecurityTestCase, connection_closed, parse_status,
                              read_response)

MB = 1024 * 1024


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


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
        workers = sorted(children(self.proxy.process.pid))
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
        worker = sorted(children(self.proxy.process.pid))[0]
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
        worker = sorted(children(self.proxy.process.pid))[0]
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

    def test_a_burst_of_connections_is_capped_too(self):
        # Pending connections taken in one go (queued while the worker was stopped): the cap
        # counts each one admitted before the next is taken.
        backend = self.http_backend()
        self.redis.rpush("frontend:a.test", "a", backend.url)
        self.start_proxy(maxConnections=3, workers=1, tcpTimeout=60)
        workers = harness.wait_until(lambda: children(self.proxy.process.pid))
        self.assertEqual(len(workers), 1)
        worker = workers.pop()
        clients = []
        # The start-up's probe connection is served and gone: the queue holds ours only.
        self.assertTrue(harness.wait_until(
            lambda: harness.accept_queue(self.proxy.port) == 0
            and harness.half_closed_by_peer(self.proxy.port) == 0))
        os.kill(worker, signal.SIGSTOP)  # the connections queue up meanwhile
        try:
            for _ in range(5):
                s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)
                self.addCleanup(s.close)
                s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
                clients.append(s)
            self.assertTrue(harness.wait_until(
                lambda: harness.accept_queue(self.proxy.port) == 5), "connections not queued")
        finally:
            os.kill(worker, signal.SIGCONT)
        statuses = sorted(read_response(s.makefile("rb"))[0] for s in clients)
        self.assertEqual(statuses, [200, 200, 200, 503, 503])


if __name__ == "__main__":
    unittest.main()
