"""Passive health checks and retries (SPEC section 6), on the real binary with a real Redis.

Marks are written by the proxy asynchronously (one pipelined MULTI per mark, on one Redis
connection, in order). To assert that something was NOT marked without sleeping and hoping, the
tests call sync_marks(): it provokes a known mark on a separate frontend and waits for its PUBLISH;
any mark caused earlier by the same worker has been sent before it.
"""
import http.client
import json
import socket
import time
import unittest

import harness

DEAD_TTL = 17  # distinct from the default 30, so the TTL check proves the configured value is used


class HealthTestCase(harness.ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.sub = self.redis_server.subscribe("dead")
        self._stoppers.append(self.sub.close)
        self._held_sockets = []
        self._sentinels = 0
        self.prefix = ""

    def tearDown(self):
        for s in self._held_sockets:
            s.close()
        super().tearDown()

    # ----------------------------------------------------------------- helpers

    def refused_url(self):
        """Like harness.refused_url(), but the port stays bound (not listening) for the whole
        test, so nothing else can grab it: connecting to it is refused."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self._held_sockets.append(s)
        return "http://127.0.0.1:%d" % s.getsockname()[1]

    def start(self, **server):
        server.setdefault("deadBackendTTL", DEAD_TTL)
        config = self.config(**server)
        if self.prefix:
            config["driver"] = self.redis_server.url(prefix=self.prefix)
        self.redis.rpush(self.prefix + "frontend:*.sentinel.test", "sentinel",
                         self.refused_url(), self.refused_url())
        return self.start_proxy(config)

    def frontend(self, host, *backends, identifier="id"):
        self.redis.rpush(self.prefix + "frontend:" + host, identifier, *backends)

    def sync_marks(self):
        """Provokes a mark on a fresh sentinel host and waits for its PUBLISH (see module doc)."""
        self._sentinels += 1
        host = "s%d.sentinel.test" % self._sentinels
        status, _, _ = self.request("GET", "/", host=host)
        self.assertEqual(status, 502)
        seen = harness.wait_until(
            lambda: any(m.startswith(host + ";") for m in self.sub.messages), 5)
        self.assertTrue(seen, "the sentinel mark was never published: %r" % self.sub.messages)

    def published(self, host):
        return [m for m in self.sub.messages if m.startswith(host + ";")]

    def dead_members(self, host):
        return sorted(self.redis.smembers(self.prefix + "dead:" + host))

    def wait_published(self, host, count=1, timeout=5):
        harness.wait_until(lambda: len(self.published(host)) >= count, timeout)
        return self.published(host)

    def assert_marked(self, host, backends, index):
        """Exactly backend `index` marked: SADD + EXPIRE ~DEAD_TTL + one PUBLISH."""
        messages = self.wait_published(host)
        self.sync_marks()
        self.assertEqual(self.published(host),
                         ["%s;%s;%d;%d" % (host, backends[index], index, len(backends))])
        self.assertEqual(self.dead_members(host), [str(index)])
        ttl = self.redis.ttl(self.prefix + "dead:" + host)
        self.assertTrue(DEAD_TTL - 4 <= ttl <= DEAD_TTL, "TTL of dead:%s is %s" % (host, ttl))

    def assert_not_marked(self, host):
        self.sync_marks()
        self.assertEqual(self.published(host), [])
        self.assertEqual(self.redis.exists(self.prefix + "dead:" + host), 0)

    def hit_until_published(self, host_header, host, max_requests=30, expect_status=200):
        """GETs until a mark for `host` is published. Every response must have expect_status."""
        for _ in range(max_requests):
            status, _, body = self.request("GET", "/", host=host_header)
            self.assertEqual(status, expect_status, body[:200])
            if harness.wait_until(lambda: self.published(host), 0.3):
                return
        self.fail("no dead mark published for %s after %d requests" % (host, max_requests))


def silent(conn):
    """Reads the request, then never answers (gives up after a few seconds)."""
    harness.read_request_head(conn)
    conn.settimeout(6)
    try:
        while conn.recv(65536):
            pass
    except socket.timeout:
        pass


def reset_after_head(conn):
    harness.read_request_head(conn)
    harness.reset(conn)


def garbage(conn):
    harness.read_request_head(conn)
    conn.sendall(b"hello\r\n\r\n")
    time.sleep(0.2)


# --------------------------------------------------------------------------- dead-marking rules

class DeadMarkingRules(HealthTestCase):
    def test_refused_marks_dead_and_request_is_retried(self):
        self.start()
        good = self.http_backend("good")
        backends = [self.refused_url(), good.url]
        self.frontend("rule.test", *backends)
        self.hit_until_published("Rule.TEST:8080", "rule.test")
        self.assert_marked("rule.test", backends, 0)

    def test_reset_before_response_marks_dead(self):
        self.start()
        bad = self.raw_backend(reset_after_head)
        good = self.http_backend("good")
        backends = [bad.url, good.url]
        self.frontend("rule.test", *backends)
        self.hit_until_published("rule.test", "rule.test")
        self.assertEqual(bad.connections, 1)
        self.assert_marked("rule.test", backends, 0)

    def test_garbage_response_marks_dead(self):
        self.start()
        bad = self.raw_backend(garbage)
        good = self.http_backend("good")
        backends = [bad.url, good.url]
        self.frontend("rule.test", *backends)
        self.hit_until_published("rule.test", "rule.test")
        self.assert_marked("rule.test", backends, 0)

    def test_garbage_response_is_502_when_no_backend_answers_properly(self):
        self.start()
        bad1, bad2 = self.raw_backend(garbage), self.raw_backend(garbage)
        backends = [bad1.url, bad2.url]
        self.frontend("garbage.test", *backends)
        status, headers, body = self.request("GET", "/", host="garbage.test")
        self.assertEqual(status, 502)
        self.assertNotIn(b"hello", body)
        self.assertEqual(headers.get("content-type"), "text/html")
        self.wait_published("garbage.test", 2)
        self.sync_marks()
        self.assertEqual(sorted(self.published("garbage.test")),
                         sorted("garbage.test;%s;%d;2" % (u, i) for i, u in enumerate(backends)))
        self.assertEqual(self.dead_members("garbage.test"), ["0", "1"])

    def test_timeout_marks_dead(self):
        self.start(tcpTimeout=1)
        bad = self.raw_backend(silent)
        good = self.http_backend("good")
        backends = [bad.url, good.url]
        self.frontend("rule.test", *backends)
        self.hit_until_published("rule.test", "rule.test", max_requests=15)
        self.assert_marked("rule.test", backends, 0)

    def test_timeout_is_504(self):
        self.start(tcpTimeout=1)
        bad1, bad2 = self.raw_backend(silent), self.raw_backend(silent)
        backends = [bad1.url, bad2.url]
        self.frontend("slow.test", *backends)
        started = time.time()
        status, headers, _ = self.request("GET", "/", host="slow.test", timeout=20)
        elapsed = time.time() - started
        self.assertEqual(status, 504)
        self.assertEqual(headers.get("content-type"), "text/html")
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 10)
        self.wait_published("slow.test", 2)
        self.assertEqual(self.dead_members("slow.test"), ["0", "1"])

    def _status_rule(self, query, expect_status, marked, **server):
        self.start(**server)
        a, b = self.http_backend("a"), self.http_backend("b")
        backends = [a.url, b.url]
        self.frontend("status.test", *backends)
        status, headers, body = self.request("GET", "/?" + query, host="Status.Test")
        # The backend's own answer is relayed, not replaced by an error page.
        self.assertEqual(status, expect_status)
        self.assertEqual(headers.get("content-type"), "application/json")
        index = ["a", "b"].index(json.loads(body)["backend"])
        if marked:
            self.assert_marked("status.test", backends, index)
        else:
            # A few more, on whichever backend: none of them may be marked either.
            for _ in range(3):
                status, _, _ = self.request("GET", "/?" + query, host="status.test")
                self.assertEqual(status, expect_status)
            self.assert_not_marked("status.test")

    def test_502_response_marks_dead_and_is_relayed(self):
        self._status_rule("status=502", 502, True)

    def test_504_response_marks_dead(self):
        self._status_rule("status=504", 504, True)

    def test_501_response_marks_dead(self):
        self._status_rule("status=501", 501, True)

    def test_503_without_retry_after_marks_dead(self):
        self._status_rule("status=503", 503, True)

    def test_503_with_retry_after_is_not_marked(self):
        self._status_rule("status=503&retry_after=5", 503, False)

    def test_500_marks_dead_by_default(self):
        self._status_rule("status=500", 500, True)

    def test_500_not_marked_when_dead_backend_on_500_false(self):
        self._status_rule("status=500", 500, False, deadBackendOn500=False)

    def test_4xx_not_marked(self):
        self._status_rule("status=404", 404, False)

    def test_wildcard_frontend_marks_the_exact_host(self):
        self.start()
        good = self.http_backend("good")
        backends = [self.refused_url(), good.url]
        self.frontend("*.wild.test", *backends)
        self.hit_until_published("Foo.Wild.Test.:81", "foo.wild.test")
        self.assert_marked("foo.wild.test", backends, 0)
        self.assertEqual(self.redis.exists("dead:*.wild.test"), 0)

    def test_prefix_applies_to_dead_key_but_not_to_channel(self):
        self.prefix = "pfx:"
        self.start()
        good = self.http_backend("good")
        backends = [self.refused_url(), good.url]
        self.frontend("rule.test", *backends)
        self.hit_until_published("rule.test", "rule.test")
        self.assert_marked("rule.test", backends, 0)  # reads pfx:dead:rule.test
        self.assertEqual(self.redis.exists("dead:rule.test"), 0)


class SingleBackendNeverMarked(HealthTestCase):
    def test_no_mark_with_one_backend(self):
        self.start(tcpTimeout=1)
        echo = self.http_backend("echo")
        self.frontend("refused.test", self.refused_url())
        self.frontend("status.test", echo.url)
        self.frontend("slow.test", self.raw_backend(silent).url)
        self.frontend("garbage.test", self.raw_backend(garbage).url)
        self.frontend("reset.test", self.raw_backend(reset_after_head).url)
        for host, path, expected in [("refused.test", "/", 502),
                                     ("status.test", "/?status=502", 502),
                                     ("status.test", "/?status=500", 500),
                                     ("slow.test", "/", 504),
                                     ("garbage.test", "/", 502),
                                     ("reset.test", "/", 502)]:
            status, _, _ = self.request("GET", path, host=host, timeout=20)
            self.assertEqual(status, expected, host + path)
        # still routed to (not considered dead): a second request reaches the backend again
        before = len(echo.requests)
        status, _, _ = self.request("GET", "/?status=502", host="status.test")
        self.assertEqual(status, 502)
        self.assertEqual(len(echo.requests), before + 1)
        self.sync_marks()
        for host in ["refused.test", "status.test", "slow.test", "garbage.test", "reset.test"]:
            self.assertEqual(self.published(host), [], host)
        self.assertEqual(sorted(self.redis.keys("dead:*")),
                         sorted(self.redis.keys("dead:*.sentinel.test")))


# --------------------------------------------------------------------------- hchecker_ping

class HcheckerPing(HealthTestCase):
    def start_with_ping(self, stamp, **server):
        self.redis.set("hchecker_ping", str(int(stamp)))
        self.start(**server)
        time.sleep(1.0)  # the proxy reads hchecker_ping at start, then every 5 s

    def test_fresh_ping_disables_sadd_but_still_publishes(self):
        self.start_with_ping(time.time())
        good = self.http_backend("good")
        backends = [self.refused_url(), good.url]
        self.frontend("rule.test", *backends)
        self.hit_until_published("rule.test", "rule.test")
        self.sync_marks()
        self.assertEqual(self.published("rule.test")[0], "rule.test;%s;0;2" % backends[0])
        self.assertEqual(self.redis.exists("dead:rule.test"), 0)
        self.assertEqual(self.redis.keys("dead:*"), [])  # not even for the sentinel

    def test_fresh_ping_5xx_response_still_published(self):
        # 501-599 is a dead rule whatever the checker does; only SADD/EXPIRE pause (SPEC 6).
        self.start_with_ping(time.time())
        a, b = self.http_backend("a"), self.http_backend("b")
        backends = [a.url, b.url]
        self.frontend("status.test", *backends)
        status, _, body = self.request("GET", "/?status=502", host="status.test")
        self.assertEqual(status, 502)
        index = ["a", "b"].index(json.loads(body)["backend"])
        self.sync_marks()
        self.assertEqual(self.published("status.test"),
                         ["status.test;%s;%d;2" % (backends[index], index)])
        self.assertEqual(self.redis.exists("dead:status.test"), 0)

    def test_fresh_ping_500_not_marked(self):
        # 500 counts only while passive checks are on.
        self.start_with_ping(time.time())
        a, b = self.http_backend("a"), self.http_backend("b")
        self.frontend("status.test", a.url, b.url)
        for _ in range(3):
            status, _, _ = self.request("GET", "/?status=500", host="status.test")
            self.assertEqual(status, 500)
        self.assert_not_marked("status.test")

    def test_stale_ping_keeps_passive_checks_on(self):
        self.start_with_ping(time.time() - 120)
        good = self.http_backend("good")
        backends = [self.refused_url(), good.url]
        self.frontend("rule.test", *backends)
        self.hit_until_published("rule.test", "rule.test")
        self.assert_marked("rule.test", backends, 0)


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
