"""PROXY protocol v1 and v2 on listeners with "proxyProtocol": true (docs/configuration.md, bind
addresses): a real HAProxy in front sends the header, and the client address it saw is what
X-Forwarded-For, X-Real-IP, the access log and trustProxies use, also after the connection was
parked between requests and handed over to a new worker. Raw sockets check the edges: no header,
a bad one, one cut into several segments, LOCAL and UNKNOWN, TLS after the header.

Run: HIPACHE_BINARY=/path/to/hipache python3 -m unittest -v test_proxy_protocol
"""
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import time
import unittest

import harness
import process_helpers
import tls_helpers

HAPROXY = "/usr/sbin/haproxy"
HOST = "site.test"
CLIENT = "127.0.0.2"  # the client's own source address, not the 127.0.0.1 HAProxy connects from
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(command, family, body):
    """command 0x20 LOCAL / 0x21 PROXY; family 0x11 TCP over IPv4, 0x21 TCP over IPv6..."""
    return V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(body)) + body


def v2_inet(source, destination="198.51.100.1", ports=(51000, 80), tlvs=b""):
    return v2_header(0x21, 0x11, socket.inet_pton(socket.AF_INET, source)
                     + socket.inet_pton(socket.AF_INET, destination) + struct.pack("!HH", *ports)
                     + tlvs)


def v2_inet6(source, destination="2001:db8::1", ports=(51000, 443), tlvs=b""):
    return v2_header(0x21, 0x21, socket.inet_pton(socket.AF_INET6, source)
                     + socket.inet_pton(socket.AF_INET6, destination)
                     + struct.pack("!HH", *ports) + tlvs)


