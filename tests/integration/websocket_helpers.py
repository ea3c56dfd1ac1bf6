"""What the websocket tests (test_websocket_*.py) share besides the peers: reading a plain HTTP
answer off a FrameSocket, and WebSocketTestCase, which routes the test host to echo servers and
opens clients and tunnels through the proxy.
"""
import contextlib
import socket
import struct

import harness
from websocket_peers import (OP_BINARY, OP_CLOSE, OP_TEXT, WsClient, WsEchoServer, header,
                             parse_head, tokens)


# --------------------------------------------------------------------------- plain HTTP

def read_http_response(fs):
    """(status, headers, body) of one response read from a FrameSocket."""
    status_line, headers = parse_head(fs.read_head())
    status = int(status_line.split()[1])
    return status, headers, read_http_body(fs, status, headers)


def read_http_body(fs, status, headers):
    if status in (101, 204, 304) or 100 <= status < 200:
        return b""
    if "chunked" in tokens(header(headers, "Transfer-Encoding")):
        body = bytearray()
        while True:
            size = int(fs.read_line().split(b";")[0], 16)
            if size == 0:
                while fs.read_line() != b"\r\n":
                    pass
                return bytes(body)
            body += fs.recv_exact(size)
            fs.recv_exact(2)
    length = header(headers, "Content-Length")
    if length is not None:
        return fs.recv_exact(int(length))
    body = bytearray()  # delimited by close
    with contextlib.suppress(EOFError):
        while True:
            fs._fill()
            body += fs.buf
            fs.buf.clear()
    return bytes(body)


# --------------------------------------------------------------------------- base class

class WebSocketTestCase(harness.ProxyTestCase):
    HOST = "ws.test"

    def setUp(self):
        super().setUp()
        self._clients = []
        self._held_sockets = []

    def tearDown(self):
        for c in self._clients:
            c.close_socket()
        for s in self._held_sockets:
            s.close()
        super().tearDown()

    def ws_server(self, on_open=None):
        server = WsEchoServer(on_open)
        self._stoppers.append(server.stop)
        return server

    def client(self, host=None, path="/", headers=None, timeout=10):
        c = WsClient(self.proxy.port, host or self.HOST, path, headers, timeout)
        self._clients.append(c)
        return c

    def open_tunnel(self, host=None, path="/", timeout=10):
        c = self.client(host, path, timeout=timeout)
        self.assertEqual(c.handshake(), 101, c.headers)
        return c

    def refused_url(self):
        """A bound but not listening port: connecting is refused for the whole test."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self._held_sockets.append(s)
        return "http://127.0.0.1:%d" % s.getsockname()[1]

    def route(self, *backends, host=None, identifier="wsapp"):
        self.redis.rpush("frontend:" + (host or self.HOST), identifier,
                         *[b if isinstance(b, str) else b.url for b in backends])

    def assert_echo(self, c, message):
        c.send(message)
        opcode, payload = c.recv_message()
        expected = message.encode() if isinstance(message, str) else bytes(message)
        self.assertEqual(opcode, OP_TEXT if isinstance(message, str) else OP_BINARY)
        self.assertEqual(len(payload), len(expected))
        self.assertTrue(payload == expected, "echoed payload differs")

    def close_cleanly(self, c, code=1000):
        c.close(code)
        opcode, payload = c.recv_message()
        self.assertEqual(opcode, OP_CLOSE)
        self.assertEqual(struct.unpack("!H", payload[:2])[0], code)
        self.assertTrue(c.wait_eof(5), "the proxy did not pass the backend's close on")
        c.close_socket()
