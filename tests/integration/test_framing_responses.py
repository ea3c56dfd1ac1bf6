"""HTTP/1.1 message framing through the real binary (issue 17: no request or response can be
smuggled; the rules of docs/security.md, "Framing is ours"), checked byte for byte.

Responses (rules 4 to 8, 14 and 15): a raw backend sends crafted bytes; a raw client
socket reads what the proxy sent. Also two compatibility cases (reason-less status line, 103).

Run: cd tests/integration && HIPACHE_BINARY=/work/main/build/hipache \
         python3 -m unittest -v test_framing_responses
"""
import unittest

from framing_helpers import FramingTestCase
from framing_peers import ok_response


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
