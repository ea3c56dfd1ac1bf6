"""What the TLS tests (test_tls_*.py) share: reading a peer certificate's names, the master's
workers, and TlsTestCase, which configures the https section, starts the proxy on it and opens
TLS clients against it (trusting only the test root CA).
"""
import contextlib
import http.client
import os
import shutil
import signal
import socket
import ssl

import harness
from process_helpers import children
from tls_pki import shared_pki


def names_of(peer_cert):
    """(common name, [DNS subjectAltNames]) of a getpeercert() dict."""
    common_name = None
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                common_name = value
    alt = [value for kind, value in peer_cert.get("subjectAltName", ()) if kind == "DNS"]
    return common_name, alt


# --------------------------------------------------------------------------- base class

class TlsTestCase(harness.ProxyTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = shared_pki()

    # ---- configuration

    def tls_config(self, workers=1, server=None, **https):
        config = self.config(workers=workers, **(server or {}))
        port = harness.free_port()
        while port == config["http"]["port"]:
            port = harness.free_port()
        self.https_port = port
        section = {"bind": ["127.0.0.1"], "port": port, "key": self.pki.leaf_key,
                   "cert": self.pki.leaf, "ca": [self.pki.inter]}
        section.update(https)
        config["https"] = section
        return config

    def cert_dir(self, *files):
        directory = os.path.join(self.workdir, "certs")
        os.makedirs(directory, exist_ok=True)
        for file in files:
            shutil.copy(file, directory)
        return directory

    def start_tls_proxy(self, config):
        proxy = self.start_proxy(config)
        harness.wait_for_port(self.https_port, process=proxy.process)
        return proxy

    def echo_frontend(self, host="secure.test"):
        backend = self.http_backend("plain")
        self.redis.rpush("frontend:" + host, "tls-site", backend.url)
        return backend

    # ---- clients

    def client_context(self, verify=True, check_hostname=True, minimum=None, maximum=None):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            context.load_verify_locations(cafile=self.pki.root)
            context.check_hostname = check_hostname
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if minimum is not None:
            context.minimum_version = minimum
        if maximum is not None:
            context.maximum_version = maximum
        return context

    def tls_connect(self, server_hostname="secure.test", context=None, session=None, port=None,
                    timeout=10):
        context = context or self.client_context()
        raw = socket.create_connection(("127.0.0.1", port or self.https_port), timeout=timeout)
        try:
            return context.wrap_socket(raw, server_hostname=server_hostname, session=session)
        except BaseException:
            raw.close()
            raise

    def https_get(self, host="secure.test", path="/", server_hostname="secure.test",
                  context=None, session=None, port=None, headers=None):
        """One request on a fresh TLS connection. Returns (status, headers, body, tls info)."""
        sock = self.tls_connect(server_hostname, context, session, port)
        try:
            lines = ["GET %s HTTP/1.1" % path, "Host: " + host, "Connection: close"]
            lines += ["%s: %s" % item for item in (headers or {}).items()]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            response = http.client.HTTPResponse(sock)
            response.begin()
            body = response.read()
            info = {"version": sock.version(), "reused": sock.session_reused,
                    "session": sock.session, "cipher": sock.cipher()[0],
                    "alpn": sock.selected_alpn_protocol(), "cert": sock.getpeercert()}
            return (response.status, {k.lower(): v for k, v in response.getheaders()}, body,
                    info)
        finally:
            sock.close()

    def peer_names(self, server_hostname, port=None):
        """(CN, SAN DNS names) of the certificate served for this SNI (verified against the
        root CA, host name not checked)."""
        context = self.client_context(check_hostname=False)
        with self.tls_connect(server_hostname, context, port=port) as sock:
            return names_of(sock.getpeercert())

    def handshake_error(self, context, server_hostname="secure.test", port=None):
        """The SSLError of a refused handshake, or None when it succeeded."""
        try:
            with self.tls_connect(server_hostname, context, port=port) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n")
                sock.recv(1)
                return None
        except ssl.SSLError as error:
            return error
        except (ConnectionResetError, BrokenPipeError) as error:
            return error

    def workers(self, count):
        pids = harness.wait_until(
            lambda: (lambda c: c if len(c) == count else None)(sorted(children(self.proxy.process.pid))),
            timeout=10)
        self.assertEqual(len(pids or []), count, "expected %d workers" % count)
        return pids

    @contextlib.contextmanager
    def only_worker(self, pid, all_workers):
        """Stops every other worker, so that new connections are accepted by `pid`."""
        others = [p for p in all_workers if p != pid]
        for other in others:
            os.kill(other, signal.SIGSTOP)
        try:
            yield
        finally:
            for other in others:
                os.kill(other, signal.SIGCONT)
