"""HTTP/2 backends (h2c:// in Redis): what the backend receives from HTTP/1.1 and HTTP/2 clients
(pseudo-headers, forwarded fields, no connection-specific ones, te: trailers, bodies with and
without a length, trailers), what clients get back (bodies, trailers after a chunked body or as
HTTP/2 trailers), a backend that resets or does not speak HTTP/2, and a mixed list. Kept
connections (httpKeepAlive): one backend connection for requests in a row (h2c and h2://), none
kept without it, an idle connection the backend ends (GOAWAY, garbage, close) left for a new one,
and a refused stream on a reused connection sent again on a fresh one, body and all.

The backend: h2_backend.py (python3-h2). gRPC end to end: test_grpc.py.
Run: HIPACHE_BINARY=/work/main/build/hipache /usr/bin/python3 -m unittest -v test_http2_backends
"""
import socket
import ssl
import threading
import unittest

import h2.events

import harness
from admin_helpers import AdminTestCase
from h2_backend import H2Backend
from http2_helpers import RawH2
from tls_pki import shared_pki, tearDownModule  # noqa: F401 (unittest runs it)

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
    def start_with(self, *urls, **server):
        self.redis.rpush("frontend:h2b.test", "h2b", *urls)
        self.start_proxy(**server)

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


def sized_answer(request):
    """A body as long as the path says (/size/N), else a short one."""
    path = request.field(":path")
    if request.field(":method") == "HEAD":
        return 200, [("content-length", path[6:])], b"", []
    if path.startswith("/size/"):
        return 200, [("content-type", "text/plain")], b"s" * int(path[6:]), []
    return 200, [("content-type", "text/plain")], b"h2 backend:" + request.body, []


