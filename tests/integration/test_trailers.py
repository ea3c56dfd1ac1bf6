"""Trailer fields of chunked HTTP/1.1 bodies, relayed in every protocol pair (the HTTP/2 to
HTTP/2 pairs: test_http2_backends.py). The proxy decodes and re-encodes every chunked body; the
trailer section it received goes into its own last-chunk (HTTP/1.1 receivers) or becomes a
trailing HEADERS frame with END_STREAM (HTTP/2 receivers), without the fields that have no place
in trailers (hop-by-hop, framing, Host). Checked on the raw bytes an HTTP/1.1 peer gets and on
the frames a python3-h2 peer gets: the exact fields, a body without trailers unchanged (a plain
`0\\r\\n\\r\\n`, no empty HEADERS frame), and a malformed trailer section leaving the body
incomplete. An HTTP/2 request forwarded with a Content-Length has no place for its trailers.

Run: HIPACHE_BINARY=/work/main/build/hipache /usr/bin/python3 -m unittest -v test_trailers
"""
import contextlib
import socket
import threading
import unittest

import h2.events

import harness
from framing_peers import Incomplete, parse_request
from h2_backend import H2Backend
from http2_helpers import RawH2

TIMEOUT = 5.0
HOST = "trailers.test"

# Fields a trailer section may carry but the proxy never passes on, as a backend or client
# might send them (Content-Length and Transfer-Encoding make Beast refuse the section).
LEFT_OUT = (b"Host: evil.test\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Sum\r\n"
            b"Upgrade: h2c\r\nProxy-Connection: close\r\n")


def read_until_closed(s):
    """Everything the proxy sends on `s` until it closes (or resets, or goes quiet)."""
    answer = b""
    with contextlib.suppress(socket.timeout, ConnectionResetError):
        while True:
            data = s.recv(65536)
            if not data:
                break
            answer += data
    return answer


def raw_exchange(port, request):
    """Sends `request` on a fresh connection; everything the proxy sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(request)
        return read_until_closed(s)


def last_chunk(raw_body):
    """The last-chunk and trailer section that end a chunked body, as sent (the chunks are
    walked from the start: a chunk's data may hold anything)."""
    pos = 0
    while True:
        eol = raw_body.index(b"\r\n", pos)
        size = int(raw_body[pos:eol], 16)
        if size == 0:
            return raw_body[pos:]
        pos = eol + 2 + size + 2


def dechunk(raw_body):
    pos, payload = 0, b""
    while True:
        eol = raw_body.index(b"\r\n", pos)
        size = int(raw_body[pos:eol], 16)
        if size == 0:
            return payload
        payload += raw_body[eol + 2:eol + 2 + size]
        pos = eol + 2 + size + 2


class RecordingBackend:
    """A raw HTTP/1.1 backend: on each connection reads one request (framed by its own head),
    records its bytes, sends answer(path) and closes. A connection the proxy closes first is
    recorded as it stands."""

    def __init__(self, testcase, answer):
        self.answer = answer if callable(answer) else (lambda path: answer)
        self.received = []
        self.lock = threading.Lock()
        self.raw = testcase.raw_backend(self._script)
        self.url = self.raw.url

    def _script(self, conn):
        conn.settimeout(TIMEOUT)
        data = b""
        request = None
        try:
            while request is None:
                try:
                    request = parse_request(data)
                except Incomplete:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            if request is not None:
                conn.sendall(self.answer(request.start.split(b" ")[1]))
        finally:
            with self.lock:
                self.received.append(data)
            conn.close()

    def request(self, count):
        """The bytes of the count-th connection's request, once it is over."""
        assert harness.wait_until(lambda: len(self.received) >= count, TIMEOUT), \
            "the backend got no request"
        return self.received[count - 1]


def chunked_answer(body_chunks):
    return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Sum: in-header\r\n"
            b"Connection: close\r\n\r\n" + body_chunks)


class TrailersTestCase(harness.ProxyTestCase):
    def start_with(self, backend_url):
        self.redis.rpush("frontend:" + HOST, "trailers", backend_url)
        self.start_proxy()

    def h2_client(self):
        client = RawH2(self.proxy.port)
        self._stoppers.append(client.close)
        return client

    def h2_backend(self):
        backend = H2Backend()
        self._stoppers.append(backend.stop)
        return backend


