"""The process model (SPEC section 9), the workers: one master and server.workers workers that
all serve, connections spread over them, and their CPUs (cpuAffinity: spread over the allowed
ones, kept by a replacement; busy workers sharing one CPU moved apart).
Everything here looks at real processes through /proc.

Run: HIPACHE_BINARY=/path/to/hipache python3 -m unittest -v test_process_workers
"""
import collections
import os
import re
import signal
import socket
import threading
import time
import unittest

import harness
from process_helpers import (ProcessTestCase, children, established_by_process,
                             listening_by_process, proc_stat)


class ProcessTreeTest(ProcessTestCase):
    def test_one_master_and_n_workers_that_all_serve(self):
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=3)
        master = self.master()
        workers = self.wait_for_workers(3)
        # Exactly one master: the binary we started, whose parent is this test, and none of
        # the workers has children of its own.
        self.assertEqual(proc_stat(master)[1], os.getpid())
        for pid in workers:
            self.assertEqual(children(pid), set(), "worker %d has children" % pid)

        # Traffic works on fresh connections.
        for _ in range(60):
            status, _, _ = self.request("GET", "/", host=self.HOST)
            self.assertEqual(status, 200)

        # Who holds the accepted connections: hold some open (a request head left unfinished)
        # and look the sockets up in /proc. The master never holds one; every worker does
        # at some point.
        seen = set()
        for _ in range(8):
            held = []
            try:
                for _ in range(30):
                    s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5)
                    s.sendall(b"GET / HTTP/1.1\r\nHost: " + self.HOST.encode() + b"\r\n")
                    held.append(s)
                counts = harness.wait_until(
                    lambda: (lambda c: c if sum(c.values()) == len(held) else None)(
                        established_by_process(self.proxy.port, workers | {master})), 5)
                self.assertTrue(counts, "the 30 held connections were not all accepted: %s"
                                % established_by_process(self.proxy.port, workers | {master}))
                self.assertEqual(counts[master], 0, "the master accepted connections")
                seen |= {pid for pid in workers if counts[pid] > 0}
            finally:
                for s in held:
                    s.close()
            if seen == workers:
                break
        self.assertEqual(seen, workers, "not every worker accepted connections")
        # The master holds the listening socket (it bound it) but serves nothing.
        self.assertTrue(listening_by_process(self.proxy.port, master))
        self.assertEqual(self.workers(), workers, "workers changed while serving")


class AcceptBalanceTest(ProcessTestCase):
    def test_a_burst_of_connections_is_spread_over_the_workers(self):
        # process/worker_loads: a worker over its share of the connections lets the others
        # accept first, so the one that wakes first does not take a whole burst (64 connections
        # opened at once used to split 51/13 or 11/53).
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=2)
        workers = self.wait_for_workers(2)
        held = []
        try:
            for _ in range(40):
                held.append(socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5))
            counts = harness.wait_until(
                lambda: (lambda c: c if sum(c.values()) == len(held) else None)(
                    established_by_process(self.proxy.port, workers)), 5)
            self.assertTrue(counts, "the 40 connections were not all accepted: %s"
                            % established_by_process(self.proxy.port, workers))
            self.assertGreaterEqual(min(counts.values()), 14,
                                    "40 connections opened at once split %s" % counts)
        finally:
            for s in held:
                s.close()


