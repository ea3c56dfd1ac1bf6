"""HTTP/2 backends (h2c:// in Redis): what the backend receives from HTTP/1.1 and HTTP/2 clients
(pseudo-headers, forwarded fields, no connection-specific ones, te: trailers, bodies with and
without a length, trailers), what clients get back (bodies, trailers after a chunked body or as
HTTP/2 trailers), a backend that resets or does not speak HTTP/2, and a mixed list.

The backend: h2_backend.py (python3-h2). gRPC end to end: test_grpc.py.
Run: HIPACHE_BINARY=/work/main/build/hipache /usr/bin/python3 -m unittest -v test_http2_backends
"""
import socket
import unittest

import h2.events

import harness
from h2_backend import H2Backend
from http2_helpers import RawH2

CONNECTION_SPECIFIC = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                       "upgrade", "host"}


def raw_http11(port, request, timeout=10):
    """Sends `request` on a fresh connection and reads until the proxy closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        answer = b""
        while True:
            data = s.recv(65536)
            if not data:
                return answer
            answer += data


def dechunk(body):
    """(payload, trailer lines) of a chunked body."""
    payload = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return payload, [line for line in body.split(b"\r\n") if line]
        payload += body[:size]
        body = body[size + 2:]


class Http2BackendTestCase(harness.ProxyTestCase):
    def start_with(self, *urls):
        self.redis.rpush("frontend:h2b.test", "h2b", *urls)
        self.start_proxy()

    def h2_backend(self, **kwargs):
        backend = H2Backend(**kwargs)
        self._stoppers.append(backend.stop)
        return backend


class WhatTheBackendReceives(Http2BackendTestCase):
    def test_http11_request_becomes_a_clean_http2_request(self):
        backend = self.h2_backend()
        self.start_with(backend.url)
        answer = raw_http11(self.proxy.port, (
            b"POST /path?q=1 HTTP/1.1\r\nHost: h2b.test\r\nContent-Length: 5\r\n"
            b"Keep-Alive: timeout=5\r\nX-Custom: Value\r\nConnection: close, X-Custom-Hop\r\n"
            b"X-Custom-Hop: gone\r\n\r\nhello"))
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), answer)
        self.assertEqual(dechunk(body), (b"h2 backend", []))
        request = backend.requests[-1]
        self.assertEqual(request.headers[:4], [(":method", "POST"), (":scheme", "http"),
                                               (":authority", "h2b.test"), (":path", "/path?q=1")])
        names = [name for name, _ in request.headers]
        self.assertEqual(names, [n.lower() for n in names])
        self.assertFalse(CONNECTION_SPECIFIC & set(names), names)
        self.assertNotIn("x-custom-hop", names)
        self.assertEqual(request.field("x-custom"), "Value")
        self.assertEqual(request.field("content-length"), "5")
        self.assertEqual(request.field("te"), "trailers")
        self.assertEqual(request.field("x-forwarded-for"), "::ffff:127.0.0.1")
        self.assertEqual(request.body, b"hello")
        self.assertTrue(request.ended)

    def test_chunked_request_body_without_length(self):
        backend = self.h2_backend()
        self.start_with(backend.url)
        answer = raw_http11(self.proxy.port, (
            b"PUT /up HTTP/1.1\r\nHost: h2b.test\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        request = backend.requests[-1]
        self.assertEqual(request.body, b"abcdefg")
        self.assertIsNone(request.field("content-length"))
        self.assertTrue(request.ended)

    def test_http2_client_trailers_both_ways(self):
        backend = self.h2_backend(answer=lambda request: (
            200, [("content-type", "application/octet-stream")], b"answer body",
            [("x-checksum", "abc"), ("x-count", "1")]))
        self.start_with(backend.url)
        client = RawH2(self.proxy.port)
        self._stoppers.append(client.close)
        stream = client.request("h2b.test", "/t", method="POST", body=b"payload", end=False)
        client.conn.send_headers(stream, [("x-request-trailer", "sent")], end_stream=True)
        client.flush()
        status, _, body, ended = client.response(stream, timeout=10)
        self.assertEqual((status, body, ended), (200, b"answer body", True))
        trailers = [e for e in client.events
                    if isinstance(e, h2.events.TrailersReceived) and e.stream_id == stream]
        self.assertEqual(len(trailers), 1)
        self.assertEqual(dict(trailers[0].headers), {"x-checksum": "abc", "x-count": "1"})
        request = backend.requests[-1]
        self.assertEqual(request.body, b"payload")
        self.assertEqual(request.trailers, [("x-request-trailer", "sent")])


class WhatTheClientGets(Http2BackendTestCase):
    def test_large_body_to_an_http11_client(self):
        payload = bytes(range(256)) * 12 * 1024  # 3 MB: the backend's window reopens many times
        backend = self.h2_backend(answer=lambda request: (
            200, [("content-length", str(len(payload)))], payload, []))
        self.start_with(backend.url)
        status, headers, body = self.request("GET", "/big", host="h2b.test", timeout=30)
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-length"], str(len(payload)))
        self.assertEqual(body, payload)

    def test_trailers_after_a_chunked_body_for_http11(self):
        backend = self.h2_backend(answer=lambda request: (
            200, [], b"streamed", [("x-checksum", "abc"), ("keep-alive", "5"),
                                   ("host", "evil.test")]))
        self.start_with(backend.url)
        answer = raw_http11(self.proxy.port,
                            b"GET / HTTP/1.1\r\nHost: h2b.test\r\nConnection: close\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertIn(b"Transfer-Encoding: chunked", head)
        payload, trailer_lines = dechunk(body)
        self.assertEqual(payload, b"streamed")
        # Hop-by-hop fields and Host have no place among trailers: they are left out.
        self.assertEqual(trailer_lines, [b"x-checksum: abc"])

    def test_malformed_trailers_leave_the_body_incomplete(self):
        # nghttp2 refuses a Content-Length among trailers: the answer is cut short, never
        # completed as if nothing happened.
        backend = self.h2_backend(answer=lambda request: (
            200, [], b"streamed", [("content-length", "99")]))
        self.start_with(backend.url)
        answer = raw_http11(self.proxy.port,
                            b"GET / HTTP/1.1\r\nHost: h2b.test\r\nConnection: close\r\n\r\n")
        self.assertTrue(answer.endswith(b"\r\n8\r\nstreamed\r\n"), answer)

    def test_head_keeps_the_length_and_sends_no_body(self):
        backend = self.h2_backend(answer=lambda request: (
            200, [("content-length", "1234")], b"", []))
        self.start_with(backend.url)
        answer = raw_http11(self.proxy.port,
                            b"HEAD / HTTP/1.1\r\nHost: h2b.test\r\nConnection: close\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        self.assertIn(b"content-length: 1234", answer.lower())
        self.assertTrue(answer.endswith(b"\r\n\r\n"), answer)


class FailingBackends(Http2BackendTestCase):
    def test_stream_reset_before_an_answer_is_a_502(self):
        backend = self.h2_backend(mode="reset")
        self.start_with(backend.url)
        status, headers, _ = self.request("GET", "/", host="h2b.test",
                                          headers={"X-Debug": "1"})
        self.assertEqual(status, 502)
        self.assertEqual(headers["x-debug-error"], "Backend closed the connection")

    def test_backend_that_does_not_speak_http2_is_a_502(self):
        backend = self.h2_backend(mode="garbage")
        self.start_with(backend.url)
        status, headers, _ = self.request("GET", "/", host="h2b.test",
                                          headers={"X-Debug": "1"})
        self.assertEqual(status, 502)
        self.assertEqual(headers["x-debug-error"], "Backend sent an invalid response")
        self.assertIsNone(self.proxy.process.poll())

    def test_mixed_list_serves_from_both_kinds(self):
        h2 = self.h2_backend()
        h1 = self.http_backend("http1 backend")
        self.start_with(h2.url, h1.url)
        seen = set()

        def both():
            status, _, body = self.request("GET", "/", host="h2b.test")
            self.assertEqual(status, 200)
            seen.add(b"h2 backend" in body)
            return seen == {True, False}
        self.assertTrue(harness.wait_until(both, 20, 0))


if __name__ == "__main__":
    unittest.main()
