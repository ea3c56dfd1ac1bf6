"""Sequential gRPC unary calls through hipache to a grpcio server, with and without
httpKeepAlive (kept HTTP/2 backend connections), over h2c:// and h2:// (TLS).

Run from tests/integration (it uses that harness):
  cd tests/integration && HIPACHE_BINARY=$PWD/../../build/hipache \
      /usr/bin/python3 ../../bench/grpc_keepalive.py
"""
import sys
import time
import unittest

sys.path.insert(0, ".")
from test_grpc import SERVICE, GrpcTestCase, tearDownModule  # noqa: E402,F401

CALLS = 1000


class KeepAliveBench(GrpcTestCase):
    def run_calls(self, tls, keep):
        port = self.start_grpc_backend(tls=tls)
        url = "%s://127.0.0.1:%d" % ("h2" if tls else "h2c", port)
        self.start_with_backend(url, httpKeepAlive=keep, backendTlsVerify=False)
        call = self.channel().unary_unary(SERVICE + "Unary")
        call(b"warm", timeout=10)
        started = time.monotonic()
        for _ in range(CALLS):
            call(b"x", timeout=10)
        elapsed = time.monotonic() - started
        print("%s httpKeepAlive=%s: %d calls, %.0f us/call, %d backend connection(s)" % (
            url.split(":")[0], keep, CALLS, elapsed / CALLS * 1e6,
            len(set(self.service.peers))), file=sys.stderr)

    def test_h2c_kept(self):
        self.run_calls(False, True)

    def test_h2c_not_kept(self):
        self.run_calls(False, False)

    def test_h2_tls_kept(self):
        self.run_calls(True, True)

    def test_h2_tls_not_kept(self):
        self.run_calls(True, False)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]])
