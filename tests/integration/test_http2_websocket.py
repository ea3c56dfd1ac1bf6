"""WebSocket over HTTP/2 (RFC 8441 extended CONNECT), h2c with prior knowledge and h2 by ALPN:
the proxy announces SETTINGS_ENABLE_CONNECT_PROTOCOL, turns a CONNECT with :protocol websocket
into the HTTP/1.1 upgrade a real WebSocket backend expects, answers the 101 with a 200 on the
stream, and carries the WebSocket frames both ways in DATA frames."""
import base64
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import h2.errors
import h2.events
import h2.settings

import admin_helpers
import harness
import http2_helpers
import tls_pki
from websocket_peers import (OP_BINARY, OP_CLOSE, OP_TEXT, FrameSocket, WsEchoServer,
                             accept_for, encode_frame, header, parse_head)

HOST = "ws.test"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_TIMEOUT = 60
# The browser test's page: a WebSocket to its own origin, whose echo lands in the DOM. Chromium
# dumps the DOM once the page has loaded, and the load waits for the image /hold, which the
# backend answers only after the page reported its answer by fetching /done. (Not
# --virtual-time-budget: with a fetch pending, Chromium at times never ran the WebSocket's onopen.)
PAGE = b"""<!doctype html><html><body><div id="out">waiting</div><img src="/hold" alt=""><script>
const report = (text) => {
  document.getElementById("out").textContent = text;
  fetch("/done");
};
const ws = new WebSocket("wss://" + location.host + "/ws");
ws.onopen = () => ws.send("hello from chromium");
ws.onmessage = (e) => report("echo:" + e.data);
ws.onerror = () => report("error");
</script></body></html>"""


def first_frame(data):
    """((fin, opcode, payload, masked), its size in bytes) of the WebSocket frame at the start of
    `data`, or (None, 0) while it is incomplete."""
    if len(data) < 2:
        return None, 0
    b0, b1 = data[0], data[1]
    n, pos = b1 & 0x7F, 2
    if n == 126:
        n, pos = (struct.unpack("!H", data[2:4])[0], 4) if len(data) >= 4 else (None, 0)
    elif n == 127:
        n, pos = (struct.unpack("!Q", data[2:10])[0], 10) if len(data) >= 10 else (None, 0)
    if n is None:
        return None, 0
    masked = bool(b1 & 0x80)
    if masked:
        pos += 4
    if len(data) < pos + n:
        return None, 0
    return (bool(b0 & 0x80), b0 & 0x0F, bytes(data[pos:pos + n]), masked), pos + n


class WsStream:
    """One RFC 8441 WebSocket on a RawH2 connection."""

    def __init__(self, client, path="/", headers=(), authority=HOST, scheme="http",
                 protocol="websocket"):
        self.client = client
        self.id = client.conn.get_next_available_stream_id()
        fields = [(":method", "CONNECT"), (":protocol", protocol), (":scheme", scheme),
                  (":path", path), (":authority", authority),
                  ("sec-websocket-version", "13")] + list(headers)
        client.conn.send_headers(self.id, fields)
        client.flush()
        self.taken = 0  # bytes of received() already returned as frames

    def response(self, timeout=10):
        """(status, headers) of the answer's header, once it came (None if it did not)."""
        def answered(c):
            return (any(isinstance(e, h2.events.ResponseReceived) and e.stream_id == self.id
                        for e in c.events) or c.stream_ended(self.id) or c.closed)
        self.client.pump(answered, timeout)
        for event in self.client.events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == self.id:
                headers = dict(event.headers)
                return int(headers[":status"]), headers
        return None, {}

    def received(self):
        return b"".join(e.data for e in self.client.events
                        if isinstance(e, h2.events.DataReceived) and e.stream_id == self.id)

    def send(self, data, end=False):
        self.client.send_body(self.id, data, end=end)

    def end(self):
        self.client.conn.end_stream(self.id)
        self.client.flush()

    def next_frame(self, timeout=10):
        """The next whole WebSocket frame the backend sent on this stream."""
        def complete(c):
            return first_frame(self.received()[self.taken:])[0] is not None
        self.client.pump(lambda c: complete(c) or c.stream_ended(self.id), timeout)
        frame, size = first_frame(self.received()[self.taken:])
        if frame is None:
            raise AssertionError("no whole WebSocket frame on stream %d" % self.id)
        self.taken += size
        return frame

    def ended(self, timeout=10):
        self.client.pump(lambda c: c.stream_ended(self.id), timeout)
        return any(isinstance(e, h2.events.StreamEnded) and e.stream_id == self.id
                   for e in self.client.events)

    def reset_code(self, timeout=10):
        self.client.pump(lambda c: c.stream_ended(self.id), timeout)
        for event in self.client.events:
            if isinstance(event, h2.events.StreamReset) and event.stream_id == self.id:
                return event.error_code
        return None


