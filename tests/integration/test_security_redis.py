"""Hostile and broken surroundings (docs/security.md): a Redis that is down or hangs (quick 503s,
cached routes served, no log flood, one outage with back-off) and malformed routing data in it.

Run: cd tests/integration && HIPACHE_BINARY=/work/main/build/hipache \
         python3 -m unittest -v test_security_redis
"""
import contextlib
import json
import os
import re
import signal
import socket
import threading
import time
import unittest

import harness
from security_helpers import SecurityTestCase


def redis_error_lines(text):
    """Log lines about Redis at warning level or above ("... [pid] error: redis (read) ...")."""
    return [l for l in text.splitlines()
            if re.search(r"\] (error|warning|critical): ", l) and "redis" in l.lower()]


class HangingServer:
    """Accepts TCP connections and never answers (a hung "Redis")."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def stop(self):
        with contextlib.suppress(OSError):
            self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()


# --------------------------------------------------------------------------- Redis outages

class RedisOutage(SecurityTestCase):
    def test_hung_redis_gives_quick_503(self):
        hang = HangingServer()
        self._stoppers.append(hang.stop)
        config = self.config(redisTimeout=0.5, routeCache=False)
        config["driver"] = "redis://127.0.0.1:%d" % hang.port
        self.start_proxy(config)
        for _ in range(3):
            status, headers, _, elapsed = self.timed_get("a.test", headers={"X-Debug": "1"})
            self.assertEqual(status, 503)
            self.assertLess(elapsed, 1.5)
            self.assertEqual(headers.get("cache-control"), "no-cache")
        # Concurrent clients: every one is answered, none hangs.
        results = []

        def one():
            try:
                results.append(self.timed_get("h%d.test" % len(results), timeout=5))
            except Exception as e:  # noqa: BLE001 - recorded as a failure below
                results.append(e)
        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual(len(results), 10)
        for r in results:
            self.assertNotIsInstance(r, Exception)
            self.assertEqual(r[0], 503)
            self.assertLess(r[3], 2.0)

    def test_paused_redis_cached_host_served_uncached_gets_503_then_recovers(self):
        # Redis 7 refuses DEBUG unless told otherwise.
        self.respawn_redis(["--enable-debug-command", "local"])
        backend = self.http_backend("one")
        self.redis.rpush("frontend:cached.test", "cached", backend.url)
        self.redis.rpush("frontend:uncached.test", "uncached", backend.url)
        self.start_proxy(redisTimeout=0.5)
        self.assertTrue(harness.wait_until(lambda: "route cache: live" in self.proxy.log(), 5),
                        self.proxy.log())
        for _ in range(2):
            self.assertEqual(self.get("cached.test")[0], 200)

        sleeper = harness.RedisClient(self.redis_server.port)
        self.addCleanup(sleeper.close)
        thread = threading.Thread(target=lambda: sleeper.call("DEBUG", "SLEEP", "3"),
                                  daemon=True)
        started = time.time()
        thread.start()
        time.sleep(0.3)
        status, _, _, elapsed = self.timed_get("uncached.test", timeout=6)
        self.assertEqual(status, 503)
        self.assertLess(elapsed, 0.5 + 1.0)
        for _ in range(3):
            status, _, _, elapsed = self.timed_get("cached.test", timeout=6)
            self.assertEqual(status, 200)
            self.assertLess(elapsed, 0.5 + 1.0)
        self.assertLess(time.time() - started, 3.0, "the checks above must run during the pause")
        thread.join(10)
        # Recovery without a restart.
        self.assertTrue(harness.wait_until(lambda: self.get("uncached.test")[0] == 200, 8))
        self.assertEqual(self.get("cached.test")[0], 200)

    def test_redis_down_no_log_flood_and_recovery(self):
        backend = self.http_backend("one")
        self.redis.rpush("frontend:a.test", "a", backend.url)
        self.start_proxy(redisTimeout=0.5)
        harness.wait_until(lambda: "route cache: live" in self.proxy.log(), 5)
        self.assertEqual(self.get("a.test")[0], 200)
        before = len(self.proxy.log())

        self.kill_redis()
        statuses = {}
        deadline = time.time() + 3.0
        for i in range(100):
            host = "a.test" if i % 2 == 0 else "u%d.test" % i
            status, _, _, elapsed = self.timed_get(host, timeout=5)
            self.assertLess(elapsed, 1.5, "request %d took %.2fs" % (i, elapsed))
            statuses.setdefault(host == "a.test", set()).add(status)
            time.sleep(max(0.0, (deadline - time.time()) / (100 - i)))
        self.assertEqual(statuses[True], {200}, "a known route keeps serving during the outage")
        self.assertEqual(statuses[False], {503})
        lines = redis_error_lines(self.proxy.log()[before:])
        self.assertLess(len(lines), 10, "\n".join(lines))

        self.respawn_redis()
        self.redis.rpush("frontend:u1.test", "u1", backend.url)
        self.assertTrue(harness.wait_until(lambda: self.get("u1.test")[0] == 200, 10),
                        "no recovery after Redis came back")

    def hang_redis(self, seconds, requests):
        """SIGSTOPs Redis for `seconds` while making `requests` requests (half to a cached host,
        half to unknown ones); returns the proxy's log written meanwhile."""
        backend = self.http_backend("one")
        self.redis.rpush("frontend:a.test", "a", backend.url)
        self.redis.rpush("frontend:later.test", "later", backend.url)
        self.start_proxy(redisTimeout=0.5)
        harness.wait_until(lambda: "route cache: live" in self.proxy.log(), 5)
        self.assertEqual(self.get("a.test")[0], 200)
        before = len(self.proxy.log())
        pid = self.redis_server.process.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            deadline = time.time() + seconds
            for i in range(requests):
                host = "a.test" if i % 2 == 0 else "u%d.test" % i
                status, _, _, elapsed = self.timed_get(host, timeout=5)
                self.assertLess(elapsed, 1.5, "request %d took %.2fs" % (i, elapsed))
                self.assertEqual(status, 200 if host == "a.test" else 503, host)
                time.sleep(max(0.0, (deadline - time.time()) / (requests - i)))
            return self.proxy.log()[before:]
        finally:
            os.kill(pid, signal.SIGCONT)

    def test_redis_hang_no_log_flood_and_recovery(self):
        """SIGSTOP: the kernel still accepts connections, Redis never answers."""
        log = self.hang_redis(3.0, 100)
        lines = redis_error_lines(log)
        self.assertLess(len(lines), 10, "\n".join(lines))
        self.assertTrue(harness.wait_until(lambda: self.get("later.test")[0] == 200, 10),
                        "no recovery after Redis came back")

    def test_redis_hang_is_one_outage_with_back_off(self):
        """A hung Redis accepts TCP connections: that is not a recovery. The outage is logged
        once (redis_connection.cpp: "Logged once per outage, not per attempt") and reconnection
        backs off instead of restarting at 100 ms after every accepted connect."""
        log = self.hang_redis(4.0, 40)
        errors = redis_error_lines(log)
        reconnected = [l for l in log.splitlines() if "reconnected" in l]
        self.assertLessEqual(len(errors), 2, "\n".join(errors))
        self.assertEqual(reconnected, [], "a connect to a Redis that never answers was logged "
                                          "as a reconnection:\n" + "\n".join(reconnected))


