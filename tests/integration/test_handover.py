"""Lossless handovers (issue #19): under continuous keep-alive load, no request is lost when
workers are replaced (memoryLimit, SIGHUP), when the master upgrades its binary in place
(SIGUSR2), or when such an upgrade is refused; a SIGKILLed worker loses only its own
connections; TLS sessions resume across a replacement and an upgrade.

The load (keepalive_load.Load) holds one keep-alive connection per client thread and notices
every request that got no complete response, every unannounced close of an idle connection and
every failed connect. No timing is asserted: only counts, and that the event under test did
happen (new worker pids, "upgrade complete" in the log).

Run: HIPACHE_BINARY=/path/to/hipache python3 -m unittest -v test_handover
"""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import tempfile
import time
import unittest

import harness
import keepalive_load as kl

UPGRADE_TIMEOUT = 20.0


class HandoverTestCase(harness.ProxyTestCase):
    HOST = "handover.test"

    def setUp(self):
        super().setUp()
        self.loads = []
        self.watches = []
        self.binary_path = None

    def tearDown(self):
        # Clients first (they would hammer a stopping proxy), then the proxy (harness), then
        # any worker a dead master left behind (an unimplemented SIGUSR2 kills the master).
        for load in self.loads:
            load.stop()
        pids = set()
        for watch in self.watches:
            pids |= watch.stop()
        if self.proxy is not None:
            pids |= kl.children(self.master())
        try:
            super().tearDown()
        finally:
            kl.kill_leftovers(pids, self.workdir)

    # ---- setup

    def backend(self):
        backend = harness.RawBackend(kl.answer_ok)
        self._stoppers.append(backend.stop)
        self.redis.rpush("frontend:" + self.HOST, "handover", backend.url)
        return backend

    def start(self, config=None, from_copy=False, **server):
        """Starts the proxy (from a copy of the binary in a temp dir when from_copy, so that
        the test can replace that file) and waits for its workers."""
        server.setdefault("gracefulWait", 10)
        config = config or self.config(**server)
        if from_copy:
            directory = os.path.join(self.workdir, "bin")
            os.mkdir(directory)
            self.binary_path = os.path.join(directory, "hipache")
            shutil.copy2(harness.BINARY, self.binary_path)
            self.proxy = harness.Proxy(config, self.workdir, binary=self.binary_path)
        else:
            self.start_proxy(config)
        self.assertIsNone(self.proxy.process.poll(), self.proxy.log()[-3000:])
        return self.wait_for_workers(config["server"]["workers"])

    def load(self, **kwargs):
        load = kl.Load(self.proxy.port, self.HOST, **kwargs)
        self.loads.append(load)
        return load

    def watch(self):
        watch = kl.WorkerWatch(self.master())
        self.watches.append(watch)
        return watch

    # ---- processes

    def master(self):
        return self.proxy.process.pid

    def workers(self):
        return kl.children(self.master())

    def log_tail(self, size=3000):
        log = self.proxy.log()
        if len(log) > size:
            log = log[-size:].split("\n", 1)[-1]  # from a line start
        return "\n--- proxy log (tail) ---\n" + log

    def wait_for_workers(self, count, exclude=(), timeout=15.0):
        """Waits until the master has exactly `count` live children, none of them in exclude
        (so the excluded ones have exited: drained or dead)."""
        def check():
            pids = self.workers()
            return pids if len(pids) == count and not pids & set(exclude) else None
        pids = harness.wait_until(check, timeout, interval=0.02)
        self.assertTrue(pids, "expected %d workers (none of %s), have %s%s"
                        % (count, sorted(exclude), sorted(self.workers()), self.log_tail()))
        return pids

    def wait_log(self, text, timeout=UPGRADE_TIMEOUT):
        """Waits for `text` in the proxy's log; gives up early when the master exited."""
        harness.wait_until(lambda: text in self.proxy.log()
                           or self.proxy.process.poll() is not None, timeout, interval=0.05)
        exited = self.proxy.process.poll()
        self.assertTrue(text in self.proxy.log(), "no %r in the log (master %s)%s"
                        % (text, "running" if exited is None else "exited with %s" % exited,
                           self.log_tail()))

    def assert_master_serving(self, master):
        self.assertIsNone(self.proxy.process.poll(), "the master exited" + self.log_tail())
        self.assertEqual(self.master(), master)
        self.assertTrue(kl.alive(master), "the master is gone" + self.log_tail())

    # ---- load results

    def assert_lossless(self, load, minimum=200):
        self.assertGreaterEqual(load.total_ok, minimum, "too few requests to mean anything: "
                                + load.summary())
        self.assertEqual(load.total_failed, 0, load.summary() + self.log_tail())

    def run_load_for(self, load, seconds):
        """Lets the load run for `seconds`, stopping early if the master dies."""
        end = time.time() + seconds
        while time.time() < end and self.proxy.process.poll() is None:
            time.sleep(0.1)


