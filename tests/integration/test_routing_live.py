"""Routing integration tests: SPEC section 3 (Redis data) under a running proxy: writes
take effect on the next request, and a Redis outage (cached routes served, 503 at once without
the route cache, Redis down at start) ends without a restart of the proxy.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_routing_live
"""
import contextlib
import http.client
import json
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from routing_helpers import REQUEST_TIMEOUT, RoutingTestCase


# --------------------------------------------------------------------------- local helpers

class RedisServerOnPort(harness.RedisServer):
    """A redis-server on a given port (to replace one that was stopped, same address)."""

    def __init__(self, port, password=None):  # pylint: disable=super-init-not-called
        self.port = port
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="hipache-redis-")
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir]
        if password:
            args += ["--requirepass", password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        harness.wait_for_port(self.port, process=self.process)
        self.client = harness.RedisClient(self.port, password)


# --------------------------------------------------------------------------- liveness

class LiveChangesTest(RoutingTestCase):
    """Every Redis write affects the very next request (SPEC 3, 'Everything is live')."""

    def _loop(self, host, stop, records):
        conn = None
        for _ in range(3000):  # bounded
            if stop.is_set():
                break
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port,
                                                  timeout=REQUEST_TIMEOUT)
            started = time.monotonic()
            try:
                conn.request("GET", "/loop", headers={"Host": host})
                response = conn.getresponse()
                body = response.read()
                name = None
                if response.status == 200:
                    name = json.loads(body)["backend"]
                records.append((started, response.status, name))
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                records.append((started, "error: %r" % e, None))
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def test_writes_affect_the_next_request(self):
        a, b, c = (self.http_backend(n) for n in ("a", "b", "c"))
        key = "frontend:live.test"
        self.redis.rpush(key, "live", a.url)
        self.start_proxy()
        self.assertEqual(self.served_by("live.test", 3), ["a"] * 3)

        records = []
        stop = threading.Event()
        loop = threading.Thread(target=self._loop, args=("live.test", stop, records),
                                daemon=True)
        loop.start()
        self.addCleanup(loop.join, 10)
        self.addCleanup(stop.set)

        def after(t):
            return [r for r in records if r[0] > t]

        def phase(write, expected_statuses, expected_names, must_see=None):
            write()
            written = time.monotonic()
            # The very next request, on a fresh connection.
            status, name, _ = self.fetch("live.test")
            self.assertIn(status, expected_statuses)
            if status == 200:
                self.assertIn(name, expected_names)
            seen = {name}
            for _ in range(40):
                if must_see is None or must_see in seen:
                    break
                status, name, _ = self.fetch("live.test")
                self.assertIn(status, expected_statuses)
                if status == 200:
                    self.assertIn(name, expected_names)
                seen.add(name)
            if must_see is not None:
                self.assertIn(must_see, seen)
            # The concurrent keep-alive loop saw the change on every request sent after it.
            self.assertTrue(harness.wait_until(lambda: len(after(written)) >= 5, timeout=5),
                            "the request loop stalled: %r" % records[-3:])
            for started, st, nm in after(written):
                self.assertIn(st, expected_statuses, (started - written, st, nm))
                if st == 200:
                    self.assertIn(nm, expected_names, (started - written, st, nm))

        # Replace the backend.
        phase(lambda: self.redis.lset(key, 1, b.url), {200}, {"b"})
        # Add one: both serve.
        phase(lambda: self.redis.rpush(key, c.url), {200}, {"b", "c"}, must_see="c")
        # Remove one.
        phase(lambda: self.redis.lrem(key, 0, b.url), {200}, {"c"})
        # Add back b and mark c (index 0) dead, then revive it.
        phase(lambda: (self.redis.rpush(key, b.url), self.redis.sadd("dead:live.test", 0)),
              {200}, {"b"})
        phase(lambda: self.redis.call("DEL", "dead:live.test"), {200}, {"b", "c"}, must_see="c")
        # Delete the frontend: 400 at once.
        phase(lambda: self.redis.call("DEL", key), {400}, set())
        # And back.
        phase(lambda: self.redis.rpush(key, "live", a.url), {200}, {"a"})
        stop.set()
        loop.join(10)
        errors = [r for r in records if not isinstance(r[1], int)]
        self.assertEqual(errors, [])


# --------------------------------------------------------------------------- Redis outage

class RedisOutageTest(RoutingTestCase):
    def test_outage_serves_cached_routes_and_recovery_needs_no_restart(self):
        backend = self.http_backend("up")
        self.redis.rpush("frontend:o.test", "o", backend.url)
        self.start_proxy()
        self.assertEqual(self.served_by("o.test", 3), ["up"] * 3)

        port = self.redis_server.port
        self.redis_server.stop()
        # The live route cache keeps serving the routes it holds (ARCHITECTURE.md).
        for _ in range(5):
            started = time.monotonic()
            status, name, _ = self.fetch("o.test")
            self.assertEqual((status, name), (200, "up"))
            self.assertLess(time.monotonic() - started, 2.5)
        # Hosts that need Redis get a quick 503, never "not found" while the store is down.
        self.assert_status("never-configured.test", 503)
        # Ping keeps answering.
        status, _, body = self.request("GET", "/", host="__ping__", timeout=REQUEST_TIMEOUT)
        self.assertEqual((status, body), (200, b"ok"))

        # A new, empty redis-server on the same port; the route now names another backend, so
        # answers from it (not from the cache) prove the reconnection.
        fresh = self.http_backend("fresh")
        self.redis_server = RedisServerOnPort(port)
        self.redis = self.redis_server.client
        self.redis.rpush("frontend:o.test", "o", fresh.url)

        def recovered():
            status, name, _ = self.fetch("o.test")
            return status == 200 and name == "fresh"
        self.assertTrue(harness.wait_until(recovered, timeout=12, interval=0.1),
                        "proxy did not reconnect to the restarted redis-server")
        self.assertEqual(self.served_by("o.test", 5), ["fresh"] * 5)
        # And it reads the new server's data live.
        self.redis.call("DEL", "frontend:o.test")
        self.assert_status("o.test", 400)

    def test_outage_gives_503_quickly_without_route_cache(self):
        backend = self.http_backend("up")
        self.redis.rpush("frontend:o.test", "o", backend.url)
        self.start_proxy(routeCache=False)
        self.assertEqual(self.served_by("o.test", 3), ["up"] * 3)
        self.redis_server.stop()
        for _ in range(5):
            started = time.monotonic()
            status, _, headers = self.fetch("o.test")
            elapsed = time.monotonic() - started
            self.assertEqual(status, 503)
            self.assertEqual(headers.get("content-type"), "text/html")
            self.assertLess(elapsed, 2.5)

    def test_redis_down_at_start_then_up(self):
        port = self.redis_server.port
        backend = self.http_backend("late")
        self.redis_server.stop()
        self.start_proxy()
        started = time.monotonic()
        self.assert_status("late.test", 503)
        self.assertLess(time.monotonic() - started, 2.5)
        self.redis_server = RedisServerOnPort(port)
        self.redis = self.redis_server.client
        self.redis.rpush("frontend:late.test", "late", backend.url)
        self.assertTrue(harness.wait_until(lambda: self.fetch("late.test")[:2] == (200, "late"),
                                           timeout=12, interval=0.1))


if __name__ == "__main__":
    unittest.main()
