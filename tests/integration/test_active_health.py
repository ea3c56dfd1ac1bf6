"""Active health checks (server.activeHealthCheck, docs/operations.md), on the real binary with a
real Redis and real backends: the checker hears a proxy's report on the `dead` channel, keeps the
backend in the dead set while it fails and takes it out once it answers; two nodes on one Redis
check a backend once (the lock in the `hchecker` hash), a lock left behind expires; prefixed keys
in another database; a wildcard frontend; https:// backends checked with the proxy's own TLS
verification; hchecker_ping; hostile `dead` messages.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_active_health
"""
import json
import os
import signal
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness
import process_helpers
import test_tls_backends
from tls_pki import shared_pki, tearDownModule  # noqa: F401 (unittest runs it)

CHECK_AGENT = "hipache-health-check/"
# Short enough for a test, long enough for a loaded machine (a check may wait its turn).
CHECK = {"interval": 0.2, "timeout": 2, "lockTtl": 3}
WAIT = 20  # s: the longest any one expected change may take (the proxy polls hchecker_ping
#            every 5 s)


class SwitchHandler(BaseHTTPRequestHandler):
    """200 while the backend is up, 502 while it is down; records every request. (A 500 would not
    be reported by a proxy while an active checker runs: SPEC section 6.)"""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _handle(self):
        server = self.server
        with server.lock:
            server.requests.append({"method": self.command, "path": self.path,
                                    "host": self.headers.get("Host"),
                                    "agent": self.headers.get("User-Agent", "")})
        status = 200 if server.up else 502
        body = server.name.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _handle


