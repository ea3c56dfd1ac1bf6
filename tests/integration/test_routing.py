"""Routing integration tests: SPEC sections 3 (Redis data), 4 (routing a request) and the dead-mark
half of section 6, against a real redis-server, real backends and the real binary.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_routing
"""
import contextlib
import http.client
import json
import re
import subprocess
import tempfile
import threading
import time
import unittest

import harness

REQUEST_TIMEOUT = 5


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


def status_of(raw):
    """The status code of a raw HTTP response (bytes), or None."""
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw)
    return int(m.group(1)) if m else None


class RoutingTestCase(harness.ProxyTestCase):
    """Common helpers: which backend served a request."""

    def fetch(self, host, path="/", headers=None):
        """(status, backend name or None, headers) for one request on a fresh connection."""
        status, hdrs, body = self.request("GET", path, host=host, headers=headers,
                                          timeout=REQUEST_TIMEOUT)
        name = None
        if status == 200 and hdrs.get("content-type") == "application/json":
            name = json.loads(body)["backend"]
        return status, name, hdrs

    def served_by(self, host, count):
        """Backend names for `count` requests; fails on any non-200."""
        names = []
        for _ in range(count):
            status, name, _ = self.fetch(host)
            self.assertEqual(status, 200, "request for %s" % host)
            names.append(name)
        return names

    def assert_status(self, host, expected, msg=None):
        status, _, _ = self.fetch(host)
        self.assertEqual(status, expected, msg or "Host: %s" % host)

    def second_redis(self, password=None):
        server = harness.RedisServer(password)
        self._stoppers.append(server.stop)
        return server

    def subscribe(self, server, channel):
        sub = server.subscribe(channel)
        self._stoppers.append(sub.close)
        return sub


# --------------------------------------------------------------------------- __ping__

class PingTest(RoutingTestCase):
    def test_ping_answers_without_redis_and_is_not_logged(self):
        self.redis_server.stop()  # no Redis at all, from the start
        self.start_proxy()
        for host in ("__ping__",):
            status, headers, body = self.request("GET", "/", host=host, timeout=REQUEST_TIMEOUT)
            self.assertEqual(status, 200)
            self.assertEqual(headers.get("content-type", "").split(";")[0].strip(), "text/plain")
            self.assertEqual(body, b"ok")
        # HTTP/1.0 form too.
        raw = self.raw_exchange(b"GET /health HTTP/1.0\r\nHost: __ping__\r\n\r\n")
        self.assertEqual(status_of(raw), 200, raw)
        self.assertTrue(raw.endswith(b"\r\n\r\nok"), raw)
        # A routed request does need Redis (it is really down) and is logged.
        status, _, _ = self.request("GET", "/marker", host="needs-redis.test",
                                    timeout=REQUEST_TIMEOUT)
        self.assertNotEqual(status, 200)
        lines = self.access_log_lines(expected=1)
        time.sleep(0.3)  # two flush periods: a ping line would have been written by now
        lines = self.access_log_lines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("/marker", lines[0])
        self.assertNotIn("__ping__", "\n".join(lines))
        self.assertNotIn("/health", "\n".join(lines))


# --------------------------------------------------------------------------- host normalisation

