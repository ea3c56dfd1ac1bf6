"""Relaying HTTP through the proxy (SPEC section 5), bodies: streamed both ways with bounded
memory (Content-Length, chunked, close-delimited), bodiless responses (HEAD, 204, 304, interim
1xx) and Expect: 100-continue.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_relay_bodies
"""
import hashlib
import http.client
import json
import os
import socket
import threading
import time
import unittest

import harness
from relay_helpers import MB, DigestHandler, RelayTestCase, header_values
from rss import RssSampler, process_tree_rss_kb


class BodyStreamingTest(RelayTestCase):
    def test_post_content_length_body_arrives_intact(self):
        digest_backend = self.http_backend("digest", DigestHandler)
        echo = self.http_backend("echo")
        self.route("post.test", digest_backend)
        self.route("echo.test", echo)
        self.start_proxy()
        payload = os.urandom(3 * MB + 17)
        status, _, body = self.request("POST", "/upload", host="post.test", body=payload,
                                       timeout=20)
        self.assertEqual(status, 200)
        result = json.loads(body)
        self.assertEqual(result["length"], len(payload))
        self.assertEqual(result["sha256"], hashlib.sha256(payload).hexdigest())
        self.assertEqual(header_values(result["headers"], "Content-Length"), [str(len(payload))])
        # EchoHandler reports the same length.
        status, _, body = self.request("POST", "/upload", host="echo.test", body=payload,
                                       timeout=20)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["body_length"], len(payload))

    def test_post_chunked_body_arrives_intact(self):
        backend = self.http_backend("digest", DigestHandler)
        echo = self.http_backend("echo")
        self.route("chunk.test", backend)
        self.route("echo.test", echo)
        self.start_proxy()
        payload = os.urandom(2 * MB + 333)
        sizes = [1, 10, 4096, 65536, 100000, 1 * MB]

        def pieces():
            offset, i = 0, 0
            while offset < len(payload):
                size = sizes[i % len(sizes)]
                yield payload[offset:offset + size]
                offset += size
                i += 1

        for host in ("chunk.test", "echo.test"):
            conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=20)
            try:
                conn.request("POST", "/chunked", body=pieces(), encode_chunked=True,
                             headers={"Host": host, "Transfer-Encoding": "chunked"})
                response = conn.getresponse()
                self.assertEqual(response.status, 200)
                result = json.loads(response.read())
            finally:
                conn.close()
            if host == "chunk.test":
                self.assertEqual(result["length"], len(payload))
                self.assertEqual(result["sha256"], hashlib.sha256(payload).hexdigest())
            else:
                self.assertEqual(result["body_length"], len(payload))

    def test_large_content_length_response(self):
        backend = self.http_backend("one")
        self.route("big.test", backend)
        self.start_proxy()
        size = 50_000_000
        status, headers, body = self.request("GET", "/?size=%d" % size, host="big.test",
                                             timeout=30)
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("content-length"), str(size))
        self.assertEqual(len(body), size)
        self.assertEqual(body.count(b"x"), size)

    def test_large_chunked_response(self):
        backend = self.http_backend("one")
        self.route("bigchunk.test", backend)
        self.start_proxy()
        size = 5_000_000
        client = self.client(timeout=30)
        client.send(b"GET /?size=%d&chunked=1 HTTP/1.1\r\nHost: bigchunk.test\r\n\r\n" % size)
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertTrue(response.chunked)
        self.assertIsNone(response.get("Content-Length"))
        self.assertEqual(len(response.body), size)
        self.assertEqual(response.body.count(b"x"), size)
        # Still usable afterwards.
        client.send(b"GET /after HTTP/1.1\r\nHost: bigchunk.test\r\n\r\n")
        self.assertEqual(client.read_response().json()["path"], "/after")

    def test_client_leaving_mid_download_frees_the_stalled_backend_at_once(self):
        """A client that stops reading and then resets, while the backend has stalled after
        30 MB: the relay (a write to the client overlapping a read from the backend) ends at
        once and lets the backend connection go, instead of waiting out tcpTimeout."""
        backend_closed = threading.Event()
        stall = threading.Event()
        self._stoppers.append(stall.set)

        def script(conn):
            harness.read_request_head(conn)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (100 * MB))
                conn.sendall(b"z" * (30 * MB))
                conn.settimeout(30)
                while conn.recv(65536):  # nothing more is sent; EOF when the proxy lets go
                    pass
            except OSError:
                pass
            backend_closed.set()
            stall.wait(30)
        backend = self.raw_backend(script)
        self.route("leave.test", backend)
        self.start_proxy(tcpTimeout=30)
        sock = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: leave.test\r\n\r\n")
        self.assertTrue(sock.recv(65536).startswith(b"HTTP/1.1 200"))
        time.sleep(2)  # not reading: the proxy's writes to this client block
        harness.reset(sock)
        self.assertTrue(backend_closed.wait(10), "the backend connection was kept")

    def test_memory_bounded_while_streaming_200mb_response(self):
        total = 200 * MB
        block = b"y" * MB

        def script(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\n\r\n" % total)
            view = memoryview(block)
            for _ in range(total // MB):
                conn.sendall(view)

        backend = self.raw_backend(script)
        warm = self.http_backend("warm")
        self.route("stream.test", backend)
        self.route("warm.test", warm)
        self.start_proxy()
        self.assertEqual(self.request("GET", "/", host="warm.test")[0], 200)
        baseline = process_tree_rss_kb(self.proxy.process.pid)
        received = 0
        with RssSampler(self.proxy.process.pid) as sampler:
            with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=20) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
                s.sendall(b"GET /big HTTP/1.1\r\nHost: stream.test\r\nConnection: close\r\n\r\n")
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = s.recv(65536)
                    self.assertTrue(chunk, "closed before the response head")
                    head += chunk
                head, _, rest = head.partition(b"\r\n\r\n")
                self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
                self.assertIn(b"content-length: %d" % total, head.lower())
                received = len(rest)
                reads = 0
                deadline = time.time() + 60
                while received < total and time.time() < deadline:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    received += len(chunk)
                    reads += 1
                    if reads % 4 == 0:
                        time.sleep(0.001)  # a client slower than the backend
        self.assertEqual(received, total)
        growth_mb = (sampler.peak_kb - baseline) / 1024
        self.assertLess(growth_mb, 30, "proxy RSS grew by %.1f MB while relaying 200 MB"
                        % growth_mb)

    def test_memory_bounded_while_streaming_150mb_upload(self):
        total = 150 * MB
        backend = self.http_backend("digest", DigestHandler)
        backend.server.read_pause = 0.001  # a backend slower than the client
        self.route("upload.test", backend)
        self.start_proxy()
        self.assertEqual(self.request("POST", "/", host="upload.test", body=b"warm")[0], 200)
        baseline = process_tree_rss_kb(self.proxy.process.pid)
        block = b"z" * MB
        with RssSampler(self.proxy.process.pid) as sampler:
            client = self.client(timeout=60)
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
            client.send(b"POST /up HTTP/1.1\r\nHost: upload.test\r\nContent-Length: %d\r\n\r\n"
                        % total)
            for _ in range(total // MB):
                client.send(block)
            response = client.read_response()
        self.assertEqual(response.status, 200)
        result = response.json()
        self.assertEqual(result["length"], total)
        self.assertEqual(result["sha256"], hashlib.sha256(block * (total // MB)).hexdigest())
        growth_mb = (sampler.peak_kb - baseline) / 1024
        self.assertLess(growth_mb, 30, "proxy RSS grew by %.1f MB while relaying a 150 MB upload"
                        % growth_mb)

    def _close_delimited_backend(self, payload):
        def script(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            for i in range(0, len(payload), 50000):
                conn.sendall(payload[i:i + 50000])
            # closing delimits the body
        return self.raw_backend(script)

    def test_close_delimited_response_to_http11_client(self):
        payload = os.urandom(300000)
        backend = self._close_delimited_backend(payload)
        self.route("eof.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET /eof HTTP/1.1\r\nHost: eof.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, payload)
        if response.chunked:
            # Re-chunked: the client connection remains usable.
            client.send(b"GET /again HTTP/1.1\r\nHost: eof.test\r\n\r\n")
            again = client.read_response()
            self.assertEqual(again.status, 200)
            self.assertEqual(again.body, payload)
        else:
            self.assertIsNone(response.get("Content-Length"))
            self.assertTrue(client.wait_closed(1))

    def test_close_delimited_response_to_http10_client(self):
        payload = os.urandom(300000)
        backend = self._close_delimited_backend(payload)
        self.route("eof10.test", backend)
        self.start_proxy()
        for extra in (b"", b"Connection: keep-alive\r\n"):
            client = self.client()
            client.send(b"GET /eof HTTP/1.0\r\nHost: eof10.test\r\n" + extra + b"\r\n")
            response = client.read_response()
            self.assertEqual(response.status, 200)
            self.assertFalse(response.chunked, "HTTP/1.0 clients cannot read chunked bodies")
            self.assertNotIn("keep-alive", response.connection_tokens())
            self.assertEqual(response.body, payload)
            # read_response read up to EOF (no Content-Length): the proxy closed it.
            self.assertIsNone(response.get("Content-Length"))
            self.assertTrue(client.wait_closed(1))

    def test_chunked_response_to_http10_client(self):
        backend = self.http_backend("one")
        self.route("ch10.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET /?size=100000&chunked=1 HTTP/1.0\r\nHost: ch10.test\r\n"
                    b"Connection: keep-alive\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertFalse(response.chunked, "HTTP/1.0 clients cannot read chunked bodies")
        self.assertEqual(response.body, b"x" * 100000)
        self.assertTrue(client.wait_closed(1))


class BodilessResponsesTest(RelayTestCase):
    def test_head_has_no_body_but_keeps_content_length(self):
        backend = self.http_backend("one")
        self.route("head.test", backend)
        self.start_proxy()
        client = self.client()
        for size in (1234, 0, 70000):
            client.send(b"HEAD /?size=%d HTTP/1.1\r\nHost: head.test\r\n\r\n" % size)
            response = client.read_response(head_request=True)
            self.assertEqual(response.status, 200)
            self.assertEqual(response.get("Content-Length"), str(size))
        # Any body bytes after a HEAD answer would be read here as the next status line.
        client.send(b"GET /next HTTP/1.1\r\nHost: head.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json()["path"], "/next")
        self.assertEqual([r["method"] for r in backend.requests], ["HEAD"] * 3 + ["GET"])

    def test_head_of_chunked_resource(self):
        backend = self.http_backend("one")
        self.route("headc.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"HEAD /?size=5000&chunked=1 HTTP/1.1\r\nHost: headc.test\r\n\r\n")
        response = client.read_response(head_request=True)
        self.assertEqual(response.status, 200)
        client.send(b"GET /next HTTP/1.1\r\nHost: headc.test\r\n\r\n")
        self.assertEqual(client.read_response().json()["path"], "/next")

    def test_204_and_304_carry_no_body_and_connection_stays_usable(self):
        backend = self.http_backend("one")
        self.route("nobody.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET /?status=204 HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
        self.assertEqual(client.read_response().status, 204)
        client.send(b"GET /?status=304&size=50 HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
        self.assertEqual(client.read_response().status, 304)
        client.send(b"GET /after HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json()["path"], "/after")

    def test_204_and_304_from_raw_backend(self):
        def script(conn):
            data = b""
            for status in (b"204 No Content", b"304 Not Modified", b"200 OK"):
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                _, _, data = data.partition(b"\r\n\r\n")
                if status == b"200 OK":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
                elif status.startswith(b"304"):
                    # A 304 may describe the chunked representation: still no body.
                    conn.sendall(b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n")
                else:
                    conn.sendall(b"HTTP/1.1 204 No Content\r\nETag: \"e\"\r\n\r\n")
        backend = self.raw_backend(script)
        self.route("rawnb.test", backend)
        self.start_proxy(httpKeepAlive=True)
        client = self.client()
        client.send(b"GET /a HTTP/1.1\r\nHost: rawnb.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 204)
        self.assertIsNone(response.get("Transfer-Encoding"))
        client.send(b"GET /b HTTP/1.1\r\nHost: rawnb.test\r\nIf-None-Match: \"e\"\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 304)
        client.send(b"GET /c HTTP/1.1\r\nHost: rawnb.test\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"done")

    def test_interim_1xx_from_backend_then_final_response(self):
        def script(conn):
            harness.read_request_head(conn)
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            time.sleep(0.5)
        backend = self.raw_backend(script)
        self.route("hints.test", backend)
        self.start_proxy()
        client = self.client()
        client.send(b"GET / HTTP/1.1\r\nHost: hints.test\r\n\r\n")
        final, interim = client.read_final_response()
        self.assertEqual(final.status, 200)
        self.assertEqual(final.body, b"ok")
        for response in interim:
            self.assertEqual(response.status, 103)
        client.send(b"GET / HTTP/1.1\r\nHost: hints.test\r\n\r\n")
        final, _ = client.read_final_response()
        self.assertEqual(final.body, b"ok")

    def test_many_large_interim_answers_keep_memory_bounded(self):
        # Each interim answer's fields are freed before the next answer is read, however many
        # come: 500 of 41 KB each must not add up in the worker.
        count, link = 500, b"</a.css>; rel=preload, " * 1800  # 41 KB each
        interim = b"HTTP/1.1 103 Early Hints\r\nLink: " + link + b"\r\n\r\n"

        def script(conn):
            harness.read_request_head(conn)
            for _ in range(count):
                conn.sendall(interim)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            time.sleep(0.5)
        backend = self.raw_backend(script)
        self.route("manyhints.test", backend)
        self.start_proxy()
        self.assertGreater(len(interim) * count, 19 * MB)

        def exchange():
            client = self.client(timeout=20)
            client.send(b"GET / HTTP/1.1\r\nHost: manyhints.test\r\n\r\n")
            final, relayed = client.read_final_response()
            self.assertEqual(final.status, 200)
            self.assertEqual(final.body, b"ok")
            self.assertEqual(len(relayed), count)
            client.close()
        # Warm up first: in the ASan build, freed memory sits in a 16 MB quarantine
        # (scripts/test.sh) before it can be reused; then a second for the worker's heap trim.
        exchange()
        exchange()
        time.sleep(1.2)
        baseline = process_tree_rss_kb(self.proxy.process.pid)
        with RssSampler(self.proxy.process.pid) as sampler:
            exchange()
        growth_mb = (sampler.peak_kb - baseline) / 1024
        self.assertLess(growth_mb, 2, "proxy RSS grew by %.1f MB over %d interim answers"
                        % (growth_mb, count))


class ExpectContinueTest(RelayTestCase):
    def test_expect_100_continue(self):
        backend = self.http_backend("one")
        self.route("expect.test", backend)
        self.start_proxy()
        client = self.client(timeout=5)
        body = os.urandom(5000)
        client.send(b"POST /up HTTP/1.1\r\nHost: expect.test\r\nContent-Length: %d\r\n"
                    b"Expect: 100-continue\r\n\r\n" % len(body))
        interim = client.read_response()
        self.assertEqual(interim.status, 100)
        self.assertTrue(interim.raw_head.startswith(b"HTTP/1.1 100 Continue"), interim.raw_head)
        client.send(body)
        final = client.read_response()
        self.assertEqual(final.status, 200)
        result = final.json()
        self.assertEqual(result["body_length"], len(body))
        self.assertEqual(len(backend.requests), 1)
        names = [k.lower() for k, _ in backend.requests[0]["header_list"]]
        self.assertNotIn("expect", names)
        # The connection goes on.
        client.send(b"GET /next HTTP/1.1\r\nHost: expect.test\r\n\r\n")
        self.assertEqual(client.read_response().json()["path"], "/next")


if __name__ == "__main__":
    unittest.main()