class CpuAffinityTest(ProcessTestCase):
    def cpus_of(self, pids):
        return {pid: os.sched_getaffinity(pid) for pid in pids}

    def assert_spread(self, pids, allowed):
        bound = self.cpus_of(pids)
        for pid, cpus in bound.items():
            self.assertEqual(len(cpus), 1, "worker %d may run on %s" % (pid, sorted(cpus)))
            self.assertLessEqual(cpus, allowed)
        per_cpu = collections.Counter(next(iter(c)) for c in bound.values())
        wanted = min(len(pids), len(allowed))
        self.assertEqual(len(per_cpu), wanted, "workers share CPUs: %s" % per_cpu)
        self.assertLessEqual(max(per_cpu.values()) - min(per_cpu.values()), 1, per_cpu)

    def test_workers_are_spread_over_the_allowed_cpus_and_replacements_take_the_free_one(self):
        allowed = os.sched_getaffinity(0)
        count = min(len(allowed), 3) + 1  # on 1 to 3 CPUs: one CPU gets two workers
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=count, cpuAffinity=True)
        workers = self.wait_for_workers(count)
        self.assertEqual(os.sched_getaffinity(self.master()), allowed, "the master is not bound")
        self.assert_spread(workers, allowed)
        # A killed worker's successor goes where it left a gap.
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        fresh = self.wait_for_workers(count, exclude={victim})
        harness.wait_until(lambda: all(len(c) == 1 for c in self.cpus_of(fresh).values()), 5)
        self.assert_spread(fresh, allowed)
        status, _, _ = self.request("GET", "/", host=self.HOST)
        self.assertEqual(status, 200)

    def test_a_worker_replaced_over_its_memory_limit_keeps_its_cpu(self):
        backend = self.backend()
        self.route(backend)
        self.start_proxy(workers=2, cpuAffinity=True, memoryLimit=1, memoryCheckInterval=1,
                         gracefulWait=10)
        self.wait_for_workers(2)
        # The master logs the reason, then the replacement's start: (old, new, CPU) per pair.
        started = {}

        def replacements():
            found, replacing = [], None
            for line in self.proxy.log().splitlines():
                over = re.search(r"worker (\d+) uses \d+ MB.*replacing it", line)
                start = re.search(r"worker (\d+) started on CPU (\d+)", line)
                if over:
                    replacing = int(over.group(1))
                elif start:
                    pid, cpu = int(start.group(1)), int(start.group(2))
                    started[pid] = cpu
                    if replacing is not None:
                        found.append((replacing, pid, cpu))
                        replacing = None
            return found
        # Both pairs complete: a log read between a reason and its start line has only one.
        harness.wait_until(lambda: len(replacements()) >= 2, 10)
        self.assertGreaterEqual(len(replacements()), 2, self.proxy.log()[-3000:])
        for old, new, cpu in replacements():
            self.assertEqual(started[old], cpu, "worker %d (CPU %d) was replaced by %d on CPU %d"
                             % (old, started[old], new, cpu))


class CpuSpreadTest(ProcessTestCase):
    """Floating workers (server.cpuSpread, on by default): when two busy workers share a CPU and
    another CPU has none, one of them moves there."""
    ANSWER = 64 << 20
    CHUNK = b"x" * (1 << 20)

    def streaming_backend(self):
        """64 MB for every request, as fast as the proxy takes it: a worker relaying it is busy."""
        def script(conn):
            while harness.read_request_head(conn):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.ANSWER)
                for _ in range(self.ANSWER // len(self.CHUNK)):
                    conn.sendall(self.CHUNK)
        return self.raw_backend(script)

    def moves_under_load(self, seconds, **server):
        """Starts two workers, keeps both relaying, and puts them on one CPU together every
        0.3 s, for `seconds` or until one of them moves; returns the number of moves logged."""
        backend = self.streaming_backend()
        self.route(backend)
        self.start_proxy(workers=2, debug=True, **server)
        workers = self.wait_for_workers(2)
        stop = threading.Event()
        received = collections.Counter()

        def moves():
            return len(re.findall(r"beside another busy worker, moved to CPU", self.proxy.log()))

        def download(index):
            buffer = bytearray(1 << 20)
            request = b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (
                self.HOST.encode())
            while not stop.is_set():
                with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10) as s:
                    s.sendall(request)
                    while not stop.is_set():
                        n = s.recv_into(buffer)
                        if n == 0:
                            break
                        received[index] += n
        # Four clients, so that each worker holds at least one (AcceptTurn).
        clients = [threading.Thread(target=download, args=(i,), daemon=True) for i in range(4)]
        for client in clients:
            client.start()
        allowed = os.sched_getaffinity(0)
        try:
            end = time.time() + seconds
            while time.time() < end and moves() == 0:
                for pid in workers:  # moved together onto the first CPU, then floating again
                    os.sched_setaffinity(pid, {min(allowed)})
                for pid in workers:
                    os.sched_setaffinity(pid, allowed)
                time.sleep(0.3)
        finally:
            stop.set()
            for client in clients:
                client.join(15)
        self.assertGreater(sum(received.values()), 64 << 20, "the workers were not kept busy")
        for pid in workers:
            self.assertEqual(os.sched_getaffinity(pid), allowed, "worker %d left bound" % pid)
        return moves()

    def test_busy_workers_on_one_cpu_move_apart(self):
        moves = self.moves_under_load(10)
        if len(os.sched_getaffinity(0)) < 2:
            self.assertEqual(moves, 0, "one CPU: nowhere to move")
        else:
            self.assertGreater(moves, 0, self.proxy.log()[-3000:])

    def test_no_moves_when_turned_off(self):
        self.assertEqual(self.moves_under_load(4, cpuSpread=False), 0, self.proxy.log()[-3000:])


if __name__ == "__main__":
    unittest.main()
