"""gRPC through the proxy: a real gRPC client and server (python3-grpcio) with the backend
registered as h2c:// (and h2:// over TLS). Unary, server, client and bidirectional streaming,
trailers (trailing metadata and the status), a deadline, a backend that is down (grpc-status 14
from the proxy) and an HTTP/1.1 client that gets the trailers after a chunked body.

Run: HIPACHE_BINARY=/work/main/build/hipache /usr/bin/python3 -m unittest -v test_grpc
"""
import socket
import ssl
import struct
import threading
import time
import unittest
from concurrent import futures

import grpc

import harness
from tls_pki import shared_pki, tearDownModule  # noqa: F401 (unittest runs it)

SERVICE = "/test.Echo/"


class EchoService(grpc.GenericRpcHandler):
    """Raw bytes in and out (no protobuf): each method says what it got."""

    def __init__(self):
        self.metadata = []  # invocation metadata of each call, in order
        self.peers = []  # where each call came from (Unary, Sum, Count): one per connection

    def service(self, details):
        methods = {
            SERVICE + "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
            SERVICE + "Fail": grpc.unary_unary_rpc_method_handler(self.fail),
            SERVICE + "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
            SERVICE + "Count": grpc.unary_stream_rpc_method_handler(self.count),
            SERVICE + "Sum": grpc.stream_unary_rpc_method_handler(self.sum),
            SERVICE + "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
        }
        return methods.get(details.method)

    def unary(self, request, context):
        self.metadata.append(dict(context.invocation_metadata()))
        self.peers.append(context.peer())
        context.set_trailing_metadata((("x-trailer", "from-backend"),))
        return b"echo:" + request

    def fail(self, request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    def slow(self, request, context):
        time.sleep(3)
        return b"late"

    def count(self, request, context):
        self.peers.append(context.peer())
        for i in range(int(request)):
            yield b"%d" % i

    def sum(self, requests, context):
        self.peers.append(context.peer())
        return b"%d" % sum(int(r) for r in requests)

    def chat(self, requests, context):
        for message in requests:
            yield b"re:" + message


def grpc_frame(payload):
    return b"\x00" + struct.pack(">I", len(payload)) + payload


class GrpcTestCase(harness.ProxyTestCase):
    def start_grpc_backend(self, tls=False):
        self.service = EchoService()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers((self.service,))
        if tls:
            pki = shared_pki()
            with open(pki.ip_key, "rb") as key, open(pki.ip, "rb") as cert:
                credentials = grpc.ssl_server_credentials(((key.read(), cert.read()),))
            port = server.add_secure_port("127.0.0.1:0", credentials)
        else:
            port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._stoppers.append(lambda: server.stop(0))
        return port

    def start_with_backend(self, url, **server):
        self.redis.rpush("frontend:grpc.test", "grpc", url)
        self.start_proxy(**server)

    def channel(self):
        channel = grpc.insecure_channel("127.0.0.1:%d" % self.proxy.port,
                                        options=[("grpc.default_authority", "grpc.test")])
        self._stoppers.append(channel.close)
        return channel


class GrpcOverH2c(GrpcTestCase):
    def setUp(self):
        super().setUp()
        port = self.start_grpc_backend()
        self.start_with_backend("h2c://127.0.0.1:%d" % port)

    def test_unary_with_trailing_metadata_and_forwarded_fields(self):
        call = self.channel().unary_unary(SERVICE + "Unary")
        reply, info = call.with_call(b"hello", timeout=10, metadata=(("x-client", "yes"),))
        self.assertEqual(reply, b"echo:hello")
        self.assertEqual(info.code(), grpc.StatusCode.OK)
        self.assertIn(("x-trailer", "from-backend"), tuple(info.trailing_metadata()))
        received = self.service.metadata[-1]
        self.assertEqual(received.get("x-client"), "yes")
        # (Hipache's form of an IPv4 client: IPv4-mapped, as a dual-stack socket saw it.)
        self.assertEqual(received.get("x-forwarded-for"), "::ffff:127.0.0.1")
        self.assertEqual(received.get("x-forwarded-proto"), "http")
        self.assertNotIn("connection", received)
        line = '"POST /test.Echo/Unary HTTP/2.0" 200'

        def logged():
            with open(self.access_log_path) as f:
                return line in f.read()
        self.assertTrue(harness.wait_until(logged, 5), line)

    def test_large_messages_both_ways(self):
        payload = bytes(range(256)) * 12 * 1024  # 3 MB: many windows each way
        channel = grpc.insecure_channel(
            "127.0.0.1:%d" % self.proxy.port,
            options=[("grpc.default_authority", "grpc.test"),
                     ("grpc.max_send_message_length", 8 << 20),
                     ("grpc.max_receive_message_length", 8 << 20)])
        self._stoppers.append(channel.close)
        reply = channel.unary_unary(SERVICE + "Unary")(payload, timeout=20)
        self.assertEqual(reply, b"echo:" + payload)

    def test_server_streaming(self):
        replies = list(self.channel().unary_stream(SERVICE + "Count")(b"200", timeout=10))
        self.assertEqual(replies, [b"%d" % i for i in range(200)])

    def test_client_streaming(self):
        total = self.channel().stream_unary(SERVICE + "Sum")(
            iter([b"%d" % i for i in range(100)]), timeout=10)
        self.assertEqual(total, b"%d" % sum(range(100)))

    def test_bidirectional_streaming_in_lock_step(self):
        # Each message is sent only after the answer to the one before arrived: the proxy must
        # pass both directions at once.
        outbox = []
        ready = threading.Event()

        def messages():
            for i in range(20):
                outbox.append(b"m%d" % i)
                yield outbox[-1]
                if not ready.wait(10):
                    return
                ready.clear()

        answers = []
        for answer in self.channel().stream_stream(SERVICE + "Chat")(messages(), timeout=20):
            answers.append(answer)
            ready.set()
        self.assertEqual(answers, [b"re:m%d" % i for i in range(20)])

    def test_status_from_the_backend_reaches_the_client(self):
        with self.assertRaises(grpc.RpcError) as raised:
            self.channel().unary_unary(SERVICE + "Fail")(b"", timeout=10)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(raised.exception.details(), "no such thing")

    def test_deadline_exceeded_then_the_proxy_serves_on(self):
        channel = self.channel()
        with self.assertRaises(grpc.RpcError) as raised:
            channel.unary_unary(SERVICE + "Slow")(b"", timeout=0.5)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertEqual(channel.unary_unary(SERVICE + "Unary")(b"again", timeout=10),
                         b"echo:again")
        self.assertIsNone(self.proxy.process.poll())

    def test_http11_client_gets_trailers_after_a_chunked_body(self):
        frame = grpc_frame(b"plain")
        request = (b"POST /test.Echo/Unary HTTP/1.1\r\nHost: grpc.test\r\n"
                   b"Content-Type: application/grpc\r\nTE: trailers\r\n"
                   b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(frame)) + frame
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10) as s:
            s.sendall(request)
            answer = b""
            while True:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertIn(b"HTTP/1.1 200", head)
        self.assertIn(b"transfer-encoding: chunked", head.lower())
        self.assertIn(grpc_frame(b"echo:plain"), body)
        # The last chunk, then the trailers the backend sent, then the end.
        self.assertRegex(body, rb"\r\n0\r\n(?:[^\r\n]+\r\n)*grpc-status: 0\r\n(?:[^\r\n]+\r\n)*\r\n$")
        self.assertIn(b"x-trailer: from-backend\r\n", body)


