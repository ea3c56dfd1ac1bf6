"""WebSocket (Upgrade) tunnelling through the real binary (SPEC sections 4, 5 and 8), the
handshake: an upgrade request is routed like any request (host matching, balancing, dead
marking, X-Forwarded-* headers) and forwarded; on 101 the connection becomes a tunnel, any other
answer is relayed as a normal response and the connection stays HTTP. A tunnel gets one
access-log line at close (status 101).

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_websocket_handshake
"""
import json
import os
import re
import socket
import time
import unittest

import harness
from websocket_helpers import WebSocketTestCase, read_http_body
from websocket_peers import accept_for, header, tokens

LINE = re.compile(
    r'^(?P<remote>\S+) - - \[(?P<date>[^\]]+)\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)" "(?P<identifier>[^"]*)" (?P<total>[\d.]+) (?P<backend>[\d.]+)$')


class Handshake(WebSocketTestCase):
    def test_handshake_is_forwarded_with_x_forwarded_headers(self):
        server = self.ws_server()
        self.route(server)
        self.start_proxy()
        c = self.client(host="WS.test:8080", path="/chat?room=1")
        self.assertEqual(c.handshake(), 101, c.headers)
        self.assertEqual(c.header("Sec-WebSocket-Accept"), accept_for(c.key))
        self.assertEqual((c.header("Upgrade") or "").lower(), "websocket")
        self.assertIn("upgrade", tokens(c.header("Connection")))
        self.assert_echo(c, "ready")

        self.assertEqual(len(server.connections), 1)
        seen = server.connections[0]
        self.assertEqual(seen.request_line, "GET /chat?room=1 HTTP/1.1")
        h = seen.headers
        self.assertEqual((header(h, "Upgrade") or "").lower(), "websocket")
        self.assertIn("upgrade", tokens(header(h, "Connection")))
        self.assertEqual(header(h, "Host"), "WS.test:8080")  # forwarded unchanged
        self.assertEqual(header(h, "Sec-WebSocket-Key"), c.key)
        self.assertEqual(header(h, "Sec-WebSocket-Version"), "13")
        self.assertEqual(header(h, "X-Forwarded-For"), "::ffff:127.0.0.1")
        self.assertEqual(header(h, "X-Real-IP"), "::ffff:127.0.0.1")
        self.assertEqual(header(h, "X-Forwarded-Proto"), "http")
        self.assertEqual(header(h, "X-Forwarded-Port"), str(self.proxy.port))
        self.close_cleanly(c)

    def test_backend_answering_200_is_relayed_then_connection_closed(self):
        # docs/security.md: after a refused upgrade the client may already be sending the new
        # protocol, whose bytes must never be read as a request: the answer carries
        # Connection: close and the connection ends.
        backend = self.http_backend("plain")  # answers 200 with JSON to anything
        self.route(backend)
        self.start_proxy()
        c = self.client(path="/first")
        self.assertEqual(c.handshake(), 200, c.headers)
        self.assertIsNone(c.header("Sec-WebSocket-Accept"))
        self.assertEqual((c.header("Connection") or "").lower(), "close")
        first = json.loads(read_http_body(c.fs, 200, c.headers))
        self.assertEqual(first["path"], "/first")
        self.assertEqual(first["headers"].get("Upgrade", "").lower(), "websocket")
        try:
            c.sock.sendall(b"GET /second HTTP/1.1\r\nHost: ws.test\r\n\r\n")
        except OSError:
            pass  # already closed by the proxy
        c.sock.settimeout(3)
        closed = False
        try:
            while True:
                c.fs._fill()
        except socket.timeout:
            pass  # still open after 3 s: fails below
        except (EOFError, ConnectionResetError):
            closed = True
        self.assertTrue(closed, "the proxy kept the connection open after a refused upgrade")
        self.assertEqual(bytes(c.fs.buf), b"")
        self.assertTrue(harness.wait_until(lambda: len(backend.requests) == 1, timeout=1))
        self.assertEqual(len(backend.requests), 1)
        lines = self.access_log_lines(expected=1)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('"GET /first HTTP/1.1" 200', lines[0])

    def test_unknown_host_gets_400_page_and_connection_closed(self):
        self.start_proxy(tcpTimeout=30)  # a close within seconds is not the idle timeout
        c = self.client(host="nowhere.test", timeout=5)
        started = time.time()
        status = c.handshake()
        self.assertEqual(status, 400)
        self.assertEqual(c.header("Content-Type"), "text/html")
        self.assertEqual(c.header("Cache-Control"), "no-cache")
        length = int(c.header("Content-Length") or 0)
        self.assertGreater(length, 0)
        c.fs.recv_exact(length)
        self.assertLess(time.time() - started, 3)
        self.assertTrue(c.wait_eof(3),
                        "the connection stayed open after a refused upgrade (answer headers: %r)"
                        % c.headers)
        lines = self.access_log_lines(expected=1)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('" 400 ', lines[0])
        self.assertIn('"-"', lines[0])

    def test_refused_backend_is_marked_dead_and_upgrade_succeeds_on_the_other(self):
        sub = self.redis_server.subscribe("dead")
        self._stoppers.append(sub.close)
        server = self.ws_server()
        refused = self.refused_url()
        self.route(refused, server)
        self.start_proxy()
        for _ in range(40):  # random picks: the refused one comes up within a few tries
            c = self.open_tunnel()
            self.assertEqual(c.header("Sec-WebSocket-Accept"), accept_for(c.key))
            self.assert_echo(c, "through the good one")
            self.close_cleanly(c)
            if harness.wait_until(lambda: sub.messages, 0.2):
                break
        expected = "%s;%s;0;2" % (self.HOST, refused)
        self.assertTrue(harness.wait_until(lambda: expected in sub.messages, 5), sub.messages)
        self.assertEqual(self.redis.smembers("dead:" + self.HOST), ["0"])
        self.assertGreater(self.redis.ttl("dead:" + self.HOST), 0)
        # Once marked, every upgrade goes to the good backend at once.
        connections = len(server.connections)
        for _ in range(3):
            self.close_cleanly(self.open_tunnel())
        self.assertEqual(len(server.connections), connections + 3)


