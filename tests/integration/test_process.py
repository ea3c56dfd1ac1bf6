"""The process model (SPEC section 9): one master, server.workers workers, respawn with back-off,
the memory watchdog, signals (SIGTERM graceful, SIGINT fast, SIGHUP reload), sd_notify readiness
and the privilege drop. Everything here looks at real processes through /proc.

Run: HIPACHE_BINARY=/path/to/hipache python3 -m unittest -v test_process
"""
import collections
import contextlib
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

import harness


# --------------------------------------------------------------------------- /proc helpers

def proc_stat(pid):
    """(state, ppid) of pid, or None when it is gone. comm may hold spaces and parentheses:
    the fields that follow start after the last ')'."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def alive(pid):
    """True while pid exists and is not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def children(parent):
    """The live (non-zombie) child pids of parent."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = proc_stat(int(entry))
        if stat is not None and stat[1] == parent and stat[0] != "Z":
            found.add(int(entry))
    return found


def status_ids(pid, key):
    """The ids of the Uid:/Gid: line of /proc/<pid>/status: [real, effective, saved, fs]."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError("no %s line for pid %d" % (key, pid))


def socket_inodes(pid):
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for fd in os.listdir(fd_dir):
            with contextlib.suppress(OSError):
                target = os.readlink(os.path.join(fd_dir, fd))
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def tcp_sockets(port):
    """{inode: state} of the IPv4 sockets whose local port is port (state "0A" = LISTEN,
    "01" = ESTABLISHED)."""
    found = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            if local_port == port:
                found[int(fields[9])] = fields[3]
    return found


def established_by_process(port, pids):
    """{pid: number of ESTABLISHED connections on the proxy's port held by pid}."""
    sockets = tcp_sockets(port)
    return {pid: sum(1 for inode in socket_inodes(pid) if sockets.get(inode) == "01")
            for pid in pids}


def listening_by_process(port, pid):
    sockets = tcp_sockets(port)
    return any(sockets.get(inode) == "0A" for inode in socket_inodes(pid))


# --------------------------------------------------------------------------- load

class Load:
    """Threads sending GET requests, each on a fresh connection (Connection: close), until
    stop() (or max_seconds). Counts successes (status 200) and failures (anything else)."""

    def __init__(self, port, host, threads=4, path="/", max_seconds=30.0):
        self.port = port
        self.host = host
        self.path = path
        self.ok = 0
        self.failed = 0
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.deadline = time.time() + max_seconds
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    @property
    def total(self):
        return self.ok + self.failed

    def _one(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", self.path, headers={"Host": self.host, "Connection": "close"})
            response = conn.getresponse()
            response.read()
            return response.status, None
        except (OSError, http.client.HTTPException) as error:
            return None, error
        finally:
            conn.close()

    def _run(self):
        while not self.stopping.is_set() and time.time() < self.deadline:
            status, error = self._one()
            with self.lock:
                if status == 200:
                    self.ok += 1
                else:
                    self.failed += 1
                    if len(self.errors) < 20:
                        self.errors.append(repr(error) if error else "status %s" % status)

    def wait_for(self, count, timeout=10.0):
        harness.wait_until(lambda: self.total >= count, timeout)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(15)
        return self.ok, self.failed

    def summary(self):
        return "%d ok, %d failed, errors: %s" % (self.ok, self.failed, self.errors)


class InFlight:
    """One request in a thread (for a backend ?delay=...): result is (status, body) or the
    exception it raised."""

    def __init__(self, port, host, path, timeout=30):
        self.result = None
        self.finished_at = None

        def run():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            try:
                conn.request("GET", path, headers={"Host": host})
                response = conn.getresponse()
                self.result = (response.status, response.read())
            except (OSError, http.client.HTTPException) as error:
                self.result = error
            finally:
                conn.close()
                self.finished_at = time.time()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout):
        self.thread.join(timeout)
        return self.result


