"""Relaying HTTP through the proxy (SPEC section 5), strict request parsing: ambiguous framing,
duplicate Host, oversized headers and invalid chunk sizes are refused before any complete request
reaches a backend.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_relay_parsing
"""
import unittest

import harness
from raw_http import exchange_until_close, status_of
from relay_helpers import Recorder, RelayTestCase


class StrictParsingTest(RelayTestCase):
    def setUp(self):
        super().setUp()
        self.backend = self.counting_backend()
        for host in ("strict.test", "other.test"):
            self.route(host, self.backend)
        self.start_proxy()

    def assertRefused(self, request, status=400):
        data, closed = exchange_until_close(self.proxy.port, request)
        self.assertEqual(status_of(data), status, data[:300])
        self.assertTrue(closed, "connection left open after a refused request")
        self.assertEqual(data.count(b"HTTP/1.1 "), 1, "more than one response: %r" % data[:500])
        self.assertEqual(self.backend.server.connections, 0, "the request reached the backend")
        self.assertEqual(self.backend.requests, [])

    def test_sanity_the_route_works(self):
        status, _, _ = self.request("GET", "/", host="strict.test")
        self.assertEqual(status, 200)

    def test_content_length_with_transfer_encoding(self):
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: strict.test\r\nContent-Length: 5\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                           b"GET /smuggled HTTP/1.1\r\nHost: strict.test\r\n\r\n")
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: strict.test\r\n"
                           b"Transfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n"
                           b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: strict.test\r\n\r\n")

    def test_differing_content_lengths(self):
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: strict.test\r\nContent-Length: 5\r\n"
                           b"Content-Length: 6\r\n\r\nhello!")
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: strict.test\r\nContent-Length: 5, 6\r\n"
                           b"\r\nhello!")

    def test_transfer_encoding_not_ending_in_chunked(self):
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: strict.test\r\n"
                           b"Transfer-Encoding: gzip\r\n\r\nabcdef")
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: strict.test\r\n"
                           b"Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n")

    def test_two_host_headers(self):
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: strict.test\r\nHost: other.test\r\n\r\n")
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: strict.test\r\nHost: strict.test\r\n\r\n")

    def test_headers_over_64kb(self):
        big = b"X-Big: " + b"a" * (70 * 1024) + b"\r\n"
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: strict.test\r\n" + big + b"\r\n",
                           status=431)
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 2000) for i in range(40))
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: strict.test\r\n" + many + b"\r\n",
                           status=431)

    def test_headers_just_under_the_limit_are_accepted(self):
        big = b"X-Big: " + b"a" * (40 * 1024) + b"\r\n"
        data, _ = exchange_until_close(
            self.proxy.port,
            b"GET / HTTP/1.1\r\nHost: strict.test\r\nConnection: close\r\n" + big + b"\r\n")
        self.assertEqual(status_of(data), 200, data[:300])


class InvalidChunkTest(RelayTestCase):
    """An invalid chunk size: 400 or a closed connection, and the backend never gets a request
    it could complete (the bad chunk, what follows it, or a terminating chunk)."""

    def check(self, request, forbidden):
        recorder = Recorder(limit=4)
        backend = self.raw_backend(recorder)
        self.route("chunky.test", backend)
        self.start_proxy()
        data, closed = exchange_until_close(self.proxy.port, request)
        self.assertTrue(closed, "connection left open after an invalid chunk")
        self.assertIn(status_of(data), (None, 400), data[:300])
        self.assertNotIn(b"HTTP/1.1 200", data)
        # Whatever reached the backend: nothing after the bad chunk, and it was cut off.
        self.assertTrue(harness.wait_until(lambda: len(recorder.received) == backend.connections,
                                           5))
        for received, was_closed in zip(recorder.received, recorder.closed):
            for bad in forbidden:
                self.assertNotIn(bad, received)
            self.assertNotIn(b"0\r\n\r\n", received.partition(b"\r\n\r\n")[2])
            self.assertTrue(was_closed, "backend connection left open with a partial request")

    def test_invalid_first_chunk_size(self):
        self.check(b"POST / HTTP/1.1\r\nHost: chunky.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"zz\r\nhello\r\n0\r\n\r\n",
                   [b"zz", b"hello"])

    def test_invalid_chunk_size_after_a_valid_chunk(self):
        self.check(b"POST / HTTP/1.1\r\nHost: chunky.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nfirst\r\n-3\r\nworld\r\n0\r\n\r\n"
                   b"GET /smuggled HTTP/1.1\r\nHost: chunky.test\r\n\r\n",
                   [b"-3", b"world", b"smuggled"])

    def test_overflowing_chunk_size(self):
        self.check(b"POST / HTTP/1.1\r\nHost: chunky.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
                   [b"ffffffffffffffffffff", b"hello"])


if __name__ == "__main__":
    unittest.main()
