"""HTTPS through the real binary (SPEC section 2, https keys; section 3, https:// backends).

Certificates are made with the `openssl` command line into a temp dir once per module:

    root CA ──> intermediate CA ──> secure.test       (the configured default certificate;
                                │                      its key also exists passphrase-protected)
                                ├─> exact.test        (certDir file: cert + intermediate + key)
                                ├─> *.wild.test       (certDir file: cert + intermediate + key)
                                └─> new.test          (dropped into certDir before a SIGHUP)
    root CA ──> localhost, backend.test, IP 127.0.0.1  (https backends, trusted via SSL_CERT_FILE)
    self-signed 127.0.0.1                              (an https backend nobody can verify)

Clients trust only the root CA, so a verified handshake proves the intermediate was sent.
Standard library only (ssl, socket, subprocess); loopback only.
"""
import base64
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import warnings
from http.server import ThreadingHTTPServer

import harness

PASSPHRASE = "correct horse battery staple"
HIPACHE_DEFAULT_CIPHERS = " ".join([
    "DH+ECDSA+AESGCM EECDH+aRSA+AESGCM EECDH+ECDSA+SHA384",
    "EECDH+ ECDSA+SHA256 EECDH+a RSA+SHA384 EECDH+aRSA+SHA256",
    "EECDH+aRSA+RC4 EECDH EDH+aRSA RC4 !aNULL !eNULL !LOW !3DES",
    "!MD5 !EXP !PSK !SRP !DSS !RC4",
])
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# --------------------------------------------------------------------------- certificates

