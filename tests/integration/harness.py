"""Integration test harness: a real redis-server, real backends and the real hipache binary,
all on loopback, with free ports. Standard library only.

Typical use:

    class MyTest(harness.ProxyTestCase):
        def test_something(self):
            backend = self.http_backend()                 # echoes the request as JSON
            self.redis.rpush("frontend:a.test", "a", backend.url)
            status, headers, body = self.request("GET", "/", host="a.test")
"""

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BINARY = os.environ.get(
    "HIPACHE_BINARY",
    os.path.join(os.path.dirname(__file__), "..", "..", "build", "hipache"))
STARTUP_TIMEOUT = 10.0
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, host="127.0.0.1", timeout=STARTUP_TIMEOUT, process=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError("process exited with %s before listening" % process.returncode)
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("nothing listening on %s:%d after %.0fs" % (host, port, timeout))


def _loopback_sockets(port, state):
    """The /proc/net/tcp{,6} rows (split) of sockets on local `port` in `state` (hex, e.g.
    "08" for CLOSE_WAIT, "0A" for LISTEN)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                    yield fields


def half_closed_by_peer(port):
    """How many loopback TCP sockets on local `port` are in CLOSE_WAIT: their peer closed, and
    the process holding them (the proxy, for its listening port) has not closed them yet."""
    return sum(1 for _ in _loopback_sockets(port, "08"))


def accept_queue(port):
    """How many connections wait in the accept queue of the loopback listening socket on
    `port` (for a listening socket, /proc/net/tcp's rx_queue field), None without one."""
    for fields in _loopback_sockets(port, "0A"):
        return int(fields[4].split(":")[1], 16)
    return None


def wait_until(predicate, timeout=5.0, interval=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


# --------------------------------------------------------------------------- Redis

class RedisClient:
    """A minimal RESP client (one connection, blocking)."""

    def __init__(self, port, password=None, db=0):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rb")
        if password:
            self.call("AUTH", password)
        if db:
            self.call("SELECT", str(db))

    def close(self):
        self.file.close()
        self.sock.close()

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._read()

    def _read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError("bad RESP line %r" % line)

    def __getattr__(self, name):
        return lambda *args: self.call(name.upper(), *args)


class RedisServer:
    def __init__(self, password=None):
        self.port = free_port()
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="hipache-redis-")
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir]
        if password:
            args += ["--requirepass", password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.process)
        self.client = RedisClient(self.port, password)

    def url(self, db=None, prefix=None):
        auth = ":%s@" % self.password if self.password else ""
        u = "redis://%s127.0.0.1:%d" % (auth, self.port)
        if db is not None:
            u += "/%d" % db
        if prefix is not None:
            u += "#" + prefix
        return u

    def subscribe(self, channel):
        """Returns a Subscription collecting messages published on channel."""
        return Subscription(self.port, self.password, channel)

    def stop(self):
        with contextlib.suppress(Exception):
            self.client.close()
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        if self.process.poll() is None:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Subscription:
    def __init__(self, port, password, channel):
        self.client = RedisClient(port, password)
        self.client.call("SUBSCRIBE", channel)
        self.messages = []
        self.client.sock.settimeout(None)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        with contextlib.suppress(Exception):
            while True:
                msg = self.client._read()
                if isinstance(msg, list) and msg and msg[0] == "message":
                    self.messages.append(msg[2])

    def close(self):
        with contextlib.suppress(Exception):
            self.client.sock.shutdown(socket.SHUT_RDWR)
        self.client.close()


# --------------------------------------------------------------------------- backends

class EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with a JSON description of what it received.

    Query parameters steer it: ?status=503, ?size=N (body of N bytes instead of JSON),
    ?chunked=1, ?delay=seconds, ?header=Name:Value (repeatable), ?retry_after=1.
    """
    protocol_version = "HTTP/1.1"
    server_version = "EchoBackend/1.0"

    def log_message(self, *args):
        pass

    def _handle(self):
        from urllib.parse import urlsplit, parse_qs
        query = parse_qs(urlsplit(self.path).query)
        body = b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        elif self.headers.get("Content-Length"):
            body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({"method": self.command, "path": self.path,
                                     "client_port": self.client_address[1],
                                     "headers": dict(self.headers.items()),
                                     "header_list": list(self.headers.items()),
                                     "body_length": len(body)})
        if "delay" in query:
            time.sleep(float(query["delay"][0]))
        status = int(query.get("status", ["200"])[0])
        if "size" in query:
            payload = b"x" * int(query["size"][0])
        else:
            payload = json.dumps({"method": self.command, "path": self.path,
                                  "headers": dict(self.headers.items()),
                                  "body_length": len(body),
                                  "backend": self.server.name}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for h in query.get("header", []):
            name, _, value = h.partition(":")
            self.send_header(name, value)
        if "retry_after" in query:
            self.send_header("Retry-After", query["retry_after"][0])
        chunked = "chunked" in query
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command == "HEAD" or status in (204, 304):
            return
        if chunked:
            for i in range(0, len(payload), 1000):
                piece = payload[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _handle


class _BackendServer(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: forty connections opened at once (forty HTTP/2
    # streams) then lose SYNs, and a loaded machine's retransmissions outlast tcpTimeout.
    request_queue_size = 128


class HttpBackend:
    """A threaded HTTP/1.1 backend (EchoHandler by default) on a free loopback port."""

    def __init__(self, name="backend", handler=EchoHandler):
        self.server = _BackendServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.requests = []
        self.server.name = name
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self):
        return self.server.requests

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class RawBackend:
    """A TCP backend that runs `script(conn)` for every accepted connection. Use it for
    misbehaving backends: resets, garbage, short or long bodies, silence."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self.script(conn)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def stop(self):
        self.running = False
        with contextlib.suppress(OSError):
            self.sock.close()


