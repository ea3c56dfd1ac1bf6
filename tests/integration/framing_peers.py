"""The peers of the framing tests (test_framing_*.py), strict about every byte: a parser for
raw HTTP/1.x messages (exactly one message, the decoded body, what follows it), a raw client
whose every read is bounded, and raw backends that record every byte the proxy sent them.
"""
import contextlib
import re
import socket
import threading
import time

import harness

TIMEOUT = 3.0     # bound of every socket wait in this file
SETTLE = 0.3      # how long "the backend received nothing" waits
MARK = b"SECRE"   # in every body a backend sends that must never reach the client


# --------------------------------------------------------------------------- message parsing

class Incomplete(Exception):
    """The bytes end before the message does."""


class Message:
    """One parsed HTTP/1.x message: start line, header list as sent, decoded body, the body's
    bytes as framed on the wire, and whatever bytes followed the message."""

    def __init__(self, start, headers, body, raw_body, rest):
        self.start = start
        self.headers = headers
        self.body = body
        self.raw_body = raw_body
        self.rest = rest

    def values(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def tokens(self, name):
        """The comma-separated tokens of every `name` field, lowercased."""
        return [t.strip().lower() for v in self.values(name) for t in v.split(",") if t.strip()]

    def names(self):
        return [n.lower() for n, _ in self.headers]

    def __repr__(self):
        return "<%r %r body=%r>" % (self.start, self.headers, self.body[:100])


def parse_head(data):
    """(start line, [(name, value)], bytes after the head); raises Incomplete or ValueError."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise Incomplete()
    lines = data[:end].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError("header line without a colon: %r" % line)
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return lines[0], headers, data[end + 4:]


def decode_chunked(data):
    """(decoded body, number of bytes the chunked body takes) of the chunked body that starts
    data. Strict: hex sizes, CRLF after every chunk, trailer section ended by an empty line."""
    pos, body = 0, b""
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise Incomplete()
        size_text = data[pos:eol].split(b";", 1)[0]
        if not re.fullmatch(rb"[0-9A-Fa-f]+", size_text):
            raise ValueError("bad chunk size line %r" % data[pos:eol])
        size = int(size_text, 16)
        pos = eol + 2
        if size == 0:
            while True:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    raise Incomplete()
                line, pos = data[pos:eol], eol + 2
                if not line:
                    return body, pos
        if len(data) < pos + size + 2:
            raise Incomplete()
        if data[pos + size:pos + size + 2] != b"\r\n":
            raise ValueError("chunk data of %d bytes not followed by CRLF" % size)
        body += data[pos:pos + size]
        pos += size + 2


def chunked_framing(headers):
    te = [t.strip().lower() for n, v in headers if n.lower() == "transfer-encoding"
          for t in v.split(",") if t.strip()]
    return bool(te) and te[-1] == "chunked"


def parse_request(data):
    """The first request in data (framed by its own head: chunked, else the first
    Content-Length, else no body) and the bytes after it."""
    start, headers, rest = parse_head(data)
    lengths = [v for n, v in headers if n.lower() == "content-length"]
    if chunked_framing(headers):
        body, n = decode_chunked(rest)
    elif lengths:
        if not re.fullmatch(r"\d+", lengths[0]):
            raise ValueError("unusable Content-Length %r" % lengths[0])
        n = int(lengths[0])
        if len(rest) < n:
            raise Incomplete()
        body = rest[:n]
    else:
        body, n = b"", 0
    return Message(start, headers, body, rest[:n], rest[n:])


def ok_response(body):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def has_header_line(raw, name):
    """Whether raw (a response as received) has a line starting with header `name`."""
    return re.search(rb"(?im)(^|[\r\n])" + re.escape(name) + rb"[ \t]*:", raw) is not None


# --------------------------------------------------------------------------- the client

class Client:
    """A raw client connection to the proxy. Every read is bounded by TIMEOUT; a read that
    cannot complete fails the test (AssertionError) with what was received so far."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        self.raw = b""       # every byte received on this connection
        self.eof = False

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, what):
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError("no %s from the proxy within %.0fs; received so far: %r"
                                 % (what, TIMEOUT, self.raw[-400:])) from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            raise AssertionError("the proxy closed the connection before a complete %s; "
                                 "received so far: %r" % (what, self.raw[-400:]))
        self.buf += chunk
        self.raw += chunk

    def read_response(self, method="GET"):
        """One response (a 1xx counts as one)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill("response head")
        start, headers, rest = parse_head(self.buf)
        m = re.fullmatch(rb"HTTP/(1\.[01]) (\d{3})(?: (.*))?", start)
        if not m:
            raise AssertionError("not an HTTP/1.x status line: %r (received: %r)"
                                 % (start, self.raw[-400:]))
        status = int(m.group(2))
        head_len = len(self.buf) - len(rest)
        head, self.buf = self.buf[:head_len], rest
        msg = Message(start, headers, b"", b"", b"")
        msg.version, msg.status, msg.head = m.group(1).decode(), status, head
        lengths = msg.values("content-length")
        if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
            pass
        elif chunked_framing(headers):
            while True:
                try:
                    msg.body, n = decode_chunked(self.buf)
                    break
                except Incomplete:
                    self._fill("chunked body")
                except ValueError as e:
                    raise AssertionError("bad chunked body from the proxy (%s): %r"
                                         % (e, self.buf[:200])) from None
            msg.raw_body, self.buf = self.buf[:n], self.buf[n:]
        elif lengths:
            if not re.fullmatch(r"\d+", lengths[0]):
                raise AssertionError("unusable Content-Length from the proxy: %r" % lengths)
            n = int(lengths[0])
            while len(self.buf) < n:
                self._fill("body of %d bytes" % n)
            msg.body = msg.raw_body = self.buf[:n]
            self.buf = self.buf[n:]
        else:
            with contextlib.suppress(AssertionError):
                while True:
                    self._fill("close-delimited body")
            msg.body = msg.raw_body = self.buf
            self.buf = b""
        return msg

    def read_rest(self, wait=SETTLE):
        """Whatever else arrives within `wait` seconds of quiet, or until the proxy closes."""
        self.sock.settimeout(wait)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    self.eof = True
                    break
                self.buf += chunk
                self.raw += chunk
        except socket.timeout:
            pass
        except OSError:
            self.eof = True
        finally:
            self.sock.settimeout(TIMEOUT)
        return self.buf

    def closed_by_peer(self, timeout=2.0):
        """Waits up to `timeout` for the proxy to close; True when it did."""
        if self.eof:
            return True
        deadline = time.time() + timeout
        while not self.eof and time.time() < deadline:
            self.read_rest(max(0.05, deadline - time.time()))
        return self.eof


# --------------------------------------------------------------------------- backends

class RequestRecorder:
    """A raw backend recording every byte it receives, one bytearray per connection. It answers
    a complete request (framed as its own head says; a head it cannot frame is answered after
    half a second of quiet) with 200 "ok" and Connection: close, then records until the proxy
    closes or a second passes."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    def __init__(self, testcase):
        self.received = []
        self.active = 0
        self.lock = threading.Lock()
        self.raw = testcase.raw_backend(self._script)
        self.url = self.raw.url

    def _script(self, conn):
        data = bytearray()
        with self.lock:
            self.received.append(data)
            self.active += 1
        try:
            self._record(conn, data)
        finally:
            with self.lock:
                self.active -= 1

    def _record(self, conn, data):
        deadline = time.time() + TIMEOUT
        conn.settimeout(0.5)
        while time.time() < deadline:
            try:
                parse_request(bytes(data))
                break
            except Incomplete:
                pass
            except ValueError:
                pass  # answered after the quiet period below
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                if b"\r\n\r\n" in data:
                    break
                continue
            if not chunk:
                return
            data.extend(chunk)
        conn.sendall(self.RESPONSE)
        conn.settimeout(1.0)
        with contextlib.suppress(socket.timeout, OSError):
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data.extend(chunk)

    def wait_done(self):
        harness.wait_until(lambda: self.active == 0, TIMEOUT)

    def all_bytes(self):
        with self.lock:
            return b"".join(bytes(d) for d in self.received)


