"""WebSocket (Upgrade) tunnelling through the real binary (SPEC sections 4, 5 and 8), data
through an open tunnel: messages of every kind and size echoed intact, bounded memory while
100 MB go through, 200 tunnels at once, and half-closes passed on in both directions.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_websocket_echo
"""
import contextlib
import os
import socket
import struct
import threading
import time
import unittest

import rss
from rss import process_tree_rss_kb
from websocket_helpers import WebSocketTestCase
from websocket_peers import OP_BINARY, OP_CLOSE, OP_PONG, OP_TEXT, FrameSocket, WsClient, accept_for


class RssSampler(rss.RssSampler):
    """The echo here runs flat out beside the sampler: it reads /proc every 50 ms, not 20."""

    def __init__(self, pid):
        super().__init__(pid, interval=0.05)


class Echo(WebSocketTestCase):
    def test_text_binary_large_fragmented_ping_and_close(self):
        server = self.ws_server()
        self.route(server)
        self.start_proxy(tcpTimeout=30)
        c = self.open_tunnel(timeout=30)
        self.assert_echo(c, "h\u00e9llo, tunnel")
        self.assert_echo(c, bytes(range(256)) * 3)
        self.assert_echo(c, os.urandom(8 * 1024 * 1024))

        fragmented = os.urandom(300000)
        c.send_fragmented(fragmented, 60, OP_BINARY, ping_between=b"mid-message")
        opcode, payload = c.recv_message()
        self.assertEqual((opcode, payload), (OP_PONG, b"mid-message"))
        opcode, payload = c.recv_message()
        self.assertEqual(opcode, OP_BINARY)
        self.assertTrue(payload == fragmented, "fragmented message reassembled wrongly")

        text = "".join("part %d. " % i for i in range(500))
        c.send_fragmented(text.encode(), 25, OP_TEXT)
        self.assertEqual(c.recv_message(), (OP_TEXT, text.encode()))

        c.ping(b"are you there")
        self.assertEqual(c.recv_message(), (OP_PONG, b"are you there"))

        c.close(4001, b"bye")
        opcode, payload = c.recv_message()
        self.assertEqual(opcode, OP_CLOSE)
        self.assertEqual(struct.unpack("!H", payload[:2])[0], 4001)
        # The backend closed after its close frame: the client sees the end of the stream.
        self.assertTrue(c.wait_eof(5), "client did not see the tunnel close")
        c.close_socket()
        # ... and the client's close reaches the backend, which sees its end of the stream too.
        seen = server.connections[0]
        self.assertTrue(seen.eof.wait(5), "backend did not see the tunnel close")
        self.assertEqual(seen.close_code, 4001)
        self.assertTrue(seen.masked, "client frames must reach the backend unchanged (masked)")
        self.assertEqual(seen.messages, 5)

    def test_memory_stays_bounded_while_echoing_100mb(self):
        server = self.ws_server()
        self.route(server)
        self.start_proxy(tcpTimeout=60)
        c = self.open_tunnel(timeout=60)
        block = os.urandom(1 << 20)
        self.assert_echo(c, block)  # warm-up
        time.sleep(0.2)
        baseline = process_tree_rss_kb(self.proxy.process.pid)
        count = 100
        errors = []

        def sender():
            try:
                for i in range(count):
                    c.send_frame(OP_BINARY, i.to_bytes(4, "big") + block[4:])
            except OSError as e:
                errors.append(e)

        started = time.time()
        with RssSampler(self.proxy.process.pid) as sampler:
            t = threading.Thread(target=sender, daemon=True)
            t.start()
            received = 0
            for i in range(count):
                opcode, payload = c.recv_message()
                self.assertEqual(opcode, OP_BINARY)
                self.assertEqual(len(payload), len(block))
                self.assertEqual(int.from_bytes(payload[:4], "big"), i)
                self.assertTrue(payload[4:] == block[4:])
                received += len(payload)
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(received, count << 20)
        growth_mb = (sampler.peak_kb - baseline) / 1024.0
        self.assertLess(growth_mb, 30,
                        "proxy RSS grew %.1f MB (baseline %d kB, peak %d kB) over %.1fs"
                        % (growth_mb, baseline, sampler.peak_kb, time.time() - started))
        self.close_cleanly(c)

    def test_200_concurrent_tunnels(self):
        server = self.ws_server()
        self.route(server)
        self.start_proxy(tcpTimeout=60)
        n = 200
        barrier = threading.Barrier(n, timeout=60)
        errors, done = [], []
        lock = threading.Lock()

        def run(index):
            c = None
            try:
                c = WsClient(self.proxy.port, self.HOST, "/t%d" % index, timeout=60)
                status = c.handshake()
                if status != 101 or c.header("Sec-WebSocket-Accept") != accept_for(c.key):
                    raise AssertionError("handshake %d: %s %r" % (index, status, c.headers))
                barrier.wait()  # all tunnels are open at the same time
                for k in range(5):
                    message = ("%d:%d:" % (index, k)).encode() + os.urandom(100 + 997 * k)
                    c.send(message)
                    if c.recv_message() != (OP_BINARY, message):
                        raise AssertionError("tunnel %d: wrong echo" % index)
                c.ping(b"p%d" % index)
                if c.recv_message() != (OP_PONG, b"p%d" % index):
                    raise AssertionError("tunnel %d: wrong pong" % index)
                c.close(1000)
                opcode, payload = c.recv_message()
                if opcode != OP_CLOSE or payload[:2] != struct.pack("!H", 1000):
                    raise AssertionError("tunnel %d: close not echoed" % index)
                if not c.wait_eof(10):
                    raise AssertionError("tunnel %d: no end of stream" % index)
                with lock:
                    done.append(index)
            except Exception as e:  # collected and reported below
                with lock:
                    errors.append("%d: %r" % (index, e))
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.abort()
            finally:
                if c is not None:
                    c.close_socket()

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        deadline = time.time() + 90
        for t in threads:
            t.join(max(0.1, deadline - time.time()))
        self.assertEqual(errors[:10], [])
        self.assertEqual(len(done), n)
        self.assertGreaterEqual(server.max_open, n)
        lines = self.access_log_lines(expected=n, timeout=10)
        self.assertEqual(len(lines), n)
        self.assertTrue(all('" 101 ' in line for line in lines))