class SwitchBackend:
    def __init__(self, name):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), SwitchHandler)
        self.server.daemon_threads = True
        self.server.requests = []
        self.server.lock = threading.Lock()
        self.server.up = True
        self.server.name = name
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set_up(self, up):
        self.server.up = up

    def requests(self):
        with self.server.lock:
            return list(self.server.requests)

    def checks(self):
        return [r for r in self.requests() if r["agent"].startswith(CHECK_AGENT)]

    def proxied(self):
        return [r for r in self.requests() if not r["agent"].startswith(CHECK_AGENT)]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class ActiveHealthTestCase(harness.ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.sub = self.redis_server.subscribe("dead")
        self._stoppers.append(self.sub.close)
        self.extra_proxies = []

    def tearDown(self):
        for proxy in self.extra_proxies:
            proxy.stop()
        super().tearDown()

    def backend(self, name):
        backend = SwitchBackend(name)
        self._stoppers.append(backend.stop)
        return backend

    def checked_config(self, driver=None, **check):
        settings = dict(CHECK)
        settings.update(check)
        config = self.config(activeHealthCheck=settings)
        if driver:
            config["driver"] = driver
        return config

    def wait_for(self, predicate, what, timeout=WAIT):
        value = harness.wait_until(predicate, timeout, 0.05)
        self.assertTrue(value, "still not the case after %d s: %s" % (timeout, what))
        return value

    def wait_passive_off(self, proxy):
        self.wait_for(lambda: "passive health checks off" in proxy.log(),
                      "the proxy saw hchecker_ping")

    def report(self, host, backend_url, index, count, client=None):
        """PUBLISH on `dead` what a proxy publishes when it marks a backend dead."""
        (client or self.redis).publish("dead", "%s;%s;%d;%d" % (host, backend_url, index, count))

    def provoke_report(self, host, backend):
        """Requests `host` until the proxy reports `backend` on the `dead` channel."""
        def reported():
            status, _, _ = self.request("GET", "/", host=host)
            self.assertIn(status, (200, 502))
            return any(";%s;" % backend.url in m for m in self.sub.messages)
        self.wait_for(reported, "a proxy reported %s" % backend.url)

    def checker_of(self, proxy, listening=1):
        """The pid of the proxy's health checker (its child that is not a worker), once
        `listening` checkers in all are subscribed to the `dead` channel (a report published
        before would reach nobody)."""
        def find():
            found = [pid for pid in process_helpers.children(proxy.process.pid)
                     if "health checker %d started" % pid in proxy.log()]
            return found[0] if len(found) == 1 else None
        pid = self.wait_for(find, "the health checker process started")
        # The test's own subscription is one of the channel's subscribers.
        self.wait_for(lambda: self.redis.pubsub("NUMSUB", "dead")[1] >= 1 + listening,
                      "%d checker(s) subscribed to `dead`" % listening)
        return pid


class CheckLifecycle(ActiveHealthTestCase):
    def test_marked_kept_dead_while_down_and_revived(self):
        proxy = self.start_proxy(self.checked_config())
        self.wait_passive_off(proxy)
        ping = int(self.redis.get("hchecker_ping"))
        self.assertLess(abs(ping - time.time()), 60)
        sick, good = self.backend("sick"), self.backend("good")
        self.redis.rpush("frontend:app.test", "app", sick.url, good.url)
        sick.set_up(False)
        self.provoke_report("app.test", sick)
        # The proxy left the SADD to the checker (passive checks off): the checker wrote it.
        self.wait_for(lambda: self.redis.smembers("dead:app.test") == ["0"], "checker marked 0")
        self.assertGreater(self.redis.ttl("dead:app.test"), 0)
        check = sick.checks()[0]
        self.assertEqual((check["method"], check["path"], check["host"]), ("HEAD", "/", "app.test"))
        self.assertEqual(good.checks(), [])
        # Still dead after more checks: kept in the set, with a TTL.
        seen = len(sick.checks())
        self.wait_for(lambda: len(sick.checks()) >= seen + 5, "more checks of the sick backend")
        self.assertEqual(self.redis.smembers("dead:app.test"), ["0"])
        self.assertGreater(self.redis.ttl("dead:app.test"), 0)
        proxied_before = len(sick.proxied())
        for _ in range(10):
            status, _, body = self.request("GET", "/", host="app.test")
            self.assertEqual((status, body), (200, b"good"))
        self.assertEqual(len(sick.proxied()), proxied_before)
        # Back: the mark goes, and requests reach it again.
        sick.set_up(True)
        self.wait_for(lambda: self.redis.smembers("dead:app.test") == [], "the mark removed")

        def routed_to_sick():
            _, _, body = self.request("GET", "/", host="app.test")
            return body == b"sick"
        self.wait_for(routed_to_sick, "a request routed to the revived backend")
        lock = self.redis.hget("hchecker", sick.url)
        self.assertTrue(lock.startswith("hipache:"), lock)

    def test_refused_backend_and_a_restart_on_the_same_port(self):
        proxy = self.start_proxy(self.checked_config(method="GET", path="/health", host="probe"))
        self.wait_passive_off(proxy)
        sick, good = self.backend("sick"), self.backend("good")
        port = int(sick.url.rsplit(":", 1)[1])
        self.redis.rpush("frontend:app.test", "app", sick.url, good.url)
        sick.stop()  # connection refused from now on
        self.provoke_report("app.test", sick)
        self.wait_for(lambda: self.redis.smembers("dead:app.test") == ["0"], "checker marked 0")
        server = ThreadingHTTPServer(("127.0.0.1", port), SwitchHandler)
        server.daemon_threads, server.requests, server.lock = True, [], threading.Lock()
        server.up, server.name = True, "sick"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._stoppers.append(server.server_close)
        self._stoppers.append(server.shutdown)
        self.wait_for(lambda: self.redis.smembers("dead:app.test") == [], "the mark removed")
        check = [r for r in server.requests if r["agent"].startswith(CHECK_AGENT)][0]
        self.assertEqual((check["method"], check["path"], check["host"]),
                         ("GET", "/health", "probe"))

    def test_off_by_default(self):
        proxy = self.start_proxy()
        self.assertEqual(len(process_helpers.children(proxy.process.pid)), 1)  # the worker
        self.assertNotIn("health checker", proxy.log())
        self.assertIsNone(self.redis.get("hchecker_ping"))

    def test_hostile_dead_messages_leave_the_checker_running(self):
        proxy = self.start_proxy(self.checked_config())
        checker = self.checker_of(proxy)
        sick, good = self.backend("sick"), self.backend("good")
        self.redis.rpush("frontend:app.test", "app", sick.url, good.url)
        for payload in ["", ";;;", "x", "app.test;%s;9;2" % sick.url, "app.test;%s;0;1" % sick.url,
                        "app.test;ftp://x;0;2", "a\r\nb;%s;0;2" % sick.url, "\x00" * 100,
                        "app.test;%s;99999999999999999999;2" % sick.url, "é;%s;0;2" % sick.url,
                        "app.test;%s;0;2" % ("http://x/" + "a" * 100000)]:
            self.redis.publish("dead", payload)
        # A report about a backend the frontend does not list there: not checked.
        self.report("app.test", good.url, 0, 2)
        sick.set_up(False)
        self.report("app.test", sick.url, 0, 2)
        self.wait_for(lambda: self.redis.smembers("dead:app.test") == ["0"], "checker marked 0")
        self.assertEqual(good.checks(), [])
        self.assertEqual(self.redis.hkeys("hchecker"), [sick.url])
        self.assertTrue(process_helpers.alive(checker))
        self.assertNotIn("health checker %d exited" % checker, proxy.log())

    def test_reload_restarts_the_checker_with_the_new_settings(self):
        config = self.checked_config()
        proxy = self.start_proxy(config)
        old = self.checker_of(proxy)
        sick, good = self.backend("sick"), self.backend("good")
        self.redis.rpush("frontend:app.test", "app", sick.url, good.url)
        config["server"]["activeHealthCheck"]["path"] = "/after-reload"
        with open(proxy.config_path, "w") as f:
            json.dump(config, f)
        proxy.signal(signal.SIGHUP)
        self.wait_for(lambda: not process_helpers.alive(old), "the old checker gone")
        new = self.checker_of(proxy)
        self.assertNotEqual(new, old)
        sick.set_up(False)
        self.report("app.test", sick.url, 0, 2)
        self.wait_for(lambda: self.redis.smembers("dead:app.test") == ["0"], "checker marked 0")
        self.assertEqual({c["path"] for c in sick.checks()}, {"/after-reload"})

    def test_upgrade_starts_a_checker_in_the_new_image(self):
        proxy = self.start_proxy(self.checked_config())
        old = self.checker_of(proxy)
        sick, good = self.backend("sick"), self.backend("good")
        self.redis.rpush("frontend:app.test", "app", sick.url, good.url)
        sick.set_up(False)
        self.report("app.test", sick.url, 0, 2)
        self.wait_for(lambda: self.redis.hget("hchecker", sick.url), "the lock taken")
        proxy.signal(signal.SIGUSR2)
        self.wait_for(lambda: "upgrade complete" in proxy.log(), "the upgrade done")
        # The old image's checker let its lock go and was reaped by the new image.
        self.wait_for(lambda: not process_helpers.alive(old), "the old checker gone")
        self.wait_for(lambda: self.redis.hget("hchecker", sick.url) is None, "its lock gone")
        new = self.checker_of(proxy)
        self.assertNotEqual(new, old)
        self.report("app.test", sick.url, 0, 2)
        self.wait_for(lambda: "#%d;" % new in (self.redis.hget("hchecker", sick.url) or ""),
                      "the new checker took the backend")

    def test_stop_lets_the_locks_go(self):
        proxy = self.start_proxy(self.checked_config())
        checker = self.checker_of(proxy)
        sick, good = self.backend("sick"), self.backend("good")
        self.redis.rpush("frontend:app.test", "app", sick.url, good.url)
        sick.set_up(False)
        self.report("app.test", sick.url, 0, 2)
        self.wait_for(lambda: self.redis.hget("hchecker", sick.url), "the lock taken")
        proxy.stop()
        self.assertFalse(process_helpers.alive(checker))
        self.assertIsNone(self.redis.hget("hchecker", sick.url))


class Fleet(ActiveHealthTestCase):
    def second_proxy(self, config):
        workdir = os.path.join(self.workdir, "node-b")
        os.mkdir(workdir)
        proxy = harness.Proxy(config, workdir)
        self.extra_proxies.append(proxy)
        return proxy

    def test_two_nodes_check_a_backend_once(self):
        node_a = self.start_proxy(self.checked_config())
        node_b = self.second_proxy(self.checked_config())
        pids = {self.checker_of(node_a), self.checker_of(node_b, listening=2)}
        sick, good = self.backend("sick"), self.backend("good")
        self.redis.rpush("frontend:app.test", "app", sick.url, good.url)
        sick.set_up(False)
        # Both checkers hear every report; one takes the lock.
        self.report("app.test", sick.url, 0, 2)
        self.report("app.test", sick.url, 0, 2)
        self.wait_for(lambda: len(sick.checks()) >= 10, "ten checks of the sick backend")
        agents = {c["agent"] for c in sick.checks()}
        self.assertEqual(len(agents), 1, agents)
        owner = self.redis.hget("hchecker", sick.url).rsplit(";", 1)[0]
        self.assertIn("(%s)" % owner, agents.pop())
        checking = int(owner.rsplit("#", 1)[1])
        self.assertIn(checking, pids)
        # That checker dies without letting its lock go: once the lock expires, the next report
        # is taken by another checker (the other node's, or the one its master starts anew).
        os.kill(checking, signal.SIGKILL)
        count = len(sick.checks())
        # Its master restarts it.
        self.wait_for(lambda: any("health checker %d killed by signal 9" % checking in p.log()
                                  and p.log().count("health checker") >= 3
                                  for p in (node_a, node_b)), "the dead checker restarted")

        def taken_over():
            self.report("app.test", sick.url, 0, 2)
            value = self.redis.hget("hchecker", sick.url) or ""
            return not value.startswith(owner + ";") and len(sick.checks()) > count
        self.wait_for(taken_over, "another checker took the backend over")
        self.assertEqual(self.redis.smembers("dead:app.test"), ["0"])
        sick.set_up(True)
        self.wait_for(lambda: self.redis.smembers("dead:app.test") == [], "the mark removed")

    def test_a_backend_locked_by_hchecker_is_left_to_it(self):
        proxy = self.start_proxy(self.checked_config())
        self.checker_of(proxy)
        theirs, ours = self.backend("theirs"), self.backend("ours")
        self.redis.rpush("frontend:app.test", "app", theirs.url, ours.url)
        theirs.set_up(False)
        ours.set_up(False)
        self.redis.hset("hchecker", theirs.url, "box#77;%d.5" % int(time.time()))
        self.report("app.test", theirs.url, 0, 2)
        self.report("app.test", ours.url, 1, 2)
        self.wait_for(lambda: self.redis.smembers("dead:app.test") == ["1"], "ours marked")
        self.assertEqual(theirs.checks(), [])
        self.assertTrue(self.redis.hget("hchecker", theirs.url).startswith("box#77;"))


class KeysAndFrontends(ActiveHealthTestCase):
    def test_prefix_and_database(self):
        db3 = harness.RedisClient(self.redis_server.port, db=3)
        self._stoppers.append(db3.close)
        driver = self.redis_server.url(db=3, prefix="pfx:")
        proxy = self.start_proxy(self.checked_config(driver=driver))
        self.wait_passive_off(proxy)  # the proxy reads hchecker_ping in its own database
        self.assertIsNotNone(db3.get("hchecker_ping"))
        sick, good = self.backend("sick"), self.backend("good")
        db3.rpush("pfx:frontend:app.test", "app", sick.url, good.url)
        # The same host in database 0 without the prefix: another deployment's, not checked.
        other = self.backend("other")
        other.set_up(False)
        self.redis.rpush("frontend:other.test", "o", other.url, good.url)
        self.report("other.test", other.url, 0, 2)
        sick.set_up(False)
        self.provoke_report("app.test", sick)
        self.wait_for(lambda: db3.smembers("pfx:dead:app.test") == ["0"], "checker marked 0")
        self.assertGreater(db3.ttl("pfx:dead:app.test"), 0)
        self.assertTrue(db3.hget("pfx:hchecker", sick.url).startswith("hipache:"))
        self.assertEqual(other.checks(), [])
        self.assertEqual(sorted(self.redis.keys("*")), ["frontend:other.test"])
        sick.set_up(True)
        self.wait_for(lambda: db3.smembers("pfx:dead:app.test") == [], "the mark removed")

    def test_wildcard_frontend(self):
        proxy = self.start_proxy(self.checked_config())
        self.wait_passive_off(proxy)
        sick, good = self.backend("sick"), self.backend("good")
        self.redis.rpush("frontend:*.wild.test", "wild", sick.url, good.url)
        sick.set_up(False)
        self.provoke_report("a.wild.test", sick)
        # The set the proxy reads for that host (SPEC section 4: the exact host's).
        self.wait_for(lambda: self.redis.smembers("dead:a.wild.test") == ["0"],
                      "checker marked 0 for a.wild.test")
        self.assertEqual(sick.checks()[0]["host"], "a.wild.test")
        proxied_before = len(sick.proxied())
        for _ in range(10):
            status, _, body = self.request("GET", "/", host="a.wild.test")
            self.assertEqual((status, body), (200, b"good"))
        self.assertEqual(len(sick.proxied()), proxied_before)
        sick.set_up(True)
        self.wait_for(lambda: self.redis.smembers("dead:a.wild.test") == [], "the mark removed")


class HttpsBackends(ActiveHealthTestCase):
    trust_store = test_tls_backends.HttpsBackendTest.trust_store

    def test_checked_over_tls_verified_like_proxying(self):
        pki = shared_pki()
        trusted = test_tls_backends.TlsEchoBackend(pki.ip, pki.ip_key)
        untrusted = test_tls_backends.TlsEchoBackend(pki.self_signed, pki.self_signed_key)
        self._stoppers += [trusted.stop, untrusted.stop]
        urls = ["https://127.0.0.1:%d" % b.port for b in (trusted, untrusted)]
        self.redis.rpush("frontend:secure.test", "tls", *urls)
        with self.trust_store(pki.root):
            proxy = self.start_proxy(self.checked_config())
        self.checker_of(proxy)
        self.report("secure.test", urls[1], 1, 2)
        self.report("secure.test", urls[0], 0, 2)
        # The self-signed one fails verification (as a proxied request would): kept dead.
        self.wait_for(lambda: self.redis.smembers("dead:secure.test") == ["1"], "1 marked")
        self.wait_for(lambda: untrusted.handshake_failures, "a refused handshake")
        self.assertEqual(untrusted.requests, [])
        # The one the trust store verifies is checked over TLS, and stays alive.
        self.wait_for(lambda: len(trusted.requests) >= 3, "checks of the trusted backend")
        check = trusted.requests[0]
        self.assertEqual(check["method"], "HEAD")
        self.assertTrue(check["headers"]["User-Agent"].startswith(CHECK_AGENT))
        self.assertTrue(trusted.handshakes[0].startswith("TLSv1."))
        self.assertEqual(self.redis.smembers("dead:secure.test"), ["1"])


if __name__ == "__main__":
    unittest.main()
