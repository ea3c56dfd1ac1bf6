"""Relaying HTTP through the proxy (SPEC section 5), the backend connection pool: reuse with
httpKeepAlive, pooled connections the backend closed, one connection per request without it, and
maxSockets.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_relay_pool
"""
import json
import threading
import time
import unittest

import harness
from relay_helpers import RelayTestCase, header_values


class ShortKeepAliveHandler(harness.EchoHandler):
    timeout = 0.3  # closes a kept-alive connection idle this long (a backend's keep-alive timeout)


class ClosingAtOnceHandler(harness.EchoHandler):
    timeout = 0.02  # closes its side almost at once, without saying so in the response


class BackendPoolTest(RelayTestCase):
    def test_pooled_connection_the_backend_closed_is_not_used(self):
        # The pool watches an idle connection (UpstreamPool::kWatchDelay after its release) and
        # drops it when the backend closes it: a request with a body, which could not be
        # replayed, goes to a fresh connection.
        backend = self.http_backend("short-keep-alive", ShortKeepAliveHandler)
        self.route("pool.test", backend)
        self.start_proxy(httpKeepAlive=True)
        status, _, _ = self.request("GET", "/first", host="pool.test")
        self.assertEqual(status, 200)
        time.sleep(1.0)
        status, _, body = self.request("POST", "/second", host="pool.test", body=b"x" * 1000)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["body_length"], 1000)
        self.assertEqual(len({r["client_port"] for r in backend.requests}), 2)
        self.assertEqual(self.redis.exists("dead:pool.test"), 0)

    def test_pooled_connection_closed_before_its_watch_is_retried_fresh(self):
        # Closed by the backend before the pool watched it: the request that takes it fails on
        # it and is sent again on a fresh connection, unseen by the client, no dead mark.
        backend = self.http_backend("closing", ClosingAtOnceHandler)
        self.route("pool.test", backend)
        self.start_proxy(httpKeepAlive=True)
        client = self.client()
        for i in range(3):
            client.send(b"GET /r%d HTTP/1.1\r\nHost: pool.test\r\n\r\n" % i)
            response = client.read_response()
            self.assertEqual(response.status, 200)
            self.assertEqual(response.json()["path"], "/r%d" % i)
            time.sleep(0.05)
        self.assertEqual(len(backend.requests), 3)
        self.assertEqual(self.redis.exists("dead:pool.test"), 0)

    def test_request_with_a_body_does_not_take_a_connection_closed_before_its_watch(self):
        # A POST with a body cannot be sent again once its body has gone: the pool peeks at a
        # connection it has not watched yet before handing it to such a request.
        backend = self.http_backend("closing", ClosingAtOnceHandler)
        self.route("pool.test", backend)
        self.start_proxy(httpKeepAlive=True)
        client = self.client()
        for i in range(3):
            client.send(b"POST /p%d HTTP/1.1\r\nHost: pool.test\r\nContent-Length: 5\r\n\r\n"
                        b"hello" % i)
            response = client.read_response()
            self.assertEqual(response.status, 200)
            self.assertEqual(response.json()["body_length"], 5)
            time.sleep(0.05)
        self.assertEqual(len(backend.requests), 3)
        self.assertEqual(self.redis.exists("dead:pool.test"), 0)

    def test_keep_alive_reuses_one_backend_connection(self):
        backend = self.counting_backend()
        self.route("pool.test", backend)
        self.start_proxy(httpKeepAlive=True)
        for i in range(3):
            status, _, body = self.request("GET", "/r%d" % i, host="pool.test")
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["path"], "/r%d" % i)
        self.assertEqual(len(backend.requests), 3)
        self.assertEqual(len({r["client_port"] for r in backend.requests}), 1)
        self.assertEqual(backend.server.connections, 1)
        for request in backend.requests:
            for value in header_values(request["header_list"], "Connection"):
                self.assertNotIn("close", value.lower())

    def test_no_keep_alive_one_backend_connection_per_request(self):
        backend = self.counting_backend()
        self.route("nopool.test", backend)
        self.start_proxy(httpKeepAlive=False)
        client = self.client()   # even on one kept-alive client connection
        for i in range(3):
            client.send(b"GET /r%d HTTP/1.1\r\nHost: nopool.test\r\n\r\n" % i)
            response = client.read_response()
            self.assertEqual(response.status, 200)
        self.assertEqual(len(backend.requests), 3)
        self.assertEqual(len({r["client_port"] for r in backend.requests}), 3)
        self.assertEqual(backend.server.connections, 3)
        # The backend is told to close, and the proxy does close its side.
        self.assertTrue(harness.wait_until(lambda: backend.server.open_connections == 0, 3))

    def test_max_sockets_one_serialises_concurrent_requests(self):
        backend = self.counting_backend()
        self.route("slots.test", backend)
        self.start_proxy(httpKeepAlive=True, maxSockets=1)
        results = []

        def fetch(i):
            try:
                results.append(self.request("GET", "/?delay=1&n=%d" % i, host="slots.test",
                                            timeout=15))
            except Exception as error:  # reported by the assertions below
                results.append(error)

        started = time.time()
        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        elapsed = time.time() - started
        self.assertEqual(len(results), 2)
        for result in results:
            self.assertIsInstance(result, tuple, result)
            self.assertEqual(result[0], 200)
        self.assertEqual(len(backend.requests), 2)
        self.assertEqual(backend.server.max_in_flight, 1)
        self.assertEqual(backend.server.max_open_connections, 1)
        self.assertEqual(backend.server.connections, 1)
        self.assertGreaterEqual(elapsed, 1.9)


if __name__ == "__main__":
    unittest.main()
