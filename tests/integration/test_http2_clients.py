"""HTTP/2 clients (h2c with prior knowledge, h2 by ALPN over TLS): each stream is an exchange with
the HTTP/1 semantics (routing, forwarded fields, bodies both ways, error pages, the access log)."""
import json
import ssl
import subprocess
import time

import harness
import http2_helpers
import tls_pki
from http2_helpers import curl, parse_head_and_body


class H2cTest(http2_helpers.Http2TestCase):
    def setUp(self):
        super().setUp()
        self.backend = self.frontend("h2.test")
        self.start_proxy()

    def h2c(self, path, *args):
        return curl(self.url(path), "--http2-prior-knowledge", "-H", "Host: h2.test", *args)

    def test_get_is_routed_and_forwarded_as_http11(self):
        code, out, err = self.h2c("/hello?x=1", "-i")
        self.assertEqual(code, 0, err)
        status, headers, body = parse_head_and_body(out)
        self.assertEqual(status, 200)
        self.assertTrue(out.startswith(b"HTTP/2 200"))
        seen = json.loads(body)
        self.assertEqual(seen["path"], "/hello?x=1")
        forwarded = {k.lower(): v for k, v in seen["headers"].items()}
        self.assertEqual(forwarded["host"], "h2.test")
        self.assertEqual(forwarded["x-forwarded-proto"], "http")
        self.assertEqual(forwarded["x-forwarded-for"], "::ffff:127.0.0.1")
        # The backend got an HTTP/1.1 request: no pseudo-header, no HTTP/2-only field.
        self.assertFalse(any(name.startswith(":") for name in forwarded))
        line = self.access_log_lines(expected=1)[-1]
        self.assertIn('"GET /hello?x=1 HTTP/2.0" 200', line)
        self.assertIn('"h2.test"', line)

    def test_request_bodies_with_and_without_length(self):
        self.check_upload_with_length(self.h2c, 200000)
        self.assertEqual(self.backend.requests[-1]["headers"].get("Content-Length"), "200000")
        # Without a content-length the body is forwarded in our chunked encoding.
        client = self.raw()
        stream = client.request("h2.test", "/stream", method="POST", end=False)
        client.send_body(stream, b"a" * 70000, end=False)
        client.send_body(stream, b"b" * 10, end=True)
        status, _, body, ended = client.response(stream, timeout=10)
        self.assertEqual(status, 200)
        self.assertTrue(ended)
        self.assertEqual(json.loads(body)["body_length"], 70010)
        self.assertEqual(self.backend.requests[-1]["headers"].get("Transfer-Encoding"), "chunked")

    def test_large_and_chunked_responses(self):
        self.check_large_answers(self.h2c)

    def test_head_and_no_content(self):
        code, out, err = self.h2c("/x?size=1234", "-I")
        self.assertEqual(code, 0, err)
        status, headers, body = parse_head_and_body(out)
        self.assertEqual((status, headers.get("content-length"), body), (200, "1234", b""))
        code, out, err = self.h2c("/x?status=204", "-i")
        self.assertEqual(parse_head_and_body(out)[0], 204)

    def test_many_streams_on_one_connection(self):
        client = self.raw()
        streams = [client.request("h2.test", "/s%d" % i) for i in range(40)]
        for i, stream in enumerate(streams):
            status, _, body, ended = client.response(stream, timeout=15)
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["path"], "/s%d" % i)
        self.assertIsNone(client.goaway())

    def test_error_pages_and_ping(self):
        code, out, err = curl(self.url("/"), "--http2-prior-knowledge", "-i",
                              "-H", "Host: unknown.test")
        status, headers, body = parse_head_and_body(out)
        self.assertEqual(status, 400)
        self.assertEqual(headers["content-type"], "text/html")
        self.assertEqual(int(headers["content-length"]), len(body))
        self.assertNotIn("connection", headers)
        code, out, err = curl(self.url("/"), "--http2-prior-knowledge", "-i",
                              "-H", "Host: __ping__")
        status, headers, body = parse_head_and_body(out)
        self.assertEqual((status, body), (200, b"ok"))
        self.redis.rpush("frontend:down.test", "down", harness.refused_url())
        code, out, err = curl(self.url("/"), "--http2-prior-knowledge", "-i",
                              "-H", "Host: down.test", "-H", "X-Debug: 1")
        status, headers, _ = parse_head_and_body(out)
        self.assertEqual(status, 502)
        self.assertIn("x-debug-error", headers)

    def test_http1_still_served_on_the_same_listener(self):
        status, _, body = self.request("GET", "/h1", host="h2.test")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["path"], "/h1")

    def test_expect_100_continue_gets_an_interim_answer(self):
        import h2.events
        client = self.raw()
        stream = client.request("h2.test", "/expect", method="POST", end=False,
                                headers=[("content-length", "5"), ("expect", "100-continue")])
        self.assertTrue(client.pump(lambda c: any(
            isinstance(e, h2.events.InformationalResponseReceived) for e in c.events)))
        interim = [e for e in client.events
                   if isinstance(e, h2.events.InformationalResponseReceived)][0]
        self.assertEqual(dict(interim.headers)[":status"], "100")
        client.send_body(stream, b"hello")
        status, _, body, ended = client.response(stream)
        self.assertEqual((status, ended), (200, True))
        self.assertEqual(json.loads(body)["body_length"], 5)
        self.assertNotIn("Expect", self.backend.requests[-1]["headers"])

    def test_cookies_are_joined_for_the_backend(self):
        client = self.raw()
        stream = client.request("h2.test", "/c", headers=[("cookie", "a=1"), ("cookie", "b=2")])
        status, _, body, _ = client.response(stream)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["headers"]["Cookie"], "a=1; b=2")


