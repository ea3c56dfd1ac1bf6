"""HTTP/2 over TLS: after the handshake the connection's own loops read and write the TLS records
(net/tls_records.hpp), not Asio's TLS stream. Bodies both ways, many streams, application data
that arrives with the handshake's last flight, records cut into pieces across reads, and peers
that end the session in every way."""
import json
import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events

import harness
import http2_helpers
import tls_pki
from http2_helpers import curl, parse_head_and_body

HOST = "secure.test"


class MemoryTlsClient:
    """A TLS client whose ciphertext the test sends itself (ssl.MemoryBIO): it decides which
    bytes go out in which write."""

    def __init__(self, port, context):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=HOST)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=config)
        self.events = []

    def ciphertext(self):
        return self.outgoing.read()

    def handshake_but_last_flight(self):
        """Runs the handshake until the client's Finished is written, without sending it."""
        while True:
            try:
                self.tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                data = self.ciphertext()
                if data:
                    self.sock.sendall(data)
                self.incoming.write(self.sock.recv(65536))

    def send_h2(self, pieces=None):
        """Encrypts what the h2 connection has to send and sends the ciphertext (with whatever
        the handshake left), whole or in pieces of `pieces` bytes."""
        self.tls.write(self.h2.data_to_send())
        data = self.ciphertext()
        if pieces is None:
            self.sock.sendall(data)
            return
        for start in range(0, len(data), pieces):
            self.sock.sendall(data[start:start + pieces])
            time.sleep(0.001)  # separate reads on the proxy's side, most of the time

    def response(self, stream_id, timeout=10):
        deadline = time.monotonic() + timeout
        status, body = None, b""
        while time.monotonic() < deadline:
            for event in self.events:
                if isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    for e in self.events:
                        if getattr(e, "stream_id", None) != stream_id:
                            continue
                        if isinstance(e, h2.events.ResponseReceived):
                            status = int(dict(e.headers)[":status"])
                        elif isinstance(e, h2.events.DataReceived):
                            body += e.data
                    return status, body
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                break
            self.incoming.write(data)
            plain = b""
            while True:
                try:
                    plain += self.tls.read(65536)
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    break
            for event in self.h2.receive_data(plain):
                self.events.append(event)
                if isinstance(event, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(event.flow_controlled_length,
                                                      event.stream_id)
            if self.h2.data_to_send():
                self.send_h2()
        return status, body

    def close(self):
        self.sock.close()


class Http2TlsTest(http2_helpers.Http2TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tls_pki.shared_pki()

    def setUp(self):
        super().setUp()
        self.backend = self.frontend(HOST)
        config = self.config()
        self.port = harness.free_port()
        config["https"] = {"port": self.port, "bind": ["127.0.0.1"],
                           "key": self.pki.leaf_key, "cert": self.pki.leaf_chain}
        self.start_proxy(config)

    def context(self):
        context = ssl.create_default_context(cafile=self.pki.root)
        context.set_alpn_protocols(["h2"])
        return context

    def curl(self, path, *args):
        return curl("https://%s:%d%s" % (HOST, self.port, path), "--http2", "--cacert",
                    self.pki.root, "--resolve", "%s:%d:127.0.0.1" % (HOST, self.port), *args)

    def request_on(self, client, path):
        stream = client.h2.get_next_available_stream_id()
        client.h2.send_headers(stream, [(":method", "GET"), (":scheme", "https"),
                                        (":authority", HOST), (":path", path)], end_stream=True)
        return stream

    def assert_still_serving(self):
        code, out, err = self.curl("/after", "-o", "-", "-w", "\n%{http_code}")
        self.assertEqual((code, out.rpartition(b"\n")[2]), (0, b"200"), err)

    def test_bodies_both_ways(self):
        self.check_upload_with_length(self.curl, 300000)
        self.check_large_answers(self.curl)

    def test_many_streams_on_one_connection(self):
        client = http2_helpers.RawH2(self.port, tls_context=self.context(),
                                     server_hostname=HOST, timeout=15)
        self._stoppers.append(client.close)
        self.assertEqual(client.sock.selected_alpn_protocol(), "h2")
        streams = [client.request(HOST, "/s%d?size=20000" % i) for i in range(40)]
        for i, stream in enumerate(streams):
            status, _, body, ended = client.response(stream, timeout=15)
            self.assertEqual((status, len(body), ended), (200, 20000, True), i)
        self.assertIsNone(client.goaway())

    def test_requests_sent_with_the_handshake_finish(self):
        # The client's Finished and its preface, SETTINGS and request leave in one write: the
        # proxy reads them together, before the handshake is over.
        client = MemoryTlsClient(self.port, self.context())
        self._stoppers.append(client.close)
        client.handshake_but_last_flight()
        self.assertEqual(client.tls.selected_alpn_protocol(), "h2")
        client.h2.initiate_connection()
        stream = self.request_on(client, "/with-finished")
        client.send_h2()
        status, body = client.response(stream)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["path"], "/with-finished")

    def test_records_cut_into_pieces(self):
        client = MemoryTlsClient(self.port, self.context())
        self._stoppers.append(client.close)
        client.handshake_but_last_flight()
        client.h2.initiate_connection()
        client.send_h2()
        for i in range(3):
            stream = self.request_on(client, "/piece%d" % i)
            client.send_h2(pieces=3)
            status, body = client.response(stream)
            self.assertEqual(status, 200, i)
            self.assertEqual(json.loads(body)["path"], "/piece%d" % i)

    def test_peers_that_end_the_session(self):
        # close_notify with a stream open, an abrupt close, and bytes that are no TLS record:
        # each connection ends, and the worker serves on.
        client = MemoryTlsClient(self.port, self.context())
        client.handshake_but_last_flight()
        client.h2.initiate_connection()
        client.h2.send_headers(1, [(":method", "GET"), (":scheme", "https"),
                                   (":authority", HOST), (":path", "/?delay=0.5")])
        client.send_h2()
        try:
            client.tls.unwrap()
        except ssl.SSLWantReadError:
            pass
        client.sock.sendall(client.ciphertext())
        client.close()

        raw = http2_helpers.RawH2(self.port, tls_context=self.context(), server_hostname=HOST)
        raw.request(HOST, "/?delay=0.5")
        raw.sock.close()

        garbage = MemoryTlsClient(self.port, self.context())
        garbage.handshake_but_last_flight()
        garbage.sock.sendall(garbage.ciphertext() + b"\x17\x03\x03\x00\x10" + b"x" * 16)
        garbage.sock.settimeout(10)
        data = b""
        while True:
            chunk = garbage.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        garbage.close()  # closed by the proxy (after its alert)
        self.assert_still_serving()
        self.assertNotIn("exited", self.proxy.log())

    def test_access_log_says_http2(self):
        code, out, err = self.curl("/logged", "-i")
        self.assertEqual(code, 0, err)
        self.assertEqual(parse_head_and_body(out)[0], 200)
        self.assertIn('"GET /logged HTTP/2.0" 200', self.access_log_lines(expected=1)[-1])


if __name__ == "__main__":
    import unittest
    unittest.main()
