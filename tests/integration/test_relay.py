"""Relaying HTTP through the proxy (SPEC section 5): protocol versions, keep-alive, pipelining,
streamed bodies with bounded memory, bodiless responses, Expect: 100-continue, hop-by-hop and
X-Forwarded-* headers, tcpTimeout, the backend connection pool and strict request parsing.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_relay
"""
import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler

import harness

MB = 1024 * 1024


# --------------------------------------------------------------------------- client helpers

class Response:
    def __init__(self, version, status, reason, headers, body, chunked, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers      # list of (name, value) as received
        self.body = body
        self.chunked = chunked      # the body came with chunked framing
        self.raw_head = raw_head

    def get_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name, default=None):
        values = self.get_all(name)
        return values[0] if values else default

    def connection_tokens(self):
        tokens = set()
        for value in self.get_all("Connection"):
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
        return tokens

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %s %s %r body=%d bytes>" % (self.status, self.reason, self.headers,
                                                      len(self.body))


class ProtocolError(Exception):
    pass


class RawClient:
    """One client connection to the proxy: send raw bytes, read responses one at a time
    (status line, headers, body framed by HEAD/1xx/204/304, chunked, Content-Length or close)."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def close(self):
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _line(self, limit=200000):
        line = self.file.readline(limit)
        if not line:
            raise EOFError("connection closed by the proxy")
        if not line.endswith(b"\n"):
            raise ProtocolError("unterminated line %r" % line[:200])
        return line

    def read_response(self, head_request=False):
        line = self._line()
        raw = line
        parts = line.rstrip(b"\r\n").split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise ProtocolError("bad status line %r" % line[:200])
        version, status = parts[0].decode(), int(parts[1])
        reason = parts[2].decode(errors="replace") if len(parts) > 2 else ""
        headers = []
        while True:
            line = self._line()
            raw += line
            if line in (b"\r\n", b"\n"):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError("bad header line %r" % line[:200])
            headers.append((name.strip(), value.strip()))
        response = Response(version, status, reason, headers, b"", False, raw)
        if head_request or status < 200 or status in (204, 304):
            return response
        te = ",".join(response.get_all("Transfer-Encoding")).lower()
        if te:
            if not te.replace(" ", "").endswith("chunked"):
                raise ProtocolError("transfer-encoding %r without chunked" % te)
            response.chunked = True
            body = []
            while True:
                size_line = self._line()
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._line() not in (b"\r\n", b"\n"):
                        pass
                    break
                body.append(self._read_exact(size))
                if self._line() not in (b"\r\n", b"\n"):
                    raise ProtocolError("chunk not followed by CRLF")
            response.body = b"".join(body)
        elif response.get("Content-Length") is not None:
            response.body = self._read_exact(int(response.get("Content-Length")))
        else:
            response.body = self.file.read()  # delimited by the connection closing
        return response

    def read_final_response(self, head_request=False):
        """Skips interim 1xx responses; returns (final, [interim...])."""
        interim = []
        while True:
            response = self.read_response(head_request)
            if response.status >= 200:
                return response, interim
            interim.append(response)

    def _read_exact(self, n):
        data = self.file.read(n)
        if len(data) != n:
            raise ProtocolError("body truncated: %d of %d bytes" % (len(data), n))
        return data

    def wait_closed(self, timeout):
        """True when the proxy closes the connection (EOF or reset) within `timeout` seconds
        and sends nothing more; False when it is still open. Ends the use of this client."""
        self.sock.settimeout(timeout)
        try:
            extra = self.file.read(1)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if extra:
            raise ProtocolError("unexpected bytes after the response: %r" % extra)
        return True


def exchange_until_close(port, data, timeout=5):
    """Sends raw bytes (ignoring a reset while sending) and reads until the proxy closes.
    Returns (bytes read, closed) where closed is False when the timeout hit first."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        out = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return out, False
            except ConnectionResetError:
                return out, True
            if not chunk:
                return out, True
            out += chunk
        return out, False


def status_of(raw):
    if not raw.startswith(b"HTTP/"):
        return None
    return int(raw.split(b" ", 2)[1])


def process_tree_rss_kb(root_pid):
    """VmRSS (kB) of root_pid plus all its descendants (the master and its workers)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(parents.get(pid, []))
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
    return total


class RssSampler:
    """Samples the proxy's RSS in a thread; `peak_kb` is the highest value seen."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.peak_kb = process_tree_rss_kb(pid)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_event.is_set():
            self.peak_kb = max(self.peak_kb, process_tree_rss_kb(self.pid))
            self.stop_event.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(5)
        self.peak_kb = max(self.peak_kb, process_tree_rss_kb(self.pid))


# --------------------------------------------------------------------------- backend helpers

class CountingEchoHandler(harness.EchoHandler):
    """EchoHandler that also counts the TCP connections it is given, how many are open at once
    and how many requests run at once; each recorded request carries its client port."""

    def setup(self):
        super().setup()
        server = self.server
        with server.lock:
            server.connections += 1
            server.open_connections += 1
            server.max_open_connections = max(server.max_open_connections,
                                              server.open_connections)

    def finish(self):
        with self.server.lock:
            self.server.open_connections -= 1
        super().finish()

    def _handle(self):
        server = self.server
        with server.lock:
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            super()._handle()  # EchoHandler records the client port with each request
        finally:
            with server.lock:
                server.in_flight -= 1

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _handle


