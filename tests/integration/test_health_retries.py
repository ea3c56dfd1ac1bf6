"""Retries (SPEC section 6), on the real binary with a real Redis: a fresh backend each time,
never a failed one, retryOnError, requests with a body not replayed once sent, the worker's own
marks applied at once; and broken response bodies (short, streamed before the backend stops,
long ones truncated to Content-Length). How a test asserts that nothing was marked:
health_helpers.py.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_health_retries
"""
import http.client
import json
import socket
import time
import unittest

import harness
from health_helpers import HealthTestCase, reset_after_head


# --------------------------------------------------------------------------- retries

class Retries(HealthTestCase):
    def test_get_retry_picks_a_fresh_backend(self):
        # Passive checks off: nothing is excluded by dead marks, so each request has a 50% chance
        # of hitting the refused backend first. With one retry allowed, a retry that could pick
        # the failed backend again would fail about one request in four.
        self.start_with_fresh_ping(retryOnError=1)
        good = self.http_backend("good")
        self.frontend("retry.test", self.refused_url(), good.url)
        for i in range(20):
            status, _, body = self.request("GET", "/", host="retry.test")
            self.assertEqual(status, 200, "request %d: %r" % (i, body[:200]))
        self.sync_marks()
        self.assertGreaterEqual(len(self.published("retry.test")), 1,
                                "the refused backend was never tried: the test proved nothing")
        self.assertEqual(len(good.requests), 20)

    def test_retries_never_repeat_a_failed_backend(self):
        self.start_with_fresh_ping(retryOnError=3)
        good = self.http_backend("good")
        self.frontend("retry.test", self.refused_url(), self.refused_url(), self.refused_url(),
                      good.url)
        for i in range(15):
            status, _, body = self.request("GET", "/", host="retry.test")
            self.assertEqual(status, 200, "request %d: %r" % (i, body[:200]))
        self.assertEqual(len(good.requests), 15)

    def start_with_fresh_ping(self, **server):
        self.redis.set("hchecker_ping", str(int(time.time())))
        self.start(**server)
        time.sleep(1.0)

    def test_retry_on_error_zero_gives_502(self):
        self.start(retryOnError=0)
        self.frontend("retry.test", self.refused_url(), self.refused_url())
        status, _, _ = self.request("GET", "/", host="retry.test")
        self.assertEqual(status, 502)
        self.sync_marks()
        self.assertEqual(len(self.published("retry.test")), 1)  # one attempt, one mark

    def test_retries_exhausted_gives_502(self):
        self.start(retryOnError=2)
        backends = [self.refused_url() for _ in range(4)]
        self.frontend("retry.test", *backends)
        status, _, _ = self.request("GET", "/", host="retry.test")
        self.assertEqual(status, 502)
        self.sync_marks()
        self.assertEqual(len(self.published("retry.test")), 3)  # first try + 2 retries

    def _find_bad_hit(self, bad, good, method, body, max_requests=30):
        """Sends requests until one reaches `bad`; returns that request's status and how many
        requests `good` received meanwhile."""
        for _ in range(max_requests):
            before_bad, before_good = bad.connections, len(good.requests)
            status, _, _ = self.request(method, "/", host="post.test", body=body,
                                        headers={"Content-Type": "text/plain"})
            if bad.connections > before_bad:
                return status, len(good.requests) - before_good
            self.assertEqual(status, 200)
        self.fail("the failing backend was never picked in %d requests" % max_requests)

    def test_post_with_body_not_retried(self):
        self.start()
        bad = self.raw_backend(reset_after_head)
        good = self.http_backend("good")
        self.frontend("post.test", bad.url, good.url)
        status, good_seen = self._find_bad_hit(bad, good, "POST", b"x" * 1000)
        self.assertEqual(status, 502)
        self.assertEqual(good_seen, 0, "the POST was replayed on the other backend")

    def test_post_without_body_not_retried_once_sent(self):
        self.start()
        bad = self.raw_backend(reset_after_head)
        good = self.http_backend("good")
        self.frontend("post.test", bad.url, good.url)
        status, good_seen = self._find_bad_hit(bad, good, "POST", None)
        self.assertEqual(status, 502)
        self.assertEqual(good_seen, 0, "the POST was replayed on the other backend")

    def test_post_retried_when_backend_refused(self):
        # Nothing of the request was sent to a refused backend: safe to retry even with a body.
        # Passive checks off, so the refused backend stays in the rotation for every request.
        self.start_with_fresh_ping()
        good = self.http_backend("good")
        self.frontend("post.test", self.refused_url(), good.url)
        for i in range(12):
            status, _, body = self.request("POST", "/", host="post.test", body=b"y" * 500)
            self.assertEqual(status, 200, "request %d: %r" % (i, body[:200]))
            self.assertEqual(json.loads(body)["body_length"], 500)
        self.sync_marks()
        self.assertGreaterEqual(len(self.published("post.test")), 1,
                                "the refused backend was never tried: the test proved nothing")

    def test_own_mark_applies_to_next_requests(self):
        self.start()
        bad = self.raw_backend(reset_after_head)
        good = self.http_backend("good")
        self.frontend("mark.test", bad.url, good.url)
        for _ in range(30):
            status, _, _ = self.request("GET", "/", host="mark.test")
            self.assertEqual(status, 200)
            if bad.connections:
                break
        self.assertEqual(bad.connections, 1)
        for _ in range(20):
            status, _, _ = self.request("GET", "/", host="mark.test")
            self.assertEqual(status, 200)
        self.assertEqual(bad.connections, 1, "the failed backend was picked again")
        self.assertEqual(self.dead_members("mark.test"), ["0"])

    def test_own_mark_applies_without_a_redis_round_trip(self):
        # Reads and writes go to two different Redis servers: the dead set written by the proxy
        # is never read back, so only the worker's own memory can keep the backend out.
        writes = harness.RedisServer()
        self._stoppers.append(writes.stop)
        config = self.config()
        config["driver"] = [self.redis_server.url(), writes.url()]
        self.start_proxy(config)
        bad = self.raw_backend(reset_after_head)
        good = self.http_backend("good")
        self.frontend("mark.test", bad.url, good.url)
        for _ in range(30):
            status, _, _ = self.request("GET", "/", host="mark.test")
            self.assertEqual(status, 200)
            if bad.connections:
                break
        self.assertEqual(bad.connections, 1)
        for _ in range(20):
            status, _, _ = self.request("GET", "/", host="mark.test")
            self.assertEqual(status, 200)
        self.assertEqual(bad.connections, 1, "the failed backend was picked again")
        harness.wait_until(lambda: writes.client.exists("dead:mark.test"), 3)
        self.assertEqual(writes.client.smembers("dead:mark.test"), ["0"])
        self.assertEqual(self.redis.exists("dead:mark.test"), 0)