class Http2WebSocketCase(http2_helpers.Http2TestCase):
    def ws_server(self, on_open=None):
        server = WsEchoServer(on_open)
        self._stoppers.append(server.stop)
        return server

    def route(self, backend_url, host=HOST):
        self.redis.rpush("frontend:" + host, "wsapp", backend_url)

    def assert_echo(self, ws, opcode, payload):
        ws.send(encode_frame(opcode, payload, mask=True))
        fin, got_opcode, got, masked = ws.next_frame()
        self.assertTrue(fin)
        self.assertFalse(masked)
        self.assertEqual(got_opcode, opcode)
        self.assertEqual(len(got), len(payload))
        self.assertTrue(got == payload, "echoed payload differs")

    def check_tunnel(self, client, scheme):
        """The whole life of one tunnel against the echo server: settings, handshake, frames both
        ways (one larger than the stream's window), the close handshake, the access-log line."""
        self.assertTrue(client.pump(lambda c: any(
            isinstance(e, h2.events.RemoteSettingsChanged) for e in c.events)))
        self.assertEqual(
            client.conn.remote_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL], 1)
        ws = WsStream(client, "/chat?room=1", [("origin", "https://ws.test")], scheme=scheme)
        status, headers = ws.response()
        self.assertEqual(status, 200, headers)
        for name in ("upgrade", "connection", "sec-websocket-accept"):
            self.assertNotIn(name, headers)
        self.assertFalse(client.stream_ended(ws.id))
        self.assert_echo(ws, OP_TEXT, "hello over h2".encode())
        self.assert_echo(ws, OP_BINARY, bytes(range(256)) * 600)  # 150 KB: windows reopen
        # The close handshake: the backend answers and ends its side (END_STREAM), then waits
        # for ours (its FIN).
        ws.send(encode_frame(OP_CLOSE, struct.pack("!H", 1000), mask=True))
        fin, opcode, payload, _ = ws.next_frame()
        self.assertEqual((opcode, payload), (OP_CLOSE, struct.pack("!H", 1000)))
        self.assertTrue(ws.ended(), "no END_STREAM after the backend's close")
        ws.end()
        connection = self.server.connections[-1]
        self.assertTrue(connection.eof.wait(10), "the backend never saw the client's end")
        self.assertEqual(connection.close_code, 1000)
        return connection