def read_request_head(conn):
    """Reads bytes up to the end of a request header block (for RawBackend scripts)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def silent(conn):
    """A RawBackend script: reads the request, then never answers (gives up after a few
    seconds)."""
    read_request_head(conn)
    conn.settimeout(6)
    try:
        while conn.recv(65536):
            pass
    except socket.timeout:
        pass


def reset(conn):
    """Closes with RST instead of FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def refused_url():
    """A loopback URL where nothing listens (connection refused)."""
    return "http://127.0.0.1:%d" % free_port()


# --------------------------------------------------------------------------- the proxy

class Proxy:
    def __init__(self, config, workdir, binary=None):
        """`binary`: another file than BINARY (the upgrade tests run a copy they replace)."""
        self.port = config["http"]["port"]
        self.config_path = os.path.join(workdir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.stderr_path = os.path.join(workdir, "stderr.log")
        self.stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen([binary or BINARY, "-c", self.config_path],
                                        stdout=subprocess.DEVNULL, stderr=self.stderr)
        wait_for_port(self.port, process=self.process)
        # The master listens before its workers exist: wait for them too, so a test that looks
        # at the worker (its pid, its memory) finds it started. A proxy whose workers cannot
        # start is left to the test to judge.
        wait_until(lambda: "worker(s) ready" in self.log() or self.process.poll() is not None,
                   STARTUP_TIMEOUT)

    def log(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def signal(self, sig):
        self.process.send_signal(sig)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stderr.close()


class ProxyTestCase(unittest.TestCase):
    """Each test gets a fresh redis-server, a temp dir and (via start_proxy) the binary."""

    redis_password = None

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="hipache-test-")
        self.redis_server = RedisServer(self.redis_password)
        self.redis = self.redis_server.client
        self.access_log_path = os.path.join(self.workdir, "access.log")
        self._stoppers = []
        self.proxy = None

    def tearDown(self):
        if self.proxy is not None:
            self.proxy.stop()
            # Under the ASan/UBSan build a finding is printed by the process that made it; it
            # fails the test even when the client side looked fine.
            log = self.proxy.log()
            for marker in SANITIZER_MARKERS:
                if marker in log:
                    self.fail("sanitizer report in the proxy's stderr:\n" + log[-4000:])
        for cleanup in reversed(self._stoppers):
            with contextlib.suppress(Exception):
                cleanup()
        self.redis_server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def config(self, **server):
        """A config dict for this test; keyword arguments go into the server section."""
        server_section = {"accessLog": self.access_log_path, "workers": 1,
                          "tcpTimeout": 5, "deadBackendTTL": 30}
        server_section.update(server)
        return {"server": server_section,
                "http": {"port": free_port(), "bind": ["127.0.0.1"]},
                "driver": self.redis_server.url(),
                "user": "root"}

    def start_proxy(self, config=None, **server):
        self.proxy = Proxy(config or self.config(**server), self.workdir)
        return self.proxy

    def http_backend(self, name="backend", handler=EchoHandler):
        backend = HttpBackend(name, handler)
        self._stoppers.append(backend.stop)
        return backend

    def raw_backend(self, script):
        backend = RawBackend(script)
        self._stoppers.append(backend.stop)
        return backend

    def request(self, method, path, host, headers=None, body=None, timeout=10):
        """One request on a fresh connection. Returns (status, headers dict lowercased, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=timeout)
        try:
            all_headers = {"Host": host}
            all_headers.update(headers or {})
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
            return (response.status,
                    {k.lower(): v for k, v in response.getheaders()}, data)
        finally:
            conn.close()

    def raw_exchange(self, data, timeout=5, until_close=True):
        """Sends raw bytes and returns everything read until the proxy closes (or timeout)."""
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=timeout) as s:
            s.sendall(data)
            out = b""
            with contextlib.suppress(socket.timeout):
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
                    if not until_close and b"\r\n\r\n" in out:
                        break
            return out

    def access_log_lines(self, expected=None, timeout=3.0):
        """The access log's lines (waits for `expected` lines: the log is flushed every 100ms)."""
        def read():
            if not os.path.exists(self.access_log_path):
                return []
            with open(self.access_log_path) as f:
                return f.read().splitlines()
        if expected is not None:
            wait_until(lambda: len(read()) >= expected, timeout)
        return read()
