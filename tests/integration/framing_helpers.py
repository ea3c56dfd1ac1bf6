"""FramingTestCase, the base of the framing tests (test_framing_*.py): routes hosts to recording
or scripted raw backends, and asserts that the backend got exactly one request (or none), no
hop-by-hop field, and that a refused answer is a complete 502 page with no backend byte after it.
"""
import time

import harness
from framing_peers import (MARK, SETTLE, Client, Incomplete, RequestRecorder, ScriptedBackend,
                           parse_request)


# --------------------------------------------------------------------------- base class

class FramingTestCase(harness.ProxyTestCase):
    def client(self):
        c = Client(self.proxy.port)
        self.addCleanup(c.close)
        return c

    def recorder(self, *hosts):
        backend = RequestRecorder(self)
        for host in hosts:
            self.redis.rpush("frontend:" + host, host.split(".")[0], backend.url)
        return backend

    def scripted(self, host, answer):
        backend = ScriptedBackend(self, answer)
        self.redis.rpush("frontend:" + host, host.split(".")[0], backend.url)
        return backend

    def exchange(self, request, method="GET"):
        """Sends `request` on a fresh client connection and reads one response."""
        client = self.client()
        client.send(request)
        return client.read_response(method)

    # ----------------------------------------------------------------- request side

    def forwarded(self, backend, request, method="GET"):
        """Sends `request`; expects the backend's 200 "ok" and exactly one new backend
        connection whose bytes parse as exactly ONE request. Returns that request."""
        before = len(backend.received)
        response = self.exchange(request, method)
        self.assertEqual(response.status, 200, "the request was not forwarded: %r %r"
                         % (response.head, response.body[:200]))
        backend.wait_done()
        new = [bytes(d) for d in backend.received[before:]]
        self.assertEqual(len(new), 1, "expected one backend connection, got %d: %r"
                         % (len(new), new))
        return self.assert_one_request(new[0])

    def assert_one_request(self, data):
        try:
            msg = parse_request(data)
        except Incomplete:
            self.fail("the backend received an incomplete request: %r" % data[:600])
        except ValueError as e:
            self.fail("the backend received an unparsable request (%s): %r" % (e, data[:600]))
        self.assertEqual(msg.rest, b"", "bytes after the one request the backend received "
                         "(a second request hiding in them?): %r; the request: %r"
                         % (msg.rest[:300], data[:600]))
        return msg

    def assert_refused(self, backend, request, status=400):
        """`status` for the client and not one byte at the backend."""
        before = backend.all_bytes()
        response = self.exchange(request)
        self.assertEqual(response.status, status, "expected %d for %r, got %r"
                         % (status, request[:300], response.head))
        time.sleep(SETTLE)
        self.assertEqual(backend.all_bytes()[len(before):], b"",
                         "the backend received bytes of a request that must be refused")

    def assert_no_hop_by_hop(self, msg, named=()):
        """No hop-by-hop field at the backend and no Connection token naming `named` or a
        hop-by-hop field."""
        for name in ("keep-alive", "te", "trailer", "proxy-connection"):
            self.assertNotIn(name, msg.names(), "hop-by-hop field %s forwarded: %r"
                             % (name, msg.headers))
        forbidden = {n.lower() for n in named} | {"te", "trailer", "proxy-connection"}
        bad = forbidden & set(msg.tokens("connection"))
        self.assertFalse(bad, "the backend got a Connection field naming %s: %r"
                         % (sorted(bad), msg.values("connection")))

    # ----------------------------------------------------------------- response side

    def assert_502_page(self, response, client):
        """A complete 502 error page, then no backend byte on the connection."""
        self.assertEqual(response.status, 502, "expected 502, got %r %r"
                         % (response.head, response.body[:200]))
        self.assertTrue(response.head.startswith(b"HTTP/1.1 502"), response.head)
        client.read_rest()
        self.assertNotIn(MARK, client.raw, "the backend's body reached the client: %r"
                         % client.raw[:600])
