"""The process model (SPEC section 9), replacing workers: respawn with back-off after a
SIGKILL, the memory watchdog replacing workers over the limit without failed requests, and the
bound on draining workers across reloads and forced recycling.
Everything here looks at real processes through /proc.

Run: HIPACHE_BINARY=/path/to/hipache python3 -m unittest -v test_process_respawn
"""
import contextlib
import os
import re
import signal
import time
import unittest

import harness
from process_helpers import InFlight, Load, ProcessTestCase, alive, children


class RespawnTest(ProcessTestCase):
    def test_sigkilled_worker_is_replaced_without_losing_more_than_its_requests(self):
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=3)
        workers = self.wait_for_workers(3)
        load = Load(self.proxy.port, self.HOST, threads=4)
        try:
            load.wait_for(150)
            victim = sorted(workers)[1]
            os.kill(victim, signal.SIGKILL)
            fresh = self.wait_for_workers(3, exclude={victim})
            self.assertEqual(len(fresh - workers), 1, "exactly one new worker: %s -> %s"
                             % (sorted(workers), sorted(fresh)))
            before = load.total
            load.wait_for(before + 250)
        finally:
            ok, failed = load.stop()
        self.assertGreaterEqual(ok + failed, 300, load.summary())
        self.assertLessEqual(failed, 5, load.summary())
        log = self.proxy.log()
        self.assertRegex(log, r"worker %d .*signal 9" % victim)
        new_pid = (fresh - workers).pop()
        self.assertIn("worker %d started" % new_pid, log)
        self.assertTrue(alive(self.master()))

    def test_workers_killed_at_start_are_respawned_with_back_off(self):
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=1)
        master = self.master()
        killed = []
        deadline = time.time() + 15
        while len(killed) < 5 and time.time() < deadline:
            pids = children(master) - set(killed)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.002)
            self.assertTrue(alive(master), "the master died\n" + self.proxy.log()[-3000:])
        self.assertEqual(len(killed), 5, "only %d workers appeared to be killed" % len(killed))
        # Stop killing: a worker comes back and serves.
        self.wait_for_workers(1, exclude=killed, timeout=15)
        self.assertTrue(alive(master))
        status = None
        for _ in range(50):
            with contextlib.suppress(OSError):
                status, _, _ = self.request("GET", "/", host=self.HOST)
                if status == 200:
                    break
            time.sleep(0.1)
        self.assertEqual(status, 200)
        log = self.proxy.log()
        for pid in killed:
            self.assertRegex(log, r"worker %d .*signal 9" % pid)
        # Back-off: the delays before each new start grow.
        delays = [int(d) for d in re.findall(r"next start in (\d+) ms", log)]
        self.assertGreaterEqual(len(delays), 3, log[-3000:])
        self.assertEqual(delays, sorted(delays), "the back-off does not grow: %s" % delays)
        self.assertGreater(delays[-1], delays[0], "the back-off does not grow: %s" % delays)


class MemoryWatchdogTest(ProcessTestCase):
    def test_workers_over_the_limit_are_replaced_without_failed_requests(self):
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=2, memoryLimit=1, memoryCheckInterval=1, gracefulWait=10)
        seen = set(self.wait_for_workers(2))
        load = Load(self.proxy.port, self.HOST, threads=4)
        try:
            end = time.time() + 6
            while time.time() < end:
                seen |= self.workers()
                time.sleep(0.05)
        finally:
            ok, failed = load.stop()
        self.assertEqual(failed, 0, load.summary())
        self.assertGreaterEqual(ok, 300, load.summary())
        self.assertGreaterEqual(len(seen), 6, "workers were not replaced: %s" % sorted(seen))
        log = self.proxy.log()
        self.assertGreaterEqual(len(re.findall(r"over the 1 MB limit", log)), 4, log[-3000:])
        # Replaced workers exit by themselves (drained), they are not killed.
        self.assertNotIn("did not stop in time", log)
        self.assertTrue(alive(self.master()))


