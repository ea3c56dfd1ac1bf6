"""HTTPS through the real binary (SPEC section 2, https keys), serving: requests over TLS
beside plain http in the same workers, the intermediate sent from `ca`, ALPN, per-bind
overrides, certificates chosen by SNI (reloaded from certDir on SIGHUP) and session resumption
across workers.

Certificates: tls_pki.py. Standard library only (ssl, socket, subprocess); loopback only.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_tls_serving
"""
import contextlib
import http.client
import json
import os
import shutil
import signal
import ssl
import unittest

import harness
from tls_helpers import TlsTestCase, names_of
from tls_pki import tearDownModule  # noqa: F401 (unittest runs it: the certificates go)


# --------------------------------------------------------------------------- /proc

def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def listening_inode(port):
    """Inode of the IPv4 socket listening on 127.0.0.1:port (from /proc/net/tcp)."""
    wanted = "0100007F:%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":
                return fields[9]
    return None


def connection_inode(server_port, client_port):
    """Inode of the server side of the established loopback connection client_port -> server_port."""
    local, remote = "0100007F:%04X" % server_port, "0100007F:%04X" % client_port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return fields[9]
    return None


def socket_inodes(pid):
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            target = os.readlink(os.path.join(fd_dir, fd))
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    return inodes


class HttpsServingTest(TlsTestCase):
    def test_https_request_reaches_backend_with_forwarded_headers(self):
        backend = self.echo_frontend()
        self.start_tls_proxy(self.tls_config(workers=2))
        status, _, body, info = self.https_get(path="/over-tls")
        self.assertEqual(status, 200, body)
        seen = json.loads(body)
        self.assertEqual(seen["path"], "/over-tls")
        self.assertEqual(seen["headers"].get("X-Forwarded-Proto"), "https")
        self.assertEqual(seen["headers"].get("X-Forwarded-Protocol"), "https")
        self.assertEqual(seen["headers"].get("X-Forwarded-Port"), str(self.https_port))
        self.assertEqual(seen["headers"].get("Host"), "secure.test")
        # plain http on the same proxy
        status, _, body = self.request("GET", "/over-http", host="secure.test")
        self.assertEqual(status, 200, body)
        seen = json.loads(body)
        self.assertEqual(seen["headers"].get("X-Forwarded-Proto"), "http")
        self.assertEqual(seen["headers"].get("X-Forwarded-Port"), str(self.proxy.port))
        self.assertEqual(len(backend.requests), 2)
        # The same workers serve both: every worker holds both listening sockets.
        http_inode = listening_inode(self.proxy.port)
        https_inode = listening_inode(self.https_port)
        self.assertIsNotNone(http_inode)
        self.assertIsNotNone(https_inode)
        for pid in self.workers(2):
            inodes = socket_inodes(pid)
            self.assertIn(http_inode, inodes, "worker %d has no http listener" % pid)
            self.assertIn(https_inode, inodes, "worker %d has no https listener" % pid)

    def test_keep_alive_connections_the_clients_close_are_closed(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config())
        request = b"GET / HTTP/1.1\r\nHost: secure.test\r\n\r\n"

        def kept_alive():
            sock = self.tls_connect()
            sock.sendall(request)
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            self.assertEqual(response.status, 200)
            self.assertFalse(response.will_close)
            return sock

        kept = kept_alive()
        closing = [kept_alive() for _ in range(4)]
        for sock in closing:
            sock.close()
        harness.wait_until(lambda: harness.half_closed_by_peer(self.https_port) == 0, timeout=3)
        self.assertEqual(harness.half_closed_by_peer(self.https_port), 0,
                         "TLS connections closed by their clients left open")
        kept.sendall(request)
        response = http.client.HTTPResponse(kept)
        response.begin()
        self.assertEqual(response.status, 200, "the open connection was closed")
        kept.close()

    def test_intermediate_from_ca_completes_the_chain(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config())
        # A client trusting only the root CA, checking the host name.
        status, _, _, info = self.https_get(context=self.client_context())
        self.assertEqual(status, 200)
        self.assertEqual(names_of(info["cert"]), ("secure.test", ["secure.test"]))

    def test_alpn_selects_h2_first_then_http11(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config())
        context = self.client_context()
        context.set_alpn_protocols(["h2", "http/1.1"])
        with self.tls_connect(context=context) as s:
            self.assertEqual(s.selected_alpn_protocol(), "h2")
        context = self.client_context()
        context.set_alpn_protocols(["http/1.1"])
        status, _, _, info = self.https_get(context=context)
        self.assertEqual((status, info["alpn"]), (200, "http/1.1"))

    def test_alpn_selects_http11_with_http2_off(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(server={"http2": False}))
        context = self.client_context()
        context.set_alpn_protocols(["h2", "http/1.1"])
        status, _, _, info = self.https_get(context=context)
        self.assertEqual(status, 200)
        self.assertEqual(info["alpn"], "http/1.1")
        # A client offering only h2 still gets a handshake, without ALPN.
        context = self.client_context()
        context.set_alpn_protocols(["h2"])
        status, _, _, info = self.https_get(context=context)
        self.assertEqual(status, 200)
        self.assertIsNone(info["alpn"])

    def test_per_bind_overrides(self):
        self.echo_frontend()
        self.echo_frontend("exact.test")
        config = self.tls_config(ca=[])  # the section itself sends no intermediate
        ports = [self.https_port] + [harness.free_port() for _ in range(3)]
        self.assertEqual(len(set(ports + [config["http"]["port"]])), 5)
        config["https"]["bind"] = [
            "127.0.0.1",
            {"address": "127.0.0.1", "port": ports[1], "ca": [self.pki.inter]},
            {"address": "127.0.0.1", "port": ports[2], "cert": self.pki.leaf_chain},
            {"address": "127.0.0.1", "port": ports[3], "key": self.pki.exact,
             "cert": self.pki.exact, "secureProtocol": "TLSv1_2_method"},
        ]
        self.start_tls_proxy(config)
        for port in ports:
            harness.wait_for_port(port, process=self.proxy.process)
        root_only = self.client_context()
        with self.subTest("no ca: the chain is incomplete"):
            error = self.handshake_error(root_only, port=ports[0])
            self.assertIsInstance(error, ssl.SSLCertVerificationError)
        with self.subTest("bind overrides ca"):
            error = self.handshake_error(root_only, port=ports[1])
            self.assertIsNone(error, "the bind's own ca (the intermediate) was not sent: %s" % error)
            self.assertEqual(self.https_get(port=ports[1])[0], 200)
        with self.subTest("bind overrides cert with a chain file"):
            self.assertEqual(self.https_get(port=ports[2])[0], 200)
        with self.subTest("bind overrides key, cert and secureProtocol"):
            status, _, _, info = self.https_get(host="exact.test", server_hostname="exact.test",
                                                port=ports[3])
            self.assertEqual(status, 200)
            self.assertEqual(info["version"], "TLSv1.2")
            self.assertEqual(names_of(info["cert"])[0], "exact.test")
            tls13 = self.client_context(minimum=ssl.TLSVersion.TLSv1_3)
            self.assertIsNotNone(self.handshake_error(tls13, "exact.test", port=ports[3]))