class KeptConnections(Http2BackendTestCase):
    def get(self, path="/", **kwargs):
        return self.request("GET", path, host="h2b.test", **kwargs)

    def test_requests_in_a_row_share_one_connection(self):
        backend = self.h2_backend(answer=sized_answer)
        self.start_with(backend.url, httpKeepAlive=True)
        # Answers larger than the connection's initial window (64 KB) in a row: the window
        # reopens as each answer reaches its client, or the third would stall.
        for _ in range(3):
            status, _, body = self.get("/size/200000")
            self.assertEqual((status, len(body)), (200, 200000))
        for i in range(3):
            status, _, body = self.request("POST", "/post", host="h2b.test",
                                           body=b"body-%d" % i)
            self.assertEqual((status, body), (200, b"h2 backend:body-%d" % i))
        status, _, _ = self.request("HEAD", "/size/10", host="h2b.test")
        self.assertEqual(status, 200)
        status, _, body = self.get("/last")
        self.assertEqual((status, body), (200, b"h2 backend:"))
        self.assertEqual(len(backend.requests), 8)
        self.assertEqual(backend.connections, 1,
                         [(r.field(":path"), r.connection) for r in backend.requests])
        self.assertEqual(backend.closed_by_proxy, 0)

    def test_http2_client_requests_share_one_backend_connection(self):
        backend = self.h2_backend(answer=sized_answer)
        self.start_with(backend.url, httpKeepAlive=True)
        client = RawH2(self.proxy.port)
        self._stoppers.append(client.close)
        for i in range(3):
            stream = client.request("h2b.test", "/c", method="POST", body=b"c%d" % i)
            status, _, body, ended = client.response(stream, timeout=10)
            self.assertEqual((status, body, ended), (200, b"h2 backend:c%d" % i, True))
        self.assertEqual(backend.connections, 1)

    def test_max_sockets_one_connection_for_concurrent_requests(self):
        # maxSockets 1: requests at once wait for the one connection, each taking it over from
        # the pool in turn.
        backend = self.h2_backend(answer=sized_answer)
        self.start_with(backend.url, httpKeepAlive=True, maxSockets=1)
        results = []

        def one(i):
            results.append(self.request("POST", "/m", host="h2b.test", body=b"m%d" % i)[:3:2])
        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        self.assertEqual(sorted(results), [(200, b"h2 backend:m%d" % i) for i in range(6)])
        self.assertEqual(backend.connections, 1)

    def test_without_keep_alive_each_request_has_its_own(self):
        backend = self.h2_backend()
        self.start_with(backend.url, httpKeepAlive=False)
        for _ in range(3):
            status, _, _ = self.get()
            self.assertEqual(status, 200)
        self.assertEqual(backend.connections, 3)
        self.assertTrue(harness.wait_until(lambda: backend.closed_by_proxy == 3, 10))

    def test_idle_connection_answers_ping_and_settings_and_is_reused(self):
        backend = self.h2_backend(mode="ping_after_answer")
        self.start_with(backend.url, httpKeepAlive=True)
        self.assertEqual(self.get("/first")[0], 200)
        # Acknowledged while idle in the pool (the preface's SETTINGS were the first ack).
        self.assertTrue(harness.wait_until(
            lambda: backend.ping_acks == 1 and backend.settings_acks == 2, 10))
        self.assertEqual(self.get("/second")[0], 200)
        self.assertEqual(backend.connections, 1)
        self.assertEqual(backend.closed_by_proxy, 0)

    def check_idle_connection_ended_by_backend(self, mode):
        backend = self.h2_backend(mode=mode)
        self.start_with(backend.url, httpKeepAlive=True)
        status, _, _ = self.get("/first")
        self.assertEqual(status, 200)
        # The idle session read the backend's last word and closed the connection.
        self.assertTrue(harness.wait_until(lambda: backend.closed_by_proxy == 1, 10))
        status, _, _ = self.get("/second")
        self.assertEqual(status, 200)
        self.assertEqual(backend.connections, 2)
        self.assertEqual([r.connection for r in backend.requests], [1, 2])
        self.assertEqual(self.redis.exists("dead:h2b.test"), 0)
        self.assertIsNone(self.proxy.process.poll())

    def test_goaway_while_idle_leaves_the_pool(self):
        self.check_idle_connection_ended_by_backend("goaway_after_answer")

    def test_garbage_while_idle_leaves_the_pool(self):
        self.check_idle_connection_ended_by_backend("garbage_after_answer")

    def test_backend_closes_after_each_answer(self):
        # Closed just after the answer: the next request may take the connection before the
        # close is read; then it is sent again on a fresh one. (A POST would not be: a closed
        # connection does not say the backend never processed it, as HTTP/1.1's do not.)
        backend = self.h2_backend(answer=sized_answer, mode="close_after_answer")
        self.start_with(backend.url, httpKeepAlive=True)
        for i in range(4):
            status, _, body = self.get("/p%d" % i)
            self.assertEqual((status, body), (200, b"h2 backend:"))
        self.assertEqual([r.field(":path") for r in backend.requests],
                         ["/p0", "/p1", "/p2", "/p3"])
        self.assertEqual(backend.connections, 4)
        self.assertEqual(self.redis.exists("dead:h2b.test"), 0)

    def test_refused_stream_on_a_reused_connection_is_sent_again(self):
        backend = self.h2_backend(answer=sized_answer, mode="refuse_reused")
        self.start_with(backend.url, httpKeepAlive=True)
        status, _, _ = self.get("/first")
        self.assertEqual(status, 200)
        status, _, body = self.get("/get")
        self.assertEqual((status, body), (200, b"h2 backend:"))
        status, _, body = self.request("POST", "/post", host="h2b.test", body=b"once only",
                                       headers={"X-Debug": "1"})
        self.assertEqual((status, body), (200, b"h2 backend:once only"), _)
        paths = [(r.field(":path"), r.refused, r.connection) for r in backend.requests]
        # Each reused connection refused its second stream; the request went to a fresh one.
        self.assertEqual(paths, [("/first", False, 1), ("/get", True, 1), ("/get", False, 2),
                                 ("/post", True, 2), ("/post", False, 3)])
        self.assertEqual([r.body for r in backend.processed()], [b"", b"", b"once only"])
        self.assertEqual(self.redis.exists("dead:h2b.test"), 0)

    def test_stream_refused_at_its_header_on_a_reused_connection_is_sent_again(self):
        backend = self.h2_backend(answer=sized_answer, mode="refuse_reused_at_header")
        self.start_with(backend.url, httpKeepAlive=True)
        self.assertEqual(self.get("/first")[0], 200)
        for i in range(3):
            status, _, body = self.request("POST", "/p", host="h2b.test", body=b"early-%d" % i)
            self.assertEqual((status, body), (200, b"h2 backend:early-%d" % i))
        self.assertEqual([r.body for r in backend.processed()],
                         [b"", b"early-0", b"early-1", b"early-2"])
        self.assertEqual(len(backend.requests) - len(backend.processed()), 3)
        self.assertEqual(self.redis.exists("dead:h2b.test"), 0)

    def test_refused_stream_with_a_large_body_is_a_502(self):
        # A body past what is kept for a replay (64 KB) cannot be sent again.
        backend = self.h2_backend(mode="refuse_reused")
        self.start_with(backend.url, httpKeepAlive=True)
        self.assertEqual(self.get("/first")[0], 200)
        status, _, _ = self.request("POST", "/big", host="h2b.test", body=b"b" * 100000)
        self.assertEqual(status, 502)
        self.assertEqual(len(backend.processed()), 1)
        self.assertIsNone(self.proxy.process.poll())

    def test_h2_tls_backend_reused_after_one_handshake(self):
        pki = shared_pki()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki.ip, pki.ip_key)
        context.set_alpn_protocols(["h2"])
        backend = self.h2_backend(answer=sized_answer, tls=context)
        self.start_with(backend.url, httpKeepAlive=True, backendTlsVerify=False)
        for i in range(4):
            status, _, body = self.request("POST", "/t", host="h2b.test", body=b"t%d" % i)
            self.assertEqual((status, body), (200, b"h2 backend:t%d" % i))
        self.assertEqual(backend.connections, 1)


class KeptConnectionMetrics(Http2BackendTestCase, AdminTestCase):
    def test_kept_connection_counts_as_idle_then_busy(self):
        backend = self.h2_backend(answer=sized_answer)
        self.redis.rpush("frontend:h2b.test", "h2b", backend.url)
        config = self.admin_config(workers=1)
        config["server"]["httpKeepAlive"] = True
        self.start_proxy(config)
        harness.wait_for_port(self.admin_port)
        for _ in range(3):
            self.assertEqual(self.get_status(), 200)
        idle = 'hipache_upstream_connections{state="idle"}'
        busy = 'hipache_upstream_connections{state="busy"}'
        # The gauges are refreshed once a second.
        self.assertTrue(harness.wait_until(
            lambda: (lambda m: (m[idle], m[busy]) == (1, 0))(self.scrape()), 10))
        self.assertEqual(backend.connections, 1)
        # The backend closes it while idle: it leaves the pool (no request needed to notice).
        backend.close_connections()
        self.assertTrue(harness.wait_until(
            lambda: (lambda m: (m[idle], m[busy]) == (0, 0))(self.scrape()), 10))
        self.assertEqual(self.get_status(), 200)
        self.assertEqual(backend.connections, 2)

    def get_status(self):
        return self.request("GET", "/", host="h2b.test")[0]


if __name__ == "__main__":
    unittest.main()
