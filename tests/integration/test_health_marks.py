"""Passive health checks (SPEC section 6), on the real binary with a real Redis: what marks a
backend dead (refused, reset, garbage, timeouts, 5xx answers, deadBackendOn500), the exact host
marked for a wildcard frontend, the key prefix, a lone backend never marked, and a fresh
hchecker_ping turning the proxy's own SADDs off (its PUBLISH stays). How a test asserts that
nothing was marked: health_helpers.py.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_health_marks
"""
import json
import time
import unittest

from harness import silent
from health_helpers import HealthTestCase, garbage, reset_after_head


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


if __name__ == "__main__":
    unittest.main()