class DrainBoundTest(ProcessTestCase):
    """Draining workers do not pile up (docs/security.md): at most server.workers drain at
    once, the oldest is killed to make room, and a draining worker over twice memoryLimit is
    killed. Requests of 30 s keep every drain going until then."""

    WORKERS = 2

    def hold_requests(self, backend, count):
        before = len(backend.requests)
        flights = [InFlight(self.proxy.port, self.HOST, "/slow?delay=30") for _ in range(count)]
        self.wait_backend_requests(backend, before + count)
        return flights

    def assert_settles_within_bound(self):
        # A worker just killed may take a moment to disappear: the count must come down to
        # the serving workers plus at most as many draining ones.
        bound = 2 * self.WORKERS
        settled = harness.wait_until(lambda: len(self.workers()) <= bound, 3)
        self.assertTrue(settled, "%d worker processes, bound %d\n%s"
                        % (len(self.workers()), bound, self.proxy.log()[-3000:]))

    def test_reloads_with_requests_in_flight_keep_at_most_workers_draining(self):
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=self.WORKERS, memoryLimit=0, gracefulWait=60)
        generations = [self.wait_for_workers(self.WORKERS)]
        for _ in range(4):
            self.hold_requests(backend, 6)
            self.proxy.signal(signal.SIGHUP)
            harness.wait_until(lambda: len(self.workers() - set().union(*generations))
                               == self.WORKERS, 5)
            generations.append(self.workers() - set().union(*generations))
            self.assert_settles_within_bound()
        # The oldest drains were the ones cut short (a worker that got no request exits by
        # itself); the last reload's draining workers stay. Which worker the kernel gave the held
        # requests to is its choice: each worker says how many connections it drains.
        last = generations[3]
        harness.wait_until(lambda: all("worker %d: replaced, draining" % pid in self.proxy.log()
                                       for pid in last), 5)
        log = self.proxy.log()
        draining = {int(pid): int(count) for pid, count in re.findall(
            r"worker (\d+): replaced, draining (\d+) connection", log)}
        busy = {pid for pid in last if draining.get(pid, 0) > 0}
        self.assertTrue(busy, log[-3000:])  # the six requests held are somewhere
        killed = {int(pid) for pid in re.findall(
            r"worker (\d+) stopped at once \(SIGKILL\): the oldest of 2 draining workers, "
            r"at most 2 drain at once", log)}
        older = generations[0] | generations[1] | generations[2]
        self.assertGreaterEqual(len(killed), 2, log[-3000:])
        self.assertLessEqual(killed, older, log[-3000:])
        self.assertFalse(any(alive(pid) for pid in older), log[-3000:])
        self.assertTrue(all(alive(pid) for pid in busy), log[-3000:])
        for pid in last - busy:  # drained nothing: gone by itself, not killed
            exited = "worker %d exited with status 0" % pid
            self.assertTrue(harness.wait_until(lambda: exited in self.proxy.log(), 5),
                            self.proxy.log()[-3000:])
        self.assertTrue(alive(self.master()))

    def test_forced_recycling_does_not_pile_up_draining_workers(self):
        # Every worker is over a 1 MB limit, so each check replaces both serving workers; the
        # ones draining since the previous check are over twice the limit and are killed.
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=self.WORKERS, memoryLimit=1, memoryCheckInterval=1,
                         gracefulWait=60)
        self.wait_for_workers(self.WORKERS)
        seen = set()
        end = time.time() + 6
        while time.time() < end:
            self.hold_requests(backend, 3)
            seen |= self.workers()
            self.assert_settles_within_bound()
            time.sleep(0.3)
        self.assertGreaterEqual(len(seen), 8, "workers were not replaced: %s" % sorted(seen))
        log = self.proxy.log()
        twice = re.findall(r"worker (\d+) stopped at once \(SIGKILL\): draining, uses \d+ MB, "
                           r"over twice the 1 MB limit", log)
        self.assertGreaterEqual(len(twice), 4, log[-3000:])
        self.assertTrue(alive(self.master()))


if __name__ == "__main__":
    unittest.main()
