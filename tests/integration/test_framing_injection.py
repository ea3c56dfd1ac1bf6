"""HTTP/1.1 message framing through the real binary (issue 17: no request or response can be
smuggled; the rules of docs/security.md, "Framing is ours"), checked byte for byte.

Injection (rules 10 to 13): header injection from Redis data, Host and method length
limits, and access-log field escaping.

Run: cd tests/integration && HIPACHE_BINARY=/work/main/build/hipache \
         python3 -m unittest -v test_framing_injection
"""
import re
import unittest

from framing_helpers import FramingTestCase
from framing_peers import has_header_line

LOG_LINE = re.compile(
    r'^(?P<remote>\S+) - - \[(?P<date>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}) \+0000\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)" "(?P<identifier>[^"]*)" (?P<total>[\d.]+) (?P<backend>[\d.]+)$')


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


if __name__ == "__main__":
    unittest.main()