class HostNormalisationTest(RoutingTestCase):
    def setUp(self):
        super().setUp()
        self.backend = self.http_backend("norm")
        self.start_proxy()

    def test_port_is_dropped(self):
        self.redis.rpush("frontend:example.test", "ex", self.backend.url)
        for host in ("example.test", "example.test:8080", "example.test:80"):
            status, name, _ = self.fetch(host)
            self.assertEqual((status, name), (200, "norm"), host)
        # The Host header is forwarded unchanged.
        status, _, body = self.request("GET", "/", host="example.test:8080")
        self.assertEqual(json.loads(body)["headers"].get("Host"), "example.test:8080")

    def test_ipv6_literal_port_is_dropped(self):
        self.redis.rpush("frontend:[::1]", "v6", self.backend.url)
        for host in ("[::1]:8080", "[::1]"):
            status, name, _ = self.fetch(host)
            self.assertEqual((status, name), (200, "norm"), host)

    def test_case_insensitive(self):
        self.redis.rpush("frontend:mixed.example.test", "mixed", self.backend.url)
        for host in ("MIXED.Example.TEST", "Mixed.example.test:8080"):
            status, name, _ = self.fetch(host)
            self.assertEqual((status, name), (200, "norm"), host)

    def test_one_trailing_dot_dropped(self):
        self.redis.rpush("frontend:dot.example.test", "dot", self.backend.url)
        for host in ("dot.example.test.", "DOT.example.test.:8080"):
            status, name, _ = self.fetch(host)
            self.assertEqual((status, name), (200, "norm"), host)
        # Only one dot is dropped.
        self.assert_status("dot.example.test..", 400)


# --------------------------------------------------------------------------- candidates