class Http11BackendAnswer(TrailersTestCase):
    """A chunked answer of an HTTP/1.1 backend, with a trailer section; the backend answers
    ANSWERS[path]."""

    ANSWERS = {
        b"/trailers": chunked_answer(
            b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\nX-Sum: in-trailer\r\n" +
            LEFT_OUT + b"X-Checksum: def\r\n\r\n"),
        b"/none": chunked_answer(b"5\r\nhello\r\n0\r\n\r\n"),
        b"/left-out": chunked_answer(b"5\r\nhello\r\n0\r\n" + LEFT_OUT + b"\r\n"),
        b"/no-colon": chunked_answer(b"5\r\nhello\r\n0\r\nno colon here\r\n\r\n"),
        b"/length": chunked_answer(b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"),
        b"/space": chunked_answer(b"5\r\nhello\r\n0\r\nX-Sp ace: 1\r\n\r\n"),
    }

    def setUp(self):
        super().setUp()
        self.backend = RecordingBackend(self, lambda path: self.ANSWERS[path])
        self.start_with(self.backend.url)

    def http11_answer(self, path):
        answer = raw_exchange(self.proxy.port, b"GET " + path + b" HTTP/1.1\r\nHost: " +
                              HOST.encode() + b"\r\nConnection: close\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), answer)
        self.assertIn(b"\r\nTransfer-Encoding: chunked", head)
        return head, body

    def h2_answer(self, path):
        client = self.h2_client()
        stream = client.request(HOST, path.decode())
        status, headers, body, ended = client.response(stream, timeout=TIMEOUT)
        events = [e for e in client.events if getattr(e, "stream_id", None) == stream]
        return status, headers, body, ended, events

    def test_http11_client_gets_the_trailers_in_our_last_chunk(self):
        head, body = self.http11_answer(b"/trailers")
        self.assertIn(b"\r\nX-Sum: in-header", head)
        self.assertNotIn(b"in-trailer", head)
        self.assertEqual(dechunk(body), b"hello world")
        # Same-named fields stay in their order (a name the header has comes first: the order of
        # different names means nothing, RFC 9110 section 5.3); those with no place in trailers
        # are left out.
        self.assertEqual(last_chunk(body), b"0\r\nX-Sum: in-trailer\r\nX-Checksum: abc\r\n"
                                           b"X-Checksum: def\r\n\r\n")

    def test_http11_client_gets_a_plain_last_chunk_without_trailers(self):
        for path in (b"/none", b"/left-out"):
            with self.subTest(path=path):
                _, body = self.http11_answer(path)
                self.assertEqual(dechunk(body), b"hello")
                self.assertEqual(last_chunk(body), b"0\r\n\r\n")

    def test_malformed_trailer_section_leaves_the_http11_answer_incomplete(self):
        for path in (b"/no-colon", b"/length", b"/space"):
            with self.subTest(path=path):
                _, body = self.http11_answer(path)
                self.assertEqual(body, b"5\r\nhello\r\n")  # no last-chunk: then the close

    def test_http2_client_gets_a_trailing_headers_frame(self):
        status, headers, body, ended, events = self.h2_answer(b"/trailers")
        self.assertEqual((status, body, ended), (200, b"hello world", True))
        self.assertEqual(headers["x-sum"], "in-header")
        trailers = [e for e in events if isinstance(e, h2.events.TrailersReceived)]
        self.assertEqual(len(trailers), 1)
        self.assertEqual(trailers[0].headers, [("x-sum", "in-trailer"), ("x-checksum", "abc"),
                                               ("x-checksum", "def")])
        # That HEADERS frame ends the stream, after the last DATA frame.
        self.assertIsNotNone(trailers[0].stream_ended)
        self.assertIsInstance(events[-1], h2.events.StreamEnded)
        self.assertIsInstance(events[-2], h2.events.TrailersReceived)
        self.assertIsNone(next(e for e in reversed(events)
                               if isinstance(e, h2.events.DataReceived)).stream_ended)

    def test_http2_client_gets_no_headers_frame_without_trailers(self):
        for path in (b"/none", b"/left-out"):
            with self.subTest(path=path):
                status, _, body, ended, events = self.h2_answer(path)
                self.assertEqual((status, body, ended), (200, b"hello", True))
                self.assertFalse([e for e in events if isinstance(e, h2.events.TrailersReceived)])
                # END_STREAM came on a DATA frame.
                data = [e for e in events if isinstance(e, h2.events.DataReceived)]
                self.assertIsNotNone(data[-1].stream_ended)

    def test_malformed_trailer_section_resets_the_http2_stream(self):
        for path in (b"/no-colon", b"/length", b"/space"):
            with self.subTest(path=path):
                status, _, body, ended, events = self.h2_answer(path)
                self.assertEqual((status, body, ended), (200, b"hello", False))
                self.assertTrue([e for e in events if isinstance(e, h2.events.StreamReset)])
                self.assertFalse([e for e in events
                                  if isinstance(e, h2.events.TrailersReceived)])


class Http11ClientRequest(TrailersTestCase):
    """A chunked request of an HTTP/1.1 client, with a trailer section."""

    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    def send(self, body_chunks):
        return raw_exchange(self.proxy.port, (
            b"POST /up HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nX-Sum: in-header\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body_chunks))

    def http11_backend(self):
        backend = RecordingBackend(self, self.OK)
        self.start_with(backend.url)
        return backend

    def test_http11_backend_gets_the_trailers_in_our_last_chunk(self):
        backend = self.http11_backend()
        answer = self.send(b"3\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Checksum: abc\r\n" + LEFT_OUT +
                           b"X-Sum: in-trailer\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        request = parse_request(backend.request(1))
        self.assertEqual(request.body, b"abcdefg")
        self.assertEqual(request.values("X-Sum"), ["in-header"])
        self.assertEqual(request.values("Host"), [HOST])
        self.assertEqual(last_chunk(request.raw_body),
                         b"0\r\nX-Sum: in-trailer\r\nX-Checksum: abc\r\n\r\n")
        self.assertEqual(request.rest, b"")

    def test_http11_backend_gets_a_plain_last_chunk_without_trailers(self):
        backend = self.http11_backend()
        for count, section in enumerate((b"", LEFT_OUT), 1):
            with self.subTest(section=section):
                answer = self.send(b"3\r\nabc\r\n0\r\n" + section + b"\r\n")
                self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
                request = parse_request(backend.request(count))
                self.assertEqual(request.body, b"abc")
                self.assertEqual(last_chunk(request.raw_body), b"0\r\n\r\n")

    def test_malformed_trailer_section_never_completes_the_request(self):
        backend = self.http11_backend()
        answer = self.send(b"3\r\nabc\r\n0\r\nno colon here\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer)
        received = backend.request(1)
        with self.assertRaises(Incomplete):
            parse_request(received)
        self.assertNotIn(b"\r\n0\r\n", received)

    def test_http2_backend_gets_a_trailing_headers_frame(self):
        backend = self.h2_backend()
        self.start_with(backend.url)
        answer = self.send(b"3\r\nabc\r\n0\r\nX-Checksum: abc\r\n" + LEFT_OUT +
                           b"X-Sum: in-trailer\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        request = backend.requests[-1]
        self.assertEqual((request.body, request.ended), (b"abc", True))
        self.assertEqual(request.field("x-sum"), "in-header")
        self.assertEqual(request.trailers, [("x-sum", "in-trailer"), ("x-checksum", "abc")])

    def test_http2_backend_gets_no_headers_frame_without_trailers(self):
        backend = self.h2_backend()
        self.start_with(backend.url)
        for section in (b"", LEFT_OUT):
            with self.subTest(section=section):
                answer = self.send(b"3\r\nabc\r\n0\r\n" + section + b"\r\n")
                self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
                request = backend.requests[-1]
                self.assertEqual((request.body, request.ended), (b"abc", True))
                self.assertEqual(request.trailers, [])

    def test_malformed_trailer_section_never_ends_the_http2_request(self):
        backend = self.h2_backend()
        self.start_with(backend.url)
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=TIMEOUT) as s:
            s.sendall(b"POST /up HTTP/1.1\r\nHost: " + HOST.encode() +
                      b"\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
            # The backend's stream is open and has the first piece: then the broken end.
            self.assertTrue(harness.wait_until(
                lambda: backend.requests and backend.requests[-1].body == b"abc", TIMEOUT))
            s.sendall(b"0\r\nno colon here\r\n\r\n")
            answer = read_until_closed(s)
        self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer)
        self.assertEqual(len(backend.requests), 1)
        self.assertFalse(backend.requests[0].ended)


class Http2ClientRequest(TrailersTestCase):
    """An HTTP/2 client's request trailers, to an HTTP/1.1 backend."""

    TRAILERS = (("x-checksum", "abc"), ("host", "evil.test"), ("x-sum", "in-trailer"))

    def setUp(self):
        super().setUp()
        self.backend = RecordingBackend(self, Http11ClientRequest.OK)
        self.start_with(self.backend.url)
        self.sent = 0

    def send(self, headers=(), trailers=TRAILERS):
        client = self.h2_client()
        stream = client.request(HOST, "/up", method="POST",
                                headers=[("x-sum", "in-header")] + list(headers),
                                body=b"payload", end=not trailers)
        if trailers:
            client.conn.send_headers(stream, list(trailers), end_stream=True)
            client.flush()
        status, _, body, ended = client.response(stream, timeout=TIMEOUT)
        self.assertEqual((status, body, ended), (200, b"ok", True))
        self.sent += 1
        return parse_request(self.backend.request(self.sent))

    def test_chunked_forwarding_carries_the_trailers_in_our_last_chunk(self):
        request = self.send()
        self.assertEqual(request.values("Transfer-Encoding"), ["chunked"])
        self.assertEqual(request.body, b"payload")
        self.assertEqual(request.values("x-sum"), ["in-header"])
        self.assertEqual(last_chunk(request.raw_body),
                         b"0\r\nx-checksum: abc\r\nx-sum: in-trailer\r\n\r\n")

    def test_chunked_forwarding_without_trailers_ends_with_a_plain_last_chunk(self):
        for trailers in ((), (("host", "evil.test"),)):
            with self.subTest(trailers=trailers):
                request = self.send(trailers=trailers)
                self.assertEqual(request.body, b"payload")
                self.assertEqual(last_chunk(request.raw_body), b"0\r\n\r\n")

    def test_a_body_forwarded_with_a_length_has_no_place_for_trailers(self):
        request = self.send(headers=[("content-length", "7")])
        self.assertEqual(request.values("Content-Length"), ["7"])
        self.assertEqual(request.values("Transfer-Encoding"), [])
        self.assertEqual((request.raw_body, request.rest), (b"payload", b""))
        self.assertEqual(request.values("x-checksum"), [])


if __name__ == "__main__":
    unittest.main()