class H2DisabledTest(http2_helpers.Http2TestCase):
    def test_http2_off_serves_only_http1(self):
        self.frontend("h2.test")
        self.start_proxy(http2=False)
        code, out, err = curl(self.url("/"), "--http2-prior-knowledge", "-H", "Host: h2.test")
        self.assertNotEqual(code, 0)
        status, _, _ = self.request("GET", "/", host="h2.test")
        self.assertEqual(status, 200)


class H2TlsTest(http2_helpers.Http2TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tls_pki.shared_pki()

    def tls_config(self, **server):
        config = self.config(**server)
        config["https"] = {"port": harness.free_port(), "bind": ["127.0.0.1"],
                           "key": self.pki.leaf_key,
                           "cert": self.pki.leaf_chain}
        return config

    def test_alpn_chooses_h2_then_http11(self):
        self.frontend("secure.test")
        config = self.tls_config()
        self.start_proxy(config)
        port = config["https"]["port"]
        url = "https://secure.test:%d/tls" % port
        resolve = "secure.test:%d:127.0.0.1" % port
        code, out, err = curl(url, "--http2", "-i", "--cacert", self.pki.root,
                              "--resolve", resolve)
        self.assertEqual(code, 0, err)
        self.assertTrue(out.startswith(b"HTTP/2 200"), out[:100])
        seen = json.loads(parse_head_and_body(out)[2])
        self.assertEqual(seen["headers"]["X-Forwarded-Proto"], "https")
        code, out, err = curl(url, "--http1.1", "-i", "--cacert", self.pki.root,
                              "--resolve", resolve)
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:100])
        lines = self.access_log_lines(expected=2)
        self.assertIn("HTTP/2.0", lines[0])
        self.assertIn("HTTP/1.1", lines[1])
        # With HTTP/2 off the TLS listener offers http/1.1 alone.
        self.proxy.stop()
        config = self.tls_config(http2=False)
        self.start_proxy(config)
        context = ssl.create_default_context(cafile=self.pki.root)
        context.set_alpn_protocols(["h2", "http/1.1"])
        with context.wrap_socket(__import__("socket").create_connection(
                ("127.0.0.1", config["https"]["port"])), server_hostname="secure.test") as s:
            self.assertEqual(s.selected_alpn_protocol(), "http/1.1")


if __name__ == "__main__":
    import unittest
    unittest.main()
