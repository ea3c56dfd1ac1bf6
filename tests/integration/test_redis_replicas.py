"""Reads from replicas ([replica, master] driver arrays) with real servers on loopback: two
proxies, each reading its own replica of one master, both route a master write within a bounded
wait (the invalidation reaches them through their replica); a replica whose link to its master
goes down is logged once as an outage, known routes keep being served, and when the link is back
what was written meanwhile routes.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_redis_replicas
"""
import shutil
import tempfile
import unittest

import harness
from harness import Proxy, free_port, wait_until
from redis_nodes import RedisNode, link_status, replica_of

LINK_DOWN = "the replica's link to its master is down"
LINK_UP = "the replica's link to its master is up again"


class ReplicaTestCase(harness.ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.master = RedisNode()
        self._stoppers.append(self.master.stop)
        self.backend = self.http_backend("first")

    def replica(self):
        node = replica_of(self.master)
        self._stoppers.append(node.stop)
        return node

    def proxy_reading(self, replica, workdir=None):
        """A proxy reading `replica` and writing dead marks to the master."""
        config = self.config()
        config["driver"] = [replica.url(), self.master.url()]
        if workdir is None:
            return self.start_proxy(config)
        proxy = Proxy(config, workdir)
        self._stoppers.append(proxy.stop)
        return proxy

    def routes_to(self, proxy, host, name):
        self.proxy, saved = proxy, self.proxy
        try:
            status, _, body = self.request("GET", "/", host=host)
        finally:
            self.proxy = saved
        return status == 200 and name.encode() in body


class TwoProxiesTwoReplicas(ReplicaTestCase):
    def test_a_master_write_routes_on_both(self):
        first, second = self.replica(), self.replica()
        other_dir = tempfile.mkdtemp(prefix="hipache-test-")
        self._stoppers.append(lambda: shutil.rmtree(other_dir, ignore_errors=True))
        proxy_a = self.proxy_reading(first)
        proxy_b = self.proxy_reading(second, other_dir)
        for proxy in (proxy_a, proxy_b):
            self.assertTrue(wait_until(lambda p=proxy: "route cache: live" in p.log(), 10),
                            proxy.log())

        self.master.client.rpush("frontend:shared.test", "shared", self.backend.url)
        for proxy in (proxy_a, proxy_b):
            self.assertTrue(wait_until(
                lambda p=proxy: self.routes_to(p, "shared.test", "first"), 10), proxy.log())

        # A change to a route both have cached reaches both through their replica's tracking.
        moved = self.http_backend("moved")
        self.master.client.call("DEL", "frontend:shared.test")
        self.master.client.rpush("frontend:shared.test", "shared", moved.url)
        for proxy in (proxy_a, proxy_b):
            self.assertTrue(wait_until(
                lambda p=proxy: self.routes_to(p, "shared.test", "moved"), 10), proxy.log())


class ReplicaLinkDown(ReplicaTestCase):
    def test_link_pointed_away_is_an_outage_until_it_is_back(self):
        replica = self.replica()
        self.master.client.rpush("frontend:known.test", "known", self.backend.url)
        self.assertTrue(wait_until(lambda: replica.client.lrange("frontend:known.test", 0, -1)))
        proxy = self.proxy_reading(replica)
        self.assertTrue(self.routes_to(proxy, "known.test", "first"), proxy.log())

        # The replica follows a master that is not there: its link is down.
        replica.client.call("REPLICAOF", "127.0.0.1", str(free_port()))
        self.assertTrue(wait_until(lambda: LINK_DOWN in proxy.log(), 10), proxy.log())
        self.assertTrue(self.routes_to(proxy, "known.test", "first"), proxy.log())
        self.master.client.rpush("frontend:during.test", "during", self.backend.url)

        replica.client.call("REPLICAOF", "127.0.0.1", str(self.master.port))
        self.assertTrue(wait_until(lambda: link_status(replica) == "up", 15))
        self.assertTrue(wait_until(lambda: LINK_UP in proxy.log(), 10), proxy.log())
        self.assertTrue(wait_until(lambda: self.routes_to(proxy, "during.test", "first"), 10),
                        proxy.log())
        log = proxy.log()
        self.assertEqual(log.count(LINK_DOWN), 1, log)
        self.assertEqual(log.count(LINK_UP), 1, log)

    def test_master_stopped_and_restarted(self):
        replica = self.replica()
        self.master.client.rpush("frontend:known.test", "known", self.backend.url)
        self.assertTrue(wait_until(lambda: replica.client.lrange("frontend:known.test", 0, -1)))
        proxy = self.proxy_reading(replica)
        self.assertTrue(self.routes_to(proxy, "known.test", "first"), proxy.log())

        port = self.master.port
        self.master.kill()
        self.assertTrue(wait_until(lambda: LINK_DOWN in proxy.log(), 15), proxy.log())
        self.assertTrue(self.routes_to(proxy, "known.test", "first"), proxy.log())

        # The master comes back empty (no persistence): once the replica has synced, the
        # route is gone, and a new one routes.
        self.master = RedisNode(port=port)
        self._stoppers.append(self.master.stop)
        self.assertTrue(wait_until(lambda: link_status(replica) == "up", 20))
        self.assertTrue(wait_until(lambda: LINK_UP in proxy.log(), 10), proxy.log())
        self.master.client.rpush("frontend:after.test", "after", self.backend.url)
        self.assertTrue(wait_until(lambda: self.routes_to(proxy, "after.test", "first"), 10),
                        proxy.log())
        self.assertTrue(wait_until(lambda: not self.routes_to(proxy, "known.test", "first"), 10),
                        proxy.log())


if __name__ == "__main__":
    unittest.main()