# --------------------------------------------------------------------------- broken bodies

class BrokenBodies(HealthTestCase):
    def test_short_body_closes_the_client_connection(self):
        def short(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 10)
            time.sleep(0.1)
        self.start(tcpTimeout=30)  # so a close can only come from the proxy noticing the EOF
        backend = self.raw_backend(short)
        self.frontend("short.test", backend.url)
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=10)
        try:
            conn.request("GET", "/", headers={"Host": "short.test"})
            response = conn.getresponse()
            self.assertEqual(response.status, 200)
            with self.assertRaises(http.client.IncompleteRead):
                response.read()
        finally:
            conn.close()
        # Raw: a keep-alive request gets the header, 10 bytes, then the connection is closed
        # (EOF well before the 30 s tcpTimeout, never a fake end of message).
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: short.test\r\n\r\n")
            data = b""
            started = time.time()
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    self.fail("the proxy kept the client connection open: %r" % data)
                if not chunk:
                    break
                data += chunk
            self.assertLess(time.time() - started, 5)
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        # Never more than the backend sent, never a made-up end of message.
        self.assertTrue(len(body) <= 10 and b"a" * 10 == body.ljust(10, b"a"), data)

    def test_body_bytes_are_streamed_before_the_backend_stops(self):
        # SPEC 5 (bodies stream) and 6: what the backend sent before dying reaches the client
        # as it arrives, not only once 16 KB have piled up or the message is complete.
        def slow_then_dead(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 10)
            time.sleep(2.5)
        self.start(tcpTimeout=30)
        backend = self.raw_backend(slow_then_dead)
        self.frontend("short.test", backend.url)
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=1.5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: short.test\r\n\r\n")
            data = b""
            try:
                while not data.endswith(b"a" * 10):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except socket.timeout:
                pass
        self.assertTrue(data.endswith(b"\r\n\r\n" + b"a" * 10),
                        "after 1.5 s the client has only %r" % data)

    def _long_body(self, keep_alive):
        def long(conn):
            while harness.read_request_head(conn):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloWORLD")
                if not keep_alive:
                    time.sleep(0.1)
                    return
        self.start(httpKeepAlive=keep_alive)
        backend = self.raw_backend(long)
        echo = self.http_backend("echo")
        self.frontend("long.test", backend.url)
        self.frontend("echo.test", echo.url)
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=10)
        try:
            for _ in range(3):
                conn.request("GET", "/", headers={"Host": "long.test"})
                response = conn.getresponse()
                self.assertEqual(response.status, 200)
                self.assertEqual(response.read(), b"hello")
            # the same client connection still works for another frontend
            conn.request("GET", "/after", headers={"Host": "echo.test"})
            response = conn.getresponse()
            self.assertEqual(response.status, 200)
            self.assertEqual(json.loads(response.read())["path"], "/after")
        finally:
            conn.close()
        status, _, body = self.request("GET", "/", host="long.test")
        self.assertEqual((status, body), (200, b"hello"))

    def test_long_body_truncated_to_content_length(self):
        self._long_body(False)

    def test_long_body_truncated_with_backend_keep_alive(self):
        self._long_body(True)


if __name__ == "__main__":
    unittest.main()
