"""Request ids (server.requestIdHeader) on the real binary with real backends: a well-formed id
is kept, a missing or malformed one is replaced by a generated one; the backend, the client
(proxied answers and the proxy's own error pages) and the JSON access log all see the same id.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_request_ids
"""
import json
import re
import unittest

import harness

GENERATED = re.compile(r"^[0-9a-f]{32}$")


class RequestIds(harness.ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.backend = self.http_backend()
        self.redis.rpush("frontend:app.test", "app", self.backend.url)
        self.start_proxy(accessLogFormat="json", requestIdHeader="X-Request-Id")

    def log_objects(self, expected):
        lines = self.access_log_lines(expected=expected)
        self.assertEqual(len(lines), expected, lines)
        return [json.loads(line) for line in lines]

    def backend_ids(self, index=-1):
        """Every X-Request-Id field the backend received with one request."""
        fields = self.backend.requests[index]["header_list"]
        return [v for k, v in fields if k.lower() == "x-request-id"]

    def raw_response_ids(self, raw):
        head = raw.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        return [l.partition(":")[2].strip() for l in head[1:]
                if l.lower().startswith("x-request-id:")]

    def test_incoming_id_is_forwarded_returned_and_logged(self):
        status, headers, _ = self.request("GET", "/", host="app.test",
                                          headers={"X-Request-Id": "abc-123_XYZ.9"})
        self.assertEqual(status, 200)
        self.assertEqual(self.backend_ids(), ["abc-123_XYZ.9"])
        self.assertEqual(headers["x-request-id"], "abc-123_XYZ.9")
        [line] = self.log_objects(1)
        self.assertEqual(line["request_id"], "abc-123_XYZ.9")

    def test_missing_id_is_generated(self):
        ids = []
        for _ in range(2):
            status, headers, _ = self.request("GET", "/", host="app.test")
            self.assertEqual(status, 200)
            self.assertRegex(headers["x-request-id"], GENERATED)
            self.assertEqual(self.backend_ids(), [headers["x-request-id"]])
            ids.append(headers["x-request-id"])
        self.assertNotEqual(ids[0], ids[1])
        self.assertEqual([o["request_id"] for o in self.log_objects(2)], ids)

    def test_malformed_ids_are_replaced_not_forwarded(self):
        malformed = [b"has space", b"a,b", b'quo"te', b"x" * 201, b"caf\xc3\xa9", b""]
        for value in malformed:
            raw = self.raw_exchange(b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: " + value +
                                    b"\r\nConnection: close\r\n\r\n")
            self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:100])
            [returned] = self.raw_response_ids(raw)
            self.assertRegex(returned, GENERATED, value)
            self.assertEqual(self.backend_ids(), [returned], value)
        # Two fields, even two good ones, are not one id.
        raw = self.raw_exchange(b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: one\r\n"
                                b"x-request-id: two\r\nConnection: close\r\n\r\n")
        [returned] = self.raw_response_ids(raw)
        self.assertRegex(returned, GENERATED)
        self.assertEqual(self.backend_ids(), [returned])
        logged = [o["request_id"] for o in self.log_objects(len(malformed) + 1)]
        self.assertTrue(all(GENERATED.match(i) for i in logged), logged)

    def test_longest_well_formed_id_is_kept(self):
        value = "~!#$%&()*+-./:;<=>?@[]^_`{|}" + "z" * 172
        self.assertEqual(len(value), 200)
        status, headers, _ = self.request("GET", "/", host="app.test",
                                          headers={"X-Request-Id": value})
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-request-id"], value)
        self.assertEqual(self.backend_ids(), [value])

    def test_connection_option_cannot_take_the_id_from_the_backend(self):
        raw = self.raw_exchange(b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: keep-me\r\n"
                                b"Connection: close, X-Request-Id\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:100])
        self.assertEqual(self.backend_ids(), ["keep-me"])
        self.assertEqual(self.raw_response_ids(raw), ["keep-me"])

    def test_backend_own_id_is_replaced_in_the_answer(self):
        raw = self.raw_exchange(b"GET /?header=X-Request-Id:from-backend HTTP/1.1\r\n"
                                b"Host: app.test\r\nX-Request-Id: mine\r\n"
                                b"Connection: close\r\n\r\n")
        self.assertEqual(self.raw_response_ids(raw), ["mine"])

    def test_error_pages_carry_the_id(self):
        self.redis.rpush("frontend:down.test", "down", harness.refused_url())
        cases = [("nowhere.test", 400, "err-400"), ("down.test", 502, "err-502")]
        for host, code, request_id in cases:
            status, headers, body = self.request("GET", "/", host=host,
                                                 headers={"X-Request-Id": request_id})
            self.assertEqual(status, code)
            self.assertIn(str(code).encode(), body)
            self.assertEqual(headers["x-request-id"], request_id)
        # A request refused before routing (two Host fields) and a generated id.
        raw = self.raw_exchange(b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw[:100])
        [generated] = self.raw_response_ids(raw)
        self.assertRegex(generated, GENERATED)
        logged = self.log_objects(3)
        self.assertEqual([(o["status"], o["request_id"]) for o in logged],
                         [(400, "err-400"), (502, "err-502"), (400, generated)])


if __name__ == "__main__":
    unittest.main()