# --------------------------------------------------------------------------- replacements

class MemoryLimitReplacementTest(HandoverTestCase):
    def test_a_replacement_every_second_loses_no_request(self):
        # A 1 MB limit is below any worker's RSS: every check (every second) replaces both.
        self.backend()
        initial = self.start(workers=2, memoryLimit=1, memoryCheckInterval=1)
        watch = self.watch()
        load = self.load(back_to_back=4, pausing=4, connectors=1)
        self.run_load_for(load, 8)
        load.stop()
        seen = watch.stop()
        self.assert_master_serving(self.master())
        replacements = seen - initial
        self.assertGreaterEqual(len(replacements), 5, "workers were not replaced: %s -> %s%s"
                                % (sorted(initial), sorted(seen), self.log_tail()))
        self.assertGreaterEqual(len(re.findall(r"over the 1 MB limit", self.proxy.log())), 5,
                                self.log_tail())
        self.assert_lossless(load)


class ReloadUnderLoadTest(HandoverTestCase):
    def test_three_sighups_with_a_changed_config_lose_no_request(self):
        self.backend()
        config = self.config(workers=2, gracefulWait=10)
        generations = [self.start(config)]
        load = self.load(back_to_back=4, pausing=4, connectors=1)
        self.assertTrue(load.wait_for(100), load.summary())
        for i in range(1, 4):
            # A harmless change that the new workers apply: another access log file.
            config["server"]["accessLog"] = os.path.join(self.workdir, "access-%d.log" % i)
            with open(self.proxy.config_path, "w") as f:
                json.dump(config, f)
            self.proxy.signal(signal.SIGHUP)
            generations.append(self.wait_for_workers(2, exclude=set().union(*generations)))
            # Let the new generation serve, and the pausing clients park their connections on
            # it, before the next reload.
            self.assertTrue(load.wait_for(100), load.summary())
            time.sleep(1.0)
        load.stop()
        self.assert_master_serving(self.master())
        self.assertNotIn("reload refused", self.proxy.log())
        last_log = config["server"]["accessLog"]
        self.assertTrue(harness.wait_until(
            lambda: os.path.exists(last_log) and os.path.getsize(last_log) > 0, 3),
            "the last config (access log %s) was not applied" % last_log)
        self.assert_lossless(load)


# --------------------------------------------------------------------------- upgrades

class UpgradeTest(HandoverTestCase):
    def test_sigusr2_after_the_binary_was_replaced_loses_nothing(self):
        self.backend()
        old = self.start(from_copy=True, workers=2)
        master = self.master()
        self.assertEqual(kl.exe(master), os.path.realpath(self.binary_path))
        listeners = kl.listening_inodes(self.proxy.port)
        self.assertTrue(listeners)
        # Two connectors: new connections all through the upgrade.
        load = self.load(back_to_back=4, pausing=4, connectors=2)
        self.assertTrue(load.wait_for(200), load.summary())
        self.run_load_for(load, 1.0)  # every pausing connection parked on an old worker

        kl.replace_file(self.binary_path, source=harness.BINARY)
        self.assertTrue(kl.exe(master).endswith(" (deleted)"), kl.exe(master))
        connector_ok_before = load.ok["connector"]
        self.proxy.signal(signal.SIGUSR2)
        self.wait_log("upgrade complete")
        # The same pid now runs the new file (so /proc shows it again, not deleted).
        self.assertTrue(harness.wait_until(
            lambda: not (kl.exe(master) or "").endswith(" (deleted)"), 10),
            "the master still runs the replaced file: %s" % kl.exe(master))
        self.assertEqual(kl.exe(master), os.path.realpath(self.binary_path))
        self.assert_master_serving(master)
        new = self.wait_for_workers(2, exclude=old)
        self.assertFalse(new & old)
        # The connections handed over by the old workers go on being served by the new ones.
        pausing_before = load.ok["pausing"]
        self.assertTrue(load.wait_for(200), load.summary())
        self.run_load_for(load, 1.5)
        load.stop()
        self.assertGreater(load.ok["pausing"], pausing_before, load.summary())

        self.assertEqual(kl.listening_inodes(self.proxy.port), listeners,
                         "the listening sockets were closed and opened again")
        self.assertNotIn("upgrade refused", self.proxy.log())
        self.assertGreater(load.ok["connector"], connector_ok_before,
                           "no new connection was made during the upgrade: " + load.summary())
        self.assertEqual(load.failed("connector"), 0, load.summary() + self.log_tail())
        self.assert_lossless(load)


