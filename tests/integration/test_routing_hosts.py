"""Routing integration tests: SPEC section 4 (routing a request) and the dead-mark half of
section 6, against a real redis-server, real backends and the real binary: __ping__, Host
normalisation, the candidate keys (exact, wildcards, catch-all), the dead set and errors, and the
random pick among live backends.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_routing_hosts
"""
import json
import re
import time
import unittest

from routing_helpers import REQUEST_TIMEOUT, RoutingTestCase


def status_of(raw):
    """The status code of a raw HTTP response (bytes), or None."""
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw)
    return int(m.group(1)) if m else None


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


if __name__ == "__main__":
    unittest.main()