class H2cWebSocketTest(Http2WebSocketCase):
    def setUp(self):
        super().setUp()
        self.server = self.ws_server()
        self.route(self.server.url)
        self.start_proxy()

    def test_tunnel_echoes_frames_and_closes(self):
        client = self.raw()
        connection = self.check_tunnel(client, "http")
        # The backend got an HTTP/1.1 upgrade, with a key of ours and the client's fields.
        self.assertEqual(connection.request_line, "GET /chat?room=1 HTTP/1.1")
        self.assertEqual(header(connection.headers, "Host"), HOST)
        self.assertEqual(header(connection.headers, "Upgrade").lower(), "websocket")
        self.assertEqual(header(connection.headers, "Connection").lower(), "upgrade")
        self.assertEqual(header(connection.headers, "Sec-WebSocket-Version"), "13")
        self.assertEqual(header(connection.headers, "Origin"), "https://ws.test")
        key = header(connection.headers, "Sec-WebSocket-Key")
        self.assertEqual(len(base64.b64decode(key, validate=True)), 16)
        self.assertEqual(header(connection.headers, "X-Forwarded-Proto"), "http")
        self.assertEqual(header(connection.headers, "X-Forwarded-For"), "::ffff:127.0.0.1")
        self.assertEqual(header(connection.headers, "X-Forwarded-Port"), str(self.proxy.port))
        self.assertIsNone(header(connection.headers, "Content-Length"))
        self.assertIsNone(header(connection.headers, "Transfer-Encoding"))
        # The access-log line is written when the tunnel closes, with its bytes.
        line = self.access_log_lines(expected=1)[-1]
        self.assertIn('"GET /chat?room=1 HTTP/2.0" 200', line)
        sent = int(line.split('" 200 ')[1].split()[0])
        self.assertGreater(sent, 150000)

    def test_keys_are_fresh_for_each_tunnel(self):
        client = self.raw()
        streams = [WsStream(client) for _ in range(3)]
        for ws in streams:
            self.assertEqual(ws.response()[0], 200)
        harness.wait_until(lambda: len(self.server.connections) == 3)
        keys = {header(c.headers, "Sec-WebSocket-Key") for c in self.server.connections}
        self.assertEqual(len(keys), 3)

    def test_tunnels_and_requests_share_a_connection(self):
        backend = self.frontend("h2.test")
        client = self.raw()
        first, second = WsStream(client, "/one"), WsStream(client, "/two")
        self.assertEqual(first.response()[0], 200)
        self.assertEqual(second.response()[0], 200)
        get = client.request("h2.test", "/plain")
        for i in range(3):
            self.assert_echo(first, OP_TEXT, ("first %d" % i).encode())
            self.assert_echo(second, OP_BINARY, bytes([i]) * (20000 + i))
        status, _, body, ended = client.response(get)
        self.assertEqual((status, ended), (200, True))
        self.assertEqual(len(backend.requests), 1)
        # A request after them still goes through while both tunnels stay open.
        status, _, _, _ = client.response(client.request("h2.test", "/after"))
        self.assertEqual(status, 200)
        self.assert_echo(first, OP_TEXT, b"still open")
        self.assertFalse(client.stream_ended(first.id) or client.stream_ended(second.id))

    def test_client_end_stream_half_closes_the_backend(self):
        saw_eof = threading.Event()

        def wait_then_close(conn):
            if conn.fs.wait_eof(10):
                saw_eof.set()
                conn.send_frame(OP_TEXT, b"after your end")  # its half is still open
        server = self.ws_server(wait_then_close)
        self.route(server.url, "half.test")
        client = self.raw()
        ws = WsStream(client, authority="half.test")
        self.assertEqual(ws.response()[0], 200)
        ws.end()
        self.assertTrue(saw_eof.wait(10), "the backend never saw the client's END_STREAM")
        self.assertEqual(ws.next_frame()[2], b"after your end")
        self.assertTrue(ws.ended(), "the backend's close did not end the stream")

    def test_client_reset_closes_the_backend(self):
        closed = threading.Event()

        def wait_for_close(conn):
            if conn.fs.wait_eof(10):
                closed.set()
        server = self.ws_server(wait_for_close)
        self.route(server.url, "reset.test")
        client = self.raw()
        ws = WsStream(client, authority="reset.test")
        self.assertEqual(ws.response()[0], 200)
        client.conn.reset_stream(ws.id, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        self.assertTrue(closed.wait(10), "the backend connection outlived the reset")
        # The connection goes on.
        self.frontend("h2.test")
        status, _, _, _ = client.response(client.request("h2.test", "/"))
        self.assertEqual(status, 200)

    def test_backend_close_ends_the_stream(self):
        def greet_and_go(conn):
            conn.send_frame(OP_TEXT, b"bye")
            conn.sock.shutdown(socket.SHUT_RDWR)
        server = self.ws_server(greet_and_go)
        self.route(server.url, "bye.test")
        client = self.raw()
        ws = WsStream(client, authority="bye.test")
        self.assertEqual(ws.response()[0], 200)
        self.assertEqual(ws.next_frame()[1:3], (OP_TEXT, b"bye"))
        self.assertTrue(ws.ended())

    def test_refusal_is_relayed(self):
        def refuse(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n"
                         b"Content-Type: text/plain\r\n\r\nno way")
        self.route(self.raw_backend(refuse).url, "no.test")
        client = self.raw()
        ws = WsStream(client, authority="no.test")
        status, headers, body, ended = client.response(ws.id)
        self.assertEqual((status, body, ended), (403, b"no way", True))

    def test_backend_down_is_502(self):
        self.route(harness.refused_url(), "down.test")
        client = self.raw()
        ws = WsStream(client, authority="down.test")
        status, _, _, ended = client.response(ws.id)
        self.assertEqual((status, ended), (502, True))

    def test_101_fields_and_raw_bytes(self):
        """What a backend reads and answers, byte for byte: its protocol and extensions reach the
        client, its first bytes sent with the 101 too, and the client's bytes arrive as sent."""
        received = []
        done = threading.Event()

        def script(conn):
            head = harness.read_request_head(conn)
            received.append(head)
            _, fields = parse_head(head)
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                          "Sec-WebSocket-Protocol: chat\r\n"
                          "Sec-WebSocket-Extensions: x-test\r\n\r\n"
                          % accept_for(header(fields, "Sec-WebSocket-Key"))).encode() +
                         encode_frame(OP_TEXT, b"early", mask=False))
            data = b""
            conn.settimeout(10)
            while len(data) < 11:
                chunk = conn.recv(100)
                if not chunk:
                    break
                data += chunk
            received.append(data)
            done.set()
        self.route(self.raw_backend(script).url, "raw.test")
        client = self.raw()
        ws = WsStream(client, "/x", [("sec-websocket-protocol", "chat, other"),
                                     ("sec-websocket-extensions", "x-test")],
                      authority="raw.test")
        status, headers = ws.response()
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("sec-websocket-protocol"), "chat")
        self.assertEqual(headers.get("sec-websocket-extensions"), "x-test")
        self.assertEqual(ws.next_frame()[1:3], (OP_TEXT, b"early"))
        frame = encode_frame(OP_TEXT, b"12345", mask=True)
        ws.send(frame)
        self.assertTrue(done.wait(10))
        self.assertEqual(received[1], frame)
        head = received[0].decode("latin-1")
        self.assertTrue(head.startswith("GET /x HTTP/1.1\r\n"), head)
        self.assertIn("\r\nSec-WebSocket-Protocol: chat, other\r\n", head.replace(
            "sec-websocket-protocol", "Sec-WebSocket-Protocol"))

    def test_other_connects_are_refused(self):
        client = self.raw()
        other = WsStream(client, protocol="connect-udp")
        self.assertEqual(client.response(other.id)[0], 400)
        plain = client.conn.get_next_available_stream_id()
        client.conn.send_headers(plain, [(":method", "CONNECT"), (":authority", "ws.test:80")])
        client.flush()
        self.assertEqual(client.response(plain)[0], 400)

    def test_websocket_with_a_length_is_refused(self):
        # Forwarded on the upgrade GET, the length would have the backend read the tunnel's
        # first bytes as a body.
        client = self.raw()
        for length in ("0", "5"):
            ws = WsStream(client, headers=[("content-length", length)])
            self.assertEqual(client.response(ws.id)[0], 400)
        time.sleep(0.3)  # a forwarded upgrade would have reached the backend by now
        self.assertEqual(self.server.connections, [])