class GrpcKeptConnections(GrpcTestCase):
    def test_unary_calls_in_a_row_share_one_backend_connection(self):
        port = self.start_grpc_backend()
        self.start_with_backend("h2c://127.0.0.1:%d" % port, httpKeepAlive=True)
        channel = self.channel()
        call = channel.unary_unary(SERVICE + "Unary")
        for i in range(3):
            self.assertEqual(call(b"n%d" % i, timeout=10), b"echo:n%d" % i)
        # Streaming calls in between (request bodies and trailers both ways) leave the
        # connection reusable too.
        total = channel.stream_unary(SERVICE + "Sum")(iter([b"1", b"2", b"3"]), timeout=10)
        self.assertEqual(total, b"6")
        counted = list(channel.unary_stream(SERVICE + "Count")(b"3", timeout=10))
        self.assertEqual(counted, [b"0", b"1", b"2"])
        for i in range(3, 5):
            self.assertEqual(call(b"n%d" % i, timeout=10), b"echo:n%d" % i)
        self.assertEqual(len(self.service.peers), 7)
        self.assertEqual(len(set(self.service.peers)), 1, self.service.peers)

    def test_without_keep_alive_each_call_has_its_own(self):
        port = self.start_grpc_backend()
        self.start_with_backend("h2c://127.0.0.1:%d" % port, httpKeepAlive=False)
        call = self.channel().unary_unary(SERVICE + "Unary")
        for i in range(3):
            self.assertEqual(call(b"n%d" % i, timeout=10), b"echo:n%d" % i)
        self.assertEqual(len(set(self.service.peers)), 3, self.service.peers)


class GrpcBackendDown(GrpcTestCase):
    def test_unavailable_from_the_proxy_rather_than_a_page(self):
        self.start_with_backend(harness.refused_url().replace("http://", "h2c://"))
        with self.assertRaises(grpc.RpcError) as raised:
            self.channel().unary_unary(SERVICE + "Unary")(b"x", timeout=10)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("Backend refused the connection", raised.exception.details())

    def test_upgrade_to_an_http2_backend_is_refused(self):
        port = self.start_grpc_backend()
        self.start_with_backend("h2c://127.0.0.1:%d" % port)
        status, _, _ = self.request("GET", "/", host="grpc.test",
                                    headers={"Connection": "Upgrade", "Upgrade": "websocket"})
        self.assertEqual(status, 502)


class GrpcOverH2Tls(GrpcTestCase):
    def test_h2_backend_over_tls(self):
        port = self.start_grpc_backend(tls=True)
        self.start_with_backend("h2://127.0.0.1:%d" % port, backendTlsVerify=False)
        reply = self.channel().unary_unary(SERVICE + "Unary")(b"tls", timeout=10)
        self.assertEqual(reply, b"echo:tls")

    def test_tls_backend_without_h2_is_a_502(self):
        pki = shared_pki()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki.ip, pki.ip_key)
        context.set_alpn_protocols(["http/1.1"])
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        self._stoppers.append(listener.close)

        def serve():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                try:
                    context.wrap_socket(conn, server_side=True).close()
                except (ssl.SSLError, OSError):
                    conn.close()

        threading.Thread(target=serve, daemon=True).start()
        self.start_with_backend("h2://127.0.0.1:%d" % listener.getsockname()[1],
                                backendTlsVerify=False)
        status, headers, _ = self.request("GET", "/", host="grpc.test",
                                          headers={"X-Debug": "1"})
        self.assertEqual(status, 502)
        self.assertEqual(headers.get("x-debug-error"), "TLS handshake with the backend failed")


if __name__ == "__main__":
    unittest.main()
