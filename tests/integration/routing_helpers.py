"""RoutingTestCase, the base of the routing tests (test_routing_*.py): which backend served a
request, and extra Redis servers and subscriptions stopped with the test.
"""
import json

import harness

REQUEST_TIMEOUT = 5


# --------------------------------------------------------------------------- base class

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