def get(host=HOST, path="/", close=False):
    lines = ["GET %s HTTP/1.1" % path, "Host: " + host]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class HaProxy:
    """HAProxy in TCP mode: each frontend port relays to `server` with the given options."""

    def __init__(self, workdir, routes):
        """routes: list of (server port, "send-proxy" or "send-proxy-v2")."""
        self.ports = [harness.free_port() for _ in routes]
        lines = ["global", "  maxconn 200", "defaults", "  mode tcp", "  timeout connect 5s",
                 "  timeout client 30s", "  timeout server 30s"]
        for i, (target, option) in enumerate(routes):
            lines += ["listen route%d" % i, "  bind 127.0.0.1:%d" % self.ports[i],
                      "  server s1 127.0.0.1:%d %s" % (target, option)]
        path = os.path.join(workdir, "haproxy.cfg")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log_path = os.path.join(workdir, "haproxy.log")
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen([HAPROXY, "-f", path, "-db"], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        for port in self.ports:
            harness.wait_for_port(port, process=self.process)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@unittest.skipUnless(os.access(HAPROXY, os.X_OK), "haproxy not installed (scripts/install-deps.sh)")
class ProxyProtocolTest(tls_helpers.TlsTestCase):
    def setUp(self):
        super().setUp()
        self.backend = self.http_backend()
        self.redis.rpush("frontend:" + HOST, "pp-site", self.backend.url)
        self.redis.rpush("frontend:secure.test", "pp-tls", self.backend.url)

    def start(self, **server):
        """A plain listener (the harness waits on it), a plain one and a TLS one with
        proxyProtocol."""
        server.setdefault("headerTimeout", 2)
        config = self.tls_config(server=server)
        self.tls_port = self.https_port
        self.pp_port = harness.free_port()
        config["http"]["bind"] = ["127.0.0.1", {"address": "127.0.0.1", "port": self.pp_port,
                                                "proxyProtocol": True}]
        config["https"]["bind"] = [{"address": "127.0.0.1", "port": self.tls_port,
                                    "proxyProtocol": True}]
        self.start_proxy(config)

    def haproxy(self, *routes):
        balancer = HaProxy(self.workdir, routes)
        self._stoppers.append(balancer.stop)
        return balancer

    # ---- clients

    def connect(self, port=None, source="127.0.0.1"):
        sock = socket.create_connection(("127.0.0.1", port or self.pp_port), timeout=10,
                                        source_address=(source, 0))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def exchange(self, sock, path="/", host=HOST):
        """One request on an open connection (kept alive); returns the backend's view of it."""
        conn = http.client.HTTPConnection(host)
        conn.sock = sock
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        body = response.read()
        self.assertEqual(response.status, 200, body)
        return json.loads(body)["headers"]

    def assert_closed_without_answer(self, sock):
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        self.assertEqual(data, b"", "the proxy answered a connection without a valid header")

    def assert_client(self, headers, address):
        self.assertEqual(headers.get("X-Forwarded-For"), address)
        self.assertEqual(headers.get("X-Real-IP"), address)

    def assert_logged_from(self, address, count):
        lines = self.access_log_lines(expected=count)
        self.assertEqual(len(lines), count, lines)
        for line in lines:
            self.assertTrue(line.startswith(address + " - - ["), line)

    # ---- through HAProxy

    def test_haproxy_v1_and_v2_pass_the_client_address(self):
        self.start()
        balancer = self.haproxy((self.pp_port, "send-proxy"), (self.pp_port, "send-proxy-v2"))
        for port in balancer.ports:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                              source_address=(CLIENT, 0))
            conn.request("GET", "/via-%d" % port, headers={"Host": HOST})
            response = conn.getresponse()
            self.assertEqual(response.status, 200)
            self.assert_client(json.loads(response.read())["headers"], "::ffff:" + CLIENT)
            conn.close()
        self.assert_logged_from("::ffff:" + CLIENT, 2)

    def test_kept_alive_connection_keeps_the_address_through_parks(self):
        self.start()
        balancer = self.haproxy((self.pp_port, "send-proxy-v2"))
        sock = self.connect(balancer.ports[0], source=CLIENT)
        with sock:
            for i in range(4):
                # Longer than the warm period (IdleConnections::kWarmPeriod): the connection is
                # parked between requests and each one is served by a new session.
                if i > 0:
                    time.sleep(0.5)
                self.assert_client(self.exchange(sock, "/%d" % i), "::ffff:" + CLIENT)
        self.assertEqual([r["path"] for r in self.backend.requests], ["/0", "/1", "/2", "/3"])
        self.assert_logged_from("::ffff:" + CLIENT, 4)

    def test_haproxy_v2_to_a_tls_listener(self):
        self.start()
        balancer = self.haproxy((self.tls_port, "send-proxy-v2"))
        raw = self.connect(balancer.ports[0], source=CLIENT)
        with self.client_context().wrap_socket(raw, server_hostname="secure.test") as sock:
            headers = self.exchange(sock, host="secure.test")
        self.assert_client(headers, "::ffff:" + CLIENT)
        self.assertEqual(headers.get("X-Forwarded-Proto"), "https")

    # ---- raw headers

    def test_header_then_tls_on_the_same_socket(self):
        self.start()
        raw = self.connect(self.tls_port)
        raw.sendall(b"PROXY TCP4 203.0.113.9 198.51.100.1 51000 443\r\n")
        with self.client_context().wrap_socket(raw, server_hostname="secure.test") as sock:
            headers = self.exchange(sock, host="secure.test")
        self.assert_client(headers, "::ffff:203.0.113.9")
        self.assertEqual(headers.get("X-Forwarded-Proto"), "https")

    def test_header_cut_into_several_segments(self):
        self.start()
        v1 = b"PROXY TCP6 2001:db8::9 2001:db8::1 51000 80\r\n"
        v2 = v2_inet("203.0.113.10", tlvs=b"\x04\x00\x03abc")
        for header, address in ((v1, "2001:db8::9"), (v2, "::ffff:203.0.113.10")):
            with self.connect() as sock:
                for piece in (header[:3], header[3:14], header[14:-1], header[-1:]):
                    sock.sendall(piece)
                    time.sleep(0.05)
                self.assert_client(self.exchange(sock), address)

    def test_header_and_pipelined_requests_in_one_segment(self):
        self.start()
        header = v2_inet6("2001:db8::7", tlvs=b"\x01\x00\x02h2")
        with self.connect() as sock:
            sock.sendall(header + get(path="/a") + get(path="/b", close=True))
            answer = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        self.assertEqual(answer.count(b"HTTP/1.1 200 "), 2, answer)
        self.assertEqual([r["path"] for r in self.backend.requests], ["/a", "/b"])
        for request in self.backend.requests:
            self.assert_client(request["headers"], "2001:db8::7")

    def test_local_and_unknown_keep_the_socket_peer(self):
        self.start()
        for header in (v2_header(0x20, 0x00, b""), v2_header(0x20, 0x11, b"\x01" * 12),
                       v2_header(0x21, 0x00, b""), b"PROXY UNKNOWN\r\n",
                       b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n"):
            with self.connect() as sock:
                sock.sendall(header)
                self.assert_client(self.exchange(sock), "::ffff:127.0.0.1")

    def test_trust_proxies_judges_the_header_address(self):
        self.start(trustProxies=["203.0.113.0/24"])
        for source, expected in (("203.0.113.9", "192.0.2.1, ::ffff:203.0.113.9"),
                                 ("198.51.100.5", "::ffff:198.51.100.5")):
            with self.connect() as sock:
                sock.sendall(v2_inet(source))
                conn = http.client.HTTPConnection(HOST)
                conn.sock = sock
                conn.request("GET", "/", headers={"Host": HOST, "X-Forwarded-For": "192.0.2.1"})
                response = conn.getresponse()
                self.assertEqual(response.status, 200)
                seen = json.loads(response.read())["headers"]
                self.assertEqual(seen.get("X-Forwarded-For"), expected, source)

    def test_handed_over_connection_keeps_the_address(self):
        self.start()
        old = process_helpers.children(self.proxy.process.pid)
        self.assertEqual(len(old), 1)
        with self.connect() as sock:
            sock.sendall(b"PROXY TCP4 203.0.113.9 198.51.100.1 51000 80\r\n")
            self.assert_client(self.exchange(sock, "/before"), "::ffff:203.0.113.9")
            # Idle (parked), the connection goes to the new worker when the old one is replaced.
            self.proxy.signal(signal.SIGHUP)

            def replaced():
                pids = process_helpers.children(self.proxy.process.pid)
                return len(pids) == 1 and not pids & old
            self.assertTrue(harness.wait_until(replaced, 15), self.proxy.log()[-2000:])
            self.assert_client(self.exchange(sock, "/after"), "::ffff:203.0.113.9")
        self.assert_logged_from("::ffff:203.0.113.9", 2)

    # ---- refused

    def test_no_header_closes_without_an_answer(self):
        self.start()
        with self.connect() as sock:
            sock.sendall(get())
            self.assert_closed_without_answer(sock)
        self.assertEqual(self.backend.requests, [])
        self.assertTrue(harness.wait_until(
            lambda: "without a valid PROXY header" in self.proxy.log(), 3), self.proxy.log())
        # The plain listener next to it serves as before.
        status, _, body = self.request("GET", "/", HOST)
        self.assertEqual(status, 200)
        self.assert_client(json.loads(body)["headers"], "::ffff:127.0.0.1")

    def test_bad_headers_close_without_an_answer(self):
        self.start()
        bad = [b"PROXY TCP4 1.2.3.4 nonsense\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
               b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n", b"PROXY " + b"1" * 120,
               V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12,
               v2_header(0x21, 0x11, b"\x01" * 8), b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]
        for header in bad:
            with self.connect() as sock:
                sock.sendall(header + get())
                self.assert_closed_without_answer(sock)
        # A TLS client that sends no header: its ClientHello is refused, unanswered.
        with self.connect(self.tls_port) as sock:
            sock.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40)
            self.assert_closed_without_answer(sock)
        self.assertEqual(self.backend.requests, [])

    def test_silent_client_is_closed_after_the_header_timeout(self):
        self.start(headerTimeout=1)
        with self.connect() as sock:
            sock.sendall(b"PROXY TCP4 1.2.3.4")  # and nothing more
            self.assert_closed_without_answer(sock)


if __name__ == "__main__":
    unittest.main()
