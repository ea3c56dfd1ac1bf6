"""Hostile and broken surroundings (docs/security.md): request smuggling (ambiguous framing, bad
chunks, bare LF, obs-fold), Host header injection and absolute-form targets, and X-Forwarded-*
trust (trustProxies).

Run: cd tests/integration && HIPACHE_BINARY=/work/main/build/hipache \
         python3 -m unittest -v test_security_requests
"""
import json
import re
import time
import unittest

from security_helpers import RecordingBackend, SecurityTestCase, parse_status


# --------------------------------------------------------------------------- smuggling

class Smuggling(SecurityTestCase):
    def setUp(self):
        super().setUp()
        self.backend = RecordingBackend(self)
        self.redis.rpush("frontend:a.test", "a", self.backend.url)
        self.redis.rpush("frontend:b.test", "b", self.backend.url)
        self.start_proxy(headerTimeout=2)

    def settle(self):
        time.sleep(0.2)

    def assert_refused(self, request, allow_close=False, allow_backend_head=False):
        """400 (or a plain close when allow_close) and nothing ambiguous at the backend."""
        before = len(self.backend.received)
        raw = self.raw(request, timeout=4)
        status = parse_status(raw)
        if allow_close and status is None:
            self.assertEqual(raw, b"")
        else:
            self.assertEqual(status, 400, raw[:200])
        self.settle()
        new = self.backend.received[before:]
        if not allow_backend_head:
            self.assertEqual(new, [], "the backend was contacted")
        return raw, [bytes(d) for d in new]

    def test_sanity(self):
        raw = self.raw(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n"
                       b"Connection: close\r\n\r\nhello")
        self.assertEqual(parse_status(raw), 200)

    def test_content_length_and_transfer_encoding(self):
        for order in ([b"Content-Length: 5", b"Transfer-Encoding: chunked"],
                      [b"Transfer-Encoding: chunked", b"Content-Length: 5"]):
            with self.subTest(order=order):
                self.assert_refused(b"POST / HTTP/1.1\r\nHost: a.test\r\n" + b"\r\n".join(order)
                                    + b"\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.test"
                                    b"\r\n\r\n")
        self.assertNotIn(b"/smuggled", self.backend.all_bytes())

    def test_differing_duplicate_content_length(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n"
                            b"Content-Length: 6\r\n\r\nhello!")
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5, 6\r\n\r\n"
                            b"hello!")

    def test_identical_duplicate_content_length_never_reaches_backend_twice(self):
        """Accepted or refused; if accepted, the backend must see exactly one Content-Length."""
        for framing in (b"Content-Length: 5\r\nContent-Length: 5\r\n",
                        b"Content-Length: 5, 5\r\n"):
            with self.subTest(framing=framing):
                before = len(self.backend.received)
                raw = self.raw(b"POST / HTTP/1.1\r\nHost: a.test\r\n" + framing +
                               b"Connection: close\r\n\r\nhello")
                self.assertIn(parse_status(raw), (200, 400))
                self.settle()
                for head in self.backend.heads()[before:]:
                    values = re.findall(rb"(?im)^content-length:[ \t]*(.*?)[ \t]*\r?$", head)
                    self.assertEqual(values, [b"5"], head)

    def test_signed_content_length(self):
        for value in (b"+5", b"-5", b" 5x", b"0x5"):
            with self.subTest(value=value):
                self.assert_refused(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: " +
                                    value + b"\r\n\r\nhello")

    def test_bad_chunk_size(self):
        for body in (b"zz\r\nhello\r\n0\r\n\r\n", b"-5\r\nhello\r\n0\r\n\r\n",
                     b"5 5\r\nhello\r\n0\r\n\r\n"):
            with self.subTest(body=body):
                _, seen = self.assert_refused(
                    b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + body, allow_close=True, allow_backend_head=True)
                for data in seen:
                    # At most the header went out; never a body byte, never a whole request.
                    self.assertNotIn(b"hello", data)
                    self.assertFalse(data.endswith(b"0\r\n\r\n"), data)

    def test_bad_chunk_extension(self):
        for ext in (b"5;a=b c", b"5;\x01", b"5;=x", b'5;a="unterminated'):
            with self.subTest(ext=ext):
                _, seen = self.assert_refused(
                    b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + ext + b"\r\nhello\r\n0\r\n\r\n", allow_close=True, allow_backend_head=True)
                for data in seen:
                    self.assertNotIn(b"hello", data)

    def test_bare_lf(self):
        # A header line ended by a bare LF inside a CRLF request: refused.
        self.assert_refused(b"GET / HTTP/1.1\r\nHost: a.test\nX-Smuggled: 1\r\n\r\n")
        self.assert_refused(b"GET / HTTP/1.1\nHost: a.test\r\n\r\n")
        # A header block ended by CRLF LF, followed by what would be a second request.
        self.assert_refused(b"GET / HTTP/1.1\r\nHost: a.test\r\n\nGET /smuggled HTTP/1.1\r\n"
                            b"Host: a.test\r\n\r\n")
        self.assertNotIn(b"/smuggled", self.backend.all_bytes())
        # A request in bare LFs only: the request line is already refused.
        t0 = time.time()
        self.assert_refused(b"GET / HTTP/1.1\nHost: a.test\n\n")
        self.assertLess(time.time() - t0, 1.5)

    def test_obs_fold(self):
        before = len(self.backend.received)
        raw = self.raw(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Folded: one\r\n two\r\n"
                       b"Connection: close\r\n\r\n")
        status = parse_status(raw)
        self.assertIn(status, (200, 400))
        self.settle()
        for head in self.backend.heads()[before:]:
            self.assertNotIn(b"\r\n ", head)
            self.assertNotIn(b"\r\n\t", head)
            if status == 200:
                self.assertIn(b"X-Folded: one two", head)

    def test_transfer_encoding_not_ending_in_chunked(self):
        for te in (b"chunked, identity", b"gzip", b"identity", b"chunked\r\nTransfer-Encoding: gzip"):
            with self.subTest(te=te):
                self.assert_refused(b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: " +
                                    te + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")

    def test_space_before_colon(self):
        self.assert_refused(b"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length : 5\r\n\r\nhello")
        self.assert_refused(b"GET / HTTP/1.1\r\nHost : a.test\r\n\r\n")

    # ----------------------------------------------------------------- Host header injection

    def test_two_host_headers(self):
        self.assert_refused(b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n")
        self.assert_refused(b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n")

    def test_absolute_form_target_wins_over_host(self):
        raw = self.raw(b"GET http://b.test/p?q=1 HTTP/1.1\r\nHost: a.test\r\n"
                       b"Connection: close\r\n\r\n")
        self.assertEqual(parse_status(raw), 200)
        self.settle()
        head = self.backend.heads()[-1]
        self.assertTrue(head.startswith(b"GET /p?q=1 HTTP/1.1\r\n"), head)
        hosts = re.findall(rb"(?im)^host:[ \t]*(.*?)[ \t]*\r?$", head)
        self.assertEqual(hosts, [b"b.test"])
        lines = self.access_log_lines(expected=1)
        self.assertIn('"b"', lines[-1])  # the b.test frontend's identifier

    def test_absolute_form_without_authority(self):
        self.assert_refused(b"GET http:///p HTTP/1.1\r\nHost: a.test\r\n\r\n")

    def test_absolute_form_userinfo_is_not_forwarded(self):
        raw = self.raw(b"GET http://user:pw@b.test HTTP/1.1\r\nHost: a.test\r\n"
                       b"Connection: close\r\n\r\n")
        self.assertEqual(parse_status(raw), 200)
        self.settle()
        head = self.backend.heads()[-1]
        self.assertTrue(head.startswith(b"GET / HTTP/1.1\r\n"), head)
        self.assertEqual(re.findall(rb"(?im)^host:[ \t]*(.*?)[ \t]*\r?$", head), [b"b.test"])
        self.assertNotIn(b"pw", head)

    def test_absolute_form_that_is_not_an_absolute_uri(self):
        # RFC 9112 section 3.2.2: absolute-URI, which has no fragment; its authority becomes Host.
        for target in (b"http://b.test/p#frag", b"http://b.te{st/", b"http://[::1/p",
                       b"http://b.test:8x/", b"http://b.test:99999/", b"http://b.test:8x"):
            with self.subTest(target=target):
                self.assert_refused(b"GET " + target + b" HTTP/1.1\r\nHost: a.test\r\n\r\n")


# --------------------------------------------------------------------------- X-Forwarded-*

SPOOFED = {"X-Forwarded-For": "1.2.3.4", "X-Real-IP": "1.2.3.4", "X-Forwarded-Proto": "https",
           "X-Forwarded-Protocol": "https", "X-Forwarded-Port": "443"}


class ForwardedTrust(SecurityTestCase):
    def seen(self, trust=None, headers=SPOOFED, **server):
        backend = self.http_backend()
        self.redis.rpush("frontend:a.test", "a", backend.url)
        if trust is not None:
            server["trustProxies"] = trust
        self.start_proxy(**server)
        status, _, body = self.get("a.test", headers=headers)
        self.assertEqual(status, 200)
        return json.loads(body)["headers"]

    def test_unset_keeps_client_headers(self):
        h = self.seen()
        for name, value in SPOOFED.items():
            self.assertEqual(h[name], value, name)
        # The log writes the X-Real-IP value as forwarded, IPv4 with the ::ffff: prefix.
        self.assertTrue(self.access_log_lines(expected=1)[0].startswith("::ffff:1.2.3.4 "))

    def test_untrusted_client_headers_replaced(self):
        h = self.seen(["10.0.0.0/8"])
        self.assertEqual(h["X-Forwarded-For"], "::ffff:127.0.0.1")
        self.assertEqual(h["X-Real-IP"], "::ffff:127.0.0.1")
        self.assertEqual(h["X-Forwarded-Proto"], "http")
        self.assertEqual(h["X-Forwarded-Protocol"], "http")
        self.assertEqual(h["X-Forwarded-Port"], str(self.proxy.port))
        self.assertTrue(self.access_log_lines(expected=1)[0].startswith("::ffff:127.0.0.1 "))

    def test_untrusted_client_other_forwarding_headers_dropped(self):
        """Other forwarding headers a backend may trust (X-Forwarded-Host, RFC 7239 Forwarded)
        are forwarded headers too: an untrusted client must not be able to set them."""
        h = self.seen(["10.0.0.0/8"], headers={"X-Forwarded-Host": "evil.test",
                                               "Forwarded": "for=1.2.3.4;proto=https"})
        self.assertNotIn("X-Forwarded-Host", h)
        self.assertNotIn("Forwarded", h)

    def test_trusted_proxy_appends(self):
        h = self.seen(["127.0.0.1"])
        self.assertEqual(h["X-Forwarded-For"], "1.2.3.4, ::ffff:127.0.0.1")
        self.assertEqual(h["X-Real-IP"], "1.2.3.4")
        self.assertEqual(h["X-Forwarded-Proto"], "https")
        self.assertEqual(h["X-Forwarded-Port"], "443")

    def test_trusted_proxy_without_headers_gets_peer(self):
        h = self.seen(["127.0.0.0/8"], headers={})
        self.assertEqual(h["X-Forwarded-For"], "::ffff:127.0.0.1")
        self.assertEqual(h["X-Real-IP"], "::ffff:127.0.0.1")


if __name__ == "__main__":
    unittest.main()
