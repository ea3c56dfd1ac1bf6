"""Replies that say the server cannot serve us now, from a scripted RESP server (fake_redis.py):
-LOADING (a server loading its data set: an outage, retried after the back-off, routes served
once it is done) and -READONLY to a dead mark in sentinel mode (a demoted master: the connection
is dropped and the sentinels asked again).

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_redis_server_states
"""
import socket
import unittest

import harness
from fake_redis import FakeRedis
from harness import wait_until


class ServerStates(harness.ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.fake = FakeRedis()
        self._stoppers.append(self.fake.stop)
        self.backend = self.http_backend("good")
        self.fake.frontends["app.test"] = ["app", self.backend.url]

    def start_with(self, url):
        config = self.config()
        config["driver"] = url
        return self.start_proxy(config)

    def status(self, host):
        return self.request("GET", "/", host=host)[0]

    def test_loading_is_an_outage_until_the_data_set_is_loaded(self):
        self.fake.loading = True
        self.start_with("redis://127.0.0.1:%d" % self.fake.port)
        self.assertEqual(self.status("app.test"), 503)
        self.assertTrue(wait_until(lambda: "server is loading its data set" in self.proxy.log(),
                                   5), self.proxy.log())
        self.fake.loading = False
        self.assertTrue(wait_until(lambda: self.status("app.test") == 200, 15, 0.2),
                        self.proxy.log())

    def test_read_only_write_in_sentinel_mode_asks_the_sentinels_again(self):
        self.fake.read_only = True
        refused = socket.socket()
        refused.bind(("127.0.0.1", 0))
        self._stoppers.append(refused.close)
        self.fake.frontends["mark.test"] = ["mark", "http://127.0.0.1:%d" %
                                            refused.getsockname()[1], self.backend.url]
        self.start_with("redis-sentinel://127.0.0.1:%d/mymaster" % self.fake.port)
        self.assertEqual(self.status("app.test"), 200, self.proxy.log())
        # The invalidation subscriber and the +switch-master watcher are set up: from here on
        # only a dropped connection asks the sentinels.
        self.assertTrue(wait_until(lambda: self.fake.count("SUBSCRIBE") >= 2, 5))
        asked = self.fake.count("SENTINEL")
        # Until the balancer has tried the refused backend once and the mark went out.
        self.assertTrue(wait_until(lambda: self.status("mark.test") == 200 and
                                   self.fake.count("MULTI") > 0, 10, 0.1), self.proxy.log())
        self.assertTrue(wait_until(lambda: "read-only (a demoted master)" in self.proxy.log(), 5),
                        self.proxy.log())
        self.assertTrue(wait_until(lambda: self.fake.count("SENTINEL") > asked, 5))
        self.assertEqual(self.status("app.test"), 200, self.proxy.log())


if __name__ == "__main__":
    unittest.main()
