"""What the health tests (test_health_*.py) share: HealthTestCase, which starts the proxy with
deadBackendTTL DEAD_TTL and watches the "dead" channel, and raw backends that reset or answer
garbage (harness.silent is the one that never answers).

Marks are written by the proxy asynchronously (one pipelined MULTI per mark, on one Redis
connection, in order). To assert that something was NOT marked without sleeping and hoping, the
tests call sync_marks(): it provokes a known mark on a separate frontend and waits for its PUBLISH;
any mark caused earlier by the same worker has been sent before it.
"""
import socket
import time

import harness

DEAD_TTL = 17  # distinct from the default 30, so the TTL check proves the configured value is used


class HealthTestCase(harness.ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.sub = self.redis_server.subscribe("dead")
        self._stoppers.append(self.sub.close)
        self._held_sockets = []
        self._sentinels = 0
        self.prefix = ""

    def tearDown(self):
        for s in self._held_sockets:
            s.close()
        super().tearDown()

    # ----------------------------------------------------------------- helpers

    def refused_url(self):
        """Like harness.refused_url(), but the port stays bound (not listening) for the whole
        test, so nothing else can grab it: connecting to it is refused."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self._held_sockets.append(s)
        return "http://127.0.0.1:%d" % s.getsockname()[1]

    def start(self, **server):
        server.setdefault("deadBackendTTL", DEAD_TTL)
        config = self.config(**server)
        if self.prefix:
            config["driver"] = self.redis_server.url(prefix=self.prefix)
        self.redis.rpush(self.prefix + "frontend:*.sentinel.test", "sentinel",
                         self.refused_url(), self.refused_url())
        return self.start_proxy(config)

    def frontend(self, host, *backends, identifier="id"):
        self.redis.rpush(self.prefix + "frontend:" + host, identifier, *backends)

    def sync_marks(self):
        """Provokes a mark on a fresh sentinel host and waits for its PUBLISH (see module doc)."""
        self._sentinels += 1
        host = "s%d.sentinel.test" % self._sentinels
        status, _, _ = self.request("GET", "/", host=host)
        self.assertEqual(status, 502)
        seen = harness.wait_until(
            lambda: any(m.startswith(host + ";") for m in self.sub.messages), 5)
        self.assertTrue(seen, "the sentinel mark was never published: %r" % self.sub.messages)

    def published(self, host):
        return [m for m in self.sub.messages if m.startswith(host + ";")]

    def dead_members(self, host):
        return sorted(self.redis.smembers(self.prefix + "dead:" + host))

    def wait_published(self, host, count=1, timeout=5):
        harness.wait_until(lambda: len(self.published(host)) >= count, timeout)
        return self.published(host)

    def assert_marked(self, host, backends, index):
        """Exactly backend `index` marked: SADD + EXPIRE ~DEAD_TTL + one PUBLISH."""
        messages = self.wait_published(host)
        self.sync_marks()
        self.assertEqual(self.published(host),
                         ["%s;%s;%d;%d" % (host, backends[index], index, len(backends))])
        self.assertEqual(self.dead_members(host), [str(index)])
        ttl = self.redis.ttl(self.prefix + "dead:" + host)
        self.assertTrue(DEAD_TTL - 4 <= ttl <= DEAD_TTL, "TTL of dead:%s is %s" % (host, ttl))

    def assert_not_marked(self, host):
        self.sync_marks()
        self.assertEqual(self.published(host), [])
        self.assertEqual(self.redis.exists(self.prefix + "dead:" + host), 0)

    def hit_until_published(self, host_header, host, max_requests=30, expect_status=200):
        """GETs until a mark for `host` is published. Every response must have expect_status."""
        for _ in range(max_requests):
            status, _, body = self.request("GET", "/", host=host_header)
            self.assertEqual(status, expect_status, body[:200])
            if harness.wait_until(lambda: self.published(host), 0.3):
                return
        self.fail("no dead mark published for %s after %d requests" % (host, max_requests))


def reset_after_head(conn):
    harness.read_request_head(conn)
    harness.reset(conn)


def garbage(conn):
    harness.read_request_head(conn)
    conn.sendall(b"hello\r\n\r\n")
    time.sleep(0.2)
