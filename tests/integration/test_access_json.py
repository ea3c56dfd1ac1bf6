"""The JSON access-log format (server.accessLogFormat "json") on the real binary: one JSON object
per line with Hipache's fields and protocol, request_id, backend and attempts; hostile request
bytes stay valid JSON; WebSocket tunnels get their line at close.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_access_json
"""
import json
import re
import subprocess
import unittest

import harness
from websocket_helpers import WebSocketTestCase

HIPACHE_LINE = re.compile(
    r'^\S+ - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "[^"]*" \d{3} \d+ '
    r'"[^"]*" "[^"]*" "[^"]*" [\d.]+ [\d.]+$')
ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
FIELDS = {"time", "remote", "method", "url", "protocol", "status", "bytes", "referer",
          "user_agent", "vhost", "total_seconds", "backend_seconds", "request_id", "backend",
          "attempts"}


def read_json_lines(test, expected):
    """The access log's objects; the file must be valid UTF-8 and each line one JSON object."""
    test.access_log_lines(expected=expected)
    with open(test.access_log_path, "rb") as f:
        raw = f.read()
    objects = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    for o in objects:
        test.assertEqual(set(o), FIELDS, o)
    return objects


class JsonAccessLog(harness.ProxyTestCase):
    def test_proxied_request(self):
        backend = self.http_backend()
        self.redis.rpush("frontend:app.test", "my-app", backend.url)
        self.start_proxy(accessLogFormat="json")
        raw = self.raw_exchange(b"GET /path?q=1 HTTP/1.1\r\nHost: app.test\r\n"
                                b"User-Agent: json-test/1\r\nReferer: http://ref.test/\r\n"
                                b"Connection: close\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:100])
        [line] = read_json_lines(self, 1)
        self.assertRegex(line["time"], ISO_TIME)
        self.assertEqual(line["remote"], "::ffff:127.0.0.1")
        self.assertEqual(line["method"], "GET")
        self.assertEqual(line["url"], "/path?q=1")
        self.assertEqual(line["protocol"], "HTTP/1.1")
        self.assertEqual(line["status"], 200)
        self.assertEqual(line["bytes"], len(raw))
        self.assertEqual(line["referer"], "http://ref.test/")
        self.assertEqual(line["user_agent"], "json-test/1")
        self.assertEqual(line["vhost"], "my-app")
        self.assertIsInstance(line["total_seconds"], (int, float))
        self.assertGreaterEqual(line["total_seconds"], line["backend_seconds"])
        self.assertIsNone(line["request_id"])  # requestIdHeader not set
        self.assertEqual(line["backend"], backend.url)
        self.assertEqual(line["attempts"], 1)

    def test_http10_no_frontend_and_failed_backends(self):
        self.redis.rpush("frontend:down.test", "down", harness.refused_url(),
                         harness.refused_url())
        self.start_proxy(accessLogFormat="json")
        raw = self.raw_exchange(b"GET /a HTTP/1.0\r\nHost: nowhere.test\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw[:100])
        raw = self.raw_exchange(
            b"GET /b HTTP/1.1\r\nHost: down.test\r\nConnection: close\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 502 "), raw[:100])
        first, second = read_json_lines(self, 2)
        self.assertEqual(first["protocol"], "HTTP/1.0")
        self.assertEqual(first["status"], 400)
        self.assertIsNone(first["vhost"])  # no frontend matched
        self.assertIsNone(first["backend"])
        self.assertEqual(first["attempts"], 0)
        self.assertEqual(first["user_agent"], "")
        # Both backends refused: two attempts, and the answer (502) is the proxy's own.
        self.assertEqual(second["status"], 502)
        self.assertEqual(second["vhost"], "down")
        self.assertEqual(second["attempts"], 2)
        self.assertIsNone(second["backend"])

    def test_hostile_bytes_stay_valid_json(self):
        backend = self.http_backend()
        self.redis.rpush("frontend:app.test", "app\"\\\x01\xe9", backend.url)
        self.start_proxy(accessLogFormat="json")
        agent = b'a"b\\c\xc3\xa9\xff\tz'
        referer = b'"},{"status":1,"x":"\xc0\xaf'
        raw = self.raw_exchange(
            b'GET /p?q="x"&r=\\ HTTP/1.1\r\nHost: app.test\r\nUser-Agent: ' + agent +
            b"\r\nReferer: " + referer + b"\r\nConnection: close\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "), raw[:100])
        [line] = read_json_lines(self, 1)
        # Valid UTF-8 is kept; a byte that is not reads as its ISO-8859-1 character.
        self.assertEqual(line["user_agent"], 'a"b\\c\u00e9\u00ff\tz')
        self.assertEqual(line["referer"], '"},{"status":1,"x":"\u00c0\u00af')
        self.assertEqual(line["url"], '/p?q="x"&r=\\')
        self.assertEqual(line["vhost"], "app\"\\\x01\u00e9")  # from Redis, as UTF-8 text
        self.assertEqual(line["status"], 200)

    def test_hipache_format_is_the_default_and_unchanged(self):
        backend = self.http_backend()
        self.redis.rpush("frontend:app.test", "my-app", backend.url)
        self.start_proxy(requestIdHeader="X-Request-Id")
        status, headers, _ = self.request("GET", "/x", host="app.test")
        self.assertEqual(status, 200)
        [line] = self.access_log_lines(expected=1)
        self.assertRegex(line, HIPACHE_LINE)
        self.assertIn('"GET /x HTTP/1.1" 200 ', line)
        self.assertIn(' "my-app" ', line)
        # Hipache's line has no room for the request id: only the JSON format logs it.
        self.assertRegex(headers["x-request-id"], "^[0-9a-f]{32}$")
        self.assertNotIn(headers["x-request-id"], line)

    def test_unknown_format_refuses_to_start(self):
        config = self.config(accessLogFormat="xml")
        path = self.workdir + "/bad.json"
        with open(path, "w") as f:
            json.dump(config, f)
        result = subprocess.run([harness.BINARY, "--dry", "-c", path], capture_output=True,
                                text=True, timeout=20)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn('server.accessLogFormat: unknown access log format "xml" '
                      '(expected "hipache" or "json")', result.stderr)


class JsonWebSocketLine(WebSocketTestCase):
    def test_tunnel_line_at_close(self):
        server = self.ws_server()
        self.route(server, identifier="chat")
        self.start_proxy(accessLogFormat="json", requestIdHeader="X-Request-Id")
        c = self.client(path="/chat", headers=[("X-Request-Id", "ws-id-1")])
        self.assertEqual(c.handshake(), 101, c.headers)
        self.assertEqual(c.header("X-Request-Id"), "ws-id-1")
        self.assert_echo(c, "hello")
        self.close_cleanly(c)
        [line] = read_json_lines(self, 1)
        self.assertEqual(line["status"], 101)
        self.assertEqual(line["url"], "/chat")
        self.assertEqual(line["protocol"], "HTTP/1.1")
        self.assertEqual(line["vhost"], "chat")
        self.assertEqual(line["request_id"], "ws-id-1")
        self.assertEqual(line["backend"], server.url)
        self.assertEqual(line["attempts"], 1)
        self.assertGreater(line["bytes"], len("hello"))


if __name__ == "__main__":
    unittest.main()
