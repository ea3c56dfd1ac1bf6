"""What the relay tests (test_relay_*.py) share: backends that count connections, digest
uploads or record raw bytes, and RelayTestCase, which routes hosts and opens raw clients.
"""
import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

import harness
from raw_http import RawClient

MB = 1024 * 1024


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


# --------------------------------------------------------------------------- base class

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