class NotifyProxy(harness.Proxy):
    """harness.Proxy with extra environment variables (NOTIFY_SOCKET), and no wait for the
    port: the test waits for READY=1 instead."""

    def __init__(self, config, workdir, env):
        self.port = config["http"]["port"]
        self.config_path = os.path.join(workdir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.stderr_path = os.path.join(workdir, "stderr.log")
        self.stderr = open(self.stderr_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env)
        self.process = subprocess.Popen([harness.BINARY, "-c", self.config_path],
                                        stdout=subprocess.DEVNULL, stderr=self.stderr,
                                        env=full_env)


# --------------------------------------------------------------------------- tests

class ProcessTestCase(harness.ProxyTestCase):
    HOST = "proc.test"

    def master(self):
        return self.proxy.process.pid

    def workers(self):
        return children(self.master())

    def wait_for_workers(self, count, exclude=(), timeout=10.0):
        """Waits until the master has exactly count live children, none of them in exclude."""
        def check():
            pids = self.workers()
            return pids if len(pids) == count and not pids & set(exclude) else None
        pids = harness.wait_until(check, timeout, interval=0.02)
        self.assertTrue(pids, "expected %d workers (excluding %s), have %s\n%s"
                        % (count, sorted(exclude), sorted(self.workers()), self.proxy.log()[-3000:]))
        return pids

    def backend(self):
        """An echo backend that does not print a traceback when the proxy side of a
        connection vanishes (killed workers, cut requests: expected here)."""
        backend = self.http_backend()
        backend.server.handle_error = lambda request, client_address: None
        return backend

    def route(self, backend):
        self.redis.rpush("frontend:" + self.HOST, "proc", backend.url)

    def wait_exit(self, timeout):
        try:
            return self.proxy.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail("the master is still running %.0f s after the signal\n%s"
                      % (timeout, self.proxy.log()[-3000:]))

    def assert_all_gone(self, pids, timeout=2.0):
        harness.wait_until(lambda: not any(alive(p) for p in pids), timeout)
        self.assertEqual([p for p in pids if alive(p)], [], "processes left behind")

    def wait_backend_requests(self, backend, count, timeout=5.0):
        self.assertTrue(harness.wait_until(lambda: len(backend.requests) >= count, timeout),
                        "the backend never received the request")


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
        # itself); the last reload's draining workers stay.
        log = self.proxy.log()
        killed = {int(pid) for pid in re.findall(
            r"worker (\d+) stopped at once \(SIGKILL\): the oldest of 2 draining workers, "
            r"at most 2 drain at once", log)}
        older = generations[0] | generations[1] | generations[2]
        self.assertGreaterEqual(len(killed), 2, log[-3000:])
        self.assertLessEqual(killed, older, log[-3000:])
        self.assertFalse(any(alive(pid) for pid in older), log[-3000:])
        self.assertTrue(all(alive(pid) for pid in generations[3]), log[-3000:])
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


class ReadinessTest(ProcessTestCase):
    def notify_socket(self, abstract):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        if abstract:
            name = "hipache-test-%d-%d" % (os.getpid(), time.monotonic_ns())
            sock.bind("\0" + name)
            return sock, "@" + name
        path = os.path.join(self.workdir, "notify.sock")
        sock.bind(path)
        return sock, path

    def receive_until(self, sock, wanted, timeout):
        """Reads datagrams until one has the line `wanted`; returns all received."""
        messages = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            sock.settimeout(max(0.01, deadline - time.time()))
            try:
                data = sock.recv(4096).decode()
            except socket.timeout:
                break
            messages.append(data)
            if wanted in data.split("\n"):
                return messages
        self.fail("no %r within %.0f s; received %s\n%s"
                  % (wanted, timeout, messages, self.proxy.log()[-3000:]))

    def check_notify(self, abstract):
        backend = self.backend()
        self.route(backend)
        sock, address = self.notify_socket(abstract)
        cfg = self.config(workers=3, gracefulWait=5)
        self.proxy = NotifyProxy(cfg, self.workdir, {"NOTIFY_SOCKET": address})
        messages = self.receive_until(sock, "READY=1", harness.STARTUP_TIMEOUT)
        # READY=1 means every worker listens: no waiting, no retry from here on.
        self.assertEqual(len(self.workers()), 3, "READY=1 before all workers started")
        status, _, _ = self.request("GET", "/", host=self.HOST)
        self.assertEqual(status, 200)
        self.assertIn("MAINPID=%d" % self.master(), messages[-1].split("\n"))
        self.assertIn("worker(s) ready", self.proxy.log())

        # SIGHUP: RELOADING=1, then READY=1 again once the new workers are up.
        old = self.workers()
        self.proxy.signal(signal.SIGHUP)
        messages = self.receive_until(sock, "RELOADING=1", 5)
        messages = self.receive_until(sock, "READY=1", 10)
        self.assertEqual(len(self.workers() - old), 3)

        self.proxy.signal(signal.SIGTERM)
        self.receive_until(sock, "STOPPING=1", 5)
        self.assertEqual(self.wait_exit(10), 0)

    def test_ready_and_stopping_on_a_filesystem_socket(self):
        self.check_notify(abstract=False)

    def test_ready_on_an_abstract_socket(self):
        self.check_notify(abstract=True)


class PrivilegesTest(ProcessTestCase):
    USER = "hipache-test-user"

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("needs root to drop privileges")
        if shutil.which("useradd") is None or shutil.which("userdel") is None:
            self.skipTest("useradd/userdel missing")
        with contextlib.suppress(KeyError):
            pwd.getpwnam(self.USER)
            subprocess.run(["userdel", self.USER], check=False, capture_output=True)
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        self.USER], check=True, capture_output=True)
        # Cleanups run after tearDown, which stops the proxy first (userdel refuses users
        # with running processes).
        self.addCleanup(subprocess.run, ["userdel", self.USER], check=False, capture_output=True)
        self.account = pwd.getpwnam(self.USER)

    def privileged_port(self):
        """A free port below 1024: only root can bind it (unless the sysctl says otherwise)."""
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            limit = int(f.read())
        for port in range(min(limit, 1024) - 1, 500, -1):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                    return port
                except OSError:
                    continue
        return None

    def test_workers_run_as_the_configured_user_and_still_listen(self):
        backend = self.backend()
        self.route(backend)
        # The worker opens the access log after the drop: a directory the user can write.
        os.chmod(self.workdir, 0o755)
        logs = os.path.join(self.workdir, "logs")
        os.mkdir(logs)
        os.chmod(logs, 0o777)
        self.access_log_path = os.path.join(logs, "access.log")
        cfg = self.config(workers=2)
        cfg["user"] = self.USER
        port = self.privileged_port()
        if port is not None:
            cfg["http"]["port"] = port  # proves the bind happened before the drop
        self.start_proxy(cfg)
        os.chmod(self.proxy.config_path, 0o644)
        workers = self.wait_for_workers(2)
        uid, gid = self.account.pw_uid, self.account.pw_gid
        for pid in workers | {self.master()}:
            self.assertEqual(status_ids(pid, "Uid"), [uid] * 4, "pid %d" % pid)
            self.assertEqual(status_ids(pid, "Gid"), [gid] * 4, "pid %d" % pid)
        self.assertTrue(listening_by_process(self.proxy.port, self.master()))
        for _ in range(10):
            status, _, _ = self.request("GET", "/", host=self.HOST)
            self.assertEqual(status, 200)
        lines = self.access_log_lines(expected=10)
        self.assertEqual(len(lines), 10)
        self.assertEqual(os.stat(self.access_log_path).st_uid, uid)
        self.assertIn("running as user %s" % self.USER, self.proxy.log())


if __name__ == "__main__":
    unittest.main()