class FailedUpgradeTest(HandoverTestCase):
    def test_a_new_binary_that_cannot_start_leaves_the_old_one_serving(self):
        self.backend()
        old = self.start(from_copy=True, workers=2)
        master = self.master()
        load = self.load(back_to_back=4, pausing=4, connectors=1)
        self.assertTrue(load.wait_for(100), load.summary())

        # A "binary" that fails the master's check run (<file> --dry -c <config>).
        kl.replace_file(self.binary_path, script="#!/bin/sh\nexit 1\n")
        self.proxy.signal(signal.SIGUSR2)
        self.wait_log("upgrade refused")
        self.assertTrue(load.wait_for(200), load.summary())
        time.sleep(1.0)  # long enough for a wrongly started drain to show
        self.assert_master_serving(master)
        self.assertEqual(self.workers(), old, "workers changed on a refused upgrade"
                         + self.log_tail())
        self.assertTrue(kl.exe(master).endswith(" (deleted)"),
                        "the master does not run its old image any more: %s" % kl.exe(master))
        self.assertNotIn("upgrade complete", self.proxy.log())

        # Refused once does not mean stuck: a good file upgrades.
        kl.replace_file(self.binary_path, source=harness.BINARY)
        self.proxy.signal(signal.SIGUSR2)
        self.wait_log("upgrade complete")
        self.assert_master_serving(master)
        new = self.wait_for_workers(2, exclude=old)
        self.assertFalse(new & old)
        self.assertTrue(load.wait_for(100), load.summary())
        self.run_load_for(load, 1.0)
        load.stop()
        self.assert_lossless(load)


# --------------------------------------------------------------------------- a killed worker

class KilledWorkerTest(HandoverTestCase):
    def test_only_the_killed_workers_connections_may_fail(self):
        self.backend()
        old = self.start(workers=2)
        clients = 6
        load = self.load(back_to_back=clients)
        self.assertTrue(load.wait_for(200), load.summary())
        # The worker holding the most client connections, and which clients those are.
        held = {pid: kl.client_ports_held_by(pid, self.proxy.port) for pid in old}
        victim = max(held, key=lambda pid: len(held[pid]))
        with load.lock:
            victim_clients = {c for c, port in load.local_ports.items() if port in held[victim]}
        self.assertTrue(victim_clients, "no client connection found on a worker: %s" % held)
        os.kill(victim, signal.SIGKILL)

        fresh = self.wait_for_workers(2, exclude={victim})
        self.assertEqual(len(fresh - old), 1, "exactly one new worker: %s -> %s"
                         % (sorted(old), sorted(fresh)))
        self.assertTrue(load.wait_for(300), "requests stopped after the kill: " + load.summary())
        load.stop()
        self.assert_master_serving(self.master())
        self.assertRegex(self.proxy.log(), r"worker %d .*signal 9" % victim)
        self.assertGreaterEqual(load.total_ok, 500, load.summary())
        # Each client connection on the victim may lose its one request in flight (or find
        # its connection closed), once; nobody else may lose anything.
        failed = dict(load.failed_clients)
        self.assertLessEqual(set(failed), victim_clients,
                             "clients not on the killed worker failed (victim's: %s): %s"
                             % (sorted(victim_clients), load.summary()))
        self.assertLessEqual(load.total_failed, len(victim_clients), load.summary())
        self.assertTrue(all(n == 1 for n in failed.values()), load.summary())