class DigestHandler(BaseHTTPRequestHandler):
    """Streams the request body (Content-Length or chunked) into a SHA-256 and answers with
    {"length", "sha256", "headers"}. `server.read_pause` slows reading (seconds per 128 KB)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _read_some(self, n, digest):
        while n > 0:
            piece = self.rfile.read(min(n, 128 * 1024))
            if not piece:
                raise ConnectionError("body truncated")
            digest.update(piece)
            n -= len(piece)
            pause = getattr(self.server, "read_pause", 0)
            if pause:
                time.sleep(pause)
        return n

    def do_POST(self):
        digest = hashlib.sha256()
        length = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                self._read_some(size, digest)
                length += size
                self.rfile.readline()
        elif self.headers.get("Content-Length"):
            length = int(self.headers["Content-Length"])
            self._read_some(length, digest)
        self.server.requests.append({"length": length, "headers": list(self.headers.items())})
        payload = json.dumps({"length": length, "sha256": digest.hexdigest(),
                              "headers": list(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_PUT = do_POST


class Recorder:
    """A RawBackend script: records every byte of each connection until the proxy closes it
    (or `limit` seconds pass), answering nothing."""

    def __init__(self, limit=5.0):
        self.limit = limit
        self.received = []   # one bytes object per connection, appended when it ends
        self.closed = []     # whether that connection was closed by the proxy

    def __call__(self, conn):
        conn.settimeout(self.limit)
        data, closed = b"", False
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed = True
        self.received.append(data)
        self.closed.append(closed)


def header_values(header_list, name):
    return [v for k, v in header_list if k.lower() == name.lower()]


# --------------------------------------------------------------------------- tests

class RelayTestCase(harness.ProxyTestCase):
    def setUp(self):
        super().setUp()
        self._clients = []

    def tearDown(self):
        for client in self._clients:
            client.close()
        super().tearDown()

    def route(self, host, *backends):
        self.redis.rpush("frontend:" + host, host.split(".")[0], *[b.url for b in backends])

    def client(self, timeout=10):
        client = RawClient(self.proxy.port, timeout)
        self._clients.append(client)
        return client

    def counting_backend(self, name="backend"):
        backend = self.http_backend(name, CountingEchoHandler)
        backend.server.lock = threading.Lock()
        backend.server.connections = 0
        backend.server.open_connections = 0
        backend.server.max_open_connections = 0
        backend.server.in_flight = 0
        backend.server.max_in_flight = 0
        return backend

    def silent_backend(self):
        """Accepts, reads the request head and never answers (until the test ends)."""
        release = threading.Event()
        self._stoppers.append(release.set)

        def script(conn):
            harness.read_request_head(conn)
            release.wait(15)
        return self.raw_backend(script)


class VersionsAndKeepAliveTest(RelayTestCase):
    def test_http10_request_is_served_and_connection_closed(self):
        backend = self.http_backend("one")
        self.route("v10.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET /old?x=1 HTTP/1.0\r\nHost: v10.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json()["path"], "/old?x=1")
        self.assertEqual(response.json()["backend"], "one")
        self.assertFalse(response.chunked, "HTTP/1.0 clients cannot read chunked bodies")
        self.assertTrue(client.wait_closed(3), "HTTP/1.0 without keep-alive must be closed")
        self.assertEqual(len(backend.requests), 1)

    def test_http11_keep_alive_several_requests_one_connection(self):
        one, two = self.http_backend("one"), self.http_backend("two")
        self.route("ka1.test", one)
        self.route("ka2.test", two)
        self.start_proxy()
        client = self.client()
        for i in range(6):
            host = "ka1.test" if i % 2 == 0 else "ka2.test"
            client.send(b"GET /req%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (i, host.encode()))
            response = client.read_response()
            self.assertEqual(response.status, 200)
            self.assertNotIn("close", response.connection_tokens())
            body = response.json()
            self.assertEqual(body["path"], "/req%d" % i)
            # Each request on a kept-alive connection is routed by its own Host header.
            self.assertEqual(body["backend"], "one" if i % 2 == 0 else "two")
        self.assertEqual(len(one.requests), 3)
        self.assertEqual(len(two.requests), 3)
        self.assertFalse(client.wait_closed(0.3), "the kept-alive connection was closed")

    def test_http_client_reuses_connection(self):
        backend = self.http_backend("one")
        self.route("reuse.test", backend)
        self.start_proxy()
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=10)
        self.addCleanup(conn.close)
        sockets = set()
        for i in range(4):
            conn.request("GET", "/n%d" % i, headers={"Host": "reuse.test"})
            response = conn.getresponse()
            self.assertEqual(response.status, 200)
            self.assertEqual(json.loads(response.read())["path"], "/n%d" % i)
            self.assertFalse(response.will_close)
            sockets.add(id(conn.sock))
        self.assertEqual(len(sockets), 1)

    def test_http10_keep_alive_gets_keep_alive(self):
        backend = self.http_backend("one")
        self.route("ka10.test", backend)
        self.start_proxy()
        client = self.client()
        for i in range(3):
            client.send(b"GET /k%d HTTP/1.0\r\nHost: ka10.test\r\nConnection: keep-alive\r\n\r\n"
                        % i)
            response = client.read_response()
            self.assertEqual(response.status, 200)
            self.assertIn("keep-alive", response.connection_tokens())
            self.assertIsNotNone(response.get("Content-Length"))
            self.assertFalse(response.chunked)
            self.assertEqual(response.json()["path"], "/k%d" % i)
        self.assertEqual(len(backend.requests), 3)

    def test_pipelined_requests_to_three_backends(self):
        backends = [self.http_backend(name) for name in ("one", "two", "three")]
        for i, backend in enumerate(backends):
            self.route("pipe%d.test" % i, backend)
        self.start_proxy()
        client = self.client()
        # The first is the slowest: its answer must still come first.
        client.send(b"GET /p0?delay=0.3 HTTP/1.1\r\nHost: pipe0.test\r\n\r\n"
                    b"GET /p1 HTTP/1.1\r\nHost: pipe1.test\r\n\r\n"
                    b"GET /p2 HTTP/1.1\r\nHost: pipe2.test\r\n\r\n")
        for i, name in enumerate(("one", "two", "three")):
            response = client.read_response()
            self.assertEqual(response.status, 200)
            body = response.json()
            self.assertEqual(body["backend"], name, "response %d from the wrong backend" % i)
            self.assertTrue(body["path"].startswith("/p%d" % i))
            self.assertEqual(body["headers"]["Host"], "pipe%d.test" % i)
        for backend in backends:
            self.assertEqual(len(backend.requests), 1)


    def test_pipelined_requests_with_bodies(self):
        one, two = self.http_backend("one"), self.http_backend("two")
        self.route("pb1.test", one)
        self.route("pb2.test", two)
        self.start_proxy()
        client = self.client()
        client.send(b"POST /a HTTP/1.1\r\nHost: pb1.test\r\nContent-Length: 11\r\n\r\nhello world"
                    b"POST /b HTTP/1.1\r\nHost: pb2.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
                    b"GET /c HTTP/1.1\r\nHost: pb1.test\r\n\r\n")
        expected = [("one", "/a", 11), ("two", "/b", 7), ("one", "/c", 0)]
        for name, path, length in expected:
            response = client.read_response()
            self.assertEqual(response.status, 200)
            body = response.json()
            self.assertEqual((body["backend"], body["path"], body["body_length"]),
                             (name, path, length))


class BodyStreamingTest(RelayTestCase):
    def test_post_content_length_body_arrives_intact(self):
        digest_backend = self.http_backend("digest", DigestHandler)
        echo = self.http_backend("echo")
        self.route("post.test", digest_backend)
        self.route("echo.test", echo)
        self.start_proxy()
        payload = os.urandom(3 * MB + 17)
        status, _, body = self.request("POST", "/upload", host="post.test", body=payload,
                                       timeout=20)
        self.assertEqual(status, 200)
        result = json.loads(body)
        self.assertEqual(result["length"], len(payload))
        self.assertEqual(result["sha256"], hashlib.sha256(payload).hexdigest())
        self.assertEqual(header_values(result["headers"], "Content-Length"), [str(len(payload))])
        # EchoHandler reports the same length.
        status, _, body = self.request("POST", "/upload", host="echo.test", body=payload,
                                       timeout=20)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["body_length"], len(payload))

    def test_post_chunked_body_arrives_intact(self):
        backend = self.http_backend("digest", DigestHandler)
        echo = self.http_backend("echo")
        self.route("chunk.test", backend)
        self.route("echo.test", echo)
        self.start_proxy()
        payload = os.urandom(2 * MB + 333)
        sizes = [1, 10, 4096, 65536, 100000, 1 * MB]

        def pieces():
            offset, i = 0, 0
            while offset < len(payload):
                size = sizes[i % len(sizes)]
                yield payload[offset:offset + size]
                offset += size
                i += 1

        for host in ("chunk.test", "echo.test"):
            conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=20)
            try:
                conn.request("POST", "/chunked", body=pieces(), encode_chunked=True,
                             headers={"Host": host, "Transfer-Encoding": "chunked"})
                response = conn.getresponse()
                self.assertEqual(response.status, 200)
                result = json.loads(response.read())
            finally:
                conn.close()
            if host == "chunk.test":
                self.assertEqual(result["length"], len(payload))
                self.assertEqual(result["sha256"], hashlib.sha256(payload).hexdigest())
            else:
                self.assertEqual(result["body_length"], len(payload))

    def test_large_content_length_response(self):
        backend = self.http_backend("one")
        self.route("big.test", backend)
        self.start_proxy()
        size = 50_000_000
        status, headers, body = self.request("GET", "/?size=%d" % size, host="big.test",
                                             timeout=30)
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("content-length"), str(size))
        self.assertEqual(len(body), size)
        self.assertEqual(body.count(b"x"), size)

    def test_large_chunked_response(self):
        backend = self.http_backend("one")
        self.route("bigchunk.test", backend)
        self.start_proxy()
        size = 5_000_000
        client = self.client(timeout=30)
        client.send(b"GET /?size=%d&chunked=1 HTTP/1.1\r\nHost: bigchunk.test\r\n\r\n" % size)
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertTrue(response.chunked)
        self.assertIsNone(response.get("Content-Length"))
        self.assertEqual(len(response.body), size)
        self.assertEqual(response.body.count(b"x"), size)
        # Still usable afterwards.
        client.send(b"GET /after HTTP/1.1\r\nHost: bigchunk.test\r\n\r\n")
        self.assertEqual(client.read_response().json()["path"], "/after")

    def test_client_leaving_mid_download_frees_the_stalled_backend_at_once(self):
        """A client that stops reading and then resets, while the backend has stalled after
        30 MB: the relay (a write to the client overlapping a read from the backend) ends at
        once and lets the backend connection go, instead of waiting out tcpTimeout."""
        backend_closed = threading.Event()
        stall = threading.Event()
        self._stoppers.append(stall.set)

        def script(conn):
            harness.read_request_head(conn)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (100 * MB))
                conn.sendall(b"z" * (30 * MB))
                conn.settimeout(30)
                while conn.recv(65536):  # nothing more is sent; EOF when the proxy lets go
                    pass
            except OSError:
                pass
            backend_closed.set()
            stall.wait(30)
        backend = self.raw_backend(script)
        self.route("leave.test", backend)
        self.start_proxy(tcpTimeout=30)
        sock = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: leave.test\r\n\r\n")
        self.assertTrue(sock.recv(65536).startswith(b"HTTP/1.1 200"))
        time.sleep(2)  # not reading: the proxy's writes to this client block
        harness.reset(sock)
        self.assertTrue(backend_closed.wait(10), "the backend connection was kept")

    def test_memory_bounded_while_streaming_200mb_response(self):
        total = 200 * MB
        block = b"y" * MB

        def script(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\n\r\n" % total)
            view = memoryview(block)
            for _ in range(total // MB):
                conn.sendall(view)

        backend = self.raw_backend(script)
        warm = self.http_backend("warm")
        self.route("stream.test", backend)
        self.route("warm.test", warm)
        self.start_proxy()
        self.assertEqual(self.request("GET", "/", host="warm.test")[0], 200)
        baseline = process_tree_rss_kb(self.proxy.process.pid)
        received = 0
        with RssSampler(self.proxy.process.pid) as sampler:
            with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=20) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
                s.sendall(b"GET /big HTTP/1.1\r\nHost: stream.test\r\nConnection: close\r\n\r\n")
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = s.recv(65536)
                    self.assertTrue(chunk, "closed before the response head")
                    head += chunk
                head, _, rest = head.partition(b"\r\n\r\n")
                self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
                self.assertIn(b"content-length: %d" % total, head.lower())
                received = len(rest)
                reads = 0
                deadline = time.time() + 60
                while received < total and time.time() < deadline:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    received += len(chunk)
                    reads += 1
                    if reads % 4 == 0:
                        time.sleep(0.001)  # a client slower than the backend
        self.assertEqual(received, total)
        growth_mb = (sampler.peak_kb - baseline) / 1024
        self.assertLess(growth_mb, 30, "proxy RSS grew by %.1f MB while relaying 200 MB"
                        % growth_mb)

    def test_memory_bounded_while_streaming_150mb_upload(self):
        total = 150 * MB
        backend = self.http_backend("digest", DigestHandler)
        backend.server.read_pause = 0.001  # a backend slower than the client
        self.route("upload.test", backend)
        self.start_proxy()
        self.assertEqual(self.request("POST", "/", host="upload.test", body=b"warm")[0], 200)
        baseline = process_tree_rss_kb(self.proxy.process.pid)
        block = b"z" * MB
        with RssSampler(self.proxy.process.pid) as sampler:
            client = self.client(timeout=60)
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
            client.send(b"POST /up HTTP/1.1\r\nHost: upload.test\r\nContent-Length: %d\r\n\r\n"
                        % total)
            for _ in range(total // MB):
                client.send(block)
            response = client.read_response()
        self.assertEqual(response.status, 200)
        result = response.json()
        self.assertEqual(result["length"], total)
        self.assertEqual(result["sha256"], hashlib.sha256(block * (total // MB)).hexdigest())
        growth_mb = (sampler.peak_kb - baseline) / 1024
        self.assertLess(growth_mb, 30, "proxy RSS grew by %.1f MB while relaying a 150 MB upload"
                        % growth_mb)

    def _close_delimited_backend(self, payload):
        def script(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            for i in range(0, len(payload), 50000):
                conn.sendall(payload[i:i + 50000])
            # closing delimits the body
        return self.raw_backend(script)

    def test_close_delimited_response_to_http11_client(self):
        payload = os.urandom(300000)
        backend = self._close_delimited_backend(payload)
        self.route("eof.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET /eof HTTP/1.1\r\nHost: eof.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, payload)
        if response.chunked:
            # Re-chunked: the client connection remains usable.
            client.send(b"GET /again HTTP/1.1\r\nHost: eof.test\r\n\r\n")
            again = client.read_response()
            self.assertEqual(again.status, 200)
            self.assertEqual(again.body, payload)
        else:
            self.assertIsNone(response.get("Content-Length"))
            self.assertTrue(client.wait_closed(1))

    def test_close_delimited_response_to_http10_client(self):
        payload = os.urandom(300000)
        backend = self._close_delimited_backend(payload)
        self.route("eof10.test", backend)
        self.start_proxy()
        for extra in (b"", b"Connection: keep-alive\r\n"):
            client = self.client()
            client.send(b"GET /eof HTTP/1.0\r\nHost: eof10.test\r\n" + extra + b"\r\n")
            response = client.read_response()
            self.assertEqual(response.status, 200)
            self.assertFalse(response.chunked, "HTTP/1.0 clients cannot read chunked bodies")
            self.assertNotIn("keep-alive", response.connection_tokens())
            self.assertEqual(response.body, payload)
            # read_response read up to EOF (no Content-Length): the proxy closed it.
            self.assertIsNone(response.get("Content-Length"))
            self.assertTrue(client.wait_closed(1))

    def test_chunked_response_to_http10_client(self):
        backend = self.http_backend("one")
        self.route("ch10.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET /?size=100000&chunked=1 HTTP/1.0\r\nHost: ch10.test\r\n"
                    b"Connection: keep-alive\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertFalse(response.chunked, "HTTP/1.0 clients cannot read chunked bodies")
        self.assertEqual(response.body, b"x" * 100000)
        self.assertTrue(client.wait_closed(1))


class BodilessResponsesTest(RelayTestCase):
    def test_head_has_no_body_but_keeps_content_length(self):
        backend = self.http_backend("one")
        self.route("head.test", backend)
        self.start_proxy()
        client = self.client()
        for size in (1234, 0, 70000):
            client.send(b"HEAD /?size=%d HTTP/1.1\r\nHost: head.test\r\n\r\n" % size)
            response = client.read_response(head_request=True)
            self.assertEqual(response.status, 200)
            self.assertEqual(response.get("Content-Length"), str(size))
        # Any body bytes after a HEAD answer would be read here as the next status line.
        client.send(b"GET /next HTTP/1.1\r\nHost: head.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json()["path"], "/next")
        self.assertEqual([r["method"] for r in backend.requests], ["HEAD"] * 3 + ["GET"])

    def test_head_of_chunked_resource(self):
        backend = self.http_backend("one")
        self.route("headc.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"HEAD /?size=5000&chunked=1 HTTP/1.1\r\nHost: headc.test\r\n\r\n")
        response = client.read_response(head_request=True)
        self.assertEqual(response.status, 200)
        client.send(b"GET /next HTTP/1.1\r\nHost: headc.test\r\n\r\n")
        self.assertEqual(client.read_response().json()["path"], "/next")

    def test_204_and_304_carry_no_body_and_connection_stays_usable(self):
        backend = self.http_backend("one")
        self.route("nobody.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET /?status=204 HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
        self.assertEqual(client.read_response().status, 204)
        client.send(b"GET /?status=304&size=50 HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
        self.assertEqual(client.read_response().status, 304)
        client.send(b"GET /after HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json()["path"], "/after")

    def test_204_and_304_from_raw_backend(self):
        def script(conn):
            data = b""
            for status in (b"204 No Content", b"304 Not Modified", b"200 OK"):
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                _, _, data = data.partition(b"\r\n\r\n")
                if status == b"200 OK":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
                elif status.startswith(b"304"):
                    # A 304 may describe the chunked representation: still no body.
                    conn.sendall(b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n")
                else:
                    conn.sendall(b"HTTP/1.1 204 No Content\r\nETag: \"e\"\r\n\r\n")
        backend = self.raw_backend(script)
        self.route("rawnb.test", backend)
        self.start_proxy(httpKeepAlive=True)
        client = self.client()
        client.send(b"GET /a HTTP/1.1\r\nHost: rawnb.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 204)
        self.assertIsNone(response.get("Transfer-Encoding"))
        client.send(b"GET /b HTTP/1.1\r\nHost: rawnb.test\r\nIf-None-Match: \"e\"\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 304)
        client.send(b"GET /c HTTP/1.1\r\nHost: rawnb.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"done")

    def test_interim_1xx_from_backend_then_final_response(self):
        def script(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            time.sleep(0.5)
        backend = self.raw_backend(script)
        self.route("hints.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET / HTTP/1.1\r\nHost: hints.test\r\n\r\n")
        final, interim = client.read_final_response()
        self.assertEqual(final.status, 200)
        self.assertEqual(final.body, b"ok")
        for response in interim:
            self.assertEqual(response.status, 103)
        client.send(b"GET / HTTP/1.1\r\nHost: hints.test\r\n\r\n")
        final, _ = client.read_final_response()
        self.assertEqual(final.body, b"ok")

    def test_many_large_interim_answers_keep_memory_bounded(self):
        # Each interim answer's fields are freed before the next answer is read, however many
        # come: 500 of 41 KB each must not add up in the worker.
        count, link = 500, b"</a.css>; rel=preload, " * 1800  # 41 KB each
        interim = b"HTTP/1.1 103 Early Hints\r\nLink: " + link + b"\r\n\r\n"

        def script(conn):
            harness.read_request_head(conn)
            for _ in range(count):
                conn.sendall(interim)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            time.sleep(0.5)
        backend = self.raw_backend(script)
        self.route("manyhints.test", backend)
        self.start_proxy()
        self.assertGreater(len(interim) * count, 19 * MB)

        def exchange():
            client = self.client(timeout=20)
            client.send(b"GET / HTTP/1.1\r\nHost: manyhints.test\r\n\r\n")
            final, relayed = client.read_final_response()
            self.assertEqual(final.status, 200)
            self.assertEqual(final.body, b"ok")
            self.assertEqual(len(relayed), count)
            client.close()
        # Warm up first: in the ASan build, freed memory sits in a 16 MB quarantine
        # (scripts/test.sh) before it can be reused; then a second for the worker's heap trim.
        exchange()
        exchange()
        time.sleep(1.2)
        baseline = process_tree_rss_kb(self.proxy.process.pid)
        with RssSampler(self.proxy.process.pid) as sampler:
            exchange()
        growth_mb = (sampler.peak_kb - baseline) / 1024
        self.assertLess(growth_mb, 2, "proxy RSS grew by %.1f MB over %d interim answers"
                        % (growth_mb, count))


class LargeHeadersTest(RelayTestCase):
    def test_large_headers_both_ways_arrive_intact_request_after_request(self):
        # Fields spanning several blocks of a message's header memory, on one connection whose
        # requests reuse it: every name and value must arrive as sent.
        backend = self.http_backend("echo")
        self.route("bigheads.test", backend)
        self.start_proxy()
        client = self.client()
        for round_ in range(3):
            sent = {"X-Field-%d" % i: ("%d-%d-" % (round_, i)) * 120 for i in range(40)}
            wanted = {"X-Answer-%d" % i: ("a%d-%d" % (round_, i)) * 60 for i in range(8)}
            query = "&".join("header=%s:%s" % item for item in wanted.items())
            lines = "".join("%s: %s\r\n" % item for item in sent.items())
            client.send(("GET /big?%s HTTP/1.1\r\nHost: bigheads.test\r\n%s\r\n"
                         % (query, lines)).encode())
            response = client.read_response()
            self.assertEqual(response.status, 200)
            echoed = json.loads(response.body)["headers"]
            for name, value in sent.items():
                self.assertEqual(echoed.get(name), value, name)
            for name, value in wanted.items():
                self.assertEqual(response.get(name), value, name)


class ExpectContinueTest(RelayTestCase):
    def test_expect_100_continue(self):
        backend = self.http_backend("one")
        self.route("expect.test", backend)
        self.start_proxy()
        client = self.client(timeout=5)
        body = os.urandom(5000)
        client.send(b"POST /up HTTP/1.1\r\nHost: expect.test\r\nContent-Length: %d\r\n"
                    b"Expect: 100-continue\r\n\r\n" % len(body))
        interim = client.read_response()
        self.assertEqual(interim.status, 100)
        self.assertTrue(interim.raw_head.startswith(b"HTTP/1.1 100 Continue"), interim.raw_head)
        client.send(body)
        final = client.read_response()
        self.assertEqual(final.status, 200)
        result = final.json()
        self.assertEqual(result["body_length"], len(body))
        self.assertEqual(len(backend.requests), 1)
        names = [k.lower() for k, _ in backend.requests[0]["header_list"]]
        self.assertNotIn("expect", names)
        # The connection goes on.
        client.send(b"GET /next HTTP/1.1\r\nHost: expect.test\r\n\r\n")
        self.assertEqual(client.read_response().json()["path"], "/next")


class HeadersTest(RelayTestCase):
    HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade")

    def test_header_blocks_are_relayed_exactly(self):
        """Start lines, repeated fields (in their order; Beast's field list groups them by
        name, which HTTP allows), odd casing and empty values survive the proxy's own header
        serialization, both ways."""
        seen = []

        def script(conn):
            seen.append(harness.read_request_head(conn))
            conn.sendall(b"HTTP/1.1 299 Quite Fine\r\nSet-Cookie: a=1\r\nX-CaSe: v\r\n"
                         b"X-Empty:\r\nSet-Cookie: b=2\r\nContent-Length: 3\r\n\r\nabc")
        backend = self.raw_backend(script)
        self.route("exact.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"PURGE /p/a%20th?q=1&r=2 HTTP/1.1\r\nHost: exact.test\r\n"
                    b"X-Dup: one\r\nx-lower: v\r\nX-Dup: two\r\nX-Blank:\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.raw_head.split(b"\r\n", 1)[0], b"HTTP/1.1 299 Quite Fine")
        self.assertEqual(response.body, b"abc")
        names = [name for name, _ in response.headers]
        self.assertEqual(names[:4], ["Set-Cookie", "Set-Cookie", "X-CaSe", "X-Empty"])
        self.assertEqual(response.get_all("Set-Cookie"), ["a=1", "b=2"])
        self.assertEqual(response.get("X-Empty"), "")
        self.assertTrue(response.raw_head.endswith(b"\r\n\r\n"))

        lines = seen[0].split(b"\r\n")
        self.assertEqual(lines[0], b"PURGE /p/a%20th?q=1&r=2 HTTP/1.1")
        self.assertEqual(lines[1], b"Host: exact.test")
        self.assertEqual(lines[2:6], [b"X-Dup: one", b"X-Dup: two", b"x-lower: v", b"X-Blank: "])
        self.assertTrue(seen[0].endswith(b"\r\n\r\n"))

    def test_missing_reason_phrase_gets_the_standard_one(self):
        def script(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n")
        backend = self.raw_backend(script)
        self.route("noreason.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET / HTTP/1.1\r\nHost: noreason.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.raw_head.split(b"\r\n", 1)[0], b"HTTP/1.1 404 Not Found")

    def test_request_hop_by_hop_headers_not_forwarded(self):
        backend = self.http_backend("one")
        self.route("hop.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET /hop HTTP/1.1\r\n"
                    b"Host: Hop.Test:8080\r\n"
                    b"Connection: keep-alive, X-Foo\r\n"
                    b"X-Foo: secret\r\n"
                    b"Keep-Alive: timeout=5\r\n"
                    b"Proxy-Connection: keep-alive\r\n"
                    b"TE: trailers\r\n"
                    b"Trailer: X-Checksum\r\n"
                    b"Upgrade: h2c\r\n"
                    b"X-Custom: kept\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        headers = backend.requests[0]["header_list"]
        names = [k.lower() for k, _ in headers]
        for name in ("x-foo", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"):
            self.assertNotIn(name, names)
        for value in header_values(headers, "Connection"):
            # Only the proxy's own framing for the backend connection may appear.
            self.assertEqual(value.lower(), "close")
        self.assertEqual(header_values(headers, "X-Custom"), ["kept"])
        self.assertEqual(header_values(headers, "Host"), ["Hop.Test:8080"])

        # Connection: close plus a named header: neither forwarded, client connection closed.
        client.send(b"GET /hop2 HTTP/1.1\r\nHost: hop.test:80\r\nConnection: close, X-Bar\r\n"
                    b"X-Bar: secret\r\nX-Baz: kept\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertIn("close", response.connection_tokens())
        self.assertTrue(client.wait_closed(2))
        headers = backend.requests[1]["header_list"]
        names = [k.lower() for k, _ in headers]
        self.assertNotIn("x-bar", names)
        self.assertEqual(header_values(headers, "X-Baz"), ["kept"])
        self.assertEqual(header_values(headers, "Host"), ["hop.test:80"])
        for value in header_values(headers, "Connection"):
            self.assertEqual(value.lower(), "close")

    def test_request_hop_by_hop_with_backend_keep_alive(self):
        backend = self.http_backend("one")
        self.route("hopka.test", backend)
        self.start_proxy(httpKeepAlive=True)
        client = self.client()
        client.send(b"GET /hop HTTP/1.1\r\nHost: hopka.test\r\nConnection: X-Foo, close\r\n"
                    b"X-Foo: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\r\n")
        self.assertEqual(client.read_response().status, 200)
        headers = backend.requests[0]["header_list"]
        names = [k.lower() for k, _ in headers]
        for name in ("x-foo", "keep-alive", "te"):
            self.assertNotIn(name, names)
        for value in header_values(headers, "Connection"):
            self.assertNotIn("x-foo", value.lower())
            self.assertNotIn("close", value.lower(),
                             "the client's Connection: close leaked to the pooled backend")

    def test_response_hop_by_hop_headers_not_forwarded(self):
        def script(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\n"
                         b"Content-Length: 5\r\n"
                         b"Connection: keep-alive, X-Secret\r\n"
                         b"X-Secret: s3cr3t\r\n"
                         b"Keep-Alive: timeout=5, max=100\r\n"
                         b"Proxy-Connection: keep-alive\r\n"
                         b"TE: trailers\r\n"
                         b"Trailer: X-Checksum\r\n"
                         b"Upgrade: h2c\r\n"
                         b"X-Kept: yes\r\n\r\nhello")
            time.sleep(0.3)
        backend = self.raw_backend(script)
        self.route("rhop.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET / HTTP/1.1\r\nHost: rhop.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"hello")
        names = [k.lower() for k, _ in response.headers]
        for name in ("x-secret", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"):
            self.assertNotIn(name, names, "response hop-by-hop header %s relayed" % name)
        self.assertNotIn("x-secret", response.connection_tokens())
        self.assertEqual(response.get_all("X-Kept"), ["yes"])
        self.assertEqual(response.get("Content-Length"), "5")

    def test_forwarded_headers_added_when_absent(self):
        backend = self.http_backend("one")
        self.route("xff.test", backend)
        self.start_proxy()
        status, _, body = self.request("GET", "/", host="xff.test")
        self.assertEqual(status, 200)
        headers = backend.requests[0]["header_list"]
        expected = {"X-Forwarded-For": "::ffff:127.0.0.1",
                    "X-Real-IP": "::ffff:127.0.0.1",
                    "X-Forwarded-Proto": "http",
                    "X-Forwarded-Protocol": "http",
                    "X-Forwarded-Port": str(self.proxy.port)}
        for name, value in expected.items():
            self.assertEqual(header_values(headers, name), [value], name)

    def test_forwarded_headers_kept_when_present(self):
        backend = self.http_backend("one")
        self.route("xffk.test", backend)
        self.start_proxy()
        sent = {"X-Forwarded-For": "203.0.113.7, 198.51.100.1",
                "X-Real-IP": "203.0.113.7",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Protocol": "https",
                "X-Forwarded-Port": "443"}
        status, _, _ = self.request("GET", "/", host="xffk.test", headers=sent)
        self.assertEqual(status, 200)
        headers = backend.requests[0]["header_list"]
        for name, value in sent.items():
            self.assertEqual(header_values(headers, name), [value], name)


class TimeoutTest(RelayTestCase):
    def test_silent_backend_gives_504_after_tcp_timeout(self):
        backend = self.silent_backend()
        self.route("silent.test", backend)
        self.start_proxy(tcpTimeout=1)
        started = time.time()
        status, headers, _ = self.request("GET", "/", host="silent.test", timeout=10)
        elapsed = time.time() - started
        self.assertEqual(status, 504)
        self.assertEqual(headers.get("content-type"), "text/html")
        self.assertGreaterEqual(elapsed, 0.8)
        self.assertLess(elapsed, 4.0)
        self.assertEqual(backend.connections, 1)

    def test_idle_client_connections_are_closed(self):
        backend = self.http_backend("one")
        self.route("idle.test", backend)
        self.start_proxy(tcpTimeout=1)
        fresh = self.client()           # never sends anything
        used = self.client()            # one request, then idle
        used.send(b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        self.assertEqual(used.read_response().status, 200)
        started = time.time()
        self.assertTrue(fresh.wait_closed(4), "idle connection kept open past tcpTimeout")
        self.assertTrue(used.wait_closed(4), "idle keep-alive connection kept open")
        self.assertLess(time.time() - started, 4.5)


class IdleKeepAliveTest(RelayTestCase):
    """Idle keep-alive connections are parked outside any session (src/proxy/idle_connections):
    they must stay cheap, come back to life on their next request, time out and drain."""

    def test_many_idle_connections_are_cheap_and_all_come_back(self):
        backend = self.http_backend("one")
        self.route("idle.test", backend)
        self.start_proxy(tcpTimeout=60)
        # Enough connections and requests to fill the allocator's caches, ASan's 16 MB
        # quarantine included (scripts/test.sh), so that what follows measures what idle
        # connections keep. Like the measurement (an allocator keeps freed blocks per size):
        # new connections, a request, a park, another request.
        request = b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n"
        for _ in range(1000):
            warm = self.client()
            for _ in range(2):
                warm.send(request)
                self.assertEqual(warm.read_response().status, 200)
            warm.close()
        time.sleep(0.3)
        before = process_tree_rss_kb(self.proxy.process.pid)
        count = 600
        clients = []
        for _ in range(count):  # one at a time: measures what an idle connection keeps
            c = self.client()
            c.send(b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
            clients.append(c)
        time.sleep(0.5)
        per_connection = (process_tree_rss_kb(self.proxy.process.pid) - before) * 1024 / count
        # A session kept suspended between requests costs about 5 KB; parked, under 1 KB
        # plus allocator slack.
        self.assertLess(per_connection, 2500, "%d bytes per idle connection" % per_connection)
        for i, c in enumerate(clients):
            c.send(b"GET /again HTTP/1.1\r\nHost: idle.test\r\n\r\n")
            response = c.read_response()
            self.assertEqual(response.status, 200, "connection %d" % i)
            self.assertEqual(response.json()["path"], "/again")

    def test_connections_the_clients_close_are_closed(self):
        # Closed after one request (parked at once), and after two: while their sessions still
        # wait for a next request (IdleConnections::kWarmPeriod, 0.2 s), or once parked. The
        # proxy closes every one of them, and only them.
        backend = self.http_backend("one")
        self.route("idle.test", backend)
        self.start_proxy(tcpTimeout=60)
        request = b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n"
        kept = self.client()
        kept.send(request)
        self.assertEqual(kept.read_response().status, 200)
        for requests, pause in ((1, 0), (2, 0), (2, 0.6)):
            clients = [self.client() for _ in range(5)]
            for c in clients:
                for _ in range(requests):
                    c.send(request)
                    self.assertEqual(c.read_response().status, 200)
            time.sleep(pause)
            for c in clients:
                c.close()
            harness.wait_until(lambda: harness.half_closed_by_peer(self.proxy.port) == 0, timeout=3)
            self.assertEqual(harness.half_closed_by_peer(self.proxy.port), 0,
                             "connections closed by their clients left open (%d requests, "
                             "pause %s)" % (requests, pause))
        kept.send(request)
        self.assertEqual(kept.read_response().status, 200, "the open connection was closed")

    def test_parked_connection_times_out_from_its_last_request(self):
        backend = self.http_backend("one")
        self.route("idle.test", backend)
        self.start_proxy(tcpTimeout=2)
        early = self.client()
        early.send(b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        self.assertEqual(early.read_response().status, 200)
        time.sleep(1)
        late = self.client()
        late.send(b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        self.assertEqual(late.read_response().status, 200)
        # The first closes about 1 s before the second: each has its own 2 s.
        self.assertTrue(early.wait_closed(3), "idle connection kept open past tcpTimeout")
        early_closed = time.time()
        self.assertTrue(late.wait_closed(3), "idle connection kept open past tcpTimeout")
        self.assertGreater(time.time() - early_closed, 0.5, "closed with the earlier one")

    def test_busy_connection_gone_idle_times_out_from_its_last_request(self):
        # Several requests: the session waits warm first, then parks; tcpTimeout still counts
        # from the last response.
        backend = self.http_backend("one")
        self.route("idle.test", backend)
        self.start_proxy(tcpTimeout=2)
        c = self.client()
        for i in range(3):
            c.send(b"GET /b%d HTTP/1.1\r\nHost: idle.test\r\n\r\n" % i)
            self.assertEqual(c.read_response().status, 200)
        last_response = time.time()
        self.assertTrue(c.wait_closed(4), "idle connection kept open past tcpTimeout")
        self.assertGreater(time.time() - last_response, 1.5)

    def test_parked_connection_still_answers_after_a_pause(self):
        backend = self.http_backend("one")
        self.route("idle.test", backend)
        self.start_proxy(tcpTimeout=5)
        c = self.client()
        for i in range(3):
            c.send(b"GET /p%d HTTP/1.1\r\nHost: idle.test\r\n\r\n" % i)
            response = c.read_response()
            self.assertEqual(response.status, 200)
            self.assertEqual(response.json()["path"], "/p%d" % i)
            time.sleep(0.5)
        self.assertEqual(len(self.access_log_lines(3)), 3)

    def test_sigterm_closes_parked_connections_at_once(self):
        # Parked connections have no session to ask: the drain closes them itself, so the
        # worker exits long before gracefulWait, while a request in flight still completes.
        backend = self.http_backend("one")
        self.route("idle.test", backend)
        self.start_proxy(workers=1, gracefulWait=30, tcpTimeout=60)
        request = b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n"
        parked_at_once = self.client()  # one request: parked at once
        parked_at_once.send(request)
        self.assertEqual(parked_at_once.read_response().status, 200)
        parked_after_warm = self.client()  # several: waits warm, then parked
        for _ in range(3):
            parked_after_warm.send(request)
            self.assertEqual(parked_after_warm.read_response().status, 200)
        time.sleep(0.5)
        in_flight = self.client()
        in_flight.send(b"GET /slow?delay=1 HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        time.sleep(0.3)
        self.proxy.signal(signal.SIGTERM)
        started = time.time()
        self.assertTrue(parked_at_once.wait_closed(3), "parked connection left open by the drain")
        self.assertTrue(parked_after_warm.wait_closed(3), "parked connection left open")
        self.assertLess(time.time() - started, 2.5)
        response = in_flight.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.get("Connection"), "close")
        self.assertEqual(self.proxy.process.wait(10), 0)

    def test_parked_connections_count_against_max_connections(self):
        backend = self.http_backend("one")
        self.route("idle.test", backend)
        self.start_proxy(workers=1, maxConnections=3, tcpTimeout=60)
        request = b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n"
        parked = []
        for _ in range(3):
            c = self.client()
            c.send(request)
            self.assertEqual(c.read_response().status, 200)
            parked.append(c)
        time.sleep(0.3)
        refused = self.client()
        refused.send(request)
        self.assertEqual(refused.read_response().status, 503)
        parked[0].close()
        harness.wait_until(lambda: harness.half_closed_by_peer(self.proxy.port) == 0, timeout=3)
        time.sleep(0.3)
        admitted = self.client()
        admitted.send(request)
        self.assertEqual(admitted.read_response().status, 200)
        # The other parked ones still answer.
        for c in parked[1:]:
            c.send(request)
            self.assertEqual(c.read_response().status, 200)


class ShortKeepAliveHandler(harness.EchoHandler):
    timeout = 0.3  # closes a kept-alive connection idle this long (a backend's keep-alive timeout)


class ClosingAtOnceHandler(harness.EchoHandler):
    timeout = 0.02  # closes its side almost at once, without saying so in the response


class BackendPoolTest(RelayTestCase):
    def test_pooled_connection_the_backend_closed_is_not_used(self):
        # The pool watches an idle connection (UpstreamPool::kWatchDelay after its release) and
        # drops it when the backend closes it: a request with a body, which could not be
        # replayed, goes to a fresh connection.
        backend = self.http_backend("short-keep-alive", ShortKeepAliveHandler)
        self.route("pool.test", backend)
        self.start_proxy(httpKeepAlive=True)
        status, _, _ = self.request("GET", "/first", host="pool.test")
        self.assertEqual(status, 200)
        time.sleep(1.0)
        status, _, body = self.request("POST", "/second", host="pool.test", body=b"x" * 1000)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["body_length"], 1000)
        self.assertEqual(len({r["client_port"] for r in backend.requests}), 2)
        self.assertEqual(self.redis.exists("dead:pool.test"), 0)

    def test_pooled_connection_closed_before_its_watch_is_retried_fresh(self):
        # Closed by the backend before the pool watched it: the request that takes it fails on
        # it and is sent again on a fresh connection, unseen by the client, no dead mark.
        backend = self.http_backend("closing", ClosingAtOnceHandler)
        self.route("pool.test", backend)
        self.start_proxy(httpKeepAlive=True)
        client = self.client()
        for i in range(3):
            client.send(b"GET /r%d HTTP/1.1\r\nHost: pool.test\r\n\r\n" % i)
            response = client.read_response()
            self.assertEqual(response.status, 200)
            self.assertEqual(response.json()["path"], "/r%d" % i)
            time.sleep(0.05)
        self.assertEqual(len(backend.requests), 3)
        self.assertEqual(self.redis.exists("dead:pool.test"), 0)

    def test_request_with_a_body_does_not_take_a_connection_closed_before_its_watch(self):
        # A POST with a body cannot be sent again once its body has gone: the pool peeks at a
        # connection it has not watched yet before handing it to such a request.
        backend = self.http_backend("closing", ClosingAtOnceHandler)
        self.route("pool.test", backend)
        self.start_proxy(httpKeepAlive=True)
        client = self.client()
        for i in range(3):
            client.send(b"POST /p%d HTTP/1.1\r\nHost: pool.test\r\nContent-Length: 5\r\n\r\n"
                        b"hello" % i)
            response = client.read_response()
            self.assertEqual(response.status, 200)
            self.assertEqual(response.json()["body_length"], 5)
            time.sleep(0.05)
        self.assertEqual(len(backend.requests), 3)
        self.assertEqual(self.redis.exists("dead:pool.test"), 0)

    def test_keep_alive_reuses_one_backend_connection(self):
        backend = self.counting_backend()
        self.route("pool.test", backend)
        self.start_proxy(httpKeepAlive=True)
        for i in range(3):
            status, _, body = self.request("GET", "/r%d" % i, host="pool.test")
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["path"], "/r%d" % i)
        self.assertEqual(len(backend.requests), 3)
        self.assertEqual(len({r["client_port"] for r in backend.requests}), 1)
        self.assertEqual(backend.server.connections, 1)
        for request in backend.requests:
            for value in header_values(request["header_list"], "Connection"):
                self.assertNotIn("close", value.lower())

    def test_no_keep_alive_one_backend_connection_per_request(self):
        backend = self.counting_backend()
        self.route("nopool.test", backend)
        self.start_proxy(httpKeepAlive=False)
        client = self.client()   # even on one kept-alive client connection
        for i in range(3):
            client.send(b"GET /r%d HTTP/1.1\r\nHost: nopool.test\r\n\r\n" % i)
            response = client.read_response()
            self.assertEqual(response.status, 200)
        self.assertEqual(len(backend.requests), 3)
        self.assertEqual(len({r["client_port"] for r in backend.requests}), 3)
        self.assertEqual(backend.server.connections, 3)
        # The backend is told to close, and the proxy does close its side.
        self.assertTrue(harness.wait_until(lambda: backend.server.open_connections == 0, 3))

    def test_max_sockets_one_serialises_concurrent_requests(self):
        backend = self.counting_backend()
        self.route("slots.test", backend)
        self.start_proxy(httpKeepAlive=True, maxSockets=1)
        results = []

        def fetch(i):
            try:
                results.append(self.request("GET", "/?delay=1&n=%d" % i, host="slots.test",
                                            timeout=15))
            except Exception as error:  # reported by the assertions below
                results.append(error)

        started = time.time()
        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        elapsed = time.time() - started
        self.assertEqual(len(results), 2)
        for result in results:
            self.assertIsInstance(result, tuple, result)
            self.assertEqual(result[0], 200)
        self.assertEqual(len(backend.requests), 2)
        self.assertEqual(backend.server.max_in_flight, 1)
        self.assertEqual(backend.server.max_open_connections, 1)
        self.assertEqual(backend.server.connections, 1)
        self.assertGreaterEqual(elapsed, 1.9)


class StrictParsingTest(RelayTestCase):
    def setUp(self):
        super().setUp()
        self.backend = self.counting_backend()
        for host in ("strict.test", "other.test"):
            self.route(host, self.backend)
        self.start_proxy()

    def assertRefused(self, request, status=400):
        data, closed = exchange_until_close(self.proxy.port, request)
        self.assertEqual(status_of(data), status, data[:300])
        self.assertTrue(closed, "connection left open after a refused request")
        self.assertEqual(data.count(b"HTTP/1.1 "), 1, "more than one response: %r" % data[:500])
        self.assertEqual(self.backend.server.connections, 0, "the request reached the backend")
        self.assertEqual(self.backend.requests, [])

    def test_sanity_the_route_works(self):
        status, _, _ = self.request("GET", "/", host="strict.test")
        self.assertEqual(status, 200)

    def test_content_length_with_transfer_encoding(self):
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: strict.test\r\nContent-Length: 5\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                           b"GET /smuggled HTTP/1.1\r\nHost: strict.test\r\n\r\n")
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: strict.test\r\n"
                           b"Transfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n"
                           b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: strict.test\r\n\r\n")

    def test_differing_content_lengths(self):
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: strict.test\r\nContent-Length: 5\r\n"
                           b"Content-Length: 6\r\n\r\nhello!")
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: strict.test\r\nContent-Length: 5, 6\r\n"
                           b"\r\nhello!")

    def test_transfer_encoding_not_ending_in_chunked(self):
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: strict.test\r\n"
                           b"Transfer-Encoding: gzip\r\n\r\nabcdef")
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: strict.test\r\n"
                           b"Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n")

    def test_two_host_headers(self):
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: strict.test\r\nHost: other.test\r\n\r\n")
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: strict.test\r\nHost: strict.test\r\n\r\n")

    def test_headers_over_64kb(self):
        big = b"X-Big: " + b"a" * (70 * 1024) + b"\r\n"
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: strict.test\r\n" + big + b"\r\n",
                           status=431)
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 2000) for i in range(40))
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: strict.test\r\n" + many + b"\r\n",
                           status=431)

    def test_headers_just_under_the_limit_are_accepted(self):
        big = b"X-Big: " + b"a" * (40 * 1024) + b"\r\n"
        data, _ = exchange_until_close(
            self.proxy.port,
            b"GET / HTTP/1.1\r\nHost: strict.test\r\nConnection: close\r\n" + big + b"\r\n")
        self.assertEqual(status_of(data), 200, data[:300])


class InvalidChunkTest(RelayTestCase):
    """An invalid chunk size: 400 or a closed connection, and the backend never gets a request
    it could complete (the bad chunk, what follows it, or a terminating chunk)."""

    def check(self, request, forbidden):
        recorder = Recorder(limit=4)
        backend = self.raw_backend(recorder)
        self.route("chunky.test", backend)
        self.start_proxy()
        data, closed = exchange_until_close(self.proxy.port, request)
        self.assertTrue(closed, "connection left open after an invalid chunk")
        self.assertIn(status_of(data), (None, 400), data[:300])
        self.assertNotIn(b"HTTP/1.1 200", data)
        # Whatever reached the backend: nothing after the bad chunk, and it was cut off.
        self.assertTrue(harness.wait_until(lambda: len(recorder.received) == backend.connections,
                                           5))
        for received, was_closed in zip(recorder.received, recorder.closed):
            for bad in forbidden:
                self.assertNotIn(bad, received)
            self.assertNotIn(b"0\r\n\r\n", received.partition(b"\r\n\r\n")[2])
            self.assertTrue(was_closed, "backend connection left open with a partial request")

    def test_invalid_first_chunk_size(self):
        self.check(b"POST / HTTP/1.1\r\nHost: chunky.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"zz\r\nhello\r\n0\r\n\r\n",
                   [b"zz", b"hello"])

    def test_invalid_chunk_size_after_a_valid_chunk(self):
        self.check(b"POST / HTTP/1.1\r\nHost: chunky.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nfirst\r\n-3\r\nworld\r\n0\r\n\r\n"
                   b"GET /smuggled HTTP/1.1\r\nHost: chunky.test\r\n\r\n",
                   [b"-3", b"world", b"smuggled"])

    def test_overflowing_chunk_size(self):
        self.check(b"POST / HTTP/1.1\r\nHost: chunky.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
                   [b"ffffffffffffffffffff", b"hello"])


if __name__ == "__main__":
    unittest.main()
