"""Redis 6 ACL users in driver URLs (redis://user:password@host): AUTH user password, with the
right password (routes served, dead marks written) and a wrong one (a clear error logged once,
served as an outage: 503, the proxy alive).

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_redis_acl
"""
import unittest

import harness
from harness import wait_until


class AclUser(harness.ProxyTestCase):
    def setUp(self):
        super().setUp()
        # The default user can no longer read the routes: only "router" can.
        self.redis.call("ACL", "SETUSER", "router", "on", ">r0uter-pw", "~*", "&*", "+@all")
        self.backend = self.http_backend("acl-routed")
        self.redis.rpush("frontend:acl.test", "acl", self.backend.url)
        self.redis.call("ACL", "SETUSER", "default", "resetkeys", "-@all", "+auth")

    def start_as(self, user, password):
        config = self.config()
        config["driver"] = "redis://%s:%s@127.0.0.1:%d" % (user, password, self.redis_server.port)
        return self.start_proxy(config)

    def test_right_password(self):
        self.start_as("router", "r0uter-pw")
        status, _, body = self.request("GET", "/", host="acl.test")
        self.assertEqual(status, 200, self.proxy.log())
        self.assertIn(b"acl-routed", body)
        self.assertTrue(wait_until(lambda: "route cache: live" in self.proxy.log(), 10),
                        self.proxy.log())

    def test_wrong_password_is_a_logged_outage(self):
        self.start_as("router", "wrong-pw")
        for _ in range(3):
            self.assertEqual(self.request("GET", "/", host="acl.test")[0], 503)
        self.assertTrue(wait_until(lambda: "AUTH refused: WRONGPASS" in self.proxy.log(), 5),
                        self.proxy.log())
        log = self.proxy.log()
        self.assertNotIn("wrong-pw", log)
        self.assertIsNone(self.proxy.process.poll())
        # Logged once per outage and connection, not once per attempt.
        self.assertLessEqual(log.count("AUTH refused"), 3, log)


if __name__ == "__main__":
    unittest.main()
