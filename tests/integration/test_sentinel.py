"""Redis Sentinel (redis-sentinel:// driver URLs) on loopback with real servers: a master, a
replica and three redis-sentinel processes (down-after 1 s). The proxy finds the master through
the sentinels, keeps serving the routes it knows while the master is SIGKILLed and the sentinels
fail over, then reads, marks dead backends and gets invalidations on the promoted master. A
manual failover (the old master demoted, not dead) is followed through +switch-master.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_sentinel
"""
import socket
import unittest

import harness
from harness import wait_until
from redis_nodes import MASTER_NAME, SentinelSetup, wait_role


class SentinelTestCase(harness.ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.cluster = SentinelSetup()
        self._stoppers.append(self.cluster.stop)
        self._held_sockets = []
        self.backend = self.http_backend("first")

    def tearDown(self):
        for s in self._held_sockets:
            s.close()
        super().tearDown()

    def start(self):
        config = self.config(deadBackendTTL=30)
        config["driver"] = self.cluster.driver_url()
        return self.start_proxy(config)

    def refused_url(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self._held_sockets.append(s)
        return "http://127.0.0.1:%d" % s.getsockname()[1]

    def status(self, host):
        return self.request("GET", "/", host=host)[0]

    def routes_to(self, host, backend_name):
        """The request for `host` reached the backend called `backend_name`."""
        status, _, body = self.request("GET", "/", host=host)
        return status == 200 and backend_name.encode() in body

    def assert_live_on(self, node):
        """Writes on `node` route at once: a new frontend, a changed one (the invalidation)."""
        second = self.http_backend("second")
        node.client.rpush("frontend:new.test", "new", second.url)
        self.assertTrue(wait_until(lambda: self.routes_to("new.test", "second"), 10),
                        self.proxy.log())
        node.client.call("DEL", "frontend:known.test")
        node.client.rpush("frontend:known.test", "known", second.url)
        self.assertTrue(wait_until(lambda: self.routes_to("known.test", "second"), 10),
                        self.proxy.log())

    def assert_dead_mark_on(self, node):
        """A refused backend's dead mark lands in `node`'s dead set."""
        good = self.http_backend("good")
        node.client.rpush("frontend:mark.test", "mark", self.refused_url(), good.url)

        def marked():
            self.request("GET", "/", host="mark.test")
            return node.client.smembers("dead:mark.test") == ["0"]
        self.assertTrue(wait_until(marked, 15, 0.2), self.proxy.log())


class FindsTheMaster(SentinelTestCase):
    def test_routes_read_through_the_sentinels(self):
        self.cluster.master.client.rpush("frontend:known.test", "known", self.backend.url)
        self.start()
        self.assertTrue(wait_until(lambda: self.routes_to("known.test", "first"), 10, 0.2),
                        self.proxy.log())
        self.assert_live_on(self.cluster.master)
        self.assert_dead_mark_on(self.cluster.master)
        self.assertIn("route cache: live", self.proxy.log())

    def test_unknown_master_name_is_an_outage_not_a_crash(self):
        config = self.config()
        hosts = ",".join("127.0.0.1:%d" % s.port for s in self.cluster.sentinels)
        config["driver"] = "redis-sentinel://%s/nosuchmaster" % hosts
        self.start_proxy(config)
        self.assertEqual(self.status("known.test"), 503)
        self.assertTrue(wait_until(lambda: 'no sentinel named master "nosuchmaster"'
                                   in self.proxy.log(), 5), self.proxy.log())
        self.assertIsNone(self.proxy.process.poll())


class FollowsFailovers(SentinelTestCase):
    def test_master_killed_known_routes_keep_serving_then_the_promoted_master_is_used(self):
        cluster = self.cluster
        cluster.master.client.rpush("frontend:known.test", "known", self.backend.url)
        self.start()
        self.assertTrue(wait_until(lambda: self.routes_to("known.test", "first"), 10, 0.2),
                        self.proxy.log())

        cluster.master.kill()
        # Until the sentinels have promoted the replica, the route known before is served.
        statuses = set()

        def promoted():
            statuses.add(self.status("known.test"))
            return cluster.wait_for_master(cluster.replica.port, timeout=0)
        self.assertTrue(wait_until(promoted, 40, 0.1), "no failover")
        self.assertEqual(statuses, {200}, self.proxy.log())
        self.assertTrue(wait_role(cluster.replica, "master"))
        cluster.replica.reconnect()

        self.assert_live_on(cluster.replica)
        self.assert_dead_mark_on(cluster.replica)
        log = self.proxy.log()
        self.assertIn('master "%s"' % MASTER_NAME, log)
        self.assertGreaterEqual(log.count("route cache: live"), 2, log)
        self.assertIsNone(self.proxy.process.poll())

    def test_manual_failover_moves_reads_and_marks_to_the_new_master(self):
        cluster = self.cluster
        cluster.master.client.rpush("frontend:known.test", "known", self.backend.url)
        self.start()
        self.assertTrue(wait_until(lambda: self.routes_to("known.test", "first"), 10, 0.2),
                        self.proxy.log())

        # The old master stays up, demoted to a replica: only the sentinels say where to go.
        cluster.sentinels[0].client.call("SENTINEL", "FAILOVER", MASTER_NAME)
        self.assertTrue(cluster.wait_for_master(cluster.replica.port), "no failover")
        self.assertTrue(wait_role(cluster.master, "slave"))
        cluster.replica.reconnect()
        self.assertTrue(wait_until(lambda: "the sentinels switched the master" in self.proxy.log()
                                   or "a sentinel names another master" in self.proxy.log(), 10),
                        self.proxy.log())
        self.assert_live_on(cluster.replica)
        self.assert_dead_mark_on(cluster.replica)


if __name__ == "__main__":
    unittest.main()
