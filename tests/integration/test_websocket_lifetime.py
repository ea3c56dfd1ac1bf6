"""WebSocket (Upgrade) tunnelling through the real binary (SPEC sections 4, 5 and 8), how
long a tunnel lives: tcpTimeout closes an idle one (0 disables it) while a busy one stays, and an
open tunnel keeps its draining worker until gracefulWait.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_websocket_lifetime
"""
import signal
import threading
import time
import unittest

from websocket_helpers import WebSocketTestCase
from websocket_peers import OP_TEXT


class IdleTimeout(WebSocketTestCase):
    def test_idle_tunnel_closed_after_tcp_timeout_busy_one_lives(self):
        server = self.ws_server()
        self.route(server)
        self.start_proxy(tcpTimeout=1)
        idle = self.open_tunnel()
        opened = time.time()
        busy = self.open_tunnel()
        idle_conn = server.connections[0]  # the idle tunnel's handshake completed first

        # The busy tunnel exchanges something every 0.3 s for 2.4 s.
        busy_errors = []

        def keep_busy():
            try:
                for i in range(8):
                    time.sleep(0.3)
                    busy.send("tick %d" % i)
                    if busy.recv_message() != (OP_TEXT, b"tick %d" % i):
                        busy_errors.append("wrong echo %d" % i)
            except Exception as e:
                busy_errors.append(repr(e))

        t = threading.Thread(target=keep_busy, daemon=True)
        t.start()
        self.assertTrue(idle.wait_eof(5), "idle tunnel not closed by tcpTimeout 1")
        closed_after = time.time() - opened
        self.assertGreater(closed_after, 0.7)
        self.assertLess(closed_after, 3.5)
        self.assertTrue(idle_conn.eof.wait(3), "the backend side of the idle tunnel stayed open")
        self.assertLess(idle_conn.eof_at - opened, 4)

        t.join(10)
        self.assertEqual(busy_errors, [])
        self.assertGreater(time.time() - opened, 2.0)
        self.assert_echo(busy, "still alive")  # > 2 s old and open
        self.close_cleanly(busy)

    def test_tcp_timeout_zero_keeps_idle_tunnel(self):
        server = self.ws_server()
        self.route(server)
        self.start_proxy(tcpTimeout=0)
        c = self.open_tunnel()
        self.assertFalse(c.wait_eof(2.2), "tunnel closed although tcpTimeout is 0")
        self.assert_echo(c, "after 2 s of silence")
        self.assertFalse(server.connections[0].eof.is_set())
        self.close_cleanly(c)


class Drain(WebSocketTestCase):
    def test_open_tunnel_keeps_the_worker_until_graceful_wait(self):
        # A tunnel outlives the session of its handshake (proxy/tunnel.hpp) and still counts as
        # an open connection: SIGTERM lets it run until gracefulWait, then it is closed.
        server = self.ws_server()
        self.route(server)
        self.start_proxy(workers=1, gracefulWait=2, tcpTimeout=60)
        c = self.open_tunnel()
        self.assert_echo(c, "before the signal")
        self.proxy.signal(signal.SIGTERM)
        signalled = time.time()
        time.sleep(0.8)
        self.assertIsNone(self.proxy.process.poll(), "the worker left an open tunnel behind")
        self.assert_echo(c, "during the drain")
        self.assertTrue(c.wait_eof(6), "tunnel still open after gracefulWait")
        self.assertGreater(time.time() - signalled, 1.5)
        self.assertEqual(self.proxy.process.wait(10), 0)


if __name__ == "__main__":
    unittest.main()