class ScriptedBackend:
    """A raw backend that reads request heads (and Content-Length bodies) one after the other
    on each connection and answers each with answer(path, head): bytes, or (bytes, True) to
    close after sending. Every byte received is recorded, tunnelled bytes included."""

    def __init__(self, testcase, answer):
        self.answer = answer if callable(answer) else (lambda path, head: answer)
        self.received = []
        self.paths = []
        self.lock = threading.Lock()
        self.raw = testcase.raw_backend(self._script)
        self.url = self.raw.url

    def _script(self, conn):
        data = bytearray()
        with self.lock:
            self.received.append(data)
        conn.settimeout(TIMEOUT)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                data.extend(chunk)
            head, _, buf = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^content-length:[ \t]*(\d+)", head)
            need = int(m.group(1)) if m else 0
            while len(buf) < need:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                data.extend(chunk)
            buf = buf[need:]
            parts = head.split(b" ", 2)
            path = parts[1].decode("latin-1") if len(parts) > 1 else ""
            self.paths.append(path)
            reply = self.answer(path, head)
            close = False
            if isinstance(reply, tuple):
                reply, close = reply
            conn.sendall(reply)
            if close:
                return

    def all_bytes(self):
        with self.lock:
            return b"".join(bytes(d) for d in self.received)
