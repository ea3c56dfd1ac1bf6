"""The process model (SPEC section 9), running as a service: sd_notify readiness (READY=1,
STOPPING=1; filesystem and abstract sockets) and the privilege drop to the configured user.
Everything here looks at real processes through /proc.

Run: HIPACHE_BINARY=/path/to/hipache python3 -m unittest -v test_process_service
"""
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import unittest

import harness
from process_helpers import ProcessTestCase, listening_by_process


def status_ids(pid, key):
    """The ids of the Uid:/Gid: line of /proc/<pid>/status: [real, effective, saved, fs]."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError("no %s line for pid %d" % (key, pid))


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

        # SIGUSR2: the same PID re-executes its binary: RELOADING=1, then READY=1 (MAINPID
        # unchanged) once the new image's workers are up; the old ones then drain.
        old = self.workers()
        master = self.master()
        self.proxy.signal(signal.SIGUSR2)
        self.receive_until(sock, "RELOADING=1", 10)
        messages = self.receive_until(sock, "READY=1", 20)
        self.assertIn("MAINPID=%d" % master, messages[-1].split("\n"))
        self.assertEqual(self.master(), master)
        self.assertTrue(harness.wait_until(lambda: not self.workers() & old, 10),
                        "old workers still there after the upgrade")
        self.assertEqual(len(self.workers()), 3)

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
