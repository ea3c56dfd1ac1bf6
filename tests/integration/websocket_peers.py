"""The WebSocket peers of the websocket tests (test_websocket_*.py): RFC 6455 frames, a socket
that reads exact lengths, header blocks and frames, a threaded echo server (WsEchoServer) and a
client (WsClient). Standard library only; both speak real frames (masking, fragmentation,
ping/pong, close).
"""
import base64
import contextlib
import hashlib
import os
import socket
import struct
import threading
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


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