class SniTest(TlsTestCase):
    def test_sni_exact_wildcard_and_default(self):
        self.echo_frontend("exact.test")
        self.start_tls_proxy(self.tls_config(
            certDir=self.cert_dir(self.pki.exact, self.pki.wild)))
        cases = [
            ("exact.test", "exact.test"),
            ("Exact.Test", "exact.test"),
            ("a.wild.test", "*.wild.test"),
            ("other-label.wild.test", "*.wild.test"),
            ("wild.test", "secure.test"),       # "*.wild.test" does not cover wild.test itself
            ("a.b.wild.test", "secure.test"),   # nor two labels
            ("other.test", "secure.test"),
            (None, "secure.test"),              # no SNI at all
        ]
        for server_name, expected in cases:
            with self.subTest(server_name=server_name):
                self.assertEqual(self.peer_names(server_name)[0], expected)
        # host name verification passes where SNI chose the certificate
        for server_name in ("exact.test", "a.wild.test"):
            with self.subTest(verified=server_name):
                with self.tls_connect(server_name, self.client_context()) as sock:
                    self.assertTrue(sock.getpeercert())
        status, _, body, info = self.https_get(host="exact.test", server_hostname="exact.test")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["headers"]["X-Forwarded-Proto"], "https")

    def test_sighup_reloads_cert_dir_and_keeps_ticket_keys(self):
        self.echo_frontend()
        directory = self.cert_dir(self.pki.exact)
        self.start_tls_proxy(self.tls_config(certDir=directory, server={"gracefulWait": 5}))
        self.assertEqual(self.peer_names("new.test")[0], "secure.test")
        self.assertEqual(self.peer_names("exact.test")[0], "exact.test")
        old_workers = self.workers(1)
        # a session from before the reload
        context = self.client_context()
        status, _, _, info = self.https_get(context=context)
        self.assertEqual(status, 200)
        session = info["session"]
        self.assertTrue(session.has_ticket)

        shutil.copy(self.pki.new, directory)
        self.proxy.signal(signal.SIGHUP)
        got = harness.wait_until(lambda: self.peer_names("new.test")[0] == "new.test",
                                 timeout=10, interval=0.1)
        self.assertTrue(got, "new.test not served after SIGHUP:\n" + self.proxy.log())
        self.assertTrue(harness.wait_until(lambda: not any(alive(p) for p in old_workers), 10),
                        "old workers still running after the reload")
        # only new workers now: the new certificate every time, the old ones still there
        for _ in range(3):
            self.assertEqual(self.peer_names("new.test")[0], "new.test")
        self.assertEqual(self.peer_names("exact.test")[0], "exact.test")
        self.assertEqual(self.peer_names("other.test")[0], "secure.test")
        # the session-ticket keys survived the reload
        status, _, _, info = self.https_get(context=context, session=session)
        self.assertEqual(status, 200)
        self.assertTrue(info["reused"], "session not resumed after SIGHUP")


class SessionResumptionTest(TlsTestCase):
    def test_session_resumption_across_workers(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(workers=2))
        workers = self.workers(2)
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with self.subTest(version=version.name):
                context = self.client_context(minimum=version, maximum=version)
                with self.only_worker(workers[0], workers):
                    status, _, _, info = self.https_get(context=context)
                self.assertEqual(status, 200)
                self.assertFalse(info["reused"])
                session = info["session"]
                self.assertTrue(session.has_ticket, "no session ticket issued")
                results = []
                for i in range(10):
                    worker = workers[i % 2]  # half of them on the worker that did not issue it
                    with self.only_worker(worker, workers):
                        with self.tls_connect(context=context, session=session) as sock:
                            # which worker holds the server side of this connection
                            inode = connection_inode(self.https_port, sock.getsockname()[1])
                            served_by = [p for p in workers if inode in socket_inodes(p)]
                            results.append((served_by, sock.session_reused))
                self.assertEqual([s for s, _ in results], [[workers[i % 2]] for i in range(10)],
                                 "connections did not reach the intended workers")
                self.assertEqual([r for _, r in results], [True] * 10,
                                 "resumed per worker: %r" % results)


if __name__ == "__main__":
    unittest.main()
