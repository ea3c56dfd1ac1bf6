"""Redis over TLS (rediss:// driver URLs) against a real redis-server with tls-port, certificates
from tls_pki: verified against the URL's CA, a client certificate when the server demands one,
serverName for a certificate that does not name the address, and the failures (an untrusted
server, a missing client certificate) as a logged outage, never a crash.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_redis_tls
"""
import unittest
from urllib.parse import quote

import harness
from harness import free_port, wait_until
from redis_nodes import MASTER_NAME, RedisNode, Sentinel
from tls_pki import shared_pki, tearDownModule  # noqa: F401 (unittest calls tearDownModule)


def client_certificate(pki):
    """A client certificate (clientAuth) issued by the test root CA: (cert, key)."""
    if not hasattr(pki, "redis_client"):
        key = pki._key("redis-client.key")
        ext = pki._write("redis-client.cnf",
                         "[client]\nbasicConstraints = critical,CA:FALSE\n"
                         "keyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\n")
        cert = pki._signed("redis-client.pem", key, "/CN=hipache", pki.root, pki.root_key,
                           "client", ext)
        pki.redis_client = (cert, key)
    return pki.redis_client


class RedisTlsTestCase(harness.ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.pki = shared_pki()
        self.backend = self.http_backend("tls-routed")

    def tls_redis(self, cert, key, auth_clients="no"):
        """A redis-server with a plain port (the test's own client) and a TLS port."""
        self.tls_port = free_port()
        node = RedisNode("--tls-port", str(self.tls_port), "--tls-cert-file", cert,
                         "--tls-key-file", key, "--tls-ca-cert-file", self.pki.root,
                         "--tls-auth-clients", auth_clients)
        self._stoppers.append(node.stop)
        node.client.rpush("frontend:tls.test", "tls", self.backend.url)
        return node

    def start_with(self, url):
        config = self.config()
        config["driver"] = url
        return self.start_proxy(config)

    def url(self, **query):
        return "rediss://127.0.0.1:%d?%s" % (
            self.tls_port, "&".join("%s=%s" % (k, quote(v, safe="/")) for k, v in query.items()))

    def routes(self):
        status, _, body = self.request("GET", "/", host="tls.test")
        return status == 200 and b"tls-routed" in body


class Verified(RedisTlsTestCase):
    def test_routes_and_invalidations_over_tls(self):
        node = self.tls_redis(self.pki.ip, self.pki.ip_key)
        self.start_with(self.url(ca=self.pki.root))
        self.assertTrue(wait_until(self.routes, 10, 0.2), self.proxy.log())
        self.assertTrue(wait_until(lambda: "route cache: live" in self.proxy.log(), 10))
        # The invalidation arrives over the TLS subscriber connection.
        moved = self.http_backend("moved")
        node.client.call("DEL", "frontend:tls.test")
        node.client.rpush("frontend:tls.test", "tls", moved.url)
        self.assertTrue(wait_until(
            lambda: b"moved" in self.request("GET", "/", host="tls.test")[2], 10),
            self.proxy.log())
        # Only TLS clients on the TLS port: the proxy's connections are among them.
        clients = node.client.call("CLIENT", "LIST")
        self.assertIn("laddr=127.0.0.1:%d" % self.tls_port, clients)

    def test_server_name_verifies_a_certificate_for_another_name(self):
        self.tls_redis(self.pki.localhost, self.pki.localhost_key)
        self.start_with(self.url(ca=self.pki.root, serverName="localhost"))
        self.assertTrue(wait_until(self.routes, 10, 0.2), self.proxy.log())

    def test_client_certificate_when_the_server_demands_one(self):
        cert, key = client_certificate(self.pki)
        self.tls_redis(self.pki.ip, self.pki.ip_key, auth_clients="yes")
        self.start_with(self.url(ca=self.pki.root, cert=cert, key=key))
        self.assertTrue(wait_until(self.routes, 10, 0.2), self.proxy.log())


class SentinelOverTls(RedisTlsTestCase):
    def test_rediss_sentinel_finds_the_master_over_tls(self):
        node = self.tls_redis(self.pki.ip, self.pki.ip_key)
        sentinel = Sentinel(self.tls_port, quorum=1, tls="tls-cert-file %s\ntls-key-file %s\n"
                            "tls-ca-cert-file %s\ntls-auth-clients no" % (
                                self.pki.ip, self.pki.ip_key, self.pki.root))
        self._stoppers.append(sentinel.stop)
        self.start_with("rediss-sentinel://127.0.0.1:%d/%s?ca=%s" % (
            sentinel.port, MASTER_NAME, quote(self.pki.root, safe="/")))
        self.assertTrue(wait_until(self.routes, 10, 0.2), self.proxy.log())
        # Reached through the TLS port the sentinel named (the plain port is the test's).
        clients = node.client.call("CLIENT", "LIST")
        self.assertIn("laddr=127.0.0.1:%d" % self.tls_port, clients)
        self.assertTrue(wait_until(lambda: "route cache: live" in self.proxy.log(), 10))


class Refused(RedisTlsTestCase):
    def assert_outage(self, expected_log):
        self.assertEqual(self.request("GET", "/", host="tls.test")[0], 503)
        self.assertTrue(wait_until(lambda: expected_log in self.proxy.log(), 5), self.proxy.log())
        self.assertIsNone(self.proxy.process.poll())

    def test_untrusted_server_certificate(self):
        self.tls_redis(self.pki.self_signed, self.pki.self_signed_key)
        self.start_with(self.url(ca=self.pki.root))
        self.assert_outage("TLS handshake failed")

    def test_name_mismatch_without_server_name(self):
        self.tls_redis(self.pki.localhost, self.pki.localhost_key)
        self.start_with(self.url(ca=self.pki.root))
        self.assert_outage("TLS handshake failed")

    def test_missing_client_certificate(self):
        self.tls_redis(self.pki.ip, self.pki.ip_key, auth_clients="yes")
        self.start_with(self.url(ca=self.pki.root))
        self.assertEqual(self.request("GET", "/", host="tls.test")[0], 503)
        self.assertIsNone(self.proxy.process.poll())

    def test_unreadable_ca_file(self):
        self.tls_redis(self.pki.ip, self.pki.ip_key)
        self.start_with(self.url(ca="/nonexistent/ca.pem"))
        self.assert_outage('TLS setup: CA "/nonexistent/ca.pem"')


if __name__ == "__main__":
    unittest.main()