class HalfClose(WebSocketTestCase):
    def test_client_half_close_reaches_backend_which_can_still_send(self):
        received = {}

        def script(conn):
            data = bytearray()
            while True:  # everything until the client's half-close
                chunk = conn.sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            received["data"] = bytes(data)
            received["eof_at"] = time.time()
            time.sleep(0.3)
            conn.send_frame(OP_TEXT, b"sent after your EOF")
            time.sleep(0.2)
            conn.send_frame(OP_BINARY, b"\x00" * 70000)
            time.sleep(0.2)
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.close()

        server = self.ws_server(on_open=script)
        self.route(server)
        self.start_proxy(tcpTimeout=10)
        c = self.open_tunnel()
        c.send("last words")
        c.shutdown_write()
        shut_at = time.time()
        self.assertEqual(c.recv_message(), (OP_TEXT, b"sent after your EOF"))
        self.assertEqual(c.recv_message(), (OP_BINARY, b"\x00" * 70000))
        self.assertTrue(c.wait_eof(5), "backend's close did not reach the client")
        # The backend saw exactly the client's frame, then the end of the stream.
        self.assertIn("data", received)
        fs = FrameSocket(None)
        fs.buf += received["data"]
        fin, opcode, payload, masked = fs.read_frame()
        self.assertEqual((fin, opcode, payload, masked), (True, OP_TEXT, b"last words", True))
        self.assertEqual(fs.buf, b"")
        self.assertLess(received["eof_at"] - shut_at, 3)
        lines = self.access_log_lines(expected=1)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('" 101 ', lines[0])


if __name__ == "__main__":
    unittest.main()
