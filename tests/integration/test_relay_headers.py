"""Relaying HTTP through the proxy (SPEC section 5), headers: header blocks relayed exactly,
large header blocks both ways, hop-by-hop fields dropped in both directions and X-Forwarded-*
added when absent.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_relay_headers
"""
import json
import time
import unittest

import harness
from relay_helpers import RelayTestCase, header_values


class HeadersTest(RelayTestCase):
    HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade")

    def test_header_blocks_are_relayed_exactly(self):
        """Start lines, repeated fields (in their order; Beast's field list groups them by
        name, which HTTP allows), odd casing and empty values survive the proxy's own header
        serialization, both ways."""
        seen = []

        def script(conn):
            seen.append(harness.read_request_head(conn))
            conn.sendall(b"HTTP/1.1 299 Quite Fine\r\nSet-Cookie: a=1\r\nX-CaSe: v\r\n"
                         b"X-Empty:\r\nSet-Cookie: b=2\r\nContent-Length: 3\r\n\r\nabc")
        backend = self.raw_backend(script)
        self.route("exact.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"PURGE /p/a%20th?q=1&r=2 HTTP/1.1\r\nHost: exact.test\r\n"
                    b"X-Dup: one\r\nx-lower: v\r\nX-Dup: two\r\nX-Blank:\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.raw_head.split(b"\r\n", 1)[0], b"HTTP/1.1 299 Quite Fine")
        self.assertEqual(response.body, b"abc")
        names = [name for name, _ in response.headers]
        self.assertEqual(names[:4], ["Set-Cookie", "Set-Cookie", "X-CaSe", "X-Empty"])
        self.assertEqual(response.get_all("Set-Cookie"), ["a=1", "b=2"])
        self.assertEqual(response.get("X-Empty"), "")
        self.assertTrue(response.raw_head.endswith(b"\r\n\r\n"))

        lines = seen[0].split(b"\r\n")
        self.assertEqual(lines[0], b"PURGE /p/a%20th?q=1&r=2 HTTP/1.1")
        self.assertEqual(lines[1], b"Host: exact.test")
        self.assertEqual(lines[2:6], [b"X-Dup: one", b"X-Dup: two", b"x-lower: v", b"X-Blank: "])
        self.assertTrue(seen[0].endswith(b"\r\n\r\n"))

    def test_missing_reason_phrase_gets_the_standard_one(self):
        def script(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n")
        backend = self.raw_backend(script)
        self.route("noreason.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET / HTTP/1.1\r\nHost: noreason.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.raw_head.split(b"\r\n", 1)[0], b"HTTP/1.1 404 Not Found")

    def test_request_hop_by_hop_headers_not_forwarded(self):
        backend = self.http_backend("one")
        self.route("hop.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET /hop HTTP/1.1\r\n"
                    b"Host: Hop.Test:8080\r\n"
                    b"Connection: keep-alive, X-Foo\r\n"
                    b"X-Foo: secret\r\n"
                    b"Keep-Alive: timeout=5\r\n"
                    b"Proxy-Connection: keep-alive\r\n"
                    b"TE: trailers\r\n"
                    b"Trailer: X-Checksum\r\n"
                    b"Upgrade: h2c\r\n"
                    b"X-Custom: kept\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        headers = backend.requests[0]["header_list"]
        names = [k.lower() for k, _ in headers]
        for name in ("x-foo", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"):
            self.assertNotIn(name, names)
        for value in header_values(headers, "Connection"):
            # Only the proxy's own framing for the backend connection may appear.
            self.assertEqual(value.lower(), "close")
        self.assertEqual(header_values(headers, "X-Custom"), ["kept"])
        self.assertEqual(header_values(headers, "Host"), ["Hop.Test:8080"])

        # Connection: close plus a named header: neither forwarded, client connection closed.
        client.send(b"GET /hop2 HTTP/1.1\r\nHost: hop.test:80\r\nConnection: close, X-Bar\r\n"
                    b"X-Bar: secret\r\nX-Baz: kept\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertIn("close", response.connection_tokens())
        self.assertTrue(client.wait_closed(2))
        headers = backend.requests[1]["header_list"]
        names = [k.lower() for k, _ in headers]
        self.assertNotIn("x-bar", names)
        self.assertEqual(header_values(headers, "X-Baz"), ["kept"])
        self.assertEqual(header_values(headers, "Host"), ["hop.test:80"])
        for value in header_values(headers, "Connection"):
            self.assertEqual(value.lower(), "close")

    def test_request_hop_by_hop_with_backend_keep_alive(self):
        backend = self.http_backend("one")
        self.route("hopka.test", backend)
        self.start_proxy(httpKeepAlive=True)
        client = self.client()
        client.send(b"GET /hop HTTP/1.1\r\nHost: hopka.test\r\nConnection: X-Foo, close\r\n"
                    b"X-Foo: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\r\n")
        self.assertEqual(client.read_response().status, 200)
        headers = backend.requests[0]["header_list"]
        names = [k.lower() for k, _ in headers]
        for name in ("x-foo", "keep-alive", "te"):
            self.assertNotIn(name, names)
        for value in header_values(headers, "Connection"):
            self.assertNotIn("x-foo", value.lower())
            self.assertNotIn("close", value.lower(),
                             "the client's Connection: close leaked to the pooled backend")

    def test_response_hop_by_hop_headers_not_forwarded(self):
        def script(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\n"
                         b"Content-Length: 5\r\n"
                         b"Connection: keep-alive, X-Secret\r\n"
                         b"X-Secret: s3cr3t\r\n"
                         b"Keep-Alive: timeout=5, max=100\r\n"
                         b"Proxy-Connection: keep-alive\r\n"
                         b"TE: trailers\r\n"
                         b"Trailer: X-Checksum\r\n"
                         b"Upgrade: h2c\r\n"
                         b"X-Kept: yes\r\n\r\nhello")
            time.sleep(0.3)
        backend = self.raw_backend(script)
        self.route("rhop.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET / HTTP/1.1\r\nHost: rhop.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"hello")
        names = [k.lower() for k, _ in response.headers]
        for name in ("x-secret", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"):
            self.assertNotIn(name, names, "response hop-by-hop header %s relayed" % name)
        self.assertNotIn("x-secret", response.connection_tokens())
        self.assertEqual(response.get_all("X-Kept"), ["yes"])
        self.assertEqual(response.get("Content-Length"), "5")

    def test_forwarded_headers_added_when_absent(self):
        backend = self.http_backend("one")
        self.route("xff.test", backend)
        self.start_proxy()
        status, _, body = self.request("GET", "/", host="xff.test")
        self.assertEqual(status, 200)
        headers = backend.requests[0]["header_list"]
        expected = {"X-Forwarded-For": "::ffff:127.0.0.1",
                    "X-Real-IP": "::ffff:127.0.0.1",
                    "X-Forwarded-Proto": "http",
                    "X-Forwarded-Protocol": "http",
                    "X-Forwarded-Port": str(self.proxy.port)}
        for name, value in expected.items():
            self.assertEqual(header_values(headers, name), [value], name)

    def test_forwarded_headers_kept_when_present(self):
        backend = self.http_backend("one")
        self.route("xffk.test", backend)
        self.start_proxy()
        sent = {"X-Forwarded-For": "203.0.113.7, 198.51.100.1",
                "X-Real-IP": "203.0.113.7",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Protocol": "https",
                "X-Forwarded-Port": "443"}
        status, _, _ = self.request("GET", "/", host="xffk.test", headers=sent)
        self.assertEqual(status, 200)
        headers = backend.requests[0]["header_list"]
        for name, value in sent.items():
            self.assertEqual(header_values(headers, name), [value], name)


class LargeHeadersTest(RelayTestCase):
    def test_large_headers_both_ways_arrive_intact_request_after_request(self):
        # Fields spanning several blocks of a message's header memory, on one connection whose
        # requests reuse it: every name and value must arrive as sent.
        backend = self.http_backend("echo")
        self.route("bigheads.test", backend)
        self.start_proxy()
        client = self.client()
        for round_ in range(3):
            sent = {"X-Field-%d" % i: ("%d-%d-" % (round_, i)) * 120 for i in range(40)}
            wanted = {"X-Answer-%d" % i: ("a%d-%d" % (round_, i)) * 60 for i in range(8)}
            query = "&".join("header=%s:%s" % item for item in wanted.items())
            lines = "".join("%s: %s\r\n" % item for item in sent.items())
            client.send(("GET /big?%s HTTP/1.1\r\nHost: bigheads.test\r\n%s\r\n"
                         % (query, lines)).encode())
            response = client.read_response()
            self.assertEqual(response.status, 200)
            echoed = json.loads(response.body)["headers"]
            for name, value in sent.items():
                self.assertEqual(echoed.get(name), value, name)
            for name, value in wanted.items():
                self.assertEqual(response.get(name), value, name)


if __name__ == "__main__":
    unittest.main()
