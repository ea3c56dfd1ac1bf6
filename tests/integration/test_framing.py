"""HTTP/1.1 message framing through the real binary (issue 17: no request or response can be
smuggled), checked byte for byte.

Requests: a client socket sends raw bytes; a raw backend records the raw bytes the proxy sent it,
which must parse as exactly one request carrying exactly the decoded body (or, for a refused
request, the backend receives nothing). Responses: a raw backend sends crafted bytes; a raw client
socket reads what the proxy sent. Also: header injection from Redis data, Host and method length
limits, access-log field escaping and two compatibility cases (reason-less status line, 103).

Run: cd tests/integration && HIPACHE_BINARY=/work/main/build/hipache \
         python3 -m unittest -v test_framing
"""
import contextlib
import re
import socket
import threading
import time
import unittest

import harness

TIMEOUT = 3.0     # bound of every socket wait in this file
SETTLE = 0.3      # how long "the backend received nothing" waits
MARK = b"SECRE"   # in every body a backend sends that must never reach the client

LOG_LINE = re.compile(
    r'^(?P<remote>\S+) - - \[(?P<date>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}) \+0000\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)" "(?P<identifier>[^"]*)" (?P<total>[\d.]+) (?P<backend>[\d.]+)$')

WEBSOCKET_HEADERS = (b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n")


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


# --------------------------------------------------------------------------- base class

class FramingTestCase(harness.ProxyTestCase):
    def client(self):
        c = Client(self.proxy.port)
        self.addCleanup(c.close)
        return c

    def recorder(self, *hosts):
        backend = RequestRecorder(self)
        for host in hosts:
            self.redis.rpush("frontend:" + host, host.split(".")[0], backend.url)
        return backend

    def scripted(self, host, answer):
        backend = ScriptedBackend(self, answer)
        self.redis.rpush("frontend:" + host, host.split(".")[0], backend.url)
        return backend

    def exchange(self, request, method="GET"):
        """Sends `request` on a fresh client connection and reads one response."""
        client = self.client()
        client.send(request)
        return client.read_response(method)

    # ----------------------------------------------------------------- request side

    def forwarded(self, backend, request, method="GET"):
        """Sends `request`; expects the backend's 200 "ok" and exactly one new backend
        connection whose bytes parse as exactly ONE request. Returns that request."""
        before = len(backend.received)
        response = self.exchange(request, method)
        self.assertEqual(response.status, 200, "the request was not forwarded: %r %r"
                         % (response.head, response.body[:200]))
        backend.wait_done()
        new = [bytes(d) for d in backend.received[before:]]
        self.assertEqual(len(new), 1, "expected one backend connection, got %d: %r"
                         % (len(new), new))
        return self.assert_one_request(new[0])

    def assert_one_request(self, data):
        try:
            msg = parse_request(data)
        except Incomplete:
            self.fail("the backend received an incomplete request: %r" % data[:600])
        except ValueError as e:
            self.fail("the backend received an unparsable request (%s): %r" % (e, data[:600]))
        self.assertEqual(msg.rest, b"", "bytes after the one request the backend received "
                         "(a second request hiding in them?): %r; the request: %r"
                         % (msg.rest[:300], data[:600]))
        return msg

    def assert_refused(self, backend, request, status=400):
        """`status` for the client and not one byte at the backend."""
        before = backend.all_bytes()
        response = self.exchange(request)
        self.assertEqual(response.status, status, "expected %d for %r, got %r"
                         % (status, request[:300], response.head))
        time.sleep(SETTLE)
        self.assertEqual(backend.all_bytes()[len(before):], b"",
                         "the backend received bytes of a request that must be refused")

    def assert_no_hop_by_hop(self, msg, named=()):
        """No hop-by-hop field at the backend and no Connection token naming `named` or a
        hop-by-hop field."""
        for name in ("keep-alive", "te", "trailer", "proxy-connection"):
            self.assertNotIn(name, msg.names(), "hop-by-hop field %s forwarded: %r"
                             % (name, msg.headers))
        forbidden = {n.lower() for n in named} | {"te", "trailer", "proxy-connection"}
        bad = forbidden & set(msg.tokens("connection"))
        self.assertFalse(bad, "the backend got a Connection field naming %s: %r"
                         % (sorted(bad), msg.values("connection")))

    # ----------------------------------------------------------------- response side

    def assert_502_page(self, response, client):
        """A complete 502 error page, then no backend byte on the connection."""
        self.assertEqual(response.status, 502, "expected 502, got %r %r"
                         % (response.head, response.body[:200]))
        self.assertTrue(response.head.startswith(b"HTTP/1.1 502"), response.head)
        client.read_rest()
        self.assertNotIn(MARK, client.raw, "the backend's body reached the client: %r"
                         % client.raw[:600])


# --------------------------------------------------------------------------- rule 1

class ConnectionNamingEndToEndFields(FramingTestCase):
    """A Connection field naming an end-to-end field removes neither that field nor the
    framing; the Connection field itself and hop-by-hop fields are not forwarded."""

    def setUp(self):
        super().setUp()
        self.backend = self.recorder("a.test")
        self.start_proxy()

    def test_connection_content_length(self):
        msg = self.forwarded(self.backend, b"POST / HTTP/1.1\r\nHost: a.test\r\n"
                             b"Connection: Content-Length\r\nContent-Length: 5\r\n\r\nhello")
        self.assertEqual(msg.values("content-length"), ["5"], msg.headers)
        self.assertEqual(msg.body, b"hello")
        self.assert_no_hop_by_hop(msg, ["content-length"])

    def test_connection_host(self):
        msg = self.forwarded(self.backend, b"GET / HTTP/1.1\r\nHost: a.test\r\n"
                             b"Connection: Host\r\n\r\n")
        self.assertEqual(msg.values("host"), ["a.test"], msg.headers)
        self.assert_no_hop_by_hop(msg, ["host"])

    def test_connection_transfer_encoding(self):
        msg = self.forwarded(self.backend, b"POST / HTTP/1.1\r\nHost: a.test\r\n"
                             b"Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n"
                             b"\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        self.assertEqual([v.lower() for v in msg.values("transfer-encoding")], ["chunked"],
                         msg.headers)
        self.assertEqual(msg.body, b"hello world")
        self.assert_no_hop_by_hop(msg, ["transfer-encoding"])

    def test_connection_x_real_ip(self):
        msg = self.forwarded(self.backend, b"GET / HTTP/1.1\r\nHost: a.test\r\n"
                             b"Connection: X-Real-IP\r\n\r\n")
        self.assertEqual(msg.values("x-real-ip"), ["::ffff:127.0.0.1"], msg.headers)
        self.assert_no_hop_by_hop(msg, ["x-real-ip"])

    def test_hop_by_hop_fields_not_forwarded(self):
        msg = self.forwarded(self.backend, b"GET / HTTP/1.1\r\nHost: a.test\r\n"
                             b"Connection: Keep-Alive, TE, Trailer, Proxy-Connection\r\n"
                             b"Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Sum\r\n"
                             b"Proxy-Connection: keep-alive\r\n\r\n")
        self.assert_no_hop_by_hop(msg)


# --------------------------------------------------------------------------- rules 2 and 3

CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"


class RequestTransferEncoding(FramingTestCase):
    """Only a lone, final `chunked` in an HTTP/1.1 request without Content-Length is accepted;
    an accepted chunked body is re-chunked by the proxy."""

    def setUp(self):
        super().setUp()
        self.backend = self.recorder("a.test")
        self.start_proxy()

    def test_ambiguous_transfer_encodings_refused(self):
        cases = {
            "identity then chunked (two fields)":
                b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
            "gzip then chunked (two fields)":
                b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            "gzip, chunked": b"Transfer-Encoding: gzip, chunked\r\n",
            "chunked, chunked": b"Transfer-Encoding: chunked, chunked\r\n",
            "chunked then Content-Length":
                b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n" % len(CHUNKED_HELLO),
            "Content-Length then chunked":
                b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(CHUNKED_HELLO),
        }
        for name, fields in cases.items():
            with self.subTest(name):
                self.assert_refused(self.backend, b"POST / HTTP/1.1\r\nHost: a.test\r\n" +
                                    fields + b"\r\n" + CHUNKED_HELLO)

    def test_chunked_in_http10_request_refused(self):
        self.assert_refused(self.backend, b"POST / HTTP/1.0\r\nHost: a.test\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO)

    def test_valid_chunked_with_extension_is_rechunked(self):
        for spelling in (b"chunked", b"Chunked"):
            with self.subTest(spelling=spelling):
                msg = self.forwarded(self.backend, b"POST / HTTP/1.1\r\nHost: a.test\r\n"
                                     b"Transfer-Encoding: " + spelling + b"\r\n\r\n"
                                     b"5;ext=1\r\nhello\r\n0\r\n\r\n")
                self.assertEqual([v.lower() for v in msg.values("transfer-encoding")],
                                 ["chunked"], msg.headers)
                self.assertEqual(msg.values("content-length"), [], msg.headers)
                self.assertEqual(msg.body, b"hello")
                self.assertNotIn(b"ext=1", msg.raw_body,
                                 "the chunk extension was forwarded: %r" % msg.raw_body)


class RequestContentLength(FramingTestCase):
    def test_content_length_forwarded_once_with_the_same_value(self):
        backend = self.recorder("a.test")
        self.start_proxy()
        msg = self.forwarded(backend, b"POST / HTTP/1.1\r\nHost: a.test\r\n"
                             b"Content-Length: 11\r\n\r\nhello world")
        self.assertEqual(msg.values("content-length"), ["11"], msg.headers)
        self.assertEqual(msg.body, b"hello world")
        self.assertEqual(msg.values("transfer-encoding"), [], msg.headers)


# --------------------------------------------------------------------------- rule 4

BAD_RESPONSES = {
    "/te-gzip-then-chunked-fields": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
                                    b"Transfer-Encoding: chunked\r\n\r\n6\r\nSECRET\r\n0\r\n\r\n",
    "/te-gzip-comma-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                              b"6\r\nSECRET\r\n0\r\n\r\n",
    "/te-chunked-comma-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n"
                                 b"\r\n6\r\nSECRET\r\n0\r\n\r\n",
    "/te-identity-then-close": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n"
                                b"SECRET", True),
    "/http10-chunked": (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"6\r\nSECRET\r\n0\r\n\r\n", True),
    "/content-length-5-and-6": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
                               b"\r\nSECRET",
    "/content-length-5-comma-6": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nSECRET",
    "/malformed-first-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"zz\r\nSECRET\r\n0\r\n\r\n",
    # Below 100 is no status (RFC 9110 section 15): neither an interim nor a final answer.
    "/status-000": b"HTTP/1.1 000 OK\r\nContent-Length: 6\r\n\r\nSECRET",
    "/status-099-after-103": b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                             b"HTTP/1.1 099 OK\r\nContent-Length: 6\r\n\r\nSECRET",
}


class ResponseFramingErrors(FramingTestCase):
    """A response whose framing is ambiguous or broken gives the client a complete 502 page,
    never the backend's bytes."""

    def test_ambiguous_or_broken_response_framing_gives_502(self):
        self.scripted("bad.test", lambda path, head: BAD_RESPONSES[path])
        self.start_proxy()
        for path in BAD_RESPONSES:
            with self.subTest(path):
                client = self.client()
                client.send(b"GET %s HTTP/1.1\r\nHost: bad.test\r\n\r\n" % path.encode())
                response = client.read_response()
                if path.endswith("-after-103"):  # the 103 is relayed before the bad answer
                    self.assertEqual(response.status, 103, response.head)
                    response = client.read_response()
                self.assert_502_page(response, client)

    def test_status_600_to_999_is_relayed(self):
        self.scripted("odd.test", lambda path, head: b"HTTP/1.1 %s Odd\r\nContent-Length: 2\r\n"
                      b"\r\nok" % path[1:].encode())
        self.start_proxy()
        for status in (600, 999):
            response = self.exchange(b"GET /%d HTTP/1.1\r\nHost: odd.test\r\n\r\n" % status)
            self.assertEqual((response.status, response.body), (status, b"ok"), response.head)


# --------------------------------------------------------------------------- rules 5 and 6

class ResponseContentLength(FramingTestCase):
    def start(self, first):
        self.scripted("r.test", lambda path, head: first if path == "/first"
                      else ok_response(path.encode()))
        self.start_proxy()

    def test_connection_content_length_in_response(self):
        self.start(b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n"
                   b"\r\nhello")
        client = self.client()
        client.send(b"GET /first HTTP/1.1\r\nHost: r.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200, response.head)
        self.assertEqual(response.values("content-length"), ["5"], response.headers)
        self.assertEqual(response.body, b"hello")
        client.send(b"GET /second HTTP/1.1\r\nHost: r.test\r\n\r\n")
        second = client.read_response()
        self.assertEqual((second.status, second.body), (200, b"/second"),
                         "the second request on the connection: %r" % client.raw[-400:])

    def test_identical_content_lengths_are_sent_once(self):
        cases = {"dup-fields.test": b"Content-Length: 5\r\nContent-Length: 5\r\n",
                 "dup-list.test": b"Content-Length: 5, 5\r\n"}
        for host, fields in cases.items():
            self.scripted(host, b"HTTP/1.1 200 OK\r\n" + fields + b"\r\nhello")
        self.start_proxy()
        for host, fields in cases.items():
            with self.subTest(fields):
                response = self.exchange(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode())
                self.assertEqual(response.status, 200, response.head)
                self.assertEqual(response.values("content-length"), ["5"], response.headers)
                self.assertEqual(response.body, b"hello")


# --------------------------------------------------------------------------- rules 7 and 8

STRAY = b"STRAYBYTES"


class BodilessResponses(FramingTestCase):
    def test_204_with_content_length_and_stray_bytes(self):
        def answer(path, head):
            if path == "/first":
                return b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n" + STRAY
            return ok_response(path.encode())
        backend = self.scripted("nb.test", answer)
        self.start_proxy(httpKeepAlive=True)
        client = self.client()
        client.send(b"GET /first HTTP/1.1\r\nHost: nb.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 204, response.head)
        self.assertEqual(response.values("content-length"), [], response.headers)
        # No body: the next bytes on the connection are the second request's response.
        client.send(b"GET /second HTTP/1.1\r\nHost: nb.test\r\n\r\n")
        second = client.read_response()
        self.assertEqual((second.status, second.body), (200, b"/second"),
                         "the second request on the connection: %r" % client.raw[-400:])
        # Another client, which may be given the pooled backend connection.
        other = self.client()
        other.send(b"GET /third HTTP/1.1\r\nHost: nb.test\r\n\r\n")
        third = other.read_response()
        self.assertEqual((third.status, third.body), (200, b"/third"), other.raw[-400:])
        client.read_rest()
        other.read_rest()
        self.assertNotIn(STRAY, client.raw + other.raw, "the 204's stray bytes reached a client")
        self.assertEqual(sorted(backend.paths), ["/first", "/second", "/third"])

    def start_304(self, first):
        self.scripted("nm.test", lambda path, head: first if path == "/first"
                      else ok_response(path.encode()))
        self.start_proxy()
        client = self.client()
        client.send(b"GET /first HTTP/1.1\r\nHost: nm.test\r\nIf-None-Match: \"e\"\r\n\r\n")
        return client, client.read_response()

    def assert_next_request_answered(self, client):
        client.send(b"GET /second HTTP/1.1\r\nHost: nm.test\r\n\r\n")
        second = client.read_response()
        self.assertEqual((second.status, second.body), (200, b"/second"),
                         "the request after the 304: %r" % client.raw[-400:])

    def test_304_keeps_content_length_without_body(self):
        client, response = self.start_304(b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n"
                                          b"Content-Length: 1234\r\n\r\n")
        self.assertEqual(response.status, 304, response.head)
        self.assertEqual(response.values("content-length"), ["1234"], response.headers)
        self.assert_next_request_answered(client)

    def test_304_drops_transfer_encoding(self):
        client, response = self.start_304(b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n"
                                          b"Transfer-Encoding: chunked\r\n\r\n")
        self.assertEqual(response.status, 304, response.head)
        self.assertEqual(response.values("transfer-encoding"), [], response.headers)
        self.assert_next_request_answered(client)

    def test_304_with_bad_content_length_is_502(self):
        client, response = self.start_304(b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n"
                                          b"Content-Length: abc\r\n\r\n")
        self.assert_502_page(response, client)


# --------------------------------------------------------------------------- rule 9

SWITCHING_WEBSOCKET = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\n\r\n" + MARK + b"T-TUNNEL-BYTES")


class Upgrades(FramingTestCase):
    def test_unsolicited_101_is_502(self):
        self.scripted("up.test", SWITCHING_WEBSOCKET)
        self.start_proxy()
        client = self.client()
        client.send(b"GET / HTTP/1.1\r\nHost: up.test\r\n\r\n")
        response = client.read_response()
        self.assertNotEqual(response.status, 101, "the unsolicited 101 reached the client")
        self.assert_502_page(response, client)
        self.assertNotIn(b" 101 ", client.raw)

    def test_101_to_another_protocol_is_502(self):
        self.scripted("up.test", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                      b"Connection: Upgrade\r\n\r\n" + MARK + b"T-TUNNEL-BYTES")
        self.start_proxy()
        client = self.client()
        client.send(b"GET / HTTP/1.1\r\nHost: up.test\r\n" + WEBSOCKET_HEADERS + b"\r\n")
        response = client.read_response()
        self.assertNotEqual(response.status, 101, "a 101 to h2c answered a websocket upgrade")
        self.assert_502_page(response, client)

    # A refused upgrade: the request asks for websocket, the backend answers 400 or 200.
    REFUSALS = {400: b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
                200: ok_response(b"ok")}

    def refusal_cases(self, timings):
        """Starts the proxy with one backend per (answer, timing); returns
        [(status, timing, host, backend)]."""
        cases = []
        for status, answer in self.REFUSALS.items():
            for when in timings:
                host = "up%d-%s.test" % (status, when)
                cases.append((status, when, host, self.scripted(host, answer)))
        self.start_proxy()
        return [(status, when, host.encode(), backend) for status, when, host, backend in cases]

    def refused_upgrade(self, status, host, second=None):
        """Sends the upgrade request (then `second` at once, when given); returns the client
        and the answer, which must be the backend's."""
        client = self.client()
        client.send(b"GET /first HTTP/1.1\r\nHost: " + host + b"\r\n" + WEBSOCKET_HEADERS +
                    b"\r\n")
        if second:
            client.send(second)
        response = client.read_response()
        self.assertEqual(response.status, status, response.head)
        return client, response

    def test_refused_upgrade_answer_has_connection_close(self):
        for status, _, host, _ in self.refusal_cases(["plain"]):
            with self.subTest(answer=status):
                _, response = self.refused_upgrade(status, host)
                self.assertIn("close", response.tokens("connection"),
                              "a refused upgrade's answer without Connection: close: %r"
                              % response.headers)

    def test_refused_upgrade_closes_the_client_connection(self):
        for status, _, host, _ in self.refusal_cases(["plain"]):
            with self.subTest(answer=status):
                client, _ = self.refused_upgrade(status, host)
                self.assertTrue(client.closed_by_peer(2.0), "the proxy kept the client "
                                "connection open after a refused upgrade")

    def test_bytes_after_a_refused_upgrade_are_never_a_request(self):
        for status, when, host, backend in self.refusal_cases(["pipelined", "after-answer"]):
            with self.subTest(answer=status, sent=when):
                self.second_after_refusal(status, when, host, backend)

    def second_after_refusal(self, status, when, host, backend):
        second = b"GET /second HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
        client, _ = self.refused_upgrade(status, host, second if when == "pipelined" else None)
        if when == "after-answer":
            with contextlib.suppress(OSError):
                client.send(second)
        client.read_rest(1.0)
        self.assertNotIn(b"HTTP/1.", client.buf, "an answer to the bytes sent after the "
                         "refused upgrade: %r" % client.buf[:300])
        time.sleep(SETTLE)
        self.assertNotIn(b"/second", backend.all_bytes(),
                         "the backend received the bytes sent after a refused upgrade: %r"
                         % backend.all_bytes()[-300:])


# --------------------------------------------------------------------------- rule 10

class HeaderInjectionFromRedis(FramingTestCase):
    def test_backend_url_with_crlf_is_502_without_injected_header(self):
        good = self.recorder()
        self.redis.rpush("frontend:inj.test", "site",
                         "http://127.0.0.1:%d/\r\nX-Injected: 1" % good.raw.port)
        self.start_proxy()
        client = self.client()
        client.send(b"GET / HTTP/1.1\r\nHost: inj.test\r\nX-Debug: 1\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 502, response.head)
        client.read_rest()
        self.assertFalse(has_header_line(client.raw, b"X-Injected"),
                         "an X-Injected header line reached the client: %r" % client.raw[:800])

    def test_identifier_with_crlf_is_escaped_in_debug_header(self):
        backend = self.http_backend()
        self.redis.rpush("frontend:inj.test", "site\r\nX-Injected: 1", backend.url)
        self.start_proxy()
        client = self.client()
        client.send(b"GET / HTTP/1.1\r\nHost: inj.test\r\nX-Debug: 1\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200, response.head)
        self.assertFalse(has_header_line(response.head, b"X-Injected"),
                         "an X-Injected header line reached the client: %r" % response.head)
        vhost = response.values("x-debug-vhost")
        self.assertEqual(len(vhost), 1, response.headers)
        self.assertNotIn("\r", vhost[0])
        self.assertNotIn("\n", vhost[0])
        self.assertEqual(vhost[0], "site%0D%0AX-Injected: 1")


# --------------------------------------------------------------------------- rules 11 and 12

class Limits(FramingTestCase):
    def setUp(self):
        super().setUp()
        self.backend = self.recorder()
        self.redis.rpush("frontend:*", "all", self.backend.url)
        self.start_proxy()

    def test_host_length(self):
        host255 = b".".join(c * 63 for c in (b"a", b"b", b"c", b"d"))
        host256 = b".".join((b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 62, b"e"))
        self.assertEqual((len(host255), len(host256)), (255, 256))
        msg = self.forwarded(self.backend, b"GET / HTTP/1.1\r\nHost: " + host255 + b"\r\n\r\n")
        self.assertEqual(msg.values("host"), [host255.decode()])
        self.assert_refused(self.backend, b"GET / HTTP/1.1\r\nHost: " + host256 + b"\r\n\r\n")

    def test_method_length(self):
        method32 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF"
        self.assertEqual(len(method32), 32)
        msg = self.forwarded(self.backend, method32 + b" / HTTP/1.1\r\nHost: m.test\r\n\r\n")
        self.assertEqual(msg.start, method32 + b" / HTTP/1.1")
        self.assert_refused(self.backend, method32 + b"G / HTTP/1.1\r\nHost: m.test\r\n\r\n")


# --------------------------------------------------------------------------- rule 13

FORGED = '6.6.6.6 - - [01/Jan/2020:00:00:00 +0000] "GET /forged HTTP/1.1" 200 1 "-" "-" "-" 0 0'


class AccessLogEscaping(FramingTestCase):
    def test_forged_x_real_ip_cannot_add_log_fields(self):
        backend = self.http_backend()
        self.redis.rpush("frontend:log.test", "ident", backend.url)
        self.start_proxy()
        request = (b"GET /logged HTTP/1.1\r\nHost: log.test\r\nUser-Agent: ua\r\n"
                   b"Referer: ref\r\n%s\r\n")
        for extra in (b"", b"X-Real-IP: " + FORGED.encode() + b"\r\n"):
            response = self.exchange(request % extra)
            self.assertEqual(response.status, 200, response.head)
        lines = self.access_log_lines(expected=2)
        self.assertEqual(len(lines), 2, lines)
        baseline, forged = lines
        escaped = FORGED.replace("\\", "\\\\").replace('"', '\\"').replace(" ", "\\x20")
        self.assertIn(escaped, forged.split(" ")[0],
                      "the X-Real-IP value is not the first field, escaped: %r" % forged)
        self.assertEqual(len(forged.split(" ")), len(baseline.split(" ")),
                         "field count differs from a plain request's line:\n%s\n%s"
                         % (baseline, forged))
        self.assertEqual(len(re.findall(r'(?<!\\)"GET', forged)), 1,
                         "more than one request-line field: %r" % forged)
        m = LOG_LINE.match(forged)
        self.assertIsNotNone(m, "not an access log line: %r" % forged)
        self.assertEqual(m.group("request"), "GET /logged HTTP/1.1")
        self.assertEqual(m.group("identifier"), "ident")


    def test_trailers_do_not_stand_in_for_logged_fields(self):
        # A chunked body's trailers are parsed after the header: an X-Real-IP, Referer or
        # User-Agent there must not become the logged remote address (trustProxies [] drops the
        # client's own X-Real-IP) or the logged fields.
        backend = self.http_backend()
        self.redis.rpush("frontend:log.test", "ident", backend.url)
        self.start_proxy(trustProxies=[])
        response = self.exchange(
            b"POST /trailer HTTP/1.1\r\nHost: log.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nhi\r\n0\r\nX-Real-IP: 6.6.6.6\r\nReferer: forged-ref\r\n"
            b"User-Agent: forged-ua\r\n\r\n")
        self.assertEqual(response.status, 200, response.head)
        lines = self.access_log_lines(expected=1)
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("::ffff:127.0.0.1 "), lines[0])
        self.assertNotIn("6.6.6.6", lines[0])
        self.assertNotIn("forged", lines[0])


# --------------------------------------------------------------------------- rules 14 and 15

class Compatibility(FramingTestCase):
    def test_status_line_without_reason_phrase(self):
        self.scripted("c.test", b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok")
        self.start_proxy()
        response = self.exchange(b"GET / HTTP/1.1\r\nHost: c.test\r\n\r\n")
        self.assertEqual((response.status, response.body), (200, b"ok"), response.head)

    def test_103_early_hints_forwarded_with_link(self):
        self.scripted("c.test", b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload"
                      b"\r\n\r\n" + ok_response(b"done"))
        self.start_proxy()
        client = self.client()
        client.send(b"GET / HTTP/1.1\r\nHost: c.test\r\n\r\n")
        hints = client.read_response()
        self.assertEqual(hints.status, 103, "expected the 103 first, got %r" % hints.head)
        self.assertEqual(hints.values("link"), ["</style.css>; rel=preload"], hints.headers)
        final = client.read_response()
        self.assertEqual((final.status, final.body), (200, b"done"), final.head)


if __name__ == "__main__":
    unittest.main()