class CandidatesTest(RoutingTestCase):
    # Backends are started on first use: each one takes ~0.5 s to shut down.
    exact = property(lambda self: self._backend("exact"))
    wild = property(lambda self: self._backend("wild"))
    other = property(lambda self: self._backend("other"))
    catch_all = property(lambda self: self._backend("catch-all"))

    def _backend(self, name):
        if name not in self._backends:
            self._backends[name] = self.http_backend(name)
        return self._backends[name]

    def setUp(self):
        super().setUp()
        self._backends = {}
        self.start_proxy()

    def test_exact_beats_wildcard_and_wildcard_beats_catch_all(self):
        self.redis.rpush("frontend:www.example.test", "exact", self.exact.url)
        self.redis.rpush("frontend:*.example.test", "wild", self.wild.url)
        self.redis.rpush("frontend:*", "all", self.catch_all.url)
        self.assertEqual(self.served_by("www.example.test", 5), ["exact"] * 5)
        self.assertEqual(self.served_by("foo.example.test", 5), ["wild"] * 5)
        self.assertEqual(self.served_by("deep.foo.example.test", 3), ["wild"] * 3)
        self.assertEqual(self.served_by("nowhere.test", 3), ["catch-all"] * 3)

    def test_longest_wildcard_wins(self):
        self.redis.rpush("frontend:*.f.g", "fg", self.other.url)
        self.redis.rpush("frontend:*.e.f.g", "efg", self.wild.url)
        self.assertEqual(self.served_by("x.e.f.g", 3), ["wild"] * 3)
        self.assertEqual(self.served_by("x.y.f.g", 3), ["other"] * 3)

    def test_wildcard_of_five_labels_matches(self):
        self.redis.rpush("frontend:*.c.d.e.f.g", "five", self.wild.url)
        for host in ("b.c.d.e.f.g", "a.b.c.d.e.f.g", "z.a.b.c.d.e.f.g"):
            self.assertEqual(self.served_by(host, 1), ["wild"], host)

    def test_wildcard_of_six_labels_never_matches(self):
        self.redis.rpush("frontend:*.b.c.d.e.f.g", "six", self.wild.url)
        self.assert_status("a.b.c.d.e.f.g", 400)
        self.assert_status("z.a.b.c.d.e.f.g", 400)
        # With a catch-all, the six-label wildcard is skipped and `*` answers.
        self.redis.rpush("frontend:*", "all", self.catch_all.url)
        self.assertEqual(self.served_by("a.b.c.d.e.f.g", 3), ["catch-all"] * 3)

    def test_catch_all(self):
        self.redis.rpush("frontend:*", "all", self.catch_all.url)
        for host in ("localhost", "a.test", "a.b.c.d.e.f.g.h.i", "[::1]:81"):
            self.assertEqual(self.served_by(host, 1), ["catch-all"], host)

    def test_suffix_equal_to_whole_host_is_not_a_wildcard(self):
        self.redis.rpush("frontend:*.example.test", "wild", self.wild.url)
        self.redis.rpush("frontend:*.test", "tld", self.other.url)
        # example.test must not match *.example.test; *.test does.
        self.assertEqual(self.served_by("example.test", 3), ["other"] * 3)
        # "test" (one label) must not match *.test.
        self.assert_status("test", 400)
        self.redis.rpush("frontend:*", "all", self.catch_all.url)
        self.assertEqual(self.served_by("test", 2), ["catch-all"] * 2)
        # Five labels: *.c.d.e.f.g would be the whole host.
        self.redis.rpush("frontend:*.c.d.e.f.g", "five", self.wild.url)
        self.assertEqual(self.served_by("c.d.e.f.g", 2), ["catch-all"] * 2)

    def test_empty_exact_list_falls_through(self):
        key = "frontend:empty.example.test"
        self.redis.rpush(key, "exact", self.exact.url)
        self.redis.rpush("frontend:*.example.test", "wild", self.wild.url)
        self.assertEqual(self.served_by("empty.example.test", 2), ["exact"] * 2)
        # Emptied (Redis deletes an empty list): the wildcard answers.
        self.redis.lpop(key)
        self.redis.lpop(key)
        self.assertEqual(self.redis.llen(key), 0)
        self.assertEqual(self.served_by("empty.example.test", 3), ["wild"] * 3)
        # Likewise an emptied wildcard falls through to `*`.
        self.redis.rpush("frontend:*", "all", self.catch_all.url)
        self.redis.ltrim("frontend:*.example.test", 1, 0)
        self.assertEqual(self.served_by("empty.example.test", 3), ["catch-all"] * 3)

    def test_unknown_host_is_400(self):
        status, headers, _ = self.request("GET", "/", host="unknown.test",
                                          headers={"X-Debug": "1"})
        self.assertEqual(status, 400)
        self.assertEqual(headers.get("content-type"), "text/html")
        self.assertIn("x-debug-error", headers)
        # The identifier of an unmatched request is logged as "-".
        lines = self.access_log_lines(expected=1)
        self.assertEqual(len(lines), 1)
        self.assertRegex(lines[0], r'" 400 \d+ .*"-" [0-9.]+ [0-9.]+$')

    def test_missing_host_on_http10_is_400(self):
        raw = self.raw_exchange(b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(status_of(raw), 400, raw)
        raw = self.raw_exchange(b"GET / HTTP/1.0\r\nHost: \r\n\r\n")
        self.assertEqual(status_of(raw), 400, raw)
        # Not routed to a catch-all either.
        self.redis.rpush("frontend:*", "all", self.catch_all.url)
        raw = self.raw_exchange(b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(status_of(raw), 400, raw)
        self.assertEqual(self.catch_all.requests, [])


# --------------------------------------------------------------------------- dead set, errors

class DeadSetTest(RoutingTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.http_backend("a")
        self.b = self.http_backend("b")
        self.start_proxy()

    def test_indexes_are_zero_based_into_backends(self):
        self.redis.rpush("frontend:d.test", "ident", self.a.url, self.b.url)
        self.redis.sadd("dead:d.test", "0")
        self.assertEqual(set(self.served_by("d.test", 30)), {"b"})
        self.redis.srem("dead:d.test", "0")
        self.redis.sadd("dead:d.test", "1")
        self.assertEqual(set(self.served_by("d.test", 30)), {"a"})
        # Normalised host: the dead set of d.test applies to D.TEST.:81 too.
        self.assertEqual(set(self.served_by("D.Test.:81", 20)), {"a"})

    def test_dead_set_of_exact_host_applies_to_wildcard_match(self):
        self.redis.rpush("frontend:*.w.test", "wild", self.a.url, self.b.url)
        self.redis.sadd("dead:foo.w.test", "0")
        self.assertEqual(set(self.served_by("foo.w.test", 30)), {"b"})
        # Another host under the same wildcard has its own (empty) dead set.
        self.assertEqual(set(self.served_by("bar.w.test", 40)), {"a", "b"})
        # The wildcard key's own dead set is not the one read.
        self.redis.sadd("dead:*.w.test", "1")
        self.assertEqual(set(self.served_by("bar.w.test", 40)), {"a", "b"})

    def test_all_dead_is_502(self):
        self.redis.rpush("frontend:d.test", "ident", self.a.url, self.b.url)
        self.redis.sadd("dead:d.test", "0", "1")
        status, headers, _ = self.request("GET", "/", host="d.test")
        self.assertEqual(status, 502)
        self.assertEqual(headers.get("content-type"), "text/html")
        self.assertEqual(self.a.requests + self.b.requests, [])

    def test_out_of_range_and_garbage_dead_members_are_ignored(self):
        self.redis.rpush("frontend:d.test", "ident", self.a.url, self.b.url)
        self.redis.sadd("dead:d.test", "2", "-1", "x", "1")
        self.assertEqual(set(self.served_by("d.test", 20)), {"a"})

    def test_unparsable_backend_url_is_502(self):
        for i, bad in enumerate(("not a url", "ftp://127.0.0.1:21", "http://",
                                 "http://127.0.0.1:99999", "http://[::1")):
            host = "bad%d.test" % i
            self.redis.rpush("frontend:" + host, "bad", bad)
            status, _, _ = self.fetch(host)
            self.assertEqual(status, 502, bad)

    def test_identifier_is_not_a_backend(self):
        # Element 0 is the identifier even when it looks like a URL.
        self.redis.rpush("frontend:id.test", self.a.url, self.b.url)
        self.assertEqual(set(self.served_by("id.test", 20)), {"b"})


# --------------------------------------------------------------------------- random pick

class RandomPickTest(RoutingTestCase):
    def test_spread_over_three_backends(self):
        backends = [self.http_backend(n) for n in ("one", "two", "three")]
        self.redis.rpush("frontend:rr.test", "rr", *[b.url for b in backends])
        self.start_proxy()
        names = self.served_by("rr.test", 150)
        counts = {n: names.count(n) for n in ("one", "two", "three")}
        self.assertEqual(sum(counts.values()), 150, counts)
        for name, count in counts.items():
            # Expected 50 each; 20 is five standard deviations below.
            self.assertGreaterEqual(count, 20, counts)


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


# --------------------------------------------------------------------------- driver URL

def refused_pair_frontend(client, key_prefix, host):
    """A frontend with two refused backends: one request marks both dead (SPEC 6)."""
    urls = [harness.refused_url(), harness.refused_url()]
    client.rpush(key_prefix + "frontend:" + host, "pair", *urls)
    return urls


def expected_dead_messages(host, urls):
    return {"%s;%s;%d;%d" % (host, url, i, len(urls)) for i, url in enumerate(urls)}


class DriverPasswordTest(RoutingTestCase):
    redis_password = "s3cret"

    def test_password_in_driver_url(self):
        backend = self.http_backend("pw")
        self.redis.rpush("frontend:pw.test", "pw", backend.url)
        cfg = self.config()
        self.assertIn(":s3cret@", cfg["driver"])
        self.start_proxy(cfg)
        self.assertEqual(self.served_by("pw.test", 3), ["pw"] * 3)
        # Dead marks go through the authenticated connection too.
        urls = refused_pair_frontend(self.redis, "", "pair.test")
        self.assert_status("pair.test", 502)
        self.assertTrue(harness.wait_until(
            lambda: self.redis.smembers("dead:pair.test") and
            set(self.redis.smembers("dead:pair.test")) == {"0", "1"}), urls)

    def test_wrong_password_is_a_store_error_not_a_hang(self):
        backend = self.http_backend("pw")
        self.redis.rpush("frontend:pw.test", "pw", backend.url)
        cfg = self.config()
        cfg["driver"] = "redis://:wrong@127.0.0.1:%d" % self.redis_server.port
        self.start_proxy(cfg)
        for _ in range(3):
            started = time.monotonic()
            status, _, _ = self.fetch("pw.test")
            self.assertEqual(status, 503)
            self.assertLess(time.monotonic() - started, 3.0)
        self.assertEqual(backend.requests, [])

    def test_missing_password_is_a_store_error_not_frontend_not_found(self):
        # Redis answers every command with -NOAUTH: the proxy cannot know whether the frontend
        # exists, so this is a store failure (503), not "frontend not found" (400).
        backend = self.http_backend("pw")
        self.redis.rpush("frontend:pw.test", "pw", backend.url)
        cfg = self.config()
        cfg["driver"] = "redis://127.0.0.1:%d" % self.redis_server.port
        self.start_proxy(cfg)
        status, _, _ = self.fetch("pw.test")
        self.assertEqual(status, 503)


class DriverDatabaseTest(RoutingTestCase):
    def test_database_number(self):
        right = self.http_backend("db3")
        wrong = self.http_backend("db0")
        db3 = harness.RedisClient(self.redis_server.port, db=3)
        self.addCleanup(db3.close)
        db3.rpush("frontend:db.test", "db3", right.url)
        self.redis.rpush("frontend:db.test", "db0", wrong.url)  # decoy in db 0
        cfg = self.config()
        cfg["driver"] = self.redis_server.url(db=3)
        self.start_proxy(cfg)
        self.assertEqual(self.served_by("db.test", 5), ["db3"] * 5)
        # Dead sets are read from db 3 as well.
        db3.rpush("frontend:db.test", right.url)  # backends: [right, right]
        self.redis.sadd("dead:db.test", "0", "1")  # decoy: would make everything dead
        self.assertEqual(self.served_by("db.test", 3), ["db3"] * 3)
        db3.sadd("dead:db.test", "0", "1")
        self.assert_status("db.test", 502)
        # Dead marks are written to db 3.
        urls = refused_pair_frontend(db3, "", "pair.test")
        self.assert_status("pair.test", 502)
        self.assertTrue(harness.wait_until(
            lambda: set(db3.smembers("dead:pair.test") or []) == {"0", "1"}), urls)
        self.assertEqual(self.redis.exists("dead:pair.test"), 0)


class DriverPrefixTest(RoutingTestCase):
    def setUp(self):
        super().setUp()
        self.right = self.http_backend("prefixed")
        self.wrong = self.http_backend("unprefixed")

    def start(self):
        cfg = self.config()
        cfg["driver"] = self.redis_server.url(prefix="pfx")
        self.start_proxy(cfg)

    def test_frontend_and_dead_keys_are_prefixed(self):
        self.redis.rpush("pfxfrontend:p.test", "pfx", self.right.url)
        self.redis.rpush("frontend:p.test", "nopfx", self.wrong.url)  # decoy
        self.redis.rpush("pfxfrontend:*.w.test", "pfxwild", self.right.url)
        self.redis.rpush("frontend:*.w.test", "nopfx", self.wrong.url)  # decoy
        self.start()
        self.assertEqual(self.served_by("p.test", 3), ["prefixed"] * 3)
        self.assertEqual(self.served_by("x.w.test", 3), ["prefixed"] * 3)
        # Dead set read with the prefix.
        self.redis.rpush("pfxfrontend:p.test", self.wrong.url)
        self.redis.sadd("pfxdead:p.test", "1")
        self.redis.sadd("dead:p.test", "0")  # decoy
        self.assertEqual(set(self.served_by("p.test", 20)), {"prefixed"})

    def test_dead_marks_prefixed_key_unprefixed_channel(self):
        sub = self.subscribe(self.redis_server, "dead")
        prefixed_channel = self.subscribe(self.redis_server, "pfxdead")
        urls = refused_pair_frontend(self.redis, "pfx", "pair.test")
        self.start()
        self.assert_status("pair.test", 502)
        self.assertTrue(harness.wait_until(
            lambda: set(self.redis.smembers("pfxdead:pair.test") or []) == {"0", "1"}),
            self.redis.smembers("pfxdead:pair.test"))
        ttl = self.redis.ttl("pfxdead:pair.test")
        self.assertTrue(0 < ttl <= 30, ttl)
        self.assertEqual(self.redis.exists("dead:pair.test"), 0)
        self.assertTrue(harness.wait_until(lambda: len(sub.messages) >= 2), sub.messages)
        self.assertEqual(set(sub.messages), expected_dead_messages("pair.test", urls))
        self.assertEqual(prefixed_channel.messages, [])

    def test_hchecker_ping_is_unprefixed(self):
        # A fresh *unprefixed* hchecker_ping turns passive checks off: no SADD, PUBLISH still.
        sub = self.subscribe(self.redis_server, "dead")
        self.redis.set("hchecker_ping", str(int(time.time())))
        urls = refused_pair_frontend(self.redis, "pfx", "pair.test")
        self.start()
        self.assert_status("pair.test", 502)
        self.assertTrue(harness.wait_until(lambda: len(sub.messages) >= 2), sub.messages)
        self.assertEqual(set(sub.messages), expected_dead_messages("pair.test", urls))
        self.assertEqual(self.redis.exists("pfxdead:pair.test"), 0)
        self.assertEqual(self.redis.exists("dead:pair.test"), 0)

    def test_prefixed_hchecker_ping_is_ignored(self):
        self.redis.set("pfxhchecker_ping", str(int(time.time())))
        refused_pair_frontend(self.redis, "pfx", "pair.test")
        self.start()
        self.assert_status("pair.test", 502)
        self.assertTrue(harness.wait_until(
            lambda: set(self.redis.smembers("pfxdead:pair.test") or []) == {"0", "1"}),
            "passive checks were turned off by a prefixed hchecker_ping")


# --------------------------------------------------------------------------- replica + master

class ReplicaMasterTest(RoutingTestCase):
    def test_reads_from_first_writes_to_last(self):
        master = self.second_redis()
        replica = self.redis_server
        from_replica = self.http_backend("replica")
        from_master = self.http_backend("master")
        replica.client.rpush("frontend:rm.test", "replica", from_replica.url)
        master.client.rpush("frontend:rm.test", "master", from_master.url)
        master.client.rpush("frontend:only-master.test", "master", from_master.url)
        master_sub = self.subscribe(master, "dead")
        replica_sub = self.subscribe(replica, "dead")
        urls = refused_pair_frontend(replica.client, "", "pair.test")

        cfg = self.config()
        cfg["driver"] = [replica.url(), master.url()]
        self.start_proxy(cfg)
        self.assertEqual(self.served_by("rm.test", 5), ["replica"] * 5)
        self.assert_status("only-master.test", 400)
        self.assertEqual(from_master.requests, [])

        self.assert_status("pair.test", 502)
        self.assertTrue(harness.wait_until(
            lambda: set(master.client.smembers("dead:pair.test") or []) == {"0", "1"}),
            master.client.smembers("dead:pair.test"))
        self.assertTrue(0 < master.client.ttl("dead:pair.test") <= 30)
        self.assertEqual(replica.client.exists("dead:pair.test"), 0)
        self.assertTrue(harness.wait_until(lambda: len(master_sub.messages) >= 2),
                        master_sub.messages)
        self.assertEqual(set(master_sub.messages), expected_dead_messages("pair.test", urls))
        self.assertEqual(replica_sub.messages, [])

    def test_dead_set_is_read_from_first(self):
        master = self.second_redis()
        a, b = self.http_backend("a"), self.http_backend("b")
        self.redis.rpush("frontend:d.test", "d", a.url, b.url)
        master.client.sadd("dead:d.test", "0")  # not read: writes only go there
        cfg = self.config()
        cfg["driver"] = [self.redis_server.url(), master.url()]
        self.start_proxy(cfg)
        self.assertEqual(set(self.served_by("d.test", 40)), {"a", "b"})
        self.redis.sadd("dead:d.test", "0")
        self.assertEqual(set(self.served_by("d.test", 20)), {"b"})


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