class Pki:
    """Every key and certificate the tests use, generated with the openssl CLI."""

    REQ_CONFIG = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n"
    EXTENSIONS = """
[root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[intermediate]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

    def __init__(self, directory):
        self.dir = directory
        self._write("req.cnf", self.REQ_CONFIG)
        self._write("ext.cnf", self.EXTENSIONS)
        self.root_key = self._key("root.key")
        self.root = self._self_signed("root.pem", self.root_key, "/CN=Hipache Test Root CA", "root")
        self.inter_key = self._key("inter.key")
        self.inter = self._signed("inter.pem", self.inter_key, "/CN=Hipache Test Intermediate CA",
                                  self.root, self.root_key, section="intermediate")
        # secure.test: the default certificate. The encrypted key is the original (genpkey
        # -aes256); the plain one is its decrypted copy, so both match the certificate.
        self.leaf_key_encrypted = self._key("secure.enc.key", passphrase=PASSPHRASE)
        self.leaf_key = self.path("secure.key")
        self._openssl("pkey", "-in", self.leaf_key_encrypted, "-passin", "pass:" + PASSPHRASE,
                      "-out", self.leaf_key)
        self.leaf = self._leaf("secure.pem", self.leaf_key, "secure.test", ["DNS:secure.test"])
        self.leaf_chain = self._concat("secure.chain.pem", self.leaf, self.inter)
        # SNI certificates: one PEM file each holding the chain and the private key.
        self.exact = self._sni_file("exact.test", ["DNS:exact.test"])
        self.wild = self._sni_file("*.wild.test", ["DNS:*.wild.test"], name="wild")
        self.new = self._sni_file("new.test", ["DNS:new.test"])
        # https backends
        self.localhost_key = self._key("localhost.key")
        self.localhost = self._leaf("localhost.pem", self.localhost_key, "localhost",
                                    ["DNS:localhost"], issuer=(self.root, self.root_key))
        self.backend_name_key = self._key("backend-name.key")
        self.backend_name = self._leaf("backend-name.pem", self.backend_name_key, "backend.test",
                                       ["DNS:backend.test"], issuer=(self.root, self.root_key))
        self.ip_key = self._key("ip.key")
        self.ip = self._leaf("ip.pem", self.ip_key, "127.0.0.1", ["IP:127.0.0.1"],
                             issuer=(self.root, self.root_key))
        self.self_signed_key = self._key("self-signed.key")
        self._write("self-signed.cnf",
                    "[ext]\nbasicConstraints = critical,CA:FALSE\n"
                    "subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
        self.self_signed = self._self_signed("self-signed.pem", self.self_signed_key,
                                             "/CN=127.0.0.1", "ext",
                                             extfile=self.path("self-signed.cnf"))

    def path(self, name):
        return os.path.join(self.dir, name)

    def _write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def _concat(self, name, *files):
        data = b""
        for file in files:
            with open(file, "rb") as f:
                data += f.read()
        with open(self.path(name), "wb") as f:
            f.write(data)
        return self.path(name)

    def _openssl(self, *args):
        result = subprocess.run(["openssl", *args], cwd=self.dir, capture_output=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError("openssl %s failed: %s" % (" ".join(args),
                                                          result.stderr.decode(errors="replace")))

    def _key(self, name, passphrase=None):
        args = ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", self.path(name)]
        if passphrase is not None:
            args += ["-aes256", "-pass", "pass:" + passphrase]
        self._openssl(*args)
        return self.path(name)

    def _csr(self, key, subject):
        csr = key + ".csr"
        self._openssl("req", "-new", "-config", self.path("req.cnf"), "-key", key,
                      "-subj", subject, "-out", csr)
        return csr

    def _self_signed(self, name, key, subject, section, extfile=None):
        self._openssl("x509", "-req", "-in", self._csr(key, subject), "-signkey", key,
                      "-days", "3", "-sha256", "-out", self.path(name),
                      "-extfile", extfile or self.path("ext.cnf"), "-extensions", section)
        return self.path(name)

    def _signed(self, name, key, subject, ca, ca_key, section, extfile=None):
        self._openssl("x509", "-req", "-in", self._csr(key, subject), "-CA", ca, "-CAkey", ca_key,
                      "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
                      "-days", "3", "-sha256", "-out", self.path(name),
                      "-extfile", extfile or self.path("ext.cnf"), "-extensions", section)
        return self.path(name)

    def _leaf(self, name, key, common_name, alt_names, issuer=None):
        extfile = self._write(
            name + ".cnf",
            "[leaf]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n"
            "subjectAltName = %s\n" % ",".join(alt_names))
        ca, ca_key = issuer or (self.inter, self.inter_key)
        return self._signed(name, key, "/CN=" + common_name, ca, ca_key, "leaf", extfile)

    def _sni_file(self, common_name, alt_names, name=None):
        name = name or common_name
        key = self._key(name + ".key")
        cert = self._leaf(name + ".crt", key, common_name, alt_names)
        return self._concat(name + ".pem", cert, self.inter, key)


# --------------------------------------------------------------------------- helpers

def names_of(peer_cert):
    """(common name, [DNS subjectAltNames]) of a getpeercert() dict."""
    common_name = None
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                common_name = value
    alt = [value for kind, value in peer_cert.get("subjectAltName", ()) if kind == "DNS"]
    return common_name, alt


def proc_children(pid):
    """Live child processes of pid (the workers of the master)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            children.append(int(entry))
    return sorted(children)


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


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def run_binary(config, workdir, timeout=15):
    """Runs the binary on `config` without a terminal (so nothing can prompt for a passphrase)."""
    path = os.path.join(workdir, "config-direct.json")
    with open(path, "w") as f:
        json.dump(config, f)
    try:
        return subprocess.run([harness.BINARY, "-c", path], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("the binary did not exit within %ds (waiting for a passphrase "
                             "prompt, or serving?); stderr: %r" % (timeout, e.stderr)) from e


# --------------------------------------------------------------------------- backends

class _TlsHttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer whose accepted connections are TLS (handshake done at accept)."""
    daemon_threads = True

    def get_request(self):
        sock, address = self.socket.accept()
        sock.settimeout(10)
        try:
            tls = self.tls_context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as error:
            self.handshake_failures.append(repr(error))
            sock.close()
            raise
        self.handshakes.append(tls.version())
        return tls, address


class TlsEchoBackend:
    """harness.EchoHandler over TLS. Records handshakes, handshake failures and SNI names."""

    def __init__(self, certfile, keyfile, name="tls-backend"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        self.server_names = []
        context.sni_callback = lambda sslobj, server_name, ctx: self.server_names.append(
            server_name)
        self.server = _TlsHttpServer(("127.0.0.1", 0), harness.EchoHandler)
        self.server.tls_context = context
        self.server.requests = []
        self.server.handshakes = []
        self.server.handshake_failures = []
        self.server.name = name
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self):
        return self.server.requests

    @property
    def handshakes(self):
        return self.server.handshakes

    @property
    def handshake_failures(self):
        return self.server.handshake_failures

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("peer closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def recv_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)  # byte by byte: nothing after the head is consumed
        if not chunk:
            raise EOFError("peer closed inside a header block: %r" % data)
        data += chunk
    return data


def read_frame(sock):
    """(opcode, payload, masked) of one RFC 6455 frame."""
    b0, b1 = recv_exact(sock, 2)
    masked, n = bool(b1 & 0x80), b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(sock, 8))[0]
    key = recv_exact(sock, 4) if masked else None
    payload = recv_exact(sock, n)
    if masked:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, payload, masked


def encode_frame(opcode, payload, mask):
    head = bytes([0x80 | opcode])
    n = len(payload)
    assert n < 126
    if not mask:
        return head + bytes([n]) + payload
    key = os.urandom(4)
    return head + bytes([0x80 | n]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


# --------------------------------------------------------------------------- tests

_PKI = {}


def shared_pki():
    """One set of certificates for the whole module (made on first use)."""
    if "pki" not in _PKI:
        _PKI["dir"] = tempfile.mkdtemp(prefix="hipache-pki-")
        _PKI["pki"] = Pki(_PKI["dir"])
    return _PKI["pki"]


def tearDownModule():
    if "dir" in _PKI:
        shutil.rmtree(_PKI["dir"], ignore_errors=True)


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
            lambda: (lambda c: c if len(c) == count else None)(proc_children(self.proxy.process.pid)),
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

    def test_alpn_selects_http11(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config())
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


class KeyAndCipherTest(TlsTestCase):
    def test_passphrase_protected_key(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(key=self.pki.leaf_key_encrypted,
                                             passphrase=PASSPHRASE))
        status, _, _, info = self.https_get()
        self.assertEqual(status, 200)
        self.assertEqual(names_of(info["cert"])[0], "secure.test")

    def assert_one_line_config_error(self, result, key):
        stderr = result.stderr.decode(errors="replace")
        self.assertNotEqual(result.returncode, 0, stderr)
        lines = [line for line in stderr.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, "expected one line, got:\n" + stderr)
        self.assertIn(key, lines[0])
        return lines[0]

    def test_wrong_passphrase_is_a_config_error(self):
        config = self.tls_config(key=self.pki.leaf_key_encrypted, passphrase="not the passphrase")
        result = run_binary(config, self.workdir)
        line = self.assert_one_line_config_error(result, "https.key")
        self.assertNotIn("not the passphrase", line)
        # nothing was bound (and nothing is left listening)
        self.assertTrue(port_is_free(config["http"]["port"]))
        self.assertTrue(port_is_free(self.https_port))

    def test_encrypted_key_without_passphrase_is_a_config_error(self):
        config = self.tls_config(key=self.pki.leaf_key_encrypted)
        result = run_binary(config, self.workdir)
        self.assert_one_line_config_error(result, "https.key")

    def test_key_not_matching_the_certificate_is_a_config_error(self):
        config = self.tls_config(key=self.pki.localhost_key)  # cert is secure.test's
        result = run_binary(config, self.workdir)
        line = self.assert_one_line_config_error(result, "https.key")
        self.assertTrue("does not match" in line or "mismatch" in line,
                        "the line does not say the key and certificate differ: " + line)

    def test_unknown_cipher_string_is_a_config_error(self):
        config = self.tls_config(ciphers="NOT-A-CIPHER")
        result = run_binary(config, self.workdir)
        self.assert_one_line_config_error(result, "https.ciphers")
        self.assertTrue(port_is_free(config["http"]["port"]))

    def test_hipache_default_cipher_string_is_replaced_with_a_warning(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(ciphers=HIPACHE_DEFAULT_CIPHERS))
        tls12 = self.client_context(maximum=ssl.TLSVersion.TLSv1_2)
        status, _, _, info = self.https_get(context=tls12)
        self.assertEqual(status, 200)
        self.assertIn("ECDHE-ECDSA", info["cipher"])
        self.assertTrue(harness.wait_until(lambda: "https.ciphers" in self.proxy.log(), 3),
                        "no warning naming https.ciphers:\n" + self.proxy.log())

    def test_ciphers_and_honor_cipher_order(self):
        server_order = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(ciphers=server_order))
        client = self.client_context(maximum=ssl.TLSVersion.TLSv1_2)
        client.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256")
        # honorCipherOrder defaults to true: the server's first choice wins
        self.assertEqual(self.https_get(context=client)[3]["cipher"], "ECDHE-ECDSA-AES128-GCM-SHA256")
        # a cipher outside the configured list is refused
        other = self.client_context(maximum=ssl.TLSVersion.TLSv1_2)
        other.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
        self.assertIsNotNone(self.handshake_error(other))

    def test_honor_cipher_order_false_follows_the_client(self):
        server_order = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(ciphers=server_order, honorCipherOrder=False))
        client = self.client_context(maximum=ssl.TLSVersion.TLSv1_2)
        client.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256")
        self.assertEqual(self.https_get(context=client)[3]["cipher"], "ECDHE-ECDSA-AES256-GCM-SHA384")


class ProtocolVersionTest(TlsTestCase):
    def old_protocol_context(self, version):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1/TLSv1_1
            context = self.client_context(verify=False, minimum=version, maximum=version)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this OpenSSL offer TLS 1.0/1.1 at all
        return context

    def test_tls10_and_tls11_refused_by_default(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config())
        for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            with self.subTest(version=version.name):
                try:
                    context = self.old_protocol_context(version)
                except (ValueError, ssl.SSLError) as error:
                    self.skipTest("this Python/OpenSSL cannot offer %s: %s" % (version.name, error))
                error = self.handshake_error(context)
                if isinstance(error, ssl.SSLError) and "NO_PROTOCOLS_AVAILABLE" in str(error):
                    self.skipTest("the local OpenSSL refuses to offer %s" % version.name)
                self.assertIsNotNone(error, "%s handshake accepted" % version.name)

    def test_tls11_when_asked_for_explicitly(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(secureProtocol="TLSv1_1_method"))
        context = self.old_protocol_context(ssl.TLSVersion.TLSv1_1)
        try:
            status, _, _, info = self.https_get(context=context)
        except ssl.SSLError as error:
            if "NO_PROTOCOLS_AVAILABLE" in str(error):
                self.skipTest("the local OpenSSL refuses to offer TLSv1.1")
            raise
        self.assertEqual(status, 200)
        self.assertEqual(info["version"], "TLSv1.1")
        # and nothing newer: TLSv1_1_method is exactly TLS 1.1
        self.assertIsNotNone(self.handshake_error(
            self.client_context(minimum=ssl.TLSVersion.TLSv1_2)))

    def test_tls12_and_tls13_accepted_by_default(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config())
        for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                              (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            with self.subTest(version=name):
                context = self.client_context(minimum=version, maximum=version)
                status, _, _, info = self.https_get(context=context)
                self.assertEqual(status, 200)
                self.assertEqual(info["version"], name)
        # an unrestricted client gets the newest
        self.assertEqual(self.https_get()[3]["version"], "TLSv1.3")

    def test_secure_protocol_tls12_method_refuses_tls13(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(secureProtocol="TLSv1_2_method",
                                             certDir=self.cert_dir(self.pki.exact)))
        tls13 = self.client_context(minimum=ssl.TLSVersion.TLSv1_3)
        self.assertIsNotNone(self.handshake_error(tls13))
        status, _, _, info = self.https_get()
        self.assertEqual(status, 200)
        self.assertEqual(info["version"], "TLSv1.2")
        # a certificate chosen by SNI does not bring other protocol settings along
        self.assertIsNotNone(self.handshake_error(tls13, "exact.test"))
        status, _, _, info = self.https_get(server_hostname="exact.test")
        self.assertEqual(status, 200)
        self.assertEqual((info["version"], names_of(info["cert"])[0]), ("TLSv1.2", "exact.test"))


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


class HttpsBackendTest(TlsTestCase):
    def tls_backend(self, cert, key):
        backend = TlsEchoBackend(cert, key)
        self._stoppers.append(backend.stop)
        return backend

    @contextlib.contextmanager
    def trust_store(self, cafile):
        """The system trust store of a proxy started inside: OpenSSL's SSL_CERT_FILE."""
        saved = {k: os.environ.get(k) for k in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
        os.environ["SSL_CERT_FILE"] = cafile
        os.environ["SSL_CERT_DIR"] = os.path.join(self.workdir, "no-such-dir")
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def test_https_backend_without_verification(self):
        backend = self.tls_backend(self.pki.self_signed, self.pki.self_signed_key)
        self.redis.rpush("frontend:secure.test", "tls-backend", "https://127.0.0.1:%d" % backend.port)
        self.start_proxy(self.config(backendTlsVerify=False))
        status, _, body = self.request("GET", "/to-tls-backend", host="secure.test")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["path"], "/to-tls-backend")
        self.assertEqual(len(backend.requests), 1)
        self.assertEqual(len(backend.handshakes), 1)
        self.assertTrue(backend.handshakes[0].startswith("TLSv1."), backend.handshakes)
        self.assertEqual(backend.server_names, [None])  # no SNI for an IP literal

    def test_unverifiable_https_backend_gets_502(self):
        backend = self.tls_backend(self.pki.self_signed, self.pki.self_signed_key)
        self.redis.rpush("frontend:secure.test", "tls-backend", "https://127.0.0.1:%d" % backend.port)
        self.start_proxy()  # backendTlsVerify defaults to true
        status, headers, body = self.request("GET", "/", host="secure.test",
                                             headers={"X-Debug": "1"})
        self.assertEqual(status, 502, body)
        self.assertIn("TLS", headers.get("x-debug-error", ""))
        self.assertTrue(harness.wait_until(lambda: backend.handshake_failures, 3),
                        "the proxy never tried a TLS handshake")
        self.assertEqual(backend.requests, [], "the backend got a request over an unverified TLS")

    def test_https_backend_verified_against_trust_store_with_sni(self):
        backend = self.tls_backend(self.pki.localhost, self.pki.localhost_key)
        self.redis.rpush("frontend:secure.test", "tls-backend", "https://localhost:%d" % backend.port)
        with self.trust_store(self.pki.root):
            self.start_proxy()
        status, _, body = self.request("GET", "/verified", host="secure.test",
                                       headers={"X-Debug": "1"})
        self.assertEqual(status, 200, body)
        self.assertEqual(len(backend.requests), 1)
        self.assertEqual(backend.server_names, ["localhost"])
        self.assertEqual(backend.requests[0]["headers"].get("Host"), "secure.test")

    def test_https_backend_ip_literal_verified_against_ip_san(self):
        backend = self.tls_backend(self.pki.ip, self.pki.ip_key)
        self.redis.rpush("frontend:secure.test", "tls-backend", "https://127.0.0.1:%d" % backend.port)
        with self.trust_store(self.pki.root):
            self.start_proxy()
        status, _, body = self.request("GET", "/ip", host="secure.test", headers={"X-Debug": "1"})
        self.assertEqual(status, 200, body)
        self.assertEqual(len(backend.requests), 1)
        self.assertEqual(backend.server_names, [None])  # no SNI for an IP literal

    def test_https_backend_name_mismatch_gets_502(self):
        # Signed by the trusted root, but for backend.test, not for 127.0.0.1.
        backend = self.tls_backend(self.pki.backend_name, self.pki.backend_name_key)
        self.redis.rpush("frontend:secure.test", "tls-backend", "https://127.0.0.1:%d" % backend.port)
        with self.trust_store(self.pki.root):
            self.start_proxy()
        status, _, body = self.request("GET", "/", host="secure.test", headers={"X-Debug": "1"})
        self.assertEqual(status, 502, body)
        self.assertEqual(backend.requests, [])


class WssTest(TlsTestCase):
    def test_websocket_over_https(self):
        seen = {}

        def ws_echo(conn):
            head = harness.read_request_head(conn).decode("latin-1")
            headers = {}
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            seen["headers"] = headers
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                          % ws_accept(headers["sec-websocket-key"])).encode())
            opcode, payload, masked = read_frame(conn)
            seen["masked"] = masked
            conn.sendall(encode_frame(opcode, payload, mask=False))
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                conn.recv(1)

        backend = self.raw_backend(ws_echo)
        self.redis.rpush("frontend:ws.test", "ws", backend.url)
        self.start_tls_proxy(self.tls_config())
        key = base64.b64encode(os.urandom(16)).decode()
        with self.tls_connect("secure.test") as sock:
            sock.sendall(("GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n" % key).encode())
            head = recv_head(sock).decode("latin-1")
            self.assertTrue(head.startswith("HTTP/1.1 101"), head)
            self.assertIn("sec-websocket-accept: " + ws_accept(key).lower(), head.lower())
            sock.sendall(encode_frame(0x1, b"hello over wss", mask=True))
            opcode, payload, masked = read_frame(sock)
        self.assertEqual((opcode, payload, masked), (0x1, b"hello over wss", False))
        self.assertTrue(seen["masked"])
        self.assertEqual(seen["headers"].get("x-forwarded-proto"), "https")
        self.assertEqual(seen["headers"].get("x-forwarded-port"), str(self.https_port))


if __name__ == "__main__":
    unittest.main()