class IdleTunnelTest(Http2WebSocketCase):
    def test_idle_tunnel_is_closed(self):
        closed = threading.Event()

        def wait_for_close(conn):
            if conn.fs.wait_eof(20):
                closed.set()
        self.server = self.ws_server(wait_for_close)
        self.route(self.server.url)
        self.start_proxy(tcpTimeout=1)
        client = self.raw()
        ws = WsStream(client)
        self.assertEqual(ws.response()[0], 200)
        self.assertTrue(closed.wait(20), "the idle tunnel's backend connection stayed open")
        self.assertIsNotNone(ws.reset_code(timeout=10))
        line = self.access_log_lines(expected=1)[-1]
        self.assertIn('"GET / HTTP/2.0" 200', line)


class DrainTest(Http2WebSocketCase):
    def test_tunnel_runs_on_after_goaway_until_graceful_wait(self):
        self.server = self.ws_server()
        self.route(self.server.url)
        self.start_proxy(gracefulWait=3)
        client = self.raw()
        ws = WsStream(client)
        self.assertEqual(ws.response()[0], 200)
        self.assert_echo(ws, OP_TEXT, b"before")
        self.proxy.signal(signal.SIGHUP)  # the worker is replaced
        self.assertTrue(client.pump(lambda c: c.goaway() is not None, timeout=10))
        self.assertEqual(client.goaway().error_code, h2.errors.ErrorCodes.NO_ERROR)
        # python-h2 takes no frame after a GOAWAY: raw frames from here on.
        message = encode_frame(OP_TEXT, b"after the goaway", mask=True)
        client.send_raw(http2_helpers.frame(http2_helpers.DATA, 0, ws.id, message))
        received = b""
        client.sock.settimeout(10)
        while b"after the goaway" not in received:
            data = client.sock.recv(65536)
            self.assertTrue(data, "the connection closed before the echo")
            received += data
        self.assertFalse(self.server.connections[-1].eof.is_set())
        # gracefulWait ends the worker, and the tunnel with it.
        self.assertTrue(self.server.connections[-1].eof.wait(20))