# --------------------------------------------------------------------------- TLS sessions

class TlsResumptionTest(HandoverTestCase):
    VERSIONS = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cert_dir = tempfile.mkdtemp(prefix="hipache-handover-pki-")
        cls.cert, cls.key = kl.make_certificate(cls.cert_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.cert_dir, ignore_errors=True)
        super().tearDownClass()

    def tls_config(self, **server):
        server.setdefault("gracefulWait", 5)
        config = self.config(workers=2, **server)
        port = harness.free_port()
        while port == config["http"]["port"]:
            port = harness.free_port()
        self.https_port = port
        config["https"] = {"bind": ["127.0.0.1"], "port": port,
                           "key": self.key, "cert": self.cert}
        return config

    def https_get(self, context, session=None):
        """One request on a fresh TLS connection: (status, session_reused, session). The
        response is read completely first, so TLS 1.3 tickets have arrived."""
        raw = socket.create_connection(("127.0.0.1", self.https_port), timeout=10)
        with context.wrap_socket(raw, server_hostname="secure.test", session=session) as sock:
            sock.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                          % self.HOST).encode())
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
            return status, sock.session_reused, sock.session

    def sessions(self):
        """{version: (context, session)}: one fresh session per TLS version. A session can only
        be resumed through the context that made it."""
        found = {}
        for version in self.VERSIONS:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.minimum_version = context.maximum_version = version
            status, reused, session = self.https_get(context)
            self.assertEqual(status, 200)
            self.assertFalse(reused)
            self.assertTrue(session is not None and session.has_ticket,
                            "no session ticket issued (%s)" % version.name)
            found[version] = (context, session)
        return found

    def assert_resumed(self, sessions, after):
        for version, (context, session) in sessions.items():
            with self.subTest(version=version.name):
                status, reused, _ = self.https_get(context, session)
                self.assertEqual(status, 200)
                self.assertTrue(reused, "%s session not resumed after %s%s"
                                % (version.name, after, self.log_tail()))

    def test_sessions_resume_after_every_worker_was_replaced(self):
        self.backend()
        old = self.start(self.tls_config())
        harness.wait_for_port(self.https_port, process=self.proxy.process)
        sessions = self.sessions()
        self.proxy.signal(signal.SIGHUP)
        self.wait_for_workers(2, exclude=old)  # only new workers left to answer
        self.assert_resumed(sessions, "SIGHUP")

    def test_sessions_resume_after_an_upgrade(self):
        self.backend()
        old = self.start(self.tls_config(), from_copy=True)
        harness.wait_for_port(self.https_port, process=self.proxy.process)
        master = self.master()
        sessions = self.sessions()
        kl.replace_file(self.binary_path, source=harness.BINARY)
        self.proxy.signal(signal.SIGUSR2)
        self.wait_log("upgrade complete")
        self.assert_master_serving(master)
        self.wait_for_workers(2, exclude=old)
        self.assert_resumed(sessions, "SIGUSR2 upgrade")

    def test_an_idle_tls_connection_of_a_replaced_worker_answers_its_next_request(self):
        # A TLS connection cannot move to another worker: the replaced worker keeps it open for
        # a moment (proxy::kIdleTlsGrace, 2 s) and answers its next request with a close.
        self.backend()
        self.start(self.tls_config())
        harness.wait_for_port(self.https_port, process=self.proxy.process)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = kl.Connection(self.https_port, timeout=10)
        connection.sock = context.wrap_socket(connection.sock, server_hostname="secure.test")
        self.addCleanup(connection.close)
        request = ("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % self.HOST).encode()
        self.assertEqual(connection.exchange(request), (200, False))
        self.proxy.signal(signal.SIGHUP)
        self.wait_log("replaced, draining")
        time.sleep(0.5)
        self.assertEqual(connection.exchange(request), (200, True), self.log_tail())

if __name__ == "__main__":
    unittest.main()
