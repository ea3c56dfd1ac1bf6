"""What the security tests (test_security_*.py) share: a minimal HTTP response reader, a status
parser, a wait for the proxy to close, a raw backend recording every byte it receives, and
SecurityTestCase (raw and timed requests, killing and restarting the test's Redis).
"""
import contextlib
import re
import select
import socket
import subprocess
import threading
import time

import harness


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

# --------------------------------------------------------------------------- base class

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
