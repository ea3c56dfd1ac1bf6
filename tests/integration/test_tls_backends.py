"""HTTPS through the real binary, https:// backends (SPEC section 3): unverified, verified
against the trust store with SNI or an IP SAN, refused with 502; and WebSocket over https.

Certificates: tls_pki.py. Standard library only (ssl, socket, subprocess); loopback only.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_tls_backends
"""
import base64
import contextlib
import hashlib
import json
import os
import ssl
import struct
import threading
import unittest
from http.server import ThreadingHTTPServer

import harness
from tls_helpers import TlsTestCase
from tls_pki import tearDownModule  # noqa: F401 (unittest runs it: the certificates go)

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


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
