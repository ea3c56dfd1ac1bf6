"""What the process-model tests (test_process_*.py) share: /proc readers (process state, children,
which process holds which sockets), request load in threads, one request in flight, and
ProcessTestCase (the master, its workers, one routed echo backend).
"""
import contextlib
import http.client
import os
import subprocess
import threading
import time

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
    """The live (non-zombie) child pids of parent, from /proc/<pid>/task/*/children (a child
    forked by any thread of parent counts)."""
    found = set()
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in os.listdir("/proc/%d/task" % parent):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                with open("/proc/%d/task/%s/children" % (parent, task)) as f:
                    found.update(int(p) for p in f.read().split())
    return {pid for pid in found if alive(pid)}

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


# --------------------------------------------------------------------------- base class

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
