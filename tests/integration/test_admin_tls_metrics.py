"""The TLS handshake counters of /metrics against real handshakes: completed ones and one a
client without TLS breaks off."""

import socket

import harness
import tls_helpers
from admin_helpers import AdminTestCase


class TlsHandshakeMetricsTest(AdminTestCase, tls_helpers.TlsTestCase):
    def test_handshakes_and_failures_are_counted(self):
        self.echo_frontend()
        config = self.tls_config(workers=2)
        self.admin_port = harness.free_port()
        config["admin"] = {"port": self.admin_port}
        self.start_tls_proxy(config)
        harness.wait_for_port(self.admin_port)
        # The start-up check connected to the TLS port and closed without a handshake: that
        # counts as a failed one too, once its worker has seen the close.
        harness.wait_until(lambda: self.scrape()["hipache_tls_handshake_failures_total"] >= 1, 5)
        before = self.scrape()["hipache_tls_handshake_failures_total"]
        for _ in range(3):
            self.assertEqual(self.https_get()[0], 200)
        # Plain HTTP on the TLS port: no handshake.
        with socket.create_connection(("127.0.0.1", self.https_port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: secure.test\r\n\r\n")
            while s.recv(4096):
                pass
        harness.wait_until(
            lambda: self.scrape()["hipache_tls_handshake_failures_total"] >= before + 1, 5)
        metrics = self.scrape()
        self.assertEqual(metrics["hipache_tls_handshake_failures_total"], before + 1)
        self.assertEqual(metrics["hipache_tls_handshakes_total"], 3)
        self.assertEqual(metrics['hipache_requests_total{code="200"}'], 3)


if __name__ == "__main__":
    import unittest
    unittest.main()
