"""WebSocket (Upgrade) tunnelling through the real binary (SPEC sections 4, 5 and 8).

An upgrade request is routed like any request (host matching, balancing, dead marking,
X-Forwarded-* headers), forwarded, and on 101 both directions are spliced until either side
closes; any other answer is relayed as a normal response and the connection stays HTTP. Tunnels
honour tcpTimeout for idleness (0 disables it), propagate half-closes, hold bounded memory, and
get one access-log line at close (status 101).

This file brings its own small RFC 6455 echo server (WsEchoServer) and client (WsClient); both
are standard library only and speak real frames (masking, fragmentation, ping/pong, close).
"""
import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import struct
import threading
import time
import unittest

import harness

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

LINE = re.compile(
    r'^(?P<remote>\S+) - - \[(?P<date>[^\]]+)\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)" "(?P<identifier>[^"]*)" (?P<total>[\d.]+) (?P<backend>[\d.]+)$')


def accept_for(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    key = key if isinstance(key, bytes) else key.encode()
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def apply_mask(data, key):
    """XORs data with the 4-byte key (done with big integers: fast for megabytes)."""
    n = len(data)
    if n == 0 or key == b"\0\0\0\0":
        return bytes(data)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        n, "little")


def encode_frame(opcode, payload, fin=True, mask=True):
    payload = bytes(payload)
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head.append(mask_bit | n)
    elif n < 65536:
        head.append(mask_bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        return bytes(head) + key + apply_mask(payload, key)
    return bytes(head) + payload


def parse_head(raw):
    """(first line, [(name, value)]) of an HTTP header block."""
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers


def header(headers, name, default=None):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return default


def tokens(value):
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


class FrameSocket:
    """A socket with a read buffer: exact reads, header blocks and WebSocket frames."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        chunk = self.sock.recv(262144)
        if not chunk:
            raise EOFError("peer closed")
        self.buf += chunk

    def recv_exact(self, n):
        out = bytearray(n)
        view = memoryview(out)
        take = min(n, len(self.buf))
        out[:take] = self.buf[:take]
        del self.buf[:take]
        pos = take
        while pos < n:
            k = self.sock.recv_into(view[pos:], n - pos)
            if k == 0:
                raise EOFError("peer closed after %d of %d bytes" % (pos, n))
            pos += k
        return bytes(out)

    def read_head(self, limit=1 << 20):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("header block too large")
            self._fill()
        end = self.buf.index(b"\r\n\r\n") + 4
        head = bytes(self.buf[:end])
        del self.buf[:end]
        return head

    def read_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n") + 2
        line = bytes(self.buf[:end])
        del self.buf[:end]
        return line

    def read_frame(self):
        """(fin, opcode, payload, masked)."""
        b0, b1 = self.recv_exact(2)
        fin, opcode = bool(b0 & 0x80), b0 & 0x0F
        masked, n = bool(b1 & 0x80), b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.recv_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.recv_exact(8))[0]
        key = self.recv_exact(4) if masked else None
        payload = self.recv_exact(n)
        if masked:
            payload = apply_mask(payload, key)
        return fin, opcode, payload, masked

    def wait_eof(self, timeout):
        """True when the peer closes (FIN or reset) within timeout with no further data."""
        deadline = time.time() + timeout
        if self.buf:
            return False
        try:
            while True:
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
                return False
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True


# --------------------------------------------------------------------------- echo server

class ServerConnection:
    """What the echo server saw on one connection."""

    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.fs = FrameSocket(sock)
        self.request_line = None
        self.headers = []
        self.masked = True          # every client frame arrived masked
        self.messages = 0
        self.close_code = None      # code of the client's close frame
        self.eof = threading.Event()  # the peer closed (FIN/RST) or a read failed
        self.eof_at = None
        self.opened = threading.Event()

    def mark_eof(self):
        if not self.eof.is_set():
            self.eof_at = time.time()
            self.eof.set()

    def send_frame(self, opcode, payload, fin=True):
        self.sock.sendall(encode_frame(opcode, payload, fin, mask=False))

    def echo_loop(self):
        message, message_op = bytearray(), None
        while True:
            fin, opcode, payload, masked = self.fs.read_frame()
            self.masked = self.masked and masked
            if opcode == OP_PING:
                self.send_frame(OP_PONG, payload)
            elif opcode == OP_PONG:
                pass
            elif opcode == OP_CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.send_frame(OP_CLOSE, payload[:2])
                # RFC 6455 7.1.1: the server closes the TCP connection first; then it waits for
                # the other side's FIN (the proxy must pass the client's close on).
                self.sock.shutdown(socket.SHUT_WR)
                if self.fs.wait_eof(15):
                    self.mark_eof()
                return
            else:
                if opcode != OP_CONT:
                    message_op = opcode
                    message = bytearray()
                message += payload
                if fin:
                    self.messages += 1
                    self.send_frame(message_op, message)
                    message = bytearray()


class WsEchoServer:
    """A threaded RFC 6455 echo server on a free loopback port.

    on_open(conn), when given, replaces the echo loop after the handshake (raw scripts).
    """

    def __init__(self, on_open=None):
        self.on_open = on_open
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.connections = []
        self.lock = threading.Lock()
        self.open_now = 0
        self.max_open = 0
        self.running = True
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while self.running:
            try:
                sock, _ = self.sock.accept()
            except OSError:
                return
            sock.settimeout(30)
            conn = ServerConnection(self, sock)
            with self.lock:
                self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        counted = False
        try:
            head = conn.fs.read_head()
            conn.request_line, conn.headers = parse_head(head)
            key = header(conn.headers, "Sec-WebSocket-Key")
            if key is None:
                conn.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                  b"Connection: close\r\n\r\n")
                return
            with self.lock:
                self.open_now += 1
                self.max_open = max(self.max_open, self.open_now)
                counted = True
            conn.sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                               % accept_for(key)).encode())
            conn.opened.set()
            if self.on_open is not None:
                self.on_open(conn)
            else:
                conn.echo_loop()
        except (EOFError, ConnectionResetError, BrokenPipeError):
            conn.mark_eof()
        except OSError:
            pass
        finally:
            if counted:
                with self.lock:
                    self.open_now -= 1
            with contextlib.suppress(OSError):
                conn.sock.close()

    def stop(self):
        self.running = False
        with contextlib.suppress(OSError):
            self.sock.close()
        with self.lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.sock.close()


# --------------------------------------------------------------------------- client

class WsClient:
    """A small RFC 6455 client talking to the proxy."""

    def __init__(self, port, host, path="/", headers=None, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.fs = FrameSocket(self.sock)
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.host = host
        self.path = path
        self.extra_headers = headers or []
        self.status = None
        self.headers = []

    def request_bytes(self):
        lines = ["GET %s HTTP/1.1" % self.path, "Host: %s" % self.host,
                 "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: %s" % self.key, "Sec-WebSocket-Version: 13"]
        lines += ["%s: %s" % (k, v) for k, v in self.extra_headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def handshake(self):
        """Sends the upgrade request; returns the answer's status (headers in self.headers)."""
        self.sock.sendall(self.request_bytes())
        status_line, self.headers = parse_head(self.fs.read_head())
        self.status = int(status_line.split()[1])
        return self.status

    def header(self, name):
        return header(self.headers, name)

    def send_frame(self, opcode, payload, fin=True):
        self.sock.sendall(encode_frame(opcode, payload, fin, mask=True))

    def send(self, message):
        if isinstance(message, str):
            self.send_frame(OP_TEXT, message.encode())
        else:
            self.send_frame(OP_BINARY, message)

    def send_fragmented(self, payload, pieces, opcode=OP_BINARY, ping_between=None):
        """Sends payload as `pieces` frames (uneven sizes); optionally a ping after the first."""
        size = max(1, len(payload) // pieces)
        offsets = list(range(0, len(payload), size))
        for i, start in enumerate(offsets):
            last = i == len(offsets) - 1
            chunk = payload[start:] if last else payload[start:start + size]
            self.send_frame(opcode if i == 0 else OP_CONT, chunk, fin=last)
            if i == 0 and ping_between is not None:
                self.send_frame(OP_PING, ping_between)  # control frames may interleave

    def ping(self, payload):
        self.send_frame(OP_PING, payload)

    def close(self, code=1000, reason=b""):
        self.send_frame(OP_CLOSE, struct.pack("!H", code) + reason)

    def recv_message(self):
        """(opcode, payload): a reassembled data message, or a control frame as is."""
        message, message_op = bytearray(), None
        while True:
            fin, opcode, payload, masked = self.fs.read_frame()
            if masked:
                raise AssertionError("a server frame arrived masked")
            if opcode >= 0x8:
                return opcode, payload
            if opcode != OP_CONT:
                message_op, message = opcode, bytearray()
            message += payload
            if fin:
                return message_op, bytes(message)

    def wait_eof(self, timeout):
        return self.fs.wait_eof(timeout)

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close_socket(self):
        with contextlib.suppress(OSError):
            self.sock.close()


# --------------------------------------------------------------------------- RSS

def process_tree_rss_kb(root_pid):
    """VmRSS (kB) of root_pid plus all its descendants (the master and its workers)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
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
    def __init__(self, pid, interval=0.05):
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


# --------------------------------------------------------------------------- plain HTTP

def read_http_response(fs):
    """(status, headers, body) of one response read from a FrameSocket."""
    status_line, headers = parse_head(fs.read_head())
    status = int(status_line.split()[1])
    return status, headers, read_http_body(fs, status, headers)


def read_http_body(fs, status, headers):
    if status in (101, 204, 304) or 100 <= status < 200:
        return b""
    if "chunked" in tokens(header(headers, "Transfer-Encoding")):
        body = bytearray()
        while True:
            size = int(fs.read_line().split(b";")[0], 16)
            if size == 0:
                while fs.read_line() != b"\r\n":
                    pass
                return bytes(body)
            body += fs.recv_exact(size)
            fs.recv_exact(2)
    length = header(headers, "Content-Length")
    if length is not None:
        return fs.recv_exact(int(length))
    body = bytearray()  # delimited by close
    with contextlib.suppress(EOFError):
        while True:
            fs._fill()
            body += fs.buf
            fs.buf.clear()
    return bytes(body)


# --------------------------------------------------------------------------- tests

class WebSocketTestCase(harness.ProxyTestCase):
    HOST = "ws.test"

    def setUp(self):
        super().setUp()
        self._clients = []
        self._held_sockets = []

    def tearDown(self):
        for c in self._clients:
            c.close_socket()
        for s in self._held_sockets:
            s.close()
        super().tearDown()

    def ws_server(self, on_open=None):
        server = WsEchoServer(on_open)
        self._stoppers.append(server.stop)
        return server

    def client(self, host=None, path="/", headers=None, timeout=10):
        c = WsClient(self.proxy.port, host or self.HOST, path, headers, timeout)
        self._clients.append(c)
        return c

    def open_tunnel(self, host=None, path="/", timeout=10):
        c = self.client(host, path, timeout=timeout)
        self.assertEqual(c.handshake(), 101, c.headers)
        return c

    def refused_url(self):
        """A bound but not listening port: connecting is refused for the whole test."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self._held_sockets.append(s)
        return "http://127.0.0.1:%d" % s.getsockname()[1]

    def route(self, *backends, host=None, identifier="wsapp"):
        self.redis.rpush("frontend:" + (host or self.HOST), identifier,
                         *[b if isinstance(b, str) else b.url for b in backends])

    def assert_echo(self, c, message):
        c.send(message)
        opcode, payload = c.recv_message()
        expected = message.encode() if isinstance(message, str) else bytes(message)
        self.assertEqual(opcode, OP_TEXT if isinstance(message, str) else OP_BINARY)
        self.assertEqual(len(payload), len(expected))
        self.assertTrue(payload == expected, "echoed payload differs")

    def close_cleanly(self, c, code=1000):
        c.close(code)
        opcode, payload = c.recv_message()
        self.assertEqual(opcode, OP_CLOSE)
        self.assertEqual(struct.unpack("!H", payload[:2])[0], code)
        self.assertTrue(c.wait_eof(5), "the proxy did not pass the backend's close on")
        c.close_socket()


class Handshake(WebSocketTestCase):
    def test_handshake_is_forwarded_with_x_forwarded_headers(self):
        server = self.ws_server()
        self.route(server)
        self.start_proxy()
        c = self.client(host="WS.test:8080", path="/chat?room=1")
        self.assertEqual(c.handshake(), 101, c.headers)
        self.assertEqual(c.header("Sec-WebSocket-Accept"), accept_for(c.key))
        self.assertEqual((c.header("Upgrade") or "").lower(), "websocket")
        self.assertIn("upgrade", tokens(c.header("Connection")))
        self.assert_echo(c, "ready")

        self.assertEqual(len(server.connections), 1)
        seen = server.connections[0]
        self.assertEqual(seen.request_line, "GET /chat?room=1 HTTP/1.1")
        h = seen.headers
        self.assertEqual((header(h, "Upgrade") or "").lower(), "websocket")
        self.assertIn("upgrade", tokens(header(h, "Connection")))
        self.assertEqual(header(h, "Host"), "WS.test:8080")  # forwarded unchanged
        self.assertEqual(header(h, "Sec-WebSocket-Key"), c.key)
        self.assertEqual(header(h, "Sec-WebSocket-Version"), "13")
        self.assertEqual(header(h, "X-Forwarded-For"), "::ffff:127.0.0.1")
        self.assertEqual(header(h, "X-Real-IP"), "::ffff:127.0.0.1")
        self.assertEqual(header(h, "X-Forwarded-Proto"), "http")
        self.assertEqual(header(h, "X-Forwarded-Port"), str(self.proxy.port))
        self.close_cleanly(c)

    def test_backend_answering_200_is_relayed_then_connection_closed(self):
        # docs/security.md: after a refused upgrade the client may already be sending the new
        # protocol, whose bytes must never be read as a request: the answer carries
        # Connection: close and the connection ends.
        backend = self.http_backend("plain")  # answers 200 with JSON to anything
        self.route(backend)
        self.start_proxy()
        c = self.client(path="/first")
        self.assertEqual(c.handshake(), 200, c.headers)
        self.assertIsNone(c.header("Sec-WebSocket-Accept"))
        self.assertEqual((c.header("Connection") or "").lower(), "close")
        first = json.loads(read_http_body(c.fs, 200, c.headers))
        self.assertEqual(first["path"], "/first")
        self.assertEqual(first["headers"].get("Upgrade", "").lower(), "websocket")
        try:
            c.sock.sendall(b"GET /second HTTP/1.1\r\nHost: ws.test\r\n\r\n")
        except OSError:
            pass  # already closed by the proxy
        c.sock.settimeout(3)
        closed = False
        try:
            while True:
                c.fs._fill()
        except socket.timeout:
            pass  # still open after 3 s: fails below
        except (EOFError, ConnectionResetError):
            closed = True
        self.assertTrue(closed, "the proxy kept the connection open after a refused upgrade")
        self.assertEqual(bytes(c.fs.buf), b"")
        self.assertTrue(harness.wait_until(lambda: len(backend.requests) == 1, timeout=1))
        self.assertEqual(len(backend.requests), 1)
        lines = self.access_log_lines(expected=1)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('"GET /first HTTP/1.1" 200', lines[0])

    def test_unknown_host_gets_400_page_and_connection_closed(self):
        self.start_proxy(tcpTimeout=30)  # a close within seconds is not the idle timeout
        c = self.client(host="nowhere.test", timeout=5)
        started = time.time()
        status = c.handshake()
        self.assertEqual(status, 400)
        self.assertEqual(c.header("Content-Type"), "text/html")
        self.assertEqual(c.header("Cache-Control"), "no-cache")
        length = int(c.header("Content-Length") or 0)
        self.assertGreater(length, 0)
        c.fs.recv_exact(length)
        self.assertLess(time.time() - started, 3)
        self.assertTrue(c.wait_eof(3),
                        "the connection stayed open after a refused upgrade (answer headers: %r)"
                        % c.headers)
        lines = self.access_log_lines(expected=1)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('" 400 ', lines[0])
        self.assertIn('"-"', lines[0])

    def test_refused_backend_is_marked_dead_and_upgrade_succeeds_on_the_other(self):
        sub = self.redis_server.subscribe("dead")
        self._stoppers.append(sub.close)
        server = self.ws_server()
        refused = self.refused_url()
        self.route(refused, server)
        self.start_proxy()
        for _ in range(40):  # random picks: the refused one comes up within a few tries
            c = self.open_tunnel()
            self.assertEqual(c.header("Sec-WebSocket-Accept"), accept_for(c.key))
            self.assert_echo(c, "through the good one")
            self.close_cleanly(c)
            if harness.wait_until(lambda: sub.messages, 0.2):
                break
        expected = "%s;%s;0;2" % (self.HOST, refused)
        self.assertTrue(harness.wait_until(lambda: expected in sub.messages, 5), sub.messages)
        self.assertEqual(self.redis.smembers("dead:" + self.HOST), ["0"])
        self.assertGreater(self.redis.ttl("dead:" + self.HOST), 0)
        # Once marked, every upgrade goes to the good backend at once.
        connections = len(server.connections)
        for _ in range(3):
            self.close_cleanly(self.open_tunnel())
        self.assertEqual(len(server.connections), connections + 3)


class Echo(WebSocketTestCase):
    def test_text_binary_large_fragmented_ping_and_close(self):
        server = self.ws_server()
        self.route(server)
        self.start_proxy(tcpTimeout=30)
        c = self.open_tunnel(timeout=30)
        self.assert_echo(c, "h\u00e9llo, tunnel")
        self.assert_echo(c, bytes(range(256)) * 3)
        self.assert_echo(c, os.urandom(8 * 1024 * 1024))

        fragmented = os.urandom(300000)
        c.send_fragmented(fragmented, 60, OP_BINARY, ping_between=b"mid-message")
        opcode, payload = c.recv_message()
        self.assertEqual((opcode, payload), (OP_PONG, b"mid-message"))
        opcode, payload = c.recv_message()
        self.assertEqual(opcode, OP_BINARY)
        self.assertTrue(payload == fragmented, "fragmented message reassembled wrongly")

        text = "".join("part %d. " % i for i in range(500))
        c.send_fragmented(text.encode(), 25, OP_TEXT)
        self.assertEqual(c.recv_message(), (OP_TEXT, text.encode()))

        c.ping(b"are you there")
        self.assertEqual(c.recv_message(), (OP_PONG, b"are you there"))

        c.close(4001, b"bye")
        opcode, payload = c.recv_message()
        self.assertEqual(opcode, OP_CLOSE)
        self.assertEqual(struct.unpack("!H", payload[:2])[0], 4001)
        # The backend closed after its close frame: the client sees the end of the stream.
        self.assertTrue(c.wait_eof(5), "client did not see the tunnel close")
        c.close_socket()
        # ... and the client's close reaches the backend, which sees its end of the stream too.
        seen = server.connections[0]
        self.assertTrue(seen.eof.wait(5), "backend did not see the tunnel close")
        self.assertEqual(seen.close_code, 4001)
        self.assertTrue(seen.masked, "client frames must reach the backend unchanged (masked)")
        self.assertEqual(seen.messages, 5)

    def test_memory_stays_bounded_while_echoing_100mb(self):
        server = self.ws_server()
        self.route(server)
        self.start_proxy(tcpTimeout=60)
        c = self.open_tunnel(timeout=60)
        block = os.urandom(1 << 20)
        self.assert_echo(c, block)  # warm-up
        time.sleep(0.2)
        baseline = process_tree_rss_kb(self.proxy.process.pid)
        count = 100
        errors = []

        def sender():
            try:
                for i in range(count):
                    c.send_frame(OP_BINARY, i.to_bytes(4, "big") + block[4:])
            except OSError as e:
                errors.append(e)

        started = time.time()
        with RssSampler(self.proxy.process.pid) as sampler:
            t = threading.Thread(target=sender, daemon=True)
            t.start()
            received = 0
            for i in range(count):
                opcode, payload = c.recv_message()
                self.assertEqual(opcode, OP_BINARY)
                self.assertEqual(len(payload), len(block))
                self.assertEqual(int.from_bytes(payload[:4], "big"), i)
                self.assertTrue(payload[4:] == block[4:])
                received += len(payload)
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(received, count << 20)
        growth_mb = (sampler.peak_kb - baseline) / 1024.0
        self.assertLess(growth_mb, 30,
                        "proxy RSS grew %.1f MB (baseline %d kB, peak %d kB) over %.1fs"
                        % (growth_mb, baseline, sampler.peak_kb, time.time() - started))
        self.close_cleanly(c)

    def test_200_concurrent_tunnels(self):
        server = self.ws_server()
        self.route(server)
        self.start_proxy(tcpTimeout=60)
        n = 200
        barrier = threading.Barrier(n, timeout=60)
        errors, done = [], []
        lock = threading.Lock()

        def run(index):
            c = None
            try:
                c = WsClient(self.proxy.port, self.HOST, "/t%d" % index, timeout=60)
                status = c.handshake()
                if status != 101 or c.header("Sec-WebSocket-Accept") != accept_for(c.key):
                    raise AssertionError("handshake %d: %s %r" % (index, status, c.headers))
                barrier.wait()  # all tunnels are open at the same time
                for k in range(5):
                    message = ("%d:%d:" % (index, k)).encode() + os.urandom(100 + 997 * k)
                    c.send(message)
                    if c.recv_message() != (OP_BINARY, message):
                        raise AssertionError("tunnel %d: wrong echo" % index)
                c.ping(b"p%d" % index)
                if c.recv_message() != (OP_PONG, b"p%d" % index):
                    raise AssertionError("tunnel %d: wrong pong" % index)
                c.close(1000)
                opcode, payload = c.recv_message()
                if opcode != OP_CLOSE or payload[:2] != struct.pack("!H", 1000):
                    raise AssertionError("tunnel %d: close not echoed" % index)
                if not c.wait_eof(10):
                    raise AssertionError("tunnel %d: no end of stream" % index)
                with lock:
                    done.append(index)
            except Exception as e:  # collected and reported below
                with lock:
                    errors.append("%d: %r" % (index, e))
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.abort()
            finally:
                if c is not None:
                    c.close_socket()

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        deadline = time.time() + 90
        for t in threads:
            t.join(max(0.1, deadline - time.time()))
        self.assertEqual(errors[:10], [])
        self.assertEqual(len(done), n)
        self.assertGreaterEqual(server.max_open, n)
        lines = self.access_log_lines(expected=n, timeout=10)
        self.assertEqual(len(lines), n)
        self.assertTrue(all('" 101 ' in line for line in lines))


class IdleTimeout(WebSocketTestCase):
    def test_idle_tunnel_closed_after_tcp_timeout_busy_one_lives(self):
        server = self.ws_server()
        self.route(server)
        self.start_proxy(tcpTimeout=1)
        idle = self.open_tunnel()
        opened = time.time()
        busy = self.open_tunnel()
        idle_conn = server.connections[0]  # the idle tunnel's handshake completed first

        # The busy tunnel exchanges something every 0.3 s for 2.4 s.
        busy_errors = []

        def keep_busy():
            try:
                for i in range(8):
                    time.sleep(0.3)
                    busy.send("tick %d" % i)
                    if busy.recv_message() != (OP_TEXT, b"tick %d" % i):
                        busy_errors.append("wrong echo %d" % i)
            except Exception as e:
                busy_errors.append(repr(e))

        t = threading.Thread(target=keep_busy, daemon=True)
        t.start()
        self.assertTrue(idle.wait_eof(5), "idle tunnel not closed by tcpTimeout 1")
        closed_after = time.time() - opened
        self.assertGreater(closed_after, 0.7)
        self.assertLess(closed_after, 3.5)
        self.assertTrue(idle_conn.eof.wait(3), "the backend side of the idle tunnel stayed open")
        self.assertLess(idle_conn.eof_at - opened, 4)

        t.join(10)
        self.assertEqual(busy_errors, [])
        self.assertGreater(time.time() - opened, 2.0)
        self.assert_echo(busy, "still alive")  # > 2 s old and open
        self.close_cleanly(busy)

    def test_tcp_timeout_zero_keeps_idle_tunnel(self):
        server = self.ws_server()
        self.route(server)
        self.start_proxy(tcpTimeout=0)
        c = self.open_tunnel()
        self.assertFalse(c.wait_eof(2.2), "tunnel closed although tcpTimeout is 0")
        self.assert_echo(c, "after 2 s of silence")
        self.assertFalse(server.connections[0].eof.is_set())
        self.close_cleanly(c)


class Drain(WebSocketTestCase):
    def test_open_tunnel_keeps_the_worker_until_graceful_wait(self):
        # A tunnel outlives the session of its handshake (proxy/tunnel.hpp) and still counts as
        # an open connection: SIGTERM lets it run until gracefulWait, then it is closed.
        server = self.ws_server()
        self.route(server)
        self.start_proxy(workers=1, gracefulWait=2, tcpTimeout=60)
        c = self.open_tunnel()
        self.assert_echo(c, "before the signal")
        self.proxy.signal(signal.SIGTERM)
        signalled = time.time()
        time.sleep(0.8)
        self.assertIsNone(self.proxy.process.poll(), "the worker left an open tunnel behind")
        self.assert_echo(c, "during the drain")
        self.assertTrue(c.wait_eof(6), "tunnel still open after gracefulWait")
        self.assertGreater(time.time() - signalled, 1.5)
        self.assertEqual(self.proxy.process.wait(10), 0)


class HalfClose(WebSocketTestCase):
    def test_client_half_close_reaches_backend_which_can_still_send(self):
        received = {}

        def script(conn):
            data = bytearray()
            while True:  # everything until the client's half-close
                chunk = conn.sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            received["data"] = bytes(data)
            received["eof_at"] = time.time()
            time.sleep(0.3)
            conn.send_frame(OP_TEXT, b"sent after your EOF")
            time.sleep(0.2)
            conn.send_frame(OP_BINARY, b"\x00" * 70000)
            time.sleep(0.2)
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.close()

        server = self.ws_server(on_open=script)
        self.route(server)
        self.start_proxy(tcpTimeout=10)
        c = self.open_tunnel()
        c.send("last words")
        c.shutdown_write()
        shut_at = time.time()
        self.assertEqual(c.recv_message(), (OP_TEXT, b"sent after your EOF"))
        self.assertEqual(c.recv_message(), (OP_BINARY, b"\x00" * 70000))
        self.assertTrue(c.wait_eof(5), "backend's close did not reach the client")
        # The backend saw exactly the client's frame, then the end of the stream.
        self.assertIn("data", received)
        fs = FrameSocket(None)
        fs.buf += received["data"]
        fin, opcode, payload, masked = fs.read_frame()
        self.assertEqual((fin, opcode, payload, masked), (True, OP_TEXT, b"last words", True))
        self.assertEqual(fs.buf, b"")
        self.assertLess(received["eof_at"] - shut_at, 3)
        lines = self.access_log_lines(expected=1)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('" 101 ', lines[0])


class AccessLog(WebSocketTestCase):
    def test_one_line_per_tunnel_at_close_with_status_101(self):
        server = self.ws_server()
        self.route(server, identifier="chat-app")
        self.start_proxy()
        c = self.client(path="/chat?room=1", headers=[("User-Agent", "ws-test/1.0"),
                                                      ("Referer", "http://ref.test/")])
        self.assertEqual(c.handshake(), 101)
        self.assert_echo(c, os.urandom(1000))
        self.assert_echo(c, "x" * 10)
        time.sleep(0.6)  # the log is flushed every 100 ms: nothing may be written yet
        self.assertEqual(self.access_log_lines(), [], "a tunnel is logged when it closes")
        self.close_cleanly(c)
        lines = self.access_log_lines(expected=1)
        time.sleep(0.3)
        lines = self.access_log_lines()
        self.assertEqual(len(lines), 1, lines)
        m = LINE.match(lines[0])
        self.assertIsNotNone(m, lines[0])
        self.assertEqual(m["remote"], "::ffff:127.0.0.1")
        self.assertEqual(m["request"], "GET /chat?room=1 HTTP/1.1")
        self.assertEqual(m["status"], "101")
        self.assertEqual(m["identifier"], "chat-app")
        self.assertEqual(m["agent"], "ws-test/1.0")
        self.assertEqual(m["referer"], "http://ref.test/")
        self.assertGreaterEqual(float(m["total"]), 0.5, "total time must span the tunnel")
        # Bytes sent to the client: the 101 head and the echoed frames.
        self.assertGreater(int(m["bytes"]), 1000 + 10)


if __name__ == "__main__":
    unittest.main()
