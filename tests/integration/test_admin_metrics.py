"""The admin listener's /metrics: its numbers against the traffic really sent through the proxy
with several workers, kept across worker replacement (SIGHUP, a killed worker, the SIGUSR2
in-place upgrade), the token, the busiest-frontend series, and what the listener does not do
(listen by default, proxy, log, take unbounded headers)."""

import os
import signal
import socket
import unittest

import harness
import process_helpers
from admin_helpers import AdminTestCase, parse_metrics

CODE = 'hipache_requests_total{code="%d"}'


class AdminMetricsTest(AdminTestCase, process_helpers.ProcessTestCase):
    def route_all(self):
        backend = self.backend()
        self.redis.rpush("frontend:ok.test", "ok", backend.url)
        self.redis.rpush("frontend:down.test", "down", harness.refused_url())
        return backend

    def send(self, host, path, count, status):
        for _ in range(count):
            got, _, _ = self.request("GET", path, host=host)
            self.assertEqual(got, status)

    def wait_for_count(self, code, expected):
        """The counter moves right after the answer's last byte left: wait for it (bounded)."""
        harness.wait_until(lambda: self.scrape().get(CODE % code, 0) >= expected, 5)
        metrics = self.scrape()
        self.assertEqual(metrics.get(CODE % code, 0), expected)
        return metrics

    def test_counts_match_the_traffic_across_workers(self):
        self.route_all()
        self.start_admin_proxy(workers=2)
        before = self.scrape()
        self.assertEqual(before["hipache_workers"], 2)
        self.send("ok.test", "/", 20, 200)
        self.send("ok.test", "/?status=404", 5, 404)
        self.send("down.test", "/", 3, 502)
        self.wait_for_count(200, before.get(CODE % 200, 0) + 20)
        self.wait_for_count(404, before.get(CODE % 404, 0) + 5)
        after = self.wait_for_count(502, before.get(CODE % 502, 0) + 3)

        for histogram in ("hipache_request_duration_seconds", "hipache_backend_duration_seconds"):
            count = after[histogram + "_count"] - before.get(histogram + "_count", 0)
            self.assertEqual(count, 28, histogram)
            buckets = [(float(k.split('"')[1]), v) for k, v in after.items()
                       if k.startswith(histogram + "_bucket") and "+Inf" not in k]
            values = [v for _, v in sorted(buckets)]
            self.assertEqual(values, sorted(values), "buckets are cumulative")
            self.assertEqual(after[histogram + '_bucket{le="+Inf"}'], after[histogram + "_count"])
        self.assertEqual(after["hipache_connections_accepted_total"]
                         - before.get("hipache_connections_accepted_total", 0), 28)

        # Every worker is in the scrape, whichever answered it.
        workers = self.workers()
        self.assertEqual(len(workers), 2)
        for pid in workers:
            self.assertGreater(after['hipache_worker_resident_memory_bytes{pid="%d"}' % pid], 0)
        status = self.status_json()
        self.assertEqual(sorted(w["pid"] for w in status["workers"]), sorted(workers))
        self.assertEqual(sum(w["requests"] for w in status["workers"]), status["requests"])
        self.assertEqual(status["codes"]["200"], after[CODE % 200])

    def test_counters_survive_reload_kill_and_upgrade(self):
        self.route_all()
        self.start_admin_proxy(workers=2)
        self.send("ok.test", "/", 10, 200)
        self.wait_for_count(200, 10)

        old = self.workers()
        self.proxy.signal(signal.SIGHUP)
        new = self.wait_for_workers(2, exclude=old)
        metrics = self.wait_for_count(200, 10)
        self.assertEqual(metrics["hipache_reloads_total"], 1)
        self.send("ok.test", "/", 5, 200)
        self.wait_for_count(200, 15)

        victim = sorted(new)[0]
        os.kill(victim, signal.SIGKILL)
        self.wait_for_workers(2, exclude={victim})
        self.assertTrue(harness.wait_until(
            lambda: self.scrape()["hipache_worker_restarts_total"] == 1, 5))
        self.wait_for_count(200, 15)

        before_upgrade = self.workers()
        self.proxy.signal(signal.SIGUSR2)
        self.assertTrue(harness.wait_until(lambda: "upgrade complete" in self.proxy.log(), 20),
                        self.proxy.log()[-2000:])
        self.wait_for_workers(2, exclude=before_upgrade)
        metrics = self.wait_for_count(200, 15)
        self.assertEqual(metrics["hipache_reloads_total"], 1, "master counters carried over")
        self.assertEqual(metrics["hipache_worker_restarts_total"], 1)
        self.send("ok.test", "/", 5, 200)
        metrics = self.wait_for_count(200, 20)
        self.assertTrue(harness.wait_until(
            lambda: self.scrape()["hipache_workers"] == 2, 10), "old workers never retired")

    def test_counters_survive_memory_recycling(self):
        self.route_all()
        config = self.admin_config(workers=1)
        config["server"].update(memoryLimit=1, memoryCheckInterval=1)  # recycled every second
        self.start_proxy(config)
        harness.wait_for_port(self.admin_port)
        self.send("ok.test", "/", 10, 200)
        self.wait_for_count(200, 10)
        first = self.workers()
        self.assertTrue(harness.wait_until(
            lambda: self.scrape()["hipache_worker_recycles_total"] >= 2, 10),
            self.proxy.log()[-2000:])
        self.wait_for_workers(1, exclude=first)
        metrics = self.wait_for_count(200, 10)
        self.assertEqual(metrics["hipache_worker_restarts_total"], 0)

    def test_token(self):
        self.route_all()
        self.start_admin_proxy(workers=1, token="s3cret-token")
        for path in ("/metrics", "/", "/status.json"):
            status, head, _ = self.admin(path)
            self.assertEqual(status, 401, path)
            self.assertIn("Bearer", head.get("www-authenticate", ""))
            status, _, _ = self.admin(path, {"Authorization": "Bearer s3cret-tokem"})
            self.assertEqual(status, 401, path)
            status, _, _ = self.admin(path, {"Authorization": "s3cret-token"})
            self.assertEqual(status, 401, path)
            status, _, _ = self.admin(path, {"Authorization": "Bearer s3cret-token"})
            self.assertEqual(status, 200, path)

    def test_busiest_frontends_only_when_asked(self):
        backend = self.backend()
        for name in ("a", "b", "c"):
            self.redis.rpush("frontend:%s.test" % name, name, backend.url)
        self.start_admin_proxy(workers=2, frontendMetrics=2)
        self.send("a.test", "/", 6, 200)
        self.send("b.test", "/?status=503", 4, 503)
        self.send("c.test", "/", 1, 200)
        self.wait_for_count(503, 4)
        metrics = self.wait_for_count(200, 7)
        series = {k: v for k, v in metrics.items() if k.startswith("hipache_frontend_requests")}
        self.assertEqual(series, {'hipache_frontend_requests_total{frontend="a.test"}': 6,
                                  'hipache_frontend_requests_total{frontend="b.test"}': 4})
        self.assertEqual(metrics['hipache_frontend_server_errors_total{frontend="b.test"}'], 4)

    def test_admin_requests_are_not_proxied_routed_or_logged(self):
        backend = self.route_all()
        self.start_admin_proxy(workers=1)
        self.send("ok.test", "/", 1, 200)
        self.assertEqual(len(self.access_log_lines(expected=1)), 1)
        status, _, body = self.admin("/metrics", {"Host": "ok.test"})
        self.assertEqual(status, 200)
        self.assertIn(b"hipache_requests_total", body)
        self.assertEqual(self.admin("/nothing", {"Host": "ok.test"})[0], 404)
        self.assertEqual(self.admin("/metrics", method="POST")[0], 405)
        self.send("ok.test", "/", 1, 200)
        self.assertEqual(len(self.access_log_lines(expected=2)), 2)
        self.assertEqual(len(self.access_log_lines(expected=3, timeout=0.5)), 2)
        self.assertEqual(len(backend.requests), 2)
        self.assertEqual(self.scrape()[CODE % 200], 2, "admin requests are not counted")

    def test_header_size_is_bounded(self):
        self.start_admin_proxy(workers=1)
        with socket.create_connection(("127.0.0.1", self.admin_port), timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data[:100])

    def test_off_by_default(self):
        self.start_proxy(self.config(workers=1))
        master = self.master()
        sockets = process_helpers.socket_inodes(master)
        listening = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[9]) in sockets:
                        listening.add(int(fields[1].rsplit(":", 1)[1], 16))
        self.assertEqual(listening, {self.proxy.port})


class ParseMetricsTest(unittest.TestCase):
    def test_rejects_a_sample_before_its_type(self):
        with self.assertRaises(AssertionError):
            parse_metrics("x_total 1\n")
        self.assertEqual(parse_metrics("# TYPE x counter\nx{a=\"b\"} 2\n"), {'x{a="b"}': 2.0})


if __name__ == "__main__":
    unittest.main()
