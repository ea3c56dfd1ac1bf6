"""HTTP/1.1 message framing through the real binary (issue 17: no request or response can be
smuggled; the rules of docs/security.md, "Framing is ours"), checked byte for byte.

Upgrades (rule 9): a 101 only for a request that asked for that protocol, and a
refused upgrade ends the client connection, so no byte after it is ever read as a request.

Run: cd tests/integration && HIPACHE_BINARY=/work/main/build/hipache \
         python3 -m unittest -v test_framing_upgrades
"""
import contextlib
import time
import unittest

from framing_helpers import FramingTestCase
from framing_peers import MARK, SETTLE, ok_response

WEBSOCKET_HEADERS = (b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n")


# --------------------------------------------------------------------------- rule 9

SWITCHING_WEBSOCKET = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\n\r\n" + MARK + b"T-TUNNEL-BYTES")


class Upgrades(FramingTestCase):
    def test_unsolicited_101_is_502(self):
        self.scripted("up.test", SWITCHING_WEBSOCKET)
        self.start_proxy()
        client = self.client()
        client.send(b"GET / HTTP/1.1\r\nHost: up.test\r\n\r\n")
        response = client.read_response()
        self.assertNotEqual(response.status, 101, "the unsolicited 101 reached the client")
        self.assert_502_page(response, client)
        self.assertNotIn(b" 101 ", client.raw)

    def test_101_to_another_protocol_is_502(self):
        self.scripted("up.test", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                      b"Connection: Upgrade\r\n\r\n" + MARK + b"T-TUNNEL-BYTES")
        self.start_proxy()
        client = self.client()
        client.send(b"GET / HTTP/1.1\r\nHost: up.test\r\n" + WEBSOCKET_HEADERS + b"\r\n")
        response = client.read_response()
        self.assertNotEqual(response.status, 101, "a 101 to h2c answered a websocket upgrade")
        self.assert_502_page(response, client)

    # A refused upgrade: the request asks for websocket, the backend answers 400 or 200.
    REFUSALS = {400: b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
                200: ok_response(b"ok")}

    def refusal_cases(self, timings):
        """Starts the proxy with one backend per (answer, timing); returns
        [(status, timing, host, backend)]."""
        cases = []
        for status, answer in self.REFUSALS.items():
            for when in timings:
                host = "up%d-%s.test" % (status, when)
                cases.append((status, when, host, self.scripted(host, answer)))
        self.start_proxy()
        return [(status, when, host.encode(), backend) for status, when, host, backend in cases]

    def refused_upgrade(self, status, host, second=None):
        """Sends the upgrade request (then `second` at once, when given); returns the client
        and the answer, which must be the backend's."""
        client = self.client()
        client.send(b"GET /first HTTP/1.1\r\nHost: " + host + b"\r\n" + WEBSOCKET_HEADERS +
                    b"\r\n")
        if second:
            client.send(second)
        response = client.read_response()
        self.assertEqual(response.status, status, response.head)
        return client, response

    def test_refused_upgrade_answer_has_connection_close(self):
        for status, _, host, _ in self.refusal_cases(["plain"]):
            with self.subTest(answer=status):
                _, response = self.refused_upgrade(status, host)
                self.assertIn("close", response.tokens("connection"),
                              "a refused upgrade's answer without Connection: close: %r"
                              % response.headers)

    def test_refused_upgrade_closes_the_client_connection(self):
        for status, _, host, _ in self.refusal_cases(["plain"]):
            with self.subTest(answer=status):
                client, _ = self.refused_upgrade(status, host)
                self.assertTrue(client.closed_by_peer(2.0), "the proxy kept the client "
                                "connection open after a refused upgrade")

    def test_bytes_after_a_refused_upgrade_are_never_a_request(self):
        for status, when, host, backend in self.refusal_cases(["pipelined", "after-answer"]):
            with self.subTest(answer=status, sent=when):
                self.second_after_refusal(status, when, host, backend)

    def second_after_refusal(self, status, when, host, backend):
        second = b"GET /second HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
        client, _ = self.refused_upgrade(status, host, second if when == "pipelined" else None)
        if when == "after-answer":
            with contextlib.suppress(OSError):
                client.send(second)
        client.read_rest(1.0)
        self.assertNotIn(b"HTTP/1.", client.buf, "an answer to the bytes sent after the "
                         "refused upgrade: %r" % client.buf[:300])
        time.sleep(SETTLE)
        self.assertNotIn(b"/second", backend.all_bytes(),
                         "the backend received the bytes sent after a refused upgrade: %r"
                         % backend.all_bytes()[-300:])


if __name__ == "__main__":
    unittest.main()
