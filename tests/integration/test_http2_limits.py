"""HTTP/2 defences, with raw frames: rapid reset, CONTINUATION, PING, SETTINGS and empty DATA
floods, oversized header blocks, too many streams, the idle timeout and the GOAWAY of a drain.
Each ends the way it should (a GOAWAY, a refused stream, a 431) and the worker serves on."""
import json
import signal
import socket
import subprocess
import time

import h2.errors
import h2.events
import h2.settings

import harness
import http2_helpers
from http2_helpers import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS, PING,
                           SETTINGS, WINDOW_UPDATE, frame)


class Http2LimitsTest(http2_helpers.Http2TestCase):
    def setUp(self):
        super().setUp()
        self.backend = self.frontend("h2.test")

    def still_serves(self):
        client = self.raw()
        stream = client.request("h2.test", "/after")
        status, _, body, ended = client.response(stream)
        self.assertEqual(status, 200)
        self.assertTrue(ended)
        self.assertNotIn("killed by signal", self.proxy.log())

    def assert_goaway(self, client, code=None):
        """The proxy ends the connection; with `code`, by a GOAWAY with that code. (A flooding
        client that writes on after the GOAWAY may see its connection reset before reading it:
        floods check the proxy's log instead.)"""
        self.assertTrue(client.pump(lambda c: c.goaway() is not None or c.closed, timeout=10))
        goaway = client.goaway()
        if code is not None:
            self.assertIsNotNone(goaway, "closed without a GOAWAY")
            self.assertEqual(goaway.error_code, code)

    def assert_flood_stopped(self, client, by_budget=False):
        """The connection ends: by nghttp2's own limit (PING and SETTINGS acknowledgements
        queued beyond 100) or by our budget of control frames, which logs it."""
        self.assert_goaway(client)
        if by_budget:
            harness.wait_until(lambda: "too many control frames" in self.proxy.log(), 5)
            self.assertIn("too many control frames", self.proxy.log())

    def test_rapid_reset_ends_the_connection(self):
        self.start_proxy()
        client = self.raw()
        for _ in range(400):
            stream = client.request("h2.test", "/slow?delay=0.5")
            client.conn.reset_stream(stream)
        client.flush()
        self.assert_goaway(client)
        # Far fewer backend requests than streams opened: reset streams do not pile up work.
        time.sleep(1)
        self.assertLess(len(self.backend.requests), 250)
        self.still_serves()

    def test_continuation_flood(self):
        self.start_proxy()
        client = self.raw()
        block = client.conn.encoder.encode([(":method", "GET"), (":scheme", "http"),
                                            (":authority", "h2.test"), (":path", "/")])
        client.send_raw(frame(HEADERS, 0, 1, block))  # no END_HEADERS
        for _ in range(200):
            client.send_raw(frame(CONTINUATION, 0, 1, client.conn.encoder.encode(
                [("x-filler", "y")])))
        self.assert_goaway(client)
        self.still_serves()

    def test_ping_flood(self):
        self.start_proxy()
        client = self.raw()
        for i in range(3000):
            client.send_raw(frame(PING, 0, 0, i.to_bytes(8, "big")))
        self.assert_flood_stopped(client)
        self.still_serves()

    def test_settings_flood(self):
        self.start_proxy()
        client = self.raw()
        for _ in range(3000):
            client.send_raw(frame(SETTINGS, 0, 0, b""))
        self.assert_flood_stopped(client)
        self.still_serves()

    def test_empty_data_flood(self):
        self.start_proxy()
        client = self.raw()
        stream = client.request("h2.test", "/upload", method="POST", end=False)
        for _ in range(3000):
            client.send_raw(frame(DATA, 0, stream, b""))
        self.assert_flood_stopped(client, by_budget=True)
        self.still_serves()

    def test_oversized_header_block_gets_431(self):
        self.start_proxy()
        client = self.raw()
        filler = [("x-filler-%d" % i, "v" * 1000) for i in range(70)]
        stream = client.request("h2.test", "/big-header", headers=filler)
        status, _, _, _ = client.response(stream)
        self.assertEqual(status, 431)
        self.assertEqual(len(self.backend.requests), 0)
        self.still_serves()

    def test_streams_beyond_the_limit_are_refused(self):
        self.start_proxy()
        client = self.raw()
        # The client does not wait for our SETTINGS: it opens more streams than we allow.
        streams = [client.request("h2.test", "/slow?delay=0.5") for _ in range(130)]
        client.pump(lambda c: all(c.stream_ended(s) for s in streams), timeout=20)
        refused = [e for e in client.resets()
                   if e.error_code == h2.errors.ErrorCodes.REFUSED_STREAM]
        answered = [s for s in streams if client.response(s, timeout=0.1)[0] is not None]
        self.assertGreater(len(refused), 0)
        self.assertEqual(len(refused) + len(answered), len(streams))
        self.assertLessEqual(len(answered), 100)
        self.still_serves()

    def test_idle_connection_gets_goaway_after_tcp_timeout(self):
        self.start_proxy(tcpTimeout=1)
        client = self.raw()
        stream = client.request("h2.test", "/one")
        self.assertEqual(client.response(stream)[0], 200)
        self.assert_goaway(client, h2.errors.ErrorCodes.NO_ERROR)
        self.assertTrue(client.pump(lambda c: c.closed, timeout=5))

    def test_connection_in_use_outlives_tcp_timeout_then_idles_out(self):
        # The idle timer is armed once per period and looks again when it fires: requests a
        # little apart keep the connection for several periods, then silence ends it.
        self.start_proxy(tcpTimeout=2)
        client = self.raw()
        started = time.monotonic()
        while time.monotonic() - started < 5:
            stream = client.request("h2.test", "/again")
            self.assertEqual(client.response(stream)[0], 200)
            self.assertIsNone(client.goaway())
            self.assertFalse(client.closed)
            client.pump(lambda c: False, timeout=0.5)  # idle, but less than tcpTimeout
        self.assertIsNone(client.goaway())
        self.assertGreaterEqual(len(self.backend.requests), 4)
        self.assert_goaway(client, h2.errors.ErrorCodes.NO_ERROR)
        self.assertTrue(client.pump(lambda c: c.closed, timeout=5))

    def test_client_that_stops_reading_cannot_hold_a_write_by_sending_frames(self):
        # The client opens big windows, asks for a large answer and never reads it, so the
        # proxy's write stalls once the socket buffers are full; it keeps sending frames the
        # proxy reads (WINDOW_UPDATE). The write's tcpTimeout still ends the connection.
        self.start_proxy(tcpTimeout=2)
        client = self.raw()
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2 ** 31 - 1})
        client.conn.increment_flow_control_window(2 ** 31 - 1 - 65535)
        client.flush()
        client.request("h2.test", "/big?size=50000000")
        closed = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not closed:
            time.sleep(0.5)
            try:
                client.sock.sendall(frame(WINDOW_UPDATE, 0, 0, (1).to_bytes(4, "big")))
            except OSError:
                closed = True
        self.assertTrue(closed, "the stalled write held the connection open")
        self.still_serves()

    def test_drain_sends_goaway_and_finishes_streams_in_flight(self):
        self.start_proxy()
        idle = self.raw()
        self.assertEqual(idle.response(idle.request("h2.test", "/first"))[0], 200)
        # curl, as python-h2 reads any frame after a GOAWAY as an error.
        busy = subprocess.Popen(["curl", "-sS", "--max-time", "20", "--http2-prior-knowledge",
                                 "-H", "Host: h2.test", "-o", "-", "-w", "\n%{http_code}",
                                 self.url("/slow?delay=1")], stdout=subprocess.PIPE)
        self._stoppers.append(busy.kill)
        harness.wait_until(lambda: any(r["path"].startswith("/slow")
                                       for r in self.backend.requests), 5)
        self.proxy.signal(signal.SIGHUP)  # the worker is replaced
        out, _ = busy.communicate(timeout=20)
        self.assertEqual(busy.returncode, 0)
        self.assertTrue(out.endswith(b"\n200"), out[-100:])
        self.assert_goaway(idle, h2.errors.ErrorCodes.NO_ERROR)
        self.assertTrue(idle.pump(lambda c: c.closed, timeout=5))
        self.still_serves()


if __name__ == "__main__":
    import unittest
    unittest.main()