# --------------------------------------------------------------------------- malformed data

class MalformedRoutingData(SecurityTestCase):
    def setUp(self):
        super().setUp()
        self.backend = self.http_backend("good")
        self.redis.rpush("frontend:good.test", "good", self.backend.url)

    def error_log_count(self, host):
        return self.proxy.log().count("redis error reading the route of %s" % host)

    def test_frontend_of_wrong_type(self):
        self.redis.set("frontend:bad.test", "str")
        self.start_proxy()
        for _ in range(20):
            self.assertEqual(self.get("bad.test")[0], 503)
            self.assertEqual(self.get("good.test")[0], 200)
        self.assertTrue(harness.wait_until(lambda: self.error_log_count("bad.test") >= 1, 2))
        self.assertLessEqual(self.error_log_count("bad.test"), 2, self.proxy.log())

    def test_wrong_typed_wildcard_does_not_break_a_host_with_its_own_list(self):
        """A malformed key is an error for the hosts it would route, not for a host whose own
        exact list wins before the wildcard is consulted (SPEC 4.3: first non-empty list)."""
        self.redis.set("frontend:*.w.test", "str")
        self.redis.rpush("frontend:exact.w.test", "exact", self.backend.url)
        self.start_proxy()
        self.assertEqual(self.get("other.w.test")[0], 503)
        self.assertEqual(self.get("exact.w.test")[0], 200)

    def test_missing_list_falls_through_to_wildcard(self):
        self.redis.rpush("frontend:*.f.test", "wild", self.backend.url)
        self.start_proxy()
        status, _, body = self.get("x.f.test")
        self.assertEqual(status, 200)
        self.assertEqual(self.get("nothing.test")[0], 400)

    def test_identifier_only_list_is_502_for_that_host(self):
        self.redis.rpush("frontend:empty.test", "empty")
        self.start_proxy()
        self.assertEqual(self.get("empty.test")[0], 502)
        self.assertEqual(self.get("good.test")[0], 200)

    def test_garbage_backend_urls_are_502(self):
        garbage = ["not a url", "http://", "ftp://127.0.0.1:1", "http://127.0.0.1:99999",
                   "http://[::1", "http://127.0.0.1:abc", "\x00\xff"]
        for i, url in enumerate(garbage):
            self.redis.rpush("frontend:g%d.test" % i, "g%d" % i, url)
        self.start_proxy()
        for i, url in enumerate(garbage):
            with self.subTest(url=url):
                status, _, _ = self.get("g%d.test" % i)
                self.assertEqual(status, 502)
        self.assertEqual(self.get("good.test")[0], 200)

    def test_huge_list(self):
        self.redis.rpush("frontend:huge.test", "huge", *([self.backend.url] * 10000))
        self.start_proxy()
        t0 = time.time()
        for _ in range(5):
            self.assertEqual(self.get("huge.test")[0], 200)
        self.assertLess(time.time() - t0, 5)
        self.assertEqual(self.get("good.test")[0], 200)

    def test_garbage_dead_members_are_ignored(self):
        other = self.http_backend("other")
        self.redis.rpush("frontend:d.test", "d", self.backend.url, other.url)
        self.redis.sadd("dead:d.test", "abc", "-1", "2", "99", "18446744073709551617", "NaN",
                        "0x1", "")
        self.start_proxy()
        seen = set()
        for _ in range(30):
            status, _, body = self.get("d.test")
            self.assertEqual(status, 200)
            seen.add(json.loads(body)["backend"])
        self.assertEqual(seen, {"good", "other"})

    def test_dead_key_of_wrong_type(self):
        self.redis.rpush("frontend:dk.test", "dk", self.backend.url)
        self.redis.set("dead:dk.test", "1")
        self.start_proxy()
        for _ in range(10):
            self.assertEqual(self.get("dk.test")[0], 503)
            self.assertEqual(self.get("good.test")[0], 200)
        self.assertTrue(harness.wait_until(lambda: self.error_log_count("dk.test") >= 1, 2))
        self.assertLessEqual(self.error_log_count("dk.test"), 2)


if __name__ == "__main__":
    unittest.main()
