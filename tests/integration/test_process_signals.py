"""The process model (SPEC section 9), signals: SIGUSR1 reopens every worker's logs, SIGHUP
reloads the configuration (a broken one refused), SIGTERM drains gracefully, SIGINT and a second
SIGTERM stop at once.
Everything here looks at real processes through /proc.

Run: HIPACHE_BINARY=/path/to/hipache python3 -m unittest -v test_process_signals
"""
import http.client
import json
import os
import signal
import time
import unittest

import harness
from process_helpers import InFlight, ProcessTestCase, alive


class LogReopenTest(ProcessTestCase):
    def test_sigusr1_reaches_every_worker(self):
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=3)
        self.wait_for_workers(3)
        for _ in range(5):
            self.assertEqual(self.request("GET", "/", host=self.HOST)[0], 200)
        self.access_log_lines(expected=5)
        rotated = self.access_log_path + ".1"
        os.rename(self.access_log_path, rotated)
        self.proxy.signal(signal.SIGUSR1)
        self.assertTrue(harness.wait_until(
            lambda: self.proxy.log().count("access log reopened") >= 3, 5), self.proxy.log())
        time.sleep(0.2)
        with open(rotated) as f:
            rotated_before = len(f.read().splitlines())
        for _ in range(60):
            self.assertEqual(self.request("GET", "/", host=self.HOST)[0], 200)
        self.assertEqual(len(self.access_log_lines(expected=60)), 60)
        time.sleep(0.3)
        with open(rotated) as f:
            self.assertEqual(len(f.read().splitlines()), rotated_before,
                             "a worker kept writing to the rotated file")
        self.assertTrue(alive(self.master()))


class ReloadTest(ProcessTestCase):
    def static_dir(self, name, body):
        path = os.path.join(self.workdir, name)
        os.mkdir(path)
        with open(os.path.join(path, "error_400.html"), "w") as f:
            f.write(body)
        return path

    def unknown_host_body(self):
        status, _, body = self.request("GET", "/", host="unknown.test")
        self.assertEqual(status, 400)
        return body.decode()

    def test_sighup_applies_a_new_config_and_refuses_a_broken_one(self):
        dir_a = self.static_dir("static-a", "page A")
        dir_b = self.static_dir("static-b", "page B")
        cfg = self.config(workers=2, staticDir=dir_a, gracefulWait=10)
        self.start_proxy(cfg)
        old = self.wait_for_workers(2)
        self.assertEqual(self.unknown_host_body(), "page A")

        cfg["server"]["staticDir"] = dir_b
        with open(self.proxy.config_path, "w") as f:
            json.dump(cfg, f)
        self.proxy.signal(signal.SIGHUP)
        new = self.wait_for_workers(2, exclude=old)
        self.assertFalse(new & old)
        body = harness.wait_until(lambda: self.unknown_host_body() == "page B", 5)
        self.assertTrue(body, "still %r after SIGHUP" % self.unknown_host_body())
        for _ in range(20):
            self.assertEqual(self.unknown_host_body(), "page B")

        with open(self.proxy.config_path, "w") as f:
            f.write('{"server": {"workers": 2,')
        self.proxy.signal(signal.SIGHUP)
        self.assertTrue(harness.wait_until(lambda: "reload refused" in self.proxy.log(), 5),
                        self.proxy.log()[-3000:])
        time.sleep(0.3)
        self.assertEqual(self.workers(), new, "workers were replaced on a broken config")
        for _ in range(20):
            self.assertEqual(self.unknown_host_body(), "page B")
        self.assertTrue(alive(self.master()))


class StopTest(ProcessTestCase):
    def test_sigterm_leaves_no_process_behind(self):
        self.start_proxy(workers=3, gracefulWait=5)
        workers = self.wait_for_workers(3)
        master = self.master()
        self.proxy.signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(5 + 5), 0)
        self.assert_all_gone(workers | {master})

    def test_request_in_flight_during_sigterm_completes(self):
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=2, gracefulWait=10)
        workers = self.wait_for_workers(2)
        flight = InFlight(self.proxy.port, self.HOST, "/slow?delay=1.5")
        self.wait_backend_requests(backend, 1)
        self.proxy.signal(signal.SIGTERM)
        result = flight.join(10)
        self.assertIsInstance(result, tuple, "the in-flight request failed: %r" % (result,))
        self.assertEqual(result[0], 200)
        self.assertEqual(json.loads(result[1])["path"], "/slow?delay=1.5")
        self.assertEqual(self.wait_exit(10), 0)
        self.assert_all_gone(workers)

    def test_new_connections_during_the_drain_are_not_left_hanging(self):
        # "Stop accepting": once SIGTERM is taken, a new client must be refused at once (or be
        # served); a connection queued on a socket nobody accepts any more would hang until
        # the master exits and then be reset.
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=2, gracefulWait=10)
        workers = self.wait_for_workers(2)
        flight = InFlight(self.proxy.port, self.HOST, "/slow?delay=2")
        self.wait_backend_requests(backend, 1)
        self.proxy.signal(signal.SIGTERM)
        time.sleep(0.3)
        outcome = None
        started = time.time()
        try:
            status, _, _ = self.request("GET", "/", host=self.HOST, timeout=8)
            outcome = "status %d" % status
        except ConnectionRefusedError:
            outcome = "refused"
        except (OSError, http.client.HTTPException) as error:
            outcome = "failed after %.1f s: %r" % (time.time() - started, error)
        self.assertIn(outcome, ("refused", "status 200"),
                      "a connection made during the drain was accepted by the kernel but never "
                      "served")
        flight.join(10)
        self.assertEqual(self.wait_exit(10), 0)
        self.assert_all_gone(workers)

    def test_sigint_stops_at_once(self):
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=2, gracefulWait=30)
        workers = self.wait_for_workers(2)
        flight = InFlight(self.proxy.port, self.HOST, "/slow?delay=5")
        self.wait_backend_requests(backend, 1)
        sent = time.time()
        self.proxy.signal(signal.SIGINT)
        self.wait_exit(3)
        self.assertLess(time.time() - sent, 3)
        self.assert_all_gone(workers)
        result = flight.join(3)
        self.assertNotIsInstance(result, tuple, "the slow request was not cut: %r" % (result,))

    def test_second_sigterm_during_the_drain_stops_at_once(self):
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=2, gracefulWait=30)
        workers = self.wait_for_workers(2)
        master = self.master()
        flight = InFlight(self.proxy.port, self.HOST, "/slow?delay=5")
        self.wait_backend_requests(backend, 1)
        self.proxy.signal(signal.SIGTERM)
        time.sleep(1.0)
        # Draining: the request is still in flight, so the master waits.
        self.assertIsNone(self.proxy.process.poll(), "the master did not wait for the drain")
        self.assertIsNone(flight.result)
        sent = time.time()
        self.proxy.signal(signal.SIGTERM)
        self.wait_exit(3)
        self.assertLess(time.time() - sent, 3)
        self.assert_all_gone(workers | {master})
        self.assertIn("second SIGTERM", self.proxy.log())


if __name__ == "__main__":
    unittest.main()