class TunnelMetricsTest(admin_helpers.AdminTestCase, Http2WebSocketCase):
    def test_tunnel_counts_while_open(self):
        self.server = self.ws_server()
        self.route(self.server.url)
        self.start_admin_proxy(workers=1)
        client = self.raw()
        ws = WsStream(client)
        self.assertEqual(ws.response()[0], 200)
        self.assertTrue(harness.wait_until(
            lambda: self.scrape().get("hipache_websocket_tunnels") == 1, 10))
        self.assertEqual(self.scrape()["hipache_websocket_tunnels_total"], 1)
        self.assert_echo(ws, OP_TEXT, b"counted")
        client.conn.reset_stream(ws.id, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        self.assertTrue(harness.wait_until(
            lambda: self.scrape().get("hipache_websocket_tunnels") == 0, 10))
        self.assertTrue(harness.wait_until(
            lambda: self.scrape().get('hipache_requests_total{code="200"}') == 1, 10))


class H2TlsWebSocketTest(Http2WebSocketCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tls_pki.shared_pki()

    def test_tunnel_over_alpn_h2(self):
        self.server = self.ws_server()
        self.route(self.server.url)
        config = self.config()
        config["https"] = {"port": harness.free_port(), "bind": ["127.0.0.1"],
                           "key": self.pki.leaf_key, "cert": self.pki.leaf_chain}
        self.start_proxy(config)
        context = ssl.create_default_context(cafile=self.pki.root)
        context.set_alpn_protocols(["h2"])
        client = http2_helpers.RawH2(config["https"]["port"], tls_context=context,
                                     server_hostname="secure.test")
        self._stoppers.append(client.close)
        self.assertEqual(client.sock.selected_alpn_protocol(), "h2")
        connection = self.check_tunnel(client, "https")
        self.assertEqual(header(connection.headers, "X-Forwarded-Proto"), "https")


class ChromiumTest(Http2WebSocketCase):
    """A browser: Chromium opens a WebSocket over the h2 connection its page came on (RFC 8441)
    once the server's SETTINGS allow it."""

    @classmethod
    def setUpClass(cls):
        cls.pki = tls_pki.shared_pki()

    def test_browser_websocket_rides_the_h2_connection(self):
        upgrades = []
        reported = threading.Event()

        def answer(conn, content_type, body):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n" % (content_type, len(body)) + body)

        def page_or_echo(conn):
            fs = FrameSocket(conn)
            start, fields = parse_head(fs.read_head())
            if header(fields, "Upgrade") is None:
                path = start.split()[1]
                if path == "/done":
                    reported.set()
                elif path == "/hold":
                    reported.wait(BROWSER_TIMEOUT)
                answer(conn, b"text/html" if path == "/" else b"text/plain",
                       PAGE if path == "/" else b"ok")
                return
            upgrades.append(fields)
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                          % accept_for(header(fields, "Sec-WebSocket-Key"))).encode())
            _, opcode, payload, _ = fs.read_frame()
            conn.sendall(encode_frame(opcode, payload, mask=False))
            fs.wait_eof(BROWSER_TIMEOUT)
        self.route(self.raw_backend(page_or_echo).url, "secure.test")
        # /hold waits for the browser as long as it takes: tcpTimeout must not answer it first
        # (a 504 would end the page's load before its answer came).
        config = self.config(tcpTimeout=BROWSER_TIMEOUT)
        config["https"] = {"port": harness.free_port(), "bind": ["127.0.0.1"],
                           "key": self.pki.leaf_key, "cert": self.pki.leaf_chain}
        self.start_proxy(config)
        result = subprocess.run(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--user-data-dir=" + os.path.join(self.workdir, "chromium-profile"),
             "--ignore-certificate-errors", "--host-resolver-rules=MAP secure.test 127.0.0.1",
             "--dump-dom",
             "https://secure.test:%d/" % config["https"]["port"]],
            capture_output=True, timeout=BROWSER_TIMEOUT)
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        self.assertIn('<div id="out">echo:hello from chromium</div>', result.stdout.decode())
        self.assertEqual(len(upgrades), 1)
        # The tunnel's line, once the browser is gone: over HTTP/2, not an HTTP/1.1 upgrade.
        self.assertTrue(harness.wait_until(lambda: any(
            '"GET /ws HTTP/2.0" 200' in line for line in self.access_log_lines()), 10),
            self.access_log_lines())


if __name__ == "__main__":
    import unittest
    unittest.main()

