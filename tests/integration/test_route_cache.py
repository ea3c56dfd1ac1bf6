"""The live route cache: Redis is asked once per host while its invalidation link is up, and
every write still changes the very next request (Redis client-side caching, BCAST mode)."""
import json
import threading
import time

import harness


def lrange_calls(redis):
    stats = redis.call("INFO", "commandstats")
    for line in stats.splitlines():
        if line.startswith("cmdstat_lrange:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


class RouteCacheTest(harness.ProxyTestCase):
    def backend_of(self, host):
        status, _, body = self.request("GET", "/", host=host)
        return status, (json.loads(body)["backend"] if status == 200 else None)

    def start_live(self, **server):
        self.start_proxy(**server)
        # The link is up once a write is seen by the next request; wait for "live" in the log.
        self.assertTrue(harness.wait_until(lambda: "route cache: live" in self.proxy.log(), 5),
                        self.proxy.log())

    def test_repeated_requests_read_redis_once(self):
        a = self.http_backend("a")
        self.redis.rpush("frontend:c.test", "c", a.url)
        self.start_live()
        self.assertEqual(self.backend_of("c.test"), (200, "a"))
        before = lrange_calls(self.redis)
        for _ in range(30):
            self.assertEqual(self.backend_of("c.test"), (200, "a"))
        self.assertEqual(lrange_calls(self.redis), before)

    def test_without_route_cache_every_request_reads_redis(self):
        a = self.http_backend("a")
        self.redis.rpush("frontend:c.test", "c", a.url)
        self.start_proxy(routeCache=False)
        self.assertEqual(self.backend_of("c.test"), (200, "a"))
        before = lrange_calls(self.redis)
        for _ in range(10):
            self.assertEqual(self.backend_of("c.test"), (200, "a"))
        # c.test has 3 candidates (itself, *.test, *): one LRANGE each per request.
        self.assertEqual(lrange_calls(self.redis) - before, 30)

    def test_every_kind_of_write_reaches_the_next_request(self):
        a, b = self.http_backend("a"), self.http_backend("b")
        self.redis.rpush("frontend:w.example.test", "w", a.url)
        self.start_live()
        self.assertEqual(self.backend_of("w.example.test"), (200, "a"))
        self.redis.lset("frontend:w.example.test", 1, b.url)           # replace
        self.assertEqual(self.backend_of("w.example.test"), (200, "b"))
        self.redis.rpush("frontend:w.example.test", a.url)              # add, then kill b
        self.redis.sadd("dead:w.example.test", 0)
        self.assertEqual({self.backend_of("w.example.test")[1] for _ in range(10)}, {"a"})
        self.redis.call("DEL", "dead:w.example.test")                        # revive
        self.assertEqual({self.backend_of("w.example.test")[1] for _ in range(30)}, {"a", "b"})
        self.redis.call("DEL", "frontend:w.example.test")                    # remove
        self.assertEqual(self.backend_of("w.example.test")[0], 400)
        self.redis.rpush("frontend:*.example.test", "wild", b.url)      # wildcard appears
        self.assertEqual(self.backend_of("w.example.test"), (200, "b"))
        self.assertEqual(self.backend_of("other.example.test"), (200, "b"))
        self.redis.rpush("frontend:other.example.test", "exact", a.url)  # exact beats it
        self.assertEqual(self.backend_of("other.example.test"), (200, "a"))
        self.redis.call("FLUSHALL")                                     # everything gone
        # Redis writes FLUSHALL's invalidation just after its reply (key writes: just before),
        # so a request sent the instant the reply arrives can overtake it; by the time Redis
        # answers the next command it has written it (docs/redis-schema.md).
        self.redis.call("PING")
        self.assertEqual(self.backend_of("other.example.test")[0], 400)
        self.assertEqual(self.backend_of("w.example.test")[0], 400)

    def test_dead_mark_expiry_brings_the_backend_back(self):
        a, b = self.http_backend("a"), self.http_backend("b")
        self.redis.rpush("frontend:e.test", "e", a.url, b.url)
        self.start_live()
        self.redis.sadd("dead:e.test", 0)
        self.redis.pexpire("dead:e.test", 300)
        self.assertEqual({self.backend_of("e.test")[1] for _ in range(10)}, {"b"})
        time.sleep(1.6)
        self.assertEqual({self.backend_of("e.test")[1] for _ in range(40)}, {"a", "b"})

    def test_unknown_hosts_are_cached_and_bounded_but_still_live(self):
        a = self.http_backend("a")
        self.start_live()
        self.assertEqual(self.backend_of("nope.test")[0], 400)
        before = lrange_calls(self.redis)
        for _ in range(10):
            self.assertEqual(self.backend_of("nope.test")[0], 400)
        self.assertEqual(lrange_calls(self.redis), before)
        self.redis.rpush("frontend:nope.test", "now", a.url)
        self.assertEqual(self.backend_of("nope.test"), (200, "a"))

    def test_link_loss_is_never_stale(self):
        a, b = self.http_backend("a"), self.http_backend("b")
        self.redis.rpush("frontend:k.test", "k", a.url)
        self.start_live()
        self.assertEqual(self.backend_of("k.test"), (200, "a"))
        # Cut the invalidation link, then change the route while it is down.
        self.redis.call("CLIENT", "KILL", "TYPE", "pubsub")
        self.redis.lset("frontend:k.test", 1, b.url)
        self.assertEqual(self.backend_of("k.test"), (200, "b"))
        # The link comes back by itself and caching resumes, still live.
        self.assertTrue(harness.wait_until(
            lambda: self.proxy.log().count("route cache: live") >= 2, 8), self.proxy.log())
        self.redis.lset("frontend:k.test", 1, a.url)
        self.assertEqual(self.backend_of("k.test"), (200, "a"))

    def test_concurrent_misses_share_one_read(self):
        slow = self.http_backend("slow")
        self.redis.rpush("frontend:burst.test", "b", slow.url)
        self.start_live()
        before = lrange_calls(self.redis)
        results = []

        def hit():
            results.append(self.backend_of("burst.test"))
        threads = [threading.Thread(target=hit) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual(results, [(200, "slow")] * 20)
        # 3 candidates per read; concurrent misses may coalesce into a single read, and at worst
        # a handful of reads happen before the first reply is cached.
        self.assertLessEqual(lrange_calls(self.redis) - before, 3 * 5)


if __name__ == "__main__":
    import unittest
    unittest.main()