class AccessLog(WebSocketTestCase):
    def test_one_line_per_tunnel_at_close_with_status_101(self):
        server = self.ws_server()
        self.route(server, identifier="chat-app")
        self.start_proxy()
        c = self.client(path="/chat?room=1", headers=[("User-Agent", "ws-test/1.0"),
                                                      ("Referer", "http://ref.test/")])
        self.assertEqual(c.handshake(), 101)
        self.assert_echo(c, os.urandom(1000))
        self.assert_echo(c, "x" * 10)
        time.sleep(0.6)  # the log is flushed every 100 ms: nothing may be written yet
        self.assertEqual(self.access_log_lines(), [], "a tunnel is logged when it closes")
        self.close_cleanly(c)
        lines = self.access_log_lines(expected=1)
        time.sleep(0.3)
        lines = self.access_log_lines()
        self.assertEqual(len(lines), 1, lines)
        m = LINE.match(lines[0])
        self.assertIsNotNone(m, lines[0])
        self.assertEqual(m["remote"], "::ffff:127.0.0.1")
        self.assertEqual(m["request"], "GET /chat?room=1 HTTP/1.1")
        self.assertEqual(m["status"], "101")
        self.assertEqual(m["identifier"], "chat-app")
        self.assertEqual(m["agent"], "ws-test/1.0")
        self.assertEqual(m["referer"], "http://ref.test/")
        self.assertGreaterEqual(float(m["total"]), 0.5, "total time must span the tunnel")
        # Bytes sent to the client: the 101 head and the echoed frames.
        self.assertGreater(int(m["bytes"]), 1000 + 10)


if __name__ == "__main__":
    unittest.main()
