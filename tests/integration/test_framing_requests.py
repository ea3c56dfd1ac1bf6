"""HTTP/1.1 message framing through the real binary (issue 17: no request or response can be
smuggled; the rules of docs/security.md, "Framing is ours"), checked byte for byte.

Requests (rules 1 to 3): a client socket sends raw bytes; a raw backend records the
raw bytes the proxy sent it, which must parse as exactly one request carrying exactly the decoded
body (or, for a refused request, the backend receives nothing).

Run: cd tests/integration && HIPACHE_BINARY=/work/main/build/hipache \
         python3 -m unittest -v test_framing_requests
"""
import unittest

from framing_helpers import FramingTestCase


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


if __name__ == "__main__":
    unittest.main()
