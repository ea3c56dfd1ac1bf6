"""Routing integration tests: the driver URL (SPEC section 3): password, database and key
prefix, and two URLs: reads from the first, writes (dead marks) to the last.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_routing_driver
"""
import time
import unittest

import harness
from routing_helpers import RoutingTestCase


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


if __name__ == "__main__":
    unittest.main()
